//! `tether-hub init`: a new CA, the hub's serving certificate, the store and the first admin.

use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::pki::{CertificateAuthority, PkiError};
use tether_common::{files, tls};

use crate::admin::datadir::DataDir;
use crate::admin::datadir::{SERVING_CERT_LIFETIME, WriteError, write_file};
use crate::store::records::{HubMeta, Put, Role, UserRecord};
use crate::store::{Batch, RedbStore, Store};
use tether_client::ClientConfig;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The admin credential written by init.
pub const ADMIN_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
const DEFAULT_PORT: u16 = 7443;

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub data_dir: DataDir,
    /// Extra DNS names or IP addresses for the serving certificate.
    pub sans: Vec<String>,
    /// The address agents and clients should dial; defaults to the first extra SAN (or
    /// localhost) on port 7443.
    pub advertise: Option<String>,
    pub force: bool,
    /// An existing CA to sign with (certificate, key; PEM files) instead of a new one.
    pub ca: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "data directory {0} already holds a hub; pass --force to replace it (this destroys its CA, \
         and every joined cluster will have to join again)"
    )]
    Exists(String),
    #[error("invalid --advertise {0:?}: expected HOST:PORT")]
    Advertise(String),
    #[error(
        "--advertise host {host:?} is not among the certificate's names {sans:?}; add --san {host}"
    )]
    AdvertiseNotInSans { host: String, sans: Vec<String> },
    #[error("failed to prepare {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Lock(#[from] crate::admin::datadir::LockError),
    #[error("the new hub did not check out ({0}); nothing was changed")]
    Verify(String),
}

/// What init made, for the operator.
#[derive(Debug)]
pub struct InitReport {
    pub ca_pin: String,
    pub advertise: String,
    pub sans: Vec<String>,
}

pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    let dir = &opts.data_dir;
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| InitError::Io { path, source }
    };
    if dir.is_initialized() && !opts.force {
        return Err(InitError::Exists(dir.root().display().to_string()));
    }
    // Everything is checked and built before the old hub (if any) is touched.
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for s in &opts.sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let advertise = match &opts.advertise {
        Some(a) => a.clone(),
        None => format!(
            "{}:{DEFAULT_PORT}",
            opts.sans.first().map_or("localhost", |s| s.as_str())
        ),
    };
    let (host, _) =
        tls::split_host_port(&advertise).map_err(|_| InitError::Advertise(advertise.clone()))?;
    if !sans.contains(&host) {
        return Err(InitError::AdvertiseNotInSans { host, sans });
    }
    let (ca, ca_key) = match &opts.ca {
        Some((cert, key)) => {
            let cert_pem = std::fs::read_to_string(cert).map_err(io(cert))?;
            let key_pem = std::fs::read_to_string(key).map_err(io(key))?;
            (CertificateAuthority::load(&cert_pem, &key_pem)?, key_pem)
        }
        None => CertificateAuthority::generate(CA_LIFETIME)?,
    };
    // A hub serving this directory (or another admin command) holds it: refused, not
    // replaced under it.
    let _lock = dir.lock("replace it with a new hub")?;
    let staging = dir.staging(".init-").map_err(io(dir.root()))?;
    let new = DataDir::new(staging.path());
    files::write_with_mode(&new.ca_cert(), ca.cert_pem().as_bytes(), 0o644)
        .map_err(io(&new.ca_cert()))?;
    write_file(&new.ca_key(), ca_key.as_bytes())?;
    let serving = ca.issue_server(&sans, SERVING_CERT_LIFETIME)?;
    write_file(&new.hub_key(), serving.key_pem.as_bytes())?;
    write_file(
        &new.hub_cert(),
        format!("{}{}", serving.cert_pem, ca.cert_pem()).as_bytes(),
    )?;

    let admin = Identity::User("admin".into());
    let (cred, signed) = ca.issue_client(&admin, ADMIN_CERT_LIFETIME)?;
    let store = RedbStore::open(&new.store())?;
    let mut batch = Batch::new();
    batch
        .put_hub_meta(&HubMeta {
            advertise: advertise.clone(),
            sans: sans.clone(),
        })
        .put_user(&UserRecord {
            name: "admin".into(),
            role: Role::Admin,
            created_unix: tether_common::time::unix_now(),
            cert_serials: vec![signed.serial],
            cert_not_after: signed.not_after,
            cert_issuer: ca.pin()?,
            created_by: "tether-hub init".into(),
        });
    store.commit(&[&batch])?;
    drop(store);
    let config = ClientConfig::new(
        advertise.clone(),
        "admin".into(),
        ca.cert_pem().to_string(),
        cred.cert_pem,
        cred.key_pem,
    );
    config
        .save(&new.admin_config())
        .map_err(|e| InitError::Io {
            path: new.admin_config().display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
    new.verify().map_err(InitError::Verify)?;
    dir.replace_with(&new).map_err(io(dir.root()))?;
    Ok(InitReport {
        ca_pin: ca.pin()?,
        advertise,
        sans,
    })
}
