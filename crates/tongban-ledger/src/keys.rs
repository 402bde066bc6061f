//! Office keys: the ed25519 signing key an office node holds, its public half, and
//! the text form of a key file.
//!
//! Each office (and the directory authority) has one signing key at a time. Its
//! public half is what the directory certifies; a key rotation is a new certificate
//! for the same office with a new key. The secret never appears in `Debug` output
//! or error messages; only [`OfficeKey::to_bytes`] and
//! [`OfficeKey::to_pem_like_string`] reveal it, for the key file the node writes.
//!
//! Key file format (UTF-8 text, `\n` line ends, a trailing `\r` is tolerated):
//!
//! ```text
//! TONGBAN OFFICE KEY v1
//! <64 hex digits: the 32-byte ed25519 secret key>
//! ```
//!
//! Nothing may follow the second line except one final newline. Parse errors name
//! the 1-based line that is wrong.
//!
//! # Which signatures are valid
//!
//! One definition, [`PublicKey::verify`], and [`verify_batch`] decides each
//! signature exactly as it does, whatever else is in the batch (issue #13,
//! "signatures mean one thing"). A signature `(R, s)` by key `A` over `M` is
//! valid when `s < ℓ`, `R` and `A` are canonical encodings of curve points not of
//! small order, and `[8]([s]B − R − [k]A)` is the identity, `k = SHA-512(R ‖ A ‖
//! M) mod ℓ`. That is RFC 8032's cofactored check with strict encodings: ZIP-215's
//! equation (as `ed25519-zebra` has it) with `verify_strict`'s encoding rules.
//! Signatures made by [`OfficeKey::sign`] (any RFC 8032 signer) are valid.
//!
//! Why cofactored: dalek's `verify_strict`, used here before, checks the
//! cofactorless `[s]B = R + [k]A`, and a batch of that equation decides a
//! signature whose `R` or key carries a small-order component by chance (`z·T`
//! vanishes for some coefficients `z` and not others). Multiplied by 8, every
//! signature's equation lives in the prime-order subgroup and a random linear
//! combination of them is exact, so batching (9–12 µs a signature against ~50 µs
//! alone; `docs/performance.md`) decides as single verification does.
//!
//! What it allows that `verify_strict` refused: a small-order component in `R`
//! or in the key no longer matters. So besides the signatures `verify_strict`
//! accepts, a key's holder can make signatures whose `R` is `[r]B + T` for a
//! small-order `T` (with `s` computed for that `R`'s own encoding). This is no
//! forgery and no third-party malleability — `k` hashes `R`'s encoding, so
//! adding `T` to someone else's `R` breaks the equation, and `s` must be
//! canonical — but one signer can make several valid signatures of one message,
//! as it always could by choosing other nonces. Tongban's signed records are
//! identified by the BLAKE3 hash of their full encoding, signature included, so
//! a second signature over the same signed message is a second record, which
//! the chain has to take as a copy, not as a fork.
//!
//! The key's torsion is not checked by [`PublicKey::verify`]:
//! [`PublicKey::check_strong`] (a key in the prime-order subgroup) is a scalar
//! multiplication, about as long as a whole verification, and under the cofactor
//! a key's small-order component changes no outcome. Verification assumes
//! directory keys: the authority certifies only strong keys
//! ([`crate::directory::DirectoryAuthority::issue`]) and a directory is checked
//! for them when verified ([`crate::directory::SignedDirectory::verify`]).

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};
use thiserror::Error;

use crate::encoding::{from_hex, to_hex};

/// First line of a key file.
pub const KEY_FILE_HEADER: &str = "TONGBAN OFFICE KEY v1";

