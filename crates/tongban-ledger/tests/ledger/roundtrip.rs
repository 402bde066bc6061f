//! Encode → decode → encode gives identical bytes, for every signed format.

use tongban_domain::stage::Stage;
use tongban_ledger::{
    Revocation, SignedCertificate, SignedDirectory, SignedRevocation, SignedTransition, hex,
};

use crate::fixture::*;

#[test]
fn certificate_round_trip() {
    let offices = Offices::new();
    let signed = offices
        .authority
        .issue(offices.cert(DPF, 9, &offices.dpf))
        .unwrap();
    let bytes = signed.encode();
    let back = SignedCertificate::decode(&bytes).unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.encode(), bytes);
    assert!(back.verify_signature(&offices.authority.public()));
    assert!(!back.verify_signature(&offices.dpf.public()));
}

#[test]
fn revocation_round_trip() {
    let offices = Offices::new();
    let signed = offices
        .authority
        .revoke(Revocation {
            office: office(DOMICILE),
            public_key: offices.domicile.public(),
            effective: bj(2025, 6, 1, 0, 0),
            reason: "办公电脑丢失".into(),
            serial: 3,
        })
        .unwrap();
    let bytes = signed.encode();
    let back = SignedRevocation::decode(&bytes).unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.encode(), bytes);
    assert!(back.verify_signature(&offices.authority.public()));
}

#[test]
fn directory_round_trip() {
    let offices = Offices::new();
    let cert = offices
        .authority
        .issue(offices.cert(CA, 1, &offices.ca))
        .unwrap();
    let rev = offices
        .authority
        .revoke(Revocation {
            office: office(CA),
            public_key: offices.ca.public(),
            effective: bj(2026, 1, 1, 0, 0),
            reason: String::new(),
            serial: 1,
        })
        .unwrap();
    let signed = offices
        .authority
        .publish(3, bj(2025, 1, 1, 0, 0), vec![cert], vec![rev]);
    let bytes = signed.encode();
    let back = SignedDirectory::decode(&bytes).unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.encode(), bytes);
    back.verify(&offices.authority.public()).unwrap();
}

#[test]
fn transition_round_trip() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    for signed in &chain.signed {
        let bytes = signed.encode();
        let back = SignedTransition::decode(&bytes).unwrap();
        assert_eq!(&back, signed);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.hash(), signed.hash());
        assert!(back.verify_signature());
    }
}

#[test]
fn signing_sorts_heads_and_checks_the_key() {
    let offices = Offices::new();
    let chain = ChainBuilder::new(&offices);
    let mut t = chain.next(Stage::Draft, ACCEPTANCE, bj(2025, 3, 3, 9, 0));
    t.heads = vec![head(3), head(1), head(3), head(2)];
    let signed = SignedTransition::sign(t.clone(), &offices.acceptance).unwrap();
    let mut expected = vec![head(1), head(2), head(3)];
    expected.sort();
    assert_eq!(signed.transition.heads, expected);
    let err = SignedTransition::sign(t.clone(), &offices.domicile).unwrap_err();
    assert!(err.to_string().contains("is not the public key"), "{err}");
    t.heads = (0..65).map(head).collect();
    assert!(SignedTransition::sign(t, &offices.acceptance).is_err());
}

/// The encoding of version 1 is fixed forever: this snapshot changing means a
/// format change, which needs a new version byte.
#[test]
fn transition_encoding_is_stable() {
    let offices = Offices::new();
    let chain = full_chain(&offices);
    let bytes = chain.signed[1].encode();
    let fields = [
        ("magic+version", 5),
        ("case", 2 + 25),
        ("seq", 4),
        ("from", 1),
        ("to", 1),
        ("office", 2 + 9),
        ("operator", 2 + 15),
        ("at", 8),
        ("n_heads", 2),
        ("heads", 64),
        ("prev", 33),
        ("payload_digest", 32),
        ("signer_key", 32),
        ("signature", 64),
    ];
    let mut offset = 0;
    let mut out = String::new();
    for (name, len) in fields {
        out.push_str(&format!(
            "{offset:>3} {name:<14} {}\n",
            hex(&bytes[offset..offset + len])
        ));
        offset += len;
    }
    assert_eq!(offset, bytes.len());
    expect_test::expect![[r#"
          0 magic+version  5442545201
          5 case           00193434303130363030312d32303235303330332d304734305234
         32 seq            00000001
         36 from           01
         37 to             02
         38 office         0009343430313036303031
         49 operator       000f636c65726b2d343430313036303031
         66 at             0000019559bb4500
         74 n_heads        0002
         76 heads          0f3019876d84643d6e6646cbbaaf8bc4cf9d5c2638c09210b16fc4d493926834414ef39fa0bdc2dc38d13ed0715a4bf5ab6fd26bc0d0ee917f4a7c814e2cc4f6
        140 prev           0104811d4a56948326a6e76fc7ada2acfe3aad9a64b8a20def009801e93e771f77
        173 payload_digest af75b26e84d34f1eae28f6d27acd058e70ed3b2cb923ff1150c40be55f94497d
        205 signer_key     8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394
        237 signature      45afb31f8db792197361dfd54d507e37e18da2695935863d180c14842315644abf6d41221a96edae786f5e24a1c746e5e44fd9c01297e47d919b377fc2e16c05
    "#]].assert_eq(&out);
}
