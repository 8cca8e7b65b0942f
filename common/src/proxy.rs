//! What both ends of the Kubernetes API proxy agree on: the frames of a `Proxy` stream and
//! the headers that describe one HTTP hop rather than the message.

use crate::pb::{self, proxy_request};

/// Headers that belong to one connection, never copied from one hop to the next.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// Whether `name` is hop-by-hop (any case).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str())
}

/// Wraps one frame.
pub fn frame(f: proxy_request::Frame) -> pb::ProxyRequest {
    pb::ProxyRequest { frame: Some(f) }
}

/// Bytes of an upgraded connection carried in one Data frame at most.
pub const TUNNEL_CHUNK: usize = 32 << 10;
