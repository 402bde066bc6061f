//! Admission: what a node checks before it stores a case document that came from
//! a peer, and the receipts it signs when a case reaches it.
//!
//! The sender of a document proves nothing: a hub relays what offices signed. So
//! every receiver (1) reads the case's route from the document itself and refuses
//! a case that is not on its own route, whatever the inventory claimed, and (2)
//! runs the ledger's verifier against its directory. It refuses a document carrying
//! any transition whose authority fails — undecodable, bad signature, a key the
//! directory does not certify for that office at that time, a revoked key, a signer
//! without the role or jurisdiction, an illegal stage change, a transition for
//! another case, a vouched-for head that is missing — because nothing such a
//! transition says is authenticated. It keeps, and reports, what an honest history
//! can contain: forks (two signed successors, which must be surfaced and resolved,
//! never dropped), time-order findings (office clocks drift), missed deadlines, and
//! the chain gaps a partly delivered document shows until the rest arrives.
//!
//! Documents are read through Automerge's `ReadDoc` with the field names of the
//! case schema (`docs/case-schema.md`), without hydrating the whole document.

use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, Value, ValueRef};
use tongban_case::CaseSummary;
use tongban_case::authorship::{self, Finding};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_domain::stage::{CaseFacts, Stage};
use tongban_ledger::directory::Directory;
use tongban_ledger::transition::SignedTransition;
use tongban_ledger::verify::{
    CaseHistory, VerifiedSignatures, VerifyContext, ViolationKind, verify_case,
};

use crate::route::CaseRoute;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The document lacks a field routing needs, or it is malformed.
    #[error("the document does not name its {0}")]
    MissingField(&'static str),
    /// The document names another case than the one it was sent as.
    #[error("the document is for case {found}, not {expected}")]
    WrongCase {
        /// The case it was sent as.
        expected: CaseId,
        /// The case it names.
        found: String,
    },
    /// The acceptance township in the document differs from the case id's.
    #[error("the acceptance township {found} differs from the case id's {expected}")]
    AcceptanceMismatch {
        /// From the case id.
        expected: String,
        /// From the document.
        found: String,
    },
    /// The case is not on this node's route.
    #[error("the case is not on this node's route")]
    OffRoute,
    /// A transition's authority fails.
    #[error("transition refused ({kind:?}): {reason}")]
    Authority {
        /// The verifier's finding.
        kind: ViolationKind,
        /// Its reason.
        reason: String,
    },
    /// A change is unsigned, signed by an office without the right to what it
    /// touched, or its signature record is malformed (see
    /// `tongban_case::authorship`).
    #[error("change refused ({}): {}", .0.kind.code(), .0)]
    Authorship(Box<Finding>),
    /// A material's metadata is refused (file name, media type, size).
    #[error("material {key}: {reason}")]
    Material {
        /// Its key in `materials`.
        key: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Automerge refused the bytes.
    #[error("automerge: {0}")]
    Automerge(String),
}

/// Every material the document lists has metadata a reviewer can be handed
/// (`tongban_domain::material::check_material_meta`): a file name without
/// control characters or path separators, a known media type, a non-empty
/// size within the limit.
pub fn check_materials(doc: &Automerge) -> Result<(), Refusal> {
    let Some(materials) = map(doc, &automerge::ROOT, "materials") else {
        return Ok(());
    };
    for item in doc.map_range(&materials, ..) {
        let key = item.key.to_string();
        let refuse = |reason: String| Refusal::Material {
            key: key.chars().take(80).collect(),
            reason,
        };
        let ValueRef::Object(ObjType::Map) = item.value else {
            return Err(refuse("not a map".into()));
        };
        let entry = item.id();
        let file_name = string(doc, &entry, "file_name").unwrap_or_default();
        let media_type = string(doc, &entry, "media_type").unwrap_or_default();
        let size = match scalar(doc, &entry, "size") {
            Some(ScalarValue::Uint(n)) => n,
            Some(ScalarValue::Int(n)) => u64::try_from(n).unwrap_or(0),
            _ => 0,
        };
        tongban_domain::material::check_material_meta(&file_name, &media_type, size)
            .map_err(|e| refuse(e.to_string()))?;
    }
    Ok(())
}

/// Every change of the document attributable and authorised: refuses the
/// document at the first finding of [`tongban_case::authorship`]. A document
/// that does not read as a case core has no facts to judge rights by and is
/// refused too, unless it holds no change at all beyond what is judged.
pub fn check_authorship(
    scan: &authorship::Scan,
    case: &CaseId,
    facts: Option<&CaseFacts>,
    directory: &Directory,
    verified: Option<&VerifiedSignatures>,
) -> Result<(), Refusal> {
    let facts = facts.ok_or(Refusal::MissingField("case core (acceptance, applicant)"))?;
    match scan
        .check(case, facts, directory, verified)
        .into_iter()
        .next()
    {
        Some(finding) => Err(Refusal::Authorship(Box::new(finding))),
        None => Ok(()),
    }
}

/// What admission found in an accepted document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The verifier reports a fork.
    pub forked: bool,
    /// Kept findings, by kind (time order, deadlines, transient chain gaps).
    pub kept: Vec<ViolationKind>,
}

