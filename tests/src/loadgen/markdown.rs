//! `docs/benchmarks.md` from a [`Report`]: the tables, the targets met or missed, and the
//! exact command.

/// Where the hand-maintained sections of docs/benchmarks.md start (figures from the
/// real-cluster suite); a new run keeps them.
pub const KEPT_FROM: &str = "\n## Measured by the real-cluster suite";

use std::fmt::Write as _;

use super::bench::Report;

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// One target: what, the figure, met or missed.
struct Target {
    what: String,
    measured: String,
    met: bool,
}

fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    if let Some(c) = r.connections.iter().max_by_key(|c| c.clusters) {
        t.push(Target {
            what: format!(
                "{} connected clusters, hub RSS <= 64 KiB per cluster",
                c.clusters
            ),
            measured: format!(
                "{} per cluster ({} total)",
                kib(c.rss_per_cluster_bytes),
                mib(c.hub_rss_bytes as f64)
            ),
            met: c.rss_per_cluster_bytes <= 64.0 * 1024.0,
        });
        t.push(Target {
            what: "idle cluster traffic <= 0.25 kbit/s".into(),
            measured: format!("{:.3} kbit/s", c.ip_kbit_per_cluster_s),
            met: c.ip_kbit_per_cluster_s <= 0.25,
        });
    }
    if let Some(f) = r.fanout.iter().max_by_key(|f| f.clusters) {
        t.push(Target {
            what: format!("fan-out to {} clusters: p99 <= 2 s", f.clusters),
            measured: format!("p99 {}", ms(f.tether.p99_ms)),
            met: f.tether.p99_ms <= 2000.0,
        });
        if let Some(ratio) = f.ratio_max {
            t.push(Target {
                what: format!(
                    "fan-out to {} clusters within 1.5x Mosquitto (last cluster)",
                    f.clusters
                ),
                measured: format!("{ratio:.2}x"),
                met: ratio <= 1.5,
            });
        }
    }
    if let Some(i) = &r.ingest {
        t.push(Target {
            what: "status ingest >= 50,000 durable updates/s".into(),
            measured: format!("{:.0}/s", i.tether_median_per_s),
            met: i.tether_median_per_s >= 50_000.0,
        });
        if let Some(ratio) = i.ratio {
            t.push(Target {
                what: "status ingest >= 5x etcd".into(),
                measured: format!("{ratio:.1}x"),
                met: ratio >= 5.0,
            });
        }
    }
    if let Some(s) = r.storms.iter().max_by_key(|s| s.clusters) {
        t.push(Target {
            what: format!("reconnect storm of {}: all back within 60 s", s.clusters),
            measured: format!("{:.1} s", s.all_back_median_s),
            met: s.all_back_median_s <= 60.0,
        });
        t.push(Target {
            what: "reconnect storm: zero unchanged workloads re-sent".into(),
            measured: format!("{} re-sent", s.desired_resent + s.receipts_again),
            met: s.desired_resent + s.receipts_again == 0,
        });
    }
    if let Some(a) = &r.agent {
        t.push(Target {
            what: "agent idle RSS <= 20 MiB".into(),
            measured: mib(a.rss_bytes as f64),
            met: a.rss_bytes <= 20 * 1024 * 1024,
        });
    }
    t
}

