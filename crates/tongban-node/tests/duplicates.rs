//! Duplicates caught at the domicile county, on real nodes' stores: the same
//! person applies at two acceptance townships, both cases reach the domicile
//! county's offices, the later one is flagged there and its award refused.
//! Documents are carried between the nodes' stores as sync stores them
//! (`LocalNode::save`, the write path every local command takes too); the
//! processes and the control API are tested in `tests/integration`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use tongban_case::document::policy_awards;
use tongban_case::{IntakeForm, Outcome, Payload};
use tongban_domain::duplicates::Relation;
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{Role, Stage};
use tongban_node::duplicates::FLAG;
use tongban_node::local::{LocalNode, NodeError};
use tongban_node::provision::{OfficeSpec, provision};

const GUANGZHOU: &str = "440106001";
const QIAOXI: &str = "130104001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const HUB: &str = "hub-cn";

/// Every office's node, opened once (a store admits one handle).
struct World {
    _tmp: tempfile::TempDir,
    nodes: BTreeMap<&'static str, LocalNode>,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    provisioned(tmp.path());
    let nodes = [GUANGZHOU, QIAOXI, DOMICILE, DPF, CIVIL, HUB]
        .into_iter()
        .map(|office| (office, LocalNode::open(&tmp.path().join(office)).unwrap()))
        .collect();
    World { _tmp: tmp, nodes }
}

fn provisioned(root: &Path) {
    let specs = [
        OfficeSpec::new(GUANGZHOU, Role::Township, GUANGZHOU),
        OfficeSpec::new(QIAOXI, Role::Township, QIAOXI),
        OfficeSpec::new(DOMICILE, Role::Township, DOMICILE),
        OfficeSpec::new(DPF, Role::CountyDpf, "130102"),
        OfficeSpec::new(CIVIL, Role::CountyCivilAffairs, "130102"),
        OfficeSpec::new(HUB, Role::Hub, "00"),
    ];
    let from = Timestamp(Timestamp::now().0 - 86_400_000);
    let to = Timestamp(Timestamp::now().0 + 365 * 86_400_000);
    provision(root, &specs, from, to).unwrap();
}

impl World {
    fn node(&self, office: &str) -> &LocalNode {
        &self.nodes[office]
    }
}

fn op() -> Operator {
    Operator::parse("窗口01").unwrap()
}

fn resident(n: u32) -> String {
    let first17 = format!("1301021968051{n:04}");
    format!("{first17}{}", resident_id_check_char(&first17).unwrap())
}

/// Starts, completes, accepts and pushes a case at `office` for `id`,
/// applying for `kinds`; signed at `at`.
fn pushed(w: &World, office: &str, id: &str, kinds: &[&str], at: Timestamp) -> CaseId {
    let node = w.node(office);
    let form = IntakeForm {
        name: "王五".into(),
        resident_id: id.into(),
        hukou_township: DOMICILE.into(),
        certificate: format!("{id}12"),
        dibao: true,
        long_term_care: true,
        subsidy_kinds: kinds.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    };
    let made = node.new_case(&form, &op(), at).unwrap();
    common::attach_notice(node, &made, &op(), at);
    for to in [Stage::Accepted, Stage::Pushed] {
        node.act(&made.case_id, to, &Payload::default(), &op(), at)
            .unwrap();
    }
    made.case_id
}

/// Carries the case document from one node's store to another's, as sync
/// stores it.
fn carry(w: &World, case: &CaseId, from: &str, to: &str) {
    let mut doc = w.node(from).case(case).unwrap();
    w.node(to).save(case, &mut doc).unwrap();
}

fn approve() -> Payload {
    Payload {
        opinion: "同意".into(),
        outcome: Some(Outcome::Approve),
        ..Payload::default()
    }
}

/// From `pushed` at the domicile township to `dpf_reviewed` at civil affairs.
fn to_civil_affairs(w: &World, case: &CaseId, from: &str) {
    let now = Timestamp::now();
    carry(w, case, from, DOMICILE);
    let domicile = w.node(DOMICILE);
    domicile
        .act(case, Stage::Received, &Payload::default(), &op(), now)
        .unwrap();
    domicile
        .act(case, Stage::InitialReviewed, &approve(), &op(), now)
        .unwrap();
    carry(w, case, DOMICILE, DPF);
    w.node(DPF)
        .act(case, Stage::DpfReviewed, &approve(), &op(), now)
        .unwrap();
    carry(w, case, DPF, CIVIL);
}

/// The decision the policy gives a case held at civil affairs.
fn decision(w: &World, case: &CaseId) -> Payload {
    let doc = w.node(CIVIL).case(case).unwrap();
    let read = doc.read().unwrap();
    let (awards, first) = policy_awards(&read, Timestamp(read.created_at).china_date()).unwrap();
    Payload {
        opinion: "审定通过".into(),
        outcome: Some(Outcome::Approve),
        awards,
        first_paid_month: Some(first),
        ..Payload::default()
    }
}

