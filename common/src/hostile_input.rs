//! Property tests: nothing a user or a peer can type or send makes the parsers panic, and
//! what is refused is refused with a message.

use proptest::prelude::*;
use serde_json::Value;

use crate::workload::{self, LabelSelector, bundle::Bundle};

/// Arbitrary JSON trees, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("apiVersion"),
            Just("kind"),
            Just("metadata"),
            Just("spec"),
            Just("Workload")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_string()),
                    Just("kind".to_string()),
                    Just("metadata".to_string()),
                    Just("spec".to_string()),
                    Just("manifests".to_string()),
                    Just("placement".to_string()),
                    Just("overrides".to_string()),
                    Just("name".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const VALID: &str = r#"
apiVersion: tether.dev/v1alpha1
kind: Workload
metadata: { name: web }
spec:
  manifests:
    - { apiVersion: v1, kind: ConfigMap, metadata: { name: c }, data: { a: "1" } }
  placement: { clusterSelector: {} }
  overrides:
    - clusterSelector: { matchLabels: { tier: edge } }
      patches: [ { target: { kind: ConfigMap, name: c }, merge: { data: { a: "2" } } } ]
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn workload_files_never_panic(text in "\\PC{0,400}") {
        let _ = workload::parse_documents("f.yaml", &text);
    }

    #[test]
    fn workload_shaped_documents_never_panic(doc in json()) {
        let mut doc = doc;
        if let Some(m) = doc.as_object_mut() {
            m.insert("apiVersion".into(), Value::from(workload::API_VERSION));
            m.insert("kind".into(), Value::from(workload::KIND));
        }
        let text = serde_json::to_string(&doc).unwrap_or_default();
        match workload::parse_documents("f.yaml", &text) {
            Ok(ws) => for w in ws {
                // Whatever parses and validates also renders or says why.
                let _ = workload::render(&w, "c", &Default::default());
            },
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn mutated_valid_workloads_never_panic(cut in 0usize..400, insert in "\\PC{0,20}") {
        let mut text = VALID.to_string();
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
        }
        let _ = workload::parse_documents("f.yaml", &text);
    }

    #[test]
    fn override_patches_never_panic(patch in json(), ops in prop::collection::vec(json(), 0..4)) {
        let mut w = workload::parse_documents("f.yaml", VALID).unwrap().remove(0);
        w.spec.overrides[0].patches[0].merge = Some(patch);
        let labels = [("tier".to_string(), "edge".to_string())].into_iter().collect();
        let _ = workload::render(&w, "c", &labels);
        w.spec.overrides[0].patches[0].merge = None;
        w.spec.overrides[0].patches[0].json = Some(ops);
        if w.validate().is_ok() {
            let _ = workload::render(&w, "c", &labels);
        }
    }

    #[test]
    fn selectors_never_panic(s in "\\PC{0,80}") {
        if let Ok(sel) = LabelSelector::parse(&s) {
            prop_assert!(sel.validate().is_ok());
            let _ = sel.matches(&Default::default());
        }
    }

    #[test]
    fn tokens_pins_and_labels_never_panic(s in "\\PC{0,80}") {
        let _ = crate::token::JoinToken::parse(&s);
        let _ = crate::pki::parse_pin(&s);
        let _ = crate::labels::parse_labels(&s);
        let _ = crate::labels::parse_label_changes(&[s.as_str()]);
        let _ = crate::tls::split_host_port(&s);
        let _ = crate::identity::Identity::from_uri(&s);
    }

    #[test]
    fn bundles_from_a_hostile_hub_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Bundle::decode(&bytes);
    }

    #[test]
    fn certificates_and_csrs_from_strangers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::pki::inspect(&bytes);
        let _ = crate::pki::spki_pin(&bytes);
        if let Ok((ca, _)) = crate::pki::CertificateAuthority::generate(std::time::Duration::from_secs(60)) {
            let _ = ca.sign_csr(&bytes, &crate::identity::Identity::Cluster("x".into()), std::time::Duration::from_secs(60));
        }
    }
}
