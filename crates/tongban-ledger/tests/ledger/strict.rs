//! Signatures mean one thing: batch verification (`keys::verify_batch`) decides
//! every signature exactly as one-at-a-time verification (`PublicKey::verify`)
//! does, whatever else is in the batch. Both use the cofactored equation
//! `[8]([s]B − R − [k]A) = 0` with strict encodings (canonical `s`, `R` and key
//! canonically encoded and not of small order).
//!
//! The edge cases are made with curve arithmetic rather than a signing key, so
//! that each is signed to make the cofactorless equation `[s]B = R + [k]A` hold
//! exactly wherever that is possible: a small-order `R` (every encoding of the
//! eight small-order points, the non-canonical ones too), small-order keys,
//! non-canonical `s`, keys and `R` with a small-order component, and encodings of
//! `y + p`. These are where a batch and a single verification of different
//! equations part. `reference` restates the rules independently (encodings
//! checked by compressing again), and dalek's cofactorless `verify_strict` shows
//! where the cofactored rules differ from it, as intended: `R + T` verifies where
//! `R` does.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use proptest::prelude::*;
use sha2::{Digest as _, Sha512};
use tongban_ledger::keys::{KeyError, OfficeKey, PublicKey, verify_batch};

const B: EdwardsPoint = ED25519_BASEPOINT_POINT;

/// `p + k` (`p = 2^255 - 19`) as 32 little-endian bytes, sign bit clear: the
/// non-canonical encoding of `y = k`, for `k <= 18`.
fn p_plus(k: u8) -> [u8; 32] {
    let mut bytes = [0xff; 32];
    bytes[0] = 0xed + k;
    bytes[31] = 0x7f;
    bytes
}

fn with_sign(mut bytes: [u8; 32]) -> [u8; 32] {
    bytes[31] |= 0x80;
    bytes
}

/// Every 32-byte string that decodes to a point of small order: the eight points'
/// canonical encodings, then the six others (`y = 0` and `y = 1` written as
/// `y + p`, either sign, and the two points with `x = 0` written with `x`
/// negative).
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut all: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|t| t.compress().0).collect();
    all.extend([
        p_plus(0),
        with_sign(p_plus(0)),
        p_plus(1),
        with_sign(p_plus(1)),
    ]);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    all.push(with_sign(identity));
    let mut minus_one = p_plus(0);
    minus_one[0] = 0xec;
    all.push(with_sign(minus_one));
    all
}

/// Non-canonical encodings (`y + p`) of points that are not of small order: each
/// such point has a small-order component, and nobody knows its discrete log.
fn non_canonical_large() -> Vec<[u8; 32]> {
    (2..=18)
        .flat_map(|k| [p_plus(k), with_sign(p_plus(k))])
        .filter(|bytes| CompressedEdwardsY(*bytes).decompress().is_some())
        .collect()
}

fn point(bytes: &[u8; 32]) -> EdwardsPoint {
    CompressedEdwardsY(*bytes).decompress().unwrap()
}

/// `[4]P`.
fn times_four(p: &EdwardsPoint) -> EdwardsPoint {
    let twice = p + p;
    twice + twice
}

/// A point of order 8: multiples of it are every small-order point.
fn torsion_generator() -> EdwardsPoint {
    *EIGHT_TORSION
        .iter()
        .find(|t| !times_four(t).is_identity())
        .unwrap()
}

fn scalar(tag: &str, seed: u64) -> Scalar {
    let mut sha = Sha512::new();
    sha.update(tag.as_bytes());
    sha.update(seed.to_le_bytes());
    Scalar::from_bytes_mod_order_wide(&sha.finalize().into())
}

/// The ed25519 challenge `k = H(R || A || M) mod l` over the encodings as given.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut sha = Sha512::new();
    sha.update(r);
    sha.update(a);
    sha.update(message);
    Scalar::from_bytes_mod_order_wide(&sha.finalize().into())
}

