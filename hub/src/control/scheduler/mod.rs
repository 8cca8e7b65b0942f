//! Scheduling on the hub: which clusters run a workload, how a new revision reaches them,
//! and replacing clusters that are lost.
//!
//! One task, the [`Controller`], owns every write of workloads, assignments, bundles and
//! their events. The rest of the hub talks to it through its [`Scheduler`] handle:
//!
//! - requests that need an answer (apply, delete, pause/resume, undo, an agent's "removed",
//!   forgetting a removed cluster) go through a channel and are served one at a time, so
//!   an apply is one atomic commit of the spec and its plan;
//! - everything else that may change a placement (a join, a label, a cordon, a taint, a
//!   connection or a report) only names the workloads to look at again, in a coalescing
//!   queue: a thousand joins in a second cost one pass over each workload;
//! - a tick looks again at workloads with something time-based pending (a rollout, a
//!   failover window, a retiring copy), and at all of them every [`FULL_PASS_EVERY`] ticks.
//!
//! Each pass reads a workload's records, asks the pure [`plan::plan`] what should change,
//! and commits the plan with its events in one batch; agents are then hinted.

pub mod plan;
pub mod render;
pub mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tether_common::time::{unix_now, unix_now_ms};
use tether_common::workload::Workload;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::plan::{ClusterState, Input, Observed, Plan};
pub(crate) use self::render::{BundleChanges, Renderer};
use crate::control::error::HubError;
use crate::control::tenancy::TeamScope;
use crate::sessions::Sessions;
use crate::sessions::delivery::Hint;
use crate::store::records::{
    AssignmentRecord, ClusterRecord, EventRecord, Put, Records, RevisionRecord, WorkloadRecord,
};
use crate::store::{Batch, Tree};

/// Specs kept per workload for `rollout history` and `undo --to-revision`.
pub const HISTORY_LIMIT: usize = 10;

/// Every this many ticks, every workload is looked at again (a safety net: whatever changes
/// a placement also queues the workloads it affects).
pub const FULL_PASS_EVERY: u64 = 60;

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

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub name: String,
    pub revision: u64,
    pub changed: bool,
    pub clusters: Vec<String>,
}

/// What the controller needs to know from the hub's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_bundle_size: usize,
    pub interval: Duration,
    pub failovers_per_minute: u32,
    /// When this hub process started: Offline time is not counted from before it (nor from
    /// before the hub last began serving again, see [`Scheduler::serving_again`]).
    pub started_unix: i64,
    /// How long a disconnected cluster holds up its rollout wave (see `plan::Input`).
    pub offline_settle: Duration,
}

/// What waits for a pass: every workload, the ones short of clusters, or these names.
#[derive(Default)]
struct Pending {
    all: bool,
    short: bool,
    names: BTreeSet<String>,
}

/// The coalescing queue: pushing what is already queued costs nothing.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, name: &str) {
        {
            let mut q = self.lock();
            if !q.all {
                q.names.insert(name.to_string());
            }
        }
        self.wake.notify_one();
    }

    fn push_short(&self) {
        self.lock().short = true;
        self.wake.notify_one();
    }

    fn push_all(&self) {
        {
            let mut q = self.lock();
            q.all = true;
            q.names.clear();
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }
}

type Reply<T> = oneshot::Sender<Result<T, HubError>>;

enum Request {
    Apply {
        workload: Box<Workload>,
        by: String,
        team: Option<TeamScope>,
        reply: Reply<Applied>,
    },
    Delete {
        name: String,
        reply: Reply<()>,
    },
    Pause {
        name: String,
        paused: bool,
        reply: Reply<()>,
    },
    Undo {
        name: String,
        to: Option<u64>,
        by: String,
        reply: Reply<u64>,
    },
    Removed {
        cluster: String,
        workload: String,
        reply: Reply<()>,
    },
    ForgetCluster {
        cluster: String,
        reply: Reply<()>,
    },
}

