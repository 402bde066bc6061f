//! Backup files: a consistent snapshot of the store in one file with per-record
//! and whole-file BLAKE3 checksums; verification end to end; restore.
//!
//! The format is specified in docs/store-format.md ("Backup file"). In short:
//!
//! ```text
//! file   := MAGIC record*            (the last record is End, then end of file)
//! MAGIC  := "TONGBAN\0BACKUP\0\0"     (16 bytes)
//! record := tag:u8  len:u32le  payload[len]  blake3(tag ‖ len ‖ payload)[32]
//! ```
//!
//! Records come in a fixed order: Header, Meta*, (Material Chunk*)*, Removal*,
//! (Case DocBase DocIncr* CaseMaterial*)*, PeerCursor*, SyncState*, End. The End
//! record carries the counts and the BLAKE3 of every byte before it. Derived tables
//! (change log, indexes, compaction queue, the reverse material references) are not
//! in the file: restore rebuilds them from the case records.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use automerge::{Automerge, ChangeHash};
use redb::{ReadableTable, WriteTransaction};
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};

use crate::codec::{self, CaseRecord, Dec, DecodeError, Enc, MaterialRecord};
use crate::error::{BackupError, Fail, R, StoreError};
use crate::store::{OpenPurpose, Store, row};
use crate::tables::*;
use crate::types::{BackupSummary, StoreOptions};
use crate::write::{insert_chunk, next_blob, reindex};

/// The first 16 bytes of every backup file.
pub const BACKUP_MAGIC: &[u8; 16] = b"TONGBAN\0BACKUP\0\0";
/// The backup format version this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;

/// Largest payload a record may declare: a chunk, or a large document.
const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;
/// Restore commits after this many payload bytes.
const RESTORE_COMMIT_BYTES: usize = 32 * 1024 * 1024;

mod tag {
    pub const HEADER: u8 = 1;
    pub const META: u8 = 2;
    pub const MATERIAL: u8 = 3;
    pub const CHUNK: u8 = 4;
    pub const REMOVAL: u8 = 5;
    pub const CASE: u8 = 6;
    pub const DOC_BASE: u8 = 7;
    pub const DOC_INCR: u8 = 8;
    pub const CASE_MATERIAL: u8 = 9;
    pub const PEER_CURSOR: u8 = 10;
    pub const SYNC_STATE: u8 = 11;
    pub const ATTESTATION: u8 = 12;
    pub const END: u8 = 255;
}

/// A decoded record.
#[derive(Debug)]
enum Record {
    Header {
        format: u32,
        schema: u32,
        created_ms: i64,
        latest_seq: u64,
    },
    Meta {
        key: String,
        value: Vec<u8>,
    },
    Material {
        hash: [u8; 32],
        len: u64,
        n_chunks: u32,
        stored_ms: i64,
    },
    Chunk {
        idx: u32,
        data: Vec<u8>,
    },
    Removal {
        hash: [u8; 32],
        len: u64,
        at_ms: i64,
        reason: String,
    },
    Case {
        case: CaseId,
        record: CaseRecord,
    },
    DocBase {
        bytes: Vec<u8>,
    },
    DocIncr {
        seq: u64,
        bytes: Vec<u8>,
    },
    CaseMaterial {
        hash: [u8; 32],
    },
    PeerCursor {
        peer: OfficeId,
        seq: u64,
    },
    SyncState {
        peer: OfficeId,
        case: CaseId,
        state: Vec<u8>,
    },
    /// An attestation held (`attestations` row), with its log seq.
    Attestation {
        case: CaseId,
        office: String,
        row: codec::AttestationRow,
    },
    End {
        records: u64,
        cases: u64,
        materials: u64,
        file_hash: [u8; 32],
    },
}

impl Record {
    /// The position of the record kind in the fixed order of the file.
    fn phase(&self) -> u8 {
        match self {
            Record::Header { .. } => 0,
            Record::Meta { .. } => 1,
            Record::Material { .. } | Record::Chunk { .. } => 2,
            Record::Removal { .. } => 3,
            Record::Case { .. }
            | Record::DocBase { .. }
            | Record::DocIncr { .. }
            | Record::CaseMaterial { .. } => 4,
            Record::PeerCursor { .. } => 5,
            Record::SyncState { .. } | Record::Attestation { .. } => 6,
            Record::End { .. } => 7,
        }
    }

