//! Server-side apply and field ownership (`metadata.managedFields`, FieldsV1).
//!
//! Ownership is tracked per leaf field. Lists of objects that all carry a `name` are merged
//! by name (as containers, env and volumes are in Kubernetes); other lists are atomic. An
//! apply conflicts when another manager owns a field the applier sets to a different value,
//! unless forced; fields the applier owned before and no longer sets are removed if nobody
//! else owns them. A plain update or patch takes the fields it changed from their owners.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::error::ApiError;
use super::resources::ResourceType;
use super::store::Store;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Field(String),
    Key(String),
}

type Path = Vec<Seg>;
type Fields = BTreeSet<Path>;

fn keyed_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn leaves(v: &Value, prefix: &mut Path, out: &mut Fields) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(Seg::Field(k.clone()));
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if keyed_list(items) => {
            for item in items {
                let name = item["name"].as_str().unwrap_or_default().to_string();
                prefix.push(Seg::Key(name));
                leaves(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The fields a manager sets with `obj`, for the main resource or the status subresource.
fn fields_of(obj: &Value, subresource: &str) -> Fields {
    let mut out = Fields::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        let include = match (subresource, k.as_str()) {
            (_, "apiVersion" | "kind") => false,
            ("status", key) => key == "status",
            (_, "status") => false,
            _ => true,
        };
        if !include {
            continue;
        }
        let mut prefix = vec![Seg::Field(k.clone())];
        if k == "metadata" {
            for (mk, mv) in v.as_object().into_iter().flatten() {
                if matches!(
                    mk.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences"
                ) {
                    prefix.push(Seg::Field(mk.clone()));
                    leaves(mv, &mut prefix, &mut out);
                    prefix.pop();
                }
            }
        } else {
            leaves(v, &mut prefix, &mut out);
        }
    }
    out
}

fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Field(f) => cur.get(f)?,
            Seg::Key(k) => cur.as_array()?.iter().find(|i| i["name"] == json!(k))?,
        };
    }
    Some(cur)
}

fn set(v: &mut Value, path: &[Seg], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for (i, seg) in parents.iter().enumerate() {
        let next_is_key = matches!(path.get(i + 1), Some(Seg::Key(_)));
        cur = match seg {
            Seg::Field(f) => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                let entry = cur.as_object_mut().map(|m| {
                    m.entry(f.clone())
                        .or_insert_with(|| if next_is_key { json!([]) } else { json!({}) })
                });
                match entry {
                    Some(e) => e,
                    None => return,
                }
            }
            Seg::Key(k) => {
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let Some(arr) = cur.as_array_mut() else {
                    return;
                };
                let idx = match arr.iter().position(|i| i["name"] == json!(k)) {
                    Some(i) => i,
                    None => {
                        arr.push(json!({ "name": k }));
                        arr.len() - 1
                    }
                };
                &mut arr[idx]
            }
        };
    }
    match last {
        Seg::Field(f) => {
            if !cur.is_object() {
                *cur = json!({});
            }
            if let Some(m) = cur.as_object_mut() {
                m.insert(f.clone(), value);
            }
        }
        Seg::Key(k) => {
            if !cur.is_array() {
                *cur = json!([]);
            }
            if let Some(arr) = cur.as_array_mut() {
                match arr.iter().position(|i| i["name"] == json!(k)) {
                    Some(i) => arr[i] = value,
                    None => arr.push(value),
                }
            }
        }
    }
}

fn remove(v: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match seg {
            Seg::Field(f) => cur.get_mut(f),
            Seg::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| i["name"] == json!(k))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Seg::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Seg::Key(k) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| i["name"] != json!(k));
            }
        }
    }
}

fn seg_key(seg: &Seg) -> String {
    match seg {
        Seg::Field(f) => format!("f:{f}"),
        Seg::Key(k) => format!("k:{}", json!({ "name": k })),
    }
}

fn to_fields_v1(fields: &Fields) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let key = seg_key(seg);
            let Some(m) = cur.as_object_mut() else { break };
            cur = m.entry(key).or_insert_with(|| json!({}));
        }
    }
    root
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut Fields) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, child) in children {
        let seg = if let Some(f) = k.strip_prefix("f:") {
            Seg::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            let name = serde_json::from_str::<Value>(key)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            Seg::Key(name)
        } else {
            continue;
        };
        prefix.push(seg);
        from_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

struct Entry {
    raw: Value,
    manager: String,
    operation: String,
    subresource: String,
    fields: Fields,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = Fields::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                raw: e.clone(),
                manager: e["manager"].as_str().unwrap_or_default().to_string(),
                operation: e["operation"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                fields,
            }
        })
        .collect()
}

