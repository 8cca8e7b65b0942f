//! Group commit on one writer thread.
//!
//! Every write goes through a queue to a thread of its own, which takes everything waiting,
//! applies it in one transaction and commits it durably (one fsync), then answers each
//! writer. Concurrent writers therefore share an fsync, and no runtime thread ever blocks on
//! the disk or on the store's write lock: a slow disk slows writers down, it does not stall
//! heartbeats or health probes. Reads go straight to the store (MVCC: they never wait for the
//! writer).
//!
//! Two queues: commits someone waits for (specs, assignments, joins, the audit record of
//! every call) and writes nobody waits for (statuses). The writer takes the first before the
//! second, so a flood of status reports larger than the store can take (10,000 clusters
//! reporting at once after a change) delays the next status, not `tetherctl apply`: a commit
//! waits at most for the group being written, not for a full queue of statuses. Order is kept
//! where it matters: a commit that touches statuses, and a sync, go after every status
//! queued before them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{Batch, Entries, Store, StoreError, Tree};

/// Writes waiting for the writer thread; more make writers wait (backpressure).
const QUEUE: usize = 16 * 1024;
/// Most batches in one transaction.
const GROUP: usize = 4096;

struct Job {
    batch: Option<Batch>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// What the writer has done, for metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Durable commits (fsyncs).
    pub commits: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Failed commits.
    pub failures: AtomicU64,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Commits and syncs: someone waits for each.
    urgent: mpsc::Sender<Job>,
    /// Writes nobody waits for.
    lazy: mpsc::Sender<Job>,
    stats: Arc<CommitStats>,
}

/// The store as the hub uses it: reads go straight through; [`Durable::commit`] resolves once
/// the batch is on disk.
#[derive(Clone)]
pub struct Durable {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

fn closed() -> StoreError {
    StoreError::Flush("the store is shutting down".into())
}

impl Durable {
    /// Wraps a store and starts its writer thread (it ends when the last clone is dropped).
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (urgent, urgent_rx) = mpsc::channel(QUEUE);
        let (lazy, lazy_rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(CommitStats::default());
        let (s, st) = (store.clone(), stats.clone());
        let spawned = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(s, Queues::new(urgent_rx, lazy_rx), st));
        if let Err(e) = spawned {
            // Writers then fail with "shutting down" instead of hanging.
            tracing::error!(error = %e, "cannot start the store writer thread");
        }
        Durable {
            inner: Arc::new(Inner {
                store,
                urgent,
                lazy,
                stats,
            }),
        }
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.store.get(tree, key)
    }

    pub fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.store.get_many(tree, keys)
    }

    pub fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.inner.store.scan_prefix(tree, prefix)
    }

    pub fn scan_range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.inner.store.scan_range(tree, from, to, limit)
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.store.size_on_disk()
    }

    pub fn stats(&self) -> &CommitStats {
        &self.inner.stats
    }

    /// Whether the store can write (false after a failure until it recovers).
    pub fn healthy(&self) -> bool {
        self.inner.store.healthy()
    }

    /// Whether this hub may hold agent sessions (see [`Store::serving`]).
    pub fn serving(&self) -> bool {
        self.inner.store.serving()
    }

    /// Writes waiting for the writer thread.
    pub fn queued(&self) -> usize {
        let waiting = |q: &mpsc::Sender<Job>| q.max_capacity() - q.capacity();
        waiting(&self.inner.urgent) + waiting(&self.inner.lazy)
    }

    /// A consistent copy of the whole store at `to` (see [`Store::backup`]).
    pub fn backup(&self, to: &Path) -> Result<u64, StoreError> {
        self.inner.store.backup(to)
    }

    async fn submit(&self, batch: Option<Batch>) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.inner
            .urgent
            .send(Job {
                batch,
                done: Some(done),
            })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?.map_err(StoreError::Failed)
    }

    /// Applies `batch` atomically and waits until it is durable.
    pub async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.submit(Some(batch.clone())).await
    }

    /// Queues `batch` to be applied atomically and made durable with the next group, without
    /// waiting for it: for records whose loss in a crash breaks no promise (statuses, which
    /// agents send again on reconnect). Waits only while the queue is full.
    pub async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.inner
            .lazy
            .send(Job {
                batch: Some(batch),
                done: None,
            })
            .await
            .map_err(|_| closed())
    }

    /// Waits until everything written before the call is durable.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.submit(None).await
    }
}

/// Writes nobody waits for (statuses) that failed, kept to go with the next commit once the
/// store works again; past this many the oldest are dropped (agents send statuses again).
const PENDING: usize = 100_000;

/// The writer's two queues.
struct Queues {
    urgent: mpsc::Receiver<Job>,
    lazy: mpsc::Receiver<Job>,
    /// Waits on both at once (the writer is a plain thread; this runtime only waits, the
    /// store's commit runs outside it).
    rt: Option<tokio::runtime::Runtime>,
}

