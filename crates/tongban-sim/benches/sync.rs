//! The sync protocol's benchmark: two in-memory endpoints of the real protocol
//! (`SyncNode` + `MemStore` each, frames pumped between them in-process) beside
//! the floor of plain Automerge sync of the same documents, in the same run.
//!
//! ```text
//! cargo bench -p tongban-sim --bench sync                      # 10,000 and 100,000
//! TONGBAN_BENCH_SYNC_DOCS=2000,5000 cargo bench -p tongban-sim --bench sync
//! ```
//!
//! Documents are real case documents of the simulated world (`world::create_case`:
//! intake, the domicile policy's materials notice), taken to `pushed` by their
//! acceptance township: three signed transitions each. The sender is a county hub
//! holding them; the receiver is the county's DPF node, on every route, holding
//! nothing (a new office node's first sync). Reconnect: both hold the same
//! documents, 100 of them gain a signed `received` at the hub, and the DPF
//! reconnects from its stored cursor; five rounds, each with other documents, of
//! which the median is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use automerge::Automerge;
use automerge::sync::{State, SyncDoc};
use tongban_case::{CaseDocument, Payload};
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_sim::rng::Rng;
use tongban_sim::world::{Office, World, create_case, epoch, resident_id};
use tongban_sync::node::{Config, Limits, SessionId, SyncNode};
use tongban_sync::route::{CaseRoute, CountyOffice, Place};
use tongban_sync::store::{MemStore, StoreWrite, SyncStore};

/// The allocator the `tongban` binary runs with (`node/src/main.rs`); the floor
/// in the same process runs with it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A case as built: its full save, so that 100,000 of them fit in memory beside
/// the two stores.
struct Case {
    id: CaseId,
    route: CaseRoute,
    saved: Vec<u8>,
}

fn office_at(world: &World, place: Place) -> &Office {
    &world.offices[world.at(&place).unwrap()]
}

