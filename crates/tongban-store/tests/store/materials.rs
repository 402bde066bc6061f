//! Materials: streaming, deduplication, integrity, references and retention.

use std::io::{self, Read};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tongban_domain::stage::Stage;
use tongban_store::{CHUNK_SIZE, DB_FILE_NAME, MaterialHash, Store, StoreError};

use crate::kit::{self, Rng, case_id, meta};
use crate::{create, open};

const CHUNKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("material_chunks");

fn read_all(store: &Store, hash: &MaterialHash) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.open_material(hash).unwrap().read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn materials_stream_in_chunks_and_deduplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &create()).unwrap();
    let mut rng = Rng::new(20);
    let content = rng.bytes(2 * CHUNK_SIZE + 12_345);
    let put = store.put_material(content.as_slice()).unwrap();
    assert!(put.newly_stored);
    assert_eq!(put.len, content.len() as u64);
    assert_eq!(put.hash.0, *blake3::hash(&content).as_bytes());
    assert_eq!(
        store.material_len(&put.hash).unwrap(),
        Some(content.len() as u64)
    );
    assert_eq!(read_all(&store, &put.hash).unwrap(), content);
    // Reading in odd-sized pieces gives the same bytes.
    let mut reader = store.open_material(&put.hash).unwrap();
    let mut pieces = Vec::new();
    let mut buf = [0u8; 7777];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        pieces.extend_from_slice(&buf[..n]);
    }
    assert_eq!(pieces, content);

    let size_before = std::fs::metadata(dir.path().join(DB_FILE_NAME))
        .unwrap()
        .len();
    let again = store.put_material(content.as_slice()).unwrap();
    assert_eq!(again.hash, put.hash);
    assert!(!again.newly_stored);
    assert_eq!(store.stats().unwrap().materials, 1);
    let size_after = std::fs::metadata(dir.path().join(DB_FILE_NAME))
        .unwrap()
        .len();
    assert_eq!(size_before, size_after, "a duplicate stores nothing new");

    // Exactly one chunk, and empty.
    let exact = rng.bytes(CHUNK_SIZE);
    let put_exact = store.put_material(exact.as_slice()).unwrap();
    assert_eq!(read_all(&store, &put_exact.hash).unwrap(), exact);
    let empty = store.put_material(io::empty()).unwrap();
    assert_eq!(empty.len, 0);
    assert!(read_all(&store, &empty.hash).unwrap().is_empty());
    assert!(store.has_material(&empty.hash).unwrap());
}

#[test]
fn a_damaged_chunk_is_an_error_never_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(21);
    let content = rng.bytes(3 * CHUNK_SIZE / 2);
    let hash = {
        let store = Store::open(dir.path(), &create()).unwrap();
        store.put_material(content.as_slice()).unwrap().hash
    };
    {
        // Flip one byte of the second chunk's data, keeping its stored checksum.
        let db = redb::Database::open(dir.path().join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(CHUNKS).unwrap();
            let key = {
                let mut keys = table.iter().unwrap().map(|r| r.unwrap().0.value());
                keys.nth(1).unwrap()
            };
            let mut value = table.get(key).unwrap().unwrap().value().to_vec();
            value[32 + 1000] ^= 0x40;
            table.insert(key, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    let mut reader = store.open_material(&hash).unwrap();
    let mut delivered = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("a damaged material was read to the end"),
            Ok(n) => delivered.extend_from_slice(&buf[..n]),
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.into_inner().unwrap().downcast::<StoreError>().unwrap();
    assert!(
        matches!(*inner, StoreError::CorruptMaterial { chunk: 1, .. }),
        "{inner}"
    );
    assert!(inner.to_string().contains(&hash.to_hex()), "{inner}");
    // Only the intact first chunk was delivered.
    assert_eq!(delivered, content[..CHUNK_SIZE]);
}

#[test]
fn removal_only_by_explicit_retention_and_never_while_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &create()).unwrap();
    let mut rng = Rng::new(22);
    let case = case_id(22);
    let scan = rng.bytes(50_000);
    let hash = store.put_material(scan.as_slice()).unwrap().hash;
    let err = store.attach_material(&case, &hash).unwrap_err();
    assert!(matches!(err, StoreError::UnknownCase { .. }), "{err}");
    store
        .put_changes(
            &case,
            &kit::case_doc(&mut rng, &case).save(),
            &meta(22, Stage::Accepted),
        )
        .unwrap();
    store.attach_material(&case, &hash).unwrap();
    // A reference to a scan that has not arrived yet is allowed.
    let pending = MaterialHash([9; 32]);
    store.attach_material(&case, &pending).unwrap();
    assert_eq!(store.case_materials(&case).unwrap().len(), 2);
    assert_eq!(store.material_cases(&hash).unwrap(), vec![case.clone()]);

    let err = store
        .remove_material(&hash, "retention: 30 years after termination")
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MaterialInUse { n_cases: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(case.as_str()));
    assert_eq!(read_all(&store, &hash).unwrap(), scan);
    let err = store.remove_material(&hash, " ").unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument { .. }));

    assert!(store.detach_material(&case, &hash).unwrap());
    assert!(!store.detach_material(&case, &hash).unwrap());
    // Detaching alone removes nothing.
    assert!(store.has_material(&hash).unwrap());
    let removal = store.remove_material(&hash, "retention rule R-7").unwrap();
    assert_eq!(removal.len, 50_000);
    assert!(!store.has_material(&hash).unwrap());
    assert_eq!(
        store.material_removal(&hash).unwrap().unwrap().reason,
        "retention rule R-7"
    );
    assert!(matches!(
        store.open_material(&hash).unwrap_err(),
        StoreError::UnknownMaterial { .. }
    ));
    assert!(matches!(
        store.remove_material(&hash, "again").unwrap_err(),
        StoreError::UnknownMaterial { .. }
    ));
    // Stored again, it is back and its removal record is gone.
    assert!(store.put_material(scan.as_slice()).unwrap().newly_stored);
    assert!(store.material_removal(&hash).unwrap().is_none());
}

struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("scanner unplugged"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_source_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &create()).unwrap();
    let err = store
        .put_material(FailingReader {
            left: CHUNK_SIZE + 10,
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::MaterialSource { .. }), "{err}");
    assert_eq!(store.stats().unwrap().materials, 0);
    // In a group transaction the failure aborts the whole transaction, even when
    // the caller ignores it.
    let mut rng = Rng::new(23);
    let case = case_id(23);
    let doc = kit::case_doc(&mut rng, &case).save();
    let err = store
        .write(|tx| {
            tx.put_changes(&case, &doc, &meta(23, Stage::Draft))?;
            let _ignored = tx.put_material(FailingReader { left: 5 });
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted { .. }), "{err}");
    assert!(store.case_info(&case).unwrap().is_none());
    let db = store.stats().unwrap();
    assert_eq!((db.cases, db.materials), (0, 0));
    drop(store);
    let raw = redb::Database::open(dir.path().join(DB_FILE_NAME)).unwrap();
    let txn = raw.begin_read().unwrap();
    assert_eq!(txn.open_table(CHUNKS).unwrap().iter().unwrap().count(), 0);
}

#[test]
fn a_large_material_is_streamed_in_bounded_memory() {
    // In a child process, so that other tests do not disturb its resident memory.
    let root = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tongban-store-crashwriter"))
        .arg("material-rss")
        .arg(root.path())
        .arg("96")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let figures: Vec<u64> = text
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let (before, after_put, after_read) = (figures[0], figures[1], figures[2]);
    eprintln!(
        "96 MiB material: RSS {before} KiB before, {after_put} after storing, {after_read} after reading"
    );
    // A 16 MiB page cache, 1 MiB buffers: growth stays far below the 96 MiB stored.
    assert!(after_put - before < 48 * 1024, "{text}");
    assert!(after_read - before < 48 * 1024, "{text}");
}

#[test]
fn ranges_read_only_their_chunks_and_check_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(23);
    let content = rng.bytes(2 * CHUNK_SIZE + 777);
    let len = content.len() as u64;
    let hash = {
        let store = Store::open(dir.path(), &create()).unwrap();
        let hash = store.put_material(content.as_slice()).unwrap().hash;
        let range = |offset: u64, max: usize| {
            store
                .read_material_range(&hash, offset, max)
                .unwrap()
                .unwrap()
        };
        // Chunk-aligned, as the sync protocol asks.
        assert_eq!(range(0, CHUNK_SIZE), (len, content[..CHUNK_SIZE].to_vec()));
        assert_eq!(
            range(2 * CHUNK_SIZE as u64, CHUNK_SIZE),
            (len, content[2 * CHUNK_SIZE..].to_vec())
        );
        // Across a chunk boundary, and past the end.
        let at = CHUNK_SIZE as u64 - 10;
        assert_eq!(range(at, 30).1, content[at as usize..at as usize + 30]);
        assert_eq!(range(len - 5, 100).1, content[content.len() - 5..]);
        assert_eq!(range(len, 100), (len, Vec::new()));
        assert_eq!(range(u64::MAX, usize::MAX), (len, Vec::new()));
        assert_eq!(range(0, usize::MAX).1, content);
        assert!(
            store
                .read_material_range(&MaterialHash([3; 32]), 0, 10)
                .unwrap()
                .is_none()
        );
        hash
    };
    {
        // Damage the middle chunk: ranges over it fail, others still read.
        let db = redb::Database::open(dir.path().join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(CHUNKS).unwrap();
            let key = {
                let mut keys = table.iter().unwrap().map(|r| r.unwrap().0.value());
                keys.nth(1).unwrap()
            };
            let mut value = table.get(key).unwrap().unwrap().value().to_vec();
            value[32 + 5] ^= 1;
            table.insert(key, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    let err = store
        .read_material_range(&hash, CHUNK_SIZE as u64, CHUNK_SIZE)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptMaterial { chunk: 1, .. }),
        "{err}"
    );
    assert_eq!(
        store.read_material_range(&hash, 0, 100).unwrap().unwrap().1,
        content[..100]
    );
}

#[test]
fn missing_materials_are_references_without_content_or_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &create()).unwrap();
    let mut rng = Rng::new(24);
    let (a, b) = (case_id(24), case_id(25));
    for case in [&a, &b] {
        store
            .put_changes(
                case,
                &kit::case_doc(&mut rng, case).save(),
                &meta(24, Stage::Accepted),
            )
            .unwrap();
    }
    let held = store.put_material(&b"held scan"[..]).unwrap().hash;
    let removed = store.put_material(&b"old scan"[..]).unwrap().hash;
    store
        .remove_material(&removed, "retention rule R-7")
        .unwrap();
    let pending = MaterialHash(*blake3::hash(b"pending scan").as_bytes());
    for (case, hash) in [(&a, held), (&a, pending), (&b, pending), (&b, removed)] {
        store.attach_material(case, &hash).unwrap();
    }
    assert_eq!(
        store.missing_materials().unwrap(),
        vec![(a.clone(), pending), (b.clone(), pending)]
    );
    store.put_material(&b"pending scan"[..]).unwrap();
    assert!(store.missing_materials().unwrap().is_empty());
}
