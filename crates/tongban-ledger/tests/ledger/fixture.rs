//! A cross-province case and its offices: acceptance township 440106001 (Guangzhou,
//! Yuexiu, Beijing Street), domicile township 130102001 (Shijiazhuang, Chang'an),
//! and the domicile county's DPF (`130102-dpf`) and civil affairs (`130102-ca`).

use std::collections::HashSet;

use chrono::NaiveDate;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::{
    CaseHistory, Directory, DirectoryAuthority, OfficeCertificate, OfficeKey, Report, Revocation,
    SignedRevocation, SignedTransition, Transition, VerifyContext, ViolationKind, verify_case,
};

pub const ACCEPTANCE: &str = "440106001";
pub const DOMICILE: &str = "130102001";
pub const DPF: &str = "130102-dpf";
pub const CA: &str = "130102-ca";

/// Beijing local time as a timestamp.
pub fn bj(y: i32, m: u32, d: u32, h: i64, min: i64) -> Timestamp {
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
    Timestamp(Timestamp::start_of_china_date(date).0 + h * Timestamp::HOUR_MS + min * 60_000)
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn office(id: &str) -> OfficeId {
    OfficeId::parse(id).unwrap()
}

pub struct Offices {
    pub authority: DirectoryAuthority,
    pub acceptance: OfficeKey,
    pub domicile: OfficeKey,
    pub dpf: OfficeKey,
    pub ca: OfficeKey,
}

impl Offices {
    pub fn new() -> Offices {
        Offices {
            authority: DirectoryAuthority::new(OfficeKey::from_bytes(&[1; 32])),
            acceptance: OfficeKey::from_bytes(&[2; 32]),
            domicile: OfficeKey::from_bytes(&[3; 32]),
            dpf: OfficeKey::from_bytes(&[4; 32]),
            ca: OfficeKey::from_bytes(&[5; 32]),
        }
    }

    pub fn key_of(&self, id: &str) -> &OfficeKey {
        match id {
            ACCEPTANCE => &self.acceptance,
            DOMICILE => &self.domicile,
            DPF => &self.dpf,
            CA => &self.ca,
            _ => panic!("no office {id}"),
        }
    }

    pub fn cert(&self, id: &str, serial: u64, key: &OfficeKey) -> OfficeCertificate {
        let (name, role, division) = match id {
            ACCEPTANCE => ("广州市越秀区北京街道办事处", Role::Township, ACCEPTANCE),
            DOMICILE => ("石家庄市长安区建北街道办事处", Role::Township, DOMICILE),
            DPF => ("石家庄市长安区残疾人联合会", Role::CountyDpf, "130102"),
            CA => ("石家庄市长安区民政局", Role::CountyCivilAffairs, "130102"),
            _ => panic!("no office {id}"),
        };
        OfficeCertificate {
            office: office(id),
            name: name.into(),
            role,
            division: division.into(),
            public_key: key.public(),
            not_before: bj(2021, 1, 1, 0, 0),
            not_after: bj(2028, 12, 31, 0, 0),
            serial,
        }
    }

    pub fn directory_with(
        &self,
        extra_certs: Vec<OfficeCertificate>,
        revocations: Vec<Revocation>,
    ) -> Directory {
        let mut certs: Vec<OfficeCertificate> = [ACCEPTANCE, DOMICILE, DPF, CA]
            .iter()
            .enumerate()
            .map(|(i, id)| self.cert(id, i as u64 + 1, self.key_of(id)))
            .collect();
        certs.extend(extra_certs);
        self.directory_from(certs, revocations)
    }

    /// A verified directory of exactly these entries.
    pub fn directory_from(
        &self,
        certs: Vec<OfficeCertificate>,
        revocations: Vec<Revocation>,
    ) -> Directory {
        let certs = certs
            .into_iter()
            .map(|c| self.authority.issue(c).unwrap())
            .collect();
        let revocations: Vec<SignedRevocation> = revocations
            .into_iter()
            .map(|r| self.authority.revoke(r).unwrap())
            .collect();
        let signed = self
            .authority
            .publish(7, bj(2024, 1, 1, 0, 0), certs, revocations);
        Directory::verify(&signed.encode(), &self.authority.public()).unwrap()
    }

    pub fn directory(&self) -> Directory {
        self.directory_with(Vec::new(), Vec::new())
    }
}

pub fn case_id() -> CaseId {
    CaseId::new(ACCEPTANCE, date(2025, 3, 3), [1, 2, 3, 4]).unwrap()
}

pub fn head(n: u32) -> [u8; 32] {
    *blake3::hash(format!("automerge change {n}").as_bytes()).as_bytes()
}

/// Builds a chain of signed transitions, step by step.
pub struct ChainBuilder<'o> {
    pub offices: &'o Offices,
    pub case: CaseId,
    pub signed: Vec<SignedTransition>,
}

