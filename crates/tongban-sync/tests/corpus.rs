//! Every decoder of bytes from a peer or a file, fed the checked-in fuzz corpora
//! (`fuzz/corpus/<target>/`, real encodings written by
//! `cargo run -p tongban-sim --example fuzz_corpus`), mutations of them, and
//! arbitrary bytes: each must return a value or an error, never panic, and what
//! decodes must encode back to itself. This is how CI exercises the fuzz targets
//! without a nightly toolchain; `fuzz/` runs the same checks under libFuzzer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;
use tongban_ledger::directory::{SignedCertificate, SignedDirectory, SignedRevocation};
use tongban_ledger::transition::SignedTransition;
use tongban_sync::wire::{Message, frame_len};

/// What the `wire_decode` fuzz target checks.
fn wire(data: &[u8]) {
    let _ = frame_len(data);
    if let Ok(message) = Message::decode(data) {
        let encoded = message.encode().unwrap();
        assert_eq!(encoded, data, "the frame encoding is not canonical");
        assert_eq!(Message::decode(&encoded).unwrap(), message);
    }
}

/// What the `transition_decode` fuzz target checks.
fn transition(data: &[u8]) {
    if let Ok(signed) = SignedTransition::decode(data) {
        assert_eq!(
            signed.encode(),
            data,
            "the transition encoding is not canonical"
        );
        let _ = signed.verify_signature();
    }
}

/// What the `directory_decode` fuzz target checks.
fn directory(data: &[u8]) {
    if let Ok(directory) = SignedDirectory::decode(data) {
        assert_eq!(
            SignedDirectory::decode(&directory.encode()).ok(),
            Some(directory)
        );
    }
    if let Ok(cert) = SignedCertificate::decode(data) {
        assert_eq!(SignedCertificate::decode(&cert.encode()).ok(), Some(cert));
    }
    if let Ok(revocation) = SignedRevocation::decode(data) {
        assert_eq!(
            SignedRevocation::decode(&revocation.encode()).ok(),
            Some(revocation)
        );
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A fuzz target's name and its checks.
type Target = (&'static str, fn(&[u8]));

fn targets() -> [Target; 3] {
    [
        ("wire_decode", wire),
        ("transition_decode", transition),
        ("directory_decode", directory),
    ]
}

#[test]
fn every_corpus_file_decodes() {
    // The corpora are valid encodings: each must decode (not only not panic),
    // so a format change that breaks them is noticed.
    for data in corpus("wire_decode") {
        wire(&data);
        Message::decode(&data).unwrap();
    }
    for data in corpus("transition_decode") {
        transition(&data);
        SignedTransition::decode(&data).unwrap();
    }
    for data in corpus("directory_decode") {
        directory(&data);
        let decodes = SignedDirectory::decode(&data).is_ok()
            || SignedCertificate::decode(&data).is_ok()
            || SignedRevocation::decode(&data).is_ok();
        assert!(decodes);
    }
}

#[test]
fn every_prefix_and_single_byte_change_of_the_corpus_is_handled() {
    for (target, check) in targets() {
        for data in corpus(target) {
            for cut in 0..data.len() {
                check(&data[..cut]);
            }
            for at in 0..data.len().min(512) {
                let mut mutated = data.clone();
                for flip in [0x01, 0x80, 0xff] {
                    mutated[at] ^= flip;
                    check(&mutated);
                    mutated[at] ^= flip;
                }
            }
        }
    }
}

/// A corpus file with a few bytes overwritten, inserted or removed.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let files = corpus(target);
    (
        0..files.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(move |(file, edits)| {
            let mut data = files[file].clone();
            for (at, byte, op) in edits {
                if data.is_empty() {
                    data.push(byte);
                    continue;
                }
                let at = at % data.len();
                match op {
                    0 => data[at] = byte,
                    1 => data.insert(at, byte),
                    _ => {
                        data.remove(at);
                    }
                }
            }
            data
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        wire(&data);
        transition(&data);
        directory(&data);
    }

    #[test]
    fn mutated_frames_never_panic(data in mutated("wire_decode")) {
        wire(&data);
    }

    #[test]
    fn mutated_transitions_never_panic(data in mutated("transition_decode")) {
        transition(&data);
    }

    #[test]
    fn mutated_directories_never_panic(data in mutated("directory_decode")) {
        directory(&data);
    }
}
