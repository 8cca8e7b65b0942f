//! The agent's half of the Kubernetes API proxy: when the hub asks (`ProxyOpen`), open a
//! `Proxy` stream, perform the request against the local API server and stream the response
//! back. If the hub drops the stream (its client went away) the member request is cancelled.
//!
//! A connection upgrade (exec, attach, port-forward over WebSocket or SPDY) is performed the
//! same way; after the member's `101 Switching Protocols` the stream carries the upgraded
//! connection's bytes both ways until either side ends it.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tether_common::pb::{self, proxy_request, proxy_response};
use tether_common::proxy::{TUNNEL_CHUNK, frame, is_hop_by_hop};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// A response body that streams.
pub type ResponseBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Where proxied requests go: the member cluster's API server.
pub trait Forward: Send + Sync + 'static {
    /// Sends one request. A `101` response to an upgrade request carries hyper's
    /// `OnUpgrade` in its extensions (as hyper's client leaves it).
    fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<http::Response<ResponseBody>, String>>;

    /// Namespaces holding the agent's own credential and desired-state cache: closed to
    /// proxied requests except a hub admin's.
    fn protected_namespaces(&self) -> &[String] {
        &[]
    }
}

/// [`Forward`] through the agent's kube client (its base URL and credentials).
pub struct KubeForward {
    pub client: kube::Client,
    pub protected: Vec<String>,
}

impl Forward for KubeForward {
    fn protected_namespaces(&self) -> &[String] {
        &self.protected
    }

    fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<http::Response<ResponseBody>, String>> {
        Box::pin(async move {
            let resp = self
                .client
                .send(req.map(kube::client::Body::from))
                .await
                .map_err(|e| format!("the member API server did not answer: {e}"))?;
            // `map` keeps the extensions, and with them a pending upgrade.
            Ok(resp.map(|b| {
                b.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    .boxed_unsync()
            }))
        })
    }
}

/// The largest request body the agent accepts from the hub (which enforces its own limit).
const MAX_BODY: usize = 64 << 20;
/// Response chunks sent to the hub at most this big.
const CHUNK: usize = 256 << 10;
/// How long the agent keeps a finished stream open for the hub to read its end.
const LINGER: std::time::Duration = std::time::Duration::from_secs(30);

type Outbound = mpsc::Sender<pb::ProxyRequest>;

/// Serves one proxied request.
pub async fn serve(channel: Channel, forward: Arc<dyn Forward>, request_id: u64) {
    let (tx, rx) = mpsc::channel(8);
    if tx
        .send(frame(proxy_request::Frame::Start(pb::ProxyStart {
            request_id,
        })))
        .await
        .is_err()
    {
        return;
    }
    let mut client = crate::session::agent_client(channel);
    let mut inbound = match client.proxy(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::debug!(request_id, error = %e.message(), "proxy stream refused");
            return;
        }
    };
    let request = match inbound.message().await {
        Ok(Some(pb::ProxyResponse {
            frame: Some(proxy_response::Frame::Request(r)),
        })) => r,
        _ => return,
    };
    let mut body = Vec::new();
    loop {
        match inbound.message().await {
            Ok(Some(pb::ProxyResponse {
                frame: Some(proxy_response::Frame::Data(d)),
            })) => {
                if body.len() + d.len() > MAX_BODY {
                    let _ = tx
                        .send(frame(proxy_request::Frame::Error(
                            "request body too large".into(),
                        )))
                        .await;
                    return;
                }
                body.extend_from_slice(&d);
            }
            Ok(Some(pb::ProxyResponse {
                frame: Some(proxy_response::Frame::End(_)),
            })) => break,
            _ => return,
        }
    }
    if let Some(refusal) = refuse(&request, forward.protected_namespaces()) {
        let _ = tx.send(refusal.0).await;
        let _ = tx.send(refusal.1).await;
        let _ = tx
            .send(frame(proxy_request::Frame::End(pb::ProxyEnd {})))
            .await;
        linger(&mut inbound).await;
        return;
    }
    let req = match build_request(&request, body) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(frame(proxy_request::Frame::Error(e))).await;
            return;
        }
    };
    // The hub hanging up cancels the member request. Nothing else may arrive before the
    // response: a request's body is complete, and an upgrade's client waits for the 101.
    let response = tokio::select! {
        r = forward.send(req) => r,
        _ = inbound.message() => return,
    };
    let mut response = match response {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(frame(proxy_request::Frame::Error(e))).await;
            linger(&mut inbound).await;
            return;
        }
    };
    let upgraded = if request.upgrade && response.status() == http::StatusCode::SWITCHING_PROTOCOLS
    {
        Some(hyper::upgrade::on(&mut response))
    } else {
        None
    };
    let (parts, body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n.as_str()))
        .filter_map(|(n, v)| {
            v.to_str().ok().map(|v| pb::HttpHeader {
                name: n.to_string(),
                value: v.to_string(),
            })
        })
        .collect();
    let head = frame(proxy_request::Frame::Response(pb::HttpResponseHead {
        status: u32::from(parts.status.as_u16()),
        headers,
    }));
    if tx.send(head).await.is_err() {
        return;
    }
    match upgraded {
        Some(on_upgrade) => match on_upgrade.await {
            Ok(member) => tunnel(member, inbound, tx).await,
            Err(e) => {
                let _ = tx
                    .send(frame(proxy_request::Frame::Error(format!(
                        "the member's upgraded connection failed: {e}"
                    ))))
                    .await;
            }
        },
        None => stream_body(body, inbound, tx).await,
    }
}

