//! Scheduling on the hub: which clusters run a workload (placement, spread, taints,
//! divided replicas), how a new revision reaches clusters that run an older one (rollout
//! waves, `maxUnavailable`, deadlines), and replacing clusters that stay Offline (failover).
//!
//! [`Hub::reconcile_workload`] is the one place that writes assignments from a workload's
//! spec; it runs after an apply, when clusters change, and on a tick. Every decision is an
//! event (`tetherctl events`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_common::time::{unix_now, unix_now_ms};
use tether_common::workload::Workload;
use tether_common::workload::bundle;
use tether_common::workload::schedule::{self, Candidate, Rollout};
use tokio_util::sync::CancellationToken;

use crate::control::error::HubError;
use crate::control::workloads::{Ledger, Renderer};
use crate::hub::Hub;
use crate::sessions::delivery::Hint;
use crate::store::records::{
    AssignmentRecord, ClusterRecord, EventRecord, Put, RolloutState, WorkloadRecord,
};
use crate::store::{Batch, Tree};

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

fn event_key(unix_ms: i64) -> Vec<u8> {
    let mut k = (unix_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(&EVENT_SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    k
}

/// Adds an event to `batch` and logs it.
pub(crate) fn event(
    batch: &mut Batch,
    workload: &str,
    cluster: &str,
    reason: &str,
    message: String,
) {
    tracing::info!(workload, cluster, reason, "{message}");
    let r = EventRecord {
        unix_ms: unix_now_ms(),
        workload: workload.to_string(),
        cluster: cluster.to_string(),
        reason: reason.to_string(),
        message,
    };
    batch.put_event(&event_key(r.unix_ms), &r);
}

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

#[derive(Debug, Clone)]
pub struct RolloutView {
    pub workload: String,
    pub revision: u64,
    /// Progressing, Paused, Halted or Complete.
    pub state: String,
    pub reason: String,
    pub current_wave: usize,
    pub max_unavailable: usize,
    pub waves: Vec<RolloutWave>,
}

/// Where a workload may be placed: anywhere (no team), or where its team's operator grants
/// reach; and the confinement its copies carry.
pub(crate) struct PlacementScope {
    team: Option<crate::control::tenancy::TeamScope>,
    cluster_scoped: bool,
    /// The team no longer permits the workload (its namespaces or grants changed): it is
    /// placed nowhere.
    revoked: bool,
    pub(crate) confine: Option<tether_common::workload::bundle::Confinement>,
}

impl PlacementScope {
    pub(crate) fn allows(&self, labels: &tether_common::labels::Labels) -> bool {
        match &self.team {
            None => !self.revoked,
            Some(t) => !self.revoked && t.may_place(labels, self.cluster_scoped),
        }
    }
}

impl Hub {
    /// The placement scope of a workload owned by `team` ("" for none).
    pub(crate) fn placement_scope(
        &self,
        team: &str,
        w: &Workload,
    ) -> Result<PlacementScope, HubError> {
        if team.is_empty() {
            return Ok(PlacementScope {
                team: None,
                cluster_scoped: true,
                revoked: false,
                confine: None,
            });
        }
        let sets = self.records.cluster_sets()?;
        let Some(t) = self.records.team(team)? else {
            tracing::warn!(workload = %w.metadata.name, team, "the workload's team is gone: placed nowhere");
            return Ok(PlacementScope {
                team: None,
                cluster_scoped: false,
                revoked: true,
                confine: None,
            });
        };
        let t = crate::control::tenancy::TeamScope::of(&t, &sets);
        let (cluster_scoped, revoked) = match t.check(w) {
            Ok(cs) => (cs, false),
            Err(e) => {
                tracing::warn!(workload = %w.metadata.name, team, error = %e, "the team no longer permits this workload: placed nowhere");
                (false, true)
            }
        };
        Ok(PlacementScope {
            confine: Some(t.confinement()),
            team: Some(t),
            cluster_scoped,
            revoked,
        })
    }

    /// The moment from which a cluster counts as Offline: after its last-seen time, and not
    /// before this hub started (after a restart, agents have not had a chance to return).
    fn offline_since(&self, c: &ClusterRecord) -> i64 {
        c.last_seen_unix.max(self.started_unix)
    }

    fn live(&self, cluster: &str) -> bool {
        self.sessions.contains(cluster)
    }

    /// Available on the revision it was given, and the cluster is live.
    fn available(&self, a: &AssignmentRecord) -> bool {
        self.live(&a.cluster)
            && self
                .records
                .status(&a.cluster, &a.workload)
                .ok()
                .flatten()
                .is_some_and(|s| {
                    s.revision == a.revision && s.phase == tether_common::workload::Phase::Available
                })
    }

    /// Of `placed`, the clusters that are live and Available on their revision (statuses
    /// read from one snapshot).
    fn available_of(
        &self,
        workload: &str,
        placed: &[&AssignmentRecord],
    ) -> Result<BTreeSet<String>, HubError> {
        let live: Vec<&AssignmentRecord> = placed
            .iter()
            .copied()
            .filter(|a| self.live(&a.cluster))
            .collect();
        let names: Vec<String> = live.iter().map(|a| a.cluster.clone()).collect();
        let statuses = self.records.statuses_of(workload, &names)?;
        Ok(live
            .into_iter()
            .zip(statuses)
            .filter(|(a, s)| {
                s.as_ref().is_some_and(|s| {
                    s.revision == a.revision && s.phase == tether_common::workload::Phase::Available
                })
            })
            .map(|(a, _)| a.cluster.clone())
            .collect())
    }

    /// Brings a workload's assignments in line with its spec: places it on chosen clusters,
    /// takes it off others, replaces clusters Offline past the failover window, and moves
    /// clusters running an older copy to the new one as the rollout allows. Returns the
    /// clusters whose assignment changed.
    pub async fn reconcile_workload(&self, name: &str) -> Result<Vec<String>, HubError> {
        let guard = self.write_lock.lock().await;
        let Some(mut rec) = self.records.workload(name)? else {
            return Ok(Vec::new());
        };
        if rec.deleting {
            return Ok(Vec::new());
        }
        let w: Workload = serde_json::from_value(rec.workload.clone()).map_err(|e| {
            HubError::FailedPrecondition(format!("stored workload {name} does not parse: {e}"))
        })?;
        let now = unix_now();
        let mut batch = Batch::new();
        let mut ledger = Ledger::default();
        let mut touched = Vec::new();
        let clusters = self.records.clusters()?;
        let by_name: BTreeMap<&str, &ClusterRecord> =
            clusters.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut assignments: BTreeMap<String, AssignmentRecord> = BTreeMap::new();
        let of_workload = self.records.clusters_of_workload(name)?;
        for (c, a) in of_workload
            .iter()
            .zip(self.records.assignments_of(name, &of_workload)?)
        {
            if let Some(a) = a {
                assignments.insert(c.clone(), a);
            }
        }
        // A team's workload runs only where the team's operator grants reach.
        let team = self.placement_scope(&rec.team, &w)?;
        let candidates: Vec<Candidate<'_>> = clusters
            .iter()
            .filter(|c| team.allows(&c.labels))
            .map(|c| Candidate {
                name: &c.name,
                labels: &c.labels,
                taints: &c.taints,
                cordoned: c.cordoned,
                available: self.live(&c.name),
            })
            .collect();
        let mut placed: BTreeSet<String> = assignments
            .values()
            .filter(|a| !a.deleting)
            .map(|a| a.cluster.clone())
            .collect();
        let mut excluded: BTreeSet<String> = assignments
            .values()
            .filter(|a| a.deleting)
            .map(|a| a.cluster.clone())
            .collect();

        // Failover: a placed cluster Offline past the window is replaced, if something can
        // replace it. Nothing is sent to the lost cluster until it returns.
        if let Some(f) = w.spec.placement.failover.filter(|f| f.enabled) {
            let live: BTreeSet<String> = clusters
                .iter()
                .filter(|c| self.live(&c.name))
                .map(|c| c.name.clone())
                .collect();
            for lost in placed.clone() {
                let Some(c) = by_name.get(lost.as_str()) else {
                    continue;
                };
                if live.contains(&lost) || now - self.offline_since(c) < f.after_seconds as i64 {
                    continue;
                }
                let Some(lost_candidate) = candidates.iter().find(|x| x.name == lost) else {
                    continue;
                };
                let Some(with) = schedule::replacement(
                    name,
                    &w.spec,
                    lost_candidate,
                    &candidates,
                    &placed,
                    &live,
                ) else {
                    continue;
                };
                if !self.failover_budget.try_take() {
                    tracing::warn!(workload = name, cluster = %lost, "failover deferred: the hub-wide failover rate is exhausted");
                    continue;
                }
                let with = with.to_string();
                placed.remove(&lost);
                excluded.insert(lost.clone());
                if let Some(mut a) = assignments.get(&lost).cloned() {
                    a.deleting = true;
                    a.revision = rec.revision;
                    batch.put_assignment(&a);
                    assignments.insert(lost.clone(), a);
                }
                event(
                    &mut batch,
                    name,
                    &lost,
                    "Replaced",
                    format!(
                        "cluster {lost} Offline for {}s (over {}s): replaced by {with}; it removes the workload when it returns",
                        now - self.offline_since(c),
                        f.after_seconds
                    ),
                );
            }
        }

        let chosen = schedule::choose(name, &w.spec, &candidates, &placed, &excluded);
        let chosen_set: BTreeSet<&String> = chosen.iter().collect();
        let shares = w.spec.replicas.as_ref().map(|split| {
            let members: Vec<(&str, &tether_common::labels::Labels)> = chosen
                .iter()
                .filter_map(|n| {
                    by_name
                        .get(n.as_str())
                        .map(|c| (c.name.as_str(), &c.labels))
                })
                .collect();
            schedule::shares(split, &members)
        });
        let mut renderer = Renderer::new(&w, self.settings.max_bundle_size, team.confine.clone());
        let rollout = w.spec.rollout.clone().unwrap_or_default();
        // Clusters that run an older copy: they move to their target as the rollout allows.
        let mut outdated: Vec<String> = Vec::new();
        for cluster in &chosen {
            let Some(c) = by_name.get(cluster.as_str()) else {
                continue;
            };
            let share = shares.as_ref().and_then(|s| s.get(cluster).copied());
            let copy = match renderer.copy_for(cluster, &c.labels, share) {
                Ok(copy) => copy,
                Err(e) => {
                    tracing::warn!(workload = name, cluster = %cluster, error = %e, "cannot render; not placed");
                    continue;
                }
            };
            match assignments.get(cluster) {
                None => {
                    let json = copy.json.clone();
                    ledger.add(&copy.hash, || bundle::gzip(&json));
                    let a = AssignmentRecord {
                        cluster: cluster.clone(),
                        workload: name.to_string(),
                        revision: rec.revision,
                        bundle: copy.hash.clone(),
                        deleting: false,
                        target: copy.hash.clone(),
                        ..Default::default()
                    };
                    batch.put_assignment(&a);
                    event(
                        &mut batch,
                        name,
                        cluster,
                        "Placed",
                        format!("placed on {cluster} at revision {}", rec.revision),
                    );
                    touched.push(cluster.clone());
                    assignments.insert(cluster.clone(), a);
                }
                Some(a) if a.deleting => {
                    // Chosen again while leaving: it is simply kept.
                    let json = copy.json.clone();
                    ledger.add(&copy.hash, || bundle::gzip(&json));
                    ledger.remove(&a.bundle);
                    let a2 = AssignmentRecord {
                        revision: rec.revision,
                        bundle: copy.hash.clone(),
                        target: copy.hash.clone(),
                        deleting: false,
                        ..a.clone()
                    };
                    batch.put_assignment(&a2);
                    touched.push(cluster.clone());
                    assignments.insert(cluster.clone(), a2);
                }
                Some(a) if a.bundle == copy.hash => {
                    if a.target != copy.hash {
                        let mut a2 = a.clone();
                        a2.target = copy.hash.clone();
                        batch.put_assignment(&a2);
                        assignments.insert(cluster.clone(), a2);
                    }
                }
                Some(a) => {
                    if a.target != copy.hash {
                        let mut a2 = a.clone();
                        a2.target = copy.hash.clone();
                        batch.put_assignment(&a2);
                        assignments.insert(cluster.clone(), a2);
                    }
                    outdated.push(cluster.clone());
                }
            }
        }
        // Clusters no longer chosen: the workload leaves them.
        for (cluster, a) in assignments.clone() {
            if !a.deleting && !chosen_set.contains(&cluster) {
                let a2 = AssignmentRecord {
                    deleting: true,
                    revision: rec.revision,
                    ..a
                };
                batch.put_assignment(&a2);
                event(
                    &mut batch,
                    name,
                    &cluster,
                    "Removed",
                    format!("no longer placed on {cluster}"),
                );
                touched.push(cluster.clone());
                assignments.insert(cluster, a2);
            }
        }

        // A cluster whose copy changed without a new spec (its labels, a failover that
        // redistributed replicas) needs a new revision: the agent tells copies apart by it.
        let stale_revision: Vec<&String> = outdated
            .iter()
            .filter(|c| {
                assignments
                    .get(*c)
                    .is_some_and(|a| a.revision >= rec.revision)
            })
            .collect();
        if !stale_revision.is_empty() {
            rec.revision += 1;
            batch.put_workload(&rec);
            event(
                &mut batch,
                name,
                "",
                "Revised",
                format!(
                    "revision {}: the copies of {} changed (placement, labels or replica shares)",
                    rec.revision,
                    stale_revision
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        // The rollout: waves in order, at most maxUnavailable clusters not Available.
        if rec.rollout.revision != rec.revision {
            rec.rollout = RolloutState {
                revision: rec.revision,
                wave_started_unix: now,
                ..RolloutState::default()
            };
        }
        let state_before = rec.rollout.clone();
        let placed_now: Vec<&AssignmentRecord> =
            assignments.values().filter(|a| !a.deleting).collect();
        let available: BTreeSet<String> = self.available_of(name, &placed_now)?;
        let outdated_set: HashSet<&str> = outdated.iter().map(String::as_str).collect();
        let budget_total = rollout.max_unavailable.of(placed_now.len()).unwrap_or(1);
        let unavailable = placed_now.len() - available.len();
        let mut budget = budget_total.saturating_sub(unavailable);
        let wave_of = |cluster: &str| {
            by_name
                .get(cluster)
                .map_or(rollout.waves.len(), |c| rollout.wave_of(&c.labels))
        };
        // A wave is done when every cluster in it has its target and is Available (or Offline:
        // it gets the new revision when it returns).
        let waves = rollout.waves.len() + 1;
        let done = |wave: usize| {
            placed_now
                .iter()
                .filter(|a| wave_of(&a.cluster) == wave)
                .all(|a| {
                    !outdated_set.contains(a.cluster.as_str())
                        && (available.contains(&a.cluster) || !self.live(&a.cluster))
                })
        };
        let current = (0..waves).find(|w| !done(*w)).unwrap_or(waves);
        if current >= waves {
            if !rec.rollout.complete {
                rec.rollout.complete = true;
                if rec.revision > 1 {
                    event(
                        &mut batch,
                        name,
                        "",
                        "Completed",
                        format!("revision {} rolled out", rec.revision),
                    );
                }
            }
        } else {
            rec.rollout.complete = false;
            if current != rec.rollout.wave {
                rec.rollout.wave = current;
                rec.rollout.wave_started_unix = now;
                if !rollout.waves.is_empty() {
                    event(
                        &mut batch,
                        name,
                        "",
                        "WaveStarted",
                        format!("revision {}: wave {} started", rec.revision, current + 1),
                    );
                }
            }
            let overdue =
                now - rec.rollout.wave_started_unix > rollout.progress_deadline_seconds as i64;
            if overdue && rec.rollout.halted.is_empty() && !rec.rollout.paused {
                let late: Vec<String> = placed_now
                    .iter()
                    .filter(|a| {
                        wave_of(&a.cluster) == current
                            && self.live(&a.cluster)
                            && !available.contains(&a.cluster)
                    })
                    .map(|a| {
                        let s = self.records.status(&a.cluster, name).ok().flatten();
                        let why = s
                            .map(|s| format!("{} {}", s.phase, s.message))
                            .unwrap_or_else(|| "no status".into());
                        format!("{}: {}", a.cluster, why.trim())
                    })
                    .collect();
                rec.rollout.halted = format!(
                    "wave {} did not become Available within {}s ({})",
                    current + 1,
                    rollout.progress_deadline_seconds,
                    late.join("; ")
                );
                event(
                    &mut batch,
                    name,
                    "",
                    "Halted",
                    format!("revision {}: {}", rec.revision, rec.rollout.halted),
                );
            }
            if !rec.rollout.paused && rec.rollout.halted.is_empty() {
                let mut in_wave: Vec<&String> =
                    outdated.iter().filter(|c| wave_of(c) == current).collect();
                in_wave.sort();
                for cluster in in_wave {
                    let free = !available.contains(cluster);
                    if !free {
                        if budget == 0 {
                            continue;
                        }
                        budget -= 1;
                    }
                    let Some(a) = assignments.get(cluster).cloned() else {
                        continue;
                    };
                    // The target's bundle is stored when it is first given to a cluster.
                    let Some(c) = by_name.get(cluster.as_str()) else {
                        continue;
                    };
                    let share = shares.as_ref().and_then(|s| s.get(cluster).copied());
                    let Ok(copy) = renderer.copy_for(cluster, &c.labels, share) else {
                        continue;
                    };
                    let json = copy.json.clone();
                    ledger.add(&copy.hash, || bundle::gzip(&json));
                    ledger.remove(&a.bundle);
                    let a2 = AssignmentRecord {
                        revision: rec.revision,
                        bundle: copy.hash.clone(),
                        target: copy.hash.clone(),
                        ..a
                    };
                    batch.put_assignment(&a2);
                    touched.push(cluster.clone());
                }
            }
        }
        if rec.rollout != state_before {
            batch.put_workload(&rec);
        }
        drop(renderer);
        if batch.is_empty() {
            return Ok(touched);
        }
        ledger.write(self, &mut batch)?;
        self.records.commit(&batch).await?;
        drop(guard);
        for c in &touched {
            self.sessions.hint(c, Hint::Workload(name.to_string()));
        }
        Ok(touched)
    }

    /// Places workloads on a cluster that just joined. A workload whose placement depends on
    /// the other clusters (`maxClusters`, divided replicas) is reconciled in full; for the
    /// rest only this cluster is looked at, so a join costs the same with ten clusters or
    /// ten thousand.
    pub async fn place_joined_cluster(&self, cluster: &str) -> Result<(), HubError> {
        for rec in self.records.workloads()? {
            if rec.deleting {
                continue;
            }
            let Ok(w) = serde_json::from_value::<Workload>(rec.workload.clone()) else {
                continue;
            };
            if w.spec.placement.max_clusters.is_some() || w.spec.replicas.is_some() {
                self.reconcile_workload(&rec.name).await?;
            } else {
                self.place_one(&rec.name, cluster).await?;
            }
        }
        Ok(())
    }

    /// Gives `cluster` its copy of workload `name` at the current revision, if the placement
    /// selects it and it has none yet.
    async fn place_one(&self, name: &str, cluster: &str) -> Result<(), HubError> {
        let guard = self.write_lock.lock().await;
        let (Some(rec), Some(c)) = (self.records.workload(name)?, self.records.cluster(cluster)?)
        else {
            return Ok(());
        };
        if rec.deleting || self.records.assignment(cluster, name)?.is_some() {
            return Ok(());
        }
        let w: Workload = serde_json::from_value(rec.workload.clone()).map_err(|e| {
            HubError::FailedPrecondition(format!("stored workload {name} does not parse: {e}"))
        })?;
        let p = &w.spec.placement;
        let candidate = Candidate {
            name: &c.name,
            labels: &c.labels,
            taints: &c.taints,
            cordoned: c.cordoned,
            available: self.live(&c.name),
        };
        let team = self.placement_scope(&rec.team, &w)?;
        if !p.selects(cluster, &c.labels)
            || !candidate.schedulable(&p.tolerations)
            || !team.allows(&c.labels)
        {
            return Ok(());
        }
        let mut renderer = Renderer::new(&w, self.settings.max_bundle_size, team.confine.clone());
        let copy = match renderer.copy_for(cluster, &c.labels, None) {
            Ok(copy) => copy,
            Err(e) => {
                tracing::warn!(workload = name, cluster, error = %e, "cannot render; not placed");
                return Ok(());
            }
        };
        let mut batch = Batch::new();
        let mut ledger = Ledger::default();
        let json = copy.json.clone();
        ledger.add(&copy.hash, || bundle::gzip(&json));
        batch.put_assignment(&AssignmentRecord {
            cluster: cluster.to_string(),
            workload: name.to_string(),
            revision: rec.revision,
            bundle: copy.hash.clone(),
            deleting: false,
            target: copy.hash.clone(),
            ..Default::default()
        });
        event(
            &mut batch,
            name,
            cluster,
            "Placed",
            format!("placed on {cluster} at revision {}", rec.revision),
        );
        ledger.write(self, &mut batch)?;
        self.records.commit(&batch).await?;
        drop(guard);
        self.sessions
            .hint(cluster, Hint::Workload(name.to_string()));
        Ok(())
    }

    /// Whether a workload needs the scheduler's attention now.
    fn needs_tick(&self, rec: &WorkloadRecord) -> bool {
        if rec.deleting {
            return false;
        }
        if !rec.rollout.complete || rec.rollout.revision != rec.revision {
            return true;
        }
        serde_json::from_value::<Workload>(rec.workload.clone())
            .ok()
            .and_then(|w| w.spec.placement.failover)
            .is_some_and(|f| f.enabled)
    }

    /// One pass of the scheduler over every workload that needs it.
    pub async fn schedule_tick(&self) {
        let Ok(workloads) = self.records.workloads() else {
            return;
        };
        for rec in workloads.iter().filter(|r| self.needs_tick(r)) {
            if let Err(e) = self.reconcile_workload(&rec.name).await {
                tracing::warn!(workload = %rec.name, error = %e, "scheduling failed");
            }
        }
    }

    /// Drops events older than `retention`.
    pub async fn prune_events(&self, retention: Duration) -> Result<usize, HubError> {
        let cutoff = unix_now_ms() - retention.as_millis() as i64;
        Ok(self.records.prune_before(Tree::Events, cutoff).await?)
    }

    /// Events since `since_ms`, for one workload or all, oldest first.
    pub fn events_since(
        &self,
        since_ms: i64,
        workload: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, HubError> {
        let from = (since_ms.max(0) as u64).to_be_bytes();
        let to = u64::MAX.to_be_bytes();
        let all: Vec<EventRecord> = self
            .records
            .event_range(&from, &to, usize::MAX)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| workload.is_empty() || e.workload == workload)
            .collect();
        let skip = all.len().saturating_sub(limit);
        Ok(all.into_iter().skip(skip).collect())
    }

    /// Where a workload's rollout stands.
    pub fn rollout_status(&self, name: &str) -> Result<RolloutView, HubError> {
        let (rec, _) = self.get_workload(name)?;
        let w: Workload = serde_json::from_value(rec.workload.clone())
            .map_err(|e| HubError::FailedPrecondition(e.to_string()))?;
        let rollout: Rollout = w.spec.rollout.clone().unwrap_or_default();
        let mut waves: Vec<RolloutWave> = rollout
            .waves
            .iter()
            .map(|wv| RolloutWave {
                selector: serde_json::to_string(&wv.cluster_selector).unwrap_or_default(),
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
        let mut placed = 0;
        for c in self.records.clusters_of_workload(name)? {
            let Some(a) = self.records.assignment(&c, name)? else {
                continue;
            };
            if a.deleting {
                continue;
            }
            placed += 1;
            let labels = self
                .records
                .cluster(&c)?
                .map(|r| r.labels)
                .unwrap_or_default();
            let status = self.records.status(&c, name)?;
            let entry = RolloutCluster {
                cluster: c.clone(),
                revision: a.revision,
                updated: a.at_target(),
                available: self.available(&a),
                offline: !self.live(&c),
                phase: status
                    .map(|s| {
                        if s.revision == a.revision {
                            s.phase.to_string()
                        } else {
                            "Pending".into()
                        }
                    })
                    .unwrap_or_else(|| "Pending".into()),
            };
            let i = rollout.wave_of(&labels);
            waves[i].clusters.push(entry);
        }
        let state = if rec.rollout.complete && rec.rollout.revision == rec.revision {
            "Complete"
        } else if !rec.rollout.halted.is_empty() {
            "Halted"
        } else if rec.rollout.paused {
            "Paused"
        } else {
            "Progressing"
        };
        Ok(RolloutView {
            workload: name.to_string(),
            revision: rec.revision,
            state: state.into(),
            reason: rec.rollout.halted.clone(),
            current_wave: rec.rollout.wave,
            max_unavailable: rollout.max_unavailable.of(placed).unwrap_or(1),
            waves,
        })
    }

    /// Pauses or resumes a rollout (resuming also clears a halt).
    pub async fn set_rollout_paused(&self, name: &str, paused: bool) -> Result<(), HubError> {
        {
            let _w = self.write_lock.lock().await;
            let (mut rec, _) = self.get_workload(name)?;
            rec.rollout.paused = paused;
            let mut batch = Batch::new();
            if !paused {
                if !rec.rollout.halted.is_empty() {
                    rec.rollout.halted.clear();
                }
                // The deadline counts from the resume.
                rec.rollout.wave_started_unix = unix_now();
            }
            let (reason, msg) = if paused {
                ("Paused", "rollout paused")
            } else {
                ("Resumed", "rollout resumed")
            };
            event(
                &mut batch,
                name,
                "",
                reason,
                format!("revision {}: {msg}", rec.revision),
            );
            batch.put_workload(&rec);
            self.records.commit(&batch).await?;
        }
        self.reconcile_workload(name).await?;
        Ok(())
    }

    /// Goes back to the workload as it was before its current revision (as a new revision).
    pub async fn undo_rollout(&self, name: &str, by: &str) -> Result<u64, HubError> {
        let (rec, _) = self.get_workload(name)?;
        let previous = rec.previous.clone().ok_or_else(|| {
            HubError::FailedPrecondition(format!(
                "workload {name:?} has no earlier revision to go back to"
            ))
        })?;
        let w: Workload = serde_json::from_value(previous)
            .map_err(|e| HubError::FailedPrecondition(e.to_string()))?;
        let team = self.team_scopes()?.into_iter().find(|t| t.name == rec.team);
        if !rec.team.is_empty() && team.is_none() {
            return Err(HubError::FailedPrecondition(format!(
                "workload {name:?} belongs to team {:?}, which is gone",
                rec.team
            )));
        }
        let applied = self.apply_workload(w, by, team.as_ref()).await?;
        let mut batch = Batch::new();
        event(
            &mut batch,
            name,
            "",
            "Undone",
            format!(
                "revision {} undone: revision {} restores the one before",
                rec.revision, applied.revision
            ),
        );
        self.records.commit(&batch).await?;
        Ok(applied.revision)
    }
}

/// Hub-wide rate limit on failovers, so a partition of many clusters does not move every
/// workload at once.
#[derive(Debug)]
pub struct FailoverBudget {
    per_minute: u32,
    window: std::sync::Mutex<(std::time::Instant, u32)>,
}

impl FailoverBudget {
    pub fn new(per_minute: u32) -> Self {
        FailoverBudget {
            per_minute,
            window: std::sync::Mutex::new((std::time::Instant::now(), 0)),
        }
    }

    pub fn try_take(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(60) {
            *w = (std::time::Instant::now(), 0);
        }
        if w.1 >= self.per_minute {
            return false;
        }
        w.1 += 1;
        true
    }
}

/// Runs [`Hub::schedule_tick`] every `interval` until `stop`.
pub async fn run(hub: Arc<Hub>, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => hub.schedule_tick().await,
        }
    }
}
