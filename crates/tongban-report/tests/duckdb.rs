//! The DuckDB reading of an export gives the same tables as the Rust
//! reports — push and review timeliness, and backlog, disbursement and
//! satisfaction: an export of 2,000 generated cases is queried by
//! `tests/duckdb/push.py` (the SQL of docs/analytics.md) and compared row by
//! row.
//!
//! Without `python3` or its `duckdb` module the test says why and passes,
//! unless `TONGBAN_REQUIRE_DUCKDB=1`, when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::NaiveDate;
use serde_json::Value;
use tongban_domain::payroll::YearMonth;
use tongban_report::{
    Period, Region, Scope, backlog_report, disbursement_report, export_parquet, push_report,
    review_report, sample, satisfaction_report,
};

fn d(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn required() -> bool {
    std::env::var("TONGBAN_REQUIRE_DUCKDB").is_ok_and(|v| v == "1")
}

/// Runs the script; `None` when DuckDB is not available here (and not
/// required).
fn duckdb(dir: &Path, scope: &Scope) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/duckdb/push.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .arg(scope.region.as_str())
        .arg(scope.period.from().to_string())
        .arg(scope.period.to().to_string())
        .arg(scope.as_of.to_string())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            assert!(
                !required(),
                "TONGBAN_REQUIRE_DUCKDB=1 but python3 did not run: {e}"
            );
            eprintln!("skipped: python3 did not run ({e})");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        assert!(!required(), "TONGBAN_REQUIRE_DUCKDB=1 but {stderr}");
        eprintln!("skipped: {stderr}");
        return None;
    }
    assert!(
        output.status.success(),
        "{} failed: {stderr}",
        script.display()
    );
    Some(serde_json::from_slice(&output.stdout).expect("the script prints JSON"))
}

fn count(row: &Value, field: &str) -> u64 {
    row[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {row}"))
}

fn rate(row: &Value) -> Option<f64> {
    row["on_time_rate"].as_f64()
}

fn same_rate(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        _ => false,
    }
}

