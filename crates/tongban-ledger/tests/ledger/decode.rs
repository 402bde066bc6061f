//! Decoders are total: arbitrary bytes, truncations and extensions of valid
//! encodings give `Ok` or a typed error, never a panic; whatever decodes re-encodes
//! to the identical bytes.

use proptest::prelude::*;
use tongban_ledger::{
    DecodeError, Revocation, SignedCertificate, SignedDirectory, SignedRevocation, SignedTransition,
};

use crate::fixture::*;

/// Valid encodings of every format.
fn samples() -> Vec<Vec<u8>> {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut out: Vec<Vec<u8>> = chain.encoded();
    let cert = offices
        .authority
        .issue(offices.cert(DPF, 1, &offices.dpf))
        .unwrap();
    let rev = offices
        .authority
        .revoke(Revocation {
            office: office(DPF),
            public_key: offices.dpf.public(),
            effective: bj(2025, 1, 1, 0, 0),
            reason: "密钥泄露".into(),
            serial: 2,
        })
        .unwrap();
    out.push(cert.encode());
    out.push(rev.encode());
    out.push(
        offices
            .authority
            .publish(1, bj(2025, 1, 1, 0, 0), vec![cert], vec![rev])
            .encode(),
    );
    out
}

/// Every decoder on `bytes`; each must return, and re-encode exactly when it decodes.
fn decode_all(bytes: &[u8]) -> usize {
    let mut n_ok = 0;
    if let Ok(v) = SignedTransition::decode(bytes) {
        assert_eq!(v.encode(), bytes);
        n_ok += 1;
    }
    if let Ok(v) = SignedCertificate::decode(bytes) {
        assert_eq!(v.encode(), bytes);
        n_ok += 1;
    }
    if let Ok(v) = SignedRevocation::decode(bytes) {
        assert_eq!(v.encode(), bytes);
        n_ok += 1;
    }
    if let Ok(v) = SignedDirectory::decode(bytes) {
        assert_eq!(v.encode(), bytes);
        n_ok += 1;
    }
    n_ok
}

#[test]
fn truncations_and_extensions_are_refused() {
    for sample in samples() {
        assert_eq!(decode_all(&sample), 1);
        for len in 0..sample.len() {
            assert_eq!(
                decode_all(&sample[..len]),
                0,
                "prefix of {len} bytes decoded"
            );
        }
        let mut longer = sample.clone();
        longer.push(0);
        assert_eq!(decode_all(&longer), 0);
    }
}

#[test]
fn errors_name_field_and_offset() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let mut bytes = chain.signed[1].encode();
    let check = |bytes: &[u8], expect: expect_test::Expect| {
        expect.assert_eq(&SignedTransition::decode(bytes).unwrap_err().to_string());
    };
    check(
        &bytes[..40],
        expect_test::expect!["truncated at byte 40: field `office` needs 9 bytes, 0 left"],
    );
    let mut extended = bytes.clone();
    extended.extend_from_slice(b"xx");
    check(
        &extended,
        expect_test::expect!["2 trailing bytes after the end of the encoding at byte 301"],
    );
    // The `to` stage byte follows case (5 + 27) and seq (4) and from (1).
    bytes[37] = 99;
    check(
        &bytes,
        expect_test::expect!["field `to` at byte 37: unknown stage byte 99"],
    );
    assert!(matches!(
        SignedTransition::decode(b"TBTR\x02"),
        Err(DecodeError::UnsupportedVersion {
            offset: 4,
            found: 2,
            ..
        })
    ));
}

#[test]
fn unsorted_heads_are_not_canonical() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let signed = &chain.signed[1];
    let mut bytes = signed.encode();
    // Swap the two heads: still well formed, but not in canonical order.
    let heads_at = 5 + 27 + 4 + 1 + 1 + 11 + 17 + 8 + 2;
    let (first, second) = bytes[heads_at..heads_at + 64].split_at(32);
    let swapped: Vec<u8> = second.iter().chain(first).copied().collect();
    bytes[heads_at..heads_at + 64].copy_from_slice(&swapped);
    assert!(matches!(
        SignedTransition::decode(&bytes),
        Err(DecodeError::NonCanonical { field: "heads", .. })
    ));
}

fn mutated_sample() -> impl Strategy<Value = Vec<u8>> {
    let samples = samples();
    (
        0..samples.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        0usize..3,
    )
        .prop_map(move |(which, edits, cut)| {
            let mut bytes = samples[which].clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            match cut {
                1 => bytes.truncate(bytes.len() / 2),
                2 => bytes.extend_from_slice(&[0, 1, 2]),
                _ => {}
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        decode_all(&bytes);
    }

    #[test]
    fn magic_then_arbitrary_bytes_never_panic(
        magic in prop::sample::select(vec![&b"TBTR\x01"[..], b"TBCRT\x01", b"TBREV\x01", b"TBDIR\x01"]),
        rest in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&rest);
        decode_all(&bytes);
    }

    #[test]
    fn edited_encodings_decode_canonically_or_not_at_all(bytes in mutated_sample()) {
        decode_all(&bytes);
    }
}