impl Queues {
    fn new(urgent: mpsc::Receiver<Job>, lazy: mpsc::Receiver<Job>) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .inspect_err(
                |e| tracing::error!(error = %e, "the store writer cannot wait on its queues"),
            )
            .ok();
        Queues { urgent, lazy, rt }
    }

    /// The next group, urgent jobs first: every urgent job waiting (up to [`GROUP`]), then
    /// statuses up to [`GROUP`] in all — or, when one of them needs the statuses queued
    /// before it written first, all of those and then them. `None` once both queues are
    /// closed and empty.
    fn next_group(&mut self) -> Option<Vec<Job>> {
        let rt = self.rt.as_ref()?;
        let (urgent, lazy) = (&mut self.urgent, &mut self.lazy);
        let first = rt.block_on(async {
            tokio::select! {
                biased;
                Some(j) = urgent.recv() => Some((true, j)),
                Some(j) = lazy.recv() => Some((false, j)),
                else => None,
            }
        })?;
        let mut urgent_jobs = Vec::new();
        let mut lazy_jobs = Vec::new();
        match first {
            (true, j) => urgent_jobs.push(j),
            (false, j) => lazy_jobs.push(j),
        }
        while urgent_jobs.len() < GROUP {
            match self.urgent.try_recv() {
                Ok(j) => urgent_jobs.push(j),
                Err(_) => break,
            }
        }
        // A sync promises every write before it; a commit that deletes or replaces statuses
        // must not be undone by an older report written after it.
        let drain_all = urgent_jobs
            .iter()
            .any(|j| j.batch.as_ref().is_none_or(touches_statuses));
        // What is queued now holds everything queued before those jobs (a flood refilling
        // the queue as it drains does not keep this group open).
        let take = if drain_all {
            self.lazy.len()
        } else {
            GROUP.saturating_sub(urgent_jobs.len() + lazy_jobs.len())
        };
        for _ in 0..take {
            match self.lazy.try_recv() {
                Ok(j) => lazy_jobs.push(j),
                Err(_) => break,
            }
        }
        if drain_all {
            lazy_jobs.extend(urgent_jobs);
            Some(lazy_jobs)
        } else {
            // Unrelated to the statuses: the commit goes first.
            urgent_jobs.extend(lazy_jobs);
            Some(urgent_jobs)
        }
    }
}

fn touches_statuses(b: &Batch) -> bool {
    b.ops.iter().any(|op| {
        matches!(
            op,
            super::Op::Put {
                tree: Tree::Status,
                ..
            } | super::Op::Delete {
                tree: Tree::Status,
                ..
            }
        )
    })
}

