//! Operations on teams and cluster sets (the policy they make is in [`crate::control::tenancy`]).

use tether_common::identity::validate_name;
use tether_common::time::unix_now;
use tether_common::workload::selector::LabelSelector;

use crate::control::RecordLock;
use crate::control::error::HubError;
use crate::control::scheduler::Scheduler;
use crate::control::tenancy::{Scope, TeamScope};
use crate::store::records::Records;
use crate::store::records::{ClusterSetRecord, Grant, Put, Role, TeamRecord, UserRecord};
use crate::store::{Batch, Tree};

/// A change to a team; empty fields change nothing.
#[derive(Debug, Default)]
pub struct TeamChange {
    pub add_members: Vec<String>,
    pub remove_members: Vec<String>,
    pub add_namespaces: Vec<String>,
    pub remove_namespaces: Vec<String>,
    pub add_grants: Vec<Grant>,
    pub remove_grants: Vec<String>,
}

fn not_found(kind: &'static str, name: &str, hint: &'static str) -> HubError {
    HubError::NotFound {
        kind,
        name: name.to_string(),
        hint,
    }
}

/// Teams' and cluster sets' operations.
#[derive(Debug, Clone)]
pub struct Teams {
    records: Records,
    /// Held while reading, changing and writing back records other operations change too.
    write_lock: RecordLock,
    scheduler: Scheduler,
}

impl Teams {
    pub fn new(records: Records, write_lock: RecordLock, scheduler: Scheduler) -> Self {
        Teams {
            records,
            write_lock,
            scheduler,
        }
    }
}

impl Teams {
    /// What `user` may see and do, from the current teams and cluster sets.
    pub fn scope(&self, user: &UserRecord) -> Result<Scope, HubError> {
        Ok(Scope::new(
            user,
            &self.records.teams()?,
            &self.records.cluster_sets()?,
        ))
    }

    /// Every team, resolved against the cluster sets.
    pub fn team_scopes(&self) -> Result<Vec<TeamScope>, HubError> {
        let sets = self.records.cluster_sets()?;
        Ok(self
            .records
            .teams()?
            .iter()
            .map(|t| TeamScope::of(t, &sets))
            .collect())
    }

    pub async fn create_cluster_set(
        &self,
        name: &str,
        selector: &str,
        by: &str,
        managed_by: &str,
    ) -> Result<ClusterSetRecord, HubError> {
        validate_name(name).map_err(|e| HubError::InvalidArgument(format!("cluster set {e}")))?;
        let selector = LabelSelector::parse(selector)
            .map_err(|e| HubError::InvalidArgument(format!("selector: {e}")))?;
        let _w = self.write_lock.lock().await;
        if self.records.cluster_set(name)?.is_some() {
            return Err(HubError::FailedPrecondition(format!(
                "cluster set {name:?} already exists"
            )));
        }
        let record = ClusterSetRecord {
            name: name.to_string(),
            selector,
            created_by: by.to_string(),
            created_unix: unix_now(),
            managed_by: managed_by.to_string(),
        };
        let mut batch = Batch::new();
        batch.put_cluster_set(&record);
        self.records.commit(&batch).await?;
        tracing::info!(cluster_set = name, by, "cluster set created");
        Ok(record)
    }

    /// A new selector for a cluster set; the grants on it stay.
    pub async fn update_cluster_set(
        &self,
        name: &str,
        selector: &str,
    ) -> Result<ClusterSetRecord, HubError> {
        let selector = LabelSelector::parse(selector)
            .map_err(|e| HubError::InvalidArgument(format!("selector: {e}")))?;
        let _w = self.write_lock.lock().await;
        let Some(mut record) = self.records.cluster_set(name)? else {
            return Err(not_found(
                "cluster set",
                name,
                " (see: tetherctl clusterset list)",
            ));
        };
        if record.selector != selector {
            record.selector = selector;
            let mut batch = Batch::new();
            batch.put_cluster_set(&record);
            self.records.commit(&batch).await?;
            tracing::info!(cluster_set = name, selector = %record.selector, "cluster set changed");
        }
        Ok(record)
    }

