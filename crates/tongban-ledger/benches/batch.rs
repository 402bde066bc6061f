//! Verification of a set of transition signatures: `keys::verify_batch` (the
//! cofactored batch equation, deciding each signature as `PublicKey::verify`
//! does) beside `ed25519_dalek::verify_batch` (cofactorless, for scale), a plain
//! loop of `PublicKey::verify` (cofactored, strict encodings) and one of dalek's
//! `verify_strict` (cofactorless, what `PublicKey::verify` was before), on the
//! same signatures in the same run. The last column is what checking each key's
//! torsion (`PublicKey::check_strong`) would add to every single verification.
//!
//! ```text
//! cargo bench -p tongban-ledger --bench batch
//! ```
//!
//! The sets are shaped like a chunk of a county's documents at admission: three
//! transitions a document, signed by four township keys.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use ed25519_dalek::{Signature, VerifyingKey};
use tongban_ledger::keys::{OfficeKey, PublicKey, verify_batch};

/// Microseconds a signature for `rounds` runs of `f` over `n` signatures: the
/// best of five tries, since the machine is shared and its load comes and goes.
fn per_signature(n: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..rounds {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / (rounds * n) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let keys: Vec<OfficeKey> = (0..4u8)
        .map(|i| OfficeKey::from_bytes(&[i + 7; 32]))
        .collect();
    println!("signatures   verify_batch  dalek batch  verify (each)  verify_strict  check_strong");
    for n in [16usize, 64, 128, 384] {
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("signed transition {i:>180}").into_bytes())
            .collect();
        let signatures: Vec<[u8; 64]> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keys[(i / 3) % 4].sign(m))
            .collect();
        let publics: Vec<PublicKey> = (0..n).map(|i| keys[(i / 3) % 4].public()).collect();
        let items: Vec<(&[u8], &[u8; 64], &PublicKey)> = (0..n)
            .map(|i| (messages[i].as_slice(), &signatures[i], &publics[i]))
            .collect();
        let verifying: Vec<VerifyingKey> = publics
            .iter()
            .map(|p| VerifyingKey::from_bytes(p.as_bytes()).unwrap())
            .collect();
        let borrowed: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let dalek_signatures: Vec<Signature> =
            signatures.iter().map(Signature::from_bytes).collect();
        let rounds = 3_000 / n;
        // Warm up the key cache and the code paths.
        assert!(verify_batch(&items));
        let ours = per_signature(n, rounds, || assert!(verify_batch(&items)));
        let dalek = per_signature(n, rounds, || {
            assert!(ed25519_dalek::verify_batch(&borrowed, &dalek_signatures, &verifying).is_ok());
        });
        let single = per_signature(n, rounds.div_ceil(4), || {
            for (m, s, k) in &items {
                assert!(k.verify(m, s));
            }
        });
        let strict = per_signature(n, rounds.div_ceil(4), || {
            for ((m, s), k) in borrowed.iter().zip(&dalek_signatures).zip(&verifying) {
                assert!(k.verify_strict(m, s).is_ok());
            }
        });
        let strong = per_signature(n, rounds.div_ceil(4), || {
            for k in &publics {
                assert!(k.check_strong().is_ok());
            }
        });
        println!(
            "{n:>10}  {ours:>10.1} µs  {dalek:>8.1} µs  {single:>10.1} µs  {strict:>10.1} µs  {strong:>9.1} µs"
        );
    }
}
