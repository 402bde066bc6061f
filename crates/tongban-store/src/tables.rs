//! The redb tables. docs/store-format.md describes each key and value layout and
//! the invariants that tie the tables together.

use redb::TableDefinition;

/// Small key/value settings: node identity, directory bytes, and the store's own
/// `store.*` keys (schema version, incarnation, blob counter, restore marker).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Case id → encoded `CaseRecord` (latest seq, heads, increment counters, metadata).
pub(crate) const CASES: TableDefinition<&str, &[u8]> = TableDefinition::new("cases");
/// Case id → full Automerge save (the compacted base of the document).
pub(crate) const DOC_BASE: TableDefinition<&str, &[u8]> = TableDefinition::new("doc_base");
/// (case id, seq) → Automerge incremental save of the changes made at `seq`.
pub(crate) const DOC_INCR: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("doc_incr");
/// seq → (case id, heads): one entry per case, at its latest seq.
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// Case ids whose increments passed the compaction threshold.
pub(crate) const COMPACT_QUEUE: TableDefinition<&str, ()> = TableDefinition::new("compact_queue");
/// (stage wire byte, case id) → ().
pub(crate) const IDX_STAGE: TableDefinition<(u8, &str), ()> = TableDefinition::new("idx_stage");
/// (due date as days from CE, case id) → stage wire byte.
pub(crate) const IDX_DUE: TableDefinition<(i32, &str), u8> = TableDefinition::new("idx_due");
/// (resident key, case id) → ().
pub(crate) const IDX_RESIDENT: TableDefinition<([u8; 32], &str), ()> =
    TableDefinition::new("idx_resident");
/// (office id, case id) → stage wire byte.
pub(crate) const IDX_OFFICE: TableDefinition<(&str, &str), u8> = TableDefinition::new("idx_office");
/// Material hash → encoded `MaterialRecord` (length, chunk count, blob id, time).
pub(crate) const MATERIALS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("materials");
/// (blob id, chunk index) → BLAKE3 of the chunk (32 bytes) followed by the chunk.
pub(crate) const MATERIAL_CHUNKS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("material_chunks");
/// (case id, material hash) → (): the materials a case references.
pub(crate) const CASE_MATERIALS: TableDefinition<(&str, [u8; 32]), ()> =
    TableDefinition::new("case_materials");
/// (material hash, case id) → (): the reverse of `case_materials`.
pub(crate) const MATERIAL_CASES: TableDefinition<([u8; 32], &str), ()> =
    TableDefinition::new("material_cases");
/// Material hash → (length, time, reason) of its removal by a retention rule.
pub(crate) const MATERIAL_REMOVALS: TableDefinition<[u8; 32], &[u8]> =
    TableDefinition::new("material_removals");
/// Peer office id → sync cursor.
pub(crate) const PEER_CURSORS: TableDefinition<&str, u64> = TableDefinition::new("peer_cursors");
/// (peer office id, case id) → opaque Automerge sync state.
pub(crate) const SYNC_STATES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("sync_states");

/// Meta keys the store reserves for itself; callers may not write them.
pub(crate) const RESERVED_META_PREFIX: &str = "store.";
pub(crate) const META_SCHEMA: &str = "store.schema_version";
pub(crate) const META_INCARNATION: &str = "store.incarnation";
pub(crate) const META_NEXT_BLOB: &str = "store.next_blob";
pub(crate) const META_RESTORING: &str = "store.restore_incomplete";

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Size of a material chunk.
pub const CHUNK_SIZE: usize = 1 << 20;

// Node-local case flags (duplicate detection, issue #15).

/// (flag name, case id) → the caller's bytes: what a node notes about a case
/// for itself and never writes into the document (`duplicate`: the case is a
/// duplicate of another case of the same person held here). Derived state: not
/// in backups; the node recomputes it.
pub(crate) const CASE_FLAGS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("case_flags");

// Supervision (issue #16): what offices attest of cases to supervisors.

/// (case id, attesting office id) → the newest attestation that office made
/// of the case: [`crate::codec::AttestationRow`] (its log seq, signed time,
/// domicile, and the caller's bytes — a signed `TBSV` encoding). Held by the
/// attesting office, the hubs that relay it and the supervisors; in backups.
pub(crate) const ATTESTATIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("attestations");
/// case id → what a supervisor node made of a case's attestations (the
/// caller's bytes). Derived state: not in backups; the node recomputes it.
pub(crate) const SUPERVISED: TableDefinition<&str, &[u8]> = TableDefinition::new("supervised");
