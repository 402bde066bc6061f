//! Opening the store, and every read operation.

use std::fs;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use automerge::Automerge;
use chrono::NaiveDate;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    WriteTransaction,
};
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::Stage;

use crate::cache::{CachedDoc, DocCache};
use crate::codec::{self, CaseRecord, DecodeError, MaterialRecord};
use crate::error::{Fail, R, StoreError, classify_io};
use crate::tables::*;
use crate::types::{
    CaseInfo, CaseMeta, ChangeEntry, DueCase, LoggedAttestation, MaterialHash, MaterialRemoval,
    ResidentKey, StoreOptions, StoreStats,
};

/// The name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "tongban.redb";

/// A node's store: one redb database in a data directory. See the crate docs.
///
/// `Store` is `Send + Sync`; share it with `Arc`. Reads run concurrently with each
/// other and with the one write transaction redb admits at a time.
pub struct Store {
    /// The database; `None` only while [`Store::recover`] reopens it.
    pub(crate) db: RwLock<Option<Database>>,
    /// Why writes are refused: set by the first disk-full or I/O error, cleared
    /// by [`Store::recover`] once a write commits again. After a failed commit
    /// redb refuses every further write until the database is closed and opened
    /// again, so the store refuses them itself, with the reason, until then.
    pub(crate) failure: Mutex<Option<String>>,
    pub(crate) dir: PathBuf,
    pub(crate) db_file: PathBuf,
    pub(crate) options: StoreOptions,
    pub(crate) cache: Mutex<DocCache>,
    pub(crate) incarnation: [u8; 16],
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What `open_inner` does about the restore marker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenPurpose {
    Normal,
    Restore,
}

/// Decodes a row, turning a decoding failure into a typed error naming the row.
pub(crate) fn row<T>(
    db_file: &Path,
    table: &'static str,
    key: impl std::fmt::Display,
    decoded: Result<T, DecodeError>,
) -> R<T> {
    decoded.map_err(|err| {
        Fail::Store(StoreError::CorruptRow {
            path: db_file.to_path_buf(),
            table,
            key: key.to_string(),
            detail: err.0,
        })
    })
}

fn random_incarnation() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: fall back to a hash of the clock and process id,
        // which still differs between a store and its restored copy.
        let seed = format!("{:?}-{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    bytes
}

impl Store {
    /// Opens the store in data directory `dir`.
    ///
    /// With `options.create_if_missing` the directory and the database are created
    /// when missing; otherwise a missing directory is [`StoreError::Missing`] and a
    /// directory without a database is [`StoreError::NotInitialised`]. A store held
    /// by another process or handle is [`StoreError::Locked`]. Opening reads no
    /// document: its cost does not depend on how many the store holds (after an
    /// unclean shutdown without `quick_repair`, redb first walks the file).
    pub fn open(dir: impl AsRef<Path>, options: &StoreOptions) -> Result<Store, StoreError> {
        Store::open_inner(dir.as_ref(), options, OpenPurpose::Normal)
    }

    pub(crate) fn open_inner(
        dir: &Path,
        options: &StoreOptions,
        purpose: OpenPurpose,
    ) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        let db_file = dir.join(DB_FILE_NAME);
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => return Err(StoreError::NotADirectory { path: dir }),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if !options.create_if_missing {
                    return Err(StoreError::Missing { path: dir });
                }
                create_private_dir(&dir).map_err(|err| classify_io(&dir, &dir, err))?;
            }
            Err(err) => return Err(classify_io(&dir, &dir, err)),
        }
        let exists = match fs::metadata(&db_file) {
            Ok(meta) if !meta.is_file() => {
                return Err(StoreError::Corrupt {
                    path: db_file,
                    detail: "not a regular file".into(),
                });
            }
            Ok(_) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => return Err(classify_io(&dir, &db_file, err)),
        };
        if !exists && !options.create_if_missing {
            return Err(StoreError::NotInitialised { path: dir });
        }
        // The store holds every applicant's personal data: only its owner may
        // read it. A new file is made 0600 before redb writes into it; an
        // older, looser one is tightened.
        if exists {
            make_private(&db_file).map_err(|err| classify_io(&dir, &db_file, err))?;
        } else {
            create_private_file(&db_file).map_err(|err| classify_io(&dir, &db_file, err))?;
        }

        let db = open_database(&dir, &db_file, options, exists)?;
        let mut store = Store {
            db: RwLock::new(Some(db)),
            failure: Mutex::new(None),
            dir,
            db_file,
            options: options.clone(),
            cache: Mutex::new(DocCache::new(options.document_cache_capacity)),
            incarnation: [0; 16],
        };
        store.incarnation = store.initialise(purpose).map_err(|f| store.fail(f))?;
        tracing::debug!(dir = %store.dir.display(), "store opened");
        Ok(store)
    }
}

