//! [`Store`] on sled: one sled tree per [`Tree`], batches as multi-tree transactions.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, Entries, Op, SCHEMA_VERSION, Store, StoreError, Tree};

const SCHEMA_KEY: &[u8] = b"schema_version";

pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store and checks its schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let store = SledStore { db, trees };
        store.check_schema()?;
        Ok(store)
    }

    fn tree(&self, t: Tree) -> &sled::Tree {
        // `trees` is built from `Tree::ALL`, which lists the trees in discriminant order.
        &self.trees[t.index()]
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.tree(Tree::Meta);
        match meta.get(SCHEMA_KEY)? {
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        tree: "meta",
                        key: "schema_version".into(),
                        detail: "not a 4-byte integer".into(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
        }
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    fn scan_range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.tree(tree)
            .range(from..to)
            .take(limit)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        trees
            .as_slice()
            .transaction(|tx| {
                for op in &batch.ops {
                    match op {
                        Op::Put { tree, key, value } => {
                            tx[tree.index()].insert(key.as_slice(), value.as_slice())?;
                        }
                        Op::Delete { tree, key } => {
                            tx[tree.index()].remove(key.as_slice())?;
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Io(e),
                TransactionError::Abort(()) => StoreError::Flush("transaction aborted".into()),
            })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| StoreError::Flush(e.to_string()))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_atomically_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put(Tree::Clusters, "a", b"1".to_vec())
                .put(Tree::Tokens, "t", b"2".to_vec());
            s.apply(&b).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.get(Tree::Clusters, b"a").unwrap().unwrap(), b"1");
        assert_eq!(s.get(Tree::Tokens, b"t").unwrap().unwrap(), b"2");
        let mut b = Batch::new();
        b.delete(Tree::Clusters, "a");
        s.apply(&b).unwrap();
        assert!(s.get(Tree::Clusters, b"a").unwrap().is_none());
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put(
                Tree::Meta,
                SCHEMA_KEY,
                (SCHEMA_VERSION + 1).to_be_bytes().to_vec(),
            );
            s.apply(&b).unwrap();
            s.flush().unwrap();
        }
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("newer tether-hub"), "{err}");
    }

    #[test]
    fn prefix_scans_return_only_matching_keys_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut b = Batch::new();
        for k in ["b/2", "a/1", "b/1", "c"] {
            b.put(Tree::Users, k, k.as_bytes().to_vec());
        }
        s.apply(&b).unwrap();
        let keys: Vec<_> = s
            .scan_prefix(Tree::Users, b"b/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(keys, ["b/1", "b/2"]);
    }
}
