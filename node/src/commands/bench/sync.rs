//! The sync scenarios: `initial`, `resume`, `fanout` and `hop`, each over real
//! daemons on loopback QUIC with redb stores.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tongban_case::{IntakeForm, Outcome as Verdict, Payload};
use tongban_domain::ids::{CaseId, Operator, resident_id_check_char};
use tongban_domain::stage::Stage;
use tongban_node::daemon::Daemon;
use tongban_node::fixture::{self, CaseFactory};
use tongban_node::local::LocalNode;

use super::world::{self, SERVER, World};
use super::{Ctx, Figure, Outcome};

/// The fresh node of `initial` and `resume`: Hebei's province hub, on every
/// fixture case's route and signing nothing (no receipts), so the figure is
/// the sync alone.
const FRESH: &str = "hub-13";
/// The in-process floor's fresh node, another hub of the same province.
const FLOOR: &str = "hub-13-floor";

/// The most a sync of any size may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(3 * 3600);

/// Starts the serving hub and then [`FRESH`] against it over QUIC; answers
/// how long from the fresh node's start until it held the hub's `n` cases.
/// Both are stopped after the fresh node had time to acknowledge what it
/// consumed, so that its cursor stands at the end of the hub's log (what
/// `resume` starts from).
async fn fresh_sync(ctx: &Ctx, world: &World, n: u64) -> anyhow::Result<Duration> {
    let hub = world::start(&world.dir(SERVER), None).await?;
    let bar = crate::output::bar(n, "同步 syncing", ctx.json);
    let start = Instant::now();
    let fresh = world::start(&world.dir(FRESH), Some(hub.listen_addr())).await?;
    world::wait_held(&[fresh.handle()], n, &bar, LIMIT).await?;
    let took = start.elapsed();
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    fresh.shutdown().await?;
    hub.shutdown().await?;
    Ok(took)
}

/// `initial`: the hub holds `n` finished cases; a fresh node syncs them all,
/// once in process (the floor) and once over QUIC between two daemons.
pub fn initial(ctx: &Ctx, n: u64) -> anyhow::Result<Outcome> {
    let world = World::filled(ctx, &format!("initial-{n}"), n)?;
    ctx.say(&format!("initial {n}: floor (in-process)…"));
    let floor = world::floor_sync(&world.dir(SERVER), &world.dir(FLOOR), n)?;
    ctx.say(&format!(
        "initial {n}: floor {:.2} s; over QUIC…",
        floor.as_secs_f64()
    ));
    let quic = ctx.runtime.block_on(fresh_sync(ctx, &world, n))?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let target = (n >= 100_000).then(|| "≥ 8,000 docs/s".to_string());
    let met = (n >= 100_000).then(|| rate(quic) >= 8_000.0);
    Ok(Outcome::new("initial", n, None).with(vec![
        Figure::new(
            "sync_docs_per_s",
            "QUIC 初始同步 initial sync, hub → fresh hub",
            rate(quic),
            "docs/s",
        )
        .floor(rate(floor), rate(quic) / rate(floor))
        .target(target, met),
        Figure::new(
            "sync_us_per_doc",
            "每件耗时 time a document",
            quic.as_secs_f64() * 1e6 / n as f64,
            "µs",
        ),
    ]))
}

