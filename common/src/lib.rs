//! `tether-common`: what the hub, the agent and the tests share.
//!
//! Start with [`pb`] (the generated protocol, used only at the gRPC edge), then
//! [`identity`] and [`pki`] (who a peer is and how its certificate says so), then [`tls`]
//! (the rustls configurations both sides build from them).

pub mod args;
pub mod files;
pub mod identity;
pub mod labels;
pub mod limits;
pub mod pb;
pub mod pki;
#[cfg(feature = "probes")]
pub mod probes;
pub mod proxy;
pub mod signal;
pub mod telemetry;
pub mod text;
pub mod time;
pub mod tls;
pub mod token;
pub mod workload;

#[cfg(test)]
mod hostile_input;

/// The version every Tether binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
