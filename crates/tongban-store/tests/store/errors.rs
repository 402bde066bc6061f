//! Every error path of opening and reading: missing, not a directory, not a
//! store, locked (same process and another process), read-only, disk full,
//! corrupt file, corrupt rows, unknown schema, interrupted restore.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use redb::TableDefinition;
use tongban_domain::stage::Stage;
use tongban_store::{DB_FILE_NAME, Store, StoreError, StoreOptions};

use crate::kit::{self, Rng, case_id, meta};
use crate::{create, open};

const CASES: TableDefinition<&str, &[u8]> = TableDefinition::new("cases");
const DOC_BASE: TableDefinition<&str, &[u8]> = TableDefinition::new("doc_base");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn store_with_cases(dir: &Path, n: u64) {
    let store = Store::open(dir, &create()).unwrap();
    let mut rng = Rng::new(30);
    for idx in 0..n {
        let case = case_id(idx);
        store
            .put_changes(
                &case,
                &kit::case_doc(&mut rng, &case).save(),
                &meta(idx, Stage::Received),
            )
            .unwrap();
    }
}

fn raw_write(dir: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join(DB_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[test]
fn a_missing_directory_is_not_created_unless_asked() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nope");
    let err = Store::open(&dir, &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Missing { path } if path == &dir),
        "{err}"
    );
    assert!(err.to_string().contains(&dir.display().to_string()));
    assert!(!dir.exists());
    Store::open(&dir, &create()).unwrap();
    assert!(dir.join(DB_FILE_NAME).exists());
}

#[test]
fn a_file_is_not_a_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file, &create()).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err}");
    let err = Store::open(file.join("below"), &create()).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn an_empty_directory_is_not_a_store() {
    let root = tempfile::tempdir().unwrap();
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains("tongban.redb is missing"));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn a_store_open_in_this_process_is_locked() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 3);
    let first = open(root.path());
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { path } if path == root.path()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is in use by a running tongban node"),
        "{err}"
    );
    // The first handle is unharmed.
    assert_eq!(first.stats().unwrap().cases, 3);
    first.set_meta("k", b"v").unwrap();
    drop(first);
    assert_eq!(open(root.path()).meta("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_store_open_in_another_process_is_locked() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban-store-crashwriter"))
        .arg("hold")
        .arg(root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    // Closing its stdin lets the holder exit cleanly; then the store opens intact.
    let mut stdin = child.stdin.take().unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(open(root.path()).stats().unwrap().cases, 2);
}

/// A small tmpfs mounted for one test, unmounted on drop. Tests run as root,
/// where file modes do not stop writes; a read-only or full file system does.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN): this check did not run"
            );
            return None;
        }
        Some(Tmpfs { _dir: dir, path })
    }

    fn remount_read_only(&self, read_only: bool) {
        let opt = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let ok = Command::new("mount")
            .args(["-o", opt])
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_read_only_directory_is_reported_as_such() {
    // A directory that cannot be created even by root.
    if Path::new("/sys/kernel").is_dir() {
        let err = Store::open("/sys/tongban-store-test", &create()).unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
    }
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let dir = fs.path.join("data");
    store_with_cases(&dir, 2);
    fs.remount_read_only(true);
    let err = Store::open(&dir, &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::ReadOnly { path, .. } if path.starts_with(&dir)),
        "{err}"
    );
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = Store::open(fs.path.join("new"), &create()).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
    fs.remount_read_only(false);
    assert_eq!(open(&dir).stats().unwrap().cases, 2);
}

#[test]
fn a_full_disk_fails_the_write_and_keeps_what_was_acknowledged() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    // Ballast to delete later, so that the store can be reopened with space.
    std::fs::write(fs.path.join("ballast"), vec![0u8; 2 << 20]).unwrap();
    let dir = fs.path.join("data");
    let mut rng = Rng::new(31);
    let mut acked = Vec::new();
    let err = {
        let store = Store::open(&dir, &create()).unwrap();
        loop {
            let bytes = rng.bytes(700_000);
            match store.put_material(bytes.as_slice()) {
                Ok(put) => acked.push((put.hash, bytes)),
                Err(err) => break err,
            }
            assert!(acked.len() < 100, "the 24 MiB file system never filled");
        }
    };
    assert!(
        matches!(&err, StoreError::DiskFull { path } if path == &dir),
        "{err}"
    );
    assert!(err.to_string().contains("is full"), "{err}");
    assert!(!acked.is_empty());
    std::fs::remove_file(fs.path.join("ballast")).unwrap();
    let store = open(&dir);
    for (hash, bytes) in &acked {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut store.open_material(hash).unwrap(), &mut out).unwrap();
        assert!(out == *bytes);
    }
}

