//! The benchmark scenarios `./scripts/bench` runs, and the report they produce.
//!
//! Baselines run first, alone on the machine; then one hub serves a growing fleet of
//! simulated clusters (see [`super::fleet`]) through every Tether scenario; last, a real agent
//! process is measured against the Kubernetes API emulator. Figures are medians over
//! repeated runs, compared with the baseline measured in the same run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde_json::json;
use tether_common::pb;
use tokio_util::sync::CancellationToken;

use super::etcd::{self, Etcd};
use super::fleet::{Fleet, FleetOptions, Receipt};
use super::mqtt::{self, Broker};
use super::procs;
use super::stats::{Runs, Spread, median};
use crate::harness::{self, Hub, HubOptions};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Fleet sizes for fan-out, connections and the reconnect storm, ascending.
    pub sizes: Vec<usize>,
    pub repeats: usize,
    /// Bytes of incompressible data in the fanned-out object (and the MQTT message).
    pub payload_bytes: usize,
    /// Status-ingest clients (simulated clusters; etcd connections for the baseline).
    pub ingest_clients: usize,
    /// Status updates each ingest client offers per second.
    pub ingest_rate: f64,
    pub ingest_window: Duration,
    /// How long idle connections are watched (cover one resync interval: 60 s).
    pub idle_window: Duration,
    /// Objects in the real agent's workload.
    pub agent_objects: usize,
    /// Skip a baseline whose program is not installed, instead of failing.
    pub allow_missing_baselines: bool,
    pub connect_rate: f64,
    /// The hub's `--heartbeat-interval` (its default: 10s); the offline grace is three times it.
    pub heartbeat: Duration,
    /// Scratch directory.
    pub dir: PathBuf,
}

/// Everything measured, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: BTreeMap<String, String>,
    pub options: serde_json::Value,
    pub fanout: Vec<Fanout>,
    pub connections: Vec<Connections>,
    pub storms: Vec<Storm>,
    pub ingest: Option<Ingest>,
    pub joins: Vec<Joins>,
    pub agent: Option<AgentFootprint>,
    /// The scheduler's placement decision alone (no network or store).
    pub placement: Vec<super::placement::Placement>,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    pub clusters: usize,
    /// Bytes each cluster received (the gzip bundle).
    pub tether_bundle_bytes: f64,
    pub tether: Runs,
    pub mosquitto_payload_bytes: usize,
    pub mosquitto: Option<Runs>,
    /// Tether's time for the last cluster over Mosquitto's (median runs).
    pub ratio_max: Option<f64>,
    pub ratio_p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub clusters: usize,
    pub hub_rss_bytes: u64,
    /// The hub's RSS with no cluster connected, right after start.
    pub hub_rss_empty_bytes: u64,
    pub rss_per_cluster_bytes: f64,
    /// CPU of the hub while every cluster idles (percent of one core).
    pub hub_cpu_percent: f64,
    /// Socket bytes (TLS records, both directions) per idle cluster per second.
    pub socket_bytes_per_cluster_s: f64,
    /// The same plus 52 bytes of IP and TCP header per segment, in kbit/s.
    pub ip_kbit_per_cluster_s: f64,
    pub window_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub clusters: usize,
    /// From starting the hub process until every cluster has a live session again.
    pub all_back_s: Vec<f64>,
    pub all_back_median_s: f64,
    /// From `/readyz` answering until every cluster is back.
    pub after_ready_median_s: f64,
    /// Desired-state messages the restarted hub sent (unchanged workloads: should be 0).
    pub desired_resent: u64,
    /// Revisions the simulated clusters received again.
    pub receipts_again: u64,
    /// Bytes the restarted hub queued per cluster while they came back (lists, heartbeats).
    pub bytes_queued_per_cluster: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ingest {
    pub clients: usize,
    pub offered_per_s: f64,
    pub window_s: f64,
    pub tether_per_s: Vec<f64>,
    pub tether_median_per_s: f64,
    pub tether_hub_cpu_percent: f64,
    pub status_bytes: usize,
    pub etcd_per_s: Vec<f64>,
    pub etcd_median_per_s: Option<f64>,
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Joins {
    pub from: usize,
    pub to: usize,
    pub seconds: f64,
    pub per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentFootprint {
    pub objects: usize,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    pub window_s: f64,
    pub binary_bytes: u64,
    pub hub_binary_bytes: u64,
}

pub(crate) fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    m.insert("cpu".into(), model);
    m.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
            .to_string(),
    );
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.insert(
        "memory".into(),
        mem.lines()
            .next()
            .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
            .unwrap_or_default(),
    );
    m.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    );
    m
}

