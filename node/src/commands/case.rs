//! `tongban case ...`: the office's case work. Every stage command signs its
//! transition with this node's office key and records the operator; the stage
//! machine refuses an office it does not name, and says which office it names.

use std::process::ExitCode;

use serde::Serialize;
use tongban_case::document::{AwardLine, policy_awards};
use tongban_case::{IntakeForm, Outcome, Payload};
use tongban_domain::ids::{CaseId, Operator, Timestamp};
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::Stage;
use tongban_node::office::Office;

use super::{fail, open_target, reject, reject_field};
use crate::cli::{CaseCommand, DecideArgs, NewCaseArgs, OperatorArg, ReviewArgs, StageArgs};
use crate::error::Failure;
use crate::output::print_json;

pub(super) fn operator(node: &dyn Office, arg: &OperatorArg) -> Result<Operator, ExitCode> {
    let Some(text) = arg.operator.as_deref().or(node.default_operator()) else {
        return Err(reject(
            "--operator NAME is required (or set `operator` in node.toml)",
        ));
    };
    Operator::parse(text).map_err(|e| reject_field("--operator", e))
}

pub(super) fn case_id(text: &str) -> Result<CaseId, ExitCode> {
    CaseId::parse(text.trim()).map_err(|e| Failure::rejected(e.to_string()).at("CASE").report())
}

macro_rules! tryx {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return Ok(code),
        }
    };
}

