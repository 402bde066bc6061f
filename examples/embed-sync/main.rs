//! Embedding Tongban's sync protocol in another Rust program.
//!
//! `tongban-sync` is sans-IO: a [`SyncNode`] never touches a socket, a clock or
//! a disk. The program that embeds it owns all three: it hands in the store (any
//! [`SyncStore`]; here the crate's own in-memory `MemStore`), the time of every
//! call, and the frames that arrived; it takes out the frames to send and the
//! events to show. This program runs two office nodes in one process and moves
//! frames between them through plain queues — the same loop a QUIC daemon runs,
//! with the network replaced by a function call.
//!
//! What travels is a real case: a new directory authority certifies two offices,
//! the Tianhe street office (五山街道, the acceptance office) starts a case for a
//! Hebei resident, attaches the scans its notice asks for, accepts and pushes it
//! — every step an ed25519-signed transition — and syncs with the Chang'an
//! township of the applicant's household registration (the domicile office).
//! The domicile node verifies every signature against the directory before it
//! stores the case, fetches the scans by their BLAKE3 hashes, and signs the
//! automatic `received` receipt, which travels back.
//!
//! ```sh
//! cargo run -p tongban-examples --example embed_sync
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, bail};
use tongban_case::schema::Material;
use tongban_case::{CaseDocument, IntakeForm, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::directory::{DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::OfficeKey;
use tongban_sync::route::CaseRoute;
use tongban_sync::store::{MemStore, StoreWrite, SyncStore};
use tongban_sync::{Config, Event, Limits, SessionId, SyncNode};

/// One office node as an embedding program holds it: the protocol's state
/// machine beside the store it works on.
struct Endpoint {
    node: SyncNode,
    store: MemStore,
    /// Frames that arrived for this node, oldest first (the "network").
    inbox: VecDeque<Vec<u8>>,
    /// The session with the other node.
    session: SessionId,
    events: Vec<Event>,
}

/// What one run did, for the caller (and the test) to check.
#[derive(Debug)]
pub struct Outcome {
    /// The case that travelled.
    pub case: CaseId,
    /// Its stage at the acceptance office after the sync.
    pub acceptance_stage: Option<Stage>,
    /// Its stage at the domicile office after the sync.
    pub domicile_stage: Option<Stage>,
    /// Whether the domicile copy's signed history verified without errors.
    pub domicile_verified: bool,
    /// Signed transitions in the domicile copy.
    pub transitions: usize,
    /// Scans the domicile node fetched and holds.
    pub materials_at_domicile: usize,
    /// Scans the case lists.
    pub materials_listed: usize,
    /// Frames and bytes that crossed between the two nodes.
    pub frames: u64,
    /// Bytes that crossed.
    pub bytes: u64,
    /// Events the two nodes reported, as text.
    pub events: Vec<String>,
}

/// An office of this example: its key and what its certificate says.
struct Office {
    id: OfficeId,
    key: Arc<OfficeKey>,
    role: Role,
    division: String,
}

impl Office {
    fn new(id: &str, role: Role, division: &str) -> anyhow::Result<Office> {
        Ok(Office {
            id: OfficeId::parse(id)?,
            key: Arc::new(OfficeKey::generate()?),
            role,
            division: division.to_string(),
        })
    }

    fn signing(&self) -> SigningOffice<'_> {
        SigningOffice {
            key: &self.key,
            facts: OfficeFacts {
                office: self.id.to_string(),
                role: self.role,
                division: self.division.clone(),
            },
        }
    }
}

fn endpoint(
    office: &Office,
    directory: &[u8],
    authority: &DirectoryAuthority,
    calendar: &Arc<Calendar>,
    incarnation: u8,
) -> anyhow::Result<Endpoint> {
    let mut store = MemStore::new([incarnation; 16]);
    // A node learns its directory from the authority's signed file (`tongban
    // node directory-import`); the protocol verifies it again on every use.
    store.commit(vec![StoreWrite::Directory {
        bytes: directory.to_vec(),
    }])?;
    let config = Config {
        office: office.id.clone(),
        key: office.key.clone(),
        authority: authority.public(),
        calendar: calendar.clone(),
        limits: Limits::default(),
    };
    Ok(Endpoint {
        node: SyncNode::new(config, &store)?,
        store,
        inbox: VecDeque::new(),
        session: SessionId(0),
        events: Vec::new(),
    })
}

/// Starts the case at the acceptance office, attaches a scan for every item of
/// its materials notice (bytes in the store, hash in the document), accepts and
/// pushes it. Returns its id.
fn start_case(acceptance: &Office, store: &mut MemStore, now: Timestamp) -> anyhow::Result<CaseId> {
    // A resident of Chang'an district, Shijiazhuang (Hebei), with a level-2
    // mental disability certificate (the ID number and the two digits of
    // category and level), in a dibao household.
    let first17 = "13010219680512031";
    let check = resident_id_check_char(first17).context("a valid first 17 digits")?;
    let resident = format!("{first17}{check}");
    let form = IntakeForm {
        name: "张建国".into(),
        resident_id: resident.clone(),
        hukou_township: "130102001".into(),
        certificate: format!("{resident}62"),
        dibao: true,
        low_income: false,
        long_term_care: false,
        other_allowances: Vec::new(),
        subsidy_kinds: vec!["living".into()],
        phone: "13800000000".into(),
        address: "广州市天河区五山路".into(),
        agent: None,
    };
    let intake = form.validate(now.china_date()).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("intake refused: {}", text.join("; "))
    })?;
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let case = CaseId::new(&acceptance.division, now.china_date(), random)?;
    let clerk = Operator::parse("窗口01")?;
    let signer = acceptance.signing();
    let (mut doc, _draft) = CaseDocument::create(&case, &intake, &signer, &clerk, now)?;

    let notice: Vec<String> = doc
        .read()?
        .materials_notice
        .map(|n| n.items.into_iter().map(|item| item.code).collect())
        .unwrap_or_default();
    for (i, code) in notice.iter().enumerate() {
        let scan = format!("scan of {code} for {case}").into_bytes();
        let at = Timestamp(now.0 + i as i64 + 1);
        doc.add_material(
            &signer,
            &clerk,
            at,
            Material {
                kind: code.clone(),
                hash: blake3::hash(&scan).to_hex().to_string(),
                size: scan.len() as u64,
                media_type: "image/jpeg".into(),
                file_name: format!("{code}.jpg"),
                added_at: at.millis(),
                added_by: acceptance.id.to_string(),
            },
        )?;
        store.put_local_material(&case, scan);
    }
    for (i, stage) in [Stage::Accepted, Stage::Pushed].into_iter().enumerate() {
        let at = Timestamp(now.0 + 1_000 * (i as i64 + 1));
        doc.apply(stage, &signer, &clerk, at, &Payload::default())?;
    }
    // The route names the offices the case may reach; once `pushed` is signed
    // it is released beyond the acceptance office.
    let route = CaseRoute::new(
        DivisionCode::parse(&acceptance.division)?,
        intake.hukou_township,
    )?
    .released(true);
    store.commit(vec![StoreWrite::case(
        case.clone(),
        route,
        doc.automerge_mut().document().clone(),
        None,
    )])?;
    Ok(case)
}

