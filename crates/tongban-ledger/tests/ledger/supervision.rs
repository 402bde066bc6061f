//! Supervision from signed attestations (`TBSV`, issue #16): the encoding is
//! total and canonical, a signature covers every byte, only the four offices
//! of a case's route may attest it, and `supervise` reads the chain, the
//! deadlines and the facts each from the office whose word it is.

use proptest::prelude::*;
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_domain::payroll::YearMonth;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::{Role, Stage};
use tongban_domain::supervision::{Award, Evaluation, SupervisedCase};
use tongban_ledger::supervision::{Attestation, SignedAttestation, check_attestation, supervise};
use tongban_ledger::{
    DecodeError, Directory, OfficeCertificate, OfficeKey, Revocation, SignedTransition,
};

use crate::fixture::*;

/// A township of another county (Shijiazhuang, Qiaoxi).
const OTHER_TOWNSHIP: &str = "130104001";
/// The DPF of that other county.
const OTHER_DPF: &str = "130104-dpf";
/// The hub of the domicile county.
const HUB: &str = "hub-130102";
/// The province supervisor of Hebei.
const SUPERVISOR: &str = "supervisor-13";

/// Keys of the offices the fixture does not have.
fn other_key(id: &str) -> OfficeKey {
    let seed = match id {
        OTHER_TOWNSHIP => 6,
        OTHER_DPF => 7,
        HUB => 8,
        SUPERVISOR => 9,
        _ => panic!("no office {id}"),
    };
    OfficeKey::from_bytes(&[seed; 32])
}

fn other_cert(id: &str, serial: u64) -> OfficeCertificate {
    let (name, role, division) = match id {
        OTHER_TOWNSHIP => (
            "石家庄市桥西区东里街道办事处",
            Role::Township,
            OTHER_TOWNSHIP,
        ),
        OTHER_DPF => ("石家庄市桥西区残疾人联合会", Role::CountyDpf, "130104"),
        HUB => ("长安区枢纽", Role::Hub, "130102"),
        SUPERVISOR => ("河北省民政厅", Role::Supervisor, "13"),
        _ => panic!("no office {id}"),
    };
    OfficeCertificate {
        office: office(id),
        name: name.into(),
        role,
        division: division.into(),
        public_key: other_key(id).public(),
        not_before: bj(2021, 1, 1, 0, 0),
        not_after: bj(2028, 12, 31, 0, 0),
        serial,
    }
}

/// The fixture's four offices and the four others above.
fn wide_directory(offices: &Offices, revocations: Vec<Revocation>) -> Directory {
    let extra = [OTHER_TOWNSHIP, OTHER_DPF, HUB, SUPERVISOR]
        .iter()
        .enumerate()
        .map(|(i, id)| other_cert(id, 10 + i as u64))
        .collect();
    offices.directory_with(extra, revocations)
}

/// A bare attestation of the fixture's case by `office_id` with `key`.
fn attestation(office_id: &str, key: &OfficeKey, at: Timestamp) -> Attestation {
    Attestation {
        case: case_id(),
        office: office(office_id),
        at,
        domicile: DOMICILE.into(),
        kinds: vec![SubsidyKind::Living],
        transitions: Vec::new(),
        awards: Vec::new(),
        first_paid_month: None,
        evaluation: None,
        signer_key: key.public(),
    }
}

fn signed(a: Attestation, key: &OfficeKey) -> SignedAttestation {
    SignedAttestation::sign(a, key).unwrap()
}

/// A full attestation: every field set, two transitions, two awards.
fn rich_sample() -> SignedAttestation {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut a = attestation(CA, &offices.ca, bj(2025, 3, 12, 9, 5));
    a.kinds = vec![SubsidyKind::Nursing, SubsidyKind::Living];
    a.transitions = chain.encoded()[..2].to_vec();
    a.awards = vec![
        Award {
            kind: SubsidyKind::Nursing,
            monthly_yuan: 200,
        },
        Award {
            kind: SubsidyKind::Living,
            monthly_yuan: 100,
        },
    ];
    a.first_paid_month = Some(YearMonth::parse("2025-04").unwrap());
    a.evaluation = Some((4, bj(2025, 3, 11, 10, 0)));
    signed(a, &offices.ca)
}

