//! Rendering one cluster's copy of a workload: its manifests with the matching overrides
//! applied, in order.

use serde_json::Value;

use super::{Workload, object_ref};
use crate::labels::Labels;

/// The manifests `cluster` (with `labels`) should run. Fails if a JSON patch cannot apply.
pub fn render(w: &Workload, cluster: &str, labels: &Labels) -> Result<Vec<Value>, String> {
    render_with_share(w, cluster, labels, None)
}

/// Like [`render`], with the cluster's share of divided replicas written last.
pub fn render_with_share(
    w: &Workload,
    cluster: &str,
    labels: &Labels,
    share: Option<u32>,
) -> Result<Vec<Value>, String> {
    let mut manifests = w.spec.manifests.clone();
    for (i, o) in w.spec.overrides.iter().enumerate() {
        if !o.cluster_selector.matches(labels) {
            continue;
        }
        for (j, p) in o.patches.iter().enumerate() {
            for m in manifests.iter_mut().filter(|m| p.target.matches(m)) {
                if let Some(merge) = &p.merge {
                    json_patch::merge(m, merge);
                }
                if let Some(ops) = &p.json {
                    let patch: json_patch::Patch =
                        serde_json::from_value(Value::Array(ops.clone()))
                            .map_err(|e| format!("spec.overrides[{i}].patches[{j}].json: {e}"))?;
                    json_patch::patch(m, &patch).map_err(|e| {
                        format!(
                            "spec.overrides[{i}].patches[{j}].json: cannot apply to {} for cluster {cluster}: {e}",
                            object_ref(m)
                        )
                    })?;
                }
            }
        }
    }
    if let (Some(split), Some(share)) = (&w.spec.replicas, share) {
        for m in manifests.iter_mut().filter(|m| split.target.matches(m)) {
            m["spec"]["replicas"] = Value::from(share);
        }
    }
    Ok(manifests)
}
