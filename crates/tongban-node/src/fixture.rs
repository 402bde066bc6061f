//! Realistic finished cases for benchmarks (`tongban bench`, the peers' bench
//! crate): the offices of one cross-province case's route, provisioned under a
//! fresh directory authority, and cases made by those offices' own keys as the
//! workflow makes them.
//!
//! A finished case is a Hebei resident (hukou 130102001, Chang'an district)
//! who applied at the Tianhe street office (440106001): intake with the
//! materials notice, a scan for each of the notice's items attached by
//! reference (six for this applicant: BLAKE3 of the bytes, which the fixture
//! also hands back so a store can hold them), then ten
//! signed transitions — `accepted`, `pushed`, `received`, `initial_reviewed`
//! (with an opinion), `dpf_reviewed` (with an opinion), `decided` (the
//! policy's award, an opinion), `result_received`, `notified`, `active` —
//! after the signed `draft`, and the applicant's evaluation as a signed
//! commit. Every change is signed by the office the write-rights table names,
//! so a receiving node admits it exactly as it would a real one.
//!
//! The transitions are signed without the node's guards beyond the stage
//! table (`CaseDocument::apply_unguarded`: no material bytes are looked up,
//! no publicity period waited) — the verifier checks the same rows either way.
//!
//! It never touches a network and writes only to the directories it is given.

use std::path::Path;

use tongban_case::{
    CaseDocument, IntakeForm, Outcome, Payload, SigningOffice, document::policy_awards, schema,
};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::keys::OfficeKey;

use crate::local::{LocalNode, NodeError};
use crate::provision::{OfficeSpec, provision};

/// The version of the cases this module makes: a prepared data set built
/// by another version is built again.
pub const FIXTURE_VERSION: u32 = 2;

/// The acceptance office of every fixture case (Tianhe, Guangzhou).
pub const ACCEPTANCE: &str = "440106001";
/// The domicile township (Chang'an, Shijiazhuang).
pub const DOMICILE: &str = "130102001";
/// The domicile county's DPF.
pub const DPF: &str = "130102-dpf";
/// The domicile county's civil affairs bureau.
pub const CIVIL_AFFAIRS: &str = "130102-ca";

/// The offices of the route, the chain of hubs from the domicile to the
/// acceptance office included: (office, role, division, parent hub).
pub const ROUTE: [(&str, Role, &str, Option<&str>); 9] = [
    ("hub-cn", Role::Hub, "00", None),
    ("hub-13", Role::Hub, "13", Some("hub-cn")),
    ("hub-44", Role::Hub, "44", Some("hub-cn")),
    ("hub-130102", Role::Hub, "130102", Some("hub-13")),
    ("hub-440106", Role::Hub, "440106", Some("hub-44")),
    (DOMICILE, Role::Township, DOMICILE, Some("hub-130102")),
    (DPF, Role::CountyDpf, "130102", Some("hub-130102")),
    (
        CIVIL_AFFAIRS,
        Role::CountyCivilAffairs,
        "130102",
        Some("hub-130102"),
    ),
    (ACCEPTANCE, Role::Township, ACCEPTANCE, Some("hub-440106")),
];

/// Provisions the route's offices and `extra` under `root` (one data
/// directory each), certified from 30 days ago for a year.
pub fn provision_route(root: &Path, extra: &[OfficeSpec]) -> Result<(), NodeError> {
    let now = Timestamp::now();
    let from = Timestamp(now.0 - 30 * 86_400_000);
    let to = Timestamp(now.0 + 365 * 86_400_000);
    let mut specs: Vec<OfficeSpec> = ROUTE
        .iter()
        .map(|(id, role, division, _)| OfficeSpec::new(id, *role, division))
        .collect();
    specs.extend(extra.iter().cloned());
    provision(root, &specs, from, to)?;
    Ok(())
}

/// One built case: its id, its document, and the bytes of its scans.
pub struct BuiltCase {
    /// The case id.
    pub case: CaseId,
    /// The document, every change signed.
    pub doc: CaseDocument,
    /// The scans the document references, by content.
    pub scans: Vec<Vec<u8>>,
}

/// Makes finished cases with the keys of the offices provisioned under a
/// root by [`provision_route`]. Cheap to share across threads.
pub struct CaseFactory {
    acceptance: (OfficeKey, OfficeFacts),
    township: (OfficeKey, OfficeFacts),
    dpf: (OfficeKey, OfficeFacts),
    civil_affairs: (OfficeKey, OfficeFacts),
    day: chrono::NaiveDate,
    start: Timestamp,
}

