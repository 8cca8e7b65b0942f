//! Member clusters as the API shows them, and the operations on them.

use std::time::Duration;

use tether_common::identity::Identity;
use tether_common::labels::{self, LabelChanges};
use tether_common::time::unix_now;

use tether_common::workload::schedule::Taint;

use crate::control::RecordLock;
use crate::control::error::HubError;
use crate::control::scheduler::Scheduler;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::sessions::access::Access;
use crate::sessions::{EndReason, SessionInfo};
use crate::store::records::Records;
use crate::store::records::{ClusterRecord, Facts, Put};
use crate::store::{Batch, StoreError};
use std::sync::Arc;

/// How long a removed cluster's live session gets to receive its goodbye before its
/// connection is cut.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// A change to a cluster's settings; `None`/empty leaves a setting alone.
#[derive(Debug, Default)]
pub struct ClusterChange {
    pub cordoned: Option<bool>,
    pub add_taints: Vec<String>,
    pub remove_taints: Vec<String>,
}

/// Whether the hub can hear a cluster's agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Joined, never connected.
    Pending,
    /// A live session whose agent is heard within the grace.
    Ready,
    /// No live session.
    Offline,
}

impl Connectivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Connectivity::Pending => "Pending",
            Connectivity::Ready => "Ready",
            Connectivity::Offline => "Offline",
        }
    }
}

/// A cluster's record joined with its live session.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub record: ClusterRecord,
    pub session: Option<SessionInfo>,
    pub status: Connectivity,
    pub last_seen_unix: i64,
}

/// Whether the hub can hear a cluster's agent now.
pub fn connectivity(sessions: &Sessions, record: &ClusterRecord) -> Connectivity {
    match sessions.get(&record.name) {
        Some(_) => Connectivity::Ready,
        None if record.last_seen_unix == 0 => Connectivity::Pending,
        None => Connectivity::Offline,
    }
}

/// A cluster's record joined with its live session.
pub fn view(sessions: &Sessions, record: ClusterRecord) -> ClusterView {
    let session = sessions.get(&record.name);
    let (status, last_seen_unix) = match &session {
        Some(s) => (Connectivity::Ready, s.last_heard_unix),
        None if record.last_seen_unix == 0 => (Connectivity::Pending, 0),
        None => (Connectivity::Offline, record.last_seen_unix),
    };
    ClusterView {
        record,
        session,
        status,
        last_seen_unix,
    }
}

/// Member clusters' operations.
#[derive(Clone)]
pub struct Clusters {
    records: Records,
    /// Held while reading, changing and writing back records other operations change too.
    write_lock: RecordLock,
    sessions: Arc<Sessions>,
    access: Arc<Access>,
    metrics: Metrics,
    scheduler: Scheduler,
    contacts: Arc<Contacts>,
}

/// A session starting (with the facts its agent sent) or ending: written to the cluster's
/// record.
#[derive(Debug)]
struct Contact {
    name: String,
    facts: Option<Facts>,
    unix: i64,
    /// The session that ended (`None`: one started).
    ended: Option<String>,
}

/// Session starts and ends, written in groups. Each is a read-modify-write of the cluster's
/// record under the write lock, and each caller waits until its own is durable; written one
/// at a time, a reconnect storm of 10,000 agents was 10,000 commits in a row (about 16 s on
/// the embedded store, 40 s on etcd). One writer task takes everything that queued while the
/// previous group was committing: one lock, one commit, for all of them.
struct Contacts {
    records: Records,
    write_lock: RecordLock,
    sessions: Arc<Sessions>,
    queue: std::sync::Mutex<ContactQueue>,
}

type ContactDone = tokio::sync::oneshot::Sender<Result<(), String>>;

#[derive(Default)]
struct ContactQueue {
    pending: Vec<(Contact, ContactDone)>,
    writing: bool,
}

