//! Command-line parsing with the project's error contract: a usage error is one line on
//! stderr and exit code 2 (clap's own output adds a blank line and a hint); `--help` and
//! `--version` print as usual.

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the process arguments into `T`, or exits: 0 after help or version, 2 with one
/// line naming the problem otherwise.
pub fn parse<T: Parser>() -> T {
    exit_on_error(T::try_parse())
}

/// [`parse`], with help and usage lines naming the program `bin_name` (`kubectl tether` when
/// kubectl runs the binary as its plugin).
pub fn parse_as<T: Parser>(bin_name: &'static str) -> T {
    let parsed = T::command()
        .bin_name(bin_name)
        .try_get_matches()
        .and_then(|m| T::from_arg_matches(&m));
    exit_on_error(parsed)
}

fn exit_on_error<T>(parsed: Result<T, clap::Error>) -> T {
    match parsed {
        Ok(t) => t,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", one_line(&e.to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// The first non-empty line of clap's message, with the usage hint where clap gives one.
fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim_end)
        .find(|l| !l.is_empty())
        .unwrap_or("error: invalid arguments");
    let usage = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|u| format!(" (usage: {u})"))
        .unwrap_or_default();
    format!("{first}{usage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clap_error_becomes_one_line_with_the_usage() {
        let msg = "error: the argument '--config <CONFIG>' cannot be used with '--data-dir <DATA_DIR>'\n\nUsage: tether-hub backup --to <FILE> --config <CONFIG>\n\nFor more information, try '--help'.\n";
        let line = one_line(msg);
        assert_eq!(
            line,
            "error: the argument '--config <CONFIG>' cannot be used with '--data-dir <DATA_DIR>' (usage: tether-hub backup --to <FILE> --config <CONFIG>)"
        );
        assert!(!line.contains('\n'));
    }
}