    fn decode(tag: u8, payload: &[u8]) -> Result<Record, DecodeError> {
        let mut dec = Dec::new(payload);
        let record = match tag {
            tag::HEADER => Record::Header {
                format: dec.u32("format version")?,
                schema: dec.u32("schema version")?,
                created_ms: dec.i64("created at")?,
                latest_seq: dec.u64("latest seq")?,
            },
            tag::META => Record::Meta {
                key: dec.str("meta key")?.to_string(),
                value: dec.bytes("meta value")?.to_vec(),
            },
            tag::MATERIAL => Record::Material {
                hash: dec.hash32("material hash")?,
                len: dec.u64("material length")?,
                n_chunks: dec.u32("chunk count")?,
                stored_ms: dec.i64("stored at")?,
            },
            tag::CHUNK => Record::Chunk {
                idx: dec.u32("chunk index")?,
                data: dec.bytes("chunk")?.to_vec(),
            },
            tag::REMOVAL => Record::Removal {
                hash: dec.hash32("material hash")?,
                len: dec.u64("material length")?,
                at_ms: dec.i64("removed at")?,
                reason: dec.str("reason")?.to_string(),
            },
            tag::CASE => Record::Case {
                case: dec.case_id()?,
                record: CaseRecord::decode(dec.bytes("case record")?)?,
            },
            tag::DOC_BASE => Record::DocBase {
                bytes: dec.bytes("full save")?.to_vec(),
            },
            tag::DOC_INCR => Record::DocIncr {
                seq: dec.u64("increment seq")?,
                bytes: dec.bytes("increment")?.to_vec(),
            },
            tag::CASE_MATERIAL => Record::CaseMaterial {
                hash: dec.hash32("material hash")?,
            },
            tag::PEER_CURSOR => Record::PeerCursor {
                peer: OfficeId::parse(dec.str("peer")?).map_err(|e| DecodeError(e.to_string()))?,
                seq: dec.u64("cursor")?,
            },
            tag::SYNC_STATE => Record::SyncState {
                peer: OfficeId::parse(dec.str("peer")?).map_err(|e| DecodeError(e.to_string()))?,
                case: dec.case_id()?,
                state: dec.bytes("sync state")?.to_vec(),
            },
            tag::ATTESTATION => {
                let case = dec.case_id()?;
                let office = dec.str("office")?.to_string();
                let row = codec::AttestationRow::decode(dec.bytes("attestation row")?)?;
                Record::Attestation { case, office, row }
            }
            tag::END => Record::End {
                records: dec.u64("record count")?,
                cases: dec.u64("case count")?,
                materials: dec.u64("material count")?,
                file_hash: dec.hash32("file hash")?,
            },
            other => return Err(DecodeError(format!("unknown record tag {other}"))),
        };
        dec.finish()?;
        Ok(record)
    }
}

/// Writes records, keeping the running whole-file hash.
struct RecordWriter<'p> {
    out: BufWriter<File>,
    path: PathBuf,
    whole: blake3::Hasher,
    offset: u64,
    records: u64,
    /// Told the bytes written after each record, and the database's size
    /// (what a backup about equals).
    progress: Progress<'p>,
    expected: u64,
}

