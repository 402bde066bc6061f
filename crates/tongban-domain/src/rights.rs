//! Who may write which part of a case, and when: the write-rights table.
//!
//! The stage table ([`crate::stage`]) says who may move a case from one stage to
//! the next. This table says who may write the content around those moves. A case
//! document is divided into [`Part`]s by its top-level fields; every signed write
//! an office makes (one or more Automerge changes sealed by its signature) touches
//! some parts, and each part it touches must be granted by a row of [`RIGHTS`]:
//! to that office (by its relation to the case, [`Writer`]), in that situation
//! ([`When`]: creating the case, a plain write at some stages, or as part of
//! signing a transition to some stages).
//!
//! Every path asks this table: the office commands before they write, sync
//! admission on every node before it stores a document from a peer, and the
//! verifier when it reports a history. Hubs and supervisors appear in no row:
//! they author nothing in a case.

use std::fmt;

use serde::Serialize;

use crate::stage::{CaseFacts, OfficeFacts, Signer, Stage, signer_admits};

/// A part of a case document: a group of its top-level fields that one rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// `schema_version`, `case_id`, `created_at`, `acceptance`: fixed at creation.
    Identity,
    /// `applicant`, `certificate`, `household`, `subsidy_kinds`, `materials_notice`.
    Application,
    /// `materials`: the electronic copies.
    Materials,
    /// `reviews`: the opinions of each review level.
    Reviews,
    /// `decision`: the county civil affairs decision.
    Decision,
    /// `notification`: how the applicant was told.
    Notification,
    /// `evaluation`: the applicant's satisfaction (服务评价).
    Evaluation,
    /// `confirmations`: facts a registry feed confirmed or contradicted.
    Confirmations,
    /// `transitions`, `seals`: signature records, written only as signatures.
    Signatures,
}

impl Part {
    /// Every part.
    pub const ALL: [Part; 9] = [
        Part::Identity,
        Part::Application,
        Part::Materials,
        Part::Reviews,
        Part::Decision,
        Part::Notification,
        Part::Evaluation,
        Part::Confirmations,
        Part::Signatures,
    ];

    /// The part a top-level field belongs to; `None` for a field the schema does
    /// not have (which nobody may write).
    pub fn of_field(field: &str) -> Option<Part> {
        Some(match field {
            "schema_version" | "case_id" | "created_at" | "acceptance" => Part::Identity,
            "applicant" | "certificate" | "household" | "subsidy_kinds" | "materials_notice" => {
                Part::Application
            }
            "materials" => Part::Materials,
            "reviews" => Part::Reviews,
            "decision" => Part::Decision,
            "notification" => Part::Notification,
            "evaluation" => Part::Evaluation,
            "confirmations" => Part::Confirmations,
            "transitions" | "seals" => Part::Signatures,
            _ => return None,
        })
    }

    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            Part::Identity => "identity",
            Part::Application => "application",
            Part::Materials => "materials",
            Part::Reviews => "reviews",
            Part::Decision => "decision",
            Part::Notification => "notification",
            Part::Evaluation => "evaluation",
            Part::Confirmations => "confirmations",
            Part::Signatures => "signatures",
        }
    }

    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            Part::Identity => "案件标识",
            Part::Application => "申请信息",
            Part::Materials => "申请材料",
            Part::Reviews => "审核意见",
            Part::Decision => "审定结果",
            Part::Notification => "告知记录",
            Part::Evaluation => "服务评价",
            Part::Confirmations => "数据比对结果",
            Part::Signatures => "签名记录",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Which office of a case a row grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// The office the stage table names for this signer.
    Office(Signer),
    /// Whoever signs the transition the write is part of (the stage table
    /// decides who that is).
    TransitionSigner,
}

/// In which situation a row grants its right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The write that creates the case, before any stage.
    Creation,
    /// A plain signed write while the case is at one of these stages.
    AtStages(&'static [Stage]),
    /// A write sealed by the transition to one of these stages (the content and
    /// the transition are one signed commit).
    WithTransition(&'static [Stage]),
}

/// One row of the write-rights table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WriteRight {
    /// The part written.
    pub part: Part,
    /// Who may write it.
    pub writer: Writer,
    /// When.
    pub when: When,
    /// Written at most once after creation: a second write is refused, never a
    /// silent overwrite.
    pub once: bool,
}

const fn right(part: Part, writer: Writer, when: When) -> WriteRight {
    WriteRight {
        part,
        writer,
        when,
        once: false,
    }
}

use Signer::{Acceptance, DomicileCountyCivilAffairs, DomicileCountyDpf, DomicileTownship};

/// Stages at which the acceptance office edits the application: before it is
/// pushed (or publicised, for a local one) and after it comes back for correction.
pub const EDITABLE_AT: &[Stage] = &[Stage::Draft, Stage::Accepted, Stage::Returned];

