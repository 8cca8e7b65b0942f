//! The agent's credential (its key, certificate and the hub's CA) and where it is kept:
//! a 0600 file in the state directory, or a Secret in the agent's namespace when it runs
//! in-cluster. The private key is generated here and never leaves the member cluster.

use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use tether_common::time::unix_now;

const FILE_NAME: &str = "credential.json";
const SECRET_KEY: &str = "credential.json";

/// What the agent needs to talk to the hub with mutual TLS.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub cluster: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after_unix: i64,
    /// When this agent received the certificate: renewal is timed from here.
    pub received_unix: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("cluster", &self.cluster)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn is_expired(&self) -> bool {
        self.not_after_unix <= unix_now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("failed to read the credential from {location}: {detail}")]
    Read { location: String, detail: String },
    #[error("failed to save the credential to {location}: {detail}")]
    Write { location: String, detail: String },
}

/// Where the credential lives.
#[derive(Clone)]
pub enum CredentialStore {
    File(PathBuf),
    Secret {
        api: Box<Api<Secret>>,
        namespace: String,
        name: String,
    },
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

impl CredentialStore {
    /// A store in `dir` (created 0700 if missing).
    pub fn file(dir: PathBuf) -> Self {
        CredentialStore::File(dir.join(FILE_NAME))
    }

    pub fn secret(client: kube::Client, namespace: &str, name: &str) -> Self {
        CredentialStore::Secret {
            api: Box::new(Api::namespaced(client, namespace)),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn location(&self) -> String {
        match self {
            CredentialStore::File(p) => p.display().to_string(),
            CredentialStore::Secret {
                namespace, name, ..
            } => format!("Secret {namespace}/{name}"),
        }
    }

    fn read_err(&self, detail: impl ToString) -> CredentialError {
        CredentialError::Read {
            location: self.location(),
            detail: detail.to_string(),
        }
    }

    fn write_err(&self, detail: impl ToString) -> CredentialError {
        CredentialError::Write {
            location: self.location(),
            detail: detail.to_string(),
        }
    }

    /// The stored credential, if there is one.
    pub async fn load(&self) -> Result<Option<Credential>, CredentialError> {
        let bytes = match self {
            CredentialStore::File(p) => match std::fs::read(p) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.read_err(e)),
            },
            CredentialStore::Secret { api, name, .. } => {
                let Some(secret) = api.get_opt(name).await.map_err(|e| self.read_err(e))? else {
                    return Ok(None);
                };
                match secret.data.and_then(|mut d| d.remove(SECRET_KEY)) {
                    Some(b) => b.0,
                    None => return Ok(None),
                }
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.read_err(format!("not a credential: {e}")))
    }

    /// Whether a credential could be saved here (the directory can be written; the Secret can
    /// be created or replaced, checked with a server-side dry run).
    pub async fn check_writable(&self) -> Result<(), CredentialError> {
        match self {
            CredentialStore::File(p) => {
                let dir = p.parent().unwrap_or(std::path::Path::new("."));
                tether_common::files::create_private_dir(dir).map_err(|e| self.write_err(e))?;
                tempfile::tempfile_in(dir)
                    .map(drop)
                    .map_err(|e| self.write_err(e))
            }
            CredentialStore::Secret { api, name, .. } => {
                let dry = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                let probe = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let result = match api.get_opt(name).await.map_err(|e| self.write_err(e))? {
                    Some(existing) => {
                        let mut s = existing;
                        s.metadata.managed_fields = None;
                        api.replace(name, &dry, &s).await.map(drop)
                    }
                    None => api.create(&dry, &probe).await.map(drop),
                };
                result.map_err(|e| self.write_err(e))
            }
        }
    }

    /// Saves `cred`, replacing what was there.
    pub async fn save(&self, cred: &Credential) -> Result<(), CredentialError> {
        let bytes = serde_json::to_vec(cred).map_err(|e| self.write_err(e))?;
        match self {
            CredentialStore::File(p) => {
                if let Some(dir) = p.parent() {
                    tether_common::files::create_private_dir(dir).map_err(|e| self.write_err(e))?;
                }
                tether_common::files::write_private(p, &bytes).map_err(|e| self.write_err(e))
            }
            CredentialStore::Secret { api, name, .. } => {
                let mut secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_string(),
                                "tether-agent".to_string(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some([(SECRET_KEY.to_string(), ByteString(bytes))].into()),
                    ..Default::default()
                };
                match api.get_opt(name).await.map_err(|e| self.write_err(e))? {
                    Some(existing) => {
                        secret.metadata.resource_version = existing.metadata.resource_version;
                        api.replace(name, &PostParams::default(), &secret)
                            .await
                            .map_err(|e| self.write_err(e))?;
                    }
                    None => {
                        api.create(&PostParams::default(), &secret)
                            .await
                            .map_err(|e| self.write_err(e))?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_credentials_round_trip_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::file(dir.path().join("state"));
        assert!(store.load().await.unwrap().is_none());
        let cred = Credential {
            cluster: "edge-1".into(),
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
            not_after_unix: 10,
            received_unix: 5,
        };
        store.save(&cred).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(cred.clone()));
        let CredentialStore::File(p) = &store else {
            unreachable!()
        };
        assert_eq!(
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            !format!("{cred:?}").contains("key"),
            "Debug must not print the key"
        );
    }
}
