//! The backlog by stage (积压): the cases of the region awaiting an office's
//! action, how many of them are past their deadline on the `as_of` day, and
//! the one waiting longest.
//!
//! A case is in the backlog when its current stage still needs an office to
//! act before the applicant has an outcome and, for an award, its payment has
//! started: `draft`, `accepted`, `returned`, `pushed`, `received`,
//! `publicized`, `initial_reviewed`, `dpf_reviewed`, `decided`, `rejected`,
//! `result_received`, and `notified` for an approved case (awaiting
//! `active`). Not in it: `notified` after a rejection (the case has ended),
//! `withdrawn` and `terminated` (ended), and `active` and `suspended` (payment
//! states, which the disbursement report follows). The stages with a
//! deadline are a subset; the others have none to miss, so their overdue
//! count is 0.
//!
//! The backlog is the state the supervisor holds, judged on `as_of`; the
//! scope's period does not apply. A case is in the region when its
//! acceptance township or its domicile is ([`crate::Region::concerns`]): a
//! cross-province case is in both provinces' backlogs.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use tongban_domain::ids::Timestamp;
use tongban_domain::stage::Stage;
use tongban_domain::supervision::SupervisedCase;

use crate::{DrillReport, DrillRow, DrillStatus, Report, Scope, date_or_dash, short_case};

/// The stage at which a case waits for an office, if it does (see the module
/// documentation).
pub fn backlog_stage(case: &SupervisedCase) -> Option<Stage> {
    let stage = case.stage()?;
    let waiting = match stage {
        Stage::Draft
        | Stage::Accepted
        | Stage::Returned
        | Stage::Pushed
        | Stage::Received
        | Stage::Publicized
        | Stage::InitialReviewed
        | Stage::DpfReviewed
        | Stage::Decided
        | Stage::Rejected
        | Stage::ResultReceived => true,
        Stage::Notified => case.steps.iter().any(|s| s.to == Stage::Decided),
        Stage::Withdrawn | Stage::Active | Stage::Suspended | Stage::Terminated => false,
    };
    waiting.then_some(stage)
}

/// One stage of the backlog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogRow {
    /// The stage.
    pub stage: Stage,
    /// Cases waiting at it.
    pub cases: u64,
    /// Of them, past their deadline on the `as_of` day.
    pub overdue: u64,
    /// The day the longest-waiting case entered the stage (Beijing).
    pub oldest_entered: Option<NaiveDate>,
    /// That case's full id (the table shows its short form).
    pub oldest_case: Option<String>,
}

/// The backlog report of a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogReport {
    /// What it covers (the period does not apply).
    pub scope: Scope,
    /// One row per stage with cases, in workflow order.
    pub rows: Vec<BacklogRow>,
    /// Cases in the backlog.
    pub total: u64,
    /// Of them, overdue.
    pub total_overdue: u64,
}

fn overdue(case: &SupervisedCase, scope: &Scope) -> bool {
    case.pending
        .as_ref()
        .is_some_and(|p| p.deadline < scope.as_of)
}

