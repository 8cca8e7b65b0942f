//! `tether-hub migrate`: a stopped hub's embedded store, copied onto etcd.

use crate::admin::datadir::DataDir;
use crate::store::records::{UserRecord, decode};
use crate::store::{Batch, Contents, EtcdConfig, EtcdStore, RedbStore, Store, StoreError, Tree};

/// A meta record naming the host `migrate` ran on (a pod's name in Kubernetes), so a hub
/// whose data directory did not seed the prefix can say whose admin credential works.
const SEEDED_FROM: &[u8] = b"seeded_from";

/// The user `init` creates; its certificate is the one `admin-config` prints.
const FIRST_ADMIN: &str = "admin";

/// Which data directory the hub in an already-seeded prefix was copied from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeededBy {
    /// This one: its admin credential is registered there.
    ThisDirectory,
    /// Another (the host `migrate` ran on, when known): this directory's admin credential is
    /// on no allow-list there.
    Another(Option<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0} holds no embedded store to migrate (store.redb)")]
    NoStore(String),
    #[error(transparent)]
    Lock(#[from] crate::admin::datadir::LockError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "etcd prefix {0} already holds a hub; migrate into an empty prefix (--etcd-prefix), \
         or remove that hub's keys first"
    )]
    NotEmpty(String, SeededBy),
}

/// Copies every record of `dir`'s store into `config.prefix`, which must be empty, noting
/// `host` (where this runs) as where it came from. The data directory is left as it was (a
/// fallback until the etcd hub is trusted).
pub fn to_etcd(dir: &DataDir, config: &EtcdConfig, host: &str) -> Result<u64, MigrateError> {
    if !dir.store().exists() {
        return Err(MigrateError::NoStore(dir.root().display().to_string()));
    }
    // No hub may serve (and write) the store while it is copied.
    let _lock = dir.lock("migrate it")?;
    let from = RedbStore::open(&dir.store())?;
    let holder = format!("tether-hub migrate (pid {})", std::process::id());
    let (etcd, contents) = EtcdStore::connect(config, &holder)?;
    if contents == Contents::Hub {
        let by = seeded_by(&from, &etcd)?;
        return Err(MigrateError::NotEmpty(config.prefix.clone(), by));
    }
    let n = etcd.import(&from)?;
    // Best effort, after the copy is whole: without it a replica that did not seed the
    // prefix cannot name the host that did, and says so.
    let mut note = Batch::new();
    note.put(Tree::Meta, SEEDED_FROM, host.as_bytes().to_vec());
    let _ = etcd.commit(&[&note]);
    etcd.release();
    Ok(n)
}

/// Whether the hub in `etcd` was copied from the store `ours`: its first admin's newest
/// certificate is one etcd's record of that user lets in.
fn seeded_by(ours: &RedbStore, etcd: &EtcdStore) -> Result<SeededBy, StoreError> {
    let user = |bytes: Option<Vec<u8>>| -> Result<Option<UserRecord>, StoreError> {
        bytes
            .map(|b| decode(Tree::Users, FIRST_ADMIN.as_bytes(), &b))
            .transpose()
    };
    let ours = user(ours.get(Tree::Users, FIRST_ADMIN.as_bytes())?)?;
    let theirs = user(etcd.read(Tree::Users, FIRST_ADMIN.as_bytes())?)?;
    let registered = match (ours, theirs) {
        (Some(o), Some(t)) => o
            .cert_serials
            .first()
            .is_some_and(|s| t.cert_serials.contains(s)),
        _ => false,
    };
    if registered {
        return Ok(SeededBy::ThisDirectory);
    }
    let host = etcd
        .read(Tree::Meta, SEEDED_FROM)?
        .map(|h| String::from_utf8_lossy(&h).into_owned());
    Ok(SeededBy::Another(host))
}