    pub async fn delete_cluster_set(&self, name: &str) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        if self.records.cluster_set(name)?.is_none() {
            return Err(not_found(
                "cluster set",
                name,
                " (see: tetherctl clusterset list)",
            ));
        }
        let users: Vec<String> = self
            .records
            .teams()?
            .into_iter()
            .filter(|t| t.grants.iter().any(|g| g.cluster_set == name))
            .map(|t| t.name)
            .collect();
        if !users.is_empty() {
            return Err(HubError::FailedPrecondition(format!(
                "cluster set {name:?} is granted to team {}; revoke it first (tetherctl team revoke)",
                users.join(", ")
            )));
        }
        let mut batch = Batch::new();
        batch.delete(Tree::ClusterSets, name);
        self.records.commit(&batch).await?;
        tracing::info!(cluster_set = name, "cluster set deleted");
        Ok(())
    }

    pub async fn create_team(
        &self,
        name: &str,
        namespaces: &[String],
        by: &str,
    ) -> Result<TeamRecord, HubError> {
        validate_name(name).map_err(|e| HubError::InvalidArgument(format!("team {e}")))?;
        for ns in namespaces {
            validate_name(ns).map_err(|e| HubError::InvalidArgument(format!("namespace {e}")))?;
        }
        let _w = self.write_lock.lock().await;
        if self.records.team(name)?.is_some() {
            return Err(HubError::FailedPrecondition(format!(
                "team {name:?} already exists"
            )));
        }
        let record = TeamRecord {
            name: name.to_string(),
            namespaces: namespaces.iter().cloned().collect(),
            created_by: by.to_string(),
            created_unix: unix_now(),
            ..Default::default()
        };
        let mut batch = Batch::new();
        batch.put_team(&record);
        self.records.commit(&batch).await?;
        tracing::info!(team = name, by, "team created");
        Ok(record)
    }

    pub async fn update_team(
        &self,
        name: &str,
        change: TeamChange,
    ) -> Result<TeamRecord, HubError> {
        for ns in &change.add_namespaces {
            validate_name(ns).map_err(|e| HubError::InvalidArgument(format!("namespace {e}")))?;
        }
        for g in &change.add_grants {
            if !matches!(g.role, Role::Viewer | Role::Operator) {
                return Err(HubError::InvalidArgument(format!(
                    "a team is granted viewer or operator on a cluster set, not {}",
                    g.role
                )));
            }
        }
        let record = {
            let _w = self.write_lock.lock().await;
            let mut t = self
                .records
                .team(name)?
                .ok_or_else(|| not_found("team", name, " (see: tetherctl team list)"))?;
            for u in &change.add_members {
                if self.records.user(u)?.is_none() {
                    return Err(not_found("user", u, " (see: tetherctl user list)"));
                }
                t.members.insert(u.clone());
            }
            for u in &change.remove_members {
                t.members.remove(u);
            }
            t.namespaces.extend(change.add_namespaces.iter().cloned());
            for ns in &change.remove_namespaces {
                t.namespaces.remove(ns);
            }
            for g in change.add_grants {
                if self.records.cluster_set(&g.cluster_set)?.is_none() {
                    return Err(not_found(
                        "cluster set",
                        &g.cluster_set,
                        " (see: tetherctl clusterset list)",
                    ));
                }
                t.grants.retain(|x| x.cluster_set != g.cluster_set);
                t.grants.push(g);
            }
            t.grants
                .retain(|g| !change.remove_grants.contains(&g.cluster_set));
            let mut batch = Batch::new();
            batch.put_team(&t);
            self.records.commit(&batch).await?;
            t
        };
        tracing::info!(team = name, "team changed");
        // Where the team's workloads may run may have changed.
        self.scheduler.enqueue_all();
        Ok(record)
    }

    pub async fn delete_team(&self, name: &str) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        if self.records.team(name)?.is_none() {
            return Err(not_found("team", name, " (see: tetherctl team list)"));
        }
        let owned: Vec<String> = self
            .records
            .workloads()?
            .into_iter()
            .filter(|w| w.team == name)
            .map(|w| w.name)
            .collect();
        if !owned.is_empty() {
            return Err(HubError::FailedPrecondition(format!(
                "team {name:?} owns workload {}; delete those first",
                owned.join(", ")
            )));
        }
        let mut batch = Batch::new();
        batch.delete(Tree::Teams, name);
        self.records.commit(&batch).await?;
        tracing::info!(team = name, "team deleted");
        Ok(())
    }
}
