//! The emulator's HTTP surface: discovery, CRUD, patch, watch, as kubectl and kube-rs use it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::Emulator;
use super::error::ApiError;
use super::resources::{self, ResourceType};
use super::selector::Selector;
use super::store::{EventType, Store};
use super::table;

type Query = HashMap<String, String>;

fn query(uri: &Uri) -> Query {
    uri.query()
        .map(|q| {
            q.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn json_status(code: u16, v: &Value) -> Response {
    let status = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn accept(headers: &HeaderMap) -> String {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// What an `Accept` header asks the object to be rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    Object,
    Table,
    Partial,
}

fn render(headers: &HeaderMap) -> Render {
    let a = accept(headers);
    // The first acceptable form wins, as in a real server.
    for part in a.split(',') {
        if part.contains("as=Table") {
            return Render::Table;
        }
        if part.contains("as=PartialObjectMetadata") {
            return Render::Partial;
        }
        if part.trim().starts_with("application/json") || part.trim().starts_with("*/*") {
            return Render::Object;
        }
    }
    Render::Object
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    accept(headers)
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=APIGroupDiscoveryList"))
}

fn aggregated_response(v: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )],
        v.to_string(),
    )
        .into_response()
}

/// A request for objects.
struct Target {
    t: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    watch: bool,
}

fn parse_target(store: &Store, segs: &[&str]) -> Result<Target, ApiError> {
    let (group, version, mut rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route(&segs.join("/"))),
    };
    let mut watch = false;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    let is_ns_subresource = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !is_ns_subresource {
        namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::no_route(&segs.join("/"))),
    };
    let t = store
        .resolve(group, version, plural)
        .ok_or_else(|| ApiError::no_route(&segs.join("/")))?;
    if !t.namespaced && namespace.is_some() {
        return Err(ApiError::no_route(&segs.join("/")));
    }
    if t.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_route(&segs.join("/")));
    }
    let scalable = matches!(
        (t.group.as_str(), t.plural.as_str()),
        ("apps", "deployments" | "statefulsets" | "replicasets")
    );
    if let Some(s) = &sub
        && !(s == "status" && t.status_subresource || s == "scale" && scalable)
    {
        return Err(ApiError::no_route(&segs.join("/")));
    }
    Ok(Target {
        t,
        namespace,
        name,
        subresource: sub,
        watch,
    })
}

