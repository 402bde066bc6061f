//! `tongban demo`: a Hebei resident living in Guangzhou applies at a Tianhe street
//! office; the Chang'an (Shijiazhuang) offices review, decide and pay.
//!
//! At this stage of the product the demo runs the real domain rules, keys, signed
//! directory, Automerge case documents and verifier, with each office holding its
//! own copy of the case and copies meeting along the hub route by Automerge merge.
//! The business clock is simulated (it starts the Monday before the 2026 National
//! Day holiday, so deadlines cross the holiday and its adjusted weekend); the QUIC
//! nodes of the later transport issue replace the in-process merge.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{NaiveDate, NaiveTime, Timelike};
use tongban_case::document::{AwardLine, policy_awards};
use tongban_case::{CaseDocument, IntakeForm, Outcome, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::{DivisionCode, Divisions};
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::directory::{Directory, DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::OfficeKey;

use crate::cli::DemoArgs;

struct Office {
    id: &'static str,
    name: String,
    role: Role,
    division: &'static str,
    key: OfficeKey,
    doc: Option<CaseDocument>,
    online: bool,
}

impl Office {
    fn facts(&self) -> OfficeFacts {
        OfficeFacts {
            office: self.id.to_string(),
            role: self.role,
            division: self.division.to_string(),
        }
    }
}

/// The route of the demo case, in hub order: each adjacent pair is a link.
const ROUTE: [&str; 7] = [
    "440106001",
    "hub-440106",
    "hub-44",
    "hub-cn",
    "hub-13",
    "hub-130102",
    "130102001",
];
/// County offices hang off the Chang'an county hub.
const COUNTY_LINKS: [(&str, &str); 2] = [("hub-130102", "130102-dpf"), ("hub-130102", "130102-ca")];

/// A Beijing wall-clock time on the simulated business clock.
fn at(date: NaiveDate, hh: u32, mm: u32) -> Timestamp {
    let start = Timestamp::start_of_china_date(date);
    let time = NaiveTime::from_hms_opt(hh, mm, 0).unwrap_or(NaiveTime::MIN);
    Timestamp(start.0 + i64::from(time.num_seconds_from_midnight()) * 1000)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let calendar = Calendar::shipped()?;
    let divisions = Divisions::national()?;
    let name_of = |code: &str| {
        DivisionCode::parse(code)
            .ok()
            .and_then(|c| divisions.full_name(&c))
            .unwrap_or_default()
    };

    println!(
        "通办 Tongban 演示 demo — 跨省通办：河北户籍、居住广州的申请人在天河区五山街道申请两项补贴"
    );
    println!(
        "（本阶段为单进程演示：各办公节点各持一份案件文档，沿枢纽路由以 Automerge 合并同步；业务时钟为模拟时钟）\n"
    );

    // The directory authority certifies every office of the route.
    let authority = DirectoryAuthority::new(OfficeKey::generate()?);
    let specs: [(&'static str, String, Role, &'static str); 10] = [
        (
            "440106001",
            format!("{}办事处", name_of("440106001")),
            Role::Township,
            "440106001",
        ),
        ("hub-440106", "天河区枢纽".into(), Role::Hub, "440106"),
        ("hub-44", "广东省枢纽".into(), Role::Hub, "44"),
        ("hub-cn", "全国枢纽".into(), Role::Hub, "00"),
        ("hub-13", "河北省枢纽".into(), Role::Hub, "13"),
        ("hub-130102", "长安区枢纽".into(), Role::Hub, "130102"),
        (
            "130102001",
            format!("{}办事处", name_of("130102001")),
            Role::Township,
            "130102001",
        ),
        (
            "130102-dpf",
            "石家庄市长安区残疾人联合会".into(),
            Role::CountyDpf,
            "130102",
        ),
        (
            "130102-ca",
            "石家庄市长安区民政局".into(),
            Role::CountyCivilAffairs,
            "130102",
        ),
        (
            "13-supervisor",
            "河北省民政厅".into(),
            Role::Supervisor,
            "13",
        ),
    ];
    let valid_from =
        Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?);
    let valid_to =
        Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2031, 1, 1).context("date")?);
    let mut offices: BTreeMap<&'static str, Office> = BTreeMap::new();
    let mut certificates = Vec::new();
    for (serial, (id, name, role, division)) in specs.into_iter().enumerate() {
        let key = OfficeKey::generate()?;
        certificates.push(authority.issue(OfficeCertificate {
            office: OfficeId::parse(id)?,
            name: name.clone(),
            role,
            division: division.to_string(),
            public_key: key.public(),
            not_before: valid_from,
            not_after: valid_to,
            serial: serial as u64 + 1,
        })?);
        offices.insert(
            id,
            Office {
                id,
                name,
                role,
                division,
                key,
                doc: None,
                online: true,
            },
        );
    }
    let signed_directory = authority.publish(1, valid_from, certificates, Vec::new());
    let directory = Directory::verify(&signed_directory.encode(), &authority.public())?;
    println!(
        "目录 directory: 版本 1，{} 个办公节点证书，签发机构公钥指纹 {}",
        offices.len(),
        authority.public().fingerprint()
    );

    // Intake at the Tianhe street office: a Hebei resident (hukou 130102001).
    let first17 = "13010219680512031";
    let resident_id = format!(
        "{first17}{}",
        resident_id_check_char(first17).context("check")?
    );
    let form = IntakeForm {
        name: "张建国".into(),
        resident_id: resident_id.clone(),
        hukou_township: "130102001".into(),
        certificate: format!("{resident_id}44"),
        dibao: true,
        long_term_care: true,
        subsidy_kinds: vec!["living".into(), "nursing".into()],
        phone: "13800000000".into(),
        address: "广州市天河区五山路".into(),
        ..IntakeForm::default()
    };
    let day0 = NaiveDate::from_ymd_opt(2026, 9, 28).context("date")?;
    let intake = form.validate(day0).map_err(|errs| {
        anyhow::anyhow!(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let case_id = CaseId::new("440106001", day0, random4()?)?;
    let clerk = Operator::parse("天河五山-窗口01")?;
    let (mut doc, _) = {
        let office = &offices["440106001"];
        CaseDocument::create(
            &case_id,
            &intake,
            &SigningOffice {
                key: &office.key,
                facts: office.facts(),
            },
            &clerk,
            at(day0, 9, 10),
        )?
    };
    println!(
        "\n案件 case {case_id} 申请人 {}（身份证 {}），户籍 {}",
        tongban_case::schema::mask_name(&intake.name),
        intake.resident_id,
        name_of("130102001")
    );
    let notice = doc.read()?.materials_notice.context("notice")?;
    println!(
        "一次性告知 materials notice（{} 政策）：{}",
        notice.policy_province,
        notice
            .items
            .iter()
            .map(|i| i.zh.as_str())
            .collect::<Vec<_>>()
            .join("、")
    );
    doc.update(at(day0, 9, 40), "materials", |case| {
        for item in &notice.items {
            let content = format!("scan of {} for {case_id}", item.code);
            let hash = blake3::hash(content.as_bytes()).to_hex().to_string();
            case.materials.insert(
                tongban_case::schema::material_key(&item.code, &hash),
                tongban_case::schema::Material {
                    kind: item.code.clone(),
                    hash: hash.clone(),
                    size: content.len() as u64,
                    media_type: "image/jpeg".into(),
                    file_name: format!("{}.jpg", item.code),
                    added_at: at(day0, 9, 40).millis(),
                    added_by: "440106001".into(),
                },
            );
        }
        Ok(())
    })?;
    sign(
        &mut doc,
        &offices["440106001"],
        &clerk,
        Stage::Accepted,
        at(day0, 10, 0),
        Payload::default(),
    )?;
    offices.get_mut("440106001").context("office")?.doc = Some(doc);

    // The domicile office's link is down for the first days.
    offices.get_mut("130102001").context("office")?.online = false;
    println!(
        "\n链路中断 link down: {} 离线（推送到达县级枢纽后等待）",
        offices["130102001"].name
    );
    act(
        &mut offices,
        "440106001",
        &clerk,
        Stage::Pushed,
        at(day0, 10, 5),
        Payload::default(),
    )?;
    sync(&mut offices, &calendar, at(day0, 10, 6))?;
    let waiting_at_hub = offices["hub-130102"].doc.is_some();
    let at_domicile = offices["130102001"].doc.is_some();
    println!(
        "推送后 after push: 长安区枢纽持有案件 {waiting_at_hub}，户籍地办事处持有案件 {at_domicile}"
    );
    if !waiting_at_hub || at_domicile {
        bail!("the pushed case should wait at the county hub while the domicile office is offline");
    }

    // Two days later the link comes back; the domicile node signs `received`.
    let day2 = NaiveDate::from_ymd_opt(2026, 9, 30).context("date")?;
    offices.get_mut("130102001").context("office")?.online = true;
    println!("链路恢复 link restored {day2} 08:30，自动签收 received");
    sync(&mut offices, &calendar, at(day2, 8, 30))?;

    let reviewer = Operator::parse("长安建北-初审02")?;
    act(
        &mut offices,
        "130102001",
        &reviewer,
        Stage::InitialReviewed,
        at(day2, 15, 0),
        review("经初审，申请人户籍、低保及残疾情况属实，同意上报。"),
    )?;
    sync(&mut offices, &calendar, at(day2, 15, 1))?;
    // The county DPF works after the holiday, on its deadline day.
    let dpf_day = calendar.deadline_from_receipt(day2, 2).date;
    act(
        &mut offices,
        "130102-dpf",
        &Operator::parse("长安残联-复审01")?,
        Stage::DpfReviewed,
        at(dpf_day, 10, 0),
        review("经残疾人证信息管理系统比对，证件有效，四级肢体残疾，同意。"),
    )?;
    sync(&mut offices, &calendar, at(dpf_day, 10, 1))?;
    let decide_day = calendar.add_working_days(dpf_day, 3).date;
    let (awards, first_month) = {
        let case = offices["130102-ca"]
            .doc
            .as_ref()
            .context("case at civil affairs")?
            .read()?;
        let (mut awards, first) = policy_awards(&case, day0)?;
        // Level 4 physical disability is outside the nursing subsidy: award living only.
        awards.retain(|a: &AwardLine| a.kind == tongban_domain::policy::SubsidyKind::Living);
        (awards, first)
    };
    let decision = Payload {
        opinion: "审定通过：发放困难残疾人生活补贴；护理补贴不符合条件（四级肢体残疾）。".into(),
        outcome: Some(Outcome::Approve),
        awards,
        first_paid_month: Some(first_month),
        method: None,
    };
    act(
        &mut offices,
        "130102-ca",
        &Operator::parse("长安民政-审定03")?,
        Stage::Decided,
        at(decide_day, 11, 0),
        decision,
    )?;
    sync(&mut offices, &calendar, at(decide_day, 11, 1))?;
    let notify_day = calendar.add_working_days(decide_day, 1).date;
    act(
        &mut offices,
        "440106001",
        &clerk,
        Stage::Notified,
        at(notify_day, 9, 30),
        Payload {
            method: Some("phone".into()),
            opinion: "电话告知审定结果及发放标准".into(),
            ..Payload::default()
        },
    )?;
    sync(&mut offices, &calendar, at(notify_day, 9, 31))?;
    act(
        &mut offices,
        "130102-ca",
        &Operator::parse("长安民政-发放01")?,
        Stage::Active,
        at(notify_day, 14, 0),
        Payload::default(),
    )?;
    sync(&mut offices, &calendar, at(notify_day, 14, 1))?;

    // Timeline and verification on every node that holds the case.
    let now = Timestamp::now();
    let acceptance_doc = offices
        .get_mut("440106001")
        .and_then(|o| o.doc.as_mut())
        .context("acceptance copy")?;
    let report = acceptance_doc.verify(&directory, &calendar, now)?;
    println!("\n时间线 timeline（{case_id}）");
    println!(
        "{:<18} {:<26} {:<30} 时限 deadline",
        "时间 time", "阶段 stage", "签署办公室 office"
    );
    for entry in report.timeline().iter().flat_map(|b| b.entries.iter()) {
        let deadline = match &entry.deadline {
            Some(d) => format!(
                "{} 个工作日，至 {}{} {}",
                d.working_days,
                d.date,
                if d.provisional { "（暂定）" } else { "" },
                if d.met {
                    "✔ 按时 met"
                } else {
                    "✘ 超时 missed"
                }
            ),
            None => "—".into(),
        };
        let stage = format!("{} {}", entry.to.zh(), entry.to.code());
        println!(
            "{:<18} {:<26} {:<30} {}",
            entry.at_china,
            stage,
            entry
                .office_name
                .clone()
                .unwrap_or_else(|| entry.office.to_string()),
            deadline
        );
    }
    let mut all_ok = report.is_ok();
    println!("\n逐节点验证 verification on every node:");
    for office in offices.values_mut() {
        let Some(doc) = office.doc.as_mut() else {
            println!(
                "  {:<14} {}：不在路由上，未持有案件 (off route)",
                office.id, office.name
            );
            continue;
        };
        let report = doc.verify(&directory, &calendar, now)?;
        let heads = doc.heads();
        println!(
            "  {:<14} {}：{} 条签名转换，{}，文档头 {}",
            office.id,
            office.name,
            report.n_entries,
            if report.is_ok() {
                "验证通过 ok"
            } else {
                "验证失败 FAILED"
            },
            tongban_ledger::keys::PublicKey(heads.first().copied().unwrap_or([0; 32]))
                .fingerprint()
        );
        for violation in &report.violations {
            println!("      {violation}");
        }
        all_ok &= report.is_ok();
    }
    if let Some(dir) = args.keep {
        keep(&dir, &authority, &mut offices)?;
    }
    println!(
        "\n用时 elapsed {:.2?}；结果 result: {}",
        started.elapsed(),
        if all_ok {
            "全部验证通过 all verified"
        } else {
            "存在验证失败 verification failed"
        }
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn random4() -> anyhow::Result<[u8; 4]> {
    let key = OfficeKey::generate()?;
    let bytes = key.public().0;
    Ok([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn review(opinion: &str) -> Payload {
    Payload {
        opinion: opinion.into(),
        outcome: Some(Outcome::Approve),
        ..Payload::default()
    }
}

fn sign(
    doc: &mut CaseDocument,
    office: &Office,
    operator: &Operator,
    to: Stage,
    when: Timestamp,
    payload: Payload,
) -> anyhow::Result<()> {
    doc.apply(
        to,
        &SigningOffice {
            key: &office.key,
            facts: office.facts(),
        },
        operator,
        when,
        &payload,
    )
    .with_context(|| format!("{} cannot sign {}", office.id, to.code()))?;
    Ok(())
}

fn act(
    offices: &mut BTreeMap<&'static str, Office>,
    id: &str,
    operator: &Operator,
    to: Stage,
    when: Timestamp,
    payload: Payload,
) -> anyhow::Result<()> {
    let office = offices.get_mut(id).context("office")?;
    let mut doc = office
        .doc
        .take()
        .with_context(|| format!("{id} does not hold the case"))?;
    let result = sign(&mut doc, office, operator, to, when, payload);
    office.doc = Some(doc);
    result
}

/// Merges case copies across every link whose two ends are online until nothing
/// changes, signing the automatic receipts where a copy arrives.
fn sync(
    offices: &mut BTreeMap<&'static str, Office>,
    _calendar: &Calendar,
    when: Timestamp,
) -> anyhow::Result<()> {
    let links: Vec<(&str, &str)> = ROUTE
        .windows(2)
        .map(|w| (w[0], w[1]))
        .chain(COUNTY_LINKS)
        .collect();
    loop {
        let mut changed = false;
        for (a, b) in &links {
            if !(offices[a].online && offices[b].online) {
                continue;
            }
            let mut doc_a = offices.get_mut(a).and_then(|o| o.doc.take());
            let mut doc_b = offices.get_mut(b).and_then(|o| o.doc.take());
            match (&mut doc_a, &mut doc_b) {
                (Some(x), Some(y)) => {
                    let before = (x.heads(), y.heads());
                    x.automerge_mut().merge(y.automerge_mut())?;
                    y.automerge_mut().merge(x.automerge_mut())?;
                    changed |= before != (x.heads(), y.heads());
                }
                (Some(x), None) => {
                    doc_b = Some(CaseDocument::load(&x.save())?);
                    changed = true;
                }
                (None, Some(y)) => {
                    doc_a = Some(CaseDocument::load(&y.save())?);
                    changed = true;
                }
                (None, None) => {}
            }
            offices.get_mut(a).context("office")?.doc = doc_a;
            offices.get_mut(b).context("office")?.doc = doc_b;
        }
        // Automatic receipts: the domicile township signs `received`, the acceptance
        // office signs `result_received`, when the case reaches them in those stages.
        for (id, from, to, operator) in [
            ("130102001", Stage::Pushed, Stage::Received, "系统自动签收"),
            (
                "440106001",
                Stage::Decided,
                Stage::ResultReceived,
                "系统自动签收",
            ),
            (
                "440106001",
                Stage::Rejected,
                Stage::ResultReceived,
                "系统自动签收",
            ),
        ] {
            let office = offices.get_mut(id).context("office")?;
            if !office.online {
                continue;
            }
            let stage = office
                .doc
                .as_ref()
                .map(|d| d.stage())
                .transpose()?
                .flatten();
            if stage == Some(from) {
                act(
                    offices,
                    id,
                    &Operator::parse(operator)?,
                    to,
                    when,
                    Payload::default(),
                )?;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

fn keep(
    dir: &Path,
    authority: &DirectoryAuthority,
    offices: &mut BTreeMap<&'static str, Office>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("authority.pub"),
        format!("{}\n", authority.public()),
    )?;
    for office in offices.values_mut() {
        let office_dir = dir.join(office.id);
        std::fs::create_dir_all(&office_dir)?;
        if let Some(doc) = office.doc.as_mut() {
            std::fs::write(office_dir.join("case.automerge"), doc.save())?;
        }
    }
    println!("保留目录 kept: {}", dir.display());
    Ok(())
}
