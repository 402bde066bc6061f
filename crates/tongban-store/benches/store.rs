//! The store benchmark: `cargo bench -p tongban-store`.
//!
//! Prints each figure and its ratio to a floor measured in the same run:
//!
//! - storing N realistic case documents (default 100,000) in group commits of
//!   1,000, against raw redb inserts of the same bytes;
//! - opening the store, in a fresh process, against opening the same file with
//!   bare redb; resident memory (VmRSS) after open and after reading 10,000
//!   documents, which are loaded through the store against `Automerge::load` of
//!   the same bytes;
//! - single-case update throughput with one durable commit per update and with
//!   group commits of 100 updates, against raw redb inserts of the same
//!   incremental bytes with the same commits.
//!
//! Environment: `TONGBAN_BENCH_DOCS` (default 100000; 1000000 for the large open
//! measurement), `TONGBAN_BENCH_DIR` (default a temporary directory).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use automerge::Automerge;
use redb::{ReadableDatabase, TableDefinition};
use tongban_domain::stage::Stage;
use tongban_store::{Store, StoreOptions};

const RAW: TableDefinition<&str, &[u8]> = TableDefinition::new("raw");
const RAW_INCR: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("raw_incr");
const GROUP: usize = 1000;
const READS: u64 = 10_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line(what: &str, figure: String, ratio: Option<(f64, &str)>) {
    match ratio {
        Some((r, floor)) => println!("{what:<58} {figure:>22}   {r:>6.2}x {floor}"),
        None => println!("{what:<58} {figure:>22}"),
    }
}

fn main() {
    match std::env::var("TONGBAN_BENCH_PHASE").as_deref() {
        Ok("open") => return open_phase(),
        Ok("dirty") => return dirty_phase(),
        Ok("reopen") => return reopen_phase(),
        _ => {}
    }
    let n_docs = env_u64("TONGBAN_BENCH_DOCS", 100_000);
    let _tmp;
    let root: PathBuf = match std::env::var("TONGBAN_BENCH_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            _tmp = tempfile::tempdir().unwrap();
            _tmp.path().to_path_buf()
        }
    };
    let store_dir = root.join("store");
    let raw_file = root.join("raw.redb");
    let _ = std::fs::remove_dir_all(&store_dir);
    let _ = std::fs::remove_file(&raw_file);
    println!(
        "tongban-store benchmark: {n_docs} documents, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    build(&store_dir, &raw_file, n_docs);

    // Open, memory and reads in fresh processes, so that the figures are not
    // inflated by what building the store left in this one.
    child("open", &store_dir, &raw_file, n_docs, &[]);
    child(
        "open",
        &store_dir,
        &raw_file,
        n_docs,
        &[("TONGBAN_BENCH_CACHE", "0")],
    );
    println!();
    for (qr, label) in [
        ("on", "quick_repair on (default)"),
        ("off", "quick_repair off"),
    ] {
        child(
            "dirty",
            &store_dir,
            &raw_file,
            n_docs,
            &[("TONGBAN_BENCH_QUICK_REPAIR", qr)],
        );
        child(
            "reopen",
            &store_dir,
            &raw_file,
            n_docs,
            &[("TONGBAN_BENCH_LABEL", label)],
        );
    }

    updates(&store_dir, &raw_file);
}

