//! Request bodies in Kubernetes' protobuf encoding, for the kinds kubectl's typed `create`
//! subcommands send that way (`create namespace|configmap|secret`).
//!
//! The wire format: the magic `k8s\0`, then a `runtime.Unknown` whose `raw` field is the
//! object's own message (k8s.io/api/core/v1/generated.proto). Only the fields those commands
//! set are decoded; anything else is refused with 415, so a client falls back to JSON.

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value, json};

use super::error::ApiError;

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
    #[prost(string, tag = "3")]
    content_encoding: String,
    #[prost(string, tag = "4")]
    content_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    generate_name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(map = "string, string", tag = "11")]
    labels: std::collections::HashMap<String, String>,
    #[prost(map = "string, string", tag = "12")]
    annotations: std::collections::HashMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(map = "string, string", tag = "2")]
    data: std::collections::HashMap<String, String>,
    #[prost(map = "string, bytes", tag = "3")]
    binary_data: std::collections::HashMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(map = "string, bytes", tag = "2")]
    data: std::collections::HashMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(map = "string, string", tag = "4")]
    string_data: std::collections::HashMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

fn unsupported(what: &str) -> ApiError {
    ApiError::unsupported_media(format!(
        "the emulator decodes protobuf bodies only for Namespace, ConfigMap and Secret (got {what}); send application/json"
    ))
}

fn metadata(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut out = Map::new();
    for (k, v) in [
        ("name", m.name),
        ("generateName", m.generate_name),
        ("namespace", m.namespace),
    ] {
        if !v.is_empty() {
            out.insert(k.into(), Value::from(v));
        }
    }
    if !m.labels.is_empty() {
        out.insert("labels".into(), json!(m.labels));
    }
    if !m.annotations.is_empty() {
        out.insert("annotations".into(), json!(m.annotations));
    }
    Value::Object(out)
}

fn b64(map: std::collections::HashMap<String, Vec<u8>>) -> Value {
    let e = base64::engine::general_purpose::STANDARD;
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, Value::from(e.encode(v))))
            .collect(),
    )
}

/// Decodes a protobuf-encoded object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("a protobuf body must start with the k8s magic"))?;
    let unknown = Unknown::decode(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid protobuf envelope: {e}")))?;
    if !unknown.content_encoding.is_empty() {
        return Err(unsupported(&format!(
            "content encoding {}",
            unknown.content_encoding
        )));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    let bad = |e: prost::DecodeError| ApiError::bad_request(format!("invalid {}: {e}", tm.kind));
    let mut obj = match (tm.api_version.as_str(), tm.kind.as_str()) {
        ("v1", "Namespace") => {
            let n = Namespace::decode(unknown.raw.as_slice()).map_err(bad)?;
            let mut o = json!({ "metadata": metadata(n.metadata) });
            if let Some(spec) = n.spec.filter(|s| !s.finalizers.is_empty()) {
                o["spec"] = json!({ "finalizers": spec.finalizers });
            }
            o
        }
        ("v1", "ConfigMap") => {
            let c = ConfigMap::decode(unknown.raw.as_slice()).map_err(bad)?;
            let mut o = json!({ "metadata": metadata(c.metadata) });
            if !c.data.is_empty() {
                o["data"] = json!(c.data);
            }
            if !c.binary_data.is_empty() {
                o["binaryData"] = b64(c.binary_data);
            }
            if let Some(i) = c.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        ("v1", "Secret") => {
            let s = Secret::decode(unknown.raw.as_slice()).map_err(bad)?;
            let mut o = json!({ "metadata": metadata(s.metadata) });
            if !s.data.is_empty() {
                o["data"] = b64(s.data);
            }
            if !s.string_data.is_empty() {
                o["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type {
                o["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                o["immutable"] = json!(i);
            }
            o
        }
        (v, k) => return Err(unsupported(&format!("{v} {k}"))),
    };
    obj["apiVersion"] = json!(tm.api_version);
    obj["kind"] = json!(tm.kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "v1".into(),
                kind: kind.into(),
            }),
            raw,
            content_encoding: String::new(),
            content_type: String::new(),
        };
        [MAGIC.to_vec(), u.encode_to_vec()].concat()
    }

    #[test]
    fn a_configmap_and_a_secret_decode_to_their_json_form() {
        let cm = ConfigMap {
            metadata: Some(ObjectMeta {
                name: "settings".into(),
                namespace: "team".into(),
                ..Default::default()
            }),
            data: [("mode".to_string(), "on".to_string())].into(),
            ..Default::default()
        };
        let v = decode(&envelope("ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "settings", "namespace": "team"}, "data": {"mode": "on"}})
        );
        let s = Secret {
            metadata: Some(ObjectMeta {
                name: "creds".into(),
                ..Default::default()
            }),
            data: [("k".to_string(), b"v".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("Secret", s.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["k"], "dg==");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn other_kinds_and_garbage_are_refused_not_misread() {
        assert_eq!(decode(&envelope("Pod", vec![])).unwrap_err().code, 415);
        assert_eq!(decode(b"not protobuf").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\xff\xff\xff").unwrap_err().code, 400);
    }
}
