//! Admission of whole documents arriving in `Docs` batches, frame by frame on
//! real stores (the harness of `materials.rs`): a batch is loaded and verified on
//! several threads, and each document in it is admitted or refused on its own.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValue, Value};
use tongban_sync::store::SyncStore;
use tongban_sync::wire::Message;

use crate::materials::{Net, Tamper};

const TA: &str = "130102001";
const TD: &str = "130102002";
const T3: &str = "130102003";
const HUB: &str = "hub-130102";
const DPF: &str = "130102-dpf";

/// `bytes` (a saved case document) with a second copy of its first signed
/// transition whose signature is altered, written as a relay forging it would:
/// in a well-formed signature change under the signing office's actor, right
/// after the heads the transition signs. Only the signature check can refuse it.
fn forge(bytes: &[u8]) -> Vec<u8> {
    let mut doc = AutoCommit::load(bytes).unwrap();
    let Ok(Some((Value::Object(ObjType::Map), transitions))) =
        doc.get(automerge::ROOT, "transitions")
    else {
        panic!("no transitions map");
    };
    let key = doc.keys(&transitions).next().unwrap();
    let Ok(Some((Value::Object(ObjType::Map), record))) = doc.get(&transitions, key.as_str())
    else {
        panic!("no transition record");
    };
    let Ok(Some((Value::Scalar(value), _))) = doc.get(&record, "signed") else {
        panic!("no signed bytes");
    };
    let ScalarValue::Bytes(mut signed) = value.into_owned() else {
        panic!("signed is not bytes");
    };
    let Ok(Some((Value::Scalar(payload), _))) = doc.get(&record, "payload") else {
        panic!("no payload");
    };
    let payload = payload.into_owned();
    let transition = tongban_ledger::transition::SignedTransition::decode(&signed).unwrap();
    let last = signed.len() - 1;
    signed[last] ^= 0x01;
    let heads: Vec<automerge::ChangeHash> = transition
        .transition
        .heads
        .iter()
        .map(|h| automerge::ChangeHash(*h))
        .collect();
    let mut fork = doc.fork_at(&heads).unwrap();
    fork.set_actor(tongban_case::authorship::actor_for(
        &transition.transition.office,
        b"forged",
    ));
    let Ok(Some((Value::Object(ObjType::Map), container))) =
        fork.get(automerge::ROOT, "transitions")
    else {
        panic!("no transitions map at the heads");
    };
    let forged = fork
        .put_object(
            &container,
            blake3::hash(&signed).to_hex().as_str(),
            ObjType::Map,
        )
        .unwrap();
    fork.put(&forged, "signed", ScalarValue::Bytes(signed))
        .unwrap();
    fork.put(&forged, "payload", payload).unwrap();
    fork.commit();
    doc.merge(&mut fork).unwrap();
    doc.save()
}

/// Arms `net` so that the hub's first `Docs` frame to the DPF carries the
/// `forged` cases forged; answers a cell that then holds that frame's size.
fn forge_first_batch(
    net: &mut Net,
    forged: Vec<tongban_domain::ids::CaseId>,
) -> std::rc::Rc<std::cell::Cell<usize>> {
    let seen = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let seen_in_hook = seen.clone();
    let mut armed = true;
    net.hook = Some(Box::new(move |from, to, m| match m {
        Message::Docs { docs } if armed && from == HUB && to == DPF => {
            armed = false;
            seen_in_hook.set(docs.len());
            let docs = docs
                .iter()
                .map(|(case, bytes)| {
                    let bytes = if forged.contains(case) {
                        forge(bytes)
                    } else {
                        bytes.clone()
                    };
                    (case.clone(), bytes)
                })
                .collect();
            Tamper::Replace(Message::Docs { docs })
        }
        _ => Tamper::Pass,
    }));
    seen
}

