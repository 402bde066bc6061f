//! Every path through the stage machine on a real case document, with the signed
//! history verified after each, and the ways a document can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::NaiveDate;
use tongban_case::document::{AwardLine, policy_awards};
use tongban_case::{CaseDocument, CaseError, IntakeForm, Outcome, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage, TransitionError};
use tongban_ledger::directory::{Directory, DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::OfficeKey;
use tongban_ledger::verify::ViolationKind;

struct Office {
    key: OfficeKey,
    facts: OfficeFacts,
}

impl Office {
    fn signer(&self) -> SigningOffice<'_> {
        SigningOffice {
            key: &self.key,
            facts: self.facts.clone(),
        }
    }
}

struct World {
    directory: Directory,
    calendar: Calendar,
    offices: Vec<Office>,
}

impl World {
    fn new() -> World {
        let authority = DirectoryAuthority::new(OfficeKey::from_bytes(&[7; 32]));
        let specs = [
            ("440106001", Role::Township, "440106001"),
            ("130102001", Role::Township, "130102001"),
            ("130102002", Role::Township, "130102002"),
            ("130102-dpf", Role::CountyDpf, "130102"),
            ("130102-ca", Role::CountyCivilAffairs, "130102"),
            ("hub-cn", Role::Hub, "00"),
        ];
        let mut offices = Vec::new();
        let mut certs = Vec::new();
        for (idx, (id, role, division)) in specs.into_iter().enumerate() {
            let key = OfficeKey::from_bytes(&[idx as u8 + 20; 32]);
            certs.push(
                authority
                    .issue(OfficeCertificate {
                        office: OfficeId::parse(id).unwrap(),
                        name: format!("office {id}"),
                        role,
                        division: division.into(),
                        public_key: key.public(),
                        not_before: Timestamp(0),
                        not_after: Timestamp(i64::MAX / 2),
                        serial: idx as u64 + 1,
                    })
                    .unwrap(),
            );
            offices.push(Office {
                key,
                facts: OfficeFacts {
                    office: id.into(),
                    role,
                    division: division.into(),
                },
            });
        }
        let signed = authority.publish(1, Timestamp(0), certs, Vec::new());
        let directory = Directory::verify(&signed.encode(), &authority.public()).unwrap();
        World {
            directory,
            calendar: Calendar::shipped().unwrap(),
            offices,
        }
    }

    fn office(&self, id: &str) -> &Office {
        self.offices.iter().find(|o| o.facts.office == id).unwrap()
    }

    /// A new case of a Hebei resident (hukou 130102001) accepted at `acceptance`.
    fn new_case(&self, acceptance: &str) -> CaseDocument {
        let first17 = "13010219680512031";
        let id = format!("{first17}{}", resident_id_check_char(first17).unwrap());
        let form = IntakeForm {
            name: "张建国".into(),
            resident_id: id.clone(),
            hukou_township: "130102001".into(),
            certificate: format!("{id}41"),
            dibao: true,
            subsidy_kinds: vec!["living".into()],
            ..IntakeForm::default()
        };
        let intake = form.validate(day(0)).unwrap();
        let case_id = CaseId::new(acceptance, day(0), [1, 2, 3, 4]).unwrap();
        let (doc, _) = CaseDocument::create(
            &case_id,
            &intake,
            &self.office(acceptance).signer(),
            &op(),
            at(0, 9),
        )
        .unwrap();
        doc
    }

    fn step(
        &self,
        doc: &mut CaseDocument,
        office: &str,
        to: Stage,
        when: Timestamp,
        payload: Payload,
    ) {
        if to == Stage::Accepted {
            attach_all(doc, &self.office(office).signer(), when);
        }
        if matches!(to, Stage::Received | Stage::ResultReceived) {
            // Receipts are signed under one actor per office and case, as the
            // sync layer signs them: a second receipt of the same office then
            // depends on its first as well as on the heads it signs.
            let actor =
                tongban_case::authorship::actor_for(&OfficeId::parse(office).unwrap(), b"receipt");
            doc.automerge_mut().set_actor(actor);
        }
        doc.apply(to, &self.office(office).signer(), &op(), when, &payload)
            .unwrap_or_else(|e| panic!("{office} → {to}: {e}"));
    }

    fn assert_verifies(&self, doc: &mut CaseDocument) {
        let report = doc.verify(&self.directory, &self.calendar, now()).unwrap();
        let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
        assert!(report.is_ok(), "{errors:#?}");
    }
}

/// Attaches a scan for every item of the notice still missing, as the clerk does
/// before accepting.
fn attach_all(doc: &mut CaseDocument, signer: &SigningOffice<'_>, when: Timestamp) {
    let case = doc.read().unwrap();
    for (code, _) in tongban_case::document::missing_materials_of(&case) {
        let bytes = format!("scan of {code}");
        let material = tongban_case::schema::Material {
            kind: code.clone(),
            hash: blake3::hash(bytes.as_bytes()).to_hex().to_string(),
            size: bytes.len() as u64,
            media_type: "image/jpeg".into(),
            file_name: format!("{code}.jpg"),
            added_at: when.millis(),
            added_by: signer.facts.office.clone(),
        };
        doc.add_material(signer, &op(), when, material)
            .unwrap_or_else(|e| panic!("attach {code}: {e}"));
    }
}

