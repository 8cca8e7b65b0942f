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
    /// Pin of the CA that signed the newest certificate (a CA rotation renews the others).
    pub cert_issuer: String,
    pub facts: Option<Facts>,
    /// When the hub last heard the agent: written when a session starts and when it ends
    /// (live sessions are tracked in memory). While `connected`, the agent was heard at
    /// least until the serving hub's last [`Records::heard_until`] too.
    pub last_seen_unix: i64,
    /// A session was live when this record was last written (its start). Cleared when it
    /// ends, or — after a crash or a takeover, when it could not be — by
    /// `Clusters::settle_contacts`, which moves `last_seen_unix` to `heard_until`.
    pub connected: bool,
    /// The token it joined with, for the audit trail.
    pub joined_with_token: String,
    /// No new placements (existing ones stay).
    pub cordoned: bool,
    pub taints: Vec<tether_common::workload::schedule::Taint>,
    /// Since when its agent has reported the member API unreachable (0: reachable).
    pub api_unreachable_since: i64,
    /// `cluster remove --cleanup` is under way: its agent removes every workload, then the
    /// cluster is forgotten.
    pub removing: bool,
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
    /// Label keys the joining agent may claim (`--labels`); the token's own labels win.
    #[serde(default)]
    pub allow_labels: Vec<String>,
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
    /// Nothing hub-wide: what the user may do comes from their teams.
    None,
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
            Role::None => "none",
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
    pub cert_not_after: i64,
    pub cert_issuer: String,
    pub created_by: String,
}

/// One audited call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    pub unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub source: String,
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

/// A workload as applied by a user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadRecord {
    pub name: String,
    /// The Workload as the user wrote it (JSON).
    pub workload: serde_json::Value,
    /// SHA-256 of `workload`: re-applying the same thing is not a change.
    pub spec_hash: String,
    /// Bumped whenever any cluster's copy changes.
    pub revision: u64,
    pub created_unix: i64,
    pub updated_unix: i64,
    pub updated_by: String,
    /// Deleted by a user; kept until every cluster has removed it.
    pub deleting: bool,
    /// The workload as it was before this revision, for `rollout undo`.
    pub previous: Option<serde_json::Value>,
    pub rollout: RolloutState,
    /// The team that owns it (empty: none; only hub-wide operators manage it).
    pub team: String,
}

/// A named label selector over clusters: what teams are granted roles on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSetRecord {
    pub name: String,
    pub selector: tether_common::workload::selector::LabelSelector,
    pub created_by: String,
    pub created_unix: i64,
    /// Empty (tetherctl) or `tether-controller` (a ClusterSet resource).
    pub managed_by: String,
}

/// A role on the clusters of one cluster set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grant {
    pub cluster_set: String,
    /// Viewer or Operator.
    pub role: Role,
    /// Workloads may hold cluster-scoped objects on those clusters.
    pub cluster_scoped: bool,
}

/// A team: its members, the namespaces its workloads live in, its grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamRecord {
    pub name: String,
    pub members: std::collections::BTreeSet<String>,
    pub namespaces: std::collections::BTreeSet<String>,
    pub grants: Vec<Grant>,
    pub created_by: String,
    pub created_unix: i64,
}

/// Where the rollout of the current revision stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RolloutState {
    /// The revision this state is about; a new revision starts afresh.
    pub revision: u64,
    pub paused: bool,
    /// Why the rollout stopped by itself (empty while it may go on).
    pub halted: String,
    /// The wave being rolled out, and since when.
    pub wave: usize,
    pub wave_started_unix: i64,
    /// `wave` has been announced (a WaveStarted event): the first wave is announced too.
    pub started: bool,
    pub complete: bool,
}

/// The phase part of a [`StatusRecord`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PhaseOf {
    pub revision: u64,
    pub phase: tether_common::workload::Phase,
    pub phase_since_unix: i64,
    pub received_unix: i64,
}

/// One applied spec of a workload, for `rollout history` and `rollout undo --to-revision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RevisionRecord {
    pub workload: String,
    pub revision: u64,
    pub unix: i64,
    pub by: String,
    /// What changed from the spec before, in words.
    pub change: String,
    /// The Workload as applied (JSON).
    pub spec: serde_json::Value,
}