/// A minimal attestation: nothing optional.
fn bare_sample() -> SignedAttestation {
    let offices = Offices::new();
    let mut a = attestation(ACCEPTANCE, &offices.acceptance, bj(2025, 3, 3, 10, 1));
    a.kinds = Vec::new();
    signed(a, &offices.acceptance)
}

// ---------------------------------------------------------------- encoding

#[test]
fn encode_decode_round_trip_and_canonical_form() {
    for sample in [rich_sample(), bare_sample()] {
        let bytes = sample.encode();
        assert_eq!(&bytes[..4], b"TBSV");
        assert_eq!(bytes[4], 1, "format version");
        let decoded = SignedAttestation::decode(&bytes).unwrap();
        assert_eq!(decoded, sample);
        assert_eq!(decoded.encode(), bytes);
        assert!(decoded.verify_signature());
        assert_eq!(decoded.hash(), *blake3::hash(&bytes).as_bytes());
    }
    // Signing sorted the kinds and the awards into their one order.
    let rich = rich_sample().attestation;
    assert_eq!(rich.kinds, [SubsidyKind::Living, SubsidyKind::Nursing]);
    assert_eq!(
        rich.awards.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [SubsidyKind::Living, SubsidyKind::Nursing]
    );
}

#[test]
fn signing_drops_repeated_transitions_kinds_and_awards() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let t = chain.encoded();
    let mut a = attestation(DOMICILE, &offices.domicile, bj(2025, 3, 5, 15, 1));
    a.transitions = vec![t[0].clone(), t[1].clone(), t[0].clone()];
    a.kinds = vec![SubsidyKind::Nursing, SubsidyKind::Nursing];
    a.awards = vec![
        Award {
            kind: SubsidyKind::Living,
            monthly_yuan: 1,
        },
        Award {
            kind: SubsidyKind::Living,
            monthly_yuan: 2,
        },
    ];
    let s = signed(a, &offices.domicile);
    assert_eq!(s.attestation.transitions, [t[0].clone(), t[1].clone()]);
    assert_eq!(s.attestation.kinds, [SubsidyKind::Nursing]);
    assert_eq!(s.attestation.awards.len(), 1);
    assert_eq!(SignedAttestation::decode(&s.encode()).unwrap(), s);
}

#[test]
fn signing_with_another_key_than_named_is_refused() {
    let offices = Offices::new();
    let a = attestation(DPF, &offices.dpf, bj(2025, 3, 6, 11, 1));
    assert!(SignedAttestation::sign(a, &offices.ca).is_err());
}

#[test]
fn non_canonical_encodings_are_refused() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let t0 = chain.encoded()[0].clone();
    // A repeated transition, forced past `sign` by editing the signed value.
    let mut s = signed(
        {
            let mut a = attestation(ACCEPTANCE, &offices.acceptance, bj(2025, 3, 3, 10, 1));
            a.transitions = vec![t0.clone()];
            a
        },
        &offices.acceptance,
    );
    s.attestation.transitions.push(t0);
    let err = SignedAttestation::decode(&s.encode()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::NonCanonical {
                field: "transition",
                ..
            }
        ),
        "{err:?}"
    );
    // Awards out of kind order.
    let mut s = rich_sample();
    s.attestation.awards.reverse();
    let err = SignedAttestation::decode(&s.encode()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::NonCanonical {
                field: "award kind",
                ..
            }
        ),
        "{err:?}"
    );
    // Trailing bytes.
    let mut bytes = bare_sample().encode();
    bytes.push(0);
    assert!(SignedAttestation::decode(&bytes).is_err());
}

