//! One test per planner rule, with plain data: a small world of clusters, a workload, and
//! the plans applied to it as the controller would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const T0: i64 = 1_000_000;

fn workload(extra: &str, image: &str) -> Workload {
    let yaml = format!(
        "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: web }}\nspec:\n  manifests:\n    - apiVersion: apps/v1\n      kind: Deployment\n      metadata: {{ name: web, namespace: default }}\n      spec: {{ replicas: 4, selector: {{ matchLabels: {{ app: web }} }}, template: {{ metadata: {{ labels: {{ app: web }} }}, spec: {{ containers: [ {{ name: web, image: \"{image}\" }} ] }} }} }}\n{extra}"
    );
    let w: Workload = serde_saphyr::from_str(&yaml).unwrap();
    w.validate().unwrap();
    w
}

/// A hub's worth of state for one workload, changed only by applying plans (and by tests
/// playing the agents and the network).
struct World {
    clusters: Vec<ClusterState>,
    workload: Workload,
    record: WorkloadRecord,
    assignments: BTreeMap<String, AssignmentRecord>,
    observed: BTreeMap<String, Observed>,
    out_of_scope: BTreeSet<String>,
    budget: usize,
    now: i64,
    events: Vec<Event>,
    refs: BTreeMap<String, i64>,
}

fn cluster(name: &str, labels: &str) -> ClusterState {
    ClusterState {
        name: name.into(),
        labels: labels
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect(),
        taints: Vec::new(),
        cordoned: false,
        connected: true,
        offline_since: 0,
        unreachable_since: None,
        removing: false,
    }
}

impl World {
    fn new(clusters: &[(&str, &str)], extra: &str) -> World {
        let workload = workload(extra, "web:1");
        let record = WorkloadRecord {
            name: "web".into(),
            workload: serde_json::to_value(&workload).unwrap(),
            revision: 1,
            ..Default::default()
        };
        World {
            clusters: clusters.iter().map(|(n, l)| cluster(n, l)).collect(),
            workload,
            record,
            assignments: BTreeMap::new(),
            observed: BTreeMap::new(),
            out_of_scope: BTreeSet::new(),
            budget: 100,
            now: T0,
            events: Vec::new(),
            refs: BTreeMap::new(),
        }
    }

    fn c(&mut self, name: &str) -> &mut ClusterState {
        self.clusters.iter_mut().find(|c| c.name == name).unwrap()
    }

    /// A new spec, as an apply stores it: the next revision.
    fn apply(&mut self, extra: &str, image: &str) {
        self.workload = workload(extra, image);
        self.record.workload = serde_json::to_value(&self.workload).unwrap();
        self.record.revision += 1;
    }

    /// Plans and applies the plan; returns it.
    fn step(&mut self) -> Plan {
        let clusters: Vec<&ClusterState> = self.clusters.iter().collect();
        let input = Input {
            record: &self.record,
            workload: &self.workload,
            clusters: &clusters,
            assignments: &self.assignments,
            observed: &self.observed,
            out_of_scope: &self.out_of_scope,
            failovers_allowed: self.budget,
            max_bundle_size: 1 << 20,
            confine: None,
            now: self.now,
            offline_settle: 30,
        };
        let plan = plan(&input);
        if let Some(r) = &plan.record {
            self.record = r.clone();
        }
        for a in &plan.assignments {
            self.assignments.insert(a.cluster.clone(), a.clone());
        }
        for (h, d) in &plan.bundles.delta {
            *self.refs.entry(h.clone()).or_default() += d;
        }
        self.budget -= plan.failovers;
        self.events.extend(plan.events.iter().cloned());
        plan
    }

    /// Every connected cluster reports its copy `phase`, from now on.
    fn report(&mut self, phase: Phase) {
        let connected: Vec<String> = self
            .clusters
            .iter()
            .filter(|c| c.connected)
            .map(|c| c.name.clone())
            .collect();
        for c in connected {
            self.report_one(&c, phase);
        }
    }

    fn report_one(&mut self, cluster: &str, phase: Phase) {
        let Some(a) = self.assignments.get(cluster) else {
            return;
        };
        if a.deleting {
            return;
        }
        let o = Observed {
            revision: a.revision,
            phase,
            since_unix: self.now,
            message: format!("{phase} here"),
        };
        match self.observed.get(cluster) {
            Some(old) if old.revision == o.revision && old.phase == o.phase => {}
            _ => {
                self.observed.insert(cluster.to_string(), o);
            }
        }
    }

