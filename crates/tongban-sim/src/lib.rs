//! Deterministic simulation testing of the Tongban sync protocol, in the spirit of
//! FoundationDB's and TigerBeetle's: real [`tongban_sync::SyncNode`]s on real
//! redb stores ([`tongban_replica::Replica`]), driven by one seeded scheduler
//! ([`sim::Sim`]) over a simulated network that loses, duplicates, delays and
//! reorders frames, partitions links, crashes nodes (dropping everything but the
//! store) and skews clocks, while simulated clerks drive real case documents
//! through the stage machine. After the network heals, [`check::check`] verifies
//! the invariants of the sync layer.
//!
//! Everything follows from the seed: keys are derived from office ids, Automerge
//! actors from office and case, and every choice from [`rng::Rng`], so a failing
//! seed replays exactly with `SIM_SEED=<seed> cargo test -p tongban-sim replay`.
//!
//! This crate is test support. It must never be a dependency of the node: it
//! writes stores under temporary directories and trusts its own world.

pub mod check;
pub mod rng;
pub mod sim;
pub mod world;

pub use sim::{Faults, Sim, SimConfig, SimError, SimStats};

/// Runs one seed end to end and returns every invariant violation.
pub fn run_seed(config: SimConfig) -> Result<(Sim, Vec<String>), SimError> {
    let mut sim = Sim::new(config)?;
    sim.run();
    let mut violations = std::mem::take(&mut sim.violations);
    violations.extend(check::check(&sim));
    Ok((sim, violations))
}
