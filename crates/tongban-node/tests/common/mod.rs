//! What the node library's multi-office tests share: a seeded generator, a
//! memory-backed temporary directory, and the scans of a case's notice.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use tongban_domain::ids::{Operator, Timestamp};
use tongban_node::local::{LocalNode, NewCase};

/// A small deterministic generator (splitmix64): a seeded test makes the
/// same population in every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A temporary directory in memory where the machine has one: these tests
/// are about rules over thousands of cases, not durability (the store's own
/// tests are), and each of their many commits would wait for the disk.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Attaches a scan for every item of a new case's notice (一次性告知), as a
/// window clerk does before accepting it.
pub fn attach_notice(node: &LocalNode, made: &NewCase, op: &Operator, at: Timestamp) {
    for (code, _) in &made.notice {
        let scan = format!("scan of {code} for {}", made.case_id);
        node.attach_reader(
            &made.case_id,
            scan.as_bytes(),
            &format!("{code}.jpg"),
            code,
            "image/jpeg",
            op,
            at,
        )
        .unwrap();
    }
}

/// (county, township) of each province of the seeded tests: Hebei,
/// Guangdong, Beijing.
pub const PROVINCES: [(&str, &str); 3] = [
    ("130102", "130102001"),
    ("440106", "440106001"),
    ("110101", "110101001"),
];

pub fn dpf(county: &str) -> String {
    format!("{county}-dpf")
}

pub fn ca(county: &str) -> String {
    format!("{county}-ca")
}

pub fn day(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Ten in the morning, Beijing time.
pub fn at(date: chrono::NaiveDate) -> Timestamp {
    Timestamp(Timestamp::start_of_china_date(date).0 + 10 * 3_600_000)
}

pub fn op() -> Operator {
    Operator::parse("经办01").unwrap()
}

pub fn approve(opinion: &str) -> tongban_case::Payload {
    tongban_case::Payload {
        opinion: opinion.into(),
        outcome: Some(tongban_case::Outcome::Approve),
        ..tongban_case::Payload::default()
    }
}

/// The offices of the three provinces' counties (a township, the DPF and
/// civil affairs each) and any `extra`, certified from 2025-12-01, each a
/// `LocalNode` over its own store in memory. Documents are carried between
/// them as sync stores them (`LocalNode::save`).
pub struct World {
    pub tmp: tempfile::TempDir,
    pub nodes: std::collections::BTreeMap<String, LocalNode>,
}

impl World {
    pub fn new(extra: &[tongban_node::provision::OfficeSpec]) -> World {
        use tongban_domain::stage::Role;
        use tongban_node::provision::{OfficeSpec, provision};
        let tmp = memory_tempdir();
        let mut specs = Vec::new();
        for (county, township) in PROVINCES {
            specs.push(OfficeSpec::new(township, Role::Township, township));
            specs.push(OfficeSpec::new(&dpf(county), Role::CountyDpf, county));
            specs.push(OfficeSpec::new(
                &ca(county),
                Role::CountyCivilAffairs,
                county,
            ));
        }
        specs.extend(extra.iter().cloned());
        provision(
            tmp.path(),
            &specs,
            at(day("2025-12-01")),
            Timestamp(Timestamp::now().0 + 400 * 86_400_000),
        )
        .unwrap();
        let nodes = specs
            .iter()
            .map(|s| {
                (
                    s.office.clone(),
                    LocalNode::open(&tmp.path().join(&s.office)).unwrap(),
                )
            })
            .collect();
        World { tmp, nodes }
    }

    pub fn node(&self, office: &str) -> &LocalNode {
        &self.nodes[office]
    }

    pub fn node_mut(&mut self, office: &str) -> &mut LocalNode {
        self.nodes.get_mut(office).unwrap()
    }

    pub fn carry(&self, case: &tongban_domain::ids::CaseId, from: &str, to: &str) {
        let mut doc = self.node(from).case(case).unwrap();
        self.node(to).save(case, &mut doc).unwrap();
    }

    pub fn act(
        &self,
        office: &str,
        case: &tongban_domain::ids::CaseId,
        to: tongban_domain::stage::Stage,
        payload: tongban_case::Payload,
        when: chrono::NaiveDate,
    ) {
        self.node(office)
            .act(case, to, &payload, &op(), at(when))
            .unwrap_or_else(|e| panic!("{office} {case} → {to}: {e}"));
    }
}
