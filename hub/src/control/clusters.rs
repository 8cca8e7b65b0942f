//! Member clusters as the API shows them, and the operations on them.

use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::labels::{self, LabelChanges};
use tether_common::time::unix_now;

use tether_common::workload::schedule::Taint;

use crate::control::error::HubError;
use crate::hub::Hub;
use crate::sessions::{EndReason, SessionInfo};
use crate::store::records::{ClusterRecord, Facts, Put};
use crate::store::{Batch, Tree};

/// How long a removed cluster's live session gets to receive its goodbye before its
/// connection is cut.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// A change to a cluster's settings; `None`/empty leaves a setting alone.
#[derive(Debug, Default)]
pub struct ClusterChange {
    pub cordoned: Option<bool>,
    pub add_taints: Vec<String>,
    pub remove_taints: Vec<String>,
}

/// Whether the hub can hear a cluster's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Joined, never connected.
    Pending,
    /// A live session whose agent is heard within the grace.
    Ready,
    /// No live session.
    Offline,
}

impl Connectivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Connectivity::Pending => "Pending",
            Connectivity::Ready => "Ready",
            Connectivity::Offline => "Offline",
        }
    }
}

/// A cluster's record joined with its live session.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub record: ClusterRecord,
    pub session: Option<SessionInfo>,
    pub status: Connectivity,
    pub last_seen_unix: i64,
}

impl Hub {
    /// Whether the hub can hear a cluster's agent now.
    pub fn connectivity(&self, record: &ClusterRecord) -> Connectivity {
        match self.sessions.get(&record.name) {
            Some(_) => Connectivity::Ready,
            None if record.last_seen_unix == 0 => Connectivity::Pending,
            None => Connectivity::Offline,
        }
    }

    fn view(&self, record: ClusterRecord) -> ClusterView {
        let session = self.sessions.get(&record.name);
        let (status, last_seen_unix) = match &session {
            Some(s) => (Connectivity::Ready, s.last_heard_unix),
            None if record.last_seen_unix == 0 => (Connectivity::Pending, 0),
            None => (Connectivity::Offline, record.last_seen_unix),
        };
        ClusterView {
            record,
            session,
            status,
            last_seen_unix,
        }
    }

    pub fn list_clusters(&self) -> Result<Vec<ClusterView>, HubError> {
        Ok(self
            .records
            .clusters()?
            .into_iter()
            .map(|r| self.view(r))
            .collect())
    }

    pub fn get_cluster(&self, name: &str) -> Result<ClusterView, HubError> {
        let record = self
            .records
            .cluster(name)?
            .ok_or_else(|| HubError::cluster_not_found(name))?;
        Ok(self.view(record))
    }

    pub async fn label_cluster(
        &self,
        name: &str,
        changes: LabelChanges,
    ) -> Result<ClusterView, HubError> {
        for (k, v) in &changes.set {
            labels::validate_key(k).map_err(HubError::InvalidArgument)?;
            labels::validate_value(v).map_err(HubError::InvalidArgument)?;
        }
        let _w = self.write_lock.lock().await;
        let mut record = self
            .records
            .cluster(name)?
            .ok_or_else(|| HubError::cluster_not_found(name))?;
        for k in &changes.remove {
            record.labels.remove(k);
        }
        record.labels.extend(changes.set);
        labels::check_count(record.labels.len()).map_err(HubError::InvalidArgument)?;
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        drop(_w);
        // New labels may place or unplace workloads, or change which overrides apply.
        self.reschedule_all().await?;
        Ok(self.view(record))
    }

