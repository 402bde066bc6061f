//! Backup during heavy writes, verification, corruption, restore.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use automerge::ReadDoc;
use tongban_domain::stage::Stage;
use tongban_store::{BackupError, Store, restore, verify_backup};

use crate::kit::{self, Rng, case_id, meta, office};
use crate::{create, open};

/// A store with some of everything.
fn populated(dir: &Path) -> (Store, tongban_store::MaterialHash) {
    let store = Store::open(dir, &create()).unwrap();
    let mut rng = Rng::new(40);
    for n in 0..30u64 {
        let case = case_id(n);
        let mut doc = kit::case_doc(&mut rng, &case);
        store
            .put_changes(&case, &doc.save(), &meta(n, Stage::Received))
            .unwrap();
        for _ in 0..(n % 4) {
            let bytes = kit::update_doc(&mut doc, &mut rng);
            store
                .put_changes(&case, &bytes, &meta(n, Stage::InitialReviewed))
                .unwrap();
        }
        if n.is_multiple_of(5) {
            let hash = store
                .put_material(rng.bytes(30_000 + 50_000 * n as usize).as_slice())
                .unwrap()
                .hash;
            store.attach_material(&case, &hash).unwrap();
        }
    }
    let gone = store.put_material(rng.bytes(1000).as_slice()).unwrap().hash;
    store.remove_material(&gone, "retention rule R-1").unwrap();
    store.set_peer_cursor(&office("hub-13"), 17).unwrap();
    store
        .put_sync_state(&office("hub-13"), &case_id(3), b"sync-state")
        .unwrap();
    store.set_meta("node.identity", b"440106001").unwrap();
    (store, gone)
}

#[test]
fn backup_verify_restore_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let (source, gone) = populated(&root.path().join("source"));
    let file = root.path().join("backup.tbk");
    let written = source.backup_to(&file).unwrap();
    let verified = verify_backup(&file).unwrap();
    assert_eq!(verified.cases, 30);
    assert_eq!(verified.materials, 6);
    assert_eq!(verified.references, 6);
    assert_eq!((verified.peer_cursors, verified.sync_states), (1, 1));
    assert_eq!(verified.records, written.records);
    assert_eq!(verified.file_bytes, std::fs::metadata(&file).unwrap().len());
    assert_eq!(verified.latest_seq, source.latest_seq().unwrap());

    let target = root.path().join("restored");
    let restored_summary = restore(&file, &target).unwrap();
    assert_eq!(restored_summary.cases, 30);
    let restored = open(&target);
    assert_ne!(restored.incarnation(), source.incarnation());
    assert_eq!(restored.latest_seq().unwrap(), source.latest_seq().unwrap());
    assert_eq!(
        restored.changes_since(0, 1000).unwrap(),
        source.changes_since(0, 1000).unwrap()
    );
    for n in 0..30 {
        let case = case_id(n);
        assert_eq!(
            restored.case_info(&case).unwrap(),
            source.case_info(&case).unwrap()
        );
        assert_eq!(
            restored.load_case(&case).unwrap().unwrap().get_heads(),
            source.load_case(&case).unwrap().unwrap().get_heads()
        );
        assert_eq!(
            restored.case_materials(&case).unwrap(),
            source.case_materials(&case).unwrap()
        );
    }
    assert_eq!(
        restored
            .cases_in_stage(Stage::InitialReviewed, None, 100)
            .unwrap(),
        source
            .cases_in_stage(Stage::InitialReviewed, None, 100)
            .unwrap()
    );
    assert_eq!(
        restored
            .cases_by_resident(&meta(4, Stage::Draft).resident_key)
            .unwrap(),
        source
            .cases_by_resident(&meta(4, Stage::Draft).resident_key)
            .unwrap()
    );
    for n in (0..30).step_by(5) {
        let hash = source.case_materials(&case_id(n)).unwrap()[0];
        let mut a = Vec::new();
        let mut b = Vec::new();
        source
            .open_material(&hash)
            .unwrap()
            .read_to_end(&mut a)
            .unwrap();
        restored
            .open_material(&hash)
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        assert!(a == b);
    }
    assert_eq!(restored.peer_cursor(&office("hub-13")).unwrap(), Some(17));
    assert_eq!(
        restored.sync_state(&office("hub-13"), &case_id(3)).unwrap(),
        Some(b"sync-state".to_vec())
    );
    assert_eq!(
        restored.meta("node.identity").unwrap(),
        Some(b"440106001".to_vec())
    );
    assert_eq!(restored.stats().unwrap().materials, 6);
    assert_eq!(
        restored.material_removal(&gone).unwrap(),
        source.material_removal(&gone).unwrap()
    );
    assert!(!restored.has_material(&gone).unwrap());
    // The restored store keeps working.
    let mut rng = Rng::new(41);
    let w = restored
        .put_changes(
            &case_id(99),
            &kit::case_doc(&mut rng, &case_id(99)).save(),
            &meta(99, Stage::Draft),
        )
        .unwrap();
    assert_eq!(w.seq, source.latest_seq().unwrap() + 1);
    assert_eq!(restored.compact_pending(100).unwrap().remaining, 0);

    // Restore refuses a directory that holds anything.
    let err = restore(&file, &target).unwrap_err();
    assert!(
        matches!(err, BackupError::DestinationNotEmpty { .. }),
        "{err}"
    );
    drop(restored);
    let err = restore(&file, &target).unwrap_err();
    assert!(
        matches!(err, BackupError::DestinationNotEmpty { .. }),
        "{err}"
    );
}