/// Every stage after the draft.
pub const AFTER_INTAKE: &[Stage] = &[
    Stage::Accepted,
    Stage::Pushed,
    Stage::Received,
    Stage::Publicized,
    Stage::InitialReviewed,
    Stage::DpfReviewed,
    Stage::Decided,
    Stage::ResultReceived,
    Stage::Notified,
    Stage::Returned,
    Stage::Rejected,
    Stage::Withdrawn,
    Stage::Active,
    Stage::Suspended,
    Stage::Terminated,
];

/// The whole write-rights table.
pub const RIGHTS: &[WriteRight] = &[
    right(Part::Identity, Writer::Office(Acceptance), When::Creation),
    right(
        Part::Application,
        Writer::Office(Acceptance),
        When::Creation,
    ),
    right(Part::Materials, Writer::Office(Acceptance), When::Creation),
    right(
        Part::Application,
        Writer::Office(Acceptance),
        When::AtStages(EDITABLE_AT),
    ),
    right(
        Part::Materials,
        Writer::Office(Acceptance),
        When::AtStages(EDITABLE_AT),
    ),
    right(
        Part::Reviews,
        Writer::TransitionSigner,
        When::WithTransition(&[
            Stage::InitialReviewed,
            Stage::DpfReviewed,
            Stage::Returned,
            Stage::Rejected,
            Stage::Decided,
            Stage::Suspended,
            Stage::Terminated,
            // A resumption says why (what corrected the stop).
            Stage::Active,
        ]),
    ),
    right(
        Part::Decision,
        Writer::Office(DomicileCountyCivilAffairs),
        When::WithTransition(&[Stage::Decided, Stage::Rejected]),
    ),
    right(
        Part::Notification,
        Writer::Office(Acceptance),
        When::WithTransition(&[Stage::Notified]),
    ),
    // The applicant rates the window's service whenever they are asked, from
    // acceptance on; once.
    WriteRight {
        part: Part::Evaluation,
        writer: Writer::Office(Acceptance),
        when: When::AtStages(AFTER_INTAKE),
        once: true,
    },
    right(
        Part::Confirmations,
        Writer::Office(Acceptance),
        When::AtStages(EDITABLE_AT),
    ),
    right(
        Part::Confirmations,
        Writer::Office(DomicileTownship),
        When::AtStages(&[Stage::Received, Stage::Accepted, Stage::Publicized]),
    ),
    right(
        Part::Confirmations,
        Writer::Office(DomicileCountyDpf),
        When::AtStages(&[Stage::InitialReviewed]),
    ),
    right(
        Part::Confirmations,
        Writer::Office(DomicileCountyCivilAffairs),
        When::AtStages(&[
            Stage::DpfReviewed,
            Stage::Active,
            Stage::Suspended,
            Stage::Terminated,
        ]),
    ),
];

/// The situation of one write, as the checker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    /// The write creates the case.
    Creation,
    /// A plain write at this stage.
    At(Stage),
    /// The write is sealed by a transition to this stage, signed by the writer.
    With(Stage),
}

impl fmt::Display for Situation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Situation::Creation => f.write_str("建案时 at creation"),
            Situation::At(stage) => write!(f, "{}阶段 at {stage}", stage.zh()),
            Situation::With(stage) => {
                write!(f, "随{}签名 with the transition to {stage}", stage.zh())
            }
        }
    }
}

/// Why a write is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteRefused {
    /// No row grants this part to this office in this situation.
    #[error(
        "{office} ({role}) 无权写入{zh} may not write {part} {situation}",
        zh = part.zh(),
        role = role.zh()
    )]
    NoRight {
        /// The part.
        part: Part,
        /// The office that wrote.
        office: String,
        /// Its role.
        role: crate::stage::Role,
        /// The situation.
        situation: Situation,
    },
    /// The part may be written only once and already was.
    #[error("{zh}已记录，不能覆盖 {part} was already recorded and is never overwritten", zh = part.zh())]
    AlreadyWritten {
        /// The part.
        part: Part,
    },
}

fn row_admits(
    row: &WriteRight,
    office: &OfficeFacts,
    case: &CaseFacts,
    situation: Situation,
) -> bool {
    let when = match (row.when, situation) {
        (When::Creation, Situation::Creation) => true,
        (When::AtStages(stages), Situation::At(stage)) => stages.contains(&stage),
        (When::WithTransition(stages), Situation::With(stage)) => stages.contains(&stage),
        _ => false,
    };
    when && match row.writer {
        Writer::Office(signer) => signer_admits(signer, office, case),
        // The writer signs the transition itself: an office the stage table
        // names as a signer of some row into that stage.
        Writer::TransitionSigner => match situation {
            Situation::With(to) => crate::stage::TRANSITIONS
                .iter()
                .any(|rule| rule.to == to && signer_admits(rule.signer, office, case)),
            _ => false,
        },
    }
}