/// The hub group that may reach the agent's own namespace through the proxy.
const ADMIN_GROUP: &str = "tether:admin";

/// A 403 response (head and body frames) when the agent must not perform `request`: it
/// names no user to run as (the agent never lends its own service account), or it reaches
/// into a namespace holding the agent's credential and the caller is not a hub admin.
fn refuse(
    request: &pb::HttpRequestHead,
    protected: &[String],
) -> Option<(pb::ProxyRequest, pb::ProxyRequest)> {
    let why = if request.impersonate_user.is_empty() {
        "this agent proxies requests only as the hub user they come from".to_string()
    } else if !request.impersonate_groups.iter().any(|g| g == ADMIN_GROUP)
        && let Some(ns) = protected.iter().find(|ns| reaches(&request.path, ns))
    {
        format!(
            "namespace {ns:?} holds the Tether agent's credential: only hub admins may reach it through the proxy"
        )
    } else {
        return None;
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": why, "reason": "Forbidden", "code": 403,
    })
    .to_string();
    Some((
        frame(proxy_request::Frame::Response(pb::HttpResponseHead {
            status: 403,
            headers: vec![pb::HttpHeader {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
        })),
        frame(proxy_request::Frame::Data(body.into_bytes())),
    ))
}

/// Whether an API path reaches into namespace `ns`, or lists Secrets across all namespaces
/// (which would include that namespace's).
fn reaches(path: &str, ns: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let in_namespace = segments
        .windows(2)
        .any(|w| w[0] == "namespaces" && w[1] == ns)
        // The Namespace object itself (deleting it deletes what is in it).
        || segments.last().is_some_and(|l| *l == ns) && segments.iter().rev().nth(1) == Some(&"namespaces");
    let all_secrets = segments.first() == Some(&"api")
        && !segments.contains(&"namespaces")
        && segments.last() == Some(&"secrets");
    in_namespace || all_secrets
}

/// The member request: the hub's method, path and allowed headers, run as the user the hub
/// names.
fn build_request(
    request: &pb::HttpRequestHead,
    body: Vec<u8>,
) -> Result<http::Request<Vec<u8>>, String> {
    let mut req = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.path.as_str());
    for h in &request.headers {
        let name = h.name.to_ascii_lowercase();
        // The hub sends an allow-list; the agent checks again what must never pass.
        if is_hop_by_hop(&name) || name == "authorization" || name.starts_with("impersonate-") {
            continue;
        }
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    if request.upgrade {
        let protocol = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
            .map(|h| h.value.as_str())
            .ok_or("an upgrade request without an Upgrade header")?;
        req = req
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, protocol);
    }
    req = req.header("Impersonate-User", request.impersonate_user.as_str());
    for g in &request.impersonate_groups {
        req = req.header("Impersonate-Group", g.as_str());
    }
    if !request.on_behalf_of.is_empty() {
        // The extra key `tether.dev/user`, percent-encoded as header names require.
        req = req.header(
            "Impersonate-Extra-tether.dev%2Fuser",
            request.on_behalf_of.as_str(),
        );
    }
    req.body(body).map_err(|e| format!("invalid request: {e}"))
}

