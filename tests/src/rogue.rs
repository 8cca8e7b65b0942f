//! Hand-made gRPC clients for the security suite: callers that present the credential of
//! one cluster while claiming another, send garbage, or try their luck at joining.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tether_common::pb::agent_service_client::AgentServiceClient;
use tether_common::tls::{self, ChannelOptions};
use tonic::transport::Channel;

/// An agent's stored credential.
#[derive(Debug, Clone)]
pub struct Cred {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl Cred {
    /// Reads `STATE_DIR/credential.json`.
    pub fn load(state_dir: &Path) -> Cred {
        let v: Value = serde_json::from_slice(
            &std::fs::read(state_dir.join("credential.json")).unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Cred {
            ca: s("caPem"),
            cert: s("certPem"),
            key: s("keyPem"),
        }
    }
}

/// A current-thread runtime for driving async clients from a sync test.
pub fn runtime() -> tokio::runtime::Runtime {
    tls::install_default_provider();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a runtime: {e}"),
    }
}

/// A mutual-TLS channel with `cred`.
pub async fn mtls(addr: &str, cred: &Cred) -> Result<Channel, String> {
    let config =
        tls::mtls_client_config(&cred.ca, &cred.cert, &cred.key).map_err(|e| e.to_string())?;
    tls::connect(addr, Arc::new(config), &ChannelOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// A channel that knows only the CA pin (as a joining agent).
pub async fn pinned(addr: &str, pin: &str) -> Result<Channel, String> {
    let config = tls::pinned_client_config(pin).map_err(|e| e.to_string())?;
    tls::connect(addr, Arc::new(config), &ChannelOptions::default())
        .await
        .map_err(|e| e.to_string())
}

pub fn agent_client(channel: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel).max_decoding_message_size(64 << 20)
}