#[test]
fn duckdb_computes_the_same_reports() {
    let start = d("2026-06-01");
    let end = d("2026-12-31");
    let cases = sample::cases(2000, 2026, start, end);
    let summaries = sample::summaries(&cases, 2026, YearMonth::of(start), YearMonth::of(end));
    let dir = tempfile::tempdir().unwrap();
    export_parquet(dir.path(), &cases, &summaries).unwrap();

    let scopes = [
        Scope::new(
            Region::country(),
            Period::new(d("2026-06-01"), d("2026-12-31")).unwrap(),
            d("2027-01-01"),
        ),
        Scope::new(
            Region::parse("13").unwrap(),
            Period::new(d("2026-09-01"), d("2026-11-30")).unwrap(),
            d("2026-12-20"),
        ),
        Scope::new(
            Region::parse("4402").unwrap(),
            Period::new(d("2026-10-01"), d("2026-12-31")).unwrap(),
            d("2026-12-31"),
        ),
        // A township: payroll is its county's.
        Scope::new(
            Region::parse("320101002").unwrap(),
            Period::new(d("2026-07-15"), d("2026-12-31")).unwrap(),
            d("2026-12-31"),
        ),
    ];
    for scope in &scopes {
        let Some(sql) = duckdb(dir.path(), scope) else {
            return;
        };

        let push = push_report(&cases, scope);
        let sql_push = sql["push"].as_array().unwrap();
        assert!(
            !push.rows.is_empty(),
            "the sample has pushes in {}",
            scope.region
        );
        assert_eq!(
            push.rows.len(),
            sql_push.len(),
            "push rows in {}",
            scope.region
        );
        for (rust, duck) in push.rows.iter().zip(sql_push) {
            assert_eq!(rust.office, duck["office"].as_str().unwrap());
            assert_eq!(rust.township, duck["township"].as_str().unwrap());
            let counts = [
                rust.pushed,
                rust.on_time,
                rust.late,
                rust.provisional,
                rust.overdue_now,
            ];
            let sql_counts =
                ["pushed", "on_time", "late", "provisional", "overdue_now"].map(|f| count(duck, f));
            assert_eq!(
                counts, sql_counts,
                "push row {} in {}",
                rust.office, scope.region
            );
            assert!(same_rate(rust.on_time_rate, rate(duck)), "{rust:?} {duck}");
        }

        let review = review_report(&cases, scope);
        let sql_review: BTreeMap<(String, String), &Value> = sql["review"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let key = (
                    row["role"].as_str().unwrap().to_string(),
                    row["office"].as_str().unwrap().to_string(),
                );
                (key, row)
            })
            .collect();
        assert!(!review.rows.is_empty());
        assert_eq!(
            review.rows.len(),
            sql_review.len(),
            "review rows in {}",
            scope.region
        );
        for rust in &review.rows {
            let duck = sql_review
                .get(&(rust.role.code().to_string(), rust.office.clone()))
                .unwrap_or_else(|| panic!("DuckDB has no row {} {}", rust.role, rust.office));
            assert_eq!(rust.county, duck["county"].as_str().unwrap());
            let counts = [
                rust.reviewed,
                rust.on_time,
                rust.late,
                rust.provisional,
                rust.overdue_now,
            ];
            let sql_counts = ["reviewed", "on_time", "late", "provisional", "overdue_now"]
                .map(|f| count(duck, f));
            assert_eq!(
                counts, sql_counts,
                "review row {} {} in {}",
                rust.role, rust.office, scope.region
            );
            assert!(same_rate(rust.on_time_rate, rate(duck)), "{rust:?} {duck}");
        }
        let backlog = backlog_report(&cases, scope);
        let sql_backlog = sql["backlog"].as_array().unwrap();
        assert!(!backlog.rows.is_empty());
        assert_eq!(
            backlog.rows.len(),
            sql_backlog.len(),
            "backlog rows in {}",
            scope.region
        );
        for (rust, duck) in backlog.rows.iter().zip(sql_backlog) {
            assert_eq!(rust.stage.code(), duck["stage"].as_str().unwrap());
            assert_eq!(
                [rust.cases, rust.overdue],
                [count(duck, "cases"), count(duck, "overdue")],
                "{}",
                rust.stage
            );
            assert_eq!(
                rust.oldest_entered.map(|d| d.to_string()).as_deref(),
                duck["oldest_entered"].as_str()
            );
            assert_eq!(rust.oldest_case.as_deref(), duck["oldest_case"].as_str());
        }

        let disbursement = disbursement_report(&cases, &summaries, scope);
        let sql_disbursement = sql["disbursement"].as_array().unwrap();
        assert!(!disbursement.rows.is_empty());
        assert_eq!(
            disbursement.rows.len(),
            sql_disbursement.len(),
            "disbursement rows in {}",
            scope.region
        );
        for (rust, duck) in disbursement.rows.iter().zip(sql_disbursement) {
            let key = (
                rust.county.as_str(),
                rust.month.to_string(),
                rust.kind.code(),
            );
            assert_eq!(
                key,
                (
                    duck["county"].as_str().unwrap(),
                    duck["month"].as_str().unwrap().to_string(),
                    duck["kind"].as_str().unwrap()
                )
            );
            assert_eq!(
                rust.reported,
                duck["reported"].as_bool().unwrap(),
                "{key:?}"
            );
            let counts = [
                rust.entitled,
                rust.paid_people,
                rust.paid_months,
                rust.paid_yuan,
                rust.back_months,
                rust.back_yuan,
            ];
            let sql_counts = [
                "entitled",
                "paid_people",
                "paid_months",
                "paid_yuan",
                "back_months",
                "back_yuan",
            ]
            .map(|f| {
                duck[f]
                    .as_u64()
                    .or_else(|| duck[f].as_f64().map(|v| v as u64))
                    .unwrap()
            });
            assert_eq!(counts, sql_counts, "disbursement {key:?}");
            let progress = duck["progress"].as_f64();
            assert!(same_rate(rust.progress, progress), "{rust:?} {duck}");
        }

        let satisfaction = satisfaction_report(&cases, scope);
        let sql_satisfaction = sql["satisfaction"].as_array().unwrap();
        assert!(!satisfaction.rows.is_empty());
        assert_eq!(satisfaction.rows.len(), sql_satisfaction.len());
        for (rust, duck) in satisfaction.rows.iter().zip(sql_satisfaction) {
            assert_eq!(rust.office, duck["office"].as_str().unwrap());
            let counts = [
                rust.evaluations,
                rust.score_1,
                rust.score_2,
                rust.score_3,
                rust.score_4,
                rust.score_5,
            ];
            let sql_counts = [
                "evaluations",
                "score_1",
                "score_2",
                "score_3",
                "score_4",
                "score_5",
            ]
            .map(|f| count(duck, f));
            assert_eq!(counts, sql_counts, "satisfaction {}", rust.office);
            assert!(
                same_rate(rust.mean_score, duck["mean_score"].as_f64()),
                "{rust:?} {duck}"
            );
            assert!(
                same_rate(rust.satisfied_rate, duck["satisfied_rate"].as_f64()),
                "{rust:?} {duck}"
            );
        }

        eprintln!(
            "region {}: {} push, {} review, {} backlog, {} disbursement and {} satisfaction rows agree with DuckDB",
            scope.region,
            push.rows.len(),
            review.rows.len(),
            backlog.rows.len(),
            disbursement.rows.len(),
            satisfaction.rows.len()
        );
    }
}
