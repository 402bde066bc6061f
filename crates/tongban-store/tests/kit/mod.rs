//! Shared support for the store's tests, the crash writer and the benchmark:
//! a seeded random generator and realistic case-like Automerge documents.
//!
//! Included with `#[path]` by each target, so it is not a library item.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ScalarValue};
use chrono::NaiveDate;
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::Stage;
use tongban_store::{CaseMeta, ResidentKey};

/// xorshift64* seeded through splitmix64: deterministic, fast, good enough here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        self.fill(&mut out);
        out
    }
}

/// The `n`th case id of a test run: distinct for distinct `n`.
pub fn case_id(n: u64) -> CaseId {
    let date =
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Duration::days((n % 300) as i64);
    CaseId::new("440106001", date, ((n as u32) & 0x3fff_ffff).to_be_bytes()).unwrap()
}

pub fn office(name: &str) -> OfficeId {
    OfficeId::parse(name).unwrap()
}

/// Index metadata of the `n`th case.
pub fn meta(n: u64, stage: Stage) -> CaseMeta {
    CaseMeta {
        stage,
        due: Some(
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() + chrono::Duration::days((n % 30) as i64),
        ),
        resident_key: ResidentKey(*blake3::hash(&(n / 2).to_le_bytes()).as_bytes()),
        offices: vec![
            office("440106001"),
            office("130102001"),
            office("130102-dpf"),
            office("130102-ca"),
        ],
        subsidy_kinds: vec!["living".into(), "nursing".into()],
    }
}

const FIELDS: [&str; 10] = [
    "subsidy_kinds",
    "accepted_at",
    "acceptance_office",
    "domicile_township",
    "applicant_name",
    "resident_id",
    "phone",
    "bank_account",
    "notice_given",
    "channel",
];

/// A realistic case document: ~15 scalar fields, 5 nested maps, and a list of 3
/// signed transitions stored as ~300-byte blobs plus a few readable fields.
pub fn case_doc(rng: &mut Rng, case: &CaseId) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "case_id", case.as_str()).unwrap();
    doc.put(ROOT, "schema", 1u64).unwrap();
    doc.put(ROOT, "stage", "received").unwrap();
    for (idx, field) in FIELDS.iter().enumerate() {
        doc.put(
            ROOT,
            *field,
            format!("{field}-{}-{idx}", rng.next_u64() % 1_000_000),
        )
        .unwrap();
    }
    doc.put(ROOT, "monthly_amount_fen", rng.range(5_000, 30_000))
        .unwrap();
    doc.put(ROOT, "first_paid_month", "2026-11").unwrap();
    for map in ["applicant", "household", "disability", "dibao", "review"] {
        let obj = doc.put_object(ROOT, map, ObjType::Map).unwrap();
        for key in ["a", "b", "c", "d"] {
            doc.put(
                &obj,
                key,
                format!("{map}.{key}.{}", rng.next_u64() % 100_000),
            )
            .unwrap();
        }
    }
    let transitions = doc.put_object(ROOT, "transitions", ObjType::List).unwrap();
    for idx in 0..3 {
        push_transition(&mut doc, rng, &transitions, idx);
    }
    doc.commit();
    doc
}

fn push_transition(doc: &mut AutoCommit, rng: &mut Rng, list: &automerge::ObjId, idx: usize) {
    let t = doc.insert_object(list, idx, ObjType::Map).unwrap();
    doc.put(
        &t,
        "stage",
        ["accepted", "pushed", "received", "initial_reviewed"][idx % 4],
    )
    .unwrap();
    doc.put(&t, "signer", "440106001").unwrap();
    doc.put(&t, "signed", ScalarValue::Bytes(rng.bytes(300)))
        .unwrap();
}

/// One update of a case document: a stage change, a note and sometimes a new
/// transition. Returns the incremental save of the change.
pub fn update_doc(doc: &mut AutoCommit, rng: &mut Rng) -> Vec<u8> {
    use automerge::ReadDoc;
    let stage = [
        "pushed",
        "received",
        "initial_reviewed",
        "dpf_reviewed",
        "decided",
    ][rng.range(0, 5) as usize];
    doc.put(ROOT, "stage", stage).unwrap();
    doc.put(ROOT, "note", format!("note {}", rng.next_u64()))
        .unwrap();
    if rng.range(0, 4) == 0
        && let Some((_, list)) = doc.get(ROOT, "transitions").unwrap()
    {
        let len = doc.length(&list);
        push_transition(doc, rng, &list, len);
    }
    doc.commit();
    doc.save_incremental()
}
