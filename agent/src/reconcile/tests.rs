use serde_json::json;

use super::drift::{Seg, differences, owner, path_string};
use super::pointer::{json_path, remove_pointer, set_pointer};
use super::worker::ordered;

#[test]
fn what_the_server_would_make_of_an_apply_equal_to_live_is_no_drift() {
    // A real server's dry-run answer for an untouched Deployment: normalised quantities,
    // defaults, a new managedFields time and the same resourceVersion.
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "resourceVersion": "42", "generation": 1, "uid": "u",
                     "managedFields": [{"manager": "tether-agent", "time": "2026-01-01T00:00:00Z"}],
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1",
                 "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
        "status": {"readyReplicas": 3},
    });
    let mut would = live.clone();
    would["metadata"]["managedFields"][0]["time"] = json!("2026-01-01T00:01:00Z");
    would["status"] = json!({"readyReplicas": 2});
    assert!(differences(&would, &live).is_empty());

    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    scaled["metadata"]["labels"] = json!({"extra": "x"});
    let d: Vec<String> = differences(&would, &scaled)
        .iter()
        .map(|p| path_string(p))
        .collect();
    assert_eq!(
        d,
        vec![
            ".metadata.labels",
            ".spec.replicas",
            ".spec.template.spec.containers[name=web].image"
        ]
    );
}

#[test]
fn empty_maps_and_lists_the_server_drops_are_not_differences() {
    let would =
        json!({"metadata": {"name": "a", "labels": {}}, "data": {"k": "v"}, "spec": {"items": []}});
    let live = json!({"metadata": {"name": "a"}, "data": {"k": "v"}, "spec": {}});
    assert!(differences(&would, &live).is_empty());
    let live = json!({"metadata": {"name": "a"}, "data": {"k": "w"}, "spec": {}});
    assert_eq!(differences(&would, &live).len(), 1);
}

#[test]
fn lists_without_names_differ_as_a_whole() {
    let would = json!({"spec": {"args": ["a", "b"]}});
    let live = json!({"spec": {"args": ["a", "c"]}});
    let d: Vec<String> = differences(&would, &live)
        .iter()
        .map(|p| path_string(p))
        .collect();
    assert_eq!(d, vec![".spec.args"]);
}

#[test]
fn the_manager_that_changed_a_field_is_named() {
    let live = json!({"metadata": {"managedFields": [
        {"manager": "tether-agent", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
        {"manager": "kubectl-edit", "fieldsV1": {"f:data": {"f:a": {}}}},
    ]}});
    let path = vec![Seg::Field("data".into()), Seg::Field("a".into())];
    assert_eq!(owner(&live, &path).as_deref(), Some("kubectl-edit"));
    let other = vec![Seg::Field("data".into()), Seg::Field("b".into())];
    assert_eq!(owner(&live, &other), None);
    // An atomic field owns what is inside it.
    let atomic = json!({"metadata": {"managedFields": [
        {"manager": "kubectl-edit", "fieldsV1": {"f:spec": {"f:args": {}}}},
    ]}});
    let inside = vec![
        Seg::Field("spec".into()),
        Seg::Field("args".into()),
        Seg::Field("x".into()),
    ];
    assert_eq!(owner(&atomic, &inside).as_deref(), Some("kubectl-edit"));
}

#[test]
fn pointers_and_json_paths() {
    let mut v = json!({"spec": {"replicas": 3}});
    set_pointer(&mut v, "/spec/replicas", json!(5));
    assert_eq!(v["spec"]["replicas"], 5);
    remove_pointer(&mut v, "/spec/replicas");
    assert!(v["spec"].get("replicas").is_none());
    let s = json!({"status": {"readyReplicas": 2, "conditions": [{"type": "Available"}], "phase": "Bound"}});
    assert_eq!(json_path(&s, ".status.readyReplicas").as_deref(), Some("2"));
    assert_eq!(
        json_path(&s, ".status.conditions[0].type").as_deref(),
        Some("Available")
    );
    assert_eq!(json_path(&s, ".status.phase").as_deref(), Some("Bound"));
    assert_eq!(json_path(&s, ".status.missing"), None);
}

#[test]
fn namespaces_and_crds_come_first() {
    let ms = vec![
        json!({"kind": "ConfigMap"}),
        json!({"kind": "CustomResourceDefinition"}),
        json!({"kind": "Namespace"}),
        json!({"kind": "Widget"}),
    ];
    let kinds: Vec<&str> = ordered(&ms)
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "ConfigMap",
            "Widget"
        ]
    );
}
