//! [`Store`] on an etcd v3 cluster, for hubs that must survive the loss of a machine.
//!
//! **One writer at a time.** Every hub on the same etcd prefix competes for one key,
//! `PREFIX/leader`, attached to its lease (TTL `--etcd-lease-ttl`). The holder serves; the
//! others stand by (relaying clients to it, and keeping a copy of every record by watching:
//! see [`follow`]) and take over when the holder's lease ends — at once on a clean
//! shutdown, within the TTL after a crash or a partition. Every write is a transaction guarded by the holder's claim (the leader key's
//! create revision), so a hub that lost its lease, however slow to notice, can never write
//! again; it stops serving when it cannot renew in time (counted from when each renewal was
//! sent, so it always stops before etcd lets the lease go).
//!
//! **Reads from memory.** The serving hub starts from the copy it kept while standing by
//! (or loads the whole prefix, paged, at one revision) and then applies its own committed
//! writes to that copy: nobody else writes while it holds the claim. Reads therefore never
//! wait for the network, read a consistent snapshot, and keep answering with the last known
//! state while etcd has lost its majority.
//! Memory is the price: about the size of `store.redb`.
//!
//! **What is atomic.** A commit of at most [`TXN_OPS`] changes and [`TXN_BYTES`] bytes is one
//! etcd transaction. A larger one (a workload placed on thousands of clusters) cannot be (etcd
//! allows 128 operations and 1.5 MiB per request by default), so it is made durable first
//! and applied after: its changes are staged in chunks, one small transaction writes the
//! intent that names them — from then on the commit *will* happen — and bounded transactions
//! apply it. A hub that dies half-way leaves the intent; whichever hub takes over finishes it
//! before it reads or writes anything else. Within this hub, readers see the change when the
//! commit returns, all at once.
//!
//! **When etcd does not answer** (no majority, or every member unreachable) a commit fails
//! with a message that says so and the hub reports not ready; reads still answer. A call
//! that timed out may still have been applied, so the next commit first reloads the copy
//! from etcd (and finishes any intent) before it writes.

mod client;
mod follow;

pub use client::EtcdConfig;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use client::{CallError, Client, Lease};
use tokio_util::sync::CancellationToken;

use super::{Batch, Entries, Op, SCHEMA_VERSION, Store, StoreError, Tree};

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// Most changes in one etcd transaction (etcd's default `--max-txn-ops` is 128).
pub const TXN_OPS: usize = 120;
/// Most bytes of keys and values in one transaction (etcd's default `--max-request-bytes` is
/// 1.5 MiB; the rest is headroom for the envelope).
pub const TXN_BYTES: usize = 1 << 20;
/// The largest single record the etcd store accepts (it must fit one request).
pub const MAX_VALUE: usize = TXN_BYTES - 4096;
/// Tries of one write before it counts as failed (see [`EtcdStore::txn`]).
const WRITE_TRIES: usize = 3;
/// Keys per page when loading.
const PAGE: i64 = 2000;
const SCHEMA_KEY: &[u8] = b"schema_version";
const NOT_HOLDING: &str = "this hub does not hold the etcd lease now (etcd unreachable, or \
    another hub serves); it serves again once it holds the lease";

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// The key after every key that starts with `prefix` (etcd's range_end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Where things live under the prefix.
#[derive(Debug, Clone)]
struct Keys {
    data: Vec<u8>,
    leader: Vec<u8>,
    /// Where the leader key's holder takes other hubs' relays (on the same lease).
    address: Vec<u8>,
    intent: Vec<u8>,
    staging: Vec<u8>,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            data: format!("{prefix}/data/").into_bytes(),
            leader: format!("{prefix}/leader").into_bytes(),
            address: format!("{prefix}/leader-address").into_bytes(),
            intent: format!("{prefix}/intent").into_bytes(),
            staging: format!("{prefix}/staging/").into_bytes(),
        }
    }

    fn record(&self, tree: Tree, key: &[u8]) -> Vec<u8> {
        let mut k = self.data.clone();
        k.extend_from_slice(tree.name().as_bytes());
        k.push(b'/');
        k.extend_from_slice(key);
        k
    }

    /// The tree and key of a record's etcd key.
    fn parse(&self, etcd_key: &[u8]) -> Option<(Tree, Vec<u8>)> {
        let rest = etcd_key.strip_prefix(self.data.as_slice())?;
        let slash = rest.iter().position(|b| *b == b'/')?;
        let name = std::str::from_utf8(&rest[..slash]).ok()?;
        let tree = Tree::ALL.into_iter().find(|t| t.name() == name)?;
        Some((tree, rest[slash + 1..].to_vec()))
    }

    /// The range a standby follows: records, the intent and the leader key with its
    /// address, in one range so one watch delivers them in revision order — and not the
    /// staged chunks of a large commit (megabytes a standby would only skip), which sort
    /// last: `data/` < `intent` < `leader` < `leader-address` < `staging/`.
    fn followed(&self) -> (&[u8], &[u8]) {
        (&self.data, &self.staging)
    }

    fn chunk(&self, n: usize) -> Vec<u8> {
        let mut k = self.staging.clone();
        k.extend_from_slice(format!("{n:08}").as_bytes());
        k
    }
}

