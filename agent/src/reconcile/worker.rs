//! One workload's loop: apply its objects in order (Namespaces, then CRDs, then the rest),
//! prune what it no longer declares, roll object health up to the workload's status, and come
//! back after the resync interval (or sooner while it is not Available).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tether_common::time::unix_now;
use tether_common::workload::DeletePolicy;
use tether_common::workload::bundle::Bundle;
use tokio::sync::watch;

use super::object::managing_workload;
use super::pointer::json_path;
use super::{Command, Shared, merge_inventory};
use crate::apply::{ApiError, ClusterApi};
use crate::desired::{DesiredRecord, ObjRef};
use crate::status::{Drift, MAX_DRIFT, WorkloadStatus};

/// One workload's worker: owns everything it knows about that workload's objects.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) workload: String,
    applied_revision: u64,
    applied_bundle: String,
    drift_log: VecDeque<Drift>,
    drift_total: u64,
    /// Per object, the resourceVersion at which the live object was last known to be what
    /// this workload's apply makes of it: while it is unchanged, no drift check is needed.
    pub(super) verified: HashMap<ObjRef, String>,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, workload: String) -> Self {
        Worker {
            shared,
            workload,
            applied_revision: 0,
            applied_bundle: String::new(),
            drift_log: VecDeque::new(),
            drift_total: 0,
            verified: HashMap::new(),
        }
    }

    pub(super) async fn run(
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
                    if let Some(rec) = record.take()
                        && !self.remove(&rec).await
                    {
                        // Stopped before everything was deleted: the cached record stays,
                        // and the next start removes the rest.
                        return;
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
            let out = self.object(&bundle, m, fresh, &previous).await;
            if let Some(r) = out.reference {
                inventory.insert(r);
            }
            lives.push((m.clone(), out.live));
            objects.push(out.state);
        }
        // Prune what this workload applied before and no longer declares.
        let mut kept = Vec::new();
        for old in rec.inventory.iter().filter(|o| !inventory.contains(*o)) {
            match self.delete_if_ours(old).await {
                Ok(()) => {
                    self.verified.remove(old);
                    tracing::info!(workload = %self.workload, object = %old, "pruned")
                }
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

    pub(super) fn record_drift(&mut self, r: &ObjRef, field: String, manager: String) {
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
    pub(super) async fn namespaced(&self, bundle: &Bundle, r: &ObjRef) -> Result<bool, ApiError> {
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
            .and_then(managing_workload)
            .is_some_and(|w| w == self.workload);
        if ours { api.delete(r).await } else { Ok(()) }
    }

    /// Namespaces that other workloads on this cluster have objects in, or declare objects
    /// in. If the cache cannot be read, every namespace counts as held (`*`): deleting
    /// nothing is the safe mistake.
    async fn namespaces_of_other_workloads(&self) -> BTreeSet<String> {
        let records = match self.shared.store.load_all().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the desired-state cache; keeping every Namespace");
                return BTreeSet::from(["*".to_string()]);
            }
        };
        let mut out = BTreeSet::new();
        for rec in records.iter().filter(|r| r.workload != self.workload) {
            out.extend(rec.inventory.iter().map(|o| o.namespace.clone()));
            if let Ok(b) = Bundle::decode(&rec.bundle) {
                out.extend(b.manifests.iter().map(|m| ObjRef::of(m).namespace));
            }
        }
        out.remove("");
        out
    }

    /// Takes the workload off the cluster: deletes its objects (or leaves them, for Orphan).
    /// A deletion that fails (the API server is down) is retried until it succeeds: the hub
    /// hears "removed" only then. Returns false if the agent is stopping first.
    async fn remove(&mut self, rec: &DesiredRecord) -> bool {
        let policy = Bundle::decode(&rec.bundle)
            .map(|b| b.delete_policy)
            .unwrap_or_default();
        if policy == DeletePolicy::Orphan {
            tracing::info!(workload = %self.workload, objects = rec.inventory.len(), "workload removed; objects orphaned");
            return true;
        }
        let mut backoff = crate::session::reconnect_backoff(Duration::from_secs(30));
        loop {
            let failed = self.delete_all(rec).await;
            if failed == 0 {
                tracing::info!(workload = %self.workload, objects = rec.inventory.len(), "workload removed");
                return true;
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(30));
            tracing::warn!(workload = %self.workload, failed, "some objects could not be deleted; retrying in {}", humantime::format_duration(delay));
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Deletes the workload's objects once; returns how many deletions failed.
    async fn delete_all(&mut self, rec: &DesiredRecord) -> usize {
        // Custom resources before their definitions, namespaces last.
        let mut order: Vec<&ObjRef> = rec.inventory.iter().collect();
        order.sort_by_key(|r| match r.kind.as_str() {
            "Namespace" => 2,
            "CustomResourceDefinition" => 1,
            _ => 0,
        });
        let mut held: Option<BTreeSet<String>> = None;
        let mut failed = 0;
        for r in order {
            if r.kind == "Namespace" && r.api_version == "v1" {
                // Deleting a Namespace deletes everything in it: never while another workload
                // still has objects there (on a real cluster, its PersistentVolumeClaims).
                if held.is_none() {
                    held = Some(self.namespaces_of_other_workloads().await);
                }
                if held
                    .as_ref()
                    .is_some_and(|h| h.contains(&r.name) || h.contains("*"))
                {
                    tracing::warn!(workload = %self.workload, namespace = %r.name, "not deleting the Namespace: another workload still has objects in it");
                    continue;
                }
            }
            if let Err(e) = self.delete_if_ours(r).await {
                tracing::warn!(workload = %self.workload, object = %r, error = %e, "cannot delete");
                failed += 1;
            }
        }
        failed
    }
}

/// Namespaces first, then CRDs, then everything else in the order written.
pub(super) fn ordered(manifests: &[Value]) -> Vec<&Value> {
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
pub(super) fn defines(bundle: &Bundle, r: &ObjRef) -> bool {
    let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
    bundle.manifests.iter().any(|m| {
        m["kind"] == "CustomResourceDefinition"
            && m.pointer("/spec/group").and_then(Value::as_str) == Some(group)
            && m.pointer("/spec/names/kind").and_then(Value::as_str) == Some(r.kind.as_str())
    })
}

pub(super) fn forget_crd_types(api: &dyn ClusterApi, crd: &Value) {
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
