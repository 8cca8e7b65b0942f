//! The composition root and the `serve` loop: [`Hub::open`] builds every part of the hub
//! from its data directory and settings, each given exactly what it needs (see
//! [`crate::api::state::Hub`]); [`serve`] runs the ports, the scheduler's task and the
//! housekeeping until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::pki::{self, CertificateAuthority};
use tether_common::tls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::datadir::{DataDir, write_file};
use crate::api::relay::{self, Relay};
use crate::api::server;
pub use crate::api::state::{Hub, Settings};
use crate::api::tls_auth::{ClientVerifier, ClusterSerials};
use crate::api::{agent, client};
use crate::control::RecordLock;
use crate::control::audit::Audit;
use crate::control::clusters::Clusters;
use crate::control::joins::{Joins, JoinsDeps};
use crate::control::ratelimit::FailureLimiter;
use crate::control::teams::Teams;
use crate::control::tokens::Tokens;
use crate::control::users::Users;
use crate::control::workloads::Workloads;
use crate::metrics::Metrics;
use crate::sessions::access::Access;
use crate::sessions::{EndReason, Sessions};
use crate::store::records::Records;
use crate::store::{Contents, Durable, EtcdConfig, EtcdStore, RedbStore, Store, StoreError};

/// Where the hub keeps its records.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// redb in the data directory.
    Embedded,
    /// An etcd cluster: this hub serves once it holds the prefix's lease.
    Etcd(EtcdConfig),
}

/// How often a store that failed to write is tried again.
const STORE_RETRY: Duration = Duration::from_secs(2);
/// How often a hub starting on an etcd that does not answer tries again.
const ETCD_START_RETRY: Duration = Duration::from_secs(2);

/// The largest message an agent may send (status reports are bounded well below this);
/// larger ones are refused and the stream closed with a reason.
const AGENT_MESSAGE_LIMIT: usize = 4 << 20;

/// Serving certificates are renewed at start-up when they have less than this left.
const SERVING_CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// Lifetime of a (re)issued serving certificate.
pub use crate::admin::datadir::SERVING_CERT_LIFETIME;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {0} is not initialized (run: tether-hub init --data-dir {0})")]
    NotInitialized(String),
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::admin::datadir::WriteError),
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store has no hub settings: was it initialized by `tether-hub init`?")]
    NoMeta,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build gRPC reflection: {0}")]
    Reflection(String),
    #[error(transparent)]
    Lock(#[from] crate::admin::datadir::LockError),
    #[error("this hub is already serving")]
    AlreadyServing,
    #[error(
        "etcd prefix {0} holds no hub; move one there first \
         (tether-hub migrate --from-data-dir DIR --to-etcd ...)"
    )]
    EtcdEmpty(String),
}