/// Generates the documents first (on all cores, not timed), then stores them in
/// group commits of 1,000 and inserts the same bytes into bare redb.
///
/// Above 200,000 documents, 2,000 realistic documents are generated and reused
/// under distinct case ids: the store treats content as opaque bytes (it only
/// validates them), so open time and file layout are those of distinct documents,
/// while generation would otherwise take most of an hour.
fn build(store_dir: &Path, raw_file: &Path, n_docs: u64) {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2) as u64;
    let distinct = if n_docs > 200_000 { 2_000 } else { n_docs };
    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            std::thread::spawn(move || {
                let mut rng = kit::Rng::new(1000 + w);
                (w..distinct)
                    .step_by(workers as usize)
                    .map(|n| (n, kit::case_doc(&mut rng, &kit::case_id(n)).save()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut docs: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    docs.sort_by_key(|(n, _)| *n);
    let docs: Vec<Vec<u8>> = docs.into_iter().map(|(_, d)| d).collect();
    let generate = t.elapsed();
    let bytes_of = |n: u64| -> &[u8] { &docs[(n % distinct) as usize] };
    let all_bytes: u64 = (0..n_docs).map(|n| bytes_of(n).len() as u64).sum();

    let options = StoreOptions {
        create_if_missing: true,
        ..StoreOptions::default()
    };
    let store = Store::open(store_dir, &options).unwrap();
    let t = Instant::now();
    let mut n = 0;
    while n < n_docs {
        let end = (n + GROUP as u64).min(n_docs);
        store
            .write(|tx| {
                for k in n..end {
                    tx.put_changes(
                        &kit::case_id(k),
                        bytes_of(k),
                        &kit::meta(k, Stage::ALL[(k % 10) as usize]),
                    )?;
                }
                Ok(())
            })
            .unwrap();
        n = end;
    }
    let store_time = t.elapsed();
    drop(store);
    let file_bytes = std::fs::metadata(store_dir.join(tongban_store::DB_FILE_NAME))
        .unwrap()
        .len();
    println!();
    line(
        &format!("generate {distinct} distinct documents (not part of any figure)"),
        format!("{:.1?}", generate),
        None,
    );
    line(
        "average saved document",
        format!("{} bytes", all_bytes / n_docs.max(1)),
        None,
    );
    line(
        "database file",
        format!("{:.1} MiB", file_bytes as f64 / 1048576.0),
        None,
    );

    // Floor: the same bytes into bare redb, same group size.
    let db = redb::Database::create(raw_file).unwrap();
    let t = Instant::now();
    let mut n = 0;
    while n < n_docs {
        let end = (n + GROUP as u64).min(n_docs);
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(RAW).unwrap();
            for k in n..end {
                table.insert(kit::case_id(k).as_str(), bytes_of(k)).unwrap();
            }
        }
        txn.commit().unwrap();
        n = end;
    }
    let raw_time = t.elapsed();
    // The store loads every new document once to validate it and learn its heads.
    let t = Instant::now();
    for k in 0..n_docs.min(20_000) {
        assert!(!Automerge::load(bytes_of(k)).unwrap().get_heads().is_empty());
    }
    let load_time = t
        .elapsed()
        .mul_f64(n_docs as f64 / n_docs.min(20_000) as f64);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n_docs as f64;
    line(
        "store new documents, groups of 1000",
        format!(
            "{:.0} docs/s ({:.1} µs)",
            n_docs as f64 / store_time.as_secs_f64(),
            per(store_time)
        ),
        Some((
            store_time.as_secs_f64() / raw_time.as_secs_f64(),
            "of raw redb insert of the same bytes",
        )),
    );
    line(
        "  floor + Automerge::load of each document (validation)",
        format!(
            "{:.0} docs/s ({:.1} µs)",
            n_docs as f64 / (raw_time + load_time).as_secs_f64(),
            per(raw_time + load_time)
        ),
        Some((
            store_time.as_secs_f64() / (raw_time + load_time).as_secs_f64(),
            "store time against this",
        )),
    );
    line(
        "  floor: raw redb insert, groups of 1000",
        format!(
            "{:.0} docs/s ({:.1} µs)",
            n_docs as f64 / raw_time.as_secs_f64(),
            per(raw_time)
        ),
        None,
    );
}

/// Runs this benchmark binary again as a child in `phase`.
fn child(phase: &str, store_dir: &Path, raw_file: &Path, n_docs: u64, extra: &[(&str, &str)]) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env("TONGBAN_BENCH_PHASE", phase)
        .env("TONGBAN_BENCH_STORE", store_dir)
        .env("TONGBAN_BENCH_RAW", raw_file)
        .env("TONGBAN_BENCH_N", n_docs.to_string());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    assert!(status.success() || phase == "dirty");
}

fn child_env() -> (PathBuf, PathBuf, u64) {
    (
        PathBuf::from(std::env::var("TONGBAN_BENCH_STORE").unwrap()),
        PathBuf::from(std::env::var("TONGBAN_BENCH_RAW").unwrap()),
        env_u64("TONGBAN_BENCH_N", 100_000),
    )
}

/// Opens the store, commits one write and exits without closing it, as a
/// crash would.
fn dirty_phase() {
    let (store_dir, _, _) = child_env();
    let quick_repair = std::env::var("TONGBAN_BENCH_QUICK_REPAIR").as_deref() != Ok("off");
    let options = StoreOptions {
        quick_repair,
        ..StoreOptions::default()
    };
    let store = Store::open(&store_dir, &options).unwrap();
    store.set_meta("bench.dirty", b"1").unwrap();
    std::process::exit(0);
}

/// Measures one open after an unclean shutdown.
fn reopen_phase() {
    let (store_dir, _, n_docs) = child_env();
    let label = std::env::var("TONGBAN_BENCH_LABEL").unwrap_or_default();
    let t = Instant::now();
    let store = Store::open(&store_dir, &StoreOptions::default()).unwrap();
    let open = t.elapsed();
    line(
        &format!("open {n_docs} documents after a crash, {label}"),
        format!("{:.1?}", open),
        None,
    );
    assert_eq!(store.meta("bench.dirty").unwrap(), Some(b"1".to_vec()));
}

fn open_phase() {
    let (store_dir, raw_file, n_docs) = child_env();
    let capacity = env_u64("TONGBAN_BENCH_CACHE", 1024) as usize;
    let options = StoreOptions {
        document_cache_capacity: capacity,
        ..StoreOptions::default()
    };
    let rss_start = rss_kib();

    // Alternate bare redb and the store opening the same file; keep the fastest
    // of three each (the file's pages are in the OS cache either way).
    let mut raw_open = Duration::MAX;
    let mut open = Duration::MAX;
    let mut store = None;
    for _ in 0..3 {
        drop(store.take());
        let t = Instant::now();
        let raw = redb::Database::open(store_dir.join(tongban_store::DB_FILE_NAME)).unwrap();
        raw_open = raw_open.min(t.elapsed());
        drop(raw);
        let t = Instant::now();
        store = Some(Store::open(&store_dir, &options).unwrap());
        open = open.min(t.elapsed());
    }
    let store = store.unwrap();
    let rss_open = rss_kib();
    println!();
    println!(
        "-- document cache capacity {capacity}, redb page cache {} MiB --",
        options.page_cache_bytes >> 20
    );
    if capacity > 0 {
        line(
            &format!("open store of {n_docs} documents"),
            format!("{:.1?}", open),
            Some((
                open.as_secs_f64() / raw_open.as_secs_f64(),
                "of bare redb open of the same file",
            )),
        );
        line("  floor: bare redb open", format!("{:.1?}", raw_open), None);
        line(
            "resident memory before open (process baseline)",
            mib(rss_start),
            None,
        );
        line("resident memory after open", mib(rss_open), None);
    }

    // Reads of random documents: cache misses, each loaded from disk.
    let mut rng = kit::Rng::new(7);
    let picks: Vec<u64> = (0..READS).map(|_| rng.range(0, n_docs)).collect();
    let t = Instant::now();
    for n in &picks {
        let doc = store.load_case(&kit::case_id(*n)).unwrap().unwrap();
        assert!(!doc.get_heads().is_empty());
    }
    let read_time = t.elapsed();
    let rss_read = rss_kib();
    line(
        "resident memory after reading 10,000 documents",
        mib(rss_read),
        None,
    );
    if capacity == 0 {
        return;
    }
    // The most recent picks are in the cache: a read is a copy of the document.
    let cached: Vec<u64> = picks.iter().rev().take(500).copied().collect();
    let t = Instant::now();
    for _ in 0..4 {
        for n in &cached {
            store.load_case(&kit::case_id(*n)).unwrap().unwrap();
        }
    }
    let cached_time = t.elapsed() / 4;

    // Floor: Automerge::load of the same bytes, already in memory.
    let raw = redb::Database::open(&raw_file).unwrap();
    let txn = raw.begin_read().unwrap();
    let table = txn.open_table(RAW).unwrap();
    let bytes: Vec<Vec<u8>> = picks
        .iter()
        .map(|n| {
            table
                .get(kit::case_id(*n).as_str())
                .unwrap()
                .unwrap()
                .value()
                .to_vec()
        })
        .collect();
    let t = Instant::now();
    for b in &bytes {
        let doc = Automerge::load(b).unwrap();
        assert!(!doc.get_heads().is_empty());
    }
    let floor = t.elapsed();
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    line(
        "read 10,000 random documents (cache miss: disk + load)",
        format!("{:.1} µs/doc", per(read_time, READS)),
        Some((
            read_time.as_secs_f64() / floor.as_secs_f64(),
            "of Automerge::load from memory",
        )),
    );
    line(
        "  floor: Automerge::load of the same bytes",
        format!("{:.1} µs/doc", per(floor, READS)),
        None,
    );
    line(
        "read a cached document (copy out of the cache)",
        format!("{:.1} µs/doc", per(cached_time, 500)),
        None,
    );
    assert_eq!(store.stats().unwrap().cases, n_docs);
}

/// Single-case update throughput, in the store just built: one durable commit
/// per update, and groups of 100 updates per commit, each against bare redb
/// inserting the same bytes with the same commits into the floor's file. Three
/// rounds alternate store and floor (fsync times on this machine vary by 2x from
/// one second to the next); the best round of each is reported.
/// A case number, its first full save, its updates and its final heads.
type Round = (u64, Vec<u8>, Vec<Vec<u8>>, Vec<automerge::ChangeHash>);

fn updates(store_dir: &Path, raw_file: &Path) {
    const ROUNDS: u64 = 3;
    const SINGLE: usize = 300;
    const GROUPED: usize = 3000;
    println!();
    let mut rng = kit::Rng::new(99);
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|r| {
            let n = 5_000_000 + r;
            let mut doc = kit::case_doc(&mut rng, &kit::case_id(n));
            let first = doc.save();
            let updates = (0..SINGLE + GROUPED)
                .map(|_| kit::update_doc(&mut doc, &mut rng))
                .collect();
            (n, first, updates, doc.get_heads())
        })
        .collect();
    let avg = rounds[0].2.iter().map(Vec::len).sum::<usize>() / rounds[0].2.len();
    line(
        "average update (incremental save)",
        format!("{avg} bytes"),
        None,
    );

    for quick_repair in [true, false] {
        let options = StoreOptions {
            quick_repair,
            ..StoreOptions::default()
        };
        let (mut single, mut grouped, mut raw_single, mut raw_grouped) =
            (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
        let mut settle = Duration::ZERO;
        let mut compact = Duration::ZERO;
        for (n, first, updates, heads) in &rounds {
            let case = kit::case_id(*n + if quick_repair { 0 } else { 100 });
            let meta = kit::meta(*n, Stage::Received);
            let store = Store::open(store_dir, &options).unwrap();
            store.put_changes(&case, first, &meta).unwrap();
            let t = Instant::now();
            for bytes in &updates[..SINGLE] {
                store.put_changes(&case, bytes, &meta).unwrap();
            }
            single = single.min(t.elapsed());
            let t = Instant::now();
            for group in updates[SINGLE..].chunks(100) {
                store
                    .write(|tx| {
                        for bytes in group {
                            tx.put_changes(&case, bytes, &meta)?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            grouped = grouped.min(t.elapsed());
            // Writes do not apply changes to the cached document; the first read
            // after them applies all that are pending, in one call.
            let t = Instant::now();
            let loaded = store.load_case(&case).unwrap().unwrap();
            settle = t.elapsed();
            assert_eq!(&loaded.get_heads(), heads);
            let t = Instant::now();
            assert!(store.compact_pending(10).unwrap().compacted >= 1);
            compact = t.elapsed();
            drop(store);

            let db = redb::Database::open(raw_file).unwrap();
            let key = format!("{case}-raw");
            let t = Instant::now();
            for (idx, bytes) in updates[..SINGLE].iter().enumerate() {
                let mut txn = db.begin_write().unwrap();
                txn.set_quick_repair(quick_repair);
                txn.open_table(RAW_INCR)
                    .unwrap()
                    .insert((key.as_str(), idx as u64), bytes.as_slice())
                    .unwrap();
                txn.commit().unwrap();
            }
            raw_single = raw_single.min(t.elapsed());
            let t = Instant::now();
            for (g, group) in updates[SINGLE..].chunks(100).enumerate() {
                let mut txn = db.begin_write().unwrap();
                txn.set_quick_repair(quick_repair);
                {
                    let mut table = txn.open_table(RAW_INCR).unwrap();
                    for (idx, bytes) in group.iter().enumerate() {
                        table
                            .insert(
                                (key.as_str(), (SINGLE + g * 100 + idx) as u64),
                                bytes.as_slice(),
                            )
                            .unwrap();
                    }
                }
                txn.commit().unwrap();
            }
            raw_grouped = raw_grouped.min(t.elapsed());
        }
        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        let label = if quick_repair {
            "quick_repair on (default)"
        } else {
            "quick_repair off"
        };
        line(
            &format!("single-case updates, durable commit each, {label}"),
            format!("{:.0} updates/s", rate(SINGLE, single)),
            Some((
                single.as_secs_f64() / raw_single.as_secs_f64(),
                "of raw redb, same commits",
            )),
        );
        line(
            "  floor: raw redb insert, commit each",
            format!("{:.0} updates/s", rate(SINGLE, raw_single)),
            None,
        );
        line(
            &format!("single-case updates, groups of 100, {label}"),
            format!("{:.0} updates/s", rate(GROUPED, grouped)),
            Some((
                grouped.as_secs_f64() / raw_grouped.as_secs_f64(),
                "of raw redb, same commits",
            )),
        );
        line(
            "  floor: raw redb insert, groups of 100",
            format!("{:.0} updates/s", rate(GROUPED, raw_grouped)),
            None,
        );
        if quick_repair {
            let changes = SINGLE + GROUPED + 1;
            line(
                &format!("first read after the updates ({changes} changes in the case)"),
                format!("{:.1?}", settle),
                None,
            );
            line(
                "compact that case into one full save",
                format!("{:.1?}", compact),
                None,
            );
        }
    }
}
