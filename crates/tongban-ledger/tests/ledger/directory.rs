//! The signed directory: verification, key status over time, rotation, updates.

use tongban_domain::stage::Role;
use tongban_ledger::{
    Directory, DirectoryAuthority, DirectoryError, InvalidEntry, KeyError, KeyStatus, OfficeKey,
    PublicKey, Revocation, SignedDirectory,
};

use crate::fixture::*;

#[test]
fn a_bad_entry_is_named() {
    let offices = Offices::new();
    let certs = vec![
        offices
            .authority
            .issue(offices.cert(ACCEPTANCE, 1, &offices.acceptance))
            .unwrap(),
        offices
            .authority
            .issue(offices.cert(DPF, 2, &offices.dpf))
            .unwrap(),
    ];
    // A certificate signed by someone else, slipped into a directory the authority signs.
    let forger = DirectoryAuthority::new(OfficeKey::from_bytes(&[9; 32]));
    let mut certs_with_forgery = certs.clone();
    certs_with_forgery.push(forger.issue(offices.cert(CA, 3, &offices.ca)).unwrap());
    let signed = offices
        .authority
        .publish(2, bj(2025, 1, 1, 0, 0), certs_with_forgery, vec![]);
    let err = Directory::verify(&signed.encode(), &offices.authority.public()).unwrap_err();
    expect_test::expect![
        "certificate #2 (serial 3, office 130102-ca) has an invalid authority signature"
    ]
    .assert_eq(&err.to_string());

    // An altered directory fails its own signature.
    let signed = offices
        .authority
        .publish(2, bj(2025, 1, 1, 0, 0), certs, vec![]);
    let mut altered = signed.clone();
    altered.directory.version = 3;
    let err = Directory::verify(&altered.encode(), &offices.authority.public()).unwrap_err();
    assert!(
        matches!(err, DirectoryError::BadSignature { version: 3 }),
        "{err}"
    );

    // Another authority is not trusted.
    let err = Directory::verify(&signed.encode(), &forger.public()).unwrap_err();
    assert!(
        matches!(err, DirectoryError::UntrustedAuthority { .. }),
        "{err}"
    );

    // Garbage is a decode error naming where.
    let err = Directory::verify(&signed.encode()[..50], &offices.authority.public()).unwrap_err();
    assert!(matches!(err, DirectoryError::Decode(_)), "{err}");
}

#[test]
fn invalid_certificates_are_not_issued() {
    let offices = Offices::new();
    let mut cert = offices.cert(DPF, 1, &offices.dpf);
    cert.division = "1301".into();
    assert_eq!(
        offices.authority.issue(cert.clone()).unwrap_err(),
        InvalidEntry::Division("1301".into())
    );
    cert.division = "130102".into();
    cert.not_after = bj(2020, 1, 1, 0, 0);
    assert!(matches!(
        offices.authority.issue(cert.clone()),
        Err(InvalidEntry::Window { .. })
    ));
    // A window that ends as it begins certifies nothing.
    cert.not_after = cert.not_before;
    expect_test::expect!["the validity window is empty: not_after (2021-01-01 00:00) must be later than not_before (2021-01-01 00:00)"]
        .assert_eq(&offices.authority.issue(cert.clone()).unwrap_err().to_string());
    cert.not_after = bj(2028, 12, 31, 0, 0);
    assert!(offices.authority.issue(cert.clone()).is_ok());
    // Weak keys are not certified: the identity (small order), a point with a
    // small-order component, and bytes that are no point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    cert.public_key = PublicKey(identity);
    expect_test::expect!["public key 8ee11e0aca1a89dd: the public key is a weak key (a point of small order): signatures under it prove nothing"]
        .assert_eq(&offices.authority.issue(cert.clone()).unwrap_err().to_string());
    let mut two = [0u8; 32];
    two[0] = 2;
    cert.public_key = PublicKey(two);
    assert!(matches!(
        offices.authority.issue(cert.clone()),
        Err(InvalidEntry::WeakKey {
            reason: KeyError::NotAPoint,
            ..
        })
    ));
}

