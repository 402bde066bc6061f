//! The case document is plain Automerge: the JavaScript package reads every field
//! under the names of docs/case-schema.md. Opt-in (it needs Node.js and npm):
//! `TONGBAN_JS_INTEROP=1 cargo test -p tongban --test integration js_interop`.

use std::process::Command;

use crate::support::{stderr, tongban};

#[test]
fn the_javascript_automerge_package_reads_a_case() {
    if std::env::var_os("TONGBAN_JS_INTEROP").is_none() {
        eprintln!("skipped: set TONGBAN_JS_INTEROP=1 to run (needs node and npm)");
        return;
    }
    let js_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js-interop");
    let install = Command::new("npm")
        .arg("install")
        .arg("--silent")
        .current_dir(&js_dir)
        .status()
        .unwrap();
    assert!(install.success(), "npm install failed");
    let dir = tempfile::tempdir().unwrap();
    let out = tongban(&["demo", "--keep", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let case = dir.path().join("440106001").join("case.automerge");
    let out = Command::new("node")
        .arg("check.mjs")
        .arg(&case)
        .current_dir(&js_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["hukou"], "130102001");
    assert_eq!(v["n_transitions"], 10);
    assert_eq!(v["signed_is_bytes"], true);
    assert_eq!(v["first"], "2026-09");
}
