//! Supervision by the commands, over real `tongban node run` processes on
//! loopback QUIC: a Guangzhou street office takes applications of Chang'an
//! residents, Chang'an's offices review and decide, and four supervisors —
//! Hebei's, Guangdong's, Beijing's and the national one — run their own nodes
//! beside the hubs. Each gets the signed chains and non-personal facts of its region's
//! cases and nothing else: its reports count what happened, a Beijing
//! supervisor sees nothing, the disbursement report shows the county's
//! payroll summary, the Parquet export holds the steps, and the supervisor's
//! store file holds no applicant's name, ID number or certificate number.

use std::path::Path;

use crate::daemon::{
    NodeProcess, case_new_ok, offices, ok, push_cli, resident, stage_at, tongban, wait_until,
};
use crate::support::stderr;

const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const COUNTY_HUB: &str = "hub-130102";
const SUP_HEBEI: &str = "supervisor-13";
const SUP_GUANGDONG: &str = "supervisor-44";
const SUP_BEIJING: &str = "supervisor-11";
const SUP_NATION: &str = "supervisor-cn";

/// `tongban report KIND --json` at `data` for `region` over this month.
fn report(
    data: &Path,
    auth: &Path,
    kind: &str,
    region: &str,
    drill: Option<&str>,
) -> serde_json::Value {
    let mut args = vec!["report", kind, "--region", region, "--json"];
    if let Some(drill) = drill {
        args.extend_from_slice(&["--drill", drill]);
    }
    serde_json::from_str(&ok(Some(data), auth, &args)).unwrap()
}