/// A hub's copy of every record: the serving hub's, or a standby's kept by a watch.
#[derive(Debug)]
struct Mirror {
    trees: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    bytes: u64,
}

impl Default for Mirror {
    fn default() -> Mirror {
        Mirror::new()
    }
}

impl Mirror {
    fn new() -> Mirror {
        Mirror {
            trees: vec![BTreeMap::new(); Tree::ALL.len()],
            bytes: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { tree, key, value } => {
                self.bytes += (key.len() + value.len()) as u64;
                if let Some(old) = self.trees[tree.index()].insert(key.clone(), value.clone()) {
                    self.bytes -= (key.len() + old.len()) as u64;
                }
            }
            Op::Delete { tree, key } => {
                if let Some(old) = self.trees[tree.index()].remove(key) {
                    self.bytes -= (key.len() + old.len()) as u64;
                }
            }
        }
    }
}

/// The last change to each key, in the order of those last changes: etcd refuses a
/// transaction that names one key twice, and only the last change to a key matters.
fn last_per_key<'a>(batches: &[&'a Batch]) -> Vec<&'a Op> {
    let ops: Vec<&Op> = batches.iter().flat_map(|b| &b.ops).collect();
    let mut last: std::collections::HashMap<(Tree, &[u8]), usize> =
        std::collections::HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        last.insert(op_key(op), i);
    }
    ops.iter()
        .enumerate()
        .filter(|(i, op)| last.get(&op_key(op)) == Some(i))
        .map(|(_, op)| *op)
        .collect()
}

fn op_key(op: &Op) -> (Tree, &[u8]) {
    match op {
        Op::Put { tree, key, .. } | Op::Delete { tree, key } => (*tree, key.as_slice()),
    }
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Put { key, value, .. } => key.len() + value.len() + 32,
        Op::Delete { key, .. } => key.len() + 32,
    }
}

/// The batches of one group commit, packed into runs that each fit one transaction, whole
/// batches only: each batch must be atomic, several unrelated ones need not be together (the
/// writer thread groups writers that merely arrived at the same time). A batch too big for
/// one transaction is a run of its own (and goes the staged way).
fn groups<'a>(batches: &[&'a Batch]) -> Vec<Vec<&'a Batch>> {
    let mut out: Vec<Vec<&Batch>> = Vec::new();
    let (mut ops, mut bytes) = (0, 0);
    for b in batches {
        let (n, size) = (b.ops.len(), b.ops.iter().map(op_bytes).sum::<usize>());
        let fits = ops + n <= TXN_OPS && bytes + size <= TXN_BYTES;
        match out.last_mut() {
            Some(run) if fits => run.push(b),
            _ => {
                out.push(vec![b]);
                (ops, bytes) = (0, 0);
            }
        }
        ops += n;
        bytes += size;
    }
    out
}

