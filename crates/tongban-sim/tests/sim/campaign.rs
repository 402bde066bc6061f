//! The seed campaign: `SIM_SEEDS=N` seeds (200 by default), and `replay` for one.

use std::time::Instant;

use tongban_sim::{SimConfig, run_seed};

fn replay_command(seed: u64) -> String {
    format!("SIM_SEED={seed} cargo test -p tongban-sim --test sim replay -- --nocapture")
}

/// Runs the seeds `seeds` on `threads` threads; returns the failures.
fn campaign(seeds: Vec<u64>, threads: usize) -> Vec<(u64, Vec<String>)> {
    let seeds = std::sync::Arc::new(std::sync::Mutex::new(seeds));
    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let seeds = seeds.clone();
            let failures = failures.clone();
            std::thread::spawn(move || {
                loop {
                    let Some(seed) = seeds.lock().unwrap().pop() else {
                        break;
                    };
                    let result = std::panic::catch_unwind(|| run_seed(SimConfig::for_seed(seed)));
                    let violations = match result {
                        Ok(Ok((_, violations))) => violations,
                        Ok(Err(err)) => vec![format!("setup failed: {err}")],
                        Err(_) => vec!["panicked".to_string()],
                    };
                    if !violations.is_empty() {
                        eprintln!("seed {seed} FAILED; replay with: {}", replay_command(seed));
                        failures.lock().unwrap().push((seed, violations));
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut failures = std::mem::take(&mut *failures.lock().unwrap());
    failures.sort();
    failures
}

#[test]
fn seeds() {
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let start = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let failures = campaign((0..n).rev().collect(), threads);
    eprintln!("{n} seeds in {:.1?}", start.elapsed());
    if let Some((seed, violations)) = failures.first() {
        panic!(
            "{} of {n} seeds failed; first: seed {seed}:\n  {}\nreplay with:\n  {}",
            failures.len(),
            violations
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  "),
            replay_command(*seed)
        );
    }
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let mut config = SimConfig::for_seed(seed);
    config.trace = true;
    if let Some(hours) = std::env::var("SIM_HEAL_HOURS")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        config.heal_limit_ms = hours * 3_600_000;
    }
    let start = Instant::now();
    let (sim, violations) = run_seed(config.clone()).unwrap();
    for line in &sim.trace {
        println!("{line}");
    }
    println!(
        "{config:?}\n{:?}\n{:?}\n{:?}\nin {:.1?}",
        sim.stats,
        sim.sync_stats(),
        sim.material_stats(),
        start.elapsed()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}:\n  {}",
        violations.join("\n  ")
    );
}
