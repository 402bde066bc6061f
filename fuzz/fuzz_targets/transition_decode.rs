//! `tongban_ledger::transition::SignedTransition::decode` on arbitrary bytes: it
//! must never panic, and because the encoding is canonical, whatever decodes must
//! encode to exactly the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tongban_ledger::transition::SignedTransition;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedTransition::decode(data) {
        assert_eq!(signed.encode(), data, "the transition encoding is not canonical");
        // Checking the signature of arbitrary bytes must not panic either.
        let _ = signed.verify_signature();
    }
});
