//! The `tether-agent` command line and start-up: every setting declared once, checked before
//! anything starts (bad input exits 2 with one line), then the agent runs until stopped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tether_common::labels::Labels;
use tether_common::telemetry::{self, LogFormat};
use tether_common::time::{parse_duration, rfc3339};
use tether_common::tls::ChannelOptions;
use tether_common::{pki, tls, token};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::KubeApi;
use crate::credentials::{Credential, CredentialStore};
use crate::desired::DesiredStore;
use crate::leader::{Elector, HoldEnd, LeaseSettings};
use crate::metrics::AgentMetrics;
use crate::reconcile::{self, Reconciler};
use crate::session::{self, Fatal, SessionOptions};
use crate::{join, renew};

const DEFAULT_SECRET: &str = "tether-agent-credential";

#[derive(Debug, Parser)]
#[command(
    name = "tether-agent",
    version,
    about = "The Tether agent: connects a member cluster to its hub"
)]
pub struct Cli {
    /// The hub's address, HOST:PORT (HOST must be in the hub's certificate); several hubs on
    /// one etcd as a comma-separated list, tried in turn.
    #[arg(long, env = "TETHER_HUB")]
    pub hub: String,
    /// Join token from `tetherctl token create`; needed only until the agent has a credential.
    /// Prefer TETHER_TOKEN or --token-file: a flag stays visible in `ps` for the agent's life.
    #[arg(
        long,
        env = "TETHER_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the join token from this file (a mounted Secret, say).
    #[arg(long, env = "TETHER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The hub CA's pin (sha256:...), printed with the token.
    #[arg(long, env = "TETHER_CA_PIN")]
    pub ca_pin: Option<String>,
    /// Kubeconfig for the member cluster [default: in-cluster config, then KUBECONFIG, then ~/.kube/config].
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Keep the credential in this directory (file credential.json, 0600).
    #[arg(long, env = "TETHER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep the credential in this Secret, NAMESPACE/NAME [default when in a pod: POD_NAMESPACE/tether-agent-credential].
    #[arg(long, env = "TETHER_CREDENTIAL_SECRET")]
    pub credential_secret: Option<String>,
    /// Join again with --token even though a credential is stored.
    #[arg(long)]
    pub rejoin: bool,
    /// Namespace of the agent's own Secrets (credential, desired-state cache) [default: POD_NAMESPACE, else tether-system].
    #[arg(long, env = "TETHER_NAMESPACE")]
    pub namespace: Option<String>,
    /// How often applied workloads are checked for drift.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "TETHER_RESYNC_INTERVAL")]
    pub resync_interval: Duration,
    /// How often a workload that is not Available yet is looked at again.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "TETHER_PROGRESS_INTERVAL")]
    pub progress_interval: Duration,
    /// Cap of the reconnect backoff (jitter included).
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "TETHER_RECONNECT_MAX_DELAY")]
    pub reconnect_max_delay: Duration,
    /// How often cluster facts (version, nodes, whether the Kubernetes API answers) are
    /// read and sent when they changed. Health-aware failover reacts no faster than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "TETHER_FACTS_INTERVAL")]
    pub facts_interval: Duration,
    /// Log line format (filter with RUST_LOG).
    #[arg(long, value_enum, default_value = "text", env = "TETHER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Labels this cluster asks for when it joins, k=v,k2=v2 (the token's labels win).
    #[arg(long, env = "TETHER_LABELS", value_parser = parse_labels_arg, default_value = "")]
    pub labels: Labels,
    /// Plain HTTP: /healthz, /readyz and Prometheus /metrics (e.g. 0.0.0.0:9465) [default: off].
    #[arg(long, env = "TETHER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Run only while holding a coordination.k8s.io Lease: of several agents for one cluster
    /// (a DaemonSet), one holds the hub session and applies, the others stand by.
    #[arg(long, env = "TETHER_LEADER_ELECT")]
    pub leader_elect: bool,
    /// This agent's name in the Lease [default: POD_NAME, else the host name and process id].
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// The Lease, NAMESPACE/NAME [default: the agent's namespace, tether-agent].
    #[arg(long, env = "TETHER_LEASE")]
    pub lease: Option<String>,
    /// A standby takes over when the leader has not renewed the Lease for this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "TETHER_LEASE_DURATION")]
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "TETHER_LEASE_RENEW_DEADLINE")]
    pub lease_renew_deadline: Duration,
    /// How often the leader renews and standbys try.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "TETHER_LEASE_RETRY_PERIOD")]
    pub lease_retry_period: Duration,
}

