//! JSON schemas for the parts of a Workload that schemars cannot derive in the shape
//! Kubernetes requires of a CRD (a structural schema): embedded objects of any kind, and
//! int-or-string. Used by the Workload CRD (`tether-controller`), behind the "schema" feature.

use schemars::{Schema, SchemaGenerator, json_schema};

/// One object of any kind (a manifest, a merge patch), kept as it is.
pub fn object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of objects of any kind (the manifests, RFC 6902 operations).
pub fn objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// A count or a percentage, as Kubernetes writes `maxUnavailable`.
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
    })
}