    /// Agents remove what they were told to remove.
    fn agents_remove(&mut self) {
        let connected: BTreeSet<String> = self
            .clusters
            .iter()
            .filter(|c| c.connected)
            .map(|c| c.name.clone())
            .collect();
        let gone: Vec<String> = self
            .assignments
            .values()
            .filter(|a| a.deleting && connected.contains(&a.cluster))
            .map(|a| a.cluster.clone())
            .collect();
        for c in gone {
            let a = self.assignments.remove(&c).unwrap();
            *self.refs.entry(a.bundle).or_default() -= 1;
            self.observed.remove(&c);
        }
    }

    /// Steps, reporting Available, until nothing changes.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.report(Phase::Available);
            self.agents_remove();
            if self.step().is_empty() {
                return;
            }
        }
        panic!("the plan never settled: {:#?}", self.events);
    }

    fn placed(&self) -> Vec<&str> {
        self.assignments
            .values()
            .filter(|a| !a.deleting && !a.retiring)
            .map(|a| a.cluster.as_str())
            .collect()
    }

    fn image_of(&self, cluster: &str) -> u64 {
        self.assignments[cluster].revision
    }

    fn reasons(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.reason).collect()
    }

    fn event(&self, reason: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.reason == reason).collect()
    }
}

const ALL: &str = "  placement: { clusterSelector: {} }\n";

const ONE_IN_EU: &str =
    "  placement: { clusterSelector: { matchLabels: { region: eu } }, maxClusters: 1 }\n";

#[test]
fn new_placements_go_only_to_connected_clusters_with_a_reachable_api() {
    // Issue 15, finding 1: with eu-1 Offline, workloads went there and stayed Pending.
    for down in ["offline", "unreachable", "removing"] {
        let mut w = World::new(&[("eu-1", "region=eu"), ("eu-2", "region=eu")], ONE_IN_EU);
        // Every order of the two names is tried by rank; make the first choice the bad one.
        let first = {
            let mut probe = World::new(&[("eu-1", "region=eu"), ("eu-2", "region=eu")], ONE_IN_EU);
            probe.step();
            probe.placed()[0].to_string()
        };
        match down {
            "offline" => w.c(&first).connected = false,
            "unreachable" => w.c(&first).unreachable_since = Some(T0 - 5),
            _ => w.c(&first).removing = true,
        }
        w.step();
        assert_eq!(w.placed().len(), 1, "{down}");
        assert_ne!(
            w.placed()[0],
            first,
            "{down}: placed on a cluster that cannot run it"
        );
    }
}

#[test]
fn placement_stays_on_a_cluster_that_goes_away_without_failover() {
    let mut w = World::new(&[("eu-1", "region=eu"), ("eu-2", "region=eu")], ONE_IN_EU);
    w.settle();
    let on = w.placed()[0].to_string();
    w.c(&on).connected = false;
    w.now += 10_000;
    let p = w.step();
    assert!(p.assignments.is_empty(), "{:?}", p.assignments);
    assert_eq!(w.placed(), vec![on.as_str()]);
}

#[test]
fn a_new_workload_is_placed_announced_and_completed() {
    let mut w = World::new(&[("a", ""), ("b", "")], ALL);
    let p = w.step();
    assert_eq!(w.placed(), vec!["a", "b"]);
    assert_eq!(p.touched.len(), 2);
    assert_eq!(w.event("Placed").len(), 2);
    let started = w.event("WaveStarted");
    assert_eq!(started.len(), 1, "the first wave is announced too");
    assert!(
        started[0].message.contains("wave 1 of 1"),
        "{:?}",
        started[0]
    );
    // One stored bundle, held by both.
    assert_eq!(w.refs.values().copied().collect::<Vec<_>>(), vec![2]);
    w.settle();
    let done = w.event("Completed");
    assert_eq!(done.len(), 1, "revision 1 completes too: {:?}", w.events);
    assert!(done[0].message.contains("revision 1"), "{:?}", done[0]);
    assert!(w.record.rollout.complete);
}

