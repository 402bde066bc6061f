//! Signed reference data over real `tongban node run` processes on loopback
//! QUIC: one `calendar publish` changes the deadline an acceptance office and
//! a domicile office count alike; a county's registry feed reaches the offices
//! of its county and no other; a feed by the wrong issuer, an older feed and a
//! tampered one are refused and change nothing held.

use std::path::Path;

use crate::daemon::{NodeProcess, offices, ok, tongban, wait_until};
use crate::support::{stderr, stdout};

const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const OTHER_COUNTY: &str = "130104001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const COUNTY_HUB: &str = "hub-130102";

/// A schedule for 2027 made up for this test (the real one is not published
/// yet): New Year's Day, a Friday, is a holiday.
const CALENDAR_2027: &str = "year 2027\noff 2027-01-01 元旦\n";

/// Two certificate holders of Chang'an county, one certificate revoked.
fn certificates_csv(level: u8) -> String {
    let a = crate::daemon::resident(1);
    let b = crate::daemon::resident(2);
    format!(
        "certificate_number,holder_id,category,level,status\n\
         {a}6{level},{a},精神,{level},有效\n\
         {b}41,{b},肢体,1,注销\n"
    )
}

/// `calendar add 2026-12-30 5` as the node in `data` counts it.
fn deadline(data: &Path, auth: &Path) -> (String, bool) {
    let out = ok(
        Some(data),
        auth,
        &["calendar", "add", "2026-12-30", "5", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["date"].as_str().unwrap().to_string(),
        v["provisional"].as_bool().unwrap(),
    )
}

/// The (kind, scope, version) of every dataset `feed show` lists at `data`.
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

#[test]
fn calendars_and_feeds_reach_who_they_must_and_bad_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            (COUNTY_HUB, "hub", "130102"),
            (ACCEPTANCE, "township", ACCEPTANCE),
            (OTHER_COUNTY, "township", OTHER_COUNTY),
            (DOMICILE, "township", DOMICILE),
            (DPF, "county_dpf", "130102"),
            (CIVIL, "county_civil_affairs", "130102"),
        ],
    );
    let data = |office: &str| root.join(office);

    // Before: 2027 is not covered, so the deadline is provisional everywhere.
    let before = deadline(&data(ACCEPTANCE), &auth);
    assert_eq!(before, ("2027-01-06".to_string(), true));
    assert_eq!(deadline(&data(DOMICILE), &auth), before);

    let hub = NodeProcess::start(root, "hub-cn", None);
    let county = NodeProcess::start(root, COUNTY_HUB, Some(("hub-cn", &hub.quic)));
    let mut nodes = vec![
        NodeProcess::start(root, ACCEPTANCE, Some(("hub-cn", &hub.quic))),
        NodeProcess::start(root, OTHER_COUNTY, Some(("hub-cn", &hub.quic))),
    ];
    for office in [DOMICILE, DPF, CIVIL] {
        nodes.push(NodeProcess::start(
            root,
            office,
            Some((COUNTY_HUB, &county.quic)),
        ));
    }

    // One publish, handed to the national hub, reaches both offices.
    let schedule = root.join("2027.txt");
    std::fs::write(&schedule, CALENDAR_2027).unwrap();
    let out = ok(
        None,
        &auth,
        &[
            "calendar",
            "publish",
            schedule.to_str().unwrap(),
            "--data-dir",
            data("hub-cn").to_str().unwrap(),
        ],
    );
    assert!(out.contains("version 1"), "{out}");
    for office in [ACCEPTANCE, DOMICILE, DPF] {
        wait_until(&format!("the calendar at {office}"), || {
            deadline(&data(office), &auth) == ("2027-01-07".to_string(), false)
        });
    }

    // The county DPF publishes its certificate registry: the offices of the
    // county hold it, the other county, the other province and the national
    // hub never do.
    let csv = root.join("certificates.csv");
    std::fs::write(&csv, certificates_csv(2)).unwrap();
    let dpf = data(DPF);
    let publish = |data: &Path, kind: &str| {
        tongban(
            Some(data),
            &auth,
            &["feed", "publish", "--kind", kind, csv.to_str().unwrap()],
        )
    };
    let out = publish(&dpf, "certificates");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let feed = ("certificates".to_string(), "130102".to_string(), 1);
    for office in [DOMICILE, CIVIL, COUNTY_HUB] {
        wait_until(&format!("the feed at {office}"), || {
            held(&data(office), &auth).contains(&feed)
        });
    }
    let shown = ok(Some(&data(DOMICILE)), &auth, &["feed", "show"]);
    assert!(
        shown.contains("残疾人证信息") && shown.contains("2 rows"),
        "{shown}"
    );

    // Wrong issuers: civil affairs cannot publish certificates, nor a
    // township anything; nothing changes.
    let out = publish(&data(CIVIL), "certificates");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("county_dpf"), "{}", stderr(&out));
    let out = publish(&data(DOMICILE), "deaths");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("county_civil_affairs"),
        "{}",
        stderr(&out)
    );
    // A CSV that names a level the certificate number does not: line and column.
    std::fs::write(&csv, certificates_csv(2).replace("精神,2", "精神,3")).unwrap();
    let out = publish(&dpf, "certificates");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2, column level"),
        "{}",
        stderr(&out)
    );

    // Version 1 carried by hand, then version 2 published: version 1 is now
    // older and refused; a tampered version 2 is refused.
    let v1 = root.join("v1.tbset");
    ok(
        Some(&dpf),
        &auth,
        &[
            "feed",
            "export",
            "--kind",
            "certificates",
            "--out",
            v1.to_str().unwrap(),
        ],
    );
    std::fs::write(&csv, certificates_csv(1)).unwrap();
    let out = publish(&dpf, "certificates");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let feed2 = ("certificates".to_string(), "130102".to_string(), 2);
    wait_until("version 2 at the domicile", || {
        held(&data(DOMICILE), &auth).contains(&feed2)
    });
    let v2 = root.join("v2.tbset");
    ok(
        Some(&data(DOMICILE)),
        &auth,
        &[
            "feed",
            "export",
            "--kind",
            "certificates",
            "--out",
            v2.to_str().unwrap(),
        ],
    );
    let import = |file: &Path| {
        tongban(
            Some(&data(DOMICILE)),
            &auth,
            &["node", "dataset-import", file.to_str().unwrap()],
        )
    };
    let out = import(&v1);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not newer"), "{}", stderr(&out));
    let mut bytes = std::fs::read(&v2).unwrap();
    let last = bytes.len() - 70;
    bytes[last] ^= 1;
    let tampered = root.join("tampered.tbset");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = import(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    // A feed of another county is refused by a node outside it.
    let out = tongban(
        Some(&data(OTHER_COUNTY)),
        &auth,
        &["node", "dataset-import", v2.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not reach"), "{}", stderr(&out));
    assert!(held(&data(DOMICILE), &auth).contains(&feed2));

    // A case through every office by the commands, compared at each review,
    // then ended by `check run` at civil affairs when a death is registered.
    let created = crate::daemon::case_new_ok(&data(ACCEPTANCE), &auth, 1);
    let case = created["case_id"].as_str().unwrap().to_string();
    crate::daemon::push_cli(&data(ACCEPTANCE), &auth, &case, &created);
    let stage_at = |office: &str| -> String {
        let out = tongban(
            Some(&data(office)),
            &auth,
            &["case", "show", &case, "--json"],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["stage"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let step = |office: &str, before: &str, args: &[&str]| {
        wait_until(&format!("{case} at {before} at {office}"), || {
            stage_at(office) == before
        });
        let mut all = vec!["case"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[case.as_str(), "--operator", "经办01"]);
        ok(Some(&data(office)), &auth, &all);
    };
    // The registry no longer lists the certificate given (it holds a level-1
    // one now): the review must answer that, and does.
    wait_until("the case at the domicile township", || {
        stage_at(DOMICILE) == "received"
    });
    let out = tongban(
        Some(&data(DOMICILE)),
        &auth,
        &[
            "case",
            "review",
            "--approve",
            "--opinion",
            "",
            &case,
            "--operator",
            "经办01",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("certificate_not_found"),
        "{}",
        stderr(&out)
    );
    step(
        DOMICILE,
        "received",
        &["review", "--approve", "--opinion", "证号已换发，已核实新证"],
    );
    step(
        DPF,
        "initial_reviewed",
        &["review", "--approve", "--opinion", "新证一级，同意"],
    );
    step(CIVIL, "dpf_reviewed", &["decide", "--opinion", "同意发放"]);
    step(
        ACCEPTANCE,
        "result_received",
        &["notify", "--method", "sms"],
    );
    step(CIVIL, "notified", &["award", "--action", "activate"]);
    let shown = ok(Some(&data(CIVIL)), &auth, &["case", "show", &case]);
    assert!(shown.contains("不一致 CONTRADICTED"), "{shown}");
    // Nothing to do while no feed speaks against the award.
    let deaths = root.join("deaths.csv");
    let a = crate::daemon::resident(1);
    std::fs::write(
        &deaths,
        format!("holder_id,date_of_death\n{a},2026-11-20\n"),
    )
    .unwrap();
    let out = tongban(
        Some(&data(CIVIL)),
        &auth,
        &[
            "feed",
            "publish",
            "--kind",
            "deaths",
            deaths.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
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
    let results: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(results[0]["case"], case.as_str(), "{out}");
    assert_eq!(results[0]["to"], "terminated", "{out}");
    assert!(
        results[0]["reason"]
            .as_str()
            .unwrap()
            .contains("deaths feed version 1")
    );
    wait_until("the termination at the acceptance office", || {
        stage_at(ACCEPTANCE) == "terminated"
    });
    // The DPF may not run it.
    let out = tongban(
        Some(&data(DPF)),
        &auth,
        &["check", "run", "--county", "130102", "--operator", "核查01"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("county civil affairs"),
        "{}",
        stderr(&out)
    );

    // By now the feed has had every chance to travel: it stayed in its county.
    for office in [ACCEPTANCE, OTHER_COUNTY, "hub-cn"] {
        let list = held(&data(office), &auth);
        assert!(
            list.iter().all(|(kind, ..)| kind == "calendar"),
            "{office} holds {list:?}"
        );
    }

    for node in nodes {
        node.kill();
    }
    county.kill();
    hub.kill();

    // Stopped nodes keep what they hold: the calendar and the feed are in the store.
    assert_eq!(
        deadline(&data(DOMICILE), &auth),
        ("2027-01-07".to_string(), false)
    );
    assert!(held(&data(DOMICILE), &auth).contains(&feed2));

    // A backup carries them, and the restored node counts and compares alike.
    let backup = root.join("domicile.tbbak");
    ok(
        Some(&data(DOMICILE)),
        &auth,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    let restored = root.join("restored");
    ok(
        Some(&restored),
        &auth,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--office-key",
            data(DOMICILE).join("office.key").to_str().unwrap(),
        ],
    );
    assert_eq!(
        deadline(&restored, &auth),
        ("2027-01-07".to_string(), false)
    );
    assert!(held(&restored, &auth).contains(&feed2));
}

/// Signs `csv` as `office`'s feed of `kind` and hands it to `office` and to
/// each of `to` (the county's offices, which the test network links through
/// the national hub only, where feeds never go).
async fn publish_feed(
    net: &crate::paths::Net,
    office: &'static str,
    kind: tongban_domain::dataset::DatasetKind,
    csv: String,
    to: &[&'static str],
) {
    let bytes = net.nodes[office]
        .handle()
        .exec(move |node, now| node.sign_feed(kind, &csv, now, now.china_date()).unwrap())
        .await
        .unwrap();
    for target in std::iter::once(&office).chain(to) {
        net.nodes[target]
            .handle()
            .import_dataset(bytes.clone())
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_record_what_the_feeds_say_and_answer_contradictions() {
    use tongban_case::Outcome;
    use tongban_domain::dataset::DatasetKind;
    use tongban_domain::ids::{Operator, resident_id_check_char};
    use tongban_domain::stage::Stage;

    use crate::paths::{CIVIL, DOMICILE as DOM, DPF as DPF_OFFICE, Net, opinion};

    let mut net = Net::start().await;
    let contradicted = net.push().await;
    let confirmed = net.push().await;
    // The two residents Net makes: the first now has a revoked certificate and
    // has left dibao; the second is as the case says.
    let id = |n: usize| {
        let first17 = format!("1301021968051{n:04}");
        format!("{first17}{}", resident_id_check_char(&first17).unwrap())
    };
    let (a, b) = (id(1), id(2));
    publish_feed(
        &net,
        DPF_OFFICE,
        DatasetKind::Certificates,
        format!(
            "certificate_number,holder_id,category,level,status\n\
             {a}62,{a},精神,2,注销\n{b}62,{b},精神,2,有效\n"
        ),
        &[DOM, CIVIL],
    )
    .await;
    publish_feed(
        &net,
        CIVIL,
        DatasetKind::Dibao,
        format!("holder_id,status,since\n{a},off,2026-06-01\n{b},on,2019-03-01\n"),
        &[DOM, DPF_OFFICE],
    )
    .await;

    // An approval without an opinion is refused while the registry
    // contradicts the case, naming what it contradicted; nothing is stored.
    let case = contradicted.clone();
    let refused = net.nodes[DOM]
        .handle()
        .exec(move |node, now| {
            let op = Operator::parse("初审02").unwrap();
            node.act(
                &case,
                Stage::InitialReviewed,
                &opinion(Outcome::Approve, ""),
                &op,
                now,
            )
        })
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("certificate_revoked") && refused.contains("dibao_off"),
        "{refused}"
    );
    assert_eq!(net.stage(DOM, &contradicted).await, Some(Stage::Received));
    net.act(
        DOM,
        &contradicted,
        Stage::InitialReviewed,
        opinion(Outcome::Approve, "证件已注销，另行核实：已通知申请人换领"),
    )
    .await;
    net.act(
        DOM,
        &confirmed,
        Stage::InitialReviewed,
        opinion(Outcome::Approve, ""),
    )
    .await;

    // The DPF sees them in the case, signed by the domicile township, and the
    // verifier finds nothing unsigned or unauthorised.
    for (case, expect) in [
        (
            &contradicted,
            vec![("certificate_revoked", false), ("dibao_off", false)],
        ),
        (
            &confirmed,
            vec![("certificate_valid", true), ("dibao_on", true)],
        ),
    ] {
        net.wait(DPF_OFFICE, case, Stage::InitialReviewed).await;
        let case = case.clone();
        let (facts, violations) = net.nodes[DPF_OFFICE]
            .handle()
            .exec(move |node, now| {
                let mut doc = node.case(&case).unwrap();
                let c = doc.read().unwrap();
                let facts: Vec<(String, bool, String)> = c
                    .confirmations
                    .iter()
                    .map(|f| (f.fact.clone(), f.confirmed, f.office.clone()))
                    .collect();
                let report = doc
                    .verify(node.directory().unwrap(), node.calendar(), now)
                    .unwrap();
                (facts, report.violations)
            })
            .await
            .unwrap();
        let got: Vec<(&str, bool)> = facts.iter().map(|(f, c, _)| (f.as_str(), *c)).collect();
        assert_eq!(got, expect);
        assert!(facts.iter().all(|(_, _, office)| office == DOM));
        assert!(violations.is_empty(), "{violations:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_check_suspends_terminates_and_resumes_awards_from_the_feeds() {
    use tongban_domain::dataset::DatasetKind;
    use tongban_domain::ids::{Operator, resident_id_check_char};
    use tongban_domain::stage::Stage;

    use crate::paths::{CIVIL, DPF as DPF_OFFICE, Net};

    let mut net = Net::start().await;
    let dies = net.push().await;
    net.finish_approved(&dies).await;
    let leaves = net.push().await;
    net.finish_approved(&leaves).await;
    let stays = net.push().await;
    net.finish_approved(&stays).await;
    let id = |n: usize| {
        let first17 = format!("1301021968051{n:04}");
        format!("{first17}{}", resident_id_check_char(&first17).unwrap())
    };
    let (a, b, c) = (id(1), id(2), id(3));
    let dibao = |b_status: &str| {
        format!(
            "holder_id,status,since\n{a},on,2019-01-01\n{b},{b_status},2026-06-01\n{c},on,2019-01-01\n"
        )
    };
    publish_feed(&net, CIVIL, DatasetKind::Dibao, dibao("off"), &[]).await;
    publish_feed(
        &net,
        CIVIL,
        DatasetKind::Deaths,
        format!("holder_id,date_of_death\n{a},2026-11-20\n"),
        &[],
    )
    .await;
    let check = |office: &'static str| {
        let handle = net.nodes[office].handle();
        async move {
            handle
                .exec(|node, now| {
                    node.check_awards("130102", &Operator::parse("核查01").unwrap(), now)
                })
                .await
                .unwrap()
        }
    };
    // Only the county's civil affairs runs it.
    let refused = check(DPF_OFFICE).await.unwrap_err().to_string();
    assert!(refused.contains("county civil affairs"), "{refused}");

    let results = check(CIVIL).await.unwrap();
    let by_case = |case: &tongban_domain::ids::CaseId| {
        results
            .iter()
            .find(|r| r.case == case.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no result for {case}: {results:?}"))
    };
    let died = by_case(&dies);
    assert_eq!(died.to, "terminated");
    assert!(
        died.reason.contains("deaths feed version 1"),
        "{}",
        died.reason
    );
    let left = by_case(&leaves);
    assert_eq!(left.to, "suspended");
    assert!(
        left.reason.contains("dibao feed version 1"),
        "{}",
        left.reason
    );
    assert!(
        results
            .iter()
            .all(|r| r.case != stays.as_str() && r.error.is_none())
    );
    assert_eq!(net.stage(CIVIL, &dies).await, Some(Stage::Terminated));
    assert_eq!(net.stage(CIVIL, &leaves).await, Some(Stage::Suspended));
    assert_eq!(net.stage(CIVIL, &stays).await, Some(Stage::Active));
    // Signed with the reason, and carried to the acceptance office.
    net.wait(crate::paths::ACCEPTANCE, &leaves, Stage::Suspended)
        .await;

    // Run again at once: nothing more to do.
    assert!(check(CIVIL).await.unwrap().is_empty());

    // The roster is corrected: the suspended award resumes.
    publish_feed(&net, CIVIL, DatasetKind::Dibao, dibao("on"), &[]).await;
    let results = check(CIVIL).await.unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].case, leaves.as_str());
    assert_eq!(results[0].to, "active");
    assert!(results[0].reason.contains("dibao feed version 2"));
    assert_eq!(net.stage(CIVIL, &leaves).await, Some(Stage::Active));
}
