//! The hub on each store, side by side in one run (`tether-loadgen stores`): the embedded
//! store (redb), etcd with one hub, and etcd with three hubs (one serving, two standing by).
//! Each gets the same simulated fleet and the same scenarios — durable status ingest,
//! fan-out of one change, the serving hub's memory — and, with three hubs, a `kill -9` of the
//! serving hub: how long until another serves and until the last cluster is back on it.
//!
//! etcd is a real 3-member cluster on this machine (mutual TLS), so its members share the
//! cores with the hub and the fleet: the figures compare the stores under the same load, they
//! are not what a dedicated etcd would give.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde::Serialize;
use serde_json::json;

use super::bench::{
    apply, configmap, hub_metric, hub_pid, machine, tether_fanout, until, wait_available,
    wait_connected,
};
use super::fleet::{Fleet, FleetOptions};
use super::procs;
use super::stats::{Runs, median};
use crate::etcd::{EtcdCluster, etcd_binary};
use crate::harness::{Hub, HubOptions};

#[derive(Debug, Clone)]
pub struct StoresOptions {
    pub clusters: usize,
    pub repeats: usize,
    /// Status updates each cluster offers per second during ingest.
    pub ingest_rate: f64,
    pub ingest_window: Duration,
    pub payload_bytes: usize,
    pub heartbeat: Duration,
    /// The etcd hubs' `--etcd-lease-ttl`.
    pub lease_ttl: Duration,
    pub connect_rate: f64,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Takeover {
    /// From the serving hub's `kill -9` to another hub ready.
    pub serving_s: f64,
    /// To every cluster connected to it.
    pub all_back_s: f64,
    /// Workload revisions the new hub sent (nothing changed: 0 expected).
    pub resent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreRun {
    pub store: String,
    pub hubs: usize,
    pub clusters: usize,
    pub ingest_offered_per_s: f64,
    pub ingest_per_s: Vec<f64>,
    pub ingest_median_per_s: f64,
    pub fanout: Runs,
    /// The serving hub's resident memory with every cluster connected.
    pub hub_rss_bytes: u64,
    pub takeover: Option<Takeover>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoresReport {
    pub machine: std::collections::BTreeMap<String, String>,
    pub runs: Vec<StoreRun>,
    pub elapsed_s: f64,
}

/// Runs blocking set-up (processes, waits with their own runtimes) off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.map_err(|_| anyhow!("set-up thread panicked"))
}

/// The simulated fleet joins from one address, which the hub's per-address limit on
/// connections without a certificate (32) is there to stop: real fleets come from many.
pub(crate) const FLEET_FLAGS: [&str; 2] = ["--anonymous-connections-per-address", "1024"];

fn hub_options(opts: &StoresOptions, etcd: bool) -> HubOptions {
    let mut extra: Vec<String> = FLEET_FLAGS.iter().map(|s| s.to_string()).collect();
    if etcd {
        extra.extend([
            "--etcd-lease-ttl".to_string(),
            humantime::format_duration(opts.lease_ttl).to_string(),
        ]);
    }
    HubOptions {
        heartbeat_interval: humantime::format_duration(opts.heartbeat).to_string(),
        offline_grace: humantime::format_duration(opts.heartbeat * 3).to_string(),
        cert_lifetime: "30d".into(),
        log: "warn".into(),
        extra,
    }
}

pub async fn run(opts: &StoresOptions) -> anyhow::Result<StoresReport> {
    let started = Instant::now();
    let binary = etcd_binary()
        .ok_or_else(|| anyhow!("etcd is not installed (apt-get install etcd-server)"))?;
    super::bench::check_open_files(opts.clusters)?;
    let mut runs = Vec::new();
    for (store, hubs_n) in [("embedded", 1), ("etcd", 1), ("etcd", 3)] {
        eprintln!(
            "stores: {store} with {hubs_n} hub(s), {} clusters",
            opts.clusters
        );
        let dir = opts.dir.join(format!("{store}-{hubs_n}"));
        std::fs::create_dir_all(&dir)?;
        let (etcd, hubs) = {
            let (o, d, b) = (opts.clone(), dir.clone(), binary.clone());
            blocking(move || {
                if store == "embedded" {
                    (
                        None,
                        vec![Hub::start(&d.join("hub"), hub_options(&o, false))],
                    )
                } else {
                    let e = EtcdCluster::start(&b, &d.join("etcd"), 3);
                    let hubs = Hub::etcd_group(
                        &d.join("hubs"),
                        hubs_n,
                        &e.hub_flags("/tether"),
                        hub_options(&o, true),
                    );
                    (Some(e), hubs)
                }
            })
            .await?
        };
        let result = measure(opts, store, &dir, hubs).await;
        drop(etcd);
        runs.push(result?);
    }
    Ok(StoresReport {
        machine: machine(),
        runs,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

async fn measure(
    opts: &StoresOptions,
    store: &str,
    dir: &Path,
    mut hubs: Vec<Hub>,
) -> anyhow::Result<StoreRun> {
    let n = opts.clusters;
    let hubs_n = hubs.len();
    let config = Hub::config_listing(&hubs, &dir.join("fleet.yaml"));
    let mut fleet = Fleet::new(
        &config,
        FleetOptions {
            labels: [("bench".to_string(), "fanout".to_string())].into(),
            connect_rate: opts.connect_rate,
            ..FleetOptions::default()
        },
    )
    .await?;
    fleet.grow(n).await?;
    fleet.connect().await;
    wait_connected(&hubs[0], n, Duration::from_secs(300)).await?;

    // Durable status ingest.
    let names: Vec<String> = (0..n).map(|i| fleet.name(i)).collect();
    apply(
        &fleet,
        json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "ingest"},
            "spec": {"manifests": [configmap("ingest", "x")], "placement": {"clusters": names}},
        }),
    )
    .await?;
    wait_available(&fleet, "ingest", n, Duration::from_secs(120)).await?;
    let mut rates = Vec::new();
    for _ in 0..opts.repeats.max(1) {
        let stop = fleet.pump_status(n, opts.ingest_rate);
        // Let the pumps reach their pace before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (a, t0) = (
            hub_metric(&hubs[0], "tether_status_reports_total").await,
            Instant::now(),
        );
        tokio::time::sleep(opts.ingest_window).await;
        let b = hub_metric(&hubs[0], "tether_status_reports_total").await;
        stop.cancel();
        rates.push((b - a) / t0.elapsed().as_secs_f64());
    }

    // Fan-out of one change to every cluster.
    let mut spreads = Vec::new();
    for run in 0..opts.repeats.max(1) as u64 {
        let (spread, _) = tether_fanout(&fleet, n, run + 1, opts.payload_bytes).await?;
        spreads.push(spread);
        wait_available(&fleet, "fanout", n, Duration::from_secs(300)).await?;
    }
    let rss = procs::sample(hub_pid(&hubs[0])?)?.rss_bytes;

    // With standbys: kill -9 of the serving hub.
    let takeover = if hubs.len() > 1 {
        let killed = Instant::now();
        hubs[0].kill();
        let mut next = None;
        until(Duration::from_secs(60), "a standby to serve", || {
            let ready = hubs[1..]
                .iter()
                .position(|h| crate::harness::http_get(h.metrics, "/readyz").0 == 200);
            next = ready.map(|i| i + 1);
            async move { ready.is_some() }
        })
        .await?;
        let serving_s = killed.elapsed().as_secs_f64();
        let Some(next) = next else {
            bail!("no standby took over");
        };
        wait_connected(&hubs[next], n, Duration::from_secs(300)).await?;
        let all_back_s = killed.elapsed().as_secs_f64();
        Some(Takeover {
            serving_s,
            all_back_s,
            resent: hub_metric(&hubs[next], "tether_desired_sent_total").await,
        })
    } else {
        None
    };
    fleet.disconnect().await;
    drop(hubs);
    Ok(StoreRun {
        store: store.to_string(),
        hubs: hubs_n,
        clusters: n,
        ingest_offered_per_s: n as f64 * opts.ingest_rate,
        ingest_median_per_s: median(&rates),
        ingest_per_s: rates,
        fanout: Runs::of(spreads),
        hub_rss_bytes: rss,
        takeover,
    })
}

/// The report as Markdown (docs/benchmarks-stores.md).
pub fn markdown(r: &StoresReport, command: &str) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks: the embedded store and etcd, side by side\n\n");
    out.push_str(&format!(
        "Written by `{command}` ({:.0} s). Machine: {}. The hub, the simulated \
         clusters and a 3-member etcd (mutual TLS, default durability: every write fsynced by \
         a majority) all share these cores, so the etcd figures are bounded by this machine, \
         not by etcd on machines of its own. With three hubs one serves and two stand by: \
         serving figures match one hub's.\n\n",
        r.elapsed_s,
        r.machine
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    out.push_str("| store | hubs | clusters | status ingest (durable updates/s, median) | offered/s | fan-out p50 | p99 | last | serving hub RSS |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in &r.runs {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MiB |\n",
            run.store,
            run.hubs,
            run.clusters,
            run.ingest_median_per_s,
            run.ingest_offered_per_s,
            run.fanout.p50_ms,
            run.fanout.p99_ms,
            run.fanout.max_ms,
            run.hub_rss_bytes as f64 / (1 << 20) as f64,
        ));
    }
    for run in &r.runs {
        if let Some(t) = &run.takeover {
            out.push_str(&format!(
                "\n**Takeover** ({} clusters, `--etcd-lease-ttl` as run): `kill -9` of the serving hub → \
                 a standby serving after **{:.1} s**, the last cluster back on it after \
                 **{:.1} s**; workload revisions sent again: {:.0}.\n",
                run.clusters, t.serving_s, t.all_back_s, t.resent
            ));
        }
    }
    out.push_str(
        "\nStatus ingest: every cluster offers status updates at a fixed rate for the window \
         (after 1 s of warm-up); counted as the hub stores them, each made durable by the next \
         group commit (redb: one fsync per group; etcd: groups packed into transactions of up \
         to 120 changes, each committed by a majority); the writer's bounded queue (16,384 \
         batches) holds the count within that of what is durable. Fan-out: from the apply call \
         until each simulated agent holds the new revision. What bounds each figure: status \
         ingest by the store's write path on this machine (redb's fsync; for etcd the raft log \
         fsync of three members on the same two cores, the hub's gRPC round trips, the cores \
         the fleet needs to offer the load); fan-out by the one durable commit of the change \
         (one etcd transaction, staged when it touches more than 120 records) and then the \
         same delivery path on both stores; the takeover by the lease TTL (a standby may take \
         the lease only once etcd lets it expire: up to the TTL after the last renewal) plus \
         the agents' jittered reconnect backoff (up to 30 s by default).\n",
    );
    out
}
