//! QUIC sync benchmark: initial sync of N case documents from a hub to a fresh
//! node over loopback QUIC (two real daemons), beside the floor of the same sync
//! protocol between the same kinds of stores in one process (frames handed over
//! directly, no sockets) in the same run; and the latency of one transition from
//! the domicile office to the acceptance office through the chain of hubs.
//!
//! ```sh
//! cargo bench -p tongban --bench quic                      # 10,000 and 100,000
//! TONGBAN_BENCH_DOCS=2000 cargo bench -p tongban --bench quic
//! ```
//!
//! A bench binary rather than criterion: one initial sync of 100,000 documents
//! is the measurement, and repeating it dozens of times would take an hour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tongban_case::{CaseDocument, IntakeForm, Outcome, Payload, SigningOffice};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_node::daemon::{Clock, Daemon, NodeConfig, StartOptions};
use tongban_node::local::LocalNode;
use tongban_node::provision::{OfficeSpec, provision};
use tongban_replica::Replica;
use tongban_store::{Store, StoreOptions};
use tongban_sync::{Config as SyncConfig, Limits, SyncNode};

/// The allocator the `tongban` binary runs with (`node/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HUB: &str = "hub-cn";
const ACCEPTANCE: &str = "440106001";
/// The node that syncs from the hub.
const FRESH: &str = "130102-dpf";

/// Offices of the latency chain, from the domicile to the acceptance office.
const CHAIN: [(&str, Role, &str, Option<&str>); 7] = [
    ("hub-cn", Role::Hub, "00", None),
    ("hub-13", Role::Hub, "13", Some("hub-cn")),
    ("hub-44", Role::Hub, "44", Some("hub-cn")),
    ("hub-130102", Role::Hub, "130102", Some("hub-13")),
    ("hub-440106", Role::Hub, "440106", Some("hub-44")),
    ("130102001", Role::Township, "130102001", Some("hub-130102")),
    ("440106001", Role::Township, "440106001", Some("hub-440106")),
];

fn init_offices(root: &Path, specs: &[(&str, Role, &str)]) {
    let from = Timestamp(Timestamp::now().0 - 30 * 86_400_000);
    let to = Timestamp(Timestamp::now().0 + 365 * 86_400_000);
    let specs: Vec<OfficeSpec> = specs
        .iter()
        .map(|(id, role, division)| OfficeSpec::new(id, *role, division))
        .collect();
    provision(root, &specs, from, to).unwrap();
}

/// Writes `n` realistic cases as they first travel (intake, materials notice,
/// signed draft, acceptance and push, and the evaluation as a signed commit)
/// made at the acceptance office into `dir`'s store, 1,000 per transaction.
fn fill(acceptance_dir: &Path, target_dir: &Path, n: usize) {
    let acceptance = LocalNode::open(acceptance_dir).unwrap();
    let key = acceptance.key().clone();
    let facts = OfficeFacts {
        office: ACCEPTANCE.into(),
        role: Role::Township,
        division: ACCEPTANCE.into(),
    };
    let op = Operator::parse("窗口01").unwrap();
    let day = Timestamp::now().china_date() - chrono::Days::new(1);
    let at = Timestamp::start_of_china_date(day);
    drop(acceptance);
    let target = LocalNode::open(target_dir).unwrap();
    let mut made = 0;
    while made < n {
        // Building a case (intake, two signed transitions) is independent per
        // case: on all cores, so a 100,000-case run spends its time syncing.
        use rayon::prelude::*;
        let mut batch: Vec<_> = (made..(made + 1000).min(n))
            .into_par_iter()
            .map(|i| {
                // One person per case, as a county's registry has (a birth
                // date per thousand cases): the domicile county's offices read
                // the other cases of a person with several (duplicates), which
                // real populations rarely have.
                let born = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap()
                    + chrono::Days::new((i / 1000) as u64);
                let first17 = format!("130102{}{:03}", born.format("%Y%m%d"), i % 1000);
                let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
                let form = IntakeForm {
                    name: "张建国".into(),
                    resident_id: id.clone(),
                    hukou_township: "130102001".into(),
                    certificate: format!("{id}44"),
                    dibao: true,
                    subsidy_kinds: vec!["living".into()],
                    phone: "13800000000".into(),
                    address: "广州市天河区五山路".into(),
                    ..IntakeForm::default()
                };
                let intake = form.validate(day).unwrap();
                let r = (i as u32).to_be_bytes();
                let case = CaseId::new(ACCEPTANCE, day, r).unwrap();
                let signer = SigningOffice {
                    key: &key,
                    facts: facts.clone(),
                };
                let (mut doc, _) = CaseDocument::create(&case, &intake, &signer, &op, at).unwrap();
                // Accepted and pushed (the bench stores no scans: their fetch
                // is another measurement, so acceptance is signed without the
                // materials guard), then the applicant's evaluation as a signed
                // commit: a case as it first travels, every change signed.
                for (k, to) in [Stage::Accepted, Stage::Pushed].into_iter().enumerate() {
                    doc.apply_unguarded(
                        to,
                        &signer,
                        &op,
                        Timestamp(at.0 + 60_000 * (k as i64 + 1)),
                        &Payload::default(),
                    )
                    .unwrap();
                }
                doc.record_evaluation(&signer, &op, Timestamp(at.0 + 180_000), 5, "满意")
                    .unwrap();
                let meta = target.meta_of(&doc).unwrap();
                let route = tongban_replica::route_of(&case, &doc).unwrap();
                (case, doc, meta, route)
            })
            .collect();
        let built = batch.len();
        target
            .store()
            .write(|tx| {
                for (case, doc, meta, route) in batch.iter_mut() {
                    let am = doc.automerge_mut().document();
                    tongban_replica::put_case(tx, case, am, meta, route)?;
                }
                Ok(())
            })
            .unwrap();
        made += built;
    }
}