/// Opens (or creates) the redb database file with the store's options.
fn open_database(
    dir: &Path,
    db_file: &Path,
    options: &StoreOptions,
    exists: bool,
) -> Result<Database, StoreError> {
    {
        let mut builder = Database::builder();
        builder
            .set_cache_size(options.page_cache_bytes)
            .set_check_integrity_on_open(options.check_integrity_on_open)
            .set_repair_callback(|session| {
                tracing::warn!(
                    progress = session.progress(),
                    "repairing the store after an unclean shutdown"
                );
            });
        // redb trusts a file that was shut down cleanly and may panic on one damaged
        // outside it; such a panic is a corrupt store, not a crash of the node.
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if exists {
                builder.open(db_file)
            } else {
                builder.create(db_file)
            }
        }));
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(err)) => Err(Fail::from(err).at(dir, db_file)),
            Err(_) => Err(StoreError::Corrupt {
                path: db_file.to_path_buf(),
                detail: "redb could not read the file (it panicked while opening it)".into(),
            }),
        }
    }
}

impl Store {
    /// Why writes are refused now, if they are: the disk-full or I/O error that
    /// made the store stop writing, until [`Store::recover`] succeeds.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a disk-full or I/O error: closes the database, opens it again (redb
    /// admits no write after a failed commit until then) and commits a small
    /// probe write. On success writes are accepted again; on failure (the disk
    /// is still full, a transaction still holds the old database) the reason is
    /// kept and the caller tries again later. Reads keep working meanwhile,
    /// except during the reopening itself.
    pub fn recover(&self) -> Result<(), StoreError> {
        {
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            // The old database must be gone before the file can be opened again:
            // redb holds a lock on it until then.
            drop(db.take());
            let reopened = open_database(&self.dir, &self.db_file, &self.options, true)
                .map_err(|err| self.record(err))?;
            *db = Some(reopened);
        }
        // Documents cached from before the failure may include ones whose write
        // never committed.
        self.cache().clear();
        let probe = || -> R<()> {
            let txn = {
                let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
                let db = db.as_ref().ok_or_else(|| self.failing_error())?;
                db.begin_write()?
            };
            {
                let mut meta = txn.open_table(META)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                meta.insert("health.probe", now.to_le_bytes().as_slice())?;
            }
            txn.commit()?;
            Ok(())
        };
        probe().map_err(|f| self.fail(f))?;
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
        tracing::info!(dir = %self.dir.display(), "store writable again");
        Ok(())
    }

    /// The error every write gets while the store is failing.
    fn failing_error(&self) -> Fail {
        Fail::Store(StoreError::Failing {
            path: self.dir.clone(),
            reason: self
                .failure()
                .unwrap_or_else(|| "the database is being reopened".into()),
        })
    }

