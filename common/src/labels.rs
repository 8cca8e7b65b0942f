//! Kubernetes-style labels on clusters: parsing `k=v,k2=v2` and validating keys and values
//! by the same rules Kubernetes applies, so a label that works here works in a selector.

use std::collections::BTreeMap;

/// Labels, sorted by key so that output and hashing are stable.
pub type Labels = BTreeMap<String, String>;

/// The most labels (or taints) one cluster may carry: each is matched by every placement.
pub const MAX_LABELS: usize = 64;

/// Refuses more than [`MAX_LABELS`].
pub fn check_count(n: usize) -> Result<(), String> {
    if n > MAX_LABELS {
        return Err(format!(
            "{n} labels is more than the {MAX_LABELS} a cluster may carry"
        ));
    }
    Ok(())
}

/// Parses `k=v,k2=v2` (an empty string is no labels).
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut out = Labels::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("label {part:?} is not of the form key=value"))?;
        validate_key(k)?;
        validate_value(v)?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("label key {k:?} is given twice"));
        }
    }
    Ok(out)
}

/// A change to a label set, as `kubectl label` takes it: `k=v` sets, `k-` removes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LabelChanges {
    pub set: Labels,
    pub remove: Vec<String>,
}

/// Parses `k=v` and `k-` arguments.
pub fn parse_label_changes<S: AsRef<str>>(args: &[S]) -> Result<LabelChanges, String> {
    let mut out = LabelChanges::default();
    for arg in args {
        let arg = arg.as_ref();
        if let Some(k) = arg.strip_suffix('-').filter(|_| !arg.contains('=')) {
            validate_key(k)?;
            out.remove.push(k.to_string());
        } else {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| format!("{arg:?} is neither key=value nor key-"))?;
            validate_key(k)?;
            validate_value(v)?;
            out.set.insert(k.to_string(), v.to_string());
        }
    }
    if out.set.is_empty() && out.remove.is_empty() {
        return Err("no label changes given (use key=value to set, key- to remove)".into());
    }
    Ok(out)
}

/// Formats labels as `k=v,k2=v2`.
pub fn format_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn is_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Checks a label key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters.
pub fn validate_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) || !is_name_part(name) {
        return Err(format!(
            "invalid label key {}: expected [prefix/]name, name at most 63 characters of \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            crate::text::quote_short(k, 64)
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters like a key's name part.
pub fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {}: at most 63 characters of letters, digits, '-', '_' \
             or '.', starting and ending with a letter or digit",
            crate::text::quote_short(v, 64)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_lists() {
        let l = parse_labels("region=eu, tier=edge,tether.dev/ring=canary").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l["tether.dev/ring"], "canary");
        assert!(parse_labels("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_labels_with_the_culprit_named() {
        assert!(parse_labels("region").unwrap_err().contains("region"));
        assert!(parse_labels("-x=1").unwrap_err().contains("-x"));
        assert!(parse_labels("a=b c").unwrap_err().contains("b c"));
        assert!(parse_labels("a=1,a=2").unwrap_err().contains("twice"));
        assert!(parse_labels(&format!("a={}", "v".repeat(64))).is_err());
        assert!(parse_labels("Bad_Prefix/x=1").is_err());
    }

    #[test]
    fn parses_changes_like_kubectl_label() {
        let c = parse_label_changes(&["tier=edge", "region-"]).unwrap();
        assert_eq!(c.set["tier"], "edge");
        assert_eq!(c.remove, vec!["region".to_string()]);
        assert!(parse_label_changes::<&str>(&[]).is_err());
        assert!(parse_label_changes(&["justakey"]).is_err());
    }
}
