//! N simulated member clusters in one process.
//!
//! Each simulated cluster is a real agent as far as the hub can tell: it joins with its own
//! token, makes its own key, gets its own certificate, and runs the agent's own session code
//! (`tether_agent::session::run`: mutual TLS, Hello/Welcome, heartbeats, acknowledgements,
//! reconnect with jitter). Only the applier differs: desired state is kept in memory
//! ([`MemWorkloads`]) and reported Available at once, and every receipt is timed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use tether_agent::credentials::Credential;
use tether_agent::reconcile::Workloads;
use tether_agent::session::{self, FactsSource, SessionOptions};
use tether_agent::status::{Health, ObjectState, StatusBoard, WorkloadStatus};
use tether_client::{ClientConfig, connect as client};
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::tls::ChannelOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// When a simulated cluster received a revision.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    pub cluster: u32,
    pub at: Instant,
}

/// Every receipt, by workload and revision.
#[derive(Default)]
pub struct Recorder {
    receipts: Mutex<HashMap<(String, u64), Vec<Receipt>>>,
    bytes: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Vec<Receipt>>> {
        self.receipts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, workload: &str, revision: u64, receipt: Receipt, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.lock()
            .entry((workload.to_string(), revision))
            .or_default()
            .push(receipt);
    }

    /// How many clusters received this revision (each counted once: a cluster whose session
    /// broke before it acknowledged is sent the revision again, which [`Recorder::total`]
    /// counts).
    pub fn count(&self, workload: &str, revision: u64) -> usize {
        self.receipts(workload, revision).len()
    }

    /// The first receipt of this revision by each cluster that received it.
    pub fn receipts(&self, workload: &str, revision: u64) -> Vec<Receipt> {
        let mut seen = std::collections::HashSet::new();
        self.lock()
            .get(&(workload.to_string(), revision))
            .map(|all| {
                all.iter()
                    .filter(|r| seen.insert(r.cluster))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bundle bytes received so far, over all clusters.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Receipts of every revision of `workload`, so re-deliveries can be counted.
    pub fn total(&self, workload: &str) -> usize {
        self.lock()
            .iter()
            .filter(|((w, _), _)| w == workload)
            .map(|(_, v)| v.len())
            .sum()
    }
}

/// The in-memory applier of one simulated cluster.
pub struct MemWorkloads {
    index: u32,
    held: Mutex<HashMap<String, u64>>,
    board: StatusBoard,
    recorder: Arc<Recorder>,
    /// Bumped by the status pump so every report differs from the last.
    tick: AtomicU64,
}

impl MemWorkloads {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a fresh status for every held workload (the status pump).
    pub fn touch(&self) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let held: Vec<(String, u64)> = self.held().iter().map(|(w, r)| (w.clone(), *r)).collect();
        for (w, r) in held {
            self.board.publish(status(&w, r, tick));
        }
    }
}

/// A status as a small real workload reports it: one ready object, a feedback value.
pub fn status(workload: &str, revision: u64, tick: u64) -> WorkloadStatus {
    let mut s = WorkloadStatus::roll_up(
        workload,
        revision,
        vec![ObjectState {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: workload.into(),
            health: Health::Ready,
            message: String::new(),
        }],
    );
    s.feedback.insert(
        "Deployment/default/web .status.readyReplicas".into(),
        format!("{}", tick % 1000),
    );
    s
}

impl Workloads for MemWorkloads {
    fn applied(&self) -> HashMap<String, u64> {
        self.held().clone()
    }

    fn desired(
        &self,
        workload: String,
        revision: u64,
        _hash: String,
        bundle: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), String>> {
        let receipt = Receipt {
            cluster: self.index,
            at: Instant::now(),
        };
        self.recorder
            .record(&workload, revision, receipt, bundle.len());
        self.held().insert(workload.clone(), revision);
        self.board.publish(status(&workload, revision, 0));
        Box::pin(async { Ok(()) })
    }

    fn remove(&self, workload: &str) {
        self.held().remove(workload);
        self.board.removed(workload);
    }

    fn assigned(&self, revisions: &HashMap<String, u64>) {
        let gone: Vec<String> = self
            .held()
            .keys()
            .filter(|w| !revisions.contains_key(*w))
            .cloned()
            .collect();
        for w in gone {
            self.remove(&w);
        }
    }

    fn board(&self) -> &StatusBoard {
        &self.board
    }
}

struct StaticFacts;

impl FactsSource for StaticFacts {
    fn gather(&self) -> BoxFuture<'_, pb::ClusterFacts> {
        Box::pin(async { facts() })
    }
}

fn facts() -> pb::ClusterFacts {
    pb::ClusterFacts {
        agent_version: format!("loadgen-{}", env!("CARGO_PKG_VERSION")),
        kubernetes_version: "v1.33.4".into(),
        node_count: 1,
        platform: "tether-loadgen".into(),
        api_reachable: true,
        api_error: String::new(),
    }
}

/// One simulated cluster.
struct Sim {
    workloads: Arc<MemWorkloads>,
    credential: watch::Sender<Credential>,
    session: Option<(CancellationToken, JoinHandle<()>)>,
}

/// How the fleet joins and connects.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Cluster names are `PREFIX-00001`, ...
    pub prefix: String,
    pub labels: BTreeMap<String, String>,
    /// Sessions started per second (0: all at once).
    pub connect_rate: f64,
    /// Joins in flight at once.
    pub join_concurrency: usize,
    /// Reconnect backoff cap of the simulated agents.
    pub max_backoff: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            prefix: "sim".into(),
            labels: BTreeMap::new(),
            connect_rate: 0.0,
            join_concurrency: 64,
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Token requests in flight at once: the hub allows one user 8 calls in flight by default.
const TOKEN_CALLS: usize = 6;

/// What growing the fleet took.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    pub joined: usize,
    /// Creating the tokens through the client API (not part of the join rate).
    pub tokens: Duration,
    /// Joining: key, CSR, TLS, the hub signing and persisting.
    pub joins: Duration,
}

