//! What the sync protocol needs of a node's store, as a trait the caller
//! implements: the protocol core never opens a file itself.
//!
//! The real implementation wraps `tongban_store::Store` (the simulator's
//! `tongban_sim::RedbStore` does; the node can reuse it). [`MemStore`] keeps
//! everything in memory, for unit tests and the benchmark.
//!
//! The contract the protocol relies on:
//!
//! - **A change log.** Every write of a case that changes its heads gives the case
//!   a new, higher sequence number; [`SyncStore::changes_since`] lists each changed
//!   case once, at its latest sequence number, oldest first. The log belongs to one
//!   [`SyncStore::incarnation`]: a restored backup gets a new one, so peers do not
//!   trust cursors into the old log.
//! - **Atomic, durable commits.** When [`SyncStore::commit`] returns `Ok`, every write
//!   of the batch survives a crash; when it fails, none does. The protocol sends an
//!   acknowledgement only after the commit that makes it true.
//! - **Materials by content.** A material is stored under its BLAKE3 hash
//!   ([`StoreWrite::Material`]); every case write also records which materials the
//!   document references (`materials.*.hash`), held or not, so
//!   [`SyncStore::missing_materials`] tells a restarted node what it still has to
//!   fetch ([`crate::material`]).
//! - **Cheap routing facts.** [`LogEntry::route`] and [`SyncStore::route`] answer
//!   without loading a document, so building an inventory costs per entry, not per
//!   document byte.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::{Automerge, ChangeHash, ReadDoc};
use tongban_case::CaseSummary;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::Timestamp;
use tongban_domain::ids::{CaseId, OfficeId};

use crate::route::CaseRoute;
use crate::wire::{Cursor, Hash32, Incarnation};

/// One entry of the local change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The case.
    pub case: CaseId,
    /// The case's heads at `seq`, sorted.
    pub heads: Vec<Hash32>,
    /// The case's route; `None` when the store has no route for it (it is then
    /// never sent).
    pub route: Option<CaseRoute>,
    /// Set when the entry logs an attestation of the case by this office
    /// rather than the document: `heads` then holds the attestation's BLAKE3,
    /// and `route` is the case's whole route (attestations travel by
    /// [`crate::route::attestation_on_route`]).
    pub attestation: Option<OfficeId>,
}