/// `n` cases accepted at the townships of county 130102, with domicile in the
/// same county, taken to `pushed`; built on all cores.
fn build_cases(world: &World, n: usize) -> Vec<Case> {
    let county = DivisionCode::parse("130102").unwrap();
    let townships: Vec<&Office> = world
        .offices
        .iter()
        .filter(|o| matches!(o.place, Place::Township(t) if t.as_str().starts_with("130102")))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = n.div_ceil(threads);
    let operator = Operator::parse("bench-clerk").unwrap();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let townships = &townships;
                let operator = &operator;
                scope.spawn(move || {
                    let mut rng = Rng::new(t as u64 + 1);
                    let mut out = Vec::new();
                    for i in (t * chunk)..((t + 1) * chunk).min(n) {
                        let acceptance = townships[i % townships.len()];
                        let domicile = townships[(i + 1 + (i / 3) % 2) % townships.len()];
                        let at = Timestamp(epoch().0 + (i as i64 % 1000) * 1000);
                        // The index as the random part: 100,000 random 30-bit parts
                        // would collide.
                        let id = CaseId::new(
                            &acceptance.division,
                            at.china_date(),
                            (i as u32).to_be_bytes(),
                        )
                        .unwrap();
                        let resident = resident_id(&mut rng, &domicile.division);
                        let (mut document, _) =
                            create_case(acceptance, &id, &domicile.division, &resident, at)
                                .unwrap();
                        for (k, stage) in [Stage::Accepted, Stage::Pushed].into_iter().enumerate() {
                            document
                                .apply(
                                    stage,
                                    &acceptance.signing(),
                                    operator,
                                    Timestamp(at.0 + 60_000 * (k as i64 + 1)),
                                    &Payload::default(),
                                )
                                .unwrap();
                        }
                        let route = CaseRoute::new(
                            DivisionCode::parse(&acceptance.division).unwrap(),
                            DivisionCode::parse(&domicile.division).unwrap(),
                        )
                        .unwrap();
                        assert_eq!(route.domicile_county(), county);
                        out.push(Case {
                            id,
                            route,
                            saved: document.automerge_mut().document().save(),
                        });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

struct Endpoint {
    node: SyncNode,
    store: MemStore,
}

fn endpoint(world: &World, office: &Office, salt: u8) -> Endpoint {
    let mut store = MemStore::new([salt; 16]);
    store
        .commit(vec![StoreWrite::Directory {
            bytes: world.directory.clone(),
        }])
        .unwrap();
    let config = Config {
        office: office.id.clone(),
        key: office.key.clone(),
        authority: world.authority,
        calendar: world.calendar.clone(),
        limits: Limits::default(),
    };
    Endpoint {
        node: SyncNode::new(config, &store).unwrap(),
        store,
    }
}

/// Connects the two endpoints and pumps frames between them until both are
/// idle. Returns the bytes that crossed and the frames.
fn sync(a: &mut Endpoint, b: &mut Endpoint, now: Timestamp) -> (u64, u64) {
    let sa = a
        .node
        .connect(&a.store, b.node.office().clone(), now)
        .unwrap();
    let sb = b
        .node
        .connect(&b.store, a.node.office().clone(), now)
        .unwrap();
    let (mut bytes, mut frames) = (0u64, 0u64);
    loop {
        let mut moved = false;
        while let Some(t) = a.node.poll_transmit() {
            moved = true;
            bytes += t.bytes.len() as u64;
            frames += 1;
            b.node
                .handle_message(&mut b.store, sb, &t.bytes, now)
                .unwrap();
        }
        while let Some(t) = b.node.poll_transmit() {
            moved = true;
            bytes += t.bytes.len() as u64;
            frames += 1;
            a.node
                .handle_message(&mut a.store, sa, &t.bytes, now)
                .unwrap();
        }
        while a.node.poll_event().is_some() {}
        while b.node.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
    assert!(a.node.is_idle(&a.store).unwrap() && b.node.is_idle(&b.store).unwrap());
    disconnect(a, sa);
    disconnect(b, sb);
    (bytes, frames)
}

fn disconnect(e: &mut Endpoint, session: SessionId) {
    e.node.disconnect(session);
}

/// Plain Automerge sync of each document to an empty peer: the floor.
fn automerge_floor(cases: &[Case]) -> (Duration, u64) {
    let mut elapsed = Duration::ZERO;
    let mut bytes = 0u64;
    for case in cases {
        // Loading the sender's copy is not part of the sync.
        let mut doc = Automerge::load(&case.saved).unwrap();
        let start = Instant::now();
        let mut theirs = Automerge::new();
        let (mut ours_state, mut their_state) = (State::new(), State::new());
        loop {
            let mut moved = false;
            if let Some(m) = doc.generate_sync_message(&mut ours_state) {
                let encoded = m.encode();
                bytes += encoded.len() as u64;
                let m = automerge::sync::Message::decode(&encoded).unwrap();
                theirs.receive_sync_message(&mut their_state, m).unwrap();
                moved = true;
            }
            if let Some(m) = theirs.generate_sync_message(&mut their_state) {
                let encoded = m.encode();
                bytes += encoded.len() as u64;
                let m = automerge::sync::Message::decode(&encoded).unwrap();
                doc.receive_sync_message(&mut ours_state, m).unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
        elapsed += start.elapsed();
        assert_eq!(theirs.get_heads(), doc.get_heads());
    }
    (elapsed, bytes)
}

/// CPU time this process has used (user + system), from `/proc/self/stat`;
/// `None` where there is no procfs.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Initial sync of `n` documents, beside the floor. Returns the synced endpoints.
fn initial(world: &World, cases: &[Case]) -> (Endpoint, Endpoint) {
    let n = cases.len();
    let county = DivisionCode::parse("130102").unwrap();
    let hub_office = office_at(world, Place::CountyHub(county));
    let dpf_office = office_at(world, Place::CountyOffice(county, CountyOffice::Dpf));
    let mut hub = endpoint(world, hub_office, 1);
    let mut dpf = endpoint(world, dpf_office, 2);
    for case in cases.iter() {
        // The hub's store keeps full saves, as the real store does.
        hub.store
            .commit(vec![StoreWrite::case(
                case.id.clone(),
                case.route,
                Automerge::load(&case.saved).unwrap(),
                Some(case.saved.clone()),
            )])
            .unwrap();
    }
    let now = Timestamp(epoch().0 + 3_600_000);
    let cpu_before = cpu_time();
    let start = Instant::now();
    let (bytes, frames) = sync(&mut hub, &mut dpf, now);
    let ours = start.elapsed();
    // How many cores the protocol kept busy: below the core count, it waited.
    let cores = cpu_before
        .zip(cpu_time())
        .map(|(a, b)| (b - a).as_secs_f64() / ours.as_secs_f64());
    assert_eq!(dpf.store.len(), n);
    let (floor, floor_bytes) = automerge_floor(cases);
    println!(
        "\ninitial sync, {n} docs: protocol {:.0} docs/s ({:.1?}, {bytes} bytes in {frames} frames, \
         {} cores busy); automerge sync floor {:.0} docs/s ({:.1?}, {floor_bytes} bytes); \
         ratio {:.2}x the floor's time",
        per_sec(n, ours),
        ours,
        cores.map_or("?".to_string(), |c| format!("{c:.2}")),
        per_sec(n, floor),
        floor,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
    (hub, dpf)
}

/// Changes `k` documents at the hub (the domicile township's signed `received`)
/// and times the DPF's reconnect. Returns (time, bytes).
fn reconnect(
    world: &World,
    hub: &mut Endpoint,
    dpf: &mut Endpoint,
    cases: &[Case],
    k: usize,
    round: usize,
) -> (Duration, u64) {
    let operator = Operator::parse("bench-clerk").unwrap();
    let step = (cases.len() / k).max(1);
    // Each round changes other documents: a case takes `received` once.
    for case in cases.iter().skip(round).step_by(step).take(k) {
        let domicile = office_at(world, Place::Township(case.route.domicile()));
        let doc = hub.store.load(&case.id).unwrap().unwrap();
        let mut document = CaseDocument::load(&doc.save()).unwrap();
        document
            .apply(
                Stage::Received,
                &domicile.signing(),
                &operator,
                Timestamp(epoch().0 + 2 * 3_600_000),
                &Payload::default(),
            )
            .unwrap();
        hub.store.put_local(
            &case.id,
            case.route,
            document.automerge_mut().document().clone(),
        );
    }
    let now = Timestamp(epoch().0 + 3 * 3_600_000);
    let start = Instant::now();
    let (bytes, _) = sync(hub, dpf, now);
    (start.elapsed(), bytes)
}

/// Reconnects timed at each size (the median is reported).
const RECONNECT_ROUNDS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let sizes: Vec<usize> = std::env::var("TONGBAN_BENCH_SYNC_DOCS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let world = World::standard();
    let changed = 100;
    let small = 1_000;
    let most = sizes.iter().copied().max().unwrap_or(small).max(small);
    let started = Instant::now();
    let cases = build_cases(&world, most);
    let saved: usize = cases.iter().map(|c| c.saved.len()).sum();
    println!(
        "{most} documents built in {:.1?}, {} bytes saved on average",
        started.elapsed(),
        saved / most
    );
    let mut reconnects = Vec::new();
    for n in std::iter::once(small).chain(sizes.iter().copied()) {
        let (mut hub, mut dpf) = initial(&world, &cases[..n]);
        // A reconnect takes tens of milliseconds, where this VM's noise is
        // large: the median of several, each with its own changed documents.
        let mut rounds: Vec<(Duration, u64)> = (0..RECONNECT_ROUNDS)
            .map(|round| reconnect(&world, &mut hub, &mut dpf, &cases[..n], changed, round))
            .collect();
        rounds.sort();
        reconnects.push((n, rounds[rounds.len() / 2]));
    }
    println!();
    let (_, (base_time, base_bytes)) = reconnects[0];
    for (held, (time, bytes)) in &reconnects {
        println!(
            "reconnect, {changed} changed of {held} held (median of {RECONNECT_ROUNDS}): {time:.1?}, {bytes} bytes; \
             {:.2}x the time and {:.2}x the bytes of {changed} of {small}",
            time.as_secs_f64() / base_time.as_secs_f64(),
            *bytes as f64 / base_bytes as f64
        );
    }
}