fn scalar(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Option<ScalarValue> {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(value), _))) => Some(value.into_owned()),
        _ => None,
    }
}

fn string(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match scalar(doc, obj, key)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn map(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Option<automerge::ObjId> {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

/// The case id the document names.
pub fn case_id_of(doc: &Automerge) -> Option<String> {
    string(doc, &automerge::ROOT, "case_id")
}

/// The route the document itself gives: its acceptance township and the
/// applicant's household-registration township. Checks that the document is for
/// `case` and that its acceptance township is the case id's.
pub fn route_of(doc: &Automerge, case: &CaseId) -> Result<CaseRoute, Refusal> {
    let found = case_id_of(doc).ok_or(Refusal::MissingField("case id"))?;
    if found != case.as_str() {
        return Err(Refusal::WrongCase {
            expected: case.clone(),
            found,
        });
    }
    let acceptance = map(doc, &automerge::ROOT, "acceptance")
        .and_then(|obj| string(doc, &obj, "township"))
        .ok_or(Refusal::MissingField("acceptance township"))?;
    if acceptance != case.acceptance_township() {
        return Err(Refusal::AcceptanceMismatch {
            expected: case.acceptance_township().to_string(),
            found: acceptance,
        });
    }
    let domicile = map(doc, &automerge::ROOT, "applicant")
        .and_then(|obj| string(doc, &obj, "hukou_township"))
        .ok_or(Refusal::MissingField("domicile township"))?;
    let released = released(&transitions_of(doc));
    Ok(check_route(case, found, &acceptance, &domicile)?.released(released))
}

/// Whether these signed transitions release the case to travel
/// ([`crate::route::released_by`]).
pub fn released(transitions: &[Vec<u8>]) -> bool {
    crate::route::released_by(
        transitions
            .iter()
            .filter_map(|bytes| SignedTransition::decode(bytes).ok())
            .map(|t| t.transition.to),
    )
}

/// The route of `case` from the case id, acceptance township and domicile
/// township a document names, each checked.
fn check_route(
    case: &CaseId,
    found: String,
    acceptance: &str,
    domicile: &str,
) -> Result<CaseRoute, Refusal> {
    if found != case.as_str() {
        return Err(Refusal::WrongCase {
            expected: case.clone(),
            found,
        });
    }
    if acceptance != case.acceptance_township() {
        return Err(Refusal::AcceptanceMismatch {
            expected: case.acceptance_township().to_string(),
            found: acceptance.to_string(),
        });
    }
    let parse =
        |text: &str, what| DivisionCode::parse(text).map_err(|_| Refusal::MissingField(what));
    CaseRoute::new(
        parse(acceptance, "acceptance township")?,
        parse(domicile, "domicile township")?,
    )
    .map_err(|_| Refusal::MissingField("township-level route"))
}

/// What admission reads of a document, in one pass when it can.
#[derive(Debug)]
pub struct Reading {
    /// The route the document gives (see [`route_of`]).
    pub route: CaseRoute,
    /// Its encoded signed transitions, in key order (see [`transitions_of`]).
    pub transitions: Vec<Vec<u8>>,
    /// What a store's indexes need of it, when it reads as a case core.
    pub summary: Option<CaseSummary>,
    /// What the write-rights table needs of it (acceptance office, domicile),
    /// when it reads as a case core.
    pub facts: Option<CaseFacts>,
}

/// Reads a document's route (checked as [`route_of`] checks it), its signed
/// transitions and its summary. A document that reads as a case core (every
/// complete one) is read once, through the core, and the store's index summary
/// comes from the same reading; one that does not (a partly written one) is read
/// field by field, with the same refusals, and gets no summary.
pub fn read(doc: &Automerge, case: &CaseId, calendar: &Calendar) -> Result<Reading, Refusal> {
    let Ok(core) = tongban_case::read_core(doc) else {
        return Ok(Reading {
            route: route_of(doc, case)?,
            transitions: transitions_of(doc),
            summary: None,
            facts: None,
        });
    };
    let route = check_route(
        case,
        core.case_id.clone(),
        &core.acceptance.township,
        &core.applicant.hukou_township,
    )?;
    let summary = CaseSummary::of(&core, calendar);
    let facts = CaseFacts {
        acceptance_office: core.acceptance.office.clone(),
        acceptance_township: core.acceptance.township.clone(),
        domicile_township: core.applicant.hukou_township.clone(),
        approved: false,
    };
    let transitions: Vec<Vec<u8>> = core
        .transitions
        .into_values()
        .map(|record| record.signed.into())
        .collect();
    Ok(Reading {
        route: route.released(released(&transitions)),
        transitions,
        summary: Some(summary),
        facts: Some(facts),
    })
}

/// The encoded signed transitions the document carries, in key order.
pub fn transitions_of(doc: &Automerge) -> Vec<Vec<u8>> {
    let Some(obj) = map(doc, &automerge::ROOT, "transitions") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // One pass over the map's entries (a third cheaper than looking each key up).
    for entry in doc.map_range(&obj, ..) {
        if let ValueRef::Object(ObjType::Map) = entry.value
            && let Some(ScalarValue::Bytes(bytes)) = scalar(doc, &entry.id(), "signed")
        {
            out.push(bytes);
        }
    }
    out
}

/// Whether a finding means the document carries an unauthenticated claim.
fn refuses(kind: ViolationKind) -> bool {
    matches!(
        kind,
        ViolationKind::Undecodable
            | ViolationKind::BadSignature
            | ViolationKind::WrongCase
            | ViolationKind::UnknownKey
            | ViolationKind::KeyNotValidAtTime
            | ViolationKind::RevokedKey
            | ViolationKind::WrongSigner
            | ViolationKind::IllegalTransition
    )
}

/// Verifies the document's transitions against the directory (see the module
/// documentation for what is refused and what is kept).
pub fn verify(
    doc: &Automerge,
    case: &CaseId,
    route: &CaseRoute,
    directory: &Directory,
    calendar: &Calendar,
    now: Timestamp,
) -> Result<Findings, Refusal> {
    verify_transitions(
        doc,
        transitions_of(doc),
        case,
        route,
        directory,
        calendar,
        now,
        None,
    )
}

/// [`verify`] of transitions already read from `doc` (by [`transitions_of`]),
/// trusting the signatures `verified` holds (checked in a batch over many
/// documents).
#[allow(clippy::too_many_arguments)]
pub fn verify_transitions(
    doc: &Automerge,
    transitions: Vec<Vec<u8>>,
    case: &CaseId,
    route: &CaseRoute,
    directory: &Directory,
    calendar: &Calendar,
    now: Timestamp,
    verified: Option<&VerifiedSignatures>,
) -> Result<Findings, Refusal> {
    let history = CaseHistory {
        case: case.clone(),
        transitions,
        domicile_township: route.domicile().to_string(),
    };
    let has_head = |hash: &[u8; 32]| crate::store::has_change(doc, hash);
    let mut ctx = VerifyContext::new(directory, calendar, now, &has_head);
    ctx.verified = verified;
    let report = verify_case(&history, &ctx);
    let mut findings = Findings::default();
    for violation in report.violations {
        if refuses(violation.kind) {
            return Err(Refusal::Authority {
                kind: violation.kind,
                reason: violation.reason,
            });
        }
        if violation.kind == ViolationKind::Fork {
            findings.forked = true;
        }
        findings.kept.push(violation.kind);
    }
    Ok(findings)
}

/// The stages at the tips of the signed chain (more than one at a fork), from the
/// transitions as decoded. Signatures are not checked here: a receipt is signed
/// through `CaseDocument::apply`, which follows the same chain, and admission has
/// already verified every transition.
pub fn tip_stages(doc: &Automerge) -> Vec<Stage> {
    tips_of(&transitions_of(doc))
}

/// [`tip_stages`] of transitions already read from the document.
pub fn tips_of(transitions: &[Vec<u8>]) -> Vec<Stage> {
    let decoded: Vec<SignedTransition> = transitions
        .iter()
        .filter_map(|bytes| SignedTransition::decode(bytes).ok())
        .collect();
    let hashes: Vec<[u8; 32]> = decoded.iter().map(SignedTransition::hash).collect();
    let mut tips: Vec<Stage> = decoded
        .iter()
        .zip(&hashes)
        .filter(|(_, hash)| !decoded.iter().any(|t| t.transition.prev == Some(**hash)))
        .map(|(t, _)| t.transition.to)
        .collect();
    tips.sort();
    tips.dedup();
    tips
}
