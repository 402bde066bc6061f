//! Errors of the store and of backup files.
//!
//! Every error that concerns the disk names the path it concerns and says what is
//! wrong in words an office administrator can act on. Errors never carry personal
//! data: cases are named by their id, materials by their hash, peers by office id.

use std::io;
use std::path::{Path, PathBuf};

use tongban_domain::ids::CaseId;

use crate::types::MaterialHash;

/// Why a store operation failed.
///
/// An operation that returns an error changed nothing: a write transaction that
/// fails is aborted as a whole, and nothing already stored is damaged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory does not exist and creation was not asked for.
    #[error("data directory {path} does not exist (create it, or initialise a new store there)")]
    Missing {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory path names something that is not a directory.
    #[error("data directory {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The data directory exists but holds no store, and creation was not asked for.
    #[error("data directory {path} holds no tongban store (tongban.redb is missing)")]
    NotInitialised {
        /// The data directory.
        path: PathBuf,
    },
    /// Another process, or another handle in this process, has the store open.
    #[error(
        "data directory {path} is in use by a running tongban node (the store is locked); stop it or send the command through it"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory or database file cannot be written.
    #[error("data directory {path} is read-only or not writable by this user: {source}")]
    ReadOnly {
        /// The path that could not be written.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The disk holding the store is full. The failed operation was not stored;
    /// everything acknowledged before it is intact.
    #[error(
        "磁盘已满 the disk holding {path} is full: the last operation was not stored, earlier ones are intact; free space on that disk (a running node resumes writing by itself)"
    )]
    DiskFull {
        /// The data directory.
        path: PathBuf,
    },
    /// An earlier disk-full or I/O error stopped the store from writing; it
    /// refuses writes until it has reopened the database and a write commits
    /// again (the node retries by itself). Reads keep working.
    #[error(
        "存储所在磁盘 {path} 写入失败，暂停写入，空间恢复后自动继续 the store on the disk holding {path} cannot write now ({reason}); nothing of this operation was stored, earlier ones are intact; free space on that disk and the node resumes by itself"
    )]
    Failing {
        /// The data directory.
        path: PathBuf,
        /// The error that stopped writes.
        reason: String,
    },
    /// The database file is damaged or is not a tongban store.
    #[error("store {path} is corrupt: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// One stored row could not be decoded; the rest of the store may be intact.
    #[error("store {path}: row {key} of table {table} is corrupt: {detail}")]
    CorruptRow {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The key of the row (a case id, a material hash or a sequence number).
        key: String,
        /// What was wrong.
        detail: String,
    },
    /// A material chunk failed its integrity check: the bytes are not returned.
    #[error("material {hash} is corrupt in store {path}: chunk {chunk} {detail}")]
    CorruptMaterial {
        /// The database file.
        path: PathBuf,
        /// The material.
        hash: MaterialHash,
        /// Index of the failing chunk.
        chunk: u32,
        /// What was wrong.
        detail: String,
    },
    /// The store was written by a newer (or unknown) version of tongban.
    #[error("store {path} has schema version {found}, this build understands {expected}")]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// Schema version found.
        found: u32,
        /// Schema version this build writes.
        expected: u32,
    },
    /// A restore into this directory was interrupted; the store is incomplete.
    #[error(
        "store {path} is an interrupted restore and is incomplete: delete the directory and restore again"
    )]
    IncompleteRestore {
        /// The data directory.
        path: PathBuf,
    },
    /// Another I/O error on the given path.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// redb reported an error that is none of the above.
    #[error("store {path}: database error: {detail}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// redb's description.
        detail: String,
    },
    /// The change bytes given for a case are not valid Automerge data.
    #[error("changes for case {case} are not valid Automerge data: {detail}")]
    InvalidChanges {
        /// The case.
        case: CaseId,
        /// Automerge's description.
        detail: String,
    },
    /// The changes given for a case depend on changes the store does not have.
    #[error(
        "changes for case {case} depend on {missing} change(s) the store does not have; send them first"
    )]
    MissingDependencies {
        /// The case.
        case: CaseId,
        /// Number of missing dependencies.
        missing: usize,
    },
    /// A new case was written with no content.
    #[error("case {case} is new and the write carries no changes")]
    EmptyDocument {
        /// The case.
        case: CaseId,
    },
    /// The case is not in the store.
    #[error("case {case} is not in the store")]
    UnknownCase {
        /// The case.
        case: CaseId,
    },
    /// The material is not in the store.
    #[error("material {hash} is not in the store")]
    UnknownMaterial {
        /// The material.
        hash: MaterialHash,
    },
    /// A material cannot be removed while cases reference it.
    #[error("material {hash} is referenced by {n_cases} case(s) (first: {first}); detach it first")]
    MaterialInUse {
        /// The material.
        hash: MaterialHash,
        /// How many cases reference it.
        n_cases: usize,
        /// The first referencing case.
        first: CaseId,
    },
    /// Reading the material's source failed; nothing was stored.
    #[error("reading the material to store failed: {source}")]
    MaterialSource {
        /// The reader's error.
        source: io::Error,
    },
    /// The value given is not acceptable (too long, reserved key, ...).
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// What is wrong.
        detail: String,
    },
    /// A write transaction was aborted because one of its operations failed and
    /// the caller went on; nothing of it was stored.
    #[error("the write transaction was aborted because an operation in it failed: {detail}")]
    Aborted {
        /// The first failure.
        detail: String,
    },
}

