//! A standby hub's copy of the prefix, kept current by an etcd watch.
//!
//! While a hub stands by it loads every record once (at one revision) and then watches the
//! prefix from the next revision (all of it but a large commit's staged chunks, which it
//! would only skip: see [`Keys::followed`]), applying each change to its copy in revision order.
//! When it takes the leader key at revision `C` it waits until the watch has delivered `C`
//! (its own claim, a change under the prefix like any other): every change before the claim
//! is then in the copy, and no hub can change anything after it but this one. So a takeover
//! serves from the copy at once instead of reading every record again — unless a large
//! commit's intent is pending (the previous holder died half-way), which the full reload
//! finishes first.
//!
//! A watch that fails (a member died) resumes from the revision after the last one applied;
//! one that etcd cancels because that history was compacted starts over with a load.
//!
//! The watch also says at once when the leader key goes away, so a standby claims it then
//! instead of at its next poll.
//!
//! Every [`CONFIRM_EVERY`] the follower asks etcd for the watch's progress: etcd answers,
//! once it has sent every event up to its current revision, with that revision. The copy is
//! then known current to it (even when the last changes were to keys it does not follow),
//! and how long ago that was is what `tether_etcd_copy_age_seconds` reports: a watch that
//! went quiet without failing (a member cut off from its peers) shows as an age that grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::{Keys, Mirror, pb, prefix_end};
use crate::store::{Op, StoreError};

/// How often a follower asks etcd to confirm its copy is current.
pub(super) const CONFIRM_EVERY: Duration = Duration::from_secs(5);

/// What a follower keeps: the copy, the revision it is current to, and whether a large
/// commit's intent is pending.
#[derive(Debug, Default)]
pub(super) struct Copy {
    pub mirror: Mirror,
    /// The revision the copy is current to: the load's, the last event's, or the last one
    /// etcd confirmed every event up to had been sent.
    pub revision: i64,
    pub intent: bool,
    /// When etcd last confirmed the copy current (the load counts); `None` before that.
    pub confirmed: Option<tokio::time::Instant>,
}

impl Copy {
    /// Applies one watched event. Returns true if it deleted the leader key (the holder
    /// released it or its lease ended).
    pub fn apply(&mut self, keys: &Keys, event: &pb::Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        let delete = event.r#type == pb::event::EventType::Delete as i32;
        self.revision = self.revision.max(kv.mod_revision);
        if let Some((tree, key)) = keys.parse(&kv.key) {
            let op = match delete {
                true => Op::Delete { tree, key },
                false => Op::Put {
                    tree,
                    key,
                    value: kv.value.clone(),
                },
            };
            self.mirror.apply(&op);
        } else if kv.key == keys.intent {
            self.intent = !delete;
        } else if kv.key == keys.leader {
            return delete;
        }
        false
    }

    /// etcd has sent every event up to `revision`: the copy is current to it now.
    pub fn confirm(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
        self.confirmed = Some(tokio::time::Instant::now());
    }
}

/// A running follower, shared with the hub that may take the lease.
#[derive(Debug)]
pub(super) struct Followed {
    pub copy: Mutex<Copy>,
    /// The revision the copy is current to (0 until loaded).
    pub revision: tokio::sync::watch::Sender<i64>,
    /// Woken when the leader key is deleted.
    pub freed: tokio::sync::Notify,
    pub stop: CancellationToken,
    started: tokio::time::Instant,
}

impl Followed {
    pub fn new() -> Arc<Followed> {
        Arc::new(Followed {
            copy: Mutex::new(Copy::default()),
            revision: tokio::sync::watch::Sender::new(0),
            freed: tokio::sync::Notify::new(),
            stop: CancellationToken::new(),
            started: tokio::time::Instant::now(),
        })
    }

    /// The revision the copy is current to, and how long ago etcd confirmed it (since the
    /// follower started, if it never has).
    pub fn state(&self) -> (i64, Duration) {
        let copy = self.copy();
        let since = copy.confirmed.unwrap_or(self.started);
        (copy.revision, since.elapsed())
    }

    fn copy(&self) -> std::sync::MutexGuard<'_, Copy> {
        self.copy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `within` for the copy to reach `revision`, then stops following and
    /// hands the copy over — or `None` when it did not get there, or a large commit is
    /// pending (the caller reloads, which finishes it).
    pub async fn take_at(&self, revision: i64, within: Duration) -> Option<Mirror> {
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|r| *r >= revision)).await;
        self.stop.cancel();
        let mut copy = self.copy();
        match reached {
            Ok(Ok(_)) if !copy.intent && copy.revision >= revision => {
                Some(std::mem::take(&mut copy.mirror))
            }
            _ => None,
        }
    }
}