/// Why a key could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("the system random source failed: {0}")]
    Random(String),
    /// A public key is not 64 hexadecimal digits.
    #[error("a public key is 64 hexadecimal digits, found {found_len} characters")]
    PublicKeyHex {
        /// Characters found.
        found_len: usize,
    },
    /// The public key's 32 bytes are not the encoding of a curve point.
    #[error("the public key is not a point of the ed25519 curve")]
    NotAPoint,
    /// The public key is a point of small order (a "weak" key): a signature
    /// under it can hold for many messages, whoever made it.
    #[error(
        "the public key is a weak key (a point of small order): signatures under it prove nothing"
    )]
    SmallOrder,
    /// The public key is a point written in a non-canonical encoding (`y + p`).
    #[error("the public key is not the canonical encoding of its point")]
    NonCanonical,
    /// The public key has a small-order component: it is not in the prime-order
    /// subgroup that every generated key lies in.
    #[error(
        "the public key has a small-order component (it is outside the prime-order subgroup every generated key lies in)"
    )]
    MixedTorsion,
    /// A key file line is wrong.
    #[error("key file line {line}: {reason}")]
    KeyFile {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never includes secret material).
        reason: &'static str,
    },
}

/// An ed25519 public key, as certified in the directory. Displayed as 64 lower-case
/// hex digits; serialized (JSON) the same way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short fingerprint for people and logs: the first 8 bytes of the key's
    /// BLAKE3 hash, as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let hash = blake3::hash(&self.0);
        to_hex(hash.as_bytes().get(..8).unwrap_or_default())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<PublicKey, KeyError> {
        from_hex::<32>(text)
            .map(PublicKey)
            .ok_or(KeyError::PublicKeyHex {
                found_len: text.chars().count(),
            })
    }

    /// Checks that the key is one a signing key generates: a canonically encoded
    /// curve point in the prime-order subgroup. Refuses what strict verification
    /// refuses (small-order, "weak" keys: [`KeyError::SmallOrder`]) and, beyond
    /// it, non-canonical encodings and points with a small-order component, which
    /// no [`OfficeKey`] has and which only a crafted key would. The directory
    /// authority certifies no other key ([`crate::directory::DirectoryAuthority::issue`]).
    pub fn check_strong(&self) -> Result<(), KeyError> {
        let point = CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(KeyError::NotAPoint)?;
        if point.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        if point.compress().0 != self.0 {
            return Err(KeyError::NonCanonical);
        }
        if !point.is_torsion_free() {
            return Err(KeyError::MixedTorsion);
        }
        Ok(())
    }

    /// Whether `signature` is a valid ed25519 signature by this key over `message`,
    /// by the cofactored equation with strict encodings (below). One message has
    /// one valid `s` per `R` and key, and [`verify_batch`] decides every signature
    /// exactly as this does.
    ///
    /// Refused before the equation: `s` not canonical (`s ≥ ℓ`); `R` or the key
    /// not the canonical encoding of a curve point (`y ≥ p`, or no such point);
    /// `R` or the key of small order. Then the signature is valid exactly when
    /// `[8]([s]B − R − [k]A)` is the identity, `k = SHA-512(R ‖ A ‖ M) mod ℓ` over
    /// the encodings as given (RFC 8032 §5.1.7 allows this cofactored check).
    ///
    /// The key's torsion is not checked here: see the module docs ("Which
    /// signatures are valid") for why, and for what the cofactor lets through.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(key) = key_point(&self.0) else {
            return false;
        };
        let Some(sig) = SignatureParts::read(message, signature, &self.0) else {
            return false;
        };
        // [s]B − [k]A − R, times the cofactor.
        (EdwardsPoint::vartime_double_scalar_mul_basepoint(&-sig.k, &key, &sig.s) - sig.r)
            .mul_by_cofactor()
            .is_identity()
    }
}

