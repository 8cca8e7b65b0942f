//! The agent's half of the Kubernetes API proxy: when the hub asks (`ProxyOpen`), open a
//! `Proxy` stream, perform the request against the local API server and stream the response
//! back. If the hub drops the stream (its client went away) the member request is cancelled.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tether_common::pb::{self, proxy_frame};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A response body that streams.
pub type ResponseBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Where proxied requests go: the member cluster's API server.
pub trait Forward: Send + Sync + 'static {
    fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<http::Response<ResponseBody>, String>>;
}

/// [`Forward`] through the agent's kube client (its base URL and credentials).
pub struct KubeForward(pub kube::Client);

impl Forward for KubeForward {
    fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> BoxFuture<'_, Result<http::Response<ResponseBody>, String>> {
        Box::pin(async move {
            let resp = self
                .0
                .send(req.map(kube::client::Body::from))
                .await
                .map_err(|e| format!("the member API server did not answer: {e}"))?;
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

fn frame(f: proxy_frame::Frame) -> pb::ProxyFrame {
    pb::ProxyFrame { frame: Some(f) }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// Serves one proxied request.
pub async fn serve(channel: Channel, forward: Arc<dyn Forward>, request_id: u64) {
    let (tx, rx) = mpsc::channel(8);
    if tx
        .send(frame(proxy_frame::Frame::Start(pb::ProxyStart {
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
        Ok(Some(pb::ProxyFrame {
            frame: Some(proxy_frame::Frame::Request(r)),
        })) => r,
        _ => return,
    };
    let mut body = Vec::new();
    loop {
        match inbound.message().await {
            Ok(Some(pb::ProxyFrame {
                frame: Some(proxy_frame::Frame::Data(d)),
            })) => {
                if body.len() + d.len() > MAX_BODY {
                    let _ = tx
                        .send(frame(proxy_frame::Frame::Error(
                            "request body too large".into(),
                        )))
                        .await;
                    return;
                }
                body.extend_from_slice(&d);
            }
            Ok(Some(pb::ProxyFrame {
                frame: Some(proxy_frame::Frame::End(_)),
            })) => break,
            _ => return,
        }
    }
    let mut req = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.path.as_str());
    for h in &request.headers {
        let name = h.name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str())
            || name == "authorization"
            || name.starts_with("impersonate-")
        {
            continue;
        }
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    if !request.impersonate_user.is_empty() {
        req = req.header("Impersonate-User", request.impersonate_user.as_str());
        for g in &request.impersonate_groups {
            req = req.header("Impersonate-Group", g.as_str());
        }
    }
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx
                .send(frame(proxy_frame::Frame::Error(format!(
                    "invalid request: {e}"
                ))))
                .await;
            return;
        }
    };
    // The hub hanging up cancels the member request: every wait below races it.
    let hub_gone = async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    };
    tokio::pin!(hub_gone);
    let response = tokio::select! {
        r = forward.send(req) => r,
        _ = &mut hub_gone => return,
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(frame(proxy_frame::Frame::Error(e))).await;
            let _ = tokio::time::timeout(LINGER, hub_gone).await;
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
        .filter_map(|(n, v)| {
            v.to_str().ok().map(|v| pb::HttpHeader {
                name: n.to_string(),
                value: v.to_string(),
            })
        })
        .collect();
    let head = frame(proxy_frame::Frame::Response(pb::ProxyResponse {
        status: u32::from(parts.status.as_u16()),
        headers,
    }));
    if tx.send(head).await.is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            f = body.frame() => f,
            _ = &mut hub_gone => return,
        };
        match next {
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                for chunk in data.chunks(CHUNK) {
                    tokio::select! {
                        r = tx.send(frame(proxy_frame::Frame::Data(chunk.to_vec()))) => if r.is_err() { return },
                        _ = &mut hub_gone => return,
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx
                    .send(frame(proxy_frame::Frame::Error(e.to_string())))
                    .await;
                let _ = tokio::time::timeout(LINGER, hub_gone).await;
                return;
            }
            None => break,
        }
    }
    let _ = tx
        .send(frame(proxy_frame::Frame::End(pb::ProxyEnd {})))
        .await;
    // Dropping the call now would reset the HTTP/2 stream and could discard frames the hub
    // has not read yet: wait for the hub to finish with it.
    let _ = tokio::time::timeout(LINGER, hub_gone).await;
}

/// How long the agent keeps a finished stream open for the hub to read its end.
const LINGER: std::time::Duration = std::time::Duration::from_secs(30);
