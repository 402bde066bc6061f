//! Documents, change log, indexes, group commit, cursors and meta.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use chrono::NaiveDate;
use tongban_domain::stage::Stage;
use tongban_store::{Store, StoreError, StoreOptions, WriteOp, WriteOutcome};

use crate::kit::{self, Rng, case_id, meta, office};
use crate::{create, new_store};

#[test]
fn documents_round_trip_through_increments_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let options = StoreOptions {
        compact_after_increments: 4,
        ..create()
    };
    let mut rng = Rng::new(1);
    let case = case_id(1);
    let mut doc = kit::case_doc(&mut rng, &case);
    {
        let store = Store::open(&path, &options).unwrap();
        let first = store
            .put_changes(&case, &doc.save(), &meta(1, Stage::Received))
            .unwrap();
        assert!(first.changed);
        assert_eq!(first.seq, 1);
        assert_eq!(first.heads, doc.get_heads());
        for round in 0..6 {
            let bytes = kit::update_doc(&mut doc, &mut rng);
            let w = store
                .put_changes(&case, &bytes, &meta(1, Stage::Received))
                .unwrap();
            assert_eq!(w.seq, 2 + round);
            assert_eq!(w.heads, doc.get_heads());
        }
        let info = store.case_info(&case).unwrap().unwrap();
        assert_eq!(info.increments, 6);
        assert_eq!(store.stats().unwrap().pending_compactions, 1);
        let loaded = store.load_case(&case).unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
    }
    // Reopen: nothing cached, everything from disk.
    let store = Store::open(&path, &options).unwrap();
    let loaded = store.load_case(&case).unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(
        loaded
            .get(ROOT, "note")
            .unwrap()
            .map(|(v, _)| v.to_string()),
        doc.get(ROOT, "note").unwrap().map(|(v, _)| v.to_string())
    );
    let report = store.compact_pending(10).unwrap();
    assert_eq!(report.compacted, 1);
    assert_eq!(report.remaining, 0);
    let info = store.case_info(&case).unwrap().unwrap();
    assert_eq!((info.increments, info.increment_bytes, info.seq), (0, 0, 7));
    drop(store);
    let store = Store::open(&path, &options).unwrap();
    assert_eq!(
        store.load_case(&case).unwrap().unwrap().get_heads(),
        doc.get_heads()
    );
    // Writing after compaction appends to the new full save.
    let bytes = kit::update_doc(&mut doc, &mut rng);
    store
        .put_changes(&case, &bytes, &meta(1, Stage::Received))
        .unwrap();
    drop(store);
    let store = Store::open(&path, &options).unwrap();
    assert_eq!(
        store.load_case(&case).unwrap().unwrap().get_heads(),
        doc.get_heads()
    );
}

#[test]
fn known_changes_are_not_logged_again() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(2);
    let case = case_id(2);
    let mut doc = kit::case_doc(&mut rng, &case);
    let full = doc.save();
    let first = store
        .put_changes(&case, &full, &meta(2, Stage::Draft))
        .unwrap();
    let again = store
        .put_changes(&case, &full, &meta(2, Stage::Draft))
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.seq, first.seq);
    // Same changes, new metadata: indexed, but not a new change.
    let moved = store
        .put_changes(&case, &full, &meta(2, Stage::Accepted))
        .unwrap();
    assert!(!moved.changed);
    assert_eq!(
        store.cases_in_stage(Stage::Accepted, None, 10).unwrap(),
        vec![case.clone()]
    );
    assert!(
        store
            .cases_in_stage(Stage::Draft, None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_seq().unwrap(), 1);
    // Incremental bytes already stored are recognised without applying them, also
    // when they arrive together with new ones.
    let first_update = kit::update_doc(&mut doc, &mut rng);
    let w1 = store
        .put_changes(&case, &first_update, &meta(2, Stage::Accepted))
        .unwrap();
    assert!(w1.changed);
    let again = store
        .put_changes(&case, &first_update, &meta(2, Stage::Accepted))
        .unwrap();
    assert!(!again.changed);
    assert_eq!(again.seq, w1.seq);
    let second_update = kit::update_doc(&mut doc, &mut rng);
    let both = [first_update.as_slice(), second_update.as_slice()].concat();
    let w2 = store
        .put_changes(&case, &both, &meta(2, Stage::Accepted))
        .unwrap();
    assert!(w2.changed);
    assert_eq!(w2.heads, doc.get_heads());
    let info = store.case_info(&case).unwrap().unwrap();
    assert_eq!(
        info.increment_bytes as usize,
        first_update.len() + second_update.len()
    );
    // put_document computes what the store lacks.
    kit::update_doc(&mut doc, &mut rng);
    let w = store
        .put_document(&case, doc.document(), &meta(2, Stage::Accepted))
        .unwrap();
    assert!(w.changed);
    assert_eq!(w.heads, doc.get_heads());
}