/// Whether every `(message, signature, key)` verifies: exactly whether
/// [`PublicKey::verify`] accepts each of them alone (but for a chance of about
/// 2^-128, below, that nobody can steer). A signature is valid or not whatever
/// else is in the set (issue #13, "signatures mean one thing"). Callers that
/// must name the failing entry check one at a time when the set fails.
///
/// Every signature first passes the checks [`PublicKey::verify`] makes before
/// its equation (any failure: `false`). Then one random linear combination of the
/// cofactored equations is checked:
///
/// `[8]((−Σ zᵢsᵢ)B + Σ zᵢRᵢ + Σ_A (Σ_{i signed by A} zᵢkᵢ)A) = 0`
///
/// with independent random 128-bit `zᵢ` drawn from the operating system for each
/// call, and the terms of one key added up (mod ℓ) into one: a county's
/// documents are signed by a handful of office keys, so the multiscalar
/// multiplication has `n + keys + 1` points rather than `2n + 1`. Why it agrees
/// with single verification: each signature's defect `Dᵢ = [8]([sᵢ]B − Rᵢ −
/// [kᵢ]Aᵢ)` lies in the prime-order subgroup (the cofactor kills every
/// small-order component, of `R` and of the key alike), so scalars may be taken
/// mod ℓ and grouped, and the batch computes `Σ zᵢDᵢ`. If every `Dᵢ` is zero it
/// is zero; if one is not, at most one value of its `zᵢ` mod ℓ cancels the rest,
/// a chance of 2^-128 for a `zᵢ` drawn after the signatures were chosen. The
/// cofactorless equation of dalek's `verify_strict` has no such property: a
/// small-order component survives `z·` for some `z` and not others, so a batch
/// of it decides a crafted signature by chance (see the module docs).
///
/// If the random source fails, each signature is verified alone.
pub fn verify_batch(items: &[(&[u8], &[u8; 64], &PublicKey)]) -> bool {
    // Written here rather than taken from a library: `ed25519_dalek::verify_batch`
    // is cofactorless (it cannot agree with `verify_strict`, nor with ours) and
    // has a key term per signature; `ed25519-zebra` batches the cofactored
    // equation but by ZIP-215's encoding rules, which accept non-canonical and
    // small-order points that ours refuse, and it would be a second curve stack.
    let mut key_bytes: Vec<&[u8; 32]> = Vec::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut entries: Vec<(usize, SignatureParts)> = Vec::with_capacity(items.len());
    for (message, signature, key) in items {
        let slot = match key_bytes.iter().position(|k| **k == key.0) {
            Some(slot) => slot,
            None => {
                let Some(point) = key_point(&key.0) else {
                    return false;
                };
                key_bytes.push(&key.0);
                key_points.push(point);
                key_bytes.len() - 1
            }
        };
        let Some(parts) = SignatureParts::read(message, signature, &key.0) else {
            return false;
        };
        entries.push((slot, parts));
    }
    if entries.is_empty() {
        return true;
    }
    // The coefficients: a BLAKE3 stream keyed by 32 bytes of the system's random
    // source, drawn now, after the signatures were chosen.
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        return items
            .iter()
            .all(|(message, signature, key)| key.verify(message, signature));
    }
    let mut coefficients = blake3::Hasher::new_keyed(&seed).finalize_xof();
    let mut basepoint = Scalar::ZERO;
    let mut key_scalars = vec![Scalar::ZERO; key_points.len()];
    let mut r_scalars = Vec::with_capacity(entries.len());
    let mut r_points = Vec::with_capacity(entries.len());
    for (slot, parts) in entries {
        let mut z = [0u8; 16];
        coefficients.fill(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        basepoint -= z * parts.s;
        if let Some(sum) = key_scalars.get_mut(slot) {
            *sum += z * parts.k;
        }
        r_scalars.push(z);
        r_points.push(parts.r);
    }
    EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(basepoint)
            .chain(r_scalars)
            .chain(key_scalars),
        std::iter::once(ED25519_BASEPOINT_POINT)
            .chain(r_points)
            .chain(key_points),
    )
    .mul_by_cofactor()
    .is_identity()
}

/// A signature that passed the checks before its equation.
struct SignatureParts {
    /// `s`, canonical.
    s: Scalar,
    /// `R`, canonically encoded and not of small order.
    r: EdwardsPoint,
    /// The challenge `SHA-512(R ‖ A ‖ M) mod ℓ`.
    k: Scalar,
}

impl SignatureParts {
    /// The parts of `signature` over `message` by the key encoded `key`, or
    /// `None` when `s` is not canonical or `R` is not a strong point.
    fn read(message: &[u8], signature: &[u8; 64], key: &[u8; 32]) -> Option<SignatureParts> {
        let (r_bytes, s_bytes) = signature.split_at(32);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes.try_into().ok()?))?;
        let r_bytes: &[u8; 32] = r_bytes.try_into().ok()?;
        let r = strong_point(r_bytes)?;
        let mut sha = Sha512::new();
        sha.update(r_bytes);
        sha.update(key);
        sha.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&sha.finalize().into());
        Some(SignatureParts { s, r, k })
    }
}