/// The rest of the hub's way to the scheduler.
#[derive(Clone)]
pub struct Scheduler {
    requests: mpsc::Sender<Request>,
    queue: Arc<Queue>,
    serving_since: Arc<AtomicI64>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

fn stopped() -> HubError {
    HubError::Unavailable("the hub is shutting down".into())
}

impl Scheduler {
    /// A handle and the controller it talks to (run it with [`Controller::run`]).
    pub fn new(
        records: Records,
        sessions: Arc<Sessions>,
        write_lock: crate::control::RecordLock,
        config: Config,
    ) -> (Scheduler, Controller) {
        let (tx, rx) = mpsc::channel(256);
        let queue = Arc::new(Queue::default());
        let serving_since = Arc::new(AtomicI64::new(config.started_unix));
        let controller = Controller {
            rx,
            queue: queue.clone(),
            serving_since: serving_since.clone(),
            records,
            sessions,
            write_lock,
            budget: FailoverBudget::new(config.failovers_per_minute),
            config,
            owners: None,
            short: BTreeSet::new(),
            held_hints: None,
        };
        (
            Scheduler {
                requests: tx,
                queue,
                serving_since,
            },
            controller,
        )
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, HubError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Looks at one workload again soon.
    pub fn enqueue(&self, workload: &str) {
        self.queue.push(workload);
    }

    /// Looks at every workload again soon (a cluster joined, left or changed).
    pub fn enqueue_all(&self) {
        self.queue.push_all();
    }

    /// This hub serves again after a time without its etcd lease (another hub served, or
    /// none): every cluster's agent is reconnecting, so Offline time counts from now, like
    /// after a start, instead of from last contacts that may be minutes old — which would
    /// fail every placement over at once. Then looks at every workload.
    pub fn serving_again(&self) {
        self.serving_since.store(unix_now(), Ordering::SeqCst);
        self.queue.push_all();
    }

    /// A cluster became available (connected, its API answering): looks again at the
    /// workloads that are short of clusters — a reconnect storm of ten thousand clusters
    /// does not plan every workload ten thousand times.
    pub fn cluster_available(&self) {
        self.queue.push_short();
    }

    /// Stores a workload as a new revision (if it changed) and its placement, in one commit.
    /// The caller has validated it and checked the team's rules.
    pub async fn apply(
        &self,
        workload: Workload,
        by: &str,
        team: Option<TeamScope>,
    ) -> Result<Applied, HubError> {
        self.call(|reply| Request::Apply {
            workload: Box::new(workload),
            by: by.to_string(),
            team,
            reply,
        })
        .await
    }

    /// Deletes a workload: every cluster removes it; the record goes once they have.
    pub async fn delete(&self, name: &str) -> Result<(), HubError> {
        self.call(|reply| Request::Delete {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Pauses or resumes a rollout (resuming also clears a halt).
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), HubError> {
        self.call(|reply| Request::Pause {
            name: name.to_string(),
            paused,
            reply,
        })
        .await
    }

    /// Goes back to an earlier spec (`to`, or the one before the current), as a new revision.
    pub async fn undo(&self, name: &str, to: Option<u64>, by: &str) -> Result<u64, HubError> {
        self.call(|reply| Request::Undo {
            name: name.to_string(),
            to,
            by: by.to_string(),
            reply,
        })
        .await
    }

    /// An agent removed a workload it was told to remove.
    pub async fn removed(&self, cluster: &str, workload: &str) -> Result<(), HubError> {
        self.call(|reply| Request::Removed {
            cluster: cluster.to_string(),
            workload: workload.to_string(),
            reply,
        })
        .await
    }

    /// Forgets a cluster: its record, tokens, assignments and reports, in one commit; then
    /// every workload is placed again (a `maxClusters` workload takes another cluster).
    pub async fn forget_cluster(&self, cluster: &str) -> Result<(), HubError> {
        self.call(|reply| Request::ForgetCluster {
            cluster: cluster.to_string(),
            reply,
        })
        .await
    }
}

/// The clusters as one pass sees them.
struct Fleet {
    clusters: Vec<ClusterState>,
}

/// The task that owns scheduling writes.
pub struct Controller {
    rx: mpsc::Receiver<Request>,
    queue: Arc<Queue>,
    /// Offline time is not counted from before this (see [`Scheduler::serving_again`]).
    serving_since: Arc<AtomicI64>,
    records: Records,
    sessions: Arc<Sessions>,
    /// Held while changing cluster and token records, which other operations change too.
    write_lock: crate::control::RecordLock,
    config: Config,
    budget: FailoverBudget,
    /// Which workload declares each object (built on first use; this task is the only one
    /// that changes workloads, so it stays true).
    owners: Option<HashMap<ObjectKey, String>>,
    /// Workloads whose last plan was short of clusters.
    short: BTreeSet<String>,
    /// Delivery hints of a request's commits, held until it has been answered (see
    /// [`Controller::handle`]).
    held_hints: Option<Vec<(String, String)>>,
}

impl Controller {
    /// Serves requests and passes until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut round: VecDeque<String> = VecDeque::new();
        let mut fleet: Option<Fleet> = None;
        // Everything once at start: a crash may have left a decision half-way.
        self.queue.push_all();
        loop {
            // Requests first: a user waiting for an apply does not wait for a whole pass.
            while let Ok(r) = self.rx.try_recv() {
                self.handle(r).await;
            }
            if stop.is_cancelled() {
                return;
            }
            if let Some(name) = round.pop_front() {
                if fleet.is_none() {
                    match self.fleet() {
                        Ok(f) => fleet = Some(f),
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduling pass skipped: cannot read clusters");
                            round.clear();
                            continue;
                        }
                    }
                }
                if let Some(f) = &fleet
                    && let Err(e) = self.reconcile(&name, f).await
                {
                    tracing::warn!(workload = %name, error = %e, "scheduling failed");
                }
                continue;
            }
            fleet = None;
            let pending = self.queue.take();
            if pending.all {
                match self.records.workloads() {
                    Ok(ws) => round.extend(ws.into_iter().filter(|w| !w.deleting).map(|w| w.name)),
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduling pass skipped: cannot read workloads")
                    }
                }
            } else {
                let mut names = pending.names;
                if pending.short {
                    names.extend(self.short.iter().cloned());
                }
                round.extend(names);
            }
            if !round.is_empty() {
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(r) = self.rx.recv() => self.handle(r).await,
                _ = self.queue.wake.notified() => {}
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks.is_multiple_of(FULL_PASS_EVERY) {
                        self.queue.push_all();
                    } else {
                        self.queue_time_based();
                    }
                }
            }
        }
    }

