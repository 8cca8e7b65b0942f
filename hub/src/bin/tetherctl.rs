//! `tetherctl`: see `tether_hub::ctl`.

fn main() -> std::process::ExitCode {
    tether_hub::ctl::run(tether_common::args::parse::<tether_hub::ctl::Cli>())
}
