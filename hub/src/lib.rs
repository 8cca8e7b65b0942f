//! `tether-hub`: the hub server.
//!
//! The hub is built in layers, each a folder, each importing only the ones below it:
//!
//! - [`api`] — the edges: the one TLS port ([`api::server`]), the gRPC services for agents
//!   ([`api::agent`]) and clients ([`api::client`]), the Kubernetes proxy ([`api::proxy`]).
//!   The only place `pb::` types appear.
//! - [`control`] — the operations: tokens, joins, clusters, users, teams, workloads, and the
//!   scheduler, which owns every placement decision. No transport types.
//! - [`sessions`] — live agent streams, the delivery hints sent on them, and which
//!   certificates are accepted.
//! - [`store`] — the durable records (redb behind the `Store` trait, group commit).
//!
//! Beside them: [`hub`] builds the layers and runs the ports (start reading there), [`cli`] is
//! the `tether-hub` command, [`admin`] the commands that work on a data directory (init,
//! backup, restore, CA rotation), [`metrics`] what every layer counts.

pub mod admin;
pub mod api;
pub mod cli;
pub mod control;
pub mod hub;
pub mod metrics;
pub mod sessions;
pub mod store;

#[cfg(test)]
mod hostile_input;
