//! The planner: from what the hub knows about one workload (its record, the clusters, their
//! assignments and reports) and the time, what should change — assignments, bundle
//! references, the rollout's state, and one event per decision.
//!
//! Pure: no store, no clock, no sessions, so every rule below is a unit test with plain data.
//! The rules, in the order they apply:
//!
//! 1. **Retire**: a copy replaced by a health failover keeps running until its replacement
//!    is Available, then it is taken off; if the replacement went away, it stays.
//! 2. **Fail over** (opt-in): a placed cluster Offline for `afterSeconds`, or (with
//!    `unhealthySeconds`) connected but with its member API unreachable or its copy Degraded
//!    that long, is replaced by an available cluster the placement selects, within the
//!    hub-wide budget. An Offline cluster's copy is removed when it returns; an unhealthy
//!    one's stays until the replacement is Available (rule 1).
//! 3. **Choose** ([`schedule::choose`]): placed clusters stay while selected; new ones must be
//!    connected, API-reachable, schedulable and within the team's reach.
//! 4. **Place**: a newly chosen cluster gets the current revision at once.
//! 5. **Leave**: a cluster no longer chosen is told to remove its copy.
//! 6. **Revise**: a copy that changed without a new spec (labels, replica shares) gets a new
//!    revision, because agents tell copies apart by revision.
//! 7. **Roll out**: clusters running an older copy move wave by wave, at most
//!    `maxUnavailable` at a time; a pause holds (across revisions) until resumed; a cluster
//!    not Available `progressDeadlineSeconds` after it got the revision halts the rollout;
//!    every wave start and every completed revision is an event.

use std::collections::{BTreeMap, BTreeSet};

use tether_common::labels::Labels;
use tether_common::workload::bundle::Confinement;
use tether_common::workload::schedule::{self, Candidate, Taint};
use tether_common::workload::{Phase, Workload};

use super::render::{BundleChanges, Copy, Renderer};
use crate::store::records::{AssignmentRecord, RolloutState, WorkloadRecord};

/// One cluster as the planner sees it.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub cordoned: bool,
    /// The hub hears its agent now.
    pub connected: bool,
    /// Offline counts from here: the later of its last contact and the hub's start (the
    /// hub's own downtime is not the cluster's).
    pub offline_since: i64,
    /// Its agent reports the member API unreachable, since then.
    pub unreachable_since: Option<i64>,
    /// Being removed from the hub: everything leaves it, nothing new goes there.
    pub removing: bool,
}

impl ClusterState {
    /// New placements go only here.
    pub fn available(&self) -> bool {
        self.connected && self.unreachable_since.is_none() && !self.removing
    }
}

/// What a cluster last reported for the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub revision: u64,
    pub phase: Phase,
    /// Since when it has reported this phase on this revision.
    pub since_unix: i64,
    pub message: String,
}

/// Everything the planner looks at for one workload.
pub struct Input<'a> {
    pub record: &'a WorkloadRecord,
    pub workload: &'a Workload,
    /// The workload's team may place it on these clusters (all of them, without a team).
    pub clusters: &'a [&'a ClusterState],
    /// Every cluster's assignment of this workload, by cluster.
    pub assignments: &'a BTreeMap<String, AssignmentRecord>,
    /// Every report about this workload, by cluster.
    pub observed: &'a BTreeMap<String, Observed>,
    /// Clusters the team no longer reaches (their copies leave).
    pub out_of_scope: &'a BTreeSet<String>,
    /// Failovers the hub-wide budget allows now.
    pub failovers_allowed: usize,
    pub max_bundle_size: usize,
    pub confine: Option<Confinement>,
    pub now: i64,
    /// A disconnected cluster stops holding up its rollout wave only once it has been away
    /// this long (seconds, from the later of its last contact and the hub's start): right
    /// after a hub starts, every agent is still reconnecting, and the rollout must not run
    /// ahead of clusters that are merely on their way back.
    pub offline_settle: i64,
}

/// A decision, for `tetherctl events` (cluster empty: the workload as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub cluster: String,
    pub reason: &'static str,
    pub message: String,
}

