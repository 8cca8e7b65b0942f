//! The audit log: every mutating call (and every refused one) with who, what, on what, the
//! result and where from. Written durably before the caller hears back; kept for
//! `--audit-retention`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_common::time::unix_now_ms;

use crate::control::error::HubError;
use crate::store::records::Records;
use crate::store::records::{AuditRecord, Put};
use crate::store::{Batch, Tree};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The longest target and result an audit entry keeps (bytes).
pub const MAX_TARGET: usize = 512;
pub const MAX_RESULT: usize = 1024;

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(24);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// Time-ordered key: milliseconds, then a per-process sequence (unique within a millisecond).
fn key(unix_ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&(unix_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    k
}

fn time_key(unix_ms: i64) -> Vec<u8> {
    (unix_ms.max(0) as u64).to_be_bytes().to_vec()
}

/// The audit log's operations.
#[derive(Debug, Clone)]
pub struct Audit {
    records: Records,
}

impl Audit {
    pub fn new(records: Records) -> Self {
        Audit { records }
    }
}

impl Audit {
    /// Records one call. Failing to record is logged, not hidden: the call's own result stands.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, result: &str, source: &str) {
        // Every field may come from a caller (a name, a path, an error quoting them): what is
        // kept is bounded, whatever was sent.
        let record = AuditRecord {
            unix_ms: unix_now_ms(),
            actor: bounded(actor, 160),
            action: bounded(action, 64),
            target: bounded(target, MAX_TARGET),
            result: bounded(result, MAX_RESULT),
            source: bounded(source, 64),
        };
        let mut batch = Batch::new();
        batch.put_audit(&key(record.unix_ms), &record);
        if let Err(e) = self.records.commit(&batch).await {
            tracing::error!(error = %e, actor, action, target, "cannot write the audit log");
        }
    }

    /// Entries since `since_ms`, oldest first, at most `limit` (the newest ones if more).
    pub fn audit_since(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditRecord>, HubError> {
        let all = self
            .records
            .audit_range(&time_key(since_ms), &time_key(i64::MAX), usize::MAX)?;
        let skip = all.len().saturating_sub(limit);
        Ok(all.into_iter().skip(skip).map(|(_, r)| r).collect())
    }

    /// Drops entries older than `retention`.
    pub async fn prune_audit(&self, retention: Duration) -> Result<usize, HubError> {
        let cutoff = unix_now_ms() - retention.as_millis() as i64;
        Ok(self.records.prune_before(Tree::Audit, cutoff).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_on_a_character_boundary_and_say_so() {
        let name = "é".repeat(5 << 20);
        let cut = bounded(&name, MAX_TARGET);
        assert!(cut.len() <= MAX_TARGET, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} bytes)", name.len())));
        assert_eq!(bounded("short", MAX_TARGET), "short");
    }
}
