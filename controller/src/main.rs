//! `tether-controller`: see the library ([`tether_controller`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_client::ClientConfig;
use tether_common::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "tether-controller",
    version,
    about = "Apply Workload custom resources from a Kubernetes cluster to a Tether hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch Workload resources and keep the hub and their status in step.
    Run {
        /// The hub user's config (tetherctl's format) [default: $TETHER_CONFIG, then
        /// ~/.tether/config.yaml]. The user needs the operator role (or a team's).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kubeconfig of the cluster holding the resources [default: $KUBECONFIG,
        /// ~/.kube/config, or the pod's service account].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The team that owns the workloads applied (its namespaces and cluster sets bound them).
        #[arg(long, default_value = "")]
        team: String,
        /// How often the hub's status is read back while a workload is not Available (five
        /// times slower once it is).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        status_interval: Duration,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Print the CustomResourceDefinitions (YAML), or write one file each into a folder.
    Crd {
        /// Write workloads.tether.dev.yaml and clustersets.tether.dev.yaml here.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = tether_common::args::parse::<Cli>();
    match cli.command {
        Command::Crd { out_dir } => {
            for (file, crd) in tether_controller::crd::definitions() {
                let yaml = match serde_saphyr::to_string(&crd) {
                    Ok(y) => y,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                };
                match &out_dir {
                    Some(dir) => {
                        let path = dir.join(file);
                        if let Err(e) = std::fs::write(&path, yaml) {
                            eprintln!("error: cannot write {}: {e}", path.display());
                            return ExitCode::from(1);
                        }
                    }
                    None => print!("---\n{yaml}"),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            kubeconfig,
            team,
            status_interval,
            log_format,
        } => {
            telemetry::init(log_format, "info");
            tether_common::tls::install_default_provider();
            let path = ClientConfig::resolve_path(config.as_deref());
            let config = match ClientConfig::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let opts = tether_controller::reconcile::Options {
                team,
                status_interval,
            };
            match runtime.block_on(tether_controller::reconcile::run(config, kubeconfig, opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