/// 2024-03-04 (a Monday) plus `n` days.
fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 4).unwrap() + chrono::Duration::days(n)
}

fn at(n: i64, hour: i64) -> Timestamp {
    Timestamp(Timestamp::start_of_china_date(day(n)).0 + hour * Timestamp::HOUR_MS)
}

fn now() -> Timestamp {
    Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2024, 12, 31).unwrap())
}

fn op() -> Operator {
    Operator::parse("clerk-01").unwrap()
}

fn approve(opinion: &str) -> Payload {
    Payload {
        opinion: opinion.into(),
        outcome: Some(Outcome::Approve),
        ..Payload::default()
    }
}

fn with(outcome: Outcome, opinion: &str) -> Payload {
    Payload {
        opinion: opinion.into(),
        outcome: Some(outcome),
        ..Payload::default()
    }
}

fn decision(world: &World, doc: &CaseDocument) -> Payload {
    let (awards, first) = policy_awards(&doc.read().unwrap(), day(0)).unwrap();
    assert_eq!(first, "2024-03");
    assert!(
        matches!(
            awards[..],
            [AwardLine {
                monthly_yuan: 80,
                ..
            }]
        ),
        "{awards:?}"
    );
    let _ = world;
    Payload {
        opinion: "审定通过".into(),
        outcome: Some(Outcome::Approve),
        awards,
        first_paid_month: Some(first),
        method: None,
        override_reason: None,
    }
}

/// Up to `received` for a cross-township case.
fn to_received(world: &World, doc: &mut CaseDocument) {
    world.step(
        doc,
        "440106001",
        Stage::Accepted,
        at(0, 10),
        Payload::default(),
    );
    world.step(
        doc,
        "440106001",
        Stage::Pushed,
        at(0, 11),
        Payload::default(),
    );
    world.step(
        doc,
        "130102001",
        Stage::Received,
        at(1, 9),
        Payload::default(),
    );
}

#[test]
fn approved_then_suspended_resumed_and_terminated() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(2, 9),
        approve("初审同意"),
    );
    world.step(
        &mut doc,
        "130102-dpf",
        Stage::DpfReviewed,
        at(3, 9),
        approve("复审同意"),
    );
    let payload = decision(&world, &doc);
    world.step(&mut doc, "130102-ca", Stage::Decided, at(4, 9), payload);
    world.step(
        &mut doc,
        "440106001",
        Stage::ResultReceived,
        at(4, 10),
        Payload::default(),
    );
    let notify = Payload {
        method: Some("phone".into()),
        ..Payload::default()
    };
    world.step(&mut doc, "440106001", Stage::Notified, at(5, 9), notify);
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Active,
        at(5, 10),
        Payload::default(),
    );
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Suspended,
        at(30, 10),
        with(Outcome::Reject, "动态核查：生存状态待核实"),
    );
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Active,
        at(31, 10),
        Payload {
            opinion: "生存状态已核实，恢复发放".into(),
            ..Payload::default()
        },
    );
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Terminated,
        at(60, 10),
        Payload {
            opinion: "户籍迁出本县".into(),
            ..Payload::default()
        },
    );
    // A termination is corrected only with a reason (the correction row).
    let mut bare = doc.clone_for_test();
    let ca = world.office("130102-ca").signer();
    let err = bare
        .apply(Stage::Active, &ca, &op(), at(70, 10), &Payload::default())
        .unwrap_err();
    assert!(err.to_string().contains("恢复发放须说明理由"), "{err}");
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Active,
        at(70, 10),
        Payload {
            opinion: "户籍迁出登记有误，更正后恢复发放".into(),
            ..Payload::default()
        },
    );
    world.assert_verifies(&mut doc);
    let case = doc.read().unwrap();
    // Initial review, re-review, decision, suspension, resumption,
    // termination and its correction, each with its reason.
    assert_eq!(case.reviews.len(), 7);
    assert_eq!(case.decision.as_ref().unwrap().first_paid_month, "2024-03");
    assert_eq!(case.notification.as_ref().unwrap().method, "phone");
    assert_eq!(doc.stage().unwrap(), Some(Stage::Active));
    // Saved and loaded, the document is the same case.
    let mut loaded = CaseDocument::load(&doc.save()).unwrap();
    assert_eq!(loaded.read().unwrap(), case);
    world.assert_verifies(&mut loaded);
}