#[test]
fn failover_waits_for_after_seconds_counted_from_the_later_of_last_contact_and_hub_start() {
    let spec = "  placement: { clusterSelector: { matchLabels: { region: eu } }, maxClusters: 1, failover: { enabled: true, afterSeconds: 60 } }\n";
    let mut w = World::new(&[("eu-1", "region=eu"), ("eu-2", "region=eu")], spec);
    w.settle();
    let on = w.placed()[0].to_string();
    // Last heard long ago, but the hub itself only started 30 s ago: the clusters' grace
    // starts with the hub (the planner is given the later of the two).
    w.c(&on).connected = false;
    w.c(&on).offline_since = w.now - 30;
    assert!(
        w.step().assignments.is_empty(),
        "failed over within the grace"
    );
    w.now += 29;
    assert!(
        w.step().assignments.is_empty(),
        "failed over within the grace"
    );
    w.now += 1;
    w.step();
    assert_ne!(w.placed(), vec![on.as_str()]);
    assert!(
        w.assignments[&on].deleting,
        "the lost copy is removed when it returns"
    );
    let replaced = w.event("Replaced");
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].cluster, on);
    assert!(
        replaced[0].message.contains("Offline for 60s")
            && replaced[0].message.contains(w.placed()[0]),
        "{:?}",
        replaced[0]
    );
}

#[test]
fn two_lost_clusters_get_two_different_replacements_and_the_events_name_them() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 2, failover: { enabled: true, afterSeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", ""), ("c", ""), ("d", "")], spec);
    w.settle();
    let lost: Vec<String> = w.placed().iter().map(|s| s.to_string()).collect();
    for l in &lost {
        w.c(l).connected = false;
        w.c(l).offline_since = w.now;
    }
    w.now += 10;
    w.step();
    let now_on: BTreeSet<&str> = w.placed().into_iter().collect();
    assert_eq!(now_on.len(), 2);
    assert!(lost.iter().all(|l| !now_on.contains(l.as_str())));
    let named: BTreeSet<String> = w
        .event("Replaced")
        .iter()
        .map(|e| {
            e.message
                .split("replaced by ")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        named,
        now_on
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        "each Replaced event names the cluster actually chosen"
    );
    for e in w.event("Placed").iter().rev().take(2) {
        assert!(e.message.contains("replacing"), "{e:?}");
    }
}

#[test]
fn failovers_stop_at_the_hub_wide_budget_and_resume_when_it_allows() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 2, failover: { enabled: true, afterSeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", ""), ("c", ""), ("d", "")], spec);
    w.settle();
    for l in w.placed().iter().map(|s| s.to_string()).collect::<Vec<_>>() {
        w.c(&l).connected = false;
    }
    w.now += 10;
    w.budget = 1;
    let p = w.step();
    assert_eq!(p.failovers, 1);
    assert_eq!(p.deferred.len(), 1);
    w.budget = 1;
    let p = w.step();
    assert_eq!(p.failovers, 1);
    assert!(p.deferred.is_empty());
}

#[test]
fn no_failover_without_a_replacement_or_when_disabled() {
    let spec =
        "  placement: { clusterSelector: {}, failover: { enabled: true, afterSeconds: 10 } }\n";
    // Every cluster is placed: nothing can replace a lost one.
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    w.c("a").connected = false;
    w.now += 100;
    assert!(w.step().assignments.is_empty());
    let off = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: false, afterSeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], off);
    w.settle();
    let on = w.placed()[0].to_string();
    w.c(&on).connected = false;
    w.now += 100;
    assert!(w.step().assignments.is_empty());
}

#[test]
fn an_unreachable_api_is_replaced_only_with_unhealthy_seconds_and_the_old_copy_stays_until_the_new_one_is_available()
 {
    let without = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, afterSeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], without);
    w.settle();
    let on = w.placed()[0].to_string();
    w.c(&on).unreachable_since = Some(w.now);
    w.now += 1000;
    assert!(w.step().assignments.is_empty(), "health failover is opt-in");

    let with = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, afterSeconds: 10, unhealthySeconds: 30 } }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], with);
    w.settle();
    let old = w.placed()[0].to_string();
    let new = if old == "a" { "b" } else { "a" };
    w.c(&old).unreachable_since = Some(w.now);
    w.now += 29;
    assert!(w.step().assignments.is_empty());
    w.now += 1;
    w.step();
    assert_eq!(w.placed(), vec![new]);
    let a = &w.assignments[&old];
    assert!(
        a.retiring && !a.deleting,
        "no gap: the old copy keeps running: {a:?}"
    );
    assert_eq!(a.replaced_by, new);
    assert!(
        w.event("Replaced")[0]
            .message
            .contains("unreachable for 30s")
    );
    // Not yet Available there: the old copy stays.
    w.report_one(new, Phase::Progressing);
    w.step();
    assert!(!w.assignments[&old].deleting);
    w.report_one(new, Phase::Available);
    w.step();
    assert!(
        w.assignments[&old].deleting,
        "retired once the replacement is Available"
    );
    assert_eq!(w.event("Retired").len(), 1);
}

