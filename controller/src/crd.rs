//! The Workload custom resource (`workloads.tether.dev`): a Workload file as a Kubernetes
//! object. Its spec is the Workload spec itself, its schema derived from the same Rust types
//! the hub validates with (`tether_common::workload`).

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The spec of a Workload resource: exactly a Workload file's `spec`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "Workload",
    plural = "workloads",
    shortname = "twl",
    status = "WorkloadStatus",
    category = "tether",
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Clusters","type":"string","jsonPath":".status.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct WorkloadSpec {
    #[serde(flatten)]
    pub spec: tether_common::workload::Spec,
}

/// What the hub says about the workload, written by tether-controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The resource's generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The hub's revision of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// `available/placed`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterStatus>,
    /// Synced (the hub accepted the spec), Available (every placed cluster runs the current
    /// revision and is Available), Ready (Available, or why this generation is not),
    /// Degraded (some cluster reports Degraded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The workload on one member cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub name: String,
    /// Pending, Applied, Progressing, Available, Degraded, Removing (`(stale)` when the cluster
    /// is Offline and this is its last known phase).
    pub phase: String,
    pub revision: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A condition as Kubernetes writes them (metav1.Condition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A named label selector over the hub's member clusters: what teams are granted roles on
/// (`tetherctl team grant TEAM --clusterset NAME`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "ClusterSet",
    plural = "clustersets",
    shortname = "tcs",
    status = "ClusterSetStatus",
    category = "tether",
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Clusters","type":"string","jsonPath":".status.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSetSpec {
    /// Which member clusters belong, by their labels (`{}` selects every cluster).
    pub selector: tether_common::workload::selector::LabelSelector,
}

/// What the hub says about the cluster set, written by tether-controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The clusters it selects now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// How many, for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Synced: the hub holds this selector (OwnedElsewhere, Rejected or InUse when not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CustomResourceDefinitions, as `tether-controller crd` prints them and
/// `deploy/crds/` holds them: (file name, definition).
pub fn definitions() -> Vec<(&'static str, Value)> {
    vec![
        ("workloads.tether.dev.yaml", closed(Workload::crd())),
        ("clustersets.tether.dev.yaml", closed(ClusterSet::crd())),
    ]
}

/// The Workload CRD.
pub fn definition() -> Value {
    closed(Workload::crd())
}

fn closed(crd: impl Serialize) -> Value {
    let mut crd = serde_json::to_value(crd).unwrap_or(Value::Null);
    strip_closed_objects(&mut crd);
    crd
}

/// The Workload types refuse unknown fields (`deny_unknown_fields`), which schemars writes as
/// `additionalProperties: false`; a structural CRD schema may not say that, and the API
/// server prunes unknown fields by itself, so it goes.
fn strip_closed_objects(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(strip_closed_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_closed_objects),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_crds_are_the_ones_the_types_make() {
        for (file, crd) in definitions() {
            let made = serde_saphyr::to_string(&crd).unwrap_or_default();
            for dir in ["deploy/crds", "deploy/helm/tether-hub/crds"] {
                let path = format!("{}/../{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
                let shipped = std::fs::read_to_string(path).unwrap_or_default();
                assert!(
                    shipped == made,
                    "{dir}/{file} is out of date: tether-controller crd --out-dir {dir}"
                );
            }
        }
    }

    #[test]
    fn the_schema_is_structural_where_the_types_are_open() {
        let crd = definition();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let manifests = &spec["properties"]["manifests"];
        assert_eq!(manifests["type"], "array", "{manifests}");
        assert_eq!(
            manifests["items"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        let max_unavailable = &spec["properties"]["rollout"]["properties"]["maxUnavailable"];
        assert_eq!(
            max_unavailable["x-kubernetes-int-or-string"], true,
            "{max_unavailable}"
        );
        assert!(!crd.to_string().contains("\"additionalProperties\":false"));
        assert_eq!(crd["spec"]["scope"], "Cluster");
    }
}
