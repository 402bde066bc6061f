//! Material transfer between real sync nodes on real stores, frame by frame and
//! deterministic: a few offices of the simulated world on in-process links, a
//! virtual clock, and a hook that can drop or alter frames in flight.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;

use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_replica::Replica;
use tongban_sim::rng::Rng;
use tongban_sim::world::{World, attach_material, create_case, epoch, resident_id};
use tongban_store::MaterialHash;
use tongban_sync::node::{CheckedDocs, Config, Event, Limits, SessionId, SyncNode};
use tongban_sync::route::CaseRoute;
use tongban_sync::store::{StoreWrite, SyncStore};
use tongban_sync::wire::{MAX_CHUNK, Message};

/// What the hook does with a frame in flight.
pub(crate) enum Tamper {
    Pass,
    Drop,
    Replace(Message),
}

pub(crate) type Hook = Box<dyn FnMut(&str, &str, &Message) -> Tamper>;

pub(crate) struct Node {
    pub(crate) store: Replica,
    pub(crate) sync: SyncNode,
    events: Vec<Event>,
    /// Session → link.
    sessions: BTreeMap<SessionId, usize>,
}

struct Link {
    a: String,
    b: String,
    sessions: Option<(SessionId, SessionId)>,
}

struct Frame {
    from: String,
    to: String,
    link: usize,
    bytes: Vec<u8>,
}

/// Nodes named by office id, linked in-process.
pub(crate) struct Net {
    world: World,
    dir: tempfile::TempDir,
    pub(crate) limits: BTreeMap<String, Limits>,
    nodes: BTreeMap<String, Node>,
    links: Vec<Link>,
    queue: VecDeque<Frame>,
    /// Every message delivered: (from, to, message).
    log: Vec<(String, String, Message)>,
    pub(crate) hook: Option<Hook>,
    /// Admit `Docs` frames as the daemon does: off the node
    /// (`SyncNode::docs_job`), the outcome handed back (`handle_checked`) only
    /// after a few more frames were delivered, in no particular order.
    pub(crate) deferred: bool,
    /// With `deferred`: lose one part of a frame's admission now and then, as a
    /// failed worker would.
    pub(crate) lose_parts: bool,
    /// With `deferred`: hand admissions back only once nothing else is in
    /// flight.
    pub(crate) hold_admissions: bool,
    /// Admissions done, waiting to be handed back: (office, outcome, frames
    /// still to deliver before it).
    admissions: Vec<(String, CheckedDocs, u64)>,
    now: i64,
    rng: Rng,
}

pub(crate) fn limits() -> Limits {
    Limits {
        stall_ms: 20_000,
        material_retry_ms: 1_000,
        ..Limits::default()
    }
}

impl Net {
    pub(crate) fn new(offices: &[&str]) -> Net {
        let mut net = Net {
            world: World::standard(),
            dir: tempfile::tempdir().unwrap(),
            limits: BTreeMap::new(),
            nodes: BTreeMap::new(),
            links: Vec::new(),
            queue: VecDeque::new(),
            log: Vec::new(),
            hook: None,
            deferred: false,
            lose_parts: false,
            hold_admissions: false,
            admissions: Vec::new(),
            now: epoch().0,
            rng: Rng::new(42),
        };
        for office in offices {
            net.start(office);
        }
        net
    }

    fn index(&self, office: &str) -> usize {
        self.world
            .offices
            .iter()
            .position(|o| o.id.as_str() == office)
            .unwrap_or_else(|| panic!("no office {office}"))
    }

    /// Starts (or restarts, from its store) the node of `office`.
    pub(crate) fn start(&mut self, office: &str) {
        let idx = self.index(office);
        let o = &self.world.offices[idx];
        let store = Replica::open(
            &self.dir.path().join(office),
            self.world.calendar.clone(),
            [idx as u8; 32],
            &self.world.directory,
        )
        .unwrap();
        let config = Config {
            office: o.id.clone(),
            key: o.key.clone(),
            authority: self.world.authority,
            calendar: self.world.calendar.clone(),
            limits: self.limits.get(office).copied().unwrap_or_else(limits),
        };
        let sync = SyncNode::new(config, &store).unwrap();
        self.nodes.insert(
            office.to_string(),
            Node {
                store,
                sync,
                events: Vec::new(),
                sessions: BTreeMap::new(),
            },
        );
    }

