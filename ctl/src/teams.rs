//! `tetherctl team ...` and `tetherctl clusterset ...`.

use serde_json::json;
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::time::rfc3339;
use tonic::transport::Channel;

use super::output::{self, Format, Table};
use super::{ClusterSetCommand, CtlError, Failure, TeamCommand, required};

fn check_name(what: &str, name: &str) -> Result<(), CtlError> {
    tether_common::identity::validate_name(name)
        .map_err(|e| CtlError::usage(format!("invalid {what}: {e}")))
}

fn team_json(t: &pb::Team) -> serde_json::Value {
    json!({
        "name": t.name,
        "members": t.members,
        "namespaces": t.namespaces,
        "grants": t.grants.iter().map(|g| json!({
            "clusterSet": g.cluster_set, "role": g.role, "clusterScoped": g.cluster_scoped,
        })).collect::<Vec<_>>(),
        "createdBy": t.created_by,
        "created": rfc3339(t.created_unix),
    })
}

fn grants(t: &pb::Team) -> String {
    t.grants
        .iter()
        .map(|g| {
            format!(
                "{}={}{}",
                g.cluster_set,
                g.role,
                if g.cluster_scoped {
                    "+cluster-scoped"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) async fn team(
    api: &mut HubApiServiceClient<Channel>,
    cmd: TeamCommand,
) -> Result<String, Failure> {
    let update = |name: &str| pb::UpdateTeamRequest {
        name: name.to_string(),
        ..Default::default()
    };
    let changed = |r: pb::UpdateTeamResponse| -> Result<String, Failure> {
        let t = required(r.team, "team")?;
        Ok(format!("team {} updated: {}\n", t.name, summary(&t)))
    };
    match cmd {
        TeamCommand::Create { name, namespaces } => {
            check_name("team name", &name)?;
            for ns in &namespaces {
                check_name("namespace", ns)?;
            }
            let t = api
                .create_team(pb::CreateTeamRequest { name, namespaces })
                .await?
                .into_inner()
                .team;
            let t = required(t, "team")?;
            Ok(format!("team {} created: {}\n", t.name, summary(&t)))
        }
        TeamCommand::AddMember { name, users } => changed(
            api.update_team(pb::UpdateTeamRequest {
                add_members: users,
                ..update(&name)
            })
            .await?
            .into_inner(),
        ),
        TeamCommand::RemoveMember { name, users } => changed(
            api.update_team(pb::UpdateTeamRequest {
                remove_members: users,
                ..update(&name)
            })
            .await?
            .into_inner(),
        ),
        TeamCommand::Namespaces {
            name,
            namespaces,
            remove,
        } => {
            for ns in &namespaces {
                check_name("namespace", ns)?;
            }
            let req = if remove {
                pb::UpdateTeamRequest {
                    remove_namespaces: namespaces,
                    ..update(&name)
                }
            } else {
                pb::UpdateTeamRequest {
                    add_namespaces: namespaces,
                    ..update(&name)
                }
            };
            changed(api.update_team(req).await?.into_inner())
        }
        TeamCommand::Grant {
            name,
            cluster_set,
            role,
            cluster_scoped,
        } => {
            if !matches!(role.as_str(), "viewer" | "operator") {
                return Err(CtlError::usage(format!(
                    "invalid --role {role:?}: viewer or operator"
                ))
                .into());
            }
            changed(
                api.update_team(pb::UpdateTeamRequest {
                    add_grants: vec![pb::Grant {
                        cluster_set,
                        role,
                        cluster_scoped,
                    }],
                    ..update(&name)
                })
                .await?
                .into_inner(),
            )
        }
        TeamCommand::Revoke { name, cluster_set } => changed(
            api.update_team(pb::UpdateTeamRequest {
                remove_grants: vec![cluster_set],
                ..update(&name)
            })
            .await?
            .into_inner(),
        ),
        TeamCommand::List { output: format } => {
            let teams = api
                .list_teams(pb::ListTeamsRequest {})
                .await?
                .into_inner()
                .teams;
            Ok(match format {
                Format::Table => {
                    let mut t = Table::new(&["NAME", "MEMBERS", "NAMESPACES", "GRANTS"]);
                    for team in &teams {
                        t.row(vec![
                            team.name.clone(),
                            output::or_none(&team.members.join(",")),
                            output::or_none(&team.namespaces.join(",")),
                            output::or_none(&grants(team)),
                        ]);
                    }
                    t.render()
                }
                f => output::structured(&teams.iter().map(team_json).collect::<Vec<_>>(), f),
            })
        }
        TeamCommand::Delete { name } => {
            api.delete_team(pb::DeleteTeamRequest { name: name.clone() })
                .await?;
            Ok(format!("team {name} deleted\n"))
        }
    }
}

fn summary(t: &pb::Team) -> String {
    format!(
        "members {}, namespaces {}, grants {}",
        output::or_none(&t.members.join(",")),
        output::or_none(&t.namespaces.join(",")),
        output::or_none(&grants(t))
    )
}

pub(super) async fn cluster_set(
    api: &mut HubApiServiceClient<Channel>,
    cmd: ClusterSetCommand,
) -> Result<String, Failure> {
    match cmd {
        ClusterSetCommand::Create { name, selector } => {
            check_name("cluster set name", &name)?;
            tether_common::workload::selector::LabelSelector::parse(&selector)
                .map_err(|e| CtlError::usage(format!("invalid --selector: {e}")))?;
            let s = api
                .create_cluster_set(pb::CreateClusterSetRequest {
                    name,
                    selector,
                    managed_by: String::new(),
                })
                .await?
                .into_inner()
                .cluster_set;
            Ok(set_line(&required(s, "cluster set")?, "created"))
        }
        ClusterSetCommand::Update { name, selector } => {
            tether_common::workload::selector::LabelSelector::parse(&selector)
                .map_err(|e| CtlError::usage(format!("invalid --selector: {e}")))?;
            let s = api
                .update_cluster_set(pb::UpdateClusterSetRequest { name, selector })
                .await?
                .into_inner()
                .cluster_set;
            Ok(set_line(&required(s, "cluster set")?, "updated"))
        }
        ClusterSetCommand::List { output: format } => {
            let sets = api
                .list_cluster_sets(pb::ListClusterSetsRequest {})
                .await?
                .into_inner()
                .cluster_sets;
            Ok(match format {
                Format::Table => {
                    let mut t = Table::new(&["NAME", "SELECTOR", "CLUSTERS"]);
                    for s in &sets {
                        t.row(vec![
                            s.name.clone(),
                            output::or_none(&s.selector),
                            output::or_none(&s.clusters.join(",")),
                        ]);
                    }
                    t.render()
                }
                f => output::structured(
                    &sets
                        .iter()
                        .map(|s| {
                            json!({
                                "name": s.name, "selector": s.selector, "clusters": s.clusters,
                                "createdBy": s.created_by, "created": rfc3339(s.created_unix),
                                "managedBy": s.managed_by,
                            })
                        })
                        .collect::<Vec<_>>(),
                    f,
                ),
            })
        }
        ClusterSetCommand::Delete { name } => {
            api.delete_cluster_set(pb::DeleteClusterSetRequest { name: name.clone() })
                .await?;
            Ok(format!("cluster set {name} deleted\n"))
        }
    }
}

/// `cluster set NAME VERB: N clusters now`.
fn set_line(s: &pb::ClusterSet, verb: &str) -> String {
    let n = s.clusters.len();
    format!(
        "cluster set {} {verb}: {n} cluster{} now\n",
        s.name,
        if n == 1 { "" } else { "s" }
    )
}
