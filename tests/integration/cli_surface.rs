//! Issue #17: the command line fits its users — JSON errors for machine
//! readers, the commit in `--version`, shell completions and a manual page.

use crate::support::{stderr, stdout, tongban, tongban_in};

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

#[test]
fn json_errors_are_one_object_with_kind_code_message_and_field() {
    // A date out of the calendar's range: input rejected, exit 1, naming DATE.
    let out = tongban(&["calendar", "add", "1900-01-01", "3", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = &json_of(&out)["error"];
    assert_eq!(error["kind"], "rejected");
    assert_eq!(error["code"], 1);
    assert_eq!(error["field"], "DATE");
    assert!(
        error["message"].as_str().unwrap().contains("1900"),
        "{error}"
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // Without --json the same failure is text on stderr, nothing on stdout.
    let out = tongban(&["calendar", "add", "1900-01-01", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("输入有误 rejected"),
        "{}",
        stderr(&out)
    );

    // No data directory: the field is --data-dir.
    let out = tongban_in(None, &["case", "list", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json_of(&out)["error"]["field"], "--data-dir");

    // A node that is not there: the command failed, exit 1, as JSON.
    let tmp = tempfile::tempdir().unwrap();
    let out = tongban_in(
        Some(&tmp.path().join("none")),
        &["node", "status", "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = &json_of(&out)["error"];
    assert_eq!(error["kind"], "failed", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("node init"),
        "{error}"
    );
}

#[test]
fn a_usage_error_with_json_is_json_and_exits_2() {
    let out = tongban(&["case", "list", "--json", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let error = &json_of(&out)["error"];
    assert_eq!(error["kind"], "usage");
    assert_eq!(error["code"], 2);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{error}"
    );

    let out = tongban(&["case", "list", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
}

#[test]
fn version_names_the_commit() {
    let out = tongban(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("tongban {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The commit of a checkout, or `unknown` for a build outside git.
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no commit in {text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let out = tongban(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("_tongban()"), "{script}");
    for word in [
        "case",
        "calendar",
        "verify",
        "directory-import",
        "--data-dir",
    ] {
        assert!(script.contains(word), "completion lacks {word}");
    }

    let out = tongban(&["manpage"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH tongban"),
        "{page}"
    );
    assert!(page.contains(".TH tongban 1"), "{page}");
    assert!(page.contains("completions"), "{page}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    let out = tongban(&["manpage", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for page in ["tongban.1", "tongban-case.1", "tongban-case-list.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
}

#[test]
fn node_logs_carry_office_and_session_spans_and_no_personal_data() {
    use crate::daemon::{NodeProcess, case_new_ok, offices, resident};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            ("440106001", "township", "440106001"),
        ],
    );
    let hub = NodeProcess::start(root, "hub-cn", None);
    let log_path = root.join("440106001.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let node = NodeProcess::spawn(
        root,
        "440106001",
        "127.0.0.1:0",
        Some(("hub-cn", &hub.quic)),
        "log = \"debug\"\n",
        std::process::Stdio::from(log),
    );
    // A case made through the running node: its applicant's name and ID
    // number are what must never reach the log in clear.
    let made = case_new_ok(&root.join("440106001"), &auth, 7);
    assert!(made["case_id"].is_string(), "{made}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("connected") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    node.terminate();
    hub.kill();
    let text = text + &std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("node{office=440106001}"), "{text}");
    assert!(text.contains("session{peer=hub-cn session="), "{text}");
    let id = resident(7);
    assert!(
        !text.contains(&id),
        "a resident ID in clear in the log:\n{text}"
    );
    assert!(
        !text.contains("李四"),
        "a name in clear in the log:\n{text}"
    );
}