/// The simulated clusters, and the admin client that made their tokens.
pub struct Fleet {
    opts: FleetOptions,
    hub: String,
    admin: HubApiServiceClient<Channel>,
    sims: Vec<Sim>,
    recorder: Arc<Recorder>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hub", &self.hub)
            .field("clusters", &self.sims.len())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A fleet that creates its tokens with the tetherctl config at `admin_config`.
    pub async fn new(admin_config: &Path, opts: FleetOptions) -> anyhow::Result<Fleet> {
        let config = ClientConfig::load(admin_config)?;
        let admin = client::connect(&config)
            .await
            .map_err(|e| anyhow!("{}", e.message))?;
        Ok(Fleet {
            opts,
            hub: config.hub.clone(),
            admin,
            sims: Vec::new(),
            recorder: Arc::new(Recorder::default()),
        })
    }

    pub fn len(&self) -> usize {
        self.sims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sims.is_empty()
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// The admin client (for applying workloads).
    pub fn admin(&self) -> HubApiServiceClient<Channel> {
        self.admin.clone()
    }

    pub fn name(&self, index: usize) -> String {
        format!("{}-{:05}", self.opts.prefix, index + 1)
    }

    /// Joins `count` new clusters; they are not connected yet (see [`Fleet::connect`]).
    pub async fn grow(&mut self, count: usize) -> anyhow::Result<Growth> {
        let first = self.sims.len();
        let names: Vec<String> = (first..first + count).map(|i| self.name(i)).collect();
        let started = Instant::now();
        let labels: HashMap<String, String> = self
            .opts
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let admin = self.admin.clone();
        let tokens: Vec<anyhow::Result<(String, String)>> = stream::iter(names.clone())
            .map(|cluster| {
                let mut admin = admin.clone();
                let labels = labels.clone();
                async move {
                    let r = admin
                        .create_token(pb::CreateTokenRequest {
                            cluster: cluster.clone(),
                            labels,
                            ttl_seconds: 3600,
                            reusable: false,
                            ..Default::default()
                        })
                        .await
                        .with_context(|| format!("creating a token for {cluster}"))?
                        .into_inner();
                    Ok((r.token, r.ca_pin))
                }
            })
            // One admin identity: stay under the hub's --calls-in-flight-per-user (8).
            .buffered(TOKEN_CALLS)
            .collect()
            .await;
        let tokens: Vec<(String, String)> = tokens.into_iter().collect::<Result<_, _>>()?;
        let tokens_took = started.elapsed();

        let started = Instant::now();
        let hub = self.hub.clone();
        let joined: Vec<anyhow::Result<Credential>> = stream::iter(tokens)
            .map(|(token, pin)| {
                let hub = hub.clone();
                async move {
                    tether_agent::join::join_once(
                        &hub,
                        &token,
                        &pin,
                        facts(),
                        &Default::default(),
                        &ChannelOptions::default(),
                    )
                    .await
                    .map_err(|e| anyhow!("join failed: {e}"))
                }
            })
            .buffered(self.opts.join_concurrency.max(1))
            .collect()
            .await;
        let joins_took = started.elapsed();
        for (i, cred) in joined.into_iter().enumerate() {
            let cred = cred?;
            let (tx, _) = watch::channel(cred);
            self.sims.push(Sim {
                workloads: Arc::new(MemWorkloads {
                    index: (first + i) as u32,
                    held: Mutex::default(),
                    board: StatusBoard::default(),
                    recorder: self.recorder.clone(),
                    tick: AtomicU64::new(0),
                }),
                credential: tx,
                session: None,
            });
        }
        Ok(Growth {
            joined: count,
            tokens: tokens_took,
            joins: joins_took,
        })
    }

    /// Starts the session of every cluster that has none, at the configured rate.
    pub async fn connect(&mut self) {
        let rate = self.opts.connect_rate;
        let started = Instant::now();
        let waiting = self.sims.iter_mut().filter(|s| s.session.is_none());
        for (n, sim) in waiting.enumerate() {
            if rate > 0.0 {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let stop = CancellationToken::new();
            let mut opts = SessionOptions::new(self.hub.clone());
            opts.max_backoff = self.opts.max_backoff;
            let run = session::run(
                opts,
                sim.credential.subscribe(),
                Arc::new(StaticFacts),
                sim.workloads.clone() as Arc<dyn Workloads>,
                Arc::new(tokio::sync::Notify::new()),
                None,
                stop.clone(),
            );
            let task = tokio::spawn(async move {
                if let Err(e) = run.await {
                    tracing::error!(error = %e, "simulated agent stopped");
                }
            });
            sim.session = Some((stop, task));
        }
    }

    /// Ends every session (the credentials stay: [`Fleet::connect`] resumes).
    pub async fn disconnect(&mut self) {
        let mut tasks = Vec::new();
        for sim in &mut self.sims {
            if let Some((stop, task)) = sim.session.take() {
                stop.cancel();
                tasks.push(task);
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Publishes a fresh status for every workload of the first `clusters` clusters, `rate`
    /// times per second each, until the returned token is cancelled.
    pub fn pump_status(&self, clusters: usize, rate: f64) -> CancellationToken {
        let stop = CancellationToken::new();
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        for sim in self.sims.iter().take(clusters) {
            let (w, stop) = (sim.workloads.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => w.touch(),
                    }
                }
            });
        }
        stop
    }
}
