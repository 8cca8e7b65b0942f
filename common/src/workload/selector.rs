//! Label selectors as Kubernetes writes them (`matchLabels` and `matchExpressions`), used to
//! place workloads and scope overrides by cluster labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{self, Labels};

/// `{ matchLabels, matchExpressions }`. An empty selector matches every cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The command-line form [`LabelSelector::parse`] reads.
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        f.write_str(&parts.join(","))
    }
}

impl LabelSelector {
    /// Checks keys, values and operators; the error names the offending part.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in &self.match_labels {
            labels::validate_key(k).map_err(|e| format!("matchLabels: {e}"))?;
            labels::validate_value(v).map_err(|e| format!("matchLabels: {e}"))?;
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            labels::validate_key(&r.key).map_err(|e| format!("matchExpressions[{i}].key: {e}"))?;
            match r.operator {
                Operator::In | Operator::NotIn if r.values.is_empty() => {
                    return Err(format!(
                        "matchExpressions[{i}]: operator {:?} needs at least one value",
                        r.operator
                    ));
                }
                Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
                    return Err(format!(
                        "matchExpressions[{i}]: operator {:?} takes no values",
                        r.operator
                    ));
                }
                _ => {}
            }
            for v in &r.values {
                labels::validate_value(v)
                    .map_err(|e| format!("matchExpressions[{i}].values: {e}"))?;
            }
        }
        Ok(())
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let have = labels.get(&r.key);
                match r.operator {
                    Operator::In => have.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => have.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }

    /// Parses the command-line form: `k=v,k2!=v,k3 in (a,b),k4 notin (c),k5,!k6`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut sel = LabelSelector::default();
        let mut depth = 0;
        let mut parts = Vec::new();
        let mut cur = String::new();
        for c in s.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected (v1,v2) in selector {s:?}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            if let Some(k) = part.strip_prefix('!') {
                sel.match_expressions.push(Requirement {
                    key: k.trim().into(),
                    operator: Operator::DoesNotExist,
                    values: vec![],
                });
            } else if let Some((k, v)) = part.split_once("!=") {
                sel.match_expressions.push(Requirement {
                    key: k.trim().into(),
                    operator: Operator::NotIn,
                    values: vec![v.trim().into()],
                });
            } else if let Some((k, v)) = part.split_once('=') {
                sel.match_labels
                    .insert(k.trim().into(), v.trim_start_matches('=').trim().into());
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                sel.match_expressions.push(Requirement {
                    key: k.trim().into(),
                    operator: Operator::NotIn,
                    values: set(rest)?,
                });
            } else if let Some((k, rest)) = part.split_once(" in ") {
                sel.match_expressions.push(Requirement {
                    key: k.trim().into(),
                    operator: Operator::In,
                    values: set(rest)?,
                });
            } else {
                sel.match_expressions.push(Requirement {
                    key: part.into(),
                    operator: Operator::Exists,
                    values: vec![],
                });
            }
        }
        sel.validate()?;
        Ok(sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_cluster_labels() {
        let l = labels(&[("region", "eu"), ("tier", "edge")]);
        assert!(LabelSelector::default().matches(&l));
        assert!(LabelSelector::parse("region=eu").unwrap().matches(&l));
        assert!(
            LabelSelector::parse("region in (eu,us),tier")
                .unwrap()
                .matches(&l)
        );
        assert!(
            !LabelSelector::parse("region notin (eu)")
                .unwrap()
                .matches(&l)
        );
        assert!(LabelSelector::parse("!gpu,tier!=core").unwrap().matches(&l));
        assert!(!LabelSelector::parse("gpu").unwrap().matches(&l));
    }

    #[test]
    fn bad_selectors_are_named() {
        assert!(LabelSelector::parse("region in eu").is_err());
        assert!(LabelSelector::parse("-bad=1").unwrap_err().contains("-bad"));
        let s = LabelSelector {
            match_expressions: vec![Requirement {
                key: "a".into(),
                operator: Operator::In,
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("matchExpressions[0]"));
    }

    #[test]
    fn a_selector_prints_in_the_form_it_parses() {
        for text in ["a=b,c in (x,y),d notin (z),e,!f", "a=b", ""] {
            let sel = LabelSelector::parse(text).unwrap();
            assert_eq!(sel.to_string(), text);
            assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
        }
    }

    #[test]
    fn operators_take_values_or_not_as_kubernetes_says() {
        let req = |operator, values: &[&str]| LabelSelector {
            match_labels: Default::default(),
            match_expressions: vec![Requirement {
                key: "k".into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        assert!(req(Operator::In, &[]).validate().is_err());
        assert!(req(Operator::NotIn, &[]).validate().is_err());
        assert!(req(Operator::In, &["a"]).validate().is_ok());
        assert!(req(Operator::Exists, &["a"]).validate().is_err());
        assert!(req(Operator::DoesNotExist, &["a"]).validate().is_err());
        assert!(req(Operator::Exists, &[]).validate().is_ok());
    }
}
