//! automerge-repo 2.x: `js/peer.mjs` in two Node processes (the hub and the
//! fresh repo), each on `NodeFSStorageAdapter`, over a WebSocket on
//! 127.0.0.1, driven by JSON lines on their stdin and stdout.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;
use serde_json::{Value, json};

use crate::fixture::{Doc, changed_indices};

/// The folder of `peer.mjs` and its package.json.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Whether `node` and `npm` run; their versions if so.
pub fn available() -> Option<(String, String)> {
    let version = |program: &str| {
        let out = Command::new(program).arg("--version").output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    Some((version("node")?, version("npm")?))
}

/// `npm ci` in `js/` unless its node_modules are already installed.
pub fn install() -> Result<()> {
    let dir = js_dir();
    if dir.join("node_modules/.package-lock.json").exists() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    Ok(())
}

/// The installed version of `@automerge/automerge-repo`.
pub fn repo_version() -> Option<String> {
    let text = std::fs::read_to_string(
        js_dir().join("node_modules/@automerge/automerge-repo/package.json"),
    )
    .ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value["version"].as_str().map(str::to_string)
}

/// One Node process running `peer.mjs` on a storage directory.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(storage: &Path) -> Result<Peer> {
        let mut child = Command::new("node")
            .arg(js_dir().join("peer.mjs"))
            .arg(storage)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        Ok(Peer {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one command; answers with its result, moving `bar` on the
    /// progress lines before it.
    fn call(&mut self, command: Value, bar: &ProgressBar) -> Result<Value> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let start = bar.position();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the node peer exited during {}", command["cmd"]);
            }
            let value: Value = serde_json::from_str(&line)
                .with_context(|| format!("the node peer said {line:?}"))?;
            if let Some(done) = value["progress"].as_u64() {
                bar.set_position(start + done);
                continue;
            }
            if let Some(error) = value["error"].as_str() {
                bail!("the node peer failed {}: {error}", command["cmd"]);
            }
            return Ok(value);
        }
    }

    fn exit(mut self, bar: &ProgressBar) -> Result<()> {
        self.call(json!({"cmd": "exit"}), bar)?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // An error path: do not leave a Node process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one size measured (times in the Node processes, from the moment the
/// fresh repo's network adapter is added).
pub struct JsRun {
    /// Initial: until every handle had the hub's heads.
    pub initial_synced: Duration,
    /// Initial: until `repo.flush()` of all of them returned.
    pub initial_durable: Duration,
    /// Resume: until the changed handles had the hub's new heads.
    pub resume_synced: Duration,
    /// Finds asked again after "unavailable" (initial + resume).
    pub retries: u64,
    /// Resume: until `repo.flush()` of the changed ones returned.
    pub resume_durable: Duration,
}

fn millis(value: &Value, key: &str) -> Result<Duration> {
    let ms = value[key]
        .as_f64()
        .ok_or_else(|| anyhow!("the node peer did not say {key}: {value}"))?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// Runs initial at `docs.len()` documents (read from `files`, as written by
/// [`crate::fixture::write_files`]), then resume with `changed` of them
/// changed on the hub, in `work` (an empty directory).
pub fn run(
    docs: &[Doc],
    files: &Path,
    changed: usize,
    window: usize,
    work: &Path,
    bar: &ProgressBar,
) -> Result<JsRun> {
    let hub_dir = work.join("hub");
    let fresh_dir = work.join("fresh");
    std::fs::create_dir_all(&hub_dir)?;
    std::fs::create_dir_all(&fresh_dir)?;
    let heads: Vec<Vec<String>> = docs.iter().map(Doc::heads_hex).collect();

    // The hub's storage: each document imported once, flushed, process exits.
    bar.set_message("automerge-repo: filling the hub");
    bar.set_length(docs.len() as u64);
    bar.set_position(0);
    let mut filler = Peer::spawn(&hub_dir)?;
    let imported = filler.call(
        json!({"cmd": "import", "dir": files, "count": docs.len()}),
        bar,
    )?;
    filler.exit(bar)?;
    let ids: Vec<String> =
        serde_json::from_value(imported["ids"].clone()).context("the ids the hub imported")?;

    // The hub restarted on its storage (nothing in memory), listening.
    let mut hub = Peer::spawn(&hub_dir)?;
    let port = hub.call(json!({"cmd": "serve"}), bar)?["port"]
        .as_u64()
        .ok_or_else(|| anyhow!("the hub did not say its port"))?;

    // Initial: a fresh repo on empty storage is told the ids and finds them
    // all at once.
    bar.set_message("automerge-repo: initial sync");
    bar.set_position(0);
    let mut fresh = Peer::spawn(&fresh_dir)?;
    let initial = fresh.call(
        json!({"cmd": "sync", "port": port, "ids": ids, "heads": heads, "window": window}),
        bar,
    )?;
    fresh.exit(bar)?;

    // Resume: the fresh repo is down; `changed` documents change on the hub.
    bar.set_message("automerge-repo: changing on the hub");
    let picks = changed_indices(ids.len(), changed);
    let changed_ids: Vec<&String> = picks.iter().map(|&i| &ids[i]).collect();
    let new_heads = hub.call(json!({"cmd": "change", "ids": changed_ids}), bar)?;
    let new_heads: Vec<Vec<String>> = serde_json::from_value(new_heads["heads"].clone())
        .context("the heads the hub changed to")?;

    // The fresh repo comes back on its storage holding all N (loaded into
    // handles before connecting, not timed), then reconnects.
    bar.set_message("automerge-repo: reloading the fresh repo");
    let mut fresh = Peer::spawn(&fresh_dir)?;
    fresh.call(json!({"cmd": "load", "ids": ids}), bar)?;
    bar.set_message("automerge-repo: resume");
    bar.set_length(changed_ids.len() as u64);
    bar.set_position(0);
    let resume = fresh.call(
        json!({"cmd": "sync", "port": port, "ids": changed_ids, "heads": new_heads, "window": window}),
        bar,
    )?;
    fresh.exit(bar)?;
    hub.exit(bar)?;

    Ok(JsRun {
        initial_synced: millis(&initial, "synced_ms")?,
        initial_durable: millis(&initial, "flushed_ms")?,
        resume_synced: millis(&resume, "synced_ms")?,
        resume_durable: millis(&resume, "flushed_ms")?,
        retries: initial["retries"].as_u64().unwrap_or(0) + resume["retries"].as_u64().unwrap_or(0),
    })
}
