//! The Workload: what users write (`apiVersion: tether.dev/v1alpha1, kind: Workload`), how it
//! is parsed and checked, and how one cluster's copy is rendered from it.
//!
//! Plain Kubernetes manifests stay plain inside `spec.manifests`. [`parse_documents`] turns a
//! YAML file into Workloads and names the file, document and field of any mistake;
//! [`Workload::validate`] checks what serde cannot; [`render`] applies the overrides that
//! match a cluster; [`bundle`] is what a cluster receives.

pub mod bundle;
pub mod render;
pub mod schedule;
#[cfg(feature = "schema")]
pub mod schema;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::render::{render, render_with_share};
pub use self::selector::LabelSelector;
use crate::identity::validate_name;
use crate::labels;

pub const API_VERSION: &str = "tether.dev/v1alpha1";
pub const KIND: &str = "Workload";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Spec {
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::objects"))]
    pub manifests: Vec<Value>,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    #[serde(default)]
    pub apply: ApplyOptions,
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_feedback: Vec<FeedbackRule>,
    /// Divide a Deployment's or StatefulSet's replicas over the placed clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<schedule::ReplicaSplit>,
    /// How a new revision reaches clusters that run an older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<schedule::Rollout>,
}

/// Where the workload runs: the listed clusters and those matching the selector. Without
/// either it runs nowhere; `clusterSelector: {}` selects every cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Choose at most this many of the selected clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clusters: Option<u32>,
    /// Prefer distinct values of this cluster label when choosing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_by: Option<String>,
    /// Taints (and cordons) these tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<schedule::Toleration>,
    /// Replace a cluster that stays Offline (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<schedule::Failover>,
}

impl Placement {
    /// Whether a cluster with this name and these labels is placed.
    pub fn selects(&self, name: &str, labels: &labels::Labels) -> bool {
        self.clusters.iter().any(|c| c == name)
            || self
                .cluster_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }
}

/// Patches for the copies of clusters matching `clusterSelector`, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Override {
    #[serde(default)]
    pub cluster_selector: LabelSelector,
    pub patches: Vec<PatchSpec>,
}

/// One patch: `merge` (RFC 7386) or `json` (RFC 6902 operations), never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PatchSpec {
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::object"))]
    pub merge: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "schema::objects"))]
    pub json: Option<Vec<Value>>,
}

