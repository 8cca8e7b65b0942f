//! The tetherctl configuration file: where the hub is and the user's credential.
//!
//! ```yaml
//! apiVersion: tether.dev/v1alpha1
//! kind: ClientConfig
//! hub: hub.example.com:7443
//! user: admin
//! ca: |
//!   -----BEGIN CERTIFICATE----- ...
//! cert: | ...
//! key: | ...
//! ```
//! Found at `--config`, else `$TETHER_CONFIG`, else `~/.tether/config.yaml`. Written 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "tether.dev/v1alpha1";
pub const KIND: &str = "ClientConfig";

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    pub api_version: String,
    pub kind: String,
    /// `HOST:PORT` of the hub's TLS port (several hubs on one etcd: comma-separated, tried
    /// in turn).
    pub hub: String,
    pub user: String,
    /// The hub's CA certificate (PEM).
    pub ca: String,
    /// The user's client certificate (PEM).
    pub cert: String,
    /// The user's private key (PEM).
    pub key: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("hub", &self.hub)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no tetherctl config found at {0} (pass --config FILE or set TETHER_CONFIG; `tether-hub init` writes DATA_DIR/admin.yaml)"
    )]
    Missing(String),
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid tetherctl config {path}: {detail}")]
    Invalid { path: String, detail: String },
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientConfig {
    pub fn new(hub: String, user: String, ca: String, cert: String, key: String) -> Self {
        ClientConfig {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            hub,
            user,
            ca,
            cert,
            key,
        }
    }

    /// The path to use: the flag, then `$TETHER_CONFIG`, then `~/.tether/config.yaml`.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        if let Some(p) = std::env::var_os("TETHER_CONFIG").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".tether").join("config.yaml")
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing(path.display().to_string())
            } else {
                ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
        let invalid = |detail: String| ConfigError::Invalid {
            path: path.display().to_string(),
            detail,
        };
        let cfg: ClientConfig =
            serde_saphyr::from_str(&text).map_err(|e| invalid(first_line(&e.to_string())))?;
        if cfg.kind != KIND || cfg.api_version != API_VERSION {
            return Err(invalid(format!(
                "expected apiVersion {API_VERSION} and kind {KIND}, found {} {}",
                cfg.api_version, cfg.kind
            )));
        }
        Ok(cfg)
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Writes the config owner-only.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        tether_common::files::write_private(path, self.to_yaml().as_bytes()).map_err(|source| {
            ConfigError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        let c = ClientConfig::new(
            "h:1".into(),
            "admin".into(),
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n".into(),
            "x\ny\n".into(),
            "k\n".into(),
        );
        c.save(&p).unwrap();
        assert_eq!(ClientConfig::load(&p).unwrap(), c);
        std::fs::write(&p, format!("{}extra: 1\n", c.to_yaml())).unwrap();
        assert!(
            ClientConfig::load(&p)
                .unwrap_err()
                .to_string()
                .contains("extra")
        );
        let missing = ClientConfig::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, ConfigError::Missing(_)));
    }
}