#[test]
fn returned_for_correction_then_approved() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    world.step(
        &mut doc,
        "130102001",
        Stage::Returned,
        at(2, 9),
        with(Outcome::Return, "缺户口簿"),
    );
    world.step(
        &mut doc,
        "440106001",
        Stage::Accepted,
        at(3, 9),
        Payload::default(),
    );
    world.step(
        &mut doc,
        "440106001",
        Stage::Pushed,
        at(3, 10),
        Payload::default(),
    );
    world.step(
        &mut doc,
        "130102001",
        Stage::Received,
        at(3, 11),
        Payload::default(),
    );
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(4, 9),
        approve("同意"),
    );
    world.step(
        &mut doc,
        "130102-dpf",
        Stage::DpfReviewed,
        at(5, 9),
        approve("同意"),
    );
    let payload = decision(&world, &doc);
    world.step(&mut doc, "130102-ca", Stage::Decided, at(7, 9), payload);
    world.assert_verifies(&mut doc);
    let outcomes: Vec<String> = doc
        .read()
        .unwrap()
        .reviews
        .iter()
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(outcomes, ["return", "approve", "approve", "approve"]);
}

#[test]
fn rejected_at_each_level_cannot_be_activated() {
    let world = World::new();
    for level in 0..3 {
        let mut doc = world.new_case("440106001");
        to_received(&world, &mut doc);
        if level >= 1 {
            world.step(
                &mut doc,
                "130102001",
                Stage::InitialReviewed,
                at(2, 9),
                approve("同意"),
            );
        }
        if level >= 2 {
            world.step(
                &mut doc,
                "130102-dpf",
                Stage::DpfReviewed,
                at(3, 9),
                approve("同意"),
            );
        }
        let rejecter = ["130102001", "130102-dpf", "130102-ca"][level];
        world.step(
            &mut doc,
            rejecter,
            Stage::Rejected,
            at(4, 9),
            with(Outcome::Reject, "不符合条件"),
        );
        world.step(
            &mut doc,
            "440106001",
            Stage::ResultReceived,
            at(4, 10),
            Payload::default(),
        );
        let notify = Payload {
            method: Some("letter".into()),
            ..Payload::default()
        };
        world.step(&mut doc, "440106001", Stage::Notified, at(5, 9), notify);
        let refused = doc
            .apply(
                Stage::Active,
                &world.office("130102-ca").signer(),
                &op(),
                at(5, 10),
                &Payload::default(),
            )
            .unwrap_err();
        assert!(
            matches!(
                refused,
                CaseError::Transition(TransitionError::GuardFailed { .. })
            ),
            "{refused}"
        );
        world.assert_verifies(&mut doc);
    }
}

#[test]
fn withdrawn_before_decision() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    world.step(
        &mut doc,
        "440106001",
        Stage::Withdrawn,
        at(2, 9),
        Payload::default(),
    );
    world.assert_verifies(&mut doc);
    assert!(
        doc.apply(
            Stage::InitialReviewed,
            &world.office("130102001").signer(),
            &op(),
            at(2, 10),
            &approve("x")
        )
        .is_err()
    );
}

#[test]
fn local_application_is_publicized_not_pushed() {
    let world = World::new();
    let mut doc = world.new_case("130102001");
    world.step(
        &mut doc,
        "130102001",
        Stage::Accepted,
        at(0, 10),
        Payload::default(),
    );
    let err = doc
        .apply(
            Stage::Pushed,
            &world.office("130102001").signer(),
            &op(),
            at(0, 11),
            &Payload::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CaseError::Transition(TransitionError::GuardFailed { .. })
        ),
        "{err}"
    );
    world.step(
        &mut doc,
        "130102001",
        Stage::Publicized,
        at(0, 11),
        Payload::default(),
    );
    // Publicity runs 7 calendar days (Hebei policy); the review follows within 3 working days.
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(9, 9),
        approve("公示无异议"),
    );
    world.assert_verifies(&mut doc);
}

#[test]
fn the_wrong_office_is_refused_and_told_which_office() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    let err = doc
        .apply(
            Stage::InitialReviewed,
            &world.office("130102002").signer(),
            &op(),
            at(2, 9),
            &approve("x"),
        )
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("130102001") && message.contains("户籍地乡镇"),
        "{message}"
    );
}

#[test]
fn a_late_step_is_reported_as_missed() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    // Received Tuesday 2024-03-05; three working days end Friday 2024-03-08.
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(7, 9),
        approve("同意"),
    );
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(
        report.has(ViolationKind::DeadlineMissed),
        "{:?}",
        report.violations
    );
    let due = doc.due(&world.calendar).unwrap().unwrap();
    assert_eq!((due.next, due.working_days), (Stage::DpfReviewed, 2));
}

#[test]
fn a_changed_payload_is_detected() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(2, 9),
        approve("同意"),
    );
    doc.update_unsigned(at(2, 10), "tamper", |case| {
        for record in case.transitions.values_mut() {
            if record.to == "initial_reviewed" {
                *record.payload.as_mut() = br#"{"opinion":"other","outcome":"approve"}"#.to_vec();
            }
        }
        Ok(())
    })
    .unwrap();
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(
        report.has(ViolationKind::PayloadMismatch),
        "{:?}",
        report.violations
    );
    assert!(!report.is_ok());
}