/// One write of a [`SyncStore::commit`] batch.
#[derive(Debug, Clone)]
pub enum StoreWrite {
    /// Store the state of `doc` as the document of `case` (merging into what is
    /// stored; new changes get a new log sequence number). The store computes its
    /// own index metadata from the document, and records in the same transaction
    /// that `case` references every material in `materials`, whether the material
    /// is held or not. [`StoreWrite::case`] fills `materials` in.
    Case {
        /// The case.
        case: CaseId,
        /// Its route, to be answered by [`SyncStore::route`] and [`LogEntry::route`].
        route: CaseRoute,
        /// The document.
        doc: Box<Automerge>,
        /// The document's full save (`Automerge::save` format), when the writer
        /// has it at hand (a document received whole): the store may keep these
        /// bytes instead of saving the document again. Must be a save of `doc`.
        saved: Option<Vec<u8>>,
        /// The materials the document lists ([`crate::material::referenced`] of
        /// `doc`): read by the writer, which needs them too, and often on another
        /// core, so the store's transaction does not read the document again.
        materials: Vec<crate::material::MaterialRef>,
        /// What indexes need of `doc` ([`CaseSummary::of`] its core), when the
        /// writer read it already: admission reads it on the core that verified
        /// the document, so the store's transaction need not read the document
        /// again. `None` when the writer did not (the store reads it itself). Must
        /// be the summary of `doc`.
        summary: Option<Box<CaseSummary>>,
    },
    /// Store a document received whole and admitted, as [`StoreWrite::Case`]
    /// does, from the bytes it arrived as: admission loaded them and read what
    /// the store needs (heads, summary, materials), so the store need not load
    /// them again, and no copy of the document travels to the store's thread.
    Received {
        /// The case.
        case: CaseId,
        /// Its route.
        route: CaseRoute,
        /// The document's full save, with no missing dependency.
        saved: Vec<u8>,
        /// Its heads.
        heads: Vec<Hash32>,
        /// The materials it lists ([`crate::material::referenced`]).
        materials: Vec<crate::material::MaterialRef>,
        /// What indexes need of it ([`CaseSummary::of`] its core).
        summary: Box<CaseSummary>,
    },
    /// Store an attestation (`tongban_ledger::supervision`, already checked)
    /// unless one of the same office for the case, signed as late or later,
    /// is held; a stored one is logged, so that it travels on.
    Attestation {
        /// The case.
        case: CaseId,
        /// The attesting office.
        office: OfficeId,
        /// Its signed time.
        at: Timestamp,
        /// The case's domicile township.
        domicile: DivisionCode,
        /// The encoded signed attestation.
        bytes: Vec<u8>,
    },
    /// Record how far this node has durably consumed `peer`'s change log.
    Cursor {
        /// The peer.
        peer: OfficeId,
        /// The cursor.
        cursor: Cursor,
    },
    /// Persist the Automerge sync state of (`peer`, `case`) (`State::encode`).
    SyncState {
        /// The peer.
        peer: OfficeId,
        /// The case.
        case: CaseId,
        /// The encoded state.
        state: Vec<u8>,
    },
    /// Replace the stored signed directory.
    Directory {
        /// `SignedDirectory::encode` output, already verified.
        bytes: Vec<u8>,
    },
    /// Replace the stored dataset of (`kind`, `scope`).
    Dataset {
        /// `DatasetKind::wire`.
        kind: u8,
        /// `00` or a county code.
        scope: String,
        /// `SignedDataset::encode` output, already verified and newer.
        bytes: Vec<u8>,
    },
    /// Store a material under its BLAKE3 hash and record that `case` (already
    /// stored) references it, in one transaction. The protocol checks the hash
    /// before it writes; a store may refuse (fail the commit) bytes that do not
    /// hash to `hash`, and must never keep them under that address.
    Material {
        /// A case that references it.
        case: CaseId,
        /// The BLAKE3 hash of `bytes`.
        hash: Hash32,
        /// The whole material.
        bytes: Vec<u8>,
    },
}

/// Part of a stored material, as [`SyncStore::read_material`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialPart {
    /// The material's whole length.
    pub total_len: u64,
    /// The bytes asked for: `min(max_len, total_len - offset)` of them, none at or
    /// after the end.
    pub data: Vec<u8>,
}

impl StoreWrite {
    /// A [`StoreWrite::Case`], with the materials read from `doc`.
    pub fn case(
        case: CaseId,
        route: CaseRoute,
        doc: Automerge,
        saved: Option<Vec<u8>>,
    ) -> StoreWrite {
        StoreWrite::Case {
            materials: crate::material::referenced(&doc),
            case,
            route,
            doc: Box::new(doc),
            saved,
            summary: None,
        }
    }
}

