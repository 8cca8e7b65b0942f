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
