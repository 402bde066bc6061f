//! `tongban demo`, the README's main command.

use crate::support::{stderr, stdout, tongban};

#[test]
fn the_demo_carries_a_case_through_every_stage_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = tongban(&["demo", "--keep", keep.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for stage in [
        "draft",
        "accepted",
        "pushed",
        "received",
        "initial_reviewed",
        "dpf_reviewed",
        "decided",
        "result_received",
        "notified",
        "active",
    ] {
        assert!(
            text.contains(stage),
            "{stage} missing from the timeline:\n{text}"
        );
    }
    assert!(!text.contains("missed"), "{text}");
    assert!(text.contains("全部验证通过"), "{text}");
    assert!(keep.join("authority.pub").is_file());
    assert!(keep.join("440106001").join("case.automerge").is_file());
    // The applicant's ID never appears in clear.
    assert!(!text.contains("19680512"), "{text}");
}