/// A node's store, as the sync protocol uses it. Reads take `&self`; the one write
/// method, [`SyncStore::commit`], is atomic and durable.
pub trait SyncStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The incarnation of the change log.
    fn incarnation(&self) -> Incarnation;

    /// The latest sequence number of the change log (0 when empty).
    fn latest_seq(&self) -> Result<u64, Self::Error>;

    /// The cases changed after `cursor`, oldest first, each once at its latest
    /// sequence number, at most `limit`.
    fn changes_since(&self, cursor: u64, limit: usize) -> Result<Vec<LogEntry>, Self::Error>;

    /// The route of a stored case.
    fn route(&self, case: &CaseId) -> Result<Option<CaseRoute>, Self::Error>;

    /// The heads of a stored case, sorted.
    fn heads(&self, case: &CaseId) -> Result<Option<Vec<Hash32>>, Self::Error>;

    /// The document of a stored case.
    fn load(&self, case: &CaseId) -> Result<Option<Automerge>, Self::Error>;

    /// The whole saved document (`Automerge::save` format). The default loads and
    /// saves; a store that keeps a full save can return it directly.
    fn saved(&self, case: &CaseId) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.load(case)?.map(|doc| doc.save()))
    }

    /// Whether the stored document of `case` contains every change in `heads`.
    /// The default compares with the stored heads, then loads the document.
    fn contains(&self, case: &CaseId, heads: &[Hash32]) -> Result<bool, Self::Error> {
        let Some(stored) = self.heads(case)? else {
            return Ok(heads.is_empty());
        };
        if heads.iter().all(|h| stored.contains(h)) {
            return Ok(true);
        }
        Ok(self
            .load(case)?
            .is_some_and(|doc| heads.iter().all(|h| has_change(&doc, h))))
    }

    /// This node's cursor into `peer`'s change log.
    fn cursor(&self, peer: &OfficeId) -> Result<Option<Cursor>, Self::Error>;

    /// The persisted Automerge sync state of (`peer`, `case`).
    fn sync_state(&self, peer: &OfficeId, case: &CaseId) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The stored signed directory.
    fn directory(&self) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The attestation `office` made of `case`, when held.
    fn attestation(&self, case: &CaseId, office: &OfficeId)
    -> Result<Option<Vec<u8>>, Self::Error>;

    /// Every stored signed dataset (`SignedDataset::encode` output), one per
    /// kind and scope.
    fn datasets(&self) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// The length of a stored material (`hash` is its BLAKE3); `None` when it is
    /// not held.
    fn material_len(&self, hash: &Hash32) -> Result<Option<u64>, Self::Error>;

    /// Whether a material is held. The default asks [`SyncStore::material_len`].
    fn has_material(&self, hash: &Hash32) -> Result<bool, Self::Error> {
        Ok(self.material_len(hash)?.is_some())
    }

    /// `min(max_len, total - offset)` bytes of a stored material from `offset`
    /// (none at or after its end), with its whole length; `None` when it is not
    /// held. Bytes that fail the store's integrity checks are an error, never
    /// returned.
    fn read_material(
        &self,
        hash: &Hash32,
        offset: u64,
        max_len: usize,
    ) -> Result<Option<MaterialPart>, Self::Error>;

    /// Every (case, material) pair where a stored case references a material the
    /// store does not hold (and did not remove, see
    /// [`SyncStore::material_removed`]): what a node still has to fetch, after a
    /// restart too.
    fn missing_materials(&self) -> Result<Vec<(CaseId, Hash32)>, Self::Error>;

    /// Whether this node removed the material under a retention rule: it is then
    /// not fetched again, even while a document still lists it. The default is
    /// `false` (a store without retention).
    fn material_removed(&self, hash: &Hash32) -> Result<bool, Self::Error> {
        let _ = hash;
        Ok(false)
    }

    /// Applies the writes atomically and durably.
    fn commit(&mut self, writes: Vec<StoreWrite>) -> Result<(), Self::Error>;
}

/// Whether `doc` holds the change `hash` (applied, not merely queued for missing
/// dependencies). A hash-table lookup: `get_change_by_hash` would rebuild the
/// whole change from the op set.
pub fn has_change(doc: &Automerge, hash: &Hash32) -> bool {
    doc.get_missing_deps(&[ChangeHash(*hash)]).is_empty()
}

/// Sorted change hashes as raw bytes.
pub fn heads_of(doc: &Automerge) -> Vec<Hash32> {
    let mut heads: Vec<Hash32> = doc.get_heads().into_iter().map(|h| h.0).collect();
    heads.sort_unstable();
    heads
}

/// [`MemStore`] never fails; its error type has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the in-memory store does not fail")]
pub enum Never {}