/// Feeds every queued frame to its node and moves every frame a node wants
/// sent into the other's inbox, until nothing moves. Answers frames and bytes.
fn pump(a: &mut Endpoint, b: &mut Endpoint, now: Timestamp) -> anyhow::Result<(u64, u64)> {
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        let (f1, n1) = step(a, b, now)?;
        let (f2, n2) = step(b, a, now)?;
        frames += f1 + f2;
        bytes += n1 + n2;
        let moved = f1 + f2 > 0;
        if !moved && a.inbox.is_empty() && b.inbox.is_empty() {
            return Ok((frames, bytes));
        }
    }
}

/// One turn of one node: it handles what arrived, and what it sends goes into
/// the other's inbox. Answers frames and bytes sent.
fn step(from: &mut Endpoint, to: &mut Endpoint, now: Timestamp) -> anyhow::Result<(u64, u64)> {
    let (mut frames, mut bytes) = (0u64, 0u64);
    while let Some(frame) = from.inbox.pop_front() {
        from.node
            .handle_message(&mut from.store, from.session, &frame, now)?;
    }
    while let Some(transmit) = from.node.poll_transmit() {
        frames += 1;
        bytes += transmit.bytes.len() as u64;
        to.inbox.push_back(transmit.bytes);
    }
    while let Some(event) = from.node.poll_event() {
        from.events.push(event);
    }
    Ok((frames, bytes))
}