    /// Changes per-cluster settings: impersonation, cordon, taints.
    pub async fn set_cluster(
        &self,
        name: &str,
        change: ClusterChange,
    ) -> Result<ClusterView, HubError> {
        let mut taints_add = Vec::new();
        for t in &change.add_taints {
            taints_add.push(Taint::parse(t).map_err(HubError::InvalidArgument)?);
        }
        let scheduling = change.cordoned.is_some()
            || !change.add_taints.is_empty()
            || !change.remove_taints.is_empty();
        let record = {
            let _w = self.write_lock.lock().await;
            let mut record = self
                .records
                .cluster(name)?
                .ok_or_else(|| HubError::cluster_not_found(name))?;
            if let Some(c) = change.cordoned {
                record.cordoned = c;
            }
            if record.taints.len() + taints_add.len() > labels::MAX_LABELS {
                return Err(HubError::InvalidArgument(format!(
                    "a cluster may carry at most {} taints",
                    labels::MAX_LABELS
                )));
            }
            for t in taints_add {
                record.taints.retain(|x| x.key != t.key);
                record.taints.push(t);
            }
            record
                .taints
                .retain(|x| !change.remove_taints.contains(&x.key));
            let mut batch = Batch::new();
            batch.put_cluster(&record);
            self.records.commit(&batch).await?;
            record
        };
        if scheduling {
            // Taints and cordons only keep new placements away, but placements waiting for
            // a spot may now find one.
            self.reschedule_all().await?;
        }
        Ok(self.view(record))
    }

    /// Forgets a cluster: its certificates stop working at once (new handshakes and requests
    /// are refused), its live session is told why and closed, and its connections are cut.
    pub async fn remove_cluster(&self, name: &str) -> Result<(), HubError> {
        let identity = Identity::Cluster(name.to_string());
        {
            let _w = self.write_lock.lock().await;
            if self.records.cluster(name)?.is_none() {
                return Err(HubError::cluster_not_found(name));
            }
            let mut batch = Batch::new();
            batch.delete(Tree::Clusters, name);
            // Nobody is left to tell: its assignments and statuses go with it.
            let workloads = self.forget_cluster_assignments(name, &mut batch)?;
            let gone: Vec<(String, String)> = workloads
                .iter()
                .map(|w| (name.to_string(), w.clone()))
                .collect();
            self.finish_deleted_workloads(&workloads, &gone, &mut batch)?;
            // Its tokens go too: a reusable one must not bring the removed cluster back.
            let mut revoked = 0;
            for mut t in self.records.tokens()? {
                if t.cluster == name && !t.revoked {
                    t.revoked = true;
                    batch.put_token(&t);
                    revoked += 1;
                }
            }
            self.records.commit(&batch).await?;
            if revoked > 0 {
                tracing::info!(
                    cluster = name,
                    tokens = revoked,
                    "join tokens of a removed cluster revoked"
                );
            }
            self.access.deny_new(identity.clone(), Vec::new());
            self.metrics.clusters.dec();
        }
        if let Some(ended) = self.sessions.end(
            name,
            EndReason::Removed,
            &format!("cluster {name:?} was removed from the hub; its credential no longer works"),
        ) {
            let _ = tokio::time::timeout(GOODBYE_GRACE, ended.cancelled()).await;
        }
        self.access.remove(&identity);
        tracing::info!(cluster = name, "cluster removed");
        Ok(())
    }

    /// Stores the facts an agent reported.
    pub async fn record_facts(&self, name: &str, facts: Facts) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let Some(mut record) = self.records.cluster(name)? else {
            return Ok(());
        };
        if record.facts.as_ref() == Some(&facts) {
            return Ok(());
        }
        record.facts = Some(facts);
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        Ok(())
    }

    /// Records a new session's facts and its start as the last contact, in one write.
    pub async fn record_session_start(
        &self,
        name: &str,
        facts: Facts,
        unix: i64,
    ) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let Some(mut record) = self.records.cluster(name)? else {
            return Ok(());
        };
        record.facts = Some(facts);
        record.last_seen_unix = unix.max(record.last_seen_unix).min(unix_now());
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        Ok(())
    }

    /// Records when a session's agent was last heard, as the session ends.
    pub async fn record_last_seen(&self, name: &str, unix: i64) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let Some(mut record) = self.records.cluster(name)? else {
            return Ok(());
        };
        record.last_seen_unix = unix.max(record.last_seen_unix).min(unix_now());
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        Ok(())
    }
}