/// Picks manifests by kind and name (and, when given, namespace and apiVersion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Target {
    pub fn matches(&self, manifest: &Value) -> bool {
        let s = |p: &str| manifest.pointer(p).and_then(Value::as_str);
        s("/kind") == Some(self.kind.as_str())
            && s("/metadata/name") == Some(self.name.as_str())
            && self
                .api_version
                .as_deref()
                .is_none_or(|a| s("/apiVersion") == Some(a))
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| s("/metadata/namespace").unwrap_or("default") == n)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum UpdateStrategy {
    /// Server-side apply, correcting drift.
    #[default]
    ServerSideApply,
    /// Create what is missing; never change what exists.
    CreateOnly,
    /// Observe and report only.
    ReadOnly,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConflictPolicy {
    /// Leave objects that exist unmanaged alone and report the conflict.
    #[default]
    Abort,
    /// Take over objects that exist unmanaged.
    Adopt,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApplyOptions {
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    /// Fields left to whoever owns them (an HPA owning replicas is not fought).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_fields: Vec<IgnoreRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IgnoreRule {
    pub target: Target,
    /// JSON pointers, e.g. `/spec/replicas`.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DeletePolicy {
    /// Delete the objects from the cluster when the workload leaves it.
    #[default]
    Delete,
    /// Leave them running, unmanaged.
    Orphan,
}

/// Returns a field of a managed object in the workload's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeedbackRule {
    pub target: Target,
    /// A dotted path like `.status.readyReplicas` (`[N]` indexes lists).
    pub json_path: String,
}

/// A mistake in a workload file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadError {
    pub source: String,
    /// 1-based document number within the file.
    pub document: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.source, self.document)?;
        if !self.field.is_empty() {
            write!(f, ", field {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for WorkloadError {}

/// A field path and what is wrong with it.
type Problem = (String, String);

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    (field.into(), message.into())
}

/// What one status report may carry: the agent sends at most this much, and the hub keeps
/// at most this much of whatever arrives.
pub mod limits {
    /// Objects listed per report (`objectsTotal` counts all).
    pub const MAX_STATUS_OBJECTS: usize = 50;
    /// Recent drift corrections listed per report.
    pub const MAX_STATUS_DRIFT: usize = 10;
    /// Status-feedback values per report.
    pub const MAX_STATUS_FEEDBACK: usize = 50;
    /// Bytes of any one text (a message, a name, a value).
    pub const MAX_STATUS_TEXT: usize = 1024;
}

/// How a workload is doing in one cluster, as its agent judges it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Applied; health not known yet (or not applicable).
    Applied,
    Progressing,
    Available,
    /// An object failed to apply or is unhealthy.
    Degraded,
    /// Nothing reported (yet), or a value this build does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "Unknown",
            Phase::Applied => "Applied",
            Phase::Progressing => "Progressing",
            Phase::Available => "Available",
            Phase::Degraded => "Degraded",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a viewer is shown instead of a Secret's values.
pub const REDACTED: &str = "<redacted>";

/// Replaces the values of every Secret in a Workload document (its manifests and the
/// overrides that patch Secrets) with [`REDACTED`]: what a viewer may see of it.
pub fn redact_secrets(workload: &mut Value) {
    fn blank(map: Option<&mut Value>) {
        if let Some(m) = map.and_then(Value::as_object_mut) {
            for v in m.values_mut() {
                *v = Value::from(REDACTED);
            }
        }
    }
    if let Some(ms) = workload
        .pointer_mut("/spec/manifests")
        .and_then(Value::as_array_mut)
    {
        for m in ms.iter_mut().filter(|m| m["kind"] == "Secret") {
            blank(m.get_mut("data"));
            blank(m.get_mut("stringData"));
        }
    }
    if let Some(os) = workload
        .pointer_mut("/spec/overrides")
        .and_then(Value::as_array_mut)
    {
        for p in os
            .iter_mut()
            .filter_map(|o| o.get_mut("patches").and_then(Value::as_array_mut))
            .flatten()
            .filter(|p| p.pointer("/target/kind") == Some(&Value::from("Secret")))
        {
            if let Some(m) = p.get_mut("merge") {
                blank(m.get_mut("data"));
                blank(m.get_mut("stringData"));
            }
            if let Some(ops) = p.get_mut("json").and_then(Value::as_array_mut) {
                for op in ops {
                    if op.get("value").is_some() {
                        op["value"] = Value::from(REDACTED);
                    }
                }
            }
        }
    }
}

/// Whether a status-feedback key (`Kind/name.path`) reads from a Secret.
pub fn feedback_reads_secret(key: &str) -> bool {
    key.starts_with("Secret/")
}

/// Checks an object's name as the member's API server will, so that a name it refuses is
/// refused here, before anything is stored or sent: RBAC kinds take path-segment names
/// (`system:aggregate-to-view` is one), everything else a DNS-1123 subdomain (at most 253
/// characters of lowercase letters, digits, '-' and '.').
pub fn validate_object_name(kind: &str, name: &str) -> Result<(), String> {
    let quoted = crate::text::quote_short(name, 64);
    if name.len() > 253 {
        return Err(format!("name {quoted} is longer than 253 characters"));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']) {
        return Err(format!(
            "name {quoted} may not be empty, '.', '..' or contain '/' or '%'"
        ));
    }
    if matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    ) {
        return if name.chars().any(char::is_control) {
            Err(format!("name {quoted} contains control characters"))
        } else {
            Ok(())
        };
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "name {quoted} must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (a DNS-1123 subdomain)"
        ));
    }
    Ok(())
}

