//! The replica's material side of `SyncStore`: references recorded with every case
//! write, checked material writes, ranged reads, and what is still missing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::CaseId;
use tongban_replica::Replica;
use tongban_store::MaterialHash;
use tongban_sync::route::CaseRoute;
use tongban_sync::store::{MaterialPart, StoreWrite, SyncStore};

fn hex(hash: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(hash)
}

/// A document that lists one material, as the case schema lays it out.
fn doc_listing(case: &CaseId, hash: &[u8; 32], size: u64) -> automerge::Automerge {
    let mut doc = AutoCommit::new();
    doc.put(automerge::ROOT, "case_id", case.as_str()).unwrap();
    let materials = doc
        .put_object(automerge::ROOT, "materials", ObjType::Map)
        .unwrap();
    let entry = doc
        .put_object(&materials, format!("id_card:{}", hex(hash)), ObjType::Map)
        .unwrap();
    doc.put(&entry, "hash", hex(hash)).unwrap();
    doc.put(&entry, "size", size).unwrap();
    doc.commit();
    doc.document().clone()
}

#[test]
fn materials_are_referenced_checked_stored_and_read_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let calendar = Arc::new(Calendar::shipped().unwrap_or_default());
    let mut replica = Replica::open(dir.path(), calendar, [5; 32], b"").unwrap();
    let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let case = CaseId::new("440106001", date, [1, 2, 3, 4]).unwrap();
    let route = CaseRoute::new(
        DivisionCode::parse("440106001").unwrap(),
        DivisionCode::parse("130102001").unwrap(),
    )
    .unwrap();
    let scan: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let hash = *blake3::hash(&scan).as_bytes();
    replica
        .commit(vec![StoreWrite::case(
            case.clone(),
            route,
            doc_listing(&case, &hash, scan.len() as u64),
            None,
        )])
        .unwrap();
    // The case write recorded the reference; the scan is still to come.
    assert_eq!(
        replica.missing_materials().unwrap(),
        vec![(case.clone(), hash)]
    );
    assert!(!replica.has_material(&hash).unwrap());
    assert_eq!(replica.read_material(&hash, 0, 10).unwrap(), None);

    // Bytes that hash to another address abort the commit: nothing is kept.
    let mut wrong = scan.clone();
    wrong[0] ^= 1;
    let err = replica
        .commit(vec![StoreWrite::Material {
            case: case.clone(),
            hash,
            bytes: wrong.clone(),
        }])
        .unwrap_err();
    assert!(err.to_string().contains("hash to"), "{err}");
    assert!(!replica.has_material(&hash).unwrap());
    assert!(
        !replica
            .has_material(blake3::hash(&wrong).as_bytes())
            .unwrap()
    );

    replica
        .commit(vec![StoreWrite::Material {
            case: case.clone(),
            hash,
            bytes: scan.clone(),
        }])
        .unwrap();
    assert!(replica.missing_materials().unwrap().is_empty());
    assert_eq!(
        replica.material_len(&hash).unwrap(),
        Some(scan.len() as u64)
    );
    let total = scan.len() as u64;
    assert_eq!(
        replica.read_material(&hash, 1 << 20, 1 << 20).unwrap(),
        Some(MaterialPart {
            total_len: total,
            data: scan[1 << 20..].to_vec()
        })
    );
    assert_eq!(
        replica.read_material(&hash, total, 1 << 20).unwrap(),
        Some(MaterialPart {
            total_len: total,
            data: Vec::new()
        })
    );
    assert_eq!(
        replica.inner().case_materials(&case).unwrap(),
        vec![MaterialHash(hash)]
    );

    // Removed under a retention rule: not missing, not to be fetched again.
    assert!(!replica.material_removed(&hash).unwrap());
    replica
        .inner()
        .detach_material(&case, &MaterialHash(hash))
        .unwrap();
    replica
        .inner()
        .remove_material(&MaterialHash(hash), "retention rule R-7")
        .unwrap();
    assert!(replica.material_removed(&hash).unwrap());
    replica
        .commit(vec![StoreWrite::case(
            case.clone(),
            route,
            doc_listing(&case, &hash, total),
            None,
        )])
        .unwrap();
    assert!(replica.missing_materials().unwrap().is_empty());
}

#[test]
fn a_peer_cursor_is_one_record() {
    use tongban_domain::ids::OfficeId;
    use tongban_sync::wire::Cursor;

    let dir = tempfile::tempdir().unwrap();
    let calendar = Arc::new(Calendar::shipped().unwrap_or_default());
    let mut replica = Replica::open(dir.path(), calendar, [5; 32], b"").unwrap();
    let peer = OfficeId::parse("hub-130102").unwrap();
    assert_eq!(replica.cursor(&peer).unwrap(), None);
    for seq in [7, 9] {
        let cursor = Cursor {
            incarnation: [3; 16],
            seq,
        };
        replica
            .commit(vec![StoreWrite::Cursor {
                peer: peer.clone(),
                cursor,
            }])
            .unwrap();
        assert_eq!(replica.cursor(&peer).unwrap(), Some(cursor));
    }
    // The incarnation and the sequence number live together in the meta record;
    // the store's sequence-only peer cursor table is not a second copy.
    assert_eq!(replica.store().peer_cursor(&peer).unwrap(), None);
}