impl<'o> ChainBuilder<'o> {
    pub fn new(offices: &'o Offices) -> ChainBuilder<'o> {
        ChainBuilder {
            offices,
            case: case_id(),
            signed: Vec::new(),
        }
    }

    /// The transition that would follow the last one (or create the case).
    pub fn next(&self, to: Stage, office_id: &str, at: Timestamp) -> Transition {
        let last = self.signed.last();
        let seq = self.signed.len() as u32;
        Transition {
            case: self.case.clone(),
            seq,
            from: last.map(|s| s.transition.to),
            to,
            office: office(office_id),
            operator: Operator::parse(&format!("clerk-{office_id}")).unwrap(),
            at,
            heads: vec![head(seq * 2), head(seq * 2 + 1)],
            prev: last.map(SignedTransition::hash),
            payload_digest: Transition::digest_payload(format!("opinion {seq}").as_bytes()),
            signer_key: self.offices.key_of(office_id).public(),
        }
    }

    pub fn push_signed(&mut self, transition: Transition, key: &OfficeKey) -> &mut Self {
        self.signed
            .push(SignedTransition::sign(transition, key).unwrap());
        self
    }

    pub fn step(&mut self, to: Stage, office_id: &str, at: Timestamp) -> &mut Self {
        let transition = self.next(to, office_id, at);
        let key = self.offices.key_of(office_id);
        self.push_signed(transition, key)
    }

    pub fn encoded(&self) -> Vec<Vec<u8>> {
        self.signed.iter().map(SignedTransition::encode).collect()
    }
}

/// The whole cross-province path, March 2025, every deadline met.
pub fn full_chain(offices: &Offices) -> ChainBuilder<'_> {
    let mut chain = ChainBuilder::new(offices);
    chain
        .step(Stage::Draft, ACCEPTANCE, bj(2025, 3, 3, 9, 0))
        .step(Stage::Accepted, ACCEPTANCE, bj(2025, 3, 3, 10, 0))
        .step(Stage::Pushed, ACCEPTANCE, bj(2025, 3, 4, 9, 0))
        .step(Stage::Received, DOMICILE, bj(2025, 3, 4, 9, 5))
        .step(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 5, 15, 0))
        .step(Stage::DpfReviewed, DPF, bj(2025, 3, 6, 11, 0))
        .step(Stage::Decided, CA, bj(2025, 3, 10, 16, 0))
        .step(Stage::ResultReceived, ACCEPTANCE, bj(2025, 3, 10, 16, 30))
        .step(Stage::Notified, ACCEPTANCE, bj(2025, 3, 11, 10, 0))
        .step(Stage::Active, CA, bj(2025, 3, 12, 9, 0));
    chain
}

pub fn calendar() -> Calendar {
    Calendar::shipped().unwrap()
}

/// Verifies with every head of the builder's transitions present.
pub fn verify_all_heads(
    case: &CaseId,
    transitions: Vec<Vec<u8>>,
    directory: &Directory,
    calendar: &Calendar,
    now: Timestamp,
) -> Report {
    let present: HashSet<[u8; 32]> = (0..200).map(head).collect();
    let has_head = move |h: &[u8; 32]| present.contains(h);
    let ctx = VerifyContext::new(directory, calendar, now, &has_head);
    verify_case(
        &CaseHistory {
            case: case.clone(),
            transitions,
            domicile_township: DOMICILE.into(),
        },
        &ctx,
    )
}

/// The kinds found, sorted, without repeats.
pub fn kinds(report: &Report) -> Vec<ViolationKind> {
    let mut kinds: Vec<ViolationKind> = report.violations.iter().map(|v| v.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The report's violations, one per line, for snapshots.
pub fn render(report: &Report) -> String {
    report.violations.iter().map(|v| format!("{v}\n")).collect()
}
