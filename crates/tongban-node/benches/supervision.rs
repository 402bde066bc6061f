//! Each supervision report over a supervisor node's store holding 1,000,000
//! supervised cases (set `TONGBAN_SUPERVISION_BENCH_CASES`), end to end as
//! `tongban report` runs it on a node — every row read from redb and decoded,
//! then the report — beside its floor measured in the same run: reading and
//! decoding the same rows and nothing else. Best of 3 each.
//!
//! `cargo bench -p tongban-node --bench supervision`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tongban_domain::ids::Timestamp;
use tongban_domain::stage::Role;
use tongban_node::local::LocalNode;
use tongban_node::provision::{OfficeSpec, provision};
use tongban_node::supervision::{Holdings, ReportKind, ReportRequest, report, supervised_cases};

fn best_of_3<T>(mut run: impl FnMut() -> T) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(run());
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let n: usize = std::env::var("TONGBAN_SUPERVISION_BENCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let specs = [OfficeSpec::new("supervisor-cn", Role::Supervisor, "00")];
    provision(
        tmp.path(),
        &specs,
        Timestamp(Timestamp::now().0 - 86_400_000),
        Timestamp(Timestamp::now().0 + 400 * 86_400_000),
    )
    .unwrap();
    let node = LocalNode::open(&tmp.path().join("supervisor-cn")).unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    let made = Instant::now();
    let mut bytes = 0usize;
    let mut steps = 0usize;
    for (batch, seed) in (0..n).step_by(50_000).zip(1u64..) {
        let cases = tongban_report::sample::cases(50_000.min(n - batch), seed, start, end);
        let rows: Vec<(tongban_domain::ids::CaseId, Vec<u8>)> = cases
            .iter()
            .map(|c| {
                steps += c.steps.len();
                let row = c.to_row();
                bytes += row.len();
                (tongban_domain::ids::CaseId::parse(&c.case).unwrap(), row)
            })
            .collect();
        node.store()
            .write(|tx| {
                for (case, row) in &rows {
                    tx.put_supervised(case, row)?;
                }
                Ok(())
            })
            .unwrap();
    }
    println!(
        "{n} supervised cases ({steps} steps, {:.0} MiB of rows) stored in {:.1?}",
        bytes as f64 / (1 << 20) as f64,
        made.elapsed()
    );
    let held = Holdings::of(&node).unwrap();
    let floor = best_of_3(|| supervised_cases(&held, "00").unwrap().len());
    println!(
        "floor (read and decode every row): {:.2} s, {:.0} cases/s",
        floor.as_secs_f64(),
        n as f64 / floor.as_secs_f64()
    );
    println!("| report | region | time | / floor |");
    println!("|---|---|---|---|");
    for region in ["00", "13"] {
        for kind in [
            ReportKind::Push,
            ReportKind::Review,
            ReportKind::Backlog,
            ReportKind::Disbursement,
            ReportKind::Satisfaction,
        ] {
            let request = ReportRequest {
                kind,
                region: region.into(),
                from: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                to: end,
                as_of: NaiveDate::from_ymd_opt(2027, 1, 5).unwrap(),
                drill: None,
            };
            let time = best_of_3(|| report(&held, &request).unwrap().cases);
            println!(
                "| {} | {region} | {:.2} s | {:.2}× |",
                kind.code(),
                time.as_secs_f64(),
                time.as_secs_f64() / floor.as_secs_f64()
            );
        }
    }
}