#[test]
fn a_backup_taken_during_heavy_writes_restores_to_a_store_that_verifies() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(populated(&root.path().join("source")).0);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, writes) = (store.clone(), stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(42);
            let mut docs = std::collections::HashMap::new();
            let mut n = 1000u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let pick = rng.range(1000, n + 1);
                let case = case_id(pick);
                let bytes = match docs.get_mut(&pick) {
                    Some(doc) => kit::update_doc(doc, &mut rng),
                    None => {
                        let mut doc = kit::case_doc(&mut rng, &case);
                        let bytes = doc.save();
                        docs.insert(pick, doc);
                        bytes
                    }
                };
                // Half single durable commits, half groups of ten.
                if n.is_multiple_of(2) {
                    store
                        .put_changes(&case, &bytes, &meta(pick, Stage::Pushed))
                        .unwrap();
                } else {
                    store
                        .write(|tx| tx.put_changes(&case, &bytes, &meta(pick, Stage::Pushed)))
                        .unwrap();
                }
                if n.is_multiple_of(25) {
                    let hash = store
                        .put_material(rng.bytes(200_000).as_slice())
                        .unwrap()
                        .hash;
                    store.attach_material(&case, &hash).unwrap();
                }
                if n.is_multiple_of(50) {
                    store.compact_pending(5).unwrap();
                }
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while writes.load(Ordering::Relaxed) < 300 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Back up repeatedly until writes have demonstrably committed while a backup
    // was being taken; every backup must verify.
    let file = root.path().join("hot.tbk");
    let mut during = 0;
    let mut summary = None;
    for attempt in 0..50 {
        let before = writes.load(Ordering::Relaxed);
        // A backup never overwrites a file: each attempt starts afresh.
        let _ = std::fs::remove_file(&file);
        let taken = store.backup_to(&file).unwrap();
        during += writes.load(Ordering::Relaxed) - before;
        assert_eq!(
            verify_backup(&file).unwrap().cases,
            taken.cases,
            "attempt {attempt}"
        );
        summary = Some(taken);
        if during >= 20 {
            break;
        }
    }
    let summary = summary.unwrap();
    // Keep writing a little after the snapshot, then stop.
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "last backup: {} cases, {} materials; {during} writes committed during the backups",
        summary.cases, summary.materials
    );
    assert!(
        during >= 20,
        "the writer was not running during the backups"
    );

    let verified = verify_backup(&file).unwrap();
    assert_eq!(verified.cases, summary.cases);
    assert!(verified.cases > 30);
    let target = root.path().join("restored");
    restore(&file, &target).unwrap();
    let restored = open(&target);
    // Every restored case is a state the source went through: its heads are
    // known to the source's document.
    let mut cursor = 0;
    loop {
        let page = restored.changes_since(cursor, 100).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        for entry in &page {
            let doc = restored.load_case(&entry.case).unwrap().unwrap();
            assert_eq!(doc.get_heads(), entry.heads);
            let source_doc = store.load_case(&entry.case).unwrap().unwrap();
            for head in &entry.heads {
                assert!(source_doc.get_change_by_hash(head).is_some());
            }
        }
    }
    // And a backup of the restored store verifies too.
    let again = root.path().join("again.tbk");
    restored.backup_to(&again).unwrap();
    assert_eq!(verify_backup(&again).unwrap().cases, verified.cases);
}