    /// Workloads with a time-based decision pending: a rollout under way (deadlines), a
    /// failover window, a copy waiting for its replacement.
    fn queue_time_based(&self) {
        let Ok(workloads) = self.records.workloads() else {
            return;
        };
        for rec in workloads.iter().filter(|r| !r.deleting) {
            let pending = !rec.rollout.complete
                || rec.rollout.revision != rec.revision
                || serde_json::from_value::<Workload>(rec.workload.clone())
                    .ok()
                    .and_then(|w| w.spec.placement.failover)
                    .is_some_and(|f| f.enabled);
            if pending {
                self.queue.push(&rec.name);
            }
        }
    }

    /// Answers a request, then hints the sessions its commits touched. The other way round,
    /// an apply that reaches 10,000 clusters woke their 10,000 session tasks first and the
    /// runtime ran them all before the call's own task: `tetherctl apply` answered when the
    /// last cluster had the change, seconds later. The hints follow at once; nothing reads
    /// them before the answer.
    async fn handle(&mut self, r: Request) {
        self.held_hints = Some(Vec::new());
        self.answer(r).await;
        for (cluster, workload) in self.held_hints.take().unwrap_or_default() {
            self.sessions.hint(&cluster, Hint::Workload(workload));
        }
    }

    async fn answer(&mut self, r: Request) {
        match r {
            Request::Apply {
                workload,
                by,
                team,
                reply,
            } => {
                let _ = reply.send(self.apply(*workload, &by, team.as_ref(), None).await);
            }
            Request::Delete { name, reply } => {
                let _ = reply.send(self.delete(&name).await);
            }
            Request::Pause {
                name,
                paused,
                reply,
            } => {
                let _ = reply.send(self.set_paused(&name, paused).await);
            }
            Request::Undo {
                name,
                to,
                by,
                reply,
            } => {
                let _ = reply.send(self.undo(&name, to, &by).await);
            }
            Request::Removed {
                cluster,
                workload,
                reply,
            } => {
                let _ = reply.send(self.removed(&cluster, &workload).await);
            }
            Request::ForgetCluster { cluster, reply } => {
                let _ = reply.send(self.forget_cluster(&cluster).await);
            }
        }
    }

    fn fleet(&self) -> Result<Fleet, HubError> {
        let now = unix_now();
        let started = self.serving_since.load(Ordering::SeqCst);
        let clusters = self
            .records
            .clusters()?
            .into_iter()
            .map(|c| cluster_state(c, |n| self.sessions.contains(n), started, now))
            .collect();
        Ok(Fleet { clusters })
    }

    /// Plans one workload against `fleet`.
    fn plan_for(
        &self,
        rec: &WorkloadRecord,
        w: &Workload,
        fleet: &Fleet,
    ) -> Result<Plan, HubError> {
        let scope = placement_scope(&self.records, &rec.team, w)?;
        let out_of_scope: BTreeSet<String> = fleet
            .clusters
            .iter()
            .filter(|c| !scope.allows(&c.labels))
            .map(|c| c.name.clone())
            .collect();
        let names = self.records.clusters_of_workload(&rec.name)?;
        let mut assignments = BTreeMap::new();
        for (c, a) in names
            .iter()
            .zip(self.records.assignments_of(&rec.name, &names)?)
        {
            if let Some(a) = a {
                assignments.insert(c.clone(), a);
            }
        }
        let mut observed = BTreeMap::new();
        for (c, s) in names
            .iter()
            .zip(self.records.statuses_of(&rec.name, &names)?)
        {
            if let Some(s) = s {
                observed.insert(
                    c.clone(),
                    Observed {
                        revision: s.revision,
                        phase: s.phase,
                        since_unix: if s.phase_since_unix > 0 {
                            s.phase_since_unix
                        } else {
                            s.received_unix
                        },
                        message: s.message,
                    },
                );
            }
        }
        let clusters: Vec<&ClusterState> = fleet.clusters.iter().collect();
        let input = Input {
            record: rec,
            workload: w,
            clusters: &clusters,
            assignments: &assignments,
            observed: &observed,
            out_of_scope: &out_of_scope,
            failovers_allowed: self.budget.remaining(),
            max_bundle_size: self.config.max_bundle_size,
            confine: scope.confine,
            now: unix_now(),
            offline_settle: self.config.offline_settle.as_secs() as i64,
        };
        Ok(plan::plan(&input))
    }