/// What should change.
#[derive(Debug, Default)]
pub struct Plan {
    /// The workload's record with its new revision and rollout state, if either changed.
    pub record: Option<WorkloadRecord>,
    /// Assignments to write (whole records).
    pub assignments: Vec<AssignmentRecord>,
    pub bundles: BundleChanges,
    pub events: Vec<Event>,
    /// Clusters whose copy changed: their agents are told.
    pub touched: BTreeSet<String>,
    /// Failovers this plan uses from the hub-wide budget.
    pub failovers: usize,
    /// Failovers due but over the budget (tried again later).
    pub deferred: Vec<String>,
    /// Clusters that could not be given a copy, and why (logged; retried on the next pass).
    pub problems: Vec<(String, String)>,
    /// The workload has fewer clusters than it would take if more were available.
    pub short: bool,
}

impl Plan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.record.is_none() && self.assignments.is_empty() && self.events.is_empty()
    }
}

/// Why a placed cluster is being replaced.
enum Lost {
    Offline(i64),
    Unreachable(i64),
    Degraded(i64),
}

/// Plans one workload. See the module documentation for the rules.
pub fn plan(input: &Input<'_>) -> Plan {
    let mut p = Planner::new(input);
    if input.record.deleting {
        return Plan::default();
    }
    p.retire();
    p.fail_over();
    let chosen = p.choose();
    let outdated = p.place(&chosen);
    p.leave(&chosen);
    p.revise(&outdated);
    p.roll_out(&outdated);
    p.finish()
}

