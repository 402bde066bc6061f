//! Write transactions: every write operation of the store, and group commit.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Read;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};

use crate::cache::CachedDoc;
use crate::codec::{self, CaseRecord, MaterialRecord};
use crate::error::{Fail, R, StoreError};
use crate::store::{Store, row};
use crate::tables::*;
use crate::types::{
    CaseMeta, CaseWrite, MaterialHash, MaterialPut, MaterialRemoval, WriteOp, WriteOutcome,
};

/// Limits on caller-given values, so that a row always fits its length prefixes.
const MAX_OFFICES: usize = 64;
const MAX_SUBSIDY_KINDS: usize = 16;
pub(crate) const MAX_SHORT_TEXT: usize = 256;

/// One write transaction: the operations called on it commit together, durably,
/// when the closure given to [`Store::write`] returns `Ok`, or not at all.
///
/// This is group commit: a hundred case updates in one `WriteTx` cost one disk
/// flush. Each method is also available on [`Store`] as a transaction of its own.
pub struct WriteTx<'s> {
    store: &'s Store,
    txn: WriteTransaction,
    /// Documents written in this transaction, with their seq: they go to the cache
    /// after the commit, and later operations of the transaction build on them.
    working: HashMap<CaseId, (u64, CachedDoc)>,
    next_seq: Option<u64>,
    /// Set when an operation failed part way; the transaction will not commit.
    failed: Option<String>,
    /// Whether anything was written (an empty transaction is not committed).
    dirty: bool,
}

impl Store {
    /// Runs `f` in one write transaction and commits it durably if `f` returns
    /// `Ok`: when this returns `Ok`, every operation of `f` is on disk and survives
    /// a crash or power loss. If `f` returns an error, or an operation failed part
    /// way, nothing of the transaction is stored.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.begin_write().map_err(|e| self.fail(e))?;
        let mut tx = WriteTx {
            store: self,
            txn,
            working: HashMap::new(),
            next_seq: None,
            failed: None,
            dirty: false,
        };
        let value = match f(&mut tx) {
            Ok(value) => value,
            Err(err) => {
                // Aborting only discards; an error here changes nothing stored.
                let _ = tx.txn.abort();
                return Err(err);
            }
        };
        if let Some(detail) = tx.failed.take() {
            let _ = tx.txn.abort();
            return Err(StoreError::Aborted { detail });
        }
        let working = std::mem::take(&mut tx.working);
        if tx.dirty {
            tx.txn.commit().map_err(|e| self.fail(e.into()))?;
        } else {
            tx.txn.abort().map_err(|e| self.fail(e.into()))?;
        }
        let mut cache = self.cache();
        for (case, (seq, doc)) in working {
            cache.insert(&case, seq, doc);
        }
        Ok(value)
    }

    /// Applies a batch of operations in one transaction (group commit), returning
    /// one outcome per operation. All or nothing.
    pub fn apply_batch(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        self.write(|tx| ops.into_iter().map(|op| tx.apply(op)).collect())
    }

    /// [`WriteTx::put_changes`] in a transaction of its own.
    pub fn put_changes(
        &self,
        case: &CaseId,
        changes: &[u8],
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        self.write(|tx| tx.put_changes(case, changes, meta))
    }

    /// [`WriteTx::put_document`] in a transaction of its own.
    pub fn put_document(
        &self,
        case: &CaseId,
        doc: &Automerge,
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        self.write(|tx| tx.put_document(case, doc, meta))
    }

    /// [`WriteTx::put_material`] in a transaction of its own.
    pub fn put_material(&self, reader: impl Read) -> Result<MaterialPut, StoreError> {
        self.write(|tx| tx.put_material(reader))
    }

    /// [`WriteTx::attach_material`] in a transaction of its own.
    pub fn attach_material(&self, case: &CaseId, hash: &MaterialHash) -> Result<(), StoreError> {
        self.write(|tx| tx.attach_material(case, hash))
    }

    /// [`WriteTx::detach_material`] in a transaction of its own.
    pub fn detach_material(&self, case: &CaseId, hash: &MaterialHash) -> Result<bool, StoreError> {
        self.write(|tx| tx.detach_material(case, hash))
    }

    /// [`WriteTx::remove_material`] in a transaction of its own.
    pub fn remove_material(
        &self,
        hash: &MaterialHash,
        reason: &str,
    ) -> Result<MaterialRemoval, StoreError> {
        self.write(|tx| tx.remove_material(hash, reason))
    }

    /// [`WriteTx::set_peer_cursor`] in a transaction of its own.
    pub fn set_peer_cursor(&self, peer: &OfficeId, seq: u64) -> Result<(), StoreError> {
        self.write(|tx| tx.set_peer_cursor(peer, seq))
    }

    /// [`WriteTx::put_sync_state`] in a transaction of its own.
    pub fn put_sync_state(
        &self,
        peer: &OfficeId,
        case: &CaseId,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.write(|tx| tx.put_sync_state(peer, case, state))
    }

    /// [`WriteTx::set_meta`] in a transaction of its own.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| tx.set_meta(key, value))
    }
}

