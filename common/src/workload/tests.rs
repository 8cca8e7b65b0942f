use serde_json::json;

use super::*;

const WEB: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: web, labels: { team: shop } }
spec:
  manifests:
    - apiVersion: apps/v1
      kind: Deployment
      metadata: { name: web, namespace: shop }
      spec: { replicas: 3, template: { spec: { containers: [ { name: web, image: "nginx:1" } ] } } }
    - apiVersion: v1
      kind: ConfigMap
      metadata: { name: web-config, namespace: shop }
      data: { mode: full }
  placement:
    clusters: [ edge-1 ]
    clusterSelector: { matchLabels: { region: eu } }
  overrides:
    - clusterSelector: { matchLabels: { tier: edge } }
      patches:
        - target: { kind: Deployment, name: web }
          merge: { spec: { replicas: 1 } }
        - target: { kind: ConfigMap, name: web-config }
          json: [ { op: replace, path: /data/mode, value: lite } ]
  apply:
    ignoreFields: [ { target: { kind: Deployment, name: web }, paths: [ /spec/replicas ] } ]
  statusFeedback: [ { target: { kind: Deployment, name: web }, jsonPath: .status.readyReplicas } ]
"#;

fn labels(pairs: &[(&str, &str)]) -> crate::labels::Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_full_workload_parses() {
    let ws = parse_documents("web.yaml", WEB).unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].metadata.name, "web");
    assert_eq!(ws[0].spec.manifests.len(), 2);
}

#[test]
fn placement_is_the_union_of_names_and_selector() {
    let w = &parse_documents("web.yaml", WEB).unwrap()[0];
    assert!(w.spec.placement.selects("edge-1", &labels(&[])));
    assert!(w.spec.placement.selects("x", &labels(&[("region", "eu")])));
    assert!(!w.spec.placement.selects("x", &labels(&[("region", "us")])));
}

#[test]
fn overrides_apply_only_to_matching_clusters() {
    let w = &parse_documents("web.yaml", WEB).unwrap()[0];
    let edge = render(w, "e", &labels(&[("tier", "edge")])).unwrap();
    assert_eq!(edge[0]["spec"]["replicas"], 1);
    assert_eq!(edge[1]["data"]["mode"], "lite");
    let core = render(w, "c", &labels(&[("tier", "core")])).unwrap();
    assert_eq!(core[0]["spec"]["replicas"], 3);
    assert_eq!(core[1]["data"]["mode"], "full");
}

fn error_of(yaml: &str) -> WorkloadError {
    parse_documents("bad.yaml", yaml).unwrap_err()
}

#[test]
fn mistakes_name_file_document_and_field() {
    let unknown = WEB.replace(
        "clusterSelector: { matchLabels: { region: eu } }",
        "clusterSelectr: {}",
    );
    let e = error_of(&format!("{WEB}\n---\n{unknown}"));
    assert_eq!(e.document, 2, "{e}");
    assert!(e.field.contains("spec.placement"), "{e}");
    assert!(e.message.contains("clusterSelectr"), "{e}");
    assert!(e.to_string().starts_with("bad.yaml, document 2"), "{e}");

    let no_name = WEB.replace(
        "metadata: { name: web-config, namespace: shop }",
        "metadata: { namespace: shop }",
    );
    let e = error_of(&no_name);
    assert_eq!(e.field, "spec.manifests[1].metadata.name", "{e}");

    let no_kind = WEB.replace("      kind: ConfigMap\n", "");
    assert_eq!(error_of(&no_kind).field, "spec.manifests[1].kind");

    let bad_target = WEB.replace(
        "target: { kind: ConfigMap, name: web-config }",
        "target: { kind: ConfigMap, name: nope }",
    );
    let e = error_of(&bad_target);
    assert_eq!(e.field, "spec.overrides[0].patches[1].target", "{e}");
    assert!(e.message.contains("matches no manifest"), "{e}");

    let bad_selector = WEB.replace(
        "matchLabels: { region: eu }",
        "matchLabels: { \"-region\": eu }",
    );
    assert_eq!(
        error_of(&bad_selector).field,
        "spec.placement.clusterSelector"
    );

    let bad_op = WEB.replace(
        "clusterSelector: { matchLabels: { region: eu } }",
        "clusterSelector: { matchExpressions: [ { key: a, operator: Near } ] }",
    );
    assert!(
        error_of(&bad_op).field.contains("matchExpressions"),
        "{}",
        error_of(&bad_op)
    );

    let plain = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n";
    assert!(error_of(plain).message.contains("spec.manifests"));
    assert!(error_of("a: [").message.contains("not valid YAML"));
}

#[test]
fn bundles_round_trip_and_identical_copies_hash_alike() {
    let w = &parse_documents("web.yaml", WEB).unwrap()[0];
    let a = bundle::Bundle::new(w, render(w, "a", &labels(&[])).unwrap());
    let b = bundle::Bundle::new(w, render(w, "b", &labels(&[])).unwrap());
    let edge = bundle::Bundle::new(w, render(w, "e", &labels(&[("tier", "edge")])).unwrap());
    let (ea, eb, ee) = (a.encode(), b.encode(), edge.encode());
    assert_eq!(ea.hash, eb.hash);
    assert_ne!(ea.hash, ee.hash);
    assert_eq!(bundle::Bundle::decode(&ea.gzip).unwrap(), a);
    assert!(bundle::Bundle::decode(b"junk").is_err());
    let _ = json!(null);
}