fn parse_labels_arg(s: &str) -> Result<Labels, String> {
    tether_common::labels::parse_labels(s)
}

/// A start-up or runtime failure and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 2,
    }
}

fn runtime(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 1,
    }
}

/// Checked settings.
struct Checked {
    hub: String,
    token: Option<String>,
    ca_pin: Option<String>,
}

fn check(cli: &Cli) -> Result<Checked, Failure> {
    tls::hub_addresses(&cli.hub).map_err(|e| usage(e.to_string()))?;
    let from_file = match &cli.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read --token-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let token = cli
        .token
        .clone()
        .or(from_file)
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            token::JoinToken::parse(t)
                .map(|_| t.trim().to_string())
                .map_err(|e| usage(e.to_string()))
        })
        .transpose()?;
    let ca_pin = cli
        .ca_pin
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| pki::parse_pin(p).map_err(usage))
        .transpose()?;
    if token.is_some() && ca_pin.is_none() {
        return Err(usage(
            "--token needs --ca-pin (both are printed by `tetherctl token create`)",
        ));
    }
    if cli.rejoin && token.is_none() {
        return Err(usage("--rejoin needs --token and --ca-pin"));
    }
    Ok(Checked {
        hub: cli.hub.clone(),
        token,
        ca_pin,
    })
}

async fn kube_client(cli: &Cli) -> Result<kube::Client, Failure> {
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| usage(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| usage(format!("invalid kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            usage(format!(
                "no Kubernetes configuration found (pass --kubeconfig, or run in a pod): {e}"
            ))
        })?,
    };
    kube::Client::try_from(config)
        .map_err(|e| runtime(format!("cannot build a Kubernetes client: {e}")))
}

fn in_cluster_namespace() -> Option<String> {
    std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
    std::env::var("POD_NAMESPACE").ok().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
    })
}

fn credential_store(cli: &Cli, client: &kube::Client) -> Result<CredentialStore, Failure> {
    if let Some(spec) = &cli.credential_secret {
        let (ns, name) = spec
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| {
                usage(format!(
                    "invalid --credential-secret {spec:?}: expected NAMESPACE/NAME"
                ))
            })?;
        return Ok(CredentialStore::secret(client.clone(), ns, name));
    }
    if let Some(dir) = &cli.state_dir {
        return Ok(CredentialStore::file(dir.clone()));
    }
    if let Some(ns) = in_cluster_namespace() {
        return Ok(CredentialStore::secret(client.clone(), &ns, DEFAULT_SECRET));
    }
    Err(usage(
        "where should the credential be kept? pass --state-dir DIR (or --credential-secret NS/NAME)",
    ))
}

async fn join_with_token(
    checked: &Checked,
    client: &kube::Client,
    store: &CredentialStore,
    cli: &Cli,
    shutdown: &CancellationToken,
) -> Result<Option<Credential>, Failure> {
    let (Some(token), Some(pin)) = (&checked.token, &checked.ca_pin) else {
        return Err(usage(format!(
            "no credential in {} and no --token/--ca-pin to join with (create one: tetherctl token create --cluster NAME)",
            store.location()
        )));
    };
    // A single-use token is spent by the join: first make sure the credential it buys can be
    // kept.
    store.check_writable().await.map_err(|e| {
        runtime(format!(
            "{e}; not joining (the token would be spent for nothing)"
        ))
    })?;
    let facts = crate::facts::gather(client).await;
    let cred = join::join(
        &checked.hub,
        token,
        pin,
        facts,
        &cli.labels,
        &ChannelOptions::default(),
        join::Retry {
            max_delay: cli.reconnect_max_delay,
            stop: shutdown,
        },
    )
    .await
    .map_err(|e| runtime(e.to_string()))?;
    let Some(cred) = cred else {
        tracing::info!("stopped before the join completed");
        return Ok(None);
    };
    store
        .save(&cred)
        .await
        .map_err(|e| runtime(e.to_string()))?;
    tracing::info!(cluster = %cred.cluster, store = %store.location(), "joined the hub; credential saved");
    Ok(Some(cred))
}

