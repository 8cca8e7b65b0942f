//! The hub on each store, side by side in one run (`tether-loadgen stores`): the embedded
//! store (redb), etcd with one hub, and etcd with three hubs (one serving, two standing by).
//! Each gets the same simulated fleet and the scenarios of `./scripts/bench` — joins, durable
//! status ingest, fan-out of one change, idle connections (memory, CPU, traffic), a reconnect
//! storm — and, with three hubs, the serving hub stopped cleanly and then killed (`kill -9`):
//! how long until another serves and until the last cluster is back on it. A fourth run has
//! the fleet know only a standby, which terminates the agents' connections and forwards their
//! calls to the serving hub (as behind a Service): what that costs each, and a kill of the
//! serving hub seen through it.
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
    /// Clusters that offer status updates during ingest (the first ones).
    pub ingest_clients: usize,
    /// How long every cluster sits connected and idle while memory, CPU and traffic are
    /// sampled.
    pub idle_window: Duration,
    /// Status updates each cluster offers per second during ingest.
    pub ingest_rate: f64,
    pub ingest_window: Duration,
    pub payload_bytes: usize,
    pub heartbeat: Duration,
    /// The etcd hubs' `--etcd-lease-ttl`.
    pub lease_ttl: Duration,
    pub connect_rate: f64,
    pub dir: PathBuf,
    /// Only these runs (`embedded`, `etcd-1`, `etcd-3`, `etcd-3-relayed`); all when empty.
    pub only: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Takeover {
    /// From the serving hub's stop (or `kill -9`) to another hub ready.
    pub serving_s: f64,
    /// To every cluster connected to it.
    pub all_back_s: f64,
    /// To half, 90 % and 99 % of them connected: a tail of a few clusters (their backoff)
    /// or a slow storm (the new hub's handshakes)?
    pub half_back_s: f64,
    pub p90_back_s: f64,
    pub p99_back_s: f64,
    /// Workload revisions the new hub sent (nothing changed: 0 expected).
    pub resent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreRun {
    pub store: String,
    pub hubs: usize,
    /// The fleet knows only a hub that does not serve, which relays to the one that does.
    pub relayed: bool,
    pub clusters: usize,
    pub ingest_offered_per_s: f64,
    pub ingest_per_s: Vec<f64>,
    pub ingest_median_per_s: f64,
    pub fanout: Runs,
    /// How long each fan-out's apply call took to answer (the first follows the status
    /// ingest, whose backlog the store is still writing).
    pub apply_s: Vec<f64>,
    /// Who used the CPU while one change reached every cluster (per fan-out).
    pub fanout_cpu: FanoutCpu,
    /// Joins per second while the fleet grew to `clusters` (key, CSR, TLS, the hub signing
    /// and persisting).
    pub joins_per_s: f64,
    pub idle: Idle,
    /// Several hubs: a standby that only watches (relays nothing), during the first ingest
    /// window and at the end of the idle one.
    pub watcher: Option<Watcher>,
    /// One hub: stopped and started again with every cluster connected.
    pub storm: Option<super::bench::Storm>,
    /// Three hubs: the serving one stopped cleanly (it hands its lease over at once).
    pub handover: Option<Takeover>,
    /// Three hubs: the serving one killed (another waits for its lease to expire).
    pub takeover: Option<Takeover>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    /// The serving hub's resident memory with every cluster connected and idle.
    pub hub_rss_bytes: u64,
    /// The same hub before any cluster joined.
    pub hub_rss_empty_bytes: u64,
    pub rss_per_cluster_bytes: f64,
    pub hub_cpu_percent: f64,
    /// The serving hub's socket bytes (both directions) per cluster per second.
    pub socket_bytes_per_cluster_s: f64,
    pub window_s: f64,
    /// With the fleet behind a relaying hub: that hub, over the same window.
    pub relay: Option<RelayIdle>,
}

/// CPU seconds per fan-out, by process: the serving hub, the hubs standing by (their
/// watches apply every assignment written), etcd's members, and the simulated fleet. On one
/// machine these share its cores, so a busier one slows the others.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutCpu {
    pub serving_hub_s: f64,
    pub standbys_s: f64,
    pub etcd_s: f64,
    pub fleet_s: f64,
    /// The fan-outs' wall time, for scale (per fan-out, until the apply call had answered
    /// and the benchmark had counted every cluster's receipt).
    pub wall_s: f64,
}

