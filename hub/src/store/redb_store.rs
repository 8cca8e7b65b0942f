//! [`Store`] on redb: one file, one table per [`Tree`], each commit one write transaction.
//!
//! DESIGN.md named sled. sled 0.34 (the last release, 2021) deadlocked this hub under load:
//! a multi-tree transaction holds sled's concurrency-control lock while it waits for a free
//! log segment, and the flusher that would free one waits for that same lock (upstream
//! spacejam/sled#1412, open). Every runtime thread then hung in sled and the hub stopped
//! answering, health probes included. redb is maintained, pure Rust, has a stable file
//! format, and its transactions are ACID with one fsync per commit, which the group commit
//! in [`super::Durable`] shares between writers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, Entries, Op, SCHEMA_VERSION, Store, StoreError, Tree};

const SCHEMA_KEY: &[u8] = b"schema_version";

fn table(t: Tree) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// After an I/O error (a full disk, say) a redb `Database` refuses every later write
/// ("Previous I/O error occurred") until it is opened again, which also rolls back to the last
/// durable commit: [`Store::recover`] does that, and the hub is not ready until it has.
pub struct RedbStore {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    failed: AtomicBool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file, creates missing tables and checks the schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        if path.is_dir() {
            return Err(open(
                "it is a directory (a sled store from a development build before 0.1); \
                 initialise a new data directory"
                    .into(),
            ));
        }
        let db = Database::create(path).map_err(|e| open(e.to_string()))?;
        let tx = db.begin_write().map_err(io)?;
        let found = {
            for t in Tree::ALL {
                tx.open_table(table(t)).map_err(io)?;
            }
            let mut meta = tx.open_table(table(Tree::Meta)).map_err(io)?;
            let found = meta
                .get(SCHEMA_KEY)
                .map_err(io)?
                .map(|v| v.value().to_vec());
            if found.is_none() {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().as_slice())
                    .map_err(io)?;
            }
            found
        };
        tx.commit().map_err(io)?;
        let store = RedbStore {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
        };
        if let Some(v) = found {
            super::check_schema(&v)?;
        }
        Ok(store)
    }

    /// The open database, unless it is being reopened.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Io("the store is being reopened after a write failure".into())
            })
    }

    fn read<T>(
        &self,
        tree: Tree,
        f: impl FnOnce(
            &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        ) -> Result<T, redb::StorageError>,
    ) -> Result<T, StoreError> {
        let tx = self.db()?.begin_read().map_err(io)?;
        let t = tx.open_table(table(tree)).map_err(io)?;
        f(&t).map_err(io)
    }

    /// Compacts the file (drops free pages). Needs exclusive access: call before serving.
    pub fn compact(self) -> Result<(u64, u64), StoreError> {
        let before = self.size_on_disk()?;
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let mut db = db
            .and_then(|a| Arc::try_unwrap(a).ok())
            .ok_or_else(|| StoreError::Io("the store is in use".into()))?;
        while db.compact().map_err(io)? {}
        drop(db);
        let after = self.size_on_disk()?;
        Ok((before, after))
    }

    fn write(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut tx = db.begin_write().map_err(io)?;
        tx.set_durability(Durability::Immediate).map_err(io)?;
        {
            let mut tables = Tree::ALL
                .iter()
                .map(|t| tx.open_table(table(*t)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?;
            for op in batches.iter().flat_map(|b| &b.ops) {
                match op {
                    Op::Put { tree, key, value } => {
                        tables[tree.index()]
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(io)?;
                    }
                    Op::Delete { tree, key } => {
                        tables[tree.index()].remove(key.as_slice()).map_err(io)?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| StoreError::Flush(e.to_string()))
    }
}

fn collect(
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    limit: usize,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Result<Entries, redb::StorageError> {
    let mut out = Vec::new();
    for item in range {
        let (k, v) = item?;
        if !keep(k.value()) {
            break;
        }
        out.push((k.value().to_vec(), v.value().to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl Store for RedbStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(tree, |t| Ok(t.get(key)?.map(|v| v.value().to_vec())))
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(tree, |t| {
            keys.iter()
                .map(|k| Ok(t.get(*k)?.map(|v| v.value().to_vec())))
                .collect()
        })
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.read(tree, |t| {
            collect(t.range(prefix..)?, usize::MAX, |k| k.starts_with(prefix))
        })
    }

    fn scan_range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(tree, |t| collect(t.range(from..to)?, limit, |_| true))
    }

    fn commit(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            self.recover()?;
        }
        let result = self.write(batches);
        if result.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        result
    }

    fn healthy(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
    }

    fn recover(&self) -> Result<(), StoreError> {
        if !self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        // redb allows one open Database per file: readers hold clones only briefly.
        if let Some(mut old) = slot.take() {
            let mut tries = 0;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if tries < 100 => {
                        old = still;
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still) => {
                        *slot = Some(still);
                        return Err(StoreError::Io(
                            "the store is still in use; reopening later".into(),
                        ));
                    }
                }
            }
        }
        match Database::create(&self.path) {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                self.failed.store(false, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "store reopened after a write failure");
                Ok(())
            }
            Err(e) => Err(StoreError::Open {
                path: self.path.display().to_string(),
                detail: e.to_string(),
            }),
        }
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    fn backup(&self, to: &Path) -> Result<u64, StoreError> {
        // One read transaction: a consistent snapshot while writers carry on.
        let snapshot = self.db()?.begin_read().map_err(io)?;
        let out = Database::create(to).map_err(|e| StoreError::Open {
            path: to.display().to_string(),
            detail: e.to_string(),
        })?;
        let tx = out.begin_write().map_err(io)?;
        let mut records = 0u64;
        for t in Tree::ALL {
            let src = snapshot.open_table(table(t)).map_err(io)?;
            let mut dst = tx.open_table(table(t)).map_err(io)?;
            for item in src.iter().map_err(io)? {
                let (k, v) = item.map_err(io)?;
                dst.insert(k.value(), v.value()).map_err(io)?;
                records += 1;
            }
        }
        tx.commit().map_err(io)?;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ops: &[(Tree, &str, Option<&str>)]) -> Batch {
        let mut b = Batch::new();
        for (t, k, v) in ops {
            match v {
                Some(v) => b.put(*t, *k, v.as_bytes().to_vec()),
                None => b.delete(*t, *k),
            };
        }
        b
    }

    #[test]
    fn batches_land_together_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let a = batch(&[
                (Tree::Clusters, "a", Some("1")),
                (Tree::Tokens, "t", Some("2")),
            ]);
            let b = batch(&[(Tree::Users, "u", Some("3"))]);
            s.commit(&[&a, &b]).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(Tree::Clusters, b"a").unwrap().unwrap(), b"1");
        assert_eq!(s.get(Tree::Tokens, b"t").unwrap().unwrap(), b"2");
        assert_eq!(s.get(Tree::Users, b"u").unwrap().unwrap(), b"3");
        s.commit(&[&batch(&[(Tree::Clusters, "a", None)])]).unwrap();
        assert!(s.get(Tree::Clusters, b"a").unwrap().is_none());
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let mut b = Batch::new();
            b.put(
                Tree::Meta,
                SCHEMA_KEY,
                (SCHEMA_VERSION + 1).to_be_bytes().to_vec(),
            );
            s.commit(&[&b]).unwrap();
        }
        let err = RedbStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer tether-hub"), "{err}");
    }

    #[test]
    fn scans_return_matching_keys_in_order_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let mut b = Batch::new();
        for k in ["b/2", "a/1", "b/1", "c", "b/3"] {
            b.put(Tree::Users, k, k.as_bytes().to_vec());
        }
        s.commit(&[&b]).unwrap();
        let keys = |e: Entries| -> Vec<String> {
            e.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect()
        };
        assert_eq!(
            keys(s.scan_prefix(Tree::Users, b"b/").unwrap()),
            ["b/1", "b/2", "b/3"]
        );
        assert_eq!(
            keys(s.scan_range(Tree::Users, b"a", b"b/3", 10).unwrap()),
            ["a/1", "b/1", "b/2"]
        );
        assert_eq!(
            keys(s.scan_range(Tree::Users, b"a", b"z", 2).unwrap()),
            ["a/1", "b/1"]
        );
        assert!(
            s.scan_range(Tree::Users, b"z", b"a", 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_backup_is_a_consistent_copy_that_opens_as_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        s.commit(&[&batch(&[
            (Tree::Clusters, "a", Some("1")),
            (Tree::Status, "a/w", Some("s")),
        ])])
        .unwrap();
        let copy = dir.path().join("backup.redb");
        let n = s.backup(&copy).unwrap();
        // The two records and the schema version.
        assert_eq!(n, 3);
        let b = RedbStore::open(&copy).unwrap();
        assert_eq!(b.get(Tree::Status, b"a/w").unwrap().unwrap(), b"s");
    }

    #[test]
    fn a_sled_directory_is_named_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let err = RedbStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }
}