/// Fails early with one clear line if the open-file limit cannot hold the largest run.
pub fn check_open_files(largest: usize) -> anyhow::Result<()> {
    let soft = tether_common::limits::open_files_limit();
    // Each process (hub, broker, etcd, this one) holds one end of every connection; the fds
    // are counted per process, so one per cluster plus slack for files and listeners.
    let need = largest as u64 + 1024;
    match soft {
        Some(have) if have < need => bail!(
            "the open-file limit is {have}, but {largest} clusters need about {need}: raise it (ulimit -n {need}) or pass smaller --sizes"
        ),
        _ => Ok(()),
    }
}

fn ms_since(t0: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

/// Random bytes as hex: incompressible enough that gzip cannot hide the size.
fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut raw = vec![0u8; bytes.div_ceil(2)];
    let _ = ring::rand::SystemRandom::new().fill(&mut raw);
    let mut s: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(bytes);
    s
}

/// Runs every scenario.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let largest = opts.sizes.iter().copied().max().unwrap_or(0);
    check_open_files(largest.max(opts.ingest_clients))?;
    std::fs::create_dir_all(&opts.dir)?;
    let mut report = Report {
        machine: machine(),
        options: json!({
            "sizes": opts.sizes, "repeats": opts.repeats, "payloadBytes": opts.payload_bytes,
            "ingestClients": opts.ingest_clients, "ingestRate": opts.ingest_rate,
            "ingestWindowS": opts.ingest_window.as_secs_f64(),
            "idleWindowS": opts.idle_window.as_secs_f64(), "agentObjects": opts.agent_objects,
            "connectRate": opts.connect_rate, "heartbeatS": opts.heartbeat.as_secs_f64(),
        }),
        fanout: Vec::new(),
        connections: Vec::new(),
        storms: Vec::new(),
        ingest: None,
        joins: Vec::new(),
        agent: None,
        placement: Vec::new(),
        elapsed_s: 0.0,
    };
    for clusters in [1_000, 10_000] {
        eprintln!("placement decisions: {clusters} clusters, 100 workloads");
        report
            .placement
            .push(super::placement::measure(clusters, 100, opts.repeats));
    }

    // Baselines first, each alone on the machine.
    let mut mqtt_runs: BTreeMap<usize, Runs> = BTreeMap::new();
    if mqtt::mosquitto().is_some() {
        for &n in &opts.sizes {
            eprintln!("baseline: mosquitto fan-out to {n} subscribers");
            mqtt_runs.insert(n, mosquitto_fanout(opts, n).await?);
        }
    } else if !opts.allow_missing_baselines {
        bail!(
            "mosquitto is not installed (apt-get install mosquitto), or pass --allow-missing-baselines"
        );
    }
    // etcd stores values of the size of the status message a cluster sends.
    let status_bytes = {
        use prost::Message as _;
        let s = super::fleet::status("ingest", 1, 999);
        tether_agent::session::report_message(&tether_agent::status::Report::Status(s))
            .encoded_len()
    };
    let mut etcd_rates = Vec::new();
    if etcd::etcd().is_some() {
        eprintln!(
            "baseline: etcd puts from {} clients ({} bytes each)",
            opts.ingest_clients, status_bytes
        );
        let e = Etcd::start(&opts.dir.join("etcd")).await?;
        let value = random_hex(status_bytes).into_bytes();
        for _ in 0..opts.repeats {
            let t0 = Instant::now();
            let n = etcd::put_load(&e, opts.ingest_clients, &value, opts.ingest_window).await?;
            etcd_rates.push(n as f64 / t0.elapsed().as_secs_f64());
        }
    } else if !opts.allow_missing_baselines {
        bail!(
            "etcd is not installed (apt-get install etcd-server), or pass --allow-missing-baselines"
        );
    }

    // Tether: one hub, a growing fleet.
    let hub_dir = opts.dir.join("hub");
    let mut hub = tokio::task::block_in_place(|| {
        Hub::start(
            &hub_dir,
            HubOptions {
                heartbeat_interval: humantime::format_duration(opts.heartbeat).to_string(),
                offline_grace: humantime::format_duration(opts.heartbeat * 3).to_string(),
                cert_lifetime: "30d".into(),
                log: "warn".into(),
                extra: super::stores::FLEET_FLAGS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        )
    });
    let empty = procs::sample(hub_pid(&hub)?)?;
    let mut fleet = Fleet::new(
        &hub.admin_config(),
        FleetOptions {
            labels: [("bench".to_string(), "fanout".to_string())].into(),
            connect_rate: opts.connect_rate,
            ..FleetOptions::default()
        },
    )
    .await?;

    // Status ingest on the first clusters.
    eprintln!(
        "tether: status ingest from {} clusters",
        opts.ingest_clients
    );
    grow(&mut fleet, &hub, opts.ingest_clients, &mut report).await?;
    let names: Vec<String> = (0..opts.ingest_clients).map(|i| fleet.name(i)).collect();
    apply(
        &fleet,
        json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "ingest"},
            "spec": {
                "manifests": [configmap("ingest", "x")],
                "placement": {"clusters": names},
            }
        }),
    )
    .await?;
    wait_available(
        &fleet,
        "ingest",
        opts.ingest_clients,
        Duration::from_secs(120),
    )
    .await?;
    let mut tether_rates = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..opts.repeats {
        let stop = fleet.pump_status(opts.ingest_clients, opts.ingest_rate);
        // Let the pumps reach their pace before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (a_count, a) = (
            hub_metric(&hub, "tether_status_reports_total").await,
            procs::sample(hub_pid(&hub)?)?,
        );
        tokio::time::sleep(opts.ingest_window).await;
        let (b_count, b) = (
            hub_metric(&hub, "tether_status_reports_total").await,
            procs::sample(hub_pid(&hub)?)?,
        );
        stop.cancel();
        let secs = b.at.duration_since(a.at).as_secs_f64();
        tether_rates.push((b_count - a_count) / secs);
        cpu.push(procs::cpu_percent(&a, &b));
    }
    let tether_median = median(&tether_rates);
    let etcd_median = (!etcd_rates.is_empty()).then(|| median(&etcd_rates));
    report.ingest = Some(Ingest {
        clients: opts.ingest_clients,
        offered_per_s: opts.ingest_clients as f64 * opts.ingest_rate,
        window_s: opts.ingest_window.as_secs_f64(),
        tether_per_s: tether_rates,
        tether_median_per_s: tether_median,
        tether_hub_cpu_percent: median(&cpu),
        status_bytes,
        etcd_per_s: etcd_rates,
        etcd_median_per_s: etcd_median,
        ratio: etcd_median.filter(|e| *e > 0.0).map(|e| tether_median / e),
    });

    // Fan-out, idle connections and a reconnect storm at each size.
    let mut run_no = 0u64;
    for &n in &opts.sizes {
        if fleet.len() < n {
            eprintln!("tether: joining clusters up to {n}");
            grow(&mut fleet, &hub, n, &mut report).await?;
        }
        eprintln!("tether: fan-out to {n} clusters");
        let mut spreads = Vec::new();
        let mut bundle_bytes = Vec::new();
        for _ in 0..opts.repeats.max(1) {
            run_no += 1;
            let bytes_before = fleet.recorder().bytes();
            let OneFanout {
                spread, revision, ..
            } = tether_fanout(&fleet, n, run_no, opts.payload_bytes).await?;
            let got = fleet.recorder().count("fanout", revision).max(1);
            bundle_bytes.push((fleet.recorder().bytes() - bytes_before) as f64 / got as f64);
            spreads.push(spread);
            wait_available(&fleet, "fanout", n, Duration::from_secs(300)).await?;
        }
        let tether = Runs::of(spreads);
        let mosquitto = mqtt_runs.get(&n).cloned();
        report.fanout.push(Fanout {
            clusters: n,
            tether_bundle_bytes: median(&bundle_bytes),
            ratio_max: mosquitto
                .as_ref()
                .map(|m| tether.max_ms / m.max_ms.max(1e-3)),
            ratio_p99: mosquitto
                .as_ref()
                .map(|m| tether.p99_ms / m.p99_ms.max(1e-3)),
            tether,
            mosquitto_payload_bytes: opts.payload_bytes,
            mosquitto,
        });

        eprintln!("tether: {n} idle clusters for {:?}", opts.idle_window);
        let pid = hub_pid(&hub)?;
        let sockets_a = procs::sockets_on(hub.addr.port())?;
        let (a, b) = procs::over(pid, opts.idle_window).await?;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let (bytes, segs) = procs::sockets_on(hub.addr.port())?.rates_since(&sockets_a, secs);
        let socket = bytes / n as f64;
        report.connections.push(Connections {
            clusters: n,
            hub_rss_bytes: b.rss_bytes,
            hub_rss_empty_bytes: empty.rss_bytes,
            rss_per_cluster_bytes: b.rss_bytes.saturating_sub(empty.rss_bytes) as f64 / n as f64,
            hub_cpu_percent: procs::cpu_percent(&a, &b),
            socket_bytes_per_cluster_s: socket,
            ip_kbit_per_cluster_s: (socket + segs * 52.0 / n as f64) * 8.0 / 1000.0,
            window_s: secs,
        });

        eprintln!("tether: reconnect storm of {n} clusters");
        report
            .storms
            .push(storm(&mut hub, &fleet, n, opts.repeats.max(1)).await?);
    }
    fleet.disconnect().await;

    eprintln!("tether: a real agent with {} objects", opts.agent_objects);
    report.agent = Some(agent_footprint(&hub, opts).await?);
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

