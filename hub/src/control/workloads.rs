//! Workloads on the hub as the API sees them: applying and deleting (checked here, carried
//! out by the [scheduler](crate::control::scheduler), which owns every workload and
//! assignment write), agents' status reports, and the status views.

use std::collections::BTreeMap;

use tether_common::workload::Workload;

use crate::control::clusters::Connectivity;
use crate::control::error::HubError;
use crate::control::scheduler::Scheduler;
use crate::sessions::Sessions;
use crate::store::Batch;
use crate::store::records::Records;
use crate::store::records::{AssignmentRecord, Put, StatusRecord, WorkloadRecord};
use std::sync::Arc;

pub use crate::control::scheduler::Applied;

/// Workloads' operations as the API sees them (the writes go through the scheduler).
#[derive(Clone)]
pub struct Workloads {
    records: Records,
    sessions: Arc<Sessions>,
    scheduler: Scheduler,
}

impl std::fmt::Debug for Workloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workloads").finish_non_exhaustive()
    }
}

impl Workloads {
    pub fn new(records: Records, sessions: Arc<Sessions>, scheduler: Scheduler) -> Self {
        Workloads {
            records,
            sessions,
            scheduler,
        }
    }

    pub(crate) fn records(&self) -> &Records {
        &self.records
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub(crate) fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

impl Workloads {
    /// Stores a workload (a new revision if it changed) and places it, in one commit.
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
        self.scheduler.apply(w, by, team.cloned()).await
    }

    /// Names of the clusters a workload runs on (not those it is leaving).
    pub(crate) fn placed_clusters(&self, workload: &str) -> Result<Vec<String>, HubError> {
        crate::control::scheduler::views::placed_clusters(&self.records, workload)
    }

    /// Deletes a workload: every cluster is told to remove it; the record goes once they have.
    pub async fn delete_workload(&self, name: &str) -> Result<(), HubError> {
        self.scheduler.delete(name).await
    }

    /// The agent removed a workload it was told to drop.
    pub async fn assignment_removed(&self, cluster: &str, workload: &str) -> Result<(), HubError> {
        self.scheduler.removed(cluster, workload).await
    }

    /// Stores a status report, if it is about a workload assigned to that cluster. Queued
    /// without waiting for the disk: the next group commit makes it durable, and an agent
    /// sends every status again when it reconnects, so a crash loses nothing that matters.
    ///
    /// A report that changes the phase or revision queues the workload for the scheduler
    /// (a rollout may move on, a failover may be due).
    pub async fn record_status(&self, mut status: StatusRecord) -> Result<bool, HubError> {
        if !self
            .records
            .has_assignment(&status.cluster, &status.workload)?
        {
            return Ok(false);
        }
        let before = self
            .records
            .status_phase(&status.cluster, &status.workload)?;
        let same = before
            .as_ref()
            .filter(|b| b.revision == status.revision && b.phase == status.phase);
        status.phase_since_unix = match same {
            Some(b) if b.phase_since_unix > 0 => b.phase_since_unix,
            Some(b) => b.received_unix,
            None => status.received_unix,
        };
        let changed = same.is_none();
        let workload = status.workload.clone();
        let mut batch = Batch::new();
        batch.put_status(&status);
        self.records.write(batch).await?;
        if changed {
            self.scheduler.enqueue(&workload);
        }
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
                .map(|c| crate::control::clusters::connectivity(&self.sessions, &c))
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
            for c in clusters
                .iter()
                .filter(|c| !c.assignment.deleting && !c.assignment.retiring)
            {
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
    /// Pending until the cluster reports on the current revision; Removing while leaving;
    /// Retiring while its failover replacement is not Available yet.
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
            _ if assignment.retiring => (
                "Retiring".to_string(),
                format!(
                    "replaced by {}; it keeps running here until {} is Available",
                    assignment.replaced_by, assignment.replaced_by
                ),
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
        let outdated = !assignment.deleting && !assignment.retiring && !assignment.at_target();
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

/// Caps on what an agent may store in one status report (the agent sends no more).
pub use tether_common::workload::limits::{
    MAX_STATUS_DRIFT, MAX_STATUS_FEEDBACK, MAX_STATUS_OBJECTS, MAX_STATUS_TEXT,
};

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
