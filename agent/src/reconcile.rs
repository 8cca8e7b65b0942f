//! The reconciler: one worker per workload applies its cached desired state to the cluster,
//! corrects drift, prunes what was dropped, assesses health and publishes status.
//!
//! Workers run concurrently (bounded), each strictly in order for its own workload: one slow
//! workload never holds up the others. A worker re-checks its workload every resync interval
//! once it is Available, and more often while it is not.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tether_common::time::unix_now;
use tether_common::workload::bundle::Bundle;
use tether_common::workload::{ConflictPolicy, DeletePolicy, UpdateStrategy};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::apply::{ApiError, ClusterApi, FIELD_MANAGER};
use crate::desired::{DesiredRecord, DesiredStore, ObjRef};
use crate::health;
use crate::metrics::AgentMetrics;
use crate::status::{Drift, Health, MAX_DRIFT, ObjectState, StatusBoard, WorkloadStatus};

/// The label on every object the agent applies: which workload it belongs to.
pub const WORKLOAD_LABEL: &str = "tether.dev/workload";

/// Timing of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an Available workload is checked for drift.
    pub resync_interval: Duration,
    /// How often a workload that is not Available yet is looked at.
    pub progress_interval: Duration,
    /// How long to wait for a CRD to be established before its resources fail.
    pub crd_wait: Duration,
    /// Workloads reconciled at the same time.
    pub concurrency: usize,
    pub metrics: AgentMetrics,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync_interval: Duration::from_secs(60),
            progress_interval: Duration::from_secs(2),
            crd_wait: Duration::from_secs(30),
            concurrency: 4,
            metrics: AgentMetrics::default(),
        }
    }
}

/// What the session hands the agent's workload side. A trait so that the load generator can
/// put a simulated cluster behind the real session code.
pub trait Workloads: Send + Sync + 'static {
    /// Workload -> revision persisted, for `Hello`.
    fn applied(&self) -> HashMap<String, u64>;
    /// Workload -> bundle hash of that revision, for `Hello` (empty: the hub compares
    /// revision numbers only).
    fn applied_bundles(&self) -> HashMap<String, String> {
        HashMap::new()
    }
    /// Persists a desired revision, then starts applying it. `Ok` means it may be
    /// acknowledged.
    fn desired(
        &self,
        workload: String,
        revision: u64,
        hash: String,
        bundle: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), String>>;
    /// Takes a workload off this cluster (per its delete policy).
    fn remove(&self, workload: &str);
    /// The full list the hub assigns: anything else held here is removed.
    fn assigned(&self, revisions: &HashMap<String, u64>);
    fn board(&self) -> &StatusBoard;
}

#[derive(Clone)]
enum Command {
    Run(Arc<DesiredRecord>),
    Remove,
}

struct Shared {
    api: Arc<dyn ClusterApi>,
    store: DesiredStore,
    board: StatusBoard,
    settings: Settings,
    limit: Semaphore,
    shutdown: CancellationToken,
}

/// The reconciler.
pub struct Reconciler {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<String, watch::Sender<Command>>>,
    revisions: Arc<Mutex<HashMap<String, (u64, String)>>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler").finish_non_exhaustive()
    }
}

impl Reconciler {
    /// Loads the cache and starts a worker for every workload in it: the agent enforces its
    /// last desired state whether or not the hub is reachable.
    pub async fn start(
        api: Arc<dyn ClusterApi>,
        store: DesiredStore,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let cached = store.load_all().await?;
        let r = Arc::new(Reconciler {
            shared: Arc::new(Shared {
                api,
                store,
                board: StatusBoard::default(),
                limit: Semaphore::new(settings.concurrency.max(1)),
                settings,
                shutdown,
            }),
            workers: Mutex::new(HashMap::new()),
            revisions: Arc::new(Mutex::new(HashMap::new())),
        });
        for rec in cached {
            tracing::info!(workload = %rec.workload, revision = rec.revision, "resuming cached desired state");
            r.run(Arc::new(rec));
        }
        Ok(r)
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, String)>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a record to its worker, starting one if needed.
    fn run(&self, rec: Arc<DesiredRecord>) {
        self.revisions().insert(
            rec.workload.clone(),
            (rec.revision, rec.bundle_hash.clone()),
        );
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = workers.get(&rec.workload)
            && tx.send(Command::Run(rec.clone())).is_ok()
        {
            return;
        }
        let (tx, rx) = watch::channel(Command::Run(rec.clone()));
        workers.insert(rec.workload.clone(), tx);
        let worker = Worker {
            shared: self.shared.clone(),
            workload: rec.workload.clone(),
            applied_revision: 0,
            applied_bundle: String::new(),
            drift_log: VecDeque::new(),
            drift_total: 0,
        };
        let revisions = self.revisions.clone();
        tokio::spawn(worker.run(rx, revisions));
    }
}