#[test]
fn concurrent_transitions_fork_and_are_kept() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    let mut other = CaseDocument::load(&doc.save()).unwrap();
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(2, 9),
        approve("同意"),
    );
    world.step(
        &mut other,
        "440106001",
        Stage::Withdrawn,
        at(2, 9),
        Payload::default(),
    );
    doc.automerge_mut().merge(other.automerge_mut()).unwrap();
    let chain = doc.chain().unwrap();
    assert!(chain.forked);
    assert_eq!(
        doc.read().unwrap().transitions.len(),
        6,
        "both signed successors are kept"
    );
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(report.has(ViolationKind::Fork));
    let err = doc
        .apply(
            Stage::DpfReviewed,
            &world.office("130102-dpf").signer(),
            &op(),
            at(3, 9),
            &approve("x"),
        )
        .unwrap_err();
    assert!(matches!(err, CaseError::Chain(_)), "{err}");
}

#[test]
fn a_newer_schema_is_refused_and_bytes_that_are_not_a_case_too() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    // A document written by a future Tongban.
    use automerge::transaction::Transactable;
    doc.automerge_mut()
        .put(automerge::ROOT, "schema_version", 99_u64)
        .unwrap();
    let bytes = doc.save();
    assert!(matches!(
        CaseDocument::load(&bytes),
        Err(CaseError::NewerSchema { found: 99 })
    ));
    assert!(matches!(
        CaseDocument::load(b"not automerge"),
        Err(CaseError::Load(_))
    ));
    let mut empty = automerge::AutoCommit::new();
    assert!(matches!(
        CaseDocument::load(&empty.save()),
        Err(CaseError::Schema(_))
    ));
}

#[test]
fn intake_names_every_bad_field_at_once() {
    let form = IntakeForm {
        name: String::new(),
        resident_id: "130102196805120311".into(),
        hukou_township: "130102999".into(),
        certificate: "x".into(),
        subsidy_kinds: vec!["food".into()],
        phone: "abc".into(),
        ..IntakeForm::default()
    };
    let errors = form.validate(day(0)).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        [
            "name",
            "resident_id",
            "hukou_township",
            "certificate",
            "subsidy_kinds",
            "phone"
        ]
    );
    assert!(
        errors[2].message.contains("130102 长安区"),
        "{}",
        errors[2].message
    );
}

/// The core reading (`read_core`: only the fields the chain, the deadlines and
/// the index need) gives what the whole reading gives.
fn assert_core_agrees(world: &World, doc: &CaseDocument) {
    use tongban_case::{Chain, due_of, facts_of};
    let case = doc.read().unwrap();
    let core = doc.read_core().unwrap();
    let (whole, chain) = (Chain::of(&case), core.chain());
    let hashes = |c: &Chain| c.links.iter().map(|l| l.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&chain), hashes(&whole));
    assert_eq!(
        chain
            .links
            .iter()
            .map(|l| l.payload.clone())
            .collect::<Vec<_>>(),
        whole
            .links
            .iter()
            .map(|l| l.payload.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!((chain.stage(), chain.forked), (whole.stage(), whole.forked));
    assert_eq!(core.facts(&chain), facts_of(&case, &whole));
    assert_eq!(
        core.due(&chain, &world.calendar).unwrap(),
        due_of(&case, &whole, &world.calendar).unwrap()
    );
    assert_eq!(core.case_id, case.case_id);
    assert_eq!(core.subsidy_kinds, case.subsidy_kinds);
    assert_eq!(core.applicant.resident_id, case.applicant.resident_id);
    assert_eq!(core.applicant.hukou_township, case.applicant.hukou_township);
    assert_eq!(doc.case_id().unwrap().as_str(), case.case_id);
    // Debug masks the id number, as the whole applicant's does.
    assert!(!format!("{core:?}").contains(&case.applicant.resident_id));
}

#[test]
fn the_core_reading_agrees_with_the_whole_at_every_stage() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    assert_core_agrees(&world, &doc);
    let steps: Vec<(&str, Stage, Timestamp, Payload)> = vec![
        ("440106001", Stage::Accepted, at(0, 10), Payload::default()),
        ("440106001", Stage::Pushed, at(0, 11), Payload::default()),
        ("130102001", Stage::Received, at(1, 9), Payload::default()),
        (
            "130102001",
            Stage::InitialReviewed,
            at(2, 9),
            approve("初审同意"),
        ),
        (
            "130102-dpf",
            Stage::DpfReviewed,
            at(3, 9),
            approve("复审同意"),
        ),
    ];
    for (office, stage, when, payload) in steps {
        world.step(&mut doc, office, stage, when, payload);
        assert_core_agrees(&world, &doc);
    }
    let payload = decision(&world, &doc);
    world.step(&mut doc, "130102-ca", Stage::Decided, at(4, 9), payload);
    assert_core_agrees(&world, &doc);
    // A document of a newer schema is refused by both readings.
    use automerge::transaction::Transactable;
    let mut newer = CaseDocument::load(&doc.save()).unwrap();
    newer
        .automerge_mut()
        .put(automerge::ROOT, "schema_version", 99u64)
        .unwrap();
    assert!(matches!(
        newer.read_core(),
        Err(CaseError::NewerSchema { found: 99 })
    ));
    assert!(matches!(
        newer.read(),
        Err(CaseError::NewerSchema { found: 99 })
    ));
}

