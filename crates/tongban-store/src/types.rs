//! The values the store's operations take and return. All are plain data with
//! serde derives, so that a daemon can carry them over its control API unchanged.

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::Stage;

/// Lower-case hexadecimal of bytes (data-encoding's `HEXLOWER`).
pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Parses exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    data_encoding::HEXLOWER_PERMISSIVE
        .decode_mut(bytes, &mut out)
        .ok()?;
    Some(out)
}

macro_rules! hash32_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hexadecimal, 64 characters.
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                parse_hex32(text)
                    .map($name)
                    .ok_or_else(|| format!("{} must be 64 hexadecimal digits", $what))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash32_type!(
    /// The BLAKE3 hash of a material's whole content: its address in the store.
    MaterialHash,
    "a material hash"
);

hash32_type!(
    /// The keyed BLAKE3 hash of a resident ID number, computed by the caller with
    /// the node's duplicate-detection key. The store indexes it and never sees the
    /// number itself.
    ResidentKey,
    "a resident key"
);

impl fmt::Display for MaterialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for MaterialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaterialHash({})", self.to_hex())
    }
}

impl fmt::Debug for ResidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A keyed hash is not the number, but there is no reason to spread it in
        // logs either: eight hex digits identify it well enough for debugging.
        write!(f, "ResidentKey({}…)", &self.to_hex()[..8])
    }
}

/// The index metadata of a case, computed by the caller from the case document and
/// given with every write. The store indexes it in the same transaction as the
/// document change and never looks inside the document to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseMeta {
    /// The case's current stage.
    pub stage: Stage,
    /// The date by which the next step is due, if a deadline runs.
    pub due: Option<NaiveDate>,
    /// The keyed hash of the applicant's resident ID number.
    pub resident_key: ResidentKey,
    /// The offices on the case's route: acceptance office, domicile township,
    /// county offices.
    pub offices: Vec<OfficeId>,
    /// The subsidy kinds applied for (code names).
    pub subsidy_kinds: Vec<String>,
}

/// What the store knows of a case without reading its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseInfo {
    /// The case.
    pub case: CaseId,
    /// The change-log sequence number of its latest change.
    pub seq: u64,
    /// The Automerge heads of the stored document, sorted.
    pub heads: Vec<ChangeHash>,
    /// The index metadata last written.
    pub meta: CaseMeta,
    /// Incremental saves stored since the last compaction.
    pub increments: u32,
    /// Their total size in bytes.
    pub increment_bytes: u64,
}

/// The result of writing a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseWrite {
    /// The case's change-log sequence number after the write.
    pub seq: u64,
    /// The document's heads after the write, sorted.
    pub heads: Vec<ChangeHash>,
    /// False when the write carried no change the store did not already have
    /// (the metadata may still have been updated).
    pub changed: bool,
}

/// One entry of the change log: a case and the heads it had at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// The sequence number.
    pub seq: u64,
    /// The case that changed.
    pub case: CaseId,
    /// Its heads after the change, sorted; for an attestation, its BLAKE3.
    pub heads: Vec<ChangeHash>,
    /// Set when the entry logs an attestation of the case rather than its
    /// document.
    pub attestation: Option<LoggedAttestation>,
}

/// An attestation the change log names: who made it, and the case's
/// domicile township, which routes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedAttestation {
    /// The attesting office.
    pub office: String,
    /// The case's domicile township.
    pub domicile: String,
}

/// A case whose deadline has passed, from the due-date index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueCase {
    /// The case.
    pub case: CaseId,
    /// Its due date.
    pub due: NaiveDate,
    /// Its stage.
    pub stage: Stage,
}

/// The result of storing a material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialPut {
    /// The material's address.
    pub hash: MaterialHash,
    /// Its length in bytes.
    pub len: u64,
    /// False when the same content was already stored (nothing new was written).
    pub newly_stored: bool,
}