#[test]
fn a_byte_changed_after_signing_fails_the_signature() {
    let sample = rich_sample();
    let bytes = sample.encode();
    let mut n_decoded = 0;
    for position in 5..bytes.len() {
        let mut mutated = bytes.clone();
        mutated[position] ^= 0x01;
        if let Ok(decoded) = SignedAttestation::decode(&mutated) {
            n_decoded += 1;
            assert!(
                !decoded.verify_signature(),
                "byte {position} changed and the signature still holds"
            );
        }
    }
    // Most positions (times, yuan, keys, signature, transition bytes) still
    // decode: the signature is what catches them.
    assert!(
        n_decoded > bytes.len() / 2,
        "{n_decoded} of {}",
        bytes.len()
    );

    // The same through the value: a changed award.
    let mut forged = sample.clone();
    forged.attestation.awards[0].monthly_yuan += 1;
    assert!(!forged.verify_signature());
    assert!(sample.verify_signature());
}

/// What every decoded input must satisfy.
fn decode_checked(bytes: &[u8]) -> bool {
    match SignedAttestation::decode(bytes) {
        Ok(decoded) => {
            assert_eq!(decoded.encode(), bytes, "not canonical");
            let _ = decoded.verify_signature();
            true
        }
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_is_total_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_checked(&bytes);
        // Behind a valid header too, so the fields after the magic are reached.
        let mut headed = b"TBSV\x01".to_vec();
        headed.extend_from_slice(&bytes);
        decode_checked(&headed);
    }

    #[test]
    fn decode_is_total_on_mutations_of_a_valid_encoding(
        rich in any::<bool>(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = if rich { rich_sample() } else { bare_sample() }.encode();
        let i = position.index(bytes.len());
        let mut mutated = bytes.clone();
        mutated[i] = replacement;
        if decode_checked(&mutated) && replacement != bytes[i] {
            prop_assert!(!SignedAttestation::decode(&mutated).unwrap().verify_signature());
        }
        let n = cut.index(bytes.len());
        prop_assert!(!decode_checked(&bytes[..n]), "a strict prefix of {n} bytes decoded");
        let mut longer = bytes.clone();
        longer.push(replacement);
        prop_assert!(!decode_checked(&longer));
    }
}

#[test]
fn every_single_byte_mutation_and_truncation_decodes_or_fails() {
    for sample in [rich_sample(), bare_sample()] {
        let bytes = sample.encode();
        for position in 0..bytes.len() {
            for xor in [0x01u8, 0x80, 0xff] {
                let mut mutated = bytes.clone();
                mutated[position] ^= xor;
                decode_checked(&mutated);
            }
        }
        for n in 0..bytes.len() {
            assert!(!decode_checked(&bytes[..n]), "prefix of {n} bytes decoded");
        }
        assert!(decode_checked(&bytes));
    }
}

// ------------------------------------------------------- check_attestation

#[test]
fn each_of_the_four_route_members_may_attest() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    for id in [ACCEPTANCE, DOMICILE, DPF, CA] {
        let key = offices.key_of(id);
        let s = signed(attestation(id, key, bj(2025, 3, 12, 9, 0)), key);
        assert_eq!(check_attestation(&directory, &s), Ok(()), "{id}");
    }
}

#[test]
fn offices_off_the_route_hubs_and_supervisors_may_not_attest() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    for id in [OTHER_TOWNSHIP, OTHER_DPF, HUB, SUPERVISOR] {
        let key = other_key(id);
        let s = signed(attestation(id, &key, bj(2025, 3, 12, 9, 0)), &key);
        assert!(s.verify_signature());
        let err = check_attestation(&directory, &s).unwrap_err();
        assert!(
            err.contains(&format!("office {id} is not an office of case")),
            "{id}: {err}"
        );
    }
}

