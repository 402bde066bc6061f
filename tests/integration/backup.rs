//! `tongban backup`, `tongban backup verify`, `tongban restore`.

use std::path::Path;

use automerge::transaction::Transactable;
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::Stage;
use tongban_store::{CaseMeta, ResidentKey, Store, StoreOptions};

use crate::support::{stderr, stdout, tongban};

/// A store with a few cases and a material, written through the store's API.
fn populated_store(dir: &Path) {
    let options = StoreOptions {
        create_if_missing: true,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, &options).unwrap();
    for n in 0..5u8 {
        let case = CaseId::new(
            "440106001",
            chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            [n, 1, 2, 3],
        )
        .unwrap();
        let mut doc = automerge::AutoCommit::new();
        doc.put(automerge::ROOT, "case_id", case.as_str()).unwrap();
        doc.put(automerge::ROOT, "n", i64::from(n)).unwrap();
        doc.commit();
        let meta = CaseMeta {
            stage: Stage::Accepted,
            due: None,
            resident_key: ResidentKey([n; 32]),
            offices: vec![OfficeId::parse("440106001").unwrap()],
            subsidy_kinds: vec!["living".into()],
        };
        store.put_document(&case, doc.document(), &meta).unwrap();
        let material = store.put_material(&vec![n; 300_000][..]).unwrap();
        store.attach_material(&case, &material.hash).unwrap();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn backup_verify_restore_and_a_corrupted_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    populated_store(&data);
    let file = tmp.path().join("node.tbbackup");

    let out = tongban(&["backup", "--data-dir", path(&data), "--out", path(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = tongban(&["backup", "verify", path(&file), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["cases"], 5);
    assert_eq!(v["summary"]["materials"], 5);

    let restored = tmp.path().join("restored");
    // Restore asks for the office key, or for a new one.
    let out = tongban(&["restore", path(&file), "--data-dir", path(&restored)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--office-key"), "{}", stderr(&out));
    assert!(!restored.exists());
    // A bare store (no node behind it) restores, and says that the node
    // configuration is missing instead of claiming a working node.
    let out = tongban(&[
        "restore",
        path(&file),
        "--new-key",
        "--data-dir",
        path(&restored),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no node configuration"),
        "{}",
        stderr(&out)
    );
    let store = Store::open(&restored, &StoreOptions::default()).unwrap();
    assert_eq!(store.stats().unwrap().cases, 5);
    drop(store);
    // `node init` there tells what it found: a store, and no office key.
    let out = tongban(&[
        "node",
        "init",
        "--office",
        "440106001",
        "--data-dir",
        path(&restored),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no office key"), "{}", stderr(&out));
    assert!(!restored.join("office.key").exists());

    // Restore refuses a directory that holds anything.
    let out = tongban(&[
        "restore",
        path(&file),
        "--new-key",
        "--data-dir",
        path(&restored),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));

    // A flipped byte anywhere in the middle is refused with exit status 1.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let corrupt = tmp.path().join("corrupt.tbbackup");
    std::fs::write(&corrupt, &bytes).unwrap();
    let out = tongban(&["backup", "verify", path(&corrupt)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(!stderr(&out).is_empty());
    let out = tongban(&[
        "restore",
        path(&corrupt),
        "--new-key",
        "--data-dir",
        path(&tmp.path().join("r2")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!tmp.path().join("r2").join("tongban.redb").exists());
}

#[test]
fn a_missing_data_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let out = tongban(&[
        "backup",
        "--data-dir",
        path(&missing),
        "--out",
        path(&tmp.path().join("x")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    let out = tongban(&["backup", "--out", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--data-dir"), "{}", stderr(&out));
}