fn validate_meta(meta: &CaseMeta) -> Result<(), StoreError> {
    let bad = |detail: String| Err(StoreError::InvalidArgument { detail });
    if meta.offices.len() > MAX_OFFICES {
        return bad(format!(
            "a case names at most {MAX_OFFICES} offices, found {}",
            meta.offices.len()
        ));
    }
    if meta.subsidy_kinds.len() > MAX_SUBSIDY_KINDS {
        return bad(format!(
            "a case names at most {MAX_SUBSIDY_KINDS} subsidy kinds, found {}",
            meta.subsidy_kinds.len()
        ));
    }
    if let Some(kind) = meta
        .subsidy_kinds
        .iter()
        .find(|k| k.is_empty() || k.len() > MAX_SHORT_TEXT)
    {
        return bad(format!(
            "a subsidy kind has 1-{MAX_SHORT_TEXT} bytes, found {}",
            kind.len()
        ));
    }
    Ok(())
}

/// The first bytes of every Automerge chunk.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The chunks of a write: the parsed changes, and whether a document chunk
/// was among them.
struct Chunks {
    changes: Vec<Change>,
    has_document: bool,
}

/// Splits `bytes` into Automerge chunks and parses each: changes (plain or
/// compressed) fully, documents by loading them. `load_incremental` skips what it
/// cannot parse; parsing first turns damaged input into an error instead of a
/// silent partial write.
fn parse_chunks(bytes: &[u8]) -> Result<Chunks, String> {
    let mut out = Chunks {
        changes: Vec::new(),
        has_document: false,
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = bytes
            .get(pos..pos + 9)
            .ok_or_else(|| format!("truncated chunk header at byte {pos}"))?;
        if header[..4] != AUTOMERGE_MAGIC {
            return Err(format!("no Automerge chunk at byte {pos}"));
        }
        let chunk_type = header[8];
        // The chunk length is an unsigned LEB128 after the 9 header bytes.
        let mut len: u64 = 0;
        let mut at = pos + 9;
        let mut shift = 0u32;
        loop {
            let byte = *bytes
                .get(at)
                .ok_or_else(|| format!("truncated chunk length at byte {at}"))?;
            at += 1;
            if shift > 63 {
                return Err(format!("chunk length too long at byte {pos}"));
            }
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| format!("chunk at byte {pos} runs past the end of the input"))?;
        let chunk = &bytes[pos..end];
        match chunk_type {
            1 | 2 => out.changes.push(
                Change::try_from(chunk).map_err(|err| format!("change at byte {pos}: {err}"))?,
            ),
            0 => {
                Automerge::load(chunk).map_err(|err| format!("document at byte {pos}: {err}"))?;
                out.has_document = true;
            }
            other => return Err(format!("chunk type {other} at byte {pos} is not accepted")),
        }
        pos = end;
    }
    Ok(out)
}

/// The fast path of a write to an existing case: the changes are parsed and
/// checked against the document's change graph, but not applied (see
/// [`CachedDoc`]). Returns the document, the new heads and the chunks to store.
fn merge_changes<'b>(
    case: &CaseId,
    mut working: CachedDoc,
    changes: Vec<Change>,
    old_heads: &[ChangeHash],
) -> R<(CachedDoc, Vec<ChangeHash>, Cow<'b, [u8]>)> {
    let hashes: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
    let unknown = working.unknown(&hashes);
    let mut new_hashes = HashSet::new();
    let new: Vec<&Change> = changes
        .iter()
        .filter(|c| unknown.contains(&c.hash()) && new_hashes.insert(c.hash()))
        .collect();
    let deps: Vec<ChangeHash> = new
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|d| !new_hashes.contains(d))
        .collect();
    let missing = working.unknown(&deps);
    if !missing.is_empty() {
        return Err(StoreError::MissingDependencies {
            case: case.clone(),
            missing: missing.len(),
        }
        .into());
    }
    let dep_set: HashSet<ChangeHash> = new.iter().flat_map(|c| c.deps().iter().copied()).collect();
    let mut heads: Vec<ChangeHash> = old_heads
        .iter()
        .copied()
        .chain(new_hashes.iter().copied())
        .filter(|h| !dep_set.contains(h))
        .collect();
    heads.sort();
    heads.dedup();
    let mut written = Vec::new();
    for change in &new {
        written.extend_from_slice(change.raw_bytes());
    }
    working.pending.extend_from_slice(&written);
    working.pending_hashes.extend(new_hashes);
    Ok((working, heads, Cow::Owned(written)))
}

