//! PATCH: JSON merge patch, JSON patch (RFC 6902), strategic merge patch (approximated by a
//! merge patch, which is what it does for maps), and server-side apply.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::Emulator;
use super::error::ApiError;
use super::http::parse_body;
use super::resources::ResourceType;
use super::store::Store;

/// Applies an RFC 7386 merge patch to `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    emu: &Arc<Emulator>,
    t: &ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    q: &std::collections::HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if ct == "application/apply-patch+yaml" {
        let manager = q.get("fieldManager").cloned().unwrap_or_default();
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "fieldManager is required for apply requests",
            ));
        }
        let force = q.get("force").is_some_and(|f| f == "true");
        let applied = parse_body(headers, body)?;
        let mut store = emu.store.lock().await;
        if q.get("dryRun").is_some_and(|d| d == "All") {
            // As a real server: everything but the write, and the stored resourceVersion.
            let stored_rv = store
                .get(&Store::key(t, namespace, name))
                .and_then(|o| o.pointer("/metadata/resourceVersion").cloned());
            let mut scratch = store.scratch();
            let mut would = super::apply::apply(
                &mut scratch,
                t,
                namespace,
                name,
                subresource,
                applied,
                &manager,
                force,
            )?;
            match stored_rv {
                Some(rv) => would["metadata"]["resourceVersion"] = rv,
                None => {
                    if let Some(m) = would["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                }
            }
            return Ok(would);
        }
        return super::apply::apply(
            &mut store,
            t,
            namespace,
            name,
            subresource,
            applied,
            &manager,
            force,
        );
    }
    let mut store = emu.store.lock().await;
    let key = Store::key(t, namespace, name);
    let mut obj = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.plural, name))?;
    match ct.as_str() {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?;
            merge(&mut obj, &p);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut obj, &p)
                .map_err(|e| ApiError::invalid(&t.kind, name, &e.to_string()))?;
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            )));
        }
    }
    // A patch applies to what is stored, whatever version the client saw.
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let manager = q.get("fieldManager").map_or("unknown", String::as_str);
    let old = store.get(&key).cloned().unwrap_or_default();
    super::apply::record_update(&old, &mut obj, manager, &t.api_version(), subresource);
    store.update(t, namespace, name, obj, subresource)
}
