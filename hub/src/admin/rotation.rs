//! CA rotation, in two steps with the hub stopped between them (the store is opened here).
//!
//! 1. `tether-hub ca rotate`: a new CA signs every certificate issued from now on; the old one
//!    still signs the serving certificate and stays trusted. Agents connecting with an
//!    old-CA certificate are told to renew at once, and receive both CAs to trust.
//! 2. `tether-hub ca finish`: once every cluster and user holds a new-CA certificate, the
//!    serving certificate moves to the new CA and the old one stops being trusted.

use std::time::Duration;

use tether_common::files;
use tether_common::identity::Identity;
use tether_common::pki::CertificateAuthority;

use crate::admin::datadir::DataDir;
use crate::admin::datadir::{SERVING_CERT_LIFETIME, WriteError, write_file};
use crate::admin::init::{ADMIN_CERT_LIFETIME, InitError};
use crate::store::records::{ClusterRecord, HubMeta, Put, Role, UserRecord, decode};
use crate::store::{Batch, RedbStore, Store, Tree};
use tether_client::ClientConfig;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Lock(#[from] crate::admin::datadir::LockError),
    #[error("data directory {0} is not initialized (run: tether-hub init --data-dir {0})")]
    NotInitialized(String),
    #[error("a CA rotation is already in progress; complete it first (tether-hub ca finish)")]
    InProgress,
    #[error("no CA rotation is in progress (start one with: tether-hub ca rotate)")]
    NotRotating,
    #[error(
        "{0} still hold certificates from the old CA; let them connect and renew (or re-join them), \
         or pass --force to cut them off"
    )]
    NotRenewed(String),
    #[error("cannot open the store (is the hub running? stop it first): {0}")]
    Store(String),
    #[error("failed to {what} {path}: {detail}")]
    Io {
        what: &'static str,
        path: String,
        detail: String,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Pki(#[from] tether_common::pki::PkiError),
}

fn read(p: &std::path::Path) -> Result<String, RotationError> {
    std::fs::read_to_string(p).map_err(|e| RotationError::Io {
        what: "read",
        path: p.display().to_string(),
        detail: e.to_string(),
    })
}

fn rename(from: &std::path::Path, to: &std::path::Path) -> Result<(), RotationError> {
    std::fs::rename(from, to).map_err(|e| RotationError::Io {
        what: "move",
        path: from.display().to_string(),
        detail: e.to_string(),
    })
}

fn open_store(dir: &DataDir) -> Result<RedbStore, RotationError> {
    RedbStore::open(&dir.store()).map_err(|e| RotationError::Store(e.to_string()))
}

/// What a rotation step did, for the operator.
#[derive(Debug)]
pub struct RotationReport {
    pub new_pin: String,
    pub serving_pin: String,
}

/// Step 1: a new signing CA; the old one keeps serving and stays trusted.
pub fn rotate(dir: &DataDir) -> Result<RotationReport, RotationError> {
    if !dir.ca_cert().exists() {
        return Err(RotationError::NotInitialized(
            dir.root().display().to_string(),
        ));
    }
    let _lock = dir.lock("rotate its CA")?;
    if dir.rotating() {
        return Err(RotationError::InProgress);
    }
    // Fail before touching anything if the hub holds the store.
    let store = open_store(dir)?;
    let old = CertificateAuthority::load(&read(&dir.ca_cert())?, &read(&dir.ca_key())?)?;
    let (new, new_key) = CertificateAuthority::generate(CA_LIFETIME)?;
    rename(&dir.ca_cert(), &dir.ca_previous_cert())?;
    rename(&dir.ca_key(), &dir.ca_previous_key())?;
    files::write_with_mode(&dir.ca_cert(), new.cert_pem().as_bytes(), 0o644).map_err(|e| {
        RotationError::Io {
            what: "write",
            path: dir.ca_cert().display().to_string(),
            detail: e.to_string(),
        }
    })?;
    write_file(&dir.ca_key(), new_key.as_bytes())?;
    let bundle = format!("{}{}", new.cert_pem(), old.cert_pem());
    files::write_with_mode(&dir.ca_bundle(), bundle.as_bytes(), 0o644).map_err(|e| {
        RotationError::Io {
            what: "write",
            path: dir.ca_bundle().display().to_string(),
            detail: e.to_string(),
        }
    })?;
    reissue_admin(dir, &store, &new, &bundle)?;
    Ok(RotationReport {
        new_pin: new.pin()?,
        serving_pin: old.pin()?,
    })
}

/// A new admin credential from `ca`, trusting `trust`; the old one keeps working until finish.
fn reissue_admin(
    dir: &DataDir,
    store: &RedbStore,
    ca: &CertificateAuthority,
    trust: &str,
) -> Result<(), RotationError> {
    let admin = Identity::User("admin".into());
    let (cred, signed) = ca.issue_client(&admin, ADMIN_CERT_LIFETIME)?;
    let mut user: UserRecord = read_record(store, Tree::Users, "admin")?.unwrap_or_default();
    user.name = "admin".into();
    user.role = Role::Admin;
    user.cert_serials.insert(0, signed.serial.clone());
    user.cert_serials.truncate(2);
    user.cert_not_after = signed.not_after;
    user.cert_issuer = ca.pin()?;
    let mut batch = Batch::new();
    batch.put_user(&user);
    store
        .commit(&[&batch])
        .map_err(|e| RotationError::Store(e.to_string()))?;
    let hub = ClientConfig::load(&dir.admin_config())
        .map(|c| c.hub)
        .unwrap_or_default();
    ClientConfig::new(
        hub,
        "admin".into(),
        trust.to_string(),
        cred.cert_pem,
        cred.key_pem,
    )
    .save(&dir.admin_config())
    .map_err(|e| RotationError::Io {
        what: "write",
        path: dir.admin_config().display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(())
}

fn read_record<T: serde::de::DeserializeOwned>(
    store: &RedbStore,
    tree: Tree,
    key: &str,
) -> Result<Option<T>, RotationError> {
    store
        .get(tree, key.as_bytes())
        .map_err(|e| RotationError::Store(e.to_string()))?
        .map(|v| decode(tree, key.as_bytes(), &v).map_err(|e| RotationError::Store(e.to_string())))
        .transpose()
}

fn all_records<T: serde::de::DeserializeOwned>(
    store: &RedbStore,
    tree: Tree,
) -> Result<Vec<T>, RotationError> {
    store
        .scan_prefix(tree, b"")
        .map_err(|e| RotationError::Store(e.to_string()))?
        .into_iter()
        .map(|(k, v)| decode(tree, &k, &v).map_err(|e| RotationError::Store(e.to_string())))
        .collect()
}

/// Step 2: the new CA serves and is the only one trusted.
pub fn finish(dir: &DataDir, force: bool) -> Result<RotationReport, RotationError> {
    if !dir.rotating() {
        return Err(RotationError::NotRotating);
    }
    let _lock = dir.lock("finish its CA rotation")?;
    let store = open_store(dir)?;
    let new = CertificateAuthority::load(&read(&dir.ca_cert())?, &read(&dir.ca_key())?)?;
    let pin = new.pin()?;
    let mut stale: Vec<String> = Vec::new();
    for c in all_records::<ClusterRecord>(&store, Tree::Clusters)? {
        if c.cert_issuer != pin {
            stale.push(format!("cluster {}", c.name));
        }
    }
    for u in all_records::<UserRecord>(&store, Tree::Users)? {
        if u.cert_issuer != pin {
            stale.push(format!("user {}", u.name));
        }
    }
    if !stale.is_empty() && !force {
        return Err(RotationError::NotRenewed(stale.join(", ")));
    }
    let meta: HubMeta = read_record(&store, Tree::Meta, "hub")?.unwrap_or_default();
    let serving = new.issue_server(&meta.sans, SERVING_CERT_LIFETIME)?;
    write_file(&dir.hub_key(), serving.key_pem.as_bytes())?;
    write_file(
        &dir.hub_cert(),
        format!("{}{}", serving.cert_pem, new.cert_pem()).as_bytes(),
    )?;
    // The admin config trusts only the new CA from now on.
    if let Ok(mut cfg) = ClientConfig::load(&dir.admin_config()) {
        cfg.ca = new.cert_pem().to_string();
        let _ = cfg.save(&dir.admin_config());
    }
    for p in [
        dir.ca_previous_cert(),
        dir.ca_previous_key(),
        dir.ca_bundle(),
    ] {
        std::fs::remove_file(&p).map_err(|e| RotationError::Io {
            what: "remove",
            path: p.display().to_string(),
            detail: e.to_string(),
        })?;
    }
    Ok(RotationReport {
        serving_pin: pin.clone(),
        new_pin: pin,
    })
}
