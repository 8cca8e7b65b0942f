//! `tetherctl token ...`

use serde::Serialize;
use tether_common::labels::{format_labels, parse_labels};
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::time::{rfc3339, unix_now};
use tonic::transport::Channel;

use super::output::{self, Format, Table};
use super::{CtlError, Failure, TokenCommand};
use tether_client::ClientConfig;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    id: String,
    cluster: String,
    labels: std::collections::BTreeMap<String, String>,
    created: String,
    expires: String,
    reusable: bool,
    uses: u32,
    state: &'static str,
    created_by: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow_labels: Vec<String>,
}

fn state(t: &pb::Token) -> &'static str {
    if t.revoked {
        "revoked"
    } else if t.expires_unix <= unix_now() {
        "expired"
    } else if !t.reusable && t.uses > 0 {
        "used"
    } else {
        "valid"
    }
}

fn view(t: pb::Token) -> TokenView {
    TokenView {
        state: state(&t),
        id: t.id,
        cluster: t.cluster,
        labels: t.labels.into_iter().collect(),
        created: rfc3339(t.created_unix),
        expires: rfc3339(t.expires_unix),
        reusable: t.reusable,
        uses: t.uses,
        created_by: t.created_by,
        allow_labels: t.allow_labels,
    }
}

fn expires_in(unix: i64) -> String {
    let left = unix - unix_now();
    if left <= 0 {
        return "expired".into();
    }
    humantime::format_duration(std::time::Duration::from_secs(left as u64)).to_string()
}

pub(super) async fn run(
    api: &mut HubApiServiceClient<Channel>,
    cmd: TokenCommand,
    config: &ClientConfig,
) -> Result<String, Failure> {
    match cmd {
        TokenCommand::Create {
            cluster,
            labels,
            ttl,
            reusable,
            allow_labels,
            output: format,
        } => {
            for k in &allow_labels {
                tether_common::labels::validate_key(k)
                    .map_err(|e| CtlError::usage(format!("invalid --allow-labels: {e}")))?;
            }
            tether_common::identity::validate_name(&cluster)
                .map_err(|e| CtlError::usage(format!("invalid --cluster: {e}")))?;
            let labels = parse_labels(&labels)
                .map_err(|e| CtlError::usage(format!("invalid --labels: {e}")))?;
            let resp = api
                .create_token(pb::CreateTokenRequest {
                    cluster,
                    labels: labels.into_iter().collect(),
                    ttl_seconds: ttl.map_or(0, |d| d.as_secs().max(1)),
                    reusable,
                    allow_labels,
                })
                .await?
                .into_inner();
            let info = resp.info.unwrap_or_default();
            let hub = if resp.hub_address.is_empty() {
                config.hub.clone()
            } else {
                resp.hub_address
            };
            // The token goes in the environment (or a file: --token-file), never in the
            // agent's argv, where `ps` would show it for the agent's whole life.
            let command = format!(
                "TETHER_TOKEN={} tether-agent --hub {hub} --ca-pin {}",
                resp.token, resp.ca_pin
            );
            let helm = format!(
                "helm install tether-agent deploy/helm/tether-agent --namespace tether-system --create-namespace \
                 --set hub.address={hub} --set join.token={} --set join.caPin={}",
                resp.token, resp.ca_pin
            );
            Ok(match format {
                Format::Table => format!(
                    "Token:    {}\nCluster:  {}\nLabels:   {}\nAgent may claim: {}\nExpires:  {} (in {})\nReusable: {}\nCA pin:   {}\n\n\
                     Install the agent in the member cluster (the token is shown only once):\n  {helm}\n\n\
                     or run it directly:\n  {command}\n",
                    resp.token,
                    info.cluster,
                    output::or_none(&format_labels(&info.labels.clone().into_iter().collect())),
                    output::or_none(&info.allow_labels.join(",")),
                    rfc3339(info.expires_unix),
                    expires_in(info.expires_unix),
                    info.reusable,
                    resp.ca_pin,
                ),
                f => output::structured(
                    &serde_json::json!({
                        "token": resp.token,
                        "id": info.id,
                        "cluster": info.cluster,
                        "labels": info.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                        "expires": rfc3339(info.expires_unix),
                        "reusable": info.reusable,
                        "allowLabels": info.allow_labels,
                        "caPin": resp.ca_pin,
                        "hub": hub,
                        "agentCommand": command,
                        "helmCommand": helm,
                    }),
                    f,
                ),
            })
        }
        TokenCommand::List { output: format } => {
            let tokens = api
                .list_tokens(pb::ListTokensRequest {})
                .await?
                .into_inner()
                .tokens;
            Ok(match format {
                Format::Table => {
                    let mut t = Table::new(&[
                        "ID", "CLUSTER", "STATE", "EXPIRES", "USES", "REUSABLE", "LABELS",
                    ]);
                    for tok in tokens {
                        t.row(vec![
                            tok.id.clone(),
                            tok.cluster.clone(),
                            state(&tok).into(),
                            expires_in(tok.expires_unix),
                            tok.uses.to_string(),
                            tok.reusable.to_string(),
                            output::or_none(&format_labels(&tok.labels.into_iter().collect())),
                        ]);
                    }
                    t.render()
                }
                f => output::structured(&tokens.into_iter().map(view).collect::<Vec<_>>(), f),
            })
        }
        TokenCommand::Revoke { id } => {
            tether_common::token::validate_id(&id).map_err(CtlError::usage)?;
            api.revoke_token(pb::RevokeTokenRequest { id: id.clone() })
                .await?;
            Ok(format!("token {id} revoked\n"))
        }
    }
}
