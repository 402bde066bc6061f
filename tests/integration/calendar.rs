//! `tongban calendar`.

use crate::support::{stderr, stdout, tongban, tongban_in};

fn json(args: &[&str]) -> serde_json::Value {
    let out = tongban(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn deadlines_across_the_2024_spring_festival() {
    // Received Thursday 2024-02-08; 02-09 is a working day, 02-10..02-17 are the
    // holiday, Sunday 02-18 is an adjusted working day.
    let v = json(&["calendar", "add", "2024-02-08", "3", "--json"]);
    assert_eq!(v["date"], "2024-02-19");
    assert_eq!(v["provisional"], false);
    let v = json(&["calendar", "between", "2024-02-08", "2024-02-19", "--json"]);
    assert_eq!(v["working_days"], 3);
}

#[test]
fn deadlines_across_the_2025_national_day() {
    // Received Tuesday 2025-09-30; 10-01..10-08 off; Saturday 10-11 is a working day.
    let v = json(&["calendar", "add", "2025-09-30", "3", "--json"]);
    assert_eq!(v["date"], "2025-10-11");
    let v = json(&["calendar", "add", "2025-09-26", "2", "--json"]);
    assert_eq!(
        v["date"], "2025-09-29",
        "Sunday 09-28 is an adjusted working day"
    );
}

#[test]
fn an_uncovered_year_is_provisional_until_imported() {
    let v = json(&["calendar", "add", "2026-12-30", "3", "--json"]);
    assert_eq!(v["provisional"], true);
    assert!(v["warning"].as_str().unwrap().contains("2027"));

    let dir = tempfile::tempdir().unwrap();
    let schedule = dir.path().join("2027.json");
    std::fs::write(
        &schedule,
        r#"{"year": 2027, "papers": ["https://example.invalid/notice"], "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true}
        ]}"#,
    )
    .unwrap();
    let data = dir.path().join("node");
    let out = tongban_in(
        Some(&data),
        &["calendar", "import", schedule.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = tongban_in(
        Some(&data),
        &["calendar", "add", "2026-12-30", "3", "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provisional"], false);
    assert_eq!(v["date"], "2027-01-05");
}

#[test]
fn a_bad_schedule_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = dir.path().join("bad.json");
    std::fs::write(&schedule, r#"{"year": 2027, "papers": ["x"], "days": [{"name": "元旦", "date": "2027-13-01", "isOffDay": true}]}"#).unwrap();
    let data = dir.path().join("node");
    let out = tongban_in(
        Some(&data),
        &["calendar", "import", schedule.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("days[0].date"), "{}", stderr(&out));
    assert!(!data.join("calendar").exists());
}

#[test]
fn a_bad_date_names_the_argument() {
    let out = tongban(&["calendar", "add", "2024-02-30", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("DATE"), "{}", stderr(&out));
    assert_eq!(
        tongban(&["calendar", "add", "2024-02-01", "-3"])
            .status
            .code(),
        Some(2)
    );
    let _ = stdout;
}