/// What a standby's copy of every record costs it: etcd sends it every write.
#[derive(Debug, Clone, Serialize)]
pub struct Watcher {
    pub ingest_cpu_percent: f64,
    /// The serving hub's durable status writes per second over the same window.
    pub ingest_per_s: f64,
    pub rss_bytes: u64,
    /// What the hub's store says its copy of the records holds, for comparison.
    pub store_bytes: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayIdle {
    /// Connections it fronted at the end of the window: agents' it terminated and forwards
    /// (`tether_forwarded_agents`) and clients' it relays (`tether_relayed_connections`).
    pub connections: f64,
    pub rss_bytes: u64,
    pub rss_per_cluster_bytes: f64,
    pub cpu_percent: f64,
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
    for (store, hubs_n, relayed) in [
        ("embedded", 1, false),
        ("etcd", 1, false),
        ("etcd", 3, false),
        ("etcd", 3, true),
    ] {
        let name = match (store, relayed) {
            ("embedded", _) => "embedded".to_string(),
            (_, false) => format!("etcd-{hubs_n}"),
            (_, true) => format!("etcd-{hubs_n}-relayed"),
        };
        if !opts.only.is_empty() && !opts.only.contains(&name) {
            continue;
        }
        eprintln!(
            "stores: {store} with {hubs_n} hub(s){}, {} clusters",
            if relayed {
                ", the fleet through a standby"
            } else {
                ""
            },
            opts.clusters
        );
        let dir = opts.dir.join(&name);
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
        // A standby holds a socket per agent it terminates (and two per client it relays):
        // under a small open-file limit it takes fewer clusters than the others hold.
        let n = match (relayed, tether_common::limits::open_files_limit()) {
            (true, Some(limit)) => {
                let fits = (limit.saturating_sub(2048) / 1000 * 1000).max(1000) as usize;
                if fits < opts.clusters {
                    eprintln!(
                        "stores: the open-file limit ({limit}) lets one hub front {fits} clusters; the run through a standby uses {fits}"
                    );
                }
                opts.clusters.min(fits)
            }
            _ => opts.clusters,
        };
        let etcd_pids = etcd.as_ref().map(EtcdCluster::pids).unwrap_or_default();
        let result = measure(opts, n, store, &dir, hubs, relayed, &etcd_pids).await;
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
    n: usize,
    store: &str,
    dir: &Path,
    mut hubs: Vec<Hub>,
    relayed: bool,
    etcd_pids: &[u32],
) -> anyhow::Result<StoreRun> {
    let hubs_n = hubs.len();
    let empty_rss = procs::sample(hub_pid(&hubs[0])?)?.rss_bytes;
    // Relayed: the fleet knows only hubs[1], which stands by and relays to hubs[0].
    let front = if relayed { &hubs[1..2] } else { &hubs[..] };
    let front_empty_rss = procs::sample(hub_pid(&front[0])?)?.rss_bytes;
    let config = Hub::config_listing(front, &dir.join("fleet.yaml"));
    let mut fleet = Fleet::new(
        &config,
        FleetOptions {
            labels: [("bench".to_string(), "fanout".to_string())].into(),
            connect_rate: opts.connect_rate,
            ..FleetOptions::default()
        },
    )
    .await?;
    let growth = fleet.grow(n).await?;
    let joins_per_s = growth.joined as f64 / growth.joins.as_secs_f64().max(1e-9);
    fleet.connect().await;
    wait_connected(&hubs[0], n, Duration::from_secs(300)).await?;

    // Durable status ingest.
    let pumps = opts.ingest_clients.clamp(1, n);
    let names: Vec<String> = (0..pumps).map(|i| fleet.name(i)).collect();
    apply(
        &fleet,
        json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "ingest"},
            "spec": {"manifests": [configmap("ingest", "x")], "placement": {"clusters": names}},
        }),
    )
    .await?;
    wait_available(&fleet, "ingest", pumps, Duration::from_secs(120)).await?;
    // A standby that relays nothing: the last hub (the fleet, relayed or not, reaches the
    // others first).
    let watcher_pid = match hubs_n > 1 + usize::from(relayed) {
        true => Some(hub_pid(&hubs[hubs_n - 1])?),
        false => None,
    };
    let mut rates = Vec::new();
    let mut watcher_ingest = None;
    for _ in 0..opts.repeats.max(1) {
        let stop = fleet.pump_status(pumps, opts.ingest_rate);
        // Let the pumps reach their pace before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (a, t0) = (
            hub_metric(&hubs[0], "tether_status_reports_total").await,
            Instant::now(),
        );
        let w0 = watcher_pid.map(procs::sample).transpose()?;
        tokio::time::sleep(opts.ingest_window).await;
        let b = hub_metric(&hubs[0], "tether_status_reports_total").await;
        let w1 = watcher_pid.map(procs::sample).transpose()?;
        stop.cancel();
        let rate = (b - a) / t0.elapsed().as_secs_f64();
        if let (Some(w0), Some(w1), None) = (w0, w1, &watcher_ingest) {
            watcher_ingest = Some((procs::cpu_percent(&w0, &w1), rate));
        }
        rates.push(rate);
    }

    // Fan-out of one change to every cluster.
    let serving_pid = [hub_pid(&hubs[0])?];
    let standby_pids: Vec<u32> = hubs[1..].iter().filter_map(|h| hub_pid(h).ok()).collect();
    let fleet_pid = [std::process::id()];
    let cpu = || {
        [
            procs::cpu_seconds(&serving_pid),
            procs::cpu_seconds(&standby_pids),
            procs::cpu_seconds(etcd_pids),
            procs::cpu_seconds(&fleet_pid),
        ]
    };
    let mut spreads = Vec::new();
    let mut applies = Vec::new();
    let mut used = [0.0; 4];
    let mut wall = 0.0;
    let fanouts = opts.repeats.max(1);
    for run in 0..fanouts as u64 {
        // Counted from the change to its last cluster (the wait for Available after is not).
        let (before, t0) = (cpu(), Instant::now());
        let fanout = tether_fanout(&fleet, n, run + 1, opts.payload_bytes).await?;
        let spread = fanout.spread;
        applies.push(fanout.apply_s);
        let after = cpu();
        wall += t0.elapsed().as_secs_f64();
        for (u, (a, b)) in used.iter_mut().zip(before.iter().zip(after.iter())) {
            *u += b - a;
        }
        spreads.push(spread);
        wait_available(&fleet, "fanout", n, Duration::from_secs(300)).await?;
    }
    let per = |i: usize| used[i] / fanouts as f64;
    let fanout_cpu = FanoutCpu {
        serving_hub_s: per(0),
        standbys_s: per(1),
        etcd_s: per(2),
        fleet_s: per(3),
        wall_s: wall / fanouts as f64,
    };

    // Every cluster connected and idle.
    let pid = hub_pid(&hubs[0])?;
    let sockets = procs::sockets_on(hubs[0].addr.port())?;
    let relay_pid = if relayed {
        Some(hub_pid(&hubs[1])?)
    } else {
        None
    };
    let (serving, relaying) = tokio::join!(procs::over(pid, opts.idle_window), async {
        match relay_pid {
            Some(p) => Some(procs::over(p, opts.idle_window).await),
            None => None,
        }
        .transpose()
    });
    let (a, b) = serving?;
    // Agents' connections the standby terminated and forwards, and any it relays.
    let relayed_now = match relayed {
        true => {
            hub_metric(&hubs[1], "tether_forwarded_agents").await
                + hub_metric(&hubs[1], "tether_relayed_connections").await
        }
        false => 0.0,
    };
    let relay = relaying?.map(|(ra, rb)| RelayIdle {
        connections: relayed_now,
        rss_bytes: rb.rss_bytes,
        rss_per_cluster_bytes: rb.rss_bytes.saturating_sub(front_empty_rss) as f64 / n as f64,
        cpu_percent: procs::cpu_percent(&ra, &rb),
    });
    let watcher = match (watcher_pid, watcher_ingest) {
        (Some(pid), Some((cpu, rate))) => Some(Watcher {
            ingest_cpu_percent: cpu,
            ingest_per_s: rate,
            rss_bytes: procs::sample(pid)?.rss_bytes,
            store_bytes: hub_metric(&hubs[0], "tether_store_bytes").await,
        }),
        _ => None,
    };
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let (bytes, _) = procs::sockets_on(hubs[0].addr.port())?.rates_since(&sockets, secs);
    let idle = Idle {
        hub_rss_bytes: b.rss_bytes,
        hub_rss_empty_bytes: empty_rss,
        rss_per_cluster_bytes: b.rss_bytes.saturating_sub(empty_rss) as f64 / n as f64,
        hub_cpu_percent: procs::cpu_percent(&a, &b),
        socket_bytes_per_cluster_s: bytes / n as f64,
        window_s: secs,
        relay,
    };

    // One hub: a reconnect storm. Three: the serving hub stopped, then the next one killed.
    let (mut storm, mut handover, mut takeover) = (None, None, None);
    if hubs_n == 1 {
        storm = Some(super::bench::storm(&mut hubs[0], &fleet, n, opts.repeats.max(1)).await?);
    } else if relayed {
        // The front hub stays: the fleet knows no other.
        takeover = Some(move_over(&mut hubs, 0, true, n).await?.1);
    } else {
        let (next, moved) = move_over(&mut hubs, 0, false, n).await?;
        handover = Some(moved);
        takeover = Some(move_over(&mut hubs, next, true, n).await?.1);
    }
    fleet.disconnect().await;
    drop(hubs);
    Ok(StoreRun {
        store: store.to_string(),
        hubs: hubs_n,
        relayed,
        clusters: n,
        ingest_offered_per_s: pumps as f64 * opts.ingest_rate,
        ingest_median_per_s: median(&rates),
        ingest_per_s: rates,
        fanout: Runs::of(spreads),
        apply_s: applies,
        fanout_cpu,
        joins_per_s,
        idle,
        watcher,
        storm,
        handover,
        takeover,
    })
}