#[derive(Debug, Clone)]
struct MemCase {
    /// The document, when it was written as one or read since; a case written
    /// with its full save keeps only the bytes until it is first read (the real
    /// store keeps bytes and caches what is read), so a first sync of 100,000
    /// cases does not hold 100,000 op sets in memory.
    /// Boxed: an `Automerge` is a few KiB inline, and the case map moves its
    /// entries each time it grows.
    doc: std::cell::RefCell<Option<Box<Automerge>>>,
    /// The full save: as written, or made on first demand and kept until the case
    /// changes. At least one of `doc` and `saved` is present.
    saved: std::cell::RefCell<Option<Vec<u8>>>,
    heads: Vec<Hash32>,
    route: CaseRoute,
    seq: u64,
}

impl MemCase {
    /// The document, loaded from the saved bytes when only those are kept.
    fn document(&self) -> Automerge {
        if let Some(doc) = &*self.doc.borrow() {
            return Automerge::clone(doc);
        }
        let saved = self.saved.borrow();
        // The bytes were a save of a document that loaded: loading them again
        // cannot fail short of memory corruption; an empty document would make
        // the next sync fetch the case again rather than crash.
        let doc = saved
            .as_deref()
            .and_then(|bytes| Automerge::load(bytes).ok())
            .unwrap_or_default();
        *self.doc.borrow_mut() = Some(Box::new(doc.clone()));
        doc
    }
}

/// An attestation a [`MemStore`] holds: its log seq, signed time, the case's
/// domicile and its bytes.
type MemAttestation = (u64, Timestamp, DivisionCode, Vec<u8>);

/// A [`SyncStore`] in memory, for tests and benchmarks: the same contract as the
/// real store, without durability (dropping it is losing everything).
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    incarnation: Incarnation,
    cases: HashMap<CaseId, MemCase>,
    log: BTreeMap<u64, (CaseId, Option<OfficeId>)>,
    /// (case, office) → (seq, signed time, domicile, bytes).
    attestations: BTreeMap<(CaseId, OfficeId), MemAttestation>,
    next_seq: u64,
    cursors: HashMap<OfficeId, Cursor>,
    sync_states: HashMap<(OfficeId, CaseId), Vec<u8>>,
    directory: Option<Vec<u8>>,
    datasets: BTreeMap<(u8, String), Vec<u8>>,
    materials: HashMap<Hash32, Vec<u8>>,
    /// (case, material) references recorded by case writes.
    references: BTreeSet<(CaseId, Hash32)>,
    /// Number of commits, for tests that count round trips to the store.
    pub commits: u64,
}

impl MemStore {
    /// An empty store with this incarnation.
    pub fn new(incarnation: Incarnation) -> MemStore {
        MemStore {
            incarnation,
            next_seq: 1,
            ..MemStore::default()
        }
    }

    /// Number of cases held.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether no case is held.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Every case id held, sorted.
    pub fn case_ids(&self) -> Vec<CaseId> {
        let mut ids: Vec<CaseId> = self.cases.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// A held material.
    pub fn material(&self, hash: &Hash32) -> Option<&[u8]> {
        self.materials.get(hash).map(Vec::as_slice)
    }

    /// Every material held, sorted by hash.
    pub fn material_hashes(&self) -> Vec<Hash32> {
        let mut hashes: Vec<Hash32> = self.materials.keys().copied().collect();
        hashes.sort_unstable();
        hashes
    }

    /// Stores a material as a local write (what the office application does when a
    /// clerk attaches a scan); returns its hash. The case must reference it in its
    /// document for peers to be served it.
    pub fn put_local_material(&mut self, case: &CaseId, bytes: Vec<u8>) -> Hash32 {
        let hash = *blake3::hash(&bytes).as_bytes();
        let _ = self.commit(vec![StoreWrite::Material {
            case: case.clone(),
            hash,
            bytes,
        }]);
        hash
    }

    /// Stores a document as a local write (what the office application does).
    pub fn put_local(&mut self, case: &CaseId, route: CaseRoute, doc: Automerge) {
        let _ = self.commit(vec![StoreWrite::case(case.clone(), route, doc, None)]);
    }
}

impl SyncStore for MemStore {
    type Error = Never;

    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    fn latest_seq(&self) -> Result<u64, Never> {
        Ok(self.log.keys().next_back().copied().unwrap_or(0))
    }

