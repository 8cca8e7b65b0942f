//! The load generator and benchmark suite behind `tether-loadgen`.
//!
//! - [`fleet`]: N simulated member clusters in one process, each a real agent session (its
//!   own key and certificate from a real join, mutual TLS, the agent's session code) whose
//!   applier keeps desired state in memory and times every receipt.
//! - [`mqtt`], [`etcd`]: the baselines (Mosquitto and etcd, from Debian packages).
//! - [`procs`]: what a process costs, from `/proc`.
//! - [`stats`]: percentiles over repeated runs.
//! - [`bench`]: the scenarios `./scripts/bench` runs; [`markdown`]: `docs/benchmarks.md`.

pub mod bench;
pub mod etcd;
pub mod fleet;
pub mod markdown;
pub mod mqtt;
pub mod placement;
pub mod procs;
pub mod stats;
pub mod stores;