fn read(path: &std::path::Path) -> Result<String, StartError> {
    std::fs::read_to_string(path).map_err(|source| StartError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The CA that signs, the previous one while a rotation is under way, and the PEM bundle
/// of every CA trusted.
fn load_cas(
    dir: &DataDir,
) -> Result<(CertificateAuthority, Option<CertificateAuthority>, String), StartError> {
    if !dir.ca_cert().exists() {
        return Err(StartError::NotInitialized(dir.root().display().to_string()));
    }
    let ca = CertificateAuthority::load(&read(&dir.ca_cert())?, &read(&dir.ca_key())?)?;
    let ca_previous = if dir.rotating() {
        Some(CertificateAuthority::load(
            &read(&dir.ca_previous_cert())?,
            &read(&dir.ca_previous_key())?,
        )?)
    } else {
        None
    };
    let trust_pem = match &ca_previous {
        Some(prev) => format!("{}{}", ca.cert_pem(), prev.cert_pem()),
        None => ca.cert_pem().to_string(),
    };
    Ok((ca, ca_previous, trust_pem))
}

impl Hub {
    /// Opens the hub in `dir` (CA, keys) on `store`, counting into `metrics`.
    pub fn open(
        dir: &DataDir,
        settings: Settings,
        store: Arc<dyn Store>,
        metrics: Metrics,
    ) -> Result<Arc<Hub>, StartError> {
        let (ca, ca_previous, trust_pem) = load_cas(dir)?;
        let signing_pin = ca.pin()?;
        let ca_pin = match &ca_previous {
            Some(prev) => prev.pin()?,
            None => signing_pin.clone(),
        };
        let records = Records::new(Durable::new(store));
        let meta = records.hub_meta()?.ok_or(StartError::NoMeta)?;
        let access = Arc::new(Access::default());
        let clusters = records.clusters()?;
        for c in &clusters {
            access.set(Identity::Cluster(c.name.clone()), c.cert_serials.clone());
        }
        for u in records.users()? {
            access.set(Identity::User(u.name.clone()), u.cert_serials.clone());
        }
        metrics.clusters.set(clusters.len() as i64);
        let join_limiter = Arc::new(FailureLimiter::new(
            settings.join_failures_per_minute,
            Duration::from_secs(60),
        ));
        let started_unix = tether_common::time::unix_now();
        let sessions = Sessions::new(metrics.clone());
        let write_lock = RecordLock::default();
        let ca = Arc::new(ca);
        let (scheduler, controller) = crate::control::scheduler::Scheduler::new(
            records.clone(),
            sessions.clone(),
            write_lock.clone(),
            crate::control::scheduler::Config {
                max_bundle_size: settings.max_bundle_size,
                interval: settings.schedule_interval,
                failovers_per_minute: settings.failovers_per_minute,
                started_unix,
                // Agents are back within a few heartbeats of a hub start; a cluster silent
                // past the offline grace (and at least 10 s) stops holding its wave.
                offline_settle: settings.offline_grace.max(Duration::from_secs(10)),
            },
        );
        Ok(Arc::new(Hub {
            dir: dir.clone(),
            tokens: Tokens::new(
                records.clone(),
                write_lock.clone(),
                settings.token_default_ttl,
                settings.token_max_ttl,
            ),
            users: Users::new(
                records.clone(),
                write_lock.clone(),
                ca.clone(),
                signing_pin.clone(),
                access.clone(),
            ),
            teams: Teams::new(records.clone(), write_lock.clone(), scheduler.clone()),
            joins: Joins::new(JoinsDeps {
                records: records.clone(),
                write_lock: write_lock.clone(),
                ca: ca.clone(),
                signing_pin: signing_pin.clone(),
                cert_lifetime: settings.cert_lifetime,
                access: access.clone(),
                metrics: metrics.clone(),
                join_limiter,
                scheduler: scheduler.clone(),
            }),
            clusters: Clusters::new(
                records.clone(),
                write_lock.clone(),
                sessions.clone(),
                access.clone(),
                metrics.clone(),
                scheduler.clone(),
            ),
            workloads: Workloads::new(records.clone(), sessions.clone(), scheduler.clone()),
            audit: Audit::new(records.clone()),
            scheduler,
            controller: std::sync::Mutex::new(Some(controller)),
            started_unix,
            proxy: crate::api::proxy::Proxy::default(),
            calls: Arc::new(crate::control::ratelimit::CallLimits::new(
                settings.calls_in_flight_per_user,
                settings.refused_calls_per_minute,
            )),
            records,
            ca,
            signing_pin,
            ca_previous,
            trust_pem,
            ca_pin,
            meta,
            settings,
            sessions,
            access,
            metrics,
        }))
    }

    /// Reads again which certificates each cluster and user may present: after another hub
    /// served (and joined or removed clusters) while this one stood by.
    fn reload_access(&self) -> Result<(), StoreError> {
        let clusters = self.records.clusters()?;
        let mut now: std::collections::HashMap<Identity, Vec<String>> = clusters
            .iter()
            .map(|c| (Identity::Cluster(c.name.clone()), c.cert_serials.clone()))
            .collect();
        for u in self.records.users()? {
            now.insert(Identity::User(u.name.clone()), u.cert_serials);
        }
        for gone in self.access.identities() {
            if !now.contains_key(&gone) {
                self.access.remove(&gone);
            }
        }
        for (identity, serials) in now {
            self.access.set(identity, serials);
        }
        self.metrics.clusters.set(clusters.len() as i64);
        Ok(())
    }

    /// The serving certificate chain and key, reissued first if close to expiry.
    fn serving_cert(&self, dir: &DataDir) -> Result<(String, String), StartError> {
        let chain = read(&dir.hub_cert())?;
        let key = read(&dir.hub_key())?;
        let not_after = pki::first_cert_der(&chain)
            .and_then(|der| pki::inspect(&der))
            .map(|i| i.not_after)
            .unwrap_or(0);
        let left = not_after - tether_common::time::unix_now();
        if left > SERVING_CERT_RENEW_BEFORE.as_secs() as i64 {
            return Ok((chain, key));
        }
        tracing::info!(sans = ?self.meta.sans, "serving certificate expires soon; issuing a new one");
        let issued = self
            .ca
            .issue_server(&self.meta.sans, SERVING_CERT_LIFETIME)?;
        let chain = format!("{}{}", issued.cert_pem, self.ca.cert_pem());
        write_file(&dir.hub_key(), issued.key_pem.as_bytes())?;
        write_file(&dir.hub_cert(), chain.as_bytes())?;
        Ok((chain, issued.key_pem))
    }
}

/// Listening addresses of a running hub.
#[derive(Debug, Clone)]
pub struct Listen {
    pub tls: SocketAddr,
    pub metrics: SocketAddr,
    /// With etcd: where the other hubs reach this one's TLS port (`host:port`).
    pub peer: String,
}

/// What a hub on etcd has once it holds the lease.
struct OnEtcd {
    store: Arc<EtcdStore>,
    listener: TcpListener,
    relay: Arc<Relay>,
    /// Set once this hub's own server takes `listener` over from the standby relay: only
    /// then may connections waiting in the relay be handed to this hub's own server.
    port_served: Arc<std::sync::atomic::AtomicBool>,
}

/// Opens the etcd store and waits, standing by, until this hub holds the prefix's lease.
/// Meanwhile its TLS port relays every connection to the hub that serves. `None` if
/// `shutdown` came first.
async fn open_etcd(
    config: EtcdConfig,
    holder: String,
    dir: &DataDir,
    listen: &Listen,
    metrics: &Metrics,
    ready: &ReadyWhen,
    shutdown: &CancellationToken,
) -> Result<Option<OnEtcd>, StartError> {
    let prefix = config.prefix.clone();
    let Some((store, contents)) = connect_etcd(config, holder, shutdown).await? else {
        return Ok(None);
    };
    if contents == Contents::Empty {
        return Err(StartError::EtcdEmpty(prefix));
    }
    let store = Arc::new(store.with_peer_address(listen.peer.clone()));
    let _ = ready.etcd.set(Arc::downgrade(&store));
    let (relay, port_served) = relay_for(&store, dir, metrics)?;
    let listener = TcpListener::bind(listen.tls)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen.tls,
            source,
        })?;
    let stop_relaying = CancellationToken::new();
    let standby = tokio::spawn(relay.clone().standby(listener, stop_relaying.clone()));
    let (s, stop) = (store.clone(), shutdown.clone());
    let held = tokio::task::spawn_blocking(move || s.acquire(&stop)).await;
    stop_relaying.cancel();
    let listener = standby
        .await
        .map_err(|e| StoreError::Io(format!("the relay task failed: {e}")))?;
    let held =
        held.map_err(|e| StoreError::Io(format!("the etcd client thread failed: {e}")))??;
    Ok(held.then_some(OnEtcd {
        store,
        listener,
        relay,
        port_served,
    }))
}

