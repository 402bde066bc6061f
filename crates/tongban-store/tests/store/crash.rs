//! The crash test: a child process writes cases and materials as fast as it can
//! and acknowledges each write after its commit returned; it is killed with
//! SIGKILL at seeded random moments, and after every kill the store must open
//! cleanly and hold every acknowledged write intact.
//!
//! `TONGBAN_CRASH_KILLS` sets the number of kills (default 100) and
//! `TONGBAN_CRASH_SEED` the seed (default fixed; printed on failure).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use automerge::{ChangeHash, ReadDoc};
use tongban_domain::ids::CaseId;
use tongban_store::{MaterialHash, Store, StoreOptions};

use crate::kit::Rng;

struct Acked {
    seq: u64,
    heads: Vec<ChangeHash>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let kills = env_u64("TONGBAN_CRASH_KILLS", 100);
    let seed = env_u64("TONGBAN_CRASH_SEED", 0x7b0_2026);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let mut rng = Rng::new(seed);
    let mut cases: HashMap<CaseId, Acked> = HashMap::new();
    let mut materials: HashMap<MaterialHash, u64> = HashMap::new();
    let mut n_acks = 0u64;
    let mut n_killed_early = 0u64;
    let started = Instant::now();

    for cycle in 0..kills {
        let stderr_path = root.path().join(format!("stderr-{cycle}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tongban-store-crashwriter"))
            .arg("write")
            .arg(&dir)
            .arg(rng.next_u64().to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let collector = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: not an acknowledgement.
                    Ok(_) if line.ends_with('\n') => lines.push(line),
                    Ok(_) => break,
                }
            }
            lines
        });
        // Mostly mid-write; sometimes while the child is still opening (and
        // repairing) the store.
        let delay = if rng.range(0, 10) == 0 {
            rng.range(0, 15)
        } else {
            rng.range(15, 350)
        };
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            std::fs::File::open(&stderr_path)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            panic!(
                "cycle {cycle} (seed {seed}): the writer exited by itself with {status}:\n{text}"
            );
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let lines = collector.join().unwrap();
        if lines.is_empty() {
            n_killed_early += 1;
        }

        let mut new_materials = Vec::new();
        for line in &lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["case", case, seq, heads] => {
                    let case = CaseId::parse(case).unwrap();
                    let seq: u64 = seq.parse().unwrap();
                    let heads = heads.split(',').map(|h| h.parse().unwrap()).collect();
                    let newer = cases.get(&case).is_none_or(|a| a.seq < seq);
                    if newer {
                        cases.insert(case, Acked { seq, heads });
                    }
                }
                ["material", hash, len] => {
                    let hash: MaterialHash = hash.parse().unwrap();
                    materials.insert(hash, len.parse().unwrap());
                    new_materials.push(hash);
                }
                other => panic!("unexpected line {other:?}"),
            }
            n_acks += 1;
        }

        let store = Store::open(&dir, &StoreOptions::default()).unwrap_or_else(|err| {
            panic!("cycle {cycle} (seed {seed}): the store does not open after SIGKILL: {err}")
        });
        for (case, acked) in &cases {
            let info = store.case_info(case).unwrap().unwrap_or_else(|| {
                panic!("cycle {cycle} (seed {seed}): acknowledged case {case} is missing")
            });
            assert!(
                info.seq >= acked.seq,
                "cycle {cycle}: case {case} went back from seq {} to {}",
                acked.seq,
                info.seq
            );
            let doc = store.load_case(case).unwrap().unwrap();
            for head in &acked.heads {
                assert!(
                    doc.get_change_by_hash(head).is_some(),
                    "cycle {cycle} (seed {seed}): case {case} lost acknowledged change {head}"
                );
            }
        }
        // New materials are read back whole; every tenth cycle, all of them.
        let full_check = cycle % 10 == 9;
        for (hash, len) in &materials {
            if full_check || new_materials.contains(hash) {
                let mut reader = store.open_material(hash).unwrap();
                let mut hasher = blake3::Hasher::new();
                let copied = std::io::copy(&mut reader, &mut hasher).unwrap();
                assert_eq!(copied, *len);
                assert_eq!(
                    hasher.finalize().as_bytes(),
                    &hash.0,
                    "material {hash} damaged"
                );
            } else {
                assert_eq!(
                    store.material_len(hash).unwrap(),
                    Some(*len),
                    "material {hash} missing"
                );
            }
        }
    }
    eprintln!(
        "crash test: {kills} kills in {:.1?}, {n_acks} acknowledged writes, {} cases, {} materials, {n_killed_early} kills before any acknowledgement",
        started.elapsed(),
        cases.len(),
        materials.len()
    );
    assert!(
        n_acks > kills,
        "the writer barely wrote: {n_acks} acknowledgements"
    );
}
