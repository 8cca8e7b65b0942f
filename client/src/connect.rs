//! A connection to the hub's client API with the user's credential, and how its errors read.

use std::sync::Arc;

use tether_common::pb::hub_api_service_client::HubApiServiceClient;
use tether_common::tls::{self, ChannelOptions};
use tonic::transport::Channel;

use crate::config::ClientConfig;
use crate::{EXIT_RUNTIME, EXIT_USAGE, Error as CtlError};

pub async fn connect(config: &ClientConfig) -> Result<HubApiServiceClient<Channel>, CtlError> {
    let tls_config = tls::mtls_client_config(&config.ca, &config.cert, &config.key)
        .map_err(|e| CtlError::runtime(format!("invalid credential in config: {e}")))?;
    // `hub:` may list several hubs on one etcd (comma-separated): the first that answers.
    let addrs = tls::hub_addresses(&config.hub).map_err(|e| CtlError::runtime(e.to_string()))?;
    let (channel, _) =
        tls::connect_first(&addrs, 0, Arc::new(tls_config), &ChannelOptions::default())
            .await
            .map_err(|e| CtlError::runtime(e.to_string()))?;
    // Workload bundles can be large; the hub enforces its own limits.
    Ok(HubApiServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

/// One line for a failed call, and the exit code that goes with it.
pub fn status_error(hub: &str, status: tonic::Status) -> CtlError {
    use tonic::Code;
    let code = match status.code() {
        Code::InvalidArgument => EXIT_USAGE,
        _ => EXIT_RUNTIME,
    };
    let detail = tls::status_detail(&status);
    let message = match status.code() {
        Code::Unavailable | Code::Unknown
            if status.message().contains("transport") || status.message().is_empty() =>
        {
            format!("cannot reach hub at {hub}: {}", tls::root_cause(&status))
        }
        Code::Unauthenticated => format!("the hub refused the credential: {detail}"),
        Code::PermissionDenied => format!("permission denied: {detail}"),
        _ => detail,
    };
    CtlError { message, code }
}
