//! Prometheus metrics and the plain-HTTP port that serves them with the health probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Every metric the hub exports. Cloning shares the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub connected_agents: Gauge,
    pub clusters: Gauge,
    pub joins: Family<ResultLabel, Counter>,
    pub renewals: Family<ResultLabel, Counter>,
    pub stream_errors: Counter,
    pub sessions_superseded: Counter,
    pub heartbeats: Counter,
    pub tls_handshake_failures: Counter,
    /// Connections without a certificate closed at once: over the per-address or total cap.
    pub anonymous_refused: Counter,
    /// Calls refused because their identity was already at its limit (in flight or refused).
    pub throttled: Counter,
    pub desired_sent: Counter,
    pub status_reports: Counter,
    pub stream_bytes_sent: Counter,
    /// From sending a revision on an agent's stream to its acknowledgement (persisted there).
    pub delivery_seconds: Histogram,
    pub store_bytes: Gauge,
    /// Writes waiting for the store's writer thread.
    pub store_write_queue: Gauge,
    /// Durable commits (fsyncs) and the batches they carried (group commit).
    pub store_commits: Gauge,
    pub store_batches: Gauge,
    pub store_commit_failures: Gauge,
    /// Delivery hints queued on all agent sessions (coalesced: one per workload at most).
    pub session_queue: Gauge,
    /// 1 while this hub serves (always, with the embedded store; with etcd, while it holds
    /// the lease).
    pub serving: Gauge,
    /// With etcd, on a hub that does not serve: clients' connections relayed to the serving
    /// hub now, and those it could not relay (no serving hub known, or none answering).
    pub relayed: Gauge,
    pub relay_failures: Counter,
    /// With etcd: connections that waited on this hub for a serving hub until this hub
    /// became it, then served here.
    pub relay_served_here: Counter,
    /// With etcd: agents' connections a hub that does not serve terminates and forwards the
    /// requests of (see `api::forward`), and on the serving hub the forwarded requests in
    /// flight (an agent's session is one).
    pub forwarded_agents: Gauge,
    pub forwarded_requests: Gauge,
    /// With etcd: the revision this hub last compacted etcd's history to.
    pub etcd_compacted_revision: Gauge,
    /// With etcd: times this hub read every record from etcd (a standby's first load, a
    /// reload after a takeover or an unconfirmed write), and takeovers that served from the
    /// copy a standby keeps by watching instead.
    pub etcd_loads: Gauge,
    pub etcd_warm_takeovers: Gauge,
    /// With etcd: the revision this hub's records are current to (serving: its last write;
    /// standing by: its copy), and on a standby how long since etcd confirmed its copy.
    pub etcd_revision: Gauge,
    pub etcd_copy_age_seconds: Gauge,
    /// Connections the TLS port (or a standby's relay) failed to accept: out of file
    /// descriptors, mostly.
    pub accept_failures: Counter,
    /// File descriptors this process has open, and its limit (a relaying standby holds two
    /// per client).
    pub open_files: Gauge,
    pub open_files_limit: Gauge,
    /// With the embedded store: free space on its filesystem (not ready below 8 MiB).
    pub store_free_bytes: Gauge,
    ready: Arc<AtomicBool>,
    /// What else `/readyz` needs (the store can write).
    ready_check: Arc<std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>>,
    /// Brings the sampled gauges up to date just before a scrape.
    refresh: Arc<std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            connected_agents: Gauge::default(),
            clusters: Gauge::default(),
            joins: Family::default(),
            renewals: Family::default(),
            stream_errors: Counter::default(),
            sessions_superseded: Counter::default(),
            heartbeats: Counter::default(),
            tls_handshake_failures: Counter::default(),
            anonymous_refused: Counter::default(),
            throttled: Counter::default(),
            desired_sent: Counter::default(),
            status_reports: Counter::default(),
            stream_bytes_sent: Counter::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            store_bytes: Gauge::default(),
            store_write_queue: Gauge::default(),
            store_commits: Gauge::default(),
            store_batches: Gauge::default(),
            store_commit_failures: Gauge::default(),
            session_queue: Gauge::default(),
            serving: Gauge::default(),
            relayed: Gauge::default(),
            relay_failures: Counter::default(),
            relay_served_here: Counter::default(),
            forwarded_agents: Gauge::default(),
            forwarded_requests: Gauge::default(),
            etcd_compacted_revision: Gauge::default(),
            etcd_loads: Gauge::default(),
            etcd_warm_takeovers: Gauge::default(),
            etcd_revision: Gauge::default(),
            store_free_bytes: Gauge::default(),
            etcd_copy_age_seconds: Gauge::default(),
            accept_failures: Counter::default(),
            open_files: Gauge::default(),
            open_files_limit: Gauge::default(),
            ready: Arc::new(AtomicBool::new(false)),
            ready_check: Arc::new(std::sync::OnceLock::new()),
            refresh: Arc::new(std::sync::OnceLock::new()),
        };
        registry.register(
            "delivery_seconds",
            "From sending a workload revision on an agent's stream to the agent's acknowledgement (it persisted it)",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the store file on disk",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_write_queue",
            "Writes waiting for the store's writer thread",
            m.store_write_queue.clone(),
        );
        registry.register(
            "store_commits",
            "Durable commits (fsyncs) since start",
            m.store_commits.clone(),
        );
        registry.register(
            "store_batches",
            "Write batches committed since start (several share one fsync)",
            m.store_batches.clone(),
        );
        registry.register(
            "store_commit_failures",
            "Commits that failed since start",
            m.store_commit_failures.clone(),
        );
        registry.register(
            "session_queue",
            "Delivery hints queued on all agent sessions",
            m.session_queue.clone(),
        );
        registry.register(
            "hub_serving",
            "1 while this hub serves (with etcd: while it holds the lease; standbys show 0)",
            m.serving.clone(),
        );
        registry.register(
            "relayed_connections",
            "Clients' connections this hub relays to the serving hub now (etcd standbys)",
            m.relayed.clone(),
        );
        registry.register(
            "relay_failures",
            "Connections this hub could not relay: no serving hub known, or it did not answer",
            m.relay_failures.clone(),
        );
        registry.register(
            "relay_served_here",
            "Connections that waited on this hub during a takeover until it served them itself (etcd)",
            m.relay_served_here.clone(),
        );
        registry.register(
            "forwarded_agents",
            "Agents' connections this hub terminates and forwards to the serving hub (etcd standbys)",
            m.forwarded_agents.clone(),
        );
        registry.register(
            "forwarded_requests",
            "Agents' requests another hub forwards to this one, in flight (a session is one)",
            m.forwarded_requests.clone(),
        );
        registry.register(
            "etcd_compacted_revision",
            "With etcd: the revision this hub last compacted etcd's history to (0: not yet)",
            m.etcd_compacted_revision.clone(),
        );
        registry.register(
            "etcd_loads",
            "With etcd: times this hub read every record from etcd (a standby's first load, a takeover's reload)",
            m.etcd_loads.clone(),
        );
        registry.register(
            "etcd_warm_takeovers",
            "With etcd: takeovers that served from the copy this hub kept by watching while it stood by",
            m.etcd_warm_takeovers.clone(),
        );
        registry.register(
            "etcd_revision",
            "With etcd: the revision this hub's records are current to (serving: its last write; standing by: its copy)",
            m.etcd_revision.clone(),
        );
        registry.register(
            "etcd_copy_age_seconds",
            "With etcd, on a standby: seconds since etcd last confirmed its copy current (0 while serving)",
            m.etcd_copy_age_seconds.clone(),
        );
        registry.register(
            "accept_failures",
            "Connections the hub failed to accept (out of file descriptors, mostly)",
            m.accept_failures.clone(),
        );
        registry.register(
            "open_files",
            "File descriptors this process has open",
            m.open_files.clone(),
        );
        registry.register(
            "open_files_limit",
            "The most file descriptors this process may open (its soft limit)",
            m.open_files_limit.clone(),
        );
        registry.register(
            "store_free_bytes",
            "With the embedded store: bytes free on its filesystem (the hub is not ready below 8 MiB)",
            m.store_free_bytes.clone(),
        );
        registry.register(
            "connected_agents",
            "Agents with a live session",
            m.connected_agents.clone(),
        );
        registry.register("clusters", "Member clusters registered", m.clusters.clone());
        registry.register("joins", "Join attempts by result", m.joins.clone());
        registry.register(
            "certificate_renewals",
            "Agent certificate renewals by result",
            m.renewals.clone(),
        );
        registry.register(
            "stream_errors",
            "Agent streams that ended with an error",
            m.stream_errors.clone(),
        );
        registry.register(
            "sessions_superseded",
            "Sessions replaced by a newer connection of the same cluster",
            m.sessions_superseded.clone(),
        );
        registry.register(
            "heartbeats_received",
            "Heartbeats received from agents",
            m.heartbeats.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or were refused",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "anonymous_connections_refused",
            "Connections without a client certificate closed at once (over the per-address or total cap)",
            m.anonymous_refused.clone(),
        );
        registry.register(
            "calls_throttled",
            "API calls refused because their caller was at its limit of calls in flight or of refused calls",
            m.throttled.clone(),
        );
        registry.register(
            "desired_sent",
            "Desired-state messages (workload revisions) sent to agents",
            m.desired_sent.clone(),
        );
        registry.register(
            "status_reports",
            "Workload status reports stored",
            m.status_reports.clone(),
        );
        registry.register(
            "stream_bytes_sent",
            "Protobuf bytes the hub queued on agent streams after Welcome (desired state, lists, heartbeats)",
            m.stream_bytes_sent.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Counts one result of a labelled event.
    pub fn count(family: &Family<ResultLabel, Counter>, result: &str) {
        family
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Marks the hub ready (`/readyz` answers 200, if the check set with
    /// [`Metrics::set_ready_check`] agrees).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// What else must hold for `/readyz` to answer 200 (the store can write), asked on every
    /// probe (once).
    pub fn set_ready_check(&self, f: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.ready_check.set(Box::new(f));
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.ready_check.get().is_none_or(|f| f())
    }

    /// Sets what brings the sampled gauges up to date before each scrape (once).
    pub fn set_refresh(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.refresh.set(Box::new(f));
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        if let Some(f) = self.refresh.get() {
            f();
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    let probe = metrics.clone();
    tether_common::probes::serve(
        listener,
        move || probe.is_ready(),
        move || metrics.encode(),
        async move { shutdown.cancelled().await },
    )
    .await;
}

/// Lets one event through per period (a warning logged, a costly gauge sampled), saying how
/// many events it stands for.
pub struct OncePer {
    period: Duration,
    state: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl OncePer {
    pub const fn new(period: Duration) -> Self {
        OncePer {
            period,
            state: std::sync::Mutex::new(None),
        }
    }

    /// `Some(events since the last one let through, this one included)` when one is due.
    pub fn due(&self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    pub fn due_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            Some((last, n)) if now.saturating_duration_since(*last) < self.period => {
                *n += 1;
                None
            }
            Some((last, n)) => {
                let events = *n + 1;
                (*last, *n) = (now, 0);
                Some(events)
            }
            None => {
                *state = Some((now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The metric names of docs/operations.md's table of the hub's metrics, as scraped
    /// (`{labels}` left out).
    fn documented() -> BTreeSet<String> {
        let doc = include_str!("../../docs/operations.md");
        let start = doc.find("`GET /metrics` on").expect("the metrics section");
        let end = start
            + doc[start..]
                .find("The agent, with")
                .expect("the agent's table");
        doc[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .flat_map(|l| {
                let first = l.split(" | ").next().unwrap_or_default();
                first
                    .split('`')
                    .filter(|s| s.starts_with("tether_"))
                    .map(|s| s.split('{').next().unwrap_or(s).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_metric_the_hub_exports_is_documented_under_the_name_it_is_scraped_as() {
        let m = super::Metrics::new();
        // A family without a series is not exported at all.
        super::Metrics::count(&m.joins, "ok");
        super::Metrics::count(&m.renewals, "ok");
        let text = m.encode();
        let exported: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let mut parts = l.split(' ');
                let (name, kind) = (parts.next().unwrap_or_default(), parts.next());
                match kind {
                    Some("counter") => format!("{name}_total"),
                    _ => name.to_string(),
                }
            })
            .collect();
        let documented = documented();
        assert!(documented.len() > 10, "{documented:?}");
        let undocumented: Vec<_> = exported.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&exported).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "exported but not in docs/operations.md: {undocumented:?}; documented but not exported: {unknown:?}"
        );
    }
}
