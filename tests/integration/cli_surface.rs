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
    // The person at the terminal reads the same failure on stderr.
    assert!(
        stderr(&out).contains("输入有误 rejected"),
        "{}",
        stderr(&out)
    );

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
        error["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
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
    // Case ids appear only in their short form (the random part).
    let case_id = made["case_id"].as_str().unwrap();
    assert!(
        !text.contains(case_id),
        "a whole case id in the log:\n{text}"
    );
}

#[test]
fn node_status_follow_waits_for_a_running_node_only() {
    use crate::daemon::{NodeProcess, offices};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    offices(root, &[("440106001", "township", "440106001")]);
    let data = root.join("440106001");
    let node = NodeProcess::start(root, "440106001", None);
    // Nothing waits on a node without peers or cases: it answers at once,
    // and piped output carries no progress bar.
    let out = tongban_in(Some(&data), &["node", "status", "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("运行中 running"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("同步中"), "{}", stderr(&out));
    node.terminate();
    let out = tongban_in(Some(&data), &["node", "status", "--follow"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("--follow"), "{}", stderr(&out));
}

/// Display width: two columns for CJK and full-width characters.
fn display_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 => 2,
        _ => 1,
    }
}

/// The display column at which each cell of a table line starts.
fn cell_starts(line: &str) -> Vec<usize> {
    let (mut starts, mut at, mut spaces) = (vec![0], 0, 0);
    for c in line.chars() {
        if c == ' ' {
            spaces += 1;
        } else {
            if spaces >= 2 {
                starts.push(at);
            }
            spaces = 0;
        }
        at += display_width(c);
    }
    starts
}

#[test]
fn case_list_columns_line_up_by_display_width() {
    use crate::daemon::{case_new_ok, offices};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(root, &[("440106001", "township", "440106001")]);
    let data = root.join("440106001");
    for n in [1, 2] {
        case_new_ok(&data, &auth, n);
    }
    let out = tongban_in(Some(&data), &["case", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("案件 case"), "{text}");
    let header = cell_starts(lines[0]);
    assert_eq!(header.len(), 5, "{text}");
    for line in &lines[1..] {
        assert_eq!(cell_starts(line), header, "columns do not line up:\n{text}");
    }
}

#[test]
fn a_damaged_backup_with_json_is_a_json_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("damaged.tbbackup");
    std::fs::write(&file, b"not a backup at all").unwrap();
    let out = tongban(&["backup", "verify", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = &json_of(&out)["error"];
    assert_eq!(error["kind"], "failed", "{error}");
    assert_eq!(error["code"], 1, "{error}");
    assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");
    assert!(stderr(&out).contains("backup refused"), "{}", stderr(&out));
}