fn flagged(w: &World, office: &str) -> Vec<CaseId> {
    w.node(office)
        .store()
        .flagged_cases(FLAG)
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

#[test]
fn the_later_application_is_flagged_at_the_domicile_county_and_its_award_refused() {
    let w = world();
    let id = resident(7);
    let t0 = Timestamp::now();
    // Cross-province in Guangzhou first, then in the same province at Qiaoxi.
    let first = pushed(&w, GUANGZHOU, &id, &["living"], t0);
    let second = pushed(
        &w,
        QIAOXI,
        &id,
        &["living", "nursing"],
        Timestamp(t0.0 + 60_000),
    );
    // Each acceptance office holds one case: nothing to flag there.
    assert!(flagged(&w, GUANGZHOU).is_empty());
    assert!(flagged(&w, QIAOXI).is_empty());

    // At the domicile township the second is flagged on arrival, whichever
    // arrives first.
    carry(&w, &second, QIAOXI, DOMICILE);
    assert!(flagged(&w, DOMICILE).is_empty());
    carry(&w, &first, GUANGZHOU, DOMICILE);
    assert_eq!(flagged(&w, DOMICILE), std::slice::from_ref(&second));
    let domicile = w.node(DOMICILE);
    let seen = domicile.duplicates(&second).unwrap();
    assert!(seen.watched && seen.flagged && seen.duplicate, "{seen:?}");
    assert_eq!(seen.conflicts.len(), 1);
    assert_eq!(seen.conflicts[0].other, first);
    assert_eq!(seen.conflicts[0].relation, Relation::EarlierApplication);
    assert_eq!(seen.conflicts[0].other_acceptance, GUANGZHOU);
    assert_eq!(seen.conflicts[0].other_stage, Stage::Pushed);
    let first_seen = domicile.duplicates(&first).unwrap();
    assert!(!first_seen.flagged && !first_seen.duplicate);
    assert_eq!(first_seen.conflicts[0].relation, Relation::Later);
    let rows = domicile.list(None, t0.china_date()).unwrap();
    let marked: Vec<&str> = rows
        .iter()
        .filter(|r| r.duplicate)
        .map(|r| r.case_id.as_str())
        .collect();
    assert_eq!(marked, [second.as_str()]);
    assert_eq!(
        tongban_node::status::status_from_store(domicile)
            .unwrap()
            .duplicates,
        1
    );

    // Both reach civil affairs, which flags the second too.
    to_civil_affairs(&w, &first, GUANGZHOU);
    to_civil_affairs(&w, &second, QIAOXI);
    assert_eq!(flagged(&w, DPF), std::slice::from_ref(&second));
    assert_eq!(flagged(&w, CIVIL), std::slice::from_ref(&second));

    // Awarding the second is refused, naming the first; nothing is stored.
    let civil = w.node(CIVIL);
    let before = (
        civil.store().latest_seq().unwrap(),
        civil.store().case_bytes(&second).unwrap(),
    );
    let payload = decision(&w, &second);
    let err = civil
        .act(&second, Stage::Decided, &payload, &op(), Timestamp::now())
        .unwrap_err();
    match &err {
        NodeError::Duplicate(message) => {
            assert!(message.contains(first.as_str()), "{message}");
            assert!(message.contains("earlier_application"), "{message}");
            assert!(message.contains("living"), "{message}");
        }
        other => panic!("not a duplicate refusal: {other}"),
    }
    assert!(err.is_rejection());
    assert_eq!(
        (
            civil.store().latest_seq().unwrap(),
            civil.store().case_bytes(&second).unwrap()
        ),
        before
    );
    // Nursing alone is no duplicate: only the living subsidy is in the way.
    let mut nursing = payload.clone();
    nursing.awards.retain(|a| a.kind.code() == "nursing");
    assert_eq!(nursing.awards.len(), 1);
    let only_living = {
        let mut p = payload.clone();
        p.awards.retain(|a| a.kind.code() == "living");
        p
    };
    assert!(matches!(
        civil.act(
            &second,
            Stage::Decided,
            &only_living,
            &op(),
            Timestamp::now()
        ),
        Err(NodeError::Duplicate(_))
    ));

    // The first is decided; the second now stands against an award.
    let award = decision(&w, &first);
    civil
        .act(&first, Stage::Decided, &award, &op(), Timestamp::now())
        .unwrap();
    let seen = civil.duplicates(&second).unwrap();
    assert_eq!(seen.conflicts[0].relation, Relation::HeldAward);
    assert!(matches!(
        civil.act(
            &second,
            Stage::Decided,
            &only_living,
            &op(),
            Timestamp::now()
        ),
        Err(NodeError::Duplicate(_))
    ));
    assert_eq!(flagged(&w, CIVIL), std::slice::from_ref(&second));

    // Rejected with its reason, the second ends, and so does its flag.
    let reject = Payload {
        opinion: "重复申请：已在 440106001 受理并审定".into(),
        outcome: Some(Outcome::Reject),
        ..Payload::default()
    };
    civil
        .act(&second, Stage::Rejected, &reject, &op(), Timestamp::now())
        .unwrap();
    assert!(flagged(&w, CIVIL).is_empty());
    assert!(!civil.duplicates(&second).unwrap().flagged);
}

#[test]
fn flags_are_rebuilt_from_the_index_and_a_hub_records_none() {
    let w = world();
    let id = resident(8);
    let t0 = Timestamp::now();
    let first = pushed(&w, GUANGZHOU, &id, &["nursing"], t0);
    let second = pushed(&w, QIAOXI, &id, &["nursing"], Timestamp(t0.0 + 1));
    let alone = pushed(&w, QIAOXI, &resident(9), &["nursing"], t0);
    for (case, from) in [(&first, GUANGZHOU), (&second, QIAOXI), (&alone, QIAOXI)] {
        carry(&w, case, from, DOMICILE);
        carry(&w, case, from, HUB);
    }
    assert_eq!(flagged(&w, DOMICILE), std::slice::from_ref(&second));
    assert!(flagged(&w, HUB).is_empty());
    assert!(
        w.node(HUB)
            .duplicates(&second)
            .unwrap()
            .conflicts
            .iter()
            .any(|c| c.other == first),
        "a hub judges when asked, but records nothing"
    );

    // A flag lost (the node died between a case's commit and its flag's) and
    // a stale one are both put right by the rebuild a node does at start.
    let domicile = w.node(DOMICILE);
    domicile.store().set_case_flag(FLAG, &second, None).unwrap();
    domicile
        .store()
        .set_case_flag(FLAG, &alone, Some(br#"{"of":[]}"#))
        .unwrap();
    let done = domicile.reconcile_duplicates().unwrap();
    assert_eq!((done.groups, done.flagged, done.changed), (1, 1, 2));
    assert_eq!(flagged(&w, DOMICILE), std::slice::from_ref(&second));
    let again = w.node(DOMICILE).reconcile_duplicates().unwrap();
    assert_eq!(again.changed, 0);

    // A backup leaves the flags out; the restored node recomputes them.
    let backup = w._tmp.path().join("domicile.tbbackup");
    w.node(DOMICILE).store().backup_to(&backup).unwrap();
    let restored = w._tmp.path().join("restored");
    tongban_store::restore(&backup, &restored).unwrap();
    {
        let store = tongban_store::Store::open(&restored, &Default::default()).unwrap();
        assert!(store.flagged_cases(FLAG).unwrap().is_empty());
    }
    let key = tongban_ledger::keys::OfficeKey::from_pem_like_str(
        &std::fs::read_to_string(w._tmp.path().join(DOMICILE).join("office.key")).unwrap(),
    )
    .unwrap();
    let restored = LocalNode::adopt_restored(&restored, Some(&key)).unwrap();
    let flags: Vec<CaseId> = restored
        .store()
        .flagged_cases(FLAG)
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(flags, std::slice::from_ref(&second));

    // Withdrawn at its acceptance office, the first no longer stands in the
    // way: the second's flag is cleared when the withdrawal arrives.
    w.node(GUANGZHOU)
        .act(
            &first,
            Stage::Withdrawn,
            &Payload {
                opinion: "申请人撤回".into(),
                ..Payload::default()
            },
            &op(),
            Timestamp::now(),
        )
        .unwrap();
    carry(&w, &first, GUANGZHOU, DOMICILE);
    assert!(flagged(&w, DOMICILE).is_empty());
}

/// What rebuilding every duplicate flag costs a node holding 100,000 cases
/// (`TONGBAN_DUP_CASES` to change), of which 1,000 people have two: the work
/// a node does at every start. Ignored by default; measured in a release
/// build and written in docs/performance.md:
/// `cargo test --release -p tongban-node --test duplicates -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: builds a store of 100,000 cases"]
fn rebuilding_the_flags_of_100000_cases() {
    use std::time::Instant;
    use tongban_store::{Automerge, ResidentKey};

    let total: u32 = std::env::var("TONGBAN_DUP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pairs: u32 = 1_000.min(total / 2);
    let tmp = tempfile::tempdir().unwrap();
    let specs = [OfficeSpec::new(DOMICILE, Role::Township, DOMICILE)];
    let t0 = Timestamp::now();
    provision(
        tmp.path(),
        &specs,
        Timestamp(t0.0 - 86_400_000),
        Timestamp(t0.0 + 86_400_000),
    )
    .unwrap();
    let dir = tmp.path().join(DOMICILE);
    let node = LocalNode::open(&dir).unwrap();
    // Two real cases of one person (local applications, with their materials,
    // accepted and under publicity), as templates.
    let form = IntakeForm {
        name: "王五".into(),
        resident_id: resident(1),
        hukou_township: DOMICILE.into(),
        certificate: format!("{}12", resident(1)),
        dibao: true,
        subsidy_kinds: vec!["living".into()],
        ..Default::default()
    };
    let started_case = |at: Timestamp| {
        let made = node.new_case(&form, &op(), at).unwrap();
        for (code, _) in &made.notice {
            let scan = format!("scan of {code} for {}", made.case_id);
            node.attach_reader(
                &made.case_id,
                scan.as_bytes(),
                &format!("{code}.jpg"),
                code,
                "image/jpeg",
                &op(),
                at,
            )
            .unwrap();
        }
        for to in [Stage::Accepted, Stage::Publicized] {
            node.act(&made.case_id, to, &Payload::default(), &op(), at)
                .unwrap();
        }
        made.case_id
    };
    let a = started_case(t0);
    let b = started_case(Timestamp(t0.0 + 1));
    let mut size = 0;
    let mut template = |case: &CaseId| {
        let mut doc = node.case(case).unwrap();
        let meta = node.meta_of(&doc).unwrap();
        let saved = doc.save();
        size = saved.len();
        (Automerge::load(&saved).unwrap(), meta)
    };
    let (doc_a, meta_a) = template(&a);
    let (doc_b, meta_b) = template(&b);
    let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let key = |n: u32| ResidentKey(*blake3::hash(&n.to_le_bytes()).as_bytes());
    let started = Instant::now();
    for batch in (0..total).collect::<Vec<_>>().chunks(1_000) {
        node.store()
            .write(|tx| {
                for &i in batch {
                    let case = CaseId::new(DOMICILE, date, (i + 16).to_be_bytes()).unwrap();
                    let (doc, meta, resident) = if i < 2 * pairs {
                        let (doc, meta) = if i % 2 == 0 {
                            (&doc_a, &meta_a)
                        } else {
                            (&doc_b, &meta_b)
                        };
                        (doc, meta, key(i / 2))
                    } else {
                        (&doc_a, &meta_a, key(total + i))
                    };
                    let mut meta = meta.clone();
                    meta.resident_key = resident;
                    tx.put_document(&case, doc, &meta)?;
                }
                Ok(())
            })
            .unwrap();
    }
    eprintln!(
        "stored {total} cases of {size} bytes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(node);

    // Opened afresh (no document cached), as a node starts.
    let node = LocalNode::open(&dir).unwrap();
    let started = Instant::now();
    let first = node.reconcile_duplicates().unwrap();
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let again = node.reconcile_duplicates().unwrap();
    let again_ms = started.elapsed().as_secs_f64() * 1e3;
    // The two templates are one person too (a group of two).
    assert_eq!(first.groups as u32, pairs + 1);
    assert_eq!(first.flagged as u32, pairs + 1);
    assert_eq!(again.changed, 0);
    let started = Instant::now();
    let scanned = node.store().resident_groups().unwrap().len();
    let scan_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(scanned as u32, pairs + 1);
    // What a case's arrival adds: the refresh of one person with one case.
    let lone: Vec<CaseId> = (2 * pairs..2 * pairs + 1_000)
        .map(|i| CaseId::new(DOMICILE, date, (i + 16).to_be_bytes()).unwrap())
        .collect();
    let started = Instant::now();
    for case in &lone {
        node.refresh_duplicates(std::slice::from_ref(case));
    }
    let lone_us = started.elapsed().as_secs_f64() * 1e6 / lone.len() as f64;
    let pair: Vec<CaseId> = (0..2 * pairs.min(500))
        .map(|i| CaseId::new(DOMICILE, date, (i + 16).to_be_bytes()).unwrap())
        .collect();
    let started = Instant::now();
    for case in &pair {
        node.refresh_duplicates(std::slice::from_ref(case));
    }
    let pair_us = started.elapsed().as_secs_f64() * 1e6 / pair.len() as f64;
    eprintln!(
        "{total} cases, {} people with two: rebuild {first_ms:.0} ms (flags written), \
         {again_ms:.0} ms (nothing to change), resident-index scan alone {scan_ms:.0} ms; \
         refresh on arrival {lone_us:.0} µs for a person with one case, {pair_us:.0} µs with two",
        pairs + 1
    );
}
