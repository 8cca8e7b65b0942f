//! `kubectl-tether`: tetherctl under the name kubectl runs as its `tether` plugin, so
//! `kubectl tether get clusters` works once this binary is on PATH.

fn main() -> std::process::ExitCode {
    tetherctl::run(tether_common::args::parse_as::<tetherctl::Cli>(
        "kubectl tether",
    ))
}
