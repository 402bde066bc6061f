//! Supervision over a seeded population, through the node library's office
//! operations (the code the commands call): cases of three provinces are
//! accepted, pushed, reviewed, decided, notified, evaluated and paid, some
//! steps on the day and some fifteen days late, some cases left waiting at
//! every stage that has a deadline; the offices' attestations are carried
//! to a national and a provincial supervisor as sync stores them (through
//! a supervisor's `Replica`), and every report the supervisors compute must
//! equal an independent count written here from the seeded plan — not from
//! the product's records, and without its calendar: a step is on time when
//! taken the day its stage was entered, late when taken fifteen days later,
//! more than three working days in any stretch of these months.
//!
//! `TONGBAN_SUPERVISION_CASES=N` sets the number of cases. The default, 300,
//! keeps the suite's time in CI; `TONGBAN_SUPERVISION_CASES=5000 cargo test
//! --release -p tongban-node --test supervision_population` runs the 5,000
//! cases across three provinces the supervision issue asks for
//! (docs/performance.md).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::{PROVINCES, Rng, World, approve, at, ca, day, dpf, op};

use chrono::{Duration, NaiveDate};
use tongban_case::document::policy_awards;
use tongban_case::{IntakeForm, Outcome, Payload};
use tongban_domain::ids::{CaseId, Timestamp, resident_id_check_char};
use tongban_domain::payroll::YearMonth;
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::supervision::SignedAttestation;
use tongban_node::provision::OfficeSpec;
use tongban_node::supervision::{Holdings, ReportKind, ReportRequest, report};
use tongban_sync::store::{StoreWrite, SyncStore};

const LATE: i64 = 15;

/// The steps with a deadline, in order, and the stage a case waits at
/// before each.
const WAITS: [Stage; 5] = [
    Stage::Accepted,
    Stage::Received,
    Stage::InitialReviewed,
    Stage::DpfReviewed,
    Stage::ResultReceived,
];

/// One case's seeded plan.
#[derive(Debug, Clone)]
struct Plan {
    id: String,
    home: usize,
    window: usize,
    start: NaiveDate,
    kinds: Vec<&'static str>,
    /// For each step of `WAITS`: taken late.
    late: [bool; 5],
    /// The case stops waiting at `WAITS[i]`; `None`: it runs to `active`.
    stop: Option<usize>,
    score: u8,
}

impl Plan {
    fn county(&self) -> &'static str {
        PROVINCES[self.home].0
    }
    fn township(&self) -> &'static str {
        PROVINCES[self.home].1
    }
    fn office(&self) -> &'static str {
        PROVINCES[self.window].1
    }
    /// How many of the deadline steps it takes.
    fn steps(&self) -> usize {
        self.stop.unwrap_or(WAITS.len())
    }
}

fn plans(n: usize) -> Vec<Plan> {
    let mut rng = Rng(0x5u64 << 40 | 2026);
    (0..n)
        .map(|i| {
            let home = i % 3;
            // Another province's window: every case travels.
            let window = (home + 1 + (rng.below(2) as usize)) % 3;
            let county = PROVINCES[home].0;
            let born = day("1950-01-01") + Duration::days((i / 400) as i64);
            let first17 = format!("{county}{}{:03}", born.format("%Y%m%d"), (i % 400) * 2 + 1);
            let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
            let mut late = [false; 5];
            for l in &mut late {
                *l = rng.below(5) == 0;
            }
            let stop = if rng.below(10) < 6 {
                None
            } else {
                Some(rng.below(WAITS.len() as u64) as usize)
            };
            Plan {
                id,
                home,
                window,
                start: day("2026-03-09") + Duration::days(rng.below(60) as i64),
                kinds: match rng.below(3) {
                    0 => vec!["living"],
                    1 => vec!["nursing"],
                    _ => vec!["living", "nursing"],
                },
                late,
                stop,
                score: 1 + rng.below(5) as u8,
            }
        })
        .collect()
}

