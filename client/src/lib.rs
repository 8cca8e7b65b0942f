//! `tether-client`: what every program that talks to a hub's client API needs — `tetherctl`,
//! the load generator, the tests, and `tether-hub backup` — without the hub's server stack.
//!
//! [`config`] is the credential file (`admin.yaml`, `~/.tether/config.yaml`); [`connect`]
//! opens the mutual-TLS channel and turns a failed call into one line and an exit code
//! ([`Error`]).

pub mod config;
pub mod connect;

pub use config::ClientConfig;
pub use connect::{connect, status_error};

/// Exit codes of the command-line programs built on this crate.
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// A failed command: one line and an exit code.
#[derive(Debug)]
pub struct Error {
    pub message: String,
    pub code: u8,
}

impl Error {
    pub fn runtime(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: EXIT_RUNTIME,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
