//! Which certificates may connect right now, and the live connections made with them.
//!
//! An allow-list, not a revocation list: a certificate is accepted only if its serial is one
//! the hub currently lists for its identity. Removing a cluster or user (or replacing its
//! credential on re-join) therefore locks out every older certificate at the next handshake,
//! and [`Access::set`] closes the connections already open with them at once.
//!
//! Renewal is different: the identity is still trusted, so [`Access::renewed`] narrows what
//! new handshakes may present but leaves connections opened with earlier certificates of the
//! same credential line working (a long-lived stream outlives several short certificates).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tether_common::identity::Identity;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Entry {
    /// Serials a new handshake may present.
    serials: Vec<String>,
    /// Serials of this credential line that live connections may still use: `serials` plus
    /// those of connections opened before a renewal.
    line: Vec<String>,
    conns: HashMap<u64, (String, CancellationToken)>,
}

/// The allow-list and connection registry. Shared by the TLS verifier (synchronous) and the
/// request path.
#[derive(Default)]
pub struct Access {
    entries: RwLock<HashMap<Identity, Entry>>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

/// Unregisters a connection when it ends.
pub struct ConnGuard {
    access: Arc<Access>,
    identity: Identity,
    id: u64,
    /// Cancelled when the connection's certificate stops being accepted.
    pub revoked: CancellationToken,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(e) = self.access.write().get_mut(&self.identity) {
            e.conns.remove(&self.id);
        }
    }
}

impl Access {
    // A panic while holding the lock cannot leave the map half-updated in a way that
    // matters more than refusing service, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<Identity, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Identity, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a new handshake may present a certificate with this identity and serial.
    pub fn allows(&self, identity: &Identity, serial: &str) -> bool {
        self.read()
            .get(identity)
            .is_some_and(|e| e.serials.iter().any(|s| s == serial))
    }

    /// Whether a connection already open with this certificate may keep making requests.
    pub fn allows_open(&self, identity: &Identity, serial: &str) -> bool {
        self.read()
            .get(identity)
            .is_some_and(|e| e.line.iter().any(|s| s == serial))
    }

    /// Records a renewal: new handshakes may present only `serials`; connections opened with
    /// earlier certificates of this identity stay open.
    pub fn renewed(&self, identity: Identity, serials: Vec<String>) {
        let mut map = self.write();
        let entry = map.entry(identity).or_default();
        let mut line = serials.clone();
        for (serial, _) in entry.conns.values() {
            if !line.contains(serial) {
                line.push(serial.clone());
            }
        }
        entry.serials = serials;
        entry.line = line;
    }

    /// Replaces the accepted serials of `identity` and closes its connections made with any
    /// other certificate. An empty list removes the identity.
    pub fn set(&self, identity: Identity, serials: Vec<String>) {
        self.update(identity, serials, true);
    }

    /// Replaces the accepted serials of `identity` but leaves its open connections alone for
    /// now: new handshakes and new requests are refused at once, while a live session gets the
    /// chance to say goodbye. Follow with [`Access::set`] to close them.
    pub fn deny_new(&self, identity: Identity, serials: Vec<String>) {
        self.update(identity, serials, false);
    }

    fn update(&self, identity: Identity, serials: Vec<String>, close_stale: bool) {
        let mut map = self.write();
        let entry = map.entry(identity.clone()).or_default();
        entry.conns.retain(|_, (serial, token)| {
            let keep = serials.contains(serial);
            if !keep && close_stale {
                token.cancel();
            }
            keep || !close_stale
        });
        entry.line = serials.clone();
        entry.serials = serials;
        if entry.serials.is_empty() && entry.conns.is_empty() {
            map.remove(&identity);
        }
    }

    /// Every identity with accepted certificates or open connections.
    pub fn identities(&self) -> Vec<Identity> {
        self.read().keys().cloned().collect()
    }

    /// Closes every connection of `identity` and forgets it.
    pub fn remove(&self, identity: &Identity) {
        self.set(identity.clone(), Vec::new());
    }

    /// Records a live connection; the guard unregisters it.
    pub fn register(self: &Arc<Self>, identity: Identity, serial: String) -> ConnGuard {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let revoked = CancellationToken::new();
        let mut map = self.write();
        let entry = map.entry(identity.clone()).or_default();
        if !entry.line.contains(&serial) {
            // Revoked between the handshake and now.
            revoked.cancel();
        }
        entry.conns.insert(id, (serial, revoked.clone()));
        ConnGuard {
            access: self.clone(),
            identity,
            id,
            revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_serials_closes_only_connections_made_with_old_ones() {
        let access = Arc::new(Access::default());
        let id = Identity::Cluster("a".into());
        access.set(id.clone(), vec!["s1".into(), "s2".into()]);
        let old = access.register(id.clone(), "s1".into());
        let new = access.register(id.clone(), "s2".into());
        assert!(access.allows(&id, "s1"));
        access.set(id.clone(), vec!["s2".into()]);
        assert!(old.revoked.is_cancelled());
        assert!(!new.revoked.is_cancelled());
        assert!(!access.allows(&id, "s1"));
        access.deny_new(id.clone(), vec![]);
        assert!(!access.allows(&id, "s2"));
        assert!(
            !new.revoked.is_cancelled(),
            "deny_new must leave live connections open"
        );
        access.remove(&id);
        assert!(new.revoked.is_cancelled());
    }

    #[test]
    fn renewal_keeps_open_connections_but_narrows_new_handshakes() {
        let access = Arc::new(Access::default());
        let id = Identity::Cluster("a".into());
        access.set(id.clone(), vec!["s1".into()]);
        let conn = access.register(id.clone(), "s1".into());
        access.renewed(id.clone(), vec!["s2".into(), "s1".into()]);
        access.renewed(id.clone(), vec!["s3".into(), "s2".into()]);
        assert!(
            !access.allows(&id, "s1"),
            "no new handshake with a twice-renewed certificate"
        );
        assert!(
            access.allows_open(&id, "s1"),
            "the stream opened with it lives on"
        );
        assert!(!conn.revoked.is_cancelled());
        // Removal still cuts everything.
        access.remove(&id);
        assert!(conn.revoked.is_cancelled());
        assert!(!access.allows_open(&id, "s1"));
    }

    #[test]
    fn identities_do_not_share_serials() {
        let access = Access::default();
        access.set(Identity::Cluster("a".into()), vec!["s".into()]);
        assert!(!access.allows(&Identity::Cluster("b".into()), "s"));
        assert!(!access.allows(&Identity::User("a".into()), "s"));
    }
}