/// `read_core` reads well-formed documents by hand and leaves the rest to
/// autosurgeon: on every shape here, good or damaged, it gives exactly what
/// autosurgeon's hydration gives (the same core, or an error for both).
#[test]
fn the_core_read_by_hand_is_what_autosurgeon_hydrates() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ReadDoc, ScalarValue};
    use tongban_case::schema::CaseCore;
    fn agree(what: &str, doc: &automerge::AutoCommit) {
        let hydrated: Result<CaseCore, _> = autosurgeon::hydrate(doc);
        let version_ok = matches!(
            doc.get(automerge::ROOT, "schema_version"),
            Ok(Some((automerge::Value::Scalar(s), _))) if s.as_u64().is_some_and(|v| v <= 1)
        );
        if let Some(by_hand) = tongban_case::document::read_core_well_formed(doc) {
            assert_eq!(Some(&by_hand), hydrated.as_ref().ok(), "{what}");
        }
        match (tongban_case::read_core(doc), hydrated) {
            (Ok(read), Ok(hydrated)) => assert_eq!(read, hydrated, "{what}"),
            (Err(_), Err(_)) => {}
            (Err(_), Ok(_)) if !version_ok => {}
            (read, hydrated) => panic!("{what}: read {read:?}, hydrated {hydrated:?}"),
        }
    }
    let world = World::new();
    let mut doc = world.new_case("440106001");
    agree("new case", doc.automerge());
    to_received(&world, &mut doc);
    agree("received", doc.automerge());
    // What Tongban writes is read by hand, not left to autosurgeon.
    assert!(tongban_case::document::read_core_well_formed(doc.automerge()).is_some());
    let base = doc.save();
    let fresh = || automerge::AutoCommit::load(&base).unwrap();
    let obj = |d: &automerge::AutoCommit, key: &str| match d.get(automerge::ROOT, key) {
        Ok(Some((_, id))) => id,
        _ => panic!("{key} missing"),
    };
    type Damage = Box<dyn Fn(&mut automerge::AutoCommit)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "case id missing",
            Box::new(|d| d.delete(automerge::ROOT, "case_id").unwrap()),
        ),
        (
            "case id a number",
            Box::new(|d| d.put(automerge::ROOT, "case_id", 7_u64).unwrap()),
        ),
        (
            "case id as text object",
            Box::new(|d| {
                let t = d
                    .put_object(automerge::ROOT, "case_id", ObjType::Text)
                    .unwrap();
                d.splice_text(&t, 0, 0, "440106001-20240304-01020304")
                    .unwrap();
            }),
        ),
        (
            "schema version signed",
            Box::new(|d| {
                d.put(automerge::ROOT, "schema_version", ScalarValue::Int(1))
                    .unwrap()
            }),
        ),
        (
            "schema version newer",
            Box::new(|d| d.put(automerge::ROOT, "schema_version", 9_u64).unwrap()),
        ),
        (
            "acceptance a list",
            Box::new(|d| {
                d.put_object(automerge::ROOT, "acceptance", ObjType::List)
                    .unwrap();
            }),
        ),
        (
            "township missing",
            Box::new(move |d| {
                let a = obj(d, "acceptance");
                d.delete(&a, "township").unwrap();
            }),
        ),
        (
            "resident id bytes",
            Box::new(move |d| {
                let a = obj(d, "applicant");
                d.put(&a, "resident_id", ScalarValue::Bytes(vec![1, 2]))
                    .unwrap();
            }),
        ),
        (
            "a subsidy kind a number",
            Box::new(move |d| {
                let k = obj(d, "subsidy_kinds");
                d.insert(&k, 0, 3_u64).unwrap();
            }),
        ),
        (
            "subsidy kinds a map",
            Box::new(|d| {
                d.put_object(automerge::ROOT, "subsidy_kinds", ObjType::Map)
                    .unwrap();
            }),
        ),
        (
            "no subsidy kinds",
            Box::new(move |d| {
                let k = obj(d, "subsidy_kinds");
                d.delete(&k, 0).unwrap();
            }),
        ),
        (
            "a transition without payload",
            Box::new(move |d| {
                let t = obj(d, "transitions");
                let first = d.map_range(&t, ..).next().unwrap().id();
                d.delete(&first, "payload").unwrap();
            }),
        ),
        (
            "a transition a string",
            Box::new(move |d| {
                let t = obj(d, "transitions");
                d.put(&t, "ff", "not a record").unwrap();
            }),
        ),
        (
            "a transition signed a string",
            Box::new(move |d| {
                let t = obj(d, "transitions");
                let first = d.map_range(&t, ..).next().unwrap().id();
                d.put(&first, "signed", "x").unwrap();
            }),
        ),
        (
            "transitions a list",
            Box::new(|d| {
                d.put_object(automerge::ROOT, "transitions", ObjType::List)
                    .unwrap();
            }),
        ),
        (
            "no transitions",
            Box::new(|d| {
                d.put_object(automerge::ROOT, "transitions", ObjType::Map)
                    .unwrap();
            }),
        ),
        (
            "extra fields everywhere",
            Box::new(move |d| {
                d.put(automerge::ROOT, "zzz", 1_u64).unwrap();
                let a = obj(d, "applicant");
                d.put(&a, "aaa", true).unwrap();
            }),
        ),
    ];
    for (what, damage) in &damages {
        let mut d = fresh();
        damage(&mut d);
        agree(what, &d);
    }
    // Concurrent writes of the same fields: both readings take the same winner.
    let mut left = fresh();
    let mut right = fresh();
    right.set_actor(automerge::ActorId::from([9_u8; 16]));
    left.put(automerge::ROOT, "case_id", "440106001-20240304-0a0b0c0d")
        .unwrap();
    right
        .put(automerge::ROOT, "case_id", "440106001-20240304-01020304")
        .unwrap();
    let a = obj(&left, "applicant");
    left.put(&a, "hukou_township", "130102002").unwrap();
    let a = obj(&right, "applicant");
    right.put(&a, "hukou_township", "130102003").unwrap();
    left.merge(&mut right).unwrap();
    agree("concurrent writes", &left);
    assert!(tongban_case::document::read_core_well_formed(&left).is_some());
}

