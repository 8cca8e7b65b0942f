//! The Kubernetes API proxy: `https://HUB/clusters/NAME/...` on the hub's TLS port, forwarded
//! over the connection the cluster's agent already opened.
//!
//! For each request the hub asks the agent, on its control stream, to open a new `Proxy`
//! gRPC stream (its own HTTP/2 stream, with its own flow control); the request and the
//! response travel on it in chunks, so watches and large lists stream and a slow consumer
//! holds up only itself. When the client goes away the stream is dropped and the agent
//! cancels the member-side request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;
use tether_common::identity::Identity;
use tether_common::pb::{self, proxy_request, proxy_response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::{Status, Streaming};

use crate::api::server::Peer;
use crate::api::state::Hub;
use crate::store::records::Role;

/// Limits of the proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Proxied requests in flight per cluster.
    pub max_streams_per_cluster: usize,
    /// Of those, the most one user may hold (watches and exec sessions last), so that one
    /// user cannot lock the others out.
    pub max_streams_per_user: usize,
    /// Largest request body.
    pub max_body: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// How long the agent may take to open the stream for a request.
    pub open_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            max_streams_per_cluster: 64,
            max_streams_per_user: 16,
            max_body: 10 << 20,
            body_timeout: Duration::from_secs(30),
            open_timeout: Duration::from_secs(10),
        }
    }
}

/// The agent's side of one proxied request.
pub struct AgentStream {
    pub inbound: Streaming<pb::ProxyRequest>,
    pub outbound: mpsc::Sender<Result<pb::ProxyResponse, Status>>,
}

/// Requests waiting for their agent stream, and the per-cluster limits.
#[derive(Default)]
pub struct Proxy {
    pending: Mutex<HashMap<(String, u64), oneshot::Sender<AgentStream>>>,
    next_id: AtomicU64,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// A permit from the semaphore named `key` (made with `max` permits on first use).
    fn slot(&self, key: String, max: usize) -> Option<OwnedSemaphorePermit> {
        let sem = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone();
        sem.try_acquire_owned().ok()
    }

    fn expect(&self, cluster: &str) -> (u64, oneshot::Receiver<AgentStream>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((cluster.to_string(), id), tx);
        (id, rx)
    }

    fn forget(&self, cluster: &str, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(cluster.to_string(), id));
    }

    /// Hands an agent's stream to the request waiting for it. Only the cluster the request
    /// was meant for can answer it: the key includes the identity from its certificate.
    pub fn arrived(&self, cluster: &str, id: u64, stream: AgentStream) -> Result<(), Status> {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(cluster.to_string(), id))
            .ok_or_else(|| Status::not_found("no proxied request with that id for this cluster"))?;
        waiter
            .send(stream)
            .map_err(|_| Status::cancelled("the client went away"))
    }
}

/// A Kubernetes `Status` error response.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What a proxy path names: the cluster and the API path below it.
fn split(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/clusters/")?;
    match rest.split_once('/') {
        Some((name, tail)) => Some((name, tail)),
        None => Some((rest, "")),
    }
}

/// The most header bytes a proxied request may carry.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// The member-side user every proxied request runs as. Kubernetes RBAC can limit the
/// `impersonate` verb only to fixed names, so the agent impersonates this one user with the
/// groups of the caller's role (`tether:viewer|operator|admin`) and names the hub user in the
/// extra `tether.dev/user`: the member's RBAC binds the groups, and its audit log shows who.
pub const PROXY_USER: &str = "tether:proxy";

/// Request headers passed on to the member: an allow-list. Credentials, impersonation,
/// `X-Remote-*` and `X-Forwarded-*` (which an authenticating proxy in front of the member
/// could trust), cookies and hop-by-hop headers never pass; the hub decides who the request
/// runs as.
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "content-type",
    "content-encoding",
    "user-agent",
    "if-match",
    "if-none-match",
    "audit-id",
    "x-request-id",
    "kubectl-command",
    "kubectl-session",
    // Connection upgrades (exec, attach, port-forward).
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

