//! `tether-tests`: what the end-to-end suites need.
//!
//! - [`harness`]: starting real `tether-hub`, `tether-agent` and emulator processes, and
//!   polling them with deadlines.
//! - [`real`]: real Kubernetes control planes (`scripts/real-cluster`) as member clusters.
//! - [`etcd`]: real etcd clusters (mTLS) for hubs on etcd.
//! - [`crashloop`]: the writes-across-`kill -9` loop both stores are held to.

pub mod crashloop;
pub mod etcd;
pub mod harness;
pub mod loadgen;
pub mod netns;
pub mod real;
pub mod rogue;
