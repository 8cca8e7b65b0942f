//! `tetherctl cluster ...`

use serde::Serialize;
use tether_common::labels::{format_labels, parse_label_changes};
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::time::{age, rfc3339};
use tonic::transport::Channel;

use super::output::{self, Format, Table};
use super::{ClusterCommand, CtlError, Failure, required};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    name: String,
    status: String,
    labels: std::collections::BTreeMap<String, String>,
    kubernetes_version: String,
    node_count: u32,
    agent_version: String,
    platform: String,
    api_reachable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_error: String,
    joined: String,
    last_seen: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    session: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    peer_address: String,
    cert_serial: String,
    cert_expires: String,
    cert_issuer: String,
    cordoned: bool,
    taints: Vec<String>,
}

fn view(c: pb::Cluster) -> ClusterView {
    let f = c.facts.unwrap_or_default();
    ClusterView {
        name: c.name,
        status: c.status,
        labels: c.labels.into_iter().collect(),
        kubernetes_version: f.kubernetes_version,
        node_count: f.node_count,
        agent_version: f.agent_version,
        platform: f.platform,
        api_reachable: f.api_reachable,
        api_error: f.api_error,
        joined: rfc3339(c.joined_unix),
        last_seen: rfc3339(c.last_seen_unix),
        session: c.session_id,
        peer_address: c.peer_address,
        cert_serial: c.cert_serial,
        cert_expires: rfc3339(c.cert_not_after_unix),
        cert_issuer: c.cert_issuer,
        cordoned: c.cordoned,
        taints: c.taints,
    }
}

fn table(clusters: Vec<pb::Cluster>) -> String {
    let mut t = Table::new(&[
        "NAME",
        "STATUS",
        "LABELS",
        "TAINTS",
        "KUBERNETES",
        "NODES",
        "AGENT",
        "LAST SEEN",
    ]);
    for c in clusters {
        let f = c.facts.clone().unwrap_or_default();
        let kube = if f.api_reachable || f.kubernetes_version.is_empty() {
            output::or_none(&f.kubernetes_version)
        } else {
            // Keep "the agent cannot reach its API server" visible apart from Offline.
            "unreachable".into()
        };
        // As kubectl shows a cordoned node.
        let status = if c.cordoned {
            format!("{},SchedulingDisabled", c.status)
        } else {
            c.status
        };
        t.row(vec![
            c.name,
            status,
            output::or_none(&format_labels(&c.labels.into_iter().collect())),
            output::or_none(&c.taints.join(",")),
            kube,
            f.node_count.to_string(),
            output::or_none(&f.agent_version),
            age(c.last_seen_unix),
        ]);
    }
    t.render()
}

