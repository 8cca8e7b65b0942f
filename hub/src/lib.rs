//! `tether-hub`: the hub server and the `tetherctl` client.
//!
//! Where to start reading: [`hub`] opens the state and runs the ports; [`server`] is the one
//! TLS port; [`agent_api`] and [`client_api`] are the gRPC edges, which call the operations in
//! [`joins`], [`clusters`] and [`tokens`]; [`sessions`] holds live agent streams; [`store`] and
//! [`records`] are the durable state; [`access`] and [`tls_auth`] decide who gets in.

pub mod access;
pub mod agent_api;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod client_api;
pub mod clusters;

pub mod datadir;
pub mod delivery;
pub mod error;
pub mod hub;
pub mod init;
pub mod joins;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod records;
pub mod rotation;
pub mod scheduler;
pub mod server;
pub mod sessions;
pub mod store;
pub mod teams;
pub mod tenancy;
pub mod tls_auth;
pub mod tokens;
pub mod users;
pub mod workloads;

#[cfg(test)]
mod hostile_input;
