//! Property tests: stored bytes and agent-supplied text never panic the hub.

use proptest::prelude::*;

use crate::control::workloads::{MAX_STATUS_TEXT, cap_feedback, cap_text};
use crate::store::Tree;
use crate::store::records::{ClusterRecord, StatusRecord, decode};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_records_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<ClusterRecord>(Tree::Clusters, b"k", &bytes);
        let _ = decode::<StatusRecord>(Tree::Status, b"k", &bytes);
    }

    #[test]
    fn capped_text_is_bounded_and_valid(s in "\\PC{0,3000}") {
        let c = cap_text(s.clone());
        prop_assert!(c.len() <= MAX_STATUS_TEXT + '…'.len_utf8());
        if s.len() <= MAX_STATUS_TEXT {
            prop_assert_eq!(c, s);
        }
    }

    #[test]
    fn feedback_is_bounded(pairs in prop::collection::vec(("\\PC{0,50}", "\\PC{0,50}"), 0..200)) {
        prop_assert!(cap_feedback(pairs).len() <= crate::control::workloads::MAX_STATUS_FEEDBACK);
    }
}
