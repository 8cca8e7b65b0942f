//! `tether-tests`: what the end-to-end suites need.
//!
//! - [`emulator`]: the Kubernetes API emulator behind `tether-kube-emulator`.
//! - [`harness`]: starting real `tether-hub`, `tether-agent` and emulator processes, and
//!   polling them with deadlines.

pub mod emulator;
pub mod harness;
pub mod loadgen;
pub mod netns;
pub mod rogue;
