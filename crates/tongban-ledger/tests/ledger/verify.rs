//! The verifier, one named situation per test.

use std::collections::HashSet;

use tongban_domain::stage::Stage;
use tongban_ledger::{
    CaseHistory, OfficeKey, Revocation, SignatureStatus, SignedTransition, Transition,
    VerifiedSignatures, VerifyContext, ViolationKind, verify_case,
};

use crate::fixture::*;

use ViolationKind::*;

/// The chain up to (and including) `n_steps` steps of the full path.
fn prefix(offices: &Offices, n_steps: usize) -> ChainBuilder<'_> {
    let mut chain = full_chain(offices);
    chain.signed.truncate(n_steps);
    chain
}

#[test]
fn the_full_path_verifies_clean() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert!(report.is_ok());
    assert_eq!(render(&report), "");
    let [branch] = report.timeline() else {
        panic!("one branch expected")
    };
    assert!(branch.connected);
    let lines: String = branch
        .entries
        .iter()
        .map(|e| {
            format!(
                "{} {:>16} {:<10} {} {}\n",
                e.seq,
                e.to,
                e.office,
                e.at_china,
                e.deadline
                    .as_ref()
                    .map_or(String::new(), |d| format!("due {} met={}", d.date, d.met))
            )
        })
        .collect();
    expect_test::expect![[r#"
        0 draft 440106001 2025-03-03 09:00 
        1 accepted 440106001 2025-03-03 10:00 
        2 pushed 440106001 2025-03-04 09:00 due 2025-03-06 met=true
        3 received 130102001 2025-03-04 09:05 
        4 initial_reviewed 130102001 2025-03-05 15:00 due 2025-03-07 met=true
        5 dpf_reviewed 130102-dpf 2025-03-06 11:00 due 2025-03-07 met=true
        6 decided 130102-ca 2025-03-10 16:00 due 2025-03-13 met=true
        7 result_received 440106001 2025-03-10 16:30 
        8 notified 440106001 2025-03-11 10:00 due 2025-03-13 met=true
        9 active 130102-ca 2025-03-12 09:00 
    "#]]
    .assert_eq(&lines);
    assert!(
        branch
            .entries
            .iter()
            .all(|e| e.signature == SignatureStatus::Valid)
    );
    assert_eq!(branch.next_deadline, None);
}

#[test]
fn entry_order_and_copies_do_not_matter() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut entries = chain.encoded();
    entries.reverse();
    entries.push(entries[3].clone());
    let report = verify_all_heads(
        &chain.case,
        entries,
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(render(&report), "");
    assert_eq!(report.timeline()[0].entries.len(), 10);
}

#[test]
fn wrong_signer_office() {
    // The domicile township signs the county DPF's re-review.
    let offices = Offices::new();
    let mut chain = prefix(&offices, 5);
    chain.step(Stage::DpfReviewed, DOMICILE, bj(2025, 3, 6, 11, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 6, 12, 0),
    );
    assert!(!report.is_ok());
    assert_eq!(kinds(&report), [WrongSigner]);
    expect_test::expect![[r#"
        error[wrong_signer] entry #5 seq 5 (c6004fb50037): 130102001 (township, 130102001) may not sign dpf_reviewed: it must be signed by the 户籍地县级残联 (county_dpf of 130102)
    "#]].assert_eq(&render(&report));
}

#[test]
fn key_revoked_before_the_transition() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let revocation = Revocation {
        office: office(DPF),
        public_key: offices.dpf.public(),
        effective: bj(2025, 3, 6, 8, 0),
        reason: "办公电脑丢失".into(),
        serial: 1,
    };
    let directory = offices.directory_with(vec![], vec![revocation]);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &directory,
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(kinds(&report), [RevokedKey]);
    assert_eq!(report.violations[0].seq, Some(5));
    expect_test::expect![[r#"
        error[revoked_key] entry #5 seq 5 (242b0a0ec48f): signed at 2025-03-06 11:00, but key 16f52d6fea63ef08 of 130102-dpf was revoked from 2025-03-06 08:00 (revocation serial 1: 办公电脑丢失)
    "#]].assert_eq(&render(&report));
    assert_eq!(
        report.timeline()[0].entries[5].signature,
        SignatureStatus::Revoked
    );
}

#[test]
fn key_revoked_after_the_transition_is_still_valid() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let revocation = Revocation {
        office: office(DPF),
        public_key: offices.dpf.public(),
        effective: bj(2025, 3, 7, 8, 0),
        reason: "办公电脑丢失".into(),
        serial: 1,
    };
    let directory = offices.directory_with(vec![], vec![revocation]);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &directory,
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(render(&report), "");
}

#[test]
fn key_rotation_and_expired_key() {
    let offices = Offices::new();
    let new_ca = OfficeKey::from_bytes(&[77; 32]);
    // Civil affairs rotates its key: the old certificate ends on 2025-03-09, the
    // new key's starts that day. Both stay valid in their own windows.
    let mut certs: Vec<_> = [ACCEPTANCE, DOMICILE, DPF]
        .iter()
        .enumerate()
        .map(|(i, id)| offices.cert(id, i as u64 + 1, offices.key_of(id)))
        .collect();
    let mut old_cert = offices.cert(CA, 4, &offices.ca);
    old_cert.not_after = bj(2025, 3, 9, 23, 59);
    let mut new_cert = offices.cert(CA, 5, &new_ca);
    new_cert.not_before = bj(2025, 3, 9, 0, 0);
    certs.extend([old_cert, new_cert]);
    let directory = offices.directory_from(certs, vec![]);

    let build = |decided_key: &OfficeKey| {
        let mut chain = prefix(&offices, 6);
        for (to, office_id, at, key) in [
            (Stage::Decided, CA, bj(2025, 3, 10, 16, 0), decided_key),
            (
                Stage::ResultReceived,
                ACCEPTANCE,
                bj(2025, 3, 10, 16, 30),
                &offices.acceptance,
            ),
            (
                Stage::Notified,
                ACCEPTANCE,
                bj(2025, 3, 11, 10, 0),
                &offices.acceptance,
            ),
            (Stage::Active, CA, bj(2025, 3, 12, 9, 0), &new_ca),
        ] {
            let mut t = chain.next(to, office_id, at);
            t.signer_key = key.public();
            chain.push_signed(t, key);
        }
        verify_all_heads(
            &chain.case,
            chain.encoded(),
            &directory,
            &calendar(),
            bj(2025, 3, 13, 9, 0),
        )
    };
    // The new key after the rotation; the acceptance office's older steps with
    // their unchanged keys: clean.
    assert_eq!(render(&build(&new_ca)), "");
    // The old key after its certificate ended.
    let report = build(&offices.ca);
    assert_eq!(kinds(&report), [KeyNotValidAtTime]);
    expect_test::expect![[r#"
        error[key_not_valid_at_time] entry #6 seq 6 (4d61e1f5d2ae): signed at 2025-03-10 16:00, but the certificate of 130102-ca for key 90bdeef49d5d2664 expired at 2025-03-09 23:59
    "#]].assert_eq(&render(&report));
    assert_eq!(
        report.timeline()[0].entries[6].signature,
        SignatureStatus::KeyNotValidAtTime
    );
}

#[test]
fn fork_detected_and_both_branches_followed() {
    let offices = Offices::new();
    let mut chain = prefix(&offices, 4);
    let review = chain.next(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 5, 15, 0));
    let mut returned = chain.next(Stage::Returned, DOMICILE, bj(2025, 3, 5, 16, 0));
    returned.payload_digest = Transition::digest_payload("材料不全".as_bytes());
    chain.push_signed(review, &offices.domicile);
    let review_signed = chain.signed.pop().unwrap();
    chain.push_signed(returned, &offices.domicile);
    chain.signed.push(review_signed);
    // The review's branch continues; a late DPF step on it misses its deadline.
    let mut late = chain.next(Stage::DpfReviewed, DPF, bj(2025, 3, 12, 11, 0));
    late.seq = 5;
    chain.push_signed(late, &offices.dpf);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 12, 12, 0),
    );
    assert_eq!(kinds(&report), [Fork, DeadlineMissed]);
    expect_test::expect![[r#"
        error[fork] entry #3 seq 3 (416529cb5cb0): 2 signed successors: entry #5 → initial_reviewed by 130102001 (00f403cc764b); entry #4 → returned by 130102001 (13a0a7cef9fd)
        error[deadline_missed] entry #6 seq 5 (f38159efc130): dpf_reviewed signed on 2025-03-12, after its deadline 2025-03-07 (2 working days from 2025-03-05, when the case entered initial_reviewed); late by 3 working day(s)
    "#]].assert_eq(&render(&report));
    let branches = report.timeline();
    assert_eq!(branches.len(), 2);
    let ends: Vec<Stage> = branches
        .iter()
        .map(|b| b.entries.last().unwrap().to)
        .collect();
    assert_eq!(ends, [Stage::DpfReviewed, Stage::Returned]);
    assert!(branches.iter().all(|b| b.connected));
}

#[test]
fn time_order_violations() {
    let offices = Offices::new();
    let mut chain = prefix(&offices, 4);
    // Reviewed an hour before the case was received, and a step in the future.
    chain.step(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 4, 8, 0));
    chain.step(Stage::DpfReviewed, DPF, bj(2025, 3, 6, 11, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 5, 9, 0),
    );
    assert_eq!(kinds(&report), [TimeOrder]);
    expect_test::expect![[r#"
        error[time_order] entry #4 seq 4 (69683fa22605): signed at 2025-03-04 08:00, before the previous transition (seq 3, 2025-03-04 09:05) by more than the 600 s clock tolerance
        error[time_order] entry #5 seq 5 (a61d84cc1ff9): signed at 2025-03-06 11:00, later than now (2025-03-05 09:00) by more than the 600 s clock tolerance
    "#]].assert_eq(&render(&report));
    // Within the tolerance, a few minutes backwards is fine.
    let mut chain = prefix(&offices, 4);
    chain.step(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 4, 9, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 5, 9, 0),
    );
    assert_eq!(render(&report), "");
}

#[test]
fn head_missing() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let directory = offices.directory();
    let calendar = calendar();
    let present: HashSet<[u8; 32]> = (0..200).filter(|&n| n != 9).map(head).collect();
    let has_head = move |h: &[u8; 32]| present.contains(h);
    let ctx = VerifyContext::new(&directory, &calendar, bj(2025, 3, 13, 9, 0), &has_head);
    let history = CaseHistory {
        case: chain.case.clone(),
        transitions: chain.encoded(),
        domicile_township: DOMICILE.into(),
    };
    let report = verify_case(&history, &ctx);
    assert_eq!(kinds(&report), [HeadMissing]);
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].seq, Some(4));
    assert!(
        report.violations[0]
            .reason
            .contains(&tongban_ledger::hex(&head(9)))
    );
}

#[test]
fn missed_deadline_across_the_2024_spring_festival() {
    let offices = Offices::new();
    let calendar = calendar();
    let mut chain = ChainBuilder::new(&offices);
    chain
        .step(Stage::Draft, ACCEPTANCE, bj(2024, 2, 5, 9, 0))
        .step(Stage::Accepted, ACCEPTANCE, bj(2024, 2, 5, 10, 0))
        .step(Stage::Pushed, ACCEPTANCE, bj(2024, 2, 6, 9, 0))
        .step(Stage::Received, DOMICILE, bj(2024, 2, 8, 10, 0))
        .step(Stage::InitialReviewed, DOMICILE, bj(2024, 2, 20, 10, 0));

    // What the calendar's data says: received Thursday 2024-02-08; Friday 02-09 is
    // a working day, 02-10..02-17 the Spring Festival holiday, Sunday 02-18 an
    // adjusted working day (调休), so the third working day is Monday 02-19.
    let due = calendar.deadline_from_receipt(date(2024, 2, 8), 3);
    assert_eq!((due.date, due.provisional), (date(2024, 2, 19), false));
    assert_eq!(
        calendar.working_days_late(due.date, date(2024, 2, 20)).days,
        1
    );

    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar,
        bj(2024, 2, 21, 9, 0),
    );
    assert!(!report.is_ok());
    assert_eq!(kinds(&report), [DeadlineMissed]);
    let missed = &report.violations[0];
    assert_eq!(missed.seq, Some(4));
    assert!(
        missed.reason.contains(&due.date.to_string()),
        "{}",
        missed.reason
    );
    expect_test::expect![[r#"
        error[deadline_missed] entry #4 seq 4 (89a30ef0a9aa): initial_reviewed signed on 2024-02-20, after its deadline 2024-02-19 (3 working days from 2024-02-08, when the case entered received); late by 1 working day(s)
    "#]].assert_eq(&render(&report));
    let deadline = report.timeline()[0].entries[4].deadline.clone().unwrap();
    assert_eq!((deadline.date, deadline.met), (due.date, false));

    // Signed on the deadline day itself, the step is on time.
    chain.signed.pop();
    chain.step(Stage::InitialReviewed, DOMICILE, bj(2024, 2, 19, 17, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar,
        bj(2024, 2, 20, 9, 0),
    );
    assert_eq!(render(&report), "");
}

#[test]
fn broken_chain() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    // Entry 4 (seq 4) is missing from the document.
    let mut entries = chain.encoded();
    entries.remove(4);
    let report = verify_all_heads(
        &chain.case,
        entries,
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(kinds(&report), [BrokenChain, Overdue]);
    expect_test::expect![[r#"
        warning[overdue] entry #3 seq 3 (416529cb5cb0): the case has been at received since 2025-03-04; the next step (initial_reviewed / returned / rejected) was due by 2025-03-07, and today is 2025-03-13
        error[broken_chain] entry #4 seq 5 (242b0a0ec48f): the previous transition 00f403cc764b is not in the case history
    "#]].assert_eq(&render(&report));
    let connected: Vec<bool> = report.timeline().iter().map(|b| b.connected).collect();
    assert_eq!(connected, [true, false]);

    // A seq that skips a number is broken too.
    let mut chain = prefix(&offices, 4);
    let mut t = chain.next(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 5, 15, 0));
    t.seq = 5;
    chain.push_signed(t, &offices.domicile);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 5, 16, 0),
    );
    assert_eq!(kinds(&report), [BrokenChain]);
}

#[test]
fn missing_genesis() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded()[1..].to_vec(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(kinds(&report), [BrokenChain, MissingGenesis]);
    let report = verify_all_heads(
        &chain.case,
        vec![],
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(kinds(&report), [MissingGenesis]);
}

#[test]
fn unknown_key() {
    let offices = Offices::new();
    let stranger = OfficeKey::from_bytes(&[66; 32]);
    let mut chain = prefix(&offices, 3);
    let mut t = chain.next(Stage::Received, DOMICILE, bj(2025, 3, 4, 9, 5));
    t.signer_key = stranger.public();
    chain.push_signed(t, &stranger);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 4, 10, 0),
    );
    assert_eq!(kinds(&report), [UnknownKey]);
    expect_test::expect![[r#"
        error[unknown_key] entry #3 seq 3 (4a32d30dfd4e): key fef6dfa48b073924 is not in directory version 7
    "#]].assert_eq(&render(&report));
    assert_eq!(
        report.timeline()[0].entries[3].signature,
        SignatureStatus::UnknownKey
    );
}

#[test]
fn undecodable_wrong_case_and_bad_signature_entries() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut entries = chain.encoded();
    entries.push(b"not a transition".to_vec());
    let mut other = ChainBuilder::new(&offices);
    other.case =
        tongban_domain::ids::CaseId::new(ACCEPTANCE, date(2025, 3, 3), [9, 9, 9, 9]).unwrap();
    other.step(Stage::Draft, ACCEPTANCE, bj(2025, 3, 3, 9, 0));
    entries.extend(other.encoded());
    let mut forged = chain.signed[6].clone();
    forged.transition.operator = tongban_domain::ids::Operator::parse("someone-else").unwrap();
    entries[6] = forged.encode();
    let report = verify_all_heads(
        &chain.case,
        entries,
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    assert_eq!(
        kinds(&report),
        [Undecodable, BadSignature, WrongCase, BrokenChain]
    );
    expect_test::expect![[r#"
        error[wrong_case] entry #11 seq 0 (15656cd3173d): transition is for case 440106001-20250303-4GJ289, not 440106001-20250303-0G40R4
        error[bad_signature] entry #6 seq 6 (19ce96e8f638): the signature does not verify for the key it names (90bdeef49d5d2664, office 130102-ca): the transition was altered or not signed by that key
        error[broken_chain] entry #7 seq 7 (fdf9177f3aa8): the previous transition 4d61e1f5d2ae is not in the case history
        error[undecodable] entry #10 (cfc54f82ad88): entry #10 (16 bytes) does not decode: not a TBTR transition encoding: bad magic bytes at offset 0
    "#]].assert_eq(&render(&report));
}

#[test]
fn overdue_is_a_warning() {
    let offices = Offices::new();
    let chain = prefix(&offices, 4);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 20, 9, 0),
    );
    assert!(report.is_ok());
    assert_eq!(kinds(&report), [Overdue]);
    expect_test::expect![[r#"
        warning[overdue] entry #3 seq 3 (416529cb5cb0): the case has been at received since 2025-03-04; the next step (initial_reviewed / returned / rejected) was due by 2025-03-07, and today is 2025-03-20
    "#]].assert_eq(&render(&report));
    let pending = report.timeline()[0].next_deadline.clone().unwrap();
    assert_eq!(
        (pending.stage, pending.date, pending.overdue),
        (Stage::Received, date(2025, 3, 7), true)
    );
}

#[test]
fn provisional_deadline_beyond_the_calendar() {
    let offices = Offices::new();
    let mut chain = ChainBuilder::new(&offices);
    chain
        .step(Stage::Draft, ACCEPTANCE, bj(2026, 12, 28, 9, 0))
        .step(Stage::Accepted, ACCEPTANCE, bj(2026, 12, 28, 10, 0))
        .step(Stage::Pushed, ACCEPTANCE, bj(2026, 12, 29, 9, 0))
        .step(Stage::Received, DOMICILE, bj(2026, 12, 30, 9, 0))
        .step(Stage::InitialReviewed, DOMICILE, bj(2026, 12, 31, 9, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2026, 12, 31, 10, 0),
    );
    assert!(report.is_ok());
    assert_eq!(kinds(&report), [ProvisionalDeadline]);
    let deadline = report.timeline()[0].entries[4].deadline.clone().unwrap();
    assert!(deadline.provisional && deadline.met);
}

#[test]
fn local_application_counts_from_the_end_of_publicity() {
    let offices = Offices::new();
    let build = |review_day: u32| {
        let mut chain = ChainBuilder::new(&offices);
        chain.case =
            tongban_domain::ids::CaseId::new(DOMICILE, date(2025, 3, 3), [1, 1, 1, 1]).unwrap();
        chain
            .step(Stage::Draft, DOMICILE, bj(2025, 3, 3, 9, 0))
            .step(Stage::Accepted, DOMICILE, bj(2025, 3, 3, 10, 0))
            .step(Stage::Publicized, DOMICILE, bj(2025, 3, 3, 11, 0))
            .step(
                Stage::InitialReviewed,
                DOMICILE,
                bj(2025, 3, review_day, 9, 0),
            );
        verify_all_heads(
            &chain.case,
            chain.encoded(),
            &offices.directory(),
            &calendar(),
            bj(2025, 3, 20, 9, 0),
        )
    };
    // Publicity 2025-03-03 + 7 days ends 03-10; three working days later is 03-13.
    let on_time = build(13);
    let deadline = on_time.timeline()[0].entries[3].deadline.clone().unwrap();
    assert_eq!(
        (deadline.anchor_date, deadline.date, deadline.met),
        (date(2025, 3, 10), date(2025, 3, 13), true)
    );
    assert!(!on_time.has(DeadlineMissed));
    assert!(build(14).has(DeadlineMissed));
    // A cross-province case may not go through publicity.
    let mut chain = prefix(&offices, 2);
    chain.step(Stage::Publicized, DOMICILE, bj(2025, 3, 3, 11, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 3, 12, 0),
    );
    assert_eq!(kinds(&report), [IllegalTransition]);
}

#[test]
fn illegal_transitions() {
    let offices = Offices::new();
    // Skipping from pushed straight to decided, by the right county office.
    let mut chain = prefix(&offices, 3);
    chain.step(Stage::Decided, CA, bj(2025, 3, 5, 9, 0));
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 5, 10, 0),
    );
    assert_eq!(kinds(&report), [IllegalTransition]);
    // A `from` that is not the previous `to`.
    let mut chain = prefix(&offices, 4);
    let mut t = chain.next(Stage::DpfReviewed, DPF, bj(2025, 3, 5, 9, 0));
    t.from = Some(Stage::InitialReviewed);
    chain.push_signed(t, &offices.dpf);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 5, 10, 0),
    );
    assert_eq!(kinds(&report), [IllegalTransition]);
    expect_test::expect![[r#"
        error[illegal_transition] entry #4 seq 4 (33664422cc81): claims to move the case from initial_reviewed, but the previous transition (seq 3) moved it to received
    "#]].assert_eq(&render(&report));
}

#[test]
fn report_serializes_to_json() {
    let offices = Offices::new();
    let chain = prefix(&offices, 4);
    let report = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 20, 9, 0),
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["violations"][0]["kind"], "overdue");
    assert_eq!(json["violations"][0]["severity"], "warning");
    assert_eq!(json["branches"][0]["entries"][3]["to"], "received");
    assert_eq!(json["branches"][0]["entries"][3]["signature"], "valid");
    let _ = SignedTransition::decode(&chain.encoded()[0]).unwrap();
}

/// Verifies like `verify_all_heads`, trusting the signatures in `verified`.
fn verify_with(
    chain: &ChainBuilder<'_>,
    transitions: Vec<Vec<u8>>,
    offices: &Offices,
    verified: &VerifiedSignatures,
) -> tongban_ledger::Report {
    let present: HashSet<[u8; 32]> = (0..200).map(head).collect();
    let has_head = move |h: &[u8; 32]| present.contains(h);
    let directory = offices.directory();
    let calendar = calendar();
    let ctx = VerifyContext::new(&directory, &calendar, bj(2025, 3, 13, 9, 0), &has_head)
        .with_verified(verified);
    verify_case(
        &CaseHistory {
            case: chain.case.clone(),
            transitions,
            domicile_township: DOMICILE.into(),
        },
        &ctx,
    )
}

#[test]
fn a_batch_over_many_cases_stands_in_for_each_signature_check() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut other = ChainBuilder::new(&offices);
    other.case =
        tongban_domain::ids::CaseId::new(ACCEPTANCE, date(2025, 3, 3), [9, 9, 9, 9]).unwrap();
    other.step(Stage::Draft, ACCEPTANCE, bj(2025, 3, 3, 9, 0));
    let mut all = chain.encoded();
    all.extend(other.encoded());
    all.push(b"not a transition".to_vec());
    let verified = VerifiedSignatures::batch(all.iter().map(Vec::as_slice))
        .expect("honest signatures verify as a batch");
    assert_eq!(
        verified.len(),
        all.len() - 1,
        "undecodable entries are left out"
    );

    // The same findings as checking each signature.
    let plain = verify_all_heads(
        &chain.case,
        chain.encoded(),
        &offices.directory(),
        &calendar(),
        bj(2025, 3, 13, 9, 0),
    );
    let batched = verify_with(&chain, chain.encoded(), &offices, &verified);
    assert_eq!(render(&batched), render(&plain));
    assert_eq!(kinds(&batched), []);

    // One forged entry among many cases fails the whole batch.
    let mut forged = chain.signed[6].clone();
    forged.transition.operator = tongban_domain::ids::Operator::parse("someone-else").unwrap();
    let mut with_forgery = all.clone();
    with_forgery[6] = forged.encode();
    assert!(VerifiedSignatures::batch(with_forgery.iter().map(Vec::as_slice)).is_none());

    // A set that does not hold an entry does not excuse it: the forgery is
    // still checked, and named.
    let mut entries = chain.encoded();
    entries[6] = forged.encode();
    let report = verify_with(&chain, entries, &offices, &verified);
    assert!(
        kinds(&report).contains(&BadSignature),
        "{}",
        render(&report)
    );

    // A verified signature says nothing of the key's authority: a stranger's
    // well-signed transition is still an unknown key.
    let stranger = OfficeKey::from_bytes(&[66; 32]);
    let mut chain = prefix(&offices, 3);
    let mut t = chain.next(Stage::Received, DOMICILE, bj(2025, 3, 4, 9, 5));
    t.signer_key = stranger.public();
    chain.push_signed(t, &stranger);
    let entries = chain.encoded();
    let verified = VerifiedSignatures::batch(entries.iter().map(Vec::as_slice)).unwrap();
    let report = verify_with(&chain, entries, &offices, &verified);
    assert!(kinds(&report).contains(&UnknownKey), "{}", render(&report));
}
