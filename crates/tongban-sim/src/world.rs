//! The simulated world: the offices of a hub tree with real division codes, their
//! keys, the signed directory, and the making of real case documents.
//!
//! The tree is 2 provinces × 2 counties × 3 townships: Hebei (13) with Chang'an
//! (130102) and Qiaoxi (130104) of Shijiazhuang, Guangdong (44) with Yuexiu
//! (440104) and Tianhe (440106) of Guangzhou. Each county has a hub, a DPF and a
//! civil affairs bureau; each province a hub and a supervisor; and there are
//! the national hub and the national supervisor: 30 nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use automerge::{ActorId, AutoCommit};
use chrono::NaiveDate;
use tongban_case::schema::{
    Acceptance, Applicant, CaseDoc, Household, Material, MaterialsNotice, NoticeItem,
    SCHEMA_VERSION,
};
use tongban_case::{CaseDocument, CaseError, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::policy::Policy;
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::directory::{DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::{OfficeKey, PublicKey};
use tongban_ledger::transition::SignedTransition;
use tongban_sync::route::{CountyOffice, NATIONAL_DIVISION, Place};

use crate::rng::Rng;

/// The townships of the tree, by county, with their names (from the national
/// division table).
pub const TREE: [(&str, [(&str, &str); 3]); 4] = [
    (
        "130102",
        [
            ("130102001", "建北街道"),
            ("130102002", "青园街道"),
            ("130102003", "广安街道"),
        ],
    ),
    (
        "130104",
        [
            ("130104001", "东里街道"),
            ("130104002", "中山街道"),
            ("130104004", "南长街道"),
        ],
    ),
    (
        "440104",
        [
            ("440104001", "洪桥街道"),
            ("440104003", "北京街道"),
            ("440104004", "六榕街道"),
        ],
    ),
    (
        "440106",
        [
            ("440106001", "五山街道"),
            ("440106002", "员村街道"),
            ("440106003", "车陂街道"),
        ],
    ),
];

/// One office of the world.
#[derive(Clone)]
pub struct Office {
    /// Its id.
    pub id: OfficeId,
    /// Its place in the tree.
    pub place: Place,
    /// The role its certificate grants.
    pub role: Role,
    /// The division its certificate names.
    pub division: String,
    /// Its key.
    pub key: Arc<OfficeKey>,
}

impl std::fmt::Debug for Office {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Office({})", self.id)
    }
}

impl Office {
    /// What the stage machine knows of the office.
    pub fn facts(&self) -> OfficeFacts {
        OfficeFacts {
            office: self.id.to_string(),
            role: self.role,
            division: self.division.clone(),
        }
    }

    /// The office as a signer.
    pub fn signing(&self) -> SigningOffice<'_> {
        SigningOffice {
            key: &self.key,
            facts: self.facts(),
        }
    }
}

/// The offices, their tree links and the directory that certifies them.
pub struct World {
    /// Every office; indexes are node numbers.
    pub offices: Vec<Office>,
    /// Tree links as (child, parent) node numbers.
    pub links: Vec<(usize, usize)>,
    /// The authority's public key.
    pub authority: PublicKey,
    /// The signed directory (version 1).
    pub directory: Vec<u8>,
    /// The calendar.
    pub calendar: Arc<Calendar>,
    by_place: BTreeMap<Place, usize>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("offices", &self.offices.len())
            .finish_non_exhaustive()
    }
}

/// A code of the literal table above; a failure is a typo in the table.
#[allow(clippy::expect_used)]
fn code(text: &str) -> DivisionCode {
    DivisionCode::parse(text).expect("the tree's division codes are valid")
}

/// The first day of the simulation: Monday 2 March 2026, a working day.
pub fn epoch() -> Timestamp {
    let date = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default();
    Timestamp(Timestamp::start_of_china_date(date).0 + 9 * Timestamp::HOUR_MS)
}