/// Streams a response body to the hub, ending with `End` (or `Error`).
async fn stream_body(
    mut body: ResponseBody,
    mut inbound: Streaming<pb::ProxyResponse>,
    tx: Outbound,
) {
    loop {
        let next = tokio::select! {
            f = body.frame() => f,
            _ = inbound.message() => return,
        };
        match next {
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                for chunk in data.chunks(CHUNK) {
                    tokio::select! {
                        r = tx.send(frame(proxy_request::Frame::Data(chunk.to_vec()))) => if r.is_err() { return },
                        _ = inbound.message() => return,
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx
                    .send(frame(proxy_request::Frame::Error(e.to_string())))
                    .await;
                linger(&mut inbound).await;
                return;
            }
            None => break,
        }
    }
    let _ = tx
        .send(frame(proxy_request::Frame::End(pb::ProxyEnd {})))
        .await;
    linger(&mut inbound).await;
}

/// Carries an upgraded member connection over the stream: hub Data → member, member bytes →
/// Data; the hub's End half-closes the member side; the member closing ends it all.
async fn tunnel(
    member: hyper::upgrade::Upgraded,
    mut inbound: Streaming<pb::ProxyResponse>,
    tx: Outbound,
) {
    let (mut rd, mut wr) = tokio::io::split(hyper_util::rt::TokioIo::new(member));
    let down = async {
        loop {
            match inbound.message().await {
                Ok(Some(pb::ProxyResponse {
                    frame: Some(proxy_response::Frame::Data(d)),
                })) => {
                    if wr.write_all(&d).await.is_err() {
                        return;
                    }
                }
                Ok(Some(pb::ProxyResponse {
                    frame: Some(proxy_response::Frame::End(_)),
                })) => {
                    let _ = wr.shutdown().await;
                    // The member may still answer; wait for the hub to go away.
                    while let Ok(Some(_)) = inbound.message().await {}
                    return;
                }
                _ => return,
            }
        }
    };
    let up = async {
        let mut buf = vec![0u8; TUNNEL_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx
                        .send(frame(proxy_request::Frame::End(pb::ProxyEnd {})))
                        .await;
                    return;
                }
                Ok(n) => {
                    if tx
                        .send(frame(proxy_request::Frame::Data(buf[..n].to_vec())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
    linger(&mut inbound).await;
}

/// Dropping the call at once would reset the HTTP/2 stream and could discard frames the hub
/// has not read yet: wait (bounded) for the hub to finish with it.
async fn linger(inbound: &mut Streaming<pb::ProxyResponse>) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, groups: &[&str]) -> pb::HttpRequestHead {
        pb::HttpRequestHead {
            method: "GET".into(),
            path: path.into(),
            impersonate_user: "tether:proxy".into(),
            impersonate_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_agents_namespace_is_closed_to_everyone_but_hub_admins() {
        let protected = vec!["tether-system".to_string()];
        for path in [
            "/api/v1/namespaces/tether-system/secrets/tether-agent-credential",
            "/api/v1/namespaces/tether-system/secrets",
            "/api/v1/watch/namespaces/tether-system/secrets",
            "/api/v1/namespaces/tether-system/pods/agent-x/exec?command=sh",
            "/apis/apps/v1/namespaces/tether-system/daemonsets",
            "/api/v1/namespaces/tether-system",
            "/api/v1/secrets?limit=500",
        ] {
            assert!(
                refuse(&request(path, &["tether:operator"]), &protected).is_some(),
                "{path}"
            );
            assert!(
                refuse(&request(path, &["tether:admin"]), &protected).is_none(),
                "{path}"
            );
        }
        for path in [
            "/api/v1/namespaces/shop/secrets/db",
            "/api/v1/namespaces",
            "/apis/apps/v1/deployments",
            "/api/v1/namespaces/tether-systemx/configmaps",
        ] {
            assert!(
                refuse(&request(path, &["tether:viewer"]), &protected).is_none(),
                "{path}"
            );
        }
    }

    #[test]
    fn a_request_without_a_user_to_run_as_is_refused() {
        let mut r = request("/api/v1/namespaces", &["tether:admin"]);
        r.impersonate_user.clear();
        assert!(refuse(&r, &[]).is_some());
    }

    #[test]
    fn the_member_request_carries_who_it_is_for() {
        let mut r = request("/api/v1/pods", &["tether:viewer"]);
        r.on_behalf_of = "alice".into();
        r.headers = vec![
            pb::HttpHeader {
                name: "Impersonate-User".into(),
                value: "system:admin".into(),
            },
            pb::HttpHeader {
                name: "Authorization".into(),
                value: "Bearer x".into(),
            },
            pb::HttpHeader {
                name: "Accept".into(),
                value: "application/json".into(),
            },
        ];
        let req = build_request(&r, Vec::new()).unwrap();
        let h = req.headers();
        assert_eq!(
            h.get_all("impersonate-user").iter().collect::<Vec<_>>(),
            ["tether:proxy"]
        );
        assert_eq!(h["impersonate-group"], "tether:viewer");
        assert_eq!(h["impersonate-extra-tether.dev%2fuser"], "alice");
        assert!(h.get("authorization").is_none());
        assert_eq!(h["accept"], "application/json");
    }
}
