//! The gRPC edge of the agent protocol (`tether.v1.AgentService`): converts messages to the
//! hub's own types and runs one task per session.
//!
//! A session's task owns the inbound stream and feeds a bounded outbound channel; it ends when
//! the agent goes quiet for the offline grace, closes the stream, or is told to go (superseded,
//! removed, hub shutdown). The cluster's identity comes only from the verified certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::pb::{self, connect_request, connect_response};
use tether_common::time::{unix_now, unix_now_ms};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::api::server::{Peer, PeerCert};
use crate::api::state::Hub;
use crate::control::joins::JoinRequest;
use crate::control::workloads::{MAX_STATUS_DRIFT, MAX_STATUS_OBJECTS, cap_feedback, cap_text};
use crate::sessions::delivery::Hint;
use crate::sessions::{Control, EndReason, SessionHandle};
use crate::store::records::{AssignmentRecord, DriftRecord, Facts, ObjectStatus, StatusRecord};

/// How long a new stream may take to send its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages queued for one agent before the hub stops adding heartbeats.
const OUTBOUND_CAPACITY: usize = 64;

pub struct AgentApi {
    hub: Arc<Hub>,
}

impl AgentApi {
    pub fn new(hub: Arc<Hub>) -> Self {
        AgentApi { hub }
    }
}

/// The caller as the TLS layer saw it.
pub(crate) fn peer<T>(req: &Request<T>) -> Result<Peer, Status> {
    req.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::internal("request without connection information"))
}

fn cluster_peer<T>(req: &Request<T>) -> Result<(String, PeerCert, Peer), Status> {
    let peer = peer(req)?;
    match &peer.cert {
        Some(
            cert @ PeerCert {
                identity: Identity::Cluster(name),
                ..
            },
        ) => Ok((name.clone(), cert.clone(), peer.clone())),
        Some(c) => Err(Status::permission_denied(format!(
            "{} is not a member cluster's agent",
            c.identity
        ))),
        None => Err(Status::unauthenticated("a cluster certificate is required")),
    }
}

/// Labels an agent asks for at join, checked like any label (at most 64).
fn requested_labels(
    labels: std::collections::HashMap<String, String>,
) -> Result<tether_common::labels::Labels, Status> {
    if labels.len() > 64 {
        return Err(Status::invalid_argument(format!(
            "the agent asks for {} labels; at most 64",
            labels.len()
        )));
    }
    labels
        .into_iter()
        .map(|(k, v)| {
            tether_common::labels::validate_key(&k)
                .and_then(|()| tether_common::labels::validate_value(&v))
                .map(|()| (k, v))
                .map_err(|e| Status::invalid_argument(format!("requested label: {e}")))
        })
        .collect()
}

pub(crate) fn facts_from_pb(f: Option<pb::ClusterFacts>) -> Facts {
    let f = f.unwrap_or_default();
    // Bounded: these are shown in listings, and a hostile agent must not bloat records.
    let cap = |s: String| s.chars().take(256).collect::<String>();
    Facts {
        agent_version: cap(f.agent_version),
        kubernetes_version: cap(f.kubernetes_version),
        node_count: f.node_count,
        platform: cap(f.platform),
        api_reachable: f.api_reachable,
        api_error: cap(f.api_error),
    }
}

fn credential(cert: &tether_common::pki::SignedCert, ca_pem: &str) -> pb::Credential {
    pb::Credential {
        cert_pem: cert.cert_pem.clone(),
        ca_pem: ca_pem.to_string(),
        not_before_unix: cert.not_before,
        not_after_unix: cert.not_after,
    }
}