/// The whole document.
pub fn render(r: &Report, command: &str, date: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `{command}` on {date} ({:.0} s). Machine: {} cores ({}), {} memory, Linux {}. \
         Every process (hub, simulated clusters, baselines) shares these cores. \
         Machine-readable results: `target/bench/results.json`. How each figure is measured \
         is described below the tables.\n",
        r.elapsed_s,
        r.machine.get("cores").map_or("?", String::as_str),
        r.machine.get("cpu").map_or("?", String::as_str),
        r.machine.get("memory").map_or("?", String::as_str),
        r.machine.get("kernel").map_or("?", String::as_str),
    );

    let _ = writeln!(s, "## Targets\n\n| target | measured | |\n|---|---|---|");
    for t in targets(r) {
        let _ = writeln!(s, "| {} | {} | {} |", t.what, t.measured, verdict(t.met));
    }

    let _ = writeln!(
        s,
        "\n## Fan-out: one change to every cluster\n\n\
         Time from the `ApplyWorkload` call until each cluster's agent session holds the new \
         revision (the hub persists it durably before anything is sent). Baseline: one QoS 1 \
         publish through Mosquitto to the same number of mutual-TLS subscribers. Median of \
         {} runs.\n\n\
         | clusters | Tether p50 | p99 | last | worst last | Mosquitto p50 | p99 | last | ratio (last) | ratio (p99) | bytes per cluster |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        r.fanout.first().map_or(0, |f| f.tether.runs.len())
    );
    for f in &r.fanout {
        let m = f.mosquitto.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} (MQTT {}) |",
            f.clusters,
            ms(f.tether.p50_ms),
            ms(f.tether.p99_ms),
            ms(f.tether.max_ms),
            ms(f.tether.worst_max_ms),
            m.map_or("-".into(), |m| ms(m.p50_ms)),
            m.map_or("-".into(), |m| ms(m.p99_ms)),
            m.map_or("-".into(), |m| ms(m.max_ms)),
            f.ratio_max.map_or("-".into(), |x| format!("{x:.2}x")),
            f.ratio_p99.map_or("-".into(), |x| format!("{x:.2}x")),
            f.tether_bundle_bytes,
            f.mosquitto_payload_bytes + 8,
        );
    }

    let _ = writeln!(
        s,
        "\n## Idle connections\n\n\
         Hub memory and CPU with every cluster connected and idle (heartbeats every 10 s each \
         way, a resync list every 60 s). Traffic is the payload of the hub's agent sockets in \
         both directions (TLS records; the kernel's per-socket counters, so the store's disk \
         writes are not in it); the IP figure adds 52 bytes of IP and TCP header for every \
         segment of those sockets.\n\n\
         | clusters | hub RSS | per cluster | hub CPU | socket B/s per cluster | IP kbit/s per cluster | window |\n\
         |---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in &r.connections {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} % | {:.1} | {:.3} | {:.0} s |",
            c.clusters,
            mib(c.hub_rss_bytes as f64),
            kib(c.rss_per_cluster_bytes),
            c.hub_cpu_percent,
            c.socket_bytes_per_cluster_s,
            c.ip_kbit_per_cluster_s,
            c.window_s
        );
    }
    if let Some(c) = r.connections.first() {
        let _ = writeln!(
            s,
            "\nThe hub with no cluster connected: {}.",
            mib(c.hub_rss_empty_bytes as f64)
        );
    }

    let _ = writeln!(
        s,
        "\n## Reconnect storm\n\n\
         The hub is stopped and started again with every cluster connected; the clusters \
         reconnect with jittered backoff. Nothing changed meanwhile, so nothing should be sent \
         again.\n\n\
         | clusters | all back (median) | after /readyz | runs | desired re-sent | bytes queued per cluster |\n\
         |---:|---:|---:|---|---:|---:|"
    );
    for st in &r.storms {
        let runs: Vec<String> = st.all_back_s.iter().map(|v| format!("{v:.1} s")).collect();
        let _ = writeln!(
            s,
            "| {} | {:.1} s | {:.1} s | {} | {} | {:.0} |",
            st.clusters,
            st.all_back_median_s,
            st.after_ready_median_s,
            runs.join(", "),
            st.desired_resent + st.receipts_again,
            st.bytes_queued_per_cluster
        );
    }

    if let Some(i) = &r.ingest {
        let _ = writeln!(
            s,
            "\n## Status ingest\n\n\
             {} clusters each offer {:.0} status updates per second ({:.0}/s in all) over their \
             streams; the hub stores each one and makes it durable with a group commit (one \
             fsync per group). Counted for {:.0} s after a 1 s warm-up. Baseline: etcd with \
             default durability, the same number of client connections each putting a value of \
             the same size ({} bytes) one after another.\n\n\
             | | updates/s (median) | runs | hub CPU |\n|---|---:|---|---:|",
            i.clients,
            i.offered_per_s / i.clients.max(1) as f64,
            i.offered_per_s,
            i.window_s,
            i.status_bytes
        );
        let runs = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| Tether | {:.0} | {} | {:.0} % |",
            i.tether_median_per_s,
            runs(&i.tether_per_s),
            i.tether_hub_cpu_percent
        );
        if let Some(e) = i.etcd_median_per_s {
            let _ = writeln!(s, "| etcd | {e:.0} | {} | |", runs(&i.etcd_per_s));
            let _ = writeln!(s, "| ratio | {:.1}x | | |", i.ratio.unwrap_or_default());
        }
    }

    let _ = writeln!(
        s,
        "\n## Joins\n\n\
         New clusters joined per second, 64 at a time: each makes a key and CSR, opens TLS \
         against the pinned CA, and the hub signs a certificate and persists the cluster before \
         answering.\n\n| clusters | joins | seconds | joins/s |\n|---|---:|---:|---:|"
    );
    for j in &r.joins {
        let _ = writeln!(
            s,
            "| {} → {} | {} | {:.2} | {:.0} |",
            j.from,
            j.to,
            j.to - j.from,
            j.seconds,
            j.per_s
        );
    }

    if let Some(a) = &r.agent {
        let _ = writeln!(
            s,
            "\n## Agent footprint\n\n\
             A real `tether-agent` process against the Kubernetes API emulator, with one \
             workload of {} objects (Deployments, Services, ConfigMaps) applied and Available, \
             watched for {:.0} s.\n\n\
             | idle RSS | idle CPU | agent binary | hub binary |\n|---:|---:|---:|---:|\n\
             | {} | {:.2} % | {} | {} |",
            a.objects,
            a.window_s,
            mib(a.rss_bytes as f64),
            a.cpu_percent,
            mib(a.binary_bytes as f64),
            mib(a.hub_binary_bytes as f64),
        );
    }
    if !r.placement.is_empty() {
        let _ = writeln!(
            s,
            "\n## Placement decisions\n\n\
             The scheduler's planner alone (`hub/src/control/scheduler/plan.rs`), timed in \
             process: each workload selects every cluster and takes 3 spread over 8 regions. \
             *First* places it; *steady* plans it again with nothing to change, which is what \
             every scheduling pass over an unchanged workload costs. The ratio compares the \
             largest fleet's per-workload time with the smallest's (linear scaling: the ratio \
             of the fleet sizes).\n\n\
             | clusters | workloads | first (median / p99) | steady (median / p99) | all placed, one pass |\n\
             |---:|---:|---:|---:|---:|"
        );
        for p in &r.placement {
            let _ = writeln!(
                s,
                "| {} | {} | {} / {} | {} / {} | {} |",
                p.clusters,
                p.workloads,
                ms(p.place_median_ms),
                ms(p.place_p99_ms),
                ms(p.steady_median_ms),
                ms(p.steady_p99_ms),
                ms(p.place_all_ms)
            );
        }
        if let (Some(a), Some(b)) = (r.placement.first(), r.placement.last())
            && a.clusters < b.clusters
            && a.place_median_ms > 0.0
        {
            let _ = writeln!(
                s,
                "\n{}x the clusters: {:.1}x the time per placement.",
                b.clusters / a.clusters,
                b.place_median_ms / a.place_median_ms
            );
        }
    }
    s.push_str(METHOD);
    s
}

