//! Signed authorship: every change of a case document is attributable to the
//! office that made it, signed by that office, and allowed by the write-rights
//! table ([`tongban_domain::rights`]).
//!
//! # The model
//!
//! - **Actors name offices.** An office writes a case under an Automerge actor id
//!   made of its office id, a zero byte and eight bytes that differ between
//!   writing sessions ([`actor_for`]), so every change names the office that made
//!   it ([`office_of_actor`]).
//! - **Writes are sealed.** After a write (one or more changes) the office signs
//!   the document's heads: a stage transition (`transitions/<hash>`) when the
//!   write moves the stage, a signed commit (`seals/<hash>`, [`SignedCommit`])
//!   otherwise. The record is written in a change of its own whose dependencies
//!   are exactly the heads it signs, and which holds nothing but the record: a
//!   *signature change*. A signature vouches for every change of the signer's
//!   own actors in the causal past of the heads it signs.
//! - **Every other change must be covered** by a valid signature of its own
//!   office (the directory certifies the key at the signed time, not revoked by
//!   then), and each top-level field it touches must be granted to that office
//!   by the write-rights table in the situation of the write: creating the case;
//!   sealed by a transition to some stage (a review's opinion, a decision); or a
//!   plain write at the stage the case was at — and at every stage of a
//!   transition made concurrently with it, because a concurrent write may land
//!   after that transition.
//!
//! [`Scan`] reads a document's change graph once (no signature is checked);
//! [`Scan::check`] then judges it against a directory, trusting signatures a
//! batch already verified. Sync admission refuses a document with any finding;
//! the verifier reports them all, with the change, its author and the path.
//!
//! Which object an operation touched is read from the change's columns
//! (`crate::ops`, with Automerge's expanded form, `Change::decode`, as the
//! fallback); nothing in Automerge's public API maps an object to the
//! top-level field it lies under, so that mapping is written here.

use std::collections::{BTreeSet, HashMap};

use automerge::{ActorId, Automerge, ChangeHash};
use serde::Serialize;
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::rights::{self, Part, Situation};
use tongban_domain::stage::{CaseFacts, OfficeFacts, Stage};
use tongban_ledger::commit::SignedRecord;
use tongban_ledger::directory::Directory;
use tongban_ledger::verify::{SignatureStatus, VerifiedSignatures, key_authority};

use crate::{doc_ops, ops};

/// Top-level fields whose entries are signature records.
const RECORD_FIELDS: [&str; 2] = ["transitions", "seals"];

/// The Automerge actor id an office writes under: its office id, a zero byte and
/// eight bytes from `salt` (which must differ between writing sessions of the
/// same office on the same case, or Automerge would see two changes with one
/// sequence number).
pub fn actor_for(office: &OfficeId, salt: &[u8]) -> ActorId {
    let mut bytes = office.as_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(&blake3::hash(salt).as_bytes()[..8]);
    ActorId::from(bytes)
}

/// The office an actor id names, if it is one [`actor_for`] made.
pub fn office_of_actor(actor: &ActorId) -> Option<OfficeId> {
    let bytes = actor.to_bytes();
    let split = bytes.iter().position(|b| *b == 0)?;
    if bytes.len() != split + 9 {
        return None;
    }
    let text = std::str::from_utf8(&bytes[..split]).ok()?;
    OfficeId::parse(text).ok()
}

/// What is wrong with one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// No valid signature of its office covers the change (or its actor names
    /// no office).
    Unsigned,
    /// Its office may not write what it touched, then.
    Unauthorised,
    /// A signature change that is malformed: more than its record, a record
    /// that does not decode, under a key that is not its hash, by another
    /// office than its actor's, or not written right after the heads it signs.
    BadRecord,
    /// A signed commit whose key the directory does not certify for its office
    /// at the signed time, or was revoked by then, or whose signature fails.
    BadSignature,
}

impl FindingKind {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::Unsigned => "unsigned_change",
            FindingKind::Unauthorised => "unauthorised_change",
            FindingKind::BadRecord => "bad_signature_record",
            FindingKind::BadSignature => "bad_commit_signature",
        }
    }
}

