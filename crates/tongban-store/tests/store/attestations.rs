//! Attestations held for supervision (issue #16): one row per case and
//! office, the newest signed one wins and is logged (so that it travels on),
//! the supervised rows a supervisor derives from them, and what a backup
//! keeps of both.

use tongban_domain::ids::CaseId;
use tongban_domain::stage::Stage;
use tongban_store::{ChangeEntry, ChangeHash, LoggedAttestation, Store, restore, verify_backup};

use crate::kit::{self, Rng, case_id, meta, office};
use crate::{create, new_store, open};

const DOMICILE: &str = "130102001";
const OFFICES: [&str; 4] = ["440106001", "130102001", "130102-dpf", "130102-ca"];

/// Stand-in attestation bytes (the store does not read them).
fn bytes(case: &CaseId, office: &str, at: i64) -> Vec<u8> {
    format!("TBSV {case} {office} {at}").into_bytes()
}

fn put(store: &Store, case: &CaseId, office: &str, at: i64) -> bool {
    store
        .write(|tx| tx.put_attestation(case, office, at, DOMICILE, &bytes(case, office, at)))
        .unwrap()
}

fn logged(seq: u64, case: &CaseId, office: &str, at: i64) -> ChangeEntry {
    ChangeEntry {
        seq,
        case: case.clone(),
        heads: vec![ChangeHash(
            *blake3::hash(&bytes(case, office, at)).as_bytes(),
        )],
        attestation: Some(LoggedAttestation {
            office: office.into(),
            domicile: DOMICILE.into(),
        }),
    }
}

#[test]
fn a_stored_attestation_is_held_and_logged_with_its_hash() {
    let (_dir, store) = new_store();
    let case = case_id(1);
    assert_eq!(store.attestation(&case, "130102-ca").unwrap(), None);
    assert!(put(&store, &case, "130102-ca", 1_000));
    assert_eq!(
        store.attestation(&case, "130102-ca").unwrap(),
        Some(bytes(&case, "130102-ca", 1_000))
    );
    assert_eq!(store.attestation(&case, "130102-dpf").unwrap(), None);
    assert_eq!(store.latest_seq().unwrap(), 1);
    assert_eq!(
        store.changes_since(0, 100).unwrap(),
        [logged(1, &case, "130102-ca", 1_000)]
    );
    // A case document is none: the store holds no document of the case.
    assert_eq!(store.case_info(&case).unwrap(), None);
    assert_eq!(store.stats().unwrap().cases, 0);
}

#[test]
fn an_older_or_equal_attestation_is_refused_and_changes_nothing() {
    let (_dir, store) = new_store();
    let case = case_id(2);
    assert!(put(&store, &case, "440106001", 5_000));
    let log = store.changes_since(0, 100).unwrap();
    for at in [5_000, 4_999, i64::MIN] {
        let other = format!("another attestation signed at {at}").into_bytes();
        let stored = store
            .write(|tx| tx.put_attestation(&case, "440106001", at, DOMICILE, &other))
            .unwrap();
        assert!(
            !stored,
            "an attestation signed at {at} replaced one of 5000"
        );
        assert_eq!(store.changes_since(0, 100).unwrap(), log);
        assert_eq!(store.latest_seq().unwrap(), 1);
        assert_eq!(
            store.attestation(&case, "440106001").unwrap(),
            Some(bytes(&case, "440106001", 5_000))
        );
    }
}

