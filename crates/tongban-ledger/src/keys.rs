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

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
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

    /// Whether `signature` is a valid ed25519 signature by this key over `message`.
    /// Uses strict verification: non-canonical signatures and weak keys are refused,
    /// so one message has one valid signature encoding per key.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(key) = verifying_key(&self.0) else {
            return false;
        };
        let signature = Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }
}

/// Whether every `(message, signature, key)` verifies: exactly whether
/// [`PublicKey::verify`] (dalek's `verify_strict`) accepts each of them alone.
/// A signature is valid or not whatever else is in the set (issue #13,
/// "signatures mean one thing"); stops at the first that fails. Callers that
/// must name the failing entry check one at a time when the set fails.
///
/// Why no batch equation: strict verification's equation is the cofactorless
/// `[s]B = R + [k]A`. A batch equation (dalek's, or the key-grouped one this
/// function had) sums `z·([s]B − R − [k]A)` over the signatures with random
/// 128-bit `z`, and agrees with it only while every `R` and key lies in the
/// prime-order subgroup: `z` times a small-order point vanishes for one `z` in
/// two to eight, so a signature whose `R` its signer built with a small-order
/// component passed in one batch and failed in another, and grouping a key's
/// scalars mod ℓ made a strictly valid signature of a key with such a component
/// fail. Keeping such points out of the equation takes a multiplication by ℓ
/// per `R` — as long as a strict verification — after which the batch measured
/// 62–70 µs a signature against 50–54 µs one at a time (`cargo bench -p
/// tongban-ledger --bench batch`; the batch alone was 9–12 µs). Only the
/// cofactored equation `[8]([s]B − R − [k]A) = 0` can be batched exactly, and
/// it is not strict verification's.
pub fn verify_batch(items: &[(&[u8], &[u8; 64], &PublicKey)]) -> bool {
    items
        .iter()
        .all(|(message, signature, key)| key.verify(message, signature))
}

/// Most decompressed keys one thread keeps (a directory certifies a few thousand
/// offices; a thread that sees more starts over).
const KEY_CACHE: usize = 4096;

thread_local! {
    /// Decompressed verifying keys by their bytes. Decompressing a key (a square
    /// root in the field) is about a sixth of a verification, and a node verifies
    /// the same few office keys again and again; a per-thread map needs no lock
    /// when admission verifies on several threads.
    static VERIFYING_KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The decompressed key of `bytes`, from the thread's cache when it is there;
/// `None` when the bytes are not a curve point.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    VERIFYING_KEYS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(key) = cache.get(bytes) {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if cache.len() >= KEY_CACHE {
            cache.clear();
        }
        cache.insert(*bytes, key);
        Some(key)
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
        // A small-order key is refused, as strict verification refuses it.
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
