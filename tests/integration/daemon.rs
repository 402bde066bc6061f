//! Real nodes over real QUIC on 127.0.0.1: `tongban node run` processes killed
//! with SIGKILL in the middle of a sync and restarted, commands reaching a running
//! node through its control API, clean shutdown on SIGTERM; and in-process nodes
//! behind a fault-injecting UDP relay (loss, delay, partition, reconnect).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tongban_domain::ids::{Timestamp, resident_id_check_char};
use tongban_domain::stage::Role;
use tongban_node::daemon::{Clock, Daemon, NodeConfig, StartOptions};
use tongban_node::provision::{OfficeSpec, provision};
use tongban_transport::relay::FaultRelay;

use crate::support::{stderr, stdout};

pub(crate) fn tongban(data: Option<&Path>, auth: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongban"));
    cmd.args(args)
        .env_remove("TONGBAN_DATA_DIR")
        .env_remove("RUST_LOG")
        .env("TONGBAN_AUTHORITY_DIR", auth);
    if let Some(data) = data {
        cmd.env("TONGBAN_DATA_DIR", data);
    }
    cmd.output().unwrap()
}

pub(crate) fn ok(data: Option<&Path>, auth: &Path, args: &[&str]) -> String {
    let out = tongban(data, auth, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs a command that must be refused: non-zero exit, `reason` on stderr.
fn refused(data: Option<&Path>, auth: &Path, args: &[&str], reason: &str) {
    let out = tongban(data, auth, args);
    assert_ne!(out.status.code(), Some(0), "{args:?}\n{}", stdout(&out));
    assert!(stderr(&out).contains(reason), "{args:?}\n{}", stderr(&out));
}

/// Makes a node for each `(office, role, division)` under `root`, certified by
/// one authority; returns the authority folder.
pub(crate) fn offices(root: &Path, specs: &[(&str, &str, &str)]) -> PathBuf {
    let auth = root.join("auth");
    ok(None, &auth, &["directory", "init"]);
    for (office, role, division) in specs {
        let data = root.join(office);
        let out = ok(Some(&data), &auth, &["node", "init", "--office", office]);
        let key = out.lines().nth(2).unwrap().trim().to_string();
        ok(
            None,
            &auth,
            &[
                "directory",
                "add",
                "--office",
                office,
                "--name",
                &format!("测试 {office}"),
                "--role",
                role,
                "--division",
                division,
                "--public-key",
                &key,
            ],
        );
    }
    for (office, ..) in specs {
        let data = root.join(office);
        ok(
            Some(&data),
            &auth,
            &[
                "node",
                "directory-import",
                auth.join("directory.tbdir").to_str().unwrap(),
                "--authority-key",
                auth.join("authority.pub").to_str().unwrap(),
            ],
        );
    }
    auth
}

/// A running `tongban node run` process.
pub(crate) struct NodeProcess {
    pub(crate) child: Child,
    pub(crate) quic: String,
}

impl NodeProcess {
    pub(crate) fn start(root: &Path, office: &str, upstream: Option<(&str, &str)>) -> NodeProcess {
        NodeProcess::start_with(root, office, upstream, "")
    }

    /// Starts a node whose config carries `extra` lines (before any upstream).
    pub(crate) fn start_with(
        root: &Path,
        office: &str,
        upstream: Option<(&str, &str)>,
        extra: &str,
    ) -> NodeProcess {
        NodeProcess::spawn(root, office, "127.0.0.1:0", upstream, extra, Stdio::null())
    }

    /// Starts a node listening on `listen`, its log (at the default level)
    /// going to `stderr`.
    pub(crate) fn spawn(
        root: &Path,
        office: &str,
        listen: &str,
        upstream: Option<(&str, &str)>,
        extra: &str,
        stderr: Stdio,
    ) -> NodeProcess {
        let config = root.join(format!("{office}.toml"));
        let mut text = format!(
            "data_dir = {:?}\nlisten = \"{listen}\"\nmax_backoff_secs = 1\n{extra}",
            root.join(office)
        );
        if let Some((hub, address)) = upstream {
            text.push_str(&format!(
                "\n[[upstream]]\noffice = \"{hub}\"\naddress = \"{address}\"\n"
            ));
        }
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["node", "run", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        // "节点运行中 node running: OFFICE QUIC ADDR 控制接口 control ADDR"
        let quic = first
            .split_whitespace()
            .skip_while(|w| *w != "QUIC")
            .nth(1)
            .unwrap_or_else(|| panic!("no QUIC address in {first:?}"))
            .to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        NodeProcess { child, quic }
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the node did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Attaches a scan for every item of the notice `created` (the JSON of `case
/// new`), accepts and pushes `case` through the CLI: a case travels only once
/// pushed.
pub(crate) fn push_cli(data: &Path, auth: &Path, case: &str, created: &serde_json::Value) {
    let scans = tempfile::tempdir().unwrap();
    for item in created["notice"].as_array().unwrap() {
        let code = item[0].as_str().unwrap();
        let file = scans.path().join(format!("{code}.jpg"));
        std::fs::write(&file, format!("scan of {code}")).unwrap();
        ok(
            Some(data),
            auth,
            &[
                "case",
                "attach",
                case,
                file.to_str().unwrap(),
                "--kind",
                code,
                "--operator",
                "窗口01",
            ],
        );
    }
    for step in ["accept", "push"] {
        ok(
            Some(data),
            auth,
            &["case", step, case, "--operator", "窗口01"],
        );
    }
}

/// Starts a case on `node` from `form`, attaches a scan for every item of its
/// notice, accepts and pushes it: a case travels only once pushed.
pub(crate) fn push_new(
    node: &tongban_node::local::LocalNode,
    form: &tongban_case::IntakeForm,
    now: tongban_domain::ids::Timestamp,
) -> tongban_domain::ids::CaseId {
    let op = tongban_domain::ids::Operator::parse("窗口01").unwrap();
    let made = node.new_case(form, &op, now).unwrap();
    for (code, _) in &made.notice {
        let scan = format!("scan of {code} for {}", made.case_id);
        node.attach_reader(
            &made.case_id,
            scan.as_bytes(),
            &format!("{code}.jpg"),
            code,
            "image/jpeg",
            &op,
            now,
        )
        .unwrap();
    }
    for to in [
        tongban_domain::stage::Stage::Accepted,
        tongban_domain::stage::Stage::Pushed,
    ] {
        node.act(
            &made.case_id,
            to,
            &tongban_case::Payload::default(),
            &op,
            now,
        )
        .unwrap();
    }
    made.case_id
}

/// `tongban case new --json` for the `n`th test resident (a Hebei resident with a
/// level-2 mental disability certificate, in a dibao household, applying for the
/// living subsidy) at the node in `data`.
pub(crate) fn case_new(data: &Path, auth: &Path, n: usize) -> std::process::Output {
    let id = resident(n);
    let cert = format!("{id}62");
    tongban(
        Some(data),
        auth,
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
            "--json",
        ],
    )
}

/// [`case_new`], which must succeed: what it printed.
pub(crate) fn case_new_ok(data: &Path, auth: &Path, n: usize) -> serde_json::Value {
    let out = case_new(data, auth, n);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn resident(n: usize) -> String {
    let first17 = format!("1301021968051{:04}", n % 10_000);
    format!("{first17}{}", resident_id_check_char(&first17).unwrap())
}

fn case_ids(data: &Path, auth: &Path) -> Vec<String> {
    let out = tongban(Some(data), auth, &["case", "list", "--json"]);
    if out.status.code() != Some(0) {
        return Vec::new();
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["case_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_node_killed_mid_sync_restarts_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            ("440106001", "township", "440106001"),
            ("130102001", "township", "130102001"),
        ],
    );
    let hub = NodeProcess::start(root, "hub-cn", None);
    let acceptance = NodeProcess::start(root, "440106001", Some(("hub-cn", &hub.quic)));
    let acceptance_dir = root.join("440106001");
    let domicile_dir = root.join("130102001");

    // Cases made through the running node's control API (the store is the
    // daemon's: a direct open would be refused as locked).
    let n = 24;
    let mut made = Vec::new();
    for i in 0..n {
        let value = case_new_ok(&acceptance_dir, &auth, i);
        let case = value["case_id"].as_str().unwrap().to_string();
        push_cli(&acceptance_dir, &auth, &case, &value);
        made.push(case);
    }
    made.sort();
    assert_eq!(case_ids(&acceptance_dir, &auth), made);
    let status = ok(Some(&acceptance_dir), &auth, &["node", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["running"], true, "{status}");

    // The domicile node starts, and is killed as soon as the first cases arrive.
    let domicile = NodeProcess::start(root, "130102001", Some(("hub-cn", &hub.quic)));
    let start = Instant::now();
    let mut killed_with = None;
    while start.elapsed() < Duration::from_secs(30) {
        let have = case_ids(&domicile_dir, &auth).len();
        if have > 0 {
            killed_with = Some(have);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    domicile.kill();
    assert!(killed_with.is_some(), "no case reached the domicile node");

    // Restarted from its store, it converges: every case, nothing lost.
    let domicile = NodeProcess::start(root, "130102001", Some(("hub-cn", &hub.quic)));
    let start = Instant::now();
    loop {
        if case_ids(&domicile_dir, &auth) == made {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the domicile node did not converge: {} of {n}",
            case_ids(&domicile_dir, &auth).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = ok(Some(&domicile_dir), &auth, &["node", "status"]);
    assert!(status.contains("hub-cn"), "{status}");
    // `case list --office` keeps the cases on that office's route.
    for (office, want) in [("440106001", n), ("130102001", n), ("130104001", 0)] {
        let out = ok(
            Some(&domicile_dir),
            &auth,
            &["case", "list", "--json", "--office", office],
        );
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), want, "--office {office}");
    }

    // A backup of a running node is taken by the node, and verifies.
    let backup = root.join("domicile.tbbak");
    ok(
        Some(&domicile_dir),
        &auth,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    ok(None, &auth, &["backup", "verify", backup.to_str().unwrap()]);

    // A case archive of a running node is built by the node, and verifies on
    // nothing but the archive and the authority key.
    let archive = root.join("case.tbarc");
    let out = ok(
        Some(&domicile_dir),
        &auth,
        &[
            "case",
            "export",
            &made[0],
            "--out",
            archive.to_str().unwrap(),
        ],
    );
    assert!(out.contains("已导出 exported"), "{out}");
    let authority_key = auth.join("authority.pub");
    ok(
        None,
        &auth,
        &[
            "verify",
            "--archive",
            archive.to_str().unwrap(),
            "--authority-key",
            authority_key.to_str().unwrap(),
        ],
    );
    // An unknown case is refused through the daemon too: non-zero, nothing written.
    let absent = root.join("absent.tbarc");
    refused(
        Some(&domicile_dir),
        &auth,
        &[
            "case",
            "export",
            "130102001-20250101-AAAAAA",
            "--out",
            absent.to_str().unwrap(),
        ],
        "is not held by this node",
    );
    assert!(!absent.exists());

    // A newer directory (one more office certified) imported into the running
    // domicile node is taken by it and passed on to its hub.
    let newcomer = root.join("130102002");
    let out = ok(
        Some(&newcomer),
        &auth,
        &["node", "init", "--office", "130102002"],
    );
    let key = out.lines().nth(2).unwrap().trim().to_string();
    ok(
        None,
        &auth,
        &[
            "directory",
            "add",
            "--office",
            "130102002",
            "--name",
            "测试 130102002",
            "--role",
            "township",
            "--division",
            "130102002",
            "--public-key",
            &key,
        ],
    );
    let directory_file = auth.join("directory.tbdir");
    let imported = ok(
        Some(&domicile_dir),
        &auth,
        &[
            "node",
            "directory-import",
            directory_file.to_str().unwrap(),
            "--authority-key",
            authority_key.to_str().unwrap(),
        ],
    );
    assert!(imported.contains("running node took it"), "{imported}");
    let version: u64 = imported
        .split("version ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{imported}"));
    let directory_version = |data: &Path| {
        let status = ok(Some(data), &auth, &["node", "status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["directory_version"].as_u64()
    };
    assert_eq!(directory_version(&domicile_dir), Some(version));
    let start = Instant::now();
    while directory_version(&root.join("hub-cn")) != Some(version) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the hub did not receive directory version {version}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same directory again is refused: not newer, exit non-zero.
    refused(
        Some(&domicile_dir),
        &auth,
        &["node", "directory-import", directory_file.to_str().unwrap()],
        "not newer",
    );
    // A wrong authority key is refused before anything is taken.
    let stranger = root.join("stranger.pub");
    std::fs::write(&stranger, format!("{}\n", "ab".repeat(32))).unwrap();
    refused(
        Some(&domicile_dir),
        &auth,
        &[
            "node",
            "directory-import",
            directory_file.to_str().unwrap(),
            "--authority-key",
            stranger.to_str().unwrap(),
        ],
        "trusts authority",
    );

    // SIGTERM stops each node cleanly; then every store verifies directly.
    assert_eq!(domicile.terminate(), 0);
    assert_eq!(acceptance.terminate(), 0);
    assert_eq!(hub.terminate(), 0);
    for office in ["hub-cn", "440106001", "130102001"] {
        let data = root.join(office);
        assert!(!data.join("control.addr").exists());
        assert!(!data.join("control.sock").exists());
        let out = ok(Some(&data), &auth, &["verify", "--all", "--json"]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["ok"], true, "{office}: {report}");
        assert_eq!(report["cases"], n as u64, "{office}");
    }
    // Status from the store alone remembers the peers.
    let status = ok(Some(&domicile_dir), &auth, &["node", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["running"], false);
    assert_eq!(status["materials_missing"], 0, "{status}");
    assert!(
        status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["office"] == "hub-cn")
    );
}

#[test]
fn a_node_without_its_certificate_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = root.join("auth");
    let data = root.join("440106001");
    ok(
        Some(&data),
        &auth,
        &["node", "init", "--office", "440106001"],
    );
    let config = root.join("n.toml");
    std::fs::write(&config, format!("data_dir = {data:?}\n")).unwrap();
    let out = tongban(
        None,
        &auth,
        &["node", "run", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot start"), "{}", stderr(&out));
    let config = root.join("bad.toml");
    std::fs::write(&config, "data_dir = 3\n").unwrap();
    let out = tongban(
        None,
        &auth,
        &["node", "run", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("data_dir"), "{}", stderr(&out));
}

/// In-process nodes: a hub and two townships, one of them behind a relay that
/// loses and delays datagrams, then partitions and heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_survives_loss_delay_and_a_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let specs = [
        OfficeSpec::new("hub-cn", Role::Hub, "00"),
        OfficeSpec::new("440106001", Role::Township, "440106001"),
        OfficeSpec::new("130102001", Role::Township, "130102001"),
    ];
    let from = Timestamp(Timestamp::now().0 - 86_400_000);
    let to = Timestamp(Timestamp::now().0 + 365 * 86_400_000);
    provision(root, &specs, from, to).unwrap();
    let options = StartOptions {
        clock: Clock::System,
        control_api: false,
        min_backoff: Duration::from_millis(50),
        ..StartOptions::default()
    };
    let config = |id: &str, up: Option<std::net::SocketAddr>| {
        NodeConfig::loopback(&root.join(id), up.map(|address| ("hub-cn", address)))
    };
    let hub = Daemon::start(&config("hub-cn", None), options.clone())
        .await
        .unwrap();
    let relay = FaultRelay::start(hub.listen_addr(), 42).await.unwrap();
    relay.set_loss(0.15);
    relay.set_delay(Duration::from_millis(15));
    let acceptance = Daemon::start(
        &config("440106001", Some(hub.listen_addr())),
        options.clone(),
    )
    .await
    .unwrap();
    let domicile = Daemon::start(
        &config("130102001", Some(relay.local_addr())),
        options.clone(),
    )
    .await
    .unwrap();

    let make = |range: std::ops::Range<usize>| {
        let handle = acceptance.handle();
        async move {
            let mut ids = Vec::new();
            for i in range {
                let id = resident(i);
                let form = tongban_case::IntakeForm {
                    name: "王五".into(),
                    resident_id: id.clone(),
                    hukou_township: "130102001".into(),
                    certificate: format!("{id}62"),
                    dibao: true,
                    subsidy_kinds: vec!["living".into()],
                    ..Default::default()
                };
                let made = handle
                    .exec(move |node, now| push_new(node, &form, now))
                    .await
                    .unwrap();
                ids.push(made);
            }
            ids
        }
    };
    let held = |daemon: &Daemon| {
        let handle = daemon.handle();
        async move {
            handle
                .exec(|node, _| node.store().stats().map(|s| s.cases).unwrap_or(0))
                .await
                .unwrap()
        }
    };
    let wait = |daemon: &Daemon, want: u64, what: &'static str| {
        let handle = daemon.handle();
        async move {
            let start = Instant::now();
            loop {
                let have = handle
                    .exec(|node, _| node.store().stats().map(|s| s.cases).unwrap_or(0))
                    .await
                    .unwrap();
                if have == want {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{what}: {have} of {want}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Lossy, slow link: everything arrives.
    let first = make(0..10).await;
    wait(&domicile, 10, "over a lossy link").await;

    // Partition: work goes on at the acceptance office; nothing reaches the
    // domicile until the link heals, then everything does.
    relay.set_partitioned(true);
    let second = make(10..20).await;
    wait(&hub, 20, "at the hub during the partition").await;
    assert_eq!(held(&domicile).await, 10);
    relay.set_partitioned(false);
    relay.set_loss(0.0);
    wait(&domicile, 20, "after the partition healed").await;
    assert!(relay.stats().dropped > 0, "the relay dropped nothing");

    // Same documents everywhere, and every history verifies.
    for case in first.iter().chain(second.iter()) {
        let mut heads = Vec::new();
        for daemon in [&acceptance, &hub, &domicile] {
            let id = case.clone();
            let (h, ok) = daemon
                .handle()
                .exec(move |node, now| {
                    let mut doc = node.case(&id).unwrap();
                    let report = doc
                        .verify(node.directory().unwrap(), node.calendar(), now)
                        .unwrap();
                    (doc.heads(), report.is_ok())
                })
                .await
                .unwrap();
            assert!(ok, "{case} does not verify");
            heads.push(h);
        }
        assert!(heads.windows(2).all(|w| w[0] == w[1]), "{case} diverged");
    }
    for daemon in [domicile, acceptance, hub] {
        daemon.shutdown().await.unwrap();
    }
}

/// Waits (up to 60 s) until `done`, naming `what` when it times out.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stage code of `case` at the node in `data`, empty while it holds none.
pub(crate) fn stage_at(data: &Path, auth: &Path, case: &str) -> String {
    let out = tongban(Some(data), auth, &["case", "show", case, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["stage"].as_str().map(str::to_string))
        .unwrap_or_default()
}
