//! What the scheduler's records look like from the API: a rollout's state, a workload's
//! history, its events. Reads only.

use std::time::Duration;

use tether_common::time::unix_now_ms;
use tether_common::workload::schedule::Rollout;
use tether_common::workload::{Phase, Workload};

use crate::control::error::HubError;
use crate::sessions::Sessions;
use crate::store::Tree;
use crate::store::records::{EventRecord, Records, RevisionRecord};

/// A cluster in a rollout, as `rollout status` shows it.
#[derive(Debug, Clone)]
pub struct RolloutCluster {
    pub cluster: String,
    pub revision: u64,
    pub updated: bool,
    pub available: bool,
    pub offline: bool,
    pub phase: String,
}

#[derive(Debug, Clone)]
pub struct RolloutWave {
    pub selector: String,
    pub clusters: Vec<RolloutCluster>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutPhase {
    Progressing,
    Paused,
    /// Stopped by itself: a cluster missed the progress deadline (see `reason`).
    Halted,
    Complete,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Progressing => "Progressing",
            RolloutPhase::Paused => "Paused",
            RolloutPhase::Halted => "Halted",
            RolloutPhase::Complete => "Complete",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RolloutView {
    pub workload: String,
    pub revision: u64,
    pub state: RolloutPhase,
    pub reason: String,
    pub current_wave: usize,
    pub max_unavailable: usize,
    pub waves: Vec<RolloutWave>,
}

fn not_found(name: &str) -> HubError {
    HubError::NotFound {
        kind: "workload",
        name: name.to_string(),
        hint: " (see: tetherctl get workloads)",
    }
}

/// Names of the clusters a workload runs on (not those it is leaving or retiring from).
pub fn placed_clusters(records: &Records, workload: &str) -> Result<Vec<String>, HubError> {
    let names = records.clusters_of_workload(workload)?;
    Ok(names
        .iter()
        .zip(records.assignments_of(workload, &names)?)
        .filter(|(_, a)| a.as_ref().is_some_and(|a| !a.deleting && !a.retiring))
        .map(|(c, _)| c.clone())
        .collect())
}

/// Where a workload's rollout stands.
pub fn rollout_status(
    records: &Records,
    sessions: &Sessions,
    name: &str,
) -> Result<RolloutView, HubError> {
    let rec = records.workload(name)?.ok_or_else(|| not_found(name))?;
    let w: Workload = serde_json::from_value(rec.workload.clone())
        .map_err(|e| HubError::FailedPrecondition(e.to_string()))?;
    let rollout: Rollout = w.spec.rollout.clone().unwrap_or_default();
    let mut waves: Vec<RolloutWave> = rollout
        .waves
        .iter()
        .map(|wv| RolloutWave {
            selector: wv.cluster_selector.to_string(),
            clusters: Vec::new(),
        })
        .collect();
    waves.push(RolloutWave {
        selector: if rollout.waves.is_empty() {
            "(all clusters)".into()
        } else {
            "(the rest)".into()
        },
        clusters: Vec::new(),
    });
    let names = records.clusters_of_workload(name)?;
    let assignments = records.assignments_of(name, &names)?;
    let statuses = records.statuses_of(name, &names)?;
    let mut placed = 0;
    for ((c, a), s) in names.iter().zip(assignments).zip(statuses) {
        let Some(a) = a.filter(|a| !a.deleting && !a.retiring) else {
            continue;
        };
        placed += 1;
        let labels = records.cluster(c)?.map(|r| r.labels).unwrap_or_default();
        let live = sessions.contains(c);
        let current = s.filter(|s| s.revision == a.revision);
        let entry = RolloutCluster {
            cluster: c.clone(),
            revision: a.revision,
            updated: a.at_target(),
            available: live
                && current
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Available),
            offline: !live,
            phase: current.map_or_else(|| "Pending".to_string(), |s| s.phase.to_string()),
        };
        waves[rollout.wave_of(&labels)].clusters.push(entry);
    }
    let state = if rec.rollout.complete && rec.rollout.revision == rec.revision {
        RolloutPhase::Complete
    } else if !rec.rollout.halted.is_empty() {
        RolloutPhase::Halted
    } else if rec.rollout.paused {
        RolloutPhase::Paused
    } else {
        RolloutPhase::Progressing
    };
    Ok(RolloutView {
        workload: name.to_string(),
        revision: rec.revision,
        state,
        reason: rec.rollout.halted.clone(),
        current_wave: rec.rollout.wave,
        max_unavailable: rollout.max_unavailable.of(placed).unwrap_or(1),
        waves,
    })
}

/// A workload's kept revisions, oldest first.
pub fn history(records: &Records, name: &str) -> Result<Vec<RevisionRecord>, HubError> {
    if records.workload(name)?.is_none() {
        return Err(not_found(name));
    }
    Ok(records.revisions(name)?)
}

/// Events since `since_ms`, for one workload or all, oldest first (at most `limit`, the
/// newest).
pub fn events_since(
    records: &Records,
    since_ms: i64,
    workload: &str,
    limit: usize,
) -> Result<Vec<EventRecord>, HubError> {
    let from = (since_ms.max(0) as u64).to_be_bytes();
    let to = u64::MAX.to_be_bytes();
    let all: Vec<EventRecord> = records
        .event_range(&from, &to, usize::MAX)?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| workload.is_empty() || e.workload == workload)
        .collect();
    let skip = all.len().saturating_sub(limit);
    Ok(all.into_iter().skip(skip).collect())
}

/// Drops events older than `retention`.
pub async fn prune_events(records: &Records, retention: Duration) -> Result<usize, HubError> {
    let cutoff = unix_now_ms() - retention.as_millis() as i64;
    Ok(records.prune_before(Tree::Events, cutoff).await?)
}
