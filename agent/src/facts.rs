//! What the agent can tell the hub about its cluster, read through the Kubernetes API.
//!
//! Failing to reach the API server is itself a fact (`api_reachable: false`, with the
//! error), reported over a healthy hub session: "the agent cannot reach its API server" must
//! never look like "the hub cannot hear the agent".

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use tether_common::pb;

/// How long one fact may take to read: a hung API server is an unreachable one.
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the cluster's facts. Never fails: an unreachable API server is reported as such.
pub async fn gather(client: &kube::Client) -> pb::ClusterFacts {
    let mut facts = pb::ClusterFacts {
        agent_version: tether_common::VERSION.to_string(),
        ..Default::default()
    };
    let version = tokio::time::timeout(API_TIMEOUT, client.apiserver_version()).await;
    let version = match version {
        Ok(v) => v,
        Err(_) => {
            facts.api_error = format!(
                "cannot reach the Kubernetes API: no answer within {}s",
                API_TIMEOUT.as_secs()
            );
            return facts;
        }
    };
    match version {
        Ok(info) => {
            facts.kubernetes_version = info.git_version;
            facts.platform = info.platform;
            facts.api_reachable = true;
        }
        Err(e) => {
            facts.api_error = format!("cannot reach the Kubernetes API: {e}");
            return facts;
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = tokio::time::timeout(API_TIMEOUT, nodes.list_metadata(&ListParams::default()))
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("no answer in time".into())));
    match listed {
        Ok(list) => facts.node_count = list.items.len() as u32,
        Err(e) => {
            // Reachable but not allowed (RBAC) or failing: keep the version, report why.
            facts.api_error = format!("cannot list nodes: {e}");
        }
    }
    facts
}
