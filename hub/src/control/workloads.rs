//! Workloads on the hub: applying and deleting them, placing them on clusters, rendering and
//! storing each cluster's copy, and the status views the API serves.
//!
//! Every change is one atomic batch, durable before the caller hears back; live sessions are
//! then hinted (see [`crate::sessions::delivery`]). Identical copies share one stored bundle, counted
//! by reference.

use std::collections::{BTreeMap, HashMap};

use tether_common::labels::Labels;
use tether_common::time::unix_now;
use tether_common::workload::bundle::{self, Bundle};
use tether_common::workload::{self, Workload};

use crate::control::clusters::Connectivity;
use crate::control::error::HubError;
use crate::hub::Hub;
use crate::sessions::delivery::Hint;
use crate::store::records::{AssignmentRecord, Put, RolloutState, StatusRecord, WorkloadRecord};
use crate::store::{Batch, Tree};

/// The result of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub name: String,
    pub revision: u64,
    pub changed: bool,
    pub clusters: Vec<String>,
}

/// Reference-count changes and new bundles gathered for one batch.
#[derive(Default)]
pub(crate) struct Ledger {
    delta: HashMap<String, i64>,
    new: HashMap<String, Vec<u8>>,
}

impl Ledger {
    pub(crate) fn add(&mut self, hash: &str, gzip: impl FnOnce() -> Vec<u8>) {
        *self.delta.entry(hash.to_string()).or_default() += 1;
        if !self.new.contains_key(hash) {
            self.new.insert(hash.to_string(), gzip());
        }
    }

    pub(crate) fn remove(&mut self, hash: &str) {
        *self.delta.entry(hash.to_string()).or_default() -= 1;
    }

    pub(crate) fn write(self, hub: &Hub, batch: &mut Batch) -> Result<(), HubError> {
        for (hash, delta) in self.delta {
            if delta == 0 {
                continue;
            }
            let current = hub.records.bundle_refs(&hash)?;
            let refs = (current as i64 + delta).max(0) as u64;
            if current == 0
                && refs > 0
                && let Some(gz) = self.new.get(&hash)
            {
                batch.put_bundle(&hash, gz);
            }
            batch.put_bundle_refs(&hash, refs);
        }
        Ok(())
    }
}

/// One cluster's rendered copy.
pub(crate) struct Copy {
    pub(crate) hash: String,
    pub(crate) json: std::sync::Arc<Vec<u8>>,
}

/// What makes copies differ: which overrides match, and the replica share.
type CopyKey = (Vec<bool>, Option<u32>);

