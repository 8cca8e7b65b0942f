//! How long the hub's planner takes to decide placements: N clusters, W workloads, the pure
//! `plan` the scheduler runs for each workload, timed in this process (no network, no store:
//! the decision alone).
//!
//! Two passes per size: the first places every workload (`maxClusters: 3` spread over
//! regions, the common shape); the second plans again with those assignments in place and
//! nothing to change — what every scheduling pass over an unchanged workload costs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;
use tether_common::workload::Workload;
use tether_hub::control::scheduler::plan::{ClusterState, Input, Observed, plan};
use tether_hub::store::records::{AssignmentRecord, WorkloadRecord};

use super::stats::{median, percentile};

#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub clusters: usize,
    pub workloads: usize,
    /// Per workload, the first placement (ms): median and p99 over all workloads and runs.
    pub place_median_ms: f64,
    pub place_p99_ms: f64,
    /// Per workload, a pass with nothing to change (ms).
    pub steady_median_ms: f64,
    pub steady_p99_ms: f64,
    /// All workloads placed, one after the other (ms, median of runs): one pass of the
    /// scheduler over every workload after the fleet appeared.
    pub place_all_ms: f64,
}

fn workload(i: usize) -> Workload {
    let yaml = format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: w{i:03} }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: w{i:03}, namespace: default }}, data: {{ k: v }} }}\n  placement: {{ clusterSelector: {{ matchLabels: {{ tier: prod }} }}, maxClusters: 3, spreadBy: region }}\n"
    );
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("bench workload: {e}"))
}

fn fleet(n: usize) -> Vec<ClusterState> {
    (0..n)
        .map(|i| ClusterState {
            name: format!("sim-{i:05}"),
            labels: [
                ("tier".to_string(), "prod".to_string()),
                ("region".to_string(), format!("r{}", i % 8)),
            ]
            .into_iter()
            .collect(),
            taints: Vec::new(),
            cordoned: false,
            connected: true,
            offline_since: 0,
            unreachable_since: None,
            removing: false,
        })
        .collect()
}

/// Times the planner for `clusters` clusters and `workloads` workloads, `repeats` times.
pub fn measure(clusters: usize, workloads: usize, repeats: usize) -> Placement {
    let fleet = fleet(clusters);
    let refs: Vec<&ClusterState> = fleet.iter().collect();
    let specs: Vec<(WorkloadRecord, Workload)> = (0..workloads)
        .map(|i| {
            let w = workload(i);
            let rec = WorkloadRecord {
                name: w.metadata.name.clone(),
                workload: serde_json::to_value(&w).unwrap_or_default(),
                revision: 1,
                ..Default::default()
            };
            (rec, w)
        })
        .collect();
    let none = BTreeSet::new();
    let observed: BTreeMap<String, Observed> = BTreeMap::new();
    let (mut place, mut steady, mut all) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let mut run_ms = 0.0;
        for (rec, w) in &specs {
            let empty = BTreeMap::new();
            let input = Input {
                record: rec,
                workload: w,
                clusters: &refs,
                assignments: &empty,
                observed: &observed,
                out_of_scope: &none,
                failovers_allowed: 0,
                max_bundle_size: 8 << 20,
                confine: None,
                now: 1_000_000,
                offline_settle: 30,
            };
            let t = Instant::now();
            let p = plan(&input);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            place.push(ms);
            run_ms += ms;
            // The same workload again, its assignments now in place.
            let placed: BTreeMap<String, AssignmentRecord> = p
                .assignments
                .into_iter()
                .map(|a| (a.cluster.clone(), a))
                .collect();
            let rec = p.record.unwrap_or_else(|| rec.clone());
            let input = Input {
                record: &rec,
                assignments: &placed,
                ..input
            };
            let t = Instant::now();
            let again = plan(&input);
            steady.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                again.assignments.is_empty(),
                "a steady pass changed assignments"
            );
        }
        all.push(run_ms);
    }
    Placement {
        clusters,
        workloads,
        place_median_ms: median(&place),
        place_p99_ms: percentile(&place, 99.0),
        steady_median_ms: median(&steady),
        steady_p99_ms: percentile(&steady, 99.0),
        place_all_ms: median(&all),
    }
}
