//! Signed datasets: each kind is accepted only from its issuer, and any change
//! to the bytes is refused.

use tongban_domain::dataset::DatasetKind;
use tongban_domain::ids::Timestamp;
use tongban_ledger::dataset::{Dataset, DatasetError, SignedDataset};
use tongban_ledger::{OfficeKey, Revocation};

use crate::fixture::*;

fn dataset(
    kind: DatasetKind,
    scope: &str,
    issuer: Option<&str>,
    key: &OfficeKey,
    at: Timestamp,
) -> Vec<u8> {
    Dataset {
        kind,
        scope: scope.into(),
        version: 3,
        issued_at: at,
        issuer: issuer.map(office),
        public_key: key.public(),
        payload: b"payload bytes".to_vec(),
    }
    .sign(key)
    .encode()
}

#[test]
fn each_kind_is_taken_from_its_issuer_only() {
    let o = Offices::new();
    let dir = o.directory();
    let auth = o.authority.public();
    let at = bj(2025, 6, 1, 9, 0);
    let ok = [
        dataset(DatasetKind::Calendar, "00", None, &o.authority.key, at),
        dataset(DatasetKind::Certificates, "130102", Some(DPF), &o.dpf, at),
        dataset(DatasetKind::Dibao, "130102", Some(CA), &o.ca, at),
        dataset(DatasetKind::Deaths, "130102", Some(CA), &o.ca, at),
    ];
    for bytes in ok {
        let signed = SignedDataset::verify(&bytes, &dir, &auth).unwrap();
        assert_eq!(signed.encode(), bytes);
    }
    let wrong = [
        // A calendar signed by an office, or by another authority key.
        dataset(DatasetKind::Calendar, "00", Some(CA), &o.ca, at),
        dataset(DatasetKind::Calendar, "00", None, &o.ca, at),
        // Certificates from civil affairs; dibao from the DPF; a township.
        dataset(DatasetKind::Certificates, "130102", Some(CA), &o.ca, at),
        dataset(DatasetKind::Dibao, "130102", Some(DPF), &o.dpf, at),
        dataset(
            DatasetKind::Deaths,
            "130102",
            Some(DOMICILE),
            &o.domicile,
            at,
        ),
        // The right role for another county.
        dataset(DatasetKind::Dibao, "130104", Some(CA), &o.ca, at),
        // A key the directory does not certify for that office.
        dataset(DatasetKind::Dibao, "130102", Some(CA), &o.dpf, at),
    ];
    for bytes in wrong {
        let err = SignedDataset::verify(&bytes, &dir, &auth).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::WrongIssuer { .. } | DatasetError::KeyNotValid { .. }
            ),
            "{err}"
        );
    }
    // Scopes that do not fit the kind.
    for bytes in [
        dataset(DatasetKind::Calendar, "13", None, &o.authority.key, at),
        dataset(DatasetKind::Dibao, "13", Some(CA), &o.ca, at),
    ] {
        assert!(matches!(
            SignedDataset::verify(&bytes, &dir, &auth),
            Err(DatasetError::Scope(_))
        ));
    }
}

#[test]
fn a_revoked_key_signs_nothing_after_its_revocation() {
    let o = Offices::new();
    let dir = o.directory_with(
        Vec::new(),
        vec![Revocation {
            office: office(CA),
            public_key: o.ca.public(),
            effective: bj(2025, 6, 1, 0, 0),
            reason: "laptop lost".into(),
            serial: 99,
        }],
    );
    let auth = o.authority.public();
    let before = dataset(
        DatasetKind::Deaths,
        "130102",
        Some(CA),
        &o.ca,
        bj(2025, 5, 31, 9, 0),
    );
    SignedDataset::verify(&before, &dir, &auth).unwrap();
    let after = dataset(
        DatasetKind::Deaths,
        "130102",
        Some(CA),
        &o.ca,
        bj(2025, 6, 2, 9, 0),
    );
    let err = SignedDataset::verify(&after, &dir, &auth).unwrap_err();
    assert!(matches!(err, DatasetError::KeyNotValid { .. }), "{err}");
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn every_changed_or_missing_byte_is_refused() {
    let o = Offices::new();
    let dir = o.directory();
    let auth = o.authority.public();
    let bytes = dataset(
        DatasetKind::Dibao,
        "130102",
        Some(CA),
        &o.ca,
        bj(2025, 6, 1, 9, 0),
    );
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            SignedDataset::verify(&bad, &dir, &auth).is_err(),
            "byte {i}"
        );
        assert!(
            SignedDataset::verify(&bytes[..i], &dir, &auth).is_err(),
            "cut {i}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(SignedDataset::verify(&longer, &dir, &auth).is_err());
}