/// Internal failure type: redb errors are converted to [`StoreError`] at the API
/// boundary, where the path of the store is known.
#[derive(Debug)]
pub(crate) enum Fail {
    Redb(redb::Error),
    Store(StoreError),
}

pub(crate) type R<T> = Result<T, Fail>;

impl From<StoreError> for Fail {
    fn from(err: StoreError) -> Fail {
        Fail::Store(err)
    }
}

macro_rules! redb_fail {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(err: $t) -> Fail {
                Fail::Redb(err.into())
            }
        }
    )*};
}
redb_fail!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Fail {
    /// Converts to the public error, naming the store's paths.
    pub(crate) fn at(self, dir: &Path, db_file: &Path) -> StoreError {
        match self {
            Fail::Store(err) => err,
            Fail::Redb(err) => classify_redb(dir, db_file, err),
        }
    }
}

/// Maps a redb error to the public error, by what an operator can do about it.
pub(crate) fn classify_redb(dir: &Path, db_file: &Path, err: redb::Error) -> StoreError {
    match err {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                path: dir.to_path_buf(),
            }
        }
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: db_file.to_path_buf(),
            detail,
        },
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt {
            path: db_file.to_path_buf(),
            detail: format!("redb file format {version} needs an upgrade this build cannot do"),
        },
        redb::Error::Io(source) => classify_io(dir, db_file, source),
        other => StoreError::Database {
            path: db_file.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// Maps an I/O error on the store's files to the public error.
pub(crate) fn classify_io(dir: &Path, file: &Path, source: io::Error) -> StoreError {
    match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::DiskFull {
            path: dir.to_path_buf(),
        },
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
            StoreError::ReadOnly {
                path: file.to_path_buf(),
                source,
            }
        }
        io::ErrorKind::NotADirectory => StoreError::NotADirectory {
            path: file.to_path_buf(),
        },
        // redb reports a file that is not a database as InvalidData.
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
            path: file.to_path_buf(),
            detail: source.to_string(),
        },
        _ => StoreError::Io {
            path: file.to_path_buf(),
            source,
        },
    }
}

/// Why a backup could not be written, verified or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing the backup file failed.
    #[error("I/O error on backup file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not a tongban backup at all.
    #[error("{path} is not a tongban backup file: {detail}")]
    NotABackup {
        /// The path.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A record or the whole file failed verification.
    #[error("backup {path} is corrupt at record {record} (byte offset {offset}): {detail}")]
    Corrupt {
        /// The backup file.
        path: PathBuf,
        /// 0-based index of the failing record.
        record: u64,
        /// Byte offset of the start of that record.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The file is a backup of a format this build cannot read.
    #[error("backup {path} has format version {found}; this build reads {supported}")]
    UnsupportedVersion {
        /// The backup file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Restore refuses a destination that already holds files.
    #[error("restore destination {path} is not empty; restore only into an empty or new directory")]
    DestinationNotEmpty {
        /// The destination data directory.
        path: PathBuf,
    },
    /// The source or destination store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
