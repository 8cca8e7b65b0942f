//! `tether-agent`: see `tether_agent::cli`.

fn main() -> std::process::ExitCode {
    tether_agent::cli::run(tether_common::args::parse::<tether_agent::cli::Cli>())
}
