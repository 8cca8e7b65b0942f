//! Teams and cluster sets: who may see and change which clusters, workloads and namespaces.
//!
//! A cluster set is a named label selector over clusters (like Open Cluster Management's
//! ManagedClusterSet). A team has members (users), owns namespaces, and holds a role
//! (viewer or operator) on each of the cluster sets granted to it, optionally with the right
//! to ship cluster-scoped objects there. Hub-wide roles (viewer, operator, admin) stay for the
//! platform team; a user with the hub-wide role `none` sees and does only what their teams
//! may.
//!
//! [`Scope`] is what one caller may do, computed from the records at the start of a call;
//! everything here is plain data, checked by the edges and the scheduler.

use std::collections::BTreeSet;

use tether_common::labels::Labels;
use tether_common::workload::Workload;
use tether_common::workload::bundle::Confinement;
use tether_common::workload::selector::LabelSelector;

use crate::store::records::{ClusterSetRecord, Role, TeamRecord, UserRecord};

/// Kinds that live outside namespaces in every Kubernetes release (custom kinds are judged by
/// the namespace they declare, and by the agent from the member's discovery).
pub const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
];

/// One grant with its set's selector.
#[derive(Debug, Clone)]
pub struct ResolvedGrant {
    pub cluster_set: String,
    pub selector: LabelSelector,
    pub role: Role,
    pub cluster_scoped: bool,
}

/// A team the caller is in, with its grants resolved.
#[derive(Debug, Clone)]
pub struct TeamScope {
    pub name: String,
    pub namespaces: BTreeSet<String>,
    pub grants: Vec<ResolvedGrant>,
}

impl TeamScope {
    /// The team's role on a cluster with these labels (`None`: it has none there).
    pub fn role_on(&self, labels: &Labels) -> Role {
        self.grants
            .iter()
            .filter(|g| g.selector.matches(labels))
            .map(|g| g.role)
            .max()
            .unwrap_or(Role::None)
    }

    /// The highest role the team holds anywhere (what it may do with its own workloads).
    pub fn role(&self) -> Role {
        self.grants
            .iter()
            .map(|g| g.role)
            .max()
            .unwrap_or(Role::None)
    }

    /// Where the team's workloads may be placed: the clusters its operator grants select
    /// (those with cluster-scoped grants only, when the workload holds cluster-scoped objects).
    pub fn may_place(&self, labels: &Labels, cluster_scoped: bool) -> bool {
        self.grants.iter().any(|g| {
            g.role >= Role::Operator
                && (!cluster_scoped || g.cluster_scoped)
                && g.selector.matches(labels)
        })
    }

    /// Resolves `team`'s grants against the cluster sets that exist.
    pub fn of(team: &TeamRecord, sets: &[ClusterSetRecord]) -> TeamScope {
        TeamScope {
            name: team.name.clone(),
            namespaces: team.namespaces.clone(),
            grants: team
                .grants
                .iter()
                .filter_map(|g| {
                    let set = sets.iter().find(|s| s.name == g.cluster_set)?;
                    Some(ResolvedGrant {
                        cluster_set: g.cluster_set.clone(),
                        selector: set.selector.clone(),
                        role: g.role,
                        cluster_scoped: g.cluster_scoped,
                    })
                })
                .collect(),
        }
    }

    /// The confinement the team's workloads are delivered with.
    pub fn confinement(&self) -> Confinement {
        Confinement {
            team: self.name.clone(),
            namespaces: self.namespaces.iter().cloned().collect(),
            cluster_scoped: self.grants.iter().any(|g| g.cluster_scoped),
        }
    }

    /// Whether a workload may be applied for this team: every object in its namespaces (a
    /// Namespace object only for a namespace it owns), cluster-scoped kinds only with a
    /// cluster-scoped grant. Returns whether the workload holds cluster-scoped objects.
    pub fn check(&self, w: &Workload) -> Result<bool, String> {
        let mut cluster_scoped = false;
        for (i, m) in w.spec.manifests.iter().enumerate() {
            let s = |p: &str| {
                m.pointer(p)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
            };
            let (kind, name, ns) = (s("/kind"), s("/metadata/name"), s("/metadata/namespace"));
            let at = format!("spec.manifests[{i}] ({kind}/{name})");
            if kind == "Namespace" {
                if !self.namespaces.contains(name) {
                    return Err(format!(
                        "{at}: team {} does not own namespace {name:?} (it owns: {})",
                        self.name,
                        self.owned()
                    ));
                }
                continue;
            }
            if CLUSTER_SCOPED_KINDS.contains(&kind) {
                if !self.grants.iter().any(|g| g.cluster_scoped) {
                    return Err(format!(
                        "{at}: {kind} is cluster-scoped; team {} has no cluster-scoped grant",
                        self.name
                    ));
                }
                cluster_scoped = true;
                continue;
            }
            if ns.is_empty() {
                return Err(format!(
                    "{at}: a team's objects name their namespace (one of: {})",
                    self.owned()
                ));
            }
            if !self.namespaces.contains(ns) {
                return Err(format!(
                    "{at}: team {} may not use namespace {ns:?} (it owns: {})",
                    self.name,
                    self.owned()
                ));
            }
        }
        Ok(cluster_scoped)
    }