pub(super) async fn run(
    api: &mut HubApiServiceClient<Channel>,
    cmd: ClusterCommand,
) -> Result<String, Failure> {
    let cmd_kind = match &cmd {
        ClusterCommand::Cordon { .. } => "cordon",
        _ => "",
    };
    match cmd {
        ClusterCommand::List { output: format } => {
            let clusters = api
                .list_clusters(pb::ListClustersRequest {})
                .await?
                .into_inner()
                .clusters;
            Ok(match format {
                Format::Table => table(clusters),
                f => output::structured(&clusters.into_iter().map(view).collect::<Vec<_>>(), f),
            })
        }
        ClusterCommand::Get {
            name,
            output: format,
        } => {
            let c = api
                .get_cluster(pb::GetClusterRequest { name })
                .await?
                .into_inner()
                .cluster;
            let c = required(c, "cluster")?;
            Ok(match format {
                Format::Table => table(vec![c]),
                f => output::structured(&view(c), f),
            })
        }
        ClusterCommand::Label {
            name,
            changes,
            overwrite,
        } => {
            let changes = parse_label_changes(&changes).map_err(CtlError::usage)?;
            let c = api
                .label_cluster(pb::LabelClusterRequest {
                    name,
                    set: changes.set.into_iter().collect(),
                    remove: changes.remove,
                    overwrite,
                })
                .await?
                .into_inner()
                .cluster;
            let c = required(c, "cluster")?;
            Ok(format!(
                "cluster {} labeled: {}\n",
                c.name,
                output::or_none(&format_labels(&c.labels.into_iter().collect()))
            ))
        }
        ClusterCommand::Cordon { name } | ClusterCommand::Uncordon { name } => {
            let cordon = matches!(cmd_kind, "cordon");
            let c = api
                .set_cluster(pb::SetClusterRequest {
                    name,
                    cordoned: Some(cordon),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .cluster;
            let c = required(c, "cluster")?;
            Ok(format!(
                "cluster {} {}\n",
                c.name,
                if c.cordoned { "cordoned" } else { "uncordoned" }
            ))
        }
        ClusterCommand::Taint { name, taints } => {
            let mut add = Vec::new();
            let mut remove = Vec::new();
            for t in taints {
                // `key-`, `key:NoSchedule-` and `key=value:NoSchedule-` remove, as in kubectl.
                if let Some(spec) = t.strip_suffix('-') {
                    let key = spec.split([':', '=']).next().unwrap_or_default();
                    tether_common::labels::validate_key(key)
                        .map_err(|e| CtlError::usage(format!("cannot remove taint {t:?}: {e}")))?;
                    remove.push(key.to_string());
                } else {
                    tether_common::workload::schedule::Taint::parse(&t).map_err(CtlError::usage)?;
                    add.push(t);
                }
            }
            let c = api
                .set_cluster(pb::SetClusterRequest {
                    name,
                    add_taints: add,
                    remove_taints: remove,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .cluster;
            let c = required(c, "cluster")?;
            Ok(format!(
                "cluster {} taints: {}\n",
                c.name,
                output::or_none(&c.taints.join(","))
            ))
        }
        ClusterCommand::Remove {
            name,
            cleanup: false,
            ..
        } => {
            api.remove_cluster(pb::RemoveClusterRequest {
                name: name.clone(),
                cleanup: false,
            })
            .await?;
            Ok(format!(
                "cluster {name} removed; its certificate no longer works (what it runs stays on the member)\n"
            ))
        }
        ClusterCommand::Remove {
            name,
            cleanup: true,
            timeout,
        } => {
            let deadline = std::time::Instant::now() + timeout;
            let mut last = u32::MAX;
            loop {
                let r = api
                    .remove_cluster(pb::RemoveClusterRequest {
                        name: name.clone(),
                        cleanup: true,
                    })
                    .await?
                    .into_inner();
                if r.removed {
                    return Ok(format!(
                        "cluster {name}: its agent removed every workload; cluster removed and its certificate no longer works\n"
                    ));
                }
                if r.remaining != last {
                    eprintln!(
                        "cluster {}: waiting for its agent to remove {} workload(s)",
                        tether_common::text::terminal_safe(&name),
                        r.remaining
                    );
                    last = r.remaining;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(CtlError::runtime(format!(
                        "timed out after {} with {} workload(s) still on cluster {name} (is its agent connected?); it stays in the hub, being removed: run this again, or `tetherctl cluster remove {name}` to forget it and leave its objects",
                        humantime::format_duration(timeout),
                        r.remaining
                    ))
                    .into());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// A kubeconfig for `/clusters/NAME` on the hub with the caller's own credential.
pub(super) async fn kubeconfig(
    api: &mut HubApiServiceClient<Channel>,
    config: &tether_client::ClientConfig,
    name: &str,
    output: Option<std::path::PathBuf>,
) -> Result<String, Failure> {
    use base64::Engine;
    // Fail early and clearly for a cluster that does not exist.
    api.get_cluster(pb::GetClusterRequest {
        name: name.to_string(),
    })
    .await?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let user = format!("tether-{}", config.user);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tether-{name}\n  cluster:\n    server: https://{hub}/clusters/{name}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {name}\n  context:\n    cluster: tether-{name}\n    user: {user}\ncurrent-context: {name}\n",
        hub = config.hub,
        ca = b64(&config.ca),
        cert = b64(&config.cert),
        key = b64(&config.key),
    );
    match output {
        Some(path) => {
            tether_common::files::write_private(&path, text.as_bytes())
                .map_err(|e| CtlError::runtime(format!("cannot write {}: {e}", path.display())))?;
            Ok(format!(
                "kubeconfig for cluster {name} written to {} (0600)\n",
                path.display()
            ))
        }
        None => Ok(text),
    }
}