#[test]
fn a_copy_degraded_for_unhealthy_seconds_is_replaced() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, unhealthySeconds: 60 } }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    let old = w.placed()[0].to_string();
    w.observed.remove(&old);
    w.report_one(&old, Phase::Degraded);
    w.now += 59;
    assert!(w.step().assignments.is_empty());
    w.now += 1;
    w.step();
    assert!(w.assignments[&old].retiring);
    assert!(w.event("Replaced")[0].message.contains("Degraded for 60s"));
}

#[test]
fn a_retiring_copy_counts_again_when_its_replacement_goes_away() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, unhealthySeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    let old = w.placed()[0].to_string();
    let new = if old == "a" { "b" } else { "a" };
    w.c(&old).unreachable_since = Some(w.now);
    w.now += 10;
    w.step();
    assert!(w.assignments[&old].retiring);
    // The replacement is removed from the hub before it became Available.
    w.clusters.retain(|c| c.name != new);
    w.assignments.remove(new);
    w.c(&old).unreachable_since = None;
    w.step();
    assert!(!w.assignments[&old].retiring && !w.assignments[&old].deleting);
    assert_eq!(w.placed(), vec![old.as_str()]);
    assert_eq!(w.event("RetireCancelled").len(), 1);
}

#[test]
fn a_cluster_no_longer_selected_leaves_with_the_reason() {
    let mut w = World::new(
        &[("eu-1", "region=eu"), ("us-1", "region=us")],
        "  placement: { clusterSelector: { matchLabels: { region: eu } } }\n",
    );
    w.settle();
    w.c("eu-1").labels.insert("region".into(), "us".into());
    w.step();
    assert!(w.assignments["eu-1"].deleting);
    let removed = w.event("Removed");
    assert!(
        removed[0].message.contains("no longer selects"),
        "{removed:?}"
    );
    w.settle();
    assert!(w.placed().is_empty());
    assert!(
        w.refs.values().all(|r| *r == 0),
        "bundle references balance: {:?}",
        w.refs
    );
}

#[test]
fn a_removed_or_out_of_reach_cluster_loses_its_copy_and_the_placement_is_refilled() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 1 }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    let old = w.placed()[0].to_string();
    w.c(&old).removing = true;
    w.step();
    assert!(w.assignments[&old].deleting);
    assert_eq!(w.placed().len(), 1, "the placement is refilled at once");
    assert!(w.event("Removed")[0].message.contains("being removed"));

    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    let old = w.placed()[0].to_string();
    w.out_of_scope.insert(old.clone());
    w.step();
    assert!(w.assignments[&old].deleting);
    assert_ne!(w.placed(), vec![old.as_str()]);
    assert!(w.event("Removed")[0].message.contains("team"));
}

#[test]
fn a_cluster_selected_again_while_leaving_gets_the_workload_back_once_it_has_removed_it() {
    let mut w = World::new(
        &[("a", "x=1")],
        "  placement: { clusterSelector: { matchLabels: { x: \"1\" } } }\n",
    );
    w.settle();
    w.c("a").connected = false; // it cannot remove it yet
    w.c("a").labels.clear();
    w.step();
    assert!(w.assignments["a"].deleting);
    w.c("a").labels.insert("x".into(), "1".into());
    w.step();
    assert!(
        w.assignments["a"].deleting,
        "a removal under way is finished first"
    );
    w.c("a").connected = true;
    w.settle();
    assert_eq!(w.placed(), vec!["a"]);
    assert!(w.refs.values().all(|r| *r == 1 || *r == 0), "{:?}", w.refs);
}

