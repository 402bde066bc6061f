//! The case document is plain Automerge: the JavaScript package reads every field
//! under the names of docs/case-schema.md, and a change it writes — carrying no
//! office signature — is refused by the next node, whose copy stays as it was,
//! and reported by the verifier. Needs Node.js and npm: `.ci/run` sets
//! `TONGBAN_JS_INTEROP=1` when both are on the PATH; elsewhere it is skipped.

use std::process::Command;

use tongban_domain::stage::Stage;
use tongban_ledger::verify::ViolationKind;

use crate::paths::{ACCEPTANCE, Net};

fn node_script(js_dir: &std::path::Path, args: &[&std::path::Path]) -> std::process::Output {
    let mut command = Command::new("node");
    command.current_dir(js_dir);
    for arg in args {
        command.arg(arg);
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_reads_a_case_and_its_unsigned_edit_is_refused() {
    if std::env::var_os("TONGBAN_JS_INTEROP").is_none() {
        eprintln!("skipped: set TONGBAN_JS_INTEROP=1 to run (needs node and npm)");
        return;
    }
    let js_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js-interop");
    let install = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund"])
        .current_dir(&js_dir)
        .status()
        .unwrap();
    assert!(install.success(), "npm install failed");

    let mut net = Net::start().await;
    let case = net.push().await;
    net.finish_approved(&case).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("case.automerge");
    let edited = dir.path().join("edited.automerge");
    {
        let (case, saved) = (case.clone(), saved.clone());
        net.nodes[ACCEPTANCE]
            .handle()
            .exec(move |node, _| {
                let mut doc = node.case(&case).unwrap();
                std::fs::write(&saved, doc.save()).unwrap();
            })
            .await
            .unwrap();
    }

    // Reading: every field under its documented name and type.
    let out = node_script(&js_dir, &[std::path::Path::new("check.mjs"), &saved]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["case_id"], case.as_str());
    assert_eq!(v["hukou"], crate::paths::DOMICILE);
    assert_eq!(v["n_transitions"], 10);
    assert!(v["n_seals"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["signed_is_bytes"], true);
    assert_eq!(v["seq_is_uint"], true);

    // Writing: an edit made in JavaScript reaches the acceptance office's store
    // (as if merged from a file) and is refused by the hub next to it.
    let out = node_script(
        &js_dir,
        &[std::path::Path::new("edit.mjs"), &saved, &edited],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = net.history_of("hub-cn", &case).await;
    let findings = {
        let (case, edited) = (case.clone(), edited.clone());
        net.nodes[ACCEPTANCE]
            .handle()
            .exec(move |node, now| {
                let mut doc = node.case(&case).unwrap();
                let mut theirs =
                    automerge::AutoCommit::load(&std::fs::read(&edited).unwrap()).unwrap();
                doc.automerge_mut().merge(&mut theirs).unwrap();
                node.save(&case, &mut doc).unwrap();
                let report = doc
                    .verify(node.directory().unwrap(), node.calendar(), now)
                    .unwrap();
                report
                    .violations
                    .into_iter()
                    .filter(|v| v.kind == ViolationKind::UnsignedChange)
                    .map(|v| (v.author, v.paths))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap()
    };
    assert_eq!(findings, vec![(None, vec!["applicant".to_string()])]);
    crate::authorship::refused_at(&net, "hub-cn", &case, &["unsigned_change", "applicant"]).await;
    assert_eq!(net.history_of("hub-cn", &case).await, before);
    assert_eq!(net.stage("hub-cn", &case).await, Some(Stage::Active));
}