/// The row that lets `office` write `part` of `case` in `situation`, if any.
/// `already_written` says whether the part was written after creation before
/// (for rows written only once).
pub fn check_write(
    part: Part,
    office: &OfficeFacts,
    case: &CaseFacts,
    situation: Situation,
    already_written: bool,
) -> Result<&'static WriteRight, WriteRefused> {
    let row = RIGHTS
        .iter()
        .find(|row| row.part == part && row_admits(row, office, case, situation))
        .ok_or_else(|| WriteRefused::NoRight {
            part,
            office: office.office.clone(),
            role: office.role,
            situation,
        })?;
    if row.once && already_written {
        return Err(WriteRefused::AlreadyWritten { part });
    }
    Ok(row)
}

/// Every part `office` may write of `case` in `situation` (for what a command
/// or a console offers).
pub fn writable_parts(office: &OfficeFacts, case: &CaseFacts, situation: Situation) -> Vec<Part> {
    Part::ALL
        .into_iter()
        .filter(|part| {
            RIGHTS
                .iter()
                .any(|row| row.part == *part && row_admits(row, office, case, situation))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::Role;

    fn case() -> CaseFacts {
        CaseFacts {
            acceptance_office: "440106001-01".into(),
            acceptance_township: "440106001".into(),
            domicile_township: "130121100".into(),
            approved: false,
        }
    }

    fn office(id: &str, role: Role, division: &str) -> OfficeFacts {
        OfficeFacts {
            office: id.into(),
            role,
            division: division.into(),
        }
    }

    #[test]
    fn every_top_level_field_of_the_schema_has_a_part() {
        for field in [
            "schema_version",
            "case_id",
            "created_at",
            "acceptance",
            "applicant",
            "certificate",
            "household",
            "subsidy_kinds",
            "materials",
            "materials_notice",
            "reviews",
            "decision",
            "notification",
            "evaluation",
            "confirmations",
            "transitions",
            "seals",
        ] {
            assert!(Part::of_field(field).is_some(), "{field}");
        }
        assert_eq!(Part::of_field("stage"), None);
    }

    #[test]
    fn hubs_and_supervisors_write_nothing() {
        let case = case();
        for role in [Role::Hub, Role::Supervisor] {
            for division in ["440106001", "130121", "13", "44"] {
                let hub = office("hub-1", role, division);
                for stage in Stage::ALL {
                    for situation in [
                        Situation::Creation,
                        Situation::At(stage),
                        Situation::With(stage),
                    ] {
                        assert!(writable_parts(&hub, &case, situation).is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn the_evaluation_is_the_acceptance_offices_and_written_once() {
        let case = case();
        let acceptance = office("440106001-01", Role::Township, "440106001");
        let domicile = office("130121100-01", Role::Township, "130121100");
        let at = Situation::At(Stage::Notified);
        assert!(check_write(Part::Evaluation, &acceptance, &case, at, false).is_ok());
        assert_eq!(
            check_write(Part::Evaluation, &acceptance, &case, at, true),
            Err(WriteRefused::AlreadyWritten {
                part: Part::Evaluation
            })
        );
        assert!(check_write(Part::Evaluation, &domicile, &case, at, false).is_err());
        assert!(
            check_write(
                Part::Evaluation,
                &acceptance,
                &case,
                Situation::At(Stage::Draft),
                false
            )
            .is_err()
        );
    }

    #[test]
    fn the_application_is_edited_only_before_push_and_after_a_return() {
        let case = case();
        let acceptance = office("440106001-01", Role::Township, "440106001");
        for stage in Stage::ALL {
            let allowed = check_write(
                Part::Application,
                &acceptance,
                &case,
                Situation::At(stage),
                false,
            )
            .is_ok();
            assert_eq!(allowed, EDITABLE_AT.contains(&stage), "{stage}");
        }
    }

    #[test]
    fn a_decision_is_written_by_county_civil_affairs_with_its_transition() {
        let case = case();
        let civil = office("130121-mz", Role::CountyCivilAffairs, "130121");
        let acceptance = office("440106001-01", Role::Township, "440106001");
        let with = Situation::With(Stage::Decided);
        assert!(check_write(Part::Decision, &civil, &case, with, false).is_ok());
        assert!(check_write(Part::Decision, &acceptance, &case, with, false).is_err());
        assert!(
            check_write(
                Part::Decision,
                &civil,
                &case,
                Situation::At(Stage::DpfReviewed),
                false
            )
            .is_err()
        );
    }
}
