//! Signed authorship over real nodes on loopback QUIC: a write that its office
//! had no right to make, or that no office signed, is refused at the next node,
//! whose copy stays as it was, and is shown in its `node status` and reported by
//! the verifier with path and author; a case is on no other node before it is
//! pushed, and a draft withdrawn at the window never leaves.

use std::time::{Duration, Instant};

use tongban_case::Payload;
use tongban_case::schema::CaseDoc;
use tongban_domain::ids::{CaseId, Operator};
use tongban_domain::stage::Stage;
use tongban_ledger::verify::ViolationKind;

use crate::paths::{ACCEPTANCE, CIVIL, DOMICILE, DPF, Net, OFFICES};

/// `office` changes its copy of `case` as altered software would: under its
/// own office-bound actor, without asking the write-rights table, then (when
/// `sign`) signs the result with its own key — and offers it to its peers.
async fn tamper(
    net: &Net,
    office: &'static str,
    case: &CaseId,
    sign: bool,
    change: impl FnOnce(&mut CaseDoc) + Send + 'static,
) {
    let case = case.clone();
    net.nodes[office]
        .handle()
        .exec(move |node, now| {
            let mut doc = node.case(&case).unwrap();
            if sign {
                doc.bind_actor(office, now, b"tamper").unwrap();
            }
            doc.update_unsigned(now, "tamper", |c| {
                change(c);
                Ok(())
            })
            .unwrap();
            if sign {
                let signer = node.signing(now).unwrap();
                doc.seal(&signer, &Operator::parse("改写者").unwrap(), now)
                    .unwrap();
            }
            node.save(&case, &mut doc).unwrap();
        })
        .await
        .unwrap();
}

