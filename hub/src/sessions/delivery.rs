//! Per-session delivery hints. The store is the truth; a hint only says "look at this
//! workload for this cluster again". Hints for the same workload coalesce (the newest state
//! is read when the hint is taken), so a queue holds at most one entry per workload plus one
//! for the assigned list: bounded by construction, however slow the agent.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hint {
    /// Compare this workload's assignment with what the agent acknowledged.
    Workload(String),
    /// Send the full list of assigned workloads.
    AssignedList,
}

#[derive(Default)]
struct Queue {
    order: VecDeque<Hint>,
    queued: HashSet<Hint>,
}

/// A coalescing queue of hints for one session.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("len", &self.len()).finish()
    }
}

impl Outbox {
    pub fn push(&self, hint: Hint) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.queued.insert(hint.clone()) {
            q.order.push_back(hint);
            drop(q);
            self.notify.notify_one();
        }
    }

    fn pop(&self) -> Option<Hint> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let h = q.order.pop_front()?;
        q.queued.remove(&h);
        Some(h)
    }

    /// The next hint, waiting for one if none is queued.
    pub async fn next(&self) -> Hint {
        loop {
            if let Some(h) = self.pop() {
                return h;
            }
            self.notify.notified().await;
        }
    }

    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_for_one_workload_coalesce_and_keep_order() {
        let o = Outbox::default();
        o.push(Hint::Workload("a".into()));
        o.push(Hint::Workload("b".into()));
        o.push(Hint::Workload("a".into()));
        o.push(Hint::AssignedList);
        assert_eq!(o.len(), 3);
        assert_eq!(o.next().await, Hint::Workload("a".into()));
        assert_eq!(o.next().await, Hint::Workload("b".into()));
        assert_eq!(o.next().await, Hint::AssignedList);
        assert!(o.is_empty());
        // Taken hints can be queued again.
        o.push(Hint::Workload("a".into()));
        assert_eq!(o.len(), 1);
    }
}
