//! The records the hub keeps, and typed access to them over the [`Durable`] store.
//!
//! Each value is one schema-version byte followed by JSON: readable with any tool, and a
//! future schema can tell old records from new.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tether_common::labels::Labels;

use crate::store::{Batch, Durable, SCHEMA_VERSION, StoreError, Tree};

/// Facts an agent reported about its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Facts {
    pub agent_version: String,
    pub kubernetes_version: String,
    pub node_count: u32,
    pub platform: String,
    pub api_reachable: bool,
    pub api_error: String,
}

/// A member cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterRecord {
    pub name: String,
    pub labels: Labels,
    pub joined_unix: i64,
    /// Serials of the certificates that may connect: the newest first, and the one before it
    /// (an agent that crashed between a renewal and saving it can still get back in).
    pub cert_serials: Vec<String>,
    pub cert_not_after: i64,
    pub facts: Option<Facts>,
    /// When the hub last heard the agent (updated when a session ends; live sessions are
    /// tracked in memory).
    pub last_seen_unix: i64,
    /// The token it joined with, for the audit trail.
    pub joined_with_token: String,
}

/// A join token. Only the hash of its secret is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRecord {
    pub id: String,
    pub secret_sha256: String,
    pub cluster: String,
    pub labels: Labels,
    pub created_unix: i64,
    pub expires_unix: i64,
    pub reusable: bool,
    pub uses: u32,
    pub revoked: bool,
    pub created_by: String,
}

/// What an API user may do.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything, change nothing.
    #[default]
    Viewer,
    /// Manage clusters and (later) workloads; not tokens or users.
    Operator,
    /// Everything.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// An API user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub created_unix: i64,
    pub cert_serials: Vec<String>,
}

/// Settings fixed at `tether-hub init`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HubMeta {
    /// The address agents and clients dial (`HOST:PORT`).
    pub advertise: String,
    /// Names and addresses in the serving certificate.
    pub sans: Vec<String>,
}

const HUB_META_KEY: &[u8] = b"hub";

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION as u8];
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_writer(&mut out, record).unwrap_or_default();
    out
}

fn decode<T: DeserializeOwned>(tree: Tree, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        tree: tree.name(),
        key: String::from_utf8_lossy(key).into_owned(),
        detail,
    };
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty record".into()))?;
    if u32::from(version) > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version.into(),
            known: SCHEMA_VERSION,
        });
    }
    serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
}

/// Typed access to the hub's records.
#[derive(Debug, Clone)]
pub struct Records {
    store: Durable,
}

impl Records {
    pub fn new(store: Durable) -> Self {
        Records { store }
    }

    pub fn store(&self) -> &Durable {
        &self.store
    }

    fn get<T: DeserializeOwned>(&self, tree: Tree, key: &str) -> Result<Option<T>, StoreError> {
        self.store
            .get(tree, key.as_bytes())?
            .map(|v| decode(tree, key.as_bytes(), &v))
            .transpose()
    }

    fn list<T: DeserializeOwned>(&self, tree: Tree) -> Result<Vec<T>, StoreError> {
        self.store
            .scan_prefix(tree, b"")?
            .into_iter()
            .map(|(k, v)| decode(tree, &k, &v))
            .collect()
    }

    pub fn cluster(&self, name: &str) -> Result<Option<ClusterRecord>, StoreError> {
        self.get(Tree::Clusters, name)
    }

    pub fn clusters(&self) -> Result<Vec<ClusterRecord>, StoreError> {
        self.list(Tree::Clusters)
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get(Tree::Tokens, id)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.list(Tree::Tokens)
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get(Tree::Users, name)
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.list(Tree::Users)
    }

    pub fn hub_meta(&self) -> Result<Option<HubMeta>, StoreError> {
        self.store
            .get(Tree::Meta, HUB_META_KEY)?
            .map(|v| decode(Tree::Meta, HUB_META_KEY, &v))
            .transpose()
    }

    /// Applies `batch` and waits for the disk.
    pub async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.commit(batch).await
    }

    /// Applies `batch` without waiting for the disk (see [`Durable::apply_lazy`]).
    pub fn apply_lazy(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.apply_lazy(batch)
    }
}

/// Adds a record write to a batch.
pub trait Put {
    fn put_cluster(&mut self, r: &ClusterRecord) -> &mut Self;
    fn put_token(&mut self, r: &TokenRecord) -> &mut Self;
    fn put_user(&mut self, r: &UserRecord) -> &mut Self;
    fn put_hub_meta(&mut self, r: &HubMeta) -> &mut Self;
}

impl Put for Batch {
    fn put_cluster(&mut self, r: &ClusterRecord) -> &mut Self {
        self.put(Tree::Clusters, r.name.as_bytes(), encode(r))
    }
    fn put_token(&mut self, r: &TokenRecord) -> &mut Self {
        self.put(Tree::Tokens, r.id.as_bytes(), encode(r))
    }
    fn put_user(&mut self, r: &UserRecord) -> &mut Self {
        self.put(Tree::Users, r.name.as_bytes(), encode(r))
    }
    fn put_hub_meta(&mut self, r: &HubMeta) -> &mut Self {
        self.put(Tree::Meta, HUB_META_KEY, encode(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_carry_their_schema() {
        let r = ClusterRecord {
            name: "edge-1".into(),
            labels: [("region".to_string(), "eu".to_string())].into(),
            ..Default::default()
        };
        let bytes = encode(&r);
        assert_eq!(bytes[0] as u32, SCHEMA_VERSION);
        let back: ClusterRecord = decode(Tree::Clusters, b"edge-1", &bytes).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn corrupt_and_newer_records_are_named() {
        let err = decode::<ClusterRecord>(Tree::Clusters, b"x", &[1, b'{']).unwrap_err();
        assert!(err.to_string().contains("clusters"), "{err}");
        let err = decode::<ClusterRecord>(Tree::Clusters, b"x", &[99, b'{', b'}']).unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }));
    }
}
