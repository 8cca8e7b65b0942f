//! The hub's durable store, behind a small trait so that a replicated backend can replace
//! the embedded one for hubs that outgrow one machine.
//!
//! - [`Store`]: raw trees of bytes (one tree per kind of record) with atomic, durable commits.
//! - [`RedbStore`]: the embedded implementation (one file; see its module for why not sled).
//! - [`EtcdStore`]: the same trees on an etcd cluster, for hubs that must outlive a machine
//!   (one hub serves, others stand by; see its module for what is atomic).
//! - [`Durable`]: what the rest of the hub uses; one writer thread groups concurrent writes
//!   into one transaction and one fsync (group commit).

mod commit;
pub mod etcd;
pub mod records;
mod redb_store;

pub use commit::{CommitStats, Durable};
pub use etcd::{Contents, EtcdConfig, EtcdStore};
pub use redb_store::RedbStore;

/// The current schema of records and trees. Bumped with a migration when records change
/// incompatibly; a hub refuses to open a store written by a newer schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One tree per kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Tree {
    Meta,
    Clusters,
    Tokens,
    Users,
    /// Workloads by name.
    Workloads,
    /// What each cluster should run: `cluster/workload`.
    Assignments,
    /// The same assignments indexed by workload: `workload/cluster` (empty values).
    Placements,
    /// Rendered bundles by content hash (gzip JSON), stored once however many clusters share one.
    Bundles,
    /// How many assignments reference each bundle.
    BundleRefs,
    /// What each cluster last reported for each workload: `cluster/workload`.
    Status,
    /// Mutating calls, keyed by time.
    Audit,
    /// Scheduling decisions, keyed by time.
    Events,
    /// Teams by name.
    Teams,
    /// Cluster sets by name.
    ClusterSets,
    /// Each workload's recent specs, for `rollout history` and `undo --to-revision`:
    /// `workload/revision` (20 digits).
    Revisions,
}

impl Tree {
    pub const ALL: [Tree; 15] = [
        Tree::Meta,
        Tree::Clusters,
        Tree::Tokens,
        Tree::Users,
        Tree::Workloads,
        Tree::Assignments,
        Tree::Placements,
        Tree::Bundles,
        Tree::BundleRefs,
        Tree::Status,
        Tree::Audit,
        Tree::Events,
        Tree::Teams,
        Tree::ClusterSets,
        Tree::Revisions,
    ];

    /// Position in [`Tree::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Clusters => "clusters",
            Tree::Tokens => "tokens",
            Tree::Users => "users",
            Tree::Workloads => "workloads",
            Tree::Assignments => "assignments",
            Tree::Placements => "placements",
            Tree::Bundles => "bundles",
            Tree::BundleRefs => "bundle_refs",
            Tree::Status => "status",
            Tree::Audit => "audit",
            Tree::Events => "events",
            Tree::Teams => "teams",
            Tree::ClusterSets => "cluster_sets",
            Tree::Revisions => "revisions",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open store at {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("failed to write the store to disk: {0}")]
    Flush(String),
    /// A commit the writer thread reports as failed (its message already says what failed).
    #[error("{0}")]
    Failed(String),
    #[error(
        "the store was written by a newer tether-hub (schema {found}, this binary knows {known}); \
         run the newer version or restore a backup"
    )]
    NewerSchema { found: u32, known: u32 },
    #[error("corrupt record in tree {tree} key {key:?}: {detail}")]
    Corrupt {
        tree: &'static str,
        key: String,
        detail: String,
    },
}

/// Checks a stored `schema_version` record: refused when written by a newer schema.
pub(crate) fn check_schema(stored: &[u8]) -> Result<(), StoreError> {
    let found = <[u8; 4]>::try_from(stored)
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

/// Key-value pairs from a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        tree: Tree,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        tree: Tree,
        key: Vec<u8>,
    },
}

/// Changes applied atomically: all or none.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Put {
            tree,
            key: key.into(),
            value,
        });
        self
    }

    pub fn delete(&mut self, tree: Tree, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete {
            tree,
            key: key.into(),
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Raw storage. [`Store::commit`] must apply each batch atomically and durably (it survives
/// a crash once the call returns); reads must not wait for a commit in progress.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Several keys of one tree, read from one snapshot (one transaction for all of them).
    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(tree, k)).collect()
    }
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError>;
    /// Entries with `from <= key < to`, in key order, at most `limit`.
    fn scan_range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Applies every batch, in order, each atomically (all of it or none), and durably once
    /// it returns. Several batches may be applied as one (redb does) or one after another
    /// (etcd, whose transactions are bounded): the writer thread groups batches of unrelated
    /// writers, none of which relies on another's batch landing with its own.
    fn commit(&self, batches: &[&Batch]) -> Result<(), StoreError>;
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Writes a consistent snapshot of every tree to a new store at `to`, while writers carry
    /// on. Returns the number of records copied.
    fn backup(&self, to: &std::path::Path) -> Result<u64, StoreError>;
    /// False after a failed commit until [`Store::recover`] succeeds: the hub is not ready
    /// meanwhile.
    fn healthy(&self) -> bool {
        true
    }
    /// Whether this hub may hold agent sessions on this store: false for an etcd hub that
    /// lost its lease (another hub may be serving those clusters).
    fn serving(&self) -> bool {
        true
    }
    /// Makes a store that failed usable again (reopening it if it must). Called by the
    /// writer before it tries again.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