/// Staged changes: `[tag][tree][key len u32][key][value len u32][value]`, repeated. Written
/// out by hand because it is the whole format: a length-prefixed list of the [`Op`]s.
fn encode(ops: &[&Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        let (tag, tree, key, value): (u8, Tree, &[u8], &[u8]) = match op {
            Op::Put { tree, key, value } => (1, *tree, key, value),
            Op::Delete { tree, key } => (2, *tree, key, &[]),
        };
        out.push(tag);
        out.push(tree.index() as u8);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn decode(mut buf: &[u8]) -> Result<Vec<Op>, String> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if buf.len() < n {
            return Err("a staged chunk is truncated".into());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn len(buf: &mut &[u8]) -> Result<usize, String> {
        let b = take(buf, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let mut ops = Vec::new();
    while !buf.is_empty() {
        let head = take(&mut buf, 2)?;
        let tree = *Tree::ALL
            .get(head[1] as usize)
            .ok_or("a staged chunk names an unknown tree")?;
        let n = len(&mut buf)?;
        let key = take(&mut buf, n)?.to_vec();
        let n = len(&mut buf)?;
        let value = take(&mut buf, n)?.to_vec();
        ops.push(match head[0] {
            1 => Op::Put { tree, key, value },
            2 => Op::Delete { tree, key },
            _ => return Err("a staged chunk holds an unknown change".into()),
        });
    }
    Ok(ops)
}

/// Splits `ops` into runs that each fit one transaction.
fn runs<T: std::borrow::Borrow<Op>>(ops: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, op) in ops.iter().enumerate() {
        let b = op_bytes(op.borrow());
        if i > start && (i - start >= TXN_OPS || bytes + b > TXN_BYTES) {
            out.push(&ops[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

/// A store on etcd; see the module documentation.
pub struct EtcdStore {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    client: Arc<Client>,
    keys: Keys,
    /// The current lease; replaced when this hub lost one and is granted another.
    lease: RwLock<Arc<Lease>>,
    lease_ttl: Duration,
    /// The leader key's create revision once this hub holds it: every write compares it.
    claim: AtomicU64,
    mirror: RwLock<Mirror>,
    /// A call's outcome is unknown: reload before the next write.
    stale: AtomicBool,
    healthy: AtomicBool,
    holder: String,
    /// Where other hubs reach this one (relays), published while it holds the leader key.
    peer_address: String,
    /// The address the serving hub published, as last seen while this one stood by.
    serving_at: RwLock<Option<String>>,
    /// The revision seen at the previous compaction step: the next step compacts to it.
    compact_mark: std::sync::atomic::AtomicI64,
    /// The standby's copy, while this hub waits for the leader key.
    followed: Mutex<Option<Arc<follow::Followed>>>,
    /// Times every record was read from etcd (a load or reload, the standby's included).
    loads: Arc<AtomicU64>,
    /// Times this hub took the lease and served from the copy its watch kept.
    warm_takeovers: AtomicU64,
    /// While serving: the revision of its claim or its last write, whichever is later.
    written: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.unfollow();
        self.lease().lost.cancel();
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            // Never blocks: this may run on another runtime's thread.
            rt.shutdown_background();
        }
    }
}

/// What [`EtcdStore::connect`] found under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    Empty,
    Hub,
}

impl EtcdStore {
    /// Connects, grants this hub's lease and checks what the prefix holds. Blocking: call it
    /// from a thread that is not a runtime worker (`spawn_blocking`).
    pub fn connect(config: &EtcdConfig, holder: &str) -> Result<(EtcdStore, Contents), StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the etcd client: {e}")))?;
        let handle = runtime.handle().clone();
        let client = {
            let _in = handle.enter();
            Arc::new(Client::new(config)?)
        };
        let lease = handle
            .block_on(client::grant_lease(client.clone(), config.lease_ttl))
            .map_err(|e| StoreError::Open {
                path: config.endpoints.join(","),
                detail: e.to_string(),
            })?;
        let store = EtcdStore {
            runtime: Mutex::new(Some(runtime)),
            handle,
            client,
            keys: Keys::new(&config.prefix),
            lease: RwLock::new(Arc::new(lease)),
            lease_ttl: config.lease_ttl,
            claim: AtomicU64::new(0),
            mirror: RwLock::new(Mirror::new()),
            stale: AtomicBool::new(true),
            healthy: AtomicBool::new(true),
            holder: holder.to_string(),
            peer_address: String::new(),
            serving_at: RwLock::new(None),
            compact_mark: std::sync::atomic::AtomicI64::new(0),
            followed: Mutex::new(None),
            loads: Arc::new(AtomicU64::new(0)),
            warm_takeovers: AtomicU64::new(0),
            written: std::sync::atomic::AtomicI64::new(0),
        };
        let schema =
            store.block_on(store.get_remote(&store.keys.record(Tree::Meta, SCHEMA_KEY)))?;
        let contents = match schema {
            None => Contents::Empty,
            Some(v) => {
                super::check_schema(&v)?;
                Contents::Hub
            }
        };
        Ok((store, contents))
    }

    /// Where other hubs reach this one while it serves (`host:port` of its TLS port): they
    /// relay their clients' connections there (see the hub's `api::relay`).
    pub fn with_peer_address(mut self, address: String) -> EtcdStore {
        self.peer_address = address;
        self
    }

    /// The serving hub's address while another hub serves and published one; `None` while
    /// this hub serves or knows no other.
    pub fn serving_at(&self) -> Option<String> {
        if self.holds() {
            return None;
        }
        // This hub's own address under the leader key is a previous run of this hub (killed,
        // its lease not yet expired): relaying there would relay to itself.
        self.serving_at
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|a| *a != self.peer_address)
    }

    /// Whether etcd answers this hub's lease renewals now.
    pub fn answering(&self) -> bool {
        let lease = self.lease();
        !lease.lost.is_cancelled() && lease.answering.load(Ordering::Relaxed)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    fn lease(&self) -> Arc<Lease> {
        self.lease.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Cancelled when this hub lost (or cannot prove it holds) its current lease: it must
    /// stop holding agent sessions and writing ([`EtcdStore::acquire`] starts over).
    pub fn lost(&self) -> CancellationToken {
        self.lease().lost.clone()
    }

    /// Whether this hub holds the leader key and its lease: only then may it hold agent
    /// sessions.
    pub fn holds(&self) -> bool {
        self.claim.load(Ordering::SeqCst) != 0 && !self.lease().lost.is_cancelled()
    }

    /// Waits until this hub holds the leader key, then finishes what a previous holder left
    /// half-done and loads every record. A lease lost meanwhile (etcd without a majority for
    /// longer than the TTL) is given up and a new one asked for. Blocking, like
    /// [`EtcdStore::connect`]. Returns false if `stop` was cancelled first.
    ///
    /// Also how a hub that lost its lease while serving gets back: it stands by like any
    /// other until it holds the key again.
    pub fn acquire(&self, stop: &CancellationToken) -> Result<bool, StoreError> {
        self.claim.store(0, Ordering::SeqCst);
        loop {
            if self.claim_loop(stop, true)? {
                return Ok(true);
            }
            if stop.is_cancelled() {
                return Ok(false);
            }
            // The lease is gone. Revoking it (best effort) frees a leader key still attached
            // to it at once instead of after its TTL.
            let old = self.lease().id;
            let client = self.client.clone();
            let _ = self.block_on(async move {
                client
                    .call(
                        "lease revoke",
                        client
                            .lease()
                            .lease_revoke(pb::LeaseRevokeRequest { id: old }),
                    )
                    .await
            });
            match self.block_on(client::grant_lease(self.client.clone(), self.lease_ttl)) {
                Ok(lease) => {
                    *self.lease.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lease);
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "etcd does not grant this hub a lease yet"),
            }
            let go_on = self.block_on(async {
                tokio::select! {
                    _ = stop.cancelled() => false,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => true,
                }
            });
            if !go_on {
                return Ok(false);
            }
        }
    }

    fn claim_loop(&self, stop: &CancellationToken, wait: bool) -> Result<bool, StoreError> {
        let mut announced = String::new();
        let lease = self.lease();
        // A hub that waits for the key keeps a copy of every record meanwhile.
        let followed = wait.then(|| self.follow());
        let warm = loop {
            if stop.is_cancelled() || lease.lost.is_cancelled() {
                return Ok(false);
            }
            match self.block_on(self.try_claim()) {
                Ok(Ok(rev)) => {
                    self.claim.store(rev as u64, Ordering::SeqCst);
                    self.written.store(rev, Ordering::Relaxed);
                    *self.serving_at.write().unwrap_or_else(|e| e.into_inner()) = None;
                    tracing::info!(holder = %self.holder, "this hub now holds the etcd lease");
                    let copy = followed
                        .as_ref()
                        .and_then(|f| self.block_on(f.take_at(rev, self.client.timeout)));
                    self.unfollow();
                    break copy;
                }
                Ok(Err((other, _))) if !wait => {
                    return Err(failed(format!(
                        "a hub ({other}) serves this etcd prefix; stop it first"
                    )));
                }
                Ok(Err((other, address))) => {
                    *self.serving_at.write().unwrap_or_else(|e| e.into_inner()) = address;
                    if other != announced {
                        tracing::info!(serving = %other, "another hub serves this etcd prefix; standing by");
                        announced = other;
                    }
                }
                Err(e) if !wait => return Err(failed(e)),
                Err(e) => tracing::warn!(error = %e, "cannot reach etcd; standing by"),
            }
            let go_on = self.handle.block_on(async {
                let freed = async {
                    match &followed {
                        Some(f) => f.freed.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => false,
                    _ = lease.lost.cancelled() => false,
                    // The holder let the key go: try at once.
                    _ = freed => true,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => true,
                }
            });
            if !go_on {
                self.unfollow();
                return Ok(false);
            }
        };
        if let Some(mirror) = warm {
            // Current up to the claim: nothing can have changed since but through this hub.
            *self.mirror.write().unwrap_or_else(|e| e.into_inner()) = mirror;
            self.stale.store(false, Ordering::SeqCst);
            self.warm_takeovers.fetch_add(1, Ordering::Relaxed);
            tracing::info!("serving from the copy this hub kept while standing by");
            return Ok(true);
        }
        // Whatever this hub held before is out of date: another hub may have written since.
        self.stale.store(true, Ordering::SeqCst);
        if let Err(e) = self.reload() {
            // Serving from an old copy is not an option: give the lease up and start over.
            self.claim.store(0, Ordering::SeqCst);
            lease.lost.cancel();
            return Err(e);
        }
        Ok(true)
    }

    /// Takes the leader key if it is free: `Ok(revision)`, or `Err((holder, its address))`.
    async fn try_claim(&self) -> Result<Result<i64, (String, Option<String>)>, CallError> {
        let leader = self.keys.leader.clone();
        let lease = self.lease().id;
        let mut success = vec![put_op(
            leader.clone(),
            self.holder.clone().into_bytes(),
            lease,
        )];
        if self.peer_address.is_empty() {
            // No address to publish: clear one a previous holder may have left behind.
            success.push(pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: self.keys.address.clone(),
                        range_end: vec![],
                    },
                )),
            });
        } else {
            success.push(put_op(
                self.keys.address.clone(),
                self.peer_address.clone().into_bytes(),
                lease,
            ));
        }
        let r = self
            .client
            .call(
                "claim",
                self.client.kv().txn(pb::TxnRequest {
                    compare: vec![pb::Compare {
                        result: pb::compare::CompareResult::Equal as i32,
                        target: pb::compare::CompareTarget::Create as i32,
                        key: leader.clone(),
                        target_union: Some(pb::compare::TargetUnion::CreateRevision(0)),
                    }],
                    success,
                    failure: vec![
                        range_op(leader, vec![]),
                        range_op(self.keys.address.clone(), vec![]),
                    ],
                }),
            )
            .await?;
        if r.succeeded {
            return Ok(Ok(r.header.map(|h| h.revision).unwrap_or_default()));
        }
        let mut values = r.responses.into_iter().map(|op| match op.response {
            Some(pb::response_op::Response::ResponseRange(rr)) => rr
                .kvs
                .into_iter()
                .next()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
            _ => None,
        });
        let holder = values.next().flatten().unwrap_or_default();
        let address = values.next().flatten();
        Ok(Err((holder, address)))
    }

    /// The standby's copy, started if it is not running.
    fn follow(&self) -> Arc<follow::Followed> {
        let mut slot = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = slot.as_ref().filter(|f| !f.stop.is_cancelled()) {
            return f.clone();
        }
        let f = follow::Followed::new();
        self.handle.spawn(follow::run(
            self.client.clone(),
            self.keys.clone(),
            f.clone(),
            self.loads.clone(),
        ));
        *slot = Some(f.clone());
        f
    }

    /// Stops the standby's copy (its memory goes with it).
    fn unfollow(&self) {
        if let Some(f) = self
            .followed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            f.stop.cancel();
        }
    }

    /// How many times every record was read from etcd, and how many takeovers served from
    /// the copy kept while standing by instead.
    pub fn load_counts(&self) -> (u64, u64) {
        (
            self.loads.load(Ordering::Relaxed),
            self.warm_takeovers.load(Ordering::Relaxed),
        )
    }

    /// The revision this hub's records are current to — while it serves, its last write's
    /// (or its claim's); while it stands by, its copy's — and, standing by, how long ago
    /// etcd confirmed the copy current. `None` before a standby's copy started.
    pub fn currency(&self) -> Option<(i64, Option<Duration>)> {
        if self.holds() {
            return Some((self.written.load(Ordering::Relaxed), None));
        }
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        let f = followed.as_ref().filter(|f| !f.stop.is_cancelled())?;
        let (revision, age) = f.state();
        Some((revision, Some(age)))
    }

    /// One record as this hub knows it now, and how long ago etcd confirmed that knowledge
    /// current: while it stands by, the copy it keeps and when etcd last confirmed that copy
    /// current (`None` before the copy's first load). While it holds the lease, its own
    /// records with no confirmation: from taking the lease until it serves, they may not be
    /// loaded yet, and the hub that holds the lease judges by its allow-list anyway.
    pub fn known(&self, tree: Tree, key: &[u8]) -> (Option<Vec<u8>>, Option<Duration>) {
        if self.holds() {
            return (self.get(tree, key).ok().flatten(), None);
        }
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = followed.as_ref().filter(|f| !f.stop.is_cancelled()) else {
            return (None, None);
        };
        let copy = f.copy.lock().unwrap_or_else(|e| e.into_inner());
        (
            copy.mirror.trees[tree.index()].get(key).cloned(),
            copy.confirmed.map(|at| at.elapsed()),
        )
    }

    /// Gives the leader key up at once (a clean shutdown), so a standby hub takes over now.
    pub fn release(&self) {
        let lease = self.lease();
        let id = lease.id;
        let client = self.client.clone();
        let _ = self.block_on(async move {
            client
                .call(
                    "lease revoke",
                    client.lease().lease_revoke(pb::LeaseRevokeRequest { id }),
                )
                .await
        });
        lease.lost.cancel();
    }

    /// One step of history compaction, run every `--etcd-compaction-interval` by the serving
    /// hub: etcd keeps every version of every key until someone compacts, and every status
    /// report is a new version, so without it etcd reaches its space quota (2 GiB by default)
    /// and refuses all writes. Like kube-apiserver's compactor, each step compacts to the
    /// revision the previous step saw, so one interval of history always remains. Returns the
    /// revision compacted to (none at the first step). Blocking.
    ///
    /// Compaction is etcd-wide (every prefix): it drops only versions that were superseded
    /// more than an interval ago, never a current value.
    pub fn compact_step(&self) -> Result<Option<i64>, StoreError> {
        if !self.holds() {
            return Ok(None);
        }
        self.block_on(async {
            let now = self
                .client
                .call(
                    "revision",
                    self.client.kv().range(pb::RangeRequest {
                        key: self.keys.leader.clone(),
                        count_only: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(failed)?
                .header
                .map(|h| h.revision)
                .unwrap_or_default();
            let previous = self.compact_mark.swap(now, Ordering::SeqCst);
            if previous <= 0 || previous >= now {
                return Ok(None);
            }
            let compact = pb::CompactionRequest {
                revision: previous,
                physical: false,
            };
            match self
                .client
                .call("compact", self.client.kv().compact(compact))
                .await
            {
                Ok(_) => Ok(Some(previous)),
                // Someone (etcd's own auto-compaction, another installation) got further.
                Err(e) if e.detail.contains("required revision has been compacted") => {
                    Ok(Some(previous))
                }
                Err(e) => Err(failed(e)),
            }
        })
    }

    /// Whether etcd still holds the history at `revision`. For tests.
    #[cfg(feature = "crash-hooks")]
    pub fn history_at(&self, revision: i64) -> Result<bool, StoreError> {
        let r = self.block_on(self.client.call(
            "read",
            self.client.kv().range(pb::RangeRequest {
                key: self.keys.leader.clone(),
                revision,
                ..Default::default()
            }),
        ));
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.detail.contains("required revision has been compacted") => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    /// One record as etcd holds it now, for a process that neither serves nor stands by
    /// (`migrate`). Blocking.
    pub fn read(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.block_on(self.get_remote(&self.keys.record(tree, key)))
    }

    async fn get_remote(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let request = pb::RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        let mut last = None;
        for _ in 0..WRITE_TRIES {
            match self
                .client
                .call("read", self.client.kv().range(request.clone()))
                .await
            {
                Ok(r) => return Ok(r.kvs.into_iter().next().map(|kv| kv.value)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| failed("etcd read failed"), failed))
    }

    /// One fenced transaction: applied only while this hub holds the leader key.
    ///
    /// A call that fails or times out is tried again (on the next member) a few times: while
    /// a member dies or etcd elects a new leader, one call may go unanswered. Trying again
    /// is safe because this hub's writer is the only one and writes one transaction at a
    /// time: if an earlier try did land, the same puts and deletes land again unchanged.
    async fn txn(&self, success: Vec<pb::RequestOp>) -> Result<(), StoreError> {
        let claim = self.claim.load(Ordering::SeqCst) as i64;
        let request = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Create as i32,
                key: self.keys.leader.clone(),
                target_union: Some(pb::compare::TargetUnion::CreateRevision(claim)),
            }],
            success,
            failure: vec![],
        };
        let mut last = None;
        for _ in 0..WRITE_TRIES {
            if self.lease().lost.is_cancelled() {
                break;
            }
            match self
                .client
                .call("write", self.client.kv().txn(request.clone()))
                .await
            {
                Ok(r) if r.succeeded => {
                    if let Some(h) = r.header {
                        self.written.fetch_max(h.revision, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Ok(_) => {
                    // Definitely not applied, and never will be: another hub holds the key.
                    self.lease().lost.cancel();
                    return Err(failed(NOT_HOLDING));
                }
                Err(e) => last = Some(e),
            }
        }
        self.stale.store(true, Ordering::SeqCst);
        Err(match last {
            Some(e) => StoreError::Failed(format!(
                "{e}; the change was not confirmed (it may still take effect)"
            )),
            None => failed(NOT_HOLDING),
        })
    }

    fn to_request(&self, op: &Op) -> pb::RequestOp {
        match op {
            Op::Put { tree, key, value } => put_op(self.keys.record(*tree, key), value.clone(), 0),
            Op::Delete { tree, key } => pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: self.keys.record(*tree, key),
                        range_end: vec![],
                    },
                )),
            },
        }
    }

    async fn apply_ops(&self, ops: &[Op]) -> Result<(), StoreError> {
        for run in runs(ops) {
            self.txn(run.iter().map(|op| self.to_request(op)).collect())
                .await?;
        }
        Ok(())
    }

    /// A commit too large for one transaction: stage, write the intent, apply, clear.
    async fn commit_large(&self, ops: &[&Op]) -> Result<(), StoreError> {
        self.txn(vec![delete_prefix_op(self.keys.staging.clone())])
            .await?;
        let mut chunks = 0;
        let mut start = 0;
        while start < ops.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < ops.len() && (end == start || bytes + op_bytes(ops[end]) <= MAX_VALUE) {
                bytes += op_bytes(ops[end]);
                end += 1;
            }
            let chunk = encode(&ops[start..end]);
            self.txn(vec![put_op(self.keys.chunk(chunks), chunk, 0)])
                .await?;
            chunks += 1;
            start = end;
        }
        // The commit point.
        self.txn(vec![put_op(
            self.keys.intent.clone(),
            chunks.to_string().into_bytes(),
            0,
        )])
        .await?;
        let owned: Vec<Op> = ops.iter().map(|op| (*op).clone()).collect();
        self.apply_ops(&owned).await?;
        self.clear_intent().await
    }

    /// Stages `batch` and writes its intent, then stops as if the process died there: the
    /// next hub to take over must finish it. Fault injection for tests.
    #[cfg(feature = "crash-hooks")]
    pub fn commit_then_die(&self, batch: &Batch) -> Result<(), StoreError> {
        let ops = last_per_key(&[batch]);
        self.block_on(async {
            self.txn(vec![delete_prefix_op(self.keys.staging.clone())])
                .await?;
            let chunk = encode(&ops);
            self.txn(vec![put_op(self.keys.chunk(0), chunk, 0)]).await?;
            self.txn(vec![put_op(self.keys.intent.clone(), b"1".to_vec(), 0)])
                .await
        })
    }

    /// Whether a large commit's intent is waiting to be finished. For tests.
    #[cfg(feature = "crash-hooks")]
    pub fn intent_pending(&self) -> Result<bool, StoreError> {
        Ok(self.block_on(self.get_remote(&self.keys.intent))?.is_some())
    }

    async fn clear_intent(&self) -> Result<(), StoreError> {
        self.txn(vec![
            pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: self.keys.intent.clone(),
                        range_end: vec![],
                    },
                )),
            },
            delete_prefix_op(self.keys.staging.clone()),
        ])
        .await
    }

    /// Finishes an intent a previous writer left, then loads every record.
    async fn reload_async(&self) -> Result<(), StoreError> {
        if let Some(n) = self.get_remote(&self.keys.intent).await? {
            let chunks: usize = String::from_utf8_lossy(&n)
                .parse()
                .map_err(|_| failed("the etcd store's pending-commit record is corrupt"))?;
            tracing::info!(
                chunks,
                "finishing a large commit a previous hub left half-applied"
            );
            for i in 0..chunks {
                let chunk = self.get_remote(&self.keys.chunk(i)).await?.ok_or_else(|| {
                    failed(format!("staged chunk {i} of a pending commit is missing"))
                })?;
                let ops = decode(&chunk).map_err(failed)?;
                self.apply_ops(&ops).await?;
            }
            self.clear_intent().await?;
        }
        let (kvs, _) = follow::load_all(&self.client, &self.keys.data).await?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let mut mirror = Mirror::new();
        for kv in kvs {
            if let Some((tree, key)) = self.keys.parse(&kv.key) {
                mirror.apply(&Op::Put {
                    tree,
                    key,
                    value: kv.value,
                });
            }
        }
        *self.mirror.write().unwrap_or_else(|e| e.into_inner()) = mirror;
        self.stale.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn reload(&self) -> Result<(), StoreError> {
        self.block_on(self.reload_async())
    }

    /// Copies every record of `from` into this (empty) prefix, in bounded transactions, and
    /// takes the leader key for the copy: for `tether-hub migrate`. Returns the records
    /// copied.
    pub fn import(&self, from: &dyn Store) -> Result<u64, StoreError> {
        self.import_records(from, true)
    }

    /// Copies every record of `from` but the schema record, then stops as if the process
    /// died there: the prefix must still read as empty. Fault injection for tests.
    #[cfg(feature = "crash-hooks")]
    pub fn import_then_die(&self, from: &dyn Store) -> Result<u64, StoreError> {
        self.import_records(from, false)
    }

    fn import_records(&self, from: &dyn Store, finish: bool) -> Result<u64, StoreError> {
        if !self.claim_loop(&CancellationToken::new(), false)? {
            return Err(failed("lost the etcd lease while importing"));
        }
        let mut n = 0;
        let mut ops = Vec::new();
        let mut schema = None;
        for tree in Tree::ALL {
            for (key, value) in from.scan_prefix(tree, b"")? {
                if value.len() > MAX_VALUE {
                    return Err(too_large(tree, &key, value.len()));
                }
                n += 1;
                if tree == Tree::Meta && key == SCHEMA_KEY {
                    schema = Some(Op::Put { tree, key, value });
                } else {
                    ops.push(Op::Put { tree, key, value });
                }
            }
        }
        // The schema record is what marks a prefix as holding a hub: written last, so an
        // import cut short leaves a prefix that still reads as empty and can be imported
        // again (the same puts), never a hub with records missing.
        ops.extend(schema.or_else(|| {
            Some(Op::Put {
                tree: Tree::Meta,
                key: SCHEMA_KEY.to_vec(),
                value: SCHEMA_VERSION.to_be_bytes().to_vec(),
            })
        }));
        self.block_on(self.apply_ops(&ops[..ops.len() - 1]))?;
        if !finish {
            return Ok(n);
        }
        self.block_on(self.apply_ops(&ops[ops.len() - 1..]))?;
        self.reload()?;
        Ok(n)
    }
}

