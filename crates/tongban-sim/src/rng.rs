//! The simulator's only source of chance, seeded, so that one seed replays one
//! run exactly.
//!
//! The generator is ChaCha8 from `rand_chacha`, whose output for a seed is fixed
//! by its specification and the crate's value-stability promise (unlike rand's
//! `SmallRng`, which may change algorithm between versions): a seed printed by a
//! failing run today replays the same run with a later build. `seed_from_u64`
//! expands the `u64` seed as rand_core specifies.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A seeded generator with the few draws the simulation makes.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// Four random bytes.
    pub fn bytes4(&mut self) -> [u8; 4] {
        let mut out = [0u8; 4];
        self.inner.fill_bytes(&mut out);
        out
    }

    /// Thirty-two random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.inner.fill_bytes(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_sequence() {
        let (mut a, mut b, mut c) = (Rng::new(42), Rng::new(42), Rng::new(43));
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..64).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..64).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert_eq!(a.bytes32(), b.bytes32());
        for _ in 0..1000 {
            let x = a.range(-3, 3);
            assert!((-3..=3).contains(&x));
            assert!(a.below(7) < 7);
        }
        assert_eq!(a.below(0), 0);
        let hits = (0..10_000).filter(|_| a.chance(0.2)).count();
        assert!((1_700..2_300).contains(&hits), "{hits}");
    }
}