#[test]
fn diverged_documents_merge() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(3);
    let case = case_id(3);
    let mut doc = kit::case_doc(&mut rng, &case);
    store
        .put_changes(&case, &doc.save(), &meta(3, Stage::Pushed))
        .unwrap();
    let mut other = doc.fork();
    kit::update_doc(&mut doc, &mut rng);
    other.put(ROOT, "remark", "from the domicile").unwrap();
    other.commit();
    store
        .put_document(&case, doc.document(), &meta(3, Stage::Pushed))
        .unwrap();
    let w = store
        .put_document(&case, other.document(), &meta(3, Stage::Pushed))
        .unwrap();
    assert_eq!(w.heads.len(), 2, "two concurrent heads");
    let loaded = store.load_case(&case).unwrap().unwrap();
    assert!(loaded.get(ROOT, "remark").unwrap().is_some());
    assert!(loaded.get(ROOT, "note").unwrap().is_some());
}

#[test]
fn bad_changes_are_refused_and_store_nothing() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(4);
    let case = case_id(4);
    let err = store
        .put_changes(&case, b"not automerge", &meta(4, Stage::Draft))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidChanges { .. }), "{err}");
    let err = store
        .put_changes(&case, b"", &meta(4, Stage::Draft))
        .unwrap_err();
    assert!(matches!(err, StoreError::EmptyDocument { .. }), "{err}");
    assert!(store.case_info(&case).unwrap().is_none());

    let mut doc = kit::case_doc(&mut rng, &case);
    store
        .put_changes(&case, &doc.save(), &meta(4, Stage::Draft))
        .unwrap();
    let _skipped = kit::update_doc(&mut doc, &mut rng);
    let second = kit::update_doc(&mut doc, &mut rng);
    let err = store
        .put_changes(&case, &second, &meta(4, Stage::Draft))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MissingDependencies { missing: 1, .. }),
        "{err}"
    );
    let err = store
        .put_changes(&case, b"\x85\x6f\x4a\x83garbage", &meta(4, Stage::Draft))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidChanges { .. }), "{err}");
    assert_eq!(store.latest_seq().unwrap(), 1);
    // The cached document was not polluted by the refused writes.
    let loaded = store.load_case(&case).unwrap().unwrap();
    assert_eq!(
        loaded.get_heads(),
        store.case_info(&case).unwrap().unwrap().heads
    );
}

#[test]
fn change_log_yields_each_case_once_from_a_cursor() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(5);
    let mut docs: Vec<AutoCommit> = (0..3)
        .map(|n| kit::case_doc(&mut rng, &case_id(n)))
        .collect();
    for (n, doc) in docs.iter_mut().enumerate() {
        store
            .put_changes(
                &case_id(n as u64),
                &doc.save(),
                &meta(n as u64, Stage::Draft),
            )
            .unwrap();
    }
    // Seqs 1, 2, 3. Now case 0 twice and case 1 once: 4, 5, 6.
    for n in [0u64, 1, 0] {
        let bytes = kit::update_doc(&mut docs[n as usize], &mut rng);
        store
            .put_changes(&case_id(n), &bytes, &meta(n, Stage::Draft))
            .unwrap();
    }
    let all = store.changes_since(0, 100).unwrap();
    let seen: Vec<(u64, u64)> = all
        .iter()
        .map(|e| (e.seq, (0..3).find(|n| case_id(*n) == e.case).unwrap()))
        .collect();
    assert_eq!(seen, vec![(3, 2), (5, 1), (6, 0)]);
    assert_eq!(all[2].heads, docs[0].get_heads());
    let page = store.changes_since(0, 2).unwrap();
    assert_eq!(page.len(), 2);
    let rest = store.changes_since(page[1].seq, 100).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq, 6);
    assert!(store.changes_since(6, 100).unwrap().is_empty());
    assert!(store.changes_since(u64::MAX, 100).unwrap().is_empty());
}

