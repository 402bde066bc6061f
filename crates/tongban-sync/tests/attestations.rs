//! Attestations on the wire and through the hub tree (issue #16): what an
//! office attests climbs through its county hub to the province and national
//! supervisors, reaches no office and no supervisor of another region, and a
//! hub refuses what an office off the case's route signed. Real `SyncNode`s
//! over `MemStore`s, linked in-process, frame by frame.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::supervision::{Attestation, SignedAttestation, supervise};
use tongban_ledger::{
    Directory, DirectoryAuthority, OfficeCertificate, OfficeKey, SignedTransition, Transition,
};
use tongban_sync::node::{Config, Event, Limits, SessionId, SyncNode};
use tongban_sync::route::Place;
use tongban_sync::store::{MemStore, StoreWrite, SyncStore};
use tongban_sync::wire::{Inventory, InventoryEntry, Message};

/// The case's acceptance township, a node.
const ACCEPTANCE: &str = "130102001";
/// The case's domicile township (same county), not a node here.
const DOMICILE: &str = "130102002";
/// Another township of the same county: off the case's route.
const NEIGHBOUR: &str = "130102003";
const HUB: &str = "hub-130102";
const PROVINCE: &str = "hub-13";
const SUPERVISOR: &str = "supervisor-13";
/// Another county of the province, its hub and a township of it.
const OTHER_HUB: &str = "hub-130104";
const OTHER_TOWNSHIP: &str = "130104001";
const NATIONAL: &str = "hub-cn";
const NATIONAL_SUPERVISOR: &str = "supervisor-cn";
/// Another province's hub and supervisor.
const OTHER_PROVINCE: &str = "hub-44";
const OTHER_SUPERVISOR: &str = "supervisor-44";

/// (office, role, division) of every office of the directory.
const OFFICES: [(&str, Role, &str); 14] = [
    (ACCEPTANCE, Role::Township, ACCEPTANCE),
    (DOMICILE, Role::Township, DOMICILE),
    (NEIGHBOUR, Role::Township, NEIGHBOUR),
    ("130102-dpf", Role::CountyDpf, "130102"),
    ("130102-ca", Role::CountyCivilAffairs, "130102"),
    (HUB, Role::Hub, "130102"),
    (PROVINCE, Role::Hub, "13"),
    (SUPERVISOR, Role::Supervisor, "13"),
    (OTHER_HUB, Role::Hub, "130104"),
    (OTHER_TOWNSHIP, Role::Township, OTHER_TOWNSHIP),
    (NATIONAL, Role::Hub, "00"),
    (NATIONAL_SUPERVISOR, Role::Supervisor, "00"),
    (OTHER_PROVINCE, Role::Hub, "44"),
    (OTHER_SUPERVISOR, Role::Supervisor, "44"),
];

fn office(id: &str) -> OfficeId {
    OfficeId::parse(id).unwrap()
}

fn key_of(id: &str) -> OfficeKey {
    let i = OFFICES.iter().position(|(o, ..)| *o == id).unwrap();
    OfficeKey::from_bytes(&[10 + i as u8; 32])
}

fn authority() -> DirectoryAuthority {
    DirectoryAuthority::new(OfficeKey::from_bytes(&[1; 32]))
}

fn ts(y: i32, m: u32, d: u32, h: i64) -> Timestamp {
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
    Timestamp(Timestamp::start_of_china_date(date).0 + h * Timestamp::HOUR_MS)
}

fn directory_bytes() -> Vec<u8> {
    let authority = authority();
    let certs = OFFICES
        .into_iter()
        .enumerate()
        .map(|(i, (id, role, division))| {
            authority
                .issue(OfficeCertificate {
                    office: office(id),
                    name: format!("机关 {id}"),
                    role,
                    division: division.into(),
                    public_key: key_of(id).public(),
                    not_before: ts(2021, 1, 1, 0),
                    not_after: ts(2028, 12, 31, 0),
                    serial: i as u64 + 1,
                })
                .unwrap()
        })
        .collect();
    authority
        .publish(3, ts(2024, 1, 1, 0), certs, Vec::new())
        .encode()
}

fn case_id() -> CaseId {
    CaseId::new(
        ACCEPTANCE,
        NaiveDate::from_ymd_opt(2025, 3, 3).unwrap(),
        [7, 7, 7, 7],
    )
    .unwrap()
}

