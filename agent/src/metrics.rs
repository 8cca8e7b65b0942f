//! The agent's Prometheus metrics and the optional plain-HTTP port (`--metrics-listen`) that
//! serves them with `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: String,
}

/// Every metric the agent exports. Cloning shares the same series; the default is a fresh,
/// unexported set (for tests and the load generator).
#[derive(Clone)]
pub struct AgentMetrics {
    registry: Arc<Registry>,
    /// 1 while this agent holds the Lease (always 1 without `--leader-elect`).
    pub leader: Gauge,
    /// 1 while a session with the hub is open.
    pub connected: Gauge,
    /// Unix time of the last message from the hub.
    pub last_hub_contact: Gauge,
    /// Server-side applies of single objects, by result.
    pub applies: Family<ResultLabel, Counter>,
    pub apply_seconds: Histogram,
    pub drift_corrections: Counter,
    /// Desired-state revisions received and persisted.
    pub revisions_received: Counter,
    /// Calls the reconciler made to the member's API server, by verb (get, apply,
    /// dry_run_apply, delete, discovery).
    pub api_requests: Family<VerbLabel, Counter>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether_agent");
        let m = AgentMetrics {
            registry: Arc::new(Registry::default()),
            leader: Gauge::default(),
            connected: Gauge::default(),
            last_hub_contact: Gauge::default(),
            applies: Family::default(),
            apply_seconds: Histogram::new(exponential_buckets(0.002, 2.0, 14)),
            drift_corrections: Counter::default(),
            revisions_received: Counter::default(),
            api_requests: Family::default(),
        };
        registry.register(
            "leader",
            "1 while this agent holds the leader Lease and runs the hub session",
            m.leader.clone(),
        );
        registry.register(
            "connected",
            "1 while a session with the hub is open",
            m.connected.clone(),
        );
        registry.register(
            "last_hub_contact_timestamp_seconds",
            "Unix time of the last message received from the hub",
            m.last_hub_contact.clone(),
        );
        registry.register(
            "applies",
            "Server-side applies of single objects by result",
            m.applies.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Time of one server-side apply against the member's API server",
            m.apply_seconds.clone(),
        );
        registry.register(
            "drift_corrections",
            "Fields or objects changed outside Tether and put back",
            m.drift_corrections.clone(),
        );
        registry.register(
            "revisions_received",
            "Desired-state revisions received from the hub and persisted",
            m.revisions_received.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the reconciler made to the member cluster's API server, by verb",
            m.api_requests.clone(),
        );
        AgentMetrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Records one apply.
    pub fn applied(&self, ok: bool, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
        self.applies
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// Counts one request to the member's API server.
    pub fn api_request(&self, verb: &'static str) {
        self.api_requests
            .get_or_create(&VerbLabel {
                verb: verb.to_string(),
            })
            .inc();
    }

    /// Notes that the hub was just heard from.
    pub fn hub_contact(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.last_hub_contact.set(now);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/healthz`, `/readyz` (the process is up: a standby is healthy too) and `/metrics`.
pub async fn serve(listener: TcpListener, metrics: AgentMetrics, shutdown: CancellationToken) {
    tether_common::probes::serve(listener, || true, move || metrics.encode(), async move {
        shutdown.cancelled().await
    })
    .await;
}
