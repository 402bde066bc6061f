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
    // The review was compared with the county's signed feeds.
    assert!(
        text.contains("数据比对 相符 confirmed：残疾人证有效")
            && text.contains("on the dibao roster"),
        "{text}"
    );
    assert!(text.contains("全部验证通过"), "{text}");
    // Hebei's supervisor checked the chain itself, every step on time.
    assert!(text.contains("省级监管 supervision"), "{text}");
    let supervised = &text[text.find("省级监管 supervision").unwrap()..];
    assert!(
        supervised.contains("初审 initial_reviewed") && supervised.contains("时限至"),
        "{text}"
    );
    assert!(!supervised.contains("✘ 超时"), "{text}");
    assert!(keep.join("authority.pub").is_file());
    // Each node's data directory is kept, and verifies with the CLI afterwards.
    for office in [
        "hub-cn",
        "hub-44",
        "hub-13",
        "hub-440106",
        "hub-130102",
        "440106001",
        "130102001",
        "130102-dpf",
        "130102-ca",
    ] {
        let data = keep.join(office);
        assert!(data.join("tongban.redb").is_file(), "{office}");
        let out = tongban(&[
            "verify",
            "--all",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{office}: {}", stdout(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["cases"], 1, "{office}");
        // The county's feeds stayed in the county (and its province hub).
        let out = tongban(&[
            "feed",
            "show",
            "--json",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        let held = String::from_utf8_lossy(&out.stdout).to_string();
        let in_county = [
            "hub-130102",
            "hub-13",
            "130102001",
            "130102-dpf",
            "130102-ca",
        ];
        assert_eq!(
            held.contains("certificates"),
            in_county.contains(&office),
            "{office}: {held}"
        );
    }
    // The applicant's ID never appears in clear.
    assert!(!text.contains("19680512"), "{text}");
}
