//! What the node library's multi-office tests share: a seeded generator, a
//! memory-backed temporary directory, and the scans of a case's notice.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use tongban_domain::ids::{Operator, Timestamp};
use tongban_node::local::{LocalNode, NewCase};

/// A small deterministic generator (splitmix64): a seeded test makes the
/// same population in every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A temporary directory in memory where the machine has one: these tests
/// are about rules over thousands of cases, not durability (the store's own
/// tests are), and each of their many commits would wait for the disk.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// Attaches a scan for every item of a new case's notice (一次性告知), as a
/// window clerk does before accepting it.
pub fn attach_notice(node: &LocalNode, made: &NewCase, op: &Operator, at: Timestamp) {
    for (code, _) in &made.notice {
        let scan = format!("scan of {code} for {}", made.case_id);
        node.attach_reader(
            &made.case_id,
            scan.as_bytes(),
            &format!("{code}.jpg"),
            code,
            "image/jpeg",
            op,
            at,
        )
        .unwrap();
    }
}
