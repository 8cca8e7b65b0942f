//! `tether-loadgen`: many simulated member clusters against a hub, and the benchmark suite
//! (see `tether_tests::loadgen`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tether_tests::loadgen::bench::{self, BenchOptions};
use tether_tests::loadgen::fleet::{Fleet, FleetOptions};
use tether_tests::loadgen::markdown;

#[derive(Debug, Parser)]
#[command(
    name = "tether-loadgen",
    about = "Simulated member clusters (real agent sessions, in-memory appliers) and the benchmark suite",
    // A later flag wins, so ./scripts/bench can set defaults its caller overrides.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join N simulated clusters to a running hub and keep them connected.
    Run(RunArgs),
    /// Run the benchmark scenarios against a hub this command starts (see ./scripts/bench).
    Bench(BenchArgs),
    /// Time the scheduler's placement decisions alone (JSON on stdout).
    Placement(PlacementArgs),
    /// The same scenarios on the embedded store, on etcd with one hub and with three (and a
    /// takeover), side by side (see ./scripts/bench-stores).
    Stores(StoresArgs),
}

#[derive(Debug, clap::Args)]
struct StoresArgs {
    #[arg(long, default_value_t = 10_000)]
    clusters: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Clusters offering status updates during ingest (./scripts/bench's figure: 1,000).
    #[arg(long, default_value_t = 1000)]
    ingest_clients: usize,
    /// Every cluster connected and idle for this long while the hub is sampled.
    #[arg(long, default_value = "65s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// Status updates each cluster offers per second (100 x 1,000 clusters: more than
    /// either store takes here, so the figure is the store's).
    #[arg(long, default_value_t = 100.0)]
    ingest_rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ingest_window: Duration,
    #[arg(long, default_value_t = 2048)]
    payload_bytes: usize,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// The etcd hubs' lease (their production default).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    #[arg(long, default_value_t = 0.0)]
    connect_rate: f64,
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value = "target/bench/stores.json")]
    out: PathBuf,
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[arg(long, default_value = "./scripts/bench-stores")]
    command: String,
    /// Only these runs: embedded, etcd-1, etcd-3, etcd-3-relayed (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = ["embedded", "etcd-1", "etcd-3", "etcd-3-relayed"]
    )]
    only: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PlacementArgs {
    #[arg(long, default_value_t = 10_000)]
    clusters: usize,
    #[arg(long, default_value_t = 100)]
    workloads: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// tetherctl config of a user allowed to create tokens (tether-hub init writes admin.yaml).
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Sessions started per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    connect_rate: f64,
    /// Status updates each cluster sends per second for each workload it holds (0: none).
    #[arg(long, default_value_t = 0.0)]
    status_rate: f64,
    /// Cluster names are PREFIX-00001, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// A label for every cluster (KEY=VALUE; repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Stop after this long (e.g. 10m); run until Ctrl-C when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Fleet sizes for fan-out, idle connections and reconnect storms.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Bytes of incompressible data in the fanned-out object (and the MQTT message).
    #[arg(long, default_value_t = 2048)]
    payload_bytes: usize,
    #[arg(long, default_value_t = 1000)]
    ingest_clients: usize,
    /// Status updates each ingest client offers per second.
    #[arg(long, default_value_t = 100.0)]
    ingest_rate: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ingest_window: Duration,
    /// How long idle clusters are watched (at least the 60 s resync interval for honest
    /// traffic figures).
    #[arg(long, default_value = "65s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    #[arg(long, default_value_t = 50)]
    agent_objects: usize,
    #[arg(long, default_value_t = 0.0)]
    connect_rate: f64,
    /// The hub's heartbeat interval (its production default).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Run without a baseline whose program is missing instead of failing.
    #[arg(long)]
    allow_missing_baselines: bool,
    /// Scratch directory (default: a new temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Also write the Markdown report here (docs/benchmarks.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// The command to name in the report.
    #[arg(long, default_value = "./scripts/bench")]
    command: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))?;
    tether_common::labels::validate_key(k)?;
    tether_common::labels::validate_value(v)?;
    Ok((k.to_string(), v.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Simulated agents reconnecting during a storm is the point, not news: errors only.
    tether_common::telemetry::init(tether_common::telemetry::LogFormat::Text, "error");
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the runtime");
        return ExitCode::from(1);
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Bench(args) => bench(args).await,
            Command::Stores(args) => stores(args).await,
            Command::Placement(a) => {
                let p =
                    tether_tests::loadgen::placement::measure(a.clusters, a.workloads, a.repeats);
                println!("{}", serde_json::to_string_pretty(&p)?);
                Ok(())
            }
        }
    });
    // Sessions and subscribers may still be winding down: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut fleet = Fleet::new(
        &args.config,
        FleetOptions {
            prefix: args.prefix,
            labels: args.labels.into_iter().collect(),
            connect_rate: args.connect_rate,
            ..FleetOptions::default()
        },
    )
    .await?;
    let g = fleet.grow(args.clusters).await?;
    println!(
        "joined {} clusters in {:.2}s ({:.0}/s; tokens took {:.2}s)",
        g.joined,
        g.joins.as_secs_f64(),
        g.joined as f64 / g.joins.as_secs_f64().max(1e-9),
        g.tokens.as_secs_f64()
    );
    fleet.connect().await;
    println!("{} sessions started", fleet.len());
    let pump = (args.status_rate > 0.0).then(|| fleet.pump_status(fleet.len(), args.status_rate));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                println!(
                    "{:>6.0}s: {} bundle bytes received",
                    started.elapsed().as_secs_f64(),
                    fleet.recorder().bytes()
                );
                if args.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    if let Some(p) = pump {
        p.cancel();
    }
    fleet.disconnect().await;
    Ok(())
}