pub(crate) fn hub_pid(hub: &Hub) -> anyhow::Result<u32> {
    hub.proc
        .as_ref()
        .map(harness::Proc::pid)
        .ok_or_else(|| anyhow!("the hub is not running"))
}

pub(crate) async fn hub_metric(hub: &Hub, name: &str) -> f64 {
    let addr = hub.metrics;
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        harness::metric(&harness::http_get(addr, "/metrics").1, &name)
    })
    .await
    .unwrap_or(-1.0)
}

/// Polls `f` every 20 ms until it is true, or fails naming `what`.
pub(crate) async fn until<F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        // A poll interval inside a deadline loop.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn wait_connected(hub: &Hub, n: usize, timeout: Duration) -> anyhow::Result<()> {
    until(timeout, &format!("{n} connected clusters"), || async {
        hub_metric(hub, "tether_connected_agents").await >= n as f64
    })
    .await
}

/// Joins clusters until the fleet has `n`, connects them, and records the join rate.
async fn grow(fleet: &mut Fleet, hub: &Hub, n: usize, report: &mut Report) -> anyhow::Result<()> {
    let from = fleet.len();
    let g = fleet.grow(n - from).await?;
    report.joins.push(Joins {
        from,
        to: n,
        seconds: g.joins.as_secs_f64(),
        per_s: g.joined as f64 / g.joins.as_secs_f64().max(1e-9),
    });
    fleet.connect().await;
    wait_connected(hub, n, Duration::from_secs(300)).await
}

