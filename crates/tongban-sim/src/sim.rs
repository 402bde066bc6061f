//! The seeded scheduler: virtual time, a faulty network, crashes, clock skew, and
//! the offices' clerks driving cases through the stage machine.
//!
//! One run has two phases. During **chaos** the network loses, duplicates, delays
//! and so reorders frames, links are partitioned, nodes crash (their `SyncNode` and
//! open store are dropped; the store's directory stays) and restart from the store,
//! and every node's clock is skewed. Then everything **heals**: links come back,
//! crashed nodes restart, frames arrive in order, and the run continues until
//! nothing is in flight, every node is idle and no clerk has anything left to do.
//! When the only thing left is a local case's publicity period (7 calendar days),
//! virtual time skips to its end rather than ticking through the week.
//! [`crate::check`] then checks the invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tongban_case::document::AwardLine;
use tongban_case::{CaseDocument, Outcome as ReviewOutcome, Payload};
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Operator, Timestamp};
use tongban_domain::policy::{Policy, SubsidyKind};
use tongban_domain::stage::Stage;
use tongban_ledger::transition::SignedTransition;
use tongban_sync::admit;
use tongban_sync::node::{Config, Event, Limits, SessionId, SyncNode};
use tongban_sync::route::{CaseRoute, CountyOffice, Place};
use tongban_sync::store::{StoreWrite, SyncStore};

use crate::rng::Rng;
use crate::world::{Office, World, actor_for, attach_material, create_case, epoch, resident_id};
use tongban_replica::Replica as RedbStore;

/// What can go wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a frame is lost (chaos phase).
    pub loss: f64,
    /// Probability that a frame is delivered twice (chaos phase).
    pub duplicate: f64,
    /// Largest one-way delay in ms; delays are uniform, so frames reorder.
    pub max_delay_ms: i64,
    /// Number of link partitions during chaos.
    pub partitions: usize,
    /// Number of node crashes during chaos.
    pub crashes: usize,
    /// Largest clock skew of a node, in ms, either way.
    pub max_skew_ms: i64,
}

/// One simulation run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed: everything else follows from it.
    pub seed: u64,
    /// Cases started.
    pub cases: usize,
    /// Length of the chaos phase, virtual ms.
    pub chaos_ms: i64,
    /// Longest the healed phase may run before the run is declared stuck.
    pub heal_limit_ms: i64,
    /// Faults of the chaos phase.
    pub faults: Faults,
    /// Record a trace of notable steps (printed for a failing seed).
    pub trace: bool,
}