#[test]
fn a_damaged_backup_is_refused_naming_the_record_and_offset() {
    let root = tempfile::tempdir().unwrap();
    let (source, _) = populated(&root.path().join("source"));
    let file = root.path().join("backup.tbk");
    source.backup_to(&file).unwrap();
    let pristine = std::fs::read(&file).unwrap();
    let damaged = root.path().join("damaged.tbk");

    // One flipped bit anywhere after the magic fails verification and names the
    // record and byte offset.
    let mut rng = Rng::new(43);
    for _ in 0..40 {
        let mut bytes = pristine.clone();
        let at = rng.range(16, bytes.len() as u64) as usize;
        bytes[at] ^= 1 << rng.range(0, 8);
        std::fs::write(&damaged, &bytes).unwrap();
        let err = verify_backup(&damaged).unwrap_err();
        match &err {
            BackupError::Corrupt { record, offset, .. } => {
                assert!(
                    *offset as usize <= at,
                    "offset {offset} after the damage at {at}"
                );
                let text = err.to_string();
                assert!(
                    text.contains(&format!("record {record}"))
                        && text.contains(&format!("offset {offset}")),
                    "{text}"
                );
            }
            other => panic!("unexpected error for damage at {at}: {other}"),
        }
        // Restore verifies first and creates nothing.
        let target = root.path().join("never");
        assert!(restore(&damaged, &target).is_err());
        assert!(!target.exists());
    }
    // The magic.
    let mut bytes = pristine.clone();
    bytes[3] ^= 1;
    std::fs::write(&damaged, &bytes).unwrap();
    assert!(matches!(
        verify_backup(&damaged).unwrap_err(),
        BackupError::NotABackup { .. }
    ));
    // Truncation, and bytes after the end.
    std::fs::write(&damaged, &pristine[..pristine.len() - 10]).unwrap();
    assert!(matches!(
        verify_backup(&damaged).unwrap_err(),
        BackupError::Corrupt { .. }
    ));
    std::fs::write(&damaged, &pristine[..pristine.len() / 2]).unwrap();
    assert!(matches!(
        verify_backup(&damaged).unwrap_err(),
        BackupError::Corrupt { .. }
    ));
    let mut longer = pristine.clone();
    longer.push(0);
    std::fs::write(&damaged, &longer).unwrap();
    let err = verify_backup(&damaged).unwrap_err();
    assert!(
        err.to_string().contains("bytes follow the end record"),
        "{err}"
    );
    // A missing file.
    assert!(matches!(
        verify_backup(root.path().join("absent")).unwrap_err(),
        BackupError::Io { .. }
    ));
    // The pristine file still verifies.
    std::fs::write(&damaged, &pristine).unwrap();
    verify_backup(&damaged).unwrap();
}

#[test]
fn an_interrupted_backup_leaves_no_file() {
    let root = tempfile::tempdir().unwrap();
    let (source, _) = populated(&root.path().join("source"));
    // A destination in a directory that does not exist fails before writing.
    let err = source
        .backup_to(root.path().join("missing/backup.tbk"))
        .unwrap_err();
    assert!(matches!(err, BackupError::Io { .. }), "{err}");
    let names: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_backup_never_overwrites_a_file() {
    let root = tempfile::tempdir().unwrap();
    let options = tongban_store::StoreOptions {
        create_if_missing: true,
        ..tongban_store::StoreOptions::default()
    };
    let store = tongban_store::Store::open(root.path().join("node"), &options).unwrap();
    let file = root.path().join("taken.tbk");
    std::fs::write(&file, b"keep me").unwrap();
    let err = store.backup_to(&file).unwrap_err();
    assert!(err.to_string().contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // And the live store's own file is safe.
    let live = root.path().join("node").join(tongban_store::DB_FILE_NAME);
    assert!(store.backup_to(&live).is_err());
    drop(store);
    tongban_store::Store::open(root.path().join("node"), &options).unwrap();
}

#[cfg(unix)]
#[test]
fn a_new_store_and_its_backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let options = tongban_store::StoreOptions {
        create_if_missing: true,
        ..tongban_store::StoreOptions::default()
    };
    let dir = root.path().join("node");
    let store = tongban_store::Store::open(&dir, &options).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(tongban_store::DB_FILE_NAME)), 0o600);
    let file = root.path().join("b.tbk");
    store.backup_to(&file).unwrap();
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn backup_verify_and_restore_report_progress_to_the_end() {
    use std::sync::Mutex;
    let root = tempfile::tempdir().unwrap();
    let (source, _) = populated(&root.path().join("source"));
    let file = root.path().join("backup.tbk");
    let seen = Mutex::new(Vec::new());
    let record = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let written = source.backup_to_with(&file, &record).unwrap();
    let calls = std::mem::take(&mut *seen.lock().unwrap());
    assert!(calls.len() as u64 >= written.records, "{}", calls.len());
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(calls.iter().all(|(done, total)| done <= total));
    // The last report is the whole file but for the end record's own bytes.
    let (last, _) = *calls.last().unwrap();
    assert!(last <= written.file_bytes && last * 2 > written.file_bytes);

    tongban_store::verify_backup_with(&file, &record).unwrap();
    let calls = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(
        *calls.last().unwrap(),
        (written.file_bytes, written.file_bytes)
    );

    tongban_store::restore_with(&file, root.path().join("restored"), &record).unwrap();
    let calls = std::mem::take(&mut *seen.lock().unwrap());
    let total = written.file_bytes * 2;
    assert!(calls.iter().all(|(done, t)| *t == total && *done <= total));
    assert_eq!(*calls.last().unwrap(), (total, total));
}
