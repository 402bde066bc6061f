//! Every single-byte change to any encoded transition of a valid history is caught.

use proptest::prelude::*;

use crate::fixture::*;

proptest! {
    // One case is exhaustive over byte positions (about 3,000 verifications of a
    // ten-transition history); the replacement bytes are random. One case keeps the
    // test at a few seconds; raise `cases` for a longer run.
    #![proptest_config(ProptestConfig { cases: 1, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_byte_change_is_an_error(xors in proptest::collection::vec(1u8..=255, 4096)) {
        let offices = Offices::new();
        let chain = full_chain(&offices);
        let directory = offices.directory();
        let calendar = calendar();
        let now = bj(2025, 3, 13, 9, 0);
        let entries = chain.encoded();
        let clean = verify_all_heads(&chain.case, entries.clone(), &directory, &calendar, now);
        prop_assert!(clean.violations.is_empty(), "{}", render(&clean));

        let mut n_checked = 0usize;
        for (entry_idx, entry) in entries.iter().enumerate() {
            for position in 0..entry.len() {
                let mut mutated = entries.clone();
                mutated[entry_idx][position] ^= xors[n_checked % xors.len()];
                let report = verify_all_heads(&chain.case, mutated, &directory, &calendar, now);
                prop_assert!(
                    !report.is_ok(),
                    "entry {} byte {} changed without an error: {}",
                    entry_idx, position, render(&report)
                );
                n_checked += 1;
            }
        }
        prop_assert!(n_checked > 2000);
    }
}
