//! What one cluster receives for one workload: its rendered manifests and how to apply them,
//! as compressed JSON. The hub stores each distinct bundle once, by the SHA-256 of its JSON.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApplyOptions, DeletePolicy, FeedbackRule, Workload};

/// Largest bundle a decoder accepts once decompressed (guards against compression bombs).
pub const MAX_DECODED: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub workload: String,
    pub manifests: Vec<Value>,
    #[serde(default)]
    pub apply: ApplyOptions,
    #[serde(default)]
    pub delete_policy: DeletePolicy,
    #[serde(default)]
    pub status_feedback: Vec<FeedbackRule>,
    /// Set for a team's workload: where its objects may go. The hub checks it at apply; the
    /// agent checks it again against what the member's API says about each kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confine: Option<Confinement>,
}

/// The namespaces (and whether cluster-scoped kinds) a team's workload may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confinement {
    pub team: String,
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub cluster_scoped: bool,
}

impl Confinement {
    /// Why an object of this kind, name and (resolved) namespace may not be applied, if it
    /// may not. `namespaced` is what the member's discovery says of the kind.
    pub fn refuses(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        namespaced: bool,
    ) -> Option<String> {
        let ours = |ns: &str| self.namespaces.iter().any(|n| n == ns);
        if namespaced {
            return (!ours(namespace))
                .then(|| format!("team {} may not use namespace {namespace:?}", self.team));
        }
        if kind == "Namespace" && ours(name) {
            return None;
        }
        (!self.cluster_scoped).then(|| {
            format!(
                "team {} may not create cluster-scoped {kind} objects here (no cluster-scoped grant)",
                self.team
            )
        })
    }
}

/// A bundle ready to store and send.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Hex SHA-256 of the JSON: identical copies share one stored bundle.
    pub hash: String,
    /// Size of the JSON before compression.
    pub size: usize,
    pub gzip: Vec<u8>,
}

/// Hex SHA-256.
pub fn hash(json: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, json))
}

/// gzip, fast setting: bundles are compressed once per distinct copy, at apply time.
pub fn gzip(json: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(json);
    enc.finish().unwrap_or_default()
}

impl Bundle {
    pub fn new(w: &Workload, manifests: Vec<Value>) -> Self {
        Bundle {
            workload: w.metadata.name.clone(),
            manifests,
            apply: w.spec.apply.clone(),
            delete_policy: w.spec.delete_policy,
            status_feedback: w.spec.status_feedback.clone(),
            confine: None,
        }
    }

    /// The JSON form, whose hash names the bundle.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serializing to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn encode(&self) -> Encoded {
        let json = self.to_json();
        Encoded {
            hash: hash(&json),
            size: json.len(),
            gzip: gzip(&json),
        }
    }

    pub fn decode(gzip: &[u8]) -> Result<Bundle, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gzip)
            .take(MAX_DECODED as u64 + 1)
            .read_to_end(&mut json)
            .map_err(|e| format!("bundle is not valid gzip: {e}"))?;
        if json.len() > MAX_DECODED {
            return Err(format!(
                "bundle larger than {MAX_DECODED} bytes once decompressed"
            ));
        }
        serde_json::from_slice(&json).map_err(|e| format!("bundle is not valid: {e}"))
    }
}
