//! Server-side printing: the `Table` objects kubectl asks for (`Accept: ...;as=Table`).

use serde_json::{Value, json};

use super::resources::ResourceType;

fn age(obj: &Value) -> String {
    let Some(ts) = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
    else {
        return "<unknown>".into();
    };
    let Ok(t) = humantime::parse_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = std::time::SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn s(obj: &Value, ptr: &str) -> String {
    match obj.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn n(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn count(obj: &Value, ptr: &str) -> usize {
    obj.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn columns(t: &ResourceType) -> Vec<(&'static str, &'static str)> {
    let mut cols = vec![("Name", "string")];
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "namespaces") => cols.push(("Status", "string")),
        ("", "nodes") => cols.extend([("Status", "string"), ("Roles", "string")]),
        ("", "configmaps") => cols.push(("Data", "integer")),
        ("", "secrets") => cols.extend([("Type", "string"), ("Data", "integer")]),
        ("", "pods") => cols.extend([
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
        ]),
        ("apps", "deployments") => cols.extend([
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
        ]),
        ("apps", "statefulsets") => cols.push(("Ready", "string")),
        _ => {}
    }
    cols.push(("Age", "string"));
    if (t.group.as_str(), t.plural.as_str()) == ("", "nodes") {
        cols.push(("Version", "string"));
    }
    cols
}

fn cells(t: &ResourceType, obj: &Value) -> Vec<Value> {
    let mut c = vec![json!(s(obj, "/metadata/name"))];
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "namespaces") => c.push(json!(s(obj, "/status/phase"))),
        ("", "nodes") => c.extend([json!("Ready"), json!("<none>")]),
        ("", "configmaps") => c.push(json!(count(obj, "/data") + count(obj, "/binaryData"))),
        ("", "secrets") => c.extend([json!(s(obj, "/type")), json!(count(obj, "/data"))]),
        ("", "pods") => c.extend([json!("0/0"), json!(s(obj, "/status/phase")), json!("0")]),
        ("apps", "deployments") => c.extend([
            json!(format!(
                "{}/{}",
                n(obj, "/status/readyReplicas"),
                n(obj, "/spec/replicas")
            )),
            json!(n(obj, "/status/updatedReplicas")),
            json!(n(obj, "/status/availableReplicas")),
        ]),
        ("apps", "statefulsets") => c.push(json!(format!(
            "{}/{}",
            n(obj, "/status/readyReplicas"),
            n(obj, "/spec/replicas")
        ))),
        _ => {}
    }
    c.push(json!(age(obj)));
    if (t.group.as_str(), t.plural.as_str()) == ("", "nodes") {
        c.push(json!(s(obj, "/status/nodeInfo/kubeletVersion")));
    }
    c
}

fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

/// A `Table` of `objects`; `include_object` is kubectl's `includeObject` (None, Metadata,
/// Object).
pub fn table(
    t: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
) -> Value {
    let defs: Vec<Value> = columns(t)
        .into_iter()
        .map(|(name, ty)| {
            json!({
                "name": name,
                "type": ty,
                "format": if name == "Name" { "name" } else { "" },
                "description": "",
                "priority": 0,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial(o),
            };
            json!({ "cells": cells(t, o), "object": object })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// The metadata-only form kube-rs asks for with `list_metadata`.
pub fn partial_list(objects: &[Value], resource_version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "items": objects.iter().map(partial).collect::<Vec<_>>(),
    })
}

pub fn partial_object(obj: &Value) -> Value {
    partial(obj)
}