impl SimConfig {
    /// The configuration of the CI campaign for `seed`: small, so that hundreds of
    /// seeds run in minutes, with every fault present.
    pub fn for_seed(seed: u64) -> SimConfig {
        let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
        SimConfig {
            seed,
            cases: 2 + rng.below(3) as usize,
            chaos_ms: 3 * Timestamp::HOUR_MS,
            heal_limit_ms: 48 * Timestamp::HOUR_MS,
            faults: Faults {
                loss: [0.0, 0.02, 0.1][rng.below(3) as usize],
                duplicate: [0.0, 0.02, 0.05][rng.below(3) as usize],
                max_delay_ms: [5, 200, 3_000][rng.below(3) as usize],
                partitions: rng.below(4) as usize,
                crashes: rng.below(3) as usize,
                max_skew_ms: 120_000,
            },
            trace: false,
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Frames delivered.
    pub delivered: u64,
    /// Frames lost to faults.
    pub lost: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames dropped because their connection was gone.
    pub dropped: u64,
    /// Crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Transitions signed by clerks.
    pub clerk_transitions: u64,
    /// Receipts signed by nodes.
    pub receipts: u64,
    /// Virtual ms at the end.
    pub end_ms: i64,
}

/// How a case's clerks decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Approved all the way, then suspended and resumed once.
    Approve,
    /// Returned once by the domicile township, then approved.
    ReturnAtTownship,
    /// Returned once by the county DPF, then approved.
    ReturnAtDpf,
    /// Rejected by the county DPF.
    RejectAtDpf,
    /// Withdrawn before acceptance.
    Withdraw,
}

/// A case the simulation started.
#[derive(Debug, Clone)]
pub struct CaseTrack {
    /// The case.
    pub id: CaseId,
    /// Its route.
    pub route: CaseRoute,
    /// How its clerks decide.
    pub plan: Plan,
    /// Hashes of every transition a clerk signed.
    pub made: BTreeSet<[u8; 32]>,
    /// BLAKE3 hashes of the materials the acceptance office attached.
    pub materials: Vec<[u8; 32]>,
    /// The applicant's personal data as written at intake (name, ID number,
    /// certificate number, phone, address): what must never reach a
    /// supervisor (invariant 10).
    pub personal: Vec<String>,
}

#[derive(Debug)]
enum Action {
    NewCase,
    Partition(usize),
    Unpartition(usize),
    Crash(usize),
    Restart(usize),
    ClerkTick,
}

#[derive(Debug)]
struct Packet {
    link: usize,
    epoch: u64,
    to_parent: bool,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Link {
    child: usize,
    parent: usize,
    partitioned: bool,
    epoch: u64,
    sessions: Option<(SessionId, SessionId)>,
    fifo: [i64; 2],
}

struct Slot {
    office: Office,
    dir: PathBuf,
    skew: i64,
    secret: [u8; 32],
    store: Option<RedbStore>,
    node: Option<SyncNode>,
    sessions: BTreeMap<SessionId, usize>,
    seen: BTreeMap<CaseId, BTreeSet<[u8; 32]>>,
    /// Cases in which the office's clerk found nothing to do, at these heads.
    nothing_to_do: BTreeMap<CaseId, Vec<[u8; 32]>>,
}

/// A simulation in progress.
pub struct Sim {
    /// The configuration.
    pub config: SimConfig,
    /// The world.
    pub world: World,
    rng: Rng,
    now: i64,
    healed: bool,
    slots: Vec<Slot>,
    links: Vec<Link>,
    packets: BTreeMap<(i64, u64), Packet>,
    agenda: BTreeMap<(i64, u64), Action>,
    order: u64,
    /// The earliest time a clerk waits for (the end of a publicity period).
    wait_until: Option<i64>,
    /// The cases started.
    pub cases: Vec<CaseTrack>,
    /// Invariant violations found while running.
    pub violations: Vec<String>,
    /// Notable steps, when tracing.
    pub trace: Vec<String>,
    /// Counters.
    pub stats: SimStats,
    _root: tempfile::TempDir,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Why a simulation could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// No temporary directory.
    #[error("temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
    /// A store did not open.
    #[error("store: {0}")]
    Store(#[from] tongban_store::StoreError),
    /// A sync node could not start.
    #[error("sync node: {0}")]
    Sync(#[from] tongban_sync::node::SyncError),
}

/// Where stores live: memory-backed `/dev/shm` when there is one, so a run costs no
/// disk flushes; the system temporary directory otherwise.
fn temp_root() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("tongban-sim-")
            .tempdir_in(shm)
    {
        return Ok(dir);
    }
    tempfile::Builder::new().prefix("tongban-sim-").tempdir()
}

const CLERK_TICK_MS: i64 = 10 * 60 * 1000;
const HEALED_DELAY_MS: i64 = 20;

impl Sim {
    /// Sets up the world, one store per node, and the agenda of the chaos phase.
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let world = World::standard();
        let mut rng = Rng::new(config.seed);
        let root = temp_root()?;
        let mut slots = Vec::new();
        for (idx, office) in world.offices.iter().enumerate() {
            let dir = root.path().join(format!("node-{idx}"));
            slots.push(Slot {
                office: office.clone(),
                dir,
                skew: rng.range(-config.faults.max_skew_ms, config.faults.max_skew_ms),
                secret: rng.bytes32(),
                store: None,
                node: None,
                sessions: BTreeMap::new(),
                seen: BTreeMap::new(),
                nothing_to_do: BTreeMap::new(),
            });
        }
        let links = world
            .links
            .iter()
            .map(|(child, parent)| Link {
                child: *child,
                parent: *parent,
                partitioned: false,
                epoch: 0,
                sessions: None,
                fifo: [0, 0],
            })
            .collect();
        let mut sim = Sim {
            config,
            world,
            rng,
            now: epoch().0,
            healed: false,
            slots,
            links,
            packets: BTreeMap::new(),
            agenda: BTreeMap::new(),
            order: 0,
            wait_until: None,
            cases: Vec::new(),
            violations: Vec::new(),
            trace: Vec::new(),
            stats: SimStats::default(),
            _root: root,
        };
        for idx in 0..sim.slots.len() {
            sim.start_node(idx)?;
        }
        for link in 0..sim.links.len() {
            sim.connect(link);
        }
        let start = sim.now;
        let chaos = sim.config.chaos_ms;
        for _ in 0..sim.config.cases {
            let at = start + sim.rng.range(0, chaos / 2);
            sim.schedule(at, Action::NewCase);
        }
        for _ in 0..sim.config.faults.partitions {
            let link = sim.rng.below(sim.links.len() as u64) as usize;
            let at = start + sim.rng.range(0, chaos);
            let until = at + sim.rng.range(60_000, 45 * 60_000);
            sim.schedule(at, Action::Partition(link));
            sim.schedule(until.min(start + chaos), Action::Unpartition(link));
        }
        for _ in 0..sim.config.faults.crashes {
            let node = sim.rng.below(sim.slots.len() as u64) as usize;
            let at = start + sim.rng.range(0, chaos);
            let until = at + sim.rng.range(10_000, 30 * 60_000);
            sim.schedule(at, Action::Crash(node));
            sim.schedule(until.min(start + chaos), Action::Restart(node));
        }
        sim.schedule(start + CLERK_TICK_MS, Action::ClerkTick);
        Ok(sim)
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.config.trace {
            let t = (self.now - epoch().0) as f64 / 1000.0;
            let line = format!("[{t:>10.3}s] {}", line());
            // SIM_TRACE_LIVE=1 prints the trace as it happens: for a seed that
            // never ends.
            if std::env::var_os("SIM_TRACE_LIVE").is_some() {
                eprintln!("{line}");
            }
            self.trace.push(line);
        }
    }

