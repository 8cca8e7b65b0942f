//! `tetherctl`: see the library ([`tetherctl::run`]).

fn main() -> std::process::ExitCode {
    tetherctl::run(tether_common::args::parse::<tetherctl::Cli>())
}
