//! The layout of the hub's data directory. Everything the hub needs lives here:
//!
//! ```text
//! D/ca.crt  D/ca.key      the certificate authority that signs new certificates (key 0600)
//! D/ca-previous.{crt,key} the CA being replaced, during a rotation only
//! D/ca-bundle.crt         the CAs peers are trusted from, during a rotation only
//! D/hub.crt D/hub.key     the serving certificate chain (leaf, then CA) and key (0600)
//! D/admin.yaml            the first admin's tetherctl config (0600)
//! D/store.redb            the store (redb; written by the hub only)
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

    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// Whether `init` has run here.
    pub fn is_initialized(&self) -> bool {
        self.ca_cert().exists() || self.store().exists()
    }
}
