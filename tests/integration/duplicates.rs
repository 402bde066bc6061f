//! 防止重复享受 across real node processes: one person applies at two
//! acceptance townships — in Guangzhou (cross-province) and in Shijiazhuang's
//! Qiaoxi district (in the same province) — and both cases travel to the
//! domicile county's offices. There the later case is flagged on arrival
//! (`case list`, `case show`, `node status`, the log), and `case decide`
//! refuses to award it, through the running node's control API and on the
//! stopped node's store alike, with exit status 4 and nothing stored, while the
//! first case is decided.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::daemon::{NodeProcess, case_new_ok, offices, ok, push_cli, resident, tongban};
use crate::support::{stderr, stdout};

const HUB: &str = "hub-130102";
const GUANGZHOU: &str = "440106001";
const QIAOXI: &str = "130104001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";

fn json(data: &Path, auth: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(Some(data), auth, args)).unwrap()
}

/// The cases a node holds, by id, with their `case list --json` rows.
fn rows(data: &Path, auth: &Path) -> Vec<serde_json::Value> {
    let out = tongban(Some(data), auth, &["case", "list", "--json"]);
    if out.status.code() != Some(0) {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `data` holds every case of `cases` at `stage`.
fn wait_for(data: &Path, auth: &Path, cases: &[&str], stage: &str) {
    let start = Instant::now();
    loop {
        let rows = rows(data, auth);
        let there = cases.iter().all(|case| {
            rows.iter()
                .any(|r| r["case_id"] == *case && r["stage"] == stage)
        });
        if there {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} does not hold {cases:?} at {stage}: {rows:#?}",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn flagged(data: &Path, auth: &Path) -> Vec<String> {
    rows(data, auth)
        .into_iter()
        .filter(|r| r["duplicate"] == true)
        .map(|r| r["case_id"].as_str().unwrap().to_string())
        .collect()
}

fn latest_seq(data: &Path, auth: &Path) -> u64 {
    json(data, auth, &["node", "status", "--json"])["latest_seq"]
        .as_u64()
        .unwrap()
}

/// What the node stores of `case`: its signed history and what `case show`
/// says of its stage, reviews and decision (other cases may move meanwhile).
fn stored_of(data: &Path, auth: &Path, case: &str) -> serde_json::Value {
    let shown = json(data, auth, &["case", "show", case, "--json"]);
    serde_json::json!({
        "history": json(data, auth, &["history", case, "--json"]),
        "stage": shown["stage"],
        "reviews": shown["reviews"],
        "decision": shown["decision"],
    })
}

/// `case decide` on the second case must be refused as a duplicate of the
/// first: exit status 4, the first case named, nothing stored (on a stopped
/// node not even elsewhere in its store).
fn decide_refused(data: &Path, auth: &Path, second: &str, first: &str, relation: &str) {
    let seq = latest_seq(data, auth);
    let before = stored_of(data, auth, second);
    let out = tongban(
        Some(data),
        auth,
        &["case", "decide", second, "--operator", "审定01"],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    for needed in ["重复享受", first, relation, "living", GUANGZHOU] {
        assert!(err.contains(needed), "{needed} missing in: {err}");
    }
    assert_eq!(
        stored_of(data, auth, second),
        before,
        "a refused award stored something"
    );
    let running = json(data, auth, &["node", "status", "--json"])["running"] == true;
    if !running {
        assert_eq!(
            latest_seq(data, auth),
            seq,
            "a refused award stored something"
        );
    }
}

#[test]
fn a_second_application_is_flagged_at_the_domicile_county_and_its_award_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            (HUB, "hub", "130102"),
            (GUANGZHOU, "township", GUANGZHOU),
            (QIAOXI, "township", QIAOXI),
            (DOMICILE, "township", DOMICILE),
            (DPF, "county_dpf", "130102"),
            (CIVIL, "county_civil_affairs", "130102"),
        ],
    );
    let data = |office: &str| root.join(office);
    let hub = NodeProcess::start(root, HUB, None);
    let up = Some((HUB, hub.quic.as_str()));
    let log = std::fs::File::create(root.join("domicile.log")).unwrap();
    let mut nodes = vec![
        NodeProcess::start(root, GUANGZHOU, up),
        NodeProcess::start(root, QIAOXI, up),
        NodeProcess::spawn(root, DOMICILE, "127.0.0.1:0", up, "", Stdio::from(log)),
        NodeProcess::start(root, DPF, up),
    ];
    let civil = NodeProcess::start(root, CIVIL, up);

    // The same person: first in Guangzhou, then at Qiaoxi.
    let n = 4321;
    let first = case_new_ok(&data(GUANGZHOU), &auth, n);
    let first_id = first["case_id"].as_str().unwrap().to_string();
    assert_eq!(first["possible_duplicates"], serde_json::json!([]));
    std::thread::sleep(Duration::from_millis(5));
    let second = case_new_ok(&data(QIAOXI), &auth, n);
    let second_id = second["case_id"].as_str().unwrap().to_string();
    push_cli(&data(GUANGZHOU), &auth, &first_id, &first);
    push_cli(&data(QIAOXI), &auth, &second_id, &second);
    let both = [first_id.as_str(), second_id.as_str()];

    // Flagged on arrival at the domicile township, which alone knows.
    wait_for(&data(DOMICILE), &auth, &both, "received");
    assert_eq!(
        flagged(&data(DOMICILE), &auth),
        std::slice::from_ref(&second_id)
    );
    assert!(flagged(&data(GUANGZHOU), &auth).is_empty());
    assert!(flagged(&data(QIAOXI), &auth).is_empty());
    let list = ok(Some(&data(DOMICILE)), &auth, &["case", "list"]);
    let marked = list.lines().find(|l| l.contains(&second_id)).unwrap();
    assert!(marked.contains("重复"), "{list}");
    assert!(
        !list
            .lines()
            .find(|l| l.contains(&first_id))
            .unwrap()
            .contains("重复")
    );
    let shown = ok(Some(&data(DOMICILE)), &auth, &["case", "show", &second_id]);
    for needed in [
        "重复 duplicate",
        first_id.as_str(),
        "living",
        "received",
        GUANGZHOU,
        "earlier_application",
    ] {
        assert!(shown.contains(needed), "{needed} missing in:\n{shown}");
    }
    let shown = json(
        &data(DOMICILE),
        &auth,
        &["case", "show", &second_id, "--json"],
    );
    assert_eq!(shown["duplicates"]["flagged"], true, "{shown}");
    assert_eq!(
        shown["duplicates"]["conflicts"][0]["other"],
        first_id.as_str()
    );
    let status = json(&data(DOMICILE), &auth, &["node", "status", "--json"]);
    assert_eq!(status["duplicates"], 1, "{status}");
    let status = ok(Some(&data(DOMICILE)), &auth, &["node", "status"]);
    assert!(
        status.contains("重复申请 duplicates flagged: 1"),
        "{status}"
    );

    // Reviewed at the township and the DPF, both reach civil affairs, which
    // flags the second too.
    for case in both {
        ok(
            Some(&data(DOMICILE)),
            &auth,
            &[
                "case",
                "review",
                case,
                "--approve",
                "--opinion",
                "属实",
                "--operator",
                "初审01",
            ],
        );
    }
    wait_for(&data(DPF), &auth, &both, "initial_reviewed");
    assert_eq!(flagged(&data(DPF), &auth), std::slice::from_ref(&second_id));
    for case in both {
        ok(
            Some(&data(DPF)),
            &auth,
            &[
                "case",
                "review",
                case,
                "--approve",
                "--opinion",
                "证件核验一致",
                "--operator",
                "复审01",
            ],
        );
    }
    wait_for(&data(CIVIL), &auth, &both, "dpf_reviewed");
    assert_eq!(
        flagged(&data(CIVIL), &auth),
        std::slice::from_ref(&second_id)
    );

    // The running node refuses to award the second (control API).
    decide_refused(
        &data(CIVIL),
        &auth,
        &second_id,
        &first_id,
        "earlier_application",
    );
    // So does the store when the node is stopped.
    assert_eq!(civil.terminate(), 0);
    decide_refused(
        &data(CIVIL),
        &auth,
        &second_id,
        &first_id,
        "earlier_application",
    );
    // The first is decided; then the second stands against an award, through
    // the running node again.
    ok(
        Some(&data(CIVIL)),
        &auth,
        &["case", "decide", &first_id, "--operator", "审定01"],
    );
    let civil = NodeProcess::start(root, CIVIL, up);
    decide_refused(&data(CIVIL), &auth, &second_id, &first_id, "held_award");
    // Rejected with its reason, the second ends and its flag with it.
    ok(
        Some(&data(CIVIL)),
        &auth,
        &[
            "case",
            "decide",
            &second_id,
            "--reject",
            "--opinion",
            "重复申请：已在 440106001 受理并审定",
            "--operator",
            "审定01",
        ],
    );
    assert!(flagged(&data(CIVIL), &auth).is_empty());

    assert_eq!(civil.terminate(), 0);
    while let Some(node) = nodes.pop() {
        assert_eq!(node.terminate(), 0);
    }
    assert_eq!(hub.terminate(), 0);
    // The domicile township logged the flag with the cases' short ids, and
    // never the applicant's ID number.
    let log = std::fs::read_to_string(root.join("domicile.log")).unwrap();
    let short = second_id.rsplit('-').next().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("duplicate flagged") && l.contains(short)),
        "{log}"
    );
    assert!(!log.contains(&resident(n)), "the ID number reached the log");
}