    async fn reconcile(&mut self, name: &str, fleet: &Fleet) -> Result<(), HubError> {
        let Some(rec) = self.records.workload(name)? else {
            return Ok(());
        };
        if rec.deleting {
            return Ok(());
        }
        let w = parse(&rec)?;
        let plan = self.plan_for(&rec, &w, fleet)?;
        self.commit(name, Batch::new(), plan).await
    }

    /// Commits `batch` and `plan` in one write, then tells the agents whose copy changed.
    async fn commit(&mut self, name: &str, mut batch: Batch, plan: Plan) -> Result<(), HubError> {
        for (cluster, why) in &plan.problems {
            tracing::warn!(workload = name, cluster = %cluster, "not placed: {why}");
        }
        for cluster in &plan.deferred {
            tracing::warn!(workload = name, cluster = %cluster, "failover deferred: the hub-wide failover rate (--failovers-per-minute) is exhausted");
        }
        if plan.short {
            self.short.insert(name.to_string());
        } else {
            self.short.remove(name);
        }
        if plan.is_empty() && batch.is_empty() {
            return Ok(());
        }
        if let Some(r) = &plan.record {
            batch.put_workload(r);
        }
        for a in &plan.assignments {
            batch.put_assignment(a);
        }
        plan.bundles.write(&self.records, &mut batch)?;
        for e in plan.events {
            event(&mut batch, name, &e.cluster, e.reason, e.message);
        }
        self.records.commit(&batch).await?;
        self.budget.take(plan.failovers);
        for c in &plan.touched {
            self.hint(c, name);
        }
        Ok(())
    }

    fn owners(&mut self) -> Result<&mut HashMap<ObjectKey, String>, HubError> {
        if self.owners.is_none() {
            let mut owners = HashMap::new();
            for rec in self.records.workloads()? {
                if let Ok(w) = parse(&rec) {
                    for k in object_keys(&w) {
                        owners.insert(k, rec.name.clone());
                    }
                }
            }
            self.owners = Some(owners);
        }
        Ok(self.owners.get_or_insert_with(HashMap::new))
    }

    async fn apply(
        &mut self,
        w: Workload,
        by: &str,
        team: Option<&TeamScope>,
        change: Option<String>,
    ) -> Result<Applied, HubError> {
        let team_name = team.map(|t| t.name.clone()).unwrap_or_default();
        let name = w.metadata.name.clone();
        let value =
            serde_json::to_value(&w).map_err(|e| HubError::InvalidArgument(e.to_string()))?;
        let spec_hash =
            tether_common::workload::bundle::hash(&serde_json::to_vec(&value).unwrap_or_default());
        let existing = self.records.workload(&name)?;
        if let Some(e) = &existing {
            if e.team != team_name {
                let owner = |t: &str| {
                    if t.is_empty() {
                        "no team".to_string()
                    } else {
                        format!("team {t:?}")
                    }
                };
                return Err(HubError::PermissionDenied(format!(
                    "workload {name:?} belongs to {}, not {}",
                    owner(&e.team),
                    owner(&team_name)
                )));
            }
            if e.deleting {
                return Err(HubError::FailedPrecondition(format!(
                    "workload {name:?} is being deleted; apply it again once it is gone"
                )));
            }
            if e.spec_hash == spec_hash {
                return Ok(Applied {
                    clusters: views::placed_clusters(&self.records, &name)?,
                    name,
                    revision: e.revision,
                    changed: false,
                });
            }
        }
        // Whatever the current revision has reached is recorded first (a completed rollout is
        // Completed, even if the next revision follows within the same tick).
        let existing = match existing {
            Some(e) if !e.rollout.complete => {
                let fleet = self.fleet()?;
                self.reconcile(&name, &fleet).await?;
                self.records.workload(&name)?
            }
            other => other,
        };
        // An object belongs to one workload: two that declare it would fight over it, and
        // deleting either would delete what the other still declares.
        let keys = object_keys(&w);
        {
            let owners = self.owners()?;
            if let Some((k, other)) = keys
                .iter()
                .find_map(|k| owners.get(k).filter(|o| **o != name).map(|o| (k, o)))
            {
                return Err(HubError::FailedPrecondition(format!(
                    "workload {name:?} declares {k}, which workload {other:?} already declares; an object belongs to one workload (move it into one of them, or delete {other:?} first)"
                )));
            }
        }
        // The copy without overrides must fit even if no cluster is placed yet.
        Renderer::new(
            &w,
            self.config.max_bundle_size,
            team.map(|t| t.confinement()),
        )
        .copy_for("(unplaced)", &tether_common::labels::Labels::new(), None)
        .map_err(HubError::InvalidArgument)?;
        let now = unix_now();
        let revision = existing.as_ref().map_or(1, |e| e.revision + 1);
        let record = WorkloadRecord {
            name: name.clone(),
            workload: value.clone(),
            spec_hash,
            revision,
            created_unix: existing.as_ref().map_or(now, |e| e.created_unix),
            updated_unix: now,
            updated_by: by.to_string(),
            deleting: false,
            previous: existing.as_ref().map(|e| e.workload.clone()),
            // The planner starts the new revision's rollout; a pause carries over.
            rollout: existing
                .as_ref()
                .map(|e| e.rollout.clone())
                .unwrap_or_default(),
            team: team_name,
        };
        let mut batch = Batch::new();
        batch.put_workload(&record);
        let change = change.unwrap_or_else(|| {
            existing.as_ref().map_or_else(
                || "created".to_string(),
                |e| describe_change(&e.workload, &value),
            )
        });
        batch.put_revision(&RevisionRecord {
            workload: name.clone(),
            revision,
            unix: now,
            by: by.to_string(),
            change,
            spec: value,
        });
        let history = self.records.revisions(&name)?;
        for old in history.iter().rev().skip(HISTORY_LIMIT - 1) {
            batch.delete(Tree::Revisions, RevisionRecord::key(&name, old.revision));
        }
        let fleet = self.fleet()?;
        let plan = self.plan_for(&record, &w, &fleet)?;
        let touched = plan.touched.len();
        self.commit(&name, batch, plan).await?;
        if let Some(owners) = &mut self.owners {
            owners.retain(|_, o| *o != name);
            for k in keys {
                owners.insert(k, name.clone());
            }
        }
        tracing::info!(workload = %name, revision, clusters_changed = touched, by, "workload applied");
        Ok(Applied {
            clusters: views::placed_clusters(&self.records, &name)?,
            name,
            revision,
            changed: true,
        })
    }

