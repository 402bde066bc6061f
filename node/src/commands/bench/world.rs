//! The nodes a scenario runs: the route's offices provisioned under one
//! directory (a temporary one unless `--dir` is given), the serving hub filled
//! with finished cases, daemons started on loopback, and the in-process floor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tongban_domain::ids::Timestamp;
use tongban_domain::stage::Role;
use tongban_node::daemon::{Clock, Daemon, NodeConfig, StartOptions};
use tongban_node::engine::DaemonHandle;
use tongban_node::fixture::{self, CaseFactory};
use tongban_node::local::LocalNode;
use tongban_node::provision::OfficeSpec;
use tongban_replica::Replica;
use tongban_store::{Store, StoreOptions};
use tongban_sync::{Config as SyncConfig, Limits, SyncNode};

use super::Ctx;

/// The hub every scenario serves from.
pub const SERVER: &str = "hub-cn";

/// The children `fanout` can serve from a prepared world (provisioned in
/// every world, so one prepared data set serves every scenario).
pub const CHILDREN: usize = 20;

/// The offices every world has besides the route's: the floor's fresh hub,
/// `fanout`'s lone child and its children.
fn extra_offices(children: usize) -> Vec<OfficeSpec> {
    let mut extra = vec![
        OfficeSpec::new("hub-13-floor", Role::Hub, "13"),
        OfficeSpec::new("hub-13-solo", Role::Hub, "13"),
    ];
    for c in 0..children.max(CHILDREN) {
        extra.push(OfficeSpec::new(&child(c), Role::Hub, "13"));
    }
    extra
}

/// The office id of `fanout`'s child `c`.
pub fn child(c: usize) -> String {
    format!("hub-13-c{c:02}")
}

/// One scenario's offices on disk.
pub struct World {
    _tmp: Option<tempfile::TempDir>,
    pub root: PathBuf,
}