/// One finding about one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// The change's hash (hex).
    pub change: String,
    /// The office its actor names, if any.
    pub author: Option<String>,
    /// The top-level fields it touched.
    pub paths: Vec<String>,
    /// Why, in words.
    pub reason: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} change {} by {} at {}: {}",
            self.kind.code(),
            self.change.get(..12).unwrap_or(&self.change),
            self.author.as_deref().unwrap_or("(no office)"),
            if self.paths.is_empty() {
                "(nothing)".to_string()
            } else {
                self.paths.join(", ")
            },
            self.reason
        )
    }
}

/// A signature record found in a signature change.
#[derive(Debug, Clone)]
pub struct FoundRecord {
    /// The change that wrote it.
    change: usize,
    /// Its encoded bytes.
    pub bytes: Vec<u8>,
    /// Decoded.
    pub record: SignedRecord,
}

/// One change, as the checks need it.
#[derive(Debug)]
struct ChangeInfo {
    hash: ChangeHash,
    office: Option<OfficeId>,
    deps: Vec<usize>,
    /// Top-level fields touched, with whether any op went below the field itself.
    fields: Vec<(String, bool)>,
    /// Set when this is a well-formed signature change: index into `records`.
    record: Option<usize>,
    /// Why it is a malformed signature change, if it tried to be one.
    bad_record: Option<String>,
}

/// A document's change graph, read once (see the module documentation).
#[derive(Debug)]
pub struct Scan {
    changes: Vec<ChangeInfo>,
    /// Ancestors of each change (itself included), as bit sets over `changes`.
    ancestors: Vec<Vec<u64>>,
    records: Vec<FoundRecord>,
}