impl Contacts {
    /// Queues `c` and waits until it is durable (or failed).
    async fn record(self: &Arc<Self>, c: Contact) -> Result<(), HubError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.pending.push((c, tx));
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            tokio::spawn(self.clone().write_all());
        }
        rx.await
            .map_err(|_| StoreError::Failed("the cluster-record writer stopped".into()))?
            .map_err(|e| HubError::Store(StoreError::Failed(e)))
    }

    async fn write_all(self: Arc<Self>) {
        // Should writing ever panic, the next contact must start a writer again (and those
        // waiting get an error) rather than every later connect waiting forever.
        struct Unwedge<'a>(&'a std::sync::Mutex<ContactQueue>);
        impl Drop for Unwedge<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
                    q.writing = false;
                    q.pending.clear();
                }
            }
        }
        let _unwedge = Unwedge(&self.queue);
        loop {
            let group = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.pending.is_empty() {
                    q.writing = false;
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let (contacts, done): (Vec<Contact>, Vec<ContactDone>) = group.into_iter().unzip();
            let result = self.write(&contacts).await.map_err(|e| e.to_string());
            for tx in done {
                let _ = tx.send(result.clone());
            }
        }
    }

    async fn write(&self, contacts: &[Contact]) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let mut changed: std::collections::HashMap<&str, ClusterRecord> =
            std::collections::HashMap::new();
        for c in contacts {
            let record = match changed.remove(c.name.as_str()) {
                Some(r) => Some(r),
                None => self.records.cluster(&c.name)?,
            };
            // Removed meanwhile: nothing to record.
            let Some(mut record) = record else { continue };
            if let Some(facts) = &c.facts {
                if !facts.api_reachable && record.facts.as_ref().is_none_or(|f| f.api_reachable) {
                    record.api_unreachable_since = unix_now();
                } else if facts.api_reachable {
                    record.api_unreachable_since = 0;
                }
                record.facts = Some(facts.clone());
            }
            record.last_seen_unix = c.unix.max(record.last_seen_unix).min(unix_now());
            // An ending session's end may be written after its successor started: the
            // cluster is still connected then.
            record.connected = match &c.ended {
                None => true,
                Some(id) => self
                    .sessions
                    .get(&c.name)
                    .is_some_and(|s| &s.session_id != id),
            };
            changed.insert(c.name.as_str(), record);
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.records
            .commit_each(&independent_batches(changed.values()))
            .await?;
        Ok(())
    }
}

/// Cluster records per batch when the records need not change together (contacts, settled
/// contacts): well under an etcd transaction's 120 changes.
const RECORDS_PER_BATCH: usize = 100;

/// `records` in batches of at most [`RECORDS_PER_BATCH`], for [`Records::commit_each`].
fn independent_batches<'a>(records: impl Iterator<Item = &'a ClusterRecord>) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (i, record) in records.enumerate() {
        if i % RECORDS_PER_BATCH == 0 {
            out.push(Batch::new());
        }
        if let Some(b) = out.last_mut() {
            b.put_cluster(record);
        }
    }
    out
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters").finish_non_exhaustive()
    }
}

impl Clusters {
    pub fn new(
        records: Records,
        write_lock: RecordLock,
        sessions: Arc<Sessions>,
        access: Arc<Access>,
        metrics: Metrics,
        scheduler: Scheduler,
    ) -> Self {
        Clusters {
            contacts: Arc::new(Contacts {
                records: records.clone(),
                write_lock: write_lock.clone(),
                sessions: sessions.clone(),
                queue: std::sync::Mutex::default(),
            }),
            records,
            write_lock,
            sessions,
            access,
            metrics,
            scheduler,
        }
    }
}

impl Clusters {
    fn view(&self, record: ClusterRecord) -> ClusterView {
        view(&self.sessions, record)
    }

    pub fn list_clusters(&self) -> Result<Vec<ClusterView>, HubError> {
        Ok(self
            .records
            .clusters()?
            .into_iter()
            .map(|r| self.view(r))
            .collect())
    }

    pub fn get_cluster(&self, name: &str) -> Result<ClusterView, HubError> {
        let record = self
            .records
            .cluster(name)?
            .ok_or_else(|| HubError::cluster_not_found(name))?;
        Ok(self.view(record))
    }

