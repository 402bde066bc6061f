//! `tongban verify CASE|--all` and `tongban history CASE`.

use std::process::ExitCode;

use tongban_domain::ids::{CaseId, Timestamp};
use tongban_ledger::verify::{Report, SignatureStatus};
use tongban_node::local::LocalNode;

use super::{fail, open_node, reject};
use crate::cli::{DataDirArg, VerifyArgs};
use crate::output::print_json;

fn verify_one(
    node: &LocalNode,
    id: &CaseId,
    now: Timestamp,
) -> Result<Report, tongban_node::local::NodeError> {
    let mut doc = node.case(id)?;
    Ok(doc.verify(node.directory()?, node.calendar(), now)?)
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let node = match open_node(&args.data) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let now = Timestamp::now();
    let ids: Vec<CaseId> = if args.all {
        let mut ids = Vec::new();
        let mut cursor = 0;
        loop {
            let batch = match node.store().changes_since(cursor, 1000) {
                Ok(b) => b,
                Err(e) => return Ok(fail(&e.into())),
            };
            let Some(last) = batch.last() else { break };
            cursor = last.seq;
            ids.extend(batch.into_iter().map(|c| c.case));
        }
        ids.sort();
        ids.dedup();
        ids
    } else {
        match CaseId::parse(args.case.as_deref().unwrap_or_default()) {
            Ok(id) => vec![id],
            Err(e) => return Ok(reject(&e.to_string())),
        }
    };
    let progress = if args.all && !args.json && ids.len() > 50 {
        let bar = indicatif::ProgressBar::new(ids.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("验证 verifying {bar:40} {pos}/{len} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut reports = Vec::new();
    let mut failed = 0usize;
    for id in &ids {
        let report = match verify_one(&node, id, now) {
            Ok(r) => r,
            Err(e) => return Ok(fail(&e)),
        };
        if !report.is_ok() {
            failed += 1;
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        reports.push(report);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.json {
        print_json(
            &serde_json::json!({ "ok": failed == 0, "cases": ids.len(), "failed": failed, "reports": reports }),
        )?;
    } else {
        for report in &reports {
            if report.is_ok() && args.all {
                continue;
            }
            println!(
                "{} {}：{} 条签名转换",
                if report.is_ok() {
                    "✔ 验证通过"
                } else {
                    "✘ 验证失败"
                },
                report.case,
                report.n_entries
            );
            for v in &report.violations {
                println!("    {v}");
            }
        }
        println!(
            "共 {} 件，失败 {} 件 ({} cases, {} failed)",
            ids.len(),
            failed,
            ids.len(),
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn history(case: &str, json: bool, data: &DataDirArg) -> anyhow::Result<ExitCode> {
    let node = match open_node(data) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let id = match CaseId::parse(case.trim()) {
        Ok(id) => id,
        Err(e) => return Ok(reject(&e.to_string())),
    };
    let report = match verify_one(&node, &id, Timestamp::now()) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e)),
    };
    if json {
        print_json(&report)?;
    } else {
        print_timeline(&report);
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The signed timeline, one line per transition, with deadline and signature status.
pub fn print_timeline(report: &Report) {
    for (n, branch) in report.timeline().iter().enumerate() {
        if report.timeline().len() > 1 {
            println!(
                "分支 branch {}{}",
                n + 1,
                if branch.connected {
                    ""
                } else {
                    "（断链 detached）"
                }
            );
        }
        println!(
            "{:<17} {:<24} {:<28} {:<14} {:<30} 签名 signature",
            "时间 time", "阶段 stage", "办公室 office", "经办 operator", "时限 deadline"
        );
        for e in &branch.entries {
            let deadline = match &e.deadline {
                Some(d) => format!(
                    "{}WD→{}{} {}",
                    d.working_days,
                    d.date,
                    if d.provisional { "*" } else { "" },
                    if d.met { "按时 met" } else { "超时 missed" }
                ),
                None => "—".into(),
            };
            let signature = match e.signature {
                SignatureStatus::Valid => "有效 valid",
                SignatureStatus::UnknownKey => "未知密钥 unknown key",
                SignatureStatus::KeyNotValidAtTime => "证书无效 not valid then",
                SignatureStatus::Revoked => "已吊销 revoked",
            };
            println!(
                "{:<17} {:<24} {:<28} {:<14} {:<30} {}",
                e.at_china,
                format!("{} {}", e.to.zh(), e.to.code()),
                e.office_name
                    .clone()
                    .unwrap_or_else(|| e.office.to_string()),
                e.operator.as_str(),
                deadline,
                signature
            );
        }
        if let Some(next) = &branch.next_deadline {
            println!(
                "  下一步时限 next step due {}{}{}",
                next.date,
                if next.provisional { "（暂定）" } else { "" },
                if next.overdue {
                    " 已超时 OVERDUE"
                } else {
                    ""
                }
            );
        }
    }
    for v in &report.violations {
        println!("  {v}");
    }
}
