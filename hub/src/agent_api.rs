//! The gRPC edge of the agent protocol (`tether.v1.AgentService`): converts messages to the
//! hub's own types and runs one task per session.
//!
//! A session's task owns the inbound stream and feeds a bounded outbound channel; it ends when
//! the agent goes quiet for the offline grace, closes the stream, or is told to go (superseded,
//! removed, hub shutdown). The cluster's identity comes only from the verified certificate.

use std::sync::Arc;
use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::pb::{self, agent_message, hub_message};
use tether_common::time::{unix_now, unix_now_ms};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::hub::Hub;
use crate::joins::JoinRequest;
use crate::records::Facts;
use crate::server::{Peer, PeerCert};
use crate::sessions::{Control, EndReason, SessionHandle};

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

fn goodbye(reason: EndReason, message: String) -> pb::HubMessage {
    let reason = match reason {
        EndReason::Superseded => pb::goodbye::Reason::Superseded,
        EndReason::Removed => pb::goodbye::Reason::Removed,
        EndReason::Shutdown => pb::goodbye::Reason::Shutdown,
    };
    pb::HubMessage {
        msg: Some(hub_message::Msg::Goodbye(pb::Goodbye {
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
            .join(JoinRequest {
                token: r.token,
                csr_der: r.csr_der,
                facts: facts_from_pb(r.facts),
                source,
            })
            .await?;
        Ok(Response::new(pb::JoinResponse {
            cluster: joined.cluster,
            credential: Some(credential(&joined.cert, self.hub.ca.cert_pem())),
        }))
    }

    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let (_, cert, _) = cluster_peer(&req)?;
        let signed = self.hub.renew(&cert, &req.into_inner().csr_der).await?;
        Ok(Response::new(pb::RenewResponse {
            credential: Some(credential(&signed, self.hub.ca.cert_pem())),
        }))
    }

    type ConnectStream = ReceiverStream<Result<pb::HubMessage, Status>>;

    async fn connect(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (cluster, _cert, peer) = cluster_peer(&req)?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::AgentMessage {
                msg: Some(agent_message::Msg::Hello(h)),
            }))) => h,
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 15s")),
            Ok(Ok(_)) => {
                return Err(Status::failed_precondition(
                    "protocol error: the first message on the stream must be Hello",
                ));
            }
        };
        self.hub
            .record_facts(&cluster, facts_from_pb(hello.facts))
            .await?;
        self.hub.record_last_seen(&cluster, unix_now()).await?;

        let session_id =
            tether_common::token::random_string(12).map_err(|e| Status::internal(e.to_string()))?;
        let (handle, control) = self
            .hub
            .sessions
            .open(&cluster, peer.addr, session_id.clone());
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let welcome = pb::HubMessage {
            msg: Some(hub_message::Msg::Welcome(pb::Welcome {
                cluster: cluster.clone(),
                session_id,
                epoch: handle.epoch,
                heartbeat_interval_ms: self.hub.settings.heartbeat_interval.as_millis() as u32,
            })),
        };
        // The channel is empty: this cannot block.
        let _ = tx.send(Ok(welcome)).await;
        tracing::info!(cluster, peer = %peer.addr, session = %handle.session_id, epoch = handle.epoch, "agent connected");
        tokio::spawn(run_session(self.hub.clone(), handle, inbound, tx, control));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why a session's task stopped.
#[derive(Debug)]
enum Ended {
    AgentClosed,
    StreamError(Status),
    Silent(Duration),
    Told(EndReason),
    HubSideGone,
}

async fn run_session(
    hub: Arc<Hub>,
    handle: SessionHandle,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::HubMessage, Status>>,
    mut control: mpsc::Receiver<Control>,
) {
    let grace = hub.settings.offline_grace;
    let mut tick = tokio::time::interval(hub.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let ended = loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => {
                    last_heard = Instant::now();
                    handle.heard();
                    match m.msg {
                        Some(agent_message::Msg::Heartbeat(_)) => { hub.metrics.heartbeats.inc(); }
                        Some(agent_message::Msg::Facts(f)) => {
                            if let Err(e) = hub.record_facts(&handle.cluster, facts_from_pb(f.facts)).await {
                                tracing::warn!(cluster = %handle.cluster, error = %e, "failed to record facts");
                            }
                        }
                        Some(agent_message::Msg::Hello(_)) => {
                            tracing::debug!(cluster = %handle.cluster, "ignoring a repeated Hello");
                        }
                        // A newer agent may send messages this hub does not know yet.
                        None => {}
                    }
                }
                Ok(None) => break Ended::AgentClosed,
                Err(status) => break Ended::StreamError(status),
            },
            c = control.recv() => match c {
                Some(Control::End { reason, message }) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Ok(goodbye(reason, message)))).await;
                    break Ended::Told(reason);
                }
                None => break Ended::HubSideGone,
            },
            _ = tick.tick() => {
                if last_heard.elapsed() > grace {
                    break Ended::Silent(grace);
                }
                let hb = pb::HubMessage {
                    msg: Some(hub_message::Msg::Heartbeat(pb::Heartbeat { sent_unix_ms: unix_now_ms() })),
                };
                // A full queue means the agent is not reading; its own heartbeat check or ours
                // will end the session, so dropping a heartbeat is harmless.
                let _ = tx.try_send(Ok(hb));
            }
            _ = tx.closed() => break Ended::HubSideGone,
        }
    };
    match &ended {
        Ended::StreamError(status) => {
            hub.metrics.stream_errors.inc();
            tracing::info!(cluster = %handle.cluster, session = %handle.session_id, error = %status.message(), "agent stream failed");
        }
        Ended::Silent(grace) => {
            hub.metrics.stream_errors.inc();
            tracing::warn!(cluster = %handle.cluster, session = %handle.session_id, "no message from agent for {}; closing session", humantime::format_duration(*grace));
        }
        other => {
            tracing::info!(cluster = %handle.cluster, session = %handle.session_id, reason = ?other, "agent session ended")
        }
    }
    let last = handle.last_heard.load(std::sync::atomic::Ordering::Relaxed);
    if !matches!(ended, Ended::Told(EndReason::Removed))
        && let Err(e) = hub.record_last_seen(&handle.cluster, last).await
    {
        tracing::warn!(cluster = %handle.cluster, error = %e, "failed to record last-seen time");
    }
    drop(handle);
}
