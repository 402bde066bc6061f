//! Runs every example of this package, so that none of them rots: the Rust
//! examples' own code is compiled into this test (each `main.rs` is a module
//! here) and run on real inputs; the JavaScript example runs under Node.js
//! where it is installed. The three-office example needs the `tongban`
//! binary, so its test lives with the binary's integration tests
//! (`tests/integration/examples.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tongban_case::{IntakeForm, Payload};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{Role, Stage};
use tongban_node::local::LocalNode;
use tongban_node::provision::{OfficeSpec, provision};

#[path = "../embed-sync/main.rs"]
mod embed_sync;

#[path = "../verify-archive/main.rs"]
mod verify_archive;

#[test]
fn embed_sync_carries_a_signed_case_and_its_receipt_comes_back() {
    let outcome = embed_sync::run().unwrap();
    // The domicile township signed `received` on arrival, and the receipt
    // travelled back to the acceptance office in the same session.
    assert_eq!(
        outcome.domicile_stage,
        Some(Stage::Received),
        "{outcome:#?}"
    );
    assert_eq!(
        outcome.acceptance_stage,
        Some(Stage::Received),
        "{outcome:#?}"
    );
    assert!(outcome.domicile_verified, "{outcome:#?}");
    // draft, accepted, pushed, received.
    assert_eq!(outcome.transitions, 4, "{outcome:#?}");
    assert!(outcome.materials_listed > 0);
    assert_eq!(
        outcome.materials_at_domicile, outcome.materials_listed,
        "{outcome:#?}"
    );
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.starts_with("130102001") && e.contains("ReceiptSigned")),
        "{:#?}",
        outcome.events
    );
}

/// A township node with one case accepted (every scan of its notice attached)
/// under a new directory authority in `root`; answers the node, the case and
/// the authority's public key file.
fn node_with_case(root: &Path) -> (LocalNode, CaseId, PathBuf) {
    let now = Timestamp::now();
    let day = 24 * Timestamp::HOUR_MS;
    let authority = provision(
        root,
        &[OfficeSpec::new("440106001", Role::Township, "440106001")],
        Timestamp(now.0 - day),
        Timestamp(now.0 + 365 * day),
    )
    .unwrap();
    let key_file = root.join("authority.pub");
    std::fs::write(&key_file, format!("{}\n", authority.public())).unwrap();
    let node = LocalNode::open(&root.join("440106001")).unwrap();
    let first17 = "13010219680512031";
    let resident = format!("{first17}{}", resident_id_check_char(first17).unwrap());
    let form = IntakeForm {
        name: "张建国".into(),
        resident_id: resident.clone(),
        hukou_township: "130102001".into(),
        certificate: format!("{resident}62"),
        dibao: true,
        low_income: false,
        long_term_care: false,
        other_allowances: Vec::new(),
        subsidy_kinds: vec!["living".into()],
        phone: "13800000000".into(),
        address: "广州市天河区五山路".into(),
        agent: None,
    };
    let clerk = Operator::parse("窗口01").unwrap();
    let made = node.new_case(&form, &clerk, now).unwrap();
    for (code, _) in &made.notice {
        let scan = format!("scan of {code}");
        node.attach_reader(
            &made.case_id,
            scan.as_bytes(),
            &format!("{code}.jpg"),
            code,
            "image/jpeg",
            &clerk,
            now,
        )
        .unwrap();
    }
    node.act(
        &made.case_id,
        Stage::Accepted,
        &Payload::default(),
        &clerk,
        now,
    )
    .unwrap();
    (node, made.case_id, key_file)
}

#[test]
fn verify_archive_passes_a_good_archive_and_names_what_is_wrong_with_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, case, key_file) = node_with_case(tmp.path());
    let archive = tongban_node::archive::export(&node, &case, true, Timestamp::now()).unwrap();
    let bytes = archive.encode();
    let good = tmp.path().join("case.tbarc");
    std::fs::write(&good, &bytes).unwrap();

    let report = verify_archive::run(&good, &key_file).unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.manifest.as_ref().unwrap().case, case);
    assert_eq!(report.stages.len(), 6);

    // One byte changed in the middle of the file: the integrity digest fails
    // and every later stage is skipped.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let bad = tmp.path().join("damaged.tbarc");
    std::fs::write(&bad, &damaged).unwrap();
    let report = verify_archive::run(&bad, &key_file).unwrap();
    assert!(!report.ok);
    assert_eq!(report.failures[0].stage.code(), "integrity", "{report:#?}");

    // The right archive against another authority's key: the directory fails.
    let other = tongban_ledger::keys::OfficeKey::generate()
        .unwrap()
        .public();
    let other_file = tmp.path().join("other.pub");
    std::fs::write(&other_file, format!("{other}\n")).unwrap();
    let report = verify_archive::run(&good, &other_file).unwrap();
    assert!(!report.ok);
    assert!(report.has("wrong_authority"), "{report:#?}");
}

#[test]
fn javascript_reads_the_stage_and_facts_of_a_case_document() {
    if std::env::var_os("TONGBAN_JS_INTEROP").is_none() {
        eprintln!(
            "skipped: the JavaScript example needs Node.js and npm; set TONGBAN_JS_INTEROP=1 to run it (.ci/run does where both are installed)"
        );
        return;
    }
    let js_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js-read-case");
    let install = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund"])
        .current_dir(&js_dir)
        .status()
        .unwrap();
    assert!(
        install.success(),
        "npm install failed in {}",
        js_dir.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let (node, case, _) = node_with_case(tmp.path());
    let file = tmp.path().join("case.automerge");
    std::fs::write(&file, node.case(&case).unwrap().save()).unwrap();
    let notice = node.missing_materials(&node.case(&case).unwrap()).unwrap();
    assert!(notice.is_empty(), "every scan attached: {notice:?}");

    let out = Command::new("node")
        .arg("read-case.mjs")
        .arg(&file)
        .arg("--json")
        .current_dir(&js_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["case_id"], case.as_str());
    assert_eq!(v["stage"], "accepted");
    assert_eq!(v["stage_zh"], "已受理");
    assert_eq!(v["forked"], false);
    assert_eq!(v["hukou_township"], "130102001");
    assert_eq!(v["applicant"], "张**");
    assert_eq!(v["resident_id"], "130102********0312");
    assert_eq!(v["subsidy_kinds"], serde_json::json!(["living"]));
    let stages: Vec<&str> = v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["draft", "accepted"]);
    let doc = node.case(&case).unwrap().read().unwrap();
    assert_eq!(
        v["materials"].as_array().unwrap().len(),
        doc.materials.len()
    );

    // The text form names the stage in Chinese.
    let out = Command::new("node")
        .arg("read-case.mjs")
        .arg(&file)
        .current_dir(&js_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("阶段 stage: 已受理 (accepted)"), "{text}");
}