/// Bytes of each scan: a small stand-in for a photographed document (a real
/// scan is 0.2–2 MB). The documents reference them as real cases do (kind,
/// BLAKE3, size, media type, who attached them when), but every case shares
/// the same few scans, so a sync moves each once: the scans' transfer is the
/// transport's throughput, measured on its own (`docs/performance.md`), and a
/// fixture of 100,000 × 6 tiny distinct scans would measure one durable
/// commit per material instead of the documents.
pub const SCAN_BYTES: usize = 512;

impl CaseFactory {
    /// Reads the four signing offices' keys from their data directories.
    pub fn open(root: &Path) -> Result<CaseFactory, NodeError> {
        let signer = |office: &str, role: Role, division: &str| -> Result<_, NodeError> {
            let node = LocalNode::open(&root.join(office))?;
            Ok((
                node.key().clone(),
                OfficeFacts {
                    office: office.into(),
                    role,
                    division: division.into(),
                },
            ))
        };
        // Eight working days back: the case's deadlines all lie in the past
        // and were all met (one step a day).
        let day = Timestamp::now().china_date() - chrono::Days::new(14);
        Ok(CaseFactory {
            acceptance: signer(ACCEPTANCE, Role::Township, ACCEPTANCE)?,
            township: signer(DOMICILE, Role::Township, DOMICILE)?,
            dpf: signer(DPF, Role::CountyDpf, "130102")?,
            civil_affairs: signer(CIVIL_AFFAIRS, Role::CountyCivilAffairs, "130102")?,
            day,
            start: Timestamp(Timestamp::start_of_china_date(day).0 + 9 * 3_600_000),
        })
    }

    /// The id of the `i`th case.
    pub fn case_id(&self, i: u64) -> Result<CaseId, NodeError> {
        CaseId::new(ACCEPTANCE, self.day, (i as u32).to_be_bytes())
            .map_err(|e| NodeError::Rejected(e.to_string()))
    }

    /// One more signed change to a finished case, as the monthly dynamic
    /// check makes: civil affairs suspends the award (`active → suspended`).
    pub fn suspend(&self, doc: &mut CaseDocument) -> Result<(), NodeError> {
        let op = Operator::parse("核查01").map_err(|e| NodeError::Rejected(e.to_string()))?;
        let payload = Payload {
            opinion: "动态核查：低保资格待核实，暂停发放".into(),
            ..Payload::default()
        };
        let at = Timestamp(self.start.0 + 6 * 86_400_000);
        doc.apply_unguarded(
            Stage::Suspended,
            &signer(&self.civil_affairs),
            &op,
            at,
            &payload,
        )
        .map_err(|e| NodeError::Rejected(e.to_string()))?;
        Ok(())
    }

