//! `tongban verify CASE|--all`, `tongban verify --archive FILE --authority-key KEY`
//! and `tongban history CASE`.

use std::path::Path;
use std::process::ExitCode;

use tongban_domain::ids::{CaseId, Timestamp};
use tongban_ledger::verify::{Report, SignatureStatus};
use tongban_node::archive::{
    ArchiveReport, ArchiveStage, StageStatus, verify_archive as verify_archive_bytes,
};
use tongban_node::authority::read_public_key;
use tongban_node::local::load_calendar;
use tongban_node::office::Office;

use super::{fail, open_target, reject, reject_field};
use crate::cli::{DataDirArg, VerifyArgs};
use crate::output::print_json;

fn verify_one(
    node: &dyn Office,
    id: &CaseId,
    now: Timestamp,
) -> Result<Report, tongban_node::local::NodeError> {
    let mut doc = node.case(id)?;
    Ok(doc.verify(node.directory()?, node.calendar(), now)?)
}

/// One case's verdict and every violation, indented by `indent`: the block
/// `verify CASE`, `verify --all` and `verify --archive` print.
fn print_case_report(report: &Report, indent: &str) {
    println!(
        "{indent}{} {}：{} 条签名转换",
        if report.is_ok() {
            "✔ 验证通过"
        } else {
            "✘ 验证失败"
        },
        report.case,
        report.n_entries
    );
    for v in &report.violations {
        println!("{indent}    {v}");
    }
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.archive {
        return verify_archive(file, args.authority_key.as_deref(), args.json);
    }
    let node = match open_target(&args.data) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let now = Timestamp::now();
    let ids: Vec<CaseId> = if args.all {
        match node.case_ids() {
            Ok(ids) => ids,
            Err(e) => return Ok(fail(&e)),
        }
    } else {
        match CaseId::parse(args.case.as_deref().unwrap_or_default()) {
            Ok(id) => vec![id],
            Err(e) => return Ok(reject(&e.to_string())),
        }
    };
    // A bar on a terminal only: never into piped or --json output.
    let progress = args
        .all
        .then(|| crate::output::bar(ids.len() as u64, "验证 verifying", args.json));
    let progress_inc = |k: u64| {
        if let Some(bar) = &progress {
            bar.inc(k);
        }
    };
    // One case: its report whatever it says. `--all`: on all cores where the
    // store is open here, and only the reports that found something.
    let reports = if args.all {
        match node.verify_all(&ids, now, &progress_inc) {
            Ok(found) => found.failed,
            Err(e) => return Ok(fail(&e)),
        }
    } else {
        let mut reports = Vec::new();
        for id in &ids {
            match verify_one(&*node, id, now) {
                Ok(r) => reports.push(r),
                Err(e) => return Ok(fail(&e)),
            }
        }
        reports
    };
    let failed = reports.iter().filter(|r| !r.is_ok()).count();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // `--all` also reads every stored material back and rehashes it: a
    // signature check alone would pass over a scan that rotted on disk.
    let materials = if args.all {
        match node.rehash_materials(&ids) {
            Ok(check) => Some(check),
            Err(e) => return Ok(fail(&e)),
        }
    } else {
        None
    };
    let rotten = materials.as_ref().map_or(0, |m| m.rotten.len());
    if args.json {
        print_json(&serde_json::json!({
            "ok": failed == 0 && rotten == 0,
            "cases": ids.len(),
            "failed": failed,
            "reports": reports,
            "materials": materials,
        }))?;
    } else {
        for report in &reports {
            if report.is_ok() && args.all {
                continue;
            }
            print_case_report(report, "");
        }
        println!(
            "共 {} 件，失败 {} 件 ({} cases, {} failed)",
            ids.len(),
            failed,
            ids.len(),
            failed
        );
        if let Some(check) = &materials {
            for bad in &check.rotten {
                println!(
                    "✘ 材料损坏 material damaged: case {} material {}: {}",
                    bad.case_id, bad.hash, bad.reason
                );
            }
            println!(
                "材料 materials: 重新校验 rehashed {}，损坏 damaged {}",
                check.checked,
                check.rotten.len()
            );
        }
    }
    Ok(if failed == 0 && rotten == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `verify --archive FILE --authority-key KEYFILE`: a case archive on a machine
/// with nothing else. Exit 1 when any stage fails, with each failure's reason.
fn verify_archive(
    file: &Path,
    authority_key: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(key_file) = authority_key else {
        return Ok(reject("--archive needs --authority-key KEYFILE"));
    };
    let authority = match read_public_key(key_file) {
        Ok(key) => key,
        Err(e) => return Ok(reject_field("--authority-key", e)),
    };
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(reject(&format!("{}: {e}", file.display()))),
    };
    let calendar = match load_calendar(None) {
        Ok(calendar) => calendar,
        Err(e) => anyhow::bail!(e),
    };
    let report = verify_archive_bytes(&bytes, &authority, &calendar, Timestamp::now());
    if json {
        print_json(&report)?;
    } else {
        print_archive_report(file, &report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_archive_report(file: &Path, report: &ArchiveReport) {
    println!("案件档案 case archive: {}", file.display());
    if let Some(m) = &report.manifest {
        println!(
            "  案件 case {}，{} 导出 exported by {}（{}），材料 materials: {}",
            m.case,
            m.exported_at.china_display(),
            m.exported_by,
            m.tool,
            if m.with_materials {
                "包含 included"
            } else {
                "未包含 not included"
            }
        );
    }
    for stage in &report.stages {
        let mark = match stage.status {
            StageStatus::Passed => "✔",
            StageStatus::Failed => "✘",
            StageStatus::Skipped => "—",
        };
        let status = match stage.status {
            StageStatus::Passed => "通过 passed",
            StageStatus::Failed => "失败 failed",
            StageStatus::Skipped => "未检查 skipped",
        };
        println!(
            "{mark} {} {}：{status}{}{}",
            stage.stage_zh,
            stage.stage.code(),
            if stage.detail.is_empty() { "" } else { " — " },
            stage.detail
        );
        if stage.stage == ArchiveStage::History
            && let Some(history) = &report.history
        {
            print_case_report(history, "    ");
            continue;
        }
        for failure in report.failures.iter().filter(|f| f.stage == stage.stage) {
            println!("    error[{}]: {}", failure.code, failure.reason);
        }
    }
    if report.ok {
        println!("结论 result: ✔ 档案验证通过 archive verified");
    } else {
        println!(
            "结论 result: ✘ 档案验证失败 archive refused（{} 个问题 problems）",
            report.failures.len()
        );
    }
}

pub fn history(case: &str, json: bool, data: &DataDirArg) -> anyhow::Result<ExitCode> {
    let node = match open_target(data) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let id = match CaseId::parse(case.trim()) {
        Ok(id) => id,
        Err(e) => return Ok(reject(&e.to_string())),
    };
    let report = match verify_one(&*node, &id, Timestamp::now()) {
        Ok(r) => r,
        Err(e) => return Ok(fail(&e)),
    };
    if json {
        print_json(&report)?;
    } else {
        print_timeline(&report);
        // An award beyond the domicile policy stands only with the reason
        // signed in the decision's payload: show it beside the history.
        if let Ok(case) = node.case(&id).and_then(|doc| Ok(doc.read()?))
            && let Some(decision) = case.decision
            && !decision.override_reason.is_empty()
        {
            println!(
                "超出政策审定理由（已签名）signed override reason: {}",
                decision.override_reason
            );
        }
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
        let rows = branch.entries.iter().map(|e| {
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
            vec![
                e.at_china.clone(),
                format!("{} {}", e.to.zh(), e.to.code()),
                e.office_name
                    .clone()
                    .unwrap_or_else(|| e.office.to_string()),
                e.operator.as_str().to_string(),
                deadline,
                signature.to_string(),
            ]
        });
        println!(
            "{}",
            crate::output::table(
                &[
                    "时间 time",
                    "阶段 stage",
                    "办公室 office",
                    "经办 operator",
                    "时限 deadline",
                    "签名 signature",
                ],
                rows,
            )
        );
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