    fn owned(&self) -> String {
        if self.namespaces.is_empty() {
            "none".into()
        } else {
            self.namespaces
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// What one caller may see and do.
#[derive(Debug, Clone)]
pub struct Scope {
    pub user: String,
    /// The hub-wide role.
    pub global: Role,
    pub teams: Vec<TeamScope>,
}

impl Scope {
    pub fn new(user: &UserRecord, teams: &[TeamRecord], sets: &[ClusterSetRecord]) -> Scope {
        Scope {
            user: user.name.clone(),
            global: user.role,
            teams: teams
                .iter()
                .filter(|t| t.members.contains(&user.name))
                .map(|t| TeamScope::of(t, sets))
                .collect(),
        }
    }

    /// The caller's role on a cluster with these labels: hub-wide, or through a team.
    pub fn role_on_cluster(&self, labels: &Labels) -> Role {
        self.teams
            .iter()
            .map(|t| t.role_on(labels))
            .chain([self.global])
            .max()
            .unwrap_or(Role::None)
    }

    /// The caller's role on a workload owned by `team` ("" for none).
    pub fn role_on_workload(&self, team: &str) -> Role {
        let through_team = self
            .teams
            .iter()
            .filter(|t| !team.is_empty() && t.name == team)
            .map(TeamScope::role)
            .max()
            .unwrap_or(Role::None);
        through_team.max(self.global)
    }

    /// Team groups the proxy names for a request to a cluster with these labels.
    pub fn proxy_groups(&self, labels: &Labels) -> Vec<String> {
        self.teams
            .iter()
            .filter(|t| t.role_on(labels) >= Role::Viewer)
            .map(|t| format!("tether:team:{}", t.name))
            .collect()
    }

    /// The team a workload is applied for: the one named, or (none named) the caller's only
    /// team when they have no hub-wide operator role. `Ok(None)`: no team (hub-wide
    /// operators only).
    pub fn team_for_apply<'a>(
        &'a self,
        requested: &str,
        existing: &'a [TeamScope],
    ) -> Result<Option<&'a TeamScope>, String> {
        if requested.is_empty() {
            if self.global >= Role::Operator {
                return Ok(None);
            }
            let mine: Vec<&TeamScope> = self
                .teams
                .iter()
                .filter(|t| t.role() >= Role::Operator)
                .collect();
            return match mine.as_slice() {
                [one] => Ok(Some(one)),
                [] => Err(format!(
                    "user {:?} (role {}) may not apply workloads: it needs role operator, hub-wide or in a team",
                    self.user, self.global
                )),
                many => Err(format!(
                    "user {:?} is an operator in several teams ({}): name one with --team",
                    self.user,
                    many.iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
        if self.global >= Role::Operator {
            return existing
                .iter()
                .find(|t| t.name == requested)
                .map(Some)
                .ok_or_else(|| format!("team {requested:?} not found (see: tetherctl team list)"));
        }
        match self.teams.iter().find(|t| t.name == requested) {
            Some(t) if t.role() >= Role::Operator => Ok(Some(t)),
            Some(_) => Err(format!(
                "user {:?} is not an operator in team {requested:?}",
                self.user
            )),
            None => Err(format!(
                "user {:?} is not a member of team {requested:?}",
                self.user
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(s: &str) -> Labels {
        tether_common::labels::parse_labels(s).unwrap()
    }

    fn sets() -> Vec<ClusterSetRecord> {
        vec![
            ClusterSetRecord {
                name: "eu".into(),
                selector: LabelSelector::parse("region=eu").unwrap(),
                ..Default::default()
            },
            ClusterSetRecord {
                name: "lab".into(),
                selector: LabelSelector::parse("env=lab").unwrap(),
                ..Default::default()
            },
        ]
    }

    fn payments() -> TeamRecord {
        TeamRecord {
            name: "payments".into(),
            members: ["alice".to_string()].into(),
            namespaces: ["payments".to_string()].into(),
            grants: vec![
                crate::store::records::Grant {
                    cluster_set: "eu".into(),
                    role: Role::Operator,
                    cluster_scoped: false,
                },
                crate::store::records::Grant {
                    cluster_set: "lab".into(),
                    role: Role::Viewer,
                    cluster_scoped: false,
                },
            ],
            ..Default::default()
        }
    }

    fn alice() -> UserRecord {
        UserRecord {
            name: "alice".into(),
            role: Role::None,
            ..Default::default()
        }
    }

    fn workload(manifests: serde_json::Value) -> Workload {
        serde_json::from_value(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "w"}, "spec": {"manifests": manifests},
        }))
        .unwrap()
    }

    #[test]
    fn a_team_member_sees_the_clusters_of_their_sets_with_the_granted_role() {
        let s = Scope::new(&alice(), &[payments()], &sets());
        assert_eq!(s.role_on_cluster(&labels("region=eu")), Role::Operator);
        assert_eq!(s.role_on_cluster(&labels("env=lab")), Role::Viewer);
        assert_eq!(s.role_on_cluster(&labels("region=us")), Role::None);
        assert_eq!(
            s.proxy_groups(&labels("region=eu")),
            ["tether:team:payments"]
        );
        assert!(s.proxy_groups(&labels("region=us")).is_empty());
        // Another user with no team sees nothing; a hub-wide viewer sees everything.
        let bob = UserRecord {
            name: "bob".into(),
            role: Role::None,
            ..Default::default()
        };
        assert_eq!(
            Scope::new(&bob, &[payments()], &sets()).role_on_cluster(&labels("region=eu")),
            Role::None
        );
        let vic = UserRecord {
            name: "vic".into(),
            role: Role::Viewer,
            ..Default::default()
        };
        assert_eq!(
            Scope::new(&vic, &[payments()], &sets()).role_on_cluster(&labels("region=us")),
            Role::Viewer
        );
    }

    #[test]
    fn workloads_belong_to_their_team() {
        let s = Scope::new(&alice(), &[payments()], &sets());
        assert_eq!(s.role_on_workload("payments"), Role::Operator);
        assert_eq!(s.role_on_workload("search"), Role::None);
        assert_eq!(s.role_on_workload(""), Role::None);
        let all = [TeamScope::of(&payments(), &sets())];
        assert_eq!(
            s.team_for_apply("", &all).unwrap().unwrap().name,
            "payments"
        );
        assert!(
            s.team_for_apply("search", &all)
                .unwrap_err()
                .contains("not a member")
        );
        let admin = UserRecord {
            name: "root".into(),
            role: Role::Admin,
            ..Default::default()
        };
        let a = Scope::new(&admin, &[payments()], &sets());
        assert!(a.team_for_apply("", &all).unwrap().is_none());
        assert_eq!(
            a.team_for_apply("payments", &all).unwrap().unwrap().name,
            "payments"
        );
        assert!(a.team_for_apply("nope", &all).is_err());
    }

    #[test]
    fn a_teams_objects_stay_in_its_namespaces() {
        let t = TeamScope::of(&payments(), &sets());
        let ok = workload(json!([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "payments"}},
        ]));
        assert_eq!(t.check(&ok), Ok(false));
        for (bad, why) in [
            (
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kube-system"}}]),
                "may not use namespace",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]),
                "name their namespace",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "search"}}]),
                "does not own",
            ),
            (
                json!([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"}}]),
                "cluster-scoped",
            ),
        ] {
            let e = t.check(&workload(bad)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut granted = payments();
        granted.grants[0].cluster_scoped = true;
        let t = TeamScope::of(&granted, &sets());
        let crd = workload(
            json!([{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b.c"}}]),
        );
        assert_eq!(t.check(&crd), Ok(true));
        assert!(t.may_place(&labels("region=eu"), true));
        assert!(
            !t.may_place(&labels("env=lab"), false),
            "viewer grants place nothing"
        );
    }

    #[test]
    fn the_agent_side_confinement_follows_discovery() {
        let c = TeamScope::of(&payments(), &sets()).confinement();
        assert!(c.refuses("ConfigMap", "c", "payments", true).is_none());
        assert!(c.refuses("ConfigMap", "c", "default", true).is_some());
        assert!(c.refuses("Namespace", "payments", "", false).is_none());
        // A custom kind the hub took for namespaced is cluster-scoped on the member.
        assert!(c.refuses("Widget", "w", "", false).is_some());
    }
}