    /// Sets and removes labels. Changing a label's value needs `overwrite` (as `kubectl
    /// label --overwrite`): it may move workloads at once.
    pub async fn label_cluster(
        &self,
        name: &str,
        changes: LabelChanges,
        overwrite: bool,
    ) -> Result<ClusterView, HubError> {
        for (k, v) in &changes.set {
            labels::validate_key(k).map_err(HubError::InvalidArgument)?;
            labels::validate_value(v).map_err(HubError::InvalidArgument)?;
        }
        let _w = self.write_lock.lock().await;
        let mut record = self
            .records
            .cluster(name)?
            .ok_or_else(|| HubError::cluster_not_found(name))?;
        if !overwrite {
            let clash: Vec<String> = changes
                .set
                .iter()
                .filter_map(|(k, v)| {
                    record
                        .labels
                        .get(k)
                        .filter(|old| *old != v)
                        .map(|old| format!("{k}={old}"))
                })
                .collect();
            if !clash.is_empty() {
                return Err(HubError::FailedPrecondition(format!(
                    "cluster {name:?} already has {}; pass --overwrite to change it (workloads may move at once)",
                    clash.join(", ")
                )));
            }
        }
        for k in &changes.remove {
            record.labels.remove(k);
        }
        record.labels.extend(changes.set);
        labels::check_count(record.labels.len()).map_err(HubError::InvalidArgument)?;
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        drop(_w);
        // New labels may place or unplace workloads, or change which overrides apply.
        self.scheduler.enqueue_all();
        Ok(self.view(record))
    }

    /// Changes per-cluster settings: impersonation, cordon, taints.
    pub async fn set_cluster(
        &self,
        name: &str,
        change: ClusterChange,
    ) -> Result<ClusterView, HubError> {
        let mut taints_add = Vec::new();
        for t in &change.add_taints {
            taints_add.push(Taint::parse(t).map_err(HubError::InvalidArgument)?);
        }
        let scheduling = change.cordoned.is_some()
            || !change.add_taints.is_empty()
            || !change.remove_taints.is_empty();
        let record = {
            let _w = self.write_lock.lock().await;
            let mut record = self
                .records
                .cluster(name)?
                .ok_or_else(|| HubError::cluster_not_found(name))?;
            if let Some(c) = change.cordoned {
                record.cordoned = c;
            }
            if record.taints.len() + taints_add.len() > labels::MAX_LABELS {
                return Err(HubError::InvalidArgument(format!(
                    "a cluster may carry at most {} taints",
                    labels::MAX_LABELS
                )));
            }
            for t in taints_add {
                record.taints.retain(|x| x.key != t.key);
                record.taints.push(t);
            }
            record
                .taints
                .retain(|x| !change.remove_taints.contains(&x.key));
            let mut batch = Batch::new();
            batch.put_cluster(&record);
            self.records.commit(&batch).await?;
            record
        };
        if scheduling {
            // Taints and cordons only keep new placements away, but placements waiting for
            // a spot may now find one.
            self.scheduler.enqueue_all();
        }
        Ok(self.view(record))
    }

    /// Removes a cluster. Without `cleanup` it is forgotten at once: its certificates stop
    /// working (new handshakes and requests are refused), its live session is told why and
    /// closed, and whatever it runs stays on the member. With `cleanup` its agent is first
    /// told to remove every workload; the cluster is forgotten on the call that finds none
    /// left. Returns how many workloads are left to remove (0: removed).
    pub async fn remove_cluster(&self, name: &str, cleanup: bool) -> Result<usize, HubError> {
        if cleanup {
            let left = {
                let _w = self.write_lock.lock().await;
                let mut record = self
                    .records
                    .cluster(name)?
                    .ok_or_else(|| HubError::cluster_not_found(name))?;
                if !record.removing {
                    record.removing = true;
                    let mut batch = Batch::new();
                    batch.put_cluster(&record);
                    self.records.commit(&batch).await?;
                    tracing::info!(
                        cluster = name,
                        "cluster removal started: its agent removes every workload first"
                    );
                    self.scheduler.enqueue_all();
                }
                self.records.assignments_of_cluster(name)?.len()
            };
            if left > 0 {
                return Ok(left);
            }
        }
        let identity = Identity::Cluster(name.to_string());
        self.scheduler.forget_cluster(name).await?;
        self.access.deny_new(identity.clone(), Vec::new());
        self.metrics.clusters.dec();
        if let Some(ended) = self.sessions.end(
            name,
            EndReason::Removed,
            &format!("cluster {name:?} was removed from the hub; its credential no longer works"),
        ) {
            let _ = tokio::time::timeout(GOODBYE_GRACE, ended.cancelled()).await;
        }
        self.access.remove(&identity);
        tracing::info!(cluster = name, "cluster removed");
        Ok(0)
    }

