//! The resource types the emulator serves, and their discovery documents.
//!
//! Built-in types are listed here; CustomResourceDefinitions add more at run time.

use serde_json::{Value, json};

/// One served resource (a group, version and plural).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn verbs() -> Value {
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    }

    /// The entry in an `APIResourceList`.
    pub fn api_resource(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": Self::verbs(),
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// The entry in an aggregated (`apidiscovery.k8s.io/v2`) version.
    pub fn discovery_resource(&self) -> Value {
        let mut r = json!({
            "resource": self.plural,
            "responseKind": { "group": "", "version": "", "kind": self.kind },
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": Self::verbs(),
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            r["categories"] = json!(self.categories);
        }
        if self.status_subresource {
            r["subresources"] = json!([{
                "subresource": "status",
                "responseKind": { "group": "", "version": "", "kind": self.kind },
                "verbs": ["get", "patch", "update"],
            }]);
        }
        r
    }
}

#[allow(clippy::too_many_arguments)]
fn t(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
    }
}

/// The built-in resources, in discovery order.
pub fn builtin() -> Vec<ResourceType> {
    vec![
        t(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            &[],
            false,
        ),
        t(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            &[],
            false,
        ),
        t("", "v1", "Event", "events", true, &["ev"], &[], false),
        t(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            &[],
            true,
        ),
        t("", "v1", "Node", "nodes", false, &["no"], &[], true),
        t(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            &[],
            true,
        ),
        t(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            &[],
            true,
        ),
        t("", "v1", "Pod", "pods", true, &["po"], &["all"], true),
        t("", "v1", "Secret", "secrets", true, &[], &[], false),
        t(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            &[],
            false,
        ),
        t(
            "",
            "v1",
            "Service",
            "services",
            true,
            &["svc"],
            &["all"],
            true,
        ),
        t(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            &["all"],
            true,
        ),
        t(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            &["all"],
            true,
        ),
        t(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            &["all"],
            true,
        ),
        t(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            &["all"],
            true,
        ),
        t(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            &["all"],
            true,
        ),
        t("batch", "v1", "Job", "jobs", true, &[], &["all"], true),
        t(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            &[],
            false,
        ),
        t(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["api-extensions"],
            true,
        ),
        t(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            &[],
            true,
        ),
        t(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            &[],
            true,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            &[],
            false,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            &[],
            false,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            &[],
            false,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &[],
            &[],
            false,
        ),
        t(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
            &[],
            &[],
            false,
        ),
    ]
}

/// Groups in first-seen order, each with its versions in first-seen order.
pub fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) => {
                if !versions.contains(&t.version) {
                    versions.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

/// `APIResourceList` for one group/version.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(ResourceType::api_resource)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `APIGroupList` for `/apis`.
pub fn group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| api_group(&g, &vs))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `APIGroup` for `/apis/GROUP`.
pub fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    groups(types)
        .into_iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| {
            let mut v = api_group(&g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// `APIGroupDiscoveryList` (aggregated discovery) for `/api` (core) or `/apis` (the rest).
pub fn aggregated(types: &[ResourceType], core: bool) -> Value {
    let items: Vec<Value> = groups(types)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(ResourceType::discovery_resource)
                        .collect();
                    json!({ "version": v, "resources": resources, "freshness": "Current" })
                })
                .collect();
            let mut item =
                json!({ "metadata": { "creationTimestamp": null }, "versions": versions });
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