#[test]
fn a_forged_document_in_a_batch_is_refused_and_the_rest_admitted() {
    let mut net = Net::new(&[TA, HUB, DPF]);
    net.connect(TA, HUB);
    let cases: Vec<_> = (0..3).map(|_| net.new_case(TA, TD, 100).0).collect();
    net.run(30_000);
    for case in &cases {
        assert!(net.holds_case(HUB, case));
    }
    // The hub's first batch to the DPF carries the second case forged.
    forge_first_batch(&mut net, vec![cases[1].clone()]);
    net.connect(HUB, DPF);
    net.run(5_000);
    // The forged document was refused by its signature; the others of the same
    // frame were stored.
    let refusals = net.refusals(DPF);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("BadSignature"), "{refusals:?}");
    assert!(net.holds_case(DPF, &cases[0]));
    assert!(net.holds_case(DPF, &cases[2]));
    assert!(!net.holds_case(DPF, &cases[1]));
    // The DPF asks again after the stall period and gets the honest document,
    // with none of the forged change in it.
    net.run(120_000);
    assert!(net.holds_case(DPF, &cases[1]));
    assert_eq!(
        net.node(DPF).store.heads(&cases[1]).unwrap(),
        net.node(HUB).store.heads(&cases[1]).unwrap()
    );
}

#[test]
fn a_case_off_the_receivers_route_is_refused_whatever_the_sender() {
    let mut net = Net::new(&[TA, HUB, T3]);
    net.connect(TA, HUB);
    let (case, _) = net.new_case(TA, TD, 100);
    let (other, _) = net.new_case(TA, T3, 100);
    net.run(30_000);
    // T3 is the domicile of `other`, not of `case`: a hub pushing `case` to it in
    // the same batch as `other` (before the protocol offers T3 anything) gets
    // `case` refused and `other` stored.
    let saved = |c| net.node(HUB).store.saved(c).unwrap().unwrap();
    let docs = vec![(case.clone(), saved(&case)), (other.clone(), saved(&other))];
    net.connect(HUB, T3);
    net.inject(HUB, T3, &Message::Docs { docs });
    net.run(30_000);
    assert!(!net.holds_case(T3, &case));
    assert!(net.holds_case(T3, &other));
    let refusals = net.refusals(T3);
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("not on this node's route")),
        "{refusals:?}"
    );
}

/// A first `Docs` frame of 150 cases, two of them forged, to the DPF: admitted
/// on the node (`deferred: false`) or off it, as the daemon does.
fn large_batch_with_forgeries(deferred: bool) {
    // Enough cases that the DPF's first `Docs` frame is checked in several
    // chunks on the worker threads, each chunk's signatures as one batch.
    let mut net = Net::new(&[TA, HUB, DPF]);
    net.deferred = deferred;
    net.connect(TA, HUB);
    let cases: Vec<_> = (0..150).map(|_| net.new_case(TA, TD, 100).0).collect();
    net.run(60_000);
    for case in &cases {
        assert!(net.holds_case(HUB, case));
    }
    // Forgeries in the first chunk and in a later one: each fails its chunk's
    // batch, whose documents are then verified one by one.
    let seen = forge_first_batch(&mut net, vec![cases[3].clone(), cases[130].clone()]);
    net.connect(HUB, DPF);
    net.run(5_000);
    let batch_len = seen.get();
    assert!(
        batch_len >= 131,
        "the first frame carried {batch_len} documents"
    );
    let refusals = net.refusals(DPF);
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals.iter().all(|r| r.contains("BadSignature")),
        "{refusals:?}"
    );
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(net.holds_case(DPF, case), i != 3 && i != 130, "case #{i}");
    }
    // Asked again, the honest copies arrive.
    net.run(120_000);
    for case in &cases {
        assert!(net.holds_case(DPF, case));
    }
}

#[test]
fn a_large_batch_is_checked_in_chunks_with_each_forgery_refused_alone() {
    large_batch_with_forgeries(false);
}