/// Stops (or kills) the serving hub `from`; measures until another serves and holds all `n`
/// clusters. Returns which hub that is.
async fn move_over(
    hubs: &mut [Hub],
    from: usize,
    kill: bool,
    n: usize,
) -> anyhow::Result<(usize, Takeover)> {
    let t0 = Instant::now();
    if kill {
        hubs[from].kill();
    } else {
        let hub = &mut hubs[from];
        tokio::task::block_in_place(|| hub.stop());
    }
    let mut next = None;
    until(Duration::from_secs(60), "another hub to serve", || {
        let ready = hubs.iter().enumerate().position(|(i, h)| {
            // Ready is not enough: a hub relaying to the serving one is ready too.
            i != from
                && crate::harness::metric(
                    &crate::harness::http_get(h.metrics, "/metrics").1,
                    "tether_hub_serving",
                ) == 1.0
        });
        next = ready;
        async move { ready.is_some() }
    })
    .await?;
    let serving_s = t0.elapsed().as_secs_f64();
    let Some(next) = next else {
        bail!("no standby took over");
    };
    // When half, 90 %, 99 % and all of the clusters were back.
    let mut marks = [None; 4];
    let shares = [0.5, 0.9, 0.99, 1.0];
    let deadline = Instant::now() + Duration::from_secs(300);
    while marks[3].is_none() {
        let connected = hub_metric(&hubs[next], "tether_connected_agents").await;
        for (mark, share) in marks.iter_mut().zip(shares) {
            if mark.is_none() && connected >= (n as f64 * share).ceil() {
                *mark = Some(t0.elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {n} connected clusters");
        }
        // A poll interval inside a deadline loop.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let [half, p90, p99, all] = marks.map(Option::unwrap_or_default);
    Ok((
        next,
        Takeover {
            serving_s,
            all_back_s: all,
            half_back_s: half,
            p90_back_s: p90,
            p99_back_s: p99,
            resent: hub_metric(&hubs[next], "tether_desired_sent_total").await,
        },
    ))
}

/// The report as Markdown (docs/benchmarks-stores.md).
pub fn markdown(r: &StoresReport, command: &str) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = String::new();
    out.push_str("# Benchmarks: the embedded store and etcd, side by side\n\n");
    out.push_str(&format!(
        "Written by `{command}` ({:.0} s). Machine: {}. The hub, the simulated \
         clusters and a 3-member etcd (mutual TLS, default durability: every write fsynced by \
         a majority) all share these cores, so the etcd figures are bounded by this machine, \
         not by etcd on machines of its own. With three hubs one serves and two stand by: \
         serving figures match one hub's. How each figure is measured, and what bounds it, is \
         below the tables.\n\n",
        r.elapsed_s,
        r.machine
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let label = |run: &StoreRun| {
        format!(
            "{} ({} hub{}{})",
            run.store,
            run.hubs,
            if run.hubs > 1 { "s" } else { "" },
            if run.relayed {
                ", fleet through a standby"
            } else {
                ""
            }
        )
    };
    out.push_str("## Throughput and latency\n\n");
    out.push_str("| store | clusters | joins/s | status ingest (durable/s, median) | offered/s | fan-out p50 | p99 | last | apply call, longest |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in &r.runs {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |\n",
            label(run),
            run.clusters,
            run.joins_per_s,
            run.ingest_median_per_s,
            run.ingest_offered_per_s,
            run.fanout.p50_ms,
            run.fanout.p99_ms,
            run.fanout.max_ms,
            run.apply_s.iter().copied().fold(0.0, f64::max) * 1000.0,
        ));
    }
    out.push_str(
        "\nCPU seconds per fan-out, from the change until the apply call had answered and \
         every cluster had the change (the processes share this machine's cores):\n\n",
    );
    out.push_str(
        "| store | wall | serving hub | hubs standing by | etcd (all members) | fleet |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for run in &r.runs {
        let c = &run.fanout_cpu;
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s |\n",
            label(run),
            c.wall_s,
            c.serving_hub_s,
            c.standbys_s,
            c.etcd_s,
            c.fleet_s,
        ));
    }
    out.push_str("\n## Idle connections\n\n");
    out.push_str("| store | clusters | serving hub RSS | empty | per cluster | hub CPU | socket B/s per cluster | window |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in &r.runs {
        let i = &run.idle;
        out.push_str(&format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} % | {:.1} | {:.0} s |\n",
            label(run),
            run.clusters,
            mib(i.hub_rss_bytes),
            mib(i.hub_rss_empty_bytes),
            i.rss_per_cluster_bytes / 1024.0,
            i.hub_cpu_percent,
            i.socket_bytes_per_cluster_s,
            i.window_s,
        ));
    }
    for run in &r.runs {
        if let Some(relay) = &run.idle.relay {
            out.push_str(&format!(
                "\nThe standby in front of the fleet in the {} run, over the same window: {:.0} \
                 connections (agents' it terminated and forwards), {:.1} MiB resident ({:.1} \
                 KiB per cluster), {:.1} % CPU.\n",
                label(run),
                relay.connections,
                mib(relay.rss_bytes),
                relay.rss_per_cluster_bytes / 1024.0,
                relay.cpu_percent,
            ));
        }
    }
    for run in &r.runs {
        if let Some(w) = &run.watcher {
            out.push_str(&format!(
                "\nA standby that relays nothing in the {} run keeps a copy of every record by \
                 watching etcd: {:.1} % CPU while the serving hub stored {:.0} status \
                 updates/s, and {:.1} MiB resident with every cluster connected (the records \
                 themselves: {:.1} MiB).\n",
                label(run),
                w.ingest_cpu_percent,
                w.ingest_per_s,
                mib(w.rss_bytes),
                w.store_bytes / (1024.0 * 1024.0),
            ));
        }
    }
    out.push_str("\n## A hub going away\n\n");
    out.push_str("| store | clusters | what happens | another hub serving | last cluster back | runs | revisions re-sent |\n");
    out.push_str("|---|---:|---|---:|---:|---|---:|\n");
    for run in &r.runs {
        if let Some(s) = &run.storm {
            out.push_str(&format!(
                "| {} | {} | the hub stopped and started again | | {:.1} s (median) | {} | {} |\n",
                label(run),
                run.clusters,
                s.all_back_median_s,
                s.all_back_s
                    .iter()
                    .map(|t| format!("{t:.1} s"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.desired_resent,
            ));
        }
        for (what, t) in [
            ("the serving hub stopped (lease handed over)", &run.handover),
            ("the serving hub killed (`kill -9`)", &run.takeover),
        ] {
            if let Some(t) = t {
                out.push_str(&format!(
                    "| {} | {} | {what} | {:.1} s | {:.1} s | 1 | {:.0} |\n",
                    label(run),
                    run.clusters,
                    t.serving_s,
                    t.all_back_s,
                    t.resent,
                ));
            }
        }
    }
    for run in &r.runs {
        for (what, t) in [("stopped", &run.handover), ("killed", &run.takeover)] {
            if let Some(t) = t {
                out.push_str(&format!(
                    "\n{}, serving hub {what}: half the clusters back after {:.1} s, 90 % after \
                     {:.1} s, 99 % after {:.1} s, all after {:.1} s.",
                    label(run),
                    t.half_back_s,
                    t.p90_back_s,
                    t.p99_back_s,
                    t.all_back_s,
                ));
            }
        }
    }
    out.push('\n');
    out.push_str(
        "\nJoins: clusters joining one after another with six tokens created in flight (a key, \
         a CSR, TLS, the hub signing and persisting each). Status ingest: the first clusters \
         offer status updates at a fixed rate for the window (after 1 s of warm-up); counted \
         as the hub stores them, each made durable by the next group commit (redb: one fsync \
         per group; etcd: groups packed into transactions of up to 120 changes, each committed \
         by a majority); the writer's bounded queue (16,384 batches) holds the count within \
         that of what is durable. Fan-out: from the apply call until each simulated agent \
         holds the new revision; the apply call's own answer (the change and its audit \
         record durable) the longest of the fan-outs, the first of which follows the status \
         ingest while the store still writes its backlog. Idle: the serving hub's resident memory and CPU with every \
         cluster connected (heartbeats both ways, a resync list every 60 s), and its socket \
         bytes in both directions. A hub going away: times from the stop or kill until another \
         hub serves (holds the lease) and until every cluster is connected to it; a storm restarts the \
         one hub in place. Fleet through a standby: the clusters, `tetherctl` and the \
         benchmark's calls know only a hub that does not serve; it terminates the agents' \
         connections and forwards their calls to the serving hub over one connection, and \
         relays the others' still encrypted; killed is the serving hub, and the clusters \
         come back through the same standby.\n\n\
         What bounds each figure: joins and status ingest by the store's write path on this \
         machine (redb's fsync; for etcd the raft log fsync of three members on the same two \
         cores, the hub's gRPC round trips, the cores the fleet needs to offer the load); \
         fan-out by the one durable commit of the change (one etcd transaction, staged when it \
         touches more than 120 records) and then the same delivery path on both stores; an \
         etcd hub's memory by its in-memory copy of every record (reads never wait on etcd) \
         and the etcd client's buffers; a handover by the agents' jittered reconnect backoff \
         (the lease is revoked at once); a takeover after a kill by the lease TTL (a standby \
         may take the lease only once etcd lets it expire: up to the TTL after the last \
         renewal) plus that backoff (up to 30 s by default) — through a relaying standby the \
         clusters' connections wait there (up to 15 s) for the next serving hub instead, so \
         they are not held back by a backoff that grew meanwhile. Through a standby the \
         serving hub keeps each agent's session but not its connection (an HTTP/2 stream on \
         the connection between the hubs instead), and the standby holds the agents' TLS \
         connections.\n",
    );
    out
}