/// The case's first two signed steps, by the acceptance office.
fn chain() -> Vec<Vec<u8>> {
    let key = key_of(ACCEPTANCE);
    let mut out: Vec<SignedTransition> = Vec::new();
    for (seq, (to, at)) in [
        (Stage::Draft, ts(2025, 3, 3, 9)),
        (Stage::Accepted, ts(2025, 3, 3, 10)),
    ]
    .into_iter()
    .enumerate()
    {
        let last = out.last();
        let t = Transition {
            case: case_id(),
            seq: seq as u32,
            from: last.map(|s| s.transition.to),
            to,
            office: office(ACCEPTANCE),
            operator: Operator::parse("clerk-1").unwrap(),
            at,
            heads: vec![*blake3::hash(&[seq as u8]).as_bytes()],
            prev: last.map(SignedTransition::hash),
            payload_digest: Transition::digest_payload(b"opinion"),
            signer_key: key.public(),
        };
        out.push(SignedTransition::sign(t, &key).unwrap());
    }
    out.iter().map(SignedTransition::encode).collect()
}

/// An attestation of the case by `by`, signed with its key.
fn attestation(by: &str, at: Timestamp) -> SignedAttestation {
    let key = key_of(by);
    SignedAttestation::sign(
        Attestation {
            case: case_id(),
            office: office(by),
            at,
            domicile: DOMICILE.into(),
            kinds: vec![SubsidyKind::Living],
            transitions: chain(),
            awards: Vec::new(),
            first_paid_month: None,
            evaluation: None,
            signer_key: key.public(),
        },
        &key,
    )
    .unwrap()
}

/// What an office commits after a write: its attestation.
fn attestation_write(signed: &SignedAttestation) -> StoreWrite {
    let a = &signed.attestation;
    StoreWrite::Attestation {
        case: a.case.clone(),
        office: a.office.clone(),
        at: a.at,
        domicile: DivisionCode::parse(&a.domicile).unwrap(),
        bytes: signed.encode(),
    }
}

struct Node {
    store: MemStore,
    sync: SyncNode,
    events: Vec<Event>,
    /// Session → (peer, the peer's session of the same link).
    links: BTreeMap<SessionId, (String, SessionId)>,
}

/// Nodes named by office id, linked in-process; frames delivered in order.
struct Net {
    nodes: BTreeMap<String, Node>,
    /// (to, session at `to`, frame).
    queue: VecDeque<(String, SessionId, Vec<u8>)>,
    now: Timestamp,
    /// Every inventory delivered: (from, to, its attestations).
    inventories: Vec<(String, String, Vec<Vec<u8>>)>,
}

impl Net {
    fn new(offices: &[&str]) -> Net {
        let directory = directory_bytes();
        let calendar = Arc::new(Calendar::shipped().unwrap());
        let mut nodes = BTreeMap::new();
        for (i, id) in offices.iter().enumerate() {
            let mut store = MemStore::new([i as u8 + 1; 16]);
            store
                .commit(vec![StoreWrite::Directory {
                    bytes: directory.clone(),
                }])
                .unwrap();
            let config = Config {
                office: office(id),
                key: Arc::new(key_of(id)),
                authority: authority().public(),
                calendar: calendar.clone(),
                limits: Limits::default(),
            };
            let sync = SyncNode::new(config, &store).unwrap();
            nodes.insert(
                id.to_string(),
                Node {
                    store,
                    sync,
                    events: Vec::new(),
                    links: BTreeMap::new(),
                },
            );
        }
        Net {
            nodes,
            queue: VecDeque::new(),
            now: ts(2025, 3, 3, 11),
            inventories: Vec::new(),
        }
    }

    fn node(&self, id: &str) -> &Node {
        &self.nodes[id]
    }

    fn connect(&mut self, a: &str, b: &str) {
        let now = self.now;
        let na = self.nodes.get_mut(a).unwrap();
        let sa = na.sync.connect(&na.store, office(b), now).unwrap();
        let nb = self.nodes.get_mut(b).unwrap();
        let sb = nb.sync.connect(&nb.store, office(a), now).unwrap();
        nb.links.insert(sb, (a.to_string(), sa));
        self.nodes
            .get_mut(a)
            .unwrap()
            .links
            .insert(sa, (b.to_string(), sb));
        self.flush(a);
        self.flush(b);
    }