#[test]
fn an_office_cannot_put_itself_on_the_route_of_a_case_by_its_domicile_alone() {
    // The other county's DPF names a domicile of the fixture's county: it is
    // still not that county's DPF.
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    let key = other_key(OTHER_DPF);
    let s = signed(attestation(OTHER_DPF, &key, bj(2025, 3, 12, 9, 0)), &key);
    assert_eq!(s.attestation.domicile, DOMICILE);
    assert!(check_attestation(&directory, &s).is_err());
}

#[test]
fn a_revoked_key_attests_nothing_after_its_revocation() {
    let offices = Offices::new();
    let directory = wide_directory(
        &offices,
        vec![Revocation {
            office: office(DPF),
            public_key: offices.dpf.public(),
            effective: bj(2025, 3, 10, 0, 0),
            reason: "密钥泄露".into(),
            serial: 50,
        }],
    );
    let before = signed(
        attestation(DPF, &offices.dpf, bj(2025, 3, 6, 11, 1)),
        &offices.dpf,
    );
    assert_eq!(check_attestation(&directory, &before), Ok(()));
    let after = signed(
        attestation(DPF, &offices.dpf, bj(2025, 3, 12, 9, 0)),
        &offices.dpf,
    );
    let err = check_attestation(&directory, &after).unwrap_err();
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn a_key_the_directory_does_not_know_attests_nothing() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    let stranger = OfficeKey::from_bytes(&[42; 32]);
    let s = signed(
        attestation(ACCEPTANCE, &stranger, bj(2025, 3, 12, 9, 0)),
        &stranger,
    );
    assert!(s.verify_signature());
    let err = check_attestation(&directory, &s).unwrap_err();
    assert!(err.contains("is not in directory version 7"), "{err}");

    // Another office's certified key, named for the acceptance office.
    let s = signed(
        attestation(ACCEPTANCE, &offices.dpf, bj(2025, 3, 12, 9, 0)),
        &offices.dpf,
    );
    let err = check_attestation(&directory, &s).unwrap_err();
    assert!(err.contains("is certified for 130102-dpf"), "{err}");
}

#[test]
fn an_invalid_signature_is_refused() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    let mut s = signed(
        attestation(CA, &offices.ca, bj(2025, 3, 12, 9, 0)),
        &offices.ca,
    );
    s.signature[0] ^= 1;
    let err = check_attestation(&directory, &s).unwrap_err();
    assert!(err.contains("invalid signature"), "{err}");
}

// --------------------------------------------------------------- supervise

const NOW: (i32, u32, u32) = (2025, 3, 20);

fn now() -> Timestamp {
    bj(NOW.0, NOW.1, NOW.2, 9, 0)
}

fn run(attestations: &[SignedAttestation], directory: &Directory) -> Option<SupervisedCase> {
    supervise(
        &case_id(),
        attestations,
        directory,
        &calendar(),
        |_| 7,
        now(),
    )
}

fn living(yuan: u32) -> Award {
    Award {
        kind: SubsidyKind::Living,
        monthly_yuan: yuan,
    }
}

fn nursing(yuan: u32) -> Award {
    Award {
        kind: SubsidyKind::Nursing,
        monthly_yuan: yuan,
    }
}