    /// Drops a node (its open sessions end) and starts it again from its store.
    pub(crate) fn restart(&mut self, office: &str) {
        for link in 0..self.links.len() {
            if self.links[link].a == office || self.links[link].b == office {
                self.cut(link);
            }
        }
        self.nodes.remove(office);
        // Admissions of the old node's sessions die with it (the daemon runs
        // one node for its whole life, so its session ids are never reused).
        self.admissions.retain(|a| a.0 != office);
        self.start(office);
    }

    pub(crate) fn node(&self, office: &str) -> &Node {
        &self.nodes[office]
    }

    pub(crate) fn connect(&mut self, a: &str, b: &str) -> usize {
        let now = Timestamp(self.now);
        let link = self
            .links
            .iter()
            .position(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
            .unwrap_or_else(|| {
                self.links.push(Link {
                    a: a.into(),
                    b: b.into(),
                    sessions: None,
                });
                self.links.len() - 1
            });
        assert!(self.links[link].sessions.is_none(), "{a}-{b} is up");
        let (a, b) = (self.links[link].a.clone(), self.links[link].b.clone());
        let peer_b = self.world.offices[self.index(&b)].id.clone();
        let peer_a = self.world.offices[self.index(&a)].id.clone();
        let na = self.nodes.get_mut(&a).unwrap();
        let sa = na.sync.connect(&na.store, peer_b, now).unwrap();
        na.sessions.insert(sa, link);
        let nb = self.nodes.get_mut(&b).unwrap();
        let sb = nb.sync.connect(&nb.store, peer_a, now).unwrap();
        nb.sessions.insert(sb, link);
        self.links[link].sessions = Some((sa, sb));
        self.flush(&a);
        self.flush(&b);
        link
    }

    /// The connection breaks: both sides forget the session, frames in flight
    /// are lost.
    pub(crate) fn cut(&mut self, link: usize) {
        let Some((sa, sb)) = self.links[link].sessions.take() else {
            return;
        };
        let (a, b) = (self.links[link].a.clone(), self.links[link].b.clone());
        for (office, session) in [(a, sa), (b, sb)] {
            if let Some(node) = self.nodes.get_mut(&office) {
                node.sync.disconnect(session);
                node.sessions.remove(&session);
            }
        }
        self.queue.retain(|f| f.link != link);
    }

    fn flush(&mut self, office: &str) {
        let node = self.nodes.get_mut(office).unwrap();
        while let Some(t) = node.sync.poll_transmit() {
            let Some(&link) = node.sessions.get(&t.session) else {
                continue;
            };
            let l = &self.links[link];
            let to = if l.a == office { &l.b } else { &l.a };
            self.queue.push_back(Frame {
                from: office.to_string(),
                to: to.clone(),
                link,
                bytes: t.bytes,
            });
        }
        while let Some(event) = node.sync.poll_event() {
            node.events.push(event);
        }
    }

    /// Queues `message` from `from` to `to` as if `from`'s node had sent it.
    pub(crate) fn inject(&mut self, from: &str, to: &str, message: &Message) {
        let link = self
            .links
            .iter()
            .position(|l| {
                l.sessions.is_some() && ((l.a == from && l.b == to) || (l.a == to && l.b == from))
            })
            .unwrap();
        self.queue.push_back(Frame {
            from: from.into(),
            to: to.into(),
            link,
            bytes: message.encode().unwrap(),
        });
    }

    /// `office` adopts `directory` as `tongban node directory-import` does.
    pub(crate) fn adopt_directory(&mut self, office: &str, directory: Vec<u8>) {
        let now = Timestamp(self.now);
        let node = self.nodes.get_mut(office).unwrap();
        node.sync
            .adopt_directory(&mut node.store, directory, now)
            .unwrap();
        self.flush(office);
    }

    /// The world's directory.
    pub(crate) fn directory(&self) -> &[u8] {
        &self.world.directory
    }

    /// Admissions done and not yet handed back.
    pub(crate) fn admitting(&self) -> usize {
        self.admissions.len()
    }

    /// Hands a finished admission back to its node: one whose delay is over,
    /// or any when `any`. False when none was handed back.
    fn admit(&mut self, any: bool) -> bool {
        let due = self
            .admissions
            .iter()
            .position(|a| a.2 == 0 && !self.hold_admissions);
        let Some(i) = due.or_else(|| (any && !self.admissions.is_empty()).then_some(0)) else {
            return false;
        };
        let (office, checked, _) = self.admissions.swap_remove(i);
        let now = Timestamp(self.now);
        if let Some(node) = self.nodes.get_mut(&office) {
            node.sync
                .handle_checked(&mut node.store, checked, now)
                .unwrap();
            self.flush(&office);
        }
        true
    }

    /// Delivers the next frame, or hands back an admission; false when nothing
    /// is in flight.
    pub(crate) fn step(&mut self) -> bool {
        if self.admit(false) {
            return true;
        }
        let Some(frame) = self.queue.pop_front() else {
            return self.admit(true);
        };
        for admission in &mut self.admissions {
            admission.2 = admission.2.saturating_sub(1);
        }
        let Some((sa, sb)) = self.links[frame.link].sessions else {
            return true;
        };
        let session = if self.links[frame.link].a == frame.to {
            sa
        } else {
            sb
        };
        let message = Message::decode(&frame.bytes).unwrap();
        let tamper = match self.hook.as_mut() {
            Some(hook) => hook(&frame.from, &frame.to, &message),
            None => Tamper::Pass,
        };
        let (bytes, message) = match tamper {
            Tamper::Pass => (frame.bytes, message),
            Tamper::Drop => return true,
            Tamper::Replace(m) => (m.encode().unwrap(), m),
        };
        self.log
            .push((frame.from.clone(), frame.to.clone(), message));
        let now = Timestamp(self.now);
        let node = self.nodes.get_mut(&frame.to).unwrap();
        if self.deferred
            && let Some(job) = node.sync.docs_job(session, &bytes, now)
        {
            // The parts are checked in any order, as on a pool of threads.
            let (join, mut parts) = job.split();
            for i in (1..parts.len()).rev() {
                parts.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            if self.lose_parts && !parts.is_empty() && self.rng.chance(0.3) {
                parts.pop();
            }
            let checked = join.join(parts.into_iter().map(|p| p.run()).collect());
            let delay = self.rng.below(8);
            self.admissions.push((frame.to.clone(), checked, delay));
            return true;
        }
        node.sync
            .handle_message(&mut node.store, session, &bytes, now)
            .unwrap();
        self.flush(&frame.to);
        true
    }

    /// Delivers frames and fires timers (moving the virtual clock to them, a
    /// little network delay per step) until nothing is in flight and no timer is
    /// due before `for_ms` from now.
    pub(crate) fn run(&mut self, for_ms: i64) {
        let end = self.now + for_ms;
        for _ in 0..1_000_000 {
            if self.step() {
                self.now += 1;
                continue;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|(office, n)| Some((n.sync.poll_timeout()?.0, office.clone())))
                .min();
            match next {
                Some((at, office)) if at <= end => {
                    self.now = self.now.max(at);
                    let now = Timestamp(self.now);
                    let node = self.nodes.get_mut(&office).unwrap();
                    node.sync.handle_timeout(&mut node.store, now).unwrap();
                    self.flush(&office);
                }
                _ => {
                    self.now = self.now.max(end);
                    return;
                }
            }
        }
        panic!("the network never went quiet");
    }

    /// A new case at `acceptance` for a resident of `domicile`, with a scan of
    /// `len` bytes attached, written as the office application does (case and
    /// material in one commit). Returns the case and the scan.
    pub(crate) fn new_case(
        &mut self,
        acceptance: &str,
        domicile: &str,
        len: usize,
    ) -> (CaseId, Vec<u8>) {
        let office = self.world.offices[self.index(acceptance)].clone();
        let now = Timestamp(self.now);
        let case = CaseId::new(&office.division, now.china_date(), self.rng.bytes4()).unwrap();
        let resident = resident_id(&mut self.rng, domicile);
        let (mut document, _) = create_case(&office, &case, domicile, &resident, now).unwrap();
        let mut scan = vec![0u8; len];
        blake3::Hasher::new()
            .update(case.as_str().as_bytes())
            .finalize_xof()
            .fill(&mut scan);
        attach_material(&mut document, &office, "id_card", &scan, now).unwrap();
        // Accepted and pushed: a case leaves its acceptance office only then.
        let operator = tongban_domain::ids::Operator::parse("sim-clerk").unwrap();
        for to in [
            tongban_domain::stage::Stage::Accepted,
            tongban_domain::stage::Stage::Pushed,
        ] {
            document
                .apply(
                    to,
                    &office.signing(),
                    &operator,
                    now,
                    &tongban_case::Payload::default(),
                )
                .unwrap();
        }
        let route = CaseRoute::new(
            DivisionCode::parse(&office.division).unwrap(),
            DivisionCode::parse(domicile).unwrap(),
        )
        .unwrap();
        self.write_local(acceptance, &case, route, &mut document, scan.clone());
        (case, scan)
    }

    /// Writes `document` of `case` and its new `scan` at `office` in one commit,
    /// as the office application does, and offers them to the peers.
    fn write_local(
        &mut self,
        office: &str,
        case: &CaseId,
        route: CaseRoute,
        document: &mut tongban_case::CaseDocument,
        scan: Vec<u8>,
    ) {
        let now = Timestamp(self.now);
        let node = self.nodes.get_mut(office).unwrap();
        node.store
            .commit(vec![
                StoreWrite::case(
                    case.clone(),
                    route,
                    document.automerge_mut().document().clone(),
                    None,
                ),
                StoreWrite::Material {
                    case: case.clone(),
                    hash: *blake3::hash(&scan).as_bytes(),
                    bytes: scan,
                },
            ])
            .unwrap();
        node.sync.handle_local_change(&mut node.store, now).unwrap();
        self.flush(office);
    }

    /// A later signed write to `case` at `office` (the applicant's evaluation,
    /// which the acceptance office records at any stage after intake), written
    /// as the office application does.
    pub(crate) fn add_write(&mut self, office: &str, case: &CaseId, route: CaseRoute) {
        let o = self.world.offices[self.index(office)].clone();
        let now = Timestamp(self.now);
        let doc = self.nodes[office].store.load(case).unwrap().unwrap();
        let mut document = tongban_case::CaseDocument::load(&doc.save()).unwrap();
        let operator = tongban_domain::ids::Operator::parse("sim-clerk").unwrap();
        document
            .record_evaluation(&o.signing(), &operator, now, 5, "满意")
            .unwrap();
        let node = self.nodes.get_mut(office).unwrap();
        node.store
            .commit(vec![StoreWrite::case(
                case.clone(),
                route,
                document.automerge_mut().document().clone(),
                None,
            )])
            .unwrap();
        node.sync.handle_local_change(&mut node.store, now).unwrap();
        self.flush(office);
    }

    /// The bytes `office` holds for `scan`'s hash, read back and checked.
    fn held(&self, office: &str, scan: &[u8]) -> Option<Vec<u8>> {
        let hash = MaterialHash(*blake3::hash(scan).as_bytes());
        let mut reader = self.node(office).store.inner().open_material(&hash).ok()?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        Some(out)
    }

    pub(crate) fn holds_case(&self, office: &str, case: &CaseId) -> bool {
        self.node(office).store.load(case).unwrap().is_some()
    }

    pub(crate) fn refusals(&self, office: &str) -> Vec<String> {
        self.node(office)
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Refused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// Messages delivered from `from` to `to` matching `f`.
    pub(crate) fn sent<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        f: impl Fn(&Message) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Message> + 'a {
        self.log
            .iter()
            .filter(move |(a, b, m)| a == from && b == to && f(m))
            .map(|(_, _, m)| m)
    }
}

fn is_request(m: &Message) -> bool {
    matches!(m, Message::MaterialRequest { .. })
}

fn is_chunk(m: &Message) -> bool {
    matches!(m, Message::MaterialChunk { .. })
}

fn is_missing(m: &Message) -> bool {
    matches!(m, Message::MaterialMissing { .. })
}

const TA: &str = "130102001";
const TD: &str = "130102002";
const T3: &str = "130102003";
const HUB: &str = "hub-130102";

#[test]
fn a_material_crosses_a_hub_chain_to_every_route_node() {
    // Chang'an to Qiaoxi: township, county hub, province hub, county hub,
    // township and the domicile county's offices.
    let chain = [TA, HUB, "hub-13", "hub-130104", "130104001"];
    let mut net = Net::new(&chain);
    for office in ["130104-dpf", "130104-ca", T3] {
        net.start(office);
    }
    for pair in chain.windows(2) {
        net.connect(pair[0], pair[1]);
    }
    net.connect("130104-dpf", "hub-130104");
    net.connect("130104-ca", "hub-130104");
    net.connect(T3, HUB);
    // Three chunks, the last one short.
    let (case, scan) = net.new_case(TA, "130104001", 2 * MAX_CHUNK + 12_345);
    net.run(120_000);
    for office in chain.iter().chain(&["130104-dpf", "130104-ca"]) {
        assert!(net.holds_case(office, &case), "{office} lacks the case");
        assert_eq!(
            net.held(office, &scan).as_deref(),
            Some(&scan[..]),
            "{office}"
        );
        assert_eq!(net.node(office).sync.materials_wanted(), 0, "{office}");
        let attached = net
            .node(office)
            .store
            .inner()
            .case_materials(&case)
            .unwrap();
        assert_eq!(
            attached,
            vec![MaterialHash(*blake3::hash(&scan).as_bytes())],
            "{office}"
        );
    }
    // The township off the route got neither the case nor the scan.
    assert!(!net.holds_case(T3, &case));
    assert!(net.held(T3, &scan).is_none());
    assert!(
        net.sent(HUB, T3, |m| is_chunk(m) || is_request(m))
            .next()
            .is_none()
    );
    // The last hop asked for every chunk (and maybe early, before its hub had
    // the scan: it was told so and asked again).
    let requests = net.sent("130104001", "hub-130104", is_request).count();
    assert!(requests >= 3, "{requests}");
    assert!(net.refusals("130104001").is_empty());
}

#[test]
fn a_peer_without_the_material_says_so_and_serves_it_once_it_has_it() {
    let mut net = Net::new(&[TA, HUB, TD]);
    // The hub's requests to the acceptance office are lost for now.
    let blocked = std::rc::Rc::new(std::cell::Cell::new(true));
    let gate = blocked.clone();
    net.hook = Some(Box::new(move |from, _, m| {
        if gate.get() && from == HUB && is_request(m) {
            Tamper::Drop
        } else {
            Tamper::Pass
        }
    }));
    net.connect(TA, HUB);
    net.connect(HUB, TD);
    let (case, scan) = net.new_case(TA, TD, 5_000);
    net.run(30_000);
    assert!(net.holds_case(TD, &case));
    assert!(net.held(HUB, &scan).is_none());
    assert!(net.held(TD, &scan).is_none());
    // The domicile asked the hub it got the case from, and heard it is missing.
    assert!(net.sent(TD, HUB, is_request).next().is_some());
    assert!(net.sent(HUB, TD, is_missing).next().is_some());
    assert!(net.sent(HUB, TD, is_chunk).next().is_none());
    assert_eq!(net.node(TD).sync.materials_wanted(), 1);
    blocked.set(false);
    net.run(120_000);
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
    assert_eq!(net.held(TD, &scan).as_deref(), Some(&scan[..]));
    assert!(net.sent(HUB, TD, is_chunk).next().is_some());
    assert_eq!(net.node(TD).sync.materials_wanted(), 0);
}

#[test]
fn wrong_bytes_are_refused_never_stored_and_fetched_from_another_peer() {
    let mut net = Net::new(&[TA, HUB, TD]);
    // The hub corrupts every chunk it sends to the domicile township.
    net.hook = Some(Box::new(|from, to, m| match m {
        Message::MaterialChunk {
            hash,
            offset,
            total_len,
            data,
        } if from == HUB && to == TD => {
            let mut data = data.clone();
            if let Some(byte) = data.last_mut() {
                *byte ^= 0x55;
            }
            Tamper::Replace(Message::MaterialChunk {
                hash: *hash,
                offset: *offset,
                total_len: *total_len,
                data,
            })
        }
        _ => Tamper::Pass,
    }));
    net.connect(TA, HUB);
    net.connect(HUB, TD);
    let (case, scan) = net.new_case(TA, TD, MAX_CHUNK + 999);
    net.run(10_000);
    assert!(net.holds_case(TD, &case));
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
    // Refused, not stored: the domicile holds no material at all.
    let refusals = net.refusals(TD);
    assert!(
        refusals.iter().any(|r| r.contains("do not hash")),
        "{refusals:?}"
    );
    assert!(net.held(TD, &scan).is_none());
    assert!(
        net.node(TD)
            .store
            .inner()
            .missing_materials()
            .unwrap()
            .len()
            == 1
    );
    // Another route peer connects: the fetch goes there and succeeds.
    net.connect(TA, TD);
    net.run(120_000);
    assert_eq!(net.held(TD, &scan).as_deref(), Some(&scan[..]));
    assert!(net.sent(TA, TD, is_chunk).next().is_some());
    assert!(net.node(TD).sync.material_stats().refused >= 1);
}

#[test]
fn a_request_naming_a_case_off_the_requesters_route_is_refused() {
    let mut net = Net::new(&[TA, HUB, T3]);
    net.connect(TA, HUB);
    let (case, scan) = net.new_case(TA, TD, 3_000);
    net.run(30_000);
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
    net.connect(HUB, T3);
    net.run(1_000);
    // A township off the route asks for the scan, naming the case.
    let request = Message::MaterialRequest {
        case: case.clone(),
        hash: *blake3::hash(&scan).as_bytes(),
        offset: 0,
        max_len: MAX_CHUNK as u32,
    };
    for _ in 0..2 {
        net.inject(T3, HUB, &request);
        net.run(1_000);
    }
    assert!(net.sent(HUB, T3, is_chunk).next().is_none());
    assert_eq!(net.sent(HUB, T3, is_missing).count(), 2);
    let refusals = net.refusals(HUB);
    assert!(
        refusals.iter().any(|r| r.contains("off the peer's route")),
        "{refusals:?}"
    );
    assert!(net.held(T3, &scan).is_none());
}

#[test]
fn a_request_for_a_hash_the_case_does_not_reference_is_refused() {
    let mut net = Net::new(&[TA, HUB, TD, T3]);
    net.connect(TA, HUB);
    net.connect(HUB, TD);
    net.connect(HUB, T3);
    let (case, _) = net.new_case(TA, TD, 2_000);
    // Another township's case, whose scan the hub also holds.
    let (_, other_scan) = net.new_case(TA, T3, 2_500);
    net.run(60_000);
    assert_eq!(net.held(HUB, &other_scan).as_deref(), Some(&other_scan[..]));
    assert!(net.held(TD, &other_scan).is_none());
    let before = net.sent(HUB, TD, is_chunk).count();
    // The domicile of the first case names it to ask for the other case's scan.
    net.inject(
        TD,
        HUB,
        &Message::MaterialRequest {
            case,
            hash: *blake3::hash(&other_scan).as_bytes(),
            offset: 0,
            max_len: MAX_CHUNK as u32,
        },
    );
    net.run(1_000);
    assert_eq!(net.sent(HUB, TD, is_chunk).count(), before);
    assert!(net.sent(HUB, TD, is_missing).next().is_some());
    let refusals = net.refusals(HUB);
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("which the case does not reference")),
        "{refusals:?}"
    );
    assert!(net.held(TD, &other_scan).is_none());
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let mut net = Net::new(&[TA, HUB, TD]);
    net.connect(TA, HUB);
    let (_, scan) = net.new_case(TA, TD, 3 * MAX_CHUNK + 77);
    net.run(30_000);
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
    // The domicile connects; the link breaks right after the first chunk.
    let link = net.connect(HUB, TD);
    let first_chunk = |net: &Net| {
        net.sent(HUB, TD, |m| {
            matches!(m, Message::MaterialChunk { offset: 0, .. })
        })
        .next()
        .is_some()
    };
    while !first_chunk(&net) {
        assert!(net.step(), "the first chunk never came");
    }
    net.cut(link);
    assert_eq!(net.node(TD).sync.materials_wanted(), 1);
    assert!(net.held(TD, &scan).is_none());
    let asked_before = net.log.len();
    net.connect(HUB, TD);
    net.run(60_000);
    assert_eq!(net.held(TD, &scan).as_deref(), Some(&scan[..]));
    // After the reconnect nothing was asked from offset 0 again.
    let offsets: Vec<u64> = net.log[asked_before..]
        .iter()
        .filter_map(|(from, _, m)| match m {
            Message::MaterialRequest { offset, .. } if from == TD => Some(*offset),
            _ => None,
        })
        .collect();
    assert!(!offsets.is_empty());
    assert!(
        offsets.iter().all(|o| *o >= MAX_CHUNK as u64),
        "{offsets:?}"
    );
}