pub async fn handle(
    State(emu): State<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = query(&uri);
    tracing::debug!(%method, %uri, "request");
    let result = route(&emu, &method, &segs, &q, &headers, body).await;
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(
    emu: &Arc<Emulator>,
    method: &Method,
    segs: &[&str],
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let types = emu.store.lock().await.types.clone();
    match segs {
        ["version"] => return Ok(json_response(&emu.version_info())),
        ["healthz" | "readyz" | "livez"] => return Ok("ok".into_response()),
        ["api"] => {
            if wants_aggregated(headers) {
                return Ok(aggregated_response(&resources::aggregated(&types, true)));
            }
            return Ok(json_response(&json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": emu.addr }],
            })));
        }
        ["api", v] => {
            return resources::resource_list(&types, "", v)
                .map(|l| json_response(&l))
                .ok_or_else(|| ApiError::no_route(&segs.join("/")));
        }
        ["apis"] => {
            if wants_aggregated(headers) {
                return Ok(aggregated_response(&resources::aggregated(&types, false)));
            }
            return Ok(json_response(&resources::group_list(&types)));
        }
        ["apis", g] => {
            return resources::group(&types, g)
                .map(|l| json_response(&l))
                .ok_or_else(|| ApiError::no_route(&segs.join("/")));
        }
        ["apis", g, v] => {
            return resources::resource_list(&types, g, v)
                .map(|l| json_response(&l))
                .ok_or_else(|| ApiError::no_route(&segs.join("/")));
        }
        ["openapi", "v3"] => return Ok(json_response(&super::openapi::index(&types))),
        ["openapi", "v3", rest @ ..] => {
            return super::openapi::group_document(&types, &rest.join("/"))
                .map(|d| json_response(&d))
                .ok_or_else(|| ApiError::no_route(&segs.join("/")));
        }
        _ => {}
    }
    let target = {
        let store = emu.store.lock().await;
        parse_target(&store, segs)?
    };
    let watch = target.watch || q.get("watch").is_some_and(|w| w == "true" || w == "1");
    if target.subresource.as_deref() == Some("scale") {
        return scale(emu, &target, method, q, headers, &body).await;
    }
    match (method.as_str(), target.name.is_some()) {
        ("GET", _) if watch => watch_objects(emu, target, q, headers).await,
        ("GET", true) => get_object(emu, &target, headers).await,
        ("GET", false) => list_objects(emu, &target, q, headers).await,
        // `kubectl auth whoami`: who the request runs as, impersonation included.
        ("POST", false) if target.t.plural == "selfsubjectreviews" => {
            let header = |n: &str| {
                headers
                    .get_all(n)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect::<Vec<_>>()
            };
            let user = header("impersonate-user")
                .into_iter()
                .next()
                .unwrap_or_else(|| "emulator-admin".into());
            let mut groups = header("impersonate-group");
            if groups.is_empty() {
                groups = vec!["system:masters".into(), "system:authenticated".into()];
            }
            Ok(json_status(
                201,
                &json!({
                    "kind": "SelfSubjectReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": { "creationTimestamp": null },
                    "status": { "userInfo": { "username": user, "groups": groups } },
                }),
            ))
        }
        ("POST", false) => {
            let mut obj = parse_body(headers, &body)?;
            let ns = target.namespace.clone().unwrap_or_default();
            if q.get("dryRun").is_some() {
                return Ok(json_status(201, &obj));
            }
            let manager = q.get("fieldManager").map_or("unknown", String::as_str);
            super::apply::record_update(
                &json!({}),
                &mut obj,
                manager,
                &target.t.api_version(),
                None,
            );
            let created = emu.store.lock().await.create(&target.t, &ns, obj)?;
            Ok(json_status(201, &created))
        }
        ("PUT", true) => {
            let mut obj = parse_body(headers, &body)?;
            let (ns, name) = (
                target.namespace.clone().unwrap_or_default(),
                target.name.clone().unwrap_or_default(),
            );
            let mut store = emu.store.lock().await;
            if let Some(old) = store.get(&Store::key(&target.t, &ns, &name)).cloned() {
                obj["metadata"]["managedFields"] = old
                    .pointer("/metadata/managedFields")
                    .cloned()
                    .unwrap_or(json!([]));
                let manager = q.get("fieldManager").map_or("unknown", String::as_str);
                super::apply::record_update(
                    &old,
                    &mut obj,
                    manager,
                    &target.t.api_version(),
                    target.subresource.as_deref(),
                );
            }
            let updated =
                store.update(&target.t, &ns, &name, obj, target.subresource.as_deref())?;
            Ok(json_response(&updated))
        }
        ("PATCH", true) => {
            let patched = super::patch::patch(
                emu,
                &target.t,
                target.namespace.as_deref().unwrap_or(""),
                target.name.as_deref().unwrap_or(""),
                target.subresource.as_deref(),
                q,
                headers,
                &body,
            )
            .await?;
            Ok(json_response(&patched))
        }
        ("DELETE", true) => {
            let (ns, name) = (
                target.namespace.clone().unwrap_or_default(),
                target.name.clone().unwrap_or_default(),
            );
            let deleted = emu.store.lock().await.delete(&target.t, &ns, &name)?;
            Ok(json_response(&deleted))
        }
        ("DELETE", false) => {
            let selector = Selector::parse(q.get("labelSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request)?;
            let mut store = emu.store.lock().await;
            let victims: Vec<String> = store
                .list(&target.t, target.namespace.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o.pointer("/metadata/labels")))
                .filter_map(|o| {
                    o.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let ns = target.namespace.clone().unwrap_or_default();
            let mut items = Vec::new();
            for name in victims {
                items.push(store.delete(&target.t, &ns, &name)?);
            }
            Ok(json_response(&json!({
                "kind": format!("{}List", target.t.kind),
                "apiVersion": target.t.api_version(),
                "metadata": { "resourceVersion": store.resource_version().to_string() },
                "items": items,
            })))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The field manager of a write: `fieldManager`, else (as a real server) the client's
/// program name from its User-Agent.
fn field_manager(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager") {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// The `scale` subresource (autoscaling/v1 Scale): what `kubectl scale` and autoscalers use.
/// A change takes `spec.replicas` from whoever owned it, as on a real server.
async fn scale(
    emu: &Arc<Emulator>,
    target: &Target,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (ns, name) = (
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    let mut store = emu.store.lock().await;
    let key = Store::key(&target.t, &ns, &name);
    let old = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.t.plural, &name))?;
    let replicas = match method.as_str() {
        "GET" => None,
        "PUT" | "PATCH" => {
            let b = parse_body(headers, body)?;
            Some(
                b.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ApiError::bad_request("spec.replicas is required"))?,
            )
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let obj = match replicas {
        None => old,
        Some(r) => {
            let mut new = old.clone();
            new["spec"]["replicas"] = json!(r);
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            super::apply::record_update(
                &old,
                &mut new,
                &field_manager(q, headers),
                &target.t.api_version(),
                Some("scale"),
            );
            store.update(&target.t, &ns, &name, new, None)?
        }
    };
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = &obj["metadata"];
    Ok(json_response(&json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })))
}

/// Parses a JSON (or YAML) request body.
pub fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("protobuf") {
        return super::protobuf::decode(body);
    }
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct})"
        )));
    }
    if ct.contains("yaml") {
        // Clients often send JSON, which is YAML too; try the strict parser first.
        if let Ok(v) = serde_json::from_slice(body) {
            return Ok(v);
        }
        let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

async fn get_object(
    emu: &Arc<Emulator>,
    target: &Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let store = emu.store.lock().await;
    let name = target.name.as_deref().unwrap_or_default();
    let key = Store::key(&target.t, target.namespace.as_deref().unwrap_or(""), name);
    let obj = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.t.plural, name))?;
    let rv = store.resource_version().to_string();
    Ok(json_response(&match render(headers) {
        Render::Table => table::table(&target.t, &[obj], &rv, "Metadata"),
        Render::Partial => table::partial_object(&obj),
        Render::Object => obj,
    }))
}