impl RevisionRecord {
    pub fn key(workload: &str, revision: u64) -> String {
        format!("{workload}/{revision:020}")
    }
}

/// A scheduling decision, for `tetherctl events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventRecord {
    pub unix_ms: i64,
    pub workload: String,
    pub cluster: String,
    /// Placed, Removed, Replaced, WaveStarted, Halted, Paused, Resumed, Completed, Undone.
    pub reason: String,
    pub message: String,
}

/// What one cluster should run for one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssignmentRecord {
    pub cluster: String,
    pub workload: String,
    /// The workload revision at which this cluster's copy last changed.
    pub revision: u64,
    /// Hash of the bundle in [`Tree::Bundles`].
    pub bundle: String,
    /// The workload is being taken off this cluster.
    pub deleting: bool,
    /// The bundle this cluster should end up with; differs from `bundle` while a rollout
    /// has not reached it yet.
    pub target: String,
    /// Replaced by failover: it keeps running here until `replaced_by` is Available there,
    /// then it is taken off (no gap in between).
    pub retiring: bool,
    pub replaced_by: String,
    /// When this cluster was given its current copy (a rollout's deadline counts from here).
    pub since_unix: i64,
}

impl AssignmentRecord {
    /// Whether the cluster has been given its final copy.
    pub fn at_target(&self) -> bool {
        self.target.is_empty() || self.target == self.bundle
    }
}

impl AssignmentRecord {
    pub fn key(cluster: &str, workload: &str) -> String {
        format!("{cluster}/{workload}")
    }
}

/// Health of one object, as an agent reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectStatus {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub health: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftRecord {
    pub object: String,
    pub field: String,
    pub manager: String,
    pub unix: i64,
}

/// What a cluster last reported for a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusRecord {
    pub cluster: String,
    pub workload: String,
    pub revision: u64,
    pub phase: tether_common::workload::Phase,
    /// Since when the cluster has reported this phase on this revision.
    pub phase_since_unix: i64,
    pub message: String,
    pub ready: u32,
    pub total: u32,
    pub objects: Vec<ObjectStatus>,
    pub objects_total: u32,
    pub feedback: std::collections::BTreeMap<String, String>,
    pub drift: Vec<DriftRecord>,
    pub drift_corrections: u64,
    pub observed_unix_ms: i64,
    pub received_unix: i64,
}

const HUB_META_KEY: &[u8] = b"hub";
/// Until when the serving hub heard every agent whose session was live (see
/// [`ClusterRecord::connected`]): one small write per interval instead of one per
/// connected cluster.
const HEARD_UNTIL_KEY: &[u8] = b"heard_until";

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION as u8];
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_writer(&mut out, record).unwrap_or_default();
    out
}