#[test]
fn a_store_that_filled_its_disk_refuses_writes_keeps_reads_and_recovers_in_place() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    std::fs::write(fs.path.join("ballast"), vec![0u8; 2 << 20]).unwrap();
    let dir = fs.path.join("data");
    let mut rng = Rng::new(33);
    let store = Store::open(&dir, &create()).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        let bytes = rng.bytes(700_000);
        match store.put_material(bytes.as_slice()) {
            Ok(put) => acked.push((put.hash, bytes)),
            Err(err) => break err,
        }
        assert!(acked.len() < 100, "the 24 MiB file system never filled");
    };
    assert!(matches!(&err, StoreError::DiskFull { .. }), "{err}");
    assert!(store.failure().is_some());
    // Every further write is refused with the reason, before touching redb.
    let err = store.put_material(b"small".as_slice()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Failing { path, .. } if path == &dir),
        "{err}"
    );
    // Reopening while the disk is still full may fail; the store stays failing.
    if store.recover().is_err() {
        assert!(store.failure().is_some());
    }
    // Reads go on.
    let (hash, bytes) = &acked[0];
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut store.open_material(hash).unwrap(), &mut out).unwrap();
    assert!(out == *bytes);
    // Space returns: the same handle writes again once it has recovered.
    std::fs::remove_file(fs.path.join("ballast")).unwrap();
    store.recover().unwrap();
    assert!(store.failure().is_none());
    store.put_material(b"after".as_slice()).unwrap();
    for (hash, bytes) in &acked {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut store.open_material(hash).unwrap(), &mut out).unwrap();
        assert!(out == *bytes);
    }
}

#[test]
fn a_file_that_is_not_a_database_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(32);
    std::fs::write(root.path().join(DB_FILE_NAME), rng.bytes(64 * 1024)).unwrap();
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if path.ends_with(DB_FILE_NAME)),
        "{err}"
    );
    // Nothing was overwritten.
    assert_eq!(
        std::fs::metadata(root.path().join(DB_FILE_NAME))
            .unwrap()
            .len(),
        64 * 1024
    );
    std::fs::write(root.path().join(DB_FILE_NAME), b"").unwrap();
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_truncated_database_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 50);
    let file = root.path().join(DB_FILE_NAME);
    let len = std::fs::metadata(&file).unwrap().len();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..(len / 3) as usize]).unwrap();
    match Store::open(root.path(), &StoreOptions::default()) {
        Err(err) => {
            eprintln!("truncated database refused: {err}");
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        }
        Ok(store) => {
            eprintln!("truncated database opened; reads must not panic");
            // If redb accepts the file, reads must fail with errors, not panics.
            for n in 0..50 {
                let _ = store.load_case(&case_id(n));
            }
        }
    }
}

#[test]
fn damaged_rows_are_typed_errors_and_do_not_spread() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 5);
    raw_write(root.path(), |txn| {
        txn.open_table(CASES)
            .unwrap()
            .insert(case_id(1).as_str(), b"\x01garbage".as_slice())
            .unwrap();
        txn.open_table(DOC_BASE)
            .unwrap()
            .insert(case_id(2).as_str(), b"not a document".as_slice())
            .unwrap();
    });
    let store = open(root.path());
    let err = store.load_case(&case_id(1)).unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptRow { table: "cases", key, .. } if key == case_id(1).as_str()),
        "{err}"
    );
    let err = store.case_info(&case_id(1)).unwrap_err();
    assert!(matches!(err, StoreError::CorruptRow { .. }));
    let err = store.load_case(&case_id(2)).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::CorruptRow {
                table: "doc_base",
                ..
            }
        ),
        "{err}"
    );
    // Writing to a case with a damaged document is refused too.
    let err = store
        .put_changes(&case_id(2), b"", &meta(2, Stage::Received))
        .unwrap_err();
    assert!(matches!(err, StoreError::CorruptRow { .. }), "{err}");
    for n in [0, 3, 4] {
        assert!(store.load_case(&case_id(n)).unwrap().is_some());
    }
    assert_eq!(store.changes_since(0, 10).unwrap().len(), 5);
}

#[test]
fn a_store_of_an_unknown_schema_is_refused() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 1);
    raw_write(root.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .insert("store.schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
    });
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedSchema {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_interrupted_restore_does_not_open() {
    let root = tempfile::tempdir().unwrap();
    store_with_cases(root.path(), 1);
    raw_write(root.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .insert("store.restore_incomplete", [1u8].as_slice())
            .unwrap();
    });
    let err = Store::open(root.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::IncompleteRestore { .. }), "{err}");
}

#[test]
fn random_damage_to_the_file_never_panics() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    store_with_cases(&source, 40);
    {
        let store = open(&source);
        let mut rng = Rng::new(33);
        store.put_material(rng.bytes(300_000).as_slice()).unwrap();
    }
    let pristine = std::fs::read(source.join(DB_FILE_NAME)).unwrap();
    let mut rng = Rng::new(34);
    for trial in 0..24 {
        let dir = root.path().join(format!("t{trial}"));
        std::fs::create_dir(&dir).unwrap();
        let mut bytes = pristine.clone();
        for _ in 0..rng.range(1, 20) {
            let at = rng.range(0, bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.range(0, 8);
        }
        std::fs::write(dir.join(DB_FILE_NAME), &bytes).unwrap();
        // Each outcome is fine except a panic: an error at open, errors on some
        // reads, or (damage in free space) a store that works.
        let options = StoreOptions {
            check_integrity_on_open: trial % 2 == 0,
            ..StoreOptions::default()
        };
        let result = std::panic::catch_unwind(|| {
            if let Ok(store) = Store::open(&dir, &options) {
                for n in 0..40 {
                    let _ = store.load_case(&case_id(n));
                }
                let _ = store.changes_since(0, 100);
                let _ = store.overdue(chrono::NaiveDate::from_ymd_opt(2030, 1, 1).unwrap(), 100);
            }
        });
        assert!(result.is_ok(), "trial {trial} panicked");
    }
}
