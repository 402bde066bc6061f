//! Review timeliness per domicile office (及时审核): the reviews signed in the
//! period by the domicile township (leaving `received` or `publicized` — 3
//! working days), the county DPF (leaving `initial_reviewed` — 2) and county
//! civil affairs (leaving `dpf_reviewed` — 5), each to approve, return or
//! reject; and the cases waiting at one of those stages whose deadline has
//! passed on the `as_of` day.
//!
//! An office is in the region when the case's domicile is (every reviewing
//! office is an office of the domicile). A township's reviews count under the
//! office that signed them, and a township's waiting case under the office its
//! pending deadline names. A county office is reported as its role and county
//! (`130102 县级残联`), for its steps and its waiting cases alike: the stage
//! table admits only the domicile county's office of that role, and a waiting
//! case names no county office until its chain has reached it, so grouping
//! by signer would split one office's steps from its backlog.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use tongban_domain::stage::{Role, Stage};
use tongban_domain::supervision::SupervisedCase;

use crate::{DrillReport, DrillRow, DrillStatus, Report, Scope, percent, ratio};

/// The role that reviews a case waiting at `stage`, for the review stages.
pub fn review_role(stage: Stage) -> Option<Role> {
    match stage {
        Stage::Received | Stage::Publicized => Some(Role::Township),
        Stage::InitialReviewed => Some(Role::CountyDpf),
        Stage::DpfReviewed => Some(Role::CountyCivilAffairs),
        _ => None,
    }
}

/// Whether a step leaving a review stage for `to` is a review (approve,
/// return or reject; a withdrawal is the applicant's, not a review).
fn is_review_outcome(to: Stage) -> bool {
    matches!(
        to,
        Stage::InitialReviewed
            | Stage::DpfReviewed
            | Stage::Decided
            | Stage::Returned
            | Stage::Rejected
    )
}

/// How a county office is shown: `130102 县级残联`.
pub fn county_office_label(county: &str, role: Role) -> String {
    format!("{county} {}", role.zh())
}

/// One reviewing office's timeliness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewRow {
    /// The office's role.
    pub role: Role,
    /// The domicile county (6 digits).
    pub county: String,
    /// The township office's id, or the county office as `130102 县级残联`.
    pub office: String,
    /// Reviews signed in the period.
    pub reviewed: u64,
    /// Of them, on time.
    pub on_time: u64,
    /// Of them, late.
    pub late: u64,
    /// `on_time / reviewed`, none without reviews.
    pub on_time_rate: Option<f64>,
    /// Reviews whose deadline the calendar did not fully cover.
    pub provisional: u64,
    /// Cases waiting for this office past their deadline on the `as_of` day.
    pub overdue_now: u64,
}

impl ReviewRow {
    fn new(key: &Key<'_>) -> ReviewRow {
        ReviewRow {
            role: key.role,
            county: key.county.to_string(),
            office: key.label(),
            reviewed: 0,
            on_time: 0,
            late: 0,
            on_time_rate: None,
            provisional: 0,
            overdue_now: 0,
        }
    }

    fn add(&mut self, kind: &EventKind) {
        match *kind {
            EventKind::Step { late, provisional } => {
                self.reviewed += 1;
                if late {
                    self.late += 1;
                } else {
                    self.on_time += 1;
                }
                if provisional {
                    self.provisional += 1;
                }
            }
            EventKind::Overdue => self.overdue_now += 1,
        }
    }
}

/// The review report of a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewReport {
    /// What it covers.
    pub scope: Scope,
    /// One row per office: townships, then county DPFs, then county civil
    /// affairs, each by county and office.
    pub rows: Vec<ReviewRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    role: Role,
    county: &'a str,
    /// The township office's id; empty for a county office.
    office: &'a str,
}

impl Key<'_> {
    fn label(&self) -> String {
        if self.role == Role::Township && !self.office.is_empty() {
            self.office.to_string()
        } else {
            county_office_label(self.county, self.role)
        }
    }
}

enum EventKind {
    Step { late: bool, provisional: bool },
    Overdue,
}

struct Event<'a> {
    key: Key<'a>,
    case: &'a SupervisedCase,
    date: NaiveDate,
    deadline: Option<NaiveDate>,
    kind: EventKind,
}

fn key<'a>(case: &'a SupervisedCase, role: Role, office: &'a str) -> Key<'a> {
    Key {
        role,
        county: case.domicile_county(),
        office: if role == Role::Township { office } else { "" },
    }
}