#[test]
fn a_copy_changed_by_labels_gets_a_new_revision() {
    let spec = "  placement: { clusterSelector: {} }\n  overrides:\n    - clusterSelector: { matchLabels: { big: \"yes\" } }\n      patches: [ { target: { kind: Deployment, name: web }, merge: { spec: { replicas: 9 } } } ]\n";
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.settle();
    assert_eq!(w.record.revision, 1);
    w.c("a").labels.insert("big".into(), "yes".into());
    w.step();
    assert_eq!(w.record.revision, 2);
    assert_eq!(w.event("Revised").len(), 1);
    w.settle();
    assert_eq!(w.image_of("a"), 2);
    assert_eq!(w.image_of("b"), 1, "b's copy did not change");
}

const THREE_WAVES: &str = "  placement: { clusterSelector: {} }\n  rollout:\n    maxUnavailable: 1\n    progressDeadlineSeconds: 100\n    waves: [ { clusterSelector: { matchLabels: { ring: canary } } } ]\n";

fn rings() -> World {
    World::new(
        &[
            ("canary", "ring=canary"),
            ("m-1", "ring=main"),
            ("m-2", "ring=main"),
            ("m-3", "ring=main"),
        ],
        THREE_WAVES,
    )
}

#[test]
fn a_rollout_goes_wave_by_wave_one_cluster_at_a_time() {
    let mut w = rings();
    w.settle();
    w.events.clear();
    w.apply(THREE_WAVES, "web:2");
    w.step();
    assert_eq!(w.image_of("canary"), 2);
    assert!(["m-1", "m-2", "m-3"].iter().all(|c| w.image_of(c) == 1));
    let started = w.event("WaveStarted");
    assert_eq!(started.len(), 1);
    assert!(started[0].message.contains("wave 1 of 2") && started[0].message.contains("canary"));
    // The canary is not Available yet: the next wave waits.
    w.report_one("canary", Phase::Progressing);
    w.step();
    assert!(["m-1", "m-2", "m-3"].iter().all(|c| w.image_of(c) == 1));
    // Then one main cluster at a time.
    w.report_one("canary", Phase::Available);
    w.step();
    let moved = |w: &World| {
        ["m-1", "m-2", "m-3"]
            .iter()
            .filter(|c| w.image_of(c) == 2)
            .count()
    };
    assert_eq!(moved(&w), 1);
    assert_eq!(w.event("WaveStarted").len(), 2);
    w.step();
    assert_eq!(
        moved(&w),
        1,
        "maxUnavailable 1: the next waits for the first to be Available"
    );
    w.report(Phase::Available);
    w.step();
    assert_eq!(moved(&w), 2);
    w.settle();
    assert_eq!(moved(&w), 3);
    assert_eq!(w.event("Completed").len(), 1);
    assert!(w.event("Completed")[0].message.contains("revision 2"));
}

#[test]
fn a_pause_holds_across_new_revisions_until_resumed() {
    let mut w = rings();
    w.settle();
    w.record.rollout.paused = true;
    w.apply(THREE_WAVES, "web:2");
    w.step();
    w.apply(THREE_WAVES, "web:3");
    w.settle();
    assert!(w.record.rollout.paused);
    assert!(
        w.assignments.values().all(|a| a.revision == 1),
        "nothing moved while paused"
    );
    w.record.rollout.paused = false;
    w.settle();
    assert!(w.assignments.values().all(|a| a.revision == 3));
}

#[test]
fn a_cluster_not_available_by_the_deadline_halts_the_rollout_with_the_real_deadline() {
    let mut w = rings();
    w.settle();
    w.apply(THREE_WAVES, "web:broken");
    w.step();
    w.report_one("canary", Phase::Degraded);
    w.now += 100;
    w.step();
    assert!(
        w.record.rollout.halted.is_empty(),
        "at the deadline, not yet past it"
    );
    w.now += 1;
    w.step();
    let halted = &w.record.rollout.halted;
    assert!(
        halted.contains("progressDeadlineSeconds 100s")
            && halted.contains("canary")
            && halted.contains("Degraded"),
        "{halted}"
    );
    assert_eq!(w.event("Halted").len(), 1);
    w.now += 1000;
    w.report(Phase::Degraded);
    w.step();
    assert!(
        ["m-1", "m-2", "m-3"].iter().all(|c| w.image_of(c) == 1),
        "a halt holds"
    );
    assert_eq!(w.event("Halted").len(), 1, "one event per decision");
}

