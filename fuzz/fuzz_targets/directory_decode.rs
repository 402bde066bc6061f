//! The office directory and its entries (`SignedDirectory`, `SignedCertificate`,
//! `SignedRevocation` decode) on arbitrary bytes: never a panic, and whatever
//! decodes encodes back to a value that decodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tongban_ledger::directory::{SignedCertificate, SignedDirectory, SignedRevocation};

fuzz_target!(|data: &[u8]| {
    if let Ok(directory) = SignedDirectory::decode(data) {
        let again = SignedDirectory::decode(&directory.encode());
        assert_eq!(again.ok(), Some(directory), "directory round trip");
    }
    if let Ok(cert) = SignedCertificate::decode(data) {
        let again = SignedCertificate::decode(&cert.encode());
        assert_eq!(again.ok(), Some(cert), "certificate round trip");
    }
    if let Ok(revocation) = SignedRevocation::decode(data) {
        let again = SignedRevocation::decode(&revocation.encode());
        assert_eq!(again.ok(), Some(revocation), "revocation round trip");
    }
});
