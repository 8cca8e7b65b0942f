//! Commands that work on a data directory rather than a running hub: its layout and lock
//! ([`datadir`]), `init`, `backup`/`restore`/`compact` ([`backup`]), CA rotation
//! ([`rotation`]), moving onto etcd ([`migrate`]).

pub mod backup;
pub mod datadir;
pub mod init;
pub mod migrate;
pub mod rotation;