fn signature(r: &[u8; 32], s: &Scalar) -> [u8; 64] {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// One signature to verify.
#[derive(Debug, Clone)]
struct Item {
    what: String,
    message: Vec<u8>,
    signature: [u8; 64],
    key: PublicKey,
}

impl Item {
    /// `PublicKey::verify`: the definition of a valid signature.
    fn verify(&self) -> bool {
        self.key.verify(&self.message, &self.signature)
    }

    /// dalek's `verify_strict` (cofactorless), what `PublicKey::verify` was.
    fn dalek_strict(&self) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.key.0).is_ok_and(|key| {
            key.verify_strict(
                &self.message,
                &ed25519_dalek::Signature::from_bytes(&self.signature),
            )
            .is_ok()
        })
    }

    /// The rules restated: `s < l`; `R` and the key decode, are their points'
    /// canonical encodings (compressed again) and are not of small order; and
    /// `[8]([s]B - R - [k]A)` is the identity.
    fn reference(&self) -> bool {
        let r: [u8; 32] = self.signature[..32].try_into().unwrap();
        let s: [u8; 32] = self.signature[32..].try_into().unwrap();
        let Some(s_scalar) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let strong = |bytes: &[u8; 32]| {
            CompressedEdwardsY(*bytes)
                .decompress()
                .filter(|p| p.compress().0 == *bytes && !p.is_small_order())
        };
        let (Some(r_point), Some(a_point)) = (strong(&r), strong(&self.key.0)) else {
            return false;
        };
        let k = challenge(&r, &self.key.0, &self.message);
        (B * s_scalar - r_point - a_point * k)
            .mul_by_cofactor()
            .is_identity()
    }

    /// Whether `[s]B = R + [k]A` holds as points (the cofactorless equation,
    /// before any check of encodings or small order).
    fn equation_holds(&self) -> bool {
        let r: [u8; 32] = self.signature[..32].try_into().unwrap();
        let s: [u8; 32] = self.signature[32..].try_into().unwrap();
        let (Some(r_point), Some(a_point)) = (
            CompressedEdwardsY(r).decompress(),
            CompressedEdwardsY(self.key.0).decompress(),
        ) else {
            return false;
        };
        let k = challenge(&r, &self.key.0, &self.message);
        B * Scalar::from_bytes_mod_order(s) == r_point + a_point * k
    }
}

/// The first message `base #n` whose challenge satisfies `want`.
fn grind(base: &str, r: &[u8; 32], a: &[u8; 32], want: impl Fn(&Scalar) -> bool) -> Vec<u8> {
    (0..10_000)
        .map(|n| format!("{base} #{n}").into_bytes())
        .find(|m| want(&challenge(r, a, m)))
        .unwrap()
}

/// The kinds of item the property mixes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Signed by an office key.
    Honest,
    /// A valid signature presented with another message.
    OtherMessage,
    /// `s + l` in place of `s`.
    NonCanonicalS,
    /// `R` is small-order encoding `i`; the key carries the small-order component
    /// that makes the equation hold exactly.
    SmallOrderR(usize),
    /// The key is small-order encoding `i`; the equation holds exactly.
    SmallOrderKey(usize),
    /// The key has small-order component `i`; signed as an honest signer would
    /// (valid: the cofactor kills `[k]T`; cofactorless, only when `[k]T` vanishes).
    MixedKey(usize),
    /// As `MixedKey`, with the message ground so that it is valid.
    MixedKeyValid(usize),
    /// `R` has small-order component `i`: valid (the cofactor kills it), where
    /// the cofactorless equation never holds. The malleability the cofactored
    /// equation allows: a signature's `R + T` verifies where `R` does.
    MixedR(usize),
    /// Key and `R` both have a small-order component, cancelling: valid.
    MixedBoth(usize),
    /// `R` is a non-canonical encoding of a point not of small order.
    NonCanonicalR(usize),
    /// The key is a non-canonical encoding of a point not of small order.
    NonCanonicalKey(usize),
}

fn kind(choice: u8, index: usize) -> Kind {
    match choice % 11 {
        0 => Kind::Honest,
        1 => Kind::OtherMessage,
        2 => Kind::NonCanonicalS,
        3 => Kind::SmallOrderR(index),
        4 => Kind::SmallOrderKey(index),
        5 => Kind::MixedKey(index),
        6 => Kind::MixedKeyValid(index),
        7 => Kind::MixedR(index),
        8 => Kind::MixedBoth(index),
        9 => Kind::NonCanonicalR(index),
        _ => Kind::NonCanonicalKey(index),
    }
}

