//! Payment progress per domicile county and month (资金发放): what each
//! county's signed payroll summary says it paid, beside how many awards its
//! cases hold in force that month.
//!
//! The entitled count is kept simple and is computed from the cases alone: a
//! case is entitled to a kind in month M when it awarded that kind, its first
//! paid month is M or earlier, and its stage at the end of M — the last step
//! of its chain signed on or before M's last day (Beijing) — is `active`, or
//! `decided`, `result_received` or `notified` after an approval (the award is
//! decided and its months are owed, paid as back pay once active). A case
//! suspended or terminated by the end of M is not entitled in M, as the
//! payroll withholds the month a stop is signed. The progress is paid people
//! over entitled cases, so a payroll that also paid back pay to awards
//! activated late, or a person with two awarded cases, can show more than
//! 100%.
//!
//! Rows are per county, month of the period and kind: every county with an
//! entitled case or a summary that month. A county with entitled cases and no
//! summary shows 0 paid (`未发放`). Payroll is per county, so a township
//! region is widened to its county. Summaries are expected one per county and
//! month; several for one are added up.

use std::collections::BTreeMap;

use serde::Serialize;
use tongban_domain::payroll::{KindTotal, YearMonth};
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::Stage;
use tongban_domain::supervision::{PayrollSummary, SupervisedCase};

use crate::{DrillReport, DrillRow, DrillStatus, Report, Scope, percent, ratio};

/// The stage of a case at the end of `month`: its last step signed on or
/// before the month's last day (Beijing), `None` before its first step.
pub fn stage_at_end_of(case: &SupervisedCase, month: YearMonth) -> Option<Stage> {
    case.steps
        .iter()
        .take_while(|s| YearMonth::of(s.at.china_date()) <= month)
        .last()
        .map(|s| s.to)
}

/// Whether a case's awards are in force in `month` (see the module
/// documentation); the kinds are the case's awards.
pub fn entitled_in(case: &SupervisedCase, month: YearMonth) -> bool {
    if case.awards.is_empty() || case.first_paid_month.is_none_or(|first| first > month) {
        return false;
    }
    match stage_at_end_of(case, month) {
        Some(Stage::Active) => true,
        Some(Stage::Decided | Stage::ResultReceived | Stage::Notified) => case
            .steps
            .iter()
            .any(|s| s.to == Stage::Decided && YearMonth::of(s.at.china_date()) <= month),
        _ => false,
    }
}

/// One county, month and kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisbursementRow {
    /// The 6-digit domicile county.
    pub county: String,
    /// The month.
    pub month: YearMonth,
    /// The kind.
    pub kind: SubsidyKind,
    /// Cases entitled to the kind that month.
    pub entitled: u64,
    /// Whether the county's payroll summary for the month is held.
    pub reported: bool,
    /// People paid (0 without a summary).
    pub paid_people: u64,
    /// Months paid, back pay included.
    pub paid_months: u64,
    /// Yuan paid, back pay included.
    pub paid_yuan: u64,
    /// Months paid for earlier months.
    pub back_months: u64,
    /// Yuan of those.
    pub back_yuan: u64,
    /// `paid_people / entitled`, none without entitled cases.
    pub progress: Option<f64>,
}

/// The disbursement report of a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisbursementReport {
    /// What it covers.
    pub scope: Scope,
    /// Rows by county, month, kind.
    pub rows: Vec<DisbursementRow>,
}

