//! The receipts a node signs by itself: `received` at the domicile township
//! when a pushed case reaches it, `result_received` at the acceptance office
//! when a decision does (`docs/sync-protocol.md`, "Receipts").

use automerge::{ActorId, Automerge};
use tongban_case::{CaseDocument, Payload, SigningOffice};
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};
use tongban_domain::stage::Stage;

use super::SyncNode;
use crate::route::{CaseRoute, Place};

/// The operator named in receipts the node signs by itself.
pub const RECEIPT_OPERATOR: &str = "auto-receipt";

/// The receipt this node signs automatically when a case with these chain tips
/// reaches it, if any: the domicile township signs `received` for a pushed case,
/// the acceptance office `result_received` for a decision. A forked chain gets no
/// automatic receipt: the fork must be resolved first.
pub fn receipt_for(place: &Place, route: &CaseRoute, tips: &[Stage]) -> Option<Stage> {
    let [tip] = tips else { return None };
    match (place, tip) {
        (Place::Township(t), Stage::Pushed) if *t == route.domicile() => Some(Stage::Received),
        (Place::Township(t), Stage::Decided | Stage::Rejected) if *t == route.acceptance() => {
            Some(Stage::ResultReceived)
        }
        _ => None,
    }
}

impl SyncNode {
    /// Signs `stage` into the case with this node's key, through the case
    /// document (which checks the stage machine), with an actor id fixed by this
    /// office and case, so the same inputs give the same document.
    pub(super) fn sign_receipt(
        &self,
        doc: &Automerge,
        case: &CaseId,
        stage: Stage,
        now: Timestamp,
    ) -> Result<Automerge, String> {
        let mut document = CaseDocument::load(&doc.save()).map_err(|e| e.to_string())?;
        let actor = blake3_actor(&self.office, case);
        document.automerge_mut().set_actor(actor);
        let signing = SigningOffice {
            key: &self.key,
            facts: self.facts.clone(),
        };
        document
            .apply(
                stage,
                &signing,
                &self.receipt_operator,
                now,
                &Payload::default(),
            )
            .map_err(|e| e.to_string())?;
        Ok(document.automerge_mut().document().clone())
    }
}

/// The receipt actor: bound to the office, as every office's actor is (signed
/// authorship, `tongban_case::authorship`), fixed by the case.
fn blake3_actor(office: &OfficeId, case: &CaseId) -> ActorId {
    let mut salt = b"tongban-sync receipt actor\0".to_vec();
    salt.extend_from_slice(case.as_str().as_bytes());
    tongban_case::authorship::actor_for(office, &salt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tongban_domain::division::DivisionCode;

    use super::*;

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    #[test]
    fn receipts_fall_to_the_domicile_and_the_acceptance_township() {
        let route = CaseRoute::new(code("130102001"), code("130104001")).unwrap();
        let acceptance = Place::Township(code("130102001"));
        let domicile = Place::Township(code("130104001"));
        let hub = Place::CountyHub(code("130104"));
        assert_eq!(
            receipt_for(&domicile, &route, &[Stage::Pushed]),
            Some(Stage::Received)
        );
        assert_eq!(receipt_for(&acceptance, &route, &[Stage::Pushed]), None);
        for tip in [Stage::Decided, Stage::Rejected] {
            assert_eq!(
                receipt_for(&acceptance, &route, &[tip]),
                Some(Stage::ResultReceived)
            );
            assert_eq!(receipt_for(&domicile, &route, &[tip]), None);
        }
        assert_eq!(receipt_for(&hub, &route, &[Stage::Pushed]), None);
        // A fork gets no automatic receipt.
        assert_eq!(
            receipt_for(&domicile, &route, &[Stage::Pushed, Stage::Pushed]),
            None
        );
        assert_eq!(receipt_for(&domicile, &route, &[]), None);
    }

    #[test]
    fn the_receipt_actor_is_fixed_by_office_and_case() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let case = CaseId::new("130102001", date, [1, 2, 3, 4]).unwrap();
        let other = CaseId::new("130102001", date, [1, 2, 3, 5]).unwrap();
        let office = OfficeId::parse("130104001").unwrap();
        assert_eq!(blake3_actor(&office, &case), blake3_actor(&office, &case));
        assert_ne!(blake3_actor(&office, &case), blake3_actor(&office, &other));
        assert_eq!(
            tongban_case::authorship::office_of_actor(&blake3_actor(&office, &case)),
            Some(office)
        );
    }
}