/// One resume: the hub holds `n`, the fresh node synced them all and
/// stopped; `k` cases changed at the hub (the dynamic check suspends
/// them); answers how long from the fresh node's start until it holds the
/// `k` changes, and the setup's initial sync time.
fn resume_once(ctx: &Ctx, n: u64, k: u64) -> anyhow::Result<(Duration, Duration)> {
    let world = World::filled(ctx, &format!("resume-{n}-{k}"), n)?;
    let factory = CaseFactory::open(&world.root)?;
    ctx.say(&format!("resume {n}: initial sync (setup)…"));
    let setup = ctx.runtime.block_on(fresh_sync(ctx, &world, n))?;
    // The change: K cases suspended at the hub, each one signed change
    // stored as an office's write is (`LocalNode::save`).
    let mut changed = Vec::new();
    {
        let hub = LocalNode::open(&world.dir(SERVER))?;
        for i in 0..k.min(n) {
            let case = factory.case_id(i * (n / k.max(1)).max(1))?;
            let mut doc = hub.case(&case)?;
            factory.suspend(&mut doc)?;
            hub.save(&case, &mut doc)?;
            changed.push(case);
        }
    }
    let want = changed.len();
    // The last sync was a while ago, not a second: its writes are on disk
    // before the nodes restart. Otherwise the restart waits for the
    // writeback of the whole initial sync (11 GB at 1,000,000 held, 11 MB
    // at 1,000) and resume would measure the setup's disk, not itself.
    world::sync_tree(&world.dir(SERVER))?;
    world::sync_tree(&world.dir(FRESH))?;
    let took = ctx.runtime.block_on(async {
        let hub = world::start(&world.dir(SERVER), None).await?;
        let start = Instant::now();
        let fresh = world::start(&world.dir(FRESH), Some(hub.listen_addr())).await?;
        let handle = fresh.handle();
        loop {
            let today = chrono::Utc::now().date_naive();
            let suspended = handle
                .exec(move |node, _| {
                    node.list(Some(Stage::Suspended), today)
                        .map(|rows| rows.len())
                        .unwrap_or(0)
                })
                .await?;
            if suspended >= want {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                bail!("resume stalled: {suspended} of {want} changes after 600 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = start.elapsed();
        fresh.shutdown().await?;
        hub.shutdown().await?;
        anyhow::Ok(took)
    })?;
    Ok((took, setup))
}

/// `resume`: K changed since the last sync, at 1,000 held (the floor, same
/// run) and at `n` held.
pub fn resume(ctx: &Ctx, n: u64, k: u64) -> anyhow::Result<Outcome> {
    let small = 1_000.min(n);
    let (floor, _) = resume_once(ctx, small, k)?;
    let (took, setup) = if n == small {
        (floor, Duration::ZERO)
    } else {
        resume_once(ctx, n, k)?
    };
    let ratio = took.as_secs_f64() / floor.as_secs_f64();
    let big = n >= 1_000_000;
    let mut figures = vec![
        Figure::new(
            "resume_ms",
            &format!("续传 {k} 件变更 resume, {k} changed, node start to last change held"),
            took.as_secs_f64() * 1e3,
            "ms",
        )
        .floor(floor.as_secs_f64() * 1e3, ratio)
        .target(
            big.then(|| format!("≤ 1.2× the same at {small} held")),
            big.then_some(ratio <= 1.2),
        ),
    ];
    if n != small {
        figures.push(Figure::new(
            "setup_sync_docs_per_s",
            "准备：初始同步 setup: the initial sync before",
            n as f64 / setup.as_secs_f64(),
            "docs/s",
        ));
    }
    Ok(Outcome::new("resume", n, Some(k)).with(figures))
}

/// `fanout`: one hub serves `children` fresh children at once, against one
/// child alone in the same run.
pub fn fanout(ctx: &Ctx, n: u64, children: usize) -> anyhow::Result<Outcome> {
    let world = World::filled(ctx, &format!("fanout-{n}"), n)?;
    let (one, all) = ctx.runtime.block_on(async {
        let hub = world::start(&world.dir(SERVER), None).await?;
        let timed = |names: Vec<String>| {
            let hub_addr = hub.listen_addr();
            let world = &world;
            async move {
                let bar = crate::output::bar(n * names.len() as u64, "分发 serving", ctx.json);
                let start = Instant::now();
                let mut nodes: Vec<Daemon> = Vec::new();
                for name in &names {
                    nodes.push(world::start(&world.dir(name), Some(hub_addr)).await?);
                }
                let handles: Vec<_> = nodes.iter().map(|d| d.handle()).collect();
                world::wait_held(&handles, n, &bar, LIMIT).await?;
                let took = start.elapsed();
                bar.finish_and_clear();
                for node in nodes {
                    node.shutdown().await?;
                }
                anyhow::Ok(took)
            }
        };
        ctx.say(&format!("fanout {n}: one child…"));
        let one = timed(vec!["hub-13-solo".to_string()]).await?;
        ctx.say(&format!("fanout {n}: {children} children at once…"));
        let all = timed((0..children).map(world::child).collect()).await?;
        hub.shutdown().await?;
        anyhow::Ok((one, all))
    })?;
    let one_rate = n as f64 / one.as_secs_f64();
    let total_rate = (n * children as u64) as f64 / all.as_secs_f64();
    let ratio = total_rate / one_rate;
    Ok(Outcome::new("fanout", n, None).with(vec![
        Figure::new(
            "fanout_docs_per_s",
            &format!(
                "{children} 个下级同时同步 {children} children at once, documents delivered in all"
            ),
            total_rate,
            "docs/s",
        )
        .floor(one_rate, ratio)
        .target(Some("≥ 0.8× one child".into()), Some(ratio >= 0.8)),
    ]))
}

/// `hop`: one transition signed at the domicile township until the acceptance
/// office holds it, through the demo's five hubs; the floor is the first hop
/// (township to its county hub) of the same transitions.
pub fn hop(ctx: &Ctx, rounds: usize) -> anyhow::Result<Outcome> {
    let world = World::new(ctx, "hop")?;
    let chain = [
        "hub-cn",
        "hub-13",
        "hub-44",
        "hub-130102",
        "hub-440106",
        fixture::DOMICILE,
        fixture::ACCEPTANCE,
    ];
    let (first, through) = ctx.runtime.block_on(async {
        let mut nodes: std::collections::BTreeMap<&str, Daemon> = Default::default();
        for id in chain {
            let parent = fixture::ROUTE
                .iter()
                .find(|(office, ..)| *office == id)
                .and_then(|(.., parent)| *parent);
            let up = parent.map(|p| nodes[p].listen_addr());
            let config = tongban_node::daemon::NodeConfig::loopback(&world.dir(id), parent.zip(up));
            nodes.insert(id, Daemon::start(&config, world::options()).await?);
        }
        let stage_at = |office: &str, case: &CaseId| {
            let case = case.clone();
            let handle = nodes[office].handle();
            async move {
                handle
                    .exec(move |node, _| {
                        node.case(&case).ok().and_then(|d| d.stage().ok().flatten())
                    })
                    .await
                    .ok()
                    .flatten()
            }
        };
        let bar = crate::output::bar(rounds as u64, "往返 rounds", ctx.json);
        let mut first = Vec::new();
        let mut through = Vec::new();
        for i in 0..rounds {
            let case = nodes[fixture::ACCEPTANCE]
                .handle()
                .exec(move |node, now| pushed_case(node, i, now))
                .await??;
            let wait = Instant::now();
            while stage_at(fixture::ACCEPTANCE, &case).await != Some(Stage::Received) {
                if wait.elapsed() > Duration::from_secs(60) {
                    bail!("the pushed case did not come back received");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let id = case.clone();
            let start = Instant::now();
            nodes[fixture::DOMICILE]
                .handle()
                .exec(move |node, now| {
                    let op = Operator::parse("初审01")?;
                    let payload = Payload {
                        opinion: "同意".into(),
                        outcome: Some(Verdict::Approve),
                        ..Payload::default()
                    };
                    node.act(&id, Stage::InitialReviewed, &payload, &op, now)?;
                    anyhow::Ok(())
                })
                .await??;
            let mut hop = None;
            loop {
                if hop.is_none()
                    && stage_at("hub-130102", &case).await == Some(Stage::InitialReviewed)
                {
                    hop = Some(start.elapsed());
                }
                if stage_at(fixture::ACCEPTANCE, &case).await == Some(Stage::InitialReviewed) {
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    bail!("the transition did not reach the acceptance office");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            through.push(start.elapsed());
            first.push(hop.unwrap_or_else(|| start.elapsed()));
            bar.inc(1);
        }
        bar.finish_and_clear();
        for (_, daemon) in nodes {
            daemon.shutdown().await?;
        }
        anyhow::Ok((first, through))
    })?;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let worst = through.iter().max().copied().unwrap_or_default();
    let first = median(first);
    let all = median(through);
    Ok(Outcome::new("hop", rounds as u64, None).with(vec![
        Figure::new(
            "hop_ms",
            "一次流转经五个中转 one transition through 5 hubs (median)",
            all,
            "ms",
        )
        .floor(first, all / first)
        .target(Some("< 50 ms a hub".into()), Some(all / 6.0 < 50.0)),
        Figure::new(
            "hop_worst_ms",
            "最慢一次 the slowest round",
            worst.as_secs_f64() * 1e3,
            "ms",
        ),
    ]))
}

/// A case made at the acceptance office with its scans, accepted and pushed.
fn pushed_case(
    node: &mut LocalNode,
    i: usize,
    now: tongban_domain::ids::Timestamp,
) -> anyhow::Result<CaseId> {
    let first17 = format!("1301021968051{:04}", i % 10_000);
    let check = resident_id_check_char(&first17).context("check character")?;
    let id = format!("{first17}{check}");
    let form = IntakeForm {
        name: "王五".into(),
        resident_id: id.clone(),
        hukou_township: fixture::DOMICILE.into(),
        certificate: format!("{id}62"),
        dibao: true,
        subsidy_kinds: vec!["living".into()],
        ..IntakeForm::default()
    };
    let op = Operator::parse("窗口01")?;
    let made = node.new_case(&form, &op, now)?;
    for (code, _) in &made.notice {
        let scan = format!("scan of {code} for round {i}");
        node.attach_reader(
            &made.case_id,
            scan.as_bytes(),
            "s.jpg",
            code,
            "image/jpeg",
            &op,
            now,
        )?;
    }
    node.act(
        &made.case_id,
        Stage::Accepted,
        &Payload::default(),
        &op,
        now,
    )?;
    node.act(&made.case_id, Stage::Pushed, &Payload::default(), &op, now)?;
    Ok(made.case_id)
}