    fn schedule(&mut self, at: i64, action: Action) {
        self.order += 1;
        self.agenda.insert((at, self.order), action);
    }

    fn local(&self, idx: usize) -> Timestamp {
        Timestamp(self.now + self.slots[idx].skew)
    }

    fn start_node(&mut self, idx: usize) -> Result<(), SimError> {
        let slot = &self.slots[idx];
        let store = RedbStore::open(
            &slot.dir,
            self.world.calendar.clone(),
            slot.secret,
            &self.world.directory,
        )?;
        let config = Config {
            office: slot.office.id.clone(),
            key: slot.office.key.clone(),
            authority: self.world.authority,
            calendar: self.world.calendar.clone(),
            limits: Limits {
                batch_entries: 64,
                window: 2,
                stall_ms: 20_000,
                // Small frames: a lost frame loses a few documents, not all.
                docs_frame_bytes: 16 << 10,
                max_material_bytes: 8 << 20,
                material_window: 2,
                material_retry_ms: 2_000,
            },
        };
        let mut store = store;
        if matches!(slot.office.place, tongban_sync::route::Place::Supervisor(_)) {
            store.supervise()?;
        }
        let node = SyncNode::new(config, &store)?;
        let slot = &mut self.slots[idx];
        slot.store = Some(store);
        slot.node = Some(node);
        slot.sessions.clear();
        Ok(())
    }

    fn is_up(&self, idx: usize) -> bool {
        self.slots[idx].node.is_some()
    }

    fn connect(&mut self, link: usize) {
        let (child, parent) = (self.links[link].child, self.links[link].parent);
        if self.links[link].partitioned
            || self.links[link].sessions.is_some()
            || !self.is_up(child)
            || !self.is_up(parent)
        {
            return;
        }
        let parent_office = self.slots[parent].office.id.clone();
        let child_office = self.slots[child].office.id.clone();
        let (now_c, now_p) = (self.local(child), self.local(parent));
        let sc = {
            let slot = &mut self.slots[child];
            let (Some(node), Some(store)) = (slot.node.as_mut(), slot.store.as_ref()) else {
                return;
            };
            node.connect(store, parent_office, now_c)
        };
        let sp = {
            let slot = &mut self.slots[parent];
            let (Some(node), Some(store)) = (slot.node.as_mut(), slot.store.as_ref()) else {
                return;
            };
            node.connect(store, child_office, now_p)
        };
        match (sc, sp) {
            (Ok(sc), Ok(sp)) => {
                self.links[link].epoch += 1;
                self.links[link].sessions = Some((sc, sp));
                self.links[link].fifo = [0, 0];
                self.slots[child].sessions.insert(sc, link);
                self.slots[parent].sessions.insert(sp, link);
                self.note(|| format!("link {child}-{parent} up"));
                self.flush(child);
                self.flush(parent);
            }
            (a, b) => {
                self.violations
                    .push(format!("connect failed on link {link}: {a:?} {b:?}"));
            }
        }
    }

    fn disconnect(&mut self, link: usize) {
        let Some((sc, sp)) = self.links[link].sessions.take() else {
            return;
        };
        self.links[link].epoch += 1;
        let (child, parent) = (self.links[link].child, self.links[link].parent);
        for (idx, sid) in [(child, sc), (parent, sp)] {
            if let Some(node) = self.slots[idx].node.as_mut() {
                node.disconnect(sid);
            }
            self.slots[idx].sessions.remove(&sid);
        }
        self.note(|| format!("link {child}-{parent} down"));
    }

    fn links_of(&self, idx: usize) -> Vec<usize> {
        (0..self.links.len())
            .filter(|l| self.links[*l].child == idx || self.links[*l].parent == idx)
            .collect()
    }

    fn crash(&mut self, idx: usize) {
        if !self.is_up(idx) {
            return;
        }
        for link in self.links_of(idx) {
            self.disconnect(link);
        }
        let slot = &mut self.slots[idx];
        slot.node = None;
        slot.store = None;
        slot.sessions.clear();
        self.stats.crashes += 1;
        let office = self.slots[idx].office.id.clone();
        self.note(|| format!("crash {office}"));
    }

    fn restart(&mut self, idx: usize) {
        if self.is_up(idx) {
            return;
        }
        if let Err(err) = self.start_node(idx) {
            self.violations.push(format!(
                "{} did not restart from its store: {err}",
                self.slots[idx].office.id
            ));
            return;
        }
        let office = self.slots[idx].office.id.clone();
        self.note(|| format!("restart {office}"));
        for link in self.links_of(idx) {
            self.connect(link);
        }
    }

    /// A node failed (a store error): record it and crash it, as a process would.
    fn fail(&mut self, idx: usize, what: &str, err: impl std::fmt::Display) {
        self.violations.push(format!(
            "{} failed in {what}: {err}",
            self.slots[idx].office.id
        ));
        self.crash(idx);
    }

