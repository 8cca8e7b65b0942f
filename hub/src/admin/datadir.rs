//! The layout of the hub's data directory. Everything the hub needs lives here:
//!
//! ```text
//! D/ca.crt  D/ca.key      the certificate authority that signs new certificates (key 0600)
//! D/ca-previous.{crt,key} the CA being replaced, during a rotation only
//! D/ca-bundle.crt         the CAs peers are trusted from, during a rotation only
//! D/hub.crt D/hub.key     the serving certificate chain (leaf, then CA) and key (0600)
//! D/admin.yaml            the first admin's tetherctl config (0600)
//! D/store.redb            the store (redb; written by the hub only)
//! D/hub.lock              locked by the process that owns the directory: a serving hub,
//!                         or init/restore/compact/ca while they change it
//! ```

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    pub fn ca_previous_cert(&self) -> PathBuf {
        self.root.join("ca-previous.crt")
    }

    pub fn ca_previous_key(&self) -> PathBuf {
        self.root.join("ca-previous.key")
    }

    pub fn ca_bundle(&self) -> PathBuf {
        self.root.join("ca-bundle.crt")
    }

    /// Whether a CA rotation is in progress.
    pub fn rotating(&self) -> bool {
        self.ca_previous_cert().exists()
    }

    pub fn hub_cert(&self) -> PathBuf {
        self.root.join("hub.crt")
    }

    pub fn hub_key(&self) -> PathBuf {
        self.root.join("hub.key")
    }

    pub fn admin_config(&self) -> PathBuf {
        self.root.join("admin.yaml")
    }

    /// Written by `migrate --if-empty` when etcd holds a hub copied from another data
    /// directory: why `admin.yaml` here is on no allow-list, and whose to use.
    pub fn admin_elsewhere(&self) -> PathBuf {
        self.root.join("admin.yaml.not-registered")
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// Whether `init` has run here.
    pub fn is_initialized(&self) -> bool {
        self.ca_cert().exists() || self.store().exists()
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("hub.lock")
    }

    /// Takes the directory for this process (creating it, owner-only, if missing): a hub
    /// serves it, or an admin command changes it, never both. Held until the guard drops (or
    /// the process ends, however it ends: the lock is the kernel's).
    pub fn lock(&self, purpose: &str) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            path: self.lock_file().display().to_string(),
            source,
        };
        tether_common::files::create_private_dir(&self.root).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_file())
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                dir: self.root.display().to_string(),
                purpose: purpose.to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// Everything a data directory holds besides its lock, with the mode each file has.
pub const CONTENTS: &[(&str, u32)] = &[
    ("ca.crt", 0o644),
    ("ca.key", 0o600),
    ("ca-previous.crt", 0o644),
    ("ca-previous.key", 0o600),
    ("ca-bundle.crt", 0o644),
    ("hub.crt", 0o644),
    ("hub.key", 0o600),
    ("admin.yaml", 0o600),
    ("store.redb", 0o600),
];

/// Prefixes of the scratch entries admin commands and backups make inside the directory;
/// what a crash left behind is removed when the hub starts.
pub const SCRATCH_PREFIXES: &[&str] = &[".init-", ".restore-", ".replaced-", ".backup-"];

impl DataDir {
    /// A staging directory inside this one (same filesystem, so moving its files in is a
    /// rename), private and with an unpredictable name; removed when dropped.
    pub fn staging(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.root)
    }

    /// Checks that the files in this directory make a working hub: the CA key is the CA's,
    /// the serving certificate and the admin credential were issued by it and come with their
    /// keys, every file is a regular file, and the store opens with its hub settings.
    pub fn verify(&self) -> Result<(), String> {
        for (name, _) in CONTENTS {
            let p = self.root.join(name);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if !m.file_type().is_file() => {
                    return Err(format!("{name} is not a regular file"));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{name}: {e}")),
            }
        }
        let read = |name: &str| {
            std::fs::read_to_string(self.root.join(name)).map_err(|e| format!("{name}: {e}"))
        };
        let ca = tether_common::pki::CertificateAuthority::load(&read("ca.crt")?, &read("ca.key")?)
            .map_err(|e| format!("ca.crt/ca.key: {e}"))?;
        let trust = match std::fs::read_to_string(self.ca_previous_cert()) {
            Ok(prev) => format!("{}{prev}", ca.cert_pem()),
            Err(_) => ca.cert_pem().to_string(),
        };
        use tether_common::tls::{CertUse, verify_issued};
        verify_issued(
            &trust,
            &read("hub.crt")?,
            &read("hub.key")?,
            CertUse::Server,
        )
        .map_err(|e| format!("hub.crt/hub.key: {e}"))?;
        if self.admin_config().exists() {
            let admin = tether_client::ClientConfig::load(&self.admin_config())
                .map_err(|e| e.to_string())?;
            verify_issued(&trust, &admin.cert, &admin.key, CertUse::Client)
                .map_err(|e| format!("admin.yaml: {e}"))?;
        }
        let store = crate::store::RedbStore::open(&self.store()).map_err(|e| e.to_string())?;
        crate::store::records::Records::hub_meta_in(&store)
            .map_err(|e| e.to_string())?
            .ok_or("the store holds no hub settings")?;
        Ok(())
    }

    /// Replaces this directory's contents with `staged`'s (already verified): the old files
    /// are moved aside, the new ones renamed in, and on any failure the old ones are put back.
    /// The caller holds the lock.
    pub fn replace_with(&self, staged: &DataDir) -> std::io::Result<()> {
        let aside = self.staging(".replaced-")?;
        let mut moved_aside = Vec::new();
        let mut moved_in = Vec::new();
        let result = (|| {
            for (name, _) in CONTENTS {
                let p = self.root.join(name);
                if std::fs::symlink_metadata(&p).is_ok() {
                    std::fs::rename(&p, aside.path().join(name))?;
                    moved_aside.push(*name);
                }
            }
            for (name, _) in CONTENTS {
                let src = staged.root.join(name);
                if src.exists() {
                    std::fs::rename(&src, self.root.join(name))?;
                    moved_in.push(*name);
                }
            }
            Ok(())
        })();
        if result.is_err() {
            for name in moved_in {
                let _ = std::fs::remove_file(self.root.join(name));
            }
            for name in moved_aside {
                let _ = std::fs::rename(aside.path().join(name), self.root.join(name));
            }
        }
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        result
    }

    /// Removes scratch entries a crashed admin command or backup left (see
    /// [`SCRATCH_PREFIXES`]). The caller holds the lock.
    pub fn clean_scratch(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if SCRATCH_PREFIXES.iter().any(|p| name.starts_with(p)) {
                let p = e.path();
                let gone = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if gone.is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// The data directory held by this process (see [`DataDir::lock`]).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is in use by another tether-hub process (a hub serving it, or another admin command): stop it before you {purpose}"
    )]
    Held { dir: String, purpose: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Lifetime of the hub's serving certificate (reissued at start-up when under 30 days left).
pub const SERVING_CERT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// A file of the data directory could not be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {path}: {source}")]
pub struct WriteError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Writes a data-directory file holding secrets (0600, replaced atomically).
pub fn write_file(path: &std::path::Path, contents: &[u8]) -> Result<(), WriteError> {
    tether_common::files::write_private(path, contents).map_err(|source| WriteError {
        path: path.display().to_string(),
        source,
    })
}