/// What each office of the fixture attests of `chain` when the whole chain is
/// signed: the acceptance office all of it with an evaluation and a claim of
/// awards it has no right to; the domicile township and the DPF what they
/// saw, the DPF with an evaluation it has no right to; civil affairs all of
/// it with the decision's awards.
fn attestations_of(offices: &Offices, chain: &[Vec<u8>]) -> Vec<SignedAttestation> {
    let mut acceptance = attestation(ACCEPTANCE, &offices.acceptance, bj(2025, 3, 12, 10, 0));
    acceptance.kinds = vec![SubsidyKind::Living, SubsidyKind::Nursing];
    acceptance.transitions = chain.to_vec();
    acceptance.awards = vec![living(9999)];
    acceptance.first_paid_month = Some(YearMonth::parse("2030-01").unwrap());
    acceptance.evaluation = Some((5, bj(2025, 3, 11, 11, 0)));

    let mut domicile = attestation(DOMICILE, &offices.domicile, bj(2025, 3, 5, 15, 1));
    domicile.transitions = chain[..chain.len().min(5)].to_vec();

    let mut dpf = attestation(DPF, &offices.dpf, bj(2025, 3, 6, 11, 1));
    dpf.transitions = chain[..chain.len().min(6)].to_vec();
    dpf.awards = vec![living(1)];
    dpf.evaluation = Some((1, bj(2025, 3, 6, 11, 1)));

    let mut ca = attestation(CA, &offices.ca, bj(2025, 3, 12, 9, 1));
    ca.transitions = chain.to_vec();
    ca.awards = vec![living(150), nursing(120)];
    ca.first_paid_month = Some(YearMonth::parse("2025-04").unwrap());

    vec![
        signed(dpf, &offices.dpf),
        signed(acceptance, &offices.acceptance),
        signed(ca, &offices.ca),
        signed(domicile, &offices.domicile),
    ]
}

#[test]
fn supervise_a_whole_case_attested_by_its_four_offices() {
    let offices = Offices::new();
    let directory = offices.directory();
    let chain = full_chain(&offices);
    let encoded = chain.encoded();
    let case = run(&attestations_of(&offices, &encoded), &directory).unwrap();

    assert_eq!(case.problems, Vec::<String>::new());
    assert_eq!(case.case, case_id().as_str());
    assert_eq!(case.acceptance, ACCEPTANCE);
    assert_eq!(case.acceptance_office, ACCEPTANCE);
    assert_eq!(case.domicile, DOMICILE);
    assert_eq!(case.kinds, [SubsidyKind::Living, SubsidyKind::Nursing]);
    // The steps are the chain, step for step.
    let expected: Vec<(u32, Option<Stage>, Stage, String, Timestamp)> = chain
        .signed
        .iter()
        .map(|s| {
            let t = &s.transition;
            (t.seq, t.from, t.to, t.office.as_str().to_string(), t.at)
        })
        .collect();
    let got: Vec<(u32, Option<Stage>, Stage, String, Timestamp)> = case
        .steps
        .iter()
        .map(|s| (s.seq, s.from, s.to, s.office.clone(), s.at))
        .collect();
    assert_eq!(got, expected);
    let roles: Vec<Role> = case.steps.iter().map(|s| s.role).collect();
    assert_eq!(
        roles,
        [
            Role::Township,
            Role::Township,
            Role::Township,
            Role::Township,
            Role::Township,
            Role::CountyDpf,
            Role::CountyCivilAffairs,
            Role::Township,
            Role::Township,
            Role::CountyCivilAffairs,
        ]
    );
    assert_eq!(case.stage(), Some(Stage::Active));
    assert!(case.steps.iter().all(|s| !s.late));
    // The facts, each from the office whose write it is.
    assert_eq!(case.awards, [living(150), nursing(120)]);
    assert_eq!(
        case.first_paid_month,
        Some(YearMonth::parse("2025-04").unwrap())
    );
    assert_eq!(
        case.evaluation,
        Some(Evaluation {
            score: 5,
            office: ACCEPTANCE.into(),
            at: bj(2025, 3, 11, 11, 0),
        })
    );
}