/// The namespace of the agent's own objects.
fn own_namespace(cli: &Cli) -> String {
    cli.namespace
        .clone()
        .or_else(in_cluster_namespace)
        .unwrap_or_else(|| "tether-system".to_string())
}

/// Namespaces the proxy must not reach for anyone but hub admins: the agent's own (its
/// Lease, its desired-state cache) and the credential Secret's.
fn protected_namespaces(cli: &Cli) -> Vec<String> {
    let mut out = vec![own_namespace(cli)];
    if let Some((ns, _)) = cli
        .credential_secret
        .as_deref()
        .and_then(|s| s.split_once('/'))
        && !out.iter().any(|o| o == ns)
    {
        out.push(ns.to_string());
    }
    out
}

/// Where the desired-state cache lives: the state directory, else Secrets in the namespace.
fn desired_store(cli: &Cli, client: &kube::Client) -> DesiredStore {
    match &cli.state_dir {
        Some(dir) => DesiredStore::dir(dir.clone()),
        None => DesiredStore::secrets(client.clone(), &own_namespace(cli)),
    }
}

fn lease_settings(cli: &Cli) -> Result<LeaseSettings, Failure> {
    let (namespace, name) = match &cli.lease {
        Some(spec) => spec
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .map(|(ns, n)| (ns.to_string(), n.to_string()))
            .ok_or_else(|| usage(format!("invalid --lease {spec:?}: expected NAMESPACE/NAME")))?,
        None => (own_namespace(cli), "tether-agent".to_string()),
    };
    let identity = cli.leader_identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "agent".into());
        format!("{host}-{}", std::process::id())
    });
    let settings = LeaseSettings {
        namespace,
        name,
        identity,
        duration: cli.lease_duration,
        renew_deadline: cli.lease_renew_deadline,
        retry_period: cli.lease_retry_period,
    };
    settings.validate().map_err(usage)?;
    Ok(settings)
}

/// Checks everything that can be checked before touching the network.
fn check_all(cli: &Cli) -> Result<Checked, Failure> {
    let checked = check(cli)?;
    if cli.resync_interval < Duration::from_millis(100)
        || cli.progress_interval < Duration::from_millis(100)
    {
        return Err(usage(
            "--resync-interval and --progress-interval must be at least 100ms",
        ));
    }
    if cli.leader_elect {
        lease_settings(cli)?;
    }
    Ok(checked)
}

/// Runs the agent; with `--leader-elect`, only while holding the Lease, standing by otherwise.
async fn run_elected(
    cli: Cli,
    metrics: AgentMetrics,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let checked = check_all(&cli)?;
    let client = kube_client(&cli).await?;
    if !cli.leader_elect {
        metrics.leader.set(1);
        return run_agent(&cli, &checked, &client, &metrics, shutdown).await;
    }
    let mut elector = Elector::new(client.clone(), lease_settings(&cli)?);
    loop {
        metrics.leader.set(0);
        if !elector.acquire(&shutdown).await {
            return Ok(());
        }
        let s = elector.settings();
        tracing::info!(lease = %format!("{}/{}", s.namespace, s.name), identity = %s.identity, "became the leader");
        metrics.leader.set(1);
        let work = shutdown.child_token();
        let agent = run_agent(&cli, &checked, &client, &metrics, work.clone());
        tokio::pin!(agent);
        let end = tokio::select! {
            result = &mut agent => {
                // The agent stopped by itself (a fatal error, or shutdown): let a standby lead.
                elector.release().await;
                return result;
            }
            end = elector.hold(&shutdown) => end,
        };
        // Stop every write to the cluster before anyone else can take the Lease.
        work.cancel();
        let result = agent.await;
        match end {
            HoldEnd::Shutdown => {
                elector.release().await;
                return result;
            }
            HoldEnd::Lost => {
                metrics.leader.set(0);
                tracing::warn!(
                    "stopped the hub session and applies after losing the lease; standing by"
                );
            }
        }
    }
}

