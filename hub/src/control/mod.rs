//! The operations: what the hub does, over the store and the live sessions, with no transport
//! types. Start at [`workloads`] (apply, delete, status) and [`scheduler`] (placement,
//! rollouts, failover); then [`joins`], [`clusters`], [`tokens`], [`users`], [`teams`] and
//! [`tenancy`] (who may see and change what), [`audit`]. [`error`] is how an operation fails;
//! [`ratelimit`] bounds what one caller may cost.

pub mod audit;
pub mod clusters;
pub mod error;
pub mod joins;
pub mod ratelimit;
pub mod scheduler;
pub mod teams;
pub mod tenancy;
pub mod tokens;
pub mod users;
pub mod workloads;

/// Serialises the read-modify-write of records that several operations change (clusters,
/// tokens, users, teams): the components that change them hold a clone, nothing else does.
/// Workloads, assignments and bundles need none: the scheduler's task is their only writer.
#[derive(Debug, Clone, Default)]
pub struct RecordLock(std::sync::Arc<tokio::sync::Mutex<()>>);

impl RecordLock {
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// A verified client certificate's facts: who the caller is, as the TLS edge established it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub identity: tether_common::identity::Identity,
    pub serial: String,
    pub not_after: i64,
}