fn events<'a>(
    cases: &'a [SupervisedCase],
    scope: &'a Scope,
) -> impl Iterator<Item = Event<'a>> + 'a {
    cases
        .iter()
        .filter(|case| scope.region.contains(&case.domicile))
        .flat_map(move |case| {
            let steps = case.steps.iter().filter_map(move |s| {
                let role = review_role(s.from?)?;
                let date = s.at.china_date();
                (is_review_outcome(s.to) && scope.period.contains(date)).then(|| Event {
                    key: key(case, role, &s.office),
                    case,
                    date,
                    deadline: s.deadline,
                    kind: EventKind::Step {
                        late: s.late,
                        provisional: s.provisional,
                    },
                })
            });
            let overdue = case.pending.as_ref().and_then(|p| {
                let stage = case.stage()?;
                let role = review_role(stage)?;
                (p.deadline < scope.as_of).then(|| Event {
                    key: key(case, role, &p.office),
                    case,
                    date: case.entered().map_or(p.deadline, |t| t.china_date()),
                    deadline: Some(p.deadline),
                    kind: EventKind::Overdue,
                })
            });
            steps.chain(overdue)
        })
}

/// Review timeliness per domicile office in `scope`.
pub fn review_report(cases: &[SupervisedCase], scope: &Scope) -> ReviewReport {
    let mut rows: BTreeMap<Key<'_>, ReviewRow> = BTreeMap::new();
    for event in events(cases, scope) {
        rows.entry(event.key.clone())
            .or_insert_with(|| ReviewRow::new(&event.key))
            .add(&event.kind);
    }
    let mut rows: Vec<ReviewRow> = rows.into_values().collect();
    for row in &mut rows {
        row.on_time_rate = ratio(row.on_time, row.reviewed);
    }
    ReviewReport {
        scope: scope.clone(),
        rows,
    }
}

/// The cases behind one row of [`review_report`], named by its role and its
/// `office` column (a township office's id, or `130102 县级残联`).
pub fn review_cases(
    cases: &[SupervisedCase],
    scope: &Scope,
    role: Role,
    office: &str,
) -> DrillReport {
    DrillReport::sorted(
        events(cases, scope)
            .filter(|e| e.key.role == role && e.key.label() == office)
            .map(|e| {
                let status = match e.kind {
                    EventKind::Step { late: true, .. } => DrillStatus::Late,
                    EventKind::Step { late: false, .. } => DrillStatus::OnTime,
                    EventKind::Overdue => DrillStatus::Overdue,
                };
                DrillRow::new(&e.case.case, status, Some(e.date), e.deadline)
            })
            .collect(),
    )
}