#[test]
fn supervise_counts_deadlines_as_the_ledger_verifier_does() {
    // The DPF reviews on 03-12 though its deadline was 03-07; civil affairs
    // decides the same day.
    let offices = Offices::new();
    let directory = offices.directory();
    let mut chain = ChainBuilder::new(&offices);
    chain
        .step(Stage::Draft, ACCEPTANCE, bj(2025, 3, 3, 9, 0))
        .step(Stage::Accepted, ACCEPTANCE, bj(2025, 3, 3, 10, 0))
        .step(Stage::Pushed, ACCEPTANCE, bj(2025, 3, 4, 9, 0))
        .step(Stage::Received, DOMICILE, bj(2025, 3, 4, 9, 5))
        .step(Stage::InitialReviewed, DOMICILE, bj(2025, 3, 5, 15, 0))
        .step(Stage::DpfReviewed, DPF, bj(2025, 3, 12, 11, 0))
        .step(Stage::Decided, CA, bj(2025, 3, 12, 16, 0));
    let encoded = chain.encoded();
    let report = verify_all_heads(&chain.case, encoded.clone(), &directory, &calendar(), now());
    let branch = &report.timeline()[0];
    let expected: Vec<(u32, Option<chrono::NaiveDate>, bool, bool)> = branch
        .entries
        .iter()
        .map(|e| {
            (
                e.seq,
                e.deadline.as_ref().map(|d| d.date),
                e.deadline.as_ref().is_some_and(|d| !d.met),
                e.deadline.as_ref().is_some_and(|d| d.provisional),
            )
        })
        .collect();

    let case = run(&attestations_of(&offices, &encoded), &directory).unwrap();
    let got: Vec<(u32, Option<chrono::NaiveDate>, bool, bool)> = case
        .steps
        .iter()
        .map(|s| (s.seq, s.deadline, s.late, s.provisional))
        .collect();
    assert_eq!(got, expected);
    // And concretely: the DPF step was late against 03-07, nothing else.
    let late: Vec<(Stage, Option<chrono::NaiveDate>)> = case
        .steps
        .iter()
        .filter(|s| s.late)
        .map(|s| (s.to, s.deadline))
        .collect();
    assert_eq!(late, [(Stage::DpfReviewed, Some(date(2025, 3, 7)))]);
    // A late step is still a step: the chain goes on to the decision.
    assert_eq!(case.stage(), Some(Stage::Decided));
    assert_eq!(case.awards, [living(150), nursing(120)]);
}

#[test]
fn supervise_a_case_still_under_review_has_no_awards_and_a_pending_step() {
    let offices = Offices::new();
    let directory = offices.directory();
    let chain = full_chain(&offices);
    let encoded = chain.encoded()[..5].to_vec();
    // Civil affairs attests before deciding (it holds the chain so far) and
    // already carries amounts in its draft: they do not count before a decision.
    let mut ca = attestation(CA, &offices.ca, bj(2025, 3, 5, 16, 0));
    ca.transitions = encoded.clone();
    ca.awards = vec![living(150)];
    let mut domicile = attestation(DOMICILE, &offices.domicile, bj(2025, 3, 5, 15, 1));
    domicile.transitions = encoded.clone();
    let all = [signed(ca, &offices.ca), signed(domicile, &offices.domicile)];
    let case = supervise(
        &case_id(),
        &all,
        &directory,
        &calendar(),
        |_| 7,
        bj(2025, 3, 6, 9, 0),
    )
    .unwrap();
    assert_eq!(case.stage(), Some(Stage::InitialReviewed));
    assert_eq!(case.awards, Vec::<Award>::new());
    assert_eq!(case.first_paid_month, None);
    let pending = case.pending.unwrap();
    assert_eq!(
        pending.next,
        [Stage::DpfReviewed, Stage::Returned, Stage::Rejected]
    );
    assert_eq!(pending.role, Role::CountyDpf);
    assert_eq!(pending.office, DPF);
    assert_eq!(pending.deadline, date(2025, 3, 7));
}

#[test]
fn awards_come_only_from_civil_affairs() {
    let offices = Offices::new();
    let directory = offices.directory();
    let encoded = full_chain(&offices).encoded();
    let all = attestations_of(&offices, &encoded);
    // Without the civil affairs attestation the acceptance office's and the
    // DPF's claims of awards do not count, though the chain is decided.
    let without_ca: Vec<SignedAttestation> = all
        .iter()
        .filter(|s| s.attestation.office.as_str() != CA)
        .cloned()
        .collect();
    let case = run(&without_ca, &directory).unwrap();
    assert_eq!(case.stage(), Some(Stage::Active));
    assert_eq!(case.awards, Vec::<Award>::new());
    assert_eq!(case.first_paid_month, None);
    assert_eq!(case.problems, Vec::<String>::new());
}

