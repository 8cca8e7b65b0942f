//! The gRPC edge of the client API (`tether.v1.HubApi`): authorizes each call by the caller's
//! role and converts between protocol messages and the hub's own types.

use std::sync::Arc;
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::labels::LabelChanges;
use tether_common::pb;
use tether_common::workload;
use tonic::{Request, Response, Status};

use crate::agent_api::peer;
use crate::clusters::ClusterView;
use crate::hub::Hub;
use crate::records::{Role, TokenRecord};
use crate::tokens::TokenSpec;
use crate::workloads::ClusterWorkload;

pub struct ClientApi {
    hub: Arc<Hub>,
}

impl ClientApi {
    pub fn new(hub: Arc<Hub>) -> Self {
        ClientApi { hub }
    }

    /// The calling user, if their role is at least `need`.
    fn authorize<T>(
        &self,
        req: &Request<T>,
        need: Role,
        action: &str,
    ) -> Result<(String, Role), Status> {
        let peer = peer(req)?;
        let name = match peer.cert.map(|c| c.identity) {
            Some(Identity::User(name)) => name,
            Some(other) => {
                return Err(Status::permission_denied(format!(
                    "{other} cannot use the client API"
                )));
            }
            None => return Err(Status::unauthenticated("a user certificate is required")),
        };
        let user = self
            .hub
            .records
            .user(&name)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::unauthenticated(format!("user {name:?} no longer exists")))?;
        if user.role < need {
            return Err(Status::permission_denied(format!(
                "user {name:?} (role {}) may not {action}: it needs role {need}",
                user.role
            )));
        }
        Ok((name, user.role))
    }
}

fn cluster_to_pb(v: ClusterView) -> pb::Cluster {
    let facts = v.record.facts.map(|f| pb::ClusterFactsView {
        agent_version: f.agent_version,
        kubernetes_version: f.kubernetes_version,
        node_count: f.node_count,
        platform: f.platform,
        api_reachable: f.api_reachable,
        api_error: f.api_error,
    });
    pb::Cluster {
        name: v.record.name,
        labels: v.record.labels.into_iter().collect(),
        status: v.status.as_str().to_string(),
        facts,
        joined_unix: v.record.joined_unix,
        last_seen_unix: v.last_seen_unix,
        session_id: v
            .session
            .as_ref()
            .map(|s| s.session_id.clone())
            .unwrap_or_default(),
        peer_address: v
            .session
            .map(|s| s.peer_addr.to_string())
            .unwrap_or_default(),
        cert_serial: v.record.cert_serials.first().cloned().unwrap_or_default(),
        cert_not_after_unix: v.record.cert_not_after,
    }
}

fn cluster_workload_to_pb(c: ClusterWorkload) -> pb::ClusterWorkloadStatus {
    let status = c.status.unwrap_or_default();
    pb::ClusterWorkloadStatus {
        cluster: c.assignment.cluster,
        revision: c.assignment.revision,
        reported_revision: status.revision,
        phase: c.phase,
        message: c.message,
        ready: status.ready,
        total: status.total,
        feedback: status.feedback.into_iter().collect(),
        objects: status
            .objects
            .into_iter()
            .map(|o| pb::ObjectStatusView {
                api_version: o.api_version,
                kind: o.kind,
                namespace: o.namespace,
                name: o.name,
                health: o.health,
                message: o.message,
            })
            .collect(),
        objects_total: status.objects_total,
        drift: status
            .drift
            .into_iter()
            .map(|d| pb::DriftView {
                object: d.object,
                field: d.field,
                manager: d.manager,
                unix: d.unix,
            })
            .collect(),
        drift_corrections: status.drift_corrections,
        reported_unix: status.received_unix,
        stale: c.stale,
        cluster_status: c.connectivity.as_str().to_string(),
    }
}

fn token_to_pb(t: TokenRecord) -> pb::Token {
    pb::Token {
        id: t.id,
        cluster: t.cluster,
        labels: t.labels.into_iter().collect(),
        created_unix: t.created_unix,
        expires_unix: t.expires_unix,
        reusable: t.reusable,
        uses: t.uses,
        revoked: t.revoked,
        created_by: t.created_by,
    }
}

