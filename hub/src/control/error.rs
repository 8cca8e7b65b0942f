//! Errors of the hub's operations, and how each reaches a gRPC caller.

use tether_common::pki::PkiError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{kind} {name:?} not found{hint}")]
    NotFound {
        kind: &'static str,
        name: String,
        hint: &'static str,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Try again: the hub is starting or stopping.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl HubError {
    pub fn cluster_not_found(name: &str) -> Self {
        HubError::NotFound {
            kind: "cluster",
            name: name.to_string(),
            hint: " (see: tetherctl cluster list)",
        }
    }

    pub fn token_not_found(id: &str) -> Self {
        HubError::NotFound {
            kind: "token",
            name: id.to_string(),
            hint: " (see: tetherctl token list)",
        }
    }
}

impl From<HubError> for tonic::Status {
    fn from(e: HubError) -> Self {
        let msg = e.to_string();
        match e {
            HubError::NotFound { .. } => tonic::Status::not_found(msg),
            HubError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            HubError::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            HubError::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            HubError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            HubError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            HubError::Unavailable(_) => tonic::Status::unavailable(msg),
            HubError::Store(_) | HubError::Pki(_) => {
                tracing::error!(error = %msg, "internal error");
                tonic::Status::internal(msg)
            }
        }
    }
}
