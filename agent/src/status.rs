//! What the agent reports about each workload, and the board the session sends it from.
//!
//! Workers publish; the session takes what changed. Reports made while the hub is unreachable
//! wait on the board (the newest per workload) and go out on reconnect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Applied,
    Progressing,
    Available,
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    Progressing,
    Failed,
    /// Not applied (conflict, error) or not found.
    Missing,
}

/// One object's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub health: Health,
    pub message: String,
}

impl ObjectState {
    pub fn reference(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A corrected drift: a field the workload declares that someone changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub object: String,
    pub field: String,
    pub manager: String,
    pub unix: i64,
}

/// How objects in a status are capped (the hub caps what it keeps the same way).
pub use tether_common::workload::limits::{
    MAX_STATUS_DRIFT as MAX_DRIFT, MAX_STATUS_OBJECTS as MAX_OBJECTS,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadStatus {
    pub workload: String,
    pub revision: u64,
    pub phase: Phase,
    pub message: String,
    pub ready: u32,
    pub total: u32,
    pub objects: Vec<ObjectState>,
    pub objects_total: u32,
    pub feedback: BTreeMap<String, String>,
    pub drift: Vec<Drift>,
    pub drift_corrections: u64,
}

impl WorkloadStatus {
    /// Rolls object states up to a phase with the first useful message.
    pub fn roll_up(workload: &str, revision: u64, objects: Vec<ObjectState>) -> Self {
        let total = objects.len() as u32;
        let ready = objects.iter().filter(|o| o.health == Health::Ready).count() as u32;
        let first = |h: Health| objects.iter().find(|o| o.health == h);
        let (phase, message) =
            if let Some(o) = first(Health::Failed).or_else(|| first(Health::Missing)) {
                (Phase::Degraded, format!("{}: {}", o.reference(), o.message))
            } else if let Some(o) = first(Health::Progressing) {
                (
                    Phase::Progressing,
                    format!("{}: {}", o.reference(), o.message),
                )
            } else {
                (Phase::Available, String::new())
            };
        let objects_total = objects.len() as u32;
        // The ones that need attention first, then the rest, up to the cap.
        let mut objects = objects;
        objects.sort_by_key(|o| match o.health {
            Health::Failed | Health::Missing => 0,
            Health::Progressing => 1,
            Health::Ready => 2,
        });
        objects.truncate(MAX_OBJECTS);
        WorkloadStatus {
            workload: workload.to_string(),
            revision,
            phase,
            message,
            ready,
            total,
            objects,
            objects_total,
            feedback: BTreeMap::new(),
            drift: Vec::new(),
            drift_corrections: 0,
        }
    }
}

/// What the session should send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Status(WorkloadStatus),
    Removed(String),
}

#[derive(Default)]
struct Board {
    statuses: HashMap<String, WorkloadStatus>,
    dirty: HashSet<String>,
    removed: HashSet<String>,
}

/// The newest status of each workload, and which ones the hub has not heard yet.
#[derive(Default)]
pub struct StatusBoard {
    board: Mutex<Board>,
    notify: Notify,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a status; marks it for sending if it differs from the last one.
    pub fn publish(&self, status: WorkloadStatus) {
        let mut b = self.lock();
        if b.statuses.get(&status.workload) == Some(&status) {
            return;
        }
        b.dirty.insert(status.workload.clone());
        b.removed.remove(&status.workload);
        b.statuses.insert(status.workload.clone(), status);
        drop(b);
        self.notify.notify_one();
    }

    /// The workload is gone from this cluster.
    pub fn removed(&self, workload: &str) {
        let mut b = self.lock();
        b.statuses.remove(workload);
        b.dirty.remove(workload);
        b.removed.insert(workload.to_string());
        drop(b);
        self.notify.notify_one();
    }

    pub fn get(&self, workload: &str) -> Option<WorkloadStatus> {
        self.lock().statuses.get(workload).cloned()
    }

    /// After a reconnect the hub may have missed anything: send everything again.
    pub fn mark_all_dirty(&self) {
        let mut b = self.lock();
        let all: Vec<String> = b.statuses.keys().cloned().collect();
        b.dirty.extend(all);
        drop(b);
        self.notify.notify_one();
    }

    /// Takes every pending report.
    pub fn take(&self) -> Vec<Report> {
        let mut b = self.lock();
        let mut out: Vec<Report> = b.removed.drain().map(Report::Removed).collect();
        let dirty: Vec<String> = b.dirty.drain().collect();
        for w in dirty {
            if let Some(s) = b.statuses.get(&w) {
                out.push(Report::Status(s.clone()));
            }
        }
        out
    }

    /// Puts reports back that could not be sent.
    pub fn untake(&self, reports: Vec<Report>) {
        let mut b = self.lock();
        for r in reports {
            match r {
                Report::Status(s) => {
                    b.dirty.insert(s.workload);
                }
                Report::Removed(w) => {
                    b.removed.insert(w);
                }
            }
        }
    }

    /// Waits until there may be something to take.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, health: Health, message: &str) -> ObjectState {
        ObjectState {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "default".into(),
            name: name.into(),
            health,
            message: message.into(),
        }
    }

    #[test]
    fn roll_up_picks_the_worst_phase_and_its_message() {
        let s = WorkloadStatus::roll_up(
            "w",
            1,
            vec![
                obj("a", Health::Ready, ""),
                obj("b", Health::Progressing, "1/3 ready"),
            ],
        );
        assert_eq!(s.phase, Phase::Progressing);
        assert_eq!(s.message, "ConfigMap/default/b: 1/3 ready");
        assert_eq!((s.ready, s.total), (1, 2));
        let s = WorkloadStatus::roll_up(
            "w",
            1,
            vec![
                obj("a", Health::Progressing, "x"),
                obj("b", Health::Failed, "boom"),
            ],
        );
        assert_eq!(s.phase, Phase::Degraded);
        assert!(s.message.contains("boom"));
        let s = WorkloadStatus::roll_up("w", 1, vec![obj("a", Health::Ready, "")]);
        assert_eq!(s.phase, Phase::Available);
    }

    #[test]
    fn object_lists_are_capped_with_a_count() {
        let objects = (0..MAX_OBJECTS + 7)
            .map(|i| obj(&i.to_string(), Health::Ready, ""))
            .collect();
        let s = WorkloadStatus::roll_up("w", 1, objects);
        assert_eq!(s.objects.len(), MAX_OBJECTS);
        assert_eq!(s.objects_total as usize, MAX_OBJECTS + 7);
    }

    #[test]
    fn the_board_sends_changes_once_and_everything_after_a_reconnect() {
        let b = StatusBoard::default();
        let s = WorkloadStatus::roll_up("w", 1, vec![]);
        b.publish(s.clone());
        assert_eq!(b.take().len(), 1);
        b.publish(s);
        assert!(b.take().is_empty(), "an unchanged status is not sent again");
        b.mark_all_dirty();
        assert_eq!(b.take().len(), 1);
        b.removed("w");
        assert_eq!(b.take(), vec![Report::Removed("w".into())]);
    }
}
