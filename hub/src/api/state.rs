//! The state the API edge serves from, and the hub's settings.

use std::sync::Arc;
use std::time::Duration;

use tether_common::pki::CertificateAuthority;

use crate::admin::datadir::DataDir;
use crate::api::server::ServerOptions;
use crate::control::audit::Audit;
use crate::control::clusters::Clusters;
use crate::control::joins::Joins;
use crate::control::teams::Teams;
use crate::control::tokens::Tokens;
use crate::control::users::Users;
use crate::control::workloads::Workloads;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::sessions::access::Access;
use crate::store::records::{HubMeta, Records};

/// Tunables of a running hub.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of the client certificates issued to agents.
    pub cert_lifetime: Duration,
    pub token_default_ttl: Duration,
    pub token_max_ttl: Duration,
    /// How often agents and the hub send heartbeats on the stream.
    pub heartbeat_interval: Duration,
    /// A session silent for this long is closed and its cluster becomes Offline.
    pub offline_grace: Duration,
    /// How often each session compares what its agent acknowledged with what it should run.
    pub resync_interval: Duration,
    /// The largest rendered copy of a workload for one cluster (uncompressed JSON).
    pub max_bundle_size: usize,
    /// Failed joins allowed per source address per minute.
    pub join_failures_per_minute: u32,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// How long scheduling events (`tetherctl events`) are kept.
    pub event_retention: Duration,
    pub proxy: crate::api::proxy::ProxySettings,
    /// How often rollouts and failovers are advanced.
    pub schedule_interval: Duration,
    /// Failovers allowed per minute across the hub.
    pub failovers_per_minute: u32,
    /// How often live clusters' last contact is persisted.
    pub last_contact_interval: Duration,
    pub server: ServerOptions,
    /// Client API calls one user may have in flight.
    pub calls_in_flight_per_user: usize,
    /// Refused client API calls one identity may make per minute before it is turned away
    /// (unaudited) for the rest of the minute.
    pub refused_calls_per_minute: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cert_lifetime: Duration::from_secs(30 * 86_400),
            token_default_ttl: Duration::from_secs(3600),
            token_max_ttl: Duration::from_secs(7 * 86_400),
            heartbeat_interval: Duration::from_secs(10),
            offline_grace: Duration::from_secs(30),
            resync_interval: Duration::from_secs(60),
            max_bundle_size: 8 << 20,
            join_failures_per_minute: 10,
            audit_retention: Duration::from_secs(90 * 86_400),
            event_retention: Duration::from_secs(7 * 86_400),
            proxy: crate::api::proxy::ProxySettings::default(),
            schedule_interval: Duration::from_secs(2),
            failovers_per_minute: 10,
            last_contact_interval: Duration::from_secs(60),
            server: ServerOptions::default(),
            calls_in_flight_per_user: 8,
            refused_calls_per_minute: 30,
        }
    }
}

/// What the API edge serves from: the operations' components (`tokens`, `users`, `teams`,
/// `joins`, `clusters`, `workloads`, `audit`, each holding its own dependencies), the live
/// sessions and access list, and the edge's own state (trust bundle, call limits, proxied
/// requests). Built by [`crate::hub::Hub::open`], the composition root.
pub struct Hub {
    /// The data directory (backups read its files).
    pub dir: DataDir,
    pub records: Records,
    /// Signs every new client certificate.
    pub ca: Arc<CertificateAuthority>,
    /// Pin of `ca`: certificates issued by another CA are renewed at the next connection.
    pub signing_pin: String,
    /// The CA being replaced during a rotation (it still signs the serving certificate).
    pub ca_previous: Option<CertificateAuthority>,
    /// Every CA peers are trusted from, PEM; also what agents and users are given to trust.
    pub trust_pem: String,
    /// Pin of the CA that signed the serving certificate: what joining agents must pin.
    pub ca_pin: String,
    pub meta: HubMeta,
    pub settings: Settings,
    pub sessions: Arc<Sessions>,
    pub access: Arc<Access>,
    pub metrics: Metrics,
    pub tokens: Tokens,
    pub users: Users,
    pub teams: Teams,
    pub joins: Joins,
    pub clusters: Clusters,
    pub workloads: Workloads,
    pub audit: Audit,
    /// Client API calls in flight and refused, per identity.
    pub calls: Arc<crate::control::ratelimit::CallLimits>,
    /// Proxied Kubernetes API requests waiting for their agent streams.
    pub proxy: crate::api::proxy::Proxy,
    /// The scheduler's handle: every workload and assignment write goes through it.
    pub scheduler: crate::control::scheduler::Scheduler,
    /// The scheduler's task, until `serve` starts it.
    pub(crate) controller: std::sync::Mutex<Option<crate::control::scheduler::Controller>>,
    /// When this hub process started (Offline time is not counted from before it).
    pub started_unix: i64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}