/// The point `bytes` encode, when they are its canonical encoding and it is not
/// of small order.
///
/// Canonical: the `y` coordinate (the low 255 bits) is below `p = 2^255 − 19`.
/// An encoding can also be non-canonical by a set sign bit with `x = 0`, but only
/// the points `y = ±1` have `x = 0` and both are of small order, so are refused
/// anyway. Checking the bytes is cheaper than compressing the point again (a
/// field inversion), which is what `verify_strict` does.
fn strong_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical_y(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.is_small_order() {
        return None;
    }
    Some(point)
}

/// Whether the low 255 bits of `bytes` (little-endian) are below `2^255 − 19`:
/// they are not when bits 8–254 are all set and the low byte is at least `0xed`.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f == 0x7f;
    let middle = bytes[1..31].iter().all(|b| *b == 0xff);
    !(top && middle && bytes[0] >= 0xed)
}

/// Most decompressed keys one thread keeps (a directory certifies a few thousand
/// offices; a thread that sees more starts over).
const KEY_CACHE: usize = 4096;

thread_local! {
    /// Keys that passed [`strong_point`], decompressed, by their bytes.
    /// Decompressing a key (a square root in the field) is about a sixth of a
    /// verification, and a node verifies the same few office keys again and
    /// again; a per-thread map needs no lock when admission verifies on several
    /// threads. Keys that fail are not kept (nothing signed under them verifies,
    /// so they are not worth the memory).
    static KEY_POINTS: std::cell::RefCell<std::collections::HashMap<[u8; 32], EdwardsPoint>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The key `bytes` encode when it is a canonically encoded point not of small
/// order ([`strong_point`]), from the thread's cache when it is there.
fn key_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    KEY_POINTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(point) = cache.get(bytes) {
            return Some(*point);
        }
        let point = strong_point(bytes)?;
        if cache.len() >= KEY_CACHE {
            cache.clear();
        }
        cache.insert(*bytes, point);
        Some(point)
    })
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_hex(text)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// An office's (or the directory authority's) secret signing key.
///
/// `Debug` shows only the public key's fingerprint. The inner key is zeroized on drop.
#[derive(Clone)]
pub struct OfficeKey {
    key: SigningKey,
}

impl OfficeKey {
    /// A new key from 32 bytes of the operating system's random source.
    pub fn generate() -> Result<OfficeKey, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|err| KeyError::Random(err.to_string()))?;
        let key = OfficeKey::from_bytes(&secret);
        secret.fill(0);
        Ok(key)
    }

    /// The key with this 32-byte secret.
    pub fn from_bytes(secret: &[u8; 32]) -> OfficeKey {
        OfficeKey {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret. Handle with care: this is what the key file holds.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public half, as certified in the directory.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// The ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The key file text: the header line, then the secret as 64 hex digits.
    pub fn to_pem_like_string(&self) -> String {
        format!("{KEY_FILE_HEADER}\n{}\n", to_hex(&self.key.to_bytes()))
    }

    /// Parses the key file text written by [`OfficeKey::to_pem_like_string`].
    pub fn from_pem_like_str(text: &str) -> Result<OfficeKey, KeyError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = body
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        let err = |line, reason| KeyError::KeyFile { line, reason };
        match lines.next() {
            Some(KEY_FILE_HEADER) => {}
            _ => return Err(err(1, "expected the header `TONGBAN OFFICE KEY v1`")),
        }
        let secret = lines.next().ok_or(err(2, "missing the secret key line"))?;
        let secret = from_hex::<32>(secret.trim())
            .ok_or(err(2, "the secret key must be 64 hexadecimal digits"))?;
        if lines.next().is_some() {
            return Err(err(3, "unexpected text after the secret key line"));
        }
        Ok(OfficeKey::from_bytes(&secret))
    }
}

