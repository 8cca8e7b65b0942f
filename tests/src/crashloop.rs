//! The crash loop both stores are held to: `tetherctl apply` one write after another while
//! the hub serving them is killed (`kill -9`) at a random write, then every write the hub
//! acknowledged must still be there. The embedded store's test restarts the hub; the etcd
//! test lets a standby take over.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use crate::harness::{bin, run};

/// What was written and acknowledged across the rounds.
#[derive(Debug)]
pub struct Writes {
    workloads: u64,
    /// The latest acknowledged value per workload.
    pub acked: BTreeMap<u64, u64>,
    /// Every value attempted per workload (acknowledged or not: an unacknowledged write may
    /// still have landed).
    attempted: BTreeMap<u64, Vec<u64>>,
    counter: u64,
    /// Writes acknowledged in all.
    pub acknowledged: u32,
    seed: u64,
}

impl Writes {
    /// Writes spread over `workloads` workloads (`w0`, `w1`, ...); `seed` fixes where each
    /// round's kill falls, so a failure can be replayed.
    pub fn new(workloads: u64, seed: u64) -> Writes {
        Writes {
            workloads,
            acked: BTreeMap::new(),
            attempted: BTreeMap::new(),
            counter: 0,
            acknowledged: 0,
            seed,
        }
    }

    /// xorshift: reproducible without a dependency.
    fn rand(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// One round: a writer applies `yaml(name, value)` through `tetherctl --config config`,
    /// one write after another, and `kill` runs while write number 1..=`at_most` (chosen at
    /// random) is in flight. Returns once the writer saw the hub die.
    pub fn round(
        &mut self,
        config: &Path,
        yaml_dir: &Path,
        at_most: u64,
        yaml: fn(&str, &str) -> String,
        kill: impl FnOnce(),
    ) {
        let k = 1 + self.rand() % at_most;
        let (tx, rx) = mpsc::channel::<(u64, u64, bool)>();
        let (started_tx, started_rx) = mpsc::channel::<u64>();
        // The writer stops at its first failure, or two writes after the kill: with hubs that
        // hold a client's connection through a takeover, writes may never fail.
        let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_after = killed.clone();
        let (cfg, yd, first, workloads) = (
            config.to_path_buf(),
            yaml_dir.to_path_buf(),
            self.counter,
            self.workloads,
        );
        let writer = std::thread::spawn(move || {
            let mut after_kill = 0;
            for n in 0.. {
                if stop_after.load(std::sync::atomic::Ordering::SeqCst) {
                    after_kill += 1;
                    if after_kill > 2 {
                        return;
                    }
                }
                let value = first + n + 1;
                let w = value % workloads;
                let path = yd.join(format!("w{value}.yaml"));
                std::fs::write(&path, yaml(&format!("w{w}"), &value.to_string()))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                let _ = started_tx.send(n);
                let out = run(Command::new(bin("tetherctl"))
                    .arg("--config")
                    .arg(&cfg)
                    .args(["apply", "-f"])
                    .arg(&path));
                let ok = out.status.success();
                if tx.send((w, value, ok)).is_err() || !ok {
                    return;
                }
            }
        });
        for n in started_rx.iter() {
            if n >= k {
                break;
            }
        }
        kill();
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = writer.join();
        for (w, value, ok) in rx.try_iter() {
            self.counter = self.counter.max(value);
            self.attempted.entry(w).or_default().push(value);
            if ok {
                self.acked.insert(w, value);
                self.acknowledged += 1;
            }
        }
    }

    /// Asserts every acknowledged write is there, or a later attempt that also landed:
    /// `stored(w)` reads workload `w`'s value from the hub now serving (None: missing).
    pub fn check(&self, round: u32, stored: impl Fn(u64) -> Option<u64>) {
        for (w, value) in &self.acked {
            let got = stored(*w);
            assert!(
                got.is_some_and(|s| s >= *value && self.attempted[w].contains(&s)),
                "round {round}: w{w} holds {got:?}, but {value} was acknowledged"
            );
        }
    }
}
