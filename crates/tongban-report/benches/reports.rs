//! Each report's time over generated cases (1,000,000 by default; set
//! `TONGBAN_REPORT_BENCH_CASES`), beside a floor: one pass that only reads
//! every case's steps. Best of 3 runs each.
//!
//! `cargo bench -p tongban-report --bench reports`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tongban_domain::payroll::YearMonth;
use tongban_domain::supervision::SupervisedCase;
use tongban_report::{
    Period, Region, Scope, backlog_report, disbursement_report, push_report, review_report, sample,
    satisfaction_report,
};

fn best_of_3<T>(mut run: impl FnMut() -> T) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            black_box(run());
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn floor(cases: &[SupervisedCase]) -> i64 {
    cases
        .iter()
        .flat_map(|c| c.steps.iter())
        .map(|s| s.at.millis() ^ i64::from(s.late))
        .fold(0, i64::wrapping_add)
}

fn main() {
    let n: usize = std::env::var("TONGBAN_REPORT_BENCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    let generated = Instant::now();
    let cases = sample::cases(n, 1, start, end);
    let summaries = sample::summaries(&cases, 1, YearMonth::of(start), YearMonth::of(end));
    let steps: usize = cases.iter().map(|c| c.steps.len()).sum();
    println!(
        "{n} cases, {steps} steps, {} payroll summaries generated in {:.1?}",
        summaries.len(),
        generated.elapsed()
    );
    let as_of = NaiveDate::from_ymd_opt(2027, 1, 5).unwrap();
    let quarter = Period::new(
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    )
    .unwrap();
    for region in ["00", "13"] {
        let scope = Scope::new(Region::parse(region).unwrap(), quarter, as_of);
        println!(
            "region {region}, period {} .. {}, as of {as_of}:",
            quarter.from(),
            quarter.to()
        );
        let floor_time = best_of_3(|| floor(&cases));
        println!("  {:<14} {:>10.1?}", "floor (steps)", floor_time);
        let timings = [
            ("push", best_of_3(|| push_report(&cases, &scope))),
            ("review", best_of_3(|| review_report(&cases, &scope))),
            ("backlog", best_of_3(|| backlog_report(&cases, &scope))),
            (
                "disbursement",
                best_of_3(|| disbursement_report(&cases, &summaries, &scope)),
            ),
            (
                "satisfaction",
                best_of_3(|| satisfaction_report(&cases, &scope)),
            ),
        ];
        for (name, time) in timings {
            println!(
                "  {name:<14} {time:>10.1?}  {:>5.1}x floor",
                time.as_secs_f64() / floor_time.as_secs_f64().max(1e-9)
            );
        }
    }
}
