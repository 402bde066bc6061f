//! The payroll by the commands, over real `tongban node run` processes on
//! loopback QUIC (the smaller twin of the seeded population test in
//! `crates/tongban-node/tests/population.rs`): five people of Chang'an county
//! apply in Guangzhou, one of them a second time at another township; civil
//! affairs pays the month, the dynamic check stops three awards, corrected
//! feeds resume two, and the next month pays what is owed — back pay included
//! — once. The signed records reach the county's offices and no other.

use std::path::Path;

use crate::daemon::{
    NodeProcess, case_new_ok, offices, ok, push_cli, resident, stage_at, tongban, wait_until,
};
use crate::support::{stderr, stdout};
use tongban_domain::payroll::YearMonth;

const ACCEPTANCE: &str = "440106001";
const SECOND: &str = "110101001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const COUNTY_HUB: &str = "hub-130102";

/// Chang'an county's living subsidy from 2026, by the policy the authority
/// publishes in this test (Hebei's shipped figure is 90), written out here
/// apart from the policy file.
const LIVING_YUAN: u64 = 130;

/// Hebei's shipped policy with a county standard for Chang'an from 2026.
fn published_policy() -> String {
    include_str!("../../crates/tongban-domain/data/policies/13.toml").to_string()
        + "\n[[amounts]]\nkind = \"living\"\nlevels = [1, 2, 3, 4]\nmonthly_yuan = 130\n\
           effective_from = \"2026-01-01\"\ndivisions = [\"130102\"]\n"
}