impl World {
    /// An empty directory `name` inside `base` (or a temporary directory).
    fn empty(base: Option<&Path>, name: &str) -> anyhow::Result<World> {
        let (tmp, root) = match base {
            Some(base) => {
                let root = base.join(name);
                if root.exists() {
                    bail!(
                        "{} already exists: choose another --dir or remove it",
                        root.display()
                    );
                }
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("cannot create {}", root.display()))?;
                (None, root)
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix(&format!("tongban-bench-{name}-"))
                    .tempdir()
                    .context("cannot create a temporary directory")?;
                let root = tmp.path().to_path_buf();
                (Some(tmp), root)
            }
        };
        Ok(World { _tmp: tmp, root })
    }

    /// The route's offices and the extra ones, provisioned, holding nothing.
    pub fn new(ctx: &Ctx, name: &str) -> anyhow::Result<World> {
        let world = World::empty(ctx.dir.as_deref(), name)?;
        fixture::provision_route(&world.root, &extra_offices(ctx.children))?;
        Ok(world)
    }

    /// A world whose serving hub holds `n` finished cases with their scans.
    /// Building realistic cases is slow (every change signed, as offices
    /// make them), so a built world is kept in the prepared data sets
    /// (`--data-sets`, as `pgbench -i` prepares its tables) and copied for
    /// each later run; a set older than [`PREPARED_DAYS`] is built again
    /// (its certificates and deadlines age).
    pub fn filled(ctx: &Ctx, name: &str, n: u64) -> anyhow::Result<World> {
        let world = World::empty(ctx.dir.as_deref(), name)?;
        let prepared = ctx
            .data_sets
            .as_ref()
            .filter(|_| ctx.children <= CHILDREN)
            .map(|d| d.join(format!("v{}-{n}", fixture::FIXTURE_VERSION)));
        if let Some(set) = &prepared
            && is_fresh(set)
        {
            ctx.say(&format!(
                "{name}: 使用已准备的数据 prepared data set {}",
                set.display()
            ));
            // The copy, and about as much again for the node that syncs
            // the documents from it.
            let size = tree_size(set)?;
            ensure_space(&world.root, 2 * size, "--dir")?;
            copy_tree(set, &world.root)?;
            return Ok(world);
        }
        // The hub's store, the fresh node's, and the kept data set's copy.
        let estimate = n.saturating_mul(BYTES_A_CASE);
        ensure_space(&world.root, 2 * estimate, "--dir")?;
        if let Some(set) = &prepared
            && let Some(parent) = set.parent()
        {
            ensure_space(parent, estimate, "--data-sets")?;
        }
        fixture::provision_route(&world.root, &extra_offices(ctx.children))?;
        ctx.say(&format!("{name}: 生成 building {n} cases…"));
        let took = world.fill(SERVER, n, ctx.json)?;
        ctx.say(&format!(
            "{name}: built {n} cases in {:.1} s ({:.0} cases/s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        ));
        if let Some(set) = &prepared {
            let partial = set.with_extension("partial");
            let _ = std::fs::remove_dir_all(&partial);
            let _ = std::fs::remove_dir_all(set);
            copy_tree(&world.root, &partial)?;
            std::fs::write(partial.join("complete"), format!("{n}\n"))?;
            std::fs::rename(&partial, set)
                .with_context(|| format!("cannot keep the data set in {}", set.display()))?;
        }
        Ok(world)
    }

    /// The data directory of `office`.
    pub fn dir(&self, office: &str) -> PathBuf {
        self.root.join(office)
    }

    /// Writes `n` finished cases into `office`'s store with their scans
    /// (a progress bar on a terminal). Answers how long building them took.
    fn fill(&self, office: &str, n: u64, json: bool) -> anyhow::Result<Duration> {
        let factory = CaseFactory::open(&self.root)?;
        let bar = crate::output::bar(n, "生成案件 building cases", json);
        let start = Instant::now();
        fixture::fill(&factory, &self.dir(office), 0..n, 1_000, |k| bar.inc(k))?;
        bar.finish_and_clear();
        Ok(start.elapsed())
    }
}

/// What a finished case takes in a hub's directory, store and change log
/// included (measured: 198 MB for 20,000), rounded up.
pub const BYTES_A_CASE: u64 = 11 * 1024;

/// The bytes of the regular files under `dir`.
fn tree_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Fails, before anything is written, when the disk holding `dir` has less
/// than `need` bytes free (and 1 GiB to spare): a bench that fills the disk
/// halfway through a copy leaves the machine unusable for everything else.
fn ensure_space(dir: &Path, need: u64, option: &str) -> anyhow::Result<()> {
    const SPARE: u64 = 1 << 30;
    let stat = rustix::fs::statvfs(dir)
        .with_context(|| format!("cannot read the free space of {}", dir.display()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < need.saturating_add(SPARE) {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "{option}: 磁盘空间不足 not enough free space on the disk holding {}: this run needs about {:.1} GiB and 1 GiB to spare, {:.1} GiB is free; choose {option} on a larger disk or remove old data sets",
            dir.display(),
            gib(need),
            gib(free)
        );
    }
    Ok(())
}

/// Makes every regular file under `dir` durable (`fsync`), so that what a
/// scenario times next does not wait for an earlier step's writeback.
pub fn sync_tree(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            std::fs::File::open(entry.path())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Days a prepared data set is used before it is built again.
pub const PREPARED_DAYS: u64 = 14;

fn is_fresh(set: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(set.join("complete")) else {
        return false;
    };
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(PREPARED_DAYS * 86_400))
}

/// Copies the directory tree `from` to `to` (files keep their permission
/// bits; directories are made private, as node directories are).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
            tongban_node::local::make_private_dir(&target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
            // On disk before any node opens it: with the copy's writeback
            // still in flight, a node started on it waited for the disk, and
            // `open` charged that to its start (894 ms at 1,000,000 cases
            // right after an 11 GB copy, 13–92 ms for the same store started
            // again). A real hub's store is not a copy made a second ago.
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", target.display()))?;
        }
        // Sockets and anything else a stopped node left are not copied.
    }
    Ok(())
}

