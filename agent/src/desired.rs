//! The agent's desired-state cache: for each workload, the last revision the hub sent and
//! the inventory of objects applied from it. It is written before the hub is acknowledged and
//! read at start-up, so an agent restarted while the hub is unreachable keeps enforcing what
//! it last heard.
//!
//! Kept in the member cluster (a Secret per workload in the agent's namespace) or, outside a
//! cluster, in the state directory (one 0600 file per workload).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An object the agent applied, for pruning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

impl ObjRef {
    pub fn of(obj: &Value) -> ObjRef {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ObjRef {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
        }
    }
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One workload's cached desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredRecord {
    pub workload: String,
    pub revision: u64,
    pub bundle_hash: String,
    /// The bundle as the hub sent it (gzip JSON), base64 in the file form.
    #[serde(with = "b64", default)]
    pub bundle: Vec<u8>,
    /// What was applied from it (and from earlier revisions not yet pruned).
    #[serde(default)]
    pub inventory: Vec<ObjRef>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

const LABEL: &str = "tether.dev/desired-state";
/// A Secret holds at most 1 MiB; leave room for the rest of the object.
const SECRET_BUNDLE_LIMIT: usize = 1_000_000;

/// Where the cache lives.
#[derive(Clone)]
pub enum DesiredStore {
    Dir(PathBuf),
    Secrets {
        api: Box<Api<Secret>>,
        namespace: String,
    },
}

impl std::fmt::Debug for DesiredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DesiredStore::Dir(d) => write!(f, "{}", d.display()),
            DesiredStore::Secrets { namespace, .. } => {
                write!(f, "Secrets in namespace {namespace}")
            }
        }
    }
}

fn secret_name(workload: &str) -> String {
    format!("tether-desired-{workload}")
}

impl DesiredStore {
    pub fn dir(state_dir: PathBuf) -> Self {
        DesiredStore::Dir(state_dir.join("desired"))
    }

    pub fn secrets(client: kube::Client, namespace: &str) -> Self {
        DesiredStore::Secrets {
            api: Box::new(Api::namespaced(client, namespace)),
            namespace: namespace.to_string(),
        }
    }

    /// Every cached workload.
    pub async fn load_all(&self) -> Result<Vec<DesiredRecord>, String> {
        match self {
            DesiredStore::Dir(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
                };
                let mut out = Vec::new();
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().and_then(|x| x.to_str()) != Some("json") {
                        continue;
                    }
                    let bytes = std::fs::read(&p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                    match serde_json::from_slice::<DesiredRecord>(&bytes) {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            tracing::error!(file = %p.display(), error = %e, "ignoring an unreadable desired-state file")
                        }
                    }
                }
                Ok(out)
            }
            DesiredStore::Secrets { api, .. } => {
                let list = api
                    .list(&ListParams::default().labels(&format!("{LABEL}=true")))
                    .await
                    .map_err(|e| format!("cannot list desired-state Secrets: {e}"))?;
                let mut out = Vec::new();
                for s in list.items {
                    let mut data = s.data.unwrap_or_default();
                    let meta = data.remove("record.json").map(|b| b.0).unwrap_or_default();
                    match serde_json::from_slice::<DesiredRecord>(&meta) {
                        Ok(mut r) => {
                            r.bundle = data.remove("bundle.gz").map(|b| b.0).unwrap_or_default();
                            out.push(r);
                        }
                        Err(e) => {
                            tracing::error!(secret = ?s.metadata.name, error = %e, "ignoring an unreadable desired-state Secret")
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Saves one workload's record, replacing the previous one.
    pub async fn save(&self, r: &DesiredRecord) -> Result<(), String> {
        match self {
            DesiredStore::Dir(dir) => {
                tether_common::files::create_private_dir(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let p = dir.join(format!("{}.json", r.workload));
                let bytes = serde_json::to_vec(r).map_err(|e| e.to_string())?;
                tether_common::files::write_private(&p, &bytes)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))
            }
            DesiredStore::Secrets { api, .. } => {
                if r.bundle.len() > SECRET_BUNDLE_LIMIT {
                    return Err(format!(
                        "the desired state of {} ({} bytes compressed) does not fit in a Secret; run the agent with --state-dir",
                        r.workload,
                        r.bundle.len()
                    ));
                }
                let meta = DesiredRecord {
                    bundle: Vec::new(),
                    ..r.clone()
                };
                let name = secret_name(&r.workload);
                let mut secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([
                            (LABEL.to_string(), "true".to_string()),
                            (
                                "app.kubernetes.io/managed-by".to_string(),
                                "tether-agent".to_string(),
                            ),
                        ])),
                        ..Default::default()
                    },
                    type_: Some("tether.dev/desired-state".into()),
                    data: Some(BTreeMap::from([
                        (
                            "record.json".to_string(),
                            ByteString(serde_json::to_vec(&meta).map_err(|e| e.to_string())?),
                        ),
                        ("bundle.gz".to_string(), ByteString(r.bundle.clone())),
                    ])),
                    ..Default::default()
                };
                match api.get_opt(&name).await.map_err(|e| e.to_string())? {
                    Some(existing) => {
                        secret.metadata.resource_version = existing.metadata.resource_version;
                        api.replace(&name, &PostParams::default(), &secret)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        api.create(&PostParams::default(), &secret)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(())
            }
        }
    }

    pub async fn delete(&self, workload: &str) -> Result<(), String> {
        match self {
            DesiredStore::Dir(dir) => {
                match std::fs::remove_file(dir.join(format!("{workload}.json"))) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
            DesiredStore::Secrets { api, .. } => match api
                .delete(&secret_name(workload), &DeleteParams::default())
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_cache_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = DesiredStore::dir(dir.path().to_path_buf());
        assert!(store.load_all().await.unwrap().is_empty());
        let r = DesiredRecord {
            workload: "web".into(),
            revision: 3,
            bundle_hash: "h".into(),
            bundle: vec![1, 2, 3],
            inventory: vec![ObjRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "default".into(),
                name: "c".into(),
            }],
        };
        store.save(&r).await.unwrap();
        assert_eq!(store.load_all().await.unwrap(), vec![r]);
        store.delete("web").await.unwrap();
        assert!(store.load_all().await.unwrap().is_empty());
    }
}