/// Runs the whole example and answers what happened.
pub fn run() -> anyhow::Result<Outcome> {
    let now = Timestamp::now();
    let day = 24 * Timestamp::HOUR_MS;

    // The directory authority certifies both office keys (in production: `tongban
    // directory init/add`, done once by the province).
    let authority = DirectoryAuthority::new(OfficeKey::generate()?);
    let acceptance = Office::new("440106001", Role::Township, "440106001")?;
    let domicile = Office::new("130102001", Role::Township, "130102001")?;
    let mut certificates = Vec::new();
    for (serial, office) in [&acceptance, &domicile].into_iter().enumerate() {
        certificates.push(authority.issue(OfficeCertificate {
            office: office.id.clone(),
            name: format!("{} 示例", office.id),
            role: office.role,
            division: office.division.clone(),
            public_key: office.key.public(),
            not_before: Timestamp(now.0 - day),
            not_after: Timestamp(now.0 + 365 * day),
            serial: serial as u64 + 1,
        })?);
    }
    let directory = authority
        .publish(1, Timestamp(now.0 - day), certificates, Vec::new())
        .encode();
    let calendar = Arc::new(Calendar::shipped()?);

    let mut a = endpoint(&acceptance, &directory, &authority, &calendar, 1)?;
    let mut b = endpoint(&domicile, &directory, &authority, &calendar, 2)?;
    let case = start_case(&acceptance, &mut a.store, now)?;
    let materials_listed = a.store.material_hashes().len();

    // The transport authenticated each side's office key (QUIC + TLS in the
    // daemon); each node opens a session for the other and queues its hello.
    a.session = a.node.connect(&a.store, domicile.id.clone(), now)?;
    b.session = b.node.connect(&b.store, acceptance.id.clone(), now)?;
    // The application wrote a case: the node offers it to its peers.
    a.node.handle_local_change(&mut a.store, now)?;
    let (mut frames, mut bytes) = pump(&mut a, &mut b, now)?;
    // Timers: a real driver sleeps until `poll_timeout`; here time is advanced
    // to it while anything is still outstanding (material fetches, retries).
    for _ in 0..20 {
        if a.node.is_idle(&a.store)? && b.node.is_idle(&b.store)? {
            break;
        }
        let next = [a.node.poll_timeout(), b.node.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        a.node.handle_timeout(&mut a.store, next)?;
        b.node.handle_timeout(&mut b.store, next)?;
        let (f, n) = pump(&mut a, &mut b, next)?;
        frames += f;
        bytes += n;
    }

    let stage_at = |store: &MemStore| -> anyhow::Result<Option<Stage>> {
        match store.saved(&case)? {
            Some(saved) => Ok(CaseDocument::load(&saved)?.stage()?),
            None => Ok(None),
        }
    };
    let acceptance_stage = stage_at(&a.store)?;
    let domicile_stage = stage_at(&b.store)?;
    let mut held = CaseDocument::load(
        &b.store
            .saved(&case)?
            .context("the case did not reach the domicile office")?,
    )?;
    let report = held.verify(b.node.directory(), &calendar, now)?;
    let materials_at_domicile = b
        .store
        .material_hashes()
        .iter()
        .filter(|h| a.store.material(h).is_some())
        .count();
    let events = a
        .events
        .iter()
        .map(|e| format!("{} {e:?}", acceptance.id))
        .chain(b.events.iter().map(|e| format!("{} {e:?}", domicile.id)))
        .collect();
    Ok(Outcome {
        case,
        acceptance_stage,
        domicile_stage,
        domicile_verified: report.is_ok(),
        transitions: report.n_entries,
        materials_at_domicile,
        materials_listed,
        frames,
        bytes,
        events,
    })
}

fn main() -> anyhow::Result<()> {
    let outcome = run()?;
    println!("案件 case {}", outcome.case);
    for event in &outcome.events {
        println!("  事件 event: {event}");
    }
    println!(
        "受理地 acceptance 440106001: {:?}; 户籍地 domicile 130102001: {:?}",
        outcome.acceptance_stage, outcome.domicile_stage
    );
    println!(
        "户籍地副本 domicile copy: {} 条签名转换 signed transitions, 验证 verified {}; 材料 scans {}/{}",
        outcome.transitions,
        outcome.domicile_verified,
        outcome.materials_at_domicile,
        outcome.materials_listed
    );
    println!(
        "{} 帧 frames, {} 字节 bytes between the two nodes",
        outcome.frames, outcome.bytes
    );
    if outcome.domicile_stage != Some(Stage::Received) || !outcome.domicile_verified {
        bail!("the case did not arrive as expected");
    }
    Ok(())
}
