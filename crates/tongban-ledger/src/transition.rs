//! The signed stage transition: one office's signed statement that a case moved
//! from one stage to the next.
//!
//! A transition names the case, its position in the case's chain (`seq`, and `prev`,
//! the BLAKE3 hash of the previous signed transition's full encoding), the stage
//! change, the office and the clerk (operator) who made it, the time, the Automerge
//! change hashes (`heads`) of the case document the signer vouches for, and the
//! BLAKE3 digest of the payload (the opinion or decision bytes the caller provides).
//! The office's key signs the canonical encoding below; a transition's identity is
//! the BLAKE3 hash of its full encoding, signature included.
//!
//! # Byte layout (version 1)
//!
//! Integers are big-endian. `str` is a `u16` byte length followed by that many
//! bytes of UTF-8. Stage bytes are [`Stage::wire`]; `0` means "none".
//!
//! | field          | size        | notes                                          |
//! |----------------|-------------|------------------------------------------------|
//! | magic          | 4           | `TBTR`                                         |
//! | version        | 1           | `1`                                            |
//! | case           | 2 + n       | str, a [`CaseId`], n ≤ 64                      |
//! | seq            | 4           | u32, 0 for the transition creating the case    |
//! | from           | 1           | stage byte, `0` = none (only the first)        |
//! | to             | 1           | stage byte, never `0`                          |
//! | office         | 2 + n       | str, an [`OfficeId`], n ≤ 64                   |
//! | operator       | 2 + n       | str, an [`Operator`], n ≤ 256                  |
//! | at             | 8           | i64, ms since the Unix epoch, UTC              |
//! | n_heads        | 2           | u16, at most 64                                |
//! | heads          | 32 × n      | change hashes, strictly ascending (no repeats) |
//! | has_prev       | 1           | `0` = none, `1` = present                      |
//! | prev           | 0 or 32     | BLAKE3 of the previous signed transition       |
//! | payload_digest | 32          | BLAKE3 of the payload bytes                    |
//! | signer_key     | 32          | ed25519 public key of the signing office       |
//! | signature      | 64          | ed25519 over every preceding byte              |
//!
//! Decoding is total and canonical: any byte string gives a value or a
//! [`DecodeError`] naming the field and its offset; trailing bytes, unknown stage
//! bytes, invalid ids, unsorted or repeated heads and a `has_prev` other than 0/1 are
//! refused, so re-encoding a decoded transition gives back the identical bytes.
//! Decoding does not check the signature: [`SignedTransition::verify_signature`]
//! does, and the verifier checks everything else.

use serde::Serialize;
use thiserror::Error;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::Stage;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::keys::{OfficeKey, PublicKey};

const MAGIC: &[u8] = b"TBTR";
const FORMAT_VERSION: u8 = 1;

/// Most Automerge heads one transition may vouch for.
pub const MAX_HEADS: usize = 64;
/// Longest case id field, in bytes.
const MAX_CASE: usize = 64;
/// Longest office id field, in bytes.
const MAX_OFFICE: usize = 64;
/// Longest operator field, in bytes (64 characters of up to 4 bytes).
const MAX_OPERATOR: usize = 256;

/// A stage transition, before or after signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The case.
    pub case: CaseId,
    /// Position in the chain: 0 for the transition that creates the case.
    pub seq: u32,
    /// Stage before; `None` only for the transition that creates the case.
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// The signing office.
    pub office: OfficeId,
    /// The clerk who performed it.
    pub operator: Operator,
    /// When it was signed (the signer's clock).
    pub at: Timestamp,
    /// Automerge change hashes the signer vouches for, ascending and distinct.
    #[serde(serialize_with = "serialize_hashes")]
    pub heads: Vec<[u8; 32]>,
    /// BLAKE3 of the previous signed transition's encoding; `None` only for seq 0.
    #[serde(serialize_with = "serialize_opt_hash")]
    pub prev: Option<[u8; 32]>,
    /// BLAKE3 of the payload (opinion, decision) the caller signs along.
    #[serde(serialize_with = "serialize_hash")]
    pub payload_digest: [u8; 32],
    /// The signing office's public key.
    pub signer_key: PublicKey,
}

/// A transition with its office's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransition {
    /// The transition.
    pub transition: Transition,
    /// ed25519 signature by `transition.signer_key` over the encoding before it.
    pub signature: [u8; 64],
}

/// Why a transition cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignError {
    /// More distinct heads than [`MAX_HEADS`].
    #[error("a transition vouches for at most {MAX_HEADS} heads, found {found}")]
    TooManyHeads {
        /// Distinct heads given.
        found: usize,
    },
    /// A signed commit must vouch for at least one head.
    #[error("a signed commit vouches for at least one head")]
    NoHeads,
    /// `transition.signer_key` is not the public half of the signing key.
    #[error("signer_key {named:?} is not the public key of the signing key {actual:?}")]
    KeyMismatch {
        /// The key named in the transition.
        named: PublicKey,
        /// The signing key's public half.
        actual: PublicKey,
    },
}

