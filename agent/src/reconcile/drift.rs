//! Drift: whether applying the workload again would change the live object, and which fields.
//!
//! A real API server defaults and normalises what it is given (`cpu: 0.5` is stored as `500m`,
//! a containerPort gains `protocol: TCP`, a Secret's `stringData` becomes `data`), so the
//! declared manifest cannot be compared with the live object field by field. Instead the
//! worker asks the server what our apply *would* make of the live object (server-side apply
//! with `dryRun=All`, as Flux's kustomize-controller and Argo CD's server-side diff do) and
//! compares that with the live object: equal means no drift, whatever the server normalised.
//!
//! That costs a call, so it is only made when the live object changed since it was last
//! verified (its resourceVersion moved): an untouched object costs the one GET its health
//! needs per pass.

use serde_json::Value;

use crate::apply::FIELD_MANAGER;

/// One step of a field path: an object key, or the item of a list keyed by `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Field(String),
    Key(String),
}

/// `.spec.template.spec.containers[name=web].image`
pub(super) fn path_string(p: &[Seg]) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Key(k) => format!("[name={k}]"),
        })
        .collect()
}

/// Metadata the server maintains by itself, which says nothing about drift.
const VOLATILE_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
];

/// The object's resourceVersion ("" if it has none).
pub(super) fn resource_version(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The fields where `would` (what the server makes of our apply) differs from `live`,
/// leaving out status and the metadata the server maintains. Lists whose items all have a
/// `name` are compared item by item; other lists as a whole.
pub(super) fn differences(would: &Value, live: &Value) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    let (Some(w), Some(l)) = (would.as_object(), live.as_object()) else {
        if would != live {
            out.push(Vec::new());
        }
        return out;
    };
    let keys: std::collections::BTreeSet<&String> = w.keys().chain(l.keys()).collect();
    for k in keys {
        match k.as_str() {
            "status" => {}
            "metadata" => {
                let strip = |m: Option<&Value>| -> Value {
                    let mut m = m.cloned().unwrap_or(Value::Null);
                    if let Some(o) = m.as_object_mut() {
                        for v in VOLATILE_METADATA {
                            o.remove(*v);
                        }
                    }
                    m
                };
                let mut path = vec![Seg::Field("metadata".into())];
                compare(
                    Some(&strip(w.get(k))),
                    Some(&strip(l.get(k))),
                    &mut path,
                    &mut out,
                );
            }
            _ => {
                let mut path = vec![Seg::Field(k.clone())];
                compare(w.get(k), l.get(k), &mut path, &mut out);
            }
        }
    }
    out
}

fn keyed(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn compare(
    would: Option<&Value>,
    live: Option<&Value>,
    path: &mut Vec<Seg>,
    out: &mut Vec<Vec<Seg>>,
) {
    match (would, live) {
        (Some(Value::Object(w)), Some(Value::Object(l))) => {
            let keys: std::collections::BTreeSet<&String> = w.keys().chain(l.keys()).collect();
            for k in keys {
                path.push(Seg::Field(k.clone()));
                compare(w.get(k), l.get(k), path, out);
                path.pop();
            }
        }
        (Some(Value::Array(w)), Some(Value::Array(l))) if keyed(w) && keyed(l) => {
            let mut names: Vec<&str> = Vec::new();
            for i in w.iter().chain(l) {
                let n = i["name"].as_str().unwrap_or_default();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            for name in names {
                path.push(Seg::Key(name.to_string()));
                compare(
                    w.iter().find(|i| i["name"] == name),
                    l.iter().find(|i| i["name"] == name),
                    path,
                    out,
                );
                path.pop();
            }
        }
        (w, l) if w == l => {}
        // An empty map or list the server drops is the same as none.
        (Some(v), None) | (None, Some(v)) if is_empty(v) => {}
        _ => out.push(path.clone()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// The manager (other than the agent) that owns `path` according to `managedFields`: who
/// changed a field the workload declares.
pub(super) fn owner(live: &Value, path: &[Seg]) -> Option<String> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    entries
        .iter()
        .filter(|e| e["manager"] != FIELD_MANAGER)
        .find(|e| {
            let mut cur = &e["fieldsV1"];
            for seg in path {
                let key = match seg {
                    Seg::Field(f) => format!("f:{f}"),
                    Seg::Key(k) => format!("k:{}", serde_json::json!({ "name": k })),
                };
                match cur.get(&key) {
                    Some(next) => cur = next,
                    // An atomic field (a leaf in fieldsV1) owns everything inside it.
                    None => return cur.as_object().is_some_and(|o| o.is_empty()),
                }
            }
            true
        })
        .and_then(|e| e["manager"].as_str().map(str::to_string))
}