fn waiting<'a>(
    cases: &'a [SupervisedCase],
    scope: &'a Scope,
) -> impl Iterator<Item = (Stage, &'a SupervisedCase)> + 'a {
    cases
        .iter()
        .filter(|case| scope.region.concerns(case))
        .filter_map(|case| Some((backlog_stage(case)?, case)))
}

/// The backlog by stage in `scope`.
pub fn backlog_report(cases: &[SupervisedCase], scope: &Scope) -> BacklogReport {
    struct Acc<'a> {
        cases: u64,
        overdue: u64,
        oldest: Option<(Timestamp, &'a str)>,
    }
    let mut by_stage: BTreeMap<Stage, Acc<'_>> = BTreeMap::new();
    for (stage, case) in waiting(cases, scope) {
        let acc = by_stage.entry(stage).or_insert(Acc {
            cases: 0,
            overdue: 0,
            oldest: None,
        });
        acc.cases += 1;
        if overdue(case, scope) {
            acc.overdue += 1;
        }
        if let Some(entered) = case.entered() {
            let candidate = (entered, case.case.as_str());
            if acc.oldest.is_none_or(|old| candidate < old) {
                acc.oldest = Some(candidate);
            }
        }
    }
    let rows: Vec<BacklogRow> = by_stage
        .into_iter()
        .map(|(stage, acc)| BacklogRow {
            stage,
            cases: acc.cases,
            overdue: acc.overdue,
            oldest_entered: acc.oldest.map(|(t, _)| t.china_date()),
            oldest_case: acc.oldest.map(|(_, c)| c.to_string()),
        })
        .collect();
    BacklogReport {
        scope: scope.clone(),
        total: rows.iter().map(|r| r.cases).sum(),
        total_overdue: rows.iter().map(|r| r.overdue).sum(),
        rows,
    }
}

/// The cases behind one stage's row of [`backlog_report`], longest waiting
/// first.
pub fn backlog_cases(cases: &[SupervisedCase], scope: &Scope, stage: Stage) -> DrillReport {
    DrillReport::sorted(
        waiting(cases, scope)
            .filter(|(s, _)| *s == stage)
            .map(|(_, case)| {
                let status = if overdue(case, scope) {
                    DrillStatus::Overdue
                } else {
                    DrillStatus::Waiting
                };
                DrillRow::new(
                    &case.case,
                    status,
                    case.entered().map(|t| t.china_date()),
                    case.pending.as_ref().map(|p| p.deadline),
                )
            })
            .collect(),
    )
}

impl Report for BacklogReport {
    type Row = BacklogRow;
    const CSV_HEADER: &'static [&'static str] =
        &["stage", "cases", "overdue", "oldest_entered", "oldest_case"];
    const ZH_HEADER: &'static [&'static str] =
        &["环节", "积压数", "当前超期", "最早进入日期", "最早案件"];

    fn rows(&self) -> &[BacklogRow] {
        &self.rows
    }

    fn zh_cells(row: &BacklogRow) -> Vec<String> {
        vec![
            row.stage.zh().to_string(),
            row.cases.to_string(),
            row.overdue.to_string(),
            date_or_dash(row.oldest_entered),
            row.oldest_case
                .as_deref()
                .map_or_else(|| "-".to_string(), short_case),
        ]
    }

    fn zh_footer(&self) -> Vec<Vec<String>> {
        vec![vec![
            "合计".to_string(),
            self.total.to_string(),
            self.total_overdue.to_string(),
            String::new(),
            String::new(),
        ]]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tongban_domain::stage::Role;

    use super::*;
    use crate::testing::{case, d, pending, serde_header, step};
    use crate::{Period, Region};

    fn scope(region: &str) -> Scope {
        Scope::new(
            Region::parse(region).unwrap(),
            Period::new(d("2026-11-01"), d("2026-11-30")).unwrap(),
            d("2026-12-10"),
        )
    }

    fn cases() -> Vec<SupervisedCase> {
        let t = Role::Township;
        // A Hebei resident's case accepted in Guangdong, waiting at received
        // past its deadline.
        let mut cross = case("440106001-20261102-AAAAAA", "440106001", "130102001");
        step(&mut cross, Stage::Draft, "440106001", t, "2026-11-02", None);
        step(
            &mut cross,
            Stage::Accepted,
            "440106001",
            t,
            "2026-11-02",
            None,
        );
        step(
            &mut cross,
            Stage::Pushed,
            "440106001",
            t,
            "2026-11-03",
            Some("2026-11-05"),
        );
        step(
            &mut cross,
            Stage::Received,
            "130102001",
            t,
            "2026-11-04",
            None,
        );
        pending(
            &mut cross,
            &[Stage::InitialReviewed],
            t,
            "130102001",
            "2026-11-09",
        );
        // Two Hebei cases at received, one older, neither overdue.
        let mut older = case("130102001-20261201-BBBBBB", "130102001", "130103001");
        step(&mut older, Stage::Draft, "130102001", t, "2026-12-01", None);
        step(
            &mut older,
            Stage::Accepted,
            "130102001",
            t,
            "2026-12-01",
            None,
        );
        step(
            &mut older,
            Stage::Pushed,
            "130102001",
            t,
            "2026-12-01",
            None,
        );
        step(
            &mut older,
            Stage::Received,
            "130103001",
            t,
            "2026-12-02",
            None,
        );
        pending(
            &mut older,
            &[Stage::InitialReviewed],
            t,
            "130103001",
            "2026-12-10",
        );
        let mut newer = older.clone();
        newer.case = "130102001-20261201-CCCCCC".into();
        newer.steps[3].at = crate::testing::at("2026-12-08");
        // An active award and a notified rejection: not in the backlog.
        let mut active = case("130102001-20260901-DDDDDD", "130102001", "130102001");
        step(
            &mut active,
            Stage::Notified,
            "130102001",
            t,
            "2026-10-01",
            None,
        );
        step(
            &mut active,
            Stage::Active,
            "130102-ca",
            Role::CountyCivilAffairs,
            "2026-10-02",
            None,
        );
        let mut rejected = case("130102001-20260901-EEEEEE", "130102001", "130102001");
        step(
            &mut rejected,
            Stage::Rejected,
            "130102001",
            t,
            "2026-10-01",
            None,
        );
        step(
            &mut rejected,
            Stage::ResultReceived,
            "130102001",
            t,
            "2026-10-01",
            None,
        );
        step(
            &mut rejected,
            Stage::Notified,
            "130102001",
            t,
            "2026-10-02",
            None,
        );
        // A decided case notified, awaiting activation.
        let mut approved = case("130102001-20260901-FFFFFF", "130102001", "130102001");
        step(
            &mut approved,
            Stage::Decided,
            "130102-ca",
            Role::CountyCivilAffairs,
            "2026-10-01",
            None,
        );
        step(
            &mut approved,
            Stage::ResultReceived,
            "130102001",
            t,
            "2026-10-01",
            None,
        );
        step(
            &mut approved,
            Stage::Notified,
            "130102001",
            t,
            "2026-10-03",
            None,
        );
        vec![cross, older, newer, active, rejected, approved]
    }

    #[test]
    fn stages_counts_and_oldest() {
        let report = backlog_report(&cases(), &scope("13"));
        let rows: Vec<(Stage, u64, u64)> = report
            .rows
            .iter()
            .map(|r| (r.stage, r.cases, r.overdue))
            .collect();
        assert_eq!(rows, [(Stage::Received, 3, 1), (Stage::Notified, 1, 0)]);
        assert_eq!(report.rows[0].oldest_entered, Some(d("2026-11-04")));
        assert_eq!(
            report.rows[0].oldest_case.as_deref(),
            Some("440106001-20261102-AAAAAA")
        );
        assert_eq!((report.total, report.total_overdue), (4, 1));
    }

    #[test]
    fn a_cross_province_case_is_in_both_provinces() {
        let gd = backlog_report(&cases(), &scope("44"));
        assert_eq!(gd.total, 1);
        assert_eq!(gd.rows[0].stage, Stage::Received);
        assert_eq!(backlog_report(&cases(), &scope("130103")).total, 2);
        assert_eq!(backlog_report(&cases(), &scope("00")).total, 4);
        assert_eq!(backlog_report(&cases(), &scope("32")).total, 0);
    }

    #[test]
    fn drill_down_and_renderings() {
        let drill = backlog_cases(&cases(), &scope("13"), Stage::Received);
        let shorts: Vec<&str> = drill.rows.iter().map(|r| r.short.as_str()).collect();
        assert_eq!(shorts, ["AAAAAA", "BBBBBB", "CCCCCC"]);
        assert_eq!(drill.rows[0].status, DrillStatus::Overdue);
        assert_eq!(drill.rows[1].status, DrillStatus::Waiting);
        let report = backlog_report(&cases(), &scope("13"));
        assert_eq!(
            serde_header::<BacklogReport>(&report.rows[0]),
            BacklogReport::CSV_HEADER.join(",")
        );
        let table = report.table();
        assert_eq!(table[1], ["已接收", "3", "1", "2026-11-04", "AAAAAA"]);
        assert_eq!(table[3][0], "合计");
    }
}