#[test]
fn a_newer_attestation_replaces_the_row_and_moves_its_log_entry() {
    let (_dir, store) = new_store();
    let case = case_id(3);
    let mut rng = Rng::new(3);
    assert!(put(&store, &case, "130102-dpf", 1_000)); // seq 1
    assert!(put(&store, &case, "130102-ca", 1_000)); // seq 2
    let mut doc = kit::case_doc(&mut rng, &case);
    let w = store
        .put_changes(&case, &doc.save(), &meta(3, Stage::Received))
        .unwrap();
    assert_eq!(w.seq, 3);
    assert!(put(&store, &case, "130102-dpf", 2_000)); // seq 4, seq 1 gone

    let log = store.changes_since(0, 100).unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3, 4],
        "{log:?}"
    );
    assert_eq!(log[0], logged(2, &case, "130102-ca", 1_000));
    assert_eq!(log[1].attestation, None);
    assert_eq!(log[1].heads, w.heads);
    assert_eq!(log[2], logged(4, &case, "130102-dpf", 2_000));
    assert_eq!(
        store.attestation(&case, "130102-dpf").unwrap(),
        Some(bytes(&case, "130102-dpf", 2_000))
    );
    // A cursor past the old entry sees the new one.
    assert_eq!(
        store.changes_since(1, 100).unwrap().len(),
        3,
        "the moved entry is after every cursor that saw the old one"
    );
    assert_eq!(store.changes_since(3, 100).unwrap(), [log[2].clone()]);
    assert_eq!(store.latest_seq().unwrap(), 4);

    // Replacing the log's last entry still takes a new, higher seq.
    assert!(put(&store, &case, "130102-dpf", 3_000));
    assert_eq!(
        store
            .changes_since(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [2, 3, 5]
    );
    // The case document's next write still moves only its own entry.
    let change = kit::update_doc(&mut doc, &mut rng);
    let w = store
        .put_changes(&case, &change, &meta(3, Stage::InitialReviewed))
        .unwrap();
    assert_eq!(w.seq, 6);
    let log = store.changes_since(0, 100).unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 5, 6]);
    assert_eq!(log[1], logged(5, &case, "130102-dpf", 3_000));
}

#[test]
fn two_puts_in_one_transaction_keep_the_newest_and_log_it_once() {
    let (_dir, store) = new_store();
    let case = case_id(4);
    let results = store
        .write(|tx| {
            Ok([
                tx.put_attestation(
                    &case,
                    "130102-ca",
                    10,
                    DOMICILE,
                    &bytes(&case, "130102-ca", 10),
                )?,
                tx.put_attestation(
                    &case,
                    "130102-ca",
                    20,
                    DOMICILE,
                    &bytes(&case, "130102-ca", 20),
                )?,
                tx.put_attestation(
                    &case,
                    "130102-ca",
                    15,
                    DOMICILE,
                    &bytes(&case, "130102-ca", 15),
                )?,
            ])
        })
        .unwrap();
    assert_eq!(results, [true, true, false]);
    assert_eq!(
        store.changes_since(0, 100).unwrap(),
        [logged(2, &case, "130102-ca", 20)]
    );
}

#[test]
fn put_attestation_checks_its_arguments() {
    let (_dir, store) = new_store();
    let case = case_id(5);
    let long = "x".repeat(300);
    for (office, domicile) in [
        ("", DOMICILE),
        (long.as_str(), DOMICILE),
        ("130102-ca", long.as_str()),
    ] {
        let err = store
            .write(|tx| tx.put_attestation(&case, office, 1, domicile, b"x"))
            .unwrap_err();
        assert!(err.to_string().contains("office and domicile"), "{err}");
    }
    assert_eq!(store.latest_seq().unwrap(), 0);
    assert_eq!(store.attestations_of(&case).unwrap(), Vec::<Vec<u8>>::new());
}

#[test]
fn attestations_of_lists_a_case_by_office() {
    let (_dir, store) = new_store();
    let (a, b, c) = (case_id(10), case_id(11), case_id(12));
    for office in OFFICES {
        assert!(put(&store, &b, office, 100));
    }
    assert!(put(&store, &a, "130102-ca", 100));
    assert!(put(&store, &c, "440106001", 100));
    // Office order, byte-wise: "-" sorts before the digits.
    assert_eq!(
        store.attestations_of(&b).unwrap(),
        ["130102-ca", "130102-dpf", "130102001", "440106001"].map(|o| bytes(&b, o, 100))
    );
    assert_eq!(
        store.attestations_of(&a).unwrap(),
        [bytes(&a, "130102-ca", 100)]
    );
    assert_eq!(
        store.attestations_of(&case_id(13)).unwrap(),
        Vec::<Vec<u8>>::new()
    );
    // Inside a transaction, its own writes count.
    let seen = store
        .write(|tx| {
            tx.put_attestation(
                &a,
                "130102-dpf",
                100,
                DOMICILE,
                &bytes(&a, "130102-dpf", 100),
            )?;
            tx.put_attestation(&a, "130102-ca", 200, DOMICILE, &bytes(&a, "130102-ca", 200))?;
            tx.attestations_of(&a)
        })
        .unwrap();
    assert_eq!(
        seen,
        [bytes(&a, "130102-ca", 200), bytes(&a, "130102-dpf", 100)]
    );
    assert_eq!(store.attestations_of(&a).unwrap(), seen);
}