/// The slow path, for input holding a whole document: apply it and keep what
/// is new.
fn merge_slow<'b>(
    case: &CaseId,
    mut working: CachedDoc,
    bytes: &[u8],
    old_heads: &[ChangeHash],
) -> R<(CachedDoc, Vec<ChangeHash>, Cow<'b, [u8]>)> {
    let invalid = |err: automerge::AutomergeError| {
        Fail::Store(StoreError::InvalidChanges {
            case: case.clone(),
            detail: err.to_string(),
        })
    };
    working.settle().map_err(invalid)?;
    working.doc.load_incremental(bytes).map_err(invalid)?;
    let missing = working.doc.get_missing_deps(&[]);
    if !missing.is_empty() {
        return Err(StoreError::MissingDependencies {
            case: case.clone(),
            missing: missing.len(),
        }
        .into());
    }
    let heads = working.doc.get_heads();
    let written = working.doc.save_after(old_heads);
    Ok((working, heads, Cow::Owned(written)))
}

/// The heads of a document about to become a new case, refused when some of its
/// changes miss their dependencies.
fn complete_heads(case: &CaseId, doc: &Automerge) -> R<Vec<ChangeHash>> {
    let missing = doc.get_missing_deps(&[]);
    if !missing.is_empty() {
        return Err(StoreError::MissingDependencies {
            case: case.clone(),
            missing: missing.len(),
        }
        .into());
    }
    Ok(doc.get_heads())
}

