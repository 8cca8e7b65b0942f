//! Live agent sessions: at most one per cluster, fenced by a monotonic epoch; [`delivery`]
//! is the per-session queue of hints; [`access`] which certificates may connect.
//!
//! Opening a session for a cluster that already has one tells the older session it was
//! superseded and ends it. A [`SessionHandle`] unregisters its session when dropped, but only
//! if no newer session has taken its place.

pub mod access;
pub mod delivery;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tether_common::time::{unix_now, unix_now_ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::sessions::delivery::{Hint, Outbox};

/// Why the hub ends a session on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Superseded,
    Removed,
    Shutdown,
}

/// A control message for a session's task.
#[derive(Debug, Clone)]
pub enum Control {
    /// Say goodbye to the agent with this reason and end the session.
    End { reason: EndReason, message: String },
}

/// What the API shows about a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: String,
    pub epoch: u64,
    pub peer_addr: SocketAddr,
    pub connected_unix: i64,
    pub last_heard_unix: i64,
}

struct Entry {
    session_id: String,
    epoch: u64,
    peer_addr: SocketAddr,
    connected_unix: i64,
    last_heard_ms: Arc<AtomicI64>,
    control: mpsc::Sender<Control>,
    /// Requests for the agent to open proxy streams.
    proxy: mpsc::Sender<u64>,
    outbox: Arc<Outbox>,
    ended: CancellationToken,
}

/// The registry of live sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    next_epoch: AtomicU64,
    metrics: Metrics,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// Held by a session's task; dropping it ends the session's registration.
pub struct SessionHandle {
    sessions: Arc<Sessions>,
    pub cluster: String,
    pub session_id: String,
    pub epoch: u64,
    /// Unix milliseconds of the last message from the agent.
    pub last_heard_ms: Arc<AtomicI64>,
    /// What to (re)consider sending to this agent.
    pub outbox: Arc<Outbox>,
    ended: CancellationToken,
}