/// Every (county, month, kind) entitlement of the scope's cases.
fn entitlements<'a>(
    cases: &'a [SupervisedCase],
    scope: &Scope,
) -> impl Iterator<Item = (&'a SupervisedCase, YearMonth, SubsidyKind)> + 'a {
    let region = scope.region.county_level();
    let months = scope.period.months();
    cases
        .iter()
        .filter(move |case| region.contains(&case.domicile) && !case.awards.is_empty())
        .flat_map(move |case| {
            months
                .clone()
                .into_iter()
                .filter(move |m| entitled_in(case, *m))
                .flat_map(move |m| case.awards.iter().map(move |a| (case, m, a.kind)))
        })
}

/// Paid against entitled per domicile county, month and kind in `scope`.
pub fn disbursement_report(
    cases: &[SupervisedCase],
    summaries: &[PayrollSummary],
    scope: &Scope,
) -> DisbursementReport {
    #[derive(Default)]
    struct Acc {
        entitled: u64,
        paid: Option<KindTotal>,
    }
    let mut acc: BTreeMap<(&str, YearMonth, SubsidyKind), Acc> = BTreeMap::new();
    for (case, month, kind) in entitlements(cases, scope) {
        acc.entry((case.domicile_county(), month, kind))
            .or_default()
            .entitled += 1;
    }
    let region = scope.region.county_level();
    let months = scope.period.months();
    for summary in summaries
        .iter()
        .filter(|s| region.contains(&s.county) && months.contains(&s.month))
    {
        for kind in SubsidyKind::ALL {
            let total = summary.total(kind);
            let paid = acc
                .entry((summary.county.as_str(), summary.month, kind))
                .or_default()
                .paid
                .get_or_insert_with(KindTotal::default);
            paid.people += total.people;
            paid.months += total.months;
            paid.yuan += total.yuan;
            paid.back_months += total.back_months;
            paid.back_yuan += total.back_yuan;
        }
    }
    let rows = acc
        .into_iter()
        .map(|((county, month, kind), acc)| {
            let paid = acc.paid.unwrap_or_default();
            DisbursementRow {
                county: county.to_string(),
                month,
                kind,
                entitled: acc.entitled,
                reported: acc.paid.is_some(),
                paid_people: paid.people,
                paid_months: paid.months,
                paid_yuan: paid.yuan,
                back_months: paid.back_months,
                back_yuan: paid.back_yuan,
                progress: ratio(paid.people, acc.entitled),
            }
        })
        .collect();
    DisbursementReport {
        scope: scope.clone(),
        rows,
    }
}

/// The entitled cases behind one row of [`disbursement_report`].
pub fn disbursement_cases(
    cases: &[SupervisedCase],
    scope: &Scope,
    county: &str,
    month: YearMonth,
    kind: SubsidyKind,
) -> DrillReport {
    DrillReport::sorted(
        entitlements(cases, scope)
            .filter(|(case, m, k)| case.domicile_county() == county && *m == month && *k == kind)
            .map(|(case, _, _)| {
                DrillRow::new(
                    &case.case,
                    DrillStatus::Entitled,
                    case.steps
                        .iter()
                        .find(|s| s.to == Stage::Decided)
                        .map(|s| s.at.china_date()),
                    None,
                )
            })
            .collect(),
    )
}

impl Report for DisbursementReport {
    type Row = DisbursementRow;
    const CSV_HEADER: &'static [&'static str] = &[
        "county",
        "month",
        "kind",
        "entitled",
        "reported",
        "paid_people",
        "paid_months",
        "paid_yuan",
        "back_months",
        "back_yuan",
        "progress",
    ];
    const ZH_HEADER: &'static [&'static str] = &[
        "户籍县",
        "月份",
        "补贴类别",
        "应发人数",
        "已报送",
        "实发人数",
        "发放月数",
        "发放金额（元）",
        "补发月数",
        "补发金额（元）",
        "发放进度",
    ];

    fn rows(&self) -> &[DisbursementRow] {
        &self.rows
    }

    fn zh_cells(row: &DisbursementRow) -> Vec<String> {
        let paid = |n: u64| {
            if row.reported {
                n.to_string()
            } else {
                "未发放".to_string()
            }
        };
        vec![
            row.county.clone(),
            row.month.to_string(),
            row.kind.zh().to_string(),
            row.entitled.to_string(),
            if row.reported { "是" } else { "否" }.to_string(),
            paid(row.paid_people),
            paid(row.paid_months),
            paid(row.paid_yuan),
            paid(row.back_months),
            paid(row.back_yuan),
            percent(row.progress),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tongban_domain::stage::Role;
    use tongban_domain::supervision::Award;

    use super::*;
    use crate::testing::{case, d, serde_header, step};
    use crate::{Period, Region};

    fn ym(text: &str) -> YearMonth {
        YearMonth::parse(text).unwrap()
    }

    fn scope(region: &str) -> Scope {
        Scope::new(
            Region::parse(region).unwrap(),
            Period::new(d("2026-10-01"), d("2026-12-31")).unwrap(),
            d("2027-01-05"),
        )
    }

    fn awarded(id: &str, domicile: &str, first: &str) -> SupervisedCase {
        let mut c = case(id, domicile, domicile);
        c.awards = vec![Award {
            kind: SubsidyKind::Living,
            monthly_yuan: 100,
        }];
        c.first_paid_month = Some(ym(first));
        c
    }

    fn cases() -> Vec<SupervisedCase> {
        let ca = Role::CountyCivilAffairs;
        let t = Role::Township;
        // Decided in October, active from November 3rd, suspended in December.
        let mut a = awarded("130102001-20260920-AAAAAA", "130102001", "2026-09");
        step(&mut a, Stage::Decided, "130102-ca", ca, "2026-10-20", None);
        step(
            &mut a,
            Stage::ResultReceived,
            "130102001",
            t,
            "2026-10-20",
            None,
        );
        step(&mut a, Stage::Notified, "130102001", t, "2026-10-22", None);
        step(&mut a, Stage::Active, "130102-ca", ca, "2026-11-03", None);
        step(
            &mut a,
            Stage::Suspended,
            "130102-ca",
            ca,
            "2026-12-15",
            None,
        );
        // Active in October, first paid month November (not entitled before).
        let mut b = awarded("130102002-20261101-BBBBBB", "130102002", "2026-11");
        b.awards.push(Award {
            kind: SubsidyKind::Nursing,
            monthly_yuan: 80,
        });
        step(&mut b, Stage::Decided, "130102-ca", ca, "2026-10-25", None);
        step(&mut b, Stage::Notified, "130102002", t, "2026-10-26", None);
        step(&mut b, Stage::Active, "130102-ca", ca, "2026-10-27", None);
        // A rejection, and a case in another county with no summary.
        let mut r = case("130102001-20261001-CCCCCC", "130102001", "130102001");
        step(
            &mut r,
            Stage::Rejected,
            "130102-dpf",
            Role::CountyDpf,
            "2026-10-10",
            None,
        );
        step(&mut r, Stage::Notified, "130102001", t, "2026-10-12", None);
        let mut other = awarded("130104001-20260901-DDDDDD", "130104001", "2026-09");
        step(
            &mut other,
            Stage::Decided,
            "130104-ca",
            ca,
            "2026-09-20",
            None,
        );
        step(
            &mut other,
            Stage::Active,
            "130104-ca",
            ca,
            "2026-09-25",
            None,
        );
        vec![a, b, r, other]
    }

    fn summary(county: &str, month: &str, living: u64, nursing: u64) -> PayrollSummary {
        PayrollSummary {
            county: county.into(),
            month: ym(month),
            living: KindTotal {
                people: living,
                months: living,
                yuan: living * 100,
                back_months: 0,
                back_yuan: 0,
            },
            nursing: KindTotal {
                people: nursing,
                months: nursing,
                yuan: nursing * 80,
                back_months: 0,
                back_yuan: 0,
            },
        }
    }

    #[test]
    fn entitlement_replays_the_chain() {
        let c = cases();
        assert!(entitled_in(&c[0], ym("2026-10")), "decided in October");
        assert!(entitled_in(&c[0], ym("2026-11")));
        assert!(!entitled_in(&c[0], ym("2026-12")), "suspended in December");
        assert!(!entitled_in(&c[0], ym("2026-09")), "not decided yet");
        assert!(
            !entitled_in(&c[1], ym("2026-10")),
            "first paid month November"
        );
        assert!(entitled_in(&c[1], ym("2026-12")));
        assert!(!entitled_in(&c[2], ym("2026-10")), "rejected");
        assert_eq!(stage_at_end_of(&c[0], ym("2026-11")), Some(Stage::Active));
        assert_eq!(stage_at_end_of(&c[0], ym("2026-08")), None);
    }

    #[test]
    fn paid_beside_entitled() {
        let summaries = [
            summary("130102", "2026-11", 2, 1),
            summary("130102", "2026-12", 1, 1),
            summary("440106", "2026-11", 9, 9),
        ];
        let report = disbursement_report(&cases(), &summaries, &scope("13"));
        let rows: Vec<(String, String, &str, u64, bool, u64)> = report
            .rows
            .iter()
            .map(|r| {
                (
                    r.county.clone(),
                    r.month.to_string(),
                    r.kind.code(),
                    r.entitled,
                    r.reported,
                    r.paid_people,
                )
            })
            .collect();
        let row = |c: &str, m: &str, k, e, rep, p| (c.to_string(), m.to_string(), k, e, rep, p);
        assert_eq!(
            rows,
            [
                row("130102", "2026-10", "living", 1, false, 0),
                row("130102", "2026-11", "living", 2, true, 2),
                row("130102", "2026-11", "nursing", 1, true, 1),
                row("130102", "2026-12", "living", 1, true, 1),
                row("130102", "2026-12", "nursing", 1, true, 1),
                row("130104", "2026-10", "living", 1, false, 0),
                row("130104", "2026-11", "living", 1, false, 0),
                row("130104", "2026-12", "living", 1, false, 0),
            ]
        );
        assert_eq!(report.rows[1].progress, Some(1.0));
        assert_eq!(report.rows[1].paid_yuan, 200);
        assert_eq!(report.table()[1][5], "未发放");
        // A township region is its county's payroll and its own cases.
        let township = disbursement_report(&cases(), &summaries, &scope("130102002"));
        assert!(township.rows.iter().all(|r| r.county == "130102"));
        assert_eq!(township.rows.len(), 5);
        assert_eq!(township.rows[1].entitled, 2, "the county's cases, widened");
    }

    #[test]
    fn drill_down_and_header() {
        let drill = disbursement_cases(
            &cases(),
            &scope("13"),
            "130102",
            ym("2026-11"),
            SubsidyKind::Living,
        );
        assert_eq!(
            drill.case_ids(),
            ["130102001-20260920-AAAAAA", "130102002-20261101-BBBBBB"]
        );
        let report = disbursement_report(&cases(), &[], &scope("13"));
        assert_eq!(
            serde_header::<DisbursementReport>(&report.rows[0]),
            DisbursementReport::CSV_HEADER.join(",")
        );
    }
}