#[test]
fn the_evaluation_comes_only_from_the_acceptance_office() {
    let offices = Offices::new();
    let directory = offices.directory();
    let encoded = full_chain(&offices).encoded();
    let mut all = attestations_of(&offices, &encoded);
    // Without the acceptance office's attestation, the DPF's evaluation (score
    // 1) does not count.
    all.retain(|s| s.attestation.office.as_str() != ACCEPTANCE);
    let case = run(&all, &directory).unwrap();
    assert_eq!(case.evaluation, None);
    assert_eq!(case.stage(), Some(Stage::Active));
    assert_eq!(case.awards, [living(150), nursing(120)]);
    // With an acceptance attestation without an evaluation: none either.
    let mut acceptance = attestation(ACCEPTANCE, &offices.acceptance, bj(2025, 3, 12, 10, 0));
    acceptance.transitions = encoded.clone();
    all.push(signed(acceptance, &offices.acceptance));
    let case = run(&all, &directory).unwrap();
    assert_eq!(case.evaluation, None);
}

/// The DPF attests the chain up to its review and, inside, two forgeries: a
/// decision "by civil affairs" signed with the DPF's own key, and a copy of
/// its real review with the signature altered.
fn forged_case() -> (SupervisedCase, SupervisedCase) {
    let offices = Offices::new();
    let directory = offices.directory();
    let chain = full_chain(&offices);
    let encoded = chain.encoded();
    let mut all = attestations_of(&offices, &encoded[..6]);
    all.retain(|s| s.attestation.office.as_str() != CA);
    let at = bj(2025, 3, 7, 12, 0);
    let run_at = |all: &[SignedAttestation]| {
        supervise(&case_id(), all, &directory, &calendar(), |_| 7, at).unwrap()
    };
    let clean = run_at(&all);

    let mut decided = ChainBuilder::new(&offices);
    decided.signed = chain.signed[..6].to_vec();
    let mut t = decided.next(Stage::Decided, CA, bj(2025, 3, 7, 9, 0));
    t.signer_key = offices.dpf.public();
    let forged = SignedTransition::sign(t, &offices.dpf).unwrap().encode();
    let mut altered = encoded[5].clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x55;
    let mut dpf = attestation(DPF, &offices.dpf, bj(2025, 3, 7, 9, 1));
    dpf.transitions = vec![encoded[0].clone(), encoded[5].clone(), forged, altered];
    all.retain(|s| s.attestation.office.as_str() != DPF);
    all.push(signed(dpf, &offices.dpf));
    (clean, run_at(&all))
}

#[test]
fn a_forged_transition_inside_an_attestation_is_a_problem() {
    let (clean, case) = forged_case();
    assert_eq!(clean.problems, Vec::<String>::new());
    assert_eq!(clean.stage(), Some(Stage::DpfReviewed));
    assert_eq!(clean.steps.len(), 6);

    assert!(
        case.problems.iter().any(|p| p.starts_with("unknown_key:")
            && p.contains("is certified for 130102-dpf, not for office 130102-ca")),
        "{:?}",
        case.problems
    );
    assert!(
        case.problems
            .iter()
            .any(|p| p.starts_with("bad_signature:")),
        "{:?}",
        case.problems
    );
    // The altered copy of the review is no step: the real one is.
    assert_eq!(case.steps[..6], clean.steps[..]);
    // No awards without civil affairs' own attestation.
    assert_eq!(case.awards, Vec::<Award>::new());
}

/// A regression test: before 22929c6, the forged decision was a step.
#[test]
fn a_transition_signed_without_authority_is_no_step_of_the_chain() {
    let (clean, case) = forged_case();
    assert_eq!(
        case.steps,
        clean.steps,
        "the forged decision became a step: {:?}",
        case.steps.last()
    );
    assert_eq!(case.stage(), Some(Stage::DpfReviewed));
    // The forged step hides nothing: the decision stays pending, with its
    // deadline, as in the sound chain.
    assert!(clean.pending.is_some());
    assert_eq!(case.pending, clean.pending);
}