impl World {
    /// The standard tree. Keys are derived from the office ids, so every run has
    /// the same ones.
    pub fn standard() -> World {
        let mut specs: Vec<(String, Place, Role, String)> = Vec::new();
        specs.push((
            "hub-cn".into(),
            Place::National,
            Role::Hub,
            NATIONAL_DIVISION.into(),
        ));
        specs.push((
            "supervisor-cn".into(),
            Place::Supervisor(None),
            Role::Supervisor,
            NATIONAL_DIVISION.into(),
        ));
        for province in ["13", "44"] {
            specs.push((
                format!("hub-{province}"),
                Place::ProvinceHub(code(province)),
                Role::Hub,
                province.into(),
            ));
            specs.push((
                format!("supervisor-{province}"),
                Place::Supervisor(Some(code(province))),
                Role::Supervisor,
                province.into(),
            ));
        }
        for (county, townships) in TREE {
            let c = code(county);
            specs.push((
                format!("hub-{county}"),
                Place::CountyHub(c),
                Role::Hub,
                county.into(),
            ));
            specs.push((
                format!("{county}-dpf"),
                Place::CountyOffice(c, CountyOffice::Dpf),
                Role::CountyDpf,
                county.into(),
            ));
            specs.push((
                format!("{county}-ca"),
                Place::CountyOffice(c, CountyOffice::CivilAffairs),
                Role::CountyCivilAffairs,
                county.into(),
            ));
            for (township, _) in townships {
                specs.push((
                    township.into(),
                    Place::Township(code(township)),
                    Role::Township,
                    township.into(),
                ));
            }
        }
        let authority = DirectoryAuthority::new(OfficeKey::from_bytes(
            blake3::hash(b"tongban-sim authority").as_bytes(),
        ));
        let not_before = Timestamp(epoch().0 - 365 * 24 * Timestamp::HOUR_MS);
        let not_after = Timestamp(epoch().0 + 5 * 365 * 24 * Timestamp::HOUR_MS);
        let mut offices = Vec::new();
        let mut certificates = Vec::new();
        for (serial, (id, place, role, division)) in specs.into_iter().enumerate() {
            let key = OfficeKey::from_bytes(
                blake3::hash(format!("tongban-sim key {id}").as_bytes()).as_bytes(),
            );
            let id = office_id(&id);
            if let Ok(cert) = authority.issue(OfficeCertificate {
                office: id.clone(),
                name: format!("{id} office"),
                role,
                division: division.clone(),
                public_key: key.public(),
                not_before,
                not_after,
                serial: serial as u64 + 1,
            }) {
                certificates.push(cert);
            }
            offices.push(Office {
                id,
                place,
                role,
                division,
                key: Arc::new(key),
            });
        }
        let directory = authority
            .publish(1, not_before, certificates, Vec::new())
            .encode();
        let by_place: BTreeMap<Place, usize> = offices
            .iter()
            .enumerate()
            .map(|(i, o)| (o.place, i))
            .collect();
        let links = offices
            .iter()
            .enumerate()
            .filter_map(|(i, o)| Some((i, *by_place.get(&o.place.parent()?)?)))
            .collect();
        World {
            offices,
            links,
            authority: authority.public(),
            directory,
            calendar: Arc::new(Calendar::shipped().unwrap_or_default()),
            by_place,
        }
    }

    /// The node number of the office at `place`.
    pub fn at(&self, place: &Place) -> Option<usize> {
        self.by_place.get(place).copied()
    }

    /// Every township node number.
    pub fn townships(&self) -> Vec<usize> {
        (0..self.offices.len())
            .filter(|i| matches!(self.offices[*i].place, Place::Township(_)))
            .collect()
    }
}

/// An office id made from the literal table above; a failure is a typo in it.
#[allow(clippy::expect_used)]
fn office_id(text: &str) -> OfficeId {
    OfficeId::parse(text).expect("the tree's office ids are valid")
}

/// A deterministic Automerge actor for an office writing a case: bound to the
/// office as every office's actor is (`tongban_case::authorship::actor_for`),
/// with a suffix from the case and `salt` so that a seed replays exactly.
pub fn actor_for(office: &OfficeId, case: &CaseId, salt: u64) -> ActorId {
    let mut material = b"tongban-sim actor\0".to_vec();
    material.extend_from_slice(case.as_str().as_bytes());
    material.extend_from_slice(&salt.to_le_bytes());
    tongban_case::authorship::actor_for(office, &material)
}