/// The same protocol between two replicas in one process: the floor.
fn floor(hub_dir: &Path, fresh_dir: &Path, n: u64) -> Duration {
    let open = |dir: &Path| {
        let node = LocalNode::open(dir).unwrap();
        let key = Arc::new(node.key().clone());
        let office = node.office().clone();
        let authority = node.authority().unwrap();
        let calendar = Arc::new(node.calendar().clone());
        let secret = node.resident_secret();
        drop(node);
        let store = Arc::new(Store::open(dir, &StoreOptions::default()).unwrap());
        let replica = Replica::new(store, calendar.clone(), secret, None).unwrap();
        let sync = SyncNode::new(
            SyncConfig {
                office: office.clone(),
                key,
                authority,
                calendar,
                limits: Limits::default(),
            },
            &replica,
        )
        .unwrap();
        (office, replica, sync)
    };
    let (hub_office, mut hub_store, mut hub) = open(hub_dir);
    let (fresh_office, mut fresh_store, mut fresh) = open(fresh_dir);
    let start = Instant::now();
    let now = Timestamp::now();
    let a = hub.connect(&hub_store, fresh_office, now).unwrap();
    let b = fresh.connect(&fresh_store, hub_office, now).unwrap();
    loop {
        let mut moved = false;
        while let Some(t) = hub.poll_transmit() {
            fresh
                .handle_message(&mut fresh_store, b, &t.bytes, now)
                .unwrap();
            moved = true;
        }
        while let Some(t) = fresh.poll_transmit() {
            hub.handle_message(&mut hub_store, a, &t.bytes, now)
                .unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let elapsed = start.elapsed();
    let held = fresh_store.inner().stats().unwrap().cases;
    assert_eq!(held, n, "the in-process sync did not deliver everything");
    elapsed
}

async fn over_quic(root: &Path, hub_dir: &Path, fresh_dir: &Path, n: u64) -> Duration {
    let options = StartOptions {
        clock: Clock::System,
        control_api: false,
        min_backoff: Duration::from_millis(20),
        ..StartOptions::default()
    };
    let config = |dir: &Path, up: Option<std::net::SocketAddr>| {
        NodeConfig::loopback(dir, up.map(|address| (HUB, address)))
    };
    let _ = root;
    let hub = Daemon::start(&config(hub_dir, None), options.clone())
        .await
        .unwrap();
    let start = Instant::now();
    let fresh = Daemon::start(&config(fresh_dir, Some(hub.listen_addr())), options)
        .await
        .unwrap();
    let handle = fresh.handle();
    loop {
        let held = handle
            .exec(|node, _| node.store().stats().map(|s| s.cases).unwrap_or(0))
            .await
            .unwrap();
        if held == n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "QUIC sync stalled at {held} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    fresh.shutdown().await.unwrap();
    hub.shutdown().await.unwrap();
    elapsed
}

async fn latency(rounds: usize) -> Vec<Duration> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let specs: Vec<(&str, Role, &str)> = CHAIN.iter().map(|(i, r, d, _)| (*i, *r, *d)).collect();
    init_offices(root, &specs);
    let options = StartOptions {
        clock: Clock::System,
        control_api: false,
        min_backoff: Duration::from_millis(20),
        ..StartOptions::default()
    };
    let mut nodes: std::collections::BTreeMap<&str, Daemon> = Default::default();
    for (id, _, _, up) in CHAIN {
        let config = NodeConfig::loopback(
            &root.join(id),
            up.map(|hub| (hub, nodes[hub].listen_addr())),
        );
        nodes.insert(id, Daemon::start(&config, options.clone()).await.unwrap());
    }
    let stage_at = |office: &str, case: &CaseId| {
        let case = case.clone();
        let handle = nodes[office].handle();
        async move {
            handle
                .exec(move |node, _| node.case(&case).ok().and_then(|d| d.stage().ok().flatten()))
                .await
                .unwrap()
        }
    };
    let mut out = Vec::new();
    for i in 0..rounds {
        // A pushed case, received at the domicile: then time the initial review
        // from the domicile office to the acceptance office.
        let first17 = format!("1301021968051{:04}", i);
        let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
        let form = IntakeForm {
            name: "王五".into(),
            resident_id: id.clone(),
            hukou_township: "130102001".into(),
            certificate: format!("{id}62"),
            dibao: true,
            subsidy_kinds: vec!["living".into()],
            ..IntakeForm::default()
        };
        let case = nodes[ACCEPTANCE]
            .handle()
            .exec(move |node, now| {
                let op = Operator::parse("窗口01").unwrap();
                let made = node.new_case(&form, &op, now).unwrap();
                for (code, _) in &made.notice {
                    node.attach_reader(
                        &made.case_id,
                        &b"scan"[..],
                        "s.jpg",
                        code,
                        "image/jpeg",
                        &op,
                        now,
                    )
                    .unwrap();
                }
                node.act(
                    &made.case_id,
                    Stage::Accepted,
                    &Payload::default(),
                    &op,
                    now,
                )
                .unwrap();
                node.act(&made.case_id, Stage::Pushed, &Payload::default(), &op, now)
                    .unwrap();
                made.case_id
            })
            .await
            .unwrap();
        while stage_at(ACCEPTANCE, &case).await != Some(Stage::Received) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let id = case.clone();
        let start = Instant::now();
        nodes["130102001"]
            .handle()
            .exec(move |node, now| {
                let op = Operator::parse("初审01").unwrap();
                let payload = Payload {
                    opinion: "同意".into(),
                    outcome: Some(Outcome::Approve),
                    ..Payload::default()
                };
                node.act(&id, Stage::InitialReviewed, &payload, &op, now)
                    .unwrap();
            })
            .await
            .unwrap();
        while stage_at(ACCEPTANCE, &case).await != Some(Stage::InitialReviewed) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        out.push(start.elapsed());
    }
    for (_, daemon) in nodes {
        daemon.shutdown().await.unwrap();
    }
    out
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let sizes: Vec<usize> = std::env::var("TONGBAN_BENCH_DOCS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("QUIC initial sync, hub → fresh node, loopback (floor: same protocol in-process)");
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12} {:>7}",
        "docs", "build s", "floor s", "floor doc/s", "QUIC doc/s", "ratio"
    );
    for n in sizes {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        init_offices(
            root,
            &[
                (HUB, Role::Hub, "00"),
                (ACCEPTANCE, Role::Township, ACCEPTANCE),
                // The fresh node is the domicile county's DPF: on every case's
                // route, and signing no receipt, so that the figure is the
                // initial sync alone (the domicile township would also sign a
                // `received` for each pushed case).
                (FRESH, Role::CountyDpf, "130102"),
                ("floor-130102-dpf", Role::CountyDpf, "130102"),
            ],
        );
        let built = Instant::now();
        fill(&root.join(ACCEPTANCE), &root.join(HUB), n);
        let build = built.elapsed();
        // For a profiler to attach to the sync alone (e.g. `perf record -p`).
        eprintln!("built {n} documents in {:.1} s", build.as_secs_f64());
        // `TONGBAN_BENCH_QUIC_ONLY=1` skips the floor, for a profiler attached
        // to the QUIC sync alone (the ratio column is then meaningless).
        let floor_time = if std::env::var_os("TONGBAN_BENCH_QUIC_ONLY").is_some() {
            Duration::from_secs(1)
        } else {
            floor(&root.join(HUB), &root.join("floor-130102-dpf"), n as u64)
        };
        eprintln!("floor done");
        let quic_time = runtime.block_on(over_quic(
            root,
            &root.join(HUB),
            &root.join(FRESH),
            n as u64,
        ));
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "{:>8} {:>10.1} {:>10.2} {:>12.0} {:>12.0} {:>6.2}×",
            n,
            build.as_secs_f64(),
            floor_time.as_secs_f64(),
            rate(floor_time),
            rate(quic_time),
            quic_time.as_secs_f64() / floor_time.as_secs_f64()
        );
    }
    let mut lat = runtime.block_on(latency(20));
    lat.sort();
    let hubs = 5.0;
    let median = lat[lat.len() / 2];
    let worst = lat[lat.len() - 1];
    println!(
        "\none transition, domicile → acceptance through {hubs} hubs (20 rounds): median {:.1} ms ({:.1} ms per hub), worst {:.1} ms ({:.1} ms per hub)",
        median.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3 / hubs,
        worst.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3 / hubs
    );
}
