//! `tetherctl` (and `kubectl tether`, the same program as kubectl's plugin): see the library
//! ([`tetherctl::run`]).

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next();
    let name = tetherctl::invoked_as(argv0.as_deref());
    tetherctl::run(tether_common::args::parse_as::<tetherctl::Cli>(name))
}
