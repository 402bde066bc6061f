//! The node store: a node's whole state in one redb database under its data
//! directory (`DIR/tongban.redb`), so that an office PC can lose power at any moment
//! and lose nothing it acknowledged.
//!
//! # What it owns
//!
//! - **Case documents.** Each write appends the Automerge changes the store did not
//!   have as one incremental save under (case, seq); past a threshold the case is
//!   queued and [`Store::compact_pending`] later replaces its saves by one full
//!   save. Loading is the full save plus the increments, checked against the heads
//!   recorded for the case. A bounded LRU cache holds loaded documents; opening the
//!   store reads no document, so open time and memory do not grow with the number
//!   of documents held.
//! - **The change log.** A local, monotonically increasing sequence number over
//!   stored changes. The log holds each case once, at its latest seq, so
//!   [`Store::changes_since`] costs what changed, not what is held. Per-peer sync
//!   cursors and per-peer, per-case Automerge sync states are stored beside it.
//! - **Indexes**, written in the same transaction as the document change, from the
//!   [`CaseMeta`] the caller gives with every write: by stage, by due date (overdue
//!   queries read no document), by keyed hash of the resident ID (duplicate
//!   detection without the number in clear), by office on the route.
//! - **Case flags**: what a node notes about a case for itself and never writes
//!   into the document (the domicile county's duplicate flag), under (flag,
//!   case), and [`Store::resident_groups`], the cases that share a resident key.
//! - **Materials** (scans), content-addressed by BLAKE3, streamed in 1 MiB chunks,
//!   deduplicated, each chunk checked on every read; a reference index from cases.
//! - **Backup and restore**: [`Store::backup_to`], [`verify_backup`], [`restore`].
//!
//! # What it must never do
//!
//! - Interpret case content. The store treats documents as Automerge data it loads
//!   and saves; everything it indexes comes from the caller's [`CaseMeta`].
//! - Delete materials as a side effect. A material goes only through
//!   [`Store::remove_material`], an explicit retention call, refused while any case
//!   references it, and recorded.
//! - Log personal data. Tracing events name cases by the random part of their id,
//!   materials by a hash prefix; resident keys and document content never appear.
//! - Acknowledge what is not durable. Every write method returns `Ok` only after
//!   its redb transaction committed with `Durability::Immediate`.
//!
//! # One code path
//!
//! Every operation is a plain method on [`Store`] (or on [`WriteTx`] inside
//! [`Store::write`], for group commit) taking and returning serde-serialisable
//! values, so a daemon can expose the same operations over its control API and the
//! CLI calls the same functions whether it goes through the daemon or opens the
//! store directly. redb admits one process per database: a second open of a store
//! in use is [`StoreError::Locked`].
//!
//! The tables, row layouts, invariants and disk assumptions are documented in
//! `docs/store-format.md`.

mod backup;
mod cache;
mod codec;
mod compact;
mod error;
mod flags;
mod material;
mod store;
mod tables;
mod types;
mod write;

pub use automerge::{Automerge, ChangeHash};
pub use backup::{
    BACKUP_FORMAT_VERSION, BACKUP_MAGIC, Progress, restore, restore_with, verify_backup,
    verify_backup_with,
};
pub use error::{BackupError, StoreError};
pub use material::MaterialReader;
pub use store::{DB_FILE_NAME, Store};
pub use tables::{CHUNK_SIZE, SCHEMA_VERSION};
pub use types::{
    BackupSummary, CaseInfo, CaseMeta, CaseWrite, ChangeEntry, CompactionReport, DueCase,
    LoggedAttestation, MaterialHash, MaterialPut, MaterialRemoval, ResidentKey, StoreOptions,
    StoreStats, WriteOp, WriteOutcome,
};
pub use write::WriteTx;