fn goodbye(reason: EndReason, message: String) -> pb::ConnectResponse {
    let reason = match reason {
        EndReason::Superseded => pb::goodbye::Reason::Superseded,
        EndReason::Removed => pb::goodbye::Reason::Removed,
        EndReason::Shutdown => pb::goodbye::Reason::Shutdown,
    };
    pb::ConnectResponse {
        msg: Some(connect_response::Msg::Goodbye(pb::Goodbye {
            reason: reason as i32,
            message,
        })),
    }
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentApi {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let source = peer(&req)?.addr;
        let r = req.into_inner();
        let joined = self
            .hub
            .joins
            .join(JoinRequest {
                token: r.token,
                csr_der: r.csr_der,
                facts: facts_from_pb(r.facts),
                labels: requested_labels(r.labels)?,
                source,
            })
            .await?;
        Ok(Response::new(pb::JoinResponse {
            cluster: joined.cluster,
            credential: Some(credential(&joined.cert, &self.hub.trust_pem)),
        }))
    }

    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let (_, cert, _) = cluster_peer(&req)?;
        let signed = self
            .hub
            .joins
            .renew(&cert, &req.into_inner().csr_der)
            .await?;
        Ok(Response::new(pb::RenewResponse {
            credential: Some(credential(&signed, &self.hub.trust_pem)),
        }))
    }

    type ProxyStream = ReceiverStream<Result<pb::ProxyResponse, Status>>;

    async fn proxy(
        &self,
        req: Request<Streaming<pb::ProxyRequest>>,
    ) -> Result<Response<Self::ProxyStream>, Status> {
        let (cluster, _, _) = cluster_peer(&req)?;
        let mut inbound = req.into_inner();
        let id = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::ProxyRequest {
                frame: Some(pb::proxy_request::Frame::Start(s)),
            }))) => s.request_id,
            _ => {
                return Err(Status::failed_precondition(
                    "a proxy stream starts with ProxyStart",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(16);
        self.hub.proxy.arrived(
            &cluster,
            id,
            crate::api::proxy::AgentStream {
                inbound,
                outbound: tx,
            },
        )?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ConnectStream = ReceiverStream<Result<pb::ConnectResponse, Status>>;

    async fn connect(
        &self,
        req: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (cluster, _cert, peer) = cluster_peer(&req)?;
        if !self.hub.records.store().serving() {
            // Another hub may hold this cluster's session now: never two at once.
            return Err(Status::unavailable(
                "this hub is not serving (it lost its etcd lease); connect to another hub",
            ));
        }
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::ConnectRequest {
                msg: Some(connect_request::Msg::Hello(h)),
            }))) => h,
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 15s")),
            Ok(Ok(_)) => {
                return Err(Status::failed_precondition(
                    "protocol error: the first message on the stream must be Hello",
                ));
            }
        };
        // Facts and the time are kept durably, but a session does not depend on it: with a
        // full disk the agent still connects (and its statuses wait in memory).
        if let Err(e) = self
            .hub
            .clusters
            .record_session_start(&cluster, facts_from_pb(hello.facts), unix_now())
            .await
        {
            tracing::warn!(cluster, error = %e, "cannot record the session's facts; connecting anyway");
        }
        // A certificate from a CA being rotated out is renewed now, not at 70-80% of its life.
        let renew_now = self
            .hub
            .records
            .cluster(&cluster)
            .map_err(|e| Status::internal(e.to_string()))?
            .is_some_and(|c| c.cert_issuer != self.hub.signing_pin);

        let session_id =
            tether_common::token::random_string(12).map_err(|e| Status::internal(e.to_string()))?;
        let (handle, control, proxy_requests) =
            self.hub
                .sessions
                .open(&cluster, peer.addr, session_id.clone());
        // Connected again: workloads short of clusters may go here now. Only once the session
        // is registered: a scheduling pass that ran before would still see the cluster away,
        // and a workload applied while it was away would wait for the next full pass.
        self.hub.scheduler.cluster_available();
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let welcome = pb::ConnectResponse {
            msg: Some(connect_response::Msg::Welcome(pb::Welcome {
                cluster: cluster.clone(),
                session_id,
                epoch: handle.epoch,
                heartbeat_interval_ms: self.hub.settings.heartbeat_interval.as_millis() as u32,
                renew_now,
            })),
        };
        // The channel is empty: this cannot block.
        let _ = tx.send(Ok(welcome)).await;
        tracing::info!(
            cluster,
            peer = %peer.addr,
            session = %handle.session_id,
            epoch = handle.epoch,
            workloads = hello.applied.len(),
            "agent connected"
        );
        let session = Arc::new(Session {
            hub: self.hub.clone(),
            acked: Mutex::new(
                hello
                    .applied
                    .into_iter()
                    .map(|(w, r)| {
                        let bundle = hello.applied_bundles.get(&w).cloned().unwrap_or_default();
                        (w, Held::new(r, bundle))
                    })
                    .collect(),
            ),
            sent: Mutex::new(HashMap::new()),
            done: CancellationToken::new(),
            handle,
        });
        // Resync on connect: only what differs from the agent's Hello is sent.
        session.queue_differences();
        tokio::spawn(session.clone().write(tx, control, proxy_requests));
        tokio::spawn(session.read(inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why a session ended.
#[derive(Debug)]
enum Ended {
    AgentClosed,
    StreamError(Status),
    Silent(Duration),
    Told(EndReason),
    HubSideGone,
}

/// A revision an agent holds, with its bundle hash when the agent reports it (agents before
/// 0.1 reported numbers only).
#[derive(Debug, Clone)]
struct Held {
    revision: u64,
    bundle: Option<String>,
}

impl Held {
    fn new(revision: u64, bundle: String) -> Self {
        Held {
            revision,
            bundle: (!bundle.is_empty()).then_some(bundle),
        }
    }

    /// Whether this is the assignment's copy: same revision and, where known, same bundle. A
    /// revision number can come back after a restore from backup with other contents.
    fn is(&self, a: &AssignmentRecord) -> bool {
        self.revision == a.revision && self.bundle.as_ref().is_none_or(|b| *b == a.bundle)
    }
}

/// One live session: a reader task (the agent's messages) and a writer task (heartbeats,
/// desired state, control) that never wait on each other.
struct Session {
    hub: Arc<Hub>,
    handle: SessionHandle,
    /// What the agent has acknowledged persisting, by workload.
    acked: Mutex<HashMap<String, Held>>,
    /// When each revision in flight was sent: workload -> (revision, sent), for the delivery
    /// histogram.
    sent: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    /// Cancelled when either side ends the session.
    done: CancellationToken,
}

impl Session {
    fn cluster(&self) -> &str {
        &self.handle.cluster
    }

    fn acked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hints every workload whose assignment differs from what the agent acknowledged, and
    /// the assigned list.
    fn queue_differences(&self) {
        let assignments = match self.hub.records.assignments_of_cluster(self.cluster()) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(cluster = %self.cluster(), error = %e, "cannot read assignments");
                return;
            }
        };
        let acked = self.acked().clone();
        for a in assignments {
            let differs = match acked.get(&a.workload) {
                _ if a.deleting => true,
                Some(held) => !held.is(&a),
                None => true,
            };
            if differs {
                self.handle.outbox.push(Hint::Workload(a.workload));
            }
        }
        self.handle.outbox.push(Hint::AssignedList);
    }

    /// The message a hint turns into, read from the store now (newest state wins).
    async fn message_for(&self, hint: Hint) -> Option<pb::ConnectResponse> {
        let cluster = self.cluster().to_string();
        match hint {
            Hint::AssignedList => {
                let revisions = self
                    .hub
                    .records
                    .assignments_of_cluster(&cluster)
                    .ok()?
                    .into_iter()
                    .filter(|a| !a.deleting)
                    .map(|a| (a.workload, a.revision))
                    .collect();
                Some(pb::ConnectResponse {
                    msg: Some(connect_response::Msg::Assigned(pb::Assigned { revisions })),
                })
            }
            Hint::Workload(w) => {
                let a = self.hub.records.assignment(&cluster, &w).ok()??;
                let held = self.acked().get(&w).cloned();
                if a.deleting {
                    if held.is_none() {
                        // The agent never had it: nothing to remove there.
                        if let Err(e) = self.hub.workloads.assignment_removed(&cluster, &w).await {
                            tracing::warn!(cluster, workload = %w, error = %e, "cannot drop assignment");
                        }
                        return None;
                    }
                    return Some(pb::ConnectResponse {
                        msg: Some(connect_response::Msg::Remove(pb::Remove { workload: w })),
                    });
                }
                if held.is_some_and(|h| h.is(&a)) {
                    return None;
                }
                let bundle = match self.hub.records.bundle(&a.bundle) {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        tracing::error!(cluster, workload = %w, bundle = %a.bundle, "assigned bundle is missing");
                        return None;
                    }
                    Err(e) => {
                        tracing::error!(cluster, workload = %w, error = %e, "cannot read bundle");
                        return None;
                    }
                };
                self.hub.metrics.desired_sent.inc();
                self.sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(w.clone(), (a.revision, std::time::Instant::now()));
                Some(pb::ConnectResponse {
                    msg: Some(connect_response::Msg::Desired(pb::Desired {
                        workload: w,
                        revision: a.revision,
                        bundle,
                        bundle_hash: a.bundle,
                    })),
                })
            }
        }
    }

    async fn write(
        self: Arc<Self>,
        tx: mpsc::Sender<Result<pb::ConnectResponse, Status>>,
        mut control: mpsc::Receiver<Control>,
        mut proxy_requests: mpsc::Receiver<u64>,
    ) {
        let settings = &self.hub.settings;
        let grace_ms = settings.offline_grace.as_millis() as i64;
        let mut tick = tokio::time::interval(settings.heartbeat_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(settings.resync_interval);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        resync.tick().await;
        let ended = loop {
            tokio::select! {
                _ = self.done.cancelled() => break None,
                c = control.recv() => match c {
                    Some(Control::End { reason, message }) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Ok(goodbye(reason, message)))).await;
                        break Some(Ended::Told(reason));
                    }
                    None => break Some(Ended::HubSideGone),
                },
                _ = tick.tick() => {
                    if self.handle.silent_for_ms() > grace_ms {
                        break Some(Ended::Silent(settings.offline_grace));
                    }
                    let hb = pb::ConnectResponse {
                        msg: Some(connect_response::Msg::Heartbeat(pb::Heartbeat { sent_unix_ms: unix_now_ms() })),
                    };
                    // A full queue means the agent is not reading; the silence check ends the
                    // session if it stops talking, so dropping a heartbeat is harmless.
                    let len = prost::Message::encoded_len(&hb) as u64;
                    if tx.try_send(Ok(hb)).is_ok() {
                        self.hub.metrics.stream_bytes_sent.inc_by(len);
                    }
                }
                _ = resync.tick() => self.queue_differences(),
                Some(request_id) = proxy_requests.recv() => {
                    let open = pb::ConnectResponse {
                        msg: Some(connect_response::Msg::ProxyOpen(pb::ProxyOpen { request_id })),
                    };
                    tokio::select! {
                        _ = self.done.cancelled() => break None,
                        r = tx.send(Ok(open)) => if r.is_err() { break Some(Ended::HubSideGone) },
                    }
                }
                hint = self.handle.outbox.next() => {
                    if let Some(msg) = self.message_for(hint).await {
                        self.hub.metrics.stream_bytes_sent.inc_by(prost::Message::encoded_len(&msg) as u64);
                        tokio::select! {
                            _ = self.done.cancelled() => break None,
                            r = tx.send(Ok(msg)) => if r.is_err() { break Some(Ended::HubSideGone) },
                        }
                    }
                }
                _ = tx.closed() => break Some(Ended::HubSideGone),
            }
        };
        self.finish(ended).await;
    }

    async fn read(self: Arc<Self>, mut inbound: Streaming<pb::ConnectRequest>) {
        let ended = loop {
            let msg = tokio::select! {
                _ = self.done.cancelled() => break None,
                m = inbound.message() => m,
            };
            match msg {
                Ok(Some(m)) => {
                    self.handle.heard();
                    self.on_message(m).await;
                }
                Ok(None) => break Some(Ended::AgentClosed),
                Err(status) => break Some(Ended::StreamError(status)),
            }
        };
        self.finish(ended).await;
    }

    async fn on_message(&self, m: pb::ConnectRequest) {
        let cluster = self.cluster().to_string();
        match m.msg {
            Some(connect_request::Msg::Heartbeat(_)) => {
                self.hub.metrics.heartbeats.inc();
            }
            Some(connect_request::Msg::Facts(f)) => {
                if let Err(e) = self
                    .hub
                    .clusters
                    .record_facts(&cluster, facts_from_pb(f.facts))
                    .await
                {
                    tracing::warn!(cluster, error = %e, "failed to record facts");
                }
            }
            Some(connect_request::Msg::Ack(a)) => {
                let held = Held::new(a.revision, a.bundle_hash.clone());
                self.acked().insert(a.workload.clone(), held.clone());
                let sent = {
                    let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                    match sent.get(&a.workload) {
                        Some((rev, _)) if *rev == a.revision => sent.remove(&a.workload),
                        _ => None,
                    }
                };
                if let Some((_, at)) = sent {
                    self.hub
                        .metrics
                        .delivery_seconds
                        .observe(at.elapsed().as_secs_f64());
                }
                // Acknowledged something older than it should run: look again.
                if self
                    .hub
                    .records
                    .assignment(&cluster, &a.workload)
                    .ok()
                    .flatten()
                    .is_some_and(|x| !held.is(&x))
                {
                    self.handle.outbox.push(Hint::Workload(a.workload));
                }
            }
            Some(connect_request::Msg::Removed(r)) => {
                self.acked().remove(&r.workload);
                if let Err(e) = self
                    .hub
                    .workloads
                    .assignment_removed(&cluster, &r.workload)
                    .await
                {
                    tracing::warn!(cluster, workload = %r.workload, error = %e, "cannot record removal");
                }
            }
            Some(connect_request::Msg::Status(s)) => {
                let record = status_from_pb(&cluster, s);
                match self.hub.workloads.record_status(record).await {
                    Ok(true) => {
                        self.hub.metrics.status_reports.inc();
                    }
                    Ok(false) => {
                        tracing::debug!(cluster, "status for a workload not assigned here ignored")
                    }
                    Err(e) => tracing::warn!(cluster, error = %e, "cannot record status"),
                }
            }
            Some(connect_request::Msg::Hello(_)) => {
                tracing::debug!(cluster, "ignoring a repeated Hello");
            }
            // A newer agent may send messages this hub does not know yet.
            None => {}
        }
    }

    /// Ends the session once (whichever task gets here first reports why).
    async fn finish(&self, ended: Option<Ended>) {
        if self.done.is_cancelled() {
            return;
        }
        self.done.cancel();
        let Some(ended) = ended else { return };
        let (cluster, session) = (self.cluster(), &self.handle.session_id);
        match &ended {
            Ended::StreamError(status) => {
                self.hub.metrics.stream_errors.inc();
                tracing::info!(cluster, session = %session, error = %status.message(), "agent stream failed");
            }
            Ended::Silent(grace) => {
                self.hub.metrics.stream_errors.inc();
                tracing::warn!(cluster, session = %session, "no message from agent for {}; closing session", humantime::format_duration(*grace));
            }
            other => {
                tracing::info!(cluster, session = %session, reason = ?other, "agent session ended")
            }
        }
        let last = self
            .handle
            .last_heard_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            / 1000;
        if !matches!(ended, Ended::Told(EndReason::Removed))
            && let Err(e) = self
                .hub
                .clusters
                .record_last_seen(cluster, session, last)
                .await
        {
            tracing::warn!(cluster, error = %e, "failed to record last-seen time");
        }
    }
}

