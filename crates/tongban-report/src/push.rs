//! Push timeliness per acceptance office (及时推送): the steps
//! `accepted → pushed` that acceptance offices in the region signed in the
//! period — the notice allows 3 working days from materials complete — and
//! the cases waiting at `accepted` to be pushed whose deadline has passed on
//! the `as_of` day.
//!
//! An office is in the region when the case's acceptance township is: the
//! report judges the region's own windows, wherever their applicants live (a
//! case accepted in Guangdong for a Hebei resident counts under `44`, and
//! under `13` in the review report). A step counts under the office that
//! signed it; a waiting case under the office its pending deadline names, or
//! the case's acceptance office when it names none.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use tongban_domain::stage::Stage;
use tongban_domain::supervision::SupervisedCase;

use crate::{DrillReport, DrillRow, DrillStatus, Report, Scope, percent, ratio};

/// One acceptance office's push timeliness.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushRow {
    /// The acceptance office's id (`合计` in the total).
    pub office: String,
    /// Its 9-digit township (empty in the total).
    pub township: String,
    /// Pushes signed in the period.
    pub pushed: u64,
    /// Of them, on time.
    pub on_time: u64,
    /// Of them, late.
    pub late: u64,
    /// `on_time / pushed`, none without pushes.
    pub on_time_rate: Option<f64>,
    /// Pushes whose deadline the calendar did not fully cover.
    pub provisional: u64,
    /// Cases waiting to be pushed past their deadline on the `as_of` day.
    pub overdue_now: u64,
}

impl PushRow {
    fn add(&mut self, event: &Event) {
        match event.kind {
            EventKind::Step { late, provisional } => {
                self.pushed += 1;
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

    fn finish(&mut self) {
        self.on_time_rate = ratio(self.on_time, self.pushed);
    }
}

/// The push report of a scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushReport {
    /// What it covers.
    pub scope: Scope,
    /// One row per acceptance office, by office id.
    pub rows: Vec<PushRow>,
    /// The sums over every row.
    pub total: PushRow,
}

enum EventKind {
    Step { late: bool, provisional: bool },
    Overdue,
}

struct Event<'a> {
    office: &'a str,
    case: &'a SupervisedCase,
    date: NaiveDate,
    deadline: Option<NaiveDate>,
    kind: EventKind,
}

/// Every push step and overdue waiting case of the scope, with its office.
fn events<'a>(
    cases: &'a [SupervisedCase],
    scope: &'a Scope,
) -> impl Iterator<Item = Event<'a>> + 'a {
    cases
        .iter()
        .filter(|case| scope.region.contains(&case.acceptance))
        .flat_map(move |case| {
            let steps = case
                .steps
                .iter()
                .filter(|s| s.from == Some(Stage::Accepted) && s.to == Stage::Pushed)
                .filter_map(move |s| {
                    let date = s.at.china_date();
                    scope.period.contains(date).then_some(Event {
                        office: &s.office,
                        case,
                        date,
                        deadline: s.deadline,
                        kind: EventKind::Step {
                            late: s.late,
                            provisional: s.provisional,
                        },
                    })
                });
            let overdue = case
                .pending
                .as_ref()
                .filter(|p| {
                    case.stage() == Some(Stage::Accepted)
                        && p.next.contains(&Stage::Pushed)
                        && p.deadline < scope.as_of
                })
                .map(|p| Event {
                    office: if p.office.is_empty() {
                        &case.acceptance_office
                    } else {
                        &p.office
                    },
                    case,
                    date: case.entered().map_or(p.deadline, |t| t.china_date()),
                    deadline: Some(p.deadline),
                    kind: EventKind::Overdue,
                });
            steps.chain(overdue)
        })
}

