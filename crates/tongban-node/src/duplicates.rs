//! Duplicates caught at the domicile county (防止重复享受): the node's part of
//! `tongban_domain::duplicates`, over the store.
//!
//! Every case of a resident reaches the offices of the resident's
//! household-registration county (routing sends each case to the domicile
//! township, the county DPF and the county civil affairs bureau), so those
//! offices hold every case of the person, whichever office accepted it, and
//! they are where a duplicate is caught.
//!
//! - **The index** from a person to the cases held is the store's
//!   `idx_resident`, written in the same transaction as every case write by
//!   sync and by local commands alike (`tongban_replica::put_case`). It is keyed
//!   by a BLAKE3 hash of the resident ID number keyed with the node's own secret
//!   (`LocalNode::resident_key`), not by the number: an 18-digit ID has so
//!   little entropy (region, birth date, a 3-digit sequence, a check digit)
//!   that a plain hash is reversed by enumeration, while the keyed hash means
//!   nothing without the node's secret. So the index, a backup of it and any
//!   key that slips into a log name nobody; the number itself stays inside the
//!   case document, which the node holds anyway.
//! - **The flag** is node-local: the store's `case_flags` under [`FLAG`], a
//!   [`DuplicateRecord`] naming the cases the flagged one duplicates. It is
//!   never written into the signed document (the offices of other counties do
//!   not know), and only an office that [`keeps_watch`] over the case records
//!   it. [`refresh`] recomputes the flags of the people whose cases were just
//!   stored, after every write (a local command through `LocalNode::save`, a
//!   document from a peer through the engine), and logs each flag raised or
//!   cleared with the cases' short ids; [`reconcile`] recomputes every flag
//!   when the node starts and after a restore, so a crash between a case's
//!   commit and its flag's leaves nothing stale for long.
//! - **The refusal** at decision is [`check_award`]: `LocalNode::act` asks it
//!   before signing `decided`, on both paths (a command on the store, the
//!   control API), against the documents as stored, never the flag.
//!
//! Claims are read from each document's core (`tongban_case::read_core`), so a
//! group of a person's cases costs a few document loads; a person with one
//! case costs two index reads.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tongban_domain::duplicates::{Claim, Conflict, conflicts, keeps_watch};
use tongban_domain::ids::CaseId;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::{OfficeFacts, Role};
use tongban_store::{ResidentKey, Store, StoreError};

/// The name of the duplicate flag in the store's `case_flags`.
pub const FLAG: &str = "duplicate";

/// What the node records when it flags a case: the cases of the same person,
/// held here, that the flagged case duplicates (those that stand before it).
/// JSON in the store; node-local, never in the case document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateRecord {
    /// The cases it duplicates, first the one in its way.
    pub of: Vec<CaseId>,
}

/// What `case show` shows of a case's duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDuplicates {
    /// Whether this office is one of the case's domicile county offices, which
    /// record the flag.
    pub watched: bool,
    /// Whether this node holds the duplicate flag on the case.
    pub flagged: bool,
    /// Whether the case is the duplicate, judged now from the documents held.
    pub duplicate: bool,
    /// Every other case of the person held here that claims a kind this case
    /// claims: those in its way first.
    pub conflicts: Vec<Conflict>,
}

/// A flag raised, changed or cleared by [`refresh`] or [`reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// The case.
    pub case: CaseId,
    /// Its record now (`None`: cleared).
    pub now: Option<DuplicateRecord>,
    /// Its record before.
    pub before: Option<DuplicateRecord>,
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Groups of cases that share a person.
    pub groups: usize,
    /// Cases flagged after it.
    pub flagged: usize,
    /// Flags it raised, changed or cleared.
    pub changed: usize,
}

/// The claim of a stored case, read from its document's core; `None` when the
/// case is not held or its document does not read as a case (logged).
pub fn claim(store: &Store, case: &CaseId) -> Result<Option<Claim>, StoreError> {
    let Some(doc) = store.load_case(case)? else {
        return Ok(None);
    };
    match tongban_case::read_core(&doc) {
        Ok(core) => Ok(Some(tongban_case::duplicates::claim_of(case, &core))),
        Err(err) => {
            tracing::warn!(case = case.short(), error = %err, "case does not read; left out of the duplicate check");
            Ok(None)
        }
    }
}

/// The resident key of a stored case, from its index metadata.
fn resident_of(store: &Store, case: &CaseId) -> Result<Option<ResidentKey>, StoreError> {
    Ok(store.case_info(case)?.map(|info| info.meta.resident_key))
}