fn make(kind: Kind, seed: u64) -> Item {
    let a = scalar("a", seed);
    let r = scalar("r", seed);
    let base = format!("transition {seed}");
    let small = small_order_encodings();
    let large = non_canonical_large();
    // A small-order component other than the identity.
    let torsion = |i: usize| EIGHT_TORSION[1 + i % 7];
    let honest = |a_point: EdwardsPoint, r_point: EdwardsPoint, message: Vec<u8>| {
        let (a_bytes, r_bytes) = (a_point.compress().0, r_point.compress().0);
        let s = r + challenge(&r_bytes, &a_bytes, &message) * a;
        (message, signature(&r_bytes, &s), PublicKey(a_bytes))
    };
    let (what, (message, signature, key)) = match kind {
        Kind::Honest => {
            let key = OfficeKey::from_bytes(&scalar("key", seed).to_bytes());
            let message = base.into_bytes();
            (
                "honest",
                (message.clone(), key.sign(&message), key.public()),
            )
        }
        Kind::OtherMessage => {
            let key = OfficeKey::from_bytes(&scalar("key", seed).to_bytes());
            let signature = key.sign(base.as_bytes());
            let other = format!("{base}!").into_bytes();
            ("other message", (other, signature, key.public()))
        }
        Kind::NonCanonicalS => {
            let (message, mut sig, key) = honest(B * a, B * r, base.into_bytes());
            let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
            // s + l as an integer: l's bytes added with carries.
            let l = (Scalar::ZERO - Scalar::ONE).to_bytes();
            let mut carry = 1u16; // l = (l - 1) + 1
            let mut sum = [0u8; 32];
            for (i, out) in sum.iter_mut().enumerate() {
                let total = u16::from(s.as_bytes()[i]) + u16::from(l[i]) + carry;
                *out = (total & 0xff) as u8;
                carry = total >> 8;
            }
            sig[32..].copy_from_slice(&sum);
            ("non-canonical s", (message, sig, key))
        }
        Kind::SmallOrderR(i) => {
            let r_bytes = small[i % small.len()];
            let r_point = point(&r_bytes);
            // s = k·a and [s]B - [k]A = -[k]T_A, which must be R: with R the
            // identity an honest key does; otherwise the key carries an order-8
            // component and the message is ground until [k]T_A = -R.
            let t_a = if r_point.is_identity() {
                EdwardsPoint::default()
            } else {
                torsion_generator()
            };
            let a_bytes = (B * a + t_a).compress().0;
            let message = grind(&base, &r_bytes, &a_bytes, |k| t_a * k == -r_point);
            let s = challenge(&r_bytes, &a_bytes, &message) * a;
            (
                "small-order R",
                (message, signature(&r_bytes, &s), PublicKey(a_bytes)),
            )
        }
        Kind::SmallOrderKey(i) => {
            let a_bytes = small[i % small.len()];
            let a_point = point(&a_bytes);
            let r_bytes = (B * r).compress().0;
            let message = grind(&base, &r_bytes, &a_bytes, |k| (a_point * k).is_identity());
            (
                "small-order key",
                (message, signature(&r_bytes, &r), PublicKey(a_bytes)),
            )
        }
        Kind::MixedKey(i) => (
            "mixed-torsion key",
            honest(B * a + torsion(i), B * r, base.into_bytes()),
        ),
        Kind::MixedKeyValid(i) => {
            let a_point = B * a + torsion(i);
            let (a_bytes, r_bytes) = (a_point.compress().0, (B * r).compress().0);
            let message = grind(&base, &r_bytes, &a_bytes, |k| {
                (torsion(i) * k).is_identity()
            });
            (
                "mixed-torsion key, [k]T = 0",
                honest(a_point, B * r, message),
            )
        }
        Kind::MixedR(i) => (
            "mixed-torsion R",
            honest(B * a, B * r + torsion(i), base.into_bytes()),
        ),
        Kind::MixedBoth(i) => {
            let t_a = torsion_generator();
            let (a_point, r_point) = (B * a + t_a, B * r + torsion(i));
            let (a_bytes, r_bytes) = (a_point.compress().0, r_point.compress().0);
            let message = grind(&base, &r_bytes, &a_bytes, |k| t_a * k == -torsion(i));
            ("mixed-torsion key and R", honest(a_point, r_point, message))
        }
        Kind::NonCanonicalR(i) => {
            let r_bytes = large[i % large.len()];
            let a_bytes = (B * a).compress().0;
            let s = r + challenge(&r_bytes, &a_bytes, base.as_bytes()) * a;
            (
                "non-canonical R",
                (
                    base.into_bytes(),
                    signature(&r_bytes, &s),
                    PublicKey(a_bytes),
                ),
            )
        }
        Kind::NonCanonicalKey(i) => {
            let a_bytes = large[i % large.len()];
            let r_bytes = (B * r).compress().0;
            let s = r + challenge(&r_bytes, &a_bytes, base.as_bytes()) * a;
            (
                "non-canonical key",
                (
                    base.into_bytes(),
                    signature(&r_bytes, &s),
                    PublicKey(a_bytes),
                ),
            )
        }
    };
    Item {
        what: format!("{what} ({kind:?}, seed {seed})"),
        message,
        signature,
        key,
    }
}

