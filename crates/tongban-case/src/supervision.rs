//! What an office of a case attests of it to supervisors: the signed
//! transitions and the case's non-personal facts, read from the document and
//! signed by the office ([`tongban_ledger::supervision`]).
//!
//! This is the one place that decides which facts of a case leave for a
//! supervisor, so it is also the one place that must never copy a personal
//! field: it reads the domicile township, the kinds applied for, the signed
//! transitions, the decision's kinds and amounts and the evaluation's score —
//! never the applicant, the certificate, the household, the materials, an
//! opinion or a comment.

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::payroll::YearMonth;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::supervision::Award;
use tongban_ledger::keys::OfficeKey;
use tongban_ledger::supervision::{Attestation, SignedAttestation};

use crate::document::CaseError;
use crate::schema::CaseDoc;

/// The attestation `office` signs of `case` at `at`.
pub fn attest(
    case: &CaseDoc,
    office: &OfficeId,
    key: &OfficeKey,
    at: Timestamp,
) -> Result<SignedAttestation, CaseError> {
    let case_id = tongban_domain::ids::CaseId::parse(&case.case_id)
        .map_err(|e| CaseError::Schema(e.to_string()))?;
    let kinds = case
        .subsidy_kinds
        .iter()
        .filter_map(|k| SubsidyKind::from_code(k))
        .collect();
    let mut transitions: Vec<Vec<u8>> = case
        .transitions
        .values()
        .map(|r| r.signed.to_vec())
        .collect();
    transitions.truncate(tongban_ledger::supervision::MAX_TRANSITIONS);
    let (awards, first_paid_month) = match &case.decision {
        Some(d) if d.outcome == "approve" => (
            d.awards
                .iter()
                .filter_map(|a| {
                    Some(Award {
                        kind: SubsidyKind::from_code(&a.kind)?,
                        monthly_yuan: u32::try_from(a.monthly_yuan).ok()?,
                    })
                })
                .collect(),
            YearMonth::parse(&d.first_paid_month).ok(),
        ),
        _ => (Vec::new(), None),
    };
    let evaluation = case.evaluation.as_ref().and_then(|e| {
        Some((
            u8::try_from(e.score).ok().filter(|s| (1..=5).contains(s))?,
            Timestamp(e.at),
        ))
    });
    let signed = SignedAttestation::sign(
        Attestation {
            case: case_id,
            office: office.clone(),
            at,
            domicile: case.applicant.hukou_township.clone(),
            kinds,
            transitions,
            awards,
            first_paid_month,
            evaluation,
            signer_key: key.public(),
        },
        key,
    )
    .map_err(|e| CaseError::Payload(e.to_string()))?;
    // What does not decode would be refused at the first hub: say so here.
    SignedAttestation::decode(&signed.encode()).map_err(|e| {
        CaseError::Payload(format!(
            "the attestation of {} would not decode: {e}",
            case.case_id
        ))
    })?;
    Ok(signed)
}