/// The claims of every case held of the person with `key`.
fn claims_of(store: &Store, key: &ResidentKey) -> Result<Vec<Claim>, StoreError> {
    let mut claims = Vec::new();
    for (case, _) in store.cases_by_resident(key)? {
        if let Some(claim) = claim(store, &case)? {
            claims.push(claim);
        }
    }
    Ok(claims)
}

/// The claim of `case` and those of the other cases of the same person.
fn with_group(store: &Store, case: &CaseId) -> Result<Option<(Claim, Vec<Claim>)>, StoreError> {
    let Some(key) = resident_of(store, case)? else {
        return Ok(None);
    };
    let claims = claims_of(store, &key)?;
    let Some(subject) = claims.iter().find(|c| c.case == *case).cloned() else {
        return Ok(None);
    };
    Ok(Some((subject, claims)))
}

/// The conflicts of a stored case with the other cases of the person.
pub fn conflicts_of(store: &Store, case: &CaseId) -> Result<Vec<Conflict>, StoreError> {
    Ok(with_group(store, case)?
        .map(|(subject, claims)| conflicts(&subject, &claims))
        .unwrap_or_default())
}

/// The duplicate record stored on `case`, if any.
pub fn record(store: &Store, case: &CaseId) -> Result<Option<DuplicateRecord>, StoreError> {
    Ok(store
        .case_flag(FLAG, case)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// What `case show` shows: the flag this node holds, and the conflicts judged
/// now. `office` is this node's certificate facts.
pub fn view(
    store: &Store,
    office: Option<&OfficeFacts>,
    case: &CaseId,
) -> Result<CaseDuplicates, StoreError> {
    let flagged = record(store, case)?.is_some();
    let Some((subject, claims)) = with_group(store, case)? else {
        return Ok(CaseDuplicates {
            flagged,
            ..CaseDuplicates::default()
        });
    };
    let conflicts = conflicts(&subject, &claims);
    Ok(CaseDuplicates {
        watched: office.is_some_and(|o| keeps_watch(o, &subject.domicile_township)),
        flagged,
        duplicate: conflicts.iter().any(|c| c.relation.makes_duplicate()),
        conflicts,
    })
}

/// The decision's test on a stored case: `Some(conflict)` when awarding it
/// `kinds` would pay the person a subsidy twice
/// (`tongban_domain::duplicates::check_award`).
pub fn check_award(
    store: &Store,
    case: &CaseId,
    kinds: &[SubsidyKind],
) -> Result<Option<Conflict>, StoreError> {
    Ok(with_group(store, case)?.and_then(|(subject, claims)| {
        tongban_domain::duplicates::check_award(&subject, kinds, &claims).err()
    }))
}

/// The text of a refused award: the case, the case in its way and what to do.
pub fn refusal(case: &CaseId, conflict: &Conflict) -> String {
    let kinds: Vec<&str> = conflict.kinds.iter().map(|k| k.code()).collect();
    format!(
        "重复享受 duplicate (防止重复享受): 案件 {case} 的申请人已有{conflict}；\
         不予审定发放 award refused for {}。在先的案件办理；本案应不予通过或撤回并说明理由 \
         (the earlier case proceeds; reject this one with `tongban case decide {case} --reject \
         --opinion ...` or withdraw it with a reason)",
        kinds.join(", ")
    )
}

/// Whether an office of this role can keep watch over anyone's cases.
fn watching_role(office: Option<&OfficeFacts>) -> Option<&OfficeFacts> {
    office.filter(|o| {
        matches!(
            o.role,
            Role::Township | Role::CountyDpf | Role::CountyCivilAffairs
        )
    })
}

/// The flags the person with `key` should carry at `office`: for each case
/// held, its record, or `None`.
fn desired(
    store: &Store,
    office: &OfficeFacts,
    key: &ResidentKey,
) -> Result<BTreeMap<CaseId, Option<DuplicateRecord>>, StoreError> {
    let group = store.cases_by_resident(key)?;
    let mut out = BTreeMap::new();
    if group.len() < 2 {
        // One case alone duplicates nothing: no document is read.
        for (case, _) in group {
            out.insert(case, None);
        }
        return Ok(out);
    }
    let claims = claims_of(store, key)?;
    for (case, _) in group {
        let record = claims
            .iter()
            .find(|c| c.case == case)
            .filter(|subject| keeps_watch(office, &subject.domicile_township))
            .map(|subject| {
                conflicts(subject, &claims)
                    .into_iter()
                    .filter(|c| c.relation.makes_duplicate())
                    .map(|c| c.other)
                    .collect::<Vec<_>>()
            })
            .filter(|of| !of.is_empty())
            .map(|of| DuplicateRecord { of });
        out.insert(case, record);
    }
    Ok(out)
}

/// Recomputes the duplicate flags of every person who has a case among
/// `cases` (cases just stored), at the office `office` (this node's
/// certificate facts; a hub, a supervisor or a node without a certificate
/// records nothing), writes what changed in one transaction and logs it.
pub fn refresh(
    store: &Store,
    office: Option<&OfficeFacts>,
    cases: &[CaseId],
) -> Result<Vec<FlagChange>, StoreError> {
    let Some(office) = watching_role(office) else {
        return Ok(Vec::new());
    };
    let mut keys = BTreeSet::new();
    for case in cases {
        if let Some(key) = resident_of(store, case)? {
            keys.insert(key);
        }
        // A case that moved to another person (its ID corrected) leaves the
        // flags of its old group to be recomputed too.
        if let Some(before) = record(store, case)? {
            for other in &before.of {
                if let Some(key) = resident_of(store, other)? {
                    keys.insert(key);
                }
            }
        }
    }
    let mut want = BTreeMap::new();
    for key in &keys {
        want.extend(desired(store, office, key)?);
    }
    apply(store, want)
}

/// Recomputes every duplicate flag of the node from the resident index: what
/// a node does when it starts and after a restore (flags are not in backups).
/// Reads only the documents of people with more than one case: about 0.6 s
/// for 100,000 cases of which 1,001 people have two (docs/performance.md).
pub fn reconcile(store: &Store, office: Option<&OfficeFacts>) -> Result<Reconciled, StoreError> {
    let mut want: BTreeMap<CaseId, Option<DuplicateRecord>> = store
        .flagged_cases(FLAG)?
        .into_iter()
        .map(|(case, _)| (case, None))
        .collect();
    // A hub, holding millions, does not even walk the index: it flags nothing.
    let mut groups = Vec::new();
    if let Some(office) = watching_role(office) {
        groups = store.resident_groups()?;
        let mut keys = BTreeSet::new();
        for group in &groups {
            if let Some(key) = group
                .first()
                .map(|c| resident_of(store, c))
                .transpose()?
                .flatten()
            {
                keys.insert(key);
            }
        }
        for key in &keys {
            want.extend(desired(store, office, key)?);
        }
    }
    let changes = apply(store, want)?;
    Ok(Reconciled {
        groups: groups.len(),
        flagged: store.flagged_cases(FLAG)?.len(),
        changed: changes.len(),
    })
}

/// Writes the flags in `want` that differ from what is stored, in one
/// transaction, and logs each change (cases by their short ids only).
fn apply(
    store: &Store,
    want: BTreeMap<CaseId, Option<DuplicateRecord>>,
) -> Result<Vec<FlagChange>, StoreError> {
    let mut changes = Vec::new();
    for (case, now) in want {
        let before = record(store, &case)?;
        if before != now {
            changes.push(FlagChange { case, now, before });
        }
    }
    if changes.is_empty() {
        return Ok(changes);
    }
    store.write(|tx| {
        for change in &changes {
            let bytes = change
                .now
                .as_ref()
                .map(|r| serde_json::to_vec(r).unwrap_or_default());
            tx.set_case_flag(FLAG, &change.case, bytes.as_deref())?;
        }
        Ok(())
    })?;
    for change in &changes {
        let of = |r: &Option<DuplicateRecord>| {
            r.as_ref()
                .map(|r| r.of.iter().map(|c| c.short()).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        };
        match (&change.before, &change.now) {
            (None, Some(_)) => tracing::warn!(
                case = change.case.short(),
                of = %of(&change.now),
                "重复申请 duplicate flagged: the person holds, or applied first for, the same subsidy in another case"
            ),
            (Some(_), Some(_)) => tracing::info!(
                case = change.case.short(),
                of = %of(&change.now),
                "duplicate flag now names other cases"
            ),
            (Some(_), None) => tracing::info!(
                case = change.case.short(),
                was_of = %of(&change.before),
                "duplicate flag cleared"
            ),
            (None, None) => {}
        }
    }
    Ok(changes)
}
