//! Scheduling: which of the selected clusters a workload runs on (at most N, spread over a
//! label, respecting taints and cordons), how divided replicas are shared out, and the
//! rollout and failover policies. Pure functions: the hub supplies clusters and state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{LabelSelector, Spec, Target};
use crate::labels::{self, Labels};

/// The taint a cordon amounts to.
pub const CORDON_TAINT: &str = "tether.dev/unschedulable";

/// A cluster taint: workloads that do not tolerate it are not placed there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    /// Only `NoSchedule` is supported: new placements avoid the cluster, existing ones stay.
    pub effect: String,
}

impl Taint {
    /// Parses `key=value:NoSchedule` (or `key:NoSchedule`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kv, effect) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {s:?} is not of the form key=value:NoSchedule"))?;
        if effect != "NoSchedule" {
            return Err(format!(
                "taint effect {effect:?} is not supported (only NoSchedule)"
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        labels::validate_key(key)?;
        labels::validate_value(value)?;
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        })
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: String,
    /// Empty tolerates every effect.
    #[serde(default)]
    pub effect: String,
}

impl Toleration {
    pub fn tolerates(&self, t: &Taint) -> bool {
        let effect = self.effect.is_empty() || self.effect == t.effect;
        let key = match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == t.key,
            TolerationOperator::Equal => self.key == t.key && self.value == t.value,
        };
        effect && key
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Failover {
    #[serde(default)]
    pub enabled: bool,
    /// Offline this long before a cluster is replaced.
    #[serde(default = "default_after")]
    pub after_seconds: u64,
    /// Also replace a cluster whose member API has been unreachable, or whose copy has been
    /// Degraded, this long (off when unset). The old copy stays until its replacement is
    /// Available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_seconds: Option<u64>,
}

fn default_after() -> u64 {
    300
}

/// Divides a Deployment's or StatefulSet's replicas over the placed clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReplicaSplit {
    pub target: Target,
    pub total: u32,
    /// `label=value` -> weight. A cluster takes the largest weight whose label it has; 1 for
    /// all when empty, 0 for clusters matching none otherwise.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Every placed cluster gets at least this many [default: 1, or 0 when total is smaller
    /// than the number of clusters].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_cluster: Option<u32>,
}

/// A count or a percentage (of placed clusters), as Kubernetes writes `maxUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Str(String),
}

impl IntOrPercent {
    /// The count for `n` clusters, at least 1.
    pub fn of(&self, n: usize) -> Result<usize, String> {
        let v = match self {
            IntOrPercent::Int(i) => *i as usize,
            IntOrPercent::Str(s) => {
                let pct: usize = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| format!("{s:?} is neither a count nor a percentage like 25%"))?;
                n * pct / 100
            }
        };
        Ok(v.max(1))
    }
}

/// An ordered group of clusters in a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Wave {
    #[serde(default)]
    pub cluster_selector: LabelSelector,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rollout {
    /// Clusters updating or not Available at once [default: 1].
    #[serde(default = "default_max_unavailable")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::workload::schema::int_or_string")
    )]
    pub max_unavailable: IntOrPercent,
    /// Ordered groups; clusters in none form a last group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    /// A wave not Available this long after it started halts the rollout.
    #[serde(default = "default_deadline")]
    pub progress_deadline_seconds: u64,
}

fn default_max_unavailable() -> IntOrPercent {
    IntOrPercent::Int(1)
}

fn default_deadline() -> u64 {
    600
}

impl Default for Rollout {
    /// Conservative: one cluster at a time, no waves. Users of other tools were burned by a
    /// default that updated every cluster at once.
    fn default() -> Self {
        Rollout {
            max_unavailable: default_max_unavailable(),
            waves: Vec::new(),
            progress_deadline_seconds: default_deadline(),
        }
    }
}

impl Rollout {
    /// Which wave a cluster is in (the last, implicit one if it matches none).
    pub fn wave_of(&self, labels: &Labels) -> usize {
        self.waves
            .iter()
            .position(|w| w.cluster_selector.matches(labels))
            .unwrap_or(self.waves.len())
    }
}