/// A decided case, every step signed as it should be.
fn decided_case(world: &World) -> CaseDocument {
    let mut doc = world.new_case("440106001");
    to_received(world, &mut doc);
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(2, 9),
        approve("初审同意"),
    );
    world.step(
        &mut doc,
        "130102-dpf",
        Stage::DpfReviewed,
        at(3, 9),
        approve("复审同意"),
    );
    let payload = decision(world, &doc);
    world.step(&mut doc, "130102-ca", Stage::Decided, at(4, 9), payload);
    world.assert_verifies(&mut doc);
    doc
}

/// The findings of `kind` in the verifier's report, as (author, paths).
fn findings(
    world: &World,
    doc: &mut CaseDocument,
    kind: ViolationKind,
) -> Vec<(Option<String>, Vec<String>)> {
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    report
        .violations
        .into_iter()
        .filter(|v| v.kind == kind)
        .map(|v| (v.author, v.paths))
        .collect()
}

/// Writes as `office` without asking the write-rights table, then signs: what
/// an altered node would do.
fn hostile_write(
    world: &World,
    doc: &mut CaseDocument,
    office: &str,
    change: impl FnOnce(&mut tongban_case::schema::CaseDoc),
) {
    doc.bind_actor(office, at(5, 9), b"hostile").unwrap();
    doc.update_unsigned(at(5, 9), "hostile", |case| {
        change(case);
        Ok(())
    })
    .unwrap();
    doc.seal(&world.office(office).signer(), &op(), at(5, 9))
        .unwrap();
}

#[test]
fn a_hub_that_writes_an_evaluation_is_reported_with_path_and_author() {
    let world = World::new();
    let mut doc = decided_case(&world);
    hostile_write(&world, &mut doc, "hub-cn", |case| {
        case.evaluation = Some(tongban_case::schema::Evaluation {
            score: 1,
            comment: String::new(),
            at: 0,
            office: "hub-cn".into(),
            operator: "x".into(),
        });
    });
    assert_eq!(
        findings(&world, &mut doc, ViolationKind::UnauthorisedChange),
        vec![(Some("hub-cn".to_string()), vec!["evaluation".to_string()])]
    );
}

#[test]
fn an_acceptance_office_that_edits_the_decision_is_reported() {
    let world = World::new();
    let mut doc = decided_case(&world);
    hostile_write(&world, &mut doc, "440106001", |case| {
        if let Some(decision) = case.decision.as_mut() {
            decision.awards[0].monthly_yuan = 9999;
        }
    });
    assert_eq!(
        findings(&world, &mut doc, ViolationKind::UnauthorisedChange),
        vec![(Some("440106001".to_string()), vec!["decision".to_string()])]
    );
}

#[test]
fn a_township_that_edits_another_townships_review_is_reported() {
    let world = World::new();
    let mut doc = decided_case(&world);
    hostile_write(&world, &mut doc, "130102002", |case| {
        case.reviews[0].opinion = "不同意".into();
    });
    assert_eq!(
        findings(&world, &mut doc, ViolationKind::UnauthorisedChange),
        vec![(Some("130102002".to_string()), vec!["reviews".to_string()])]
    );
}

