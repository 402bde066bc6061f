//! Properties of the reports over random chains: every row's on-time and
//! late steps add up to its count, the rows add up to every step of the
//! scope counted directly, and a row's drill-down lists exactly its cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use tongban_domain::stage::Stage;
use tongban_report::{
    Period, Region, Scope, backlog_cases, backlog_report, push_cases, push_report, review_cases,
    review_report, sample, satisfaction_report,
};

fn scope(region: &str, from: u64, len: u64, as_of: u64) -> Scope {
    let base = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let from = base.checked_add_days(Days::new(from)).unwrap();
    let to = from.checked_add_days(Days::new(len)).unwrap();
    let as_of = base.checked_add_days(Days::new(as_of)).unwrap();
    Scope::new(
        Region::parse(region).unwrap(),
        Period::new(from, to).unwrap(),
        as_of,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rows_add_up(
        seed in any::<u64>(),
        region in prop::sample::select(vec!["00", "11", "13", "1301", "440102", "320303002"]),
        from in 0u64..300,
        len in 0u64..120,
        as_of in 0u64..400,
    ) {
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        let cases = sample::cases(400, seed, start, end);
        let scope = scope(region, from, len, as_of);

        let push = push_report(&cases, &scope);
        for row in &push.rows {
            prop_assert_eq!(row.on_time + row.late, row.pushed);
            let drill = push_cases(&cases, &scope, &row.office);
            prop_assert_eq!(drill.rows.len() as u64, row.pushed + row.overdue_now);
        }
        let direct = cases
            .iter()
            .filter(|c| scope.region.contains(&c.acceptance))
            .flat_map(|c| c.steps.iter())
            .filter(|s| s.from == Some(Stage::Accepted) && s.to == Stage::Pushed)
            .filter(|s| scope.period.contains(s.at.china_date()))
            .count() as u64;
        prop_assert_eq!(push.rows.iter().map(|r| r.pushed).sum::<u64>(), direct);
        prop_assert_eq!(push.total.pushed, direct);

        let review = review_report(&cases, &scope);
        for row in &review.rows {
            prop_assert_eq!(row.on_time + row.late, row.reviewed);
            let drill = review_cases(&cases, &scope, row.role, &row.office);
            prop_assert_eq!(drill.rows.len() as u64, row.reviewed + row.overdue_now);
        }
        let reviewed = cases
            .iter()
            .filter(|c| scope.region.contains(&c.domicile))
            .flat_map(|c| c.steps.iter())
            .filter(|s| matches!(s.from, Some(Stage::Received | Stage::Publicized | Stage::InitialReviewed | Stage::DpfReviewed)))
            .filter(|s| s.to != Stage::Withdrawn && scope.period.contains(s.at.china_date()))
            .count() as u64;
        prop_assert_eq!(review.rows.iter().map(|r| r.reviewed).sum::<u64>(), reviewed);

        let backlog = backlog_report(&cases, &scope);
        for row in &backlog.rows {
            prop_assert!(row.overdue <= row.cases);
            prop_assert_eq!(backlog_cases(&cases, &scope, row.stage).rows.len() as u64, row.cases);
        }
        let live = cases
            .iter()
            .filter(|c| scope.region.concerns(c))
            .filter(|c| tongban_report::backlog::backlog_stage(c).is_some())
            .count() as u64;
        prop_assert_eq!(backlog.total, live);

        let satisfaction = satisfaction_report(&cases, &scope);
        for row in &satisfaction.rows {
            prop_assert_eq!(
                row.score_1 + row.score_2 + row.score_3 + row.score_4 + row.score_5,
                row.evaluations
            );
            let mean = row.mean_score.unwrap();
            prop_assert!((1.0..=5.0).contains(&mean));
        }
    }
}
