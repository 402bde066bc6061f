//! The peers' bench of issue #18: Tongban's `initial` and `resume` sync
//! workloads run, in the same run, on its peers — samod (the Rust
//! automerge-repo, TCP and filesystem storage) and, where Node.js is present,
//! automerge-repo 2.x — with the very documents `tongban bench` syncs
//! (`tongban_node::fixture`'s finished cases), and Tongban's own figures taken
//! from the shipped binary (`tongban bench … --json`), all in one table.
//!
//! What it owns: measuring the peers, and putting their figures next to
//! Tongban's. What it must never do: ship in the `tongban` binary, or be
//! built by the root workspace (and so by CI): it is its own workspace, which
//! the root `Cargo.toml` excludes, so samod and automerge-repo stay out of
//! Tongban's dependency tree. It measures; it never writes a figure down.
//!
//! ```text
//! cargo run --release --manifest-path bench/peers/Cargo.toml -- \
//!     [--docs 5000] [--changed 100] [--json] [--tongban PATH]
//! ```

mod fixture;
mod js_peer;
mod samod_peer;
mod tongban;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(
    about = "Tongban's initial and resume sync workloads on samod and automerge-repo, in the same run as Tongban's own"
)]
struct Args {
    /// Documents held (initial syncs them all; resume holds them). Resume
    /// also runs at 1,000 held when this is larger.
    #[arg(long, default_value_t = 5000)]
    docs: u64,
    /// Documents changed on the hub while the fresh side is away (resume).
    #[arg(long, default_value_t = 100)]
    changed: u64,
    /// The peers' larger size, when it must be smaller than --docs (a peer
    /// too slow at --docs); Tongban still runs at --docs.
    #[arg(long)]
    peer_docs: Option<u64>,
    /// automerge-repo's larger size, when it must be smaller still (its
    /// untimed hub fill and reload are slow); default: the peers' size.
    #[arg(long)]
    js_docs: Option<u64>,
    /// Finds in flight at once on samod's fresh side (0: all at once).
    #[arg(long, default_value_t = 100)]
    samod_window: usize,
    /// Finds in flight at once on automerge-repo's fresh side (0: all).
    #[arg(long, default_value_t = 100)]
    js_window: usize,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// The shipped `tongban` binary (the root workspace's release build).
    #[arg(long, default_value_os_t = default_tongban())]
    tongban: PathBuf,
    /// Skip Tongban's own figures.
    #[arg(long)]
    no_tongban: bool,
    /// Skip samod.
    #[arg(long)]
    no_samod: bool,
    /// Skip automerge-repo (JavaScript).
    #[arg(long)]
    no_js: bool,
}

fn default_tongban() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/tongban")
}

/// One measured (or unmeasured) figure.
#[derive(Debug, Serialize, Clone)]
struct Row {
    system: String,
    workload: &'static str,
    docs: u64,
    changed: Option<u64>,
    /// docs/s for initial, ms for resume; `None` when not measured.
    value: Option<f64>,
    unit: &'static str,
    /// Tongban's figure over this one, the way round that says how many
    /// times faster Tongban is (initial: its docs/s over theirs; resume:
    /// their ms over its ms).
    tongban_ratio: Option<f64>,
    note: String,
}

/// Says the last two rows on stderr as soon as they are measured, so a run
/// cut short still leaves its figures.
fn say(rows: &[Row]) {
    for r in &rows[rows.len().saturating_sub(2)..] {
        eprintln!(
            "measured: {} {} N={} K={:?}: {:?} {} ({})",
            r.system, r.workload, r.docs, r.changed, r.value, r.unit, r.note
        );
    }
}

/// Records a peer's failure at `n` as unmeasured rows, and says so.
fn failed(rows: &mut Vec<Row>, system: &str, n: u64, changed: u64, e: &anyhow::Error) {
    eprintln!("{system} at {n} failed: {e:#}");
    for (workload, k, unit) in [
        ("initial", None, "docs/s"),
        ("resume", Some(changed.min(n)), "ms"),
    ] {
        rows.push(Row {
            system: system.into(),
            workload,
            docs: n,
            changed: k,
            value: None,
            unit,
            tongban_ratio: None,
            note: format!("failed: {e:#}"),
        });
    }
}

/// Finds in flight: `w`, or all `n` when `w` is 0.
fn window(w: usize, n: u64) -> usize {
    if w == 0 { n as usize } else { w }
}