/// Renders copies for clusters, once per distinct set of matching overrides and replica share.
pub(crate) struct Renderer<'a> {
    workload: &'a Workload,
    max_size: usize,
    /// A team's workload carries where its objects may go.
    confine: Option<bundle::Confinement>,
    cache: HashMap<CopyKey, (String, std::sync::Arc<Vec<u8>>)>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(
        workload: &'a Workload,
        max_size: usize,
        confine: Option<bundle::Confinement>,
    ) -> Self {
        Renderer {
            workload,
            max_size,
            confine,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn copy_for(
        &mut self,
        cluster: &str,
        labels: &Labels,
        share: Option<u32>,
    ) -> Result<Copy, HubError> {
        let overrides: Vec<bool> = self
            .workload
            .spec
            .overrides
            .iter()
            .map(|o| o.cluster_selector.matches(labels))
            .collect();
        let key = (overrides, share);
        if let Some((hash, json)) = self.cache.get(&key) {
            return Ok(Copy {
                hash: hash.clone(),
                json: json.clone(),
            });
        }
        let manifests = workload::render_with_share(self.workload, cluster, labels, share)
            .map_err(HubError::InvalidArgument)?;
        let mut b = Bundle::new(self.workload, manifests);
        b.confine = self.confine.clone();
        let json = b.to_json();
        if json.len() > self.max_size {
            return Err(HubError::InvalidArgument(format!(
                "workload {:?}: the copy rendered for cluster {cluster} is {} bytes, over this hub's limit of {} bytes (--max-bundle-size)",
                self.workload.metadata.name,
                json.len(),
                self.max_size
            )));
        }
        let hash = bundle::hash(&json);
        let json = std::sync::Arc::new(json);
        self.cache.insert(key, (hash.clone(), json.clone()));
        Ok(Copy { hash, json })
    }
}

impl Hub {
    /// Stores a workload (a new revision if it changed) and every placed cluster's copy.
    pub async fn apply_workload(
        &self,
        w: Workload,
        by: &str,
        team: Option<&crate::control::tenancy::TeamScope>,
    ) -> Result<Applied, HubError> {
        w.validate()
            .map_err(|(field, msg)| HubError::InvalidArgument(format!("field {field}: {msg}")))?;
        // A team's workload keeps to the team's namespaces (and cluster-scoped kinds only
        // with a grant); where it may run is decided by the scheduler from its sets.
        if let Some(t) = team {
            t.check(&w).map_err(HubError::PermissionDenied)?;
        }
        let team_name = team.map(|t| t.name.clone()).unwrap_or_default();
        let name = w.metadata.name.clone();
        let value =
            serde_json::to_value(&w).map_err(|e| HubError::InvalidArgument(e.to_string()))?;
        let spec_hash = bundle::hash(&serde_json::to_vec(&value).unwrap_or_default());
        let _w = self.write_lock.lock().await;
        let existing = self.records.workload(&name)?;
        if let Some(e) = &existing {
            if e.team != team_name {
                let owner = |t: &str| {
                    if t.is_empty() {
                        "no team".to_string()
                    } else {
                        format!("team {t:?}")
                    }
                };
                return Err(HubError::PermissionDenied(format!(
                    "workload {name:?} belongs to {}, not {}",
                    owner(&e.team),
                    owner(&team_name)
                )));
            }
            if e.deleting {
                return Err(HubError::FailedPrecondition(format!(
                    "workload {name:?} is being deleted; apply it again once it is gone"
                )));
            }
            if e.spec_hash == spec_hash {
                let clusters = self.placed_clusters(&name)?;
                return Ok(Applied {
                    name,
                    revision: e.revision,
                    changed: false,
                    clusters,
                });
            }
        }
        let now = unix_now();
        let revision = existing.as_ref().map_or(1, |e| e.revision + 1);
        let record = WorkloadRecord {
            name: name.clone(),
            workload: value,
            spec_hash,
            revision,
            created_unix: existing.as_ref().map_or(now, |e| e.created_unix),
            updated_unix: now,
            updated_by: by.to_string(),
            deleting: false,
            previous: None,
            rollout: RolloutState::default(),
            team: team_name.clone(),
        };
        // The copy without overrides must fit even if no cluster is placed yet.
        Renderer::new(
            &w,
            self.settings.max_bundle_size,
            team.map(|t| t.confinement()),
        )
        .copy_for("(unplaced)", &Labels::new(), None)?;
        let record = WorkloadRecord {
            previous: existing.as_ref().map(|e| e.workload.clone()),
            rollout: RolloutState {
                revision,
                wave_started_unix: now,
                ..RolloutState::default()
            },
            ..record
        };
        let mut batch = Batch::new();
        batch.put_workload(&record);
        self.records.commit(&batch).await?;
        drop(_w);
        // Place it: new clusters at once, clusters running an older copy as the rollout allows.
        let touched = self.reconcile_workload(&name).await?;
        tracing::info!(workload = %name, revision, clusters_changed = touched.len(), by, "workload applied");
        Ok(Applied {
            clusters: self.placed_clusters(&name)?,
            name,
            revision,
            changed: true,
        })
    }

    /// Names of the clusters a workload runs on (not those it is leaving).
    pub(crate) fn placed_clusters(&self, workload: &str) -> Result<Vec<String>, HubError> {
        let mut out = Vec::new();
        for c in self.records.clusters_of_workload(workload)? {
            if self
                .records
                .assignment(&c, workload)?
                .is_some_and(|a| !a.deleting)
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes a workload: every cluster is told to remove it; the record goes once they have.
    pub async fn delete_workload(&self, name: &str) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let mut record = self
            .records
            .workload(name)?
            .ok_or_else(|| HubError::NotFound {
                kind: "workload",
                name: name.to_string(),
                hint: " (see: tetherctl get workloads)",
            })?;
        let clusters = self.records.clusters_of_workload(name)?;
        let mut batch = Batch::new();
        if clusters.is_empty() {
            batch.delete(Tree::Workloads, name);
            self.records.commit(&batch).await?;
            tracing::info!(workload = name, "workload deleted");
            return Ok(());
        }
        record.deleting = true;
        record.revision += 1;
        for c in &clusters {
            if let Some(mut a) = self.records.assignment(c, name)? {
                a.deleting = true;
                a.revision = record.revision;
                batch.put_assignment(&a);
            }
        }
        batch.put_workload(&record);
        self.records.commit(&batch).await?;
        drop(_w);
        for c in &clusters {
            self.sessions.hint(c, Hint::Workload(name.to_string()));
        }
        tracing::info!(
            workload = name,
            clusters = clusters.len(),
            "workload deletion started"
        );
        Ok(())
    }

    /// Re-places every workload after a cluster joined, left or changed (labels, taints,
    /// cordon): any workload may now choose or drop it.
    pub async fn reschedule_all(&self) -> Result<(), HubError> {
        for rec in self.records.workloads()? {
            if !rec.deleting {
                self.reconcile_workload(&rec.name).await?;
            }
        }
        Ok(())
    }

    /// Forgets every assignment and status of a removed cluster.
    pub(crate) fn forget_cluster_assignments(
        &self,
        cluster: &str,
        batch: &mut Batch,
    ) -> Result<Vec<String>, HubError> {
        let mut ledger = Ledger::default();
        let mut workloads = Vec::new();
        for a in self.records.assignments_of_cluster(cluster)? {
            ledger.remove(&a.bundle);
            batch.delete_assignment(cluster, &a.workload);
            batch.delete(Tree::Status, AssignmentRecord::key(cluster, &a.workload));
            workloads.push(a.workload);
        }
        ledger.write(self, batch)?;
        Ok(workloads)
    }

    /// After assignments went away: delete workloads that were waiting for that.
    pub(crate) fn finish_deleted_workloads(
        &self,
        names: &[String],
        gone: &[(String, String)],
        batch: &mut Batch,
    ) -> Result<(), HubError> {
        for name in names {
            let Some(rec) = self.records.workload(name)? else {
                continue;
            };
            if !rec.deleting {
                continue;
            }
            let remaining = self
                .records
                .clusters_of_workload(name)?
                .into_iter()
                .filter(|c| !gone.iter().any(|(gc, gw)| gc == c && gw == name))
                .count();
            if remaining == 0 {
                batch.delete(Tree::Workloads, name.as_bytes());
                tracing::info!(workload = %name, "workload deleted from every cluster");
            }
        }
        Ok(())
    }

    /// The agent removed a workload it was told to drop.
    pub async fn assignment_removed(&self, cluster: &str, workload: &str) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let Some(a) = self.records.assignment(cluster, workload)? else {
            return Ok(());
        };
        if !a.deleting {
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut ledger = Ledger::default();
        ledger.remove(&a.bundle);
        batch.delete_assignment(cluster, workload);
        batch.delete(Tree::Status, AssignmentRecord::key(cluster, workload));
        ledger.write(self, &mut batch)?;
        self.finish_deleted_workloads(
            &[workload.to_string()],
            &[(cluster.to_string(), workload.to_string())],
            &mut batch,
        )?;
        self.records.commit(&batch).await?;
        tracing::info!(cluster, workload, "workload removed from cluster");
        Ok(())
    }

    /// Stores a status report, if it is about a workload assigned to that cluster. Queued
    /// without waiting for the disk: the next group commit makes it durable, and an agent
    /// sends every status again when it reconnects, so a crash loses nothing that matters.
    pub async fn record_status(&self, status: StatusRecord) -> Result<bool, HubError> {
        if !self
            .records
            .has_assignment(&status.cluster, &status.workload)?
        {
            return Ok(false);
        }
        let mut batch = Batch::new();
        batch.put_status(&status);
        self.records.write(batch).await?;
        Ok(true)
    }

    pub fn get_workload(&self, name: &str) -> Result<(WorkloadRecord, Vec<String>), HubError> {
        let record = self
            .records
            .workload(name)?
            .ok_or_else(|| HubError::NotFound {
                kind: "workload",
                name: name.to_string(),
                hint: " (see: tetherctl get workloads)",
            })?;
        let clusters = self.placed_clusters(name)?;
        Ok((record, clusters))
    }

    /// Each cluster's view of one workload.
    pub fn workload_status(
        &self,
        name: &str,
    ) -> Result<(WorkloadRecord, Vec<ClusterWorkload>), HubError> {
        let (record, _) = self.get_workload(name)?;
        let mut out = Vec::new();
        for cluster in self.records.clusters_of_workload(name)? {
            let Some(assignment) = self.records.assignment(&cluster, name)? else {
                continue;
            };
            let status = self.records.status(&cluster, name)?;
            let connectivity = self
                .records
                .cluster(&cluster)?
                .map(|c| self.connectivity(&c))
                .unwrap_or(Connectivity::Offline);
            out.push(ClusterWorkload::new(assignment, status, connectivity));
        }
        out.sort_by(|a, b| a.assignment.cluster.cmp(&b.assignment.cluster));
        Ok((record, out))
    }

    /// Counts per workload for `get workloads`.
    pub fn list_workloads(&self) -> Result<Vec<WorkloadSummary>, HubError> {
        let mut out = Vec::new();
        for record in self.records.workloads()? {
            let (_, clusters) = self.workload_status(&record.name)?;
            let mut s = WorkloadSummary {
                name: record.name.clone(),
                revision: record.revision,
                deleting: record.deleting,
                team: record.team.clone(),
                ..Default::default()
            };
            for c in clusters.iter().filter(|c| !c.assignment.deleting) {
                s.clusters += 1;
                match (c.stale, c.phase.as_str()) {
                    (true, _) => s.stale += 1,
                    _ if c.outdated => s.pending += 1,
                    (false, "Available") => s.available += 1,
                    (false, "Progressing" | "Applied") => s.progressing += 1,
                    (false, "Degraded") => s.degraded += 1,
                    _ => s.pending += 1,
                }
            }
            out.push(s);
        }
        Ok(out)
    }
}

/// One cluster's state for one workload, as the API shows it.
#[derive(Debug, Clone)]
pub struct ClusterWorkload {
    pub assignment: AssignmentRecord,
    pub status: Option<StatusRecord>,
    pub connectivity: Connectivity,
    /// Pending until the cluster reports on the current revision; Removing while leaving.
    pub phase: String,
    pub message: String,
    /// The cluster is not Ready: its last report is not a current fact.
    pub stale: bool,
    /// A newer copy waits for this cluster in the rollout.
    pub outdated: bool,
}

impl ClusterWorkload {
    fn new(
        assignment: AssignmentRecord,
        status: Option<StatusRecord>,
        connectivity: Connectivity,
    ) -> Self {
        let stale = connectivity != Connectivity::Ready;
        let (phase, mut message) = match &status {
            _ if assignment.deleting => (
                "Removing".to_string(),
                "waiting for the cluster to remove it".to_string(),
            ),
            Some(s) if s.revision == assignment.revision => {
                (s.phase.to_string(), s.message.clone())
            }
            Some(s) => (
                "Pending".to_string(),
                format!(
                    "waiting for revision {} (last reported {} on revision {})",
                    assignment.revision, s.phase, s.revision
                ),
            ),
            None => (
                "Pending".to_string(),
                format!("waiting for revision {}", assignment.revision),
            ),
        };
        let outdated = !assignment.deleting && !assignment.at_target();
        if outdated {
            message = format!("a newer revision waits in the rollout; {message}");
        }
        if stale {
            message = format!("cluster {}: last known {message}", connectivity.as_str());
        }
        ClusterWorkload {
            assignment,
            status,
            connectivity,
            phase,
            message,
            stale,
            outdated,
        }
    }

    /// Available on the revision the cluster should run, and the cluster is live.
    pub fn is_available(&self) -> bool {
        !self.stale && !self.assignment.deleting && !self.outdated && self.phase == "Available"
    }
}

#[derive(Debug, Clone, Default)]
pub struct WorkloadSummary {
    pub name: String,
    pub revision: u64,
    pub clusters: u32,
    pub available: u32,
    pub progressing: u32,
    pub degraded: u32,
    pub stale: u32,
    pub pending: u32,
    pub deleting: bool,
    pub team: String,
}

/// Caps on what an agent may store in one status report.
pub const MAX_STATUS_OBJECTS: usize = 50;
pub const MAX_STATUS_DRIFT: usize = 10;
pub const MAX_STATUS_FEEDBACK: usize = 50;
pub const MAX_STATUS_TEXT: usize = 1024;

/// Truncates text for storage.
pub fn cap_text(s: String) -> String {
    if s.len() <= MAX_STATUS_TEXT {
        return s;
    }
    let mut end = MAX_STATUS_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Keeps feedback bounded.
pub fn cap_feedback(f: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    f.into_iter()
        .take(MAX_STATUS_FEEDBACK)
        .map(|(k, v)| (cap_text(k), cap_text(v)))
        .collect()
}