/// Connects to etcd, waiting while it does not answer. `None` if `shutdown` came first.
async fn connect_etcd(
    config: EtcdConfig,
    holder: String,
    shutdown: &CancellationToken,
) -> Result<Option<(EtcdStore, Contents)>, StartError> {
    // An etcd that does not answer yet (a cluster still starting, a network not yet up) is
    // waited for, standing by like any hub without the lease: a supervisor restarting the
    // hub in a loop would only add noise. Mistakes in the configuration (a missing
    // certificate file) and a store written by a newer hub end the start at once.
    let mut waiting = false;
    loop {
        let (c, h) = (config.clone(), holder.clone());
        let connected = tokio::task::spawn_blocking(move || EtcdStore::connect(&c, &h))
            .await
            .map_err(|e| StoreError::Io(format!("the etcd client thread failed: {e}")))?;
        match connected {
            Ok(connected) => {
                if waiting {
                    tracing::info!("etcd answers");
                }
                return Ok(Some(connected));
            }
            Err(e @ (StoreError::Open { .. } | StoreError::Failed(_))) => {
                if !waiting {
                    tracing::warn!(error = %e, "etcd does not answer yet; standing by until it does");
                    waiting = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(ETCD_START_RETRY) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The relay a hub on etcd runs while it does not serve, and the flag that says its own
/// server owns the TLS port (until then a connection held through a takeover is not
/// delivered to it).
fn relay_for(
    store: &Arc<EtcdStore>,
    dir: &DataDir,
    metrics: &Metrics,
) -> Result<(Arc<Relay>, Arc<std::sync::atomic::AtomicBool>), StartError> {
    let (ca, _, trust_pem) = load_cas(dir)?;
    let target: relay::Target = {
        let store = Arc::downgrade(store);
        Arc::new(move || store.upgrade()?.serving_at())
    };
    let port_served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving: relay::Serving = {
        let (store, port_served) = (Arc::downgrade(store), port_served.clone());
        Arc::new(move || {
            port_served.load(std::sync::atomic::Ordering::SeqCst)
                && store.upgrade().is_some_and(|s| s.holds())
        })
    };
    let name = format!("{}-{}", hostname(), std::process::id());
    // Agents' connections are terminated here while this hub does not serve, their
    // certificates checked against the serials in this hub's copy of the records.
    let serials = {
        let store = Arc::downgrade(store);
        ClusterSerials(Arc::new(
            move |cluster: &str, serial: &str, not_before: i64| {
                store
                    .upgrade()
                    .is_some_and(|s| accepted_here(&s, cluster, serial, not_before))
            },
        ))
    };
    let verifier = Arc::new(ClientVerifier::clusters(&trust_pem, serials)?);
    let agents = Arc::new(tls::server_config(
        &read(&dir.hub_cert())?,
        &read(&dir.hub_key())?,
        verifier,
    )?);
    let relay = Relay::new(
        Arc::new(ca),
        trust_pem,
        name,
        (target, serving),
        metrics.clone(),
    )?;
    relay.terminate_agents(agents);
    Ok((relay, port_served))
}

/// How far the clocks of the hub that issued a certificate and one judging it may differ.
const HUB_CLOCK_SKEW: i64 = 30;

/// Whether a hub that does not serve lets an agent's certificate in (see `api::forward`):
/// its serial is in this hub's copy of the cluster's record, or the certificate is too new
/// for the copy to say — issued after etcd last confirmed the copy current (a join or a
/// renewal on the serving hub a moment ago, not yet through the watch). Such a one gets in
/// on trust of nothing: the serving hub checks the certificate against its own allow-list
/// on every request. An older one the copy does not list was revoked or superseded, and is
/// refused at the handshake as the serving hub would.
fn accepted_here(store: &EtcdStore, cluster: &str, serial: &str, not_before: i64) -> bool {
    let (record, age) = store.known(crate::store::Tree::Clusters, cluster.as_bytes());
    let listed = record
        .and_then(|r| crate::store::records::cluster_serials(cluster, &r).ok())
        .is_some_and(|listed| listed.iter().any(|s| s == serial));
    // When etcd last confirmed the copy current, on this hub's clock.
    let confirmed = age.map(|age| tether_common::time::unix_now() - age.as_secs() as i64);
    judged_here(listed, not_before, confirmed)
}

/// [`accepted_here`] on plain data: whether the certificate is `listed` in the copy, its
/// `not_before`, and when the copy was last `confirmed` current (unix seconds).
fn judged_here(listed: bool, not_before: i64, confirmed: Option<i64>) -> bool {
    let issued = not_before + pki::CLOCK_SKEW.as_secs() as i64;
    listed || confirmed.is_none_or(|confirmed| issued + HUB_CLOCK_SKEW >= confirmed)
}

/// Free space below which a hub on the embedded store is not ready. A write larger than
/// what is left fails, and on a disk that full writes fail or succeed by size (a small one
/// may still fit in the store file's free pages): the last write's outcome alone made
/// `/readyz` flap.
const MIN_FREE_DISK: u64 = 8 << 20;

/// What `/readyz` asks: the hub can write, or (etcd) it can relay to the hub that serves.
struct ReadyWhen {
    hub: std::sync::OnceLock<std::sync::Weak<Hub>>,
    etcd: std::sync::OnceLock<std::sync::Weak<EtcdStore>>,
    /// The embedded store's directory, whose free space readiness needs.
    store_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// When the gauges whose sampling grows with the fleet (open files, hints queued) were
    /// last sampled: at most once per [`COSTLY_SAMPLE_EVERY`], however often `/metrics` is
    /// asked (a scraper in a loop, a benchmark polling for its fleet).
    costly: crate::metrics::OncePer,
}

impl Default for ReadyWhen {
    fn default() -> Self {
        ReadyWhen {
            hub: Default::default(),
            etcd: Default::default(),
            store_dir: Default::default(),
            costly: crate::metrics::OncePer::new(COSTLY_SAMPLE_EVERY),
        }
    }
}

/// How often the gauges that cost a pass over every connection are sampled at most.
const COSTLY_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

impl ReadyWhen {
    fn ready(&self) -> bool {
        let room = self
            .store_dir
            .get()
            .and_then(|d| free_bytes(d))
            .is_none_or(|free| free >= MIN_FREE_DISK);
        let writes = room
            && self
                .hub
                .get()
                .and_then(std::sync::Weak::upgrade)
                .is_some_and(|h| h.records.store().healthy());
        let relays = self
            .etcd
            .get()
            .and_then(std::sync::Weak::upgrade)
            .is_some_and(|e| e.answering() && e.serving_at().is_some());
        writes || relays
    }

    /// Whether the costly gauges are due to be sampled again at `now` (and if so, notes it).
    fn costly_due(&self, now: std::time::Instant) -> bool {
        self.costly.due_at(now).is_some()
    }

    /// Sets the gauges sampled at each scrape. Weak references: the metrics server must not
    /// keep the hub or its store.
    fn sample(&self, m: &Metrics) {
        use std::sync::atomic::Ordering::Relaxed;
        let costly = self.costly_due(std::time::Instant::now());
        if let Some(hub) = self.hub.get().and_then(std::sync::Weak::upgrade) {
            let store = hub.records.store();
            if let Ok(n) = store.size_on_disk() {
                m.store_bytes.set(n as i64);
            }
            m.store_write_queue.set(store.queued() as i64);
            let s = store.stats();
            m.store_commits.set(s.commits.load(Relaxed) as i64);
            m.store_batches.set(s.batches.load(Relaxed) as i64);
            m.store_commit_failures.set(s.failures.load(Relaxed) as i64);
            if costly {
                m.session_queue.set(hub.sessions.queued() as i64);
            }
            m.serving.set(i64::from(store.serving()));
        }
        if costly && let Some((open, limit)) = tether_common::limits::open_files() {
            m.open_files.set(open as i64);
            m.open_files_limit.set(limit as i64);
        }
        if let Some(free) = self.store_dir.get().and_then(|d| free_bytes(d)) {
            m.store_free_bytes.set(free as i64);
        }
        if let Some(etcd) = self.etcd.get().and_then(std::sync::Weak::upgrade) {
            let (loads, warm) = etcd.load_counts();
            m.etcd_loads.set(loads as i64);
            m.etcd_warm_takeovers.set(warm as i64);
            let (revision, age) = etcd.currency().unwrap_or((0, None));
            m.etcd_revision.set(revision);
            m.etcd_copy_age_seconds
                .set(age.map_or(0, |a| a.as_secs() as i64));
        }
    }
}

/// Runs the hub until `shutdown` is cancelled.
pub async fn serve(
    dir: &DataDir,
    settings: Settings,
    listen: Listen,
    store: StoreChoice,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    if !dir.is_initialized() {
        return Err(StartError::NotInitialized(dir.root().display().to_string()));
    }
    // One process owns the directory: no second hub, no admin command replacing it under us.
    let _lock = dir.lock("serve it")?;
    let leftovers = dir.clean_scratch();
    if leftovers > 0 {
        tracing::info!(
            entries = leftovers,
            "removed what an interrupted backup or admin command left in the data directory"
        );
    }
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })
    };
    // Probes answer from the start: a hub standing by for the etcd lease is alive, not ready.
    let metrics = Metrics::new();
    let stop_servers = CancellationToken::new();
    let metrics_listener = bind(listen.metrics).await?;
    let metrics_task = tokio::spawn(crate::metrics::serve(
        metrics_listener,
        metrics.clone(),
        stop_servers.clone(),
    ));
    let compaction_interval = match &store {
        StoreChoice::Etcd(config) => config.compaction_interval,
        StoreChoice::Embedded => Duration::ZERO,
    };
    // Not ready while the store cannot write (a full disk): Kubernetes stops sending
    // traffic, and the hub recovers by itself when space returns. A hub on etcd that does
    // not serve is ready while it can relay to the one that does.
    let ready = Arc::new(ReadyWhen::default());
    {
        let r = ready.clone();
        metrics.set_ready_check(move || r.ready());
        // Sampled gauges, read at each scrape, from a hub that stands by too.
        let (r, m) = (ready.clone(), metrics.clone());
        metrics.set_refresh(move || r.sample(&m));
    }
    metrics.set_ready(true);
    let (store, etcd, tls_listener, relay): (Arc<dyn Store>, _, _, _) = match store {
        StoreChoice::Embedded => {
            if !dir.store().exists() {
                return Err(StartError::NotInitialized(dir.root().display().to_string()));
            }
            let store = Arc::new(RedbStore::open(&dir.store())?);
            let _ = ready.store_dir.set(dir.root().to_path_buf());
            (store, None, bind(listen.tls).await?, None)
        }
        StoreChoice::Etcd(config) => {
            let holder = format!(
                "{} (pid {}, {})",
                hostname(),
                std::process::id(),
                listen.peer
            );
            match open_etcd(config, holder, dir, &listen, &metrics, &ready, &shutdown).await? {
                Some(on) => (
                    on.store.clone() as Arc<dyn Store>,
                    Some(on.store),
                    on.listener,
                    Some((on.relay, on.port_served)),
                ),
                None => {
                    stop_servers.cancel();
                    let _ = metrics_task.await;
                    return Ok(());
                }
            }
        }
    };
    let hub = Hub::open(dir, settings, store, metrics)?;
    let _ = ready.hub.set(Arc::downgrade(&hub));
    let (chain, key) = hub.serving_cert(dir)?;
    let verifier = Arc::new(ClientVerifier::new(&hub.trust_pem, hub.access.clone())?);
    let tls_config = Arc::new(tls::server_config(&chain, &key, verifier)?);
    // Forwarded agents' certificates: a cluster's, chaining to the CA and valid now. The
    // terminating hub checked the allow-list at the handshake; here, as for a request on an
    // open connection, `allows_open` (`api::forward`).
    let forwarded = Arc::new(ClientVerifier::clusters(
        &hub.trust_pem,
        ClusterSerials(Arc::new(|_: &str, _: &str, _: i64| true)),
    )?);
    let (relay, port_served) = match relay {
        Some((relay, port_served)) => (
            Some(server::Relaying {
                relay,
                accept: crate::api::relay::accept_config(&chain, &key, &hub.trust_pem)?,
                verifier: forwarded.clone(),
            }),
            Some(port_served),
        ),
        None => (None, None),
    };

    settle_contacts(&hub).await;
    let router = routes(hub.clone()).await?;
    if let Some(r) = &relay {
        r.relay.answer_here(crate::api::forward::Forwarded {
            router: router.clone(),
            verifier: forwarded,
            access: hub.access.clone(),
            metrics: hub.metrics.clone(),
            shutdown: stop_servers.clone(),
        });
    }
    let draining = CancellationToken::new();
    let server_task = tokio::spawn(server::serve(
        tls_listener,
        tls_config,
        router,
        server::Guards {
            access: hub.access.clone(),
            calls: hub.calls.clone(),
            relay,
            draining: draining.clone(),
        },
        hub.metrics.clone(),
        hub.settings.server.clone(),
        stop_servers.clone(),
    ));
    if let Some(p) = port_served {
        p.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let maintenance = tokio::spawn(maintain(hub.clone(), stop_servers.clone()));
    let controller = hub
        .controller
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or(StartError::AlreadyServing)?;
    let scheduler = tokio::spawn(controller.run(stop_servers.clone()));
    let compactor = etcd.clone().map(|e| {
        tokio::spawn(compact_etcd(
            e,
            compaction_interval,
            hub.metrics.clone(),
            stop_servers.clone(),
        ))
    });
    tracing::info!(
        listen = %listen.tls,
        metrics = %listen.metrics,
        advertise = %hub.meta.advertise,
        clusters = hub.metrics.clusters.get(),
        "hub serving"
    );

    // An etcd hub that loses its lease ends every session (agents go to the hub that takes
    // over), refuses new ones and writes, keeps answering reads from its last known state,
    // and serves again once it holds the lease anew.
    let mut shut_down = false;
    while let Some(etcd) = &etcd {
        let lost = etcd.lost();
        tokio::select! {
            _ = shutdown.cancelled() => { shut_down = true; break }
            _ = lost.cancelled() => {}
        }
        tracing::error!(
            "lost the etcd lease: ending every session so agents move to the hub that takes over"
        );
        hub.sessions.end_all(
            EndReason::Shutdown,
            "this hub lost its etcd lease; connect to another hub",
        );
        let (e, stop) = (etcd.clone(), shutdown.clone());
        match tokio::task::spawn_blocking(move || e.acquire(&stop)).await {
            Ok(Ok(true)) => {
                if let Err(e) = hub.reload_access() {
                    tracing::error!(error = %e, "cannot reload the certificates clusters and users may present");
                }
                settle_contacts(&hub).await;
                hub.scheduler.serving_again();
                tracing::info!("holds the etcd lease again; serving");
            }
            Ok(Ok(false)) => {
                shut_down = true;
                break;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot take the etcd lease back"),
            Err(e) => tracing::error!(error = %e, "the etcd client thread failed"),
        }
    }
    if !shut_down {
        shutdown.cancelled().await;
    }
    tracing::info!("shutting down");
    hub.metrics.set_ready(false);
    draining.cancel();
    let ended = hub
        .sessions
        .end_all(EndReason::Shutdown, "the hub is shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for e in ended {
            e.cancelled().await;
        }
    })
    .await;
    stop_servers.cancel();
    let _ = server_task.await;
    let _ = metrics_task.await;
    let _ = maintenance.await;
    let _ = scheduler.await;
    if let Some(c) = compactor {
        let _ = c.await;
    }
    if hub.records.store().serving() {
        hub.records.store().sync().await?;
    }
    if let Some(etcd) = etcd {
        // Hand over at once instead of after the lease's TTL.
        let _ = tokio::task::spawn_blocking(move || etcd.release()).await;
    }
    Ok(())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Compacts etcd's history every `interval` while this hub serves (see
/// [`EtcdStore::compact_step`]); never with a zero interval.
async fn compact_etcd(
    etcd: Arc<EtcdStore>,
    interval: Duration,
    metrics: Metrics,
    stop: CancellationToken,
) {
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let e = etcd.clone();
        match tokio::task::spawn_blocking(move || e.compact_step()).await {
            Ok(Ok(Some(revision))) => {
                tracing::debug!(revision, "compacted etcd's history");
                metrics.etcd_compacted_revision.set(revision);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot compact etcd's history; trying again next interval")
            }
            Err(e) => tracing::warn!(error = %e, "the etcd client thread failed"),
        }
    }
}

/// Ends in the records the sessions a previous serving hub could not (see
/// `Clusters::settle_contacts`). Not fatal: the records then say the session's start.
async fn settle_contacts(hub: &Hub) {
    // Timed: a takeover waits for it (one write per cluster the dead hub held).
    let started = std::time::Instant::now();
    match hub.clusters.settle_contacts().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            clusters = n,
            took_ms = started.elapsed().as_millis() as u64,
            "recorded when clusters whose sessions the previous serving hub held were last heard"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot record when clusters were last heard"),
    }
}

/// Housekeeping: old audit entries and scheduling events go; a store that failed to write is
/// retried every few seconds until it can again.
async fn maintain(hub: Arc<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let mut retry = tokio::time::interval(STORE_RETRY);
    let mut contact = tokio::time::interval(hub.settings.last_contact_interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = contact.tick() => {
                if let Err(e) = hub.clusters.note_heard().await {
                    tracing::warn!(error = %e, "cannot record when clusters were last heard");
                }
            }
            _ = retry.tick() => {
                let store = hub.records.store();
                // (An etcd hub that does not hold its lease gets it back in `serve`.)
                if !store.healthy() && store.serving() {
                    match store.sync().await {
                        Ok(()) => tracing::info!("the store can write again; ready"),
                        Err(e) => tracing::warn!(error = %e, "the store still cannot write; not ready"),
                    }
                }
            }
            _ = tick.tick() => {
                match hub.audit.prune_audit(hub.settings.audit_retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "pruned old audit entries"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
                }
                match hub.workloads.prune_events(hub.settings.event_retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "pruned old scheduling events"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune scheduling events"),
                }
            }
        }
    }
}