#[test]
fn a_batch_admitted_off_the_node_refuses_each_forgery_alone() {
    // As the daemon admits: each `Docs` frame checked off the node and its
    // outcome handed back after later frames.
    large_batch_with_forgeries(true);
}

/// The acceptance office, the DPF and a hub that sends small `Docs` frames (16
/// KiB), so that many are being admitted at once.
fn small_frames_net() -> Net {
    let mut net = Net::new(&[TA, DPF]);
    net.limits.insert(
        HUB.into(),
        tongban_sync::Limits {
            docs_frame_bytes: 16 << 10,
            ..crate::materials::limits()
        },
    );
    net.start(HUB);
    net
}

#[test]
fn admissions_handed_back_late_across_cuts_and_a_restart_lose_nothing() {
    // Small frames from the hub, so that many are being admitted at once.
    let mut net = small_frames_net();
    net.deferred = true;
    // And now and then a part of a frame's admission is lost.
    net.lose_parts = true;
    net.connect(TA, HUB);
    let cases: Vec<_> = (0..200).map(|_| net.new_case(TA, TD, 100).0).collect();
    net.run(60_000);
    // The link drops while frames are being admitted, and later the receiver
    // restarts with admissions still out: their outcomes come back to a
    // session that is gone and are dropped; what they carried is asked again.
    let link = net.connect(HUB, DPF);
    while net.admitting() < 3 {
        assert!(net.step(), "no frame was ever admitted");
    }
    net.cut(link);
    net.run(1_000);
    net.connect(HUB, DPF);
    while net.admitting() < 2 {
        assert!(net.step(), "no frame was ever admitted");
    }
    let before = cases.iter().filter(|c| net.holds_case(DPF, c)).count();
    assert!(
        before < cases.len(),
        "everything arrived before the restart"
    );
    net.restart(DPF);
    net.connect(HUB, DPF);
    // Every lost part is asked for again only after the stall period; signed
    // documents are larger (each write carries its seal), so the 200 cases fill
    // more frames and more parts are lost: allow several rounds of asking again.
    net.run(240_000);
    let missing: Vec<_> = cases.iter().filter(|c| !net.holds_case(DPF, c)).collect();
    assert!(
        missing.is_empty(),
        "{} missing: {missing:?}; refusals {:?}",
        missing.len(),
        net.refusals(DPF)
    );
    for case in &cases {
        assert_eq!(
            net.node(DPF).store.heads(case).unwrap(),
            net.node(HUB).store.heads(case).unwrap()
        );
    }
    assert!(net.refusals(DPF).is_empty(), "{:?}", net.refusals(DPF));
}

#[test]
fn an_admission_that_a_new_directory_overtook_is_checked_again() {
    use tongban_ledger::directory::{DirectoryAuthority, Revocation, SignedDirectory};
    use tongban_ledger::keys::OfficeKey;
    let mut net = small_frames_net();
    net.deferred = true;
    net.connect(TA, HUB);
    let cases: Vec<_> = (0..60).map(|_| net.new_case(TA, TD, 100).0).collect();
    net.run(60_000);
    // The next directory revokes the acceptance office's key from before any
    // of these cases was signed (the simulator's authority key is public).
    let authority = DirectoryAuthority::new(OfficeKey::from_bytes(
        blake3::hash(b"tongban-sim authority").as_bytes(),
    ));
    let old = SignedDirectory::decode(net.directory()).unwrap().directory;
    let ta = old
        .certificates
        .iter()
        .find(|c| c.cert.office.as_str() == TA)
        .unwrap()
        .cert
        .clone();
    let revocation = authority
        .revoke(Revocation {
            office: ta.office.clone(),
            public_key: ta.public_key,
            effective: ta.not_before,
            reason: "key lost".into(),
            serial: 9_999,
        })
        .unwrap();
    let newer = authority
        .publish(2, old.issued_at, old.certificates.clone(), vec![revocation])
        .encode();
    // Frames checked under the old directory are waiting to be handed back
    // when the receiver adopts the new one.
    net.connect(HUB, DPF);
    while net.admitting() < 2 {
        assert!(net.step(), "no frame was ever admitted");
    }
    let held: Vec<bool> = cases.iter().map(|c| net.holds_case(DPF, c)).collect();
    assert!(
        held.iter().any(|h| !h),
        "everything arrived before the change"
    );
    net.adopt_directory(DPF, newer);
    net.run(60_000);
    // Nothing signed by the revoked key was stored after the change, not even
    // what was checked (and passed) before it.
    for (case, held) in cases.iter().zip(held) {
        assert_eq!(net.holds_case(DPF, case), held, "{case}");
    }
    let refusals = net.refusals(DPF);
    // Refused for the revoked key: its transitions, or the signed commits of
    // its writes, whichever admission judged first.
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("RevokedKey") || r.contains("was revoked")),
        "{refusals:?}"
    );
}

