//! `tetherctl user ...` and `tetherctl audit`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::pki;
use tether_common::time::{rfc3339, unix_now_ms};
use tonic::transport::Channel;

use super::output::{self, Format, Table};
use super::{CtlError, Failure};
use tether_client::ClientConfig;

/// Creates a user: the key is made here and never sent; the hub signs a CSR for it.
pub(super) async fn create(
    api: &mut HubApiServiceClient<Channel>,
    config: &ClientConfig,
    name: &str,
    role: &str,
    ttl: Option<Duration>,
    out: Option<PathBuf>,
) -> Result<String, Failure> {
    tether_common::identity::validate_name(name)
        .map_err(|e| CtlError::usage(format!("invalid user name: {e}")))?;
    if !matches!(role, "admin" | "operator" | "viewer" | "none") {
        return Err(CtlError::usage(format!(
            "invalid --role {role:?}: admin, operator, viewer, or none (a team member with no hub-wide role)"
        ))
        .into());
    }
    let (key_pem, csr_der) =
        pki::new_key_and_csr().map_err(|e| CtlError::runtime(e.to_string()))?;
    let resp = api
        .create_user(pb::CreateUserRequest {
            name: name.to_string(),
            role: role.to_string(),
            csr_der,
            ttl_seconds: ttl.map_or(0, |d| d.as_secs().max(1)),
        })
        .await?
        .into_inner();
    let hub = if resp.hub_address.is_empty() {
        config.hub.clone()
    } else {
        resp.hub_address
    };
    let cfg = ClientConfig::new(hub, name.to_string(), resp.ca_pem, resp.cert_pem, key_pem);
    match out {
        Some(path) => {
            cfg.save(&path)
                .map_err(|e| CtlError::runtime(e.to_string()))?;
            Ok(format!(
                "user {name} created (role {role}, certificate valid until {}); config written to {} (0600)\n",
                rfc3339(resp.not_after_unix),
                path.display()
            ))
        }
        None => Ok(cfg.to_yaml()),
    }
}

pub(super) async fn list(
    api: &mut HubApiServiceClient<Channel>,
    format: Format,
) -> Result<String, Failure> {
    let users = api
        .list_users(pb::ListUsersRequest {})
        .await?
        .into_inner()
        .users;
    Ok(match format {
        Format::Table => {
            let mut t = Table::new(&["NAME", "ROLE", "CREATED", "CERTIFICATE EXPIRES"]);
            for u in users {
                t.row(vec![u.name, u.role, rfc3339(u.created_unix), rfc3339(u.cert_not_after_unix)]);
            }
            t.render()
        }
        f => output::structured(
            &users
                .into_iter()
                .map(|u| json!({"name": u.name, "role": u.role, "created": rfc3339(u.created_unix), "certExpires": rfc3339(u.cert_not_after_unix)}))
                .collect::<Vec<_>>(),
            f,
        ),
    })
}

pub(super) async fn remove(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
) -> Result<String, Failure> {
    api.remove_user(pb::RemoveUserRequest {
        name: name.to_string(),
    })
    .await?;
    Ok(format!(
        "user {name} removed; their certificate no longer works\n"
    ))
}

pub(super) async fn audit(
    api: &mut HubApiServiceClient<Channel>,
    since: Option<Duration>,
    format: Format,
) -> Result<String, Failure> {
    let since_ms = since.map_or(0, |d| unix_now_ms() - d.as_millis() as i64);
    let entries = api
        .list_audit(pb::ListAuditRequest {
            since_unix_ms: since_ms,
            limit: 0,
        })
        .await?
        .into_inner()
        .entries;
    Ok(match format {
        Format::Table => {
            let mut t = Table::new(&["TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "SOURCE"]);
            for e in entries {
                t.row(vec![rfc3339(e.unix_ms / 1000), e.actor, e.action, e.target, e.result, e.source]);
            }
            t.render()
        }
        f => output::structured(
            &entries
                .into_iter()
                .map(|e| json!({"time": rfc3339(e.unix_ms / 1000), "unixMs": e.unix_ms, "actor": e.actor, "action": e.action, "target": e.target, "result": e.result, "source": e.source}))
                .collect::<Vec<_>>(),
            f,
        ),
    })
}
