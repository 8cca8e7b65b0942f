//! `tetherctl`: see `tether_hub::ctl`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tether_hub::ctl::run(tether_hub::ctl::Cli::parse())
}