    /// Stores the facts an agent reported.
    pub async fn record_facts(&self, name: &str, facts: Facts) -> Result<(), HubError> {
        let _w = self.write_lock.lock().await;
        let Some(mut record) = self.records.cluster(name)? else {
            return Ok(());
        };
        if record.facts.as_ref() == Some(&facts) {
            return Ok(());
        }
        let reachable_before = record.facts.as_ref().is_none_or(|f| f.api_reachable);
        if reachable_before != facts.api_reachable {
            // A change of the member API's reachability changes where workloads may go.
            record.api_unreachable_since = if facts.api_reachable { 0 } else { unix_now() };
            if facts.api_reachable {
                self.scheduler.cluster_available();
            }
        }
        record.facts = Some(facts);
        let mut batch = Batch::new();
        batch.put_cluster(&record);
        self.records.commit(&batch).await?;
        Ok(())
    }

    /// Records a new session's facts and its start as the last contact, in one write.
    pub async fn record_session_start(
        &self,
        name: &str,
        facts: Facts,
        unix: i64,
    ) -> Result<(), HubError> {
        self.contacts
            .record(Contact {
                name: name.to_string(),
                facts: Some(facts),
                unix,
                ended: None,
            })
            .await
    }

    /// Notes that the serving hub heard every live session until now: one small record,
    /// whatever the fleet's size (run every `--last-contact-interval`). A cluster whose
    /// session was live then was heard at least until this, should the hub die before the
    /// session's end is written. Nothing to note on a hub that does not serve.
    pub async fn note_heard(&self) -> Result<(), HubError> {
        if !self.records.store().serving() {
            return Ok(());
        }
        let mut batch = Batch::new();
        batch.put_heard_until(unix_now());
        self.records.commit(&batch).await?;
        Ok(())
    }

    /// Ends, in the records, the sessions a hub that stopped without writing their ends
    /// left (a crash, a lost etcd lease, a takeover): their clusters were last heard when
    /// that hub last noted hearing them (or at the session's start, if later). Run when a
    /// hub begins serving, before any scheduling; a cluster whose session is live here is
    /// left as it is. Returns how many records it settled.
    pub async fn settle_contacts(&self) -> Result<usize, HubError> {
        let _w = self.write_lock.lock().await;
        let heard = self.records.heard_until()?.min(unix_now());
        let mut settled = Vec::new();
        for mut record in self.records.clusters()? {
            if !record.connected || self.sessions.get(&record.name).is_some() {
                continue;
            }
            record.connected = false;
            record.last_seen_unix = record.last_seen_unix.max(heard);
            settled.push(record);
        }
        self.records
            .commit_each(&independent_batches(settled.iter()))
            .await?;
        Ok(settled.len())
    }

