//! The gRPC edge of the client API (`tether.v1.HubApiService`): authorizes each call by the caller's
//! role and converts between protocol messages and the hub's own types.

use std::sync::Arc;
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::labels::LabelChanges;
use tether_common::pb;
use tether_common::workload;
use tonic::{Request, Response, Status};

use crate::api::agent::peer;
use crate::api::state::Hub;
use crate::control::clusters::ClusterView;
use crate::control::error::HubError;
use crate::control::tenancy::Scope;
use crate::control::tokens::TokenSpec;
use crate::control::workloads::ClusterWorkload;
use crate::store::records::{Role, TokenRecord};

pub struct ClientApi {
    hub: Arc<Hub>,
}

/// The caller of one request, as far as it is known before authorization.
struct Who {
    /// The user name, if a user certificate was presented.
    user: Option<String>,
    /// `user/NAME`, `cluster/NAME` or `anonymous`, for the audit log.
    actor: String,
    source: String,
    /// Set when the certificate is not a user's at all.
    refusal: Option<Status>,
}

impl ClientApi {
    pub fn new(hub: Arc<Hub>) -> Self {
        ClientApi { hub }
    }

    fn who<T>(&self, req: &Request<T>) -> Who {
        let Ok(peer) = peer(req) else {
            return Who {
                user: None,
                actor: "anonymous".into(),
                source: String::new(),
                refusal: Some(Status::internal("request without connection information")),
            };
        };
        let source = peer.addr.to_string();
        match peer.cert.map(|c| c.identity) {
            Some(Identity::User(name)) => Who {
                actor: format!("user/{name}"),
                user: Some(name),
                source,
                refusal: None,
            },
            Some(other) => Who {
                actor: format!("cluster/{}", other.name()),
                user: None,
                source,
                refusal: Some(Status::permission_denied(format!(
                    "{other} cannot use the client API"
                ))),
            },
            None => Who {
                user: None,
                actor: "anonymous".into(),
                source,
                refusal: Some(Status::unauthenticated("a user certificate is required")),
            },
        }
    }

    /// The calling user, if their role is at least `need`.
    fn authorize(&self, who: &Who, need: Role, action: &str) -> Result<(String, Role), Status> {
        if let Some(refusal) = &who.refusal {
            return Err(refusal.clone());
        }
        let name = who.user.clone().unwrap_or_default();
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

    /// What the caller may see and do, teams included (any existing user).
    fn scope(&self, who: &Who) -> Result<Scope, Status> {
        self.authorize(who, Role::None, "ask")?;
        let name = who.user.clone().unwrap_or_default();
        let user = self
            .hub
            .records
            .user(&name)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::unauthenticated(format!("user {name:?} no longer exists")))?;
        Ok(self.hub.teams.scope(&user)?)
    }

    /// The caller's role on workload `name` (not found when it may not even see it).
    fn workload_role(&self, scope: &Scope, name: &str) -> Result<Role, Status> {
        let rec = self
            .hub
            .records
            .workload(name)
            .map_err(|e| Status::internal(e.to_string()))?;
        let role = rec
            .as_ref()
            .map_or(scope.global, |r| scope.role_on_workload(&r.team));
        if role < Role::Viewer {
            return Err(HubError::NotFound {
                kind: "workload",
                name: name.to_string(),
                hint: " (see: tetherctl get workloads)",
            }
            .into());
        }
        Ok(role)
    }

    /// Refuses a change to workload `name` below the operator role on it.
    fn may_change_workload(&self, scope: &Scope, name: &str, action: &str) -> Result<(), Status> {
        let role = self.workload_role(scope, name)?;
        if role < Role::Operator {
            return Err(Status::permission_denied(format!(
                "user {:?} (role {role} on workload {name:?}) may not {action}: it needs role operator",
                scope.user
            )));
        }
        Ok(())
    }