impl RecordWriter<'_> {
    fn io(&self, source: io::Error) -> BackupError {
        BackupError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.whole.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, tag: u8, payload: &[u8]) -> Result<(), BackupError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= MAX_PAYLOAD)
            .ok_or_else(|| {
                self.io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a record of {} bytes exceeds the format's limit",
                        payload.len()
                    ),
                ))
            })?;
        let head = [&[tag][..], &len.to_le_bytes()].concat();
        let mut check = blake3::Hasher::new();
        check.update(&head).update(payload);
        let checksum = *check.finalize().as_bytes();
        self.raw(&head)?;
        self.raw(payload)?;
        self.raw(&checksum)?;
        self.records += 1;
        (self.progress)(self.offset, self.expected.max(self.offset));
        Ok(())
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Flushes a directory entry (the rename of the finished backup) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store {
    /// Writes a consistent snapshot of the whole store to `out`, while the store
    /// stays in use: every table is read from one read transaction. The file is
    /// written beside `out` under a temporary name, flushed, then renamed, so `out`
    /// is either the complete backup or absent. A damaged material chunk in the
    /// source fails the backup rather than being copied.
    pub fn backup_to(&self, out: impl AsRef<Path>) -> Result<BackupSummary, BackupError> {
        self.backup_to_with(out, &|_, _| {})
    }

    /// [`Store::backup_to`], telling `progress` the bytes written and about
    /// how many there will be (the database file's size).
    pub fn backup_to_with(
        &self,
        out: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupSummary, BackupError> {
        let out = out.as_ref();
        let file_name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| BackupError::Io {
                path: out.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A unique temporary name (tempfile makes it 0600: a backup holds every
        // applicant's personal data), and a rename that never replaces a file:
        // an existing `out` — another backup, or a live store — is left alone.
        if fs::symlink_metadata(out).is_ok() {
            return Err(BackupError::Io {
                path: out.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the file exists; a backup never overwrites a file",
                ),
            });
        }
        let named = tempfile::Builder::new()
            .prefix(&format!(".{file_name}.partial-"))
            .tempfile_in(&parent)
            .map_err(io_at(&parent))?;
        let tmp = named.path().to_path_buf();
        let file = named.reopen().map_err(io_at(&tmp))?;
        let mut writer = RecordWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: tmp.clone(),
            whole: blake3::Hasher::new(),
            offset: 0,
            records: 0,
            progress,
            expected: fs::metadata(&self.db_file).map(|m| m.len()).unwrap_or(0),
        };
        let result = self.write_backup(&mut writer);
        let finished = result.and_then(|summary| {
            let file = writer.out.into_inner().map_err(|e| BackupError::Io {
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io_at(&tmp))?;
            drop(file);
            named.persist_noclobber(out).map_err(|e| BackupError::Io {
                path: out.to_path_buf(),
                source: e.error,
            })?;
            sync_dir(&parent).map_err(io_at(&parent))?;
            Ok(summary)
        });
        let summary = finished?;
        tracing::info!(
            cases = summary.cases,
            materials = summary.materials,
            bytes = summary.file_bytes,
            "backup written"
        );
        Ok(summary)
    }

    fn write_backup(&self, w: &mut RecordWriter<'_>) -> Result<BackupSummary, BackupError> {
        let store_err = |f: Fail| BackupError::Store(self.fail(f));
        let txn = self.begin_read().map_err(store_err)?;
        macro_rules! open {
            ($table:expr) => {
                txn.open_table($table).map_err(|e| store_err(e.into()))?
            };
        }
        let changes = open!(CHANGES);
        let latest_seq = changes
            .last()
            .map_err(|e| store_err(e.into()))?
            .map(|(k, _)| k.value())
            .unwrap_or(0);
        let created_ms = Timestamp::now().millis();
        let mut summary = BackupSummary {
            format_version: BACKUP_FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            created_ms,
            latest_seq,
            records: 0,
            cases: 0,
            increments: 0,
            materials: 0,
            material_bytes: 0,
            references: 0,
            peer_cursors: 0,
            sync_states: 0,
            attestations: 0,
            file_bytes: 0,
        };
        w.raw(BACKUP_MAGIC)?;
        let mut enc = Enc::new();
        enc.u32(BACKUP_FORMAT_VERSION)
            .u32(SCHEMA_VERSION)
            .i64(created_ms)
            .u64(latest_seq);
        w.record(tag::HEADER, &enc.0)?;

        // A redb iteration error is a storage error of the source store.
        macro_rules! next {
            ($item:expr) => {
                $item.map_err(|e| store_err(e.into()))?
            };
        }

        let meta = open!(META);
        for item in next!(meta.iter()) {
            let (key, value) = next!(item);
            if key.value().starts_with(RESERVED_META_PREFIX) {
                continue;
            }
            let mut enc = Enc::new();
            enc.str(key.value()).bytes(value.value());
            w.record(tag::META, &enc.0)?;
        }

        let materials = open!(MATERIALS);
        let chunks = open!(MATERIAL_CHUNKS);
        for item in next!(materials.iter()) {
            let (hash, value) = next!(item);
            let hash = hash.value();
            let display = crate::types::MaterialHash(hash);
            let record = row(
                &self.db_file,
                "materials",
                display,
                MaterialRecord::decode(value.value()),
            )
            .map_err(store_err)?;
            let mut enc = Enc::new();
            enc.raw(&hash)
                .u64(record.len)
                .u32(record.n_chunks)
                .i64(record.stored_ms);
            w.record(tag::MATERIAL, &enc.0)?;
            for idx in 0..record.n_chunks {
                let corrupt = |detail: &str| {
                    BackupError::Store(StoreError::CorruptMaterial {
                        path: self.db_file.clone(),
                        hash: display,
                        chunk: idx,
                        detail: detail.to_string(),
                    })
                };
                let value =
                    next!(chunks.get((record.blob, idx))).ok_or_else(|| corrupt("is missing"))?;
                let bytes = value.value();
                if bytes.len() < 32 || blake3::hash(&bytes[32..]).as_bytes() != &bytes[..32] {
                    return Err(corrupt("fails its BLAKE3 check"));
                }
                let mut enc = Enc::new();
                enc.u32(idx).bytes(&bytes[32..]);
                w.record(tag::CHUNK, &enc.0)?;
            }
            summary.materials += 1;
            summary.material_bytes += record.len;
        }

        let removals = open!(MATERIAL_REMOVALS);
        for item in next!(removals.iter()) {
            let (hash, value) = next!(item);
            let hash = hash.value();
            let (len, at_ms, reason) = row(
                &self.db_file,
                "material_removals",
                crate::types::MaterialHash(hash),
                codec::decode_removal(value.value()),
            )
            .map_err(store_err)?;
            let mut enc = Enc::new();
            enc.raw(&hash).u64(len).i64(at_ms).str(&reason);
            w.record(tag::REMOVAL, &enc.0)?;
        }

        let cases = open!(CASES);
        let base = open!(DOC_BASE);
        let incr = open!(DOC_INCR);
        let refs = open!(CASE_MATERIALS);
        for item in next!(cases.iter()) {
            let (case, value) = next!(item);
            let case = case.value();
            // Decoding checks the row before it is copied.
            let record = row(
                &self.db_file,
                "cases",
                case,
                CaseRecord::decode(value.value()),
            )
            .map_err(store_err)?;
            let mut enc = Enc::new();
            enc.str(case).bytes(&record.encode());
            w.record(tag::CASE, &enc.0)?;
            match next!(base.get(case)) {
                Some(bytes) => {
                    let mut enc = Enc::new();
                    enc.bytes(bytes.value());
                    w.record(tag::DOC_BASE, &enc.0)?;
                }
                None => {
                    return Err(BackupError::Store(StoreError::CorruptRow {
                        path: self.db_file.clone(),
                        table: "doc_base",
                        key: case.to_string(),
                        detail: "the case has no full save".into(),
                    }));
                }
            }
            for item in next!(incr.range((case, 0u64)..=(case, u64::MAX))) {
                let (key, bytes) = next!(item);
                let mut enc = Enc::new();
                enc.u64(key.value().1).bytes(bytes.value());
                w.record(tag::DOC_INCR, &enc.0)?;
                summary.increments += 1;
            }
            for item in next!(refs.range((case, [0u8; 32])..=(case, [0xff; 32]))) {
                let (key, _) = next!(item);
                w.record(tag::CASE_MATERIAL, &key.value().1)?;
                summary.references += 1;
            }
            summary.cases += 1;
        }

        let cursors = open!(PEER_CURSORS);
        for item in next!(cursors.iter()) {
            let (peer, seq) = next!(item);
            let mut enc = Enc::new();
            enc.str(peer.value()).u64(seq.value());
            w.record(tag::PEER_CURSOR, &enc.0)?;
            summary.peer_cursors += 1;
        }
        let states = open!(SYNC_STATES);
        for item in next!(states.iter()) {
            let (key, state) = next!(item);
            let (peer, case) = key.value();
            let mut enc = Enc::new();
            enc.str(peer).str(case).bytes(state.value());
            w.record(tag::SYNC_STATE, &enc.0)?;
            summary.sync_states += 1;
        }
        let attestations = open!(ATTESTATIONS);
        for item in next!(attestations.iter()) {
            let (key, value) = next!(item);
            let (case, office) = key.value();
            let mut enc = Enc::new();
            enc.str(case).str(office).bytes(value.value());
            w.record(tag::ATTESTATION, &enc.0)?;
            summary.attestations += 1;
        }

        let file_hash = *w.whole.finalize().as_bytes();
        let mut enc = Enc::new();
        enc.u64(w.records)
            .u64(summary.cases)
            .u64(summary.materials)
            .raw(&file_hash);
        w.record(tag::END, &enc.0)?;
        summary.records = w.records;
        summary.file_bytes = w.offset;
        Ok(summary)
    }
}

/// Reads and checks records one by one.
struct RecordReader<'p> {
    input: BufReader<File>,
    path: &'p Path,
    offset: u64,
    index: u64,
    whole: blake3::Hasher,
}

impl<'p> RecordReader<'p> {
    fn open(path: &'p Path) -> Result<RecordReader<'p>, BackupError> {
        let file = File::open(path).map_err(io_at(path))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 16];
        let mut filled = 0;
        while filled < magic.len() {
            match input.read(&mut magic[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_at(path)(e)),
            }
        }
        if filled < magic.len() || &magic != BACKUP_MAGIC {
            return Err(BackupError::NotABackup {
                path: path.to_path_buf(),
                detail: "the file does not start with the tongban backup magic".into(),
            });
        }
        let mut whole = blake3::Hasher::new();
        whole.update(&magic);
        Ok(RecordReader {
            input,
            path,
            offset: 16,
            index: 0,
            whole,
        })
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> BackupError {
        BackupError::Corrupt {
            path: self.path.to_path_buf(),
            record: self.index,
            offset,
            detail: detail.into(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], start: u64, what: &str) -> Result<(), BackupError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt(start, format!("the file ends inside the record's {what}"))
            } else {
                io_at(self.path)(e)
            }
        })
    }

    /// The next record with its offset and index. An End record is checked
    /// against the whole-file hash and must be followed by the end of the file.
    fn next(&mut self) -> Result<(u64, u64, Record), BackupError> {
        let start = self.offset;
        let mut head = [0u8; 5];
        let mut got = 0;
        while got < head.len() {
            match self.input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_at(self.path)(e)),
            }
        }
        if got == 0 {
            return Err(self.corrupt(start, "the file ends without an end record (truncated)"));
        }
        if got < head.len() {
            return Err(self.corrupt(start, "the file ends inside a record header (truncated)"));
        }
        let tag = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_PAYLOAD {
            return Err(self.corrupt(
                start,
                format!("record declares {len} bytes, more than the format allows"),
            ));
        }
        let mut payload = vec![0u8; len as usize];
        self.read_exact(&mut payload, start, "payload")?;
        let mut checksum = [0u8; 32];
        self.read_exact(&mut checksum, start, "checksum")?;
        let mut check = blake3::Hasher::new();
        check.update(&head).update(&payload);
        if check.finalize().as_bytes() != &checksum {
            return Err(self.corrupt(start, "record checksum mismatch (the record is damaged)"));
        }
        let record = Record::decode(tag, &payload).map_err(|e| self.corrupt(start, e.0))?;
        if let Record::End { file_hash, .. } = &record {
            if self.whole.finalize().as_bytes() != file_hash {
                return Err(self.corrupt(start, "whole-file checksum mismatch"));
            }
            let mut extra = [0u8; 1];
            match self.input.read(&mut extra) {
                Ok(0) => {}
                Ok(_) => return Err(self.corrupt(start, "bytes follow the end record")),
                Err(e) => return Err(io_at(self.path)(e)),
            }
        } else {
            self.whole.update(&head).update(&payload).update(&checksum);
        }
        let index = self.index;
        self.index += 1;
        self.offset += 5 + u64::from(len) + 32;
        Ok((start, index, record))
    }
}

