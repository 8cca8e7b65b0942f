//! `tether-agent`: see `tether_agent::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tether_agent::cli::run(tether_agent::cli::Cli::parse())
}