pub(crate) fn configmap(name: &str, payload: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"payload": payload},
    })
}

/// Applies a workload; returns its revision. A connection the loaded machine let die is
/// retried (applying the same workload again changes nothing).
pub(crate) async fn apply(fleet: &Fleet, workload: serde_json::Value) -> anyhow::Result<u64> {
    let json = workload.to_string();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = fleet
            .admin()
            .apply_workload(pb::ApplyWorkloadRequest {
                workload_json: json.clone(),
                ..Default::default()
            })
            .await;
        match r {
            Ok(r) => return Ok(r.into_inner().revision),
            Err(s)
                if attempts < 5
                    && matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) =>
            {
                eprintln!("  (apply: {}; retrying)", s.message());
            }
            Err(s) => bail!("apply failed: {}", s.message()),
        }
    }
}

pub(crate) async fn wait_available(
    fleet: &Fleet,
    workload: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let admin = fleet.admin();
    until(
        timeout,
        &format!("{workload} Available on {n} clusters"),
        || {
            let mut admin = admin.clone();
            async move {
                admin
                    .list_workloads(pb::ListWorkloadsRequest {})
                    .await
                    .ok()
                    .and_then(|r| {
                        r.into_inner()
                            .workloads
                            .into_iter()
                            .find(|w| w.name == workload)
                    })
                    .is_some_and(|w| w.available as usize >= n)
            }
        },
    )
    .await
}