struct Planner<'a> {
    input: &'a Input<'a>,
    name: &'a str,
    record: WorkloadRecord,
    by_name: BTreeMap<&'a str, &'a ClusterState>,
    /// Assignments as they will be after this plan.
    assignments: BTreeMap<String, AssignmentRecord>,
    changed: BTreeSet<String>,
    plan: Plan,
    /// Replacement -> the cluster it replaces, for the Placed event.
    replacing: BTreeMap<String, String>,
    /// The copy each outdated cluster should end up with.
    targets: BTreeMap<String, Copy>,
    renderer: Renderer<'a>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        Planner {
            input,
            name: &input.record.name,
            record: input.record.clone(),
            by_name: input
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), *c))
                .collect(),
            assignments: input.assignments.clone(),
            changed: BTreeSet::new(),
            plan: Plan::default(),
            replacing: BTreeMap::new(),
            targets: BTreeMap::new(),
            renderer: Renderer::new(input.workload, input.max_bundle_size, input.confine.clone()),
        }
    }

    fn event(&mut self, cluster: &str, reason: &'static str, message: String) {
        self.plan.events.push(Event {
            cluster: cluster.to_string(),
            reason,
            message,
        });
    }

    fn put(&mut self, a: AssignmentRecord) {
        self.changed.insert(a.cluster.clone());
        self.assignments.insert(a.cluster.clone(), a);
    }

    fn connected(&self, cluster: &str) -> bool {
        self.by_name.get(cluster).is_some_and(|c| c.connected)
    }

    /// Connected and Available on the revision it was given.
    fn is_available(&self, a: &AssignmentRecord) -> bool {
        self.connected(&a.cluster)
            && self
                .input
                .observed
                .get(&a.cluster)
                .is_some_and(|o| o.revision == a.revision && o.phase == Phase::Available)
    }

    /// Clusters that run the workload and count toward its placement.
    fn placed(&self) -> BTreeSet<String> {
        self.assignments
            .values()
            .filter(|a| !a.deleting && !a.retiring)
            .map(|a| a.cluster.clone())
            .collect()
    }

    /// Rule 1.
    fn retire(&mut self) {
        let retiring: Vec<AssignmentRecord> = self
            .assignments
            .values()
            .filter(|a| a.retiring && !a.deleting)
            .cloned()
            .collect();
        for a in retiring {
            let replacement = self
                .assignments
                .get(&a.replaced_by)
                .filter(|r| !r.deleting && !r.retiring)
                .cloned();
            match replacement {
                Some(r) if self.is_available(&r) => {
                    self.event(
                        &a.cluster,
                        "Retired",
                        format!(
                            "{} is Available on revision {}: the copy on {} is removed",
                            r.cluster, r.revision, a.cluster
                        ),
                    );
                    self.plan.touched.insert(a.cluster.clone());
                    self.put(AssignmentRecord {
                        deleting: true,
                        retiring: false,
                        revision: self.record.revision,
                        ..a
                    });
                }
                Some(_) => {}
                None => {
                    // The replacement is gone (removed, or no longer selected): this copy
                    // counts again, and the placement decides afresh.
                    self.event(
                        &a.cluster,
                        "RetireCancelled",
                        format!(
                            "replacement {} is gone: {} is no longer being replaced",
                            a.replaced_by, a.cluster
                        ),
                    );
                    self.put(AssignmentRecord {
                        retiring: false,
                        replaced_by: String::new(),
                        ..a
                    });
                }
            }
        }
    }

    /// Clusters the workload may be placed on: in its team's reach, not being removed.
    fn candidates(&self) -> Vec<Candidate<'a>> {
        let out = self.input.out_of_scope;
        self.input
            .clusters
            .iter()
            .filter(|c| !c.removing && !out.contains(&c.name))
            .map(|c| Candidate {
                name: &c.name,
                labels: &c.labels,
                taints: &c.taints,
                cordoned: c.cordoned,
                available: c.available(),
            })
            .collect()
    }

    /// Whether a placed cluster should be replaced, and why.
    fn lost(&self, cluster: &str, f: &schedule::Failover) -> Option<Lost> {
        let c = self.by_name.get(cluster)?;
        let now = self.input.now;
        if !c.connected {
            let away = now - c.offline_since;
            return (away >= f.after_seconds as i64).then_some(Lost::Offline(away));
        }
        let limit = f.unhealthy_seconds? as i64;
        if let Some(since) = c.unreachable_since
            && now - since >= limit
        {
            return Some(Lost::Unreachable(now - since));
        }
        let a = self.assignments.get(cluster)?;
        let o = self.input.observed.get(cluster)?;
        (o.revision == a.revision && o.phase == Phase::Degraded && now - o.since_unix >= limit)
            .then_some(Lost::Degraded(now - o.since_unix))
    }

    /// Rule 2.
    fn fail_over(&mut self) {
        let Some(f) = self
            .input
            .workload
            .spec
            .placement
            .failover
            .filter(|f| f.enabled)
        else {
            return;
        };
        let candidates = self.candidates();
        let mut placed = self.placed();
        let mut excluded: BTreeSet<String> = self
            .assignments
            .values()
            .filter(|a| a.deleting || a.retiring)
            .map(|a| a.cluster.clone())
            .collect();
        for cluster in placed.clone() {
            let Some(why) = self.lost(&cluster, &f) else {
                continue;
            };
            let Some(lost) = candidates.iter().find(|c| c.name == cluster) else {
                continue;
            };
            // `placed` holds the replacements chosen so far: two lost clusters never get
            // the same one.
            let Some(with) = schedule::replacement(
                self.name,
                &self.input.workload.spec,
                lost,
                &candidates,
                &placed,
                &excluded,
            ) else {
                continue;
            };
            let with = with.to_string();
            if self.plan.failovers >= self.input.failovers_allowed {
                self.plan.deferred.push(cluster);
                continue;
            }
            self.plan.failovers += 1;
            placed.remove(&cluster);
            placed.insert(with.clone());
            excluded.insert(cluster.clone());
            self.replacing.insert(with.clone(), cluster.clone());
            let Some(a) = self.assignments.get(&cluster).cloned() else {
                continue;
            };
            let message = match why {
                Lost::Offline(s) => format!(
                    "{cluster} Offline for {s}s (failover.afterSeconds {}): replaced by {with}; its copy is removed when it returns",
                    f.after_seconds
                ),
                Lost::Unreachable(s) => format!(
                    "{cluster}'s Kubernetes API unreachable for {s}s (failover.unhealthySeconds {}): replaced by {with}; its copy stays until {with} is Available",
                    f.unhealthy_seconds.unwrap_or_default()
                ),
                Lost::Degraded(s) => format!(
                    "{cluster} Degraded for {s}s (failover.unhealthySeconds {}): replaced by {with}; its copy stays until {with} is Available",
                    f.unhealthy_seconds.unwrap_or_default()
                ),
            };
            self.event(&cluster, "Replaced", message);
            let a = match why {
                Lost::Offline(_) => AssignmentRecord {
                    deleting: true,
                    revision: self.record.revision,
                    ..a
                },
                Lost::Unreachable(_) | Lost::Degraded(_) => AssignmentRecord {
                    retiring: true,
                    replaced_by: with.clone(),
                    ..a
                },
            };
            self.put(a);
        }
    }

    /// Rule 3.
    fn choose(&mut self) -> Vec<String> {
        let candidates = self.candidates();
        let placed = self.placed();
        let mut excluded: BTreeSet<String> = self
            .assignments
            .values()
            .filter(|a| a.deleting || a.retiring)
            .map(|a| a.cluster.clone())
            .collect();
        excluded.extend(self.replacing.values().cloned());
        // A failover's replacement is placed even where the spread would rather not.
        let mut chosen = schedule::choose(
            self.name,
            &self.input.workload.spec,
            &candidates,
            &placed,
            &excluded,
        );
        for with in self.replacing.keys() {
            if !chosen.contains(with) {
                chosen.push(with.clone());
            }
        }
        // Short of clusters because some it would take cannot take it now: a cluster that
        // becomes available should bring the scheduler back here.
        let p = &self.input.workload.spec.placement;
        self.plan.short = match p.max_clusters {
            Some(m) => chosen.len() < m as usize,
            None => candidates.iter().any(|c| {
                !c.available
                    && !placed.contains(c.name)
                    && !excluded.contains(c.name)
                    && p.selects(c.name, c.labels)
            }),
        };
        chosen
    }

    /// Rules 4 and the first half of 7: gives newly chosen clusters their copy; returns the
    /// clusters whose copy is older than what they should run.
    fn place(&mut self, chosen: &[String]) -> Vec<String> {
        let members: Vec<(&str, &Labels)> = chosen
            .iter()
            .filter_map(|n| self.by_name.get(n.as_str()))
            .map(|c| (c.name.as_str(), &c.labels))
            .collect();
        let shares = self
            .input
            .workload
            .spec
            .replicas
            .as_ref()
            .map(|split| schedule::shares(split, &members));
        let mut outdated = Vec::new();
        for cluster in chosen {
            let Some(c) = self.by_name.get(cluster.as_str()).copied() else {
                continue;
            };
            let share = shares.as_ref().and_then(|s| s.get(cluster).copied());
            let copy = match self.renderer.copy_for(cluster, &c.labels, share) {
                Ok(copy) => copy,
                Err(e) => {
                    self.plan.problems.push((cluster.clone(), e));
                    continue;
                }
            };
            let revision = self.record.revision;
            let now = self.input.now;
            match self.assignments.get(cluster).cloned() {
                None => {
                    self.plan.bundles.add(&copy);
                    let why = match self.replacing.get(cluster) {
                        Some(lost) => format!(", replacing {lost}"),
                        None => String::new(),
                    };
                    self.event(
                        cluster,
                        "Placed",
                        format!("placed on {cluster} at revision {revision}{why}"),
                    );
                    self.plan.touched.insert(cluster.clone());
                    self.put(AssignmentRecord {
                        cluster: cluster.clone(),
                        workload: self.name.to_string(),
                        revision,
                        bundle: copy.hash.clone(),
                        target: copy.hash,
                        since_unix: now,
                        ..Default::default()
                    });
                }
                Some(a) => {
                    if a.bundle != copy.hash {
                        outdated.push(cluster.clone());
                        self.targets.insert(cluster.clone(), copy.clone());
                    }
                    if a.target != copy.hash {
                        self.put(AssignmentRecord {
                            target: copy.hash,
                            ..a
                        });
                    }
                }
            }
        }
        outdated
    }

    /// Rule 5.
    fn leave(&mut self, chosen: &[String]) {
        let chosen: BTreeSet<&String> = chosen.iter().collect();
        let leaving: Vec<AssignmentRecord> = self
            .assignments
            .values()
            .filter(|a| !a.deleting && !a.retiring && !chosen.contains(&a.cluster))
            .cloned()
            .collect();
        for a in leaving {
            let why = match self.by_name.get(a.cluster.as_str()) {
                _ if self.input.out_of_scope.contains(&a.cluster) => {
                    "outside the reach of the workload's team"
                }
                None => "the cluster is gone",
                Some(c) if c.removing => "the cluster is being removed",
                Some(c)
                    if !self
                        .input
                        .workload
                        .spec
                        .placement
                        .selects(&c.name, &c.labels) =>
                {
                    "the placement no longer selects it"
                }
                Some(_) => "the placement chose other clusters",
            };
            self.event(
                &a.cluster,
                "Removed",
                format!("no longer placed on {}: {why}", a.cluster),
            );
            self.plan.touched.insert(a.cluster.clone());
            self.put(AssignmentRecord {
                deleting: true,
                revision: self.record.revision,
                ..a
            });
        }
    }

    /// Rule 6.
    fn revise(&mut self, outdated: &[String]) {
        let stale: Vec<&str> = outdated
            .iter()
            .filter(|c| {
                self.assignments
                    .get(*c)
                    .is_some_and(|a| a.revision >= self.record.revision)
            })
            .map(String::as_str)
            .collect();
        if stale.is_empty() {
            return;
        }
        self.record.revision += 1;
        let message = format!(
            "revision {}: the copies of {} changed (their labels or replica shares)",
            self.record.revision,
            stale.join(", ")
        );
        self.event("", "Revised", message);
    }

    /// Rule 7.
    fn roll_out(&mut self, outdated: &[String]) {
        let spec = &self.input.workload.spec;
        let rollout = spec.rollout.clone().unwrap_or_default();
        let now = self.input.now;
        let revision = self.record.revision;
        if self.record.rollout.revision != revision {
            // A new revision starts its rollout afresh, but a pause holds until resumed.
            self.record.rollout = RolloutState {
                revision,
                paused: self.record.rollout.paused,
                wave_started_unix: now,
                ..RolloutState::default()
            };
        }
        let placed: Vec<AssignmentRecord> = self
            .assignments
            .values()
            .filter(|a| !a.deleting && !a.retiring)
            .cloned()
            .collect();
        let available: BTreeSet<&str> = placed
            .iter()
            .filter(|a| self.is_available(a))
            .map(|a| a.cluster.as_str())
            .collect();
        let outdated: BTreeSet<&str> = outdated.iter().map(String::as_str).collect();
        let by_name = self.by_name.clone();
        let wave_of = |cluster: &str| {
            by_name
                .get(cluster)
                .map_or(rollout.waves.len(), |c| rollout.wave_of(&c.labels))
        };
        let waves = rollout.waves.len() + 1;
        // A wave is done when every cluster in it runs its copy and is Available, or is
        // Offline (it gets the new copy when it returns). For the wave in progress and later
        // ones, Offline means away a while: right after a hub starts every agent is still
        // reconnecting, and the rollout must not run ahead of them. A wave already passed
        // stays passed while its clusters reconnect.
        let passed = if self.record.rollout.started {
            self.record.rollout.wave
        } else {
            0
        };
        let away = |wave: usize, cluster: &str| {
            !self.connected(cluster)
                && (wave < passed
                    || self.by_name.get(cluster).is_none_or(|c| {
                        self.input.now - c.offline_since >= self.input.offline_settle
                    }))
        };
        let done = |wave: usize| {
            placed
                .iter()
                .filter(|a| wave_of(&a.cluster) == wave)
                .all(|a| {
                    !outdated.contains(a.cluster.as_str())
                        && (available.contains(a.cluster.as_str()) || away(wave, &a.cluster))
                })
        };
        let current = (0..waves).find(|w| !done(*w));
        let Some(current) = current else {
            if !self.record.rollout.complete {
                self.record.rollout.complete = true;
                self.event(
                    "",
                    "Completed",
                    format!(
                        "revision {revision} rolled out: {} of {} clusters Available",
                        available.len(),
                        placed.len()
                    ),
                );
            }
            return;
        };
        self.record.rollout.complete = false;
        let label = |w: usize| {
            if w < rollout.waves.len() {
                format!(
                    "wave {} of {waves} ({})",
                    w + 1,
                    rollout.waves[w].cluster_selector
                )
            } else if rollout.waves.is_empty() {
                "wave 1 of 1 (all clusters)".to_string()
            } else {
                format!("wave {waves} of {waves} (the rest)")
            }
        };
        if !self.record.rollout.started || self.record.rollout.wave != current {
            self.record.rollout.started = true;
            self.record.rollout.wave = current;
            self.record.rollout.wave_started_unix = now;
            let members: Vec<&str> = placed
                .iter()
                .filter(|a| wave_of(&a.cluster) == current)
                .map(|a| a.cluster.as_str())
                .collect();
            self.event(
                "",
                "WaveStarted",
                format!(
                    "revision {revision}: {} started: {}",
                    label(current),
                    members.join(", ")
                ),
            );
        }
        let deadline = rollout.progress_deadline_seconds as i64;
        let wave_started = self.record.rollout.wave_started_unix;
        if self.record.rollout.halted.is_empty() && !self.record.rollout.paused {
            // Late: connected, not Available, and had its copy longer than the deadline
            // (counted from when it got the copy, or the wave started or resumed).
            let late: Vec<String> = placed
                .iter()
                .filter(|a| wave_of(&a.cluster) == current && self.connected(&a.cluster))
                .filter(|a| !outdated.contains(a.cluster.as_str()))
                .filter(|a| !available.contains(a.cluster.as_str()))
                .filter(|a| now - a.since_unix.max(wave_started) > deadline)
                .map(|a| {
                    let why = match self.input.observed.get(&a.cluster) {
                        Some(o) if o.revision == a.revision => {
                            format!("{} {}", o.phase, o.message)
                        }
                        _ => "no report on this revision".to_string(),
                    };
                    format!("{}: {}", a.cluster, why.trim())
                })
                .collect();
            if !late.is_empty() {
                self.record.rollout.halted = format!(
                    "{}: not Available within progressDeadlineSeconds {deadline}s ({})",
                    label(current),
                    late.join("; ")
                );
                let message = format!("revision {revision}: {}", self.record.rollout.halted);
                self.event("", "Halted", message);
            }
        }
        if self.record.rollout.paused || !self.record.rollout.halted.is_empty() {
            return;
        }
        // maxUnavailable counts connected clusters that are not Available: an Offline one
        // does not hold a rollout up (it gets its copy when it returns).
        let allowed = rollout.max_unavailable.of(placed.len()).unwrap_or(1);
        let unavailable = placed
            .iter()
            .filter(|a| self.connected(&a.cluster) && !available.contains(a.cluster.as_str()))
            .count();
        let mut budget = allowed.saturating_sub(unavailable);
        let mut in_wave: Vec<&str> = outdated
            .iter()
            .copied()
            .filter(|c| wave_of(c) == current)
            .collect();
        in_wave.sort();
        for cluster in in_wave {
            // Updating a cluster that is not Available anyway costs nothing.
            if available.contains(cluster) {
                if budget == 0 {
                    continue;
                }
                budget -= 1;
            }
            let Some(a) = self.assignments.get(cluster).cloned() else {
                continue;
            };
            let Some(copy) = self.targets.get(cluster).cloned() else {
                continue;
            };
            self.plan.bundles.add(&copy);
            self.plan.bundles.remove(&a.bundle);
            self.plan.touched.insert(cluster.to_string());
            self.put(AssignmentRecord {
                revision,
                bundle: copy.hash.clone(),
                target: copy.hash,
                since_unix: now,
                ..a
            });
        }
    }

    fn finish(mut self) -> Plan {
        if self.record != *self.input.record {
            self.plan.record = Some(self.record.clone());
        }
        let mut changed: Vec<AssignmentRecord> = Vec::new();
        for c in &self.changed {
            if let Some(a) = self.assignments.get(c)
                && self.input.assignments.get(c) != Some(a)
            {
                changed.push(a.clone());
            }
        }
        self.plan.assignments = changed;
        self.plan
    }
}

#[cfg(test)]
mod tests;
