//! What a supervisor sees of a case (监督, section 三 of the notice): the
//! non-personal facts of one case, with its signed stage chain already
//! verified, and a county's monthly payroll totals.
//!
//! A supervisor node never holds a case document: it holds, per case, the
//! signed transitions and the facts an office of the case attested
//! (`tongban_ledger::supervision`), verifies the signatures and counts every
//! deadline itself with the shared calendar, and keeps the result as a
//! [`SupervisedCase`]. Reports (`tongban-report`) and the Parquet export read
//! only these values. Nothing here may ever carry a name, an ID number, a
//! certificate number, a contact or a material: [`SupervisedCase`] has no
//! field that could hold one, and free text (opinions, comments) is left out
//! on purpose.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::Timestamp;
use crate::payroll::{KindTotal, YearMonth};
use crate::policy::SubsidyKind;
use crate::stage::{Role, Stage};

/// One signed step of a case's verified chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the chain (0 creates the case).
    pub seq: u32,
    /// Stage before (`None` for the first step).
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// The signing office's id.
    pub office: String,
    /// The signing office's role (from its certificate).
    pub role: Role,
    /// The signed time.
    pub at: Timestamp,
    /// The last on-time day (Beijing) for this step, when the stage table sets
    /// a deadline for it.
    pub deadline: Option<NaiveDate>,
    /// Signed after the end of `deadline`.
    pub late: bool,
    /// The deadline crossed dates the calendar did not cover.
    pub provisional: bool,
}

/// The deadline of the next step of a case waiting at its current stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The next stages that have this deadline.
    pub next: Vec<Stage>,
    /// The last on-time day (Beijing).
    pub deadline: NaiveDate,
    /// The calendar did not cover every date counted.
    pub provisional: bool,
    /// The role of the office that must take the next step.
    pub role: Role,
    /// That office's id: the acceptance office from the chain, else the one
    /// office of that role the directory certifies at the domicile (empty
    /// when it certifies none or several).
    pub office: String,
}

/// One awarded kind of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    /// The kind.
    pub kind: SubsidyKind,
    /// Monthly amount, yuan.
    pub monthly_yuan: u32,
}

/// A satisfaction evaluation (好差评) the acceptance office recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Score 1–5.
    pub score: u8,
    /// The acceptance office that recorded it.
    pub office: String,
    /// When it was recorded.
    pub at: Timestamp,
}

/// One case as a supervisor holds it, every field non-personal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisedCase {
    /// The case id.
    pub case: String,
    /// The acceptance office's id.
    pub acceptance_office: String,
    /// The acceptance office's 9-digit township.
    pub acceptance: String,
    /// The 9-digit township of the applicant's household registration.
    pub domicile: String,
    /// The kinds applied for.
    pub kinds: Vec<SubsidyKind>,
    /// The verified chain, in order (the main branch when the chain forked).
    pub steps: Vec<Step>,
    /// The current stage's next deadline, when it has one.
    pub pending: Option<Pending>,
    /// The decision's awards (empty before a decision or for a rejection).
    pub awards: Vec<Award>,
    /// The first paid month of the decision.
    pub first_paid_month: Option<YearMonth>,
    /// The evaluation, when the acceptance office recorded one.
    pub evaluation: Option<Evaluation>,
    /// What the supervisor's own verification found wrong (signatures,
    /// order, guards), in words; empty for a clean chain.
    pub problems: Vec<String>,
}

/// The version byte of a supervised row ([`SupervisedCase::to_row`]).
const ROW_VERSION: u8 = 1;

impl SupervisedCase {
    /// The stored form of a supervisor's reading: a version byte, then the
    /// value in postcard (serde's stable compact binary format, a quarter of
    /// the JSON and several times quicker to read back: a report reads every
    /// row of its region).
    pub fn to_row(&self) -> Vec<u8> {
        let mut row = vec![ROW_VERSION];
        // Serialising these plain types to memory cannot fail.
        row.extend(postcard::to_allocvec(self).unwrap_or_default());
        row
    }

    /// Reads a row written by [`SupervisedCase::to_row`]; the error says why
    /// it does not read.
    pub fn from_row(bytes: &[u8]) -> Result<SupervisedCase, String> {
        match bytes.split_first() {
            Some((&ROW_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
            Some((other, _)) => Err(format!(
                "supervised row version {other} is not known to this build ({ROW_VERSION})"
            )),
            None => Err("an empty supervised row".into()),
        }
    }

    /// The current stage (`None` for a chain with no step).
    pub fn stage(&self) -> Option<Stage> {
        self.steps.last().map(|s| s.to)
    }

    /// When the case entered its current stage.
    pub fn entered(&self) -> Option<Timestamp> {
        self.steps.last().map(|s| s.at)
    }

    /// The 6-digit county of the domicile.
    pub fn domicile_county(&self) -> &str {
        self.domicile.get(..6).unwrap_or(&self.domicile)
    }

    /// The 2-digit province of the domicile.
    pub fn domicile_province(&self) -> &str {
        self.domicile.get(..2).unwrap_or(&self.domicile)
    }

    /// Whether the case concerns `region` (a division code prefix: `00` for the
    /// country, 2 digits a province, 4 a city, 6 a county, 9 a township): its
    /// acceptance office or its domicile lies in it.
    pub fn in_region(&self, region: &str) -> bool {
        region == "00" || self.acceptance.starts_with(region) || self.domicile.starts_with(region)
    }
}

/// What a county paid in one month, without any person in it: the totals of
/// its civil affairs bureau's signed payroll record, signed again by that
/// bureau as a `payroll_summary` dataset that reaches supervisors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayrollSummary {
    /// The 6-digit county code.
    pub county: String,
    /// The payroll month.
    pub month: YearMonth,
    /// Totals by kind (both kinds always present, zero when none paid).
    pub living: KindTotal,
    /// Totals of the nursing subsidy.
    pub nursing: KindTotal,
}

impl PayrollSummary {
    /// The totals of one kind.
    pub fn total(&self, kind: SubsidyKind) -> &KindTotal {
        match kind {
            SubsidyKind::Living => &self.living,
            SubsidyKind::Nursing => &self.nursing,
        }
    }
}
