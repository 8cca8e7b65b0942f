//! What a real API server does to objects before storing them, where the agent and its tests
//! can tell the difference: resource quantities in canonical form (`0.5` → `500m`, `1024Mi` →
//! `1Gi`), container and Service port protocols, a Service's `targetPort`, a container's
//! `imagePullPolicy`, a Secret's `stringData` folded into `data`, and the defaults of
//! Deployments, pod templates and Services.
//!
//! Compared with a real kube-apiserver by `tests/tests/real_kubernetes.rs`; what is still
//! missing is listed in docs/emulator.md.

use base64::Engine;
use serde_json::{Value, json};

/// Applies the defaults and normalisation of `kind` to `obj` (in place).
pub fn normalise(group: &str, kind: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Secret") => secret(obj),
        ("", "Service") => service(obj),
        ("", "Pod") => pod_spec(obj.pointer_mut("/spec")),
        ("apps", "Deployment") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                for (k, v) in [
                    ("progressDeadlineSeconds", json!(600)),
                    ("revisionHistoryLimit", json!(10)),
                    (
                        "strategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                    ),
                ] {
                    spec.entry(k).or_insert(v);
                }
            }
            pod_spec(obj.pointer_mut("/spec/template/spec"))
        }
        ("apps", "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            pod_spec(obj.pointer_mut("/spec/template/spec"))
        }
        ("batch", "CronJob") => pod_spec(obj.pointer_mut("/spec/jobTemplate/spec/template/spec")),
        _ => {}
    }
}

fn fold_string_data(obj: &mut Value) {
    let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let e = base64::engine::general_purpose::STANDARD;
    if let Some(m) = string_data.as_object() {
        for (k, v) in m {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = Value::from(e.encode(text));
        }
    }
}

fn secret(obj: &mut Value) {
    fold_string_data(obj);
    if obj
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        obj["type"] = json!("Opaque");
    }
}

fn service(obj: &mut Value) {
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none()
                && let Some(port) = p.get("port").cloned()
            {
                p["targetPort"] = port;
            }
        }
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        for (k, v) in [
            ("type", json!("ClusterIP")),
            ("sessionAffinity", json!("None")),
            ("internalTrafficPolicy", json!("Cluster")),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
        ] {
            spec.entry(k).or_insert(v);
        }
    }
}

fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    if let Some(m) = spec.as_object_mut() {
        for (k, v) in [
            ("dnsPolicy", json!("ClusterFirst")),
            ("restartPolicy", json!("Always")),
            ("schedulerName", json!("default-scheduler")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("securityContext", json!({})),
        ] {
            m.entry(k).or_insert(v);
        }
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers {
            if let Some(m) = c.as_object_mut() {
                m.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                m.entry("terminationMessagePolicy").or_insert(json!("File"));
            }
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                }
            }
            if c.get("imagePullPolicy").is_none()
                && let Some(image) = c.get("image").and_then(Value::as_str)
            {
                let tag = image.rsplit('/').next().unwrap_or(image);
                let latest = !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
                c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
            }
            for part in ["requests", "limits"] {
                if let Some(m) = c
                    .pointer_mut(&format!("/resources/{part}"))
                    .and_then(Value::as_object_mut)
                {
                    for v in m.values_mut() {
                        if let Some(q) = canonical_quantity(v) {
                            *v = Value::from(q);
                        }
                    }
                }
            }
        }
    }
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(&str, i32); 8] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
];

/// A quantity (`"0.5"`, `0.5`, `"1024Mi"`, `"1e3"`) in the form Kubernetes stores it, as
/// `resource.Quantity` canonicalises: binary suffixes stay binary (the largest that divides
/// evenly), everything else becomes the largest decimal suffix with an integer mantissa.
/// `None` for what is not a quantity (left as it is; the real server would refuse it).
pub fn canonical_quantity(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (mantissa, scale) = decimal(number)?;
    if let Some((_, shift)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        // mantissa * 10^scale * 2^shift, in bytes when it is a whole number.
        let mut value = mantissa.checked_mul(1i128 << shift)?;
        let mut exp = scale;
        while exp < 0 {
            if value % 10 != 0 {
                return None;
            }
            value /= 10;
            exp += 1;
        }
        for _ in 0..exp {
            value = value.checked_mul(10)?;
        }
        for (s, shift) in BINARY.iter().rev() {
            let unit = 1i128 << shift;
            if value != 0 && value % unit == 0 {
                return Some(format!("{}{s}", value / unit));
            }
        }
        return Some(value.to_string());
    }
    let exp10 = match suffix {
        "" => 0,
        s if s.starts_with(['e', 'E']) => s[1..].parse::<i32>().ok()?,
        s => DECIMAL.iter().find(|(d, _)| *d == s)?.1,
    };
    // mantissa * 10^(scale + exp10): pick the largest suffix keeping the mantissa whole.
    let (mut m, mut e) = (mantissa, scale + exp10);
    if m == 0 {
        return Some("0".into());
    }
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    if e < -9 {
        return None;
    }
    let choices: [(&str, i32); 9] = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("", 0),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
    ];
    let (s, base) = choices.iter().rev().find(|(_, b)| *b <= e)?;
    let mut out = m;
    for _ in 0..(e - base) {
        out = out.checked_mul(10)?;
    }
    Some(format!("{out}{s}"))
}

/// `"1.50"` as (150, -2).
fn decimal(s: &str) -> Option<(i128, i32)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if s.is_empty() {
        return None;
    }
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || int.len() + frac.len() > 30 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let m: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    Some((if neg { -m } else { m }, -(frac.len() as i32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_take_the_form_the_api_server_stores() {
        for (input, want) in [
            (json!(0.5), "500m"),
            (json!("0.5"), "500m"),
            (json!("1.5"), "1500m"),
            (json!("2"), "2"),
            (json!(2), "2"),
            (json!("1000m"), "1"),
            (json!("1000"), "1k"),
            (json!("1500"), "1500"),
            (json!("100m"), "100m"),
            (json!("1024Mi"), "1Gi"),
            (json!("2048Mi"), "2Gi"),
            (json!("1536Mi"), "1536Mi"),
            (json!("0.5Gi"), "512Mi"),
            (json!("1e3"), "1k"),
            (json!("128974848"), "128974848"),
        ] {
            assert_eq!(canonical_quantity(&input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(canonical_quantity(&json!("lots")), None);
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut s = json!({"stringData": {"password": "s3cret"}});
        normalise("", "Secret", &mut s);
        assert_eq!(
            s,
            json!({"data": {"password": "czNjcmV0"}, "type": "Opaque"})
        );
    }

    #[test]
    fn ports_get_their_protocol_and_images_their_pull_policy() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
             "resources": {"requests": {"cpu": 0.5, "memory": "1024Mi"}}},
            {"name": "b", "image": "busybox"},
        ]}}}});
        normalise("apps", "Deployment", &mut d);
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(c[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            c[0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(c[1]["imagePullPolicy"], "Always");
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        normalise("", "Service", &mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["type"], "ClusterIP");
    }
}
