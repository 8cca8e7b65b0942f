//! `tether-hub migrate`: a stopped hub's embedded store, copied onto etcd.

use crate::admin::datadir::DataDir;
use crate::store::{Contents, EtcdConfig, EtcdStore, RedbStore, StoreError};

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
    NotEmpty(String),
}

/// Copies every record of `dir`'s store into `config.prefix`, which must be empty. The data
/// directory is left as it was (a fallback until the etcd hub is trusted).
pub fn to_etcd(dir: &DataDir, config: &EtcdConfig) -> Result<u64, MigrateError> {
    if !dir.store().exists() {
        return Err(MigrateError::NoStore(dir.root().display().to_string()));
    }
    // No hub may serve (and write) the store while it is copied.
    let _lock = dir.lock("migrate it")?;
    let from = RedbStore::open(&dir.store())?;
    let holder = format!("tether-hub migrate (pid {})", std::process::id());
    let (etcd, contents) = EtcdStore::connect(config, &holder)?;
    if contents == Contents::Hub {
        return Err(MigrateError::NotEmpty(config.prefix.clone()));
    }
    let n = etcd.import(&from)?;
    etcd.release();
    Ok(n)
}
