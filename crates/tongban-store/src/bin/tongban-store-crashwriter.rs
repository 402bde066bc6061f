//! A child process for the store's crash and locking tests; not for production.
//!
//! `tongban-store-crashwriter write DIR SEED` writes cases (Automerge documents and
//! incremental changes, alone and in group commits) and materials (random bytes,
//! 10 KB to 2 MB) as fast as it can, and prints one acknowledgement line on stdout
//! for each write after its commit returned:
//!
//! ```text
//! case <case id> <seq> <head>,<head>,...
//! material <hash> <len>
//! ```
//!
//! `tongban-store-crashwriter hold DIR` opens the store, prints `ready` and keeps
//! it open until its stdin closes.
//!
//! `tongban-store-crashwriter material-rss DIR MIB` stores and reads back a
//! generated material of MIB mebibytes with a 16 MiB page cache and prints
//! `rss <before KiB> <after put KiB> <after read KiB>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, Write};

use automerge::AutoCommit;
use tongban_domain::stage::Stage;
use tongban_store::{Store, StoreOptions};

#[path = "../../tests/kit/mod.rs"]
mod kit;

/// Number of distinct cases the writer cycles through.
const N_CASES: u64 = 48;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let dir = args
        .get(2)
        .expect("usage: tongban-store-crashwriter write|hold DIR [SEED]");
    let options = StoreOptions {
        create_if_missing: true,
        compact_after_increments: 8,
        ..StoreOptions::default()
    };
    match mode {
        "hold" => {
            let _store = Store::open(dir, &options).expect("open");
            println!("ready");
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
            }
        }
        "material-rss" => {
            let mib: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
            let options = StoreOptions {
                page_cache_bytes: 16 << 20,
                ..options
            };
            let store = Store::open(dir, &options).expect("open");
            let before = rss_kib();
            let mut rng = kit::Rng::new(mib);
            let source = Generated {
                left: mib << 20,
                rng: &mut rng,
            };
            let put = store.put_material(source).expect("put");
            let after_put = rss_kib();
            let mut reader = store.open_material(&put.hash).expect("open material");
            let copied = std::io::copy(&mut reader, &mut std::io::sink()).expect("read");
            assert_eq!(copied, mib << 20);
            println!("rss {before} {after_put} {}", rss_kib());
        }
        "write" => {
            let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
            let store = Store::open(dir, &options).expect("open");
            write_forever(&store, seed);
        }
        _ => {
            eprintln!("usage: tongban-store-crashwriter write|hold DIR [SEED]");
            std::process::exit(2);
        }
    }
}

/// Resident memory of this process, from /proc/self/status.
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

/// A reader of `left` pseudo-random bytes, generated as they are read.
struct Generated<'a> {
    left: u64,
    rng: &'a mut kit::Rng,
}

impl std::io::Read for Generated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        self.rng.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

fn heads_text(heads: &[automerge::ChangeHash]) -> String {
    heads
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn write_forever(store: &Store, seed: u64) {
    let mut rng = kit::Rng::new(seed);
    let mut docs: HashMap<u64, AutoCommit> = HashMap::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n_ops: u64 = 0;

    // The working copy of case `n`: from memory, from the store, or new.
    let doc_of =
        |n: u64, rng: &mut kit::Rng, docs: &mut HashMap<u64, AutoCommit>| -> (Vec<u8>, bool) {
            let case = kit::case_id(n);
            if let Some(doc) = docs.get_mut(&n) {
                return (kit::update_doc(doc, rng), false);
            }
            match store.load_case(&case).expect("load") {
                Some(stored) => {
                    let mut doc = AutoCommit::load(&stored.save()).expect("reload");
                    let bytes = kit::update_doc(&mut doc, rng);
                    docs.insert(n, doc);
                    (bytes, false)
                }
                None => {
                    let mut doc = kit::case_doc(rng, &case);
                    let bytes = doc.save();
                    docs.insert(n, doc);
                    (bytes, true)
                }
            }
        };

    loop {
        n_ops += 1;
        let roll = rng.range(0, 100);
        if roll < 4 {
            // A material, 10 KB to 2 MB, sizes spread logarithmically.
            let exp = rng.range(0, 1000) as f64 / 1000.0;
            let len = (10_000.0 * 200f64.powf(exp)) as usize;
            let bytes = rng.bytes(len);
            let put = store.put_material(bytes.as_slice()).expect("put material");
            writeln!(out, "material {} {}", put.hash, put.len).unwrap();
        } else if roll < 12 {
            // A group commit of several case updates.
            let picks: Vec<u64> = (0..rng.range(2, 12))
                .map(|_| rng.range(0, N_CASES))
                .collect();
            let mut prepared = Vec::new();
            for n in picks {
                let (bytes, _) = doc_of(n, &mut rng, &mut docs);
                prepared.push((n, bytes));
            }
            let results = store
                .write(|tx| {
                    prepared
                        .iter()
                        .map(|(n, bytes)| {
                            let stage = Stage::ALL[(*n % 10) as usize];
                            tx.put_changes(&kit::case_id(*n), bytes, &kit::meta(*n, stage))
                                .map(|w| (*n, w))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .expect("group commit");
            for (n, w) in results {
                writeln!(
                    out,
                    "case {} {} {}",
                    kit::case_id(n),
                    w.seq,
                    heads_text(&w.heads)
                )
                .unwrap();
            }
        } else {
            let n = rng.range(0, N_CASES);
            let (bytes, _) = doc_of(n, &mut rng, &mut docs);
            let stage = Stage::ALL[(n % 10) as usize];
            let w = store
                .put_changes(&kit::case_id(n), &bytes, &kit::meta(n, stage))
                .expect("put changes");
            writeln!(
                out,
                "case {} {} {}",
                kit::case_id(n),
                w.seq,
                heads_text(&w.heads)
            )
            .unwrap();
        }
        out.flush().unwrap();
        if n_ops.is_multiple_of(40) {
            store.compact_pending(8).expect("compact");
        }
    }
}