    fn flush(&mut self, id: &str) {
        let node = self.nodes.get_mut(id).unwrap();
        while let Some(t) = node.sync.poll_transmit() {
            let (peer, peer_session) = node.links[&t.session].clone();
            self.queue.push_back((peer, peer_session, t.bytes));
        }
        while let Some(event) = node.sync.poll_event() {
            node.events.push(event);
        }
    }

    /// Delivers frames until none is in flight.
    fn run(&mut self) {
        let mut delivered = 0;
        while let Some((to, session, bytes)) = self.queue.pop_front() {
            delivered += 1;
            assert!(delivered < 10_000, "the nodes never settle");
            self.now = Timestamp(self.now.0 + 1);
            let now = self.now;
            if let Ok(Message::Inventory(inv)) = Message::decode(&bytes) {
                let from = self.nodes[&to].links[&session].0.clone();
                self.inventories
                    .push((from, to.clone(), inv.attestations.clone()));
            }
            let node = self.nodes.get_mut(&to).unwrap();
            node.sync
                .handle_message(&mut node.store, session, &bytes, now)
                .unwrap();
            self.flush(&to);
        }
    }

    /// `id` writes locally and tells its sync node.
    fn local(&mut self, id: &str, writes: Vec<StoreWrite>) {
        let now = self.now;
        let node = self.nodes.get_mut(id).unwrap();
        node.store.commit(writes).unwrap();
        node.sync.handle_local_change(&mut node.store, now).unwrap();
        self.flush(id);
        self.run();
    }

    fn held(&self, id: &str, by: &str) -> Option<Vec<u8>> {
        self.node(id)
            .store
            .attestation(&case_id(), &office(by))
            .unwrap()
    }

