//! A small run of the benchmark harness, so it does not rot between benchmark runs. The real
//! suite is `./scripts/bench` (never part of the test command); this checks that every
//! scenario runs end to end and that its figures are consistent, not how fast anything is.

use serde_json::Value;
use tether_tests::harness::{bin, run, stderr, stdout};
use tether_tests::loadgen::{etcd, mqtt};

#[test]
fn every_benchmark_scenario_runs_at_small_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (out, md) = (
        dir.path().join("results.json"),
        dir.path().join("benchmarks.md"),
    );
    let baselines = mqtt::mosquitto().is_some() && etcd::etcd().is_some();
    assert!(
        baselines || std::env::var_os("CI").is_none(),
        "CI must have mosquitto and etcd (./scripts/test installs them)"
    );
    let mut cmd = std::process::Command::new(bin("tether-loadgen"));
    cmd.args(["bench", "--sizes", "8,16", "--repeats", "2"])
        .args([
            "--ingest-clients",
            "4",
            "--ingest-rate",
            "50",
            "--ingest-window",
            "1s",
        ])
        .args([
            "--idle-window",
            "1s",
            "--agent-objects",
            "6",
            "--payload-bytes",
            "512",
        ])
        // Heartbeats within the one-second idle window, so it sees traffic.
        .args(["--heartbeat-interval", "200ms"])
        .arg("--dir")
        .arg(dir.path().join("scratch"))
        .arg("--out")
        .arg(&out)
        .arg("--markdown")
        .arg(&md);
    if !baselines {
        cmd.arg("--allow-missing-baselines");
    }
    let o = run(&mut cmd);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    // Fan-out: every cluster of each size received every run, after the apply call.
    let fanout = r["fanout"].as_array().unwrap();
    assert_eq!(fanout.len(), 2, "{r:#}");
    for (f, n) in fanout.iter().zip([8, 16]) {
        assert_eq!(f["clusters"], n);
        let runs = f["tether"]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        for run in runs {
            assert_eq!(run["n"], n, "{f:#}");
            assert!(run["max_ms"].as_f64().unwrap() >= run["p50_ms"].as_f64().unwrap());
        }
        // The bundle carries the 512-byte payload, compressed a little.
        assert!(f["tether_bundle_bytes"].as_f64().unwrap() > 256.0, "{f:#}");
        if baselines {
            assert_eq!(f["mosquitto"]["runs"][0]["n"], n, "{f:#}");
            assert!(f["ratio_max"].as_f64().unwrap() > 0.0);
        }
    }
    // Idle connections cost the hub memory and traffic.
    for c in r["connections"].as_array().unwrap() {
        assert!(
            c["hub_rss_bytes"].as_u64().unwrap() > c["hub_rss_empty_bytes"].as_u64().unwrap() / 2
        );
        assert!(
            c["socket_bytes_per_cluster_s"].as_f64().unwrap() > 0.0,
            "{c:#}"
        );
    }
    // A restart brings everyone back and sends nothing again.
    for s in r["storms"].as_array().unwrap() {
        assert_eq!(s["all_back_s"].as_array().unwrap().len(), 2);
        assert_eq!(s["desired_resent"], 0, "{s:#}");
        assert_eq!(s["receipts_again"], 0, "{s:#}");
    }
    // Status updates were stored; the baseline stored puts.
    let ingest = &r["ingest"];
    assert!(
        ingest["tether_median_per_s"].as_f64().unwrap() > 0.0,
        "{ingest:#}"
    );
    if baselines {
        assert!(
            ingest["etcd_median_per_s"].as_f64().unwrap() > 0.0,
            "{ingest:#}"
        );
    }
    // Joins happened in three steps: the ingest clusters, then up to each size.
    let joins: Vec<(u64, u64)> = r["joins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["from"].as_u64().unwrap(), j["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(joins, vec![(0, 4), (4, 8), (8, 16)]);
    // The real agent was measured.
    assert!(r["agent"]["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(r["agent"]["binary_bytes"].as_u64().unwrap() > 1 << 20);

    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Targets") && text.contains("| 16 |"),
        "{text}"
    );
}

#[test]
fn the_store_comparison_runs_at_small_scale() {
    let Some(_) = tether_tests::etcd::require("the_store_comparison_runs_at_small_scale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (out, md) = (dir.path().join("stores.json"), dir.path().join("stores.md"));
    let o = run(std::process::Command::new(bin("tether-loadgen"))
        .args(["stores", "--clusters", "8", "--repeats", "1"])
        .args([
            "--ingest-rate",
            "20",
            "--ingest-window",
            "1s",
            "--idle-window",
            "1s",
        ])
        .args(["--heartbeat-interval", "300ms", "--lease-ttl", "3s"])
        .arg("--dir")
        .arg(dir.path().join("scratch"))
        .arg("--out")
        .arg(&out)
        .arg("--markdown")
        .arg(&md));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let r: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let runs = r["runs"].as_array().unwrap();
    let kinds: Vec<(String, u64, bool)> = runs
        .iter()
        .map(|x| {
            (
                x["store"].as_str().unwrap().to_string(),
                x["hubs"].as_u64().unwrap(),
                x["relayed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("embedded".into(), 1, false),
            ("etcd".into(), 1, false),
            ("etcd".into(), 3, false),
            ("etcd".into(), 3, true)
        ]
    );
    for x in runs {
        assert!(x["ingest_median_per_s"].as_f64().unwrap() > 0.0, "{x:#}");
        assert_eq!(x["fanout"]["runs"][0]["n"], 8, "{x:#}");
        // Who was busy during the fan-out: processes that do not exist in a run count 0.
        let c = &x["fanout_cpu"];
        assert!(c["wall_s"].as_f64().unwrap() > 0.0, "{c:#}");
        let hubs = x["hubs"].as_u64().unwrap();
        let etcd = x["store"] == "etcd";
        for (field, present) in [
            ("serving_hub_s", true),
            ("standbys_s", hubs > 1),
            ("etcd_s", etcd),
            ("fleet_s", true),
        ] {
            let v = c[field].as_f64().unwrap();
            assert!(v >= 0.0 && (present || v == 0.0), "{field}: {c:#}");
        }
    }
    for x in runs {
        assert!(x["joins_per_s"].as_f64().unwrap() > 0.0, "{x:#}");
        let idle = &x["idle"];
        assert!(
            idle["hub_rss_bytes"].as_u64().unwrap() > idle["hub_rss_empty_bytes"].as_u64().unwrap(),
            "{idle:#}"
        );
    }
    // One hub: a storm that re-sends nothing.
    for x in &runs[..2] {
        let s = &x["storm"];
        assert_eq!(s["desired_resent"], 0, "{s:#}");
        assert!(x["takeover"].is_null() && x["handover"].is_null(), "{x:#}");
    }
    // Three: a handover and a takeover, every cluster back on the new hub, nothing re-sent.
    for t in [&runs[2]["handover"], &runs[2]["takeover"]] {
        assert!(
            t["all_back_s"].as_f64().unwrap() >= t["serving_s"].as_f64().unwrap(),
            "{t:#}"
        );
        let back: Vec<f64> = ["half_back_s", "p90_back_s", "p99_back_s", "all_back_s"]
            .iter()
            .map(|k| t[*k].as_f64().unwrap())
            .collect();
        assert!(
            back[0] > 0.0 && back.windows(2).all(|w| w[0] <= w[1]),
            "{t:#}"
        );
        assert_eq!(t["resent"], 0.0, "{t:#}");
    }
    assert!(runs[2]["storm"].is_null());
    // A standby watching etcd was measured (one hub has none to measure).
    for x in &runs[..2] {
        assert!(x["watcher"].is_null(), "{x:#}");
    }
    for x in &runs[2..] {
        let w = &x["watcher"];
        assert!(w["rss_bytes"].as_u64().unwrap() > 0, "{w:#}");
        assert!(w["ingest_cpu_percent"].as_f64().unwrap() >= 0.0, "{w:#}");
    }
    // Through a standby: it terminated every cluster's connection (and the benchmark's own
    // calls may be in flight), and they came back through it after the serving hub's kill.
    let relay = &runs[3]["idle"]["relay"];
    assert!(relay["connections"].as_f64().unwrap() >= 8.0, "{relay:#}");
    let t = &runs[3]["takeover"];
    assert!(
        t["all_back_s"].as_f64().unwrap() >= t["serving_s"].as_f64().unwrap(),
        "{t:#}"
    );
    assert_eq!(t["resent"], 0.0, "{t:#}");
    assert!(runs[3]["handover"].is_null());
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("| etcd (3 hubs) | 8 |")
            && text.contains("| embedded (1 hub) | 8 | the hub stopped and started again")
            && text.contains("| etcd (3 hubs) | 8 | the serving hub killed")
            && text
                .contains("| etcd (3 hubs, fleet through a standby) | 8 | the serving hub killed")
            && text.contains("The standby in front of the fleet")
            && text.contains("A standby that relays nothing in the etcd (3 hubs) run"),
        "{text}"
    );
}