fn serialize_hash<S: serde::Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::encoding::to_hex(hash))
}

fn serialize_opt_hash<S: serde::Serializer>(
    hash: &Option<[u8; 32]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match hash {
        Some(hash) => s.serialize_some(&crate::encoding::to_hex(hash)),
        None => s.serialize_none(),
    }
}

fn serialize_hashes<S: serde::Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(hashes.iter().map(|hash| crate::encoding::to_hex(hash)))
}

impl Transition {
    /// The BLAKE3 digest of a payload, for [`Transition::payload_digest`].
    pub fn digest_payload(payload: &[u8]) -> [u8; 32] {
        *blake3::hash(payload).as_bytes()
    }

    /// The bytes the signature covers.
    pub(crate) fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, FORMAT_VERSION);
        w.str(self.case.as_str());
        w.u32(self.seq);
        w.u8(self.from.map_or(0, Stage::wire));
        w.u8(self.to.wire());
        w.str(self.office.as_str());
        w.str(self.operator.as_str());
        w.i64(self.at.0);
        w.u16(u16::try_from(self.heads.len()).unwrap_or(u16::MAX));
        for head in &self.heads {
            w.raw(head);
        }
        match &self.prev {
            Some(prev) => {
                w.u8(1);
                w.raw(prev);
            }
            None => w.u8(0),
        }
        w.raw(&self.payload_digest);
        w.raw(self.signer_key.as_bytes());
        w.finish()
    }
}

impl SignedTransition {
    /// Signs `transition` with the office's key. The heads are sorted and repeats
    /// dropped first (they are a set); `signer_key` must be `key`'s public half.
    pub fn sign(
        mut transition: Transition,
        key: &OfficeKey,
    ) -> Result<SignedTransition, SignError> {
        transition.heads.sort_unstable();
        transition.heads.dedup();
        if transition.heads.len() > MAX_HEADS {
            return Err(SignError::TooManyHeads {
                found: transition.heads.len(),
            });
        }
        let actual = key.public();
        if transition.signer_key != actual {
            return Err(SignError::KeyMismatch {
                named: transition.signer_key,
                actual,
            });
        }
        let signature = key.sign(&transition.signed_bytes());
        Ok(SignedTransition {
            transition,
            signature,
        })
    }

    /// The canonical encoding (layout in the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.transition.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// The transition's identity: BLAKE3 of its full encoding, signature included.
    /// The next transition of the case names it as `prev`.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Whether the signature is valid for `transition.signer_key` (strict ed25519).
    /// Says nothing about whether the directory certifies that key.
    pub fn verify_signature(&self) -> bool {
        self.transition
            .signer_key
            .verify(&self.transition.signed_bytes(), &self.signature)
    }

    /// Decodes a signed transition without checking its signature. Total and
    /// canonical (see the module doc).
    pub fn decode(bytes: &[u8]) -> Result<SignedTransition, DecodeError> {
        let mut r = Reader::open(bytes, MAGIC, "TBTR transition", FORMAT_VERSION)?;
        let case = r.parsed("case", MAX_CASE, CaseId::parse)?;
        let seq = r.u32("seq")?;
        let from_offset = r.offset();
        let from = match r.u8("from")? {
            0 => None,
            byte => Some(
                Stage::from_wire(byte).ok_or_else(|| DecodeError::InvalidValue {
                    field: "from",
                    offset: from_offset,
                    reason: format!("unknown stage byte {byte}"),
                })?,
            ),
        };
        let to_offset = r.offset();
        let to_byte = r.u8("to")?;
        let to = Stage::from_wire(to_byte).ok_or_else(|| DecodeError::InvalidValue {
            field: "to",
            offset: to_offset,
            reason: format!("unknown stage byte {to_byte}"),
        })?;
        let office = r.parsed("office", MAX_OFFICE, OfficeId::parse)?;
        let operator = r.parsed("operator", MAX_OPERATOR, Operator::parse)?;
        let at = Timestamp(r.i64("at")?);
        let heads = r.heads(0, MAX_HEADS)?;
        let prev_offset = r.offset();
        let prev = match r.u8("has_prev")? {
            0 => None,
            1 => Some(r.array::<32>("prev")?),
            byte => {
                return Err(DecodeError::InvalidValue {
                    field: "has_prev",
                    offset: prev_offset,
                    reason: format!("must be 0 or 1, found {byte}"),
                });
            }
        };
        let payload_digest = r.array::<32>("payload_digest")?;
        let signer_key = PublicKey(r.array::<32>("signer_key")?);
        let signature = r.array::<64>("signature")?;
        r.finish()?;
        Ok(SignedTransition {
            transition: Transition {
                case,
                seq,
                from,
                to,
                office,
                operator,
                at,
                heads,
                prev,
                payload_digest,
                signer_key,
            },
            signature,
        })
    }
}