/// How the bench's daemons run: the system clock, no control API, quick
/// reconnects.
pub fn options() -> StartOptions {
    StartOptions {
        clock: Clock::System,
        control_api: false,
        min_backoff: Duration::from_millis(20),
        ..StartOptions::default()
    }
}

/// Starts the node at `dir` on loopback, connecting to `upstream`.
pub async fn start(dir: &Path, upstream: Option<SocketAddr>) -> anyhow::Result<Daemon> {
    let config = NodeConfig::loopback(dir, upstream.map(|address| (SERVER, address)));
    Daemon::start(&config, options())
        .await
        .with_context(|| format!("cannot start the node at {}", dir.display()))
}

/// How many cases the running node holds.
pub async fn held(handle: &DaemonHandle) -> anyhow::Result<u64> {
    Ok(handle
        .exec(|node, _| node.store().stats().map(|s| s.cases).unwrap_or(0))
        .await?)
}

/// Waits until every node of `handles` holds `n` cases, moving `bar` by the
/// total; fails after `limit`.
pub async fn wait_held(
    handles: &[DaemonHandle],
    n: u64,
    bar: &indicatif::ProgressBar,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut total = 0;
        let mut done = true;
        for handle in handles {
            let held = held(handle).await?;
            total += held;
            done &= held >= n;
        }
        bar.set_position(total);
        if done {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "sync stalled: {total} of {} documents after {} s",
                n * handles.len() as u64,
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same sync protocol between the same kinds of stores in one process,
/// frames handed over directly (no sockets, no threads): the floor of
/// `initial`. Answers how long `fresh` took to hold `n` cases from `hub`.
pub fn floor_sync(hub_dir: &Path, fresh_dir: &Path, n: u64) -> anyhow::Result<Duration> {
    let open = |dir: &Path| -> anyhow::Result<_> {
        let node = LocalNode::open(dir)?;
        let key = Arc::new(node.key().clone());
        let office = node.office().clone();
        let authority = node.authority().context("the node has no authority key")?;
        let calendar = Arc::new(node.calendar().clone());
        let secret = node.resident_secret();
        drop(node);
        let store = Arc::new(Store::open(dir, &StoreOptions::default())?);
        let replica = Replica::new(store, calendar.clone(), secret, None)?;
        let sync = SyncNode::new(
            SyncConfig {
                office: office.clone(),
                key,
                authority,
                calendar,
                limits: Limits::default(),
            },
            &replica,
        )?;
        Ok((office, replica, sync))
    };
    let (hub_office, mut hub_store, mut hub) = open(hub_dir)?;
    let (fresh_office, mut fresh_store, mut fresh) = open(fresh_dir)?;
    let start = Instant::now();
    let now = Timestamp::now();
    let a = hub.connect(&hub_store, fresh_office, now)?;
    let b = fresh.connect(&fresh_store, hub_office, now)?;
    loop {
        let mut moved = false;
        while let Some(t) = hub.poll_transmit() {
            fresh.handle_message(&mut fresh_store, b, &t.bytes, now)?;
            moved = true;
        }
        while let Some(t) = fresh.poll_transmit() {
            hub.handle_message(&mut hub_store, a, &t.bytes, now)?;
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let elapsed = start.elapsed();
    let held = fresh_store.inner().stats()?.cases;
    if held != n {
        bail!("the in-process sync delivered {held} of {n} documents");
    }
    Ok(elapsed)
}

/// Resident memory of process `pid` in bytes (Linux `/proc`), and its peak.
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_the_disk_cannot_hold_fails_before_writing_naming_the_option() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let Err(err) = ensure_space(dir.path(), u64::MAX / 4, "--dir") else {
            bail!("no disk holds u64::MAX / 4 bytes");
        };
        let text = err.to_string();
        assert!(text.starts_with("--dir: "), "{text}");
        assert!(text.contains("not enough free space"), "{text}");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn tree_size_counts_the_files_below() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("a"))?;
        std::fs::write(dir.path().join("a/x"), [0u8; 100])?;
        std::fs::write(dir.path().join("y"), [0u8; 23])?;
        assert_eq!(tree_size(dir.path())?, 123);
        Ok(())
    }
}