fn forwardable_request_header(name: &str) -> bool {
    FORWARDED_REQUEST_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// A connection upgrade request: `Connection: upgrade` and an `Upgrade` protocol.
fn upgrade_protocol(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(http::header::UPGRADE)?.to_str().ok()?;
    connection_upgrade.then(|| protocol.to_string())
}

/// Whether a request reads Secrets (get, list or watch): audited like writes.
fn reads_secrets(path: &str) -> bool {
    let path = path
        .split('?')
        .next()
        .unwrap_or(path)
        .trim_start_matches('/');
    let Some(rest) = path.strip_prefix("api/v1/") else {
        return false;
    };
    let rest = rest.strip_prefix("watch/").unwrap_or(rest);
    let rest = match rest.strip_prefix("namespaces/") {
        Some(r) => r.split_once('/').map_or("", |(_, tail)| tail),
        None => rest,
    };
    rest == "secrets" || rest.starts_with("secrets/")
}

/// Subresources that run something in, or open a connection into, a pod: never read-only,
/// whatever the method (WebSocket exec is a GET).
fn is_pod_session(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    segments.windows(3).any(|w| {
        matches!(w[0], "pods" | "services" | "nodes")
            && !w[1].is_empty()
            && matches!(w[2], "exec" | "attach" | "portforward" | "proxy")
    })
}

/// The axum handler for `/clusters/...`.
pub async fn handle(hub: Arc<Hub>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Some((cluster, api_path)) = split(parts.uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "expected /clusters/NAME/...".into(),
        );
    };
    let cluster = cluster.to_string();
    let query = path_and_query
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    let target_path = format!("/{api_path}{query}");
    let method = parts.method.clone();

    // Who is asking, and may they?
    let Some(peer) = parts.extensions.get::<Peer>().cloned() else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "no connection information".into(),
        );
    };
    let user = match peer.cert.as_ref().map(|c| &c.identity) {
        Some(Identity::User(u)) => u.clone(),
        Some(other) => {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("{other} cannot use the Kubernetes proxy"),
            );
        }
        None => {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "a user certificate is required".into(),
            );
        }
    };
    let user_record = match hub.records.user(&user) {
        Ok(Some(u)) => u,
        _ => {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                format!("user {user:?} no longer exists"),
            );
        }
    };
    let unknown = || {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("cluster {cluster:?} is not known to this hub (see: tetherctl cluster list)"),
        )
    };
    let record = match hub.records.cluster(&cluster) {
        Ok(Some(r)) => r,
        Ok(None) => return unknown(),
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            );
        }
    };
    // Hub-wide role, or a team's role on this cluster's sets; a cluster outside them does
    // not exist for the caller.
    let scope = match hub.teams.scope(&user_record) {
        Ok(s) => s,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            );
        }
    };
    let role = scope.role_on_cluster(&record.labels);
    if role < Role::Viewer {
        return unknown();
    }
    // Reviews ("who am I", "can I") are created, but change nothing.
    let review = method == Method::POST
        && (api_path.ends_with("/selfsubjectreviews")
            || api_path.ends_with("/selfsubjectaccessreviews")
            || api_path.ends_with("/selfsubjectrulesreviews"));
    let read_only = (matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) || review)
        && !is_pod_session(api_path);
    let actor = format!("user/{user}");
    let secret_read = reads_secrets(api_path);
    let audit = |code: u16| {
        let hub = hub.clone();
        let (actor, method, target, source) = (
            actor.clone(),
            method.to_string(),
            format!("cluster/{cluster} {target_path}"),
            peer.addr.to_string(),
        );
        async move {
            if !read_only || secret_read {
                hub.audit
                    .audit(
                        &actor,
                        &format!("proxy {method}"),
                        &target,
                        &code.to_string(),
                        &source,
                    )
                    .await;
            }
        }
    };
    if !read_only && role < Role::Operator {
        audit(403).await;
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "user {user:?} (role {role}) may not {method} through the proxy: it needs role operator"
            ),
        );
    }
    if !matches!(
        method,
        Method::GET
            | Method::HEAD
            | Method::OPTIONS
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
    ) {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("method {method} is not part of the Kubernetes API"),
        );
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!(
                "request headers total {header_bytes} bytes, over the proxy's limit of {MAX_HEADER_BYTES}"
            ),
        );
    }
    let upgrade = upgrade_protocol(&parts.headers);
    let on_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    if upgrade.is_some() && on_upgrade.is_none() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "connection upgrades need HTTP/1.1".into(),
        );
    }
    let settings = hub.settings.proxy.clone();
    // The user's own share first, so that a user at their limit takes nothing from others.
    let Some(user_permit) = hub
        .proxy
        .slot(format!("{cluster}\0{user}"), settings.max_streams_per_user)
    else {
        return status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!(
                "user {user:?} has too many proxied requests to cluster {cluster:?} open (limit {} per user)",
                settings.max_streams_per_user
            ),
        );
    };
    let Some(permit) = hub
        .proxy
        .slot(cluster.clone(), settings.max_streams_per_cluster)
    else {
        return status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!(
                "too many proxied requests to cluster {cluster:?} at once (limit {})",
                settings.max_streams_per_cluster
            ),
        );
    };
    let permit = (permit, user_permit);
    // Reads never carry a body: one that does is refused rather than buffered.
    let has_body = parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if matches!(method, Method::GET | Method::HEAD) && has_body {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("a {method} request may not have a body"),
        );
    }
    let collect = http_body_util::Limited::new(body, settings.max_body).collect();
    let body = match tokio::time::timeout(settings.body_timeout, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("request body larger than {} bytes", settings.max_body),
            );
        }
        Err(_) => {
            return status(
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                format!(
                    "the request body did not arrive within {}s",
                    settings.body_timeout.as_secs()
                ),
            );
        }
    };

    let (id, arrival) = hub.proxy.expect(&cluster);
    if !hub.sessions.proxy_open(&cluster, id) {
        hub.proxy.forget(&cluster, id);
        let seen = tether_common::time::rfc3339(record.last_seen_unix);
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!(
                "cluster {cluster:?} is Offline{}: the hub cannot reach its agent",
                if seen.is_empty() {
                    String::new()
                } else {
                    format!(" (last seen {seen})")
                }
            ),
        );
    }
    let stream = match tokio::time::timeout(settings.open_timeout, arrival).await {
        Ok(Ok(s)) => s,
        _ => {
            hub.proxy.forget(&cluster, id);
            return status(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                format!("the agent of cluster {cluster:?} did not open a proxy stream in time"),
            );
        }
    };
    // The request always runs as the caller, never as the agent (see PROXY_USER).
    // The member binds these names: the hub-wide role's group (cluster-wide), and each team's
    // group (bound in the team's namespaces).
    let mut impersonate_groups = scope.proxy_groups(&record.labels);
    if scope.global >= Role::Viewer {
        impersonate_groups.insert(0, format!("tether:{}", scope.global));
    }
    let mut headers: Vec<pb::HttpHeader> = parts
        .headers
        .iter()
        .filter(|(n, _)| forwardable_request_header(n.as_str()))
        .filter_map(|(n, v)| {
            v.to_str().ok().map(|v| pb::HttpHeader {
                name: n.to_string(),
                value: v.to_string(),
            })
        })
        .collect();
    if let Some(protocol) = &upgrade {
        headers.push(pb::HttpHeader {
            name: "upgrade".into(),
            value: protocol.clone(),
        });
    }
    let frame = |f: proxy_response::Frame| Ok(pb::ProxyResponse { frame: Some(f) });
    let out = stream.outbound.clone();
    let mut send = vec![frame(proxy_response::Frame::Request(pb::HttpRequestHead {
        method: method.to_string(),
        path: target_path.clone(),
        headers,
        impersonate_user: PROXY_USER.to_string(),
        impersonate_groups,
        upgrade: upgrade.is_some(),
        on_behalf_of: user.clone(),
    }))];
    for chunk in body.chunks(1 << 20) {
        send.push(frame(proxy_response::Frame::Data(chunk.to_vec())));
    }
    send.push(frame(proxy_response::Frame::End(pb::ProxyEnd {})));
    for f in send {
        if out.send(f).await.is_err() {
            return status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                format!("the agent of cluster {cluster:?} went away"),
            );
        }
    }
    let AgentStream {
        mut inbound,
        outbound,
    } = stream;
    let head = match inbound.message().await {
        Ok(Some(pb::ProxyRequest {
            frame: Some(proxy_request::Frame::Response(r)),
        })) => r,
        Ok(Some(pb::ProxyRequest {
            frame: Some(proxy_request::Frame::Error(e)),
        })) => {
            audit(502).await;
            return status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                format!("cluster {cluster:?}: {e}"),
            );
        }
        other => {
            audit(502).await;
            let why = match other {
                Err(s) => s.message().to_string(),
                _ => "the agent ended the stream without a response".into(),
            };
            return status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                format!("cluster {cluster:?}: {why}"),
            );
        }
    };
    audit(head.status as u16).await;
    let code = StatusCode::from_u16(head.status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(code);
    if let Some(h) = response.headers_mut() {
        for header in head.headers {
            if tether_common::proxy::is_hop_by_hop(&header.name) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(header.name.as_str()),
                HeaderValue::try_from(header.value.as_str()),
            ) {
                h.append(n, v);
            }
        }
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(protocol)) = (code, &upgrade) {
            h.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("Upgrade"),
            );
            if let Ok(v) = HeaderValue::try_from(protocol.as_str()) {
                h.insert(http::header::UPGRADE, v);
            }
        }
    }
    if code == StatusCode::SWITCHING_PROTOCOLS {
        let Some(on_upgrade) = on_upgrade else {
            return status(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                format!("cluster {cluster:?} switched protocols on a request that did not ask to"),
            );
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(client) => tunnel(client, inbound, outbound).await,
                Err(e) => tracing::debug!(error = %e, "proxied connection upgrade failed"),
            }
            drop(permit);
        });
        return response
            .body(Body::empty())
            .unwrap_or_else(|e| status(StatusCode::BAD_GATEWAY, "InternalError", e.to_string()));
    }
    // The body streams as the agent sends it. Dropping it (the client left) drops the agent
    // stream, which the agent sees and cancels the member request. An Error frame from the
    // agent ends the body with an error, so the client sees a broken response, never a
    // complete one.
    let body = futures::stream::unfold(Some((inbound, outbound, permit)), |state| async move {
        let (mut inbound, outbound, permit) = state?;
        match inbound.message().await {
            Ok(Some(pb::ProxyRequest {
                frame: Some(proxy_request::Frame::Data(d)),
            })) => Some((
                Ok::<_, std::io::Error>(Bytes::from(d)),
                Some((inbound, outbound, permit)),
            )),
            Ok(Some(pb::ProxyRequest {
                frame: Some(proxy_request::Frame::End(_)),
            })) => None,
            Ok(Some(pb::ProxyRequest {
                frame: Some(proxy_request::Frame::Error(e)),
            })) => Some((Err(std::io::Error::other(e)), None)),
            Ok(_) => Some((
                Err(std::io::Error::other("unexpected frame from the agent")),
                None,
            )),
            Err(e) => Some((Err(std::io::Error::other(e.message().to_string())), None)),
        }
    });
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| status(StatusCode::BAD_GATEWAY, "InternalError", e.to_string()))
}