    /// Records when a session's agent was last heard, as the session ends.
    pub async fn record_last_seen(
        &self,
        name: &str,
        session_id: &str,
        unix: i64,
    ) -> Result<(), HubError> {
        self.contacts
            .record(Contact {
                name: name.to_string(),
                facts: None,
                unix,
                ended: Some(session_id.to_string()),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durable, RedbStore};
    use std::sync::atomic::Ordering;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_starts_at_once_are_written_in_groups_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let records = Records::new(Durable::new(Arc::new(store)));
        let mut batch = Batch::new();
        for i in 0..200 {
            batch.put_cluster(&ClusterRecord {
                name: format!("c{i}"),
                ..Default::default()
            });
        }
        records.commit(&batch).await.unwrap();
        let batches = || records.store().stats().batches.load(Ordering::Relaxed);
        let before = batches();
        let contacts = Arc::new(Contacts {
            records: records.clone(),
            write_lock: RecordLock::default(),
            sessions: Sessions::new(Metrics::new()),
            queue: std::sync::Mutex::default(),
        });
        // A reconnect storm: every agent's Hello at once, and one session ending.
        let mut tasks: Vec<_> = (0..200)
            .map(|i| {
                let c = contacts.clone();
                tokio::spawn(async move {
                    c.record(Contact {
                        name: format!("c{i}"),
                        facts: Some(Facts {
                            api_reachable: i % 2 == 0,
                            ..Default::default()
                        }),
                        unix: 1_000 + i,
                        ended: None,
                    })
                    .await
                })
            })
            .collect();
        let c = contacts.clone();
        tasks.push(tokio::spawn(async move {
            c.record(Contact {
                name: "c7".into(),
                facts: None,
                unix: 5_000,
                ended: Some("s7".into()),
            })
            .await
        }));
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..200 {
            let r = records.cluster(&format!("c{i}")).unwrap().unwrap();
            let facts = r
                .facts
                .as_ref()
                .unwrap_or_else(|| panic!("c{i} has no facts"));
            assert_eq!(facts.api_reachable, i % 2 == 0);
            assert_eq!(r.api_unreachable_since != 0, i % 2 == 1, "c{i}");
            // c7's session also ended: the later of its two contacts wins, in either order.
            let expected = if i == 7 { 5_000 } else { 1_000 + i };
            assert_eq!(r.last_seen_unix, expected, "c{i}");
        }
        let written = batches() - before;
        assert!(
            written < 50,
            "201 contacts took {written} writes: they are not grouped"
        );
        // A cluster removed meanwhile: nothing to write, no error.
        contacts
            .record(Contact {
                name: "gone".into(),
                facts: None,
                unix: 1,
                ended: Some("g".into()),
            })
            .await
            .unwrap();
        assert!(records.cluster("gone").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_record_stays_connected_until_its_last_live_session_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let records = Records::new(Durable::new(Arc::new(store)));
        let mut batch = Batch::new();
        batch.put_cluster(&ClusterRecord {
            name: "edge".into(),
            ..Default::default()
        });
        records.commit(&batch).await.unwrap();
        let sessions = Sessions::new(Metrics::new());
        let contacts = Arc::new(Contacts {
            records: records.clone(),
            write_lock: RecordLock::default(),
            sessions: sessions.clone(),
            queue: std::sync::Mutex::default(),
        });
        let contact = |unix: i64, ended: Option<&str>| Contact {
            name: "edge".into(),
            facts: ended.is_none().then(Facts::default),
            unix,
            ended: ended.map(str::to_string),
        };
        let edge = || records.cluster("edge").unwrap().unwrap();
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();

        let _first = sessions.open("edge", peer, "s1".into());
        contacts.record(contact(100, None)).await.unwrap();
        assert!(edge().connected);
        // The agent reconnected: s2 is live when s1's end is written.
        let _second = sessions.open("edge", peer, "s2".into());
        contacts.record(contact(110, None)).await.unwrap();
        contacts.record(contact(105, Some("s1"))).await.unwrap();
        assert!(edge().connected, "s2 is still live");
        assert_eq!(edge().last_seen_unix, 110);
        // s2 ends and none follows.
        sessions.end("edge", EndReason::Shutdown, "bye");
        contacts.record(contact(120, Some("s2"))).await.unwrap();
        assert!(!edge().connected);
        assert_eq!(edge().last_seen_unix, 120);
    }

    #[test]
    fn records_that_need_not_change_together_go_in_batches_an_etcd_transaction_takes() {
        let records: Vec<ClusterRecord> = (0..250)
            .map(|i| ClusterRecord {
                name: format!("c{i}"),
                ..Default::default()
            })
            .collect();
        let batches = independent_batches(records.iter());
        let sizes: Vec<usize> = batches.iter().map(|b| b.ops.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(sizes.iter().all(|n| *n <= crate::store::etcd::TXN_OPS));
        assert!(independent_batches(std::iter::empty()).is_empty());
    }
}