    /// Notes `err` as the store's failure when it is one that stops redb from
    /// writing (the disk is full, an I/O error, redb's own "previous I/O error");
    /// answers `err`.
    fn record(&self, err: StoreError) -> StoreError {
        let stops_writes = match &err {
            StoreError::DiskFull { .. } => true,
            // Only the database's own I/O; a failing backup or upload file
            // elsewhere says nothing about the database.
            StoreError::Io { path, .. } => path == &self.db_file || path == &self.dir,
            StoreError::Database { detail, .. } => detail.contains("Previous I/O error"),
            _ => false,
        };
        if stops_writes {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            if failure.is_none() {
                tracing::error!(dir = %self.dir.display(), error = %err, "store stopped writing; it will reopen itself");
                *failure = Some(err.to_string());
            }
        }
        err
    }

    /// Creates the tables of a new store, or checks the schema of an existing one.
    /// Returns the incarnation.
    fn initialise(&self, purpose: OpenPurpose) -> R<[u8; 16]> {
        let txn = self.begin_write()?;
        let mut wrote = false;
        let incarnation;
        {
            // Opening a table in a write transaction creates it.
            let mut meta = txn.open_table(META)?;
            let cases = txn.open_table(CASES)?;
            txn.open_table(DOC_BASE)?;
            txn.open_table(DOC_INCR)?;
            txn.open_table(CHANGES)?;
            txn.open_table(COMPACT_QUEUE)?;
            txn.open_table(IDX_STAGE)?;
            txn.open_table(IDX_DUE)?;
            txn.open_table(IDX_RESIDENT)?;
            txn.open_table(IDX_OFFICE)?;
            txn.open_table(MATERIALS)?;
            txn.open_table(MATERIAL_CHUNKS)?;
            txn.open_table(CASE_MATERIALS)?;
            txn.open_table(MATERIAL_CASES)?;
            txn.open_table(MATERIAL_REMOVALS)?;
            txn.open_table(PEER_CURSORS)?;
            txn.open_table(SYNC_STATES)?;
            txn.open_table(CASE_FLAGS)?;
            txn.open_table(ATTESTATIONS)?;
            txn.open_table(SUPERVISED)?;

            let schema = meta.get(META_SCHEMA)?.map(|v| v.value().to_vec());
            match schema {
                None => {
                    if !cases.is_empty()? {
                        return Err(StoreError::Corrupt {
                            path: self.db_file.clone(),
                            detail: "the store holds cases but no schema version".into(),
                        }
                        .into());
                    }
                    meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    wrote = true;
                }
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_le_bytes)
                        .map_err(|_| {
                            Fail::Store(StoreError::CorruptRow {
                                path: self.db_file.clone(),
                                table: "meta",
                                key: META_SCHEMA.into(),
                                detail: format!("{} bytes, expected 4", bytes.len()),
                            })
                        })?;
                    if found != SCHEMA_VERSION {
                        return Err(StoreError::UnsupportedSchema {
                            path: self.db_file.clone(),
                            found,
                            expected: SCHEMA_VERSION,
                        }
                        .into());
                    }
                }
            }
            if purpose == OpenPurpose::Normal && meta.get(META_RESTORING)?.is_some() {
                return Err(StoreError::IncompleteRestore {
                    path: self.dir.clone(),
                }
                .into());
            }
            let stored = meta
                .get(META_INCARNATION)?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
            incarnation = match stored {
                Some(bytes) => bytes,
                None => {
                    let fresh = random_incarnation();
                    meta.insert(META_INCARNATION, fresh.as_slice())?;
                    wrote = true;
                    fresh
                }
            };
        }
        if wrote {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(incarnation)
    }

    pub(crate) fn begin_write(&self) -> R<WriteTransaction> {
        if self.failure().is_some() {
            return Err(self.failing_error());
        }
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = db.as_ref().ok_or_else(|| self.failing_error())?;
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(self.options.quick_repair);
        Ok(txn)
    }

    pub(crate) fn begin_read(&self) -> R<ReadTransaction> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = db.as_ref().ok_or_else(|| self.failing_error())?;
        Ok(db.begin_read()?)
    }

    /// Converts an internal failure to the public error, noting a failure that
    /// stops writes (see [`Store::failure`]).
    pub(crate) fn fail(&self, fail: Fail) -> StoreError {
        self.record(fail.at(&self.dir, &self.db_file))
    }

    pub(crate) fn cache(&self) -> MutexGuard<'_, DocCache> {
        // The cache holds no invariant a panicking holder could break: every entry
        // is checked against the case record before use.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A random identifier of this copy of the store, made when it was created and
    /// made anew by [`crate::restore`]. Sequence numbers are only comparable within
    /// one incarnation: a peer that sees a new incarnation must not trust cursors it
    /// holds into the old one.
    pub fn incarnation(&self) -> [u8; 16] {
        self.incarnation
    }

    pub(crate) fn get_record(
        &self,
        cases: &impl ReadableTable<&'static str, &'static [u8]>,
        case: &CaseId,
    ) -> R<Option<CaseRecord>> {
        match cases.get(case.as_str())? {
            None => Ok(None),
            Some(guard) => row(
                &self.db_file,
                "cases",
                case,
                CaseRecord::decode(guard.value()),
            )
            .map(Some),
        }
    }

    /// Loads a document from its full save and increments, and checks that the
    /// result has exactly the heads the case record names: a damaged or missing
    /// save is detected here and never returned as a document.
    ///
    /// The saves are concatenated and loaded in one strict `Automerge::load`,
    /// which is several times cheaper than applying increments one by one.
    pub(crate) fn load_doc(
        &self,
        base: &impl ReadableTable<&'static str, &'static [u8]>,
        incr: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
        case: &CaseId,
        record: &CaseRecord,
    ) -> R<Automerge> {
        let corrupt = |table: &'static str, detail: String| {
            Fail::Store(StoreError::CorruptRow {
                path: self.db_file.clone(),
                table,
                key: case.to_string(),
                detail,
            })
        };
        let mut all = match base.get(case.as_str())? {
            Some(bytes) => bytes.value().to_vec(),
            None => return Err(corrupt("doc_base", "the case has no full save".into())),
        };
        for item in incr.range((case.as_str(), 0u64)..=(case.as_str(), u64::MAX))? {
            let (_, bytes) = item?;
            all.extend_from_slice(bytes.value());
        }
        let doc = Automerge::load(&all)
            .map_err(|err| corrupt("doc_base", format!("the stored saves do not load: {err}")))?;
        let heads = doc.get_heads();
        if heads != record.heads {
            return Err(corrupt(
                "doc_base",
                format!(
                    "the stored saves give {} head(s) that differ from the {} recorded",
                    heads.len(),
                    record.heads.len()
                ),
            ));
        }
        Ok(doc)
    }

    /// The cached document of a case at `record`'s state, with pending changes
    /// applied and its heads checked, or `None` on a cache miss.
    pub(crate) fn cached_doc(&self, case: &CaseId, record: &CaseRecord) -> Option<CachedDoc> {
        let mut cached = self.cache().take(case, record.seq)?;
        // Applying pending changes happens outside the cache lock.
        match cached.settle() {
            Ok(()) if cached.doc.get_heads() == record.heads => Some(cached),
            _ => {
                tracing::warn!(case = %case.short(), "cached document disagrees with the store; reloading");
                None
            }
        }
    }

    /// The document of `case`, or `None` if the store does not hold the case.
    ///
    /// Served from the cache when it holds the latest state; otherwise loaded from
    /// the full save and the increments after it, checked against the recorded
    /// heads, and cached.
    pub fn load_case(&self, case: &CaseId) -> Result<Option<Automerge>, StoreError> {
        self.load_case_inner(case).map_err(|f| self.fail(f))
    }

    fn load_case_inner(&self, case: &CaseId) -> R<Option<Automerge>> {
        let txn = self.begin_read()?;
        let cases = txn.open_table(CASES)?;
        let Some(record) = self.get_record(&cases, case)? else {
            return Ok(None);
        };
        let cached = match self.cached_doc(case, &record) {
            Some(cached) => cached,
            None => {
                let base = txn.open_table(DOC_BASE)?;
                let incr = txn.open_table(DOC_INCR)?;
                CachedDoc::new(self.load_doc(&base, &incr, case, &record)?)
            }
        };
        let doc = cached.doc.clone();
        self.cache().insert(case, record.seq, cached);
        Ok(Some(doc))
    }

    /// The full Automerge save of `case`, for callers that cannot share an
    /// in-memory document (a control API, a CLI export).
    /// A case with no increments since its last compaction answers with its stored
    /// base as it is (no load, no save): what a hub sending thousands of documents
    /// to a new node does most.
    pub fn case_bytes(&self, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        let base = (|| -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let cases = txn.open_table(CASES)?;
            let Some(record) = self.get_record(&cases, case)? else {
                return Ok(None);
            };
            if record.increments > 0 {
                return Ok(None);
            }
            let base = txn.open_table(DOC_BASE)?;
            Ok(base.get(case.as_str())?.map(|v| v.value().to_vec()))
        })()
        .map_err(|f| self.fail(f))?;
        match base {
            Some(bytes) => Ok(Some(bytes)),
            None => Ok(self.load_case(case)?.map(|doc| doc.save())),
        }
    }

    /// What the store knows of `case` without reading its document.
    pub fn case_info(&self, case: &CaseId) -> Result<Option<CaseInfo>, StoreError> {
        let inner = || -> R<Option<CaseInfo>> {
            let txn = self.begin_read()?;
            let cases = txn.open_table(CASES)?;
            Ok(self.get_record(&cases, case)?.map(|record| CaseInfo {
                case: case.clone(),
                seq: record.seq,
                heads: record.heads,
                meta: record.meta,
                increments: record.increments,
                increment_bytes: record.increment_bytes,
            }))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The latest change-log sequence number (0 for an empty store).
    pub fn latest_seq(&self) -> Result<u64, StoreError> {
        let inner = || -> R<u64> {
            let txn = self.begin_read()?;
            let changes = txn.open_table(CHANGES)?;
            Ok(changes.last()?.map(|(k, _)| k.value()).unwrap_or(0))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The cases changed after `cursor`, oldest first, at most `limit`: each case
    /// once, with its latest seq and heads. Pass the last returned `seq` as the next
    /// cursor. The cost is proportional to what is returned, not to the store.
    pub fn changes_since(&self, cursor: u64, limit: usize) -> Result<Vec<ChangeEntry>, StoreError> {
        let inner = || -> R<Vec<ChangeEntry>> {
            let txn = self.begin_read()?;
            let changes = txn.open_table(CHANGES)?;
            let mut out = Vec::new();
            let Some(start) = cursor.checked_add(1) else {
                return Ok(out);
            };
            for item in changes.range(start..)?.take(limit) {
                let (seq, value) = item?;
                let seq = seq.value();
                let logged = row(
                    &self.db_file,
                    "changes",
                    seq,
                    codec::decode_change(value.value()),
                )?;
                out.push(match logged {
                    codec::LogRow::Case(case, heads) => ChangeEntry {
                        seq,
                        case,
                        heads,
                        attestation: None,
                    },
                    codec::LogRow::Attestation(case, office, domicile, hash) => ChangeEntry {
                        seq,
                        case,
                        heads: vec![automerge::ChangeHash(hash)],
                        attestation: Some(LoggedAttestation { office, domicile }),
                    },
                });
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Cases in `stage`, in case-id order, after `after` (exclusive), at most `limit`.
    pub fn cases_in_stage(
        &self,
        stage: Stage,
        after: Option<&CaseId>,
        limit: usize,
    ) -> Result<Vec<CaseId>, StoreError> {
        let inner = || -> R<Vec<CaseId>> {
            let txn = self.begin_read()?;
            let idx = txn.open_table(IDX_STAGE)?;
            let wire = stage.wire();
            let start = after.map(CaseId::as_str).unwrap_or("");
            let mut out = Vec::new();
            for item in idx.range((wire, start)..)? {
                let (key, _) = item?;
                let (key_stage, case) = key.value();
                if key_stage != wire || out.len() >= limit {
                    break;
                }
                if Some(case) == after.map(CaseId::as_str) {
                    continue;
                }
                out.push(row(&self.db_file, "idx_stage", case, parse_case(case))?);
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Cases whose route includes `office`, with their stage, in case-id order,
    /// after `after` (exclusive), at most `limit`.
    pub fn cases_for_office(
        &self,
        office: &OfficeId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> Result<Vec<(CaseId, Stage)>, StoreError> {
        let inner = || -> R<Vec<(CaseId, Stage)>> {
            let txn = self.begin_read()?;
            let idx = txn.open_table(IDX_OFFICE)?;
            let start = after.map(CaseId::as_str).unwrap_or("");
            let mut out = Vec::new();
            for item in idx.range((office.as_str(), start)..)? {
                let (key, value) = item?;
                let (key_office, case) = key.value();
                if key_office != office.as_str() || out.len() >= limit {
                    break;
                }
                if Some(case) == after.map(CaseId::as_str) {
                    continue;
                }
                let case_id = row(&self.db_file, "idx_office", case, parse_case(case))?;
                let stage = row(
                    &self.db_file,
                    "idx_office",
                    case,
                    codec::stage_from_wire(value.value()),
                )?;
                out.push((case_id, stage));
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Every case of the resident with this keyed hash, with its metadata: the
    /// duplicate check of the domicile office.
    pub fn cases_by_resident(
        &self,
        key: &ResidentKey,
    ) -> Result<Vec<(CaseId, CaseMeta)>, StoreError> {
        let inner = || -> R<Vec<(CaseId, CaseMeta)>> {
            let txn = self.begin_read()?;
            let idx = txn.open_table(IDX_RESIDENT)?;
            let cases = txn.open_table(CASES)?;
            let mut out = Vec::new();
            for item in idx.range((key.0, "")..)? {
                let (k, _) = item?;
                let (resident, case) = k.value();
                if resident != key.0 {
                    break;
                }
                let case_id = row(&self.db_file, "idx_resident", case, parse_case(case))?;
                let Some(record) = self.get_record(&cases, &case_id)? else {
                    return Err(StoreError::CorruptRow {
                        path: self.db_file.clone(),
                        table: "idx_resident",
                        key: case.to_string(),
                        detail: "indexes a case that is not stored".into(),
                    }
                    .into());
                };
                out.push((case_id, record.meta));
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Cases due before `as_of` (`due < as_of`) whose stage is not final, earliest
    /// first, at most `limit`. Reads only the due-date index, never a document.
    pub fn overdue(&self, as_of: NaiveDate, limit: usize) -> Result<Vec<DueCase>, StoreError> {
        let inner = || -> R<Vec<DueCase>> {
            let txn = self.begin_read()?;
            let idx = txn.open_table(IDX_DUE)?;
            let mut out = Vec::new();
            for item in idx.range(..(codec::date_key(as_of), ""))? {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = item?;
                let (days, case) = key.value();
                let stage = row(
                    &self.db_file,
                    "idx_due",
                    case,
                    codec::stage_from_wire(value.value()),
                )?;
                if stage.is_final() {
                    continue;
                }
                out.push(DueCase {
                    case: row(&self.db_file, "idx_due", case, parse_case(case))?,
                    due: row(&self.db_file, "idx_due", case, codec::date_from_key(days))?,
                    stage,
                });
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The sync cursor stored for `peer`.
    pub fn peer_cursor(&self, peer: &OfficeId) -> Result<Option<u64>, StoreError> {
        let inner = || -> R<Option<u64>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(PEER_CURSORS)?;
            Ok(table.get(peer.as_str())?.map(|v| v.value()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The Automerge sync state stored for (`peer`, `case`).
    pub fn sync_state(
        &self,
        peer: &OfficeId,
        case: &CaseId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = || -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(SYNC_STATES)?;
            Ok(table
                .get((peer.as_str(), case.as_str()))?
                .map(|v| v.value().to_vec()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = || -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(META)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Every `meta` entry whose key starts with `prefix`, in key order.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = || -> R<Vec<(String, Vec<u8>)>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(META)?;
            let mut out = Vec::new();
            for entry in table.range(prefix..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                out.push((key.value().to_string(), value.value().to_vec()));
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    pub(crate) fn material_record(
        &self,
        txn: &ReadTransaction,
        hash: &MaterialHash,
    ) -> R<Option<MaterialRecord>> {
        let table = txn.open_table(MATERIALS)?;
        match table.get(hash.0)? {
            None => Ok(None),
            Some(v) => row(
                &self.db_file,
                "materials",
                hash,
                MaterialRecord::decode(v.value()),
            )
            .map(Some),
        }
    }

    /// Whether the material is stored.
    pub fn has_material(&self, hash: &MaterialHash) -> Result<bool, StoreError> {
        Ok(self.material_len(hash)?.is_some())
    }

    /// The length of a stored material.
    pub fn material_len(&self, hash: &MaterialHash) -> Result<Option<u64>, StoreError> {
        let inner = || -> R<Option<u64>> {
            let txn = self.begin_read()?;
            Ok(self.material_record(&txn, hash)?.map(|r| r.len))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The materials `case` references (stored or not yet received).
    pub fn case_materials(&self, case: &CaseId) -> Result<Vec<MaterialHash>, StoreError> {
        let inner = || -> R<Vec<MaterialHash>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(CASE_MATERIALS)?;
            let mut out = Vec::new();
            for item in table.range((case.as_str(), [0u8; 32])..=(case.as_str(), [0xff; 32]))? {
                let (key, _) = item?;
                out.push(MaterialHash(key.value().1));
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The cases referencing a material.
    pub fn material_cases(&self, hash: &MaterialHash) -> Result<Vec<CaseId>, StoreError> {
        let inner = || -> R<Vec<CaseId>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(MATERIAL_CASES)?;
            let mut out = Vec::new();
            for item in table.range((hash.0, "")..)? {
                let (key, _) = item?;
                let (h, case) = key.value();
                if h != hash.0 {
                    break;
                }
                out.push(row(
                    &self.db_file,
                    "material_cases",
                    case,
                    parse_case(case),
                )?);
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Every (case, material) reference whose material is not stored and was not
    /// removed under a retention rule: what the node still has to receive (a case
    /// may arrive before its scans). Sorted by material, then case.
    pub fn missing_materials(&self) -> Result<Vec<(CaseId, MaterialHash)>, StoreError> {
        let inner = || -> R<Vec<(CaseId, MaterialHash)>> {
            let txn = self.begin_read()?;
            let references = txn.open_table(MATERIAL_CASES)?;
            let materials = txn.open_table(MATERIALS)?;
            let removals = txn.open_table(MATERIAL_REMOVALS)?;
            let mut out = Vec::new();
            // References are sorted by material: look each one up once.
            let mut current: Option<([u8; 32], bool)> = None;
            for item in references.iter()? {
                let (key, _) = item?;
                let (hash, case) = key.value();
                let missing = match current {
                    Some((seen, missing)) if seen == hash => missing,
                    _ => {
                        let missing =
                            materials.get(hash)?.is_none() && removals.get(hash)?.is_none();
                        current = Some((hash, missing));
                        missing
                    }
                };
                if missing {
                    let case = row(&self.db_file, "material_cases", case, parse_case(case))?;
                    out.push((case, MaterialHash(hash)));
                }
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The record of a material's removal, if it was removed.
    pub fn material_removal(
        &self,
        hash: &MaterialHash,
    ) -> Result<Option<MaterialRemoval>, StoreError> {
        let inner = || -> R<Option<MaterialRemoval>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(MATERIAL_REMOVALS)?;
            let Some(v) = table.get(hash.0)? else {
                return Ok(None);
            };
            let (len, at_ms, reason) = row(
                &self.db_file,
                "material_removals",
                hash,
                codec::decode_removal(v.value()),
            )?;
            Ok(Some(MaterialRemoval {
                hash: *hash,
                len,
                at_ms,
                reason,
            }))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The attestation `office` made of `case`, when held.
    pub fn attestation(&self, case: &CaseId, office: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = || -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(ATTESTATIONS)?;
            let Some(value) = table.get((case.as_str(), office))? else {
                return Ok(None);
            };
            let row = row(
                &self.db_file,
                "attestations",
                format_args!("{case}/{office}"),
                codec::AttestationRow::decode(value.value()),
            )?;
            Ok(Some(row.bytes))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Every attestation held of `case`, by office.
    pub fn attestations_of(&self, case: &CaseId) -> Result<Vec<Vec<u8>>, StoreError> {
        let inner = || -> R<Vec<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(ATTESTATIONS)?;
            attestations_in(&self.db_file, &table, case)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The cases with attestations held, in case-id order, after `after`
    /// (exclusive), at most `limit`.
    pub fn attested_cases(
        &self,
        after: Option<&CaseId>,
        limit: usize,
    ) -> Result<Vec<CaseId>, StoreError> {
        let inner = || -> R<Vec<CaseId>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(ATTESTATIONS)?;
            let mut out: Vec<CaseId> = Vec::new();
            let start = after.map(CaseId::as_str).unwrap_or("");
            for item in table.range((start, "")..)? {
                let (key, _) = item?;
                let case = key.value().0;
                if Some(case) == after.map(CaseId::as_str)
                    || out.last().is_some_and(|c| c.as_str() == case)
                {
                    continue;
                }
                if out.len() >= limit {
                    break;
                }
                out.push(row(&self.db_file, "attestations", case, parse_case(case))?);
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// What a supervisor node made of `case`, when held.
    pub fn supervised(&self, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = || -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(SUPERVISED)?;
            Ok(table.get(case.as_str())?.map(|v| v.value().to_vec()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Calls `visit` with every supervised case's bytes, in case-id order, in
    /// one read transaction; stops at the first error `visit` returns.
    pub fn for_each_supervised<E>(
        &self,
        mut visit: impl FnMut(&str, &[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, StoreError> {
        let mut inner = || -> R<Result<(), E>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(SUPERVISED)?;
            for item in table.iter()? {
                let (key, value) = item?;
                if let Err(err) = visit(key.value(), value.value()) {
                    return Ok(Err(err));
                }
            }
            Ok(Ok(()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Counts for a status display. Reads table lengths only.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = || -> R<StoreStats> {
            let txn = self.begin_read()?;
            let changes = txn.open_table(CHANGES)?;
            Ok(StoreStats {
                cases: txn.open_table(CASES)?.len()?,
                materials: txn.open_table(MATERIALS)?.len()?,
                latest_seq: changes.last()?.map(|(k, _)| k.value()).unwrap_or(0),
                pending_compactions: txn.open_table(COMPACT_QUEUE)?.len()?,
                file_bytes: fs::metadata(&self.db_file).map(|m| m.len()).unwrap_or(0),
            })
        };
        inner().map_err(|f| self.fail(f))
    }
}

/// Every attestation of `case` in `table`, by office.
pub(crate) fn attestations_in<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    db_file: &Path,
    table: &T,
    case: &CaseId,
) -> R<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for item in table.range((case.as_str(), "")..)? {
        let (key, value) = item?;
        let (held, office) = key.value();
        if held != case.as_str() {
            break;
        }
        let decoded = row(
            db_file,
            "attestations",
            format_args!("{held}/{office}"),
            codec::AttestationRow::decode(value.value()),
        )?;
        out.push(decoded.bytes);
    }
    Ok(out)
}

pub(crate) fn parse_case(text: &str) -> Result<CaseId, DecodeError> {
    CaseId::parse(text).map_err(|e| DecodeError(e.to_string()))
}

/// Creates a directory (and missing parents) readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file readable by its owner only.
fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Takes group and other permissions off an existing file.
fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