impl Workloads for Reconciler {
    fn applied(&self) -> HashMap<String, u64> {
        self.revisions()
            .iter()
            .map(|(w, (r, _))| (w.clone(), *r))
            .collect()
    }

    fn applied_bundles(&self) -> HashMap<String, String> {
        self.revisions()
            .iter()
            .map(|(w, (_, h))| (w.clone(), h.clone()))
            .collect()
    }

    fn desired(
        &self,
        workload: String,
        revision: u64,
        hash: String,
        bundle: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let decoded = Bundle::decode(&bundle)?;
            if decoded.workload != workload {
                return Err(format!(
                    "bundle for {} delivered as {workload}",
                    decoded.workload
                ));
            }
            if self
                .revisions()
                .get(&workload)
                .is_some_and(|(r, h)| *r == revision && *h == hash)
            {
                // Re-delivered (at least once): already persisted.
                return Ok(());
            }
            let inventory = self
                .shared
                .store
                .load_all()
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|r| r.workload == workload))
                .map(|r| r.inventory)
                .unwrap_or_default();
            let rec = DesiredRecord {
                workload: workload.clone(),
                revision,
                bundle_hash: hash,
                bundle,
                inventory,
            };
            crash_point("before-persist");
            self.shared.store.save(&rec).await?;
            crash_point("after-persist");
            tracing::info!(workload = %workload, revision, "desired state received");
            self.run(Arc::new(rec));
            Ok(())
        })
    }

    fn remove(&self, workload: &str) {
        let tx = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(workload);
        match tx {
            Some(tx) => {
                let _ = tx.send(Command::Remove);
            }
            // Nothing here to remove: say so, so the hub can forget it.
            None => self.shared.board.removed(workload),
        }
    }

    fn assigned(&self, revisions: &HashMap<String, u64>) {
        let held: Vec<String> = self.revisions().keys().cloned().collect();
        for w in held.into_iter().filter(|w| !revisions.contains_key(w)) {
            tracing::info!(workload = %w, "no longer assigned to this cluster");
            self.remove(&w);
        }
    }

    fn board(&self) -> &StatusBoard {
        &self.shared.board
    }
}