    /// Drains a node's frames onto the network and its events into the checks.
    fn flush(&mut self, idx: usize) {
        loop {
            let Some(node) = self.slots[idx].node.as_mut() else {
                return;
            };
            let transmit = node.poll_transmit();
            let event = if transmit.is_none() {
                node.poll_event()
            } else {
                None
            };
            match (transmit, event) {
                (Some(t), _) => self.send(idx, t.session, t.bytes),
                (None, Some(e)) => self.on_event(idx, e),
                (None, None) => return,
            }
        }
    }

    fn send(&mut self, from: usize, session: SessionId, bytes: Vec<u8>) {
        let Some(&link) = self.slots[from].sessions.get(&session) else {
            self.stats.dropped += 1;
            return;
        };
        let to_parent = self.links[link].child == from;
        let epoch_now = self.links[link].epoch;
        if self.healed {
            let dir = usize::from(to_parent);
            let at = (self.now + HEALED_DELAY_MS).max(self.links[link].fifo[dir]);
            self.links[link].fifo[dir] = at;
            self.push_packet(at, link, epoch_now, to_parent, bytes);
            return;
        }
        let faults = self.config.faults;
        if self.rng.chance(faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.range(1, faults.max_delay_ms.max(1));
            self.push_packet(at, link, epoch_now, to_parent, bytes.clone());
        }
    }

    fn push_packet(&mut self, at: i64, link: usize, epoch: u64, to_parent: bool, bytes: Vec<u8>) {
        self.order += 1;
        self.packets.insert(
            (at, self.order),
            Packet {
                link,
                epoch,
                to_parent,
                bytes,
            },
        );
    }

    fn deliver(&mut self, packet: Packet) {
        let link = &self.links[packet.link];
        let Some((sc, sp)) = link.sessions else {
            self.stats.dropped += 1;
            return;
        };
        if link.epoch != packet.epoch {
            self.stats.dropped += 1;
            return;
        }
        let (to, session) = if packet.to_parent {
            (link.parent, sp)
        } else {
            (link.child, sc)
        };
        let now = self.local(to);
        let slot = &mut self.slots[to];
        let (Some(node), Some(store)) = (slot.node.as_mut(), slot.store.as_mut()) else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.delivered += 1;
        if let Err(err) = node.handle_message(store, session, &packet.bytes, now) {
            self.fail(to, "handle_message", err);
            return;
        }
        self.flush(to);
    }

    fn on_event(&mut self, idx: usize, event: Event) {
        match event {
            Event::CaseStored { case, .. } => self.observe(idx, &case),
            Event::ReceiptSigned { case, stage } => {
                self.stats.receipts += 1;
                let office = self.slots[idx].office.id.clone();
                self.note(|| format!("{office} signed {stage} for {}", case.short()));
                self.observe(idx, &case);
            }
            Event::Forked { case } => {
                self.violations
                    .push(format!("{}: case {case} forked", self.slots[idx].office.id));
            }
            Event::Refused { peer, case, reason } => {
                let office = self.slots[idx].office.id.clone();
                self.note(|| format!("{office} refused from {peer} ({case:?}): {reason}"));
            }
            Event::Closed { peer, reason, .. } => {
                let office = self.slots[idx].office.id.clone();
                self.note(|| format!("{office} closed session with {peer}: {reason}"));
            }
            _ => {}
        }
    }

    /// Checks that the node's copy of `case` has every signed transition it had
    /// before: no case goes backwards.
    fn observe(&mut self, idx: usize, case: &CaseId) {
        let Some(store) = self.slots[idx].store.as_ref() else {
            return;
        };
        let Ok(Some(doc)) = store.load(case) else {
            return;
        };
        let now: BTreeSet<[u8; 32]> = admit::transitions_of(&doc)
            .iter()
            .map(|bytes| *blake3::hash(bytes).as_bytes())
            .collect();
        let slot = &mut self.slots[idx];
        let before = slot.seen.entry(case.clone()).or_default();
        if !before.is_subset(&now) {
            let lost = before.difference(&now).count();
            self.violations.push(format!(
                "{}: case {case} went backwards: {lost} signed transition(s) it held are gone",
                slot.office.id
            ));
        }
        *before = now;
    }