/// Runs one case's whole plan; returns its id.
fn run(w: &World, p: &Plan) -> CaseId {
    let lag = |i: usize| Duration::days(if p.late[i] { LATE } else { 0 });
    let (office, township) = (p.office(), p.township());
    let (dpf, ca) = (dpf(p.county()), ca(p.county()));
    let mut today = p.start;
    let form = IntakeForm {
        name: format!("申请人{}", &p.id[14..]),
        resident_id: p.id.clone(),
        hukou_township: township.into(),
        certificate: format!("{}41", p.id),
        dibao: true,
        long_term_care: true,
        subsidy_kinds: p.kinds.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    };
    let node = w.node(office);
    let made = node.new_case(&form, &op(), at(today)).unwrap();
    common::attach_notice(node, &made, &op(), at(today));
    let case = made.case_id;
    w.act(office, &case, Stage::Accepted, Payload::default(), today);
    let steps = p.steps();
    // 0: the push.
    if steps == 0 {
        return case;
    }
    today += lag(0);
    w.act(office, &case, Stage::Pushed, Payload::default(), today);
    w.carry(&case, office, township);
    w.act(township, &case, Stage::Received, Payload::default(), today);
    // 1: the initial review.
    if steps == 1 {
        return case;
    }
    today += lag(1);
    w.act(
        township,
        &case,
        Stage::InitialReviewed,
        approve("初审同意"),
        today,
    );
    w.carry(&case, township, &dpf);
    // 2: the county DPF.
    if steps == 2 {
        return case;
    }
    today += lag(2);
    w.act(&dpf, &case, Stage::DpfReviewed, approve("复审同意"), today);
    w.carry(&case, &dpf, &ca);
    // 3: the decision.
    if steps == 3 {
        return case;
    }
    today += lag(3);
    let read = w.node(&ca).case(&case).unwrap().read().unwrap();
    let (awards, first) = policy_awards(&read, Timestamp(read.created_at).china_date()).unwrap();
    w.act(
        &ca,
        &case,
        Stage::Decided,
        Payload {
            opinion: "审定通过".into(),
            outcome: Some(Outcome::Approve),
            awards,
            first_paid_month: Some(first),
            ..Payload::default()
        },
        today,
    );
    w.carry(&case, &ca, office);
    w.act(
        office,
        &case,
        Stage::ResultReceived,
        Payload::default(),
        today,
    );
    // 4: the notification.
    if steps == 4 {
        return case;
    }
    today += lag(4);
    w.act(
        office,
        &case,
        Stage::Notified,
        Payload {
            method: Some("phone".into()),
            ..Payload::default()
        },
        today,
    );
    w.node(office)
        .evaluate(&case, p.score, "", &op(), at(today))
        .unwrap();
    w.carry(&case, office, &ca);
    today += Duration::days(1);
    w.act(&ca, &case, Stage::Active, Payload::default(), today);
    case
}

/// Carries every attestation the offices hold of `cases` to the supervisor
/// `office`, as sync stores them (a supervisor's replica: one transaction a
/// batch, each case's reading updated in it).
fn supervise(w: &World, office: &str, region: &str, cases: &[(CaseId, &Plan)]) {
    let sup = w.node(office);
    let mut replica = tongban_replica::Replica::new(
        sup.shared_store().clone(),
        std::sync::Arc::new(sup.calendar().clone()),
        sup.resident_secret(),
        None,
    )
    .unwrap();
    replica.supervise().unwrap();
    let offices: Vec<&String> = w
        .nodes
        .keys()
        .filter(|o| !o.starts_with("supervisor"))
        .collect();
    for chunk in cases.chunks(256) {
        let mut writes = Vec::new();
        for (case, plan) in chunk {
            let regional = region == "00"
                || plan.township().starts_with(region)
                || plan.office().starts_with(region);
            if !regional {
                continue;
            }
            for o in &offices {
                if let Some(bytes) = w.node(o).store().attestation(case, o).unwrap() {
                    let signed = SignedAttestation::decode(&bytes).unwrap();
                    writes.push(StoreWrite::Attestation {
                        case: case.clone(),
                        office: signed.attestation.office.clone(),
                        at: signed.attestation.at,
                        domicile: tongban_domain::division::DivisionCode::parse(
                            &signed.attestation.domicile,
                        )
                        .unwrap(),
                        bytes,
                    });
                }
            }
        }
        replica.commit(writes).unwrap();
    }
}