    async fn delete(&mut self, name: &str) -> Result<(), HubError> {
        let mut record = self
            .records
            .workload(name)?
            .ok_or_else(|| not_found(name))?;
        let clusters = self.records.clusters_of_workload(name)?;
        let mut batch = Batch::new();
        if clusters.is_empty() {
            self.forget_workload(&record, &mut batch)?;
            self.records.commit(&batch).await?;
            tracing::info!(workload = name, "workload deleted");
            return Ok(());
        }
        record.deleting = true;
        record.revision += 1;
        for (c, a) in clusters
            .iter()
            .zip(self.records.assignments_of(name, &clusters)?)
        {
            if let Some(mut a) = a {
                a.deleting = true;
                a.retiring = false;
                a.revision = record.revision;
                batch.put_assignment(&a);
            } else {
                tracing::debug!(workload = name, cluster = %c, "placement without assignment");
            }
        }
        batch.put_workload(&record);
        event(
            &mut batch,
            name,
            "",
            "Deleting",
            format!("deleted: {} clusters remove it", clusters.len()),
        );
        self.records.commit(&batch).await?;
        for c in &clusters {
            self.hint(c, name);
        }
        Ok(())
    }

    /// Tells `cluster`'s session, if any, that `workload`'s assignment changed: now, or
    /// once the request being handled has been answered.
    fn hint(&mut self, cluster: &str, workload: &str) {
        match &mut self.held_hints {
            Some(held) => held.push((cluster.to_string(), workload.to_string())),
            None => self
                .sessions
                .hint(cluster, Hint::Workload(workload.to_string())),
        }
    }

    /// Drops a workload's record, history and object claims.
    fn forget_workload(&mut self, rec: &WorkloadRecord, batch: &mut Batch) -> Result<(), HubError> {
        batch.delete(Tree::Workloads, rec.name.as_bytes());
        for r in self.records.revisions(&rec.name)? {
            batch.delete(Tree::Revisions, RevisionRecord::key(&rec.name, r.revision));
        }
        if let Some(owners) = &mut self.owners {
            owners.retain(|_, o| *o != rec.name);
        }
        Ok(())
    }

    /// After assignments went away: deletes workloads that were waiting for that.
    fn finish_deleted(
        &mut self,
        names: &[String],
        gone: &[(String, String)],
        batch: &mut Batch,
    ) -> Result<(), HubError> {
        for name in names {
            let Some(rec) = self.records.workload(name)? else {
                continue;
            };
            if !rec.deleting {
                continue;
            }
            let remaining = self
                .records
                .clusters_of_workload(name)?
                .into_iter()
                .filter(|c| !gone.iter().any(|(gc, gw)| gc == c && gw == name))
                .count();
            if remaining == 0 {
                self.forget_workload(&rec, batch)?;
                tracing::info!(workload = %name, "workload deleted from every cluster");
            }
        }
        Ok(())
    }

