//! `tether-hub`: see `tether_hub::cli`.

fn main() -> std::process::ExitCode {
    tether_hub::cli::run(tether_common::args::parse::<tether_hub::cli::Cli>())
}