/// Every gRPC service on the TLS port.
async fn routes(hub: Arc<Hub>) -> Result<axum::Router, StartError> {
    use tether_common::pb::{
        agent_service_server::AgentServiceServer, hub_api_service_server::HubApiServiceServer,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AgentServiceServer<agent::AgentApi>>()
        .await;
    health
        .set_serving::<HubApiServiceServer<client::ClientApi>>()
        .await;
    // Reflection in both versions: grpcurl and Python's grpcio-reflection still ask v1alpha.
    // Each lists the other too, so either answers with everything this port serves.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tether_common::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AgentServiceServer::new(agent::AgentApi::new(hub.clone()))
                .max_decoding_message_size(AGENT_MESSAGE_LIMIT),
        )
        .add_service(
            // A workload may be as large as the bundle limit, sent as JSON, plus slack for
            // the envelope.
            HubApiServiceServer::new(client::ClientApi::new(hub.clone()))
                .max_decoding_message_size(hub.settings.max_bundle_size + (64 << 10)),
        )
        .prepare();
    let proxy_hub = hub.clone();
    Ok(routes.into_axum_router().route(
        "/clusters/{*rest}",
        axum::routing::any(move |req: axum::extract::Request| {
            crate::api::proxy::handle(proxy_hub.clone(), req)
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_refuses_only_certificates_its_copy_is_current_enough_to_judge() {
        let now = tether_common::time::unix_now();
        let skew = pki::CLOCK_SKEW.as_secs() as i64;
        // Issued (not_before is backdated) an hour ago, a second ago.
        let (old, new) = (now - 3600 - skew, now - 1 - skew);
        // The copy lists it: in, however old.
        assert!(judged_here(true, old, Some(now)));
        // Not listed, issued long before the copy was last confirmed current: revoked or
        // superseded, refused as the serving hub would.
        assert!(!judged_here(false, old, Some(now - 5)));
        // Not listed, but issued after (or about when) the copy was confirmed: the join may
        // not have reached the copy yet; the serving hub judges it.
        assert!(judged_here(false, new, Some(now - 5)));
        assert!(judged_here(false, now - 20 - skew, Some(now)));
        assert!(!judged_here(false, now - 40 - skew, Some(now)));
        // No copy to judge by: the serving hub judges.
        assert!(judged_here(false, old, None));
    }

    #[test]
    fn gauges_that_cost_a_pass_over_the_fleet_are_sampled_at_most_once_a_second() {
        let ready = ReadyWhen::default();
        let t0 = std::time::Instant::now();
        assert!(ready.costly_due(t0), "the first scrape samples them");
        assert!(!ready.costly_due(t0 + Duration::from_millis(20)));
        assert!(!ready.costly_due(t0 + Duration::from_millis(999)));
        assert!(ready.costly_due(t0 + COSTLY_SAMPLE_EVERY));
        assert!(!ready.costly_due(t0 + COSTLY_SAMPLE_EVERY + Duration::from_millis(500)));
    }
}
