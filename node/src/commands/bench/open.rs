//! The `open` scenario: a hub holding N finished cases started as its own
//! process (`tongban node run`, this very binary) — how long until it runs,
//! its resident memory idle, and its peak while serving an initial sync to a
//! fresh child — against the same node holding nothing, in the same run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::world::{self, SERVER, World};
use super::{Ctx, Figure, Outcome};

/// A node process and its QUIC address.
struct NodeProcess {
    child: Child,
    quic: SocketAddr,
    started: Duration,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tongban node run` for the node at `dir`; answers once it says it
/// runs (its first line names its QUIC address).
fn spawn(root: &Path, office: &str) -> anyhow::Result<NodeProcess> {
    let config = root.join(format!("{office}.toml"));
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nlog = \"error\"\n",
            root.join(office)
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args(["node", "run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start tongban node run")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = match lines.next() {
        Some(Ok(line)) => line,
        _ => {
            let _ = child.kill();
            bail!("the node at {office} exited before it ran");
        }
    };
    let started = start.elapsed();
    // "节点运行中 node running: OFFICE QUIC ADDR 控制接口 control ADDR"
    let quic = first
        .split_whitespace()
        .skip_while(|w| *w != "QUIC")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no QUIC address in {first:?}"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(NodeProcess {
        child,
        quic,
        started,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// `open`: start time and memory of a node holding `n`.
pub fn open(ctx: &Ctx, n: u64) -> anyhow::Result<Outcome> {
    let world = World::filled(ctx, &format!("open-{n}"), n)?;
    // The floor: the same binary, a node of the same kind holding nothing.
    let empty = spawn(&world.root, "hub-44")?;
    std::thread::sleep(Duration::from_secs(2));
    let (empty_rss, _) = world::memory_of(empty.child.id()).context("no /proc")?;
    drop(empty);
    ctx.say(&format!("open {n}: starting the hub…"));
    let hub = spawn(&world.root, SERVER)?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = hub.child.id();
    let (idle, _) = world::memory_of(pid).context("no /proc")?;
    ctx.say(&format!("open {n}: serving an initial sync…"));
    let mut serving_peak = idle;
    let quic = hub.quic;
    ctx.runtime.block_on(async {
        let bar = crate::output::bar(n, "同步 syncing", ctx.json);
        let fresh = world::start(&world.dir("hub-13"), Some(quic)).await?;
        let handle = fresh.handle();
        let start = Instant::now();
        loop {
            if let Some((rss, _)) = world::memory_of(pid) {
                serving_peak = serving_peak.max(rss);
            }
            let held = world::held(&handle).await?;
            bar.set_position(held);
            if held >= n {
                break;
            }
            if start.elapsed() > Duration::from_secs(3 * 3600) {
                bail!("the sync from the started hub stalled at {held} of {n}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.finish_and_clear();
        fresh.shutdown().await?;
        anyhow::Ok(())
    })?;
    let (_, peak) = world::memory_of(pid).context("no /proc")?;
    let serving = serving_peak.max(peak);
    let big = n >= 1_000_000;
    let started_ms = hub.started.as_secs_f64() * 1e3;
    let empty_ms = empty_started_ms(&world)?;
    Ok(Outcome::new("open", n, None).with(vec![
        Figure::new(
            "start_ms",
            "启动 start, process spawned to node running",
            started_ms,
            "ms",
        )
        .floor(empty_ms, started_ms / empty_ms)
        .target(
            big.then(|| "< 1 s".into()),
            big.then_some(started_ms < 1_000.0),
        ),
        Figure::new(
            "idle_mib",
            "空闲常驻内存 resident memory, idle",
            idle as f64 / MIB,
            "MiB",
        )
        .floor(empty_rss as f64 / MIB, idle as f64 / empty_rss as f64)
        .target(
            big.then(|| "< 300 MiB".into()),
            big.then_some((idle as f64 / MIB) < 300.0),
        ),
        Figure::new(
            "serving_mib",
            "同步时峰值内存 peak resident memory, serving an initial sync",
            serving as f64 / MIB,
            "MiB",
        )
        .target(
            big.then(|| "< 1 GiB".into()),
            big.then_some((serving as f64 / MIB) < 1024.0),
        ),
    ]))
}

/// The start time of the empty node, measured again now that the page cache
/// is as warm for it as for the hub.
fn empty_started_ms(world: &World) -> anyhow::Result<f64> {
    let empty = spawn(&world.root, "hub-44")?;
    Ok(empty.started.as_secs_f64() * 1e3)
}
