//! Issue #14, links: real `tongban node run` processes whose hub is killed with
//! SIGKILL and restarted on the same port, hubs configured by host name, and a
//! node its hub refuses.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::daemon::{NodeProcess, offices, ok};
use crate::support::stderr;

/// A UDP port free on 127.0.0.1 a moment ago, for a hub that must come back on
/// the same port.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `node status --json` of the node at `data`.
fn status(data: &Path, auth: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(Some(data), auth, &["node", "status", "--json"])).unwrap()
}

/// The status entry of `office` among the peers of the node at `data`, if
/// listed.
fn find_peer(data: &Path, auth: &Path, office: &str) -> Option<serde_json::Value> {
    let status = status(data, auth);
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["office"] == office)
        .cloned()
}

/// The status entry of `office`, which must be listed.
fn peer(data: &Path, auth: &Path, office: &str) -> serde_json::Value {
    find_peer(data, auth, office).unwrap_or_else(|| panic!("{office} is not listed"))
}

/// Waits until `office`'s `connected` in the status of the node at `data` is
/// `connected`; answers how long that took.
fn wait_connected(
    data: &Path,
    auth: &Path,
    office: &str,
    connected: bool,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        // A peer that is not listed has never connected to this process.
        let entry = find_peer(data, auth, office)
            .unwrap_or_else(|| serde_json::json!({ "connected": false }));
        if entry["connected"] == connected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{office} not connected={connected} within {within:?}: {entry}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the hub on `port`, retrying while the kernel still holds the port.
fn start_hub(root: &Path, port: u16) -> NodeProcess {
    NodeProcess::spawn(
        root,
        "hub-cn",
        &format!("127.0.0.1:{port}"),
        None,
        "",
        Stdio::null(),
    )
}

#[test]
fn a_killed_hub_is_rejoined_within_seconds_and_status_says_when_it_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            ("440106001", "township", "440106001"),
        ],
    );
    let hub_dir = root.join("hub-cn");
    let data = root.join("440106001");
    let port = free_udp_port();
    let hub = start_hub(root, port);
    // The child knows its hub by host name.
    let hub_name = format!("localhost:{port}");
    let child = NodeProcess::start(root, "440106001", Some(("hub-cn", &hub_name)));
    wait_connected(&data, &auth, "hub-cn", true, Duration::from_secs(10));
    let entry = peer(&data, &auth, "hub-cn");
    assert_eq!(entry["upstream"], hub_name.as_str(), "{entry}");

    // Killed and restarted at once (a crash and a supervisor's restart): the
    // restarted hub resets the child's old connection at the child's next
    // keep-alive, and the child joins it again. The new hub process knows
    // only sessions made after it started.
    hub.kill();
    let restarted = Instant::now();
    let hub = start_hub(root, port);
    wait_connected(&hub_dir, &auth, "440106001", true, Duration::from_secs(10));
    let quick = restarted.elapsed();
    wait_connected(&data, &auth, "hub-cn", true, Duration::from_secs(5));

    // Killed and left down: the child's status says so within seconds, with
    // the reason, and the text output says 未连接.
    hub.kill();
    let down = wait_connected(&data, &auth, "hub-cn", false, Duration::from_secs(10));
    let text = ok(Some(&data), &auth, &["node", "status"]);
    let line = text.lines().find(|l| l.contains("hub-cn")).unwrap();
    assert!(line.contains("未连接"), "{text}");
    let entry = peer(&data, &auth, "hub-cn");
    assert!(entry["last_error"].is_string(), "{entry}");
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    let hub = start_hub(root, port);
    let rejoined = wait_connected(&data, &auth, "hub-cn", true, Duration::from_secs(10));
    let after_outage = restarted.elapsed();
    eprintln!(
        "rejoin after a quick restart: {quick:?}; seen down after {down:?}; \
         rejoin after an outage: {after_outage:?} ({rejoined:?} by status polls)"
    );
    assert!(quick < Duration::from_secs(10), "{quick:?}");
    assert!(after_outage < Duration::from_secs(10), "{after_outage:?}");

    // The restarted hub, too, holds a session with the child.
    wait_connected(&hub_dir, &auth, "440106001", true, Duration::from_secs(5));
    assert_eq!(child.terminate(), 0);
    assert_eq!(hub.terminate(), 0);
}

#[test]
fn a_node_its_hub_refuses_says_why_in_status_and_in_its_log() {
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
    // A node certified after the hub took its directory: the hub does not
    // know its key yet.
    let late = root.join("440106002");
    let out = ok(
        Some(&late),
        &auth,
        &["node", "init", "--office", "440106002"],
    );
    let key = out.lines().nth(2).unwrap().trim().to_string();
    ok(
        None,
        &auth,
        &[
            "directory",
            "add",
            "--office",
            "440106002",
            "--name",
            "测试 440106002",
            "--role",
            "township",
            "--division",
            "440106002",
            "--public-key",
            &key,
        ],
    );
    ok(
        Some(&late),
        &auth,
        &[
            "node",
            "directory-import",
            auth.join("directory.tbdir").to_str().unwrap(),
            "--authority-key",
            auth.join("authority.pub").to_str().unwrap(),
        ],
    );
    let log = root.join("late.log");
    let node = NodeProcess::spawn(
        root,
        "440106002",
        "127.0.0.1:0",
        Some(("hub-cn", &hub.quic)),
        "",
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let start = Instant::now();
    let entry = loop {
        let entry = peer(&late, &auth, "hub-cn");
        if entry["refusal"].is_string() {
            break entry;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{entry}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(entry["connected"], false, "{entry}");
    let refusal = entry["refusal"].as_str().unwrap();
    assert!(
        refusal.contains("does not know this node's key"),
        "{refusal}"
    );
    let text = ok(Some(&late), &auth, &["node", "status"]);
    assert!(text.contains("被拒绝 refused"), "{text}");
    assert_eq!(node.terminate(), 0);
    // At the default level, the refusal is in the log as a warning.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("refused"),
        "{logged}"
    );
    assert_eq!(hub.terminate(), 0);
}

#[test]
fn a_malformed_upstream_address_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = root.join("bad.toml");
    for (address, says) in [
        ("hub.example", "host:port"),
        ("hub.example:0", "port"),
        ("hub_example:7443", "host"),
    ] {
        std::fs::write(
            &config,
            format!(
                "data_dir = \"x\"\n[[upstream]]\noffice = \"hub-cn\"\naddress = \"{address}\"\n"
            ),
        )
        .unwrap();
        let out = crate::support::tongban(&["node", "run", "--config", config.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{address}");
        let err = stderr(&out);
        assert!(
            err.contains("upstream address") && err.contains(says),
            "{address}: {err}"
        );
    }
}