#[tonic::async_trait]
impl pb::hub_api_server::HubApi for ClientApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let (user, _) = self.authorize(&req, Role::Admin, "create join tokens")?;
        let r = req.into_inner();
        let (token, record) = self
            .hub
            .create_token(TokenSpec {
                cluster: r.cluster,
                labels: r.labels.into_iter().collect(),
                ttl: (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds)),
                reusable: r.reusable,
                created_by: user,
            })
            .await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: token.reveal(),
            info: Some(token_to_pb(record)),
            ca_pin: self.hub.ca_pin.clone(),
            hub_address: self.hub.meta.advertise.clone(),
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.authorize(&req, Role::Admin, "list join tokens")?;
        let tokens = self
            .hub
            .list_tokens()?
            .into_iter()
            .map(token_to_pb)
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        self.authorize(&req, Role::Admin, "revoke join tokens")?;
        self.hub.revoke_token(&req.into_inner().id).await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn list_clusters(
        &self,
        req: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        self.authorize(&req, Role::Viewer, "list clusters")?;
        let clusters = self
            .hub
            .list_clusters()?
            .into_iter()
            .map(cluster_to_pb)
            .collect();
        Ok(Response::new(pb::ListClustersResponse { clusters }))
    }

    async fn get_cluster(
        &self,
        req: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        self.authorize(&req, Role::Viewer, "read clusters")?;
        let view = self.hub.get_cluster(&req.into_inner().name)?;
        Ok(Response::new(cluster_to_pb(view)))
    }

    async fn label_cluster(
        &self,
        req: Request<pb::LabelClusterRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        self.authorize(&req, Role::Operator, "label clusters")?;
        let r = req.into_inner();
        let changes = LabelChanges {
            set: r.set.into_iter().collect(),
            remove: r.remove,
        };
        let view = self.hub.label_cluster(&r.name, changes).await?;
        Ok(Response::new(cluster_to_pb(view)))
    }

    async fn remove_cluster(
        &self,
        req: Request<pb::RemoveClusterRequest>,
    ) -> Result<Response<pb::RemoveClusterResponse>, Status> {
        self.authorize(&req, Role::Admin, "remove clusters")?;
        self.hub.remove_cluster(&req.into_inner().name).await?;
        Ok(Response::new(pb::RemoveClusterResponse {}))
    }

    async fn apply_workload(
        &self,
        req: Request<pb::ApplyWorkloadRequest>,
    ) -> Result<Response<pb::ApplyWorkloadResponse>, Status> {
        let (user, _) = self.authorize(&req, Role::Operator, "apply workloads")?;
        let doc: serde_json::Value = serde_json::from_str(&req.into_inner().workload_json)
            .map_err(|e| {
                Status::invalid_argument(format!("the workload is not valid JSON: {e}"))
            })?;
        let w = workload::from_value(doc).map_err(|(field, msg)| {
            Status::invalid_argument(if field.is_empty() {
                msg
            } else {
                format!("field {field}: {msg}")
            })
        })?;
        let applied = self.hub.apply_workload(w, &user).await?;
        Ok(Response::new(pb::ApplyWorkloadResponse {
            name: applied.name,
            revision: applied.revision,
            changed: applied.changed,
            clusters: applied.clusters,
        }))
    }

    async fn delete_workload(
        &self,
        req: Request<pb::DeleteWorkloadRequest>,
    ) -> Result<Response<pb::DeleteWorkloadResponse>, Status> {
        self.authorize(&req, Role::Operator, "delete workloads")?;
        self.hub.delete_workload(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteWorkloadResponse {}))
    }

    async fn get_workload(
        &self,
        req: Request<pb::GetWorkloadRequest>,
    ) -> Result<Response<pb::WorkloadInfo>, Status> {
        self.authorize(&req, Role::Viewer, "read workloads")?;
        let (r, clusters) = self.hub.get_workload(&req.into_inner().name)?;
        Ok(Response::new(pb::WorkloadInfo {
            name: r.name,
            workload_json: r.workload.to_string(),
            revision: r.revision,
            created_unix: r.created_unix,
            updated_unix: r.updated_unix,
            deleting: r.deleting,
            clusters,
        }))
    }

    async fn list_workloads(
        &self,
        req: Request<pb::ListWorkloadsRequest>,
    ) -> Result<Response<pb::ListWorkloadsResponse>, Status> {
        self.authorize(&req, Role::Viewer, "list workloads")?;
        let workloads = self
            .hub
            .list_workloads()?
            .into_iter()
            .map(|s| pb::WorkloadSummary {
                name: s.name,
                revision: s.revision,
                clusters: s.clusters,
                available: s.available,
                progressing: s.progressing,
                degraded: s.degraded,
                stale: s.stale,
                pending: s.pending,
                deleting: s.deleting,
            })
            .collect();
        Ok(Response::new(pb::ListWorkloadsResponse { workloads }))
    }

    async fn get_workload_status(
        &self,
        req: Request<pb::GetWorkloadStatusRequest>,
    ) -> Result<Response<pb::WorkloadStatusResponse>, Status> {
        self.authorize(&req, Role::Viewer, "read workload status")?;
        let (record, clusters) = self.hub.workload_status(&req.into_inner().name)?;
        let clusters = clusters.into_iter().map(cluster_workload_to_pb).collect();
        Ok(Response::new(pb::WorkloadStatusResponse {
            name: record.name,
            revision: record.revision,
            deleting: record.deleting,
            clusters,
        }))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let (user, role) = self.authorize(&req, Role::Viewer, "ask")?;
        Ok(Response::new(pb::WhoAmIResponse {
            user,
            role: role.to_string(),
        }))
    }
}
