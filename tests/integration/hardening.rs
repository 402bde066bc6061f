//! Issue #14, tried as a hostile local user would: real `tongban node run`
//! processes, their control channel, their files, backups and uploads.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::daemon::{NodeProcess, case_new as new_case, offices, ok, tongban};
use crate::support::{stderr, stdout};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Pushes the case `case new --json` printed in `out` (a case travels only
/// once pushed).
fn push_out(data: &Path, auth: &Path, out: &std::process::Output) {
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = created["case_id"].as_str().unwrap().to_string();
    crate::daemon::push_cli(data, auth, &case, &created);
}

fn case_count(data: &Path, auth: &Path) -> usize {
    let out = ok(Some(data), auth, &["case", "list", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn one_township(root: &Path) -> std::path::PathBuf {
    offices(root, &[("440106001", "township", "440106001")])
}

#[test]
fn a_squatter_on_a_stale_control_address_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    let node = NodeProcess::start_with(root, "440106001", None, "control = \"127.0.0.1:0\"\n");
    let tcp = std::fs::read_to_string(data.join("control.addr")).unwrap();
    assert!(data.join("control.sock").exists());
    let out = new_case(&data, &auth, 1);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The node is killed: its socket and its address file stay behind.
    node.kill();
    assert!(data.join("control.sock").exists());
    // A local user takes the old TCP port and waits for a token and a form.
    let squatter = TcpListener::bind(tcp.trim()).unwrap();
    squatter.set_nonblocking(true).unwrap();
    let out = new_case(&data, &auth, 2);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("case_id"), "{}", stdout(&out));
    // Nothing ever reached the squatter, and the case is really stored.
    assert!(
        squatter.accept().is_err(),
        "a command connected to the squatter"
    );
    assert_eq!(case_count(&data, &auth), 2);
}

#[test]
fn data_directory_store_token_and_socket_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    // A directory someone loosened is tightened when the node starts.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = NodeProcess::start(root, "440106001", None);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tongban.redb")), 0o600);
    assert_eq!(mode(&data.join("office.key")), 0o600);
    assert_eq!(mode(&data.join("control.token")), 0o600);
    assert_eq!(mode(&data.join("control.sock")), 0o600);
    let backup = root.join("b.tbbackup");
    ok(
        Some(&data),
        &auth,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    assert_eq!(mode(&backup), 0o600);
    // No temporary file is left beside what was written.
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .chain(std::fs::read_dir(&data).unwrap())
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(node.terminate(), 0);
}

#[test]
fn unauthenticated_bodies_are_refused_unread_and_memory_stays_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    let node = NodeProcess::start_with(root, "440106001", None, "control = \"127.0.0.1:0\"\n");
    let pid = node.child.id();
    let tcp = std::fs::read_to_string(data.join("control.addr")).unwrap();
    let tcp = tcp.trim().to_string();

    // Malformed JSON without a token: 401, no schema details.
    let mut stream = TcpStream::connect(&tcp).unwrap();
    stream
        .write_all(b"POST /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("missing field"), "{answer}");

    let before = rss(pid);
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..30 {
        let mut stream = TcpStream::connect(&tcp).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"POST /v1/cases/x/materials?kind=id_card HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
            .unwrap();
        for _ in 0..64 {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    assert!(
        after < before + 32 * 1024 * 1024,
        "memory grew from {before} to {after} bytes"
    );

    // Idle connections on TCP neither hang the node's own commands nor stay
    // open past the header timeout.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&tcp).ok())
        .collect();
    let start = Instant::now();
    ok(Some(&data), &auth, &["node", "status"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(node.terminate(), 0);
}

#[test]
fn backup_refuses_an_existing_file_and_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    let node = NodeProcess::start(root, "440106001", None);
    let out = new_case(&data, &auth, 1);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Through the running node: its own live store is refused, so is any file
    // inside its data directory, and an existing file elsewhere is left alone.
    let store = data.join("tongban.redb");
    for target in [store.clone(), data.join("new.tbbackup")] {
        let out = tongban(
            Some(&data),
            &auth,
            &["backup", "--out", target.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("data directory"), "{}", stderr(&out));
    }
    let existing = root.join("old.tbbackup");
    std::fs::write(&existing, b"keep me").unwrap();
    let out = tongban(
        Some(&data),
        &auth,
        &["backup", "--out", existing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    // The node goes on: the next case is stored and survives a restart.
    let out = new_case(&data, &auth, 2);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(node.terminate(), 0);
    assert_eq!(case_count(&data, &auth), 2);
    let node = NodeProcess::start(root, "440106001", None);
    assert_eq!(case_count(&data, &auth), 2);
    assert_eq!(node.terminate(), 0);
}

#[test]
fn an_attachment_over_the_limit_is_refused_on_both_paths_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    let out = new_case(&data, &auth, 1);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let case: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = case["case_id"].as_str().unwrap().to_string();
    // A sparse file one byte over the limit, and an endless device.
    let big = root.join("big.jpg");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64 * 1024 * 1024 + 1)
        .unwrap();
    let attach = |file: &str| {
        tongban(
            Some(&data),
            &auth,
            &[
                "case",
                "attach",
                &case,
                file,
                "--kind",
                "id_card",
                "--media-type",
                "image/jpeg",
                "--operator",
                "窗口01",
            ],
        )
    };
    // On the store directly.
    for file in [big.to_str().unwrap(), "/dev/zero"] {
        let out = attach(file);
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert!(stderr(&out).contains("64 MiB"), "{file}: {}", stderr(&out));
    }
    // Through the running node, whose memory stays flat.
    let node = NodeProcess::start(root, "440106001", None);
    let before = rss(node.child.id());
    for file in [big.to_str().unwrap(), "/dev/zero"] {
        let out = attach(file);
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert!(stderr(&out).contains("64 MiB"), "{file}: {}", stderr(&out));
    }
    let after = rss(node.child.id());
    assert!(
        after < before + 48 * 1024 * 1024,
        "memory grew from {before} to {after} bytes"
    );
    // A file within the limit goes through, and nothing of the refused ones
    // was kept.
    let small = root.join("id.jpg");
    std::fs::write(&small, vec![7u8; 3 * 1024 * 1024]).unwrap();
    let out = attach(small.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(node.terminate(), 0);
    let out = ok(Some(&data), &auth, &["verify", "--all", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
}

fn wait_for_cases(data: &Path, auth: &Path, n: usize, within: Duration) {
    let start = Instant::now();
    loop {
        let out = tongban(Some(data), auth, &["case", "list", "--json"]);
        if out.status.code() == Some(0) {
            let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if rows.as_array().unwrap().len() >= n {
                return;
            }
        }
        assert!(
            start.elapsed() < within,
            "{} did not reach {n} cases in {within:?}",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_restored_backup_is_a_working_node_that_verifies_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            ("440106001", "township", "440106001"),
        ],
    );
    let data = root.join("440106001");
    let hub_dir = root.join("hub-cn");
    let hub = NodeProcess::start(root, "hub-cn", None);
    let node = NodeProcess::start(root, "440106001", Some(("hub-cn", &hub.quic)));
    let out = new_case(&data, &auth, 1);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    push_out(&data, &auth, &out);
    wait_for_cases(&hub_dir, &auth, 1, Duration::from_secs(15));
    let backup = root.join("440106001.tbbackup");
    ok(
        Some(&data),
        &auth,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    // The office's computer is lost; its key was kept apart.
    node.kill();
    let key = root.join("office.key.saved");
    std::fs::copy(data.join("office.key"), &key).unwrap();
    let new_root = root.join("new");
    std::fs::create_dir(&new_root).unwrap();
    let restored = new_root.join("440106001");
    let out = tongban(
        None,
        &auth,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--office-key",
            key.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("ready"), "{}", stdout(&out));
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("office.key")), 0o600);
    let out = ok(Some(&restored), &auth, &["verify", "--all", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["cases"], 1);

    // It runs, and what it does next reaches its hub.
    let node = NodeProcess::start(&new_root, "440106001", Some(("hub-cn", &hub.quic)));
    let out = new_case(&restored, &auth, 2);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    push_out(&restored, &auth, &out);
    wait_for_cases(&hub_dir, &auth, 2, Duration::from_secs(15));
    assert_eq!(node.terminate(), 0);
    assert_eq!(hub.terminate(), 0);
}

#[test]
fn a_restore_with_a_new_key_says_the_authority_must_certify_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = one_township(root);
    let data = root.join("440106001");
    let backup = root.join("b.tbbackup");
    ok(
        Some(&data),
        &auth,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    let restored = root.join("restored");
    let out = tongban(
        None,
        &auth,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--new-key",
            "--data-dir",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("directory authority"),
        "{}",
        stdout(&out)
    );
    // The node is there, with a key of its own that differs from the old one.
    assert_ne!(
        std::fs::read(restored.join("office.key")).unwrap(),
        std::fs::read(data.join("office.key")).unwrap()
    );
    let out = ok(Some(&restored), &auth, &["node", "status", "--json"]);
    assert!(out.contains("440106001"), "{out}");
}