/// Every key under `prefix` at one revision, page by page, and that revision.
pub(super) async fn load_all(
    client: &Client,
    prefix: &[u8],
) -> Result<(Vec<pb::KeyValue>, i64), StoreError> {
    load_range(client, prefix, &prefix_end(prefix)).await
}

/// Every key in `[from, end)` at one revision, page by page, and that revision.
async fn load_range(
    client: &Client,
    from: &[u8],
    end: &[u8],
) -> Result<(Vec<pb::KeyValue>, i64), StoreError> {
    let end = end.to_vec();
    let mut from = from.to_vec();
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let r = client
            .call(
                "load",
                client.kv().range(pb::RangeRequest {
                    key: from.clone(),
                    range_end: end.clone(),
                    limit: super::PAGE,
                    revision,
                    ..Default::default()
                }),
            )
            .await
            .map_err(super::failed)?;
        if revision == 0 {
            revision = r.header.as_ref().map(|h| h.revision).unwrap_or_default();
        }
        let more = r.more;
        if let Some(last) = r.kvs.last() {
            from = last.key.clone();
            from.push(0);
        }
        out.extend(r.kvs);
        if !more {
            return Ok((out, revision));
        }
    }
}

/// How a watch ended.
enum Ended {
    Stopped,
    /// etcd no longer holds the history to resume from.
    Compacted,
    Failed(String),
}