/// The material being checked.
struct MaterialCheck {
    hash: [u8; 32],
    len: u64,
    n_chunks: u32,
    next_idx: u32,
    bytes: u64,
    hasher: blake3::Hasher,
}

/// The case being checked: its document is loaded when its group ends.
struct CaseCheck {
    case: CaseId,
    record: CaseRecord,
    /// The full save followed by the increments, loaded at the end of the group.
    saves: Option<Vec<u8>>,
    increments: u32,
    last_incr_seq: u64,
}

/// Checks the sequence of records: order, counts, document loads, material hashes.
struct Checker {
    phase: u8,
    summary: BackupSummary,
    material: Option<MaterialCheck>,
    case: Option<CaseCheck>,
    last_case: Option<String>,
    seqs: HashSet<u64>,
    material_hashes: HashSet<[u8; 32]>,
    ended: bool,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            phase: 0,
            summary: BackupSummary {
                format_version: 0,
                schema_version: 0,
                created_ms: 0,
                latest_seq: 0,
                records: 0,
                cases: 0,
                increments: 0,
                materials: 0,
                material_bytes: 0,
                references: 0,
                peer_cursors: 0,
                sync_states: 0,
                attestations: 0,
                file_bytes: 0,
            },
            material: None,
            case: None,
            last_case: None,
            seqs: HashSet::new(),
            material_hashes: HashSet::new(),
            ended: false,
        }
    }

    fn finish_material(&mut self) -> Result<(), String> {
        let Some(m) = self.material.take() else {
            return Ok(());
        };
        let hex = crate::types::hex(&m.hash);
        if m.next_idx != m.n_chunks {
            return Err(format!(
                "material {hex} has {} of its {} chunks",
                m.next_idx, m.n_chunks
            ));
        }
        if m.bytes != m.len {
            return Err(format!(
                "material {hex} has {} bytes, its record says {}",
                m.bytes, m.len
            ));
        }
        if m.hasher.finalize().as_bytes() != &m.hash {
            return Err(format!(
                "material {hex}: the content does not match its hash"
            ));
        }
        self.summary.materials += 1;
        self.summary.material_bytes += m.len;
        Ok(())
    }

    fn finish_case(&mut self) -> Result<(), String> {
        let Some(c) = self.case.take() else {
            return Ok(());
        };
        let Some(saves) = c.saves else {
            return Err(format!("case {} has no full save", c.case));
        };
        if c.increments != c.record.increments {
            return Err(format!(
                "case {} has {} increments, its record says {}",
                c.case, c.increments, c.record.increments
            ));
        }
        let doc = Automerge::load(&saves)
            .map_err(|e| format!("case {}: the document does not load: {e}", c.case))?;
        let heads: Vec<ChangeHash> = doc.get_heads();
        if heads != c.record.heads {
            return Err(format!(
                "case {}: the document loads to heads other than the recorded ones",
                c.case
            ));
        }
        self.summary.cases += 1;
        Ok(())
    }

    /// Checks one record in sequence.
    fn check(&mut self, record: &Record) -> Result<(), String> {
        if self.ended {
            return Err("a record follows the end record".into());
        }
        let phase = record.phase();
        if phase < self.phase {
            return Err("record out of order".into());
        }
        if self.phase == 0 && !matches!(record, Record::Header { .. }) {
            return Err("the first record is not a header".into());
        }
        if !matches!(record, Record::Chunk { .. }) {
            self.finish_material()?;
        }
        if !matches!(
            record,
            Record::DocBase { .. } | Record::DocIncr { .. } | Record::CaseMaterial { .. }
        ) {
            self.finish_case()?;
        }
        self.phase = phase.max(1);
        self.summary.records += 1;
        match record {
            Record::Header {
                format,
                schema,
                created_ms,
                latest_seq,
            } => {
                if self.summary.records != 1 {
                    return Err("a second header".into());
                }
                if *schema != SCHEMA_VERSION {
                    return Err(format!(
                        "store schema {schema} is not the one this build writes ({SCHEMA_VERSION})"
                    ));
                }
                self.summary.format_version = *format;
                self.summary.schema_version = *schema;
                self.summary.created_ms = *created_ms;
                self.summary.latest_seq = *latest_seq;
            }
            Record::Meta { key, .. } => {
                if key.starts_with(RESERVED_META_PREFIX) {
                    return Err(format!("meta key {key:?} is reserved"));
                }
            }
            Record::Material {
                hash,
                len,
                n_chunks,
                ..
            } => {
                if !self.material_hashes.insert(*hash) {
                    return Err("a material appears twice".into());
                }
                self.material = Some(MaterialCheck {
                    hash: *hash,
                    len: *len,
                    n_chunks: *n_chunks,
                    next_idx: 0,
                    bytes: 0,
                    hasher: blake3::Hasher::new(),
                });
            }
            Record::Chunk { idx, data } => {
                let Some(m) = self.material.as_mut() else {
                    return Err("a chunk outside a material".into());
                };
                if *idx != m.next_idx || *idx >= m.n_chunks {
                    return Err(format!(
                        "chunk {idx} where chunk {} was expected",
                        m.next_idx
                    ));
                }
                if data.len() > CHUNK_SIZE || data.is_empty() {
                    return Err(format!("chunk {idx} has {} bytes", data.len()));
                }
                m.hasher.update(data);
                m.bytes += data.len() as u64;
                m.next_idx += 1;
            }
            Record::Removal { .. } => {}
            Record::Case { case, record } => {
                if self
                    .last_case
                    .as_deref()
                    .is_some_and(|last| last >= case.as_str())
                {
                    return Err(format!("case {case} is out of order or repeated"));
                }
                if !self.seqs.insert(record.seq) {
                    return Err(format!("case {case} repeats seq {}", record.seq));
                }
                if record.seq > self.summary.latest_seq {
                    return Err(format!(
                        "case {case} has seq {} beyond the snapshot's {}",
                        record.seq, self.summary.latest_seq
                    ));
                }
                self.last_case = Some(case.as_str().to_string());
                self.case = Some(CaseCheck {
                    case: case.clone(),
                    record: record.clone(),
                    saves: None,
                    increments: 0,
                    last_incr_seq: 0,
                });
            }
            Record::DocBase { bytes } => {
                let Some(c) = self.case.as_mut() else {
                    return Err("a full save outside a case".into());
                };
                if c.saves.is_some() {
                    return Err(format!("case {} has two full saves", c.case));
                }
                c.saves = Some(bytes.clone());
            }
            Record::DocIncr { seq, bytes } => {
                let Some(c) = self.case.as_mut() else {
                    return Err("an increment outside a case".into());
                };
                let Some(saves) = c.saves.as_mut() else {
                    return Err(format!(
                        "case {}: an increment before the full save",
                        c.case
                    ));
                };
                if *seq <= c.last_incr_seq || *seq > c.record.seq {
                    return Err(format!("case {}: increment seq {seq} out of order", c.case));
                }
                saves.extend_from_slice(bytes);
                c.last_incr_seq = *seq;
                c.increments += 1;
                self.summary.increments += 1;
            }
            Record::CaseMaterial { .. } => {
                if self.case.is_none() {
                    return Err("a material reference outside a case".into());
                }
                self.summary.references += 1;
            }
            Record::PeerCursor { .. } => self.summary.peer_cursors += 1,
            Record::SyncState { .. } => self.summary.sync_states += 1,
            Record::Attestation { case, office, row } => {
                // Its change-log row must not take another's place.
                if !self.seqs.insert(row.seq) {
                    return Err(format!(
                        "the attestation of {case} by {office} repeats seq {}",
                        row.seq
                    ));
                }
                if row.seq == 0 || row.seq > self.summary.latest_seq {
                    return Err(format!(
                        "the attestation of {case} by {office} has seq {} beyond the snapshot's {}",
                        row.seq, self.summary.latest_seq
                    ));
                }
                if office.is_empty()
                    || office.len() > crate::write::MAX_SHORT_TEXT
                    || row.domicile.len() > crate::write::MAX_SHORT_TEXT
                    || row.bytes.is_empty()
                {
                    return Err(format!(
                        "the attestation of {case} by {office} is malformed"
                    ));
                }
                self.summary.attestations += 1;
            }
            Record::End {
                records,
                cases,
                materials,
                ..
            } => {
                // The end record counts the records before it.
                if *records != self.summary.records - 1
                    || *cases != self.summary.cases
                    || *materials != self.summary.materials
                {
                    return Err(format!(
                        "the end record counts {records} records, {cases} cases, {materials} materials; the file has {}, {}, {}",
                        self.summary.records - 1,
                        self.summary.cases,
                        self.summary.materials
                    ));
                }
                self.ended = true;
            }
        }
        Ok(())
    }
}

