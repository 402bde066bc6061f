//! Signed reference data over real `tongban node run` processes on loopback
//! QUIC: one `calendar publish` changes the deadline an acceptance office and
//! a domicile office count alike; a county's registry feed reaches the offices
//! of its county and no other; a feed by the wrong issuer, an older feed and a
//! tampered one are refused and change nothing held.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::daemon::{NodeProcess, offices, ok, tongban};
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

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