#[test]
fn attested_cases_pages_each_case_once() {
    let (_dir, store) = new_store();
    // Cases 0, 2, ..., 18 attested by one to four offices each.
    let attested: Vec<CaseId> = (0..10).map(|n| case_id(n * 2)).collect();
    for (i, case) in attested.iter().enumerate() {
        for office in &OFFICES[..1 + i % 4] {
            assert!(put(&store, case, office, 1));
        }
    }
    let mut sorted = attested.clone();
    sorted.sort();
    assert_eq!(store.attested_cases(None, 100).unwrap(), sorted);

    // Pages of three, each continuing after the last.
    let mut pages = Vec::new();
    let mut after: Option<CaseId> = None;
    loop {
        let page = store.attested_cases(after.as_ref(), 3).unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        assert!(page.len() <= 3);
        pages.push(page);
        after = Some(last);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    assert_eq!(pages.concat(), sorted);

    // After a case that holds none: from the next one that does.
    let between = case_id(5);
    assert!(sorted[2] < between && between < sorted[3]);
    assert_eq!(
        store.attested_cases(Some(&between), 2).unwrap(),
        sorted[3..5].to_vec()
    );
    // After the last, and a zero limit: nothing.
    assert_eq!(
        store.attested_cases(sorted.last(), 10).unwrap(),
        Vec::<CaseId>::new()
    );
    assert_eq!(store.attested_cases(None, 0).unwrap(), Vec::<CaseId>::new());
    // Case documents are not attested cases.
    let mut rng = Rng::new(1);
    let plain = case_id(1);
    store
        .put_changes(
            &plain,
            &kit::case_doc(&mut rng, &plain).save(),
            &meta(1, Stage::Received),
        )
        .unwrap();
    assert_eq!(store.attested_cases(None, 100).unwrap(), sorted);
}

#[test]
fn supervised_rows_are_put_replaced_and_visited_in_case_order() {
    let (_dir, store) = new_store();
    let cases = [case_id(7), case_id(3), case_id(5)];
    assert_eq!(store.supervised(&cases[0]).unwrap(), None);
    for case in &cases {
        store
            .write(|tx| tx.put_supervised(case, format!("v1 {case}").as_bytes()))
            .unwrap();
    }
    store
        .write(|tx| tx.put_supervised(&cases[1], b"v2"))
        .unwrap();
    assert_eq!(store.supervised(&cases[1]).unwrap(), Some(b"v2".to_vec()));
    assert_eq!(
        store.supervised(&cases[0]).unwrap(),
        Some(format!("v1 {}", cases[0]).into_bytes())
    );
    // Supervised rows are derived: not logged.
    assert_eq!(store.latest_seq().unwrap(), 0);

    let mut seen = Vec::new();
    let done: Result<(), ()> = store
        .for_each_supervised(|case, bytes| {
            seen.push((case.to_string(), bytes.to_vec()));
            Ok(())
        })
        .unwrap();
    assert_eq!(done, Ok(()));
    let mut expected: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|c| {
            let bytes = if *c == cases[1] {
                b"v2".to_vec()
            } else {
                format!("v1 {c}").into_bytes()
            };
            (c.as_str().to_string(), bytes)
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // The visitor's error stops the walk and is handed back.
    let mut visited = 0;
    let stopped = store
        .for_each_supervised(|case, _| {
            visited += 1;
            if case == expected[1].0 {
                Err(case.to_string())
            } else {
                Ok(())
            }
        })
        .unwrap();
    assert_eq!(stopped, Err(expected[1].0.clone()));
    assert_eq!(visited, 2);
}

/// A store with case documents, attestations (one replaced), a supervised row,
/// a cursor and a sync state.
fn populated(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, &create()).unwrap();
    let mut rng = Rng::new(16);
    for n in 0..6u64 {
        let case = case_id(n);
        if n % 2 == 0 {
            store
                .put_changes(
                    &case,
                    &kit::case_doc(&mut rng, &case).save(),
                    &meta(n, Stage::Received),
                )
                .unwrap();
        }
        for office in &OFFICES[..1 + n as usize % 4] {
            assert!(put(&store, &case, office, 100 + n as i64));
        }
    }
    // A newer attestation moves its log entry; a case written after it too.
    assert!(put(&store, &case_id(0), "440106001", 500));
    let mut doc = kit::case_doc(&mut rng, &case_id(2));
    store
        .put_changes(&case_id(2), &doc.save(), &meta(2, Stage::Received))
        .unwrap();
    let change = kit::update_doc(&mut doc, &mut rng);
    store
        .put_changes(&case_id(2), &change, &meta(2, Stage::InitialReviewed))
        .unwrap();
    // The last entry of the log is an attestation.
    assert!(put(&store, &case_id(5), "130102-ca", 900));
    store
        .write(|tx| tx.put_supervised(&case_id(1), b"{\"derived\":true}"))
        .unwrap();
    store.set_peer_cursor(&office("hub-13"), 11).unwrap();
    store
        .put_sync_state(&office("hub-13"), &case_id(0), b"state")
        .unwrap();
    store.set_meta("node.identity", b"supervisor-13").unwrap();
    store
}

fn n_attestations(store: &Store) -> usize {
    (0..6)
        .map(|n| store.attestations_of(&case_id(n)).unwrap().len())
        .sum()
}

#[test]
fn backup_and_restore_keep_attestations_and_their_log() {
    let root = tempfile::tempdir().unwrap();
    let source = populated(&root.path().join("source"));
    let held = n_attestations(&source);
    assert_eq!(held, 1 + 2 + 3 + 4 + 1 + 2 + 1);
    let log = source.changes_since(0, 10_000).unwrap();
    assert_eq!(
        log.last()
            .unwrap()
            .attestation
            .as_ref()
            .map(|a| a.office.as_str()),
        Some("130102-ca")
    );
    let file = root.path().join("backup.tbk");
    let written = source.backup_to(&file).unwrap();
    assert_eq!(written.attestations, held as u64);
    assert_eq!(written.cases, 3);
    let verified = verify_backup(&file).unwrap();
    assert_eq!(verified.attestations, held as u64);
    assert_eq!(verified.latest_seq, source.latest_seq().unwrap());

    let target = root.path().join("restored");
    let summary = restore(&file, &target).unwrap();
    assert_eq!(summary.attestations, held as u64);
    let restored = open(&target);
    assert_eq!(restored.latest_seq().unwrap(), source.latest_seq().unwrap());
    assert_eq!(restored.changes_since(0, 10_000).unwrap(), log);
    for n in 0..6 {
        let case = case_id(n);
        assert_eq!(
            restored.attestations_of(&case).unwrap(),
            source.attestations_of(&case).unwrap()
        );
        for office in OFFICES {
            assert_eq!(
                restored.attestation(&case, office).unwrap(),
                source.attestation(&case, office).unwrap()
            );
        }
        assert_eq!(
            restored.case_info(&case).unwrap(),
            source.case_info(&case).unwrap()
        );
    }
    assert_eq!(
        restored.attested_cases(None, 100).unwrap(),
        source.attested_cases(None, 100).unwrap()
    );
    assert_eq!(restored.peer_cursor(&office("hub-13")).unwrap(), Some(11));
    assert_eq!(
        restored.sync_state(&office("hub-13"), &case_id(0)).unwrap(),
        Some(b"state".to_vec())
    );
    assert_eq!(
        restored.meta("node.identity").unwrap(),
        Some(b"supervisor-13".to_vec())
    );

    // The supervised rows are derived and not in the backup: a supervisor's
    // node computes them again at start from the attestations (`reconcile`).
    assert_eq!(
        source.supervised(&case_id(1)).unwrap(),
        Some(b"{\"derived\":true}".to_vec())
    );
    assert_eq!(restored.supervised(&case_id(1)).unwrap(), None);
    let mut visited = 0;
    restored
        .for_each_supervised(|_, _| {
            visited += 1;
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(visited, 0);

    // The restored store goes on: an older attestation is still refused, a
    // newer one replaces the row and takes the next seq.
    assert!(!put(&restored, &case_id(0), "440106001", 499));
    let next = restored.latest_seq().unwrap() + 1;
    assert!(put(&restored, &case_id(0), "440106001", 501));
    let log = restored.changes_since(0, 10_000).unwrap();
    assert_eq!(
        log.last().unwrap(),
        &logged(next, &case_id(0), "440106001", 501)
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.case == case_id(0)
                && e.attestation
                    .as_ref()
                    .is_some_and(|a| a.office == "440106001"))
            .count(),
        1
    );
}

#[test]
fn a_store_of_attestations_only_backs_up_and_restores() {
    // A supervisor's store: attestations, no case document.
    let root = tempfile::tempdir().unwrap();
    let source = Store::open(root.path().join("source"), &create()).unwrap();
    for n in 0..4 {
        for office in &OFFICES[..2] {
            assert!(put(&source, &case_id(n), office, 7));
        }
    }
    assert!(put(&source, &case_id(0), "130102001", 8));
    let file = root.path().join("backup.tbk");
    let written = source.backup_to(&file).unwrap();
    assert_eq!((written.cases, written.attestations), (0, 8));
    let target = root.path().join("restored");
    restore(&file, &target).unwrap();
    let restored = open(&target);
    assert_eq!(
        restored.changes_since(0, 100).unwrap(),
        source.changes_since(0, 100).unwrap()
    );
    assert_eq!(restored.latest_seq().unwrap(), 9);
    assert_eq!(restored.changes_since(0, 100).unwrap().len(), 8);
}

/// The records of a backup file: (tag, payload), after the magic.
fn records(file: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at < file.len() {
        let tag = file[at];
        let len = u32::from_le_bytes(file[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((tag, file[at + 5..at + 5 + len].to_vec()));
        at += 5 + len + 32;
    }
    out
}

/// A backup file of these records, checksums and the end record's file hash
/// made anew.
fn rewrite(magic: &[u8], records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut file = magic.to_vec();
    for (tag, payload) in records {
        let mut payload = payload.clone();
        if *tag == 255 {
            let hash = *blake3::hash(&file).as_bytes();
            let n = payload.len();
            payload[n - 32..].copy_from_slice(&hash);
        }
        let head = [&[*tag][..], &(payload.len() as u32).to_le_bytes()].concat();
        let mut check = blake3::Hasher::new();
        check.update(&head).update(&payload);
        file.extend_from_slice(&head);
        file.extend_from_slice(&payload);
        file.extend_from_slice(check.finalize().as_bytes());
    }
    file
}

/// A backup of one case (seq 1) and one attestation (seq 2), with the
/// attestation's seq rewritten to `seq` and every checksum made anew.
fn backup_with_attestation_seq(root: &std::path::Path, seq: u64) -> std::path::PathBuf {
    let source = Store::open(root.join("source"), &create()).unwrap();
    let mut rng = Rng::new(9);
    let case = case_id(1);
    let w = source
        .put_changes(
            &case,
            &kit::case_doc(&mut rng, &case).save(),
            &meta(1, Stage::Received),
        )
        .unwrap();
    assert_eq!(w.seq, 1);
    assert!(put(&source, &case_id(2), "130102-ca", 1)); // seq 2
    let file = root.join("backup.tbk");
    source.backup_to(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    // The rewriting itself is sound: the unchanged records verify.
    let same = root.join("same.tbk");
    std::fs::write(&same, rewrite(&bytes[..16], &records(&bytes))).unwrap();
    verify_backup(&same).unwrap();

    let mut recs = records(&bytes);
    let attestation = recs.iter_mut().find(|(tag, _)| *tag == 12).unwrap();
    // case str, office str, then the row: its length, version byte, seq.
    let case_len = u32::from_le_bytes(attestation.1[..4].try_into().unwrap()) as usize;
    let at = 4 + case_len;
    let office_len = u32::from_le_bytes(attestation.1[at..at + 4].try_into().unwrap()) as usize;
    let seq_at = at + 4 + office_len + 4 + 1;
    assert_eq!(
        u64::from_le_bytes(attestation.1[seq_at..seq_at + 8].try_into().unwrap()),
        2
    );
    attestation.1[seq_at..seq_at + 8].copy_from_slice(&seq.to_le_bytes());
    let forged = root.join(format!("seq-{seq}.tbk"));
    std::fs::write(&forged, rewrite(&bytes[..16], &recs)).unwrap();
    forged
}

#[test]
fn a_backup_whose_attestation_takes_a_case_seq_is_refused() {
    // Before 22929c6 it verified, and restoring it overwrote the case's
    // change-log row with the attestation's.
    let root = tempfile::tempdir().unwrap();
    let forged = backup_with_attestation_seq(root.path(), 1);
    let err = verify_backup(&forged).unwrap_err().to_string();
    assert!(err.contains("repeats seq 1"), "{err}");
    let target = root.path().join("restored");
    assert!(restore(&forged, &target).is_err());
}

#[test]
fn a_backup_whose_attestation_seq_is_beyond_the_snapshot_is_refused() {
    let root = tempfile::tempdir().unwrap();
    for seq in [0, 3, u64::MAX] {
        let dir = root.path().join(format!("run-{seq}"));
        std::fs::create_dir(&dir).unwrap();
        let forged = backup_with_attestation_seq(&dir, seq);
        let err = verify_backup(&forged).unwrap_err().to_string();
        assert!(err.contains("beyond the snapshot"), "seq {seq}: {err}");
    }
}