    fn changes_since(&self, cursor: u64, limit: usize) -> Result<Vec<LogEntry>, Never> {
        let Some(start) = cursor.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(self
            .log
            .range(start..)
            .take(limit)
            .filter_map(|(seq, (case, office))| {
                if let Some(office) = office {
                    let (_, _, domicile, bytes) =
                        self.attestations.get(&(case.clone(), office.clone()))?;
                    let acceptance = DivisionCode::parse(case.acceptance_township()).ok()?;
                    return Some(LogEntry {
                        seq: *seq,
                        case: case.clone(),
                        heads: vec![*blake3::hash(bytes).as_bytes()],
                        route: CaseRoute::new(acceptance, *domicile).ok(),
                        attestation: Some(office.clone()),
                    });
                }
                let held = self.cases.get(case)?;
                Some(LogEntry {
                    seq: *seq,
                    case: case.clone(),
                    heads: held.heads.clone(),
                    route: Some(held.route),
                    attestation: None,
                })
            })
            .collect())
    }

    fn route(&self, case: &CaseId) -> Result<Option<CaseRoute>, Never> {
        Ok(self.cases.get(case).map(|c| c.route))
    }

    fn heads(&self, case: &CaseId) -> Result<Option<Vec<Hash32>>, Never> {
        Ok(self.cases.get(case).map(|c| c.heads.clone()))
    }

    fn load(&self, case: &CaseId) -> Result<Option<Automerge>, Never> {
        Ok(self.cases.get(case).map(MemCase::document))
    }

    fn saved(&self, case: &CaseId) -> Result<Option<Vec<u8>>, Never> {
        Ok(self.cases.get(case).map(|c| {
            c.saved
                .borrow_mut()
                .get_or_insert_with(|| c.document().save())
                .clone()
        }))
    }

    fn cursor(&self, peer: &OfficeId) -> Result<Option<Cursor>, Never> {
        Ok(self.cursors.get(peer).copied())
    }

    fn sync_state(&self, peer: &OfficeId, case: &CaseId) -> Result<Option<Vec<u8>>, Never> {
        Ok(self.sync_states.get(&(peer.clone(), case.clone())).cloned())
    }

    fn attestation(&self, case: &CaseId, office: &OfficeId) -> Result<Option<Vec<u8>>, Never> {
        Ok(self
            .attestations
            .get(&(case.clone(), office.clone()))
            .map(|(.., bytes)| bytes.clone()))
    }

    fn directory(&self) -> Result<Option<Vec<u8>>, Never> {
        Ok(self.directory.clone())
    }

    fn datasets(&self) -> Result<Vec<Vec<u8>>, Never> {
        Ok(self.datasets.values().cloned().collect())
    }

    fn material_len(&self, hash: &Hash32) -> Result<Option<u64>, Never> {
        Ok(self.materials.get(hash).map(|m| m.len() as u64))
    }

    fn read_material(
        &self,
        hash: &Hash32,
        offset: u64,
        max_len: usize,
    ) -> Result<Option<MaterialPart>, Never> {
        Ok(self.materials.get(hash).map(|m| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(m.len());
            let end = start.saturating_add(max_len).min(m.len());
            MaterialPart {
                total_len: m.len() as u64,
                data: m[start..end].to_vec(),
            }
        }))
    }

    fn missing_materials(&self) -> Result<Vec<(CaseId, Hash32)>, Never> {
        Ok(self
            .references
            .iter()
            .filter(|(_, hash)| !self.materials.contains_key(hash))
            .cloned()
            .collect())
    }