/// A valid resident ID number registered in `township`'s county, born in 1960s.
pub fn resident_id(rng: &mut Rng, township: &str) -> String {
    let year = 1950 + rng.below(40);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let seq = rng.below(1000);
    let first17 = format!("{}{year:04}{month:02}{day:02}{seq:03}", &township[..6]);
    let check = resident_id_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// Starts a case as `CaseDocument::create` does, but with a deterministic actor, so
/// a seed replays exactly: the intake, the domicile policy's materials notice and
/// the signed `draft`.
pub fn create_case(
    office: &Office,
    case_id: &CaseId,
    domicile: &str,
    resident: &str,
    at: Timestamp,
) -> Result<(CaseDocument, SignedTransition), CaseError> {
    let policy =
        Policy::for_province(&domicile[..2]).map_err(|e| CaseError::Payload(e.to_string()))?;
    // The simulation attaches at most one scan (an `id_card`), and a case is
    // accepted only with every item of its notice: the simulated notice lists
    // none, so that acceptance depends on sync, not on paperwork.
    let items: Vec<NoticeItem> = Vec::new();
    let case = CaseDoc {
        schema_version: SCHEMA_VERSION,
        case_id: case_id.to_string(),
        created_at: at.millis(),
        acceptance: Acceptance {
            office: office.id.to_string(),
            township: office.division.clone(),
        },
        applicant: Applicant {
            name: "模拟申请人".into(),
            resident_id: resident.to_string(),
            sex: "male".into(),
            birth_date: "1960-01-01".into(),
            hukou_township: domicile.to_string(),
            phone: "13800000000".into(),
            address: "模拟地址".into(),
            agent: None,
        },
        // A level-1 physical disability in a dibao household: eligible for the
        // living subsidy the simulation awards under every province's policy.
        certificate: Some(tongban_case::schema::Certificate {
            number: format!("{resident}41"),
            category: "physical".into(),
            level: 1,
        }),
        household: Household {
            dibao: true,
            low_income: false,
            long_term_care: false,
            other_allowances: Vec::new(),
        },
        subsidy_kinds: vec!["living".into()],
        materials: BTreeMap::new(),
        materials_notice: Some(MaterialsNotice {
            policy_province: policy.province.clone(),
            items,
            given_at: at.millis(),
            office: office.id.to_string(),
        }),
        reviews: Vec::new(),
        decision: None,
        notification: None,
        evaluation: None,
        confirmations: Vec::new(),
        transitions: BTreeMap::new(),
        seals: BTreeMap::new(),
    };
    let mut doc = AutoCommit::new().with_actor(actor_for(&office.id, case_id, 0));
    autosurgeon::reconcile(&mut doc, &case).map_err(|e| CaseError::Automerge(e.to_string()))?;
    doc.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_time(at.millis() / 1000)
            .with_message("intake"),
    );
    let mut document = CaseDocument::from_automerge(doc);
    let operator = Operator::parse("sim-clerk").map_err(|e| CaseError::Payload(e.to_string()))?;
    let signed = document.apply(
        Stage::Draft,
        &office.signing(),
        &operator,
        at,
        &Payload::default(),
    )?;
    Ok((document, signed))
}

/// Records a material (`kind`, e.g. `id_card`) in the case document, as the
/// clerk's attach does: the store keeps the bytes, the document their hash and
/// size.
pub fn attach_material(
    document: &mut CaseDocument,
    office: &Office,
    kind: &str,
    bytes: &[u8],
    at: Timestamp,
) -> Result<(), CaseError> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    let operator = Operator::parse("sim-clerk").map_err(|e| CaseError::Payload(e.to_string()))?;
    document
        .add_material(
            &office.signing(),
            &operator,
            at,
            Material {
                kind: kind.into(),
                hash,
                size: bytes.len() as u64,
                media_type: "image/jpeg".into(),
                file_name: "scan.jpg".into(),
                added_at: at.millis(),
                added_by: office.id.to_string(),
            },
        )
        .map(|_| ())
}