/// Waits until `office` shows a refusal of `case` naming every word of `needles`
/// in `node status`; returns its reason.
pub(crate) async fn refused_at(net: &Net, office: &str, case: &CaseId, needles: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let status = net.nodes[office].handle().status().await.unwrap();
        if let Some(refusal) = status.refusals.iter().find(|r| {
            r.case.as_deref() == Some(case.as_str()) && needles.iter().all(|n| r.reason.contains(n))
        }) {
            return refusal.reason.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{office} shows no refusal of {case} naming {needles:?}: {:?}",
            status.refusals
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The verifier's findings of `kind` on `office`'s copy, as (author, paths).
async fn findings(
    net: &Net,
    office: &str,
    case: &CaseId,
    kind: ViolationKind,
) -> Vec<(Option<String>, Vec<String>)> {
    let case = case.clone();
    net.nodes[office]
        .handle()
        .exec(move |node, now| {
            let mut doc = node.case(&case).unwrap();
            let report = doc
                .verify(node.directory().unwrap(), node.calendar(), now)
                .unwrap();
            report
                .violations
                .into_iter()
                .filter(|v| v.kind == kind)
                .map(|v| (v.author, v.paths))
                .collect()
        })
        .await
        .unwrap()
}

/// `office`'s copy of the case, read whole.
async fn copy(net: &Net, office: &str, case: &CaseId) -> Option<CaseDoc> {
    let case = case.clone();
    net.nodes[office]
        .handle()
        .exec(move |node, _| node.case(&case).ok().and_then(|d| d.read().ok()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_and_unsigned_writes_are_refused_at_the_next_node() {
    let mut net = Net::start().await;
    // Every case is carried as far as it needs before any write is tampered
    // with, so that each refusal below is the first thing the next node sees
    // of that case.
    let for_hub = net.push().await;
    net.finish_approved(&for_hub).await;
    let for_decision = net.push().await;
    net.finish_approved(&for_decision).await;
    let for_review = net.push().await;
    net.finish_approved(&for_review).await;
    let for_unsigned = net.push().await;
    let before_acceptance = copy(&net, ACCEPTANCE, &for_hub).await.unwrap();
    let before_hub_decision = copy(&net, "hub-cn", &for_decision).await.unwrap();
    let before_hub_unsigned = copy(&net, "hub-cn", &for_unsigned).await.unwrap();

    // A hub writes an evaluation: the office next to it refuses it.
    tamper(&net, "hub-cn", &for_hub, true, |c| {
        c.evaluation = Some(tongban_case::schema::Evaluation {
            score: 1,
            comment: "hub".into(),
            at: 0,
            office: "hub-cn".into(),
            operator: "x".into(),
        });
    })
    .await;
    // The acceptance office edits the decision, and another township's review.
    tamper(&net, ACCEPTANCE, &for_decision, true, |c| {
        if let Some(decision) = c.decision.as_mut() {
            decision.awards[0].monthly_yuan = 9_999;
        }
    })
    .await;
    tamper(&net, ACCEPTANCE, &for_review, true, |c| {
        c.reviews[0].opinion = "不同意".into();
    })
    .await;
    // A change nobody signed (as a writer outside Tongban would make it).
    tamper(&net, ACCEPTANCE, &for_unsigned, false, |c| {
        c.applicant.phone = "13900000000".into();
    })
    .await;

    let reason = refused_at(&net, ACCEPTANCE, &for_hub, &["evaluation", "hub-cn"]).await;
    assert!(reason.contains("unauthorised_change"), "{reason}");
    assert_eq!(
        copy(&net, ACCEPTANCE, &for_hub).await.unwrap(),
        before_acceptance
    );
    assert_eq!(
        findings(&net, "hub-cn", &for_hub, ViolationKind::UnauthorisedChange).await,
        vec![(Some("hub-cn".to_string()), vec!["evaluation".to_string()])]
    );

    refused_at(&net, "hub-cn", &for_decision, &["decision", ACCEPTANCE]).await;
    assert_eq!(
        copy(&net, "hub-cn", &for_decision).await.unwrap(),
        before_hub_decision
    );
    assert_eq!(
        findings(
            &net,
            ACCEPTANCE,
            &for_decision,
            ViolationKind::UnauthorisedChange
        )
        .await,
        vec![(Some(ACCEPTANCE.to_string()), vec!["decision".to_string()])]
    );

    refused_at(&net, "hub-cn", &for_review, &["reviews", ACCEPTANCE]).await;
    assert_eq!(
        findings(
            &net,
            ACCEPTANCE,
            &for_review,
            ViolationKind::UnauthorisedChange
        )
        .await,
        vec![(Some(ACCEPTANCE.to_string()), vec!["reviews".to_string()])]
    );

    refused_at(
        &net,
        "hub-cn",
        &for_unsigned,
        &["unsigned_change", "applicant"],
    )
    .await;
    assert_eq!(
        copy(&net, "hub-cn", &for_unsigned).await.unwrap(),
        before_hub_unsigned
    );
    assert_eq!(
        findings(
            &net,
            ACCEPTANCE,
            &for_unsigned,
            ViolationKind::UnsignedChange
        )
        .await
        .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_stays_at_its_window_until_pushed_and_a_withdrawn_one_never_leaves() {
    let mut net = Net::start().await;
    let draft = net.new_case().await;
    net.act(ACCEPTANCE, &draft, Stage::Accepted, Payload::default())
        .await;
    let withdrawn = net.new_case().await;
    net.act(
        ACCEPTANCE,
        &withdrawn,
        Stage::Withdrawn,
        Payload {
            opinion: "申请人撤回".into(),
            ..Payload::default()
        },
    )
    .await;
    // Long enough for several sync rounds on loopback.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (office, ..) in OFFICES {
        if office == ACCEPTANCE {
            continue;
        }
        for case in [&draft, &withdrawn] {
            assert_eq!(
                net.stage(office, case).await,
                None,
                "{office} holds {case} before any push"
            );
        }
    }
    net.act(ACCEPTANCE, &draft, Stage::Pushed, Payload::default())
        .await;
    for office in ["hub-cn", DOMICILE, DPF, CIVIL] {
        net.wait(office, &draft, Stage::Received).await;
    }
    for (office, ..) in OFFICES {
        if office != ACCEPTANCE {
            assert_eq!(net.stage(office, &withdrawn).await, None, "{office}");
        }
    }
}