/// One change of the fan-out workload.
pub(crate) struct OneFanout {
    /// Per-cluster delivery times from the apply call.
    pub spread: Spread,
    pub revision: u64,
    /// How long the apply call took to answer (its change durable, its audit record too).
    pub apply_s: f64,
}

/// One change of the fan-out workload, until every cluster holds it.
pub(crate) async fn tether_fanout(
    fleet: &Fleet,
    n: usize,
    run: u64,
    payload_bytes: usize,
) -> anyhow::Result<OneFanout> {
    let workload = json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
        "metadata": {"name": "fanout"},
        "spec": {
            "manifests": [configmap("fanout", &format!("{run}:{}", random_hex(payload_bytes)))],
            "placement": {"clusterSelector": {"matchLabels": {"bench": "fanout"}}},
            // Every cluster at once: this measures delivery, not the (deliberately
            // conservative) default rollout.
            "rollout": {"maxUnavailable": "100%"},
        }
    });
    let t0 = Instant::now();
    let revision = apply(fleet, workload).await?;
    let apply_s = t0.elapsed().as_secs_f64();
    let recorder = fleet.recorder().clone();
    until(
        Duration::from_secs(120),
        &format!("revision {revision} on {n} clusters"),
        || {
            let recorder = recorder.clone();
            async move { recorder.count("fanout", revision) >= n }
        },
    )
    .await
    .with_context(|| {
        format!(
            "fan-out run {run}: {} of {n} clusters received it",
            recorder.count("fanout", revision)
        )
    })?;
    let ms: Vec<f64> = recorder
        .receipts("fanout", revision)
        .iter()
        .map(|r: &Receipt| ms_since(t0, r.at))
        .collect();
    Ok(OneFanout {
        spread: Spread::of(&ms),
        revision,
        apply_s,
    })
}

async fn mosquitto_fanout(opts: &BenchOptions, n: usize) -> anyhow::Result<Runs> {
    let broker = Broker::start(&opts.dir.join(format!("mosquitto-{n}"))).await?;
    let receipts: mqtt::Receipts = Arc::default();
    let stop = CancellationToken::new();
    mqtt::subscribers(&broker, n, "tether/fanout", receipts.clone(), stop.clone()).await?;
    let mut publisher = broker.connect("publisher").await?;
    let mut spreads = Vec::new();
    for run in 1..=opts.repeats.max(1) as u64 {
        let mut payload = run.to_be_bytes().to_vec();
        payload.extend_from_slice(random_hex(opts.payload_bytes).as_bytes());
        let t0 = Instant::now();
        publisher
            .publish("tether/fanout", &payload, run as u16)
            .await?;
        let count = || {
            receipts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(r, _, _)| *r == run)
                .count()
        };
        until(
            Duration::from_secs(120),
            &format!("mosquitto run {run} on {n} subscribers"),
            || {
                let c = count();
                async move { c >= n }
            },
        )
        .await?;
        let ms: Vec<f64> = receipts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(r, _, _)| *r == run)
            .map(|(_, _, at)| ms_since(t0, *at))
            .collect();
        spreads.push(Spread::of(&ms));
    }
    stop.cancel();
    Ok(Runs::of(spreads))
}