    fn new_case(&mut self) {
        let townships = self.world.townships();
        let Some(&acceptance) = self.rng.pick(&townships) else {
            return;
        };
        let domicile = if self.rng.chance(0.25) {
            acceptance
        } else {
            *self.rng.pick(&townships).unwrap_or(&acceptance)
        };
        if !self.is_up(acceptance) {
            return;
        }
        let plan = match self.rng.below(10) {
            0..=3 => Plan::Approve,
            4 => Plan::ReturnAtTownship,
            5 | 6 => Plan::ReturnAtDpf,
            7 | 8 => Plan::RejectAtDpf,
            _ => Plan::Withdraw,
        };
        let office = self.slots[acceptance].office.clone();
        let domicile_code = self.slots[domicile].office.division.clone();
        let now = self.local(acceptance);
        let Ok(case_id) = CaseId::new(&office.division, now.china_date(), self.rng.bytes4()) else {
            return;
        };
        let resident = resident_id(&mut self.rng, &domicile_code);
        let (mut document, signed) =
            match create_case(&office, &case_id, &domicile_code, &resident, now) {
                Ok(made) => made,
                Err(err) => {
                    self.violations.push(format!("case creation failed: {err}"));
                    return;
                }
            };
        let (Ok(a), Ok(d)) = (
            DivisionCode::parse(&office.division),
            DivisionCode::parse(&domicile_code),
        ) else {
            return;
        };
        let Ok(route) = CaseRoute::new(a, d) else {
            return;
        };
        let material = case_material(&case_id);
        if let Some(bytes) = &material
            && let Err(err) = attach_material(&mut document, &office, "id_card", bytes, now)
        {
            self.violations
                .push(format!("attaching a material failed: {err}"));
            return;
        }
        let mut track = CaseTrack {
            id: case_id.clone(),
            route,
            plan,
            made: BTreeSet::new(),
            materials: material
                .iter()
                .map(|bytes| *blake3::hash(bytes).as_bytes())
                .collect(),
            personal: document
                .read()
                .map(|c| {
                    let mut personal = vec![
                        c.applicant.name,
                        c.applicant.resident_id,
                        c.applicant.phone,
                        c.applicant.address,
                    ];
                    personal.extend(c.certificate.map(|cert| cert.number));
                    personal
                })
                .unwrap_or_default(),
        };
        track.made.insert(signed.hash());
        self.cases.push(track);
        self.note(|| {
            format!(
                "{} starts case {case_id} for {domicile_code} ({plan:?})",
                office.id
            )
        });
        self.write_case(acceptance, &case_id, route, document);
        if let Some(bytes) = material {
            self.store_material(acceptance, &case_id, bytes);
        }
    }

    /// The acceptance office stores the scan its case references (as the clerk's
    /// attach does), right after the case: peers fetch it once they hold the case.
    fn store_material(&mut self, idx: usize, case: &CaseId, bytes: Vec<u8>) {
        let Some(store) = self.slots[idx].store.as_mut() else {
            return;
        };
        let hash = *blake3::hash(&bytes).as_bytes();
        let write = StoreWrite::Material {
            case: case.clone(),
            hash,
            bytes,
        };
        if let Err(err) = store.commit(vec![write]) {
            self.fail(idx, "storing a material", err);
        }
    }

    fn write_case(
        &mut self,
        idx: usize,
        case: &CaseId,
        route: CaseRoute,
        mut document: CaseDocument,
    ) {
        let doc = document.automerge_mut().document().clone();
        // Held at the acceptance office until the stage that releases it.
        let route = route.released(tongban_sync::admit::released(
            &tongban_sync::admit::transitions_of(&doc),
        ));
        let now = self.local(idx);
        // An office of the case attests it to supervisors with every write
        // once it left the draft stage, as a node's `LocalNode::save` does.
        let office = &self.world.offices[idx];
        let left_draft = tongban_sync::admit::transitions_of(&doc).iter().any(|t| {
            tongban_ledger::SignedTransition::decode(t).is_ok_and(|t| {
                !matches!(
                    t.transition.to,
                    tongban_domain::stage::Stage::Draft | tongban_domain::stage::Stage::Withdrawn
                )
            })
        });
        let mut writes = Vec::new();
        if left_draft
            && route.released(true).members().contains(&office.place)
            && let Ok(read) = document.read()
            && let Ok(signed) =
                tongban_case::supervision::attest(&read, &office.id, &office.key, now)
        {
            writes.push(StoreWrite::Attestation {
                case: case.clone(),
                office: office.id.clone(),
                at: now,
                domicile: route.domicile(),
                bytes: signed.encode(),
            });
        }
        writes.insert(0, StoreWrite::case(case.clone(), route, doc, None));
        let slot = &mut self.slots[idx];
        let (Some(node), Some(store)) = (slot.node.as_mut(), slot.store.as_mut()) else {
            return;
        };
        let result = store
            .commit(writes)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                node.handle_local_change(store, now)
                    .map_err(|e| e.to_string())
            });
        if let Err(err) = result {
            self.fail(idx, "a clerk's write", err);
            return;
        }
        self.observe(idx, case);
        self.flush(idx);
    }