fn batch(items: &[&Item]) -> bool {
    let borrowed: Vec<(&[u8], &[u8; 64], &PublicKey)> = items
        .iter()
        .map(|i| (i.message.as_slice(), &i.signature, &i.key))
        .collect();
    verify_batch(&borrowed)
}

#[test]
fn the_crafted_cases_are_what_they_claim() {
    let small = small_order_encodings();
    assert_eq!(small.len(), 14);
    for (i, bytes) in small.iter().enumerate() {
        assert!(point(bytes).is_small_order(), "encoding {i}");
        assert!(
            small[..i].iter().all(|b| b != bytes),
            "encoding {i} repeats"
        );
    }
    assert_eq!(
        small
            .iter()
            .filter(|b| point(b).compress().0 == **b)
            .count(),
        8
    );
    let large = non_canonical_large();
    assert!(!large.is_empty());
    for bytes in &large {
        let p = point(bytes);
        assert!(!p.is_small_order() && !p.is_torsion_free() && p.compress().0 != *bytes);
    }
    assert!(!times_four(&torsion_generator()).is_identity());

    // Each kind decides as intended, and as the rules restated decide; where
    // the rules refuse what a looser check would take, the cofactorless
    // equation does hold; and where they part from dalek's cofactorless
    // verify_strict, they do so only on small-order components, by design.
    let check = |item: &Item, verifies: bool, cofactorless: bool| {
        assert_eq!(item.verify(), verifies, "{}", item.what);
        assert_eq!(item.reference(), verifies, "{}", item.what);
        assert_eq!(item.dalek_strict(), cofactorless, "{}", item.what);
    };
    for seed in 0..8u64 {
        for i in 0..small.len() {
            let item = make(Kind::SmallOrderR(i), seed);
            assert!(item.equation_holds(), "{}", item.what);
            check(&item, false, false);
            let item = make(Kind::SmallOrderKey(i), seed);
            assert!(item.equation_holds(), "{}", item.what);
            check(&item, false, false);
        }
        for i in 0..7 {
            let item = make(Kind::MixedKeyValid(i), seed);
            assert!(item.equation_holds(), "{}", item.what);
            check(&item, true, true);
            let item = make(Kind::MixedBoth(i), seed);
            assert!(item.equation_holds(), "{}", item.what);
            check(&item, true, true);
            // R + T: refused by verify_strict, valid under the cofactor.
            let item = make(Kind::MixedR(i), seed);
            assert!(!item.equation_holds(), "{}", item.what);
            check(&item, true, false);
            let item = make(Kind::MixedKey(i), seed);
            check(&item, true, item.equation_holds());
        }
        for i in 0..large.len() {
            check(&make(Kind::NonCanonicalR(i), seed), false, false);
            check(&make(Kind::NonCanonicalKey(i), seed), false, false);
        }
        for kind in [Kind::OtherMessage, Kind::NonCanonicalS] {
            check(&make(kind, seed), false, false);
        }
        check(&make(Kind::Honest, seed), true, true);
    }
}

