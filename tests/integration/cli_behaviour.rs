//! Issue #14: the command line behaves as a careful tool should.

use std::process::{Command, Stdio};

use crate::daemon::{NodeProcess, case_new_ok, offices, ok, resident, tongban};
use crate::support::{stderr, stdout};

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["policy", "show", "130102001"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn logs_carry_no_colour_codes_unless_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = offices(tmp.path(), &[("440106001", "township", "440106001")]);
    let data = tmp.path().join("440106001");
    let out = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["case", "list"])
        .env("TONGBAN_DATA_DIR", &data)
        .env("TONGBAN_AUTHORITY_DIR", &auth)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("store opened"), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}

#[test]
fn operator_has_one_home_in_node_toml_and_works_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(root, &[("440106001", "township", "440106001")]);
    let data = root.join("440106001");
    // In the run configuration it is refused, naming where it belongs.
    let config = root.join("run.toml");
    std::fs::write(
        &config,
        format!("data_dir = {data:?}\noperator = \"窗口01\"\n"),
    )
    .unwrap();
    let out = tongban(
        None,
        &auth,
        &["node", "run", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("node.toml"), "{}", stderr(&out));
    // In node.toml it is the default clerk, also through the running node.
    let node_file = data.join("node.toml");
    let text = std::fs::read_to_string(&node_file).unwrap();
    std::fs::write(&node_file, format!("{text}operator = \"窗口09\"\n")).unwrap();
    let node = NodeProcess::start(root, "440106001", None);
    let case = case_new_ok(&data, &auth, 1)["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = root.join("id.jpg");
    std::fs::write(&file, b"scan").unwrap();
    ok(
        Some(&data),
        &auth,
        &[
            "case",
            "attach",
            &case,
            file.to_str().unwrap(),
            "--kind",
            "id_card",
            "--operator",
            "窗口01",
        ],
    );
    let out = tongban(
        Some(&data),
        &auth,
        &["case", "withdraw", &case, "--reason", "申请人撤回"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ok(Some(&data), &auth, &["history", &case, "--json"]);
    assert!(out.contains("窗口09"), "{out}");
    assert_eq!(node.terminate(), 0);
}

#[test]
fn verify_all_rehashes_materials_and_fails_on_rot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(root, &[("440106001", "township", "440106001")]);
    let data = root.join("440106001");
    let case = case_new_ok(&data, &auth, 1)["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pattern: Vec<u8> = b"TONGBAN-ROT-TEST".repeat(4096);
    let file = root.join("id.jpg");
    std::fs::write(&file, &pattern).unwrap();
    ok(
        Some(&data),
        &auth,
        &[
            "case",
            "attach",
            &case,
            file.to_str().unwrap(),
            "--kind",
            "id_card",
            "--operator",
            "窗口01",
        ],
    );
    let out = ok(Some(&data), &auth, &["verify", "--all", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["materials"]["checked"], 1, "{report}");

    // One byte of the stored scan rots on disk.
    let db = data.join("tongban.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("the scan is stored as written");
    bytes[at + 1000] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    for args in [&["verify", "--all"][..], &["verify", "--all", "--json"][..]] {
        let out = tongban(Some(&data), &auth, args);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    }
    let out = tongban(Some(&data), &auth, &["verify", "--all"]);
    assert!(
        stdout(&out).contains("material damaged"),
        "{}",
        stdout(&out)
    );
    // And through a running node.
    let node = NodeProcess::start(root, "440106001", None);
    let out = tongban(Some(&data), &auth, &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("material damaged"),
        "{}",
        stdout(&out)
    );
    assert_eq!(node.terminate(), 0);
}

#[test]
fn calendar_dates_outside_the_sane_range_are_refused() {
    for args in [
        &["calendar", "add", "+262142-12-20", "30"][..],
        &["calendar", "add", "1800-01-01", "3"][..],
        &["calendar", "add", "2199-12-01", "4000000"][..],
        &["calendar", "between", "2024-01-01", "+262142-12-20"][..],
    ] {
        let out = crate::support::tongban(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("range"), "{args:?}: {}", stderr(&out));
    }
    let out = crate::support::tongban(&["calendar", "add", "2024-02-08", "3"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_revoked_node_is_told_it_was_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(root, &[("440106001", "township", "440106001")]);
    let data = root.join("440106001");
    ok(
        None,
        &auth,
        &[
            "directory",
            "revoke",
            "--office",
            "440106001",
            "--reason",
            "电脑丢失",
        ],
    );
    ok(
        Some(&data),
        &auth,
        &[
            "node",
            "directory-import",
            auth.join("directory.tbdir").to_str().unwrap(),
        ],
    );
    let id = resident(1);
    let cert = format!("{id}62");
    let out = tongban(
        Some(&data),
        &auth,
        &[
            "case",
            "new",
            "--name",
            "李四",
            "--id",
            &id,
            "--hukou",
            "130102001",
            "--certificate",
            &cert,
            "--dibao",
            "--kind",
            "living",
            "--operator",
            "窗口01",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("send the public key"),
        "{}",
        stderr(&out)
    );
}
