//! The reconciler: one worker per workload applies its cached desired state to the cluster,
//! corrects drift, prunes what was dropped, assesses health and publishes status.
//!
//! Workers run concurrently (bounded), each strictly in order for its own workload: one slow
//! workload never holds up the others. A worker re-checks its workload every resync interval
//! once it is Available, and more often while it is not.
//!
//! Start here (the registry and what the session calls), then [`worker`] (one workload's
//! loop: apply in order, prune, roll up), [`object`] (one object: update strategy, conflict
//! policy, ignored fields, drift), [`drift`] (whether the server would change anything, and
//! what) and [`pointer`] (JSON pointer and path helpers).

mod drift;
mod object;
mod pointer;
mod worker;

pub use pointer::json_path;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tether_common::workload::bundle::Bundle;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::apply::ClusterApi;
use crate::desired::{DesiredRecord, DesiredStore, ObjRef};
use crate::metrics::AgentMetrics;
use crate::status::StatusBoard;
use worker::Worker;

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
        let worker = Worker::new(self.shared.clone(), rec.workload.clone());
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
            // Its worker is still removing it: it reports when done (reporting now would let
            // the hub forget objects that are still there).
            None if self.revisions().contains_key(workload) => {}
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

/// Fault injection for the reliability suite, compiled in only with the `crash-hooks` feature
/// (which the test crate turns on): with `TETHER_TEST_CRASH_ONCE=POINT:FLAGFILE`, the agent
/// exits abruptly (code 137, as if killed) the first time it reaches POINT, and records that
/// in FLAGFILE so that the restarted agent goes on.
#[cfg(feature = "crash-hooks")]
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

#[cfg(not(feature = "crash-hooks"))]
fn crash_point(_point: &str) {}

#[cfg(test)]
mod tests;