#[test]
fn an_unsigned_change_is_reported_and_an_honest_write_is_not() {
    let world = World::new();
    let mut doc = decided_case(&world);
    world.step(
        &mut doc,
        "440106001",
        Stage::ResultReceived,
        at(4, 10),
        Payload::default(),
    );
    let notify = Payload {
        method: Some("phone".into()),
        ..Payload::default()
    };
    world.step(&mut doc, "440106001", Stage::Notified, at(5, 9), notify);
    let acceptance = world.office("440106001").signer();
    doc.record_evaluation(&acceptance, &op(), at(5, 10), 5, "满意")
        .unwrap();
    world.assert_verifies(&mut doc);
    // Once recorded, never overwritten.
    let err = doc
        .record_evaluation(&acceptance, &op(), at(5, 11), 1, "")
        .unwrap_err();
    assert!(err.to_string().contains("never overwritten"), "{err}");
    // A change nobody signs (as a writer outside Tongban would make).
    doc.update_unsigned(at(6, 9), "tamper", |case| {
        case.applicant.phone = "13900000000".into();
        Ok(())
    })
    .unwrap();
    let found = findings(&world, &mut doc, ViolationKind::UnsignedChange);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, vec!["applicant".to_string()]);
}

#[test]
fn the_verifier_fails_a_case_that_leaves_publicity_early() {
    let world = World::new();
    let mut doc = world.new_case("130102001");
    for (to, when) in [(Stage::Accepted, at(0, 10)), (Stage::Publicized, at(0, 11))] {
        world.step(&mut doc, "130102001", to, when, Payload::default());
    }
    let township = world.office("130102001").signer();
    let err = doc
        .apply(
            Stage::InitialReviewed,
            &township,
            &op(),
            at(3, 9),
            &approve("提前"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("公示期未满"), "{err}");
    doc.apply_unguarded(
        Stage::InitialReviewed,
        &township,
        &op(),
        at(3, 9),
        &approve("提前"),
    )
    .unwrap();
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(
        report.has(ViolationKind::GuardFailed),
        "{:#?}",
        report.violations
    );
    assert!(!report.is_ok());
}

#[test]
fn an_ineligible_award_needs_a_signed_override() {
    let world = World::new();
    let mut doc = world.new_case("440106001");
    to_received(&world, &mut doc);
    world.step(
        &mut doc,
        "130102001",
        Stage::InitialReviewed,
        at(2, 9),
        approve("初审同意"),
    );
    world.step(
        &mut doc,
        "130102-dpf",
        Stage::DpfReviewed,
        at(3, 9),
        approve("复审同意"),
    );
    // The applicant holds a level-4 physical certificate: no nursing subsidy
    // under Hebei's policy.
    let mut payload = decision(&world, &doc);
    payload.awards.push(AwardLine {
        kind: tongban_domain::policy::SubsidyKind::Nursing,
        monthly_yuan: 100,
        overridden: false,
    });
    let civil = world.office("130102-ca").signer();
    let err = doc
        .apply(Stage::Decided, &civil, &op(), at(4, 9), &payload)
        .unwrap_err();
    assert!(err.to_string().contains("nursing"), "{err}");
    let mut forced = doc.clone_for_test();
    forced
        .apply_unguarded(Stage::Decided, &civil, &op(), at(4, 9), &payload)
        .unwrap();
    let report = forced
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(
        report.has(ViolationKind::GuardFailed),
        "{:#?}",
        report.violations
    );
    payload.override_reason = Some("经县民政局集体研究，特殊困难个案".into());
    doc.apply(Stage::Decided, &civil, &op(), at(4, 9), &payload)
        .unwrap();
    world.assert_verifies(&mut doc);
    let case = doc.read().unwrap();
    assert!(case.decision.unwrap().override_reason.contains("集体研究"));
}

#[test]
fn a_suspension_without_a_reason_fails_the_verifier() {
    let world = World::new();
    let mut doc = decided_case(&world);
    world.step(
        &mut doc,
        "440106001",
        Stage::ResultReceived,
        at(4, 10),
        Payload::default(),
    );
    let notify = Payload {
        method: Some("phone".into()),
        ..Payload::default()
    };
    world.step(&mut doc, "440106001", Stage::Notified, at(5, 9), notify);
    world.step(
        &mut doc,
        "130102-ca",
        Stage::Active,
        at(5, 10),
        Payload::default(),
    );
    let civil = world.office("130102-ca").signer();
    assert!(
        doc.apply(
            Stage::Suspended,
            &civil,
            &op(),
            at(9, 9),
            &Payload::default()
        )
        .is_err()
    );
    doc.apply_unguarded(
        Stage::Suspended,
        &civil,
        &op(),
        at(9, 9),
        &Payload::default(),
    )
    .unwrap();
    let report = doc
        .verify(&world.directory, &world.calendar, now())
        .unwrap();
    assert!(
        report.has(ViolationKind::GuardFailed),
        "{:#?}",
        report.violations
    );
}

/// The duplicate rule's claim of a case follows its signed chain: a live
/// application claims what it applies for, a decision what it awards, a
/// termination nothing; the time is the draft's, whatever came after.
#[test]
fn the_claim_follows_the_signed_chain() {
    use tongban_domain::duplicates::Standing;
    use tongban_domain::policy::SubsidyKind;
    let world = World::new();
    let claim = |doc: &CaseDocument| {
        let case = doc.case_id().unwrap();
        tongban_case::duplicates::claim_of(&case, &doc.read_core().unwrap())
    };
    let mut doc = world.new_case("440106001");
    let drafted = claim(&doc);
    assert_eq!(drafted.stage, Stage::Draft);
    assert_eq!(drafted.standing, Standing::Live);
    assert_eq!(drafted.held(), [SubsidyKind::Living]);
    assert_eq!(drafted.first_signed_ms, at(0, 9).millis());
    assert_eq!(drafted.acceptance_office, "440106001");
    assert_eq!(drafted.domicile_township, "130102001");
    to_received(&world, &mut doc);
    assert_eq!(claim(&doc).standing, Standing::Live);
    assert_eq!(claim(&doc).first_signed_ms, at(0, 9).millis());

    let mut decided = decided_case(&world);
    let awarded = claim(&decided);
    assert_eq!(awarded.standing, Standing::Award);
    assert_eq!(awarded.awarded, [SubsidyKind::Living]);
    world.step(
        &mut decided,
        "440106001",
        Stage::ResultReceived,
        at(4, 10),
        Payload::default(),
    );
    assert_eq!(claim(&decided).standing, Standing::Award);

    let mut rejected = world.new_case("440106001");
    to_received(&world, &mut rejected);
    world.step(
        &mut rejected,
        "130102001",
        Stage::Rejected,
        at(2, 9),
        with(Outcome::Reject, "不符合条件"),
    );
    let ended = claim(&rejected);
    assert_eq!(ended.standing, Standing::Ended);
    assert!(ended.held().is_empty());
}

/// Reading the whole case answers each field from one pass over its object
/// (`scanned.rs`) instead of a lookup per field: it must give exactly what
/// autosurgeon's own hydration gives, on what Tongban writes, on conflicting
/// concurrent writes (maps and lists), on damaged shapes, and as at earlier
/// heads.
#[test]
fn the_whole_case_read_in_one_pass_per_object_is_what_autosurgeon_hydrates() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ReadDoc};
    use tongban_case::schema::CaseDoc;
    fn agree(what: &str, doc: &automerge::AutoCommit) {
        let hydrated: Result<CaseDoc, _> = autosurgeon::hydrate(doc);
        match (tongban_case::read_case(doc), hydrated) {
            (Ok(read), Ok(hydrated)) => assert_eq!(read, hydrated, "{what}"),
            (Err(_), Err(_)) => {}
            (read, hydrated) => panic!("{what}: read {read:?}, hydrated {hydrated:?}"),
        }
    }
    let world = World::new();
    let mut doc = decided_case(&world);
    agree("decided", doc.automerge());
    let base = doc.save();
    let obj = |d: &automerge::AutoCommit, key: &str| match d.get(automerge::ROOT, key) {
        Ok(Some((_, id))) => id,
        other => panic!("{key}: {other:?}"),
    };
    // Concurrent writes: the same scalar, the same list, the same map key.
    let mut left = automerge::AutoCommit::load(&base).unwrap();
    let mut right = automerge::AutoCommit::load(&base).unwrap();
    right.set_actor(automerge::ActorId::from([9_u8; 16]));
    for (side, township, kind) in [
        (&mut left, "130102002", "living"),
        (&mut right, "130102003", "care"),
    ] {
        let a = obj(side, "applicant");
        side.put(&a, "hukou_township", township).unwrap();
        let kinds = obj(side, "subsidy_kinds");
        side.insert(&kinds, 0, kind).unwrap();
        let materials = obj(side, "materials");
        side.put_object(&materials, "same-key", ObjType::Map)
            .unwrap();
    }
    left.merge(&mut right).unwrap();
    agree("concurrent writes", &left);
    // Damaged: a field of the wrong type, a list where a map was, a missing field.
    let mut damaged = automerge::AutoCommit::load(&base).unwrap();
    let a = obj(&damaged, "applicant");
    damaged.put(&a, "phone", 12_u64).unwrap();
    agree("wrong type", &damaged);
    let mut damaged = automerge::AutoCommit::load(&base).unwrap();
    damaged
        .put_object(automerge::ROOT, "materials", ObjType::List)
        .unwrap();
    agree("list for a map", &damaged);
    let mut damaged = automerge::AutoCommit::load(&base).unwrap();
    let a = obj(&damaged, "applicant");
    damaged.delete(&a, "name").unwrap();
    agree("missing field", &damaged);
    // As at every earlier head of the history.
    let whole = automerge::Automerge::load(&base).unwrap();
    for change in whole.get_changes(&[]) {
        let heads = [change.hash()];
        let at = tongban_case::document::read_case_at(&whole, &heads);
        let forked = whole.fork_at(&heads).unwrap();
        let hydrated: Result<CaseDoc, _> = autosurgeon::hydrate(&forked);
        match (at, hydrated) {
            (Ok(at), Ok(hydrated)) => assert_eq!(at, hydrated),
            (Err(_), Err(_)) => {}
            (at, hydrated) => panic!("at {heads:?}: {at:?} / {hydrated:?}"),
        }
    }
}