fn entry_value(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: &str,
    fields: &Fields,
) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(fields),
    });
    if !subresource.is_empty() {
        e["subresource"] = json!(subresource);
    }
    e
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn path_string(p: &Path) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Field(f) => format!(".{f}"),
            Seg::Key(k) => format!("[name=\"{k}\"]"),
        })
        .collect()
}

/// Server-side apply of `applied` by `manager`.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    store: &mut Store,
    t: &ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    applied: Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let sub = subresource.unwrap_or("");
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    if let Some(n) = applied.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let applied_fields = fields_of(&applied, sub);
    let key = Store::key(t, namespace, name);
    let Some(live) = store.get(&key).cloned() else {
        if sub == "status" {
            return Err(ApiError::not_found(&t.plural, name));
        }
        let mut obj = applied.clone();
        obj["metadata"]["name"] = json!(name);
        obj["metadata"]["managedFields"] = json!([entry_value(
            manager,
            "Apply",
            &t.api_version(),
            sub,
            &applied_fields
        )]);
        return store.create(t, namespace, obj);
    };

    let mut others = Vec::new();
    let mut previous = Fields::new();
    let mut previous_entry = None;
    for e in entries(&live) {
        if e.manager == manager && e.operation == "Apply" && e.subresource == sub {
            previous = e.fields;
            previous_entry = Some(e.raw);
        } else {
            others.push(e);
        }
    }

    // Conflicts: another manager owns a field we set to a different value.
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in others.iter().filter(|e| e.subresource == sub) {
        for p in &applied_fields {
            if e.fields.iter().any(|q| overlaps(p, q)) && get(&live, p) != get(&applied, p) {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {}", path_string(p)))
            .collect();
        let mut err = ApiError::conflict(
            &t.plural,
            &t.group,
            name,
            &format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                list.join("; ")
            ),
        );
        err.message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("; ")
        );
        err.details["causes"] = json!(
            conflicts
                .iter()
                .map(|(m, p)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": path_string(p),
                }))
                .collect::<Vec<_>>()
        );
        return Err(err);
    }

    let mut obj = live.clone();
    // Forced (or same-valued) fields leave their other owners.
    if force {
        for e in &mut others {
            if e.subresource == sub {
                e.fields.retain(|q| {
                    !applied_fields
                        .iter()
                        .any(|p| overlaps(p, q) && get(&live, p) != get(&applied, p))
                });
            }
        }
    }
    // Fields we no longer set, and nobody else owns, go away.
    for p in previous.difference(&applied_fields) {
        let still_owned = others
            .iter()
            .any(|e| e.subresource == sub && e.fields.iter().any(|q| overlaps(p, q)))
            || applied_fields
                .iter()
                .any(|q| q.starts_with(p) || p.starts_with(q));
        if !still_owned {
            remove(&mut obj, p);
        }
    }
    for p in &applied_fields {
        if let Some(v) = get(&applied, p) {
            set(&mut obj, p, v.clone());
        }
    }
    let mut managed: Vec<Value> = others
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut raw = e.raw;
            raw["fieldsV1"] = to_fields_v1(&e.fields);
            raw
        })
        .collect();
    // The same fields as last time: the entry (and its time) stays, so that an apply that
    // changes nothing writes nothing, as on a real server.
    managed.push(match previous_entry {
        Some(e) if previous == applied_fields => e,
        _ => entry_value(manager, "Apply", &t.api_version(), sub, &applied_fields),
    });
    obj["metadata"]["managedFields"] = Value::Array(managed);
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    store.update(t, namespace, name, obj, subresource)
}