    /// Every clerk looks at the cases waiting for their office and acts on some.
    /// Returns how many transitions were signed.
    fn clerk_tick(&mut self) -> usize {
        let mut acted = 0;
        for case_idx in 0..self.cases.len() {
            let track = self.cases[case_idx].clone();
            let mut members: Vec<usize> = track
                .route
                .members()
                .iter()
                .filter_map(|p| self.world.at(p))
                .collect();
            members.dedup();
            for idx in members {
                if !self.is_up(idx) {
                    continue;
                }
                let Some(store) = self.slots[idx].store.as_ref() else {
                    continue;
                };
                // A clerk who found nothing to do in a case looks again only when
                // the case changed.
                let Ok(Some(heads)) = store.heads(&track.id) else {
                    continue;
                };
                if self.slots[idx].nothing_to_do.get(&track.id) == Some(&heads) {
                    continue;
                }
                let Ok(Some(doc)) = store.load(&track.id) else {
                    continue;
                };
                let tips = admit::tip_stages(&doc);
                let [tip] = tips[..] else {
                    self.slots[idx]
                        .nothing_to_do
                        .insert(track.id.clone(), heads);
                    continue;
                };
                let chain: Vec<SignedTransition> = admit::transitions_of(&doc)
                    .iter()
                    .filter_map(|b| SignedTransition::decode(b).ok())
                    .collect();
                let returns = chain
                    .iter()
                    .filter(|t| t.transition.to == Stage::Returned)
                    .count();
                let suspended = chain.iter().any(|t| t.transition.to == Stage::Suspended);
                let approved = chain.iter().any(|t| t.transition.to == Stage::Decided);
                if tip == Stage::Publicized
                    && let Some(opens_at) = self.publicity_end(&track, &chain)
                    && self.now < opens_at
                {
                    // The village notice must run its whole period: come back then.
                    self.wait_until = Some(self.wait_until.map_or(opens_at, |w| w.min(opens_at)));
                    continue;
                }
                let place = self.slots[idx].office.place;
                let Some((to, payload)) =
                    next_action(&track, place, tip, returns, suspended, approved)
                else {
                    self.slots[idx]
                        .nothing_to_do
                        .insert(track.id.clone(), heads);
                    continue;
                };
                // Clerks are not instant: act on about two ticks in three.
                if !self.healed && !self.rng.chance(0.67) {
                    continue;
                }
                let now = self.local(idx);
                let office = self.slots[idx].office.clone();
                let Ok(mut document) = CaseDocument::load(&doc.save()) else {
                    continue;
                };
                document
                    .automerge_mut()
                    .set_actor(actor_for(&office.id, &track.id, 0));
                let operator = Operator::parse("sim-clerk").ok();
                let Some(operator) = operator else { continue };
                match document.apply(to, &office.signing(), &operator, now, &payload) {
                    Ok(signed) => {
                        self.cases[case_idx].made.insert(signed.hash());
                        self.stats.clerk_transitions += 1;
                        acted += 1;
                        self.note(|| format!("{} signs {to} for {}", office.id, track.id.short()));
                        self.write_case(idx, &track.id, track.route, document);
                    }
                    Err(err) => {
                        self.violations.push(format!(
                            "{} could not sign {to} for {}: {err}",
                            office.id, track.id
                        ));
                    }
                }
            }
        }
        acted
    }

    /// The virtual time at which the publicity of a case publicized in `chain` has
    /// run its period at the domicile township (whose clock decides).
    fn publicity_end(&self, track: &CaseTrack, chain: &[SignedTransition]) -> Option<i64> {
        let entered = chain
            .iter()
            .filter(|t| t.transition.to == Stage::Publicized)
            .map(|t| t.transition.at)
            .max()?;
        let domicile = track.route.domicile().to_string();
        let policy = Policy::for_province(domicile.get(..2)?).ok()?;
        let ends = entered.china_date() + chrono::Duration::days(i64::from(policy.publicity_days));
        let at = self.world.at(&Place::Township(track.route.domicile()))?;
        Some(Timestamp::start_of_china_date(ends).0 - self.slots[at].skew)
    }

    fn all_idle(&self) -> bool {
        self.slots
            .iter()
            .all(|slot| match (&slot.node, &slot.store) {
                (Some(node), Some(store)) => {
                    node.is_idle(store).unwrap_or(false) && node.materials_wanted() == 0
                }
                _ => false,
            })
    }