    fn commit(&mut self, writes: Vec<StoreWrite>) -> Result<(), Never> {
        self.commits += 1;
        // A received document is stored as the document it loads as (bytes
        // that do not load were never admitted: nothing to store).
        let writes: Vec<StoreWrite> = writes
            .into_iter()
            .filter_map(|write| match write {
                StoreWrite::Received {
                    case,
                    route,
                    saved,
                    materials,
                    summary,
                    ..
                } => Automerge::load(&saved).ok().map(|doc| StoreWrite::Case {
                    case,
                    route,
                    doc: Box::new(doc),
                    saved: Some(saved),
                    materials,
                    summary: Some(summary),
                }),
                write => Some(write),
            })
            .collect();
        // The materials each written document references (the merged document's
        // are these and those recorded by earlier writes).
        for write in &writes {
            if let StoreWrite::Case {
                case, materials, ..
            } = write
            {
                for material in materials {
                    self.references.insert((case.clone(), material.hash));
                }
            }
        }
        for write in writes {
            match write {
                StoreWrite::Case {
                    case,
                    route,
                    doc,
                    saved,
                    ..
                } => {
                    let heads = heads_of(&doc);
                    let fresh = !self.cases.contains_key(&case);
                    let previous = self.cases.get(&case).map(|c| (c.heads.clone(), c.seq));
                    let (merged, saved) = match self.cases.remove(&case) {
                        Some(held) if held.heads != heads => {
                            // Merge rather than replace, as the real store does.
                            let mut held = held.document();
                            let changes = doc.save_after(&held.get_heads());
                            let _ = held.load_incremental(&changes);
                            (held, None)
                        }
                        Some(held) => (held.document(), held.saved.into_inner()),
                        None => (*doc, saved.filter(|_| fresh)),
                    };
                    let heads = heads_of(&merged);
                    let seq = match previous {
                        Some((old, seq)) if old == heads => seq,
                        Some((_, old_seq)) => {
                            self.log.remove(&old_seq);
                            let seq = self.next_seq;
                            self.next_seq += 1;
                            self.log.insert(seq, (case.clone(), None));
                            seq
                        }
                        None => {
                            let seq = self.next_seq.max(1);
                            self.next_seq = seq + 1;
                            self.log.insert(seq, (case.clone(), None));
                            seq
                        }
                    };
                    self.cases.insert(
                        case,
                        MemCase {
                            // With the bytes at hand, keep only them.
                            doc: std::cell::RefCell::new(if saved.is_some() {
                                None
                            } else {
                                Some(Box::new(merged))
                            }),
                            saved: std::cell::RefCell::new(saved),
                            heads,
                            route,
                            seq,
                        },
                    );
                }
                // Turned into `Case` writes above.
                StoreWrite::Received { .. } => {}
                StoreWrite::Cursor { peer, cursor } => {
                    self.cursors.insert(peer, cursor);
                }
                StoreWrite::SyncState { peer, case, state } => {
                    self.sync_states.insert((peer, case), state);
                }
                StoreWrite::Directory { bytes } => self.directory = Some(bytes),
                StoreWrite::Attestation {
                    case,
                    office,
                    at,
                    domicile,
                    bytes,
                } => {
                    let key = (case.clone(), office.clone());
                    let old = self.attestations.get(&key).map(|(seq, at, ..)| (*seq, *at));
                    if old.is_some_and(|(_, held)| held >= at) {
                        continue;
                    }
                    if let Some((seq, _)) = old {
                        self.log.remove(&seq);
                    }
                    let seq = self.next_seq.max(1);
                    self.next_seq = seq + 1;
                    self.log.insert(seq, (case, Some(office)));
                    self.attestations.insert(key, (seq, at, domicile, bytes));
                }
                StoreWrite::Dataset { kind, scope, bytes } => {
                    self.datasets.insert((kind, scope), bytes);
                }
                StoreWrite::Material { case, hash, bytes } => {
                    // Only bytes that hash to their address are kept.
                    if blake3::hash(&bytes).as_bytes() == &hash {
                        self.references.insert((case, hash));
                        self.materials.insert(hash, bytes);
                    }
                }
            }
        }
        Ok(())
    }
}