/// The identity of a manifest: `apiVersion/kind namespace/name`.
pub fn object_key(m: &Value) -> String {
    let s = |p: &str| m.pointer(p).and_then(Value::as_str).unwrap_or("");
    format!(
        "{} {} {}/{}",
        s("/apiVersion"),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

/// A short `Kind/name` (or `Kind/namespace/name`) for messages.
pub fn object_ref(m: &Value) -> String {
    let s = |p: &str| m.pointer(p).and_then(Value::as_str).unwrap_or("");
    match s("/metadata/namespace") {
        "" => format!("{}/{}", s("/kind"), s("/metadata/name")),
        ns => format!("{}/{}/{}", s("/kind"), ns, s("/metadata/name")),
    }
}

impl Workload {
    /// Checks everything serde cannot. The error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.api_version != API_VERSION || self.kind != KIND {
            return Err(problem(
                "apiVersion/kind",
                format!(
                    "expected apiVersion {API_VERSION} and kind {KIND}, found {} {}",
                    self.api_version, self.kind
                ),
            ));
        }
        validate_name(&self.metadata.name).map_err(|e| problem("metadata.name", e))?;
        for (k, v) in &self.metadata.labels {
            labels::validate_key(k).map_err(|e| problem("metadata.labels", e))?;
            labels::validate_value(v).map_err(|e| problem("metadata.labels", e))?;
        }
        let spec = &self.spec;
        if spec.manifests.is_empty() {
            return Err(problem(
                "spec.manifests",
                "at least one manifest is required",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, m) in spec.manifests.iter().enumerate() {
            let field = |f: &str| format!("spec.manifests[{i}]{f}");
            if !m.is_object() {
                return Err(problem(
                    field(""),
                    "a manifest must be a Kubernetes object (a mapping)",
                ));
            }
            for (p, what) in [
                ("/apiVersion", ".apiVersion"),
                ("/kind", ".kind"),
                ("/metadata/name", ".metadata.name"),
            ] {
                if m.pointer(p)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(problem(field(what), "required"));
                }
            }
            if let Some(name) = m.pointer("/metadata/name").and_then(Value::as_str)
                && let Err(e) = validate_object_name(m["kind"].as_str().unwrap_or_default(), name)
            {
                return Err(problem(field(".metadata.name"), e));
            }
            if m["kind"] == KIND && m["apiVersion"] == API_VERSION {
                return Err(problem(
                    field(".kind"),
                    "a Workload cannot contain another Workload",
                ));
            }
            if let Some(ns) = m.pointer("/metadata/namespace")
                && ns.as_str().is_none_or(|n| validate_name(n).is_err())
            {
                return Err(problem(
                    field(".metadata.namespace"),
                    "must be a valid namespace name",
                ));
            }
            if !seen.insert(object_key(m)) {
                return Err(problem(
                    field(""),
                    format!("{} appears twice", object_ref(m)),
                ));
            }
        }
        for (i, c) in spec.placement.clusters.iter().enumerate() {
            validate_name(c).map_err(|e| problem(format!("spec.placement.clusters[{i}]"), e))?;
        }
        if let Some(sel) = &spec.placement.cluster_selector {
            sel.validate()
                .map_err(|e| problem("spec.placement.clusterSelector", e))?;
        }
        let check_target = |field: String, t: &Target| -> Result<(), Problem> {
            if spec.manifests.iter().any(|m| t.matches(m)) {
                Ok(())
            } else {
                Err(problem(
                    field,
                    format!("target {t} matches no manifest in spec.manifests"),
                ))
            }
        };
        for (i, o) in spec.overrides.iter().enumerate() {
            o.cluster_selector
                .validate()
                .map_err(|e| problem(format!("spec.overrides[{i}].clusterSelector"), e))?;
            if o.patches.is_empty() {
                return Err(problem(
                    format!("spec.overrides[{i}].patches"),
                    "at least one patch is required",
                ));
            }
            for (j, p) in o.patches.iter().enumerate() {
                let f = format!("spec.overrides[{i}].patches[{j}]");
                check_target(format!("{f}.target"), &p.target)?;
                match (&p.merge, &p.json) {
                    (Some(_), Some(_)) => {
                        return Err(problem(f, "give either merge or json, not both"));
                    }
                    (None, None) => return Err(problem(f, "give a merge or a json patch")),
                    (Some(m), None) if !m.is_object() => {
                        return Err(problem(
                            format!("{f}.merge"),
                            "a merge patch must be a mapping",
                        ));
                    }
                    (None, Some(ops)) => {
                        serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone()))
                            .map_err(|e| {
                                problem(
                                    format!("{f}.json"),
                                    format!("not RFC 6902 operations: {e}"),
                                )
                            })?;
                    }
                    _ => {}
                }
            }
        }
        for (i, r) in spec.apply.ignore_fields.iter().enumerate() {
            check_target(format!("spec.apply.ignoreFields[{i}].target"), &r.target)?;
            for (j, p) in r.paths.iter().enumerate() {
                if !p.starts_with('/') {
                    return Err(problem(
                        format!("spec.apply.ignoreFields[{i}].paths[{j}]"),
                        format!("{p:?} is not a JSON pointer (like /spec/replicas)"),
                    ));
                }
            }
        }
        schedule::validate(spec).map_err(|(f, m)| problem(f, m))?;
        for (i, r) in spec.status_feedback.iter().enumerate() {
            check_target(format!("spec.statusFeedback[{i}].target"), &r.target)?;
            if !r.json_path.starts_with('.') {
                return Err(problem(
                    format!("spec.statusFeedback[{i}].jsonPath"),
                    format!(
                        "{:?} must start with '.', like .status.readyReplicas",
                        r.json_path
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Parses every document of a YAML (or JSON) file as a Workload and validates it.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Workload>, WorkloadError> {
    let err = |document: usize, (field, message): Problem| WorkloadError {
        source: source.to_string(),
        document,
        field,
        message,
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        err(
            1,
            problem(
                "",
                format!(
                    "not valid YAML: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            ),
        )
    })?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let n = i + 1;
        out.push(from_value(doc).map_err(|p| err(n, p))?);
    }
    if out.is_empty() {
        return Err(err(1, problem("", "no Workload found")));
    }
    Ok(out)
}

/// A Workload from an already-parsed document, validated.
pub fn from_value(doc: Value) -> Result<Workload, (String, String)> {
    if !doc.is_object() {
        return Err(problem(
            "",
            "expected a Workload (a mapping), found something else",
        ));
    }
    if doc.get("kind") != Some(&Value::from(KIND)) {
        return Err(problem(
            "kind",
            format!(
                "expected kind {KIND}, found {} (plain manifests go under spec.manifests; see `tetherctl workload create`)",
                doc.get("kind")
                    .map_or("nothing".to_string(), |k| k.to_string())
            ),
        ));
    }
    let w: Workload = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        problem(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    w.validate()?;
    Ok(w)
}

#[cfg(test)]
mod tests;