/// The malleability the cofactored equation allows, spelled out: an office's
/// own signature with a small-order point added to `R` and `s` unchanged is not
/// valid (`k` changes with `R`'s encoding), but its signer can make one that is.
#[test]
fn a_signature_with_r_plus_t_is_its_signers_alone() {
    let key = OfficeKey::from_bytes(&[9; 32]);
    let message = b"transition".as_slice();
    let signature = key.sign(message);
    let r = point(&signature[..32].try_into().unwrap());
    for t in &EIGHT_TORSION[1..] {
        let mut moved = signature;
        moved[..32].copy_from_slice(&(r + t).compress().0);
        assert!(!key.public().verify(message, &moved));
        assert!(!verify_batch(&[(message, &moved, &key.public())]));
    }
}

/// Every string that decodes to a small-order point is refused as `R` and as a
/// key, alone and in a batch of valid signatures.
#[test]
fn every_small_order_encoding_is_refused() {
    let companions: Vec<Item> = (0..5).map(|s| make(Kind::Honest, s)).collect();
    for i in 0..small_order_encodings().len() {
        for kind in [Kind::SmallOrderR(i), Kind::SmallOrderKey(i)] {
            let item = make(kind, 7);
            assert!(!item.verify(), "{}", item.what);
            let mut set: Vec<&Item> = companions.iter().collect();
            set.insert(i % 6, &item);
            assert!(!batch(&set), "{}", item.what);
        }
    }
    assert!(batch(&companions.iter().collect::<Vec<_>>()));
}

#[test]
fn strong_keys_are_the_generated_ones() {
    for seed in 0..16u8 {
        let key = OfficeKey::from_bytes(&[seed; 32]).public();
        assert_eq!(key.check_strong(), Ok(()));
    }
    for bytes in small_order_encodings() {
        assert_eq!(PublicKey(bytes).check_strong(), Err(KeyError::SmallOrder));
    }
    for bytes in non_canonical_large() {
        assert_eq!(PublicKey(bytes).check_strong(), Err(KeyError::NonCanonical));
    }
    for t in &EIGHT_TORSION[1..] {
        let mixed = B * scalar("a", 1) + t;
        assert_eq!(
            PublicKey(mixed.compress().0).check_strong(),
            Err(KeyError::MixedTorsion)
        );
    }
    // y = 2 is not on the curve.
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    assert_eq!(PublicKey(bytes).check_strong(), Err(KeyError::NotAPoint));
}

fn item_strategy() -> impl Strategy<Value = Item> {
    // Few seeds half the time, so that one batch holds several signatures under
    // one crafted key (the batch adds up each key's terms).
    (any::<u8>(), 0usize..64, prop_oneof![0u64..3, any::<u64>()])
        .prop_map(|(choice, index, seed)| make(kind(choice, index), seed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For every item, the batch of it with valid companions accepts exactly
    /// when `PublicKey::verify` accepts the item; and a whole mixed batch
    /// accepts exactly when it accepts every item of it.
    #[test]
    fn batch_and_strict_verification_agree(
        items in proptest::collection::vec(item_strategy(), 1..10),
        companions in proptest::collection::vec(any::<u64>(), 0..6),
        at in any::<prop::sample::Index>(),
    ) {
        let companions: Vec<Item> = companions.iter().map(|&s| make(Kind::Honest, s)).collect();
        for item in &items {
            let mut set: Vec<&Item> = companions.iter().collect();
            set.insert(at.index(set.len() + 1), item);
            prop_assert_eq!(batch(&set), item.verify(), "{}", item.what);
            prop_assert_eq!(item.verify(), item.reference(), "{}", item.what);
        }
        let all: Vec<&Item> = items.iter().chain(&companions).collect();
        prop_assert_eq!(batch(&all), all.iter().all(|i| i.verify()));
        let valid: Vec<&Item> = all.iter().copied().filter(|i| i.verify()).collect();
        prop_assert!(batch(&valid));
    }
}