fn too_large(tree: Tree, key: &[u8], len: usize) -> StoreError {
    StoreError::Failed(format!(
        "record {}/{} is {len} bytes; the etcd store takes at most {MAX_VALUE} per record \
         (lower --max-bundle-size)",
        tree.name(),
        tether_common::text::quote_short(&String::from_utf8_lossy(key), 120)
    ))
}

fn put_op(key: Vec<u8>, value: Vec<u8>, lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key,
            value,
            lease,
        })),
    }
}

fn range_op(key: Vec<u8>, range_end: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
            key,
            range_end,
            ..Default::default()
        })),
    }
}

fn delete_prefix_op(prefix: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
            },
        )),
    }
}

impl Store for EtcdStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.trees[tree.index()].get(key).cloned())
    }

    fn get_many(&self, tree: Tree, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
        Ok(keys
            .iter()
            .map(|k| m.trees[tree.index()].get(*k).cloned())
            .collect())
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
        let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.trees[tree.index()]
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_range(
        &self,
        tree: Tree,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
        Ok(m.trees[tree.index()]
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        if !self.holds() {
            return Err(failed(NOT_HOLDING));
        }
        let result = (|| {
            if self.stale.load(Ordering::SeqCst) {
                self.reload()?;
            }
            for group in groups(batches) {
                let ops = last_per_key(&group);
                if let Some(Op::Put { tree, key, value }) = ops
                    .iter()
                    .find(|op| matches!(op, Op::Put { value, .. } if value.len() > MAX_VALUE))
                {
                    return Err(too_large(*tree, key, value.len()));
                }
                let bytes: usize = ops.iter().map(|op| op_bytes(op)).sum();
                if ops.len() <= TXN_OPS && bytes <= TXN_BYTES {
                    self.block_on(self.txn(ops.iter().map(|op| self.to_request(op)).collect()))?;
                } else {
                    self.block_on(self.commit_large(&ops))?;
                }
                // The copy follows etcd group by group: if a later group fails, what landed
                // is in both.
                let mut m = self.mirror.write().unwrap_or_else(|e| e.into_inner());
                for op in ops {
                    m.apply(op);
                }
            }
            Ok(())
        })();
        self.healthy.store(result.is_ok(), Ordering::SeqCst);
        result
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.mirror.read().unwrap_or_else(|e| e.into_inner()).bytes)
    }

    fn backup(&self, to: &Path) -> Result<u64, StoreError> {
        // The same archive as the embedded store's: a redb file of every record, from one
        // snapshot of the copy (taken under the read lock, so no commit is half in it).
        let ops: Vec<Op> = {
            let m = self.mirror.read().unwrap_or_else(|e| e.into_inner());
            Tree::ALL
                .iter()
                .flat_map(|t| {
                    m.trees[t.index()].iter().map(|(k, v)| Op::Put {
                        tree: *t,
                        key: k.clone(),
                        value: v.clone(),
                    })
                })
                .collect()
        };
        let copy = super::RedbStore::open(to)?;
        let n = ops.len() as u64;
        copy.commit(&[&Batch { ops }])?;
        Ok(n)
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
            && self.lease().answering.load(Ordering::Relaxed)
            && self.holds()
    }

    fn serving(&self) -> bool {
        self.holds()
    }

    fn recover(&self) -> Result<(), StoreError> {
        if !self.holds() {
            return Err(failed(NOT_HOLDING));
        }
        let r = self.reload();
        self.healthy.store(r.is_ok(), Ordering::SeqCst);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Tree, key: &str, value: &str) -> Op {
        Op::Put {
            tree,
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/t/data/"), b"/t/data0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn a_standby_follows_records_intent_and_leader_but_not_staged_chunks() {
        let keys = Keys::new("/tether");
        let (start, end) = keys.followed();
        let inside = |k: &[u8]| start <= k && k < end;
        assert!(inside(&keys.record(Tree::Meta, b"")));
        assert!(inside(&keys.record(Tree::Workloads, b"\xff\xff")));
        assert!(inside(&keys.intent));
        assert!(inside(&keys.leader));
        assert!(inside(&keys.address));
        assert!(!inside(&keys.chunk(0)));
        assert!(!inside(&keys.chunk(99_999_999)));
        // Nothing of another installation whose prefix starts the same.
        let other = Keys::new("/tether2");
        assert!(!inside(&other.leader) && !inside(&other.record(Tree::Meta, b"")));
    }

    #[test]
    fn record_keys_round_trip_and_other_keys_are_not_records() {
        let k = Keys::new("/tether");
        let key = k.record(Tree::Assignments, b"c1/web");
        assert_eq!(key, b"/tether/data/assignments/c1/web".to_vec());
        assert_eq!(k.parse(&key), Some((Tree::Assignments, b"c1/web".to_vec())));
        assert_eq!(k.parse(b"/tether/leader"), None);
        assert_eq!(k.parse(b"/tether/data/nosuchtree/x"), None);
    }

    #[test]
    fn only_the_last_change_to_a_key_is_sent() {
        let mut a = Batch::new();
        a.put(Tree::Users, "u", b"1".to_vec());
        a.put(Tree::Clusters, "u", b"x".to_vec());
        let mut b = Batch::new();
        b.delete(Tree::Users, "u");
        b.put(Tree::Users, "v", b"2".to_vec());
        let ops = last_per_key(&[&a, &b]);
        assert_eq!(ops.len(), 3);
        assert!(matches!(
            ops[0],
            Op::Put {
                tree: Tree::Clusters,
                ..
            }
        ));
        assert!(matches!(ops[1], Op::Delete { tree: Tree::Users, key } if key == b"u"));
    }

    #[test]
    fn a_group_commit_is_cut_between_batches_never_inside_one() {
        let small = |n: usize| {
            let mut b = Batch::new();
            for i in 0..n {
                b.put(Tree::Status, format!("k{i}"), b"v".to_vec());
            }
            b
        };
        let (a, b, c, big) = (small(60), small(60), small(10), small(300));
        let g = groups(&[&a, &b, &c, &big, &a]);
        let sizes: Vec<Vec<usize>> = g
            .iter()
            .map(|run| run.iter().map(|b| b.ops.len()).collect())
            .collect();
        assert_eq!(sizes, vec![vec![60, 60], vec![10], vec![300], vec![60]]);
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn staged_chunks_decode_to_what_was_encoded_and_refuse_garbage() {
        let ops = [
            put(Tree::Bundles, "h1", "gz"),
            Op::Delete {
                tree: Tree::Placements,
                key: b"web/c1".to_vec(),
            },
            put(Tree::Revisions, "", ""),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        let back = decode(&encode(&refs)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{ops:?}"));
        let bytes = encode(&refs);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode(&[1, 200, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn runs_respect_both_transaction_limits() {
        let many: Vec<Op> = (0..300)
            .map(|i| put(Tree::Status, &format!("k{i}"), "v"))
            .collect();
        let r = runs(&many);
        assert_eq!(
            r.iter().map(|r| r.len()).collect::<Vec<_>>(),
            vec![120, 120, 60]
        );
        let big = "x".repeat(400 << 10);
        let heavy: Vec<Op> = (0..5)
            .map(|i| put(Tree::Bundles, &format!("b{i}"), &big))
            .collect();
        let r = runs(&heavy);
        assert!(
            r.iter()
                .all(|run| run.iter().map(op_bytes).sum::<usize>() <= TXN_BYTES)
        );
        assert_eq!(r.iter().map(|r| r.len()).sum::<usize>(), 5);
        assert!(runs::<Op>(&[]).is_empty());
    }

    #[test]
    fn the_copy_counts_its_bytes_through_overwrites_and_deletes() {
        let mut m = Mirror::new();
        m.apply(&put(Tree::Users, "a", "1234"));
        m.apply(&put(Tree::Users, "a", "12"));
        assert_eq!(m.bytes, 3);
        m.apply(&Op::Delete {
            tree: Tree::Users,
            key: b"a".to_vec(),
        });
        m.apply(&Op::Delete {
            tree: Tree::Users,
            key: b"a".to_vec(),
        });
        assert_eq!(m.bytes, 0);
    }
}
