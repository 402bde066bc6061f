//! `tongban report` and `tongban export`: supervision from signed timestamps
//! (the reports are `tongban_report`'s, computed by the node library over the
//! supervised cases the node holds; this module parses and prints).

use std::process::ExitCode;

use chrono::{Datelike, NaiveDate};
use tongban_domain::payroll::YearMonth;
use tongban_node::supervision::{ReportKind, ReportRequest};

use super::{fail, open_target};
use crate::cli::{ExportArgs, ReportArgs};
use crate::error::Failure;
use crate::output::{print_json, table};

fn date(field: &str, text: &str) -> Result<NaiveDate, ExitCode> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| {
        Failure::field(field, format!("{text:?} is not a date YYYY-MM-DD: {e}")).report()
    })
}

fn kind(text: &str) -> Option<ReportKind> {
    [
        ReportKind::Push,
        ReportKind::Review,
        ReportKind::Backlog,
        ReportKind::Disbursement,
        ReportKind::Satisfaction,
    ]
    .into_iter()
    .find(|k| k.code() == text)
}

/// The request `args` describe, or the exit of a field at fault.
fn request(args: &ReportArgs) -> Result<ReportRequest, ExitCode> {
    let kind = kind(&args.kind).ok_or_else(|| {
        Failure::field(
            "KIND",
            format!(
                "{:?} is not a report: push, review, backlog, disbursement or satisfaction",
                args.kind
            ),
        )
        .report()
    })?;
    let today = tongban_domain::today_in_china();
    let (from, to) = match &args.month {
        Some(month) => {
            let month = YearMonth::parse(month)
                .map_err(|e| Failure::field("--month", e.to_string()).report())?;
            let last = month
                .next()
                .first_day()
                .pred_opt()
                .unwrap_or(NaiveDate::MAX);
            (month.first_day(), last)
        }
        None => (
            match &args.from {
                Some(text) => date("--from", text)?,
                None => today.with_day(1).unwrap_or(today),
            },
            match &args.to {
                Some(text) => date("--to", text)?,
                None => today,
            },
        ),
    };
    let as_of = match &args.as_of {
        Some(text) => date("--as-of", text)?,
        None => today,
    };
    Ok(ReportRequest {
        kind,
        region: args.region.clone(),
        from,
        to,
        as_of,
        drill: args.drill.clone(),
    })
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let request = match request(&args) {
        Ok(request) => request,
        Err(code) => return Ok(code),
    };
    let node = match open_target(&args.data) {
        Ok(node) => node,
        Err(code) => return Ok(code),
    };
    let answer = match node.report(&request) {
        Ok(answer) => answer,
        Err(err) => return Ok(fail(&err)),
    };
    if let Some(path) = &args.csv
        && let Err(e) = tongban_node::files::write_atomic(path, answer.csv.as_bytes(), Some(0o600))
    {
        return Ok(Failure::failed(format!("{}: {e}", path.display()))
            .at("--csv")
            .report());
    }
    if args.json {
        print_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let what = match &request.drill {
        Some(row) => format!(
            "{}（{}）明细 cases of {row}",
            request.kind.zh(),
            request.kind.code()
        ),
        None => format!("{}（{}）", request.kind.zh(), request.kind.code()),
    };
    println!(
        "{what} 地区 region {} 期间 {} 至 {}，统计日 as of {}（{} 件 cases{}）",
        request.region,
        request.from,
        request.to,
        request.as_of,
        answer.cases,
        if answer.supervisor {
            ""
        } else {
            "，本节点非监管节点：据所持报送即时核验 verified from the attestations held"
        }
    );
    let mut rows = answer.table.into_iter();
    let header: Vec<String> = rows.next().unwrap_or_default();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    println!("{}", table(&header, rows));
    if let Some(path) = &args.csv {
        println!("CSV 已写入 written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.format != "parquet" {
        return Ok(Failure::field(
            "--format",
            format!("{:?}: the one export format is parquet", args.format),
        )
        .report());
    }
    let node = match open_target(&args.data) {
        Ok(node) => node,
        Err(code) => return Ok(code),
    };
    let summary = match node.export(&args.out, &args.region) {
        Ok(summary) => summary,
        Err(err) => return Ok(fail(&err)),
    };
    if args.json {
        print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "已导出 exported to {} (Parquet; docs/analytics.md shows the queries)",
        args.out.display()
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(ExitCode::SUCCESS)
}