    /// Audits a mutating call (refused or not) durably before the caller hears back.
    async fn record<T>(&self, who: &Who, action: &str, target: &str, result: &Result<T, Status>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        // Refusals (not the hub's own failures) count against the caller: past the limit it
        // is turned away before its calls are read, and those are not audited one by one.
        if let Err(s) = result
            && !matches!(s.code(), tonic::Code::Internal | tonic::Code::Unavailable)
        {
            self.hub.calls.refusals.failed(&who.actor);
        }
        self.hub
            .audit
            .audit(&who.actor, action, target, &outcome, &who.source)
            .await;
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
        cert_issuer: v.record.cert_issuer,
        #[allow(deprecated)]
        impersonate: true,
        cordoned: v.record.cordoned,
        taints: v.record.taints.iter().map(|t| t.to_string()).collect(),
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
        outdated: c.outdated,
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn rollout_to_pb(v: crate::control::scheduler::views::RolloutView) -> pb::RolloutStatus {
    pb::RolloutStatus {
        name: v.workload,
        revision: v.revision,
        state: v.state.as_str().to_string(),
        reason: v.reason,
        current_wave: v.current_wave as u32,
        max_unavailable: v.max_unavailable as u32,
        waves: v
            .waves
            .into_iter()
            .map(|w| pb::RolloutWave {
                selector: w.selector,
                clusters: w
                    .clusters
                    .into_iter()
                    .map(|c| pb::RolloutCluster {
                        cluster: c.cluster,
                        revision: c.revision,
                        updated: c.updated,
                        available: c.available,
                        offline: c.offline,
                        phase: c.phase,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn team_to_pb(t: crate::store::records::TeamRecord) -> pb::Team {
    pb::Team {
        name: t.name,
        members: t.members.into_iter().collect(),
        namespaces: t.namespaces.into_iter().collect(),
        grants: t
            .grants
            .into_iter()
            .map(|g| pb::Grant {
                cluster_set: g.cluster_set,
                role: g.role.to_string(),
                cluster_scoped: g.cluster_scoped,
            })
            .collect(),
        created_by: t.created_by,
        created_unix: t.created_unix,
    }
}

impl ClientApi {
    fn cluster_set_to_pb(
        &self,
        s: crate::store::records::ClusterSetRecord,
    ) -> Result<pb::ClusterSet, Status> {
        let clusters = self
            .hub
            .records
            .clusters()
            .map_err(HubError::from)?
            .into_iter()
            .filter(|c| s.selector.matches(&c.labels))
            .map(|c| c.name)
            .collect();
        Ok(pb::ClusterSet {
            name: s.name,
            selector: s.selector.to_string(),
            clusters,
            created_by: s.created_by,
            created_unix: s.created_unix,
            managed_by: s.managed_by,
        })
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
        allow_labels: t.allow_labels,
    }
}

#[tonic::async_trait]
impl pb::hub_api_service_server::HubApiService for ClientApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let target = format!("cluster/{}", r.cluster);
        let result = async {
            let (user, _) = self.authorize(&who, Role::Admin, "create join tokens")?;
            let (token, record) = self
                .hub
                .tokens
                .create_token(TokenSpec {
                    cluster: r.cluster,
                    labels: r.labels.into_iter().collect(),
                    ttl: (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds)),
                    reusable: r.reusable,
                    created_by: user,
                    allow_labels: r.allow_labels,
                })
                .await?;
            Ok(pb::CreateTokenResponse {
                token: token.reveal(),
                info: Some(token_to_pb(record)),
                ca_pin: self.hub.ca_pin.clone(),
                hub_address: self.hub.meta.advertise.clone(),
            })
        }
        .await;
        self.record(&who, "CreateToken", &target, &result).await;
        result.map(Response::new)
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        // Token metadata is for admins only, even though no secret is shown.
        self.authorize(&self.who(&req), Role::Admin, "list join tokens")?;
        let tokens = self
            .hub
            .tokens
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
        let who = self.who(&req);
        let id = req.into_inner().id;
        let result = async {
            self.authorize(&who, Role::Admin, "revoke join tokens")?;
            self.hub.tokens.revoke_token(&id).await?;
            Ok(pb::RevokeTokenResponse {})
        }
        .await;
        self.record(&who, "RevokeToken", &format!("token/{id}"), &result)
            .await;
        result.map(Response::new)
    }

    async fn list_clusters(
        &self,
        req: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let clusters = self
            .hub
            .clusters
            .list_clusters()?
            .into_iter()
            .filter(|c| scope.role_on_cluster(&c.record.labels) >= Role::Viewer)
            .map(cluster_to_pb)
            .collect();
        Ok(Response::new(pb::ListClustersResponse { clusters }))
    }

    async fn get_cluster(
        &self,
        req: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::GetClusterResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let name = req.into_inner().name;
        let view = self.hub.clusters.get_cluster(&name)?;
        // A cluster outside the caller's sets does not exist for them.
        if scope.role_on_cluster(&view.record.labels) < Role::Viewer {
            return Err(HubError::cluster_not_found(&name).into());
        }
        Ok(Response::new(pb::GetClusterResponse {
            cluster: Some(cluster_to_pb(view)),
        }))
    }

    async fn label_cluster(
        &self,
        req: Request<pb::LabelClusterRequest>,
    ) -> Result<Response<pb::LabelClusterResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let target = format!("cluster/{}", r.name);
        let result = async {
            self.authorize(&who, Role::Operator, "label clusters")?;
            let changes = LabelChanges {
                set: r.set.into_iter().collect(),
                remove: r.remove,
            };
            Ok(cluster_to_pb(
                self.hub
                    .clusters
                    .label_cluster(&r.name, changes, r.overwrite)
                    .await?,
            ))
        }
        .await;
        self.record(&who, "LabelCluster", &target, &result).await;
        result.map(|c| Response::new(pb::LabelClusterResponse { cluster: Some(c) }))
    }

    async fn remove_cluster(
        &self,
        req: Request<pb::RemoveClusterRequest>,
    ) -> Result<Response<pb::RemoveClusterResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let name = r.name;
        let result = async {
            self.authorize(&who, Role::Admin, "remove clusters")?;
            let remaining = self.hub.clusters.remove_cluster(&name, r.cleanup).await?;
            Ok(pb::RemoveClusterResponse {
                removed: remaining == 0,
                remaining: remaining as u32,
            })
        }
        .await;
        self.record(&who, "RemoveCluster", &format!("cluster/{name}"), &result)
            .await;
        result.map(Response::new)
    }

    async fn set_cluster(
        &self,
        req: Request<pb::SetClusterRequest>,
    ) -> Result<Response<pb::SetClusterResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let target = format!("cluster/{}", r.name);
        let result = async {
            self.authorize(&who, Role::Admin, "change cluster settings")?;
            #[allow(deprecated)]
            if r.impersonate == Some(false) {
                return Err(Status::invalid_argument(
                    "proxied requests always run as the hub user; the agent's own service account is never lent",
                ));
            }
            let change = crate::control::clusters::ClusterChange {
                cordoned: r.cordoned,
                add_taints: r.add_taints,
                remove_taints: r.remove_taints,
            };
            Ok(cluster_to_pb(self.hub.clusters.set_cluster(&r.name, change).await?))
        }
        .await;
        self.record(&who, "SetCluster", &target, &result).await;
        result.map(|c| Response::new(pb::SetClusterResponse { cluster: Some(c) }))
    }

    async fn apply_workload(
        &self,
        req: Request<pb::ApplyWorkloadRequest>,
    ) -> Result<Response<pb::ApplyWorkloadResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let (json, team) = (r.workload_json, r.team);
        let doc: Result<serde_json::Value, Status> = serde_json::from_str(&json)
            .map_err(|e| Status::invalid_argument(format!("the workload is not valid JSON: {e}")));
        let target = doc
            .as_ref()
            .ok()
            .and_then(|d| {
                d.pointer("/metadata/name")
                    .and_then(|n| n.as_str())
                    .map(|n| format!("workload/{n}"))
            })
            .unwrap_or_else(|| "workload/?".into());
        let result = async {
            let scope = self.scope(&who)?;
            let teams = self.hub.teams.team_scopes()?;
            let team = scope
                .team_for_apply(&team, &teams)
                .map_err(Status::permission_denied)?;
            let w = workload::from_value(doc?).map_err(|(field, msg)| {
                Status::invalid_argument(if field.is_empty() {
                    msg
                } else {
                    format!("field {field}: {msg}")
                })
            })?;
            let applied = self
                .hub
                .workloads
                .apply_workload(w, &scope.user, team)
                .await?;
            Ok(pb::ApplyWorkloadResponse {
                name: applied.name,
                revision: applied.revision,
                changed: applied.changed,
                clusters: applied.clusters,
            })
        }
        .await;
        self.record(&who, "ApplyWorkload", &target, &result).await;
        result.map(Response::new)
    }

    async fn delete_workload(
        &self,
        req: Request<pb::DeleteWorkloadRequest>,
    ) -> Result<Response<pb::DeleteWorkloadResponse>, Status> {
        let who = self.who(&req);
        let name = req.into_inner().name;
        let result = async {
            let scope = self.scope(&who)?;
            self.may_change_workload(&scope, &name, "delete workloads")?;
            self.hub.workloads.delete_workload(&name).await?;
            Ok(pb::DeleteWorkloadResponse {})
        }
        .await;
        self.record(&who, "DeleteWorkload", &format!("workload/{name}"), &result)
            .await;
        result.map(Response::new)
    }

    async fn get_workload(
        &self,
        req: Request<pb::GetWorkloadRequest>,
    ) -> Result<Response<pb::GetWorkloadResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let name = req.into_inner().name;
        let role = self.workload_role(&scope, &name)?;
        let (r, clusters) = self.hub.workloads.get_workload(&name)?;
        // Viewers look but never read Secret values.
        let mut workload = r.workload;
        if role < Role::Operator {
            tether_common::workload::redact_secrets(&mut workload);
        }
        let info = pb::WorkloadInfo {
            name: r.name,
            workload_json: workload.to_string(),
            revision: r.revision,
            created_unix: r.created_unix,
            updated_unix: r.updated_unix,
            deleting: r.deleting,
            clusters,
            team: r.team,
        };
        Ok(Response::new(pb::GetWorkloadResponse {
            workload: Some(info),
        }))
    }