#[test]
fn indexes_follow_the_metadata() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(6);
    let date = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
    for n in 0..6u64 {
        let case = case_id(n);
        let mut m = meta(
            n,
            if n < 4 {
                Stage::Received
            } else {
                Stage::Withdrawn
            },
        );
        m.due = Some(date(1 + n as u32));
        store
            .put_changes(&case, &kit::case_doc(&mut rng, &case).save(), &m)
            .unwrap();
    }
    // Due 1st..6th; before the 6th: cases 0..4, of which 4 is final (withdrawn).
    let overdue = store.overdue(date(6), 100).unwrap();
    let cases: Vec<_> = overdue.iter().map(|d| d.case.clone()).collect();
    assert_eq!(cases, vec![case_id(0), case_id(1), case_id(2), case_id(3)]);
    assert_eq!(overdue[0].due, date(1));
    assert_eq!(store.overdue(date(6), 2).unwrap().len(), 2);
    // Moving a case on updates every index in the same transaction.
    let mut m = meta(0, Stage::InitialReviewed);
    m.due = None;
    m.offices.push(office("130102002"));
    let doc0 = store.case_bytes(&case_id(0)).unwrap().unwrap();
    store.put_changes(&case_id(0), &doc0, &m).unwrap();
    assert_eq!(store.overdue(date(6), 100).unwrap().len(), 3);
    assert_eq!(
        store
            .cases_in_stage(Stage::InitialReviewed, None, 10)
            .unwrap(),
        vec![case_id(0)]
    );
    assert_eq!(
        store
            .cases_in_stage(Stage::Received, None, 10)
            .unwrap()
            .len(),
        3
    );
    let by_office = store
        .cases_for_office(&office("130102002"), None, 10)
        .unwrap();
    assert_eq!(by_office, vec![(case_id(0), Stage::InitialReviewed)]);
    assert_eq!(
        store
            .cases_for_office(&office("130102-dpf"), None, 10)
            .unwrap()
            .len(),
        6
    );
    // Paging.
    let first = store
        .cases_for_office(&office("130102-dpf"), None, 4)
        .unwrap();
    let next = store
        .cases_for_office(&office("130102-dpf"), Some(&first[3].0), 4)
        .unwrap();
    assert_eq!(first.len() + next.len(), 6);
    // Resident keys: meta(n) uses n / 2, so cases 2 and 3 share one.
    let dup = store
        .cases_by_resident(&meta(2, Stage::Draft).resident_key)
        .unwrap();
    let mut found: Vec<_> = dup.into_iter().map(|(c, _)| c).collect();
    found.sort();
    assert_eq!(found, vec![case_id(2), case_id(3)]);
}

#[test]
fn group_commit_is_all_or_nothing() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(7);
    let docs: Vec<Vec<u8>> = (0..100)
        .map(|n| kit::case_doc(&mut rng, &case_id(n)).save())
        .collect();
    let seqs = store
        .write(|tx| {
            (0..100u64)
                .map(|n| {
                    tx.put_changes(&case_id(n), &docs[n as usize], &meta(n, Stage::Draft))
                        .map(|w| w.seq)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    // A failing closure stores nothing, including the operations before the failure.
    let err = store
        .write(|tx| {
            let extra = kit::case_doc(&mut rng, &case_id(500)).save();
            tx.put_changes(&case_id(500), &extra, &meta(500, Stage::Draft))?;
            tx.set_peer_cursor(&office("hub-13"), 99)?;
            tx.put_changes(&case_id(501), b"junk", &meta(501, Stage::Draft))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidChanges { .. }));
    assert!(store.case_info(&case_id(500)).unwrap().is_none());
    assert!(store.load_case(&case_id(500)).unwrap().is_none());
    assert_eq!(store.peer_cursor(&office("hub-13")).unwrap(), None);
    // A transaction whose caller swallowed a validation error still commits the rest.
    store
        .write(|tx| {
            assert!(
                tx.put_changes(&case_id(502), b"junk", &meta(502, Stage::Draft))
                    .is_err()
            );
            tx.set_peer_cursor(&office("hub-13"), 7)
        })
        .unwrap();
    assert_eq!(store.peer_cursor(&office("hub-13")).unwrap(), Some(7));
    assert_eq!(store.stats().unwrap().cases, 100);
}

#[test]
fn batches_of_serialisable_operations() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(8);
    let case = case_id(8);
    let ops = vec![
        WriteOp::PutChanges {
            case: case.clone(),
            changes: kit::case_doc(&mut rng, &case).save(),
            meta: meta(8, Stage::Accepted),
        },
        WriteOp::SetPeerCursor {
            peer: office("hub-13"),
            seq: 1,
        },
        WriteOp::PutSyncState {
            peer: office("hub-13"),
            case: case.clone(),
            state: vec![1, 2, 3],
        },
        WriteOp::SetMeta {
            key: "node.identity".into(),
            value: b"440106001".to_vec(),
        },
    ];
    // Operations cross a control API as JSON unchanged.
    let json = serde_json::to_string(&ops).unwrap();
    let ops: Vec<WriteOp> = serde_json::from_str(&json).unwrap();
    let outcomes = store.apply_batch(ops).unwrap();
    assert!(matches!(&outcomes[0], WriteOutcome::Case(w) if w.changed && w.seq == 1));
    assert_eq!(
        store.sync_state(&office("hub-13"), &case).unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        store.meta("node.identity").unwrap(),
        Some(b"440106001".to_vec())
    );
    let info = store.case_info(&case).unwrap().unwrap();
    let json = serde_json::to_string(&info).unwrap();
    assert!(json.contains(case.as_str()));
}

#[test]
fn reserved_meta_keys_are_refused() {
    let (_dir, store) = new_store();
    let err = store
        .set_meta("store.schema_version", b"\x63\0\0\0")
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument { .. }), "{err}");
    assert!(store.meta("store.schema_version").unwrap().is_some());
}