fn status_from_pb(cluster: &str, s: pb::WorkloadStatus) -> StatusRecord {
    use pb::object_status::Health;
    use pb::workload_status::Phase as P;
    use tether_common::workload::Phase;
    let phase = match P::try_from(s.phase).unwrap_or(P::Unspecified) {
        P::Applied => Phase::Applied,
        P::Progressing => Phase::Progressing,
        P::Available => Phase::Available,
        P::Degraded => Phase::Degraded,
        P::Unspecified => Phase::Unknown,
    };
    StatusRecord {
        cluster: cluster.to_string(),
        workload: s.workload,
        revision: s.revision,
        phase,
        // Set when stored, from the report before.
        phase_since_unix: 0,
        message: cap_text(s.message),
        ready: s.ready,
        total: s.total,
        objects: s
            .objects
            .into_iter()
            .take(MAX_STATUS_OBJECTS)
            .map(|o| ObjectStatus {
                health: match Health::try_from(o.health).unwrap_or(Health::Unspecified) {
                    Health::Ready => "Ready",
                    Health::Progressing => "Progressing",
                    Health::Failed => "Failed",
                    Health::Missing => "Missing",
                    Health::Unspecified => "Unknown",
                }
                .to_string(),
                api_version: cap_text(o.api_version),
                kind: cap_text(o.kind),
                namespace: cap_text(o.namespace),
                name: cap_text(o.name),
                message: cap_text(o.message),
            })
            .collect(),
        objects_total: s.objects_total,
        feedback: cap_feedback(s.feedback),
        drift: s
            .drift
            .into_iter()
            .take(MAX_STATUS_DRIFT)
            .map(|d| DriftRecord {
                object: cap_text(d.object),
                field: cap_text(d.field),
                manager: cap_text(d.manager),
                unix: d.unix,
            })
            .collect(),
        drift_corrections: s.drift_corrections,
        observed_unix_ms: s.observed_unix_ms,
        received_unix: unix_now(),
    }
}