impl SessionHandle {
    /// Records that the agent was heard from now.
    pub fn heard(&self) {
        self.last_heard_ms.store(unix_now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the agent was last heard.
    pub fn silent_for_ms(&self) -> i64 {
        unix_now_ms() - self.last_heard_ms.load(Ordering::Relaxed)
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let mut map = self.sessions.lock();
        if map
            .get(&self.cluster)
            .is_some_and(|e| e.epoch == self.epoch)
        {
            map.remove(&self.cluster);
            self.sessions.metrics.connected_agents.set(map.len() as i64);
        }
        drop(map);
        self.ended.cancel();
    }
}

impl Sessions {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Sessions {
            map: Mutex::new(HashMap::new()),
            // Epochs start above zero so 0 can mean "none".
            next_epoch: AtomicU64::new(1),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session for `cluster`, superseding any older one. Returns the handle
    /// and the receiver of control messages for the session's task.
    pub fn open(
        self: &Arc<Self>,
        cluster: &str,
        peer_addr: SocketAddr,
        session_id: String,
    ) -> (SessionHandle, mpsc::Receiver<Control>, mpsc::Receiver<u64>) {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        let (control, control_rx) = mpsc::channel(4);
        let (proxy, proxy_rx) = mpsc::channel(256);
        let ended = CancellationToken::new();
        let last_heard_ms = Arc::new(AtomicI64::new(unix_now_ms()));
        let outbox = Arc::new(Outbox::default());
        let entry = Entry {
            session_id: session_id.clone(),
            epoch,
            peer_addr,
            connected_unix: unix_now(),
            last_heard_ms: last_heard_ms.clone(),
            control,
            proxy,
            outbox: outbox.clone(),
            ended: ended.clone(),
        };
        let mut map = self.lock();
        if let Some(old) = map.insert(cluster.to_string(), entry) {
            self.metrics.sessions_superseded.inc();
            tracing::warn!(
                cluster,
                old_session = %old.session_id,
                old_peer = %old.peer_addr,
                new_peer = %peer_addr,
                "session superseded by a newer connection for the same cluster"
            );
            let _ = old.control.try_send(Control::End {
                reason: EndReason::Superseded,
                message: format!(
                    "another connection for cluster {cluster:?} (from {peer_addr}) replaced this session"
                ),
            });
        }
        self.metrics.connected_agents.set(map.len() as i64);
        drop(map);
        (
            SessionHandle {
                sessions: self.clone(),
                cluster: cluster.to_string(),
                session_id,
                epoch,
                last_heard_ms,
                outbox,
                ended,
            },
            control_rx,
            proxy_rx,
        )
    }

    /// Asks the agent of `cluster` to open a proxy stream for request `id`; false when it
    /// has no live session (or is too far behind to ask).
    pub fn proxy_open(&self, cluster: &str, id: u64) -> bool {
        self.lock()
            .get(cluster)
            .is_some_and(|e| e.proxy.try_send(id).is_ok())
    }

    /// Whether `cluster` has a live session.
    pub fn contains(&self, cluster: &str) -> bool {
        self.lock().contains_key(cluster)
    }

    /// The live session of `cluster`, if any.
    pub fn get(&self, cluster: &str) -> Option<SessionInfo> {
        self.lock().get(cluster).map(|e| SessionInfo {
            session_id: e.session_id.clone(),
            epoch: e.epoch,
            peer_addr: e.peer_addr,
            connected_unix: e.connected_unix,
            last_heard_unix: e.last_heard_ms.load(Ordering::Relaxed) / 1000,
        })
    }

    /// Hints the live session of `cluster`, if any.
    pub fn hint(&self, cluster: &str, hint: Hint) {
        let outbox = self.lock().get(cluster).map(|e| e.outbox.clone());
        if let Some(o) = outbox {
            o.push(hint);
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Hints queued on every session together.
    pub fn queued(&self) -> usize {
        let outboxes: Vec<_> = self.lock().values().map(|e| e.outbox.clone()).collect();
        outboxes.iter().map(|o| o.len()).sum()
    }

    /// Asks the session of `cluster` to end; the token is cancelled once it has.
    pub fn end(
        &self,
        cluster: &str,
        reason: EndReason,
        message: &str,
    ) -> Option<CancellationToken> {
        let map = self.lock();
        let e = map.get(cluster)?;
        let _ = e.control.try_send(Control::End {
            reason,
            message: message.to_string(),
        });
        Some(e.ended.clone())
    }

    /// Asks every session to end (hub shutdown); returns their end tokens.
    pub fn end_all(&self, reason: EndReason, message: &str) -> Vec<CancellationToken> {
        self.lock()
            .values()
            .map(|e| {
                let _ = e.control.try_send(Control::End {
                    reason,
                    message: message.to_string(),
                });
                e.ended.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[tokio::test]
    async fn a_newer_session_supersedes_and_outlives_the_older() {
        let s = Sessions::new(Metrics::new());
        let (old, mut old_rx, _) = s.open("a", addr(), "s1".into());
        let (new, _new_rx, _) = s.open("a", addr(), "s2".into());
        assert!(new.epoch > old.epoch);
        assert!(matches!(
            old_rx.recv().await,
            Some(Control::End {
                reason: EndReason::Superseded,
                ..
            })
        ));
        // The old task ending must not unregister the new session.
        drop(old);
        assert_eq!(s.get("a").unwrap().session_id, "s2");
        drop(new);
        assert!(s.get("a").is_none());
        assert_eq!(s.count(), 0);
    }

    #[tokio::test]
    async fn ending_a_session_signals_when_it_is_gone() {
        let s = Sessions::new(Metrics::new());
        let (h, mut rx, _) = s.open("a", addr(), "s1".into());
        let ended = s.end("a", EndReason::Removed, "bye").unwrap();
        assert!(matches!(
            rx.recv().await,
            Some(Control::End {
                reason: EndReason::Removed,
                ..
            })
        ));
        assert!(!ended.is_cancelled());
        drop(h);
        assert!(ended.is_cancelled());
    }
}