/// The backlog rows as (stage, cases).
fn backlog(answer: &serde_json::Value) -> Vec<(String, u64)> {
    answer["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["cases"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn supervisors_see_their_regions_cases_from_signed_timestamps_and_no_personal_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            (COUNTY_HUB, "hub", "130102"),
            (ACCEPTANCE, "township", ACCEPTANCE),
            (DOMICILE, "township", DOMICILE),
            (DPF, "county_dpf", "130102"),
            (CIVIL, "county_civil_affairs", "130102"),
            (SUP_HEBEI, "supervisor", "13"),
            (SUP_GUANGDONG, "supervisor", "44"),
            (SUP_BEIJING, "supervisor", "11"),
            (SUP_NATION, "supervisor", "00"),
        ],
    );
    let data = |office: &str| root.join(office);
    let hub = NodeProcess::start(root, "hub-cn", None);
    let county = NodeProcess::start(root, COUNTY_HUB, Some(("hub-cn", &hub.quic)));
    let mut nodes = vec![NodeProcess::start(
        root,
        ACCEPTANCE,
        Some(("hub-cn", &hub.quic)),
    )];
    for office in [DOMICILE, DPF, CIVIL] {
        nodes.push(NodeProcess::start(
            root,
            office,
            Some((COUNTY_HUB, &county.quic)),
        ));
    }
    let mut supervisors = Vec::new();
    for office in [SUP_HEBEI, SUP_GUANGDONG, SUP_BEIJING, SUP_NATION] {
        supervisors.push((
            office,
            NodeProcess::start(root, office, Some(("hub-cn", &hub.quic))),
        ));
    }

    let step = |office: &str, case: &str, before: &str, args: &[&str]| {
        wait_until(&format!("{case} at {before} at {office}"), || {
            stage_at(&data(office), &auth, case) == before
        });
        let mut all = vec!["case"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[case, "--operator", "经办01"]);
        ok(Some(&data(office)), &auth, &all);
    };

    // Three applications in Guangzhou. The first is decided, paid and
    // evaluated; the second waits at the domicile township; the third stays
    // a draft at the window and is withdrawn there.
    let mut cases = Vec::new();
    for n in 1..=2 {
        let created = case_new_ok(&data(ACCEPTANCE), &auth, n);
        let case = created["case_id"].as_str().unwrap().to_string();
        push_cli(&data(ACCEPTANCE), &auth, &case, &created);
        cases.push(case);
    }
    let draft = case_new_ok(&data(ACCEPTANCE), &auth, 3)["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        Some(&data(ACCEPTANCE)),
        &auth,
        &[
            "case",
            "withdraw",
            &draft,
            "--reason",
            "申请人撤回",
            "--operator",
            "窗口01",
        ],
    );
    let first = &cases[0];
    step(
        DOMICILE,
        first,
        "received",
        &["review", "--approve", "--opinion", "同意"],
    );
    step(
        DPF,
        first,
        "initial_reviewed",
        &["review", "--approve", "--opinion", "同意"],
    );
    step(
        CIVIL,
        first,
        "dpf_reviewed",
        &["decide", "--opinion", "同意发放"],
    );
    step(
        ACCEPTANCE,
        first,
        "result_received",
        &["notify", "--method", "sms"],
    );
    ok(
        Some(&data(ACCEPTANCE)),
        &auth,
        &[
            "case",
            "evaluate",
            first,
            "--score",
            "5",
            "--operator",
            "窗口01",
        ],
    );
    step(CIVIL, first, "notified", &["award", "--action", "activate"]);
    let month =
        tongban_domain::payroll::YearMonth::of(tongban_domain::today_in_china()).to_string();
    ok(
        Some(&data(CIVIL)),
        &auth,
        &[
            "payroll",
            "--county",
            "130102",
            "--month",
            &month,
            "--operator",
            "发放01",
        ],
    );
    wait_until("the second case received at the domicile", || {
        stage_at(&data(DOMICILE), &auth, &cases[1]) == "received"
    });

    // Hebei's supervisor: the first case active, the second waiting for the
    // domicile township's review; both pushed on time by the Guangzhou window.
    let hebei = data(SUP_HEBEI);
    wait_until("Hebei's supervisor to see both cases", || {
        let answer = report(&hebei, &auth, "backlog", "13", None);
        backlog(&answer) == vec![("received".to_string(), 1)]
    });
    let push = report(&hebei, &auth, "push", "44", None);
    assert_eq!(push["supervisor"], true, "{push}");
    let rows = push["report"]["rows"].as_array().unwrap();
    // Push timeliness is judged where the window is: region 44, not 13.
    assert_eq!(rows.len(), 1, "{push}");
    assert_eq!(rows[0]["office"], ACCEPTANCE);
    assert_eq!(rows[0]["pushed"], 2, "{push}");
    assert_eq!(rows[0]["on_time"], 2);
    assert_eq!(rows[0]["late"], 0);
    let drill = report(&hebei, &auth, "push", "44", Some(ACCEPTANCE));
    let mut listed: Vec<String> = drill["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["case"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected = cases.clone();
    expected.sort();
    assert_eq!(listed, expected, "{drill}");
    assert!(!listed.contains(&draft), "a draft never leaves the window");

    let review = report(&hebei, &auth, "review", "13", None);
    let township = review["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["office"] == DOMICILE)
        .unwrap_or_else(|| panic!("no row for the domicile township: {review}"))
        .clone();
    assert_eq!(township["reviewed"], 1, "{review}");
    assert_eq!(township["on_time"], 1);

    let satisfaction = report(&hebei, &auth, "satisfaction", "44", None);
    let rows = satisfaction["report"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{satisfaction}");
    assert_eq!(rows[0]["evaluations"], 1, "{satisfaction}");

    wait_until("the payroll summary at Hebei's supervisor", || {
        let answer = report(&hebei, &auth, "disbursement", "130102", None);
        answer["report"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "living" && r["reported"] == true && r["paid_people"] == 1)
    });

    // The table in Chinese, and CSV.
    let csv = root.join("push.csv");
    let table = ok(
        Some(&hebei),
        &auth,
        &[
            "report",
            "push",
            "--region",
            "44",
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    assert!(table.contains("推送及时率"), "{table}");
    assert!(table.contains(ACCEPTANCE), "{table}");
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(written.starts_with("office,"), "{written}");

    // The national supervisor sees both; Guangdong's sees the window's
    // cases; Beijing's none.
    wait_until("the national supervisor", || {
        backlog(&report(&data(SUP_NATION), &auth, "backlog", "00", None))
            == vec![("received".to_string(), 1)]
    });
    wait_until("Guangdong's supervisor", || {
        backlog(&report(&data(SUP_GUANGDONG), &auth, "backlog", "44", None))
            == vec![("received".to_string(), 1)]
    });
    let beijing = report(&data(SUP_BEIJING), &auth, "backlog", "00", None);
    assert_eq!(beijing["cases"], 0, "{beijing}");

    // Bad input names its field and changes nothing.
    let out = tongban(Some(&hebei), &auth, &["report", "push", "--region", "1x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--region"), "{}", stderr(&out));
    let out = tongban(Some(&hebei), &auth, &["report", "nothing"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("KIND"), "{}", stderr(&out));

    // The Parquet export of Hebei's supervisor.
    let export = root.join("export");
    let summary: serde_json::Value = serde_json::from_str(&ok(
        Some(&hebei),
        &auth,
        &[
            "export",
            "--format",
            "parquet",
            "--out",
            export.to_str().unwrap(),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(summary["cases"], 2, "{summary}");
    assert!(summary["steps"].as_u64().unwrap() >= 12, "{summary}");
    assert!(export.join("steps").join("province=13").is_dir());

    // No personal data in a supervisor's store: stop it and read the file.
    let mut personal = vec!["李四".to_string()];
    for n in 1..=3 {
        personal.push(resident(n));
        personal.push(format!("{}62", resident(n)));
    }
    for (office, node) in supervisors {
        assert_eq!(node.terminate(), 0);
        let bytes = std::fs::read(data(office).join("tongban.redb")).unwrap();
        for p in &personal {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "{office}'s store holds {p:?}"
            );
        }
        // Not vacuous: a supervisor of the cases' region holds their ids.
        if office != SUP_BEIJING {
            assert!(
                bytes.windows(first.len()).any(|w| w == first.as_bytes()),
                "{office}'s store holds no trace of {first}"
            );
        }
    }
    for node in nodes {
        node.kill();
    }
    county.kill();
    hub.kill();
}