pub(crate) async fn storm(
    hub: &mut Hub,
    fleet: &Fleet,
    n: usize,
    repeats: usize,
) -> anyhow::Result<Storm> {
    let mut back = Vec::new();
    let mut after_ready = Vec::new();
    let mut resent = 0u64;
    let mut queued = 0f64;
    let before = fleet.recorder().total("fanout") as u64;
    for _ in 0..repeats {
        let t0 = Instant::now();
        let ready_at = tokio::task::block_in_place(|| {
            hub.stop();
            hub.serve();
            Instant::now()
        });
        let t_start = t0;
        wait_connected(hub, n, Duration::from_secs(300)).await?;
        back.push(t_start.elapsed().as_secs_f64());
        after_ready.push(ready_at.elapsed().as_secs_f64());
        resent += hub_metric(hub, "tether_desired_sent_total").await.max(0.0) as u64;
        queued += hub_metric(hub, "tether_stream_bytes_sent_total")
            .await
            .max(0.0)
            / n as f64;
    }
    Ok(Storm {
        clusters: n,
        all_back_median_s: median(&back),
        all_back_s: back,
        after_ready_median_s: median(&after_ready),
        desired_resent: resent,
        receipts_again: (fleet.recorder().total("fanout") as u64).saturating_sub(before),
        bytes_queued_per_cluster: queued / repeats as f64,
    })
}

async fn agent_footprint(hub: &Hub, opts: &BenchOptions) -> anyhow::Result<AgentFootprint> {
    let dir = opts.dir.join("agent");
    std::fs::create_dir_all(dir.join("state"))?;
    let (cluster, agent) = tokio::task::block_in_place(|| {
        let cluster = harness::Cluster::start(&dir, "footprint", 3, "v1.33.4");
        let (token, pin) = hub.token("footprint", &["--labels", "bench=agent"]);
        let agent = harness::Agent::join(hub, &cluster, &dir.join("state"), &token, &pin);
        (cluster, agent)
    });
    let mut manifests = Vec::new();
    for i in 0..opts.agent_objects {
        let name = format!("obj-{i:03}");
        manifests.push(match i % 3 {
            0 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}),
            1 => json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
            _ => configmap(&name, &random_hex(512)),
        });
    }
    let admin = {
        let config = tether_client::ClientConfig::load(&hub.admin_config())?;
        tether_client::connect(&config)
            .await
            .map_err(|e| anyhow!("{}", e.message))?
    };
    let mut a = admin.clone();
    a.apply_workload(pb::ApplyWorkloadRequest {
        workload_json: json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "Workload",
            "metadata": {"name": "footprint"},
            "spec": {"manifests": manifests, "placement": {"clusters": ["footprint"]}}
        })
        .to_string(),
        ..Default::default()
    })
    .await
    .map_err(|s| anyhow!("apply failed: {}", s.message()))?;
    until(
        Duration::from_secs(120),
        "the agent's workload Available",
        || {
            let mut a = admin.clone();
            async move {
                a.list_workloads(pb::ListWorkloadsRequest {})
                    .await
                    .ok()
                    .and_then(|r| {
                        r.into_inner()
                            .workloads
                            .into_iter()
                            .find(|w| w.name == "footprint")
                    })
                    .is_some_and(|w| w.available == 1)
            }
        },
    )
    .await?;
    let (a, b) = procs::over(agent.proc.pid(), opts.idle_window).await?;
    let size = |name: &str| std::fs::metadata(harness::bin(name)).map_or(0, |m| m.len());
    drop(cluster);
    Ok(AgentFootprint {
        objects: opts.agent_objects,
        rss_bytes: b.rss_bytes,
        cpu_percent: procs::cpu_percent(&a, &b),
        window_s: b.at.duration_since(a.at).as_secs_f64(),
        binary_bytes: size("tether-agent"),
        hub_binary_bytes: size("tether-hub"),
    })
}

/// Writes `results.json`.
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
    Ok(())
}