/// Runs the checker over the whole file, handing each checked record to `sink`.
/// How far a long backup operation is: bytes done of bytes in all, called
/// after each record (a progress bar's position and length).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

fn scan(
    path: &Path,
    progress: Progress<'_>,
    mut sink: impl FnMut(&Record) -> Result<(), BackupError>,
) -> Result<BackupSummary, BackupError> {
    let total = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut reader = RecordReader::open(path)?;
    let mut checker = Checker::new();
    loop {
        let (offset, index, record) = reader.next()?;
        if let Record::Header { format, .. } = &record
            && *format != BACKUP_FORMAT_VERSION
        {
            return Err(BackupError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: *format,
                supported: BACKUP_FORMAT_VERSION,
            });
        }
        checker
            .check(&record)
            .map_err(|detail| BackupError::Corrupt {
                path: path.to_path_buf(),
                record: index,
                offset,
                detail,
            })?;
        sink(&record)?;
        progress(reader.offset, total);
        if checker.ended {
            break;
        }
    }
    let mut summary = checker.summary;
    summary.file_bytes = reader.offset;
    Ok(summary)
}

/// Checks a backup file end to end: the magic, every record's checksum, the
/// order of records, that every document loads with Automerge to its recorded
/// heads, that every material's content hashes to its address, the counts and the
/// whole-file checksum. The first problem found is returned, naming the record and
/// its byte offset.
pub fn verify_backup(path: impl AsRef<Path>) -> Result<BackupSummary, BackupError> {
    verify_backup_with(path, &|_, _| {})
}