impl Report for ReviewReport {
    type Row = ReviewRow;
    const CSV_HEADER: &'static [&'static str] = &[
        "role",
        "county",
        "office",
        "reviewed",
        "on_time",
        "late",
        "on_time_rate",
        "provisional",
        "overdue_now",
    ];
    const ZH_HEADER: &'static [&'static str] = &[
        "审核层级",
        "户籍县",
        "审核单位",
        "审核数",
        "按时",
        "超时",
        "按时率",
        "期限待定",
        "当前超期",
    ];

    fn rows(&self) -> &[ReviewRow] {
        &self.rows
    }

    fn zh_cells(row: &ReviewRow) -> Vec<String> {
        vec![
            row.role.zh().to_string(),
            row.county.clone(),
            row.office.clone(),
            row.reviewed.to_string(),
            row.on_time.to_string(),
            row.late.to_string(),
            percent(row.on_time_rate),
            row.provisional.to_string(),
            row.overdue_now.to_string(),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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

    /// A Hebei resident's case accepted in Guangdong, reviewed on time by
    /// the township, late by the county DPF, waiting overdue at civil
    /// affairs; a local case waiting overdue at the township after its
    /// publicity; a case waiting at the DPF whose deadline is ahead.
    fn cases() -> Vec<SupervisedCase> {
        let t = Role::Township;
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
            "2026-11-03",
            None,
        );
        step(
            &mut cross,
            Stage::InitialReviewed,
            "130102001",
            t,
            "2026-11-05",
            Some("2026-11-06"),
        );
        step(
            &mut cross,
            Stage::DpfReviewed,
            "130102-dpf",
            Role::CountyDpf,
            "2026-11-12",
            Some("2026-11-09"),
        );
        pending(
            &mut cross,
            &[Stage::Decided],
            Role::CountyCivilAffairs,
            "",
            "2026-11-19",
        );
        let mut local = case("130102002-20261101-BBBBBB", "130102002", "130102002");
        step(&mut local, Stage::Draft, "130102002", t, "2026-11-01", None);
        step(
            &mut local,
            Stage::Accepted,
            "130102002",
            t,
            "2026-11-01",
            None,
        );
        step(
            &mut local,
            Stage::Publicized,
            "130102002",
            t,
            "2026-11-02",
            None,
        );
        pending(
            &mut local,
            &[Stage::InitialReviewed],
            t,
            "130102002",
            "2026-11-20",
        );
        let mut ahead = case("130102001-20261201-CCCCCC", "130102001", "130102001");
        step(&mut ahead, Stage::Draft, "130102001", t, "2026-12-01", None);
        step(
            &mut ahead,
            Stage::Accepted,
            "130102001",
            t,
            "2026-12-01",
            None,
        );
        step(
            &mut ahead,
            Stage::Publicized,
            "130102001",
            t,
            "2026-12-01",
            None,
        );
        step(
            &mut ahead,
            Stage::InitialReviewed,
            "130102001",
            t,
            "2026-12-09",
            Some("2026-12-14"),
        );
        pending(
            &mut ahead,
            &[Stage::DpfReviewed],
            Role::CountyDpf,
            "",
            "2026-12-11",
        );
        vec![cross, local, ahead]
    }

    fn row<'a>(report: &'a ReviewReport, office: &str) -> &'a ReviewRow {
        report.rows.iter().find(|r| r.office == office).unwrap()
    }

    #[test]
    fn counts_per_office_and_role() {
        let report = review_report(&cases(), &scope("13"));
        let offices: Vec<&str> = report.rows.iter().map(|r| r.office.as_str()).collect();
        assert_eq!(
            offices,
            [
                "130102001",
                "130102002",
                "130102 县级残联",
                "130102 县级民政部门"
            ]
        );
        let township = row(&report, "130102001");
        assert_eq!(
            (township.reviewed, township.on_time, township.late),
            (1, 1, 0)
        );
        let local = row(&report, "130102002");
        assert_eq!((local.reviewed, local.overdue_now), (0, 1));
        let dpf = row(&report, "130102 县级残联");
        assert_eq!((dpf.reviewed, dpf.late, dpf.overdue_now), (1, 1, 0));
        assert_eq!(dpf.on_time_rate, Some(0.0));
        let ca = row(&report, "130102 县级民政部门");
        assert_eq!(
            (ca.role, ca.reviewed, ca.overdue_now),
            (Role::CountyCivilAffairs, 0, 1)
        );
        assert_eq!(ca.on_time_rate, None);
    }

    #[test]
    fn region_is_the_domicile() {
        assert!(review_report(&cases(), &scope("44")).rows.is_empty());
        assert_eq!(review_report(&cases(), &scope("130102")).rows.len(), 4);
        let township = review_report(&cases(), &scope("130102002"));
        assert_eq!(township.rows.len(), 1);
        // As of a later day the DPF's waiting case is overdue too.
        let mut later = scope("13");
        later.as_of = d("2026-12-12");
        assert_eq!(
            row(&review_report(&cases(), &later), "130102 县级残联").overdue_now,
            1
        );
    }

    #[test]
    fn drill_down() {
        let drill = review_cases(&cases(), &scope("13"), Role::CountyDpf, "130102 县级残联");
        assert_eq!(drill.case_ids(), ["440106001-20261102-AAAAAA"]);
        assert_eq!(drill.rows[0].status, DrillStatus::Late);
        assert_eq!(drill.rows[0].deadline, Some(d("2026-11-09")));
        let drill = review_cases(&cases(), &scope("13"), Role::Township, "130102002");
        assert_eq!(drill.rows[0].status, DrillStatus::Overdue);
        assert!(
            review_cases(&cases(), &scope("13"), Role::CountyDpf, "130102002")
                .rows
                .is_empty()
        );
    }

    #[test]
    fn renderings() {
        let report = review_report(&cases(), &scope("13"));
        assert_eq!(
            serde_header::<ReviewReport>(&report.rows[0]),
            ReviewReport::CSV_HEADER.join(",")
        );
        let mut csv = Vec::new();
        report.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(
            csv.contains("\ncounty_dpf,130102,130102 县级残联,1,0,1,0.0,0,0\n"),
            "{csv}"
        );
        assert_eq!(report.table()[3][0], "县级残联");
    }
}