fn writer(store: Arc<dyn Store>, mut queues: Queues, stats: Arc<CommitStats>) {
    let mut pending: std::collections::VecDeque<Batch> = std::collections::VecDeque::new();
    while let Some(jobs) = queues.next_group() {
        let batches: Vec<&Batch> = pending
            .iter()
            .chain(jobs.iter().filter_map(|j| j.batch.as_ref()))
            .collect();
        // Only syncs: everything before them was committed durably by an earlier group (or,
        // after a failure, they are what tries to bring the store back).
        let result = if batches.is_empty() {
            if store.healthy() {
                Ok(())
            } else {
                store.recover().map_err(|e| e.to_string())
            }
        } else {
            let r = store.commit(&batches).map_err(|e| e.to_string());
            match &r {
                Ok(()) => {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats
                        .batches
                        .fetch_add(batches.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, batches = batches.len(), "store commit failed");
                }
            }
            r
        };
        if result.is_ok() {
            pending.clear();
        }
        for j in jobs {
            if result.is_err()
                && j.done.is_none()
                && let Some(b) = j.batch
            {
                if pending.len() >= PENDING {
                    pending.pop_front();
                }
                pending.push_back(b);
                continue;
            }
            if let Some(done) = j.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A store in memory that counts commits, logs the order batches land in (by their
    /// first key), can fail, and whose commits wait while `held` (so a test can fill the
    /// queues behind one in progress).
    #[derive(Default)]
    struct Counting {
        commits: AtomicU64,
        fail: AtomicBool,
        held: AtomicBool,
        log: Mutex<Vec<Vec<u8>>>,
        data: Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
    }

    impl Store for Counting {
        fn get(&self, _: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.data.lock().unwrap().get(key).cloned())
        }
        fn scan_prefix(&self, _: Tree, _: &[u8]) -> Result<Entries, StoreError> {
            Ok(vec![])
        }
        fn scan_range(&self, _: Tree, _: &[u8], _: &[u8], _: usize) -> Result<Entries, StoreError> {
            Ok(vec![])
        }
        fn commit(&self, batches: &[&Batch]) -> Result<(), StoreError> {
            // A poll interval: the test lets go once its queues are as it wants them.
            while self.held.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            // A slow disk, so writers pile up behind a commit.
            std::thread::sleep(std::time::Duration::from_millis(5));
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Flush("disk on fire".into()));
            }
            let mut data = self.data.lock().unwrap();
            for b in batches {
                for op in &b.ops {
                    match op {
                        super::super::Op::Put { key, value, .. } => {
                            data.insert(key.clone(), value.clone());
                        }
                        super::super::Op::Delete { key, .. } => {
                            data.remove(key);
                        }
                    }
                }
                if let Some(
                    super::super::Op::Put { key, .. } | super::super::Op::Delete { key, .. },
                ) = b.ops.first()
                {
                    self.log.lock().unwrap().push(key.clone());
                }
            }
            Ok(())
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn backup(&self, _: &Path) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn put(key: &str) -> Batch {
        let mut b = Batch::new();
        b.put(Tree::Users, key, b"v".to_vec());
        b
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_commits_and_each_sees_its_write() {
        let store = Arc::new(Counting::default());
        let d = Durable::new(store.clone());
        let writers: Vec<_> = (0..200)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move {
                    d.commit(&put(&format!("k{i}"))).await?;
                    // Once commit returns, the write is there.
                    Ok::<_, StoreError>(d.get(Tree::Users, format!("k{i}").as_bytes())?.is_some())
                })
            })
            .collect();
        for w in writers {
            assert!(w.await.unwrap().unwrap());
        }
        let commits = store.commits.load(Ordering::SeqCst);
        assert!(commits >= 1);
        assert!(commits < 200, "every writer committed alone: {commits}");
        assert_eq!(d.stats().batches.load(Ordering::Relaxed), 200);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_writers_instead_of_hanging() {
        let store = Arc::new(Counting::default());
        store.fail.store(true, Ordering::SeqCst);
        let d = Durable::new(store.clone());
        let err = d.commit(&put("a")).await.unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
        store.fail.store(false, Ordering::SeqCst);
        d.commit(&put("a")).await.unwrap();
    }

    fn status(key: &str, value: &str) -> Batch {
        let mut b = Batch::new();
        b.put(Tree::Status, key, value.as_bytes().to_vec());
        b
    }

    async fn until_queued(d: &Durable, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while d.queued() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} queued, not {n}",
                d.queued()
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Holds the writer in a commit of one status, then fills the status queue behind it
    /// (and more writers waiting for room, as agents' readers do). Returns the flood's task.
    async fn held_behind_a_flood(
        store: &Arc<Counting>,
        d: &Durable,
    ) -> tokio::task::JoinHandle<()> {
        store.held.store(true, Ordering::SeqCst);
        d.write(status("first", "x")).await.unwrap();
        until_queued(d, 0).await;
        let w = d.clone();
        let task = tokio::spawn(async move {
            for i in 0..QUEUE + 100 {
                w.write(status(&format!("flood/{i:06}"), "x"))
                    .await
                    .unwrap();
            }
        });
        until_queued(d, QUEUE).await;
        task
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_does_not_wait_behind_a_flood_of_statuses() {
        let store = Arc::new(Counting::default());
        let d = Durable::new(store.clone());
        let flood = held_behind_a_flood(&store, &d).await;
        let commit = tokio::spawn({
            let d = d.clone();
            async move { d.commit(&put("apply")).await }
        });
        until_queued(&d, QUEUE + 1).await;
        store.held.store(false, Ordering::SeqCst);
        commit.await.unwrap().unwrap();
        let log = store.log.lock().unwrap().clone();
        // Next after the commit in progress, not after the QUEUE statuses queued before it.
        assert_eq!(log.get(1).map(|k| k.as_slice()), Some(&b"apply"[..]));
        flood.await.unwrap();
        d.sync().await.unwrap();
        assert_eq!(
            store.log.lock().unwrap().len(),
            QUEUE + 100 + 2,
            "every status written"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_touches_statuses_lands_after_those_queued_before_it() {
        let store = Arc::new(Counting::default());
        let d = Durable::new(store.clone());
        store.held.store(true, Ordering::SeqCst);
        d.write(status("first", "x")).await.unwrap();
        until_queued(&d, 0).await;
        // An old report queued, then the workload's statuses removed.
        d.write(status("web/c1", "old")).await.unwrap();
        let mut forget = Batch::new();
        forget.delete(Tree::Status, "web/c1");
        let commit = tokio::spawn({
            let d = d.clone();
            async move { d.commit(&forget).await }
        });
        until_queued(&d, 2).await;
        store.held.store(false, Ordering::SeqCst);
        commit.await.unwrap().unwrap();
        assert_eq!(
            d.get(Tree::Status, b"web/c1").unwrap(),
            None,
            "the old report came back"
        );
    }

    #[tokio::test]
    async fn sync_waits_for_writes_queued_before_it() {
        let store = Arc::new(Counting::default());
        let d = Durable::new(store.clone());
        for i in 0..50 {
            d.write(put(&format!("w{i}"))).await.unwrap();
        }
        d.sync().await.unwrap();
        for i in 0..50 {
            assert!(
                d.get(Tree::Users, format!("w{i}").as_bytes())
                    .unwrap()
                    .is_some()
            );
        }
    }
}