/// [`verify_backup`], telling `progress` the bytes checked of the file's.
pub fn verify_backup_with(
    path: impl AsRef<Path>,
    progress: Progress<'_>,
) -> Result<BackupSummary, BackupError> {
    scan(path.as_ref(), progress, |_| Ok(()))
}

/// Restores the backup at `backup` into `data_dir`, which must not exist or be
/// empty. The backup is verified completely first; then it is imported, checked
/// again as it is read, and the change log and indexes are rebuilt. The restored
/// store gets a new incarnation (see [`Store::incarnation`]). If the import is
/// interrupted, the directory is marked and refuses to open as a store.
pub fn restore(
    backup: impl AsRef<Path>,
    data_dir: impl AsRef<Path>,
) -> Result<BackupSummary, BackupError> {
    restore_with(backup, data_dir, &|_, _| {})
}

/// [`restore`], telling `progress` how far it is: the file is read twice
/// (verified, then imported), so the whole is twice its bytes.
pub fn restore_with(
    backup: impl AsRef<Path>,
    data_dir: impl AsRef<Path>,
    progress: Progress<'_>,
) -> Result<BackupSummary, BackupError> {
    let backup = backup.as_ref();
    let data_dir = data_dir.as_ref();
    verify_backup_with(backup, &|done, total| progress(done, total * 2))?;
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::DestinationNotEmpty {
                    path: data_dir.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(StoreError::NotADirectory {
                path: data_dir.to_path_buf(),
            }
            .into());
        }
        Err(e) => return Err(io_at(data_dir)(e)),
    }
    let options = StoreOptions {
        create_if_missing: true,
        ..StoreOptions::default()
    };
    let store = Store::open_inner(data_dir, &options, OpenPurpose::Restore)?;
    let mut importer = Importer {
        store: &store,
        txn: None,
        pending_bytes: 0,
        case: None,
        blob: 0,
    };
    let result = (|| {
        importer.begin()?;
        importer
            .txn()?
            .open_table(META)?
            .insert(META_RESTORING, [1u8].as_slice())?;
        importer.commit()?;
        Ok::<(), Fail>(())
    })();
    result.map_err(|f| store.fail(f))?;
    let summary = scan(
        backup,
        &|done, total| progress(total + done, total * 2),
        |record| importer.apply(record).map_err(|f| store.fail(f).into()),
    )?;
    let result = (|| {
        let txn = importer.txn()?;
        txn.open_table(META)?.remove(META_RESTORING)?;
        importer.commit()
    })();
    result.map_err(|f| store.fail(f))?;
    tracing::info!(
        cases = summary.cases,
        materials = summary.materials,
        "backup restored"
    );
    Ok(summary)
}