/// Carries an upgraded connection (exec, attach, port-forward) between the client and the
/// agent's stream until the member side ends it. The client half-closing is passed on as
/// `End`; the agent's `End`, an error or the stream closing ends the tunnel.
async fn tunnel(
    client: hyper::upgrade::Upgraded,
    mut inbound: Streaming<pb::ProxyRequest>,
    outbound: mpsc::Sender<Result<pb::ProxyResponse, Status>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(hyper_util::rt::TokioIo::new(client));
    let frame = |f: proxy_response::Frame| Ok(pb::ProxyResponse { frame: Some(f) });
    let up = async {
        let mut buf = vec![0u8; tether_common::proxy::TUNNEL_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = outbound
                        .send(frame(proxy_response::Frame::End(pb::ProxyEnd {})))
                        .await;
                    break;
                }
                Ok(n) => {
                    if outbound
                        .send(frame(proxy_response::Frame::Data(buf[..n].to_vec())))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // The client's direction is done; the member's may still have data.
        std::future::pending::<()>().await;
    };
    let down = async {
        while let Ok(Some(pb::ProxyRequest {
            frame: Some(proxy_request::Frame::Data(d)),
        })) = inbound.message().await
        {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// A 404 as a Kubernetes Status.
pub fn not_found(message: String) -> http::Response<Body> {
    status(StatusCode::NOT_FOUND, "NotFound", message)
}

/// A gate refusal for proxy paths, as a Kubernetes Status rather than a gRPC one.
pub fn unauthorized(message: String) -> http::Response<Body> {
    status(StatusCode::UNAUTHORIZED, "Unauthorized", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_split_into_cluster_and_api_path() {
        assert_eq!(
            split("/clusters/edge-1/api/v1/pods"),
            Some(("edge-1", "api/v1/pods"))
        );
        assert_eq!(split("/clusters/edge-1"), Some(("edge-1", "")));
        assert_eq!(split("/other"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_path_splits_or_is_refused_without_panicking(path in "\\PC{0,120}") {
            if let Some((cluster, rest)) = split(&path) {
                proptest::prop_assert!(path.ends_with(rest));
                proptest::prop_assert!(!cluster.contains('/'));
            }
            let _ = is_pod_session(&path);
            let _ = forwardable_request_header(&path);
        }
    }

    #[test]
    fn credentials_and_hop_headers_are_not_forwarded() {
        for h in [
            "Authorization",
            "Impersonate-User",
            "impersonate-group",
            "Impersonate-Extra-Scopes",
            "Connection",
            "Host",
            "Cookie",
            "X-Remote-User",
            "X-Remote-Group",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "Proxy-Authorization",
            "Upgrade",
        ] {
            assert!(!forwardable_request_header(h), "{h}");
        }
        for h in ["Accept", "Content-Type", "User-Agent", "Sec-WebSocket-Key"] {
            assert!(forwardable_request_header(h), "{h}");
        }
    }

    #[test]
    fn exec_attach_and_port_forward_are_never_read_only() {
        for p in [
            "api/v1/namespaces/a/pods/p/exec?command=sh",
            "api/v1/namespaces/a/pods/p/attach",
            "api/v1/namespaces/a/pods/p/portforward",
            "api/v1/namespaces/a/services/s/proxy/metrics",
        ] {
            assert!(is_pod_session(p), "{p}");
        }
        for p in [
            "api/v1/namespaces/a/pods/p/log",
            "api/v1/namespaces/exec/pods",
        ] {
            assert!(!is_pod_session(p), "{p}");
        }
    }

    #[test]
    fn secret_reads_are_recognised_in_every_form() {
        for p in [
            "api/v1/secrets",
            "api/v1/namespaces/tether-system/secrets",
            "api/v1/namespaces/tether-system/secrets/tether-agent-credential",
            "/api/v1/watch/namespaces/a/secrets?watch=1",
        ] {
            assert!(reads_secrets(p), "{p}");
        }
        for p in [
            "api/v1/namespaces/secrets/configmaps",
            "apis/apps/v1/deployments",
            "api/v1/configmaps",
        ] {
            assert!(!reads_secrets(p), "{p}");
        }
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h).as_deref(), Some("websocket"));
    }
}
