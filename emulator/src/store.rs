//! The emulator's object store: every object as JSON, a global resourceVersion, and a
//! bounded history of changes that watches resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::resources::{self, ResourceType};

/// Changes kept for watches that resume from an older resourceVersion.
const HISTORY: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: Key,
    pub object: Value,
}

/// Changes since a resourceVersion, and the receiver of later ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

pub struct Store {
    /// Workload objects whose spec changed and are not ready yet, with when it changed.
    pub unready: BTreeMap<Key, std::time::Instant>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    history: VecDeque<Arc<Event>>,
    pub types: Vec<ResourceType>,
    events: broadcast::Sender<Arc<Event>>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The part of an object whose change bumps `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl Store {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(8192);
        Store {
            unready: BTreeMap::new(),
            objects: BTreeMap::new(),
            rv: 1,
            uid: 0,
            history: VecDeque::new(),
            types: resources::builtin(),
            events,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The type served at `group/version/plural`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    fn record(&mut self, kind: EventType, key: Key, object: Value) {
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            key,
            object,
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        let _ = self.events.send(ev);
    }

    /// Events after `rv` plus a receiver for later ones, taken atomically (no gap, no
    /// duplicate). `Err` when `rv` is older than the history kept (410 Gone).
    pub fn watch_from(&self, rv: u64) -> Result<WatchStart, ApiError> {
        if let Some(first) = self.history.front()
            && rv + 1 < first.rv
        {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                first.rv - 1
            )));
        }
        let backlog = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// A copy to try a write on (`dryRun=All`): nothing done to it is stored or seen by
    /// watchers.
    pub fn scratch(&self) -> Store {
        let (events, _) = broadcast::channel(1);
        Store {
            unready: self.unready.clone(),
            objects: self.objects.clone(),
            rv: self.rv,
            uid: self.uid,
            history: VecDeque::new(),
            types: self.types.clone(),
            events,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of a type, in one namespace or all.
    pub fn list(&self, t: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| {
                k.group == t.group
                    && k.plural == t.plural
                    && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn key(t: &ResourceType, namespace: &str, name: &str) -> Key {
        Key {
            group: t.group.clone(),
            plural: t.plural.clone(),
            namespace: if t.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&Key {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: ns.into(),
        })
    }

    /// Creates an object (metadata is filled in as a real API server does).
    pub fn create(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let meta = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    let suffix = format!("{:05x}", (self.uid * 7919 + 12345) % 0xfffff);
                    meta["name"] = json!(format!("{prefix}{suffix}"));
                }
                None => {
                    return Err(ApiError::invalid(
                        &t.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            }
        }
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        if let Err(why) = validate_object_name(&name) {
            return Err(ApiError::invalid(
                &t.kind,
                &name,
                &format!("metadata.name: Invalid value: \"{name}\": {why}"),
            ));
        }
        if t.namespaced {
            if !self.namespace_exists(namespace) {
                return Err(ApiError::not_found("namespaces", namespace));
            }
            meta["namespace"] = json!(namespace);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        let key = Self::key(t, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&t.plural, &t.group, &name));
        }
        self.rv += 1;
        self.uid += 1;
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        meta["resourceVersion"] = json!(self.rv.to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        self.admit(t, &mut obj);
        if becomes_ready(t) {
            self.unready.insert(key.clone(), std::time::Instant::now());
        }
        self.objects.insert(key.clone(), obj.clone());
        self.record(EventType::Added, key, obj.clone());
        self.after_write(t, &obj);
        Ok(obj)
    }

    /// Replaces an object. `subresource` `status` replaces only `.status`; a main update
    /// keeps the stored status for types with a status subresource.
    pub fn update(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
    ) -> Result<Value, ApiError> {
        let key = Self::key(t, namespace, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&t.plural, name));
        };
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(
                &t.plural,
                &t.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut new = match subresource {
            Some("status") => {
                let mut n = old.clone();
                n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                n
            }
            _ => {
                if t.status_subresource {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(o) = obj.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                obj
            }
        };
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(t.kind);
        self.admit(t, &mut new);
        // Identity and server-owned fields cannot be changed by a client.
        for f in ["uid", "creationTimestamp", "namespace", "name"] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bumped = if spec_part(&old) != spec_part(&new) {
            generation + 1
        } else {
            generation
        };
        new["metadata"]["generation"] = json!(bumped);
        if new.pointer("/metadata/resourceVersion").is_none() {
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        }
        if new == old {
            return Ok(old);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if bumped != generation && becomes_ready(t) {
            self.unready.insert(key.clone(), std::time::Instant::now());
        }
        self.objects.insert(key.clone(), new.clone());
        self.record(EventType::Modified, key, new.clone());
        self.after_write(t, &new);
        Ok(new)
    }

    /// Deletes an object; a namespace takes everything in it along.
    pub fn delete(
        &mut self,
        t: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = Self::key(t, namespace, name);
        let Some(mut obj) = self.objects.remove(&key) else {
            return Err(ApiError::not_found(&t.plural, name));
        };
        if t.group.is_empty() && t.plural == "namespaces" {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.namespace == name)
                .cloned()
                .collect();
            for k in inside {
                if let Some(mut o) = self.objects.remove(&k) {
                    self.rv += 1;
                    o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                    self.record(EventType::Deleted, k, o);
                }
            }
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.unready.remove(&key);
        self.record(EventType::Deleted, key, obj.clone());
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            self.unregister_crd(&obj);
        }
        // Garbage collection (background propagation): dependents go with their owner.
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in dependents {
                if let Some(dt) = self
                    .types
                    .iter()
                    .find(|t| t.group == k.group && t.plural == k.plural)
                    .cloned()
                {
                    let _ = self.delete(&dt, &k.namespace, &k.name);
                }
            }
        }
        Ok(obj)
    }

    /// Marks workload objects whose spec changed at least `after` ago as ready (complete, bound),
    /// as their controllers would. Objects whose pods use an image tagged `:broken` never are.
    pub fn settle(&mut self, after: std::time::Duration) {
        let due: Vec<Key> = self
            .unready
            .iter()
            .filter(|(_, t)| t.elapsed() >= after)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.unready.remove(&k);
            let Some(obj) = self.objects.get(&k).cloned() else {
                continue;
            };
            let Some(t) = self
                .types
                .iter()
                .find(|t| t.group == k.group && t.plural == k.plural)
                .cloned()
            else {
                continue;
            };
            let nodes = self
                .objects
                .keys()
                .filter(|k| k.group.is_empty() && k.plural == "nodes")
                .count() as i64;
            let status = settled_status(&k.plural, &obj, nodes);
            let _ = self.update(
                &t,
                &k.namespace,
                &k.name,
                json!({ "status": status }),
                Some("status"),
            );
        }
    }

    /// Server-side defaults applied on every write.
    fn admit(&self, t: &ResourceType, obj: &mut Value) {
        super::defaults::normalise(&t.group, &t.kind, obj);
        if t.group.is_empty() && t.plural == "namespaces" {
            obj["status"] = json!({ "phase": "Active" });
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            }
        }
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions"
            // Established once for these names (a new time on every write would make every
            // write a change).
            && obj.pointer("/status/acceptedNames") != obj.pointer("/spec/names")
        {
            let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
            obj["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now_rfc3339() },
                    { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now_rfc3339() },
                ],
                "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array).map(|vs| {
                    vs.iter().filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()
                }).unwrap_or_default(),
            });
        }
    }

    fn after_write(&mut self, t: &ResourceType, obj: &Value) {
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            self.register_crd(obj);
        }
    }

    fn crd_types(obj: &Value) -> Vec<ResourceType> {
        let spec = &obj["spec"];
        let s = |p: &str| {
            spec.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let strings = |p: &str| {
            spec.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let kind = s("/names/kind");
        let plural = s("/names/plural");
        let singular = match s("/names/singular") {
            x if x.is_empty() => kind.to_lowercase(),
            x => x,
        };
        spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["served"] != json!(false))
            .map(|v| ResourceType {
                group: s("/group"),
                version: v["name"].as_str().unwrap_or_default().to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: s("/scope") != "Cluster",
                short_names: strings("/names/shortNames"),
                categories: strings("/names/categories"),
                status_subresource: v.pointer("/subresources/status").is_some(),
            })
            .collect()
    }

    fn register_crd(&mut self, obj: &Value) {
        self.unregister_crd(obj);
        self.types.extend(Self::crd_types(obj));
    }

    fn unregister_crd(&mut self, obj: &Value) {
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.types
            .retain(|t| !(t.group == group && t.plural == plural));
    }
}

/// Kinds the emulator makes ready after a delay, like their controllers would.
fn becomes_ready(t: &ResourceType) -> bool {
    matches!(
        (t.group.as_str(), t.plural.as_str()),
        ("apps", "deployments" | "statefulsets" | "daemonsets")
            | ("batch", "jobs")
            | ("", "persistentvolumeclaims")
    )
}

fn broken(obj: &Value) -> bool {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["image"].as_str().is_some_and(|i| i.ends_with(":broken")))
        })
}

fn settled_status(plural: &str, obj: &Value, nodes: i64) -> Value {
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ok = !broken(obj);
    let ready = if ok { replicas } else { 0 };
    let now = now_rfc3339();
    match plural {
        "deployments" => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas - ready,
            "conditions": [
                { "type": "Available", "status": if ok { "True" } else { "False" },
                  "reason": if ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }, "lastTransitionTime": now },
                { "type": "Progressing", "status": "True",
                  "reason": if ok { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }, "lastTransitionTime": now },
            ],
        }),
        "statefulsets" => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "currentReplicas": ready,
            "updatedReplicas": replicas,
            "currentRevision": format!("rev-{generation}"),
            "updateRevision": format!("rev-{generation}"),
        }),
        "daemonsets" => {
            let n = if ok { nodes } else { 0 };
            json!({
                "observedGeneration": generation,
                "desiredNumberScheduled": nodes,
                "currentNumberScheduled": nodes,
                "updatedNumberScheduled": nodes,
                "numberReady": n,
                "numberAvailable": n,
            })
        }
        "jobs" if ok => json!({
            "succeeded": 1,
            "conditions": [{ "type": "Complete", "status": "True", "lastTransitionTime": now }],
        }),
        "jobs" => json!({ "active": 1 }),
        _ => json!({ "phase": "Bound" }),
    }
}

/// A lowercase RFC 1123 subdomain, as most object names must be.
fn validate_object_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}
