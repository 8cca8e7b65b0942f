//! A small OpenAPI v3 surface: enough for kubectl, which downloads `/openapi/v3` before
//! `apply` and leaves validation to the server only if POST and PATCH declare the
//! `fieldValidation` parameter.

use serde_json::{Value, json};

use super::resources::{ResourceType, groups};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group/version.
pub fn index(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, versions) in groups(types) {
        for v in versions {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash={}", types.len()) }),
            );
        }
    }
    json!({ "paths": paths })
}

fn param(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

fn schema_name(t: &ResourceType) -> String {
    let g = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.clone()
    };
    format!("io.tether.emulated.{g}.{}.{}", t.version, t.kind)
}

/// `/openapi/v3/api/v1` and `/openapi/v3/apis/GROUP/VERSION`.
pub fn group_document(types: &[ResourceType], path: &str) -> Option<Value> {
    let in_gv: Vec<&ResourceType> = types
        .iter()
        .filter(|t| gv_path(&t.group, &t.version) == path)
        .collect();
    if in_gv.is_empty() {
        return None;
    }
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation")
    ]);
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in in_gv {
        let schema_ref = json!({ "$ref": format!("#/components/schemas/{}", schema_name(t)) });
        let body = json!({ "content": { "application/json": { "schema": schema_ref } } });
        let ok = json!({ "200": { "description": "OK", "content": { "application/json": { "schema": schema_ref } } } });
        let prefix = if t.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{path}/{}", t.plural)
        };
        // kubectl finds an operation by this extension and checks its parameters.
        let gvk = json!({ "group": t.group, "version": t.version, "kind": t.kind });
        let op = |action: &str, params: &Value, with_body: bool| {
            let mut o = json!({
                "responses": ok,
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            });
            if !params.is_null() {
                o["parameters"] = params.clone();
            }
            if with_body {
                o["requestBody"] = body.clone();
            }
            o
        };
        let patch_params = json!([
            param("dryRun"),
            param("fieldManager"),
            param("fieldValidation"),
            param("force")
        ]);
        paths.insert(
            prefix.clone(),
            json!({
                "get": op("list", &Value::Null, false),
                "post": op("post", &write_params, true),
            }),
        );
        paths.insert(
            format!("{prefix}/{{name}}"),
            json!({
                "get": op("get", &Value::Null, false),
                "put": op("put", &write_params, true),
                "patch": op("patch", &patch_params, false),
                "delete": op("delete", &Value::Null, false),
            }),
        );
        schemas.insert(
            schema_name(t),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{ "group": t.group, "version": t.version, "kind": t.kind }],
                "properties": {
                    "apiVersion": { "type": "string" },
                    "kind": { "type": "string" },
                    "metadata": { "type": "object" },
                },
                "x-kubernetes-preserve-unknown-fields": true,
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (tether emulator)", "version": "v1" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}