/// Records a non-apply write by `manager`: it takes ownership of the fields whose values it
/// changed. `new` must still hold the old object's managed fields.
pub fn record_update(
    old: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let sub = subresource.unwrap_or("");
    let new_fields = fields_of(new, sub);
    let changed: Fields = new_fields
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect();
    if changed.is_empty() {
        return;
    }
    let mut list = Vec::new();
    let mut mine = Fields::new();
    for mut e in entries(old) {
        if e.manager == manager && e.operation == "Update" && e.subresource == sub {
            mine = e.fields;
            continue;
        }
        // The scale subresource changes the main resource's `spec.replicas`: its owners there
        // lose it too.
        if e.subresource == sub || sub == "scale" {
            e.fields.retain(|q| !changed.iter().any(|p| overlaps(p, q)));
        }
        if !e.fields.is_empty() {
            let mut raw = e.raw;
            raw["fieldsV1"] = to_fields_v1(&e.fields);
            list.push(raw);
        }
    }
    mine.extend(changed);
    mine.retain(|p| new_fields.contains(p));
    list.push(entry_value(manager, "Update", api_version, sub, &mine));
    new["metadata"]["managedFields"] = Value::Array(list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm_type() -> ResourceType {
        crate::resources::builtin()
            .into_iter()
            .find(|t| t.plural == "configmaps")
            .unwrap()
    }

    fn store() -> Store {
        let mut s = Store::new();
        let ns = crate::resources::builtin()
            .into_iter()
            .find(|t| t.plural == "namespaces")
            .unwrap();
        s.create(&ns, "", json!({"metadata": {"name": "default"}}))
            .unwrap();
        s
    }

    #[test]
    fn apply_creates_then_removes_fields_it_stops_setting() {
        let mut s = store();
        let t = cm_type();
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        apply(&mut s, &t, "default", "c", None, a, "m", false).unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let out = apply(&mut s, &t, "default", "c", None, b, "m", false).unwrap();
        assert_eq!(out["data"], json!({"a": "1"}));
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let mut s = store();
        let t = cm_type();
        apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            "one",
            false,
        )
        .unwrap();
        let err = apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "2"}}),
            "two",
            false,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"one\""),
            "{}",
            err.message
        );
        // The same value is shared ownership, not a conflict.
        apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            "two",
            false,
        )
        .unwrap();
        let out = apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "3"}}),
            "two",
            true,
        )
        .unwrap();
        assert_eq!(out["data"]["a"], "3");
    }

    #[test]
    fn an_update_takes_ownership_of_what_it_changed() {
        let mut s = store();
        let t = cm_type();
        let live = apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}}),
            "agent",
            false,
        )
        .unwrap();
        let mut edited = live.clone();
        edited["data"]["a"] = json!("edited");
        record_update(&live, &mut edited, "kubectl-edit", "v1", None);
        s.update(&t, "default", "c", edited, None).unwrap();
        // The agent's re-apply now conflicts on .data.a only, and force takes it back.
        let err = apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}}),
            "agent",
            false,
        )
        .unwrap_err();
        assert!(
            err.message.contains(".data.a") && !err.message.contains(".data.b"),
            "{}",
            err.message
        );
        let out = apply(
            &mut s,
            &t,
            "default",
            "c",
            None,
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}}),
            "agent",
            true,
        )
        .unwrap();
        assert_eq!(out["data"]["a"], "1");
    }

    #[test]
    fn lists_of_named_items_merge_by_name() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        set(
            &mut v,
            &[
                Seg::Field("spec".into()),
                Seg::Field("containers".into()),
                Seg::Key("b".into()),
                Seg::Field("image".into()),
            ],
            json!("y"),
        );
        assert_eq!(v["spec"]["containers"].as_array().unwrap().len(), 2);
        let mut f = Fields::new();
        leaves(&v, &mut Vec::new(), &mut f);
        let round = {
            let mut out = Fields::new();
            from_fields_v1(&to_fields_v1(&f), &mut Vec::new(), &mut out);
            out
        };
        assert_eq!(round, f);
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from)
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![Just("name".to_string()), "[a-z]{1,5}"],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn applies_of_arbitrary_objects_never_panic(a in json_tree(), b in json_tree(), force in any::<bool>()) {
            let mut s = Store::new();
            let ns = crate::resources::builtin().into_iter().find(|t| t.plural == "namespaces").unwrap();
            let _ = s.create(&ns, "", json!({"metadata": {"name": "default"}}));
            let t = crate::resources::builtin().into_iter().find(|t| t.plural == "configmaps").unwrap();
            let mut first = json!({"metadata": {"name": "c"}});
            first["data"] = a;
            let _ = apply(&mut s, &t, "default", "c", None, first, "one", false);
            let mut second = json!({"metadata": {"name": "c"}});
            second["data"] = b;
            let _ = apply(&mut s, &t, "default", "c", None, second, "two", force);
        }

        #[test]
        fn selectors_never_panic(text in "\\PC{0,60}") {
            if let Ok(sel) = crate::selector::Selector::parse(&text) {
                let _ = sel.matches(Some(&json!({"a": "b"})));
            }
        }
    }
}