    /// The sessions that are not idle, described for a failure message.
    fn busy_sessions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in &self.slots {
            let (Some(node), Some(store)) = (&slot.node, &slot.store) else {
                out.push(format!("{} down", slot.office.id));
                continue;
            };
            let latest = store.latest_seq().unwrap_or(0);
            if node.materials_wanted() > 0 {
                out.push(format!(
                    "{} wants {} material(s)",
                    slot.office.id,
                    node.materials_wanted()
                ));
            }
            for (id, _) in node.sessions() {
                if let Some(st) = node.session_status(id)
                    && (!st.established || st.out_acked < latest || st.fetching > 0)
                {
                    out.push(format!(
                        "{}->{} {st:?} latest={latest}",
                        slot.office.id, st.peer
                    ));
                }
            }
        }
        out
    }

    fn next_timer(&self) -> Option<(i64, usize)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(idx, slot)| {
                Some((slot.node.as_ref()?.poll_timeout()?.0 - slot.skew, idx))
            })
            .min()
    }

    fn heal(&mut self) {
        self.healed = true;
        self.note(|| "heal".into());
        self.agenda.retain(|_, a| matches!(a, Action::ClerkTick));
        for idx in 0..self.slots.len() {
            self.restart(idx);
        }
        for link in 0..self.links.len() {
            self.links[link].partitioned = false;
            self.connect(link);
        }
    }

    /// Runs both phases. Invariants are checked by [`crate::check::check`].
    pub fn run(&mut self) {
        let chaos_end = self.now + self.config.chaos_ms;
        let mut heal_end = chaos_end + self.config.heal_limit_ms;
        let mut quiet_ticks = 0;
        loop {
            if !self.healed && self.now >= chaos_end {
                self.heal();
            }
            let packet_at = self.packets.keys().next().map(|k| k.0);
            let action_at = self.agenda.keys().next().map(|k| k.0);
            let timer = self.next_timer();
            let mut next = [packet_at, action_at, timer.map(|t| t.0)]
                .into_iter()
                .flatten()
                .min();
            if !self.healed {
                next = Some(next.map_or(chaos_end, |n| n.min(chaos_end)));
            }
            let Some(at) = next else { break };
            if at > heal_end {
                let busy = self.busy_sessions();
                self.violations.push(format!(
                    "not quiescent {} hours after healing; busy: {}",
                    self.config.heal_limit_ms / Timestamp::HOUR_MS,
                    busy.join("; ")
                ));
                break;
            }
            self.now = self.now.max(at);
            if !self.healed && self.now >= chaos_end {
                continue;
            }
            if packet_at == Some(at) {
                if let Some((_, packet)) = self.packets.pop_first() {
                    self.deliver(packet);
                }
                continue;
            }
            if action_at == Some(at) {
                let Some((_, action)) = self.agenda.pop_first() else {
                    continue;
                };
                match action {
                    Action::NewCase => self.new_case(),
                    Action::Partition(link) => {
                        self.stats.partitions += 1;
                        self.links[link].partitioned = true;
                        self.disconnect(link);
                    }
                    Action::Unpartition(link) => {
                        self.links[link].partitioned = false;
                        self.connect(link);
                    }
                    Action::Crash(idx) => self.crash(idx),
                    Action::Restart(idx) => self.restart(idx),
                    Action::ClerkTick => {
                        self.wait_until = None;
                        let acted = self.clerk_tick();
                        let quiet =
                            self.healed && acted == 0 && self.packets.is_empty() && self.all_idle();
                        let mut at = self.now + CLERK_TICK_MS;
                        match self.wait_until {
                            // Nothing moves until a publicity period ends: skip there
                            // (the days between cost nothing to simulate).
                            Some(wait) if quiet => {
                                quiet_ticks = 0;
                                at = at.max(wait);
                                heal_end = heal_end.max(wait + self.config.heal_limit_ms);
                            }
                            _ => {
                                quiet_ticks = if quiet { quiet_ticks + 1 } else { 0 };
                                if quiet_ticks >= 2 {
                                    break;
                                }
                            }
                        }
                        self.schedule(at, Action::ClerkTick);
                    }
                }
                continue;
            }
            if let Some((_, idx)) = timer {
                let now = self.local(idx);
                let slot = &mut self.slots[idx];
                if let (Some(node), Some(store)) = (slot.node.as_mut(), slot.store.as_mut())
                    && let Err(err) = node.handle_timeout(store, now)
                {
                    self.fail(idx, "handle_timeout", err);
                    continue;
                }
                self.flush(idx);
            }
        }
        self.stats.end_ms = self.now - epoch().0;
    }

    /// The node numbers.
    pub fn nodes(&self) -> std::ops::Range<usize> {
        0..self.slots.len()
    }

    /// A node's office.
    pub fn office(&self, idx: usize) -> &Office {
        &self.slots[idx].office
    }

    /// A node's store (when it is up).
    /// The route a case has now: its track's route, held at the acceptance
    /// office until the acceptance office's copy carries the stage that
    /// releases it (`pushed`, or `initial_reviewed` for a local case).
    pub fn effective_route(&self, track: &CaseTrack) -> CaseRoute {
        let acceptance = Place::Township(track.route.acceptance());
        let released = self
            .world
            .at(&acceptance)
            .and_then(|idx| self.store(idx))
            .and_then(|store| store.load(&track.id).ok().flatten())
            .is_some_and(|doc| {
                tongban_sync::admit::released(&tongban_sync::admit::transitions_of(&doc))
            });
        track.route.released(released)
    }

    /// The store of node `idx`, when it is up.
    pub fn store(&self, idx: usize) -> Option<&RedbStore> {
        self.slots[idx].store.as_ref()
    }

    /// A node's store, writable (when it is up): for tests that corrupt a healed
    /// world on purpose, to show that [`crate::check::check`] catches it.
    pub fn store_mut(&mut self, idx: usize) -> Option<&mut RedbStore> {
        self.slots[idx].store.as_mut()
    }

    /// The sum of the sync counters of the nodes that are up.
    pub fn sync_stats(&self) -> tongban_sync::Stats {
        let mut sum = tongban_sync::Stats::default();
        for node in self.slots.iter().filter_map(|s| s.node.as_ref()) {
            let s = node.stats();
            sum.frames_sent += s.frames_sent;
            sum.bytes_sent += s.bytes_sent;
            sum.inventories_sent += s.inventories_sent;
            sum.entries_sent += s.entries_sent;
            sum.docs_sent += s.docs_sent;
            sum.doc_syncs_sent += s.doc_syncs_sent;
            sum.cases_stored += s.cases_stored;
            sum.refusals += s.refusals;
            sum.receipts += s.receipts;
        }
        sum
    }

    /// The sum of the material-transfer counters of the nodes that are up.
    pub fn material_stats(&self) -> tongban_sync::MaterialStats {
        let mut sum = tongban_sync::MaterialStats::default();
        for node in self.slots.iter().filter_map(|s| s.node.as_ref()) {
            let s = node.material_stats();
            sum.requests_sent += s.requests_sent;
            sum.chunks_sent += s.chunks_sent;
            sum.bytes_sent += s.bytes_sent;
            sum.missing_sent += s.missing_sent;
            sum.stored += s.stored;
            sum.refused += s.refused;
        }
        sum
    }

    /// A node's clock.
    pub fn clock(&self, idx: usize) -> Timestamp {
        self.local(idx)
    }
}