/// Follows the prefix until `followed.stop`: load, watch, resume or reload.
pub(super) async fn run(
    client: Arc<Client>,
    keys: Keys,
    followed: Arc<Followed>,
    loads: Arc<AtomicU64>,
) {
    let mut from = 0;
    loop {
        if followed.stop.is_cancelled() {
            return;
        }
        if from == 0 {
            let (start, end) = keys.followed();
            match load_range(&client, start, end).await {
                Ok((kvs, revision)) => {
                    loads.fetch_add(1, Ordering::Relaxed);
                    let mut copy = Copy {
                        revision,
                        ..Copy::default()
                    };
                    for kv in kvs {
                        let event = pb::Event {
                            r#type: pb::event::EventType::Put as i32,
                            kv: Some(kv),
                        };
                        copy.apply(&keys, &event);
                    }
                    copy.confirm(revision);
                    *followed.copy() = copy;
                    followed.revision.send_replace(revision);
                    from = revision + 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a standby's copy cannot load yet");
                    if pause(&followed.stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            }
        }
        match watch(&client, &keys, from, &followed).await {
            Ended::Stopped => return,
            Ended::Compacted => {
                tracing::info!(
                    "etcd compacted the history this standby's copy was following; loading it again"
                );
                from = 0;
            }
            Ended::Failed(why) => {
                tracing::debug!(error = %why, "a standby's watch of etcd ended; resuming it");
                from = followed.copy().revision + 1;
                if pause(&followed.stop, Duration::from_millis(500)).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d`; true if stopped meanwhile.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn watch(client: &Client, keys: &Keys, from: i64, followed: &Followed) -> Ended {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (start, end) = keys.followed();
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                start_revision: from,
                progress_notify: false,
            },
        )),
    };
    if tx.send(create).await.is_err() {
        return Ended::Failed("the watch request was not sent".into());
    }
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    // etcd's `WithRequireLeader`: a member that loses its leader ends the watch instead of
    // going quiet, so the copy resumes on a member that has one.
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut watch = client.watch();
    let opened = client.call("watch", watch.watch(request));
    let mut stream = tokio::select! {
        _ = followed.stop.cancelled() => return Ended::Stopped,
        s = opened => match s {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.to_string()),
        },
    };
    let mut confirm = tokio::time::interval(CONFIRM_EVERY);
    confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `tx` stays open: the request side of the stream ends only with this watch.
        let message = tokio::select! {
            _ = followed.stop.cancelled() => return Ended::Stopped,
            _ = confirm.tick() => {
                let progress = pb::WatchRequest {
                    request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                        pb::WatchProgressRequest {},
                    )),
                };
                // Full only while the previous request is still being sent: skip a turn.
                let _ = tx.try_send(progress);
                continue;
            }
            m = stream.message() => m,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Failed("etcd ended the watch".into()),
            Err(status) => {
                client.rotate();
                return Ended::Failed(tether_common::tls::status_detail(&status));
            }
        };
        if response.canceled {
            return match response.compact_revision > 0 {
                true => Ended::Compacted,
                false => Ended::Failed(format!("watch cancelled: {}", response.cancel_reason)),
            };
        }
        if response.events.is_empty() {
            // The reply to a progress request: every event up to its revision was sent
            // (the creation reply's revision says nothing of the kind when the watch starts
            // in the past).
            if !response.created
                && let Some(h) = &response.header
            {
                let revision = {
                    let mut copy = followed.copy();
                    copy.confirm(h.revision);
                    copy.revision
                };
                followed.revision.send_replace(revision);
            }
            continue;
        }
        let (freed, revision) = {
            let mut copy = followed.copy();
            let mut freed = false;
            for event in &response.events {
                freed |= copy.apply(keys, event);
            }
            (freed, copy.revision)
        };
        followed.revision.send_replace(revision);
        if freed {
            followed.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tree;

    fn event(delete: bool, key: &[u8], value: &[u8], revision: i64) -> pb::Event {
        pb::Event {
            r#type: match delete {
                true => pb::event::EventType::Delete as i32,
                false => pb::event::EventType::Put as i32,
            },
            kv: Some(pb::KeyValue {
                key: key.to_vec(),
                mod_revision: revision,
                value: value.to_vec(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_copy_follows_records_in_order_and_notes_intents_and_a_freed_leader_key() {
        let keys = Keys::new("/t");
        let mut copy = Copy::default();
        let record = keys.record(Tree::Clusters, b"edge-1");
        assert!(!copy.apply(&keys, &event(false, &record, b"v1", 5)));
        assert!(!copy.apply(&keys, &event(false, &record, b"v2", 6)));
        assert_eq!(
            copy.mirror.trees[Tree::Clusters.index()].get(b"edge-1".as_slice()),
            Some(&b"v2".to_vec())
        );
        assert_eq!(copy.revision, 6);
        assert!(!copy.apply(&keys, &event(false, &keys.intent, b"3", 7)));
        assert!(copy.intent);
        assert!(!copy.apply(&keys, &event(true, &keys.intent, b"", 8)));
        assert!(!copy.intent);
        assert!(!copy.apply(&keys, &event(true, &record, b"", 9)));
        assert!(copy.mirror.trees[Tree::Clusters.index()].is_empty());
        assert_eq!(copy.mirror.bytes, 0);
        // Staged chunks and the leader's address are not records.
        assert!(!copy.apply(&keys, &event(false, &keys.chunk(0), b"x", 10)));
        assert!(!copy.apply(&keys, &event(false, &keys.address, b"h:1", 11)));
        assert!(copy.mirror.trees.iter().all(|t| t.is_empty()));
        // A new holder's claim is a put; only a delete frees the key.
        assert!(!copy.apply(&keys, &event(false, &keys.leader, b"hub-b", 12)));
        assert!(copy.apply(&keys, &event(true, &keys.leader, b"", 13)));
        assert_eq!(copy.revision, 13);
    }

    #[tokio::test(start_paused = true)]
    async fn the_copy_is_handed_over_only_once_it_reached_the_claim_and_no_intent_is_pending() {
        let keys = Keys::new("/t");
        let record = keys.record(Tree::Clusters, b"edge-1");

        let f = Followed::new();
        f.copy().apply(&keys, &event(false, &record, b"v", 4));
        f.revision.send_replace(4);
        // The claim (revision 5) has not arrived: no copy, and following stops.
        assert!(f.take_at(5, Duration::from_secs(2)).await.is_none());
        assert!(f.stop.is_cancelled());

        let f = Followed::new();
        let g = f.clone();
        let k = keys.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = {
                let mut c = g.copy();
                c.apply(&k, &event(false, &k.leader, b"me", 5));
                c.revision
            };
            g.revision.send_replace(r);
        });
        f.copy().apply(&keys, &event(false, &record, b"v", 4));
        let m = f
            .take_at(5, Duration::from_secs(2))
            .await
            .expect("handed over");
        assert_eq!(m.trees[Tree::Clusters.index()].len(), 1);

        let f = Followed::new();
        f.copy().apply(&keys, &event(false, &keys.intent, b"2", 5));
        f.revision.send_replace(5);
        assert!(f.take_at(5, Duration::from_secs(2)).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmation_makes_the_copy_current_to_its_revision_and_resets_its_age() {
        let keys = Keys::new("/t");
        let f = Followed::new();
        tokio::time::advance(Duration::from_secs(7)).await;
        // Never confirmed: as old as the follower.
        assert_eq!(f.state(), (0, Duration::from_secs(7)));
        f.copy().apply(
            &keys,
            &event(false, &keys.record(Tree::Clusters, b"a"), b"v", 4),
        );
        f.copy().confirm(9);
        assert_eq!(f.state(), (9, Duration::ZERO));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(f.state(), (9, Duration::from_secs(3)));
        // A confirmation never moves the copy back.
        f.copy().confirm(8);
        assert_eq!(f.state(), (9, Duration::ZERO));
        // Events are applied by their own revisions.
        f.copy().apply(
            &keys,
            &event(false, &keys.record(Tree::Clusters, b"b"), b"v", 12),
        );
        assert_eq!(f.state().0, 12);
    }
}