#[test]
fn attestations_that_disagree_on_the_domicile_are_reported() {
    let offices = Offices::new();
    let directory = offices.directory();
    let encoded = full_chain(&offices).encoded();
    let mut all = attestations_of(&offices, &encoded);
    // Civil affairs names another township of its county as the domicile.
    let mut ca = all
        .iter()
        .find(|s| s.attestation.office.as_str() == CA)
        .unwrap()
        .attestation
        .clone();
    ca.domicile = "130102002".into();
    all.retain(|s| s.attestation.office.as_str() != CA);
    all.push(signed(ca, &offices.ca));

    let case = run(&all, &directory).unwrap();
    // The acceptance office's word stands; civil affairs' attestation is set
    // aside, with its awards.
    assert_eq!(case.domicile, DOMICILE);
    let disagree: Vec<&String> = case
        .problems
        .iter()
        .filter(|p| p.contains("domicile differs"))
        .collect();
    assert_eq!(disagree.len(), 1, "{:?}", case.problems);
    assert!(disagree[0].ends_with(CA), "{}", disagree[0]);
    assert_eq!(case.awards, Vec::<Award>::new());
    // The chain still stands from the others.
    assert_eq!(case.stage(), Some(Stage::Active));
}

#[test]
fn attestations_of_another_case_or_by_outsiders_are_ignored() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    let encoded = full_chain(&offices).encoded();
    let mut all = attestations_of(&offices, &encoded);
    let reference = run(&all, &directory).unwrap();

    // An attestation of another case, by the same office, with other awards.
    let other_case = CaseId::new(ACCEPTANCE, date(2025, 3, 3), [9, 9, 9, 9]).unwrap();
    let mut other = attestation(CA, &offices.ca, bj(2025, 3, 19, 9, 0));
    other.case = other_case.clone();
    other.awards = vec![living(7)];
    all.push(signed(other, &offices.ca));
    assert_eq!(run(&all, &directory).unwrap(), reference);

    // Only attestations of another case: nothing to say of this one.
    let only_other: Vec<SignedAttestation> = all
        .iter()
        .filter(|s| s.attestation.case == other_case)
        .cloned()
        .collect();
    assert_eq!(run(&only_other, &directory), None);

    // An outsider's attestation is a problem, not a source.
    let key = other_key(OTHER_DPF);
    let mut outsider = attestation(OTHER_DPF, &key, bj(2025, 3, 19, 9, 0));
    outsider.awards = vec![living(1)];
    all.push(signed(outsider, &key));
    let case = run(&all, &directory).unwrap();
    assert_eq!(case.awards, reference.awards);
    assert_eq!(
        case.problems,
        [format!(
            "{OTHER_DPF} 不是本案经办机关 not an office of the case"
        )]
    );

    // An attestation whose own signature fails is a problem, not a source.
    let mut all = attestations_of(&offices, &encoded);
    for s in &mut all {
        if s.attestation.office.as_str() == CA {
            s.signature[10] ^= 1;
        }
    }
    let case = run(&all, &directory).unwrap();
    assert_eq!(case.awards, Vec::<Award>::new());
    assert_eq!(
        case.problems,
        [format!(
            "{CA} 的监管报送签名无效 attestation signature invalid"
        )]
    );
}

#[test]
fn no_valid_attestation_gives_nothing() {
    let offices = Offices::new();
    let directory = wide_directory(&offices, Vec::new());
    assert_eq!(run(&[], &directory), None);
    let key = other_key(HUB);
    let hub = signed(attestation(HUB, &key, bj(2025, 3, 19, 9, 0)), &key);
    assert_eq!(run(&[hub], &directory), None);
}