/// Reads a record written by [`Put`].
pub(crate) fn decode<T: DeserializeOwned>(
    tree: Tree,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
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

/// The serials of the certificates a cluster's agent may present, from its stored
/// `record`. For a hub that does not serve: it keeps no allow-list of its own, only a copy of
/// the records (`store::etcd::follow`).
pub fn cluster_serials(name: &str, record: &[u8]) -> Result<Vec<String>, StoreError> {
    Ok(decode::<ClusterRecord>(Tree::Clusters, name.as_bytes(), record)?.cert_serials)
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

    pub fn team(&self, name: &str) -> Result<Option<TeamRecord>, StoreError> {
        self.get(Tree::Teams, name)
    }

    pub fn teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        self.list(Tree::Teams)
    }

    pub fn cluster_set(&self, name: &str) -> Result<Option<ClusterSetRecord>, StoreError> {
        self.get(Tree::ClusterSets, name)
    }

    pub fn cluster_sets(&self) -> Result<Vec<ClusterSetRecord>, StoreError> {
        self.list(Tree::ClusterSets)
    }

    pub fn workload(&self, name: &str) -> Result<Option<WorkloadRecord>, StoreError> {
        self.get(Tree::Workloads, name)
    }

    pub fn workloads(&self) -> Result<Vec<WorkloadRecord>, StoreError> {
        self.list(Tree::Workloads)
    }

    pub fn assignment(
        &self,
        cluster: &str,
        workload: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        self.get(Tree::Assignments, &AssignmentRecord::key(cluster, workload))
    }

    /// One record per cluster of `workload` (assignments or statuses), read from one snapshot.
    fn per_cluster<T: DeserializeOwned>(
        &self,
        tree: Tree,
        workload: &str,
        clusters: &[String],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let keys: Vec<String> = clusters
            .iter()
            .map(|c| AssignmentRecord::key(c, workload))
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        self.store
            .get_many(tree, &refs)?
            .into_iter()
            .zip(&keys)
            .map(|(v, k)| v.map(|v| decode(tree, k.as_bytes(), &v)).transpose())
            .collect()
    }

    /// The assignments of `workload` to each of `clusters`.
    pub fn assignments_of(
        &self,
        workload: &str,
        clusters: &[String],
    ) -> Result<Vec<Option<AssignmentRecord>>, StoreError> {
        self.per_cluster(Tree::Assignments, workload, clusters)
    }

    /// The statuses `clusters` reported for `workload`.
    pub fn statuses_of(
        &self,
        workload: &str,
        clusters: &[String],
    ) -> Result<Vec<Option<StatusRecord>>, StoreError> {
        self.per_cluster(Tree::Status, workload, clusters)
    }

    /// Whether `cluster` is assigned `workload` (without decoding the record).
    pub fn has_assignment(&self, cluster: &str, workload: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(
                Tree::Assignments,
                AssignmentRecord::key(cluster, workload).as_bytes(),
            )?
            .is_some())
    }

    /// Every assignment of one cluster.
    pub fn assignments_of_cluster(
        &self,
        cluster: &str,
    ) -> Result<Vec<AssignmentRecord>, StoreError> {
        let prefix = format!("{cluster}/");
        self.store
            .scan_prefix(Tree::Assignments, prefix.as_bytes())?
            .into_iter()
            .map(|(k, v)| decode(Tree::Assignments, &k, &v))
            .collect()
    }

    /// Names of the clusters a workload is assigned to (including those it is leaving).
    pub fn clusters_of_workload(&self, workload: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{workload}/");
        Ok(self
            .store
            .scan_prefix(Tree::Placements, prefix.as_bytes())?
            .into_iter()
            .filter_map(|(k, _)| {
                String::from_utf8(k)
                    .ok()
                    .and_then(|k| k.split_once('/').map(|(_, c)| c.to_string()))
            })
            .collect())
    }

    /// A stored bundle (gzip JSON).
    pub fn bundle(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .store
            .get(Tree::Bundles, hash.as_bytes())?
            .map(|v| v.get(1..).unwrap_or_default().to_vec()))
    }

    pub fn bundle_refs(&self, hash: &str) -> Result<u64, StoreError> {
        Ok(self
            .store
            .get(Tree::BundleRefs, hash.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub fn status(
        &self,
        cluster: &str,
        workload: &str,
    ) -> Result<Option<StatusRecord>, StoreError> {
        self.get(Tree::Status, &AssignmentRecord::key(cluster, workload))
    }

    /// Only the phase of a stored report (the rest of it is skipped, not decoded): what every
    /// incoming report is compared with.
    pub fn status_phase(
        &self,
        cluster: &str,
        workload: &str,
    ) -> Result<Option<PhaseOf>, StoreError> {
        self.get(Tree::Status, &AssignmentRecord::key(cluster, workload))
    }

    /// Audit entries with keys in `[from, to)`, oldest first.
    pub fn audit_range(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, AuditRecord)>, StoreError> {
        self.store
            .scan_range(Tree::Audit, from, to, limit)?
            .into_iter()
            .map(|(k, v)| decode(Tree::Audit, &k, &v).map(|r| (k, r)))
            .collect()
    }

    /// Events with keys in `[from, to)`, oldest first.
    pub fn event_range(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, EventRecord)>, StoreError> {
        self.store
            .scan_range(Tree::Events, from, to, limit)?
            .into_iter()
            .map(|(k, v)| decode(Tree::Events, &k, &v).map(|r| (k, r)))
            .collect()
    }

    /// Deletes the entries of a time-keyed tree (audit, events: keys start with the big-endian
    /// unix milliseconds) older than `cutoff_ms`. Returns how many went.
    pub async fn prune_before(&self, tree: Tree, cutoff_ms: i64) -> Result<usize, StoreError> {
        let to = (cutoff_ms.max(0) as u64).to_be_bytes();
        let mut pruned = 0;
        loop {
            let old = self.store.scan_range(tree, &[], &to, 10_000)?;
            if old.is_empty() {
                return Ok(pruned);
            }
            let mut batch = Batch::new();
            for (k, _) in &old {
                batch.delete(tree, k.clone());
            }
            self.store.commit(&batch).await?;
            pruned += old.len();
        }
    }

    /// Until when the serving hub last noted it heard every live session (0: never).
    pub fn heard_until(&self) -> Result<i64, StoreError> {
        Ok(self
            .store
            .get(Tree::Meta, HEARD_UNTIL_KEY)?
            .map(|v| decode::<i64>(Tree::Meta, HEARD_UNTIL_KEY, &v))
            .transpose()?
            .unwrap_or(0))
    }

    pub fn hub_meta(&self) -> Result<Option<HubMeta>, StoreError> {
        self.store
            .get(Tree::Meta, HUB_META_KEY)?
            .map(|v| decode(Tree::Meta, HUB_META_KEY, &v))
            .transpose()
    }

    /// The hub settings in a store that is not serving (a restore or an init checking it).
    pub fn hub_meta_in(store: &dyn crate::store::Store) -> Result<Option<HubMeta>, StoreError> {
        store
            .get(Tree::Meta, HUB_META_KEY)?
            .map(|v| decode(Tree::Meta, HUB_META_KEY, &v))
            .transpose()
    }

    /// Applies `batch` and waits for the disk.
    /// A workload's stored revisions, oldest first.
    pub fn revisions(&self, workload: &str) -> Result<Vec<RevisionRecord>, StoreError> {
        let prefix = format!("{workload}/");
        self.store
            .scan_prefix(Tree::Revisions, prefix.as_bytes())?
            .iter()
            .map(|(k, v)| decode(Tree::Revisions, k, v))
            .collect()
    }

    pub async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.commit(batch).await
    }

    /// Commits batches that need not be atomic together (each still is on its own) at once:
    /// the store's writer groups them, and on etcd they pack into ordinary transactions,
    /// where one batch of thousands of records would have to be staged (written twice).
    pub async fn commit_each(&self, batches: &[Batch]) -> Result<(), StoreError> {
        futures::future::join_all(batches.iter().map(|b| self.store.commit(b)))
            .await
            .into_iter()
            .collect()
    }

    /// Queues `batch` without waiting for the disk (see [`Durable::write`]).
    pub async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.store.write(batch).await
    }
}