fn ask(w: &World, office: &str, kind: ReportKind, region: &str) -> serde_json::Value {
    let held = Holdings::of(w.node(office)).unwrap();
    let answer = report(
        &held,
        &ReportRequest {
            kind,
            region: region.into(),
            from: day("2026-01-01"),
            to: day("2026-12-31"),
            as_of: day("2026-12-31"),
            drill: None,
        },
    )
    .unwrap();
    assert!(answer.supervisor);
    answer.report
}

/// `rows` keyed by `key`, each row's `fields` as numbers.
fn by(report: &serde_json::Value, key: &str, fields: &[&str]) -> BTreeMap<String, Vec<u64>> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[key].as_str().unwrap().to_string(),
                fields.iter().map(|f| r[*f].as_u64().unwrap()).collect(),
            )
        })
        .collect()
}

#[test]
fn every_report_equals_an_independent_count_of_the_seeded_plan() {
    let n: usize = std::env::var("TONGBAN_SUPERVISION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let plans = plans(n);
    let mut w = World::new(&[
        OfficeSpec::new("supervisor-cn", Role::Supervisor, "00"),
        OfficeSpec::new("supervisor-13", Role::Supervisor, "13"),
    ]);
    let started = std::time::Instant::now();
    // Two threads, the machine's two cores; each case is one thread's.
    let half = plans.len().div_ceil(2).max(1);
    let cases: Vec<CaseId> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .chunks(half)
            .map(|chunk| {
                let w = &w;
                scope.spawn(move || chunk.iter().map(|p| run(w, p)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let ran = started.elapsed();
    let pairs: Vec<(CaseId, &Plan)> = cases.iter().cloned().zip(plans.iter()).collect();
    let carried = std::time::Instant::now();
    supervise(&w, "supervisor-cn", "00", &pairs);
    supervise(&w, "supervisor-13", "13", &pairs);
    eprintln!(
        "{n} cases through the offices in {:.1} s; attestations carried to two supervisors in {:.1} s",
        ran.as_secs_f64(),
        carried.elapsed().as_secs_f64()
    );

    // Payroll for August at each county's civil affairs: the summaries the
    // disbursement report reads.
    let august = YearMonth::parse("2026-08").unwrap();
    for (county, _) in PROVINCES {
        let civil = ca(county);
        let node = w.nodes.get_mut(&civil).unwrap();
        node.payroll(county, august, &op(), at(day("2026-08-25")))
            .unwrap();
        let summary = tongban_node::office::Office::dataset_bytes(
            &*node,
            tongban_domain::dataset::DatasetKind::PayrollSummary,
            &format!("{county}:2026-08"),
        )
        .unwrap()
        .unwrap();
        for sup in ["supervisor-cn", "supervisor-13"] {
            if sup == "supervisor-cn" || county.starts_with("13") {
                w.nodes
                    .get_mut(sup)
                    .unwrap()
                    .import_dataset(&summary)
                    .unwrap();
            }
        }
    }

    // The independent counts.
    let reached = |p: &Plan, step: usize| p.steps() > step;
    let mut push: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut review: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut backlog: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut satisfaction: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // (county, kind) → (entitled, paid): a decided case not yet notified is
    // owed from its month of application but not paid until it is active.
    let mut entitled: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for p in &plans {
        let office = p.office().to_string();
        let row = push.entry(office.clone()).or_insert(vec![0; 4]);
        if reached(p, 0) {
            row[0] += 1;
            row[usize::from(p.late[0]) + 1] += 1;
        } else {
            row[3] += 1;
        }
        let county = p.county();
        let reviewers = [
            p.township().to_string(),
            format!("{county} {}", Role::CountyDpf.zh()),
            format!("{county} {}", Role::CountyCivilAffairs.zh()),
        ];
        for (k, reviewer) in reviewers.iter().enumerate() {
            let row = review.entry(reviewer.clone()).or_insert(vec![0; 4]);
            if reached(p, k + 1) {
                row[0] += 1;
                row[usize::from(p.late[k + 1]) + 1] += 1;
            } else if p.stop == Some(k + 1) {
                row[3] += 1;
            }
        }
        let decided = p.stop.is_none() || p.stop == Some(4);
        if decided {
            for kind in &p.kinds {
                let e = entitled
                    .entry((county.to_string(), kind.to_string()))
                    .or_insert((0, 0));
                e.0 += 1;
                e.1 += u64::from(p.stop.is_none());
            }
        }
        match p.stop {
            Some(i) => {
                let row = backlog
                    .entry(WAITS[i].code().to_string())
                    .or_insert(vec![0; 2]);
                row[0] += 1;
                // Every waiting stage here has a deadline long past.
                row[1] += 1;
            }
            None => {
                let s = satisfaction.entry(office).or_insert((0, 0));
                s.0 += 1;
                s.1 += u64::from(p.score);
            }
        }
    }
    // Rows where nothing happened are not rows.
    review.retain(|_, v| v.iter().any(|x| *x > 0));

    let got = by(
        &ask(&w, "supervisor-cn", ReportKind::Push, "00"),
        "office",
        &["pushed", "on_time", "late", "overdue_now"],
    );
    assert_eq!(got, push, "push timeliness");
    let got = by(
        &ask(&w, "supervisor-cn", ReportKind::Review, "00"),
        "office",
        &["reviewed", "on_time", "late", "overdue_now"],
    );
    assert_eq!(got, review, "review timeliness");
    let got = by(
        &ask(&w, "supervisor-cn", ReportKind::Backlog, "00"),
        "stage",
        &["cases", "overdue"],
    );
    assert_eq!(got, backlog, "backlog");
    let got = ask(&w, "supervisor-cn", ReportKind::Satisfaction, "00");
    for row in got["rows"].as_array().unwrap() {
        let office = row["office"].as_str().unwrap();
        let (count, sum) = satisfaction[office];
        assert_eq!(row["evaluations"].as_u64().unwrap(), count, "{office}");
        // Shown to two decimals.
        let mean = row["mean_score"].as_f64().unwrap();
        let expected = (sum as f64 / count as f64 * 100.0).round() / 100.0;
        assert!(
            (mean - expected).abs() < 1e-9,
            "{office}: {mean} ≠ {expected}"
        );
    }
    assert_eq!(got["rows"].as_array().unwrap().len(), satisfaction.len());
    let got = ask(&w, "supervisor-cn", ReportKind::Disbursement, "00");
    let mut paid = BTreeMap::new();
    for row in got["rows"].as_array().unwrap() {
        if row["month"] != "2026-08" {
            continue;
        }
        let key = (
            row["county"].as_str().unwrap().to_string(),
            row["kind"].as_str().unwrap().to_string(),
        );
        assert_eq!(row["reported"], true, "{row}");
        paid.insert(
            key,
            (
                row["entitled"].as_u64().unwrap(),
                row["paid_people"].as_u64().unwrap(),
            ),
        );
    }
    paid.retain(|_, v| v.0 > 0);
    assert_eq!(paid, entitled, "disbursement in August: (entitled, paid)");

    // Hebei's supervisor: only the cases that touch Hebei, judged the same.
    let hebei: Vec<&Plan> = plans
        .iter()
        .filter(|p| p.township().starts_with("13") || p.office().starts_with("13"))
        .collect();
    let held = ask(&w, "supervisor-13", ReportKind::Backlog, "00");
    let waiting = hebei.iter().filter(|p| p.stop.is_some()).count() as u64;
    let counted: u64 = held["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cases"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, waiting, "Hebei's backlog");
    let pushes = by(
        &ask(&w, "supervisor-13", ReportKind::Push, "13"),
        "office",
        &["pushed", "on_time", "late", "overdue_now"],
    );
    assert_eq!(pushes.keys().collect::<Vec<_>>(), vec!["130102001"]);
    assert_eq!(pushes["130102001"], push["130102001"], "Hebei's window");
}