/// Push timeliness per acceptance office in `scope`.
pub fn push_report(cases: &[SupervisedCase], scope: &Scope) -> PushReport {
    let mut rows: BTreeMap<&str, PushRow> = BTreeMap::new();
    let mut total = PushRow {
        office: "合计".to_string(),
        ..PushRow::default()
    };
    for event in events(cases, scope) {
        let row = rows.entry(event.office).or_insert_with(|| PushRow {
            office: event.office.to_string(),
            township: event.case.acceptance.clone(),
            ..PushRow::default()
        });
        row.add(&event);
        total.add(&event);
    }
    let mut rows: Vec<PushRow> = rows.into_values().collect();
    rows.iter_mut().for_each(PushRow::finish);
    total.finish();
    PushReport {
        scope: scope.clone(),
        rows,
        total,
    }
}

/// The cases behind one office's row of [`push_report`]: each push step
/// (on time or late, on the day it was signed) and each overdue waiting case
/// (on the day it was accepted).
pub fn push_cases(cases: &[SupervisedCase], scope: &Scope, office: &str) -> DrillReport {
    DrillReport::sorted(
        events(cases, scope)
            .filter(|e| e.office == office)
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

impl Report for PushReport {
    type Row = PushRow;
    const CSV_HEADER: &'static [&'static str] = &[
        "office",
        "township",
        "pushed",
        "on_time",
        "late",
        "on_time_rate",
        "provisional",
        "overdue_now",
    ];
    const ZH_HEADER: &'static [&'static str] = &[
        "受理窗口",
        "所在乡镇",
        "推送数",
        "按时",
        "超时",
        "按时率",
        "期限待定",
        "当前超期",
    ];

    fn rows(&self) -> &[PushRow] {
        &self.rows
    }

    fn zh_cells(row: &PushRow) -> Vec<String> {
        vec![
            row.office.clone(),
            row.township.clone(),
            row.pushed.to_string(),
            row.on_time.to_string(),
            row.late.to_string(),
            percent(row.on_time_rate),
            row.provisional.to_string(),
            row.overdue_now.to_string(),
        ]
    }

    fn zh_footer(&self) -> Vec<Vec<String>> {
        vec![Self::zh_cells(&self.total)]
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

    /// Three cases at Guangzhou's window 440106001: pushed on time, pushed
    /// late, waiting past its deadline; one at Shijiazhuang's 130102001
    /// pushed on time but in October (outside the period), and one waiting
    /// there whose deadline is still ahead.
    fn cases() -> Vec<SupervisedCase> {
        let mut on_time = case("440106001-20261102-AAAAAA", "440106001", "130102001");
        step(
            &mut on_time,
            Stage::Draft,
            "440106001",
            Role::Township,
            "2026-11-02",
            None,
        );
        step(
            &mut on_time,
            Stage::Accepted,
            "440106001",
            Role::Township,
            "2026-11-02",
            None,
        );
        step(
            &mut on_time,
            Stage::Pushed,
            "440106001",
            Role::Township,
            "2026-11-04",
            Some("2026-11-05"),
        );
        let mut late = case("440106001-20261102-BBBBBB", "440106001", "440106002");
        step(
            &mut late,
            Stage::Draft,
            "440106001",
            Role::Township,
            "2026-11-02",
            None,
        );
        step(
            &mut late,
            Stage::Accepted,
            "440106001",
            Role::Township,
            "2026-11-02",
            None,
        );
        step(
            &mut late,
            Stage::Pushed,
            "440106001",
            Role::Township,
            "2026-11-09",
            Some("2026-11-05"),
        );
        let mut waiting = case("440106001-20261120-CCCCCC", "440106001", "440106002");
        step(
            &mut waiting,
            Stage::Draft,
            "440106001",
            Role::Township,
            "2026-11-20",
            None,
        );
        step(
            &mut waiting,
            Stage::Accepted,
            "440106001",
            Role::Township,
            "2026-11-20",
            None,
        );
        pending(
            &mut waiting,
            &[Stage::Pushed],
            Role::Township,
            "440106001",
            "2026-11-25",
        );
        let mut october = case("130102001-20261010-DDDDDD", "130102001", "130103001");
        step(
            &mut october,
            Stage::Draft,
            "130102001",
            Role::Township,
            "2026-10-10",
            None,
        );
        step(
            &mut october,
            Stage::Accepted,
            "130102001",
            Role::Township,
            "2026-10-10",
            None,
        );
        step(
            &mut october,
            Stage::Pushed,
            "130102001",
            Role::Township,
            "2026-10-12",
            Some("2026-10-14"),
        );
        let mut fresh = case("130102001-20261208-EEEEEE", "130102001", "130103001");
        step(
            &mut fresh,
            Stage::Draft,
            "130102001",
            Role::Township,
            "2026-12-08",
            None,
        );
        step(
            &mut fresh,
            Stage::Accepted,
            "130102001",
            Role::Township,
            "2026-12-08",
            None,
        );
        pending(
            &mut fresh,
            &[Stage::Pushed],
            Role::Township,
            "",
            "2026-12-11",
        );
        vec![on_time, late, waiting, october, fresh]
    }

    #[test]
    fn counts_on_time_late_and_overdue_per_office() {
        let report = push_report(&cases(), &scope("00"));
        assert_eq!(report.rows.len(), 1, "{:#?}", report.rows);
        let gz = &report.rows[0];
        assert_eq!(gz.office, "440106001");
        assert_eq!(
            (gz.pushed, gz.on_time, gz.late, gz.overdue_now),
            (2, 1, 1, 1)
        );
        assert_eq!(gz.on_time_rate, Some(0.5));
        assert_eq!((report.total.pushed, report.total.overdue_now), (2, 1));

        // On the deadline's own day the waiting case is not yet overdue.
        let mut on_deadline = scope("00");
        on_deadline.as_of = d("2026-11-25");
        assert_eq!(push_report(&cases(), &on_deadline).total.overdue_now, 0);
        // October's push counts in an October period, and the Shijiazhuang
        // row appears with it.
        let mut october = scope("13");
        october.period = Period::new(d("2026-10-01"), d("2026-10-31")).unwrap();
        let report = push_report(&cases(), &october);
        assert_eq!(report.rows.len(), 1);
        assert_eq!(
            (report.rows[0].office.as_str(), report.rows[0].on_time),
            ("130102001", 1)
        );
    }

    #[test]
    fn region_is_the_acceptance_offices() {
        // The Hebei resident's case pushed from Guangdong counts in 44, not 13.
        assert_eq!(push_report(&cases(), &scope("44")).total.pushed, 2);
        assert_eq!(push_report(&cases(), &scope("4401")).total.pushed, 2);
        assert_eq!(push_report(&cases(), &scope("13")).total.pushed, 0);
        assert!(push_report(&cases(), &scope("13")).rows.is_empty());
    }

    #[test]
    fn drill_down_lists_the_cases_of_a_row() {
        let drill = push_cases(&cases(), &scope("00"), "440106001");
        let lines: Vec<(&str, DrillStatus)> = drill
            .rows
            .iter()
            .map(|r| (r.short.as_str(), r.status))
            .collect();
        assert_eq!(
            lines,
            [
                ("AAAAAA", DrillStatus::OnTime),
                ("BBBBBB", DrillStatus::Late),
                ("CCCCCC", DrillStatus::Overdue)
            ]
        );
        assert!(
            push_cases(&cases(), &scope("00"), "130102001")
                .rows
                .is_empty()
        );
    }

    #[test]
    fn renderings() {
        let report = push_report(&cases(), &scope("00"));
        assert_eq!(
            serde_header::<PushReport>(&report.total),
            PushReport::CSV_HEADER.join(",")
        );
        let mut csv = Vec::new();
        report.write_csv(&mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(
            csv,
            "office,township,pushed,on_time,late,on_time_rate,provisional,overdue_now\n\
             440106001,440106001,2,1,1,0.5,0,1\n"
        );
        let table = report.table();
        assert_eq!(table[0][0], "受理窗口");
        assert_eq!(table[1][5], "50.0%");
        assert_eq!(table[2][0], "合计");
        // An empty report still has its header.
        let mut csv = Vec::new();
        push_report(&[], &scope("00")).write_csv(&mut csv).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap().lines().count(), 1);
    }
}