impl FromStr for OfficeKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<OfficeKey, KeyError> {
        OfficeKey::from_pem_like_str(text)
    }
}

impl fmt::Debug for OfficeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfficeKey(public {})", self.public().fingerprint())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};

    #[test]
    fn a_batch_verifies_exactly_when_every_signature_does() {
        let keys: Vec<OfficeKey> = (0..3).map(|_| OfficeKey::generate().unwrap()).collect();
        let publics: Vec<PublicKey> = keys.iter().map(OfficeKey::public).collect();
        let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 40 + usize::from(i)]).collect();
        let signatures: Vec<[u8; 64]> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 3].sign(m))
            .collect();
        let items = |sigs: &[[u8; 64]]| -> Vec<(Vec<u8>, [u8; 64], PublicKey)> {
            messages
                .iter()
                .zip(sigs)
                .enumerate()
                .map(|(i, (m, s))| (m.clone(), *s, publics[i % 3]))
                .collect()
        };
        let check = |set: &[(Vec<u8>, [u8; 64], PublicKey)]| {
            let borrowed: Vec<(&[u8], &[u8; 64], &PublicKey)> =
                set.iter().map(|(m, s, k)| (m.as_slice(), s, k)).collect();
            verify_batch(&borrowed)
        };
        assert!(check(&items(&signatures)));
        // Any one altered signature, message or key fails the batch.
        for i in 0..signatures.len() {
            let mut bad = signatures.clone();
            bad[i][5] ^= 1;
            assert!(!check(&items(&bad)), "signature {i}");
            let mut set = items(&signatures);
            set[i].0.push(0);
            assert!(!check(&set), "message {i}");
            let mut set = items(&signatures);
            set[i].2 = publics[(i + 1) % 3];
            assert!(!check(&set), "key {i}");
        }
        // A small-order key is refused.
        let mut set = items(&signatures);
        let identity = {
            let mut bytes = [0u8; 32];
            bytes[0] = 1;
            PublicKey(bytes)
        };
        set[0].2 = identity;
        assert!(!check(&set));
        // A non-canonical s (s + l) is refused.
        let mut set = items(&signatures);
        set[0].1[63] |= 0xf0;
        assert!(!check(&set));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// `verify_batch` decides as dalek's own batch verification does on sound
        /// sets and on sets with one signature, message or key altered (where the
        /// two may differ, on crafted small-order components, `tests/ledger/strict.rs`
        /// holds it to strict verification).
        #[test]
        fn the_batch_agrees_with_dalek(
            signers in proptest::collection::vec(0usize..4, 1..40),
            alter in 0usize..4,
            at in 0usize..1000,
            bit in 0usize..512,
        ) {
            let keys: Vec<OfficeKey> = (0..4u8).map(|i| OfficeKey::from_bytes(&[i + 1; 32])).collect();
            let n = signers.len();
            let mut messages: Vec<Vec<u8>> = (0..n).map(|i| format!("transition {i}").into_bytes()).collect();
            let mut signatures: Vec<[u8; 64]> =
                messages.iter().zip(&signers).map(|(m, k)| keys[*k].sign(m)).collect();
            let mut publics: Vec<PublicKey> = signers.iter().map(|k| keys[*k].public()).collect();
            let i = at % n;
            match alter {
                1 => signatures[i][bit / 8] ^= 1 << (bit % 8),
                2 => messages[i].push(0),
                3 => publics[i] = keys[(signers[i] + 1) % 4].public(),
                _ => {}
            }
            let items: Vec<(&[u8], &[u8; 64], &PublicKey)> = (0..n)
                .map(|j| (messages[j].as_slice(), &signatures[j], &publics[j]))
                .collect();
            let dalek = {
                let keys: Option<Vec<VerifyingKey>> =
                    publics.iter().map(|p| VerifyingKey::from_bytes(&p.0).ok()).collect();
                let sigs: Vec<Signature> = signatures.iter().map(Signature::from_bytes).collect();
                let msgs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
                keys.is_some_and(|keys| ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok())
            };
            proptest::prop_assert_eq!(verify_batch(&items), dalek);
            proptest::prop_assert_eq!(verify_batch(&items), alter == 0);
        }
    }

    /// RFC 8032 §7.1, tests 1–3 and 1024 (the SHA(abc) one is ed25519ph, not
    /// used here): the keys and signatures are ed25519's own, and verify alone
    /// and as a batch; with a bit of the message changed they do not.
    #[test]
    fn rfc_8032_test_vectors() {
        let hex =
            |text: &str| -> Vec<u8> { data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap() };
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        let mut items = Vec::new();
        for (secret, public, message, signature) in vectors {
            let key = OfficeKey::from_bytes(&hex(secret).try_into().unwrap());
            let public = PublicKey(hex(public).try_into().unwrap());
            let message = hex(message);
            let signature: [u8; 64] = hex(signature).try_into().unwrap();
            assert_eq!(key.public(), public);
            assert_eq!(key.sign(&message), signature);
            assert!(public.verify(&message, &signature));
            assert_eq!(public.check_strong(), Ok(()));
            let mut other = message.clone();
            other.push(0);
            assert!(!public.verify(&other, &signature));
            items.push((message, signature, public));
        }
        let borrowed: Vec<(&[u8], &[u8; 64], &PublicKey)> =
            items.iter().map(|(m, s, k)| (m.as_slice(), s, k)).collect();
        assert!(verify_batch(&borrowed));
    }

    /// The byte check of canonical `y` against the bound: `p − 1` is canonical,
    /// `p` to `2^255 − 1` are not, whatever the sign bit.
    #[test]
    fn canonical_y_is_y_below_p() {
        let mut p_minus_one = [0xff; 32];
        p_minus_one[0] = 0xec;
        p_minus_one[31] = 0x7f;
        assert!(canonical_y(&p_minus_one));
        p_minus_one[31] = 0xff;
        assert!(canonical_y(&p_minus_one));
        for low in 0xedu8..=0xff {
            let mut bytes = [0xff; 32];
            bytes[0] = low;
            assert!(!canonical_y(&bytes), "{low:#x}");
            bytes[31] = 0x7f;
            assert!(!canonical_y(&bytes), "{low:#x}");
        }
        let mut below = [0xff; 32];
        below[30] = 0xfe;
        assert!(canonical_y(&below));
        assert!(canonical_y(&[0; 32]));
    }

    #[test]
    fn key_file_round_trip_and_errors() {
        let key = OfficeKey::generate().unwrap();
        let text = key.to_pem_like_string();
        let back = OfficeKey::from_pem_like_str(&text).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        assert_eq!(back.public(), key.public());
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            OfficeKey::from_pem_like_str(&crlf).unwrap().public(),
            key.public()
        );

        let check = |input: &str, expect: expect_test::Expect| {
            expect.assert_eq(&OfficeKey::from_pem_like_str(input).unwrap_err().to_string());
        };
        check(
            "",
            expect_test::expect!["key file line 1: expected the header `TONGBAN OFFICE KEY v1`"],
        );
        check(
            "TONGBAN OFFICE KEY v1\n",
            expect_test::expect!["key file line 2: missing the secret key line"],
        );
        check(
            "TONGBAN OFFICE KEY v1\nabc\n",
            expect_test::expect!["key file line 2: the secret key must be 64 hexadecimal digits"],
        );
        check(
            &format!("{text}more\n"),
            expect_test::expect!["key file line 3: unexpected text after the secret key line"],
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = OfficeKey::from_bytes(&[7u8; 32]);
        let debug = format!("{key:?}");
        assert!(!debug.contains(&to_hex(&[7u8; 32])), "{debug}");
        assert!(debug.contains(&key.public().fingerprint()));
    }

    #[test]
    fn public_key_text_and_signatures() {
        let key = OfficeKey::from_bytes(&[1u8; 32]);
        let public = key.public();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        assert_eq!(public.fingerprint().len(), 16);
        assert!(PublicKey::from_hex("zz").is_err());
        let signature = key.sign(b"message");
        assert!(public.verify(b"message", &signature));
        assert!(!public.verify(b"messagf", &signature));
        assert!(!PublicKey([0u8; 32]).verify(b"message", &signature));
    }
}