    async fn list_workloads(
        &self,
        req: Request<pb::ListWorkloadsRequest>,
    ) -> Result<Response<pb::ListWorkloadsResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let workloads = self
            .hub
            .workloads
            .list_workloads()?
            .into_iter()
            .filter(|s| scope.role_on_workload(&s.team) >= Role::Viewer)
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
                team: s.team,
            })
            .collect();
        Ok(Response::new(pb::ListWorkloadsResponse { workloads }))
    }

    async fn get_workload_status(
        &self,
        req: Request<pb::GetWorkloadStatusRequest>,
    ) -> Result<Response<pb::GetWorkloadStatusResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let name = req.into_inner().name;
        let role = self.workload_role(&scope, &name)?;
        let (record, clusters) = self.hub.workloads.workload_status(&name)?;
        let mut clusters: Vec<pb::ClusterWorkloadStatus> =
            clusters.into_iter().map(cluster_workload_to_pb).collect();
        if role < Role::Operator {
            for c in &mut clusters {
                for (k, v) in c.feedback.iter_mut() {
                    if tether_common::workload::feedback_reads_secret(k) {
                        *v = tether_common::workload::REDACTED.to_string();
                    }
                }
            }
        }
        Ok(Response::new(pb::GetWorkloadStatusResponse {
            name: record.name,
            revision: record.revision,
            deleting: record.deleting,
            clusters,
        }))
    }

    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let result = async {
            let (me, _) = self.authorize(&who, Role::Admin, "create users")?;
            let role = match r.role.as_str() {
                "admin" => Role::Admin,
                "operator" => Role::Operator,
                "viewer" => Role::Viewer,
                "none" => Role::None,
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown role {other:?} (admin, operator, viewer or none)"
                    )));
                }
            };
            let ttl = (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds));
            let cert = self
                .hub
                .users
                .create_user(&r.name, role, &r.csr_der, ttl, &me)
                .await?;
            Ok(pb::CreateUserResponse {
                cert_pem: cert.cert_pem,
                ca_pem: self.hub.trust_pem.clone(),
                not_after_unix: cert.not_after,
                hub_address: self.hub.meta.advertise.clone(),
            })
        }
        .await;
        self.record(&who, "CreateUser", &format!("user/{}", r.name), &result)
            .await;
        result.map(Response::new)
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.authorize(&self.who(&req), Role::Admin, "list users")?;
        let users = self
            .hub
            .users
            .list_users()?
            .into_iter()
            .map(|u| pb::User {
                name: u.name,
                role: u.role.to_string(),
                created_unix: u.created_unix,
                cert_not_after_unix: u.cert_not_after,
            })
            .collect();
        Ok(Response::new(pb::ListUsersResponse { users }))
    }

    async fn remove_user(
        &self,
        req: Request<pb::RemoveUserRequest>,
    ) -> Result<Response<pb::RemoveUserResponse>, Status> {
        let who = self.who(&req);
        let name = req.into_inner().name;
        let result = async {
            let (me, _) = self.authorize(&who, Role::Admin, "remove users")?;
            self.hub.users.remove_user(&name, &me).await?;
            Ok(pb::RemoveUserResponse {})
        }
        .await;
        self.record(&who, "RemoveUser", &format!("user/{name}"), &result)
            .await;
        result.map(Response::new)
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        // Admins read everything; a team member the entries of their teams' members.
        let scope = self.scope(&self.who(&req))?;
        let members: Option<std::collections::BTreeSet<String>> = if scope.global >= Role::Admin {
            None
        } else if scope.teams.is_empty() {
            return Err(Status::permission_denied(format!(
                "user {:?} (role {}) may not read the audit log: it needs role admin, or a team",
                scope.user, scope.global
            )));
        } else {
            let mine: Vec<String> = scope.teams.iter().map(|t| t.name.clone()).collect();
            Some(
                self.hub
                    .records
                    .teams()
                    .map_err(|e| Status::internal(e.to_string()))?
                    .into_iter()
                    .filter(|t| mine.contains(&t.name))
                    .flat_map(|t| t.members)
                    .map(|m| format!("user/{m}"))
                    .collect(),
            )
        };
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            1000
        } else {
            r.limit.min(10_000)
        } as usize;
        let entries = self
            .hub
            .audit
            .audit_since(r.since_unix_ms, limit)?
            .into_iter()
            .filter(|a| members.as_ref().is_none_or(|m| m.contains(&a.actor)))
            .map(|a| pb::AuditEntry {
                unix_ms: a.unix_ms,
                actor: a.actor,
                action: a.action,
                target: a.target,
                result: a.result,
                source: a.source,
            })
            .collect();
        Ok(Response::new(pb::ListAuditResponse { entries }))
    }

    async fn get_rollout(
        &self,
        req: Request<pb::GetRolloutRequest>,
    ) -> Result<Response<pb::GetRolloutResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let name = req.into_inner().name;
        self.workload_role(&scope, &name)?;
        let view = self.hub.workloads.rollout_status(&name)?;
        Ok(Response::new(pb::GetRolloutResponse {
            rollout: Some(rollout_to_pb(view)),
        }))
    }

    async fn get_rollout_history(
        &self,
        req: Request<pb::GetRolloutHistoryRequest>,
    ) -> Result<Response<pb::GetRolloutHistoryResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let name = req.into_inner().name;
        self.workload_role(&scope, &name)?;
        let revisions = self.hub.workloads.rollout_history(&name)?;
        let current = self.hub.workloads.rollout_status(&name)?.revision;
        Ok(Response::new(pb::GetRolloutHistoryResponse {
            name,
            revision: current,
            revisions: revisions
                .into_iter()
                .map(|r| pb::RevisionEntry {
                    revision: r.revision,
                    unix: r.unix,
                    by: r.by,
                    change: r.change,
                })
                .collect(),
        }))
    }

    async fn control_rollout(
        &self,
        req: Request<pb::ControlRolloutRequest>,
    ) -> Result<Response<pb::ControlRolloutResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let result = async {
            let scope = self.scope(&who)?;
            self.may_change_workload(&scope, &r.name, "control rollouts")?;
            let user = scope.user.clone();
            match r.action.as_str() {
                "pause" => self.hub.workloads.set_rollout_paused(&r.name, true).await?,
                "resume" => {
                    self.hub
                        .workloads
                        .set_rollout_paused(&r.name, false)
                        .await?
                }
                "undo" => {
                    let to = (r.to_revision > 0).then_some(r.to_revision);
                    self.hub.workloads.undo_rollout(&r.name, to, &user).await?;
                }
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown rollout action {other:?} (pause, resume or undo)"
                    )));
                }
            }
            Ok(rollout_to_pb(self.hub.workloads.rollout_status(&r.name)?))
        }
        .await;
        self.record(
            &who,
            &format!("Rollout{}", capitalize(&r.action)),
            &format!("workload/{}", r.name),
            &result,
        )
        .await;
        result.map(|r| Response::new(pb::ControlRolloutResponse { rollout: Some(r) }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let r = req.into_inner();
        // A team sees the events of its own workloads.
        let teams: std::collections::HashMap<String, String> = self
            .hub
            .records
            .workloads()
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .map(|w| (w.name, w.team))
            .collect();
        let events = self
            .hub
            .workloads
            .events_since(r.since_unix_ms, &r.workload, 10_000)?
            .into_iter()
            .filter(|e| {
                scope.global >= Role::Viewer
                    || teams
                        .get(&e.workload)
                        .is_some_and(|t| scope.role_on_workload(t) >= Role::Viewer)
            })
            .map(|e| pb::Event {
                unix_ms: e.unix_ms,
                workload: e.workload,
                cluster: e.cluster,
                reason: e.reason,
                message: e.message,
            })
            .collect();
        Ok(Response::new(pb::ListEventsResponse { events }))
    }

    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<pb::BackupResponse, Status>>;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let who = self.who(&req);
        let result = async {
            self.authorize(&who, Role::Admin, "back up the hub")?;
            let hub = self.hub.clone();
            tokio::task::spawn_blocking(move || {
                crate::admin::backup::archive_unlinked(&hub.dir, hub.records.store())
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("backup failed: {e}")))
        }
        .await;
        self.record(&who, "Backup", "hub", &result).await;
        let (report, mut file) = result?;
        tracing::info!(
            records = report.records,
            bytes = report.bytes,
            "backup taken"
        );
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let chunk = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => Ok(pb::BackupResponse {
                        data: buf[..n].to_vec(),
                    }),
                    Err(e) => Err(Status::internal(format!("reading the backup: {e}"))),
                };
                let failed = chunk.is_err();
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn create_cluster_set(
        &self,
        req: Request<pb::CreateClusterSetRequest>,
    ) -> Result<Response<pb::CreateClusterSetResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let result = async {
            let (user, _) = self.authorize(&who, Role::Admin, "create cluster sets")?;
            let set = self
                .hub
                .teams
                .create_cluster_set(&r.name, &r.selector, &user, &r.managed_by)
                .await?;
            self.cluster_set_to_pb(set)
        }
        .await;
        self.record(
            &who,
            "CreateClusterSet",
            &format!("clusterset/{}", r.name),
            &result,
        )
        .await;
        result.map(|c| {
            Response::new(pb::CreateClusterSetResponse {
                cluster_set: Some(c),
            })
        })
    }

    async fn list_cluster_sets(
        &self,
        req: Request<pb::ListClusterSetsRequest>,
    ) -> Result<Response<pb::ListClusterSetsResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let granted: std::collections::BTreeSet<String> = scope
            .teams
            .iter()
            .flat_map(|t| t.grants.iter().map(|g| g.cluster_set.clone()))
            .collect();
        let mut cluster_sets = Vec::new();
        for s in self.hub.records.cluster_sets().map_err(HubError::from)? {
            if scope.global >= Role::Viewer || granted.contains(&s.name) {
                cluster_sets.push(self.cluster_set_to_pb(s)?);
            }
        }
        Ok(Response::new(pb::ListClusterSetsResponse { cluster_sets }))
    }

    async fn update_cluster_set(
        &self,
        req: Request<pb::UpdateClusterSetRequest>,
    ) -> Result<Response<pb::UpdateClusterSetResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let result = async {
            self.authorize(&who, Role::Admin, "change cluster sets")?;
            let set = self
                .hub
                .teams
                .update_cluster_set(&r.name, &r.selector)
                .await?;
            self.cluster_set_to_pb(set)
        }
        .await;
        self.record(
            &who,
            "UpdateClusterSet",
            &format!("clusterset/{}", r.name),
            &result,
        )
        .await;
        result.map(|c| {
            Response::new(pb::UpdateClusterSetResponse {
                cluster_set: Some(c),
            })
        })
    }

    async fn delete_cluster_set(
        &self,
        req: Request<pb::DeleteClusterSetRequest>,
    ) -> Result<Response<pb::DeleteClusterSetResponse>, Status> {
        let who = self.who(&req);
        let name = req.into_inner().name;
        let result = async {
            self.authorize(&who, Role::Admin, "delete cluster sets")?;
            self.hub.teams.delete_cluster_set(&name).await?;
            Ok(pb::DeleteClusterSetResponse {})
        }
        .await;
        self.record(
            &who,
            "DeleteClusterSet",
            &format!("clusterset/{name}"),
            &result,
        )
        .await;
        result.map(Response::new)
    }

    async fn create_team(
        &self,
        req: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::CreateTeamResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let result = async {
            let (user, _) = self.authorize(&who, Role::Admin, "create teams")?;
            Ok(team_to_pb(
                self.hub
                    .teams
                    .create_team(&r.name, &r.namespaces, &user)
                    .await?,
            ))
        }
        .await;
        self.record(&who, "CreateTeam", &format!("team/{}", r.name), &result)
            .await;
        result.map(|t| Response::new(pb::CreateTeamResponse { team: Some(t) }))
    }

    async fn update_team(
        &self,
        req: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::UpdateTeamResponse>, Status> {
        let who = self.who(&req);
        let r = req.into_inner();
        let name = r.name.clone();
        let result = async {
            self.authorize(&who, Role::Admin, "change teams")?;
            let mut grants = Vec::new();
            for g in r.add_grants {
                let role = match g.role.as_str() {
                    "viewer" => Role::Viewer,
                    "operator" => Role::Operator,
                    other => {
                        return Err(Status::invalid_argument(format!(
                            "a team's role on a cluster set is viewer or operator, not {other:?}"
                        )));
                    }
                };
                grants.push(crate::store::records::Grant {
                    cluster_set: g.cluster_set,
                    role,
                    cluster_scoped: g.cluster_scoped,
                });
            }
            let change = crate::control::teams::TeamChange {
                add_members: r.add_members,
                remove_members: r.remove_members,
                add_namespaces: r.add_namespaces,
                remove_namespaces: r.remove_namespaces,
                add_grants: grants,
                remove_grants: r.remove_grants,
            };
            Ok(team_to_pb(
                self.hub.teams.update_team(&r.name, change).await?,
            ))
        }
        .await;
        self.record(&who, "UpdateTeam", &format!("team/{name}"), &result)
            .await;
        result.map(|t| Response::new(pb::UpdateTeamResponse { team: Some(t) }))
    }

    async fn list_teams(
        &self,
        req: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        let teams = self
            .hub
            .records
            .teams()
            .map_err(HubError::from)?
            .into_iter()
            .filter(|t| scope.global >= Role::Viewer || t.members.contains(&scope.user))
            .map(team_to_pb)
            .collect();
        Ok(Response::new(pb::ListTeamsResponse { teams }))
    }

    async fn delete_team(
        &self,
        req: Request<pb::DeleteTeamRequest>,
    ) -> Result<Response<pb::DeleteTeamResponse>, Status> {
        let who = self.who(&req);
        let name = req.into_inner().name;
        let result = async {
            self.authorize(&who, Role::Admin, "delete teams")?;
            self.hub.teams.delete_team(&name).await?;
            Ok(pb::DeleteTeamResponse {})
        }
        .await;
        self.record(&who, "DeleteTeam", &format!("team/{name}"), &result)
            .await;
        result.map(Response::new)
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let scope = self.scope(&self.who(&req))?;
        Ok(Response::new(pb::WhoAmIResponse {
            user: scope.user.clone(),
            role: scope.global.to_string(),
            teams: scope.teams.iter().map(|t| t.name.clone()).collect(),
        }))
    }
}