    fn refusals(&self, id: &str) -> Vec<(OfficeId, Option<CaseId>, String)> {
        self.node(id)
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Refused { peer, case, reason } => {
                    Some((peer.clone(), case.clone(), reason.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// The tree: the acceptance township and a neighbour under the county hub,
/// the province hub above with the province supervisor and another county's
/// hub and township, the national hub with the national supervisor and
/// another province's hub and supervisor.
fn tree() -> Net {
    let all = [
        ACCEPTANCE,
        NEIGHBOUR,
        HUB,
        PROVINCE,
        SUPERVISOR,
        OTHER_HUB,
        OTHER_TOWNSHIP,
        NATIONAL,
        NATIONAL_SUPERVISOR,
        OTHER_PROVINCE,
        OTHER_SUPERVISOR,
    ];
    let mut net = Net::new(&all);
    for (a, b) in [
        (ACCEPTANCE, HUB),
        (NEIGHBOUR, HUB),
        (HUB, PROVINCE),
        (PROVINCE, SUPERVISOR),
        (PROVINCE, OTHER_HUB),
        (OTHER_HUB, OTHER_TOWNSHIP),
        (PROVINCE, NATIONAL),
        (NATIONAL, NATIONAL_SUPERVISOR),
        (NATIONAL, OTHER_PROVINCE),
        (OTHER_PROVINCE, OTHER_SUPERVISOR),
    ] {
        net.connect(a, b);
    }
    net.run();
    for id in all {
        assert_eq!(net.refusals(id), [], "{id}");
    }
    net
}

#[test]
fn the_places_are_as_the_directory_says() {
    let net = tree();
    assert_eq!(
        net.node(SUPERVISOR).sync.place(),
        Place::Supervisor(Some(DivisionCode::parse("13").unwrap()))
    );
    assert_eq!(
        net.node(NATIONAL_SUPERVISOR).sync.place(),
        Place::Supervisor(None)
    );
    assert_eq!(net.node(NATIONAL).sync.place(), Place::National);
}

#[test]
fn an_attestation_climbs_to_the_supervisors_of_its_region_only() {
    let mut net = tree();
    let signed = attestation(ACCEPTANCE, ts(2025, 3, 3, 10));
    let bytes = signed.encode();
    net.local(ACCEPTANCE, vec![attestation_write(&signed)]);

    for id in [HUB, PROVINCE, SUPERVISOR, NATIONAL, NATIONAL_SUPERVISOR] {
        assert_eq!(net.held(id, ACCEPTANCE), Some(bytes.clone()), "{id}");
        assert_eq!(net.refusals(id), [], "{id}");
    }
    for id in [
        NEIGHBOUR,
        OTHER_HUB,
        OTHER_TOWNSHIP,
        OTHER_PROVINCE,
        OTHER_SUPERVISOR,
    ] {
        assert_eq!(net.held(id, ACCEPTANCE), None, "{id}");
    }
    // Not merely refused on arrival: never sent there, nor back to its sender.
    let receivers: Vec<&str> = net
        .inventories
        .iter()
        .filter(|(.., attestations)| attestations.contains(&bytes))
        .map(|(_, to, _)| to.as_str())
        .collect();
    let mut sorted = receivers.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [PROVINCE, HUB, NATIONAL, SUPERVISOR, NATIONAL_SUPERVISOR],
        "each on-route node got it exactly once: {receivers:?}"
    );
    // No case document travelled with it.
    for id in [HUB, PROVINCE, SUPERVISOR, NATIONAL_SUPERVISOR] {
        assert!(net.node(id).store.is_empty(), "{id}");
    }

    // What the supervisor makes of it: the chain the office signed.
    let held = SignedAttestation::decode(&net.held(SUPERVISOR, ACCEPTANCE).unwrap()).unwrap();
    let directory = Directory::verify(&directory_bytes(), &authority().public()).unwrap();
    let case = supervise(
        &case_id(),
        &[held],
        &directory,
        &Calendar::shipped().unwrap(),
        |_| 7,
        ts(2025, 3, 3, 12),
    )
    .unwrap();
    assert_eq!(case.domicile, DOMICILE);
    assert_eq!(
        case.steps.iter().map(|s| s.to).collect::<Vec<_>>(),
        [Stage::Draft, Stage::Accepted]
    );
    assert_eq!(case.problems, Vec::<String>::new());
}

#[test]
fn a_newer_attestation_replaces_the_older_along_the_way() {
    let mut net = tree();
    let first = attestation(ACCEPTANCE, ts(2025, 3, 3, 10));
    net.local(ACCEPTANCE, vec![attestation_write(&first)]);
    let mut later = first.attestation.clone();
    later.at = ts(2025, 3, 4, 9);
    later.kinds = vec![SubsidyKind::Living, SubsidyKind::Nursing];
    let later = SignedAttestation::sign(later, &key_of(ACCEPTANCE)).unwrap();
    net.local(ACCEPTANCE, vec![attestation_write(&later)]);
    for id in [HUB, PROVINCE, SUPERVISOR, NATIONAL_SUPERVISOR] {
        assert_eq!(net.held(id, ACCEPTANCE), Some(later.encode()), "{id}");
    }
    // The older one, offered again, changes nothing.
    net.local(ACCEPTANCE, vec![attestation_write(&first)]);
    assert_eq!(net.held(SUPERVISOR, ACCEPTANCE), Some(later.encode()));
}

#[test]
fn an_attestation_by_an_office_off_the_route_is_refused_at_the_hub() {
    let mut net = tree();
    // The neighbouring township attests a case it neither accepted nor is
    // the domicile of.
    let forged = attestation(NEIGHBOUR, ts(2025, 3, 3, 10));
    assert!(forged.verify_signature());
    net.local(NEIGHBOUR, vec![attestation_write(&forged)]);

    let refusals = net.refusals(HUB);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let (peer, case, reason) = &refusals[0];
    assert_eq!(peer, &office(NEIGHBOUR));
    assert_eq!(case.as_ref(), Some(&case_id()));
    assert!(
        reason.contains(&format!("office {NEIGHBOUR} is not an office of case")),
        "{reason}"
    );
    for id in [HUB, PROVINCE, SUPERVISOR, NATIONAL, NATIONAL_SUPERVISOR] {
        assert_eq!(net.held(id, NEIGHBOUR), None, "{id}");
    }
    // The hub logged nothing for it, so nothing went on.
    assert_eq!(net.node(HUB).store.latest_seq().unwrap(), 0);
    // The session goes on: a valid attestation after it still arrives.
    let valid = attestation(ACCEPTANCE, ts(2025, 3, 3, 10));
    net.local(ACCEPTANCE, vec![attestation_write(&valid)]);
    assert_eq!(net.held(SUPERVISOR, ACCEPTANCE), Some(valid.encode()));
}

#[test]
fn an_attestation_with_a_broken_signature_is_refused_at_the_hub() {
    let mut net = tree();
    let mut broken = attestation(ACCEPTANCE, ts(2025, 3, 3, 10));
    broken.signature[3] ^= 0x10;
    net.local(ACCEPTANCE, vec![attestation_write(&broken)]);
    let refusals = net.refusals(HUB);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].2.contains("invalid signature"),
        "{}",
        refusals[0].2
    );
    assert_eq!(net.held(HUB, ACCEPTANCE), None);
    assert_eq!(net.held(SUPERVISOR, ACCEPTANCE), None);
}

// -------------------------------------------------------------------- wire

fn inventory(attestations: Vec<Vec<u8>>) -> Inventory {
    Inventory {
        incarnation: [9; 16],
        from: 3,
        upto: 17,
        entries: vec![InventoryEntry {
            case: case_id(),
            domicile: DivisionCode::parse(DOMICILE).unwrap(),
            heads: vec![[1; 32], [2; 32]],
        }],
        attestations,
    }
}

/// The version-1 frame of an inventory, written out by hand: header, then
/// incarnation, from, upto, the entry count and each entry.
fn frame_by_hand(inv: &Inventory) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&inv.incarnation);
    payload.extend_from_slice(&inv.from.to_be_bytes());
    payload.extend_from_slice(&inv.upto.to_be_bytes());
    payload.extend_from_slice(&(inv.entries.len() as u32).to_be_bytes());
    for e in &inv.entries {
        payload.push(e.case.as_str().len() as u8);
        payload.extend_from_slice(e.case.as_str().as_bytes());
        payload.push(9);
        payload.extend_from_slice(e.domicile.as_str().as_bytes());
        payload.extend_from_slice(&(e.heads.len() as u32).to_be_bytes());
        for h in &e.heads {
            payload.extend_from_slice(h);
        }
    }
    let mut frame = b"TB\x01\x02".to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

#[test]
fn an_inventory_without_attestations_is_the_version_1_frame() {
    let inv = inventory(Vec::new());
    let bytes = Message::Inventory(inv.clone()).encode().unwrap();
    assert_eq!(bytes, frame_by_hand(&inv));
    assert_eq!(
        Message::decode(&bytes).unwrap(),
        Message::Inventory(inv.clone())
    );
    // An empty attestation list written out is not canonical: refused.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&0u32.to_be_bytes());
    let n = padded.len() as u32 - 8;
    padded[4..8].copy_from_slice(&n.to_be_bytes());
    assert!(Message::decode(&padded).is_err());
}

#[test]
fn an_inventory_with_attestations_round_trips_after_the_version_1_bytes() {
    let a = attestation(ACCEPTANCE, ts(2025, 3, 3, 10)).encode();
    let b = attestation("130102-ca", ts(2025, 3, 3, 11)).encode();
    let inv = inventory(vec![a.clone(), b.clone()]);
    let bytes = Message::Inventory(inv.clone()).encode().unwrap();
    assert_eq!(
        Message::decode(&bytes).unwrap(),
        Message::Inventory(inv.clone())
    );
    // The version-1 payload, then the count and each attestation as a blob.
    let plain = frame_by_hand(&inventory(Vec::new()));
    assert_eq!(bytes[8..plain.len()], plain[8..]);
    let mut tail = 2u32.to_be_bytes().to_vec();
    for x in [&a, &b] {
        tail.extend_from_slice(&(x.len() as u32).to_be_bytes());
        tail.extend_from_slice(x);
    }
    assert_eq!(bytes[plain.len()..], tail[..]);
    assert_eq!(
        u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize,
        bytes.len() - 8
    );
    // The attestations decode as signed.
    for x in [&a, &b] {
        assert!(SignedAttestation::decode(x).unwrap().verify_signature());
    }
    // Every strict prefix of the frame is refused.
    for n in 0..bytes.len() {
        assert!(Message::decode(&bytes[..n]).is_err(), "prefix of {n}");
    }
    // An inventory of attestations only (a supervisor's whole diet).
    let only = Inventory {
        entries: Vec::new(),
        ..inv
    };
    let bytes = Message::Inventory(only.clone()).encode().unwrap();
    assert_eq!(Message::decode(&bytes).unwrap(), Message::Inventory(only));
}
