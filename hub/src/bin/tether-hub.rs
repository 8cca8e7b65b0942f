//! `tether-hub`: see `tether_hub::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tether_hub::cli::run(tether_hub::cli::Cli::parse())
}