struct Worker {
    shared: Arc<Shared>,
    workload: String,
    applied_revision: u64,
    applied_bundle: String,
    drift_log: VecDeque<Drift>,
    drift_total: u64,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: watch::Receiver<Command>,
        revisions: Arc<Mutex<HashMap<String, (u64, String)>>>,
    ) {
        let mut record: Option<DesiredRecord> = None;
        loop {
            // The newest command; the same one again after a timed re-check.
            let cmd = rx.borrow_and_update().clone();
            match cmd {
                Command::Remove => {
                    if let Some(rec) = record.take() {
                        self.remove(&rec).await;
                    }
                    if let Err(e) = self.shared.store.delete(&self.workload).await {
                        tracing::error!(workload = %self.workload, error = %e, "cannot delete cached desired state");
                    }
                    revisions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&self.workload);
                    self.shared.board.removed(&self.workload);
                    return;
                }
                Command::Run(incoming) => {
                    // Keep the inventory this worker maintains across revisions: what an
                    // older revision applied is pruned once the new one no longer has it.
                    let mut rec = match record.take() {
                        Some(current)
                            if current.revision == incoming.revision
                                && current.bundle_hash == incoming.bundle_hash =>
                        {
                            current
                        }
                        Some(current) => {
                            let mut r = (*incoming).clone();
                            r.inventory = merge_inventory(&current.inventory, &incoming.inventory);
                            r
                        }
                        None => (*incoming).clone(),
                    };
                    let status = {
                        let shared = self.shared.clone();
                        let _permit = shared.limit.acquire().await;
                        self.pass(&mut rec).await
                    };
                    let delay = if status.phase == crate::status::Phase::Available {
                        self.shared.settings.resync_interval
                    } else {
                        self.shared.settings.progress_interval
                    };
                    self.shared.board.publish(status);
                    record = Some(rec);
                    tokio::select! {
                        _ = self.shared.shutdown.cancelled() => return,
                        r = rx.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Applies the workload once and returns its status.
    async fn pass(&mut self, rec: &mut DesiredRecord) -> WorkloadStatus {
        let bundle = match Bundle::decode(&rec.bundle) {
            Ok(b) => b,
            Err(e) => {
                let mut s = WorkloadStatus::roll_up(&self.workload, rec.revision, Vec::new());
                s.phase = crate::status::Phase::Degraded;
                s.message = format!("cannot read the desired state: {e}");
                return s;
            }
        };
        // A new revision, or the same number with other contents (a hub restored from a
        // backup numbers changes again from where the backup was).
        let fresh = rec.revision != self.applied_revision || rec.bundle_hash != self.applied_bundle;
        let mut objects = Vec::new();
        let mut lives: Vec<(Value, Option<Value>)> = Vec::new();
        let mut inventory = BTreeSet::new();
        let previous: BTreeSet<ObjRef> = rec.inventory.iter().cloned().collect();
        for m in ordered(&bundle.manifests) {
            let (state, r, live) = self.object(&bundle, m, fresh, &previous).await;
            if let Some(r) = r {
                inventory.insert(r);
            }
            lives.push((m.clone(), live));
            objects.push(state);
        }
        // Prune what this workload applied before and no longer declares.
        let mut kept = Vec::new();
        for old in rec.inventory.iter().filter(|o| !inventory.contains(*o)) {
            match self.delete_if_ours(old).await {
                Ok(()) => tracing::info!(workload = %self.workload, object = %old, "pruned"),
                Err(e) => {
                    tracing::warn!(workload = %self.workload, object = %old, error = %e, "cannot prune; will retry");
                    kept.push(old.clone());
                }
            }
        }
        let new_inventory: Vec<ObjRef> = inventory.into_iter().chain(kept).collect();
        if new_inventory != rec.inventory || fresh {
            rec.inventory = new_inventory;
            if let Err(e) = self.shared.store.save(rec).await {
                tracing::error!(workload = %self.workload, error = %e, "cannot save the inventory");
            }
        }
        if fresh {
            self.applied_revision = rec.revision;
            self.applied_bundle = rec.bundle_hash.clone();
        }
        let mut status = WorkloadStatus::roll_up(&self.workload, rec.revision, objects);
        for rule in &bundle.status_feedback {
            let found = lives
                .iter()
                .find(|(m, _)| rule.target.matches(m))
                .and_then(|(_, l)| l.as_ref());
            if let Some(v) = found.and_then(|l| json_path(l, &rule.json_path)) {
                status
                    .feedback
                    .insert(format!("{}{}", rule.target, rule.json_path), v);
            }
        }
        status.drift = self.drift_log.iter().cloned().collect();
        status.drift_corrections = self.drift_total;
        status
    }

    /// Reconciles one manifest: its state, reference (if it could be addressed) and the live
    /// object afterwards.
    async fn object(
        &mut self,
        bundle: &Bundle,
        manifest: &Value,
        fresh: bool,
        previous: &BTreeSet<ObjRef>,
    ) -> (ObjectState, Option<ObjRef>, Option<Value>) {
        let api = self.shared.api.clone();
        let mut obj = manifest.clone();
        obj["metadata"]["labels"][WORKLOAD_LABEL] = Value::from(self.workload.clone());
        let mut r = ObjRef::of(&obj);
        let state = |r: &ObjRef, health: Health, message: String| ObjectState {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            health,
            message,
        };
        let namespaced = match self.namespaced(bundle, &r).await {
            Ok(n) => n,
            Err(e) => return (state(&r, Health::Missing, e.message), None, None),
        };
        if namespaced && r.namespace.is_empty() {
            obj["metadata"]["namespace"] = Value::from("default");
        } else if !namespaced && let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        r = ObjRef::of(&obj);
        let live = match api.get(&r).await {
            Ok(l) => l,
            Err(e) => {
                return (
                    state(&r, Health::Missing, format!("cannot read: {e}")),
                    Some(r),
                    None,
                );
            }
        };
        let opts = &bundle.apply;
        let observe = |l: &Value| {
            let (h, m) = health::assess(l);
            state(&r, h, m)
        };
        match opts.update_strategy {
            UpdateStrategy::ReadOnly => {
                return match &live {
                    Some(l) => (observe(l), None, live.clone()),
                    None => (
                        state(
                            &r,
                            Health::Missing,
                            "not found (ReadOnly: Tether does not create it)".into(),
                        ),
                        None,
                        None,
                    ),
                };
            }
            UpdateStrategy::CreateOnly if live.is_some() => {
                let l = live.clone().unwrap_or_default();
                return (observe(&l), Some(r.clone()), live);
            }
            _ => {}
        }
        if live.is_none()
            && previous.contains(&r)
            && opts.update_strategy == UpdateStrategy::ServerSideApply
        {
            // Applied before, gone now: someone deleted it.
            tracing::warn!(workload = %self.workload, object = %r, "deleted object restored");
            self.record_drift(&r, "(deleted)".into(), String::new());
        }
        if let Some(l) = &live {
            match l
                .pointer(&format!(
                    "/metadata/labels/{}",
                    WORKLOAD_LABEL.replace('/', "~1")
                ))
                .and_then(Value::as_str)
            {
                Some(owner) if owner == self.workload => {}
                Some(other) => {
                    return (
                        state(
                            &r,
                            Health::Failed,
                            format!("conflict: managed by workload {other:?}"),
                        ),
                        None,
                        live.clone(),
                    );
                }
                None if opts.conflict_policy == ConflictPolicy::Abort => {
                    return (
                        state(
                            &r,
                            Health::Failed,
                            "conflict: exists and is not managed by Tether (conflictPolicy Abort leaves it alone; Adopt takes it over)".into(),
                        ),
                        None,
                        live.clone(),
                    );
                }
                None => {
                    tracing::info!(workload = %self.workload, object = %r, "adopting an unmanaged object")
                }
            }
            // Ignored fields are left to whoever owns them: apply the live value, never ours.
            for rule in opts
                .ignore_fields
                .iter()
                .filter(|i| i.target.matches(manifest))
            {
                for p in &rule.paths {
                    match l.pointer(p) {
                        Some(v) => set_pointer(&mut obj, p, v.clone()),
                        None => remove_pointer(&mut obj, p),
                    }
                }
            }
            if !fresh && opts.update_strategy == UpdateStrategy::ServerSideApply {
                let diffs = differences(&obj, l);
                if diffs.is_empty() {
                    return (observe(l), Some(r.clone()), live.clone());
                }
                for path in diffs {
                    let manager = owner(l, &path).unwrap_or_default();
                    tracing::warn!(workload = %self.workload, object = %r, field = %path_string(&path), manager = %manager, "drift corrected");
                    self.record_drift(&r, path_string(&path), manager);
                }
            }
        }
        let started = std::time::Instant::now();
        let result = api.apply(&obj, true).await;
        self.shared
            .settings
            .metrics
            .applied(result.is_ok(), started.elapsed());
        match result {
            Ok(applied) => {
                if r.kind == "CustomResourceDefinition" {
                    forget_crd_types(api.as_ref(), &applied);
                }
                (observe(&applied), Some(r), Some(applied))
            }
            Err(e) => (state(&r, Health::Failed, e.message), Some(r), live),
        }
    }

    fn record_drift(&mut self, r: &ObjRef, field: String, manager: String) {
        self.drift_total += 1;
        self.shared.settings.metrics.drift_corrections.inc();
        self.drift_log.push_front(Drift {
            object: r.to_string(),
            field,
            manager,
            unix: unix_now(),
        });
        self.drift_log.truncate(MAX_DRIFT);
    }

    /// Whether the type is namespaced; waits for a CRD in the same bundle to be established.
    async fn namespaced(&self, bundle: &Bundle, r: &ObjRef) -> Result<bool, ApiError> {
        let api = &self.shared.api;
        match api.namespaced(&r.api_version, &r.kind).await {
            Ok(n) => return Ok(n),
            Err(e) if !defines(bundle, r) => return Err(e),
            Err(_) => {}
        }
        let deadline = tokio::time::Instant::now() + self.shared.settings.crd_wait;
        loop {
            api.forget_type(&r.api_version, &r.kind);
            match api.namespaced(&r.api_version, &r.kind).await {
                Ok(n) => return Ok(n),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(ApiError {
                        code: e.code,
                        message: format!(
                            "its CustomResourceDefinition was not established in time: {}",
                            e.message
                        ),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Deletes an object if it still carries this workload's label.
    async fn delete_if_ours(&self, r: &ObjRef) -> Result<(), ApiError> {
        let api = &self.shared.api;
        let live = match api.get(r).await {
            Ok(l) => l,
            Err(e) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let ours = live
            .as_ref()
            .and_then(|l| {
                l.pointer(&format!(
                    "/metadata/labels/{}",
                    WORKLOAD_LABEL.replace('/', "~1")
                ))
            })
            .is_some_and(|v| v == self.workload.as_str());
        if ours { api.delete(r).await } else { Ok(()) }
    }

    /// Takes the workload off the cluster: deletes its objects (or leaves them, for Orphan).
    async fn remove(&mut self, rec: &DesiredRecord) {
        let policy = Bundle::decode(&rec.bundle)
            .map(|b| b.delete_policy)
            .unwrap_or_default();
        if policy == DeletePolicy::Orphan {
            tracing::info!(workload = %self.workload, objects = rec.inventory.len(), "workload removed; objects orphaned");
            return;
        }
        // Custom resources before their definitions, namespaces last.
        let mut order: Vec<&ObjRef> = rec.inventory.iter().collect();
        order.sort_by_key(|r| match r.kind.as_str() {
            "Namespace" => 2,
            "CustomResourceDefinition" => 1,
            _ => 0,
        });
        for r in order {
            if let Err(e) = self.delete_if_ours(r).await {
                tracing::warn!(workload = %self.workload, object = %r, error = %e, "cannot delete");
            }
        }
        tracing::info!(workload = %self.workload, objects = rec.inventory.len(), "workload removed");
    }
}

/// Fault injection for the reliability suite: with `TETHER_TEST_CRASH_ONCE=POINT:FLAGFILE`,
/// the agent exits abruptly (code 137, as if killed) the first time it reaches POINT, and
/// records that in FLAGFILE so that the restarted agent goes on. Unset, this does nothing.
fn crash_point(point: &str) {
    let Ok(spec) = std::env::var("TETHER_TEST_CRASH_ONCE") else {
        return;
    };
    let Some((want, flag)) = spec.split_once(':') else {
        return;
    };
    if want != point || std::path::Path::new(flag).exists() {
        return;
    }
    let _ = std::fs::write(flag, point);
    eprintln!("TETHER_TEST_CRASH_ONCE: crashing at {point}");
    std::process::exit(137);
}

fn merge_inventory(a: &[ObjRef], b: &[ObjRef]) -> Vec<ObjRef> {
    let set: BTreeSet<ObjRef> = a.iter().chain(b).cloned().collect();
    set.into_iter().collect()
}

/// Namespaces first, then CRDs, then everything else in the order written.
fn ordered(manifests: &[Value]) -> Vec<&Value> {
    let rank = |m: &Value| match m["kind"].as_str() {
        Some("Namespace") => 0,
        Some("CustomResourceDefinition") => 1,
        _ => 2,
    };
    let mut v: Vec<&Value> = manifests.iter().collect();
    v.sort_by_key(|m| rank(m));
    v
}

/// Whether the bundle holds the CRD that defines `r`'s type.
fn defines(bundle: &Bundle, r: &ObjRef) -> bool {
    let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
    bundle.manifests.iter().any(|m| {
        m["kind"] == "CustomResourceDefinition"
            && m.pointer("/spec/group").and_then(Value::as_str) == Some(group)
            && m.pointer("/spec/names/kind").and_then(Value::as_str) == Some(r.kind.as_str())
    })
}

fn forget_crd_types(api: &dyn ClusterApi, crd: &Value) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = crd
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = v["name"].as_str() {
            api.forget_type(&format!("{group}/{name}"), kind);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Field(String),
    Key(String),
}

fn path_string(p: &[Seg]) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Key(k) => format!("[name={k}]"),
        })
        .collect()
}

/// Fields the desired object sets that the live object does not match. Server-side
/// defaults the desired object does not mention are not differences.
fn differences(desired: &Value, live: &Value) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    let Some(m) = desired.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for part in ["labels", "annotations"] {
                    if let Some(d) = v.get(part) {
                        let mut p = vec![Seg::Field("metadata".into()), Seg::Field(part.into())];
                        diff(
                            d,
                            live.pointer(&format!("/metadata/{part}")),
                            &mut p,
                            &mut out,
                        );
                    }
                }
            }
            _ => {
                let mut p = vec![Seg::Field(k.clone())];
                diff(v, live.get(k), &mut p, &mut out);
            }
        }
    }
    out
}

fn keyed(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn diff(desired: &Value, live: Option<&Value>, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match (desired, live) {
        (Value::Object(d), Some(Value::Object(l))) => {
            for (k, v) in d {
                path.push(Seg::Field(k.clone()));
                diff(v, l.get(k), path, out);
                path.pop();
            }
        }
        (Value::Array(d), Some(Value::Array(l))) if keyed(d) => {
            for item in d {
                let name = item["name"].as_str().unwrap_or_default();
                path.push(Seg::Key(name.to_string()));
                diff(item, l.iter().find(|i| i["name"] == name), path, out);
                path.pop();
            }
        }
        (Value::Array(d), Some(Value::Array(l))) => {
            let same = d.len() == l.len() && d.iter().zip(l).all(|(a, b)| subset(a, b));
            if !same {
                out.push(path.clone());
            }
        }
        (d, Some(l)) if subset(d, l) => {}
        _ => out.push(path.clone()),
    }
}

/// Everything `a` sets, `b` has (with the same values).
fn subset(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| subset(v, w))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| subset(v, w))
        }
        // Kubernetes serialises some numbers as strings and vice versa (quantities, ports).
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            n.to_string() == *s
        }
        _ => a == b,
    }
}