fn selected(q: &Query) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = Selector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

async fn list_objects(
    emu: &Arc<Emulator>,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selected(q)?;
    let store = emu.store.lock().await;
    let items: Vec<Value> = store
        .list(&target.t, target.namespace.as_deref())
        .into_iter()
        .filter(|o| labels.matches(o.pointer("/metadata/labels")) && fields.matches_fields(o))
        .collect();
    let rv = store.resource_version().to_string();
    drop(store);
    Ok(json_response(&match render(headers) {
        Render::Table => table::table(
            &target.t,
            &items,
            &rv,
            q.get("includeObject").map_or("Metadata", String::as_str),
        ),
        Render::Partial => table::partial_list(&items, &rv),
        Render::Object => json!({
            "kind": format!("{}List", target.t.kind),
            "apiVersion": target.t.api_version(),
            "metadata": { "resourceVersion": rv },
            "items": items,
        }),
    }))
}

async fn watch_objects(
    emu: &Arc<Emulator>,
    target: Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, mut fields) = selected(q)?;
    if let Some(name) = &target.name {
        fields =
            Selector::parse(&format!("metadata.name={name}")).map_err(ApiError::bad_request)?;
    }
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let render = render(headers);
    let t = target.t.clone();
    let ns = target.namespace.clone();
    let matches = move |group: &str, plural: &str, namespace: &str, obj: &Value| {
        group == t.group
            && plural == t.plural
            && ns.as_deref().is_none_or(|n| n == namespace)
            && labels.matches(obj.pointer("/metadata/labels"))
            && fields.matches_fields(obj)
    };
    let (initial, backlog, rx) = {
        let store = emu.store.lock().await;
        let from_now = rv_param.is_empty() || rv_param == "0";
        if from_now {
            let initial: Vec<Value> = store
                .list(&target.t, target.namespace.as_deref())
                .into_iter()
                .filter(|o| {
                    matches(
                        &target.t.group,
                        &target.t.plural,
                        o.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        o,
                    )
                })
                .collect();
            (initial, Vec::new(), store.subscribe())
        } else {
            let rv: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"))
            })?;
            let (backlog, rx) = store.watch_from(rv)?;
            (Vec::new(), backlog, rx)
        }
    };
    let t = target.t.clone();
    let encode = move |kind: &str, obj: &Value| -> Bytes {
        let object = match render {
            Render::Table => table::table(&t, std::slice::from_ref(obj), "", "Object"),
            Render::Partial => table::partial_object(obj),
            Render::Object => obj.clone(),
        };
        let mut line = json!({ "type": kind, "object": object }).to_string();
        line.push('\n');
        Bytes::from(line)
    };
    let enc = encode.clone();
    let first: Vec<Bytes> = initial
        .iter()
        .map(|o| enc("ADDED", o))
        .chain(
            backlog
                .iter()
                .filter(|e| matches(&e.key.group, &e.key.plural, &e.key.namespace, &e.object))
                .map(|e| enc(e.kind.as_str(), &e.object)),
        )
        .collect();
    let live = tokio_stream::wrappers::BroadcastStream::new(rx)
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(move |r| {
            let out = r.ok().and_then(|e| {
                matches(&e.key.group, &e.key.plural, &e.key.namespace, &e.object).then(|| {
                    let kind = match e.kind {
                        EventType::Added => "ADDED",
                        EventType::Modified => "MODIFIED",
                        EventType::Deleted => "DELETED",
                    };
                    encode(kind, &e.object)
                })
            });
            std::future::ready(out)
        });
    let stream = futures::stream::iter(first)
        .chain(live)
        .take_until(tokio::time::sleep(timeout))
        .map(Ok::<_, std::convert::Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
