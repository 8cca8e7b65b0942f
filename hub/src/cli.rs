//! The `tether-hub` command line: every setting declared once, validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tether_common::telemetry::{self, LogFormat};
use tether_common::time::parse_duration;
use tokio_util::sync::CancellationToken;

use crate::admin::datadir::DataDir;
use crate::admin::init::{InitOptions, init};
use crate::hub::{self, Listen, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "tether-hub",
    version,
    about = "The Tether hub: desired state for many Kubernetes clusters"
)]
pub struct Cli {
    /// Log line format (filter with RUST_LOG).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TETHER_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a hub in a data directory: CA, serving certificate, store, admin credential.
    Init(InitArgs),
    /// Run the hub.
    Serve(Box<ServeArgs>),
    /// Rotate the certificate authority (stop the hub first; see docs/operations.md).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Print the first admin's tetherctl config (e.g. through `kubectl exec` in a pod).
    AdminConfig {
        #[arg(long, env = "TETHER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Back up the whole hub (CA, keys, store) to one file: online from a running hub with
    /// --config (an admin credential), or offline from a stopped hub's --data-dir.
    Backup(BackupArgs),
    /// Restore a backup into a data directory (the hub stopped); agents then reconnect.
    Restore {
        #[arg(long, env = "TETHER_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace the hub that is in the data directory.
        #[arg(long)]
        force: bool,
    },
    /// Compact the store file of a stopped hub (gives back the space of deleted records).
    Compact {
        #[arg(long, env = "TETHER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Move a stopped hub's embedded store onto etcd; then serve with --store etcd.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The data directory of the stopped hub whose store moves.
    #[arg(long)]
    pub from_data_dir: PathBuf,
    /// Copy into etcd (the only target there is; required so the command says what it does).
    #[arg(long, required = true)]
    pub to_etcd: bool,
    /// Do nothing (and succeed) when the etcd prefix already holds a hub: for the init
    /// container of every hub replica, of which the first seeds etcd. A replica that did not
    /// seed it is noted in its data directory, and `admin-config` there says whose admin
    /// credential is registered.
    #[arg(long)]
    pub if_empty: bool,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// Where the store is: `embedded` (redb in the data directory) or `etcd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// Comma-separated etcd client URLs: https://e1:2379,https://e2:2379,https://e3:2379.
    #[arg(long, value_delimiter = ',', env = "TETHER_ETCD_ENDPOINTS")]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the etcd members' serving certificates.
    #[arg(long, value_name = "FILE", env = "TETHER_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth.
    #[arg(long, value_name = "FILE", env = "TETHER_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert (PEM).
    #[arg(long, value_name = "FILE", env = "TETHER_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// Every key the hub writes starts with this.
    #[arg(long, default_value = "/tether", env = "TETHER_ETCD_PREFIX")]
    pub etcd_prefix: String,
    /// A hub that cannot renew its etcd lease for this long stops serving and another
    /// takes over.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub etcd_lease_ttl: Duration,
    /// The longest one etcd call may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub etcd_request_timeout: Duration,
    /// How often the serving hub compacts etcd's history, keeping one interval of it, as
    /// kube-apiserver does; 0 when etcd compacts itself (--auto-compaction-retention).
    #[arg(
        long,
        default_value = "5m",
        value_parser = parse_duration,
        env = "TETHER_ETCD_COMPACTION_INTERVAL"
    )]
    pub etcd_compaction_interval: Duration,
}

impl EtcdArgs {
    /// Whether any option that names an etcd cluster was given.
    pub fn any_set(&self) -> bool {
        !self.etcd_endpoints.is_empty()
            || self.etcd_ca.is_some()
            || self.etcd_cert.is_some()
            || self.etcd_key.is_some()
    }