#[test]
fn a_placement_made_late_in_a_wave_gets_its_own_deadline() {
    // Finding 2: a failover placement halted the rollout at once, because the deadline
    // counted from the wave's start long before.
    let spec = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, afterSeconds: 10 } }\n  rollout: { progressDeadlineSeconds: 60 }\n";
    let mut w = World::new(&[("a", ""), ("b", "")], spec);
    w.step();
    let first = w.placed()[0].to_string();
    w.c(&first).connected = false;
    w.now += 3600;
    w.step();
    w.step();
    assert!(
        w.record.rollout.halted.is_empty(),
        "{}",
        w.record.rollout.halted
    );
    assert_eq!(w.placed().len(), 1);
}

#[test]
fn an_offline_cluster_does_not_hold_up_a_rollout() {
    let mut w = rings();
    w.settle();
    w.c("m-2").connected = false;
    w.apply(THREE_WAVES, "web:2");
    w.settle();
    assert_eq!(
        w.image_of("m-2"),
        2,
        "it gets its copy when it returns: {:#?} {:#?}",
        w.events,
        w.record.rollout
    );
    assert!(w.record.rollout.complete);
}

#[test]
fn after_a_hub_start_a_wave_waits_for_its_clusters_to_reconnect() {
    let mut w = rings();
    w.settle();
    w.apply(THREE_WAVES, "web:2");
    w.step();
    let wave = w.record.rollout.wave;
    // The hub restarts: nobody is connected yet, and "away" counts from the start.
    for c in &mut w.clusters {
        c.connected = false;
        c.offline_since = w.now;
    }
    w.now += 5;
    let events = w.events.len();
    w.step();
    assert_eq!(
        w.record.rollout.wave, wave,
        "the rollout moved: {:#?}",
        w.events
    );
    assert!(!w.record.rollout.complete);
    assert_eq!(
        w.events.len(),
        events,
        "no wave starts again: {:#?}",
        w.events
    );
    // Away past the settle time, the wave no longer waits for them.
    w.now += 30;
    w.settle();
    assert!(w.record.rollout.complete, "{:#?}", w.record.rollout);
}

#[test]
fn a_deleting_workload_is_left_alone() {
    let mut w = World::new(&[("a", "")], "");
    w.settle();
    w.record.deleting = true;
    assert!(w.step().is_empty());
}

#[test]
fn divided_replicas_add_up_after_a_failover() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 2, failover: { enabled: true, afterSeconds: 10 } }\n  replicas: { target: { kind: Deployment, name: web }, total: 5 }\n";
    let mut w = World::new(&[("a", ""), ("b", ""), ("c", "")], spec);
    w.settle();
    let lost = w.placed()[0].to_string();
    w.c(&lost).connected = false;
    w.now += 10;
    w.settle();
    assert_eq!(w.placed().len(), 2);
    assert!(!w.placed().contains(&lost.as_str()));
    assert!(w.reasons().contains(&"Replaced"));
}

#[test]
fn a_workload_short_of_clusters_says_so_until_one_is_available() {
    let mut w = World::new(&[("eu-1", "region=eu"), ("eu-2", "region=eu")], ONE_IN_EU);
    w.c("eu-1").connected = false;
    w.c("eu-2").connected = false;
    assert!(w.step().short, "maxClusters 1 and nothing available");
    w.c("eu-2").connected = true;
    let p = w.step();
    assert!(!p.short);
    assert_eq!(w.placed(), vec!["eu-2"]);
    // Without maxClusters: short while a selected cluster cannot take it.
    let mut w = World::new(&[("a", ""), ("b", "")], ALL);
    w.c("b").unreachable_since = Some(T0);
    assert!(w.step().short);
    w.c("b").unreachable_since = None;
    assert!(!w.step().short);
    assert_eq!(w.placed(), vec!["a", "b"]);
}

#[test]
fn a_failover_never_picks_a_cluster_outside_the_team_s_reach() {
    let spec = "  placement: { clusterSelector: {}, maxClusters: 1, failover: { enabled: true, afterSeconds: 10 } }\n";
    let mut w = World::new(&[("a", ""), ("b", ""), ("c", "")], spec);
    w.settle();
    let lost = w.placed()[0].to_string();
    let others: Vec<String> = ["a", "b", "c"]
        .iter()
        .filter(|c| **c != lost)
        .map(|c| c.to_string())
        .collect();
    w.out_of_scope.insert(others[0].clone());
    w.c(&lost).connected = false;
    w.now += 10;
    w.step();
    assert_eq!(w.placed(), vec![others[1].as_str()]);
}