/// Adds a record write to a batch.
pub trait Put {
    fn put_workload(&mut self, r: &WorkloadRecord) -> &mut Self;
    /// Writes the assignment and its index entry.
    fn put_assignment(&mut self, r: &AssignmentRecord) -> &mut Self;
    /// Deletes the assignment and its index entry.
    fn delete_assignment(&mut self, cluster: &str, workload: &str) -> &mut Self;
    fn put_bundle(&mut self, hash: &str, gzip: &[u8]) -> &mut Self;
    fn put_bundle_refs(&mut self, hash: &str, refs: u64) -> &mut Self;
    fn put_status(&mut self, r: &StatusRecord) -> &mut Self;
    fn put_cluster(&mut self, r: &ClusterRecord) -> &mut Self;
    fn put_audit(&mut self, key: &[u8], r: &AuditRecord) -> &mut Self;
    fn put_event(&mut self, key: &[u8], r: &EventRecord) -> &mut Self;
    fn put_token(&mut self, r: &TokenRecord) -> &mut Self;
    fn put_user(&mut self, r: &UserRecord) -> &mut Self;
    fn put_hub_meta(&mut self, r: &HubMeta) -> &mut Self;
    fn put_heard_until(&mut self, unix: i64) -> &mut Self;
    fn put_team(&mut self, r: &TeamRecord) -> &mut Self;
    fn put_cluster_set(&mut self, r: &ClusterSetRecord) -> &mut Self;
    fn put_revision(&mut self, r: &RevisionRecord) -> &mut Self;
}

