//! The office console end to end, in headless Chromium over real nodes on
//! loopback: `tongban node run` for a Guangzhou window, the national and
//! Chang'an county hubs, and Chang'an's township, DPF and civil affairs;
//! `tongban console` for the four offices; `tests/console-e2e/drive.mjs`
//! (playwright-core) signs in, takes the application at the window with a
//! scan for every item of the notice, pushes it, reviews, re-reviews and
//! decides it at the domicile consoles, and sees the result arrive at the
//! window's console; axe-core audits every page (WCAG 2.1 AA).
//!
//! Needs Chromium (`/usr/bin/chromium`, or `TONGBAN_CHROMIUM`), Node.js and
//! npm: skipped with a message where they are missing, and failed instead
//! under `TONGBAN_REQUIRE_CHROMIUM=1` (`.ci/run` sets it when it installed
//! them). `TONGBAN_CONSOLE_SCREENSHOTS=1` writes every page to
//! `docs/console/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::daemon::{NodeProcess, offices, resident, stage_at};

const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL: &str = "130102-ca";
const COUNTY_HUB: &str = "hub-130102";
const PASSWORD: &str = "console-test-password";

/// A running `tongban console`, stopped when dropped.
struct ConsoleProcess {
    child: Child,
    url: String,
}

impl ConsoleProcess {
    fn start(data: &Path) -> ConsoleProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args([
                "console",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("TONGBAN_DATA_DIR")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        // "控制台运行中 console running: http://127.0.0.1:PORT/"
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .trim_end_matches('/')
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        ConsoleProcess { child, url }
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node processes, killed when dropped, the test's panic included.
struct Nodes(Vec<NodeProcess>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &mut self.0 {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn add_user(data: &Path, name: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["console", "user", "add", name, "--data-dir"])
        .arg(data)
        .env_remove("TONGBAN_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Chromium, node and npm, or why the test cannot run.
fn tools() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("TONGBAN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    for program in ["node", "npm"] {
        if !on_path(program) {
            return Err(format!("no {program} on the PATH"));
        }
    }
    Ok(chromium)
}

#[test]
fn intake_review_and_decision_in_the_browser_over_real_nodes() {
    let chromium = match tools() {
        Ok(c) => c,
        Err(why) => {
            assert!(
                std::env::var_os("TONGBAN_REQUIRE_CHROMIUM").is_none(),
                "TONGBAN_REQUIRE_CHROMIUM is set but {why}"
            );
            eprintln!("skipped: {why} (install chromium, node and npm; see .ci/run)");
            return;
        }
    };
    let started = Instant::now();
    let js_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/console-e2e");
    let install = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund"])
        .current_dir(&js_dir)
        .status()
        .unwrap();
    if !install.success() {
        assert!(
            std::env::var_os("TONGBAN_REQUIRE_CHROMIUM").is_none(),
            "npm install failed in {}",
            js_dir.display()
        );
        eprintln!("skipped: playwright-core and axe-core could not be installed (npm install)");
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            ("hub-cn", "hub", "00"),
            (COUNTY_HUB, "hub", "130102"),
            (ACCEPTANCE, "township", ACCEPTANCE),
            (DOMICILE, "township", DOMICILE),
            (DPF, "county_dpf", "130102"),
            (CIVIL, "county_civil_affairs", "130102"),
        ],
    );
    let data = |office: &str| root.join(office);
    let mut nodes = Nodes(vec![NodeProcess::start(root, "hub-cn", None)]);
    let hub = nodes.0[0].quic.clone();
    nodes
        .0
        .push(NodeProcess::start(root, COUNTY_HUB, Some(("hub-cn", &hub))));
    let county = nodes.0[1].quic.clone();
    nodes
        .0
        .push(NodeProcess::start(root, ACCEPTANCE, Some(("hub-cn", &hub))));
    for office in [DOMICILE, DPF, CIVIL] {
        nodes.0.push(NodeProcess::start(
            root,
            office,
            Some((COUNTY_HUB, &county)),
        ));
    }
    let users = [
        (ACCEPTANCE, "窗口01"),
        (DOMICILE, "初审01"),
        (DPF, "复审01"),
        (CIVIL, "审定01"),
    ];
    let mut consoles = Vec::new();
    for (office, user) in users {
        add_user(&data(office), user);
        consoles.push((office, user, ConsoleProcess::start(&data(office))));
    }
    let setup = started.elapsed();

    let screenshots = std::env::var_os("TONGBAN_CONSOLE_SCREENSHOTS").map(|_| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let id = resident(7);
    let console_json = |office: &str| {
        let (_, user, process) = consoles.iter().find(|(o, ..)| *o == office).unwrap();
        serde_json::json!({"url": process.url, "user": user})
    };
    let config = serde_json::json!({
        "chromium": chromium,
        "password": PASSWORD,
        "screenshots": screenshots,
        "applicant": {
            "name": "李四",
            "resident_id": id,
            "hukou": DOMICILE,
            "certificate": format!("{id}62"),
        },
        "consoles": {
            "acceptance": console_json(ACCEPTANCE),
            "domicile": console_json(DOMICILE),
            "dpf": console_json(DPF),
            "civil": console_json(CIVIL),
        },
    });
    let config_file = root.join("drive.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let browser_started = Instant::now();
    let out = Command::new("node")
        .arg("drive.mjs")
        .arg(&config_file)
        .current_dir(&js_dir)
        .output()
        .unwrap();
    let browser = browser_started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!(
        "console e2e: setup {:.1} s, browser {:.1} s, {} pages audited, findings {}",
        setup.as_secs_f64(),
        browser.as_secs_f64(),
        seen["audited"].as_array().map_or(0, Vec::len),
        seen["findings"]
    );
    assert_eq!(seen["serious"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["result_stage"], "result_received", "{seen}");
    assert_eq!(seen["final_stage"], "notified", "{seen}");
    assert_eq!(seen["forged_review"], 422, "{seen}");
    assert_eq!(seen["all_signatures_valid"], true, "{seen}");
    let case = seen["case_id"].as_str().unwrap();
    // What the browser saw is what the nodes hold, and each step names the
    // operator who signed in.
    assert_eq!(stage_at(&data(ACCEPTANCE), &auth, case), "notified");
    let history = crate::daemon::ok(Some(&data(ACCEPTANCE)), &auth, &["history", case]);
    for (_, user) in users {
        assert!(history.contains(user), "{user} not in\n{history}");
    }
    drop(consoles);
    drop(nodes);
}

#[test]
fn the_console_stays_on_loopback_and_needs_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(root, &[(ACCEPTANCE, "township", ACCEPTANCE)]);
    let data = root.join(ACCEPTANCE);
    // A LAN address without `[console] listen` in the node's configuration.
    let out = crate::daemon::tongban(Some(&data), &auth, &["console", "--listen", "0.0.0.0:8088"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::stderr(&out);
    assert!(err.contains("[console] listen"), "{err}");
    // On loopback, but no node runs: the console does not open the store.
    let out = crate::daemon::tongban(Some(&data), &auth, &["console", "--listen", "127.0.0.1:0"]);
    assert_ne!(out.status.code(), Some(0));
    let err = crate::support::stderr(&out);
    assert!(err.contains("节点未运行"), "{err}");
    // Accounts: a name that is no operator, or a short password, is refused.
    let add = |name: &str, password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
            .args(["console", "user", "add", name, "--data-dir"])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(add("窗口01", "short").status.code(), Some(1));
    assert_eq!(add("窗口01", PASSWORD).status.code(), Some(0));
    assert_eq!(add("窗口01", PASSWORD).status.code(), Some(1));
    let listed = crate::daemon::ok(Some(&data), &auth, &["console", "user", "list"]);
    assert_eq!(listed.trim(), "窗口01");
    let file = std::fs::read_to_string(data.join("console-users.json")).unwrap();
    assert!(
        file.contains("$argon2id$") && !file.contains(PASSWORD),
        "{file}"
    );
}