/// The machine's load averages, to show what else ran.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn main() -> Result<()> {
    let args = Args::parse();
    let changed = args.changed;
    let peer_docs = args.peer_docs.unwrap_or(args.docs).min(args.docs);
    // Sizes: 1,000 held (resume's small size) and the large one.
    let sizes = |large: u64| -> Vec<u64> {
        let mut sizes = vec![large.min(1000), large];
        sizes.dedup();
        sizes
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let started = Instant::now();
    let load_before = loadavg();

    // Tongban first, while the machine is quiet, from the shipped binary.
    if !args.no_tongban {
        for &n in &sizes(args.docs) {
            let initial = tongban::figure(
                &args.tongban,
                &["initial".into(), "--docs".into(), n.to_string()],
                "sync_docs_per_s",
            );
            let resume = tongban::figure(
                &args.tongban,
                &[
                    "resume".into(),
                    "--docs".into(),
                    n.to_string(),
                    "--changed".into(),
                    changed.to_string(),
                ],
                "resume_ms",
            );
            for (workload, k, unit, figure) in [
                ("initial", None, "docs/s", initial),
                ("resume", Some(changed), "ms", resume),
            ] {
                let (value, note) = match figure {
                    Ok(v) => (Some(v), String::new()),
                    Err(why) => {
                        eprintln!("Tongban's {workload} figure at {n} was not measured: {why}");
                        (None, format!("not measured: {why}"))
                    }
                };
                rows.push(Row {
                    system: "Tongban".into(),
                    workload,
                    docs: n,
                    changed: k,
                    value,
                    unit,
                    tongban_ratio: None,
                    note,
                });
            }
            say(&rows);
        }
    }

    // The documents: the fixture's first N finished cases.
    let work = tempfile::tempdir().context("a work directory")?;
    let progress = bar();
    let docs = if args.no_samod && args.no_js {
        Vec::new()
    } else {
        progress.set_message("building the fixture's cases");
        progress.set_length(peer_docs);
        let docs = fixture::build(&work.path().join("route"), peer_docs, &progress)?;
        let bytes: usize = docs.iter().map(|d| d.bytes.len()).sum();
        notes.push(format!(
            "The documents: {} finished cases of tongban_node::fixture, {:.1} KB each on average as Automerge saves.",
            docs.len(),
            bytes as f64 / docs.len().max(1) as f64 / 1024.0
        ));
        docs
    };

    if !args.no_samod {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        for &n in &sizes(peer_docs) {
            let dir = work.path().join(format!("samod-{n}"));
            let run = match runtime.block_on(samod_peer::run(
                &docs[..n as usize],
                changed as usize,
                window(args.samod_window, n),
                &dir,
                &progress,
            )) {
                Ok(run) => run,
                Err(e) => {
                    failed(&mut rows, "samod 0.16", n, changed, &e);
                    continue;
                }
            };
            rows.push(Row {
                system: "samod 0.16".into(),
                workload: "initial",
                docs: n,
                changed: None,
                value: Some(n as f64 / run.initial_durable.as_secs_f64()),
                unit: "docs/s",
                tongban_ratio: None,
                note: format!(
                    "all heads in {}, on disk (repo stopped) {}",
                    secs(run.initial_synced),
                    secs(run.initial_durable)
                ),
            });
            rows.push(Row {
                system: "samod 0.16".into(),
                workload: "resume",
                docs: n,
                changed: Some(changed.min(n)),
                value: Some(ms(run.resume_synced)),
                unit: "ms",
                tongban_ratio: None,
                note: format!(
                    "K heads in {:.0} ms, repo stopped (writes on disk) at {:.0} ms",
                    ms(run.resume_synced),
                    ms(run.resume_durable)
                ),
            });
            let _ = std::fs::remove_dir_all(&dir);
            say(&rows);
        }
    }

    if !args.no_js {
        match js_peer::available() {
            None => {
                eprintln!("automerge-repo was skipped: node and npm are not both on PATH");
                notes.push("automerge-repo was skipped: Node.js or npm is missing.".into());
            }
            Some((node, npm)) => {
                progress.set_message("npm ci (automerge-repo)");
                js_peer::install()?;
                let version = js_peer::repo_version().unwrap_or_else(|| "2.x".into());
                notes.push(format!(
                    "automerge-repo {version} on Node.js {node} (npm {npm})."
                ));
                let files = work.path().join("saves");
                fixture::write_files(&docs, &files)?;
                let js_docs = args.js_docs.unwrap_or(peer_docs).min(peer_docs);
                for &n in &sizes(js_docs) {
                    let dir = work.path().join(format!("js-{n}"));
                    let run = match js_peer::run(
                        &docs[..n as usize],
                        &files,
                        changed as usize,
                        window(args.js_window, n),
                        &dir,
                        &progress,
                    ) {
                        Ok(run) => run,
                        Err(e) => {
                            failed(
                                &mut rows,
                                &format!("automerge-repo {version}"),
                                n,
                                changed,
                                &e,
                            );
                            continue;
                        }
                    };
                    let system = format!("automerge-repo {version}");
                    rows.push(Row {
                        system: system.clone(),
                        workload: "initial",
                        docs: n,
                        changed: None,
                        value: Some(n as f64 / run.initial_durable.as_secs_f64()),
                        unit: "docs/s",
                        tongban_ratio: None,
                        note: format!(
                            "all heads in {}, flushed {}; finds retried after \"unavailable\": {}",
                            secs(run.initial_synced),
                            secs(run.initial_durable),
                            run.retries
                        ),
                    });
                    rows.push(Row {
                        system,
                        workload: "resume",
                        docs: n,
                        changed: Some(changed.min(n)),
                        value: Some(ms(run.resume_synced)),
                        unit: "ms",
                        tongban_ratio: None,
                        note: format!(
                            "K heads in {:.0} ms, flushed at {:.0} ms",
                            ms(run.resume_synced),
                            ms(run.resume_durable)
                        ),
                    });
                    let _ = std::fs::remove_dir_all(&dir);
                    say(&rows);
                }
            }
        }
    }
    progress.finish_and_clear();
    notes.push(format!(
        "Finds in flight: samod {}, automerge-repo {} (0 = all at once). Load average at start {load_before}, at end {}.",
        args.samod_window,
        args.js_window,
        loadavg()
    ));

    // Tongban's ratio to each peer at the same workload, N and K.
    let tongban_rows: Vec<Row> = rows
        .iter()
        .filter(|r| r.system == "Tongban")
        .cloned()
        .collect();
    for row in rows.iter_mut().filter(|r| r.system != "Tongban") {
        let ours = tongban_rows
            .iter()
            .find(|t| t.workload == row.workload && t.docs == row.docs && t.changed == row.changed);
        if let (Some(Some(ours)), Some(theirs)) = (ours.map(|t| t.value), row.value) {
            row.tongban_ratio = Some(match row.workload {
                "initial" => ours / theirs,
                _ => theirs / ours,
            });
        }
    }

    // The target: Tongban's initial at 5,000 at least 100× samod's docs/s.
    let target = rows
        .iter()
        .find(|r| r.system.starts_with("samod") && r.workload == "initial" && r.docs == 5000)
        .and_then(|r| r.tongban_ratio);

    if args.json {
        let out = serde_json::json!({
            "docs": args.docs,
            "peer_docs": peer_docs,
            "changed": changed,
            "rows": rows,
            "target": {
                "what": "Tongban initial at 5,000 docs >= 100x samod's docs/s",
                "ratio": target,
                "met": target.map(|r| r >= 100.0),
            },
            "notes": notes,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", table(&rows));
        match target {
            Some(r) => println!(
                "Target (Tongban's initial at 5,000 ≥ 100× samod's docs/s): {r:.0}×, {}.",
                if r >= 100.0 { "met" } else { "not met" }
            ),
            None => println!(
                "Target (Tongban's initial at 5,000 ≥ 100× samod's docs/s): not measured in this run."
            ),
        }
        for note in &notes {
            println!("{note}");
        }
        println!("Whole run: {}.", secs(started.elapsed()));
    }
    Ok(())
}

fn thousands(v: f64) -> String {
    let whole = v.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| system | workload | N | K | figure | Tongban / peer | notes |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let figure = match r.value {
            Some(v) if r.unit == "docs/s" => format!("{} docs/s", thousands(v)),
            Some(v) => format!("{} ms", thousands(v)),
            None => "not measured".into(),
        };
        let ratio = match r.tongban_ratio {
            Some(x) if x >= 10.0 => format!("Tongban / {}: {}×", short(&r.system), thousands(x)),
            Some(x) => format!("Tongban / {}: {x:.2}×", short(&r.system)),
            None => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.system,
            r.workload,
            thousands(r.docs as f64),
            r.changed.map(|k| k.to_string()).unwrap_or_default(),
            figure,
            ratio,
            r.note
        ));
    }
    out
}

fn short(system: &str) -> &str {
    system.split(' ').next().unwrap_or(system)
}
