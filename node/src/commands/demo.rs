//! `tongban demo`: a Hebei resident living in Guangzhou applies at a Tianhe street
//! office; the Chang'an (Shijiazhuang) offices review, decide and pay.
//!
//! The demo starts nine real office nodes in this process — each with its own data
//! directory, redb store, office key and QUIC endpoint on 127.0.0.1 — in the hub
//! tree of docs/design.md §5: the national hub, the Guangdong and Hebei province hubs,
//! the Tianhe and Chang'an county hubs, the Tianhe street office (acceptance), the
//! Chang'an street office (domicile), and the Chang'an DPF and civil affairs
//! bureau — and a tenth, Hebei's supervisor under its province hub, which
//! holds no case: it receives what the offices attest and checks every
//! signature and deadline itself. The domicile office reaches its county hub through a UDP relay that
//! the demo partitions for part of the run. Every step is signed at the office the
//! stage machine names and travels by the sync protocol; the receipts are signed
//! by the receiving nodes themselves.
//!
//! The business clock is simulated (it starts the Monday before the 2026 National
//! Day holiday, so deadlines cross the holiday and its adjusted weekend): every
//! node signs with the demo's clock, while QUIC runs in real time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{NaiveDate, NaiveTime, Timelike};
use tongban_case::document::{AwardLine, policy_awards};
use tongban_case::{IntakeForm, Outcome, Payload};
use tongban_domain::calendar::Calendar;
use tongban_domain::dataset::DatasetKind;
use tongban_domain::division::{DivisionCode, Divisions};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::directory::Directory;
use tongban_node::daemon::{Clock, Daemon, DaemonHandle, NodeConfig, StartOptions};
use tongban_node::local::LocalNode;
use tongban_node::provision::{OfficeSpec, provision};
use tongban_transport::relay::FaultRelay;

use crate::cli::DemoArgs;

/// One demo office: id, name (None: from the division table), role, division,
/// and the hub it connects to.
type DemoOffice = (
    &'static str,
    Option<&'static str>,
    Role,
    &'static str,
    Option<&'static str>,
);

/// The offices, from the root of the hub tree down.
const OFFICES: [DemoOffice; 10] = [
    ("hub-cn", Some("全国枢纽"), Role::Hub, "00", None),
    (
        "hub-44",
        Some("广东省枢纽"),
        Role::Hub,
        "44",
        Some("hub-cn"),
    ),
    (
        "hub-13",
        Some("河北省枢纽"),
        Role::Hub,
        "13",
        Some("hub-cn"),
    ),
    (
        "hub-440106",
        Some("天河区枢纽"),
        Role::Hub,
        "440106",
        Some("hub-44"),
    ),
    (
        "hub-130102",
        Some("长安区枢纽"),
        Role::Hub,
        "130102",
        Some("hub-13"),
    ),
    (
        "440106001",
        None,
        Role::Township,
        "440106001",
        Some("hub-440106"),
    ),
    (
        "130102-dpf",
        Some("石家庄市长安区残疾人联合会"),
        Role::CountyDpf,
        "130102",
        Some("hub-130102"),
    ),
    (
        "130102-ca",
        Some("石家庄市长安区民政局"),
        Role::CountyCivilAffairs,
        "130102",
        Some("hub-130102"),
    ),
    (
        "130102001",
        None,
        Role::Township,
        "130102001",
        Some("hub-130102"),
    ),
    (
        SUPERVISOR,
        Some("河北省民政厅（监管）"),
        Role::Supervisor,
        "13",
        Some("hub-13"),
    ),
];

/// The offices that hold the case (every node but the supervisor, which
/// holds only what the case's offices attest).
fn case_offices() -> impl Iterator<Item = &'static str> {
    OFFICES
        .iter()
        .filter(|(_, _, role, ..)| *role != Role::Supervisor)
        .map(|(id, ..)| *id)
}

