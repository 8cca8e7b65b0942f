//! `tether-agent`: connects a member cluster to its hub.
//!
//! Start at [`cli`] (start-up: credential, join, then the session loop). The stages:
//! [`join`] and [`renew`] obtain and refresh the credential kept by [`credentials`];
//! [`session`] holds the control stream; [`facts`] reads what the cluster is; [`leader`]
//! elects one agent of several (a DaemonSet) to do all of it; [`metrics`] exports what it does.

pub mod apply;
pub mod cli;
pub mod credentials;
pub mod desired;
pub mod facts;
pub mod health;
pub mod join;
pub mod leader;
pub mod metrics;
pub mod proxy;
pub mod reconcile;
pub mod renew;
pub mod session;
pub mod status;