const METHOD: &str = "
## How it is measured

- **Simulated clusters** (`tether-loadgen`, `tests/src/loadgen/fleet.rs`) are real agent
  sessions: each joins with its own token, generates its own key, receives its own
  certificate and runs `tether_agent::session::run` over its own mutual-TLS connection. Only
  the applier is in memory: it records the time a revision arrives, acknowledges it and
  reports it Available, as the real agent does after persisting it.
- **Latency** is measured in the load generator's process from just before the client call
  to each receipt, on one clock. Medians over the runs of each figure (p50, p99, last
  cluster); “worst last” is the slowest run.
- **Memory and CPU** come from `/proc/PID/status` (VmRSS) and `/proc/PID/stat` (utime +
  stime); traffic from `/proc/PID/io` (rchar + wchar: socket bytes, TLS included) and
  `/proc/net/snmp` (TCP segments).
- **Baselines** run first and alone: Mosquitto and etcd from the Debian packages with their
  defaults, TLS 1.3 with client certificates for Mosquitto. The MQTT clients
  (`tests/src/loadgen/mqtt.rs`) speak the minimum of MQTT 3.1.1 over the same rustls, so the
  broker is not slowed by its clients.
- Numbers from one machine vary from run to run by several percent; compare ratios measured in
  the same run, not absolute figures across machines.

Why the missed targets are missed, what bounds them and what would move them:
[docs/performance.md](performance.md).
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::bench::{Connections, Report};

    #[test]
    fn a_missed_target_is_marked() {
        let r = Report {
            machine: Default::default(),
            options: serde_json::Value::Null,
            fanout: Vec::new(),
            connections: vec![Connections {
                clusters: 10,
                hub_rss_bytes: 100 << 20,
                hub_rss_empty_bytes: 10 << 20,
                rss_per_cluster_bytes: 9.0 * 1024.0 * 1024.0,
                hub_cpu_percent: 1.0,
                socket_bytes_per_cluster_s: 10.0,
                ip_kbit_per_cluster_s: 0.1,
                window_s: 60.0,
            }],
            storms: Vec::new(),
            ingest: None,
            joins: Vec::new(),
            agent: None,
            placement: Vec::new(),
            elapsed_s: 1.0,
        };
        let md = render(&r, "./scripts/bench", "today");
        assert!(md.contains("hub RSS <= 64 KiB per cluster | 9216.0 KiB per cluster (100.0 MiB total) | **missed**"), "{md}");
        assert!(
            md.contains("idle cluster traffic <= 0.25 kbit/s | 0.100 kbit/s | met"),
            "{md}"
        );
    }
}