/// The kinds of the datasets `feed show` lists at `data`, with their scopes
/// and versions.
fn held(data: &Path, auth: &Path) -> Vec<(String, String, u64)> {
    let out = ok(Some(data), auth, &["feed", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_string(),
                d["scope"].as_str().unwrap().to_string(),
                d["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn payroll(data: &Path, auth: &Path, month: YearMonth, csv: Option<&Path>) -> serde_json::Value {
    let month = month.to_string();
    let mut args = vec![
        "payroll",
        "--county",
        "130102",
        "--month",
        month.as_str(),
        "--operator",
        "发放01",
        "--json",
    ];
    if let Some(csv) = csv {
        args.extend_from_slice(&["--csv", csv.to_str().unwrap()]);
    }
    serde_json::from_str(&ok(Some(data), auth, &args)).unwrap()
}

/// (holder, month) of every month a record's JSON pays.
fn paid(record: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in record["record"]["lines"].as_array().unwrap() {
        for m in line["months"].as_array().unwrap() {
            out.push((
                line["holder"].as_str().unwrap().to_string(),
                m["month"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn total(record: &serde_json::Value) -> u64 {
    record["record"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["months"].as_array().unwrap().iter())
        .map(|m| m["yuan"].as_u64().unwrap())
        .sum()
}

fn publish(data: &Path, auth: &Path, root: &Path, kind: &str, csv: String) {
    let file = root.join(format!("{kind}.csv"));
    std::fs::write(&file, csv).unwrap();
    ok(
        Some(data),
        auth,
        &["feed", "publish", "--kind", kind, file.to_str().unwrap()],
    );
}

/// The certificate registry: every applicant's level-2 mental certificate
/// valid, but `revoked`'s.
fn certificates(revoked: Option<usize>) -> String {
    let mut csv = String::from("certificate_number,holder_id,category,level,status\n");
    for n in 1..=5 {
        let id = resident(n);
        let status = if Some(n) == revoked {
            "注销"
        } else {
            "有效"
        };
        csv += &format!("{id}62,{id},精神,2,{status}\n");
    }
    csv
}

#[test]
fn a_county_pays_each_month_once_with_back_pay_through_stops_and_corrections() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            (COUNTY_HUB, "hub", "130102"),
            (ACCEPTANCE, "township", ACCEPTANCE),
            (SECOND, "township", SECOND),
            (DOMICILE, "township", DOMICILE),
            (DPF, "county_dpf", "130102"),
            (CIVIL, "county_civil_affairs", "130102"),
        ],
    );
    let data = |office: &str| root.join(office);
    let hub = NodeProcess::start(root, "hub-cn", None);
    let county = NodeProcess::start(root, COUNTY_HUB, Some(("hub-cn", &hub.quic)));
    let mut nodes = Vec::new();
    for office in [ACCEPTANCE, SECOND] {
        nodes.push(NodeProcess::start(
            root,
            office,
            Some(("hub-cn", &hub.quic)),
        ));
    }
    for office in [DOMICILE, DPF, CIVIL] {
        nodes.push(NodeProcess::start(
            root,
            office,
            Some((COUNTY_HUB, &county.quic)),
        ));
    }
    // The authority publishes Hebei's policy with Chang'an's own standard,
    // handed to the national hub: every office applies it.
    let policy = root.join("13.toml");
    std::fs::write(&policy, published_policy()).unwrap();
    let out = ok(
        None,
        &auth,
        &[
            "policy",
            "publish",
            policy.to_str().unwrap(),
            "--data-dir",
            data("hub-cn").to_str().unwrap(),
        ],
    );
    assert!(out.contains("version 1"), "{out}");
    for office in [ACCEPTANCE, CIVIL] {
        wait_until(&format!("the policy at {office}"), || {
            held(&data(office), &auth)
                .iter()
                .any(|(k, scope, v)| k == "policy" && scope == "13" && *v == 1)
        });
    }
    let shown = ok(
        Some(&data(ACCEPTANCE)),
        &auth,
        &["policy", "show", "130102001", "--json"],
    );
    assert!(shown.contains("\"monthly_yuan\": 130"), "{shown}");
    let shown = ok(
        Some(&data(ACCEPTANCE)),
        &auth,
        &["policy", "show", "130102001"],
    );
    assert!(shown.contains("130 元/月"), "{shown}");
    // The same version again is refused, and what is held stays.
    let signed = auth.join("policy-13.tbset");
    let out = tongban(
        Some(&data(CIVIL)),
        &auth,
        &["node", "dataset-import", signed.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // A policy file with a county of another province is refused by name.
    std::fs::write(
        &policy,
        published_policy().replace("[\"130102\"]", "[\"440106\"]"),
    )
    .unwrap();
    let out = tongban(
        None,
        &auth,
        &["policy", "publish", policy.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("divisions"), "{}", stderr(&out));

    let step = |office: &str, case: &str, before: &str, args: &[&str]| {
        wait_until(&format!("{case} at {before} at {office}"), || {
            stage_at(&data(office), &auth, case) == before
        });
        let mut all = vec!["case"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[case, "--operator", "经办01"]);
        ok(Some(&data(office)), &auth, &all);
    };
    let to_civil_affairs = |case: &str| {
        step(
            DOMICILE,
            case,
            "received",
            &["review", "--approve", "--opinion", "同意"],
        );
        step(
            DPF,
            case,
            "initial_reviewed",
            &["review", "--approve", "--opinion", "同意"],
        );
    };
    let to_active = |case: &str| {
        step(
            CIVIL,
            case,
            "dpf_reviewed",
            &["decide", "--opinion", "同意发放"],
        );
        step(
            ACCEPTANCE,
            case,
            "result_received",
            &["notify", "--method", "sms"],
        );
        step(CIVIL, case, "notified", &["award", "--action", "activate"]);
    };

    // Five people apply in Guangzhou; the first applies again in Beijing.
    let mut cases = Vec::new();
    for n in 1..=5 {
        let created = case_new_ok(&data(ACCEPTANCE), &auth, n);
        let case = created["case_id"].as_str().unwrap().to_string();
        push_cli(&data(ACCEPTANCE), &auth, &case, &created);
        cases.push(case);
    }
    let created = case_new_ok(&data(SECOND), &auth, 1);
    let again = created["case_id"].as_str().unwrap().to_string();
    push_cli(&data(SECOND), &auth, &again, &created);
    for case in cases.iter().chain([&again]) {
        to_civil_affairs(case);
    }
    for case in &cases[..4] {
        to_active(case);
    }
    // The second application is caught at the domicile county.
    wait_until("the second application at civil affairs", || {
        stage_at(&data(CIVIL), &auth, &again) == "dpf_reviewed"
    });
    let out = tongban(
        Some(&data(CIVIL)),
        &auth,
        &[
            "case",
            "decide",
            "--opinion",
            "同意",
            &again,
            "--operator",
            "经办01",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));

    // This month: the four active awards, once each.
    let this = YearMonth::of(tongban_domain::today_in_china());
    let next = this.next();
    let first = payroll(&data(CIVIL), &auth, this, None);
    assert_eq!(first["signed_now"], true, "{first}");
    assert_eq!(first["record"]["lines"].as_array().unwrap().len(), 4);
    assert_eq!(total(&first), 4 * LIVING_YUAN);
    let shown = payroll(&data(CIVIL), &auth, this, None);
    assert_eq!(shown["signed_now"], false);
    assert_eq!(shown["record"], first["record"]);
    // Only civil affairs pays; not a month before the latest, nor two ahead.
    let month = this.to_string();
    let out = tongban(
        Some(&data(DPF)),
        &auth,
        &[
            "payroll",
            "--county",
            "130102",
            "--month",
            &month,
            "--operator",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("county civil affairs"),
        "{}",
        stderr(&out)
    );
    for bad in [YearMonth::parse("2025-01").unwrap(), next.next()] {
        let bad = bad.to_string();
        let out = tongban(
            Some(&data(CIVIL)),
            &auth,
            &[
                "payroll",
                "--county",
                "130102",
                "--month",
                &bad,
                "--operator",
                "x",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stdout(&out));
    }
    let out = tongban(
        Some(&data(CIVIL)),
        &auth,
        &["payroll", "--county", "130102", "--month", "2026-13"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--month"), "{}", stderr(&out));

    // The registries: person 2 registered dead, person 3 off the dibao
    // roster, person 4's certificate revoked. The check stops all three.
    publish(
        &data(DPF),
        &auth,
        root,
        "certificates",
        certificates(Some(4)),
    );
    let mut dibao = String::from("holder_id,status,since\n");
    for n in 1..=5 {
        let status = if n == 3 { "退保" } else { "在保" };
        dibao += &format!("{},{status},2020-01-01\n", resident(n));
    }
    publish(&data(CIVIL), &auth, root, "dibao", dibao);
    publish(
        &data(CIVIL),
        &auth,
        root,
        "deaths",
        format!("holder_id,date_of_death\n{},2026-11-20\n", resident(2)),
    );
    let check = |expected: usize| -> serde_json::Value {
        wait_until("the certificates at civil affairs", || {
            held(&data(CIVIL), &auth)
                .iter()
                .any(|(k, ..)| k == "certificates")
        });
        let out = ok(
            Some(&data(CIVIL)),
            &auth,
            &[
                "check",
                "run",
                "--county",
                "130102",
                "--operator",
                "核查01",
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), expected, "{out}");
        v
    };
    let stops = check(3);
    let to_of = |v: &serde_json::Value, case: &str| -> String {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["case"] == case)
            .map(|r| r["to"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(to_of(&stops, &cases[1]), "terminated");
    assert_eq!(to_of(&stops, &cases[2]), "suspended");
    assert_eq!(to_of(&stops, &cases[3]), "suspended");

    // Corrections: the death was registered in error, the revocation reversed.
    publish(&data(DPF), &auth, root, "certificates", certificates(None));
    publish(
        &data(CIVIL),
        &auth,
        root,
        "deaths",
        format!("holder_id,date_of_death\n{},2026-11-20\n", resident(99)),
    );
    wait_until("the corrected certificates at civil affairs", || {
        held(&data(CIVIL), &auth)
            .iter()
            .any(|(k, _, v)| k == "certificates" && *v == 2)
    });
    let resumed = check(2);
    assert_eq!(to_of(&resumed, &cases[1]), "active");
    assert_eq!(to_of(&resumed, &cases[3]), "active");
    for r in resumed.as_array().unwrap() {
        assert!(
            r["reason"].as_str().unwrap().contains("feed version 2"),
            "{r}"
        );
    }
    // The fifth is decided late: its first month is paid back next month.
    to_active(&cases[4]);

    let csv = root.join("发放明细.csv");
    let second = payroll(&data(CIVIL), &auth, next, Some(&csv));
    assert_eq!(second["signed_now"], true);
    // Independently: persons 1, 2 and 4 next month; person 5 this month and
    // next; person 3 nothing while off the roster. Months of this one paid
    // before are not paid again.
    let mut expected: Vec<(String, String)> = [1, 2, 4, 5]
        .iter()
        .map(|n| (resident(*n), next.to_string()))
        .collect();
    expected.push((resident(5), this.to_string()));
    expected.sort();
    let mut got = paid(&second);
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(total(&second), 5 * LIVING_YUAN);
    let mut all = paid(&first);
    all.extend(paid(&second));
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "nobody paid twice: {all:?}");
    // The bank's file: readable by the node's user only, one row a line.
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(text.starts_with("county,month,case_id,holder_id,name,kind,months,yuan"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&csv).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The records reach the county's offices, never the acceptance office in
    // another province nor the national hub.
    let scopes = [format!("130102:{this}"), format!("130102:{next}")];
    for office in [DPF, DOMICILE] {
        wait_until(&format!("the payroll records at {office}"), || {
            let list = held(&data(office), &auth);
            scopes.iter().all(|s| {
                list.iter()
                    .any(|(k, scope, _)| k == "payroll" && scope == s)
            })
        });
    }
    for office in [ACCEPTANCE, "hub-cn"] {
        let list = held(&data(office), &auth);
        assert!(
            list.iter().all(|(kind, ..)| kind != "payroll"),
            "{office} holds {list:?}"
        );
    }

    for node in nodes {
        node.kill();
    }
    county.kill();
    hub.kill();
    // A stopped node shows the record it holds, signing nothing new.
    let kept = payroll(&data(CIVIL), &auth, next, None);
    assert_eq!(kept["signed_now"], false);
    assert_eq!(kept["record"], second["record"]);
}