    /// The `i`th finished case (deterministic in `i` but for signatures'
    /// timestamps of the day the factory was opened).
    pub fn finished(&self, i: u64) -> Result<BuiltCase, NodeError> {
        let rejected = |e: tongban_case::CaseError| NodeError::Rejected(e.to_string());
        let born = chrono::NaiveDate::from_ymd_opt(1940, 1, 1).unwrap_or_default()
            + chrono::Days::new(i / 1000);
        let first17 = format!("130102{}{:03}", born.format("%Y%m%d"), i % 1000);
        let check = resident_id_check_char(&first17)
            .ok_or_else(|| NodeError::Rejected(format!("fixture id {first17}")))?;
        let id = format!("{first17}{check}");
        let form = IntakeForm {
            name: "张建国".into(),
            resident_id: id.clone(),
            hukou_township: DOMICILE.into(),
            certificate: format!("{id}41"),
            dibao: true,
            subsidy_kinds: vec!["living".into()],
            phone: "13800000000".into(),
            address: "广州市天河区五山路".into(),
            ..IntakeForm::default()
        };
        let intake = form
            .validate(self.day)
            .map_err(|e| NodeError::Rejected(format!("{e:?}")))?;
        let case = self.case_id(i)?;
        let op = Operator::parse("经办01").map_err(|e| NodeError::Rejected(e.to_string()))?;
        let acceptance = signer(&self.acceptance);
        let minute = |m: i64| Timestamp(self.start.0 + m * 60_000);
        let day_at = |d: i64| Timestamp(self.start.0 + d * 86_400_000);
        let (mut doc, _) =
            CaseDocument::create(&case, &intake, &acceptance, &op, minute(0)).map_err(rejected)?;
        // One scan for every item of the notice the domicile's policy gave
        // (six for this Hebei resident on dibao): acceptance is guarded by it.
        let items: Vec<String> = doc
            .read()
            .map_err(rejected)?
            .materials_notice
            .map(|n| n.items.into_iter().map(|i| i.code).collect())
            .unwrap_or_default();
        let mut scans = Vec::new();
        let mut materials = Vec::new();
        for kind in &items {
            // The same bytes for every case: content addressing stores each
            // kind's scan once, so a bench measures the documents' sync, not
            // thousands of tiny material transfers (see [`SCAN_BYTES`]).
            let mut bytes = format!("{kind} scan, bench fixture ").into_bytes();
            bytes.resize(SCAN_BYTES, b'.');
            let material = schema::Material {
                kind: kind.clone(),
                hash: blake3::hash(&bytes).to_hex().to_string(),
                size: bytes.len() as u64,
                media_type: "image/jpeg".into(),
                file_name: format!("{kind}.jpg"),
                added_at: minute(2).millis(),
                added_by: ACCEPTANCE.into(),
            };
            materials.push(material);
            scans.push(bytes);
        }
        // Uploaded together, one signed write (each write re-reads and
        // reconciles the whole document: one write instead of six is a
        // fifth of building a case).
        doc.add_materials(&acceptance, &op, minute(2), materials)
            .map_err(rejected)?;
        let review = |opinion: &str| Payload {
            opinion: opinion.into(),
            outcome: Some(Outcome::Approve),
            ..Payload::default()
        };
        let read = doc.read().map_err(rejected)?;
        let (awards, first) = policy_awards(&read, self.day).map_err(rejected)?;
        let decision = Payload {
            opinion: "审定通过".into(),
            outcome: Some(Outcome::Approve),
            awards,
            first_paid_month: Some(first),
            ..Payload::default()
        };
        let notified = Payload {
            method: Some("phone".into()),
            ..Payload::default()
        };
        let none = Payload::default();
        let township = signer(&self.township);
        let dpf = signer(&self.dpf);
        let ca = signer(&self.civil_affairs);
        let steps: [(Stage, &SigningOffice<'_>, Timestamp, &Payload); 9] = [
            (Stage::Accepted, &acceptance, minute(10), &none),
            (Stage::Pushed, &acceptance, minute(11), &none),
            (Stage::Received, &township, minute(20), &none),
            (
                Stage::InitialReviewed,
                &township,
                day_at(1),
                &review("初审同意"),
            ),
            (Stage::DpfReviewed, &dpf, day_at(2), &review("复审同意")),
            (Stage::Decided, &ca, day_at(3), &decision),
            (Stage::ResultReceived, &acceptance, day_at(3), &none),
            (Stage::Notified, &acceptance, day_at(4), &notified),
            (Stage::Active, &ca, day_at(5), &none),
        ];
        for (to, office, at, payload) in steps {
            doc.apply_unguarded(to, office, &op, at, payload)
                .map_err(rejected)?;
            if to == Stage::Notified {
                doc.record_evaluation(&acceptance, &op, day_at(4), 5, "满意")
                    .map_err(rejected)?;
            }
        }
        Ok(BuiltCase { case, doc, scans })
    }
}

fn signer((key, facts): &(OfficeKey, OfficeFacts)) -> SigningOffice<'_> {
    SigningOffice {
        key,
        facts: facts.clone(),
    }
}

/// Writes cases `range` made by `factory` into the store of the node at
/// `dir`, with their scans, `batch` cases per transaction, built on all
/// cores; `progress` is told how many were written after each transaction.
pub fn fill(
    factory: &CaseFactory,
    dir: &Path,
    range: std::ops::Range<u64>,
    batch: u64,
    mut progress: impl FnMut(u64),
) -> Result<(), NodeError> {
    use rayon::prelude::*;
    let target = LocalNode::open(dir)?;
    let mut next = range.start;
    while next < range.end {
        let end = (next + batch.max(1)).min(range.end);
        let mut built: Vec<_> = (next..end)
            .into_par_iter()
            .map(|i| {
                let built = factory.finished(i)?;
                let meta = target.meta_of(&built.doc)?;
                let route = tongban_replica::route_of(&built.case, &built.doc)
                    .ok_or_else(|| NodeError::Rejected(format!("no route for {}", built.case)))?;
                Ok((built, meta, route))
            })
            .collect::<Result<_, NodeError>>()?;
        target.store().write(|tx| {
            for (built, meta, route) in built.iter_mut() {
                let doc = built.doc.automerge_mut().document();
                // The case first: it records the scans it references, then
                // their bytes arrive as the window's attach stores them.
                tongban_replica::put_case(tx, &built.case, doc, meta, route)?;
                for scan in &built.scans {
                    tx.put_material(scan.as_slice())?;
                }
            }
            Ok(())
        })?;
        progress(end - next);
        next = end;
    }
    Ok(())
}