const HUB_CN: &str = "hub-cn";
const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const SUPERVISOR: &str = "supervisor-13";

/// How long one hop of sync may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A Beijing wall-clock time on the simulated business clock.
fn at(date: NaiveDate, hh: u32, mm: u32) -> Timestamp {
    let start = Timestamp::start_of_china_date(date);
    let time = NaiveTime::from_hms_opt(hh, mm, 0).unwrap_or(NaiveTime::MIN);
    Timestamp(start.0 + i64::from(time.num_seconds_from_midnight()) * 1000)
}

fn review(opinion: &str) -> Payload {
    Payload {
        opinion: opinion.into(),
        outcome: Some(Outcome::Approve),
        ..Payload::default()
    }
}

struct Demo {
    clock: Arc<AtomicI64>,
    nodes: BTreeMap<&'static str, (String, Daemon)>,
    started: Instant,
}

impl Demo {
    fn set_clock(&self, t: Timestamp) {
        self.clock.store(t.0, Ordering::SeqCst);
    }

    fn handle(&self, office: &str) -> anyhow::Result<DaemonHandle> {
        Ok(self
            .nodes
            .get(office)
            .with_context(|| format!("no node {office}"))?
            .1
            .handle())
    }

    fn name(&self, office: &str) -> String {
        self.nodes
            .get(office)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| office.to_string())
    }

    /// The stage of `case` at `office`, if it holds the case.
    async fn stage_at(&self, office: &str, case: &CaseId) -> anyhow::Result<Option<Stage>> {
        let case = case.clone();
        Ok(self
            .handle(office)?
            .exec(move |node, _| node.case(&case).ok().and_then(|d| d.stage().ok().flatten()))
            .await?)
    }

    /// Materials of `case` held and listed at every node, after waiting (up to
    /// [`STEP_TIMEOUT`]) for every node to hold all it lists.
    async fn wait_for_materials(
        &self,
        case: &CaseId,
    ) -> anyhow::Result<BTreeMap<&'static str, (usize, usize)>> {
        let start = Instant::now();
        loop {
            let mut counts = BTreeMap::new();
            for id in case_offices() {
                let case = case.clone();
                let count = self
                    .handle(id)?
                    .exec(move |node, _| -> anyhow::Result<(usize, usize)> {
                        let listed = node.store().case_materials(&case)?;
                        let mut held = 0;
                        for hash in &listed {
                            if node.store().has_material(hash)? {
                                held += 1;
                            }
                        }
                        Ok((held, listed.len()))
                    })
                    .await??;
                counts.insert(id, count);
            }
            let done = counts
                .values()
                .all(|(held, listed)| held == listed && *listed > 0);
            if done || start.elapsed() > STEP_TIMEOUT {
                return Ok(counts);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `office` holds `case` at `stage` or later on the path.
    async fn wait_for(&self, office: &str, case: &CaseId, stage: Stage) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let held = self.stage_at(office, case).await?;
            if let Some(held) = held
                && (held == stage || reached(held, stage))
            {
                return Ok(());
            }
            if start.elapsed() > STEP_TIMEOUT {
                bail!(
                    "{office} did not reach {} within {STEP_TIMEOUT:?} (holds {:?})",
                    stage.code(),
                    held.map(|s| s.code())
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signs `to` on `case` at `office` with the business clock at `when`.
    async fn act(
        &self,
        office: &str,
        case: &CaseId,
        operator: &str,
        to: Stage,
        when: Timestamp,
        payload: Payload,
    ) -> anyhow::Result<()> {
        self.set_clock(when);
        let case = case.clone();
        let operator = Operator::parse(operator)?;
        self.handle(office)?
            .exec(move |node, now| node.act(&case, to, &payload, &operator, now))
            .await?
            .with_context(|| format!("{office} cannot sign {}", to.code()))?;
        println!(
            "  {:>6.2}s  {} 签署 {} {}",
            self.started.elapsed().as_secs_f64(),
            self.name(office),
            to.zh(),
            to.code()
        );
        Ok(())
    }
}

/// Whether a case at `held` has passed `wanted` on the approval path.
fn reached(held: Stage, wanted: Stage) -> bool {
    const PATH: [Stage; 11] = [
        Stage::Draft,
        Stage::Accepted,
        Stage::Pushed,
        Stage::Received,
        Stage::InitialReviewed,
        Stage::DpfReviewed,
        Stage::Decided,
        Stage::ResultReceived,
        Stage::Notified,
        Stage::Active,
        Stage::Terminated,
    ];
    let pos = |s: Stage| PATH.iter().position(|p| *p == s);
    matches!((pos(held), pos(wanted)), (Some(h), Some(w)) if h >= w)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let calendar = Calendar::shipped()?;
    let divisions = Divisions::national()?;
    let name_of = |code: &str| {
        DivisionCode::parse(code)
            .ok()
            .and_then(|c| divisions.full_name(&c))
            .unwrap_or_default()
    };
    let (base, _temp): (PathBuf, Option<tempfile::TempDir>) = match &args.keep {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                bail!("--keep {}: the directory is not empty", dir.display());
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("tongban-demo-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };

    println!(
        "通办 Tongban 演示 demo — 跨省通办：河北户籍、居住广州的申请人在天河区五山街道申请两项补贴"
    );
    println!(
        "九个办公节点在本机回环地址上以 QUIC 互联，各自持有 redb 存储与办公室密钥；目录 {}",
        base.display()
    );
    println!("（业务时钟为模拟时钟，自 2026-09-28 起，跨国庆假期；网络为真实时钟）\n");

    // Each office makes its node and key; the authority certifies the keys.
    let valid_from =
        Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?);
    let valid_to =
        Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2031, 1, 1).context("date")?);
    let mut names = BTreeMap::new();
    let mut specs = Vec::new();
    for (id, name, role, division, _) in OFFICES {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}办事处", name_of(division)));
        names.insert(id, name.clone());
        specs.push(OfficeSpec {
            office: id.to_string(),
            name,
            role,
            division: division.to_string(),
        });
    }
    let authority = provision(&base, &specs, valid_from, valid_to)?;
    let directory = LocalNode::open(&base.join(HUB_CN))?.directory()?.clone();
    std::fs::write(
        base.join("authority.pub"),
        format!("{}\n", authority.public()),
    )?;
    println!(
        "目录 directory: 版本 1，{} 个办公节点证书，签发机构公钥指纹 {}",
        OFFICES.len(),
        authority.public().fingerprint()
    );

    // Start the nodes from the root of the tree down.
    let day0 = NaiveDate::from_ymd_opt(2026, 9, 28).context("date")?;
    let clock = Arc::new(AtomicI64::new(at(day0, 9, 0).0));
    let options = StartOptions {
        clock: Clock::Manual(clock.clone()),
        control_api: false,
        min_backoff: Duration::from_millis(50),
        ..StartOptions::default()
    };
    let mut demo = Demo {
        clock,
        nodes: BTreeMap::new(),
        started,
    };
    let mut relay: Option<FaultRelay> = None;
    for (id, _, _, _, hub) in OFFICES {
        let mut upstream = None;
        if let Some(hub) = hub {
            let hub_addr = demo
                .nodes
                .get(hub)
                .with_context(|| format!("hub {hub} not started"))?
                .1
                .listen_addr();
            let address = if id == DOMICILE {
                // The domicile office's link runs through a relay the demo can cut.
                let r = FaultRelay::start(hub_addr, 7).await?;
                let address = r.local_addr();
                relay = Some(r);
                address
            } else {
                hub_addr
            };
            upstream = Some((hub, address));
        }
        let config = NodeConfig::loopback(&base.join(id), upstream);
        let daemon = Daemon::start(&config, options.clone())
            .await
            .with_context(|| format!("node {id} cannot start"))?;
        println!(
            "  节点 node {:<11} {:<22} QUIC {}",
            id,
            names[id],
            daemon.listen_addr()
        );
        demo.nodes.insert(id, (names[id].clone(), daemon));
    }
    let relay = relay.context("the domicile relay")?;
    let result = walk(&demo, &relay, &calendar, &directory, day0, &name_of).await;
    let mut stopped_ok = true;
    // Leaves first, so that no node sees its hub go away.
    let mut nodes = std::mem::take(&mut demo.nodes);
    for (id, ..) in OFFICES.iter().rev() {
        let Some((_, daemon)) = nodes.remove(id) else {
            continue;
        };
        if let Err(err) = daemon.shutdown().await {
            println!("  节点 {id} 停止时出错 error at shutdown: {err}");
            stopped_ok = false;
        }
    }
    let all_ok = match result {
        Ok(ok) => ok && stopped_ok,
        Err(err) => {
            println!("\n演示失败 demo failed: {err:#}");
            false
        }
    };
    if args.keep.is_some() {
        println!(
            "\n保留目录 kept: {}（各节点数据目录 <office-id>/，签发机构公钥 authority.pub）",
            base.display()
        );
    }
    println!(
        "\n用时 elapsed {:.2?}；结果 result: {}",
        started.elapsed(),
        if all_ok {
            "全部验证通过 all verified"
        } else {
            "存在失败 FAILED"
        }
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The case's way through the stages; returns whether every check held.
async fn walk(
    demo: &Demo,
    relay: &FaultRelay,
    calendar: &Calendar,
    directory: &Directory,
    day0: NaiveDate,
    name_of: &dyn Fn(&str) -> String,
) -> anyhow::Result<bool> {
    // Intake at the Tianhe street office: a Hebei resident (hukou 130102001).
    let first17 = "13010219680512031";
    let resident_id = format!(
        "{first17}{}",
        resident_id_check_char(first17).context("check")?
    );
    let form = IntakeForm {
        name: "张建国".into(),
        resident_id: resident_id.clone(),
        hukou_township: DOMICILE.into(),
        certificate: format!("{resident_id}44"),
        dibao: true,
        long_term_care: true,
        subsidy_kinds: vec!["living".into(), "nursing".into()],
        phone: "13800000000".into(),
        address: "广州市天河区五山路".into(),
        ..IntakeForm::default()
    };
    let clerk = "天河五山-窗口01";
    // The domicile office's link is down for the first days.
    relay.set_partitioned(true);
    println!(
        "\n链路中断 link down: {} 离线，直至 9 月 30 日",
        demo.name(DOMICILE)
    );
    demo.set_clock(at(day0, 9, 10));
    let operator = Operator::parse(clerk)?;
    let made = demo
        .handle(ACCEPTANCE)?
        .exec({
            let operator = operator.clone();
            move |node, now| node.new_case(&form, &operator, now)
        })
        .await??;
    let case_id = made.case_id.clone();
    println!(
        "\n案件 case {case_id}：申请人 {}（身份证 {}），户籍 {}",
        tongban_case::schema::mask_name("张建国"),
        tongban_case::schema::mask_id(&resident_id),
        name_of(DOMICILE)
    );
    println!(
        "一次性告知 materials notice（{} 政策）：{}",
        made.policy_province,
        made.notice
            .iter()
            .map(|(_, zh)| zh.as_str())
            .collect::<Vec<_>>()
            .join("、")
    );
    demo.set_clock(at(day0, 9, 40));
    let notice = made.notice.clone();
    let case = case_id.clone();
    let attacher = operator.clone();
    demo.handle(ACCEPTANCE)?
        .exec(move |node, now| -> anyhow::Result<()> {
            for (code, _) in &notice {
                let scan = format!("scan of {code} for {case}");
                node.attach_reader(
                    &case,
                    scan.as_bytes(),
                    &format!("{code}.jpg"),
                    code,
                    "image/jpeg",
                    &attacher,
                    now,
                )?;
            }
            Ok(())
        })
        .await??;
    println!(
        "材料已齐 materials attached: {} 项，内容哈希存储",
        made.notice.len()
    );

    println!("\n办理过程 steps（左列为实际用时）");
    demo.act(
        ACCEPTANCE,
        &case_id,
        clerk,
        Stage::Accepted,
        at(day0, 10, 0),
        Payload::default(),
    )
    .await?;

    demo.act(
        ACCEPTANCE,
        &case_id,
        clerk,
        Stage::Pushed,
        at(day0, 10, 5),
        Payload::default(),
    )
    .await?;
    for office in ["hub-130102", DPF, CIVIL] {
        demo.wait_for(office, &case_id, Stage::Pushed).await?;
    }
    let at_domicile = demo.stage_at(DOMICILE, &case_id).await?;
    println!(
        "  {:>6.2}s  推送已到长安区枢纽及县级部门；户籍地办事处持有案件：{}",
        demo.started.elapsed().as_secs_f64(),
        if at_domicile.is_some() {
            "是"
        } else {
            "否（离线）"
        }
    );
    if at_domicile.is_some() {
        bail!("the domicile office received the case while its link was cut");
    }
    // Work goes on elsewhere while the link is down: the applicant's evaluation of
    // the window service is recorded at the acceptance office.
    demo.set_clock(at(day0, 16, 0));
    let case = case_id.clone();
    let recorder = operator.clone();
    demo.handle(ACCEPTANCE)?
        .exec(move |node, now| node.evaluate(&case, 5, "窗口服务热情", &recorder, now))
        .await??;
    println!("  离线期间受理地照常办理：记录申请人评价 evaluation recorded");

    // Two days later the link comes back; the domicile node signs `received`.
    let day2 = NaiveDate::from_ymd_opt(2026, 9, 30).context("date")?;
    demo.set_clock(at(day2, 8, 30));
    relay.set_partitioned(false);
    println!("  链路恢复 link restored（业务时间 {day2} 08:30）");
    demo.wait_for(DOMICILE, &case_id, Stage::Received).await?;
    demo.wait_for(ACCEPTANCE, &case_id, Stage::Received).await?;
    println!(
        "  {:>6.2}s  {} 自动签收 received，签收回执已回到受理地",
        demo.started.elapsed().as_secs_f64(),
        demo.name(DOMICILE)
    );

    // The county's registries, signed by the offices that keep them and carried
    // by sync to the county's offices only: the reviews compare the case with
    // them instead of with paper originals (数据比对).
    let feeds = [
        (
            DPF,
            DatasetKind::Certificates,
            format!(
                "certificate_number,holder_id,category,level,status\n\
                 {resident_id}44,{resident_id},肢体,4,有效\n"
            ),
        ),
        (
            CIVIL,
            DatasetKind::Dibao,
            format!("holder_id,status,since\n{resident_id},在保,2019-03-01\n"),
        ),
    ];
    for (office, kind, csv) in feeds {
        let handle = demo.handle(office)?;
        let bytes = handle
            .exec(move |node, now| node.sign_feed(kind, &csv, now, now.china_date()))
            .await??;
        handle.import_dataset(bytes).await??;
    }
    let start = Instant::now();
    loop {
        let held = demo
            .handle(DOMICILE)?
            .exec(|node, _| {
                node.held_datasets().map(|all| {
                    all.iter()
                        .filter(|d| d.signed.dataset.kind.personal())
                        .count()
                })
            })
            .await??;
        if held == 2 {
            break;
        }
        if start.elapsed() > STEP_TIMEOUT {
            bail!("the county's registry feeds did not reach the domicile township");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  {:>6.2}s  比对数据 registry feeds：{} 发布残疾人证信息、{} 发布低保对象名单，经县枢纽送达本县各办理机构",
        demo.started.elapsed().as_secs_f64(),
        demo.name(DPF),
        demo.name(CIVIL)
    );

    demo.act(
        DOMICILE,
        &case_id,
        "长安建北-初审02",
        Stage::InitialReviewed,
        at(day2, 15, 0),
        review("经初审，申请人户籍、低保及残疾情况属实，同意上报。"),
    )
    .await?;
    demo.wait_for(DPF, &case_id, Stage::InitialReviewed).await?;
    let case = case_id.clone();
    let confirmations = demo
        .handle(DPF)?
        .exec(move |node, _| -> anyhow::Result<_> { Ok(node.case(&case)?.read()?.confirmations) })
        .await??;
    for c in &confirmations {
        println!(
            "            数据比对 {}：{} {} v{}（{} 签名记录 signed）",
            if c.confirmed {
                "相符 confirmed"
            } else {
                "不一致 contradicted"
            },
            c.detail,
            c.feed,
            c.feed_version,
            c.office
        );
    }
    // The county DPF works after the holiday, on its deadline day.
    let dpf_day = calendar.deadline_from_receipt(day2, 2).date;
    demo.act(
        DPF,
        &case_id,
        "长安残联-复审01",
        Stage::DpfReviewed,
        at(dpf_day, 10, 0),
        review("经残疾人证信息管理系统比对，证件有效，四级肢体残疾，同意。"),
    )
    .await?;
    demo.wait_for(CIVIL, &case_id, Stage::DpfReviewed).await?;
    let decide_day = calendar.add_working_days(dpf_day, 3).date;
    let case = case_id.clone();
    let (awards, first_month) = demo
        .handle(CIVIL)?
        .exec(move |node, _| -> anyhow::Result<(Vec<AwardLine>, String)> {
            let case = node.case(&case)?.read()?;
            let (mut awards, first) = policy_awards(&case, day0)?;
            // Level 4 physical disability is outside the nursing subsidy: living only.
            awards.retain(|a: &AwardLine| a.kind == tongban_domain::policy::SubsidyKind::Living);
            Ok((awards, first))
        })
        .await??;
    let decision = Payload {
        opinion: "审定通过：发放困难残疾人生活补贴；护理补贴不符合条件（四级肢体残疾）。".into(),
        outcome: Some(Outcome::Approve),
        awards,
        first_paid_month: Some(first_month),
        method: None,
        override_reason: None,
    };
    demo.act(
        CIVIL,
        &case_id,
        "长安民政-审定03",
        Stage::Decided,
        at(decide_day, 11, 0),
        decision,
    )
    .await?;
    demo.wait_for(ACCEPTANCE, &case_id, Stage::ResultReceived)
        .await?;
    println!(
        "  {:>6.2}s  {} 收到审定结果，自动签收 result_received",
        demo.started.elapsed().as_secs_f64(),
        demo.name(ACCEPTANCE)
    );
    let notify_day = calendar.add_working_days(decide_day, 1).date;
    demo.act(
        ACCEPTANCE,
        &case_id,
        clerk,
        Stage::Notified,
        at(notify_day, 9, 30),
        Payload {
            method: Some("phone".into()),
            opinion: "电话告知审定结果及发放标准".into(),
            ..Payload::default()
        },
    )
    .await?;
    demo.wait_for(CIVIL, &case_id, Stage::Notified).await?;
    demo.act(
        CIVIL,
        &case_id,
        "长安民政-发放01",
        Stage::Active,
        at(notify_day, 14, 0),
        Payload::default(),
    )
    .await?;
    for id in case_offices() {
        demo.wait_for(id, &case_id, Stage::Active).await?;
    }
    println!(
        "  {:>6.2}s  九个办理及枢纽节点均已收到 active（发放中）",
        demo.started.elapsed().as_secs_f64()
    );

    // Timeline and verification on every node.
    let now = Timestamp::now();
    let case = case_id.clone();
    let dir2 = directory.clone();
    let cal2 = calendar.clone();
    let report = demo
        .handle(ACCEPTANCE)?
        .exec(move |node, _| -> anyhow::Result<_> {
            Ok(node.case(&case)?.verify(&dir2, &cal2, now)?)
        })
        .await??;
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
    // The scans attached at the acceptance office follow the case to every node
    // of its route (hubs relay them), fetched and checked by their hashes.
    let materials = demo.wait_for_materials(&case_id).await?;
    println!("\n逐节点验证 verification on every node:");
    for id in case_offices() {
        let case = case_id.clone();
        let dir2 = directory.clone();
        let cal2 = calendar.clone();
        let (n, ok, violations, head) = demo
            .handle(id)?
            .exec(move |node, _| -> anyhow::Result<_> {
                let mut doc = node.case(&case)?;
                let report = doc.verify(&dir2, &cal2, now)?;
                let head = doc.heads().first().copied().unwrap_or([0; 32]);
                Ok((
                    report.n_entries,
                    report.is_ok(),
                    report
                        .violations
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    head,
                ))
            })
            .await??;
        let (held, listed) = materials.get(id).copied().unwrap_or((0, 0));
        let ok = ok && held == listed;
        println!(
            "  {:<11} {:<24} {} 条签名转换，材料 materials {held}/{listed}，{}，文档头 {}",
            id,
            demo.name(id),
            n,
            if ok {
                "验证通过 ok"
            } else {
                "验证失败 FAILED"
            },
            tongban_ledger::keys::PublicKey(head).fingerprint()
        );
        for violation in &violations {
            println!("      {violation}");
        }
        all_ok &= ok;
    }
    all_ok &= supervision(demo, &case_id).await?;
    Ok(all_ok)
}

/// The Hebei supervisor's own reading of the case: what the offices
/// attested, every signature and deadline checked on the supervisor's node,
/// and no personal data there.
async fn supervision(demo: &Demo, case_id: &CaseId) -> anyhow::Result<bool> {
    let start = Instant::now();
    let reading = loop {
        let case = case_id.clone();
        let held = demo
            .handle(SUPERVISOR)?
            .exec(move |node, _| -> anyhow::Result<_> {
                Ok(match node.store().supervised(&case)? {
                    Some(row) => Some(
                        tongban_domain::supervision::SupervisedCase::from_row(&row)
                            .map_err(anyhow::Error::msg)?,
                    ),
                    None => None,
                })
            })
            .await??;
        if let Some(reading) = held
            && reading.stage() == Some(Stage::Active)
        {
            break reading;
        }
        if start.elapsed() > STEP_TIMEOUT {
            bail!("the supervisor did not see the case reach active");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "\n省级监管 supervision: {} 据各经办机关签署的报送自行核验签名与时限 (no case document, no personal data there)",
        demo.name(SUPERVISOR)
    );
    for step in reading.steps.iter().filter(|s| s.deadline.is_some()) {
        println!(
            "  {:<26} {:<12} 时限至 {} {}",
            format!("{} {}", step.to.zh(), step.to.code()),
            step.office,
            step.deadline.map(|d| d.to_string()).unwrap_or_default(),
            if step.late {
                "✘ 超时"
            } else {
                "✔ 按时"
            }
        );
    }
    let awarded: Vec<String> = reading
        .awards
        .iter()
        .map(|a| format!("{} {} 元/月", a.kind.zh(), a.monthly_yuan))
        .collect();
    println!(
        "  审定 awards: {}；评价 evaluation: {}",
        awarded.join("，"),
        reading
            .evaluation
            .as_ref()
            .map_or("—".to_string(), |e| format!("{} 分", e.score))
    );
    let ok = reading.problems.is_empty() && reading.steps.iter().all(|s| !s.late);
    for problem in &reading.problems {
        println!("      {problem}");
    }
    Ok(ok)
}