async fn stores(args: StoresArgs) -> anyhow::Result<()> {
    use tether_tests::loadgen::stores;
    if args.clusters == 0 {
        anyhow::bail!("--clusters must be above 0");
    }
    let scratch = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("tether-stores").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let opts = stores::StoresOptions {
        clusters: args.clusters,
        repeats: args.repeats.max(1),
        ingest_clients: args.ingest_clients,
        idle_window: args.idle_window,
        ingest_rate: args.ingest_rate,
        ingest_window: args.ingest_window,
        payload_bytes: args.payload_bytes,
        heartbeat: args.heartbeat_interval.max(Duration::from_millis(100)),
        lease_ttl: args.lease_ttl,
        connect_rate: args.connect_rate,
        dir: scratch.0.clone(),
        only: args.only.clone(),
    };
    let report = stores::run(&opts).await?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", args.out.display());
    if let Some(md) = &args.markdown {
        std::fs::write(md, stores::markdown(&report, &args.command))?;
        println!("wrote {}", md.display());
    }
    drop(scratch);
    Ok(())
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        anyhow::bail!("--sizes needs one or more cluster counts above 0");
    }
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let scratch = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("tether-bench").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let opts = BenchOptions {
        sizes,
        repeats: args.repeats.max(1),
        payload_bytes: args.payload_bytes,
        ingest_clients: args.ingest_clients.max(1),
        ingest_rate: args.ingest_rate,
        ingest_window: args.ingest_window,
        idle_window: args.idle_window,
        agent_objects: args.agent_objects,
        allow_missing_baselines: args.allow_missing_baselines,
        connect_rate: args.connect_rate,
        heartbeat: args.heartbeat_interval.max(Duration::from_millis(100)),
        dir: scratch.0.clone(),
    };
    let report = bench::run(&opts).await?;
    bench::write_json(&report, &args.out)?;
    println!("wrote {}", args.out.display());
    if let Some(md) = &args.markdown {
        let date = tether_common::time::rfc3339(tether_common::time::unix_now());
        // Sections measured elsewhere (the real-cluster suite) are kept as they are.
        let kept = std::fs::read_to_string(md)
            .ok()
            .and_then(|old| old.find(markdown::KEPT_FROM).map(|i| old[i..].to_string()))
            .unwrap_or_default();
        std::fs::write(md, markdown::render(&report, &args.command, &date) + &kept)?;
        println!("wrote {}", md.display());
    }
    drop(scratch);
    Ok(())
}
