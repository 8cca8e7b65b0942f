//! Group commit: a write is acknowledged only after a flush that covers it, and all writers
//! waiting at the same moment share that one flush. Durability costs one fsync per group,
//! not one per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

use super::{Batch, Entries, Store, StoreError, Tree};

#[derive(Debug, Clone, Default)]
struct FlushState {
    /// Every write with a sequence number up to this one is on disk.
    durable: u64,
    /// The last failed flush: it covered writes up to `.0`.
    failed: Option<(u64, String)>,
}

struct Inner {
    store: Arc<dyn Store>,
    written: AtomicU64,
    kick: Notify,
    state: watch::Sender<FlushState>,
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

impl Durable {
    /// Wraps a store and starts its flusher task.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (state, _) = watch::channel(FlushState::default());
        let inner = Arc::new(Inner {
            store,
            written: AtomicU64::new(0),
            kick: Notify::new(),
            state,
        });
        tokio::spawn(flusher(inner.clone()));
        Durable { inner }
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.store.get(tree, key)
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

    /// Applies `batch` atomically and waits until it is durable.
    pub async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.apply_lazy(batch)?;
        self.sync().await
    }

    /// Applies `batch` atomically without waiting for the disk: for records that may be
    /// lost in a crash without breaking any promise (for example, last-seen times).
    pub fn apply_lazy(&self, batch: &Batch) -> Result<(), StoreError> {
        self.inner.store.apply(batch)
    }

    /// Waits until everything applied so far is on disk.
    pub async fn sync(&self) -> Result<(), StoreError> {
        // Sequence numbers are taken after the write, so any flush that starts after this
        // point covers it.
        let seq = self.inner.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.inner.state.subscribe();
        self.inner.kick.notify_one();
        let state = rx
            .wait_for(|s| {
                s.durable >= seq || s.failed.as_ref().is_some_and(|(upto, _)| *upto >= seq)
            })
            .await
            .map_err(|_| StoreError::Flush("the store is shutting down".into()))?;
        if state.durable >= seq {
            Ok(())
        } else {
            let detail = state
                .failed
                .as_ref()
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            Err(StoreError::Flush(detail))
        }
    }
}

/// Runs for the life of the runtime: one hub has one store.
async fn flusher(inner: Arc<Inner>) {
    loop {
        let target = inner.written.load(Ordering::SeqCst);
        if target <= inner.state.borrow().durable {
            // A writer's `notify_one` leaves a permit if we are not waiting yet: none is lost.
            inner.kick.notified().await;
            continue;
        }
        let store = inner.store.clone();
        let result = tokio::task::spawn_blocking(move || store.flush())
            .await
            .unwrap_or_else(|e| Err(StoreError::Flush(e.to_string())));
        let failed = result.is_err();
        inner.state.send_modify(|s| match result {
            Ok(()) => s.durable = s.durable.max(target),
            Err(e) => {
                tracing::error!(error = %e, "store flush failed");
                s.failed = Some((target, e.to_string()));
            }
        });
        if failed {
            // The writers covered by this flush have their error; retry for the next ones.
            inner.kick.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A store that counts flushes, to see writers share them.
    #[derive(Default)]
    struct Counting {
        flushes: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Store for Counting {
        fn get(&self, _: Tree, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn scan_prefix(&self, _: Tree, _: &[u8]) -> Result<Entries, StoreError> {
            Ok(vec![])
        }
        fn scan_range(&self, _: Tree, _: &[u8], _: &[u8], _: usize) -> Result<Entries, StoreError> {
            Ok(vec![])
        }
        fn apply(&self, _: &Batch) -> Result<(), StoreError> {
            Ok(())
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Flush("disk on fire".into()));
            }
            Ok(())
        }
        fn size_on_disk(&self) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let store = Arc::new(Counting::default());
        let d = Durable::new(store.clone());
        let writers: Vec<_> = (0..200)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.commit(&Batch::new()).await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let flushes = store.flushes.load(Ordering::SeqCst);
        assert!(flushes >= 1);
        assert!(flushes < 200, "every writer flushed alone: {flushes}");
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writers_instead_of_hanging() {
        let store = Arc::new(Counting::default());
        store.fail.store(true, Ordering::SeqCst);
        let d = Durable::new(store.clone());
        let err = d.commit(&Batch::new()).await.unwrap_err();
        assert!(err.to_string().contains("disk on fire"));
        store.fail.store(false, Ordering::SeqCst);
        d.commit(&Batch::new()).await.unwrap();
    }
}