#[test]
fn the_document_cache_is_bounded_and_never_stale() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        document_cache_capacity: 3,
        ..create()
    };
    let store = Store::open(dir.path(), &options).unwrap();
    let mut rng = Rng::new(9);
    let mut docs: Vec<AutoCommit> = (0..10)
        .map(|n| kit::case_doc(&mut rng, &case_id(n)))
        .collect();
    for (n, doc) in docs.iter_mut().enumerate() {
        store
            .put_changes(
                &case_id(n as u64),
                &doc.save(),
                &meta(n as u64, Stage::Draft),
            )
            .unwrap();
    }
    for round in 0..3 {
        for (n, doc) in docs.iter_mut().enumerate() {
            if (n + round) % 2 == 0 {
                let bytes = kit::update_doc(doc, &mut rng);
                store
                    .put_changes(&case_id(n as u64), &bytes, &meta(n as u64, Stage::Draft))
                    .unwrap();
            }
            let loaded = store.load_case(&case_id(n as u64)).unwrap().unwrap();
            assert_eq!(loaded.get_heads(), doc.get_heads());
        }
    }
}

#[test]
fn concurrent_readers_see_committed_states_only() {
    let (_dir, store) = new_store();
    let store = std::sync::Arc::new(store);
    let mut rng = Rng::new(10);
    let case = case_id(10);
    let mut doc = kit::case_doc(&mut rng, &case);
    store
        .put_changes(&case, &doc.save(), &meta(10, Stage::Draft))
        .unwrap();
    let reader = {
        let store = store.clone();
        let case = case.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                let info_before = store.case_info(&case).unwrap().unwrap().seq;
                let loaded = store.load_case(&case).unwrap().unwrap();
                let info_after = store.case_info(&case).unwrap().unwrap().seq;
                // The loaded heads are a committed state between the two reads.
                let changes = store
                    .changes_since(info_before.saturating_sub(1), 1000)
                    .unwrap();
                let _ = (info_after, changes);
                assert!(!loaded.get_heads().is_empty());
            }
        })
    };
    for _ in 0..100 {
        let bytes = kit::update_doc(&mut doc, &mut rng);
        store
            .put_changes(&case, &bytes, &meta(10, Stage::Draft))
            .unwrap();
    }
    reader.join().unwrap();
    assert_eq!(
        store.load_case(&case).unwrap().unwrap().get_heads(),
        doc.get_heads()
    );
    let reopened_heads = store.case_info(&case).unwrap().unwrap().heads;
    assert_eq!(reopened_heads, doc.get_heads());
}

#[test]
fn a_loaded_save_is_stored_as_it_came_and_merged_into_a_held_case() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(7);
    let case = case_id(7);
    let mut doc = kit::case_doc(&mut rng, &case);
    let saved = doc.save();
    let w = store
        .write(|tx| tx.put_loaded_save(&case, &saved, doc.get_heads(), &meta(7, Stage::Received)))
        .unwrap();
    assert!(w.changed);
    assert_eq!(w.heads, doc.get_heads());
    // Kept as the bytes it came as; read back from disk (nothing was cached).
    assert_eq!(store.case_bytes(&case).unwrap().unwrap(), saved);
    let loaded = store.load_case(&case).unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    // The same case again, with more: loaded and merged like any document.
    kit::update_doc(&mut doc, &mut rng);
    let newer = doc.save();
    let w = store
        .write(|tx| tx.put_loaded_save(&case, &newer, doc.get_heads(), &meta(7, Stage::Received)))
        .unwrap();
    assert!(w.changed);
    assert_eq!(w.heads, doc.get_heads());
    let loaded = store.load_case(&case).unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
}
