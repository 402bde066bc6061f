//! `tongban payroll`: the monthly payroll of a county at its civil affairs
//! bureau (the rules are `tongban_domain::payroll`'s; the record is kept by the
//! node library).

use std::process::ExitCode;

use tongban_domain::ids::Timestamp;
use tongban_domain::payroll::{PayrollRecord, YearMonth};

use super::{fail, open_target};
use crate::cli::PayrollArgs;
use crate::error::Failure;
use crate::output::{print_json, table};

pub fn run(args: PayrollArgs) -> anyhow::Result<ExitCode> {
    let PayrollArgs {
        county,
        month,
        csv,
        operator,
        json,
        data,
    } = args;
    if county.len() != 6 || !county.bytes().all(|b| b.is_ascii_digit()) || county.ends_with("00") {
        return Ok(Failure::field(
            "--county",
            format!("{county:?} is not a 6-digit county code"),
        )
        .report());
    }
    let month = match YearMonth::parse(&month) {
        Ok(month) => month,
        Err(err) => return Ok(Failure::field("--month", err.to_string()).report()),
    };
    let mut node = match open_target(&data) {
        Ok(node) => node,
        Err(code) => return Ok(code),
    };
    let operator = match super::case::operator(node.as_ref(), &operator) {
        Ok(op) => op,
        Err(code) => return Ok(code),
    };
    let run = match node.payroll(&county, month, &operator, Timestamp::now()) {
        Ok(run) => run,
        Err(err) => return Ok(fail(&err)),
    };
    if let Some(path) = &csv {
        // Personal data: readable by the node's user only.
        if let Err(e) = tongban_node::files::write_atomic(path, &bank_csv(&run.record), Some(0o600))
        {
            return Ok(Failure::failed(format!("{}: {e}", path.display()))
                .at("--csv")
                .report());
        }
    }
    if json {
        print_json(&run)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &run.record;
    if run.signed_now {
        println!(
            "已编制并签署 {county} {month} 发放记录 payroll signed (version {}), {} 行",
            run.version,
            r.lines.len()
        );
    } else {
        println!(
            "{county} {month} 已有发放记录 this month was paid before: the record signed then (version {})",
            run.version
        );
    }
    let rows = run.totals.iter().map(|(kind, t)| {
        vec![
            format!("{}（{kind}）", kind.zh()),
            t.people.to_string(),
            t.months.to_string(),
            t.yuan.to_string(),
            format!("{} 月 / {} 元", t.back_months, t.back_yuan),
        ]
    });
    println!(
        "{}",
        table(
            &[
                "补贴类别 kind",
                "人数 people",
                "月数 months",
                "金额(元) yuan",
                "其中补发 back pay"
            ],
            rows
        )
    );
    println!("合计 total: {} 元", r.total());
    if let Some(path) = &csv {
        println!("发放明细已写入 lines written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The bank's file: one row per line, with the months it pays.
fn bank_csv(record: &PayrollRecord) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing strings to memory cannot fail.
    let _ = w.write_record([
        "county",
        "month",
        "case_id",
        "holder_id",
        "name",
        "kind",
        "months",
        "yuan",
    ]);
    for line in &record.lines {
        let months: Vec<String> = line
            .months
            .iter()
            .map(|m| format!("{}:{}", m.month, m.yuan))
            .collect();
        let _ = w.write_record([
            record.county.as_str(),
            &record.month.to_string(),
            &line.case,
            &line.holder,
            &line.name,
            line.kind.code(),
            &months.join(";"),
            &line.total().to_string(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}