#[test]
fn key_status_over_time_and_rotation() {
    let offices = Offices::new();
    let new_key = OfficeKey::from_bytes(&[42; 32]);
    // Rotation: the old key until 2025-06-30, the new one from 2025-07-01.
    let mut old = offices.cert(DPF, 10, &offices.dpf);
    old.not_before = bj(2024, 1, 1, 0, 0);
    old.not_after = bj(2025, 6, 30, 23, 59);
    let mut new = offices.cert(DPF, 11, &new_key);
    new.not_before = bj(2025, 7, 1, 0, 0);
    let authority = &offices.authority;
    let certs = vec![authority.issue(old).unwrap(), authority.issue(new).unwrap()];
    let revocation = authority
        .revoke(Revocation {
            office: office(DPF),
            public_key: new_key.public(),
            effective: bj(2026, 3, 1, 0, 0),
            reason: "设备更换".into(),
            serial: 1,
        })
        .unwrap();
    let dir = Directory::verify(
        &authority
            .publish(1, bj(2025, 7, 1, 0, 0), certs, vec![revocation])
            .encode(),
        &authority.public(),
    )
    .unwrap();
    let dpf = office(DPF);
    let old_key = offices.dpf.public();
    let new_pub = new_key.public();
    let status = |key, at| dir.certificate_for_key_at(&dpf, key, at);

    assert!(
        matches!(status(&old_key, bj(2025, 3, 1, 0, 0)), KeyStatus::Valid(c) if c.serial == 10)
    );
    assert!(matches!(
        status(&old_key, bj(2025, 8, 1, 0, 0)),
        KeyStatus::Expired { .. }
    ));
    assert!(matches!(
        status(&old_key, bj(2023, 8, 1, 0, 0)),
        KeyStatus::NotYetValid { .. }
    ));
    assert!(matches!(
        status(&new_pub, bj(2025, 3, 1, 0, 0)),
        KeyStatus::NotYetValid { .. }
    ));
    assert!(
        matches!(status(&new_pub, bj(2025, 8, 1, 0, 0)), KeyStatus::Valid(c) if c.serial == 11)
    );
    // Revoked from 2026-03-01: earlier signatures stay valid, later ones are not.
    assert!(matches!(
        status(&new_pub, bj(2026, 2, 28, 0, 0)),
        KeyStatus::Valid(_)
    ));
    assert!(matches!(
        status(&new_pub, bj(2026, 3, 1, 0, 0)),
        KeyStatus::Revoked { effective, .. } if effective == bj(2026, 3, 1, 0, 0)
    ));
    // A key certified for one office is unknown for another.
    assert_eq!(
        dir.certificate_for_key_at(&office(CA), &old_key, bj(2025, 3, 1, 0, 0)),
        KeyStatus::UnknownKey
    );

    // Transport's question.
    assert!(dir.is_key_allowed_now(&new_key.public(), bj(2025, 9, 1, 0, 0)));
    assert!(!dir.is_key_allowed_now(&new_key.public(), bj(2026, 9, 1, 0, 0)));
    assert!(!dir.is_key_allowed_now(&old_key, bj(2025, 9, 1, 0, 0)));
    assert_eq!(
        dir.office_for_key_at(&old_key, bj(2025, 1, 1, 0, 0))
            .map(|c| c.role),
        Some(Role::CountyDpf)
    );
    assert_eq!(dir.offices(), vec![&dpf]);
    assert_eq!(dir.certificates_of(&dpf).len(), 2);
}

#[test]
fn a_newer_directory_replaces_an_older_one() {
    let offices = Offices::new();
    let mut current = offices.directory();
    assert_eq!(current.version, 7);
    let older = offices
        .authority
        .publish(6, bj(2023, 1, 1, 0, 0), vec![], vec![]);
    let older = Directory::verify(&older.encode(), &offices.authority.public()).unwrap();
    assert!(!current.merge_newer(older).unwrap());
    assert_eq!(current.version, 7);
    let newer = offices
        .authority
        .publish(8, bj(2025, 1, 1, 0, 0), vec![], vec![]);
    let newer = Directory::verify(&newer.encode(), &offices.authority.public()).unwrap();
    assert!(current.merge_newer(newer).unwrap());
    assert_eq!(current.version, 8);
    let foreign = DirectoryAuthority::new(OfficeKey::from_bytes(&[8; 32])).publish(
        9,
        bj(2025, 1, 1, 0, 0),
        vec![],
        vec![],
    );
    let foreign = SignedDirectory::decode(&foreign.encode())
        .unwrap()
        .directory;
    assert!(matches!(
        current.merge_newer(foreign),
        Err(DirectoryError::AuthorityMismatch { .. })
    ));
}

#[test]
fn duplicate_serials_are_refused() {
    let offices = Offices::new();
    let a = offices
        .authority
        .issue(offices.cert(DPF, 5, &offices.dpf))
        .unwrap();
    let b = offices
        .authority
        .issue(offices.cert(CA, 5, &offices.ca))
        .unwrap();
    let signed = offices
        .authority
        .publish(1, bj(2025, 1, 1, 0, 0), vec![a, b], vec![]);
    let err = Directory::verify(&signed.encode(), &offices.authority.public()).unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::DuplicateSerial {
                index: 1,
                serial: 5,
                ..
            }
        ),
        "{err}"
    );
}

/// A certificate for a key that is not strong — a key with a small-order
/// component, which an authority before `check_strong` could have signed — reads,
/// but the directory does not verify: signature verification assumes strong keys.
#[test]
fn a_directory_certifying_a_weak_key_does_not_verify() {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    let offices = Offices::new();
    let good = offices
        .authority
        .issue(offices.cert(DPF, 5, &offices.dpf))
        .unwrap();
    let strong = offices
        .authority
        .issue(offices.cert(CA, 6, &offices.ca))
        .unwrap();
    // The same certificate with a mixed-torsion key, signed by the authority
    // byte for byte (issue would refuse it).
    let mixed = (ED25519_BASEPOINT_POINT * Scalar::from(7u64) + EIGHT_TORSION[1])
        .compress()
        .0;
    let mut bytes = strong.encode();
    let at = bytes
        .windows(32)
        .position(|w| w == offices.ca.public().as_bytes())
        .unwrap();
    bytes[at..at + 32].copy_from_slice(&mixed);
    let body = bytes.len() - 64;
    let signature = offices.authority.key.sign(&bytes[..body]);
    bytes[body..].copy_from_slice(&signature);
    let weak = tongban_ledger::SignedCertificate::decode(&bytes).unwrap();
    assert_eq!(weak.cert.public_key, PublicKey(mixed));
    assert!(weak.verify_signature(&offices.authority.public()));
    let signed = offices
        .authority
        .publish(1, bj(2025, 1, 1, 0, 0), vec![good, weak], vec![]);
    let encoded = signed.encode();
    assert!(SignedDirectory::decode(&encoded).is_ok());
    let err = Directory::verify(&encoded, &offices.authority.public()).unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::WeakKey {
                index: 1,
                serial: 6,
                reason: KeyError::MixedTorsion,
                ..
            }
        ),
        "{err}"
    );
}