    async fn removed(&mut self, cluster: &str, workload: &str) -> Result<(), HubError> {
        let Some(a) = self.records.assignment(cluster, workload)? else {
            return Ok(());
        };
        if !a.deleting {
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut bundles = BundleChanges::default();
        bundles.remove(&a.bundle);
        batch.delete_assignment(cluster, workload);
        batch.delete(Tree::Status, AssignmentRecord::key(cluster, workload));
        bundles.write(&self.records, &mut batch)?;
        self.finish_deleted(
            &[workload.to_string()],
            &[(cluster.to_string(), workload.to_string())],
            &mut batch,
        )?;
        self.records.commit(&batch).await?;
        tracing::info!(cluster, workload, "workload removed from cluster");
        self.queue.push(workload);
        Ok(())
    }

    async fn forget_cluster(&mut self, name: &str) -> Result<(), HubError> {
        let write_lock = self.write_lock.clone();
        let _w = write_lock.lock().await;
        if self.records.cluster(name)?.is_none() {
            return Err(HubError::cluster_not_found(name));
        }
        let mut batch = Batch::new();
        batch.delete(Tree::Clusters, name);
        // Nobody is left to tell: its assignments and reports go with it.
        let mut bundles = BundleChanges::default();
        let mut workloads = Vec::new();
        for a in self.records.assignments_of_cluster(name)? {
            bundles.remove(&a.bundle);
            batch.delete_assignment(name, &a.workload);
            batch.delete(Tree::Status, AssignmentRecord::key(name, &a.workload));
            if !a.deleting {
                event(
                    &mut batch,
                    &a.workload,
                    name,
                    "Removed",
                    format!("cluster {name} was removed from the hub"),
                );
            }
            workloads.push(a.workload);
        }
        bundles.write(&self.records, &mut batch)?;
        let gone: Vec<(String, String)> = workloads
            .iter()
            .map(|w| (name.to_string(), w.clone()))
            .collect();
        self.finish_deleted(&workloads, &gone, &mut batch)?;
        // Its tokens go too: a reusable one must not bring the removed cluster back.
        let mut revoked = 0;
        for mut t in self.records.tokens()? {
            if t.cluster == name && !t.revoked {
                t.revoked = true;
                batch.put_token(&t);
                revoked += 1;
            }
        }
        self.records.commit(&batch).await?;
        if revoked > 0 {
            tracing::info!(
                cluster = name,
                tokens = revoked,
                "join tokens of a removed cluster revoked"
            );
        }
        // A workload it ran may take another cluster now.
        for w in workloads {
            self.queue.push(&w);
        }
        Ok(())
    }

    async fn set_paused(&mut self, name: &str, paused: bool) -> Result<(), HubError> {
        let mut rec = self
            .records
            .workload(name)?
            .ok_or_else(|| not_found(name))?;
        if rec.rollout.paused == paused && (paused || rec.rollout.halted.is_empty()) {
            return Ok(());
        }
        rec.rollout.paused = paused;
        let mut batch = Batch::new();
        if !paused {
            rec.rollout.halted.clear();
            // The deadline counts from the resume.
            rec.rollout.wave_started_unix = unix_now();
        }
        let (reason, msg) = if paused {
            (
                "Paused",
                "rollout paused; it stays paused, across new revisions too, until resumed",
            )
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
        let w = parse(&rec)?;
        let fleet = self.fleet()?;
        batch.put_workload(&rec);
        let plan = self.plan_for(&rec, &w, &fleet)?;
        self.commit(name, batch, plan).await
    }

    async fn undo(&mut self, name: &str, to: Option<u64>, by: &str) -> Result<u64, HubError> {
        let rec = self
            .records
            .workload(name)?
            .ok_or_else(|| not_found(name))?;
        let history = self.records.revisions(name)?;
        let (from, spec) = match to {
            Some(n) => {
                let r = history.iter().find(|r| r.revision == n).ok_or_else(|| {
                    HubError::FailedPrecondition(format!(
                        "revision {n} of workload {name:?} is not in its history (see: tetherctl rollout history {name})"
                    ))
                })?;
                (n, r.spec.clone())
            }
            None => {
                // The spec applied before the current one.
                let current = history
                    .iter()
                    .rposition(|r| r.spec == rec.workload)
                    .unwrap_or(history.len());
                match history[..current]
                    .iter()
                    .rev()
                    .find(|r| r.spec != rec.workload)
                {
                    Some(r) => (r.revision, r.spec.clone()),
                    None => {
                        let previous = rec.previous.clone().ok_or_else(|| {
                            HubError::FailedPrecondition(format!(
                                "workload {name:?} has no earlier revision to go back to"
                            ))
                        })?;
                        (rec.revision.saturating_sub(1), previous)
                    }
                }
            }
        };
        let w: Workload = serde_json::from_value(spec)
            .map_err(|e| HubError::FailedPrecondition(e.to_string()))?;
        let team = if rec.team.is_empty() {
            None
        } else {
            let t = self.records.team(&rec.team)?.ok_or_else(|| {
                HubError::FailedPrecondition(format!(
                    "workload {name:?} belongs to team {:?}, which is gone",
                    rec.team
                ))
            })?;
            let scope = TeamScope::of(&t, &self.records.cluster_sets()?);
            scope.check(&w).map_err(HubError::PermissionDenied)?;
            Some(scope)
        };
        let applied = self
            .apply(
                w,
                by,
                team.as_ref(),
                Some(format!("undo: back to revision {from}")),
            )
            .await?;
        let mut batch = Batch::new();
        event(
            &mut batch,
            name,
            "",
            "Undone",
            format!(
                "revision {} undone: revision {} restores revision {from}",
                rec.revision, applied.revision
            ),
        );
        self.records.commit(&batch).await?;
        Ok(applied.revision)
    }
}

impl crate::control::workloads::Workloads {
    pub async fn set_rollout_paused(&self, name: &str, paused: bool) -> Result<(), HubError> {
        self.scheduler().set_paused(name, paused).await
    }

    pub async fn undo_rollout(
        &self,
        name: &str,
        to: Option<u64>,
        by: &str,
    ) -> Result<u64, HubError> {
        self.scheduler().undo(name, to, by).await
    }

    pub fn rollout_status(&self, name: &str) -> Result<views::RolloutView, HubError> {
        views::rollout_status(self.records(), self.sessions(), name)
    }

    pub fn rollout_history(&self, name: &str) -> Result<Vec<RevisionRecord>, HubError> {
        views::history(self.records(), name)
    }

    pub fn events_since(
        &self,
        since_ms: i64,
        workload: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, HubError> {
        views::events_since(self.records(), since_ms, workload, limit)
    }

    pub async fn prune_events(&self, retention: Duration) -> Result<usize, HubError> {
        views::prune_events(self.records(), retention).await
    }
}

fn not_found(name: &str) -> HubError {
    HubError::NotFound {
        kind: "workload",
        name: name.to_string(),
        hint: " (see: tetherctl get workloads)",
    }
}

fn parse(rec: &WorkloadRecord) -> Result<Workload, HubError> {
    serde_json::from_value(rec.workload.clone()).map_err(|e| {
        HubError::FailedPrecondition(format!("stored workload {} does not parse: {e}", rec.name))
    })
}

fn cluster_state(
    c: ClusterRecord,
    connected: impl Fn(&str) -> bool,
    started: i64,
    now: i64,
) -> ClusterState {
    let unreachable_since = c.facts.as_ref().filter(|f| !f.api_reachable).map(|_| {
        if c.api_unreachable_since > 0 {
            c.api_unreachable_since
        } else {
            now
        }
    });
    ClusterState {
        connected: connected(&c.name),
        offline_since: c.last_seen_unix.max(started),
        unreachable_since,
        removing: c.removing,
        name: c.name,
        labels: c.labels,
        taints: c.taints,
        cordoned: c.cordoned,
    }
}

/// An object as workloads declare it: API group, kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    group: String,
    kind: String,
    namespace: String,
    name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        if self.namespace.is_empty() {
            write!(f, "{kind} {}", self.name)
        } else {
            write!(f, "{kind} {}/{}", self.namespace, self.name)
        }
    }
}

/// The objects a workload declares (versions of one group name the same object).
pub fn object_keys(w: &Workload) -> Vec<ObjectKey> {
    let s = |m: &Value, p: &str| {
        m.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    w.spec
        .manifests
        .iter()
        .map(|m| {
            let api_version = s(m, "/apiVersion");
            ObjectKey {
                group: api_version
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g)
                    .to_string(),
                kind: s(m, "/kind"),
                namespace: s(m, "/metadata/namespace"),
                name: s(m, "/metadata/name"),
            }
        })
        .collect()
}

/// What changed between two specs, in words: objects added, removed and changed, and which
/// other parts of the spec.
pub fn describe_change(before: &Value, after: &Value) -> String {
    let objects = |v: &Value| -> BTreeMap<String, Value> {
        serde_json::from_value::<Workload>(v.clone())
            .map(|w| {
                object_keys(&w)
                    .into_iter()
                    .zip(w.spec.manifests)
                    .map(|(k, m)| (k.to_string(), m))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (b, a) = (objects(before), objects(after));
    let mut parts = Vec::new();
    let added: Vec<&str> = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|old| old != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    for (what, list) in [("added", added), ("removed", removed), ("changed", changed)] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(", ")));
        }
    }
    let spec = |v: &Value, k: &str| v.pointer(&format!("/spec/{k}")).cloned();
    for k in [
        "placement",
        "overrides",
        "replicas",
        "rollout",
        "apply",
        "deletePolicy",
        "statusFeedback",
    ] {
        if spec(before, k) != spec(after, k) {
            parts.push(format!("spec.{k}"));
        }
    }
    if before.pointer("/metadata") != after.pointer("/metadata") {
        parts.push("metadata".into());
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

/// Where a workload may be placed: anywhere (no team), or where its team's operator grants
/// reach; and the confinement its copies carry.
pub(crate) struct PlacementScope {
    team: Option<TeamScope>,
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

/// The placement scope of a workload owned by `team` ("" for none).
pub(crate) fn placement_scope(
    records: &Records,
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
    let sets = records.cluster_sets()?;
    let Some(t) = records.team(team)? else {
        tracing::warn!(workload = %w.metadata.name, team, "the workload's team is gone: placed nowhere");
        return Ok(PlacementScope {
            team: None,
            cluster_scoped: false,
            revoked: true,
            confine: None,
        });
    };
    let t = TeamScope::of(&t, &sets);
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

/// Hub-wide rate limit on failovers, so a partition of many clusters does not move every
/// workload at once.
#[derive(Debug)]
pub struct FailoverBudget {
    per_minute: u32,
    window: Mutex<(std::time::Instant, u32)>,
}

impl FailoverBudget {
    pub fn new(per_minute: u32) -> Self {
        FailoverBudget {
            per_minute,
            window: Mutex::new((std::time::Instant::now(), 0)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, (std::time::Instant, u32)> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(60) {
            *w = (std::time::Instant::now(), 0);
        }
        w
    }

    /// Failovers still allowed in this minute.
    pub fn remaining(&self) -> usize {
        self.per_minute.saturating_sub(self.window().1) as usize
    }

    /// Uses `n` failovers.
    pub fn take(&self, n: usize) {
        let mut w = self.window();
        w.1 = w.1.saturating_add(n as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_budget_is_spent_and_reported() {
        let b = FailoverBudget::new(3);
        assert_eq!(b.remaining(), 3);
        b.take(2);
        assert_eq!(b.remaining(), 1);
        b.take(5);
        assert_eq!(b.remaining(), 0);
    }

    #[test]
    fn object_keys_ignore_the_version_and_name_the_object() {
        let w: Workload = serde_saphyr::from_str(
            "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: { name: a }\nspec:\n  manifests:\n    - { apiVersion: v1, kind: Namespace, metadata: { name: shop } }\n    - { apiVersion: apps/v1, kind: Deployment, metadata: { name: web, namespace: shop } }\n",
        )
        .unwrap();
        let keys = object_keys(&w);
        assert_eq!(keys[0].to_string(), "Namespace shop");
        assert_eq!(keys[1].to_string(), "Deployment.apps shop/web");
    }

    #[test]
    fn a_change_is_described_by_what_it_touched() {
        let w = |image: &str, extra: &str| {
            serde_json::to_value(
                serde_saphyr::from_str::<Workload>(&format!(
                    "apiVersion: tether.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: a }}\nspec:\n  manifests:\n    - {{ apiVersion: v1, kind: ConfigMap, metadata: {{ name: c }}, data: {{ image: \"{image}\" }} }}\n{extra}"
                ))
                .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(
            describe_change(&w("1", ""), &w("2", "")),
            "changed ConfigMap c"
        );
        assert_eq!(
            describe_change(&w("1", ""), &w("1", "  placement: { maxClusters: 1 }\n")),
            "spec.placement"
        );
        assert_eq!(describe_change(&w("1", ""), &w("1", "")), "no change");
    }

    #[tokio::test]
    async fn offline_time_counts_from_when_the_hub_began_serving_again() {
        use crate::store::records::ClusterRecord;
        use crate::store::{Durable, RedbStore};
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let records = Records::new(Durable::new(Arc::new(store)));
        let now = unix_now();
        // Last heard ten minutes ago, by another hub that served meanwhile.
        let mut batch = Batch::new();
        batch.put_cluster(&ClusterRecord {
            name: "edge-1".into(),
            last_seen_unix: now - 600,
            ..Default::default()
        });
        records.commit(&batch).await.unwrap();
        let (handle, controller) = Scheduler::new(
            records,
            Sessions::new(crate::metrics::Metrics::new()),
            crate::control::RecordLock::default(),
            Config {
                max_bundle_size: 1 << 20,
                interval: Duration::from_secs(1),
                failovers_per_minute: 10,
                started_unix: now - 3600,
                offline_settle: Duration::from_secs(10),
            },
        );
        let offline_since = |c: &Controller| c.fleet().unwrap().clusters[0].offline_since;
        assert_eq!(offline_since(&controller), now - 600);
        handle.serving_again();
        assert!(offline_since(&controller) >= now);
    }
}