/// The manager (other than the agent) that owns `path` according to `managedFields`.
fn owner(live: &Value, path: &[Seg]) -> Option<String> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    entries
        .iter()
        .filter(|e| e["manager"] != FIELD_MANAGER)
        .find(|e| {
            let mut cur = &e["fieldsV1"];
            for seg in path {
                let key = match seg {
                    Seg::Field(f) => format!("f:{f}"),
                    Seg::Key(k) => format!("k:{}", serde_json::json!({ "name": k })),
                };
                match cur.get(&key) {
                    Some(next) => cur = next,
                    None => return false,
                }
            }
            true
        })
        .and_then(|e| e["manager"].as_str().map(str::to_string))
}

fn set_pointer(v: &mut Value, pointer: &str, value: Value) {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Some(m) = cur.as_object_mut() else { return };
        cur = m
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Some(m) = cur.as_object_mut() {
        m.insert(last.clone(), value);
    }
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(v)
    } else {
        v.pointer_mut(parent)
    };
    if let Some(m) = target.and_then(Value::as_object_mut) {
        m.remove(&last);
    }
}

/// Evaluates `.a.b[0].c` on `v`; strings come back bare, other values as JSON.
pub fn json_path(v: &Value, path: &str) -> Option<String> {
    let mut cur = v;
    for part in path.trim_start_matches('.').split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