/// Writes checked records into a new store.
struct Importer<'s> {
    store: &'s Store,
    txn: Option<WriteTransaction>,
    pending_bytes: usize,
    case: Option<CaseId>,
    blob: u64,
}

impl Importer<'_> {
    fn begin(&mut self) -> R<()> {
        if self.txn.is_none() {
            self.txn = Some(self.store.begin_write()?);
        }
        Ok(())
    }

    fn txn(&mut self) -> R<&WriteTransaction> {
        self.begin()?;
        self.txn.as_ref().ok_or_else(|| {
            Fail::Store(StoreError::Aborted {
                detail: "restore lost its transaction".into(),
            })
        })
    }

    fn commit(&mut self) -> R<()> {
        if let Some(txn) = self.txn.take() {
            txn.commit()?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn current_case(&self) -> R<&CaseId> {
        self.case.as_ref().ok_or_else(|| {
            Fail::Store(StoreError::Aborted {
                detail: "document record outside a case".into(),
            })
        })
    }

    fn apply(&mut self, record: &Record) -> R<()> {
        let compact_after_increments = self.store.options.compact_after_increments;
        let compact_after_bytes = self.store.options.compact_after_bytes;
        match record {
            Record::Header { .. } | Record::End { .. } => {}
            Record::Meta { key, value } => {
                self.txn()?
                    .open_table(META)?
                    .insert(key.as_str(), value.as_slice())?;
            }
            Record::Material {
                hash,
                len,
                n_chunks,
                stored_ms,
            } => {
                let db_file = self.store.db_file.clone();
                let txn = self.txn()?;
                let blob = next_blob(txn, &db_file)?;
                let record = MaterialRecord {
                    len: *len,
                    n_chunks: *n_chunks,
                    blob,
                    stored_ms: *stored_ms,
                };
                txn.open_table(MATERIALS)?
                    .insert(*hash, record.encode().as_slice())?;
                self.blob = blob;
            }
            Record::Chunk { idx, data } => {
                let blob = self.blob;
                {
                    let mut chunks = self.txn()?.open_table(MATERIAL_CHUNKS)?;
                    insert_chunk(&mut chunks, blob, *idx, data)?;
                }
                self.pending_bytes += data.len();
            }
            Record::Removal {
                hash,
                len,
                at_ms,
                reason,
            } => {
                self.txn()?.open_table(MATERIAL_REMOVALS)?.insert(
                    *hash,
                    codec::encode_removal(*len, *at_ms, reason).as_slice(),
                )?;
            }
            Record::Case { case, record } => {
                let txn = self.txn()?;
                txn.open_table(CASES)?
                    .insert(case.as_str(), record.encode().as_slice())?;
                txn.open_table(CHANGES)?.insert(
                    record.seq,
                    codec::encode_change(case, &record.heads).as_slice(),
                )?;
                reindex(txn, case, None, Some(&record.meta))?;
                if record.increments > 0
                    && (record.increments >= compact_after_increments
                        || record.increment_bytes >= compact_after_bytes)
                {
                    txn.open_table(COMPACT_QUEUE)?.insert(case.as_str(), ())?;
                }
                self.case = Some(case.clone());
            }
            Record::DocBase { bytes } => {
                let case = self.current_case()?.clone();
                self.txn()?
                    .open_table(DOC_BASE)?
                    .insert(case.as_str(), bytes.as_slice())?;
                self.pending_bytes += bytes.len();
            }
            Record::DocIncr { seq, bytes } => {
                let case = self.current_case()?.clone();
                self.txn()?
                    .open_table(DOC_INCR)?
                    .insert((case.as_str(), *seq), bytes.as_slice())?;
                self.pending_bytes += bytes.len();
            }
            Record::CaseMaterial { hash } => {
                let case = self.current_case()?.clone();
                let txn = self.txn()?;
                txn.open_table(CASE_MATERIALS)?
                    .insert((case.as_str(), *hash), ())?;
                txn.open_table(MATERIAL_CASES)?
                    .insert((*hash, case.as_str()), ())?;
            }
            Record::PeerCursor { peer, seq } => {
                self.txn()?
                    .open_table(PEER_CURSORS)?
                    .insert(peer.as_str(), *seq)?;
            }
            Record::SyncState { peer, case, state } => {
                self.txn()?
                    .open_table(SYNC_STATES)?
                    .insert((peer.as_str(), case.as_str()), state.as_slice())?;
            }
            Record::Attestation { case, office, row } => {
                let txn = self.txn()?;
                txn.open_table(ATTESTATIONS)?
                    .insert((case.as_str(), office.as_str()), row.encode().as_slice())?;
                let hash = *blake3::hash(&row.bytes).as_bytes();
                txn.open_table(CHANGES)?.insert(
                    row.seq,
                    codec::encode_attestation_change(case, office, &row.domicile, &hash).as_slice(),
                )?;
            }
        }
        self.pending_bytes += 64;
        if self.pending_bytes >= RESTORE_COMMIT_BYTES {
            self.commit()?;
        }
        Ok(())
    }
}