async fn run_agent(
    cli: &Cli,
    checked: &Checked,
    client: &kube::Client,
    metrics: &AgentMetrics,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let store = credential_store(cli, client)?;
    // The last desired state is enforced from here on, whether or not the hub answers.
    let reconciler = Reconciler::start(
        Arc::new(KubeApi::new(client.clone(), metrics.clone())),
        desired_store(cli, client),
        reconcile::Settings {
            resync_interval: cli.resync_interval,
            progress_interval: cli.progress_interval,
            metrics: metrics.clone(),
            ..reconcile::Settings::default()
        },
        shutdown.clone(),
    )
    .await
    .map_err(|e| runtime(format!("cannot read the desired-state cache: {e}")))?;
    let stored = store.load().await.map_err(|e| runtime(e.to_string()))?;
    let mut joined_now = false;
    let mut cred = match stored {
        Some(c) if !cli.rejoin && !c.is_expired() => c,
        Some(c) if !cli.rejoin && checked.token.is_none() => {
            return Err(runtime(format!(
                "the stored credential of cluster {:?} expired at {}; re-join: create a token with \
                 `tetherctl token create --cluster {}` and start the agent with --token and --ca-pin",
                c.cluster,
                rfc3339(c.not_after_unix),
                c.cluster
            )));
        }
        _ => {
            joined_now = true;
            match join_with_token(checked, client, &store, cli, &shutdown).await? {
                Some(c) => c,
                None => return Ok(()),
            }
        }
    };
    loop {
        let (cred_tx, cred_rx) = watch::channel(cred.clone());
        let stop_renewal = shutdown.child_token();
        let renew_now = Arc::new(tokio::sync::Notify::new());
        let renewal = tokio::spawn(renew::run(
            checked.hub.clone(),
            store.clone(),
            cred_tx,
            ChannelOptions::default(),
            renew_now.clone(),
            stop_renewal.clone(),
        ));
        let mut opts = SessionOptions::new(checked.hub.clone());
        opts.max_backoff = cli.reconnect_max_delay;
        opts.facts_interval = cli.facts_interval;
        opts.metrics = metrics.clone();
        let result = session::run(
            opts,
            cred_rx,
            Arc::new(client.clone()),
            reconciler.clone(),
            renew_now,
            Some(Arc::new(crate::proxy::KubeForward {
                client: client.clone(),
                protected: protected_namespaces(cli),
            })),
            shutdown.clone(),
        )
        .await;
        stop_renewal.cancel();
        let _ = renewal.await;
        match result {
            Ok(()) => return Ok(()),
            // The documented way back in: a new token given to an agent whose credential the
            // hub no longer takes.
            Err(Fatal::CredentialRejected(reason) | Fatal::HubUntrusted(reason))
                if checked.token.is_some() && !joined_now =>
            {
                tracing::warn!(%reason, "the hub refused the stored credential; joining again with the given token");
                cred = match join_with_token(checked, client, &store, cli, &shutdown).await? {
                    Some(c) => c,
                    None => return Ok(()),
                };
                joined_now = true;
            }
            Err(fatal) => return Err(runtime(fatal.to_string())),
        }
    }
}

/// How long the agent may take to stop after SIGTERM (Kubernetes gives 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Exit codes: 0 stopped by a signal, 1 runtime failure, 2 usage error.
pub fn run(cli: Cli) -> ExitCode {
    let json_logs = cli.log_format == LogFormat::Json;
    telemetry::init(cli.log_format, "info");
    tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(shutdown.clone()));
        let metrics = AgentMetrics::new();
        if let Some(addr) = cli.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| usage(format!("cannot listen on --metrics-listen {addr}: {e}")))?;
            tokio::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
                shutdown.clone(),
            ));
        }
        // Every stage stops on SIGTERM; whatever does not within the grace is cut short.
        let work = run_elected(cli, metrics, shutdown.clone());
        tokio::select! {
            r = work => r,
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!("still busy {}s after the signal; exiting", SHUTDOWN_GRACE.as_secs());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line: structured for log collectors, plain for people.
            if json_logs {
                tracing::error!(exit_code = f.code, "{}", f.message);
            } else {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn shutdown_on_signal(token: CancellationToken) {
    tether_common::signal::terminated().await;
    token.cancel();
}
