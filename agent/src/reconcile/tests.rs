use serde_json::json;

use super::*;

#[test]
fn differences_ignore_server_defaults_and_name_changed_fields() {
    let desired = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
    });
    let mut live = desired.clone();
    live["metadata"]["uid"] = json!("u");
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
    live["status"] = json!({"readyReplicas": 3});
    assert!(differences(&desired, &live).is_empty());

    live["spec"]["replicas"] = json!(5);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let d: Vec<String> = differences(&desired, &live)
        .iter()
        .map(|p| path_string(p))
        .collect();
    assert_eq!(
        d,
        vec![
            ".spec.replicas",
            ".spec.template.spec.containers[name=web].image"
        ]
    );
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