pub fn run(cmd: CaseCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaseCommand::New(args) => new_case(*args),
        CaseCommand::Attach {
            case,
            file,
            kind,
            media_type,
            operator: op_arg,
            data,
        } => {
            let node = tryx!(open_target(&data));
            let op = tryx!(operator(&*node, &op_arg));
            let id = tryx!(case_id(&case));
            match node.attach(
                &id,
                &file,
                &kind,
                media_type.as_deref(),
                &op,
                Timestamp::now(),
            ) {
                Ok(hash) => {
                    println!(
                        "已附材料 attached {} as {kind}: {}",
                        file.display(),
                        &hash[..16]
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
        CaseCommand::Accept(stage) => step(stage, Stage::Accepted, Payload::default()),
        CaseCommand::Push(stage) => step(stage, Stage::Pushed, Payload::default()),
        CaseCommand::Publicize(stage) => step(stage, Stage::Publicized, Payload::default()),
        CaseCommand::Review(args) => review(args),
        CaseCommand::Decide(args) => decide(args),
        CaseCommand::Notify { stage, method } => {
            let method = method.replace('-', "_");
            step(
                stage,
                Stage::Notified,
                Payload {
                    method: Some(method),
                    ..Payload::default()
                },
            )
        }
        CaseCommand::Award {
            stage,
            action,
            reason,
        } => {
            let to = match action.as_str() {
                "activate" | "resume" => Stage::Active,
                "suspend" => Stage::Suspended,
                "terminate" => Stage::Terminated,
                other => {
                    return Ok(reject(&format!(
                        "--action {other:?} is not one of activate, suspend, resume, terminate"
                    )));
                }
            };
            step(
                stage,
                to,
                Payload {
                    opinion: reason,
                    ..Payload::default()
                },
            )
        }
        CaseCommand::Evaluate {
            case,
            score,
            comment,
            operator: op_arg,
            data,
        } => {
            let node = tryx!(open_target(&data));
            let op = tryx!(operator(&*node, &op_arg));
            let id = tryx!(case_id(&case));
            match node.evaluate(&id, score, &comment, &op, Timestamp::now()) {
                Ok(()) => {
                    println!("已记录评价 evaluation recorded: {score}/5");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
        CaseCommand::Withdraw { stage, reason } => step(
            stage,
            Stage::Withdrawn,
            Payload {
                opinion: reason,
                ..Payload::default()
            },
        ),
        CaseCommand::List {
            stage,
            office,
            overdue,
            due_within,
            json,
            data,
        } => {
            let node = tryx!(open_target(&data));
            let stage = match stage.as_deref().map(|s| Stage::from_code(s).ok_or(s)) {
                None => None,
                Some(Ok(s)) => Some(s),
                Some(Err(s)) => {
                    return Ok(reject(&format!(
                        "--stage {s:?} is not a stage code (draft, accepted, pushed, ...)"
                    )));
                }
            };
            let today = Timestamp::now().china_date();
            let mut rows = match node.list(stage, today) {
                Ok(r) => r,
                Err(e) => return Ok(fail(&e)),
            };
            if let Some(office) = &office {
                rows.retain(|r| r.offices.iter().any(|o| o == office));
            }
            if overdue {
                rows.retain(|r| r.overdue);
            }
            if let Some(n) = due_within {
                let limit = node.calendar().add_working_days(today, n).date;
                rows.retain(|r| r.due.is_some_and(|d| d <= limit));
            }
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("没有符合条件的案件 no cases");
            } else {
                // The 重复 column only when some listed case is flagged.
                let any_duplicate = rows.iter().any(|r| r.duplicate);
                let lines = rows.iter().map(|r| {
                    let due = match r.due {
                        Some(d) => format!(
                            "{d}{}{}",
                            if r.due_provisional { "*" } else { "" },
                            if r.overdue { " 超时" } else { "" }
                        ),
                        None => "—".into(),
                    };
                    let mut line = vec![
                        r.case_id.clone(),
                        format!("{} {}", r.stage_zh, r.stage.code()),
                        due,
                        r.applicant.clone(),
                        r.hukou_township.clone(),
                    ];
                    if any_duplicate {
                        line.push(if r.duplicate { "重复" } else { "" }.to_string());
                    }
                    line
                });
                let mut header = vec![
                    "案件 case",
                    "阶段 stage",
                    "时限 due",
                    "申请人 applicant",
                    "户籍地 hukou",
                ];
                if any_duplicate {
                    header.push("重复 duplicate");
                }
                println!("{}", crate::output::table(&header, lines));
            }
            Ok(ExitCode::SUCCESS)
        }
        CaseCommand::Show { case, json, data } => show(&case, json, &data),
        CaseCommand::Material(cmd) => super::material::run(cmd),
        CaseCommand::Export {
            case,
            out,
            with_materials,
            data,
        } => export(&case, &out, with_materials, &data),
    }
}

/// `case export`: the signed archive of one case. Reads the store, writes only
/// `out` (through a temporary file, mode 0600: the archive holds personal data).
fn export(
    case: &str,
    out: &std::path::Path,
    with_materials: bool,
    data: &crate::cli::DataDirArg,
) -> anyhow::Result<ExitCode> {
    // Through the running daemon when there is one, else on the store.
    let node = tryx!(open_target(data));
    let id = tryx!(case_id(case));
    let spinner = crate::output::spinner("导出中 exporting…", false);
    let archived = node.archive(&id, with_materials, Timestamp::now());
    spinner.finish_and_clear();
    let bytes = match archived {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Failure::from(e).report()),
    };
    // The daemon's bytes are decoded again: a damaged answer is caught here,
    // before anything is written.
    let archive = match tongban_node::archive::Archive::decode(&bytes) {
        Ok(archive) => archive,
        Err(e) => {
            return Ok(
                Failure::failed(format!("the archive received does not decode: {e}")).report(),
            );
        }
    };
    if let Err(e) = tongban_node::files::write_atomic(out, &bytes, Some(0o600)) {
        return Ok(Failure::failed(format!("cannot write {}: {e}", out.display())).report());
    }
    let digest = tongban_node::archive::content_digest(&bytes)
        .map(|d| tongban_ledger::hex(&d))
        .unwrap_or_default();
    println!("已导出 exported {id} → {}", out.display());
    println!(
        "  {} 字节 bytes，BLAKE3 {}，{} 条签名转换 signed transitions，{} 个材料 materials{}",
        bytes.len(),
        digest,
        archive.transitions.len(),
        archive.materials.len(),
        if with_materials {
            ""
        } else {
            "（未包含 not included）"
        }
    );
    println!(
        "  验证 verify: tongban verify --archive {} --authority-key authority.pub",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn new_case(args: NewCaseArgs) -> anyhow::Result<ExitCode> {
    let node = tryx!(open_target(&args.data));
    let op = tryx!(operator(&*node, &args.operator));
    let form = match &args.from_json {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => return Ok(reject(&format!("cannot read {}: {e}", path.display()))),
            };
            match serde_json::from_str::<IntakeForm>(&text) {
                Ok(f) => f,
                Err(e) => return Ok(reject(&format!("{}: {e}", path.display()))),
            }
        }
        None => IntakeForm {
            name: args.name.clone().unwrap_or_default(),
            resident_id: args.id.clone().unwrap_or_default(),
            hukou_township: args.hukou.clone().unwrap_or_default(),
            certificate: args.certificate.clone().unwrap_or_default(),
            dibao: args.dibao,
            low_income: args.low_income,
            long_term_care: args.long_term_care,
            other_allowances: args.allowances.clone(),
            subsidy_kinds: args.kinds.clone(),
            phone: args.phone.clone(),
            address: args.address.clone(),
            agent: args.agent.clone(),
        },
    };
    match node.new_case(&form, &op, Timestamp::now()) {
        Ok(created) => {
            if args.json {
                print_json(&created)?;
            } else {
                println!("已建案 case started: {}（受理中 draft）", created.case_id);
                println!(
                    "一次性告知 materials to provide（按户籍地 {} 政策）:",
                    created.policy_province
                );
                for (code, zh) in &created.notice {
                    println!("  - {zh}（{code}）");
                }
                for dup in &created.possible_duplicates {
                    println!(
                        "注意 warning: 同一申请人已有相同补贴的案件 another case of the same person claims the same subsidy: {dup}"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

fn step(args: StageArgs, to: Stage, payload: Payload) -> anyhow::Result<ExitCode> {
    let node = tryx!(open_target(&args.data));
    step_on(&*node, args, to, payload)
}

fn step_on(
    node: &dyn Office,
    args: StageArgs,
    to: Stage,
    payload: Payload,
) -> anyhow::Result<ExitCode> {
    let op = tryx!(operator(node, &args.operator));
    let id = tryx!(case_id(&args.case));
    match node.act(&id, to, &payload, &op, Timestamp::now()) {
        Ok(()) => {
            println!(
                "{id} → {}（{}），签署 signed by {}，经办 operator {op}",
                to.zh(),
                to.code(),
                node.office()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

fn review(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let node = tryx!(open_target(&args.stage.data));
    let id = tryx!(case_id(&args.stage.case));
    let stage = match node.case(&id).and_then(|d| Ok(d.stage()?)) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    let (to, outcome) = if args.approve {
        // The stage table says where an approval leads; the decision itself is
        // `case decide`'s, with its awards.
        let to = match stage.and_then(tongban_domain::stage::approval_from) {
            Some(Stage::Decided) => {
                return Ok(reject(
                    "the case is at 复审 dpf_reviewed: county civil affairs decides with `tongban case decide`",
                ));
            }
            Some(to) => to,
            None => {
                return Ok(reject(&format!(
                    "the case is at {}; nothing to review",
                    stage.map_or("-", Stage::code)
                )));
            }
        };
        (to, Outcome::Approve)
    } else if args.return_ {
        (Stage::Returned, Outcome::Return)
    } else {
        (Stage::Rejected, Outcome::Reject)
    };
    step_on(
        &*node,
        args.stage,
        to,
        Payload {
            opinion: args.opinion,
            outcome: Some(outcome),
            ..Payload::default()
        },
    )
}

fn decide(args: DecideArgs) -> anyhow::Result<ExitCode> {
    if args.reject {
        return step(
            args.stage,
            Stage::Rejected,
            Payload {
                opinion: args.opinion,
                outcome: Some(Outcome::Reject),
                ..Payload::default()
            },
        );
    }
    let node = tryx!(open_target(&args.stage.data));
    let id = tryx!(case_id(&args.stage.case));
    let doc = match node.case(&id) {
        Ok(d) => d,
        Err(e) => return Ok(fail(&e)),
    };
    let (case, submitted) = match doc.read().map(|c| {
        let at = Timestamp(c.created_at).china_date();
        (c, at)
    }) {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e.into())),
    };
    let (mut awards, first_month) = match policy_awards(&case, submitted) {
        Ok(v) => v,
        Err(e) => return Ok(reject(&e.to_string())),
    };
    if !args.awards.is_empty() {
        for kind in &args.awards {
            if SubsidyKind::from_code(kind).is_none() {
                return Ok(reject(&format!(
                    "--award {kind:?} is not living or nursing"
                )));
            }
        }
        awards.retain(|a: &AwardLine| args.awards.iter().any(|k| k == a.kind.code()));
    }
    let mut opinion = args.opinion.clone();
    for spec in &args.amounts {
        let Some((kind, yuan)) = spec.split_once('=') else {
            return Ok(reject(&format!(
                "--amount {spec:?} must be KIND=YUAN, e.g. living=90"
            )));
        };
        let Ok(yuan) = yuan.trim().parse::<u32>() else {
            return Ok(reject(&format!(
                "--amount {spec:?}: the amount must be whole yuan"
            )));
        };
        let Some(line) = awards.iter_mut().find(|a| a.kind.code() == kind.trim()) else {
            return Ok(reject(&format!(
                "--amount {spec:?}: {kind} is not awarded in this decision"
            )));
        };
        let Some(reason) = args
            .override_reason
            .as_deref()
            .filter(|r| !r.trim().is_empty())
        else {
            return Ok(reject(
                "--override-reason is required when an amount differs from the policy",
            ));
        };
        if line.monthly_yuan != yuan {
            line.monthly_yuan = yuan;
            line.overridden = true;
            opinion = format!("{opinion}（调整金额理由：{reason}）");
        }
    }
    if awards.is_empty() {
        return Ok(reject(
            "no subsidy is awarded: use --reject with the reasons instead",
        ));
    }
    let payload = Payload {
        opinion,
        outcome: Some(Outcome::Approve),
        awards,
        first_paid_month: Some(first_month),
        method: None,
        // Signed with the decision: the verifier and `history` show it, and
        // without it `apply` refuses a kind the domicile policy does not grant.
        override_reason: args
            .override_reason
            .clone()
            .filter(|r| !r.trim().is_empty()),
    };
    step_on(&*node, args.stage, Stage::Decided, payload)
}

/// A decision as shown: outcome, (subsidy kind, monthly amount in yuan), first paid
/// month, and the signed override reason (empty when every kind is eligible).
type DecisionView = (String, Vec<(String, u64)>, String, String);

#[derive(Serialize)]
struct ShowCase {
    case_id: String,
    stage: Option<Stage>,
    due: Option<tongban_case::Due>,
    applicant: String,
    resident_id: String,
    hukou_township: String,
    subsidy_kinds: Vec<String>,
    acceptance_office: String,
    materials: Vec<(String, String, u64)>,
    missing_materials: Vec<(String, String)>,
    reviews: Vec<(String, String, String, String)>,
    /// Facts the registry feeds confirmed or contradicted: (feed, version,
    /// fact, confirmed, detail, office).
    confirmations: Vec<(String, String, String, bool, String, String)>,
    decision: Option<DecisionView>,
    notification: Option<String>,
    evaluation: Option<u64>,
    /// Other cases of the same person claiming a kind this one claims, and
    /// whether this node flagged the case a duplicate.
    duplicates: tongban_node::duplicates::CaseDuplicates,
}

fn show(case: &str, json: bool, data: &crate::cli::DataDirArg) -> anyhow::Result<ExitCode> {
    let node = tryx!(open_target(data));
    let id = tryx!(case_id(case));
    let result = (|| -> Result<ShowCase, tongban_node::local::NodeError> {
        let doc = node.case(&id)?;
        let c = doc.read()?;
        Ok(ShowCase {
            case_id: c.case_id.clone(),
            stage: doc.stage()?,
            due: doc.due(node.calendar())?,
            applicant: tongban_case::schema::mask_name(&c.applicant.name),
            resident_id: tongban_case::schema::mask_id(&c.applicant.resident_id),
            hukou_township: c.applicant.hukou_township.clone(),
            subsidy_kinds: c.subsidy_kinds.clone(),
            acceptance_office: c.acceptance.office.clone(),
            materials: c
                .materials
                .values()
                .map(|m| (m.kind.clone(), m.file_name.clone(), m.size))
                .collect(),
            missing_materials: node.missing_materials(&doc)?,
            reviews: c
                .reviews
                .iter()
                .map(|r| {
                    (
                        r.stage.clone(),
                        r.office.clone(),
                        r.outcome.clone(),
                        r.opinion.clone(),
                    )
                })
                .collect(),
            confirmations: c
                .confirmations
                .iter()
                .map(|f| {
                    (
                        f.feed.clone(),
                        f.feed_version.clone(),
                        f.fact.clone(),
                        f.confirmed,
                        f.detail.clone(),
                        f.office.clone(),
                    )
                })
                .collect(),
            decision: c.decision.as_ref().map(|d| {
                (
                    d.outcome.clone(),
                    d.awards
                        .iter()
                        .map(|a| (a.kind.clone(), a.monthly_yuan))
                        .collect(),
                    d.first_paid_month.clone(),
                    d.override_reason.clone(),
                )
            }),
            notification: c.notification.as_ref().map(|n| n.method.clone()),
            evaluation: c.evaluation.as_ref().map(|e| e.score),
            duplicates: node.duplicates(&id)?,
        })
    })();
    let view = match result {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e)),
    };
    if json {
        print_json(&view)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("案件 case {}", view.case_id);
    println!(
        "  阶段 stage: {}",
        view.stage
            .map_or("-".into(), |s| format!("{} {}", s.zh(), s.code()))
    );
    if let Some(due) = &view.due {
        println!(
            "  时限 due: {} 前完成 {}（{} 个工作日）{}",
            due.date,
            due.next.zh(),
            due.working_days,
            if due.provisional {
                "，暂定 provisional"
            } else {
                ""
            }
        );
    }
    println!(
        "  申请人 applicant: {}（{}），户籍 {}",
        view.applicant, view.resident_id, view.hukou_township
    );
    println!(
        "  补贴 kinds: {}，受理地 acceptance: {}",
        view.subsidy_kinds.join(", "),
        view.acceptance_office
    );
    if view.duplicates.flagged || view.duplicates.duplicate {
        println!(
            "  重复 duplicate: 同一申请人已有相同补贴的在先申请或正在享受，本案不能审定发放 \
             (the person holds, or applied first for, the same subsidy in another case)"
        );
    }
    if !view.duplicates.conflicts.is_empty() {
        println!("  同一申请人的其他案件 other cases of the same person:");
        for conflict in &view.duplicates.conflicts {
            let kinds: Vec<&str> = conflict.kinds.iter().map(|k| k.code()).collect();
            println!(
                "    {}  {}  {} {}  受理地 acceptance {}  {}（{}）",
                conflict.other,
                kinds.join(","),
                conflict.other_stage.zh(),
                conflict.other_stage.code(),
                conflict.other_acceptance,
                conflict.relation.zh(),
                conflict.relation.code()
            );
        }
    }
    for (kind, name, size) in &view.materials {
        println!("  材料 material: {kind} {name} ({size} bytes)");
    }
    for (code, zh) in &view.missing_materials {
        println!("  缺少材料 missing: {zh}（{code}）");
    }
    for (feed, version, fact, confirmed, detail, office) in &view.confirmations {
        println!(
            "  数据比对 registry: {} {feed} v{version} {fact}: {detail}（{office}）",
            if *confirmed {
                "相符 confirmed"
            } else {
                "不一致 CONTRADICTED"
            }
        );
    }
    for (stage, office, outcome, opinion) in &view.reviews {
        println!("  意见 review: {stage} {office} {outcome}: {opinion}");
    }
    if let Some((outcome, awards, first, override_reason)) = &view.decision {
        let list: Vec<String> = awards
            .iter()
            .map(|(k, y)| format!("{k} {y} 元/月"))
            .collect();
        println!(
            "  审定 decision: {outcome} {}，自 {first} 起计发",
            list.join("、")
        );
        if !override_reason.is_empty() {
            println!("  超出政策审定理由（已签名）signed override reason: {override_reason}");
        }
    }
    if let Some(method) = &view.notification {
        println!("  告知方式 notified by: {method}");
    }
    if let Some(score) = view.evaluation {
        println!("  服务评价 evaluation: {score}/5");
    }
    Ok(ExitCode::SUCCESS)
}