#[test]
fn a_restarted_node_fetches_what_it_still_lacks() {
    let mut net = Net::new(&[TA, HUB]);
    // The hub's requests are lost until it restarts.
    net.hook = Some(Box::new(|from, _, m| {
        if from == HUB && is_request(m) {
            Tamper::Drop
        } else {
            Tamper::Pass
        }
    }));
    net.connect(TA, HUB);
    let (case, scan) = net.new_case(TA, TD, 4_000);
    net.run(5_000);
    assert!(net.holds_case(HUB, &case));
    assert!(net.held(HUB, &scan).is_none());
    net.hook = None;
    net.restart(HUB);
    // The store told the new node what its cases still lack.
    assert_eq!(net.node(HUB).sync.materials_wanted(), 1);
    net.connect(TA, HUB);
    net.run(30_000);
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
}

#[test]
fn a_material_above_the_size_limit_is_refused_not_fetched() {
    let mut net = Net::new(&[TA, HUB]);
    net.limits.insert(
        TD.into(),
        Limits {
            max_material_bytes: MAX_CHUNK as u64,
            ..limits()
        },
    );
    net.start(TD);
    net.connect(TA, HUB);
    net.connect(HUB, TD);
    let (case, scan) = net.new_case(TA, TD, MAX_CHUNK + 1);
    net.run(60_000);
    // The hub (64 MiB limit) has it; the domicile holds the case, not the scan.
    assert_eq!(net.held(HUB, &scan).as_deref(), Some(&scan[..]));
    assert!(net.holds_case(TD, &case));
    assert!(net.held(TD, &scan).is_none());
    assert_eq!(net.node(TD).sync.materials_wanted(), 0);
    assert!(net.sent(TD, HUB, is_request).next().is_none());
    let refusals = net.refusals(TD);
    assert_eq!(
        refusals
            .iter()
            .filter(|r| r.contains("above this node's limit"))
            .count(),
        1,
        "{refusals:?}"
    );
}