fn bit(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(set: &mut [u64], i: usize) {
    if let Some(w) = set.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

fn hex(bytes: &[u8]) -> String {
    tongban_ledger::hex(bytes)
}

/// One change as the scan reads it: its hash, actor and dependencies, and its
/// operations in op id order, with actor indices into one document-wide table.
#[derive(Debug)]
struct RawChange {
    hash: ChangeHash,
    actor: ActorId,
    deps: Vec<ChangeHash>,
    /// Its operations: (op counter, op).
    ops: Vec<(u64, ScanOp)>,
}

/// One operation, its object an id of the document-wide actor table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScanOp {
    obj: Option<(u64, usize)>,
    key: ops::Key,
    action: ops::Action,
}

/// Reads the change graph of `doc`. Never panics on a document Automerge loaded.
pub fn scan(doc: &Automerge) -> Scan {
    scan_changes(changes_of(doc))
}

/// [`scan`] of a document loaded from `saved` (`Automerge::load(saved)`), which
/// reads each change's operations from the saved document chunk instead of
/// having Automerge rebuild every change (`get_changes`): the same scan at a
/// fraction of the cost. Falls back to [`scan`] when `saved` is not exactly one
/// document chunk this crate reads (`crate::doc_ops`), or does not match `doc`.
pub fn scan_saved(doc: &Automerge, saved: &[u8]) -> Scan {
    match saved_changes(doc, saved) {
        Some(changes) => scan_changes(changes),
        None => scan(doc),
    }
}

/// Every change of `doc`, rebuilt by Automerge.
fn changes_of(doc: &Automerge) -> (Vec<RawChange>, Vec<ActorId>) {
    // Actors of the document by first appearance, so that an object id is two
    // numbers instead of a counter and a copy of an actor id.
    let mut actors: Vec<ActorId> = Vec::new();
    let changes = doc
        .get_changes(&[])
        .iter()
        .map(|change| {
            // The change's ops from its columns (see `ops` for why not
            // `Change::decode`, which is the fallback).
            let lite = ops::read(change).unwrap_or_else(|| ops::from_decoded(change));
            let local: Vec<usize> = ops::actors(change)
                .into_iter()
                .map(|actor| match actors.iter().position(|a| *a == actor) {
                    Some(k) => k,
                    None => {
                        actors.push(actor);
                        actors.len() - 1
                    }
                })
                .collect();
            let start = change.start_op().get();
            RawChange {
                hash: change.hash(),
                actor: change.actor_id().clone(),
                deps: change.deps().to_vec(),
                ops: lite
                    .into_iter()
                    .enumerate()
                    .map(|(k, op)| {
                        let obj = match op.obj {
                            ops::Obj::Root => None,
                            ops::Obj::Id { counter, actor } => {
                                Some((counter, local.get(actor).copied().unwrap_or(usize::MAX)))
                            }
                        };
                        (
                            start + k as u64,
                            ScanOp {
                                obj,
                                key: op.key,
                                action: op.action,
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    (changes, actors)
}

/// Every change of `doc`, its hash, actor, dependencies and operation range
/// from Automerge's change graph (`get_changes_meta`, which rebuilds nothing)
/// and its operations from the document chunk `saved` that `doc` was loaded
/// from. `None` when `saved` is not such a chunk, or any operation does not
/// fall exactly into one change's range, or a change's range is not exactly
/// filled: then [`changes_of`] reads the changes as Automerge rebuilds them.
fn saved_changes(doc: &Automerge, saved: &[u8]) -> Option<(Vec<RawChange>, Vec<ActorId>)> {
    let read = doc_ops::read(saved)?;
    let mut heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    let mut chunk_heads = read.heads.clone();
    heads.sort_unstable();
    chunk_heads.sort_unstable();
    if heads != chunk_heads {
        return None;
    }
    let meta = doc.get_changes_meta(&[]);
    // Every range is filled by exactly one operation a slot, so the ranges
    // together hold as many slots as there are operations: checked before
    // allocating any (a document may claim ranges far larger than it holds).
    let mut total: u64 = 0;
    for change in &meta {
        let len = change.max_op.checked_add(1)?.checked_sub(change.start_op)?;
        total = total.checked_add(len)?;
    }
    if total != read.ops.len() as u64 {
        return None;
    }
    // Each change's slot range, by actor: (start op, max op, change index).
    let mut ranges: Vec<Vec<(u64, u64, usize)>> = vec![Vec::new(); read.actors.len()];
    let mut slots: Vec<Vec<Option<ScanOp>>> = Vec::with_capacity(meta.len());
    for (i, change) in meta.iter().enumerate() {
        let actor = read.actors.iter().position(|a| *a == *change.actor)?;
        let len = change.max_op.checked_add(1)?.checked_sub(change.start_op)?;
        if change.start_op == 0 {
            return None;
        }
        ranges[actor].push((change.start_op, change.max_op, i));
        slots.push(std::iter::repeat_with(|| None).take(len as usize).collect());
    }
    for list in &mut ranges {
        list.sort_unstable();
    }
    for op in read.ops {
        let (counter, actor) = op.id;
        let list = ranges.get(actor)?;
        let at = list.partition_point(|(start, _, _)| *start <= counter);
        let (start, max, change) = *list.get(at.checked_sub(1)?)?;
        if counter > max {
            return None;
        }
        let slot = slots.get_mut(change)?.get_mut((counter - start) as usize)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(ScanOp {
            obj: op.obj,
            key: op.key,
            action: op.action,
        });
    }
    let changes = meta
        .into_iter()
        .zip(slots)
        .map(|(change, slots)| {
            let start = change.start_op;
            let ops = slots
                .into_iter()
                .enumerate()
                .map(|(k, op)| op.map(|op| (start + k as u64, op)))
                .collect::<Option<Vec<_>>>()?;
            Some(RawChange {
                hash: change.hash,
                actor: change.actor.into_owned(),
                deps: change.deps,
                ops,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((changes, read.actors))
}

/// The scan of changes read by [`changes_of`] or [`saved_changes`].
fn scan_changes((all, actors): (Vec<RawChange>, Vec<ActorId>)) -> Scan {
    let index: HashMap<ChangeHash, usize> =
        all.iter().enumerate().map(|(i, c)| (c.hash, i)).collect();
    // Topological order: Automerge hands changes out causally ordered, but the
    // checks below rely on it, so order them here (Kahn's algorithm).
    let n = all.len();
    let mut order = Vec::with_capacity(n);
    let mut pending: Vec<usize> = all.iter().map(|c| c.deps.len()).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, change) in all.iter().enumerate() {
        for dep in &change.deps {
            match index.get(dep) {
                Some(&d) => children[d].push(i),
                // A dependency the document lacks: never ready (a loaded
                // document has none; a partial one is stripped before admission).
                None => pending[i] = usize::MAX,
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|i| pending[*i] == 0).collect();
    while let Some(i) = ready.pop() {
        order.push(i);
        for &child in &children[i] {
            if pending[child] != usize::MAX {
                pending[child] -= 1;
                if pending[child] == 0 {
                    ready.push(child);
                }
            }
        }
    }
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(p, i)| (*i, p)).collect();
    let words = n.div_ceil(64).max(1);
    let mut changes = Vec::with_capacity(order.len());
    let mut ancestors: Vec<Vec<u64>> = Vec::with_capacity(order.len());
    let mut records = Vec::new();
    // Object (its making op: counter, actor) → top-level field, and whether the
    // object is the field's own container (made directly at the root).
    let mut objects: HashMap<(u64, usize), (usize, bool)> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut all: Vec<Option<RawChange>> = all.into_iter().map(Some).collect();
    for &i in &order {
        let Some(change) = all[i].take() else {
            continue;
        };
        let deps: Vec<usize> = change
            .deps
            .iter()
            .filter_map(|d| index.get(d).and_then(|j| position.get(j)).copied())
            .collect();
        let mut anc = vec![0u64; words];
        for &d in &deps {
            for (w, dw) in anc.iter_mut().zip(&ancestors[d]) {
                *w |= dw;
            }
        }
        set_bit(&mut anc, changes.len());
        ancestors.push(anc);
        let own = actors
            .iter()
            .position(|a| *a == change.actor)
            .unwrap_or(usize::MAX);
        // Fields by index into `names` (interned once per document: a change of
        // the intake touches every field, and admission scans every document).
        let mut touched: Vec<(usize, bool)> = Vec::new();
        // The shape of a signature change: one map made in a record container,
        // every other op inside that map.
        let mut record_key: Option<(usize, String, (u64, usize))> = None;
        let mut record_bytes: Option<Vec<u8>> = None;
        let mut shape_ok = true;
        for (counter, op) in change.ops {
            let (field, container) = match op.obj {
                None => match &op.key {
                    ops::Key::Map(key) => (intern(&mut names, key.as_str()), None),
                    ops::Key::Seq => (intern(&mut names, "?"), None),
                },
                Some(id) => match objects.get(&id) {
                    Some((field, is_container)) => (*field, Some((id, *is_container))),
                    None => (intern(&mut names, "?"), None),
                },
            };
            match touched.iter_mut().find(|(f, _)| *f == field) {
                Some(entry) => entry.1 |= container.is_some(),
                None => touched.push((field, container.is_some())),
            }
            let is_record_field = RECORD_FIELDS.contains(&names[field].as_str());
            let made = matches!(op.action, ops::Action::Make(_));
            // An op's own id, needed only for the objects it makes.
            let own_id = made.then_some((counter, own));
            if let Some(own_id) = own_id {
                objects.insert(own_id, (field, container.is_none()));
            }
            // Track the signature-change shape.
            match (&record_key, container) {
                (None, Some((_, true)))
                    if is_record_field
                        && matches!(op.action, ops::Action::Make(automerge::ObjType::Map)) =>
                {
                    match (&op.key, own_id) {
                        (ops::Key::Map(key), Some(own_id)) => {
                            record_key = Some((field, key.to_string(), own_id));
                        }
                        _ => shape_ok = false,
                    }
                }
                (Some((_, _, map)), Some((id, _))) if id == *map => {
                    if let (ops::Key::Map(key), ops::Action::PutBytes(bytes)) = (&op.key, op.action)
                        && key.as_str() == "signed"
                    {
                        record_bytes = Some(bytes);
                    }
                }
                _ => shape_ok = false,
            }
        }
        let fields: Vec<(String, bool)> = touched
            .iter()
            .map(|(f, deep)| (names[*f].clone(), *deep))
            .collect();
        let office = office_of_actor(&change.actor);
        let mut info = ChangeInfo {
            hash: change.hash,
            office,
            deps,
            fields,
            record: None,
            bad_record: None,
        };
        let only_records = !info.fields.is_empty()
            && info
                .fields
                .iter()
                .all(|(f, _)| RECORD_FIELDS.contains(&f.as_str()));
        if only_records {
            match (shape_ok, record_key, record_bytes) {
                (true, Some((field, key, _)), Some(bytes)) => {
                    match check_record(&names[field], &key, &bytes, &change.deps, info.office.as_ref())
                        .and_then(|record| {
                            extra_deps_in_past(&record, &change.deps, &index, &position, &ancestors)
                                .map(|()| record)
                        }) {
                        Ok(record) => {
                            info.record = Some(records.len());
                            records.push(FoundRecord {
                                change: changes.len(),
                                bytes,
                                record,
                            });
                        }
                        Err(reason) => info.bad_record = Some(reason),
                    }
                }
                _ => {
                    info.bad_record = Some(
                        "a change to the signature records must hold exactly one record and nothing else"
                            .into(),
                    )
                }
            }
        }
        changes.push(info);
    }
    Scan {
        changes,
        ancestors,
        records,
    }
}

/// The index of `name` in `names`, added when new.
fn intern(names: &mut Vec<String>, name: &str) -> usize {
    match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    }
}

/// Checks a signature record against the change that wrote it.
fn check_record(
    field: &str,
    key: &str,
    bytes: &[u8],
    deps: &[ChangeHash],
    office: Option<&OfficeId>,
) -> Result<SignedRecord, String> {
    let record = SignedRecord::decode(bytes).map_err(|e| format!("record does not decode: {e}"))?;
    let expected_field = match record {
        SignedRecord::Transition(_) => "transitions",
        SignedRecord::Commit(_) => "seals",
    };
    if field != expected_field {
        return Err(format!("a {expected_field} record filed under {field}"));
    }
    if key != hex(blake3::hash(bytes).as_bytes()) {
        return Err(format!("record filed under {key}, which is not its hash"));
    }
    if office != Some(record.office()) {
        return Err(format!(
            "record signed by {} written by the actor of {}",
            record.office(),
            office.map_or("no office", |o| o.as_str())
        ));
    }
    // Automerge adds an actor's own previous change to the dependencies of its
    // next one when that change is not a head; such a dependency is already in
    // the past of the heads (checked by the caller, which knows the graph).
    if record
        .heads()
        .iter()
        .any(|head| !deps.iter().any(|d| d.0 == *head))
    {
        return Err(
            "the record is not written right after the heads it signs (a head it signs is not among its change's dependencies)"
                .into(),
        );
    }
    Ok(record)
}

/// Every dependency of a signature change beyond the heads its record signs
/// must lie in the past of those heads: the record then vouches for exactly
/// the history up to its heads, as if written right after them.
fn extra_deps_in_past(
    record: &SignedRecord,
    deps: &[ChangeHash],
    index: &HashMap<ChangeHash, usize>,
    position: &HashMap<usize, usize>,
    ancestors: &[Vec<u64>],
) -> Result<(), String> {
    let at = |hash: &ChangeHash| index.get(hash).and_then(|i| position.get(i)).copied();
    let heads: Vec<usize> = record
        .heads()
        .iter()
        .filter_map(|h| at(&ChangeHash(*h)))
        .collect();
    for dep in deps {
        if record.heads().contains(&dep.0) {
            continue;
        }
        let in_past = at(dep).is_some_and(|d| heads.iter().any(|&h| bit(&ancestors[h], d)));
        if !in_past {
            return Err(
                "the record is not written right after the heads it signs (its change depends on a change after them)"
                    .into(),
            );
        }
    }
    Ok(())
}

impl Scan {
    /// Every signature record found, transitions and signed commits.
    pub fn records(&self) -> &[FoundRecord] {
        &self.records
    }

    /// The encoded records, for a batch signature check.
    pub fn record_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|r| r.bytes.as_slice())
    }

    /// The hashes of every change the document has, in causal order.
    pub fn change_hashes(&self) -> impl Iterator<Item = ChangeHash> + '_ {
        self.changes.iter().map(|c| c.hash)
    }

    /// How many changes the document has.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether the document has no change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        bit(&self.ancestors[of], ancestor)
    }

    /// Judges every change against `directory` and the write-rights table;
    /// every finding, none when the document is wholly attributable and
    /// authorised. `facts` are the case's (acceptance office, domicile).
    pub fn check(
        &self,
        case: &CaseId,
        facts: &CaseFacts,
        directory: &Directory,
        verified: Option<&VerifiedSignatures>,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        let finding = |kind, info: &ChangeInfo, reason: String| Finding {
            kind,
            change: hex(&info.hash.0),
            author: info.office.as_ref().map(|o| o.to_string()),
            paths: info.fields.iter().map(|(f, _)| f.clone()).collect(),
            reason,
        };
        // Which records carry authority, and the writer's facts from them.
        let mut valid: Vec<Option<OfficeFacts>> = Vec::with_capacity(self.records.len());
        for found in &self.records {
            let record = &found.record;
            let info = &self.changes[found.change];
            let mut problem = None;
            if record.case() != case {
                problem = Some(format!("record is for case {}", record.case()));
            } else if !verified.is_some_and(|v| v.contains(blake3::hash(&found.bytes).as_bytes()))
                && !record.verify_signature()
            {
                problem = Some("the signature does not verify for the key it names".into());
            }
            let facts_of = match problem {
                Some(_) => None,
                None => {
                    let (status, cert, why) =
                        key_authority(directory, record.office(), record.signer_key(), record.at());
                    match (status, cert) {
                        (SignatureStatus::Valid, Some(cert)) => Some(OfficeFacts {
                            office: cert.office.to_string(),
                            role: cert.role,
                            division: cert.division.clone(),
                        }),
                        _ => {
                            problem = why.map(|(_, reason)| reason);
                            None
                        }
                    }
                }
            };
            // Transitions are reported by the ledger's verifier; commits here.
            if let (Some(reason), SignedRecord::Commit(_)) = (&problem, record) {
                findings.push(finding(FindingKind::BadSignature, info, reason.clone()));
            }
            valid.push(facts_of);
        }
        // The transitions with authority, by change: (change, from, to, seq).
        let transitions: Vec<(usize, Stage, u32)> = self
            .records
            .iter()
            .zip(&valid)
            .filter_map(|(found, facts)| match (&found.record, facts) {
                (SignedRecord::Transition(t), Some(_)) => {
                    Some((found.change, t.transition.to, t.transition.seq))
                }
                _ => None,
            })
            .collect();
        let mut evaluation_written = false;
        for (i, info) in self.changes.iter().enumerate() {
            if let Some(reason) = &info.bad_record {
                findings.push(finding(FindingKind::BadRecord, info, reason.clone()));
                continue;
            }
            if info.record.is_some() {
                continue;
            }
            let Some(office) = &info.office else {
                findings.push(finding(
                    FindingKind::Unsigned,
                    info,
                    "its Automerge actor names no office: nobody vouches for it".into(),
                ));
                continue;
            };
            // The earliest valid record of its own office whose heads cover it.
            let cover = self
                .records
                .iter()
                .zip(&valid)
                .filter(|(found, facts)| {
                    facts.is_some()
                        && found.record.office() == office
                        && self.changes[found.change]
                            .deps
                            .iter()
                            .any(|&d| self.is_ancestor(i, d))
                })
                .min_by_key(|(found, _)| found.change);
            let Some((cover, Some(writer))) = cover else {
                findings.push(finding(
                    FindingKind::Unsigned,
                    info,
                    format!("no valid signature of {office} covers it"),
                ));
                continue;
            };
            let creation = info.deps.is_empty() && i == 0;
            let situations: Vec<Situation> = if creation {
                vec![Situation::Creation]
            } else if let SignedRecord::Transition(t) = &cover.record
                && self.changes[cover.change].deps.contains(&i)
            {
                vec![Situation::With(t.transition.to)]
            } else {
                // The stage it was written at, and every stage of a transition
                // made concurrently with it.
                let at = transitions
                    .iter()
                    .filter(|(change, _, _)| self.is_ancestor(*change, i))
                    .max_by_key(|(_, _, seq)| *seq)
                    .map(|(_, to, _)| *to);
                let mut list: Vec<Situation> = at.into_iter().map(Situation::At).collect();
                list.extend(
                    transitions
                        .iter()
                        .filter(|(change, _, _)| {
                            !self.is_ancestor(*change, i) && !self.is_ancestor(i, *change)
                        })
                        .map(|(_, to, _)| Situation::At(*to)),
                );
                if at.is_none() {
                    findings.push(finding(
                        FindingKind::Unauthorised,
                        info,
                        "written before the case was created".into(),
                    ));
                    continue;
                }
                list
            };
            let mut refused: BTreeSet<String> = BTreeSet::new();
            for (field, deep) in &info.fields {
                let Some(part) = Part::of_field(field) else {
                    refused.insert(format!("{field}: not a field of the case schema"));
                    continue;
                };
                if creation && !deep {
                    // The creating change lays out every field, empty or scalar.
                    continue;
                }
                for situation in &situations {
                    let already = part == Part::Evaluation && evaluation_written;
                    if let Err(why) = rights::check_write(part, writer, facts, *situation, already)
                    {
                        refused.insert(format!("{field}: {why}"));
                    }
                }
                if part == Part::Evaluation {
                    evaluation_written = true;
                }
            }
            if !refused.is_empty() {
                findings.push(finding(
                    FindingKind::Unauthorised,
                    info,
                    refused.into_iter().collect::<Vec<_>>().join("; "),
                ));
            }
        }
        findings
    }
}

/// Scans and checks in one call (see [`Scan::check`]).
pub fn check(
    doc: &Automerge,
    case: &CaseId,
    facts: &CaseFacts,
    directory: &Directory,
) -> Vec<Finding> {
    scan(doc).check(case, facts, directory, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::tests::{Edit, build, edit};
    use proptest::prelude::*;

    /// A change with actor indices replaced by the actors, for comparing the
    /// two readings (each numbers actors its own way).
    type Plain = (
        ChangeHash,
        ActorId,
        Vec<ChangeHash>,
        Vec<(u64, Option<(u64, ActorId)>, ops::Key, ops::Action)>,
    );

    fn plain((changes, actors): (Vec<RawChange>, Vec<ActorId>)) -> Vec<Plain> {
        let mut out: Vec<Plain> = changes
            .into_iter()
            .map(|c| {
                let ops = c
                    .ops
                    .into_iter()
                    .map(|(counter, op)| {
                        let obj = op.obj.map(|(ctr, a)| (ctr, actors[a].clone()));
                        (counter, obj, op.key, op.action)
                    })
                    .collect();
                let mut deps = c.deps;
                deps.sort_unstable();
                (c.hash, c.actor, deps, ops)
            })
            .collect();
        out.sort_by_key(|c| c.0);
        out
    }

    fn same_reading(edits: &[Edit]) -> Result<(), TestCaseError> {
        let mut doc = build(edits);
        for saved in [doc.save(), doc.save_nocompress()] {
            let loaded = Automerge::load(&saved).unwrap();
            let from_chunk = saved_changes(&loaded, &saved);
            prop_assert!(from_chunk.is_some(), "declined a document Automerge saved");
            prop_assert_eq!(plain(from_chunk.unwrap()), plain(changes_of(&loaded)));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The document chunk reader attributes every operation, deletions
        /// included, to the change Automerge rebuilds it in.
        #[test]
        fn the_saved_reading_agrees_with_get_changes(edits in prop::collection::vec(edit(), 0..80)) {
            same_reading(&edits)?;
        }

        /// Bytes that are not a document never make it panic.
        #[test]
        fn garbage_documents_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = doc_ops::read(&bytes);
            let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 0];
            chunk.push(bytes.len() as u8 & 0x7f);
            chunk.extend(&bytes);
            let _ = doc_ops::read(&chunk);
        }
    }

    #[test]
    fn bytes_not_of_the_document_fall_back() {
        let mut doc = build(&[Edit::MakeMap("a".into()), Edit::Commit]);
        let other = build(&[Edit::MakeMap("b".into()), Edit::Commit]).save();
        let loaded = Automerge::load(&doc.save()).unwrap();
        assert!(saved_changes(&loaded, &other).is_none());
        // A document followed by changes is not one chunk.
        let mut longer = doc.save();
        longer.extend(doc.save());
        assert!(saved_changes(&loaded, &longer).is_none());
    }
}
