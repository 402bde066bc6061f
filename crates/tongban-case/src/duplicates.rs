//! What the duplicate rule (`tongban_domain::duplicates`) needs of a case
//! document: its [`Claim`], read from the fields the store's index reads
//! ([`CaseCore`]) and the signed chain. The rule itself lives in the domain;
//! this only reads.

use tongban_domain::duplicates::{Claim, Standing};
use tongban_domain::ids::CaseId;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::Stage;

use crate::document::Payload;
use crate::schema::CaseCore;

/// The claim of the case `case` whose core is `core`: its stage and standing
/// from the signed chain, the kinds applied for, the kinds the signed decision
/// awarded (read from the decision's signed payload), the time its first
/// transition was signed, its acceptance office and the applicant's domicile.
/// Kinds a reader does not know are left out.
pub fn claim_of(case: &CaseId, core: &CaseCore) -> Claim {
    let chain = core.chain();
    let stage = chain.stage().unwrap_or(Stage::Draft);
    let approved = chain.approved();
    let awarded = if approved {
        chain
            .last_entered(Stage::Decided)
            .and_then(|link| serde_json::from_slice::<Payload>(&link.payload).ok())
            .map(|payload| payload.awards.iter().map(|a| a.kind).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let first_signed_ms = chain
        .links
        .iter()
        .find(|link| link.signed.transition.from.is_none())
        .map_or(i64::MAX, |link| link.signed.transition.at.millis());
    Claim {
        case: case.clone(),
        stage,
        standing: Standing::of(stage, approved),
        applied: core
            .subsidy_kinds
            .iter()
            .filter_map(|k| SubsidyKind::from_code(k))
            .collect(),
        awarded,
        first_signed_ms,
        acceptance_office: core.acceptance.office.clone(),
        domicile_township: core.applicant.hukou_township.clone(),
    }
}