/// The scan a case carries, if any: derived from the case id, not drawn from the
/// seed's random stream (still a function of the seed, through the id). About five
/// cases in eight carry one: a small scan, or (one case in eight) one of more than
/// a chunk, so transfers of several chunks meet the faults too.
pub fn case_material(case: &CaseId) -> Option<Vec<u8>> {
    let digest = blake3::hash(format!("tongban-sim material {case}").as_bytes());
    let d = digest.as_bytes();
    let n = usize::from(u16::from_le_bytes([d[1], d[2]]));
    let len = match d[0] % 8 {
        0..=2 => return None,
        3 => tongban_sync::wire::MAX_CHUNK + 1 + 4 * n,
        _ => 200 + n % 6_000,
    };
    let mut bytes = vec![0u8; len];
    blake3::Hasher::new()
        .update(d)
        .finalize_xof()
        .fill(&mut bytes);
    Some(bytes)
}

fn review(outcome: ReviewOutcome, opinion: &str) -> Payload {
    Payload {
        opinion: opinion.into(),
        outcome: Some(outcome),
        ..Payload::default()
    }
}

/// What the clerk at `place` does with a case whose chain ends at `tip`.
fn next_action(
    track: &CaseTrack,
    place: Place,
    tip: Stage,
    returns: usize,
    suspended: bool,
    approved: bool,
) -> Option<(Stage, Payload)> {
    let route = track.route;
    let acceptance = place == Place::Township(route.acceptance());
    let domicile = place == Place::Township(route.domicile());
    let county = route.domicile_county();
    let dpf = place == Place::CountyOffice(county, CountyOffice::Dpf);
    let ca = place == Place::CountyOffice(county, CountyOffice::CivilAffairs);
    let local = route.acceptance() == route.domicile();
    let plan = track.plan;
    let approve = || review(ReviewOutcome::Approve, "同意");
    Some(match tip {
        Stage::Draft if acceptance && plan == Plan::Withdraw => (
            Stage::Withdrawn,
            Payload {
                opinion: "申请人撤回".into(),
                ..Payload::default()
            },
        ),
        Stage::Draft | Stage::Returned if acceptance => (Stage::Accepted, Payload::default()),
        Stage::Accepted if acceptance && !local => (Stage::Pushed, Payload::default()),
        Stage::Accepted if domicile && local => (Stage::Publicized, Payload::default()),
        Stage::Received | Stage::Publicized if domicile => {
            if plan == Plan::ReturnAtTownship && returns == 0 {
                (Stage::Returned, review(ReviewOutcome::Return, "补充材料"))
            } else {
                (Stage::InitialReviewed, approve())
            }
        }
        Stage::InitialReviewed if dpf => match plan {
            Plan::ReturnAtDpf if returns == 0 => (
                Stage::Returned,
                review(ReviewOutcome::Return, "证件信息不符"),
            ),
            Plan::RejectAtDpf => (Stage::Rejected, review(ReviewOutcome::Reject, "不符合条件")),
            _ => (Stage::DpfReviewed, approve()),
        },
        Stage::DpfReviewed if ca => (
            Stage::Decided,
            Payload {
                opinion: "审定通过".into(),
                outcome: Some(ReviewOutcome::Approve),
                awards: vec![AwardLine {
                    kind: SubsidyKind::Living,
                    monthly_yuan: 100,
                    overridden: false,
                }],
                first_paid_month: Some("2026-03".into()),
                method: None,
                override_reason: None,
            },
        ),
        Stage::ResultReceived if acceptance => (
            Stage::Notified,
            Payload {
                method: Some("phone".into()),
                ..Payload::default()
            },
        ),
        Stage::Notified if ca && approved => (Stage::Active, Payload::default()),
        Stage::Active if ca && !suspended && plan == Plan::Approve => (
            Stage::Suspended,
            Payload {
                opinion: "动态核查：生存状态待核实".into(),
                ..Payload::default()
            },
        ),
        Stage::Suspended if ca => (
            Stage::Active,
            Payload {
                opinion: "生存状态已核实，恢复发放".into(),
                ..Payload::default()
            },
        ),
        _ => return None,
    })
}