/// Checks the scheduling parts of a spec.
pub fn validate(spec: &Spec) -> Result<(), (String, String)> {
    let p = &spec.placement;
    if p.max_clusters == Some(0) {
        return Err((
            "spec.placement.maxClusters".into(),
            "must be at least 1".into(),
        ));
    }
    if let Some(k) = &p.spread_by {
        labels::validate_key(k).map_err(|e| ("spec.placement.spreadBy".into(), e))?;
    }
    for (i, t) in p.tolerations.iter().enumerate() {
        if t.operator == TolerationOperator::Exists && !t.value.is_empty() {
            return Err((
                format!("spec.placement.tolerations[{i}]"),
                "operator Exists takes no value".into(),
            ));
        }
        if t.operator == TolerationOperator::Equal && t.key.is_empty() {
            return Err((
                format!("spec.placement.tolerations[{i}].key"),
                "required with operator Equal".into(),
            ));
        }
        if !t.effect.is_empty() && t.effect != "NoSchedule" {
            return Err((
                format!("spec.placement.tolerations[{i}].effect"),
                "only NoSchedule is supported".into(),
            ));
        }
    }
    if let Some(f) = &p.failover
        && f.enabled
        && f.after_seconds == 0
    {
        return Err((
            "spec.placement.failover.afterSeconds".into(),
            "must be at least 1".into(),
        ));
    }
    if let Some(r) = &spec.replicas {
        if !matches!(r.target.kind.as_str(), "Deployment" | "StatefulSet") {
            return Err((
                "spec.replicas.target.kind".into(),
                "must be Deployment or StatefulSet".into(),
            ));
        }
        if !spec.manifests.iter().any(|m| r.target.matches(m)) {
            return Err((
                "spec.replicas.target".into(),
                format!("target {} matches no manifest in spec.manifests", r.target),
            ));
        }
        for k in r.weights.keys() {
            let (lk, lv) = k.split_once('=').ok_or_else(|| {
                (
                    "spec.replicas.weights".to_string(),
                    format!("{k:?} is not label=value"),
                )
            })?;
            labels::validate_key(lk).map_err(|e| ("spec.replicas.weights".to_string(), e))?;
            labels::validate_value(lv).map_err(|e| ("spec.replicas.weights".to_string(), e))?;
        }
    }
    if let Some(r) = &spec.rollout {
        r.max_unavailable
            .of(1)
            .map_err(|e| ("spec.rollout.maxUnavailable".to_string(), e))?;
        if r.max_unavailable == IntOrPercent::Int(0) {
            return Err((
                "spec.rollout.maxUnavailable".into(),
                "must be at least 1".into(),
            ));
        }
        for (i, w) in r.waves.iter().enumerate() {
            w.cluster_selector
                .validate()
                .map_err(|e| (format!("spec.rollout.waves[{i}].clusterSelector"), e))?;
        }
        if r.progress_deadline_seconds == 0 {
            return Err((
                "spec.rollout.progressDeadlineSeconds".into(),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

/// What scheduling needs to know about a cluster.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    pub taints: &'a [Taint],
    pub cordoned: bool,
    /// Connected, and its member API reachable: new placements go only to such clusters
    /// (placements already there stay while it is away).
    pub available: bool,
}

impl Candidate<'_> {
    /// Whether a new placement with these tolerations may go here.
    pub fn schedulable(&self, tolerations: &[Toleration]) -> bool {
        let cordon = Taint {
            key: CORDON_TAINT.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        };
        let taints = self.taints.iter().chain(self.cordoned.then_some(&cordon));
        taints
            .into_iter()
            .all(|t| tolerations.iter().any(|tol| tol.tolerates(t)))
    }
}

/// A stable pseudo-random rank of a cluster for a workload (rendezvous hashing): different
/// workloads prefer different clusters, and the same inputs always give the same order.
/// Sort with `sort_by_cached_key`: one digest per cluster, not one per comparison (at 10,000
/// clusters that was a third of an apply's time).
fn rank(workload: &str, cluster: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(workload.as_bytes());
    ctx.update(b"/");
    ctx.update(cluster.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Chooses the clusters a workload runs on. Clusters it already runs on stay while they are
/// still selected (a taint or cordon does not evict); new ones must be schedulable; with
/// `maxClusters` the rest are filled preferring `spreadBy` values not yet used, then by a
/// stable per-workload order. Adding a cluster never moves a placed workload.
pub fn choose(
    workload: &str,
    spec: &Spec,
    clusters: &[Candidate<'_>],
    placed: &BTreeSet<String>,
    excluded: &BTreeSet<String>,
) -> Vec<String> {
    let p = &spec.placement;
    let selected: Vec<&Candidate<'_>> = clusters
        .iter()
        .filter(|c| !excluded.contains(c.name) && p.selects(c.name, c.labels))
        .collect();
    let mut keep: Vec<&Candidate<'_>> = selected
        .iter()
        .filter(|c| placed.contains(c.name))
        .copied()
        .collect();
    keep.sort_by_cached_key(|c| rank(workload, c.name));
    let mut fresh: Vec<&Candidate<'_>> = selected
        .iter()
        .filter(|c| !placed.contains(c.name) && c.available && c.schedulable(&p.tolerations))
        .copied()
        .collect();
    fresh.sort_by_cached_key(|c| rank(workload, c.name));
    let Some(max) = p.max_clusters.map(|m| m as usize) else {
        return keep
            .into_iter()
            .chain(fresh)
            .map(|c| c.name.to_string())
            .collect();
    };
    keep.truncate(max);
    let spread = |c: &Candidate<'_>| {
        p.spread_by
            .as_ref()
            .and_then(|k| c.labels.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let mut chosen: Vec<&Candidate<'_>> = keep;
    while chosen.len() < max && !fresh.is_empty() {
        let used = |v: &String| chosen.iter().filter(|c| &spread(c) == v).count();
        let (i, _) = fresh
            .iter()
            .enumerate()
            .min_by_key(|(i, c)| (used(&spread(c)), *i))
            .unwrap_or((0, &fresh[0]));
        chosen.push(fresh.remove(i));
    }
    chosen.into_iter().map(|c| c.name.to_string()).collect()
}

/// A replacement for `lost`: a schedulable, selected, available cluster not already placed
/// (nor `excluded`), preferring the lost one's `spreadBy` value.
pub fn replacement<'a>(
    workload: &str,
    spec: &Spec,
    lost: &Candidate<'_>,
    clusters: &'a [Candidate<'a>],
    placed: &BTreeSet<String>,
    excluded: &BTreeSet<String>,
) -> Option<&'a str> {
    let p = &spec.placement;
    let value = |c: &Candidate<'_>| p.spread_by.as_ref().and_then(|k| c.labels.get(k)).cloned();
    let mut options: Vec<&Candidate<'_>> = clusters
        .iter()
        .filter(|c| {
            c.name != lost.name
                && !placed.contains(c.name)
                && !excluded.contains(c.name)
                && c.available
        })
        .filter(|c| p.selects(c.name, c.labels) && c.schedulable(&p.tolerations))
        .collect();
    options.sort_by_cached_key(|c| (value(c) != value(lost), rank(workload, c.name)));
    options.first().map(|c| c.name)
}

/// Each cluster's share of `split.total`: at least the minimum each, the rest by weight
/// (largest remainder, ties by name). The shares always add up to the total.
pub fn shares(split: &ReplicaSplit, clusters: &[(&str, &Labels)]) -> BTreeMap<String, u32> {
    let n = clusters.len() as u32;
    if n == 0 {
        return BTreeMap::new();
    }
    let min = split
        .min_per_cluster
        .unwrap_or(if split.total >= n { 1 } else { 0 })
        .min(split.total / n);
    let weight = |labels: &Labels| -> u64 {
        if split.weights.is_empty() {
            return 1;
        }
        split
            .weights
            .iter()
            .filter(|(k, _)| {
                k.split_once('=')
                    .is_some_and(|(lk, lv)| labels.get(lk).is_some_and(|v| v == lv))
            })
            .map(|(_, w)| u64::from(*w))
            .max()
            .unwrap_or(0)
    };
    let weights: Vec<u64> = clusters.iter().map(|(_, l)| weight(l)).collect();
    let total_weight: u64 = weights.iter().sum();
    let rest = u64::from(split.total - min * n);
    let mut out: Vec<(String, u64, u64)> = clusters
        .iter()
        .zip(&weights)
        .map(|((name, _), w)| {
            // With no weight anywhere, the rest is shared equally.
            let (num, den) = if total_weight == 0 {
                (rest, u64::from(n))
            } else {
                (rest * w, total_weight)
            };
            // Every cluster's fraction has the same denominator: the remainders compare
            // as the fractions do.
            (name.to_string(), u64::from(min) + num / den, num % den)
        })
        .collect();
    let assigned: u64 = out.iter().map(|(_, s, _)| *s).sum();
    let mut left = u64::from(split.total).saturating_sub(assigned);
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|a, b| out[*b].2.cmp(&out[*a].2).then(out[*a].0.cmp(&out[*b].0)));
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        out[i].1 += 1;
        left -= 1;
    }
    out.into_iter().map(|(n, s, _)| (n, s as u32)).collect()
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

    fn spec(yaml: &str) -> Spec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn choose_spreads_and_stays_put() {
        let ls: Vec<(String, Labels)> = [
            ("eu-1", "eu"),
            ("eu-2", "eu"),
            ("us-1", "us"),
            ("us-2", "us"),
            ("ap-1", "ap"),
            ("ap-2", "ap"),
        ]
        .iter()
        .map(|(n, r)| (n.to_string(), labels(&[("region", r), ("tier", "prod")])))
        .collect();
        let cands = candidates(&ls);
        let s = spec(
            "manifests: []\nplacement: { clusterSelector: { matchLabels: { tier: prod } }, maxClusters: 3, spreadBy: region }\n",
        );
        let chosen = choose("web", &s, &cands, &BTreeSet::new(), &BTreeSet::new());
        let regions: BTreeSet<&str> = chosen.iter().map(|c| &c[..2]).collect();
        assert_eq!(regions.len(), 3, "{chosen:?}");
        // A new matching cluster moves nothing.
        let mut more = ls.clone();
        more.push(("eu-3".into(), labels(&[("region", "eu"), ("tier", "prod")])));
        let cands2 = candidates(&more);
        let placed: BTreeSet<String> = chosen.iter().cloned().collect();
        let again = choose("web", &s, &cands2, &placed, &BTreeSet::new());
        assert_eq!(
            again.iter().collect::<BTreeSet<_>>(),
            chosen.iter().collect::<BTreeSet<_>>()
        );
    }

    #[test]
    fn taints_and_cordons_keep_new_placements_away() {
        let l = labels(&[("a", "b")]);
        let taint = vec![Taint::parse("gpu=yes:NoSchedule").unwrap()];
        let c = Candidate {
            name: "x",
            labels: &l,
            taints: &taint,
            cordoned: false,
            available: true,
        };
        assert!(!c.schedulable(&[]));
        let tol = Toleration {
            key: "gpu".into(),
            operator: TolerationOperator::Equal,
            value: "yes".into(),
            effect: String::new(),
        };
        assert!(c.schedulable(&[tol]));
        let cordoned = Candidate {
            name: "y",
            labels: &l,
            taints: &[],
            cordoned: true,
            available: true,
        };
        assert!(!cordoned.schedulable(&[]));
        let all = Toleration {
            key: String::new(),
            operator: TolerationOperator::Exists,
            ..Default::default()
        };
        assert!(cordoned.schedulable(&[all]));
        assert!(Taint::parse("k=v:NoExecute").is_err());
    }

    #[test]
    fn shares_add_up_and_follow_weights() {
        let eu = labels(&[("region", "eu")]);
        let us = labels(&[("region", "us")]);
        let split = ReplicaSplit {
            target: Target {
                api_version: None,
                kind: "Deployment".into(),
                name: "web".into(),
                namespace: None,
            },
            total: 10,
            weights: [("region=eu".to_string(), 2), ("region=us".to_string(), 1)].into(),
            min_per_cluster: None,
        };
        let s = shares(&split, &[("eu-1", &eu), ("eu-2", &eu), ("us-1", &us)]);
        assert_eq!(s.values().sum::<u32>(), 10);
        assert_eq!(s["eu-1"], 4);
        assert_eq!(s["eu-2"], 4);
        assert_eq!(s["us-1"], 2);
        let two = shares(&split, &[("eu-1", &eu), ("us-1", &us)]);
        assert_eq!(two.values().sum::<u32>(), 10);
        assert!(two["eu-1"] > two["us-1"]);
        let equal = ReplicaSplit {
            weights: BTreeMap::new(),
            total: 7,
            ..split.clone()
        };
        let e = shares(&equal, &[("a", &eu), ("b", &eu), ("c", &us)]);
        assert_eq!(e.values().sum::<u32>(), 7);
        assert!(e.values().all(|v| *v >= 2));
        let few = ReplicaSplit { total: 2, ..equal };
        assert_eq!(
            shares(&few, &[("a", &eu), ("b", &eu), ("c", &us)])
                .values()
                .sum::<u32>(),
            2
        );
    }

    #[test]
    fn max_unavailable_counts_and_percentages() {
        assert_eq!(IntOrPercent::Str("25%".into()).of(8).unwrap(), 2);
        assert_eq!(IntOrPercent::Str("25%".into()).of(3).unwrap(), 1);
        assert_eq!(IntOrPercent::Int(3).of(10).unwrap(), 3);
        assert!(IntOrPercent::Str("lots".into()).of(3).is_err());
    }

    fn taint(s: &str) -> Taint {
        Taint::parse(s).unwrap()
    }

    fn toleration(
        key: &str,
        operator: TolerationOperator,
        value: &str,
        effect: &str,
    ) -> Toleration {
        Toleration {
            key: key.into(),
            operator,
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn taints_print_as_they_parse() {
        assert_eq!(
            taint("dedicated=pay:NoSchedule").to_string(),
            "dedicated=pay:NoSchedule"
        );
        assert_eq!(taint("gpu:NoSchedule").to_string(), "gpu:NoSchedule");
        assert!(Taint::parse("gpu:NoExecute").is_err());
        assert!(Taint::parse("gpu").is_err());
    }

    #[test]
    fn tolerations_match_as_in_kubernetes() {
        use TolerationOperator::{Equal, Exists};
        let t = taint("dedicated=pay:NoSchedule");
        let cases = [
            (toleration("dedicated", Equal, "pay", ""), true),
            (toleration("dedicated", Equal, "pay", "NoSchedule"), true),
            (toleration("dedicated", Equal, "pay", "NoExecute"), false),
            (toleration("dedicated", Equal, "web", ""), false),
            (toleration("other", Equal, "pay", ""), false),
            (toleration("dedicated", Exists, "", ""), true),
            (toleration("other", Exists, "", ""), false),
            (toleration("", Exists, "", ""), true),
            (toleration("", Exists, "", "NoExecute"), false),
        ];
        for (tol, want) in cases {
            assert_eq!(tol.tolerates(&t), want, "{tol:?}");
        }
    }

    #[test]
    fn defaults_are_five_minutes_of_failover_and_ten_of_progress() {
        let f: Failover = serde_saphyr::from_str("enabled: true\n").unwrap();
        assert_eq!(f.after_seconds, 300);
        assert_eq!(f.unhealthy_seconds, None);
        let r: Rollout = serde_saphyr::from_str("{}\n").unwrap();
        assert_eq!(r.progress_deadline_seconds, 600);
        assert_eq!(r.max_unavailable, IntOrPercent::Int(1));
    }

    #[test]
    fn a_cluster_is_in_the_first_wave_it_matches_or_the_last() {
        let r: Rollout = serde_saphyr::from_str(
            "waves: [ { clusterSelector: { matchLabels: { ring: canary } } }, { clusterSelector: { matchLabels: { region: eu } } } ]\n",
        )
        .unwrap();
        assert_eq!(
            r.wave_of(&labels(&[("ring", "canary"), ("region", "eu")])),
            0
        );
        assert_eq!(r.wave_of(&labels(&[("region", "eu")])), 1);
        assert_eq!(r.wave_of(&labels(&[("region", "us")])), 2);
    }

    const DEPLOYMENT: &str =
        "manifests: [ { apiVersion: apps/v1, kind: Deployment, metadata: { name: web } } ]\n";

    #[test]
    fn validate_names_the_field_of_every_mistake() {
        let ok = [
            "placement: { maxClusters: 1, spreadBy: region }\n",
            "placement: { tolerations: [ { key: a, operator: Exists } ] }\n",
            "placement: { tolerations: [ { operator: Exists, effect: NoSchedule } ] }\n",
            "placement: { tolerations: [ { key: a, value: b, effect: NoSchedule } ] }\n",
            "placement: { failover: { enabled: true, afterSeconds: 5 } }\n",
            "placement: { failover: { enabled: false, afterSeconds: 0 } }\n",
            "replicas: { target: { kind: Deployment, name: web }, total: 3, weights: { region=eu: 2 } }\n",
            "rollout: { maxUnavailable: 25%, progressDeadlineSeconds: 10, waves: [ { clusterSelector: { matchLabels: { a: b } } } ] }\n",
        ];
        for extra in ok {
            assert_eq!(
                validate(&spec(&format!("{DEPLOYMENT}{extra}"))),
                Ok(()),
                "{extra}"
            );
        }
        let bad = [
            (
                "placement: { maxClusters: 0 }\n",
                "spec.placement.maxClusters",
            ),
            (
                "placement: { spreadBy: \"bad key!\" }\n",
                "spec.placement.spreadBy",
            ),
            (
                "placement: { tolerations: [ { key: a, operator: Exists, value: b } ] }\n",
                "spec.placement.tolerations[0]",
            ),
            (
                "placement: { tolerations: [ { value: b } ] }\n",
                "spec.placement.tolerations[0].key",
            ),
            (
                "placement: { tolerations: [ { key: a, effect: NoExecute } ] }\n",
                "spec.placement.tolerations[0].effect",
            ),
            (
                "placement: { failover: { enabled: true, afterSeconds: 0 } }\n",
                "spec.placement.failover.afterSeconds",
            ),
            (
                "replicas: { target: { kind: ConfigMap, name: web }, total: 3 }\n",
                "spec.replicas.target.kind",
            ),
            (
                "replicas: { target: { kind: Deployment, name: other }, total: 3 }\n",
                "spec.replicas.target",
            ),
            (
                "replicas: { target: { kind: Deployment, name: web }, total: 3, weights: { eu: 2 } }\n",
                "spec.replicas.weights",
            ),
            (
                "rollout: { maxUnavailable: 0 }\n",
                "spec.rollout.maxUnavailable",
            ),
            (
                "rollout: { maxUnavailable: lots }\n",
                "spec.rollout.maxUnavailable",
            ),
            (
                "rollout: { progressDeadlineSeconds: 0 }\n",
                "spec.rollout.progressDeadlineSeconds",
            ),
            (
                "rollout: { waves: [ { clusterSelector: { matchExpressions: [ { key: a, operator: In } ] } } ] }\n",
                "spec.rollout.waves[0].clusterSelector",
            ),
        ];
        for (extra, field) in bad {
            let err = validate(&spec(&format!("{DEPLOYMENT}{extra}"))).unwrap_err();
            assert_eq!(err.0, field, "{extra}: {err:?}");
        }
    }

    fn candidates<'a>(ls: &'a [(String, Labels)]) -> Vec<Candidate<'a>> {
        ls.iter()
            .map(|(n, l)| Candidate {
                name: n,
                labels: l,
                taints: &[],
                cordoned: false,
                available: true,
            })
            .collect()
    }

    fn fleet(n: usize) -> Vec<(String, Labels)> {
        (0..n)
            .map(|i| {
                (
                    format!("c-{i:02}"),
                    labels(&[("region", ["eu", "us"][i % 2])]),
                )
            })
            .collect()
    }

    #[test]
    fn different_workloads_prefer_different_clusters_and_the_same_one_always_the_same() {
        let ls = fleet(20);
        let cands = candidates(&ls);
        let s = spec("manifests: []\nplacement: { clusterSelector: {}, maxClusters: 1 }\n");
        let none = BTreeSet::new();
        let firsts: BTreeSet<String> = (0..10)
            .map(|w| choose(&format!("w{w}"), &s, &cands, &none, &none)[0].clone())
            .collect();
        assert!(
            firsts.len() > 3,
            "rendezvous ranks spread workloads: {firsts:?}"
        );
        assert_eq!(
            choose("w1", &s, &cands, &none, &none),
            choose("w1", &s, &cands, &none, &none)
        );
    }

    #[test]
    fn choose_never_takes_an_excluded_unselected_unavailable_or_unschedulable_cluster() {
        let ls = fleet(6);
        let mut cands = candidates(&ls);
        let t = [taint("dedicated=pay:NoSchedule")];
        cands[2].available = false;
        cands[3].taints = &t;
        cands[4].cordoned = true;
        let s = spec(
            "manifests: []\nplacement: { clusterSelector: { matchLabels: { region: eu } } }\n",
        );
        let excluded = BTreeSet::from(["c-00".to_string()]);
        // Selected (eu): c-00 (excluded), c-02 (unavailable), c-04 (cordoned).
        assert!(choose("w", &s, &cands, &BTreeSet::new(), &excluded).is_empty());
        // Already placed there: it stays, whatever its state (nothing is evicted).
        let placed = BTreeSet::from(["c-02".to_string(), "c-04".to_string()]);
        let kept: BTreeSet<String> = choose("w", &s, &cands, &placed, &excluded)
            .into_iter()
            .collect();
        assert_eq!(kept, placed);
        // The tainted us cluster is not selected, the tainted one tolerated is.
        let all = spec(
            "manifests: []\nplacement: { clusterSelector: {}, tolerations: [ { key: dedicated, value: pay } ] }\n",
        );
        let chosen: BTreeSet<String> = choose("w", &all, &cands, &BTreeSet::new(), &excluded)
            .into_iter()
            .collect();
        assert_eq!(chosen, ["c-01", "c-03", "c-05"].map(String::from).into());
    }

    #[test]
    fn a_replacement_is_available_selected_schedulable_new_and_prefers_the_same_spread_value() {
        let ls: Vec<(String, Labels)> = [
            ("lost", "eu"),
            ("placed", "eu"),
            ("excluded", "eu"),
            ("down", "eu"),
            ("tainted", "eu"),
            ("us-1", "us"),
            ("eu-9", "eu"),
            ("other", "ap"),
        ]
        .iter()
        .map(|(n, r)| {
            let tier = if *n == "other" { "dev" } else { "prod" };
            (n.to_string(), labels(&[("region", r), ("tier", tier)]))
        })
        .collect();
        let mut cands = candidates(&ls);
        let t = [taint("dedicated=pay:NoSchedule")];
        cands[3].available = false;
        cands[4].taints = &t;
        let s = spec(
            "manifests: []\nplacement: { clusterSelector: { matchLabels: { tier: prod } }, spreadBy: region }\n",
        );
        let placed = BTreeSet::from(["lost".to_string(), "placed".to_string()]);
        let excluded = BTreeSet::from(["excluded".to_string()]);
        let lost = cands[0].clone();
        assert_eq!(
            replacement("w", &s, &lost, &cands, &placed, &excluded),
            Some("eu-9")
        );
        // Without eu-9, another region will do; never the dev cluster.
        let without: Vec<Candidate<'_>> =
            cands.iter().filter(|c| c.name != "eu-9").cloned().collect();
        assert_eq!(
            replacement("w", &s, &lost, &without, &placed, &excluded),
            Some("us-1")
        );
        let only_bad: Vec<Candidate<'_>> = without
            .iter()
            .filter(|c| c.name != "us-1")
            .cloned()
            .collect();
        assert_eq!(
            replacement("w", &s, &lost, &only_bad, &placed, &excluded),
            None
        );
    }

    fn split(yaml: &str) -> ReplicaSplit {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn share_of(s: &ReplicaSplit, ls: &[(&str, &[(&str, &str)])]) -> Vec<u32> {
        let owned: Vec<(String, Labels)> =
            ls.iter().map(|(n, l)| (n.to_string(), labels(l))).collect();
        let refs: Vec<(&str, &Labels)> = owned.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let out = shares(s, &refs);
        owned.iter().map(|(n, _)| out[n]).collect()
    }

    #[test]
    fn shares_follow_weights_minimums_and_largest_remainders() {
        let t = "target: { kind: Deployment, name: web }, ";
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let (a, b, c): (Pairs<'_>, Pairs<'_>, Pairs<'_>) =
            (&[("x", "a")], &[("x", "b")], &[("x", "c")]);
        // One each by default when there are enough, the rest by weight.
        let s = split(&format!("{{ {t}total: 3, weights: {{ x=a: 1 }} }}"));
        assert_eq!(share_of(&s, &[("a", a), ("b", b), ("c", c)]), vec![1, 1, 1]);
        // A minimum is capped so the shares still add up.
        let s = split(&format!(
            "{{ {t}total: 10, minPerCluster: 5, weights: {{ x=a: 1 }} }}"
        ));
        assert_eq!(share_of(&s, &[("a", a), ("b", b), ("c", c)]), vec![4, 3, 3]);
        // Weighted, no minimum: 8 in 3:1.
        let s = split(&format!(
            "{{ {t}total: 8, minPerCluster: 0, weights: {{ x=a: 3, x=b: 1 }} }}"
        ));
        assert_eq!(share_of(&s, &[("a", a), ("b", b)]), vec![6, 2]);
        // The leftover goes to the largest remainder, not the largest share: 10 in 5:2 is
        // 7.14 and 2.86, so 7 and 3.
        let s = split(&format!(
            "{{ {t}total: 10, minPerCluster: 0, weights: {{ x=a: 5, x=b: 2 }} }}"
        ));
        assert_eq!(share_of(&s, &[("a", a), ("b", b)]), vec![7, 3]);
        // 5 in 1:3 is 1.25 and 3.75: 1 and 4.
        let s = split(&format!(
            "{{ {t}total: 5, minPerCluster: 0, weights: {{ x=a: 1, x=b: 3 }} }}"
        ));
        assert_eq!(share_of(&s, &[("a", a), ("b", b)]), vec![1, 4]);
        // The largest weights and totals do not overflow.
        let s = split(&format!(
            "{{ {t}total: 4000000000, minPerCluster: 0, weights: {{ x=a: 4000000000, x=b: 1 }} }}"
        ));
        assert_eq!(share_of(&s, &[("a", a), ("b", b)]), vec![3_999_999_999, 1]);
        // Fewer replicas than clusters: no minimum, some get none.
        let s = split(&format!("{{ {t}total: 2 }}"));
        assert_eq!(
            share_of(&s, &[("a", a), ("b", b), ("c", c)])
                .iter()
                .sum::<u32>(),
            2
        );
    }
}