/// The record of a removed material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRemoval {
    /// The material.
    pub hash: MaterialHash,
    /// Its length in bytes.
    pub len: u64,
    /// When it was removed, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The retention rule or reason given.
    pub reason: String,
}

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreOptions {
    /// Create the data directory and the database when missing. Off by default, so
    /// that a mistyped `--data-dir` is an error rather than a new empty node.
    pub create_if_missing: bool,
    /// How many loaded documents the cache keeps.
    pub document_cache_capacity: usize,
    /// redb's page cache, in bytes.
    pub page_cache_bytes: usize,
    /// Queue a case for compaction once it has this many incremental saves.
    pub compact_after_increments: u32,
    /// Queue a case for compaction once its incremental saves total this many bytes.
    pub compact_after_bytes: u64,
    /// redb quick-repair: each commit also saves the allocator state (two-phase
    /// commit), so that reopening after a crash or power loss does not walk the
    /// whole file. Costs a little per commit; see docs/performance.md.
    pub quick_repair: bool,
    /// Verify the checksum of every page when opening (reads the whole file).
    pub check_integrity_on_open: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            create_if_missing: false,
            document_cache_capacity: 1024,
            page_cache_bytes: 64 * 1024 * 1024,
            compact_after_increments: 32,
            compact_after_bytes: 64 * 1024,
            quick_repair: true,
            check_integrity_on_open: false,
        }
    }
}

/// One write operation of a batch; see [`crate::Store::apply_batch`].
///
/// Materials are not batch operations: they are streamed with
/// [`crate::Store::put_material`] or [`crate::WriteTx::put_material`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteOp {
    /// [`crate::WriteTx::put_changes`].
    PutChanges {
        /// The case.
        case: CaseId,
        /// Automerge change bytes (an incremental save, `save_after`, or a full save).
        changes: Vec<u8>,
        /// The case's index metadata after the changes.
        meta: CaseMeta,
    },
    /// [`crate::WriteTx::attach_material`].
    AttachMaterial {
        /// The case.
        case: CaseId,
        /// The material.
        material: MaterialHash,
    },
    /// [`crate::WriteTx::detach_material`].
    DetachMaterial {
        /// The case.
        case: CaseId,
        /// The material.
        material: MaterialHash,
    },
    /// [`crate::WriteTx::set_peer_cursor`].
    SetPeerCursor {
        /// The peer.
        peer: OfficeId,
        /// The cursor.
        seq: u64,
    },
    /// [`crate::WriteTx::put_sync_state`].
    PutSyncState {
        /// The peer.
        peer: OfficeId,
        /// The case.
        case: CaseId,
        /// Opaque Automerge sync state.
        state: Vec<u8>,
    },
    /// [`crate::WriteTx::set_meta`].
    SetMeta {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
}

/// The result of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// A case write.
    Case(CaseWrite),
    /// A detach: whether the reference existed.
    Detached(bool),
    /// Any other operation.
    Done,
}

/// What one call of [`crate::Store::compact_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionReport {
    /// Cases compacted into one full save.
    pub compacted: usize,
    /// Cases still waiting.
    pub remaining: u64,
}

/// Counts for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Number of cases.
    pub cases: u64,
    /// Number of materials.
    pub materials: u64,
    /// The latest change-log sequence number.
    pub latest_seq: u64,
    /// Cases waiting for compaction.
    pub pending_compactions: u64,
    /// Size of the database file in bytes.
    pub file_bytes: u64,
}

/// A summary of a verified backup, or of one just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Backup format version.
    pub format_version: u32,
    /// Store schema version of the source.
    pub schema_version: u32,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The source's latest change-log sequence number at the snapshot.
    pub latest_seq: u64,
    /// Number of records, including header and end.
    pub records: u64,
    /// Number of cases (each document was loaded with Automerge when verifying).
    pub cases: u64,
    /// Number of incremental saves among the documents.
    pub increments: u64,
    /// Number of materials (each hash was recomputed when verifying).
    pub materials: u64,
    /// Total bytes of material content.
    pub material_bytes: u64,
    /// Number of case-to-material references.
    pub references: u64,
    /// Number of peer cursors.
    pub peer_cursors: u64,
    /// Number of stored sync states.
    pub sync_states: u64,
    /// Number of attestations held (supervision).
    #[serde(default)]
    pub attestations: u64,
    /// Size of the backup file in bytes.
    pub file_bytes: u64,
}