    pub fn config(&self) -> Result<crate::store::EtcdConfig, String> {
        let config = crate::store::EtcdConfig {
            endpoints: self
                .etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            prefix: self.etcd_prefix.clone(),
            lease_ttl: self.etcd_lease_ttl,
            request_timeout: self.etcd_request_timeout.max(Duration::from_millis(100)),
            compaction_interval: self.etcd_compaction_interval,
        };
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (mode 0600; it holds the CA key).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// tetherctl config of an admin: back up the running hub it points at [default:
    /// $TETHER_CONFIG, then ~/.tether/config.yaml].
    #[arg(long, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// The data directory of a stopped hub.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Step 1: a new CA signs new certificates; agents renew onto it as they connect.
    Rotate {
        #[arg(long, env = "TETHER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Step 2: the new CA serves and the old one is no longer trusted.
    Finish {
        #[arg(long, env = "TETHER_DATA_DIR")]
        data_dir: PathBuf,
        /// Finish even though some clusters or users still hold old-CA certificates (they
        /// will have to re-join or get a new credential).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[arg(long, env = "TETHER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// An extra DNS name or IP address for the serving certificate (repeatable). localhost
    /// and 127.0.0.1 are always included.
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// HOST:PORT that agents and tetherctl dial [default: first --san (or localhost):7443].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Replace an existing hub in the data directory (destroys its CA and store).
    #[arg(long, conflicts_with = "if_missing")]
    pub force: bool,
    /// Do nothing (and succeed) when the data directory already holds a hub: for init
    /// containers and provisioning scripts that run on every start.
    #[arg(long)]
    pub if_missing: bool,
    /// Sign with this existing CA certificate (PEM) instead of creating a new CA.
    #[arg(long, requires = "ca_key", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The key of --ca-cert (PEM).
    #[arg(long, requires = "ca_cert", value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, env = "TETHER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where the records live: in the data directory (one hub), or on an etcd cluster (one
    /// hub serves, others on the same prefix stand by and take over; docs/operations.md).
    #[arg(long, value_enum, default_value = "embedded", env = "TETHER_STORE")]
    pub store: StoreKind,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The TLS port for agents, API clients and the Kubernetes proxy.
    #[arg(long, default_value = "0.0.0.0:7443", env = "TETHER_LISTEN")]
    pub listen: SocketAddr,
    /// Plain HTTP: /healthz, /readyz, /metrics.
    #[arg(long, default_value = "127.0.0.1:9464", env = "TETHER_METRICS_LISTEN")]
    pub metrics_listen: SocketAddr,
    /// With --store etcd: where the other hubs reach this hub's TLS port, HOST or HOST:PORT
    /// (the port of --listen when left out). Hubs that do not serve relay their clients'
    /// connections to the one that does. [default: the --listen address, or this host's
    /// name when --listen is every address]
    #[arg(long, value_name = "HOST[:PORT]", env = "TETHER_PEER_ADDRESS")]
    pub peer_address: Option<String>,
    /// Lifetime of agent certificates; agents renew at 70-80% of it.
    #[arg(long, default_value = "30d", value_parser = parse_duration, env = "TETHER_CERT_LIFETIME")]
    pub cert_lifetime: Duration,
    /// TTL of join tokens created without --ttl.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub token_default_ttl: Duration,
    /// The longest TTL a join token may have.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub token_max_ttl: Duration,
    /// How often hub and agents send heartbeats on the stream.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "TETHER_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Duration,
    /// An agent silent this long is disconnected and its cluster shown Offline.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "TETHER_OFFLINE_GRACE")]
    pub offline_grace: Duration,
    /// How often each session re-checks what its agent holds against what it should run.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "TETHER_RESYNC_INTERVAL")]
    pub resync_interval: Duration,
    /// The largest rendered copy of a workload for one cluster, in bytes (uncompressed).
    #[arg(long, default_value_t = 8 << 20, env = "TETHER_MAX_BUNDLE_SIZE")]
    pub max_bundle_size: usize,
    /// Failed join attempts allowed per source address per minute; more are refused.
    #[arg(long, default_value_t = 10)]
    pub join_failures_per_minute: u32,
    /// How long audit entries are kept.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    pub audit_retention: Duration,
    /// How long scheduling events (`tetherctl events`) are kept.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub event_retention: Duration,
    /// Proxied Kubernetes API requests in flight per cluster; more get 429.
    #[arg(long, default_value_t = 64)]
    pub proxy_max_streams: usize,
    /// Of those, the most one user may have open to one cluster; more get 429.
    #[arg(long, default_value_t = 16)]
    pub proxy_max_streams_per_user: usize,
    /// Largest request body the proxy forwards, in bytes; larger gets 413.
    #[arg(long, default_value_t = 10 << 20)]
    pub proxy_max_body: usize,
    /// How long a proxied request's body may take to arrive; slower gets 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub proxy_body_timeout: Duration,
    /// Connections without a client certificate (joins) open at once from one address.
    #[arg(long, default_value_t = 32)]
    pub anonymous_connections_per_address: usize,
    /// Connections without a client certificate open at once in all.
    #[arg(long, default_value_t = 1024)]
    pub anonymous_connections: usize,
    /// How long a connection without a client certificate may stay open.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub anonymous_connection_lifetime: Duration,
    /// Client API calls one user may have in flight; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 8)]
    pub calls_in_flight_per_user: usize,
    /// Refused client API calls one identity may make per minute; then it is turned away
    /// (unaudited) until the minute is over.
    #[arg(long, default_value_t = 30)]
    pub refused_calls_per_minute: u32,
    /// How often rollouts, deadlines and failovers are advanced.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub schedule_interval: Duration,
    /// Failovers allowed per minute across the hub.
    #[arg(long, default_value_t = 10)]
    pub failovers_per_minute: u32,
    /// How often the hub writes down that it still hears every connected cluster (LAST SEEN
    /// after a crash is at most this old): one small record for the whole fleet. Heartbeats
    /// themselves cost no writes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub last_contact_interval: Duration,
}

impl ServeArgs {
    fn settings(&self) -> Result<Settings, String> {
        if self.offline_grace <= self.heartbeat_interval {
            return Err(format!(
                "--offline-grace ({}) must be longer than --heartbeat-interval ({})",
                humantime::format_duration(self.offline_grace),
                humantime::format_duration(self.heartbeat_interval)
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return Err("--heartbeat-interval must be at least 100ms".into());
        }
        if self.cert_lifetime < Duration::from_secs(2) {
            return Err("--cert-lifetime must be at least 2s".into());
        }
        if self.resync_interval < Duration::from_millis(100) {
            return Err("--resync-interval must be at least 100ms".into());
        }
        if self.max_bundle_size < 1024 {
            return Err("--max-bundle-size must be at least 1024 bytes".into());
        }
        if self.token_default_ttl > self.token_max_ttl {
            return Err("--token-default-ttl must not exceed --token-max-ttl".into());
        }
        Ok(Settings {
            cert_lifetime: self.cert_lifetime,
            token_default_ttl: self.token_default_ttl,
            token_max_ttl: self.token_max_ttl,
            heartbeat_interval: self.heartbeat_interval,
            offline_grace: self.offline_grace,
            resync_interval: self.resync_interval,
            max_bundle_size: self.max_bundle_size,
            join_failures_per_minute: self.join_failures_per_minute.max(1),
            audit_retention: self.audit_retention,
            event_retention: self.event_retention,
            proxy: crate::api::proxy::ProxySettings {
                max_streams_per_cluster: self.proxy_max_streams.max(1),
                max_streams_per_user: self.proxy_max_streams_per_user.max(1),
                max_body: self.proxy_max_body,
                body_timeout: self.proxy_body_timeout,
                ..crate::api::proxy::ProxySettings::default()
            },
            server: crate::api::server::ServerOptions {
                anonymous: crate::api::server::AnonymousLimits {
                    per_address: self.anonymous_connections_per_address.max(1),
                    total: self.anonymous_connections.max(1),
                    lifetime: self
                        .anonymous_connection_lifetime
                        .max(Duration::from_secs(1)),
                    ..crate::api::server::AnonymousLimits::default()
                },
                ..crate::api::server::ServerOptions::default()
            },
            calls_in_flight_per_user: self.calls_in_flight_per_user.max(1),
            refused_calls_per_minute: self.refused_calls_per_minute.max(1),
            schedule_interval: self.schedule_interval.max(Duration::from_millis(100)),
            failovers_per_minute: self.failovers_per_minute,
            last_contact_interval: self.last_contact_interval.max(Duration::from_secs(1)),
        })
    }
}

/// Exit codes: 0 success, 1 runtime failure, 2 usage error.
pub fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.log_format, "info");
    tether_common::tls::install_default_provider();
    match cli.command {
        Command::Init(a) => {
            let opts = InitOptions {
                data_dir: DataDir::new(&a.data_dir),
                sans: a.sans,
                advertise: a.advertise,
                force: a.force,
                ca: a.ca_cert.zip(a.ca_key),
            };
            if a.if_missing && opts.data_dir.is_initialized() {
                println!(
                    "{} already holds a hub; nothing to do",
                    a.data_dir.display()
                );
                return ExitCode::SUCCESS;
            }
            match init(&opts) {
                Ok(r) => {
                    println!("Initialized a hub in {}", a.data_dir.display());
                    println!("  advertised address: {}", r.advertise);
                    println!("  certificate names:  {}", r.sans.join(", "));
                    println!("  CA pin:             {}", r.ca_pin);
                    println!(
                        "  admin credential:   {}",
                        opts.data_dir.admin_config().display()
                    );
                    println!();
                    println!(
                        "Start it:  tether-hub serve --data-dir {}",
                        a.data_dir.display()
                    );
                    println!(
                        "Then:      tetherctl --config {} token create --cluster NAME",
                        opts.data_dir.admin_config().display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Ca(CaCommand::Rotate { data_dir }) => {
            match crate::admin::rotation::rotate(&DataDir::new(&data_dir)) {
                Ok(r) => {
                    println!(
                        "New CA {} signs every certificate issued from now on.",
                        r.new_pin
                    );
                    println!(
                        "The old CA {} still serves and stays trusted; keep using its pin for joins.",
                        r.serving_pin
                    );
                    println!("Start the hub: agents renew onto the new CA as they connect.");
                    println!("admin.yaml now holds a new-CA credential that trusts both CAs.");
                    println!(
                        "When `tetherctl cluster list -o yaml` shows every cluster renewed: tether-hub ca finish"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Ca(CaCommand::Finish { data_dir, force }) => {
            match crate::admin::rotation::finish(&DataDir::new(&data_dir), force) {
                Ok(r) => {
                    println!(
                        "The new CA {} now serves and is the only one trusted.",
                        r.serving_pin
                    );
                    println!("New joins pin: {}", r.serving_pin);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::AdminConfig { data_dir } => {
            let dir = DataDir::new(&data_dir);
            // `migrate --if-empty` found etcd seeded from another data directory: this
            // one's credential would be refused.
            if let Ok(note) = std::fs::read_to_string(dir.admin_elsewhere()) {
                return fail(&note.trim());
            }
            let path = dir.admin_config();
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("cannot read {}: {e}", path.display())),
            }
        }
        Command::Backup(a) => backup(a),
        Command::Restore {
            data_dir,
            from,
            force,
        } => match crate::admin::backup::restore(&from, &DataDir::new(&data_dir), force) {
            Ok(r) => {
                println!(
                    "Restored {} records from {} (taken {}) into {}",
                    r.records,
                    from.display(),
                    tether_common::time::rfc3339(r.created_unix),
                    data_dir.display()
                );
                println!("Start the hub: agents reconnect and are sent only what changed since.");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Compact { data_dir } => {
            match crate::admin::backup::compact(&DataDir::new(&data_dir)) {
                Ok((before, after)) => {
                    println!(
                        "Compacted {}: {before} -> {after} bytes",
                        data_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Migrate(a) => migrate(a),
        Command::Serve(a) => {
            let settings = match a.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let store = match a.store {
                StoreKind::Embedded if a.peer_address.is_some() => {
                    eprintln!(
                        "error: --peer-address (or TETHER_PEER_ADDRESS) is for hubs on etcd; \
                         add --store etcd, or drop it"
                    );
                    return ExitCode::from(2);
                }
                StoreKind::Embedded if a.etcd.any_set() => {
                    // Silently serving from the data directory when etcd was meant would
                    // split the fleet's state in two.
                    eprintln!(
                        "error: --etcd-* options are set (flags or TETHER_ETCD_* variables) but \
                         the store is embedded; add --store etcd, or drop them"
                    );
                    return ExitCode::from(2);
                }
                StoreKind::Embedded => hub::StoreChoice::Embedded,
                StoreKind::Etcd => match a.etcd.config() {
                    Ok(c) => hub::StoreChoice::Etcd(c),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            let dir = DataDir::new(&a.data_dir);
            let peer = match peer_address(a.peer_address.as_deref(), a.listen) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let listen = Listen {
                tls: a.listen,
                metrics: a.metrics_listen,
                peer,
            };
            let result = runtime.block_on(async move {
                let shutdown = CancellationToken::new();
                tokio::spawn(shutdown_on_signal(shutdown.clone()));
                hub::serve(&dir, settings, listen, store, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// Where other hubs reach this one: `--peer-address` completed with the port of `--listen`,
/// or `--listen` itself, or this host's name on every address.
fn peer_address(given: Option<&str>, listen: SocketAddr) -> Result<String, String> {
    let port = listen.port();
    let Some(given) = given.map(str::trim) else {
        return Ok(if listen.ip().is_unspecified() {
            format!("{}:{port}", crate::hub::hostname())
        } else {
            listen.to_string()
        });
    };
    if let Ok(addr) = given.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    if let Ok(ip) = given.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port).to_string());
    }
    let bad = || format!("invalid --peer-address {given:?}: expected HOST or HOST:PORT");
    let (host, port) = match given.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (given, port),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

fn migrate(a: MigrateArgs) -> ExitCode {
    let config = match a.etcd.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = DataDir::new(&a.from_data_dir);
    match crate::admin::migrate::to_etcd(&dir, &config, &crate::hub::hostname()) {
        Err(crate::admin::migrate::MigrateError::NotEmpty(prefix, by)) if a.if_empty => {
            use crate::admin::migrate::SeededBy;
            let note = dir.admin_elsewhere();
            match by {
                SeededBy::ThisDirectory => {
                    let _ = std::fs::remove_file(&note);
                    println!(
                        "etcd prefix {prefix} already holds this hub (copied from this data directory); nothing to do"
                    );
                }
                SeededBy::Another(host) => {
                    // The host name comes from etcd: nothing in it may drive the terminal.
                    let host = host.map(|h| tether_common::text::terminal_safe(&h).into_owned());
                    let whose = match &host {
                        Some(h) => format!(
                            "the hub on {h} (in Kubernetes: kubectl exec {h} -c hub -- tether-hub admin-config)"
                        ),
                        None => "the hub whose data directory was migrated".to_string(),
                    };
                    let text = format!(
                        "this data directory's admin credential is not registered in etcd prefix {prefix}, which holds a hub copied from another one: use the admin credential of {whose}"
                    );
                    if let Err(e) = std::fs::write(&note, format!("{text}\n")) {
                        return fail(&format!("cannot write {}: {e}", note.display()));
                    }
                    println!(
                        "etcd prefix {prefix} already holds a hub; nothing to do. Note: {text}"
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Ok(n) => {
            println!(
                "Copied {n} records from {} to etcd under {}",
                a.from_data_dir.display(),
                config.prefix
            );
            println!(
                "Serve it: tether-hub serve --data-dir {} --store etcd --etcd-endpoints {} ...",
                a.from_data_dir.display(),
                config.endpoints.join(",")
            );
            println!(
                "Other hubs need a copy of this data directory without store.redb (the CA and serving certificate)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn backup(a: BackupArgs) -> ExitCode {
    let report = match (&a.config, &a.data_dir) {
        (_, Some(dir)) => crate::admin::backup::backup_offline(&DataDir::new(dir), &a.to)
            .map(|r| (r.records, r.bytes))
            .map_err(|e| e.to_string()),
        (config, None) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            runtime.block_on(backup_online(config.as_deref(), &a.to))
        }
    };
    match report {
        Ok((records, bytes)) => {
            println!(
                "Backed up {records} records ({bytes} bytes) to {} - it holds the CA key: keep it like one",
                a.to.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Streams a backup from the running hub into `to` (complete, or not there at all).
async fn backup_online(
    config: Option<&std::path::Path>,
    to: &std::path::Path,
) -> Result<(u64, u64), String> {
    use std::io::Write;
    use tether_common::pb;
    let path = tether_client::ClientConfig::resolve_path(config);
    let config = tether_client::ClientConfig::load(&path).map_err(|e| e.to_string())?;
    let mut client = tether_client::connect(&config)
        .await
        .map_err(|e| e.message)?;
    let mut stream = client
        .backup(pb::BackupRequest {})
        .await
        .map_err(|s| tether_client::status_error(&config.hub, s).message)?
        .into_inner();
    // Created O_EXCL under a random name next to `to` (0600), renamed once complete; dropped
    // (and so removed) on any failure.
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut partial = tempfile::Builder::new()
        .prefix(".tether-backup-")
        .suffix(".partial")
        .tempfile_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    let shown = partial.path().display().to_string();
    let mut bytes = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| tether_client::status_error(&config.hub, s).message)?
    {
        partial
            .write_all(&chunk.data)
            .map_err(|e| format!("{shown}: {e}"))?;
        bytes += chunk.data.len() as u64;
    }
    partial
        .as_file()
        .sync_all()
        .map_err(|e| format!("{shown}: {e}"))?;
    // Count what arrived by reading the archive's manifest back: proves it is whole.
    let records = crate::admin::backup::records_in(partial.path()).map_err(|e| e.to_string())?;
    partial
        .persist(to)
        .map_err(|e| format!("{}: {}", to.display(), e.error))?;
    Ok((records, bytes))
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn shutdown_on_signal(token: CancellationToken) {
    tether_common::signal::terminated().await;
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_address_takes_the_listen_port_when_it_has_none() {
        let listen: SocketAddr = "0.0.0.0:7443".parse().unwrap();
        let ok = |given: &str| peer_address(Some(given), listen).unwrap();
        assert_eq!(ok("10.1.2.3"), "10.1.2.3:7443");
        assert_eq!(ok("fd00::7"), "[fd00::7]:7443");
        assert_eq!(ok("[fd00::7]:9000"), "[fd00::7]:9000");
        assert_eq!(ok("hub-1.hubs.tether.svc"), "hub-1.hubs.tether.svc:7443");
        assert_eq!(ok("hub-1:8443"), "hub-1:8443");
        for bad in ["", "hub 1", "hub:port", "a/b:1"] {
            assert!(peer_address(Some(bad), listen).is_err(), "{bad:?}");
        }
        let specific: SocketAddr = "127.0.0.1:17443".parse().unwrap();
        assert_eq!(peer_address(None, specific).unwrap(), "127.0.0.1:17443");
        assert!(peer_address(None, listen).unwrap().ends_with(":7443"));
    }
}
