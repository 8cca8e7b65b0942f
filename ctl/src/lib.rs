//! `tetherctl`: the hub's command-line client.
//!
//! [`Cli`] declares every command; [`run`] loads the config, connects and dispatches to the
//! command modules ([`clusters`], [`tokens`]). Output goes through [`output`].

mod clusters;
pub mod output;
mod rollouts;
mod teams;
mod tokens;
mod users;
pub mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether_common::pb;

use self::output::Format;
use tether_client::ClientConfig;
pub use tether_client::Error as CtlError;
use tether_client::connect as client;
pub use tether_client::{EXIT_RUNTIME, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "tetherctl",
    version,
    about = "Manage member clusters and their desired state through a Tether hub"
)]
pub struct Cli {
    /// Config file [default: $TETHER_CONFIG, then ~/.tether/config.yaml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join tokens for new member clusters.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Member clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create or update workloads from Workload files (a file, a directory of them, or - for
    /// standard input: `kustomize build DIR | tetherctl apply -f -`).
    Apply {
        #[arg(
            short = 'f',
            long = "filename",
            required = true,
            value_name = "FILE|DIR|-"
        )]
        files: Vec<PathBuf>,
        /// The team that owns the workloads (its namespaces and cluster sets bound them).
        #[arg(long, default_value = "")]
        team: String,
    },
    /// Build a Workload from plain manifests (a folder, a file or standard input).
    #[command(subcommand)]
    Workload(WorkloadCommand),
    /// Show workloads (`get workloads`), one workload (`get workload NAME`) or clusters.
    Get {
        /// workloads | workload | clusters | cluster
        resource: String,
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Per-cluster status of a workload.
    Status {
        name: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Wait until a workload is available on every cluster it is placed on.
    Wait {
        name: String,
        /// `available`: every placed cluster runs the current revision and is Available
        /// (fails at once if its rollout halted); `available=any`: every placed cluster is
        /// Available on whatever revision it runs (a rollout may still be under way).
        #[arg(long = "for", default_value = "available")]
        condition: String,
        #[arg(long, default_value = "5m", value_parser = tether_common::time::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Delete a workload (`delete workload NAME`).
    Delete { resource: String, name: String },
    /// Write a kubeconfig that reaches a member cluster's Kubernetes API through the hub.
    Kubeconfig {
        name: String,
        /// Write it here (0600) instead of printing it.
        #[arg(short = 'o', long = "output-file", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// API users and their roles.
    #[command(subcommand)]
    User(UserCommand),
    /// Teams: members, the namespaces they own, their roles per cluster set.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Cluster sets: named label selectors over clusters, granted to teams.
    #[command(subcommand, name = "clusterset")]
    ClusterSet(ClusterSetCommand),
    /// Rollouts of new revisions: status, history, pause, resume, undo.
    ///
    /// `status` watches until the rollout is Complete (exit 0) or Halted (exit 1), as
    /// `kubectl rollout status` does; `--watch=false` (the default with `-o json|yaml`)
    /// prints the current state once. A pause holds across new revisions until `resume`.
    Rollout {
        /// status | history | pause | resume | undo
        action: String,
        name: String,
        /// For undo: the revision to go back to (see `rollout history`) [default: the one
        /// before the current].
        #[arg(long)]
        to_revision: Option<u64>,
        /// For status: keep watching until Complete or Halted.
        #[arg(short, long, num_args = 0..=1, default_missing_value = "true")]
        watch: Option<bool>,
        /// For status --watch: give up (exit 1) after this long.
        #[arg(long, default_value = "10m", value_parser = tether_common::time::parse_duration)]
        timeout: std::time::Duration,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Scheduling decisions: placements, replacements, waves, halts.
    Events {
        /// Only this workload's.
        #[arg(long)]
        workload: Option<String>,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show the audit log of mutating calls.
    Audit {
        /// Only entries newer than this (e.g. 1h).
        #[arg(long, value_parser = tether_common::time::parse_duration)]
        since: Option<std::time::Duration>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show who the hub thinks you are.
    Whoami {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print the agent command that uses it.
    Create {
        /// The name the new member cluster will have.
        #[arg(long)]
        cluster: String,
        /// Labels the cluster gets when it joins: k=v,k2=v2.
        #[arg(long, default_value = "")]
        labels: String,
        /// How long the token is valid [default: the hub's, 1h unless configured].
        #[arg(long, value_parser = tether_common::time::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Allow more than one join with this token (re-installs of the same cluster).
        #[arg(long)]
        reusable: bool,
        /// Label keys the agent may ask for itself with its --labels (k1,k2). None by
        /// default: labels decide which workloads a cluster receives.
        #[arg(long, value_delimiter = ',')]
        allow_labels: Vec<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List join tokens (secrets are never shown again).
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Revoke a join token so no further cluster can join with it.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Create (or update) a workload from ordinary manifests: a directory, a file, or - for
    /// standard input (`helm template CHART | tetherctl workload create NAME --from -`).
    Create {
        name: String,
        #[arg(long, value_name = "DIR|FILE|-")]
        from: PathBuf,
        /// Place on clusters matching this label selector (k=v,k2 in (a,b),...).
        #[arg(long)]
        selector: Option<String>,
        /// Place on this cluster (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// The team that owns the workload.
        #[arg(long, default_value = "")]
        team: String,
        /// Print the Workload instead of applying it.
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team that owns these namespaces.
    Create {
        name: String,
        /// Namespaces the team's workloads may use: a,b.
        #[arg(long, value_delimiter = ',')]
        namespaces: Vec<String>,
    },
    /// Add users to a team.
    AddMember {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    RemoveMember {
        name: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Give a team namespaces (or take them with --remove).
    Namespaces {
        name: String,
        #[arg(required = true, value_delimiter = ',')]
        namespaces: Vec<String>,
        #[arg(long)]
        remove: bool,
    },
    /// Grant a team a role on a cluster set (replaces its grant there).
    Grant {
        name: String,
        #[arg(long = "clusterset")]
        cluster_set: String,
        /// viewer or operator.
        #[arg(long)]
        role: String,
        /// Its workloads may hold cluster-scoped objects (CRDs, ClusterRoles) there.
        #[arg(long)]
        cluster_scoped: bool,
    },
    /// Take a team's grant on a cluster set away.
    Revoke {
        name: String,
        #[arg(long = "clusterset")]
        cluster_set: String,
    },
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterSetCommand {
    /// Create a cluster set from a label selector (k=v,k2 in (a,b),...).
    Create {
        name: String,
        #[arg(long)]
        selector: String,
    },
    /// Give a cluster set a new selector (grants on it stay).
    Update {
        name: String,
        #[arg(long)]
        selector: String,
    },
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Issue a credential for a new user (the key is made here; only a CSR goes to the hub).
    Create {
        name: String,
        #[arg(long)]
        role: String,
        /// Certificate lifetime [default: 365d].
        #[arg(long, value_parser = tether_common::time::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Write the user's tetherctl config here (0600) instead of printing it.
        #[arg(short = 'o', long = "output-file", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Remove a user: their certificate stops working at once.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List member clusters.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show one member cluster.
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Set (k=v) or remove (k-) labels.
    Label {
        name: String,
        #[arg(required = true, value_name = "k=v|k-")]
        changes: Vec<String>,
        /// Allow changing a label's value (workloads may move at once), as kubectl.
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove a member cluster: revokes its certificate and closes its live stream. What it
    /// runs stays on the member unless --cleanup.
    Remove {
        name: String,
        /// First have its agent remove every workload it applied, then forget the cluster
        /// (the agent must be connected).
        #[arg(long)]
        cleanup: bool,
        /// With --cleanup: give up after this long (the cluster stays, being removed; run
        /// again, or without --cleanup to forget it and leave its objects).
        #[arg(long, default_value = "5m", value_parser = tether_common::time::parse_duration)]
        timeout: std::time::Duration,
    },
    /// No new placements on this cluster (what runs there stays).
    Cordon {
        name: String,
    },
    Uncordon {
        name: String,
    },
    /// Add (key=value:NoSchedule) or remove (key-) taints.
    Taint {
        name: String,
        #[arg(required = true, value_name = "key=value:NoSchedule|key-")]
        taints: Vec<String>,
    },
}

/// The plugin name kubectl looks for on PATH: `kubectl tether ...` runs it.
pub const KUBECTL_PLUGIN: &str = "kubectl-tether";

/// How the user invoked this binary, for help and usage lines: `kubectl tether` when kubectl
/// runs it as its plugin (the `kubectl-tether` binary, or a link to tetherctl of that name),
/// `tetherctl` otherwise.
pub fn invoked_as(argv0: Option<&std::ffi::OsStr>) -> &'static str {
    let stem = argv0
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_stem);
    if stem.is_some_and(|s| s == KUBECTL_PLUGIN) {
        "kubectl tether"
    } else {
        "tetherctl"
    }
}

/// Exit codes: 0 success, 1 runtime failure, 2 usage error.
pub fn run(cli: Cli) -> ExitCode {
    tether_common::tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(out) => {
            print!("{}", tether_common::text::terminal_safe(&out));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", tether_common::text::terminal_safe(&e.message));
            ExitCode::from(e.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<String, CtlError> {
    // Local inputs (files, standard input) are read and checked once, before the config or
    // the hub is needed, so a mistake in them is a usage error that sends nothing.
    let local = match &cli.command {
        Command::Apply { files, .. } => workloads::load_workloads(files)?,
        Command::Workload(WorkloadCommand::Create {
            name,
            from,
            selector,
            clusters,
            output,
            ..
        }) => {
            let w = workloads::workload_from_manifests(name, from, selector.as_deref(), clusters)?;
            if let Some(f) = output {
                return Ok(output::structured(&w, *f));
            }
            vec![w]
        }
        _ => Vec::new(),
    };
    let path = ClientConfig::resolve_path(cli.config.as_deref());
    let config = ClientConfig::load(&path).map_err(|e| CtlError::runtime(e.to_string()))?;
    let mut api = client::connect(&config).await?;
    let hub = config.hub.clone();
    let fail = move |s: tonic::Status| client::status_error(&hub, s);
    match cli.command {
        Command::Token(cmd) => tokens::run(&mut api, cmd, &config)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Cluster(cmd) => clusters::run(&mut api, cmd)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Apply { team, .. } | Command::Workload(WorkloadCommand::Create { team, .. }) => {
            workloads::apply(&mut api, &local, &team)
                .await
                .map_err(|e| e.or_status(&fail))
        }
        Command::Get {
            resource,
            name,
            output,
        } => {
            let r = match (resource.as_str(), name) {
                ("workloads" | "workload" | "wl", None) => workloads::list(&mut api, output).await,
                ("workloads" | "workload" | "wl", Some(n)) => {
                    workloads::get(&mut api, &n, output).await
                }
                ("clusters" | "cluster", None) => {
                    clusters::run(&mut api, ClusterCommand::List { output }).await
                }
                ("clusters" | "cluster", Some(name)) => {
                    clusters::run(&mut api, ClusterCommand::Get { name, output }).await
                }
                (other, _) => Err(CtlError::usage(format!(
                    "unknown resource {other:?} (use workloads or clusters)"
                ))
                .into()),
            };
            r.map_err(|e| e.or_status(&fail))
        }
        Command::User(UserCommand::Create {
            name,
            role,
            ttl,
            output,
        }) => users::create(&mut api, &config, &name, &role, ttl, output)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Team(cmd) => teams::team(&mut api, cmd)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::ClusterSet(cmd) => teams::cluster_set(&mut api, cmd)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::User(UserCommand::List { output }) => users::list(&mut api, output)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::User(UserCommand::Remove { name }) => users::remove(&mut api, &name)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Kubeconfig { name, output } => {
            clusters::kubeconfig(&mut api, &config, &name, output)
                .await
                .map_err(|e| e.or_status(&fail))
        }
        Command::Rollout {
            action,
            name,
            to_revision,
            watch,
            timeout,
            output,
        } => {
            let opts = rollouts::Options {
                to_revision,
                watch: watch.unwrap_or(output == Format::Table),
                timeout,
                format: output,
            };
            rollouts::rollout(&mut api, &action, &name, opts)
                .await
                .map_err(|e| e.or_status(&fail))
        }
        Command::Events {
            workload,
            follow,
            output,
        } => rollouts::events(&mut api, workload.as_deref(), follow, output)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Audit { since, output } => users::audit(&mut api, since, output)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Status { name, output } => workloads::status(&mut api, &name, output)
            .await
            .map_err(|e| e.or_status(&fail)),
        Command::Wait {
            name,
            condition,
            timeout,
        } => {
            let any = match condition.as_str() {
                "available" | "available=current" => false,
                "available=any" => true,
                _ => {
                    return Err(CtlError::usage(format!(
                        "--for {condition:?} is not supported (use --for available or --for available=any)"
                    )));
                }
            };
            workloads::wait(&mut api, &name, timeout, any)
                .await
                .map_err(|e| e.or_status(&fail))
        }
        Command::Delete { resource, name } => match resource.as_str() {
            "workload" | "workloads" | "wl" => workloads::delete(&mut api, &name)
                .await
                .map_err(|e| e.or_status(&fail)),
            other => Err(CtlError::usage(format!(
                "unknown resource {other:?} (use: delete workload NAME)"
            ))),
        },
        Command::Whoami { output } => {
            let me = api
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(&fail)?
                .into_inner();
            Ok(match output {
                Format::Table => format!(
                    "user {} (role {}{}) at {}\n",
                    me.user,
                    me.role,
                    if me.teams.is_empty() {
                        String::new()
                    } else {
                        format!("; teams {}", me.teams.join(", "))
                    },
                    config.hub
                ),
                f => output::structured(
                    &serde_json::json!({ "user": me.user, "role": me.role, "teams": me.teams, "hub": config.hub }),
                    f,
                ),
            })
        }
    }
}

/// The object a response wraps. A hub that sends none is not the release this tetherctl
/// speaks (the client API is versioned with the hub until it is frozen as v1).
pub(crate) fn required<T>(v: Option<T>, what: &str) -> Result<T, CtlError> {
    v.ok_or_else(|| {
        CtlError::runtime(format!(
            "the hub's answer holds no {what}: is the hub the same Tether release as this tetherctl?"
        ))
    })
}

/// A command's failure before mapping: a gRPC status or a ready message.
pub(crate) enum Failure {
    Status(tonic::Status),
    Ctl(CtlError),
}

impl Failure {
    fn or_status(self, f: &dyn Fn(tonic::Status) -> CtlError) -> CtlError {
        match self {
            Failure::Status(s) => f(s),
            Failure::Ctl(e) => e,
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

impl From<CtlError> for Failure {
    fn from(e: CtlError) -> Self {
        Failure::Ctl(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn kubectl_plugin_names_are_recognised_by_the_file_name_only() {
        let plugin = [
            "kubectl-tether",
            "/usr/local/bin/kubectl-tether",
            "./kubectl-tether.exe",
        ];
        for argv0 in plugin {
            assert_eq!(
                invoked_as(Some(OsStr::new(argv0))),
                "kubectl tether",
                "{argv0}"
            );
        }
        let own = [
            "tetherctl",
            "/opt/kubectl-tether/tetherctl",
            "kubectl-tether-x",
        ];
        for argv0 in own {
            assert_eq!(invoked_as(Some(OsStr::new(argv0))), "tetherctl", "{argv0}");
        }
        assert_eq!(invoked_as(None), "tetherctl");
    }
}
