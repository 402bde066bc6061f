//! Duplicates caught at the domicile county, on real nodes' stores: the same
//! person applies at two acceptance townships, both cases reach the domicile
//! county's offices, the later one is flagged there and its award refused.
//! Documents are carried between the nodes' stores as sync stores them
//! (`LocalNode::save`, the write path every local command takes too); the
//! processes and the control API are tested in `tests/integration`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

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
