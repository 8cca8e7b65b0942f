//! The edges: everything a peer talks to, and the only place the generated `pb::` types
//! appear. Each edge authenticates (the identity comes from the verified certificate),
//! authorizes, converts to domain types and calls [`crate::control`].
//!
//! [`server`] accepts connections on the TLS port and routes requests; [`agent`] serves
//! `tether.v1.AgentService` (join, renew, the session stream, proxy streams); [`client`]
//! serves `tether.v1.HubApiService`; [`proxy`] serves `/clusters/NAME/...`; [`tls_auth`] verifies
//! client certificates during the handshake; [`relay`] hands connections to the serving
//! hub while this one does not serve (etcd), and [`forward`] carries its agents' requests
//! there; [`state`] is what they all serve from (the
//! operations' components, built by [`crate::hub`]).

pub mod agent;
pub mod client;
pub mod forward;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod state;
pub mod tls_auth;
