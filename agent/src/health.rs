//! Health of one live object, by kind: Deployment, StatefulSet, DaemonSet, Job, PVC, Service,
//! CRD, Namespace, and any object with `status.conditions`.

use serde_json::Value;

use crate::status::Health;

fn i(obj: &Value, ptr: &str) -> Option<i64> {
    obj.pointer(ptr).and_then(Value::as_i64)
}

fn s<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// The condition of `type_`, as (status, reason, message).
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or(""),
            )
        })
}

/// The controller has seen the latest spec.
fn observed(obj: &Value) -> bool {
    match (
        i(obj, "/metadata/generation"),
        i(obj, "/status/observedGeneration"),
    ) {
        (Some(g), Some(o)) => o >= g,
        (Some(_), None) => false,
        _ => true,
    }
}

/// Assesses `obj` (as returned by the API server).
pub fn assess(obj: &Value) -> (Health, String) {
    let kind = s(obj, "/kind").unwrap_or("");
    let group = s(obj, "/apiVersion")
        .and_then(|a| a.split_once('/'))
        .map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps", "Deployment") => {
            if let Some(("False", "ProgressDeadlineExceeded", msg)) = condition(obj, "Progressing")
            {
                return (Health::Failed, format!("progress deadline exceeded: {msg}"));
            }
            let want = i(obj, "/spec/replicas").unwrap_or(1);
            let updated = i(obj, "/status/updatedReplicas").unwrap_or(0);
            let available = i(obj, "/status/availableReplicas").unwrap_or(0);
            if !observed(obj) {
                return (
                    Health::Progressing,
                    "waiting for the controller to observe the new spec".into(),
                );
            }
            if updated >= want && available >= want {
                (Health::Ready, String::new())
            } else {
                (
                    Health::Progressing,
                    format!("{available}/{want} replicas available, {updated} updated"),
                )
            }
        }
        ("apps", "StatefulSet") => {
            let want = i(obj, "/spec/replicas").unwrap_or(1);
            let ready = i(obj, "/status/readyReplicas").unwrap_or(0);
            let same_revision = s(obj, "/status/updateRevision")
                .is_none_or(|u| s(obj, "/status/currentRevision") == Some(u));
            if observed(obj) && ready >= want && same_revision {
                (Health::Ready, String::new())
            } else {
                (
                    Health::Progressing,
                    format!("{ready}/{want} replicas ready"),
                )
            }
        }
        ("apps", "DaemonSet") => {
            let want = i(obj, "/status/desiredNumberScheduled").unwrap_or(0);
            let ready = i(obj, "/status/numberReady").unwrap_or(0);
            let updated = i(obj, "/status/updatedNumberScheduled").unwrap_or(want);
            if observed(obj) && ready >= want && updated >= want {
                (Health::Ready, String::new())
            } else {
                (Health::Progressing, format!("{ready}/{want} pods ready"))
            }
        }
        ("batch", "Job") => {
            if let Some(("True", _, _)) = condition(obj, "Complete") {
                (Health::Ready, String::new())
            } else if let Some(("True", reason, msg)) = condition(obj, "Failed") {
                (
                    Health::Failed,
                    format!("job failed: {reason} {msg}").trim().to_string(),
                )
            } else {
                (Health::Progressing, "job running".into())
            }
        }
        ("", "PersistentVolumeClaim") => match s(obj, "/status/phase") {
            Some("Bound") => (Health::Ready, String::new()),
            Some("Lost") => (Health::Failed, "claim lost its volume".into()),
            other => (
                Health::Progressing,
                format!("claim is {}", other.unwrap_or("Pending")),
            ),
        },
        ("", "Service") => {
            if s(obj, "/spec/type") == Some("LoadBalancer")
                && obj
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            {
                (
                    Health::Progressing,
                    "waiting for a load balancer address".into(),
                )
            } else {
                (Health::Ready, String::new())
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => match condition(obj, "Established")
        {
            Some(("True", _, _)) => (Health::Ready, String::new()),
            _ => (
                Health::Progressing,
                "waiting for the CRD to be established".into(),
            ),
        },
        ("", "Namespace") => match s(obj, "/status/phase") {
            Some("Terminating") => (Health::Progressing, "namespace is terminating".into()),
            _ => (Health::Ready, String::new()),
        },
        _ => generic(obj),
    }
}

/// Any object with `status.conditions`: Ready or Available decides; none means healthy once it
/// exists.
fn generic(obj: &Value) -> (Health, String) {
    for t in ["Ready", "Available"] {
        match condition(obj, t) {
            Some(("True", _, _)) => return (Health::Ready, String::new()),
            Some(("False", reason, msg)) if reason.contains("Fail") || reason.contains("Error") => {
                return (
                    Health::Failed,
                    format!("{t}: {reason} {msg}").trim().to_string(),
                );
            }
            Some((status, reason, msg)) => {
                return (
                    Health::Progressing,
                    format!("{t}={status} {reason} {msg}").trim().to_string(),
                );
            }
            None => {}
        }
    }
    (Health::Ready, String::new())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployments_are_ready_when_every_replica_is_updated_and_available() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 2},
            "spec": {"replicas": 3}, "status": {"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 1}});
        assert_eq!(assess(&d).0, Health::Progressing);
        assert!(assess(&d).1.contains("1/3"));
        d["status"]["availableReplicas"] = json!(3);
        assert_eq!(assess(&d).0, Health::Ready);
        d["metadata"]["generation"] = json!(3);
        assert_eq!(
            assess(&d).0,
            Health::Progressing,
            "a spec the controller has not seen is not ready"
        );
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]);
        assert_eq!(assess(&d).0, Health::Failed);
    }

    #[test]
    fn jobs_pvcs_crds_and_generic_conditions() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        assert_eq!(assess(&job).0, Health::Failed);
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}});
        assert_eq!(assess(&pvc).0, Health::Ready);
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "status": {}});
        assert_eq!(assess(&crd).0, Health::Progressing);
        let cr = json!({"apiVersion": "x.dev/v1", "kind": "Thing", "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(assess(&cr).0, Health::Ready);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(assess(&cm).0, Health::Ready);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}});
        assert_eq!(assess(&lb).0, Health::Progressing);
    }
}