#[test]
fn a_document_older_than_announced_when_stored_is_brought_up_to_date_at_once() {
    // The DPF asks for a case whole; while its document is being admitted, the
    // case changes at the acceptance office and the hub announces the newer
    // heads. The stored document is then behind what the hub announced, and
    // the DPF must sync the rest at once, not after a stall.
    let mut net = Net::new(&[TA, HUB, DPF]);
    net.deferred = true;
    net.connect(TA, HUB);
    let (case, _) = net.new_case(TA, TD, 100);
    net.run(30_000);
    net.hold_admissions = true;
    net.connect(HUB, DPF);
    while net.admitting() < 1 {
        assert!(net.step(), "the document was never admitted");
    }
    let route = tongban_sync::route::CaseRoute::new(
        tongban_domain::division::DivisionCode::parse(TA).unwrap(),
        tongban_domain::division::DivisionCode::parse(TD).unwrap(),
    )
    .unwrap();
    net.add_write(TA, &case, route);
    // Well under the stall period (20 s here): only an immediate sync makes it.
    net.run(5_000);
    assert_eq!(
        net.node(DPF).store.heads(&case).unwrap(),
        net.node(TA).store.heads(&case).unwrap(),
        "the DPF did not catch up with the newer heads"
    );
}

#[test]
fn a_document_refused_every_time_holds_up_nothing_else_of_the_peers_log() {
    // The hub's copy of one case is altered (every time it sends it, the DPF
    // refuses it); the cases the acceptance office makes afterwards must still
    // reach the DPF at once, not after the stall period each.
    let mut net = Net::new(&[TA, HUB, DPF]);
    net.connect(TA, HUB);
    let (poisoned, _) = net.new_case(TA, TD, 100);
    net.run(30_000);
    let target = poisoned.clone();
    net.hook = Some(Box::new(move |from, to, m| match m {
        Message::Docs { docs } if from == HUB && to == DPF => {
            let docs = docs
                .iter()
                .map(|(case, bytes)| {
                    let bytes = if *case == target {
                        forge(bytes)
                    } else {
                        bytes.clone()
                    };
                    (case.clone(), bytes)
                })
                .collect();
            Tamper::Replace(Message::Docs { docs })
        }
        _ => Tamper::Pass,
    }));
    net.connect(HUB, DPF);
    net.run(2_000);
    assert!(!net.holds_case(DPF, &poisoned));
    // More inventories than the window holds, one after another.
    let mut later = Vec::new();
    for _ in 0..12 {
        later.push(net.new_case(TA, TD, 100).0);
        net.run(300);
    }
    // Well under the stall period (20 s here).
    net.run(3_000);
    for case in &later {
        assert!(
            net.holds_case(DPF, case),
            "{case} is held up behind the refused document"
        );
    }
    assert!(!net.holds_case(DPF, &poisoned));
}