/// Rewrites the index entries of a case from `old` to `new` metadata.
pub(crate) fn reindex(
    txn: &WriteTransaction,
    case: &CaseId,
    old: Option<&CaseMeta>,
    new: Option<&CaseMeta>,
) -> R<()> {
    let id = case.as_str();
    let mut stage = txn.open_table(IDX_STAGE)?;
    let mut due = txn.open_table(IDX_DUE)?;
    let mut resident = txn.open_table(IDX_RESIDENT)?;
    let mut office = txn.open_table(IDX_OFFICE)?;
    if let Some(old) = old {
        stage.remove((old.stage.wire(), id))?;
        if let Some(date) = old.due {
            due.remove((codec::date_key(date), id))?;
        }
        resident.remove((old.resident_key.0, id))?;
        for o in &old.offices {
            office.remove((o.as_str(), id))?;
        }
    }
    if let Some(new) = new {
        let wire = new.stage.wire();
        stage.insert((wire, id), ())?;
        if let Some(date) = new.due {
            due.insert((codec::date_key(date), id), wire)?;
        }
        resident.insert((new.resident_key.0, id), ())?;
        for o in &new.offices {
            office.insert((o.as_str(), id), wire)?;
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the reader is exhausted; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Writes one material chunk row: its BLAKE3 followed by its bytes.
pub(crate) fn insert_chunk(
    chunks: &mut redb::Table<'_, (u64, u32), &'static [u8]>,
    blob: u64,
    idx: u32,
    data: &[u8],
) -> R<()> {
    let mut value = Vec::with_capacity(32 + data.len());
    value.extend_from_slice(blake3::hash(data).as_bytes());
    value.extend_from_slice(data);
    chunks.insert((blob, idx), value.as_slice())?;
    Ok(())
}

/// Takes the next blob id from the meta counter.
pub(crate) fn next_blob(txn: &WriteTransaction, db_file: &std::path::Path) -> R<u64> {
    let mut meta = txn.open_table(META)?;
    let current = match meta.get(META_NEXT_BLOB)? {
        None => 1,
        Some(v) => {
            let bytes = v.value();
            row(
                db_file,
                "meta",
                META_NEXT_BLOB,
                <[u8; 8]>::try_from(bytes)
                    .map(u64::from_le_bytes)
                    .map_err(|_| codec::DecodeError(format!("{} bytes, expected 8", bytes.len()))),
            )?
        }
    };
    meta.insert(META_NEXT_BLOB, (current + 1).to_le_bytes().as_slice())?;
    Ok(current)
}

impl WriteTx<'_> {
    /// Converts an internal failure, and marks the transaction failed when the
    /// failure may have left part of an operation written.
    fn finish<T>(&mut self, result: R<T>) -> Result<T, StoreError> {
        match result {
            Ok(value) => Ok(value),
            Err(Fail::Redb(err)) => {
                let err = self.store.fail(Fail::Redb(err));
                self.failed.get_or_insert_with(|| err.to_string());
                Err(err)
            }
            Err(Fail::Store(err)) => Err(err),
        }
    }

    fn next_seq(&mut self) -> R<u64> {
        let seq = match self.next_seq {
            Some(seq) => seq,
            None => {
                let changes = self.txn.open_table(CHANGES)?;
                let last = changes.last()?.map(|(k, _)| k.value()).unwrap_or(0);
                last + 1
            }
        };
        self.next_seq = Some(seq + 1);
        Ok(seq)
    }

    /// The document of an existing case as of this transaction, possibly with
    /// pending (unapplied) changes.
    fn working_doc(&mut self, case: &CaseId, record: &CaseRecord) -> R<CachedDoc> {
        if let Some((seq, doc)) = self.working.remove(case)
            && seq == record.seq
        {
            return Ok(doc);
        }
        if let Some(doc) = self.store.cache().take(case, record.seq) {
            return Ok(doc);
        }
        let base = self.txn.open_table(DOC_BASE)?;
        let incr = self.txn.open_table(DOC_INCR)?;
        Ok(CachedDoc::new(
            self.store.load_doc(&base, &incr, case, record)?,
        ))
    }

    /// Applies Automerge `changes` to `case` and stores them, with the case's
    /// index metadata `meta`; creates the case if it is new.
    ///
    /// `changes` may be anything `Automerge::load_incremental` accepts: the output
    /// of `save_incremental`, `save_after(heads)` or a full `save`. Changes the store
    /// already has are ignored; if nothing new remains, no change is logged
    /// (`changed: false`) but the metadata is still updated. Changes whose
    /// dependencies are missing are refused ([`StoreError::MissingDependencies`]).
    pub fn put_changes(
        &mut self,
        case: &CaseId,
        changes: &[u8],
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        let result = self.put_inner(case, Source::Changes(changes), meta);
        self.finish(result)
    }

    /// Stores the state of `doc` as the document of `case`: the changes of `doc`
    /// the store does not have are applied as by [`WriteTx::put_changes`]. For a
    /// new case, `doc` is saved whole.
    pub fn put_document(
        &mut self,
        case: &CaseId,
        doc: &Automerge,
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        let result = self.put_inner(case, Source::Document(doc), meta);
        self.finish(result)
    }

    /// [`WriteTx::put_document`] for a caller that also holds the document's full
    /// save (a document received whole): a new case keeps `saved` as its base
    /// without saving `doc` again, and `doc` itself (given, not lent) becomes the
    /// cached copy without being cloned. `saved` must be a save of `doc` (its
    /// heads are `doc`'s); for a case the store already holds it is not used.
    pub fn put_saved_document(
        &mut self,
        case: &CaseId,
        doc: Automerge,
        saved: &[u8],
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        let result = self.put_inner(case, Source::Saved(Box::new(doc), saved), meta);
        self.finish(result)
    }

    /// [`WriteTx::put_saved_document`] for a caller that loaded `saved` itself
    /// (a document received whole and admitted) and holds no copy to give: a new
    /// case keeps `saved` as its base under `heads` without loading it again,
    /// and is not cached (a node that receives thousands of documents would
    /// only churn the cache with them). `saved` must be one full save with no
    /// missing dependencies, and `heads` its heads; for a case the store already
    /// holds, `saved` is loaded and merged.
    pub fn put_loaded_save(
        &mut self,
        case: &CaseId,
        saved: &[u8],
        heads: Vec<ChangeHash>,
        meta: &CaseMeta,
    ) -> Result<CaseWrite, StoreError> {
        let result = self.put_inner(case, Source::Loaded(saved, heads), meta);
        self.finish(result)
    }

    fn put_inner(&mut self, case: &CaseId, source: Source<'_>, meta: &CaseMeta) -> R<CaseWrite> {
        validate_meta(meta)?;
        let old = {
            let cases = self.txn.open_table(CASES)?;
            self.store.get_record(&cases, case)?
        };
        let old_heads = old.as_ref().map(|r| r.heads.clone()).unwrap_or_default();
        let invalid = |detail: String| {
            Fail::Store(StoreError::InvalidChanges {
                case: case.clone(),
                detail,
            })
        };
        // What gets written: for a new case its full save, for an existing one the
        // change chunks the store did not have.
        let source = match (&old, source) {
            // A held case merges what was sent into its document: load it.
            (Some(_), Source::Loaded(saved, _)) => {
                let doc = Automerge::load(saved).map_err(|err| invalid(err.to_string()))?;
                Source::Saved(Box::new(doc), saved)
            }
            (_, source) => source,
        };
        let (working, heads, written): (Option<CachedDoc>, Vec<ChangeHash>, Cow<'_, [u8]>) =
            match (&old, source) {
                (None, Source::Document(src)) => {
                    let heads = complete_heads(case, src)?;
                    (
                        Some(CachedDoc::new(src.clone())),
                        heads,
                        Cow::Owned(src.save()),
                    )
                }
                (None, Source::Saved(src, saved)) => {
                    let heads = complete_heads(case, &src)?;
                    (Some(CachedDoc::new(*src)), heads, Cow::Borrowed(saved))
                }
                (None, Source::Loaded(saved, heads)) => (None, heads, Cow::Borrowed(saved)),
                (None, Source::Changes(bytes)) => {
                    if bytes.is_empty() {
                        return Err(StoreError::EmptyDocument { case: case.clone() }.into());
                    }
                    // A strict load: the bytes must parse completely and every
                    // dependency must be among them. The bytes then become the
                    // case's full save, without saving the document again.
                    let doc = Automerge::load(bytes).map_err(|err| invalid(err.to_string()))?;
                    let heads = doc.get_heads();
                    (Some(CachedDoc::new(doc)), heads, Cow::Borrowed(bytes))
                }
                (Some(record), source) => {
                    let bytes: Cow<'_, [u8]> = match source {
                        Source::Document(src) => Cow::Owned(src.save_after(&old_heads)),
                        Source::Saved(src, _) => Cow::Owned(src.save_after(&old_heads)),
                        Source::Changes(bytes) | Source::Loaded(bytes, _) => Cow::Borrowed(bytes),
                    };
                    let working = self.working_doc(case, record)?;
                    let chunks = parse_chunks(&bytes).map_err(invalid)?;
                    let (working, heads, written) = if chunks.has_document {
                        merge_slow(case, working, &bytes, &old_heads)?
                    } else {
                        merge_changes(case, working, chunks.changes, &old_heads)?
                    };
                    (Some(working), heads, written)
                }
            };
        if old.is_none() && heads.is_empty() {
            return Err(StoreError::EmptyDocument { case: case.clone() }.into());
        }
        let changed = old_heads != heads || old.is_none();
        let meta_changed = old.as_ref().is_none_or(|r| r.meta != *meta);
        let mut record = old.clone().unwrap_or(CaseRecord {
            seq: 0,
            heads: Vec::new(),
            increments: 0,
            increment_bytes: 0,
            meta: meta.clone(),
        });
        // From here on the transaction is modified: validation is over.
        if changed {
            let seq = self.next_seq()?;
            if old.is_none() {
                self.txn
                    .open_table(DOC_BASE)?
                    .insert(case.as_str(), written.as_ref())?;
            } else {
                self.txn
                    .open_table(DOC_INCR)?
                    .insert((case.as_str(), seq), written.as_ref())?;
                record.increments = record.increments.saturating_add(1);
                record.increment_bytes =
                    record.increment_bytes.saturating_add(written.len() as u64);
                if record.increments >= self.store.options.compact_after_increments
                    || record.increment_bytes >= self.store.options.compact_after_bytes
                {
                    self.txn
                        .open_table(COMPACT_QUEUE)?
                        .insert(case.as_str(), ())?;
                }
            }
            let mut changes = self.txn.open_table(CHANGES)?;
            if let Some(old) = &old {
                changes.remove(old.seq)?;
            }
            changes.insert(seq, codec::encode_change(case, &heads).as_slice())?;
            record.seq = seq;
            record.heads = heads;
        }
        if meta_changed {
            reindex(&self.txn, case, old.as_ref().map(|r| &r.meta), Some(meta))?;
            record.meta = meta.clone();
        }
        if changed || meta_changed {
            self.txn
                .open_table(CASES)?
                .insert(case.as_str(), record.encode().as_slice())?;
            self.dirty = true;
        }
        if changed {
            tracing::debug!(case = %case.short(), seq = record.seq, "case stored");
        }
        match working {
            Some(working) => {
                self.working.insert(case.clone(), (record.seq, working));
            }
            // Nothing of an older state may stand for this one.
            None => {
                self.working.remove(case);
            }
        }
        Ok(CaseWrite {
            seq: record.seq,
            heads: record.heads,
            changed,
        })
    }

    /// Stores a material read from `reader`, in 1 MiB chunks: the whole content is
    /// never held in memory. Its BLAKE3 hash is computed while streaming and is its
    /// address. If the same content is already stored, nothing new is kept
    /// (`newly_stored: false`). A material removed earlier and stored again loses
    /// its removal record.
    pub fn put_material(&mut self, mut reader: impl Read) -> Result<MaterialPut, StoreError> {
        let result = self.put_material_inner(&mut reader);
        self.finish(result)
    }

    fn put_material_inner(&mut self, reader: &mut impl Read) -> R<MaterialPut> {
        let blob = next_blob(&self.txn, &self.store.db_file)?;
        let mut chunks = self.txn.open_table(MATERIAL_CHUNKS)?;
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut hasher = blake3::Hasher::new();
        let mut n_chunks: u32 = 0;
        let mut len: u64 = 0;
        loop {
            let n = match read_full(reader, &mut buf) {
                Ok(n) => n,
                Err(source) => {
                    // Chunks of this material may already be written: the
                    // transaction must not commit.
                    self.failed
                        .get_or_insert_with(|| format!("reading a material failed: {source}"));
                    return Err(StoreError::MaterialSource { source }.into());
                }
            };
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            hasher.update(data);
            insert_chunk(&mut chunks, blob, n_chunks, data)?;
            n_chunks += 1;
            len += n as u64;
            if n < CHUNK_SIZE {
                break;
            }
        }
        let hash = MaterialHash(*hasher.finalize().as_bytes());
        let mut materials = self.txn.open_table(MATERIALS)?;
        if materials.get(hash.0)?.is_some() {
            // Deduplicated: drop the chunks just written; they never reach the disk
            // as part of a committed state.
            for idx in 0..n_chunks {
                chunks.remove((blob, idx))?;
            }
            return Ok(MaterialPut {
                hash,
                len,
                newly_stored: false,
            });
        }
        let record = MaterialRecord {
            len,
            n_chunks,
            blob,
            stored_ms: Timestamp::now().millis(),
        };
        materials.insert(hash.0, record.encode().as_slice())?;
        self.txn.open_table(MATERIAL_REMOVALS)?.remove(hash.0)?;
        self.dirty = true;
        tracing::debug!(material = %&hash.to_hex()[..12], len, "material stored");
        Ok(MaterialPut {
            hash,
            len,
            newly_stored: true,
        })
    }

    /// Records that `case` references material `hash`. The material need not be
    /// stored yet (a case may arrive before its scans); while referenced, it cannot
    /// be removed.
    pub fn attach_material(
        &mut self,
        case: &CaseId,
        hash: &MaterialHash,
    ) -> Result<(), StoreError> {
        let result = (|| -> R<()> {
            if self.txn.open_table(CASES)?.get(case.as_str())?.is_none() {
                return Err(StoreError::UnknownCase { case: case.clone() }.into());
            }
            self.txn
                .open_table(CASE_MATERIALS)?
                .insert((case.as_str(), hash.0), ())?;
            self.txn
                .open_table(MATERIAL_CASES)?
                .insert((hash.0, case.as_str()), ())?;
            self.dirty = true;
            Ok(())
        })();
        self.finish(result)
    }

    /// Removes the reference of `case` to `hash`; returns whether it existed. The
    /// material itself stays until a retention rule removes it.
    pub fn detach_material(
        &mut self,
        case: &CaseId,
        hash: &MaterialHash,
    ) -> Result<bool, StoreError> {
        let result = (|| -> R<bool> {
            let existed = self
                .txn
                .open_table(CASE_MATERIALS)?
                .remove((case.as_str(), hash.0))?
                .is_some();
            self.txn
                .open_table(MATERIAL_CASES)?
                .remove((hash.0, case.as_str()))?;
            self.dirty |= existed;
            Ok(existed)
        })();
        self.finish(result)
    }

    /// Removes a material under an explicit retention rule (`reason`, e.g. the rule
    /// name; never personal data). Refused while any case references it. The
    /// removal is recorded with its time and reason.
    pub fn remove_material(
        &mut self,
        hash: &MaterialHash,
        reason: &str,
    ) -> Result<MaterialRemoval, StoreError> {
        let result = self.remove_material_inner(hash, reason);
        self.finish(result)
    }

    fn remove_material_inner(&mut self, hash: &MaterialHash, reason: &str) -> R<MaterialRemoval> {
        if reason.trim().is_empty() || reason.len() > MAX_SHORT_TEXT {
            return Err(StoreError::InvalidArgument {
                detail: format!("a removal reason has 1-{MAX_SHORT_TEXT} bytes"),
            }
            .into());
        }
        let users = {
            let table = self.txn.open_table(MATERIAL_CASES)?;
            let mut users = Vec::new();
            for item in table.range((hash.0, "")..)? {
                let (key, _) = item?;
                let (h, case) = key.value();
                if h != hash.0 {
                    break;
                }
                users.push(case.to_string());
            }
            users
        };
        if let Some(first) = users.first() {
            let first = row(
                &self.store.db_file,
                "material_cases",
                first,
                crate::store::parse_case(first),
            )?;
            return Err(StoreError::MaterialInUse {
                hash: *hash,
                n_cases: users.len(),
                first,
            }
            .into());
        }
        let record = {
            let materials = self.txn.open_table(MATERIALS)?;
            let Some(v) = materials.get(hash.0)? else {
                return Err(StoreError::UnknownMaterial { hash: *hash }.into());
            };
            row(
                &self.store.db_file,
                "materials",
                hash,
                MaterialRecord::decode(v.value()),
            )?
        };
        let mut chunks = self.txn.open_table(MATERIAL_CHUNKS)?;
        for idx in 0..record.n_chunks {
            chunks.remove((record.blob, idx))?;
        }
        self.txn.open_table(MATERIALS)?.remove(hash.0)?;
        let at_ms = Timestamp::now().millis();
        self.txn.open_table(MATERIAL_REMOVALS)?.insert(
            hash.0,
            codec::encode_removal(record.len, at_ms, reason).as_slice(),
        )?;
        self.dirty = true;
        tracing::info!(material = %&hash.to_hex()[..12], reason, "material removed by retention rule");
        Ok(MaterialRemoval {
            hash: *hash,
            len: record.len,
            at_ms,
            reason: reason.to_string(),
        })
    }

    /// Stores the sync cursor of `peer`.
    pub fn set_peer_cursor(&mut self, peer: &OfficeId, seq: u64) -> Result<(), StoreError> {
        let result = (|| -> R<()> {
            self.txn
                .open_table(PEER_CURSORS)?
                .insert(peer.as_str(), seq)?;
            self.dirty = true;
            Ok(())
        })();
        self.finish(result)
    }

    /// Stores the opaque Automerge sync state of (`peer`, `case`).
    pub fn put_sync_state(
        &mut self,
        peer: &OfficeId,
        case: &CaseId,
        state: &[u8],
    ) -> Result<(), StoreError> {
        let result = (|| -> R<()> {
            self.txn
                .open_table(SYNC_STATES)?
                .insert((peer.as_str(), case.as_str()), state)?;
            self.dirty = true;
            Ok(())
        })();
        self.finish(result)
    }

    /// Stores `bytes`, an attestation `office` signed of `case` at `at_ms`,
    /// unless the store holds one of that office for that case signed at the
    /// same time or later; a stored attestation replaces the office's earlier
    /// one and is logged (a `changes` row naming the office and the case's
    /// domicile, which routes it). Returns whether it was stored. The store
    /// does not read the bytes: the caller has checked them.
    pub fn put_attestation(
        &mut self,
        case: &CaseId,
        office: &str,
        at_ms: i64,
        domicile: &str,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let result = (|| -> R<bool> {
            if office.is_empty() || office.len() > MAX_SHORT_TEXT || domicile.len() > MAX_SHORT_TEXT
            {
                return Err(StoreError::InvalidArgument {
                    detail: format!(
                        "an attestation's office and domicile have 1-{MAX_SHORT_TEXT} bytes"
                    ),
                }
                .into());
            }
            let old = {
                let table = self.txn.open_table(ATTESTATIONS)?;
                let value = table.get((case.as_str(), office))?;
                match value {
                    Some(v) => Some(row(
                        &self.store.db_file,
                        "attestations",
                        format_args!("{case}/{office}"),
                        codec::AttestationRow::decode(v.value()),
                    )?),
                    None => None,
                }
            };
            if old.as_ref().is_some_and(|o| o.at_ms >= at_ms) {
                return Ok(false);
            }
            let seq = self.next_seq()?;
            let hash = *blake3::hash(bytes).as_bytes();
            let mut changes = self.txn.open_table(CHANGES)?;
            if let Some(old) = &old {
                changes.remove(old.seq)?;
            }
            changes.insert(
                seq,
                codec::encode_attestation_change(case, office, domicile, &hash).as_slice(),
            )?;
            drop(changes);
            let row = codec::AttestationRow {
                seq,
                at_ms,
                domicile: domicile.to_string(),
                bytes: bytes.to_vec(),
            };
            self.txn
                .open_table(ATTESTATIONS)?
                .insert((case.as_str(), office), row.encode().as_slice())?;
            self.dirty = true;
            Ok(true)
        })();
        self.finish(result)
    }

    /// Every attestation held of `case`, as of this transaction, by office.
    pub fn attestations_of(&mut self, case: &CaseId) -> Result<Vec<Vec<u8>>, StoreError> {
        let result = (|| -> R<Vec<Vec<u8>>> {
            let table = self.txn.open_table(ATTESTATIONS)?;
            crate::store::attestations_in(&self.store.db_file, &table, case)
        })();
        self.finish(result)
    }

    /// Replaces what a supervisor node made of `case` (the caller's bytes).
    pub fn put_supervised(&mut self, case: &CaseId, bytes: &[u8]) -> Result<(), StoreError> {
        let result = (|| -> R<()> {
            self.txn
                .open_table(SUPERVISED)?
                .insert(case.as_str(), bytes)?;
            self.dirty = true;
            Ok(())
        })();
        self.finish(result)
    }

    /// Stores a value of the `meta` table (node identity, directory bytes, ...).
    /// Keys starting with `store.` are reserved for the store itself.
    pub fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let result = (|| -> R<()> {
            if key.is_empty() || key.len() > MAX_SHORT_TEXT || key.starts_with(RESERVED_META_PREFIX)
            {
                return Err(StoreError::InvalidArgument {
                    detail: format!(
                        "meta keys have 1-{MAX_SHORT_TEXT} bytes and may not start with {RESERVED_META_PREFIX:?}"
                    ),
                }
                .into());
            }
            self.txn.open_table(META)?.insert(key, value)?;
            self.dirty = true;
            Ok(())
        })();
        self.finish(result)
    }

    /// Applies one [`WriteOp`].
    pub fn apply(&mut self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        match op {
            WriteOp::PutChanges {
                case,
                changes,
                meta,
            } => self
                .put_changes(&case, &changes, &meta)
                .map(WriteOutcome::Case),
            WriteOp::AttachMaterial { case, material } => self
                .attach_material(&case, &material)
                .map(|()| WriteOutcome::Done),
            WriteOp::DetachMaterial { case, material } => self
                .detach_material(&case, &material)
                .map(WriteOutcome::Detached),
            WriteOp::SetPeerCursor { peer, seq } => self
                .set_peer_cursor(&peer, seq)
                .map(|()| WriteOutcome::Done),
            WriteOp::PutSyncState { peer, case, state } => self
                .put_sync_state(&peer, &case, &state)
                .map(|()| WriteOutcome::Done),
            WriteOp::SetMeta { key, value } => {
                self.set_meta(&key, &value).map(|()| WriteOutcome::Done)
            }
        }
    }

    /// Runs `f` on `table` in this transaction, for the store's other modules
    /// (`flags`): the transaction is marked written when `f` succeeds, and
    /// failed when redb fails.
    pub(crate) fn with_table<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &mut self,
        table: redb::TableDefinition<K, V>,
        f: impl FnOnce(&mut redb::Table<'_, K, V>) -> R<T>,
    ) -> Result<T, StoreError> {
        let txn = &self.txn;
        let result = (|| -> R<T> { f(&mut txn.open_table(table)?) })();
        if result.is_ok() {
            self.dirty = true;
        }
        self.finish(result)
    }

    /// The number of cases as of this transaction.
    pub fn case_count(&self) -> Result<u64, StoreError> {
        let result = (|| -> R<u64> { Ok(self.txn.open_table(CASES)?.len()?) })();
        result.map_err(|f| self.store.fail(f))
    }
}

/// What a case write stores.
enum Source<'a> {
    Changes(&'a [u8]),
    Document(&'a Automerge),
    /// A document, given, and its full save.
    Saved(Box<Automerge>, &'a [u8]),
    /// A full save the caller loaded, and its heads.
    Loaded(&'a [u8], Vec<ChangeHash>),
}