impl Put for Batch {
    fn put_workload(&mut self, r: &WorkloadRecord) -> &mut Self {
        self.put(Tree::Workloads, r.name.as_bytes(), encode(r))
    }
    fn put_assignment(&mut self, r: &AssignmentRecord) -> &mut Self {
        self.put(
            Tree::Assignments,
            AssignmentRecord::key(&r.cluster, &r.workload),
            encode(r),
        )
        .put(
            Tree::Placements,
            format!("{}/{}", r.workload, r.cluster),
            Vec::new(),
        )
    }
    fn delete_assignment(&mut self, cluster: &str, workload: &str) -> &mut Self {
        self.delete(Tree::Assignments, AssignmentRecord::key(cluster, workload))
            .delete(Tree::Placements, format!("{workload}/{cluster}"))
    }
    fn put_bundle(&mut self, hash: &str, gzip: &[u8]) -> &mut Self {
        let mut v = Vec::with_capacity(gzip.len() + 1);
        v.push(SCHEMA_VERSION as u8);
        v.extend_from_slice(gzip);
        self.put(Tree::Bundles, hash.as_bytes(), v)
    }
    fn put_bundle_refs(&mut self, hash: &str, refs: u64) -> &mut Self {
        if refs == 0 {
            self.delete(Tree::BundleRefs, hash.as_bytes())
                .delete(Tree::Bundles, hash.as_bytes())
        } else {
            self.put(
                Tree::BundleRefs,
                hash.as_bytes(),
                refs.to_be_bytes().to_vec(),
            )
        }
    }
    fn put_status(&mut self, r: &StatusRecord) -> &mut Self {
        self.put(
            Tree::Status,
            AssignmentRecord::key(&r.cluster, &r.workload),
            encode(r),
        )
    }
    fn put_cluster(&mut self, r: &ClusterRecord) -> &mut Self {
        self.put(Tree::Clusters, r.name.as_bytes(), encode(r))
    }
    fn put_audit(&mut self, key: &[u8], r: &AuditRecord) -> &mut Self {
        self.put(Tree::Audit, key.to_vec(), encode(r))
    }
    fn put_event(&mut self, key: &[u8], r: &EventRecord) -> &mut Self {
        self.put(Tree::Events, key.to_vec(), encode(r))
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
    fn put_heard_until(&mut self, unix: i64) -> &mut Self {
        self.put(Tree::Meta, HEARD_UNTIL_KEY, encode(&unix))
    }
    fn put_team(&mut self, r: &TeamRecord) -> &mut Self {
        self.put(Tree::Teams, r.name.as_bytes(), encode(r))
    }
    fn put_cluster_set(&mut self, r: &ClusterSetRecord) -> &mut Self {
        self.put(Tree::ClusterSets, r.name.as_bytes(), encode(r))
    }
    fn put_revision(&mut self, r: &RevisionRecord) -> &mut Self {
        self.put(
            Tree::Revisions,
            RevisionRecord::key(&r.workload, r.revision).as_bytes(),
            encode(r),
        )
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

    #[tokio::test]
    async fn pruning_drops_only_time_keyed_entries_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let records = Records::new(Durable::new(std::sync::Arc::new(store)));
        let mut batch = Batch::new();
        for ms in [1_000i64, 2_000, 2_999, 3_000, 9_000] {
            let mut key = (ms as u64).to_be_bytes().to_vec();
            key.extend_from_slice(&7u64.to_be_bytes());
            let e = EventRecord {
                unix_ms: ms,
                workload: "web".into(),
                ..Default::default()
            };
            batch.put_event(&key, &e);
        }
        records.commit(&batch).await.unwrap();
        assert_eq!(records.prune_before(Tree::Events, 3_000).await.unwrap(), 3);
        let left: Vec<i64> = records
            .event_range(&[], &u64::MAX.to_be_bytes(), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.unix_ms)
            .collect();
        assert_eq!(left, vec![3_000, 9_000]);
        assert_eq!(records.prune_before(Tree::Events, 3_000).await.unwrap(), 0);
    }

    #[test]
    fn corrupt_and_newer_records_are_named() {
        let err = decode::<ClusterRecord>(Tree::Clusters, b"x", &[1, b'{']).unwrap_err();
        assert!(err.to_string().contains("clusters"), "{err}");
        let err = decode::<ClusterRecord>(Tree::Clusters, b"x", &[99, b'{', b'}']).unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }));
    }
}
