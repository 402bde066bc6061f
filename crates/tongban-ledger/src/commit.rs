//! The signed commit: one office's signature over a write it made to a case.
//!
//! Every write an office makes to a case document is one or more Automerge
//! changes. The office then signs the document's heads after those changes: by
//! signing, it vouches for every change of its own (every change whose Automerge
//! actor is bound to the office) in the causal past of those heads. A stage
//! transition ([`crate::transition`]) is one kind of such signature — it also
//! names the stage change and chains to the previous transition; a signed commit
//! is the other kind, for a write that changes no stage (a scan attached, an
//! evaluation recorded, a registry comparison). Both are checked by one rule of
//! authority ([`crate::verify::key_authority`]) and both cover the signer's
//! changes the same way.
//!
//! # Byte layout (version 1)
//!
//! Integers are big-endian; `str` is a `u16` byte length and UTF-8.
//!
//! | field      | size   | notes                                           |
//! |------------|--------|-------------------------------------------------|
//! | magic      | 4      | `TBCM`                                          |
//! | version    | 1      | `1`                                             |
//! | case       | 2 + n  | str, a [`CaseId`], n ≤ 64                       |
//! | office     | 2 + n  | str, an [`OfficeId`], n ≤ 64                    |
//! | operator   | 2 + n  | str, an [`Operator`], n ≤ 256                   |
//! | at         | 8      | i64, ms since the Unix epoch, UTC               |
//! | n_heads    | 2      | u16, 1 to 64                                    |
//! | heads      | 32 × n | change hashes, strictly ascending               |
//! | signer_key | 32     | ed25519 public key of the signing office        |
//! | signature  | 64     | ed25519 over every preceding byte               |
//!
//! Decoding is total and canonical, as for transitions: any bytes give a value
//! or a [`DecodeError`] naming the field and offset. The encoding is written by
//! hand on purpose: the signed bytes must not depend on any serializer.

use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};

use crate::encoding::{DecodeError, Reader, Writer};
use crate::keys::{OfficeKey, PublicKey};
use crate::transition::{MAX_HEADS, SignError};

const MAGIC: &[u8] = b"TBCM";
const FORMAT_VERSION: u8 = 1;
const MAX_CASE: usize = 64;
const MAX_OFFICE: usize = 64;
const MAX_OPERATOR: usize = 256;

/// A write an office vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The case.
    pub case: CaseId,
    /// The writing office.
    pub office: OfficeId,
    /// The clerk who made the write.
    pub operator: Operator,
    /// When (the office's clock).
    pub at: Timestamp,
    /// The document's heads after the write, ascending and distinct.
    pub heads: Vec<[u8; 32]>,
    /// The office's public key.
    pub signer_key: PublicKey,
}

/// A commit with its office's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCommit {
    /// The commit.
    pub commit: Commit,
    /// ed25519 by `commit.signer_key` over the encoding before it.
    pub signature: [u8; 64],
}

impl Commit {
    /// The bytes the signature covers.
    pub(crate) fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, FORMAT_VERSION);
        w.str(self.case.as_str());
        w.str(self.office.as_str());
        w.str(self.operator.as_str());
        w.i64(self.at.0);
        w.u16(u16::try_from(self.heads.len()).unwrap_or(u16::MAX));
        for head in &self.heads {
            w.raw(head);
        }
        w.raw(self.signer_key.as_bytes());
        w.finish()
    }
}

impl SignedCommit {
    /// Signs `commit` with the office's key; heads are sorted and repeats dropped.
    pub fn sign(mut commit: Commit, key: &OfficeKey) -> Result<SignedCommit, SignError> {
        commit.heads.sort_unstable();
        commit.heads.dedup();
        if commit.heads.is_empty() {
            return Err(SignError::NoHeads);
        }
        if commit.heads.len() > MAX_HEADS {
            return Err(SignError::TooManyHeads {
                found: commit.heads.len(),
            });
        }
        let actual = key.public();
        if commit.signer_key != actual {
            return Err(SignError::KeyMismatch {
                named: commit.signer_key,
                actual,
            });
        }
        let signature = key.sign(&commit.signed_bytes());
        Ok(SignedCommit { commit, signature })
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.commit.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Its identity: BLAKE3 of the full encoding.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Whether the signature is valid for `commit.signer_key` (strict ed25519).
    pub fn verify_signature(&self) -> bool {
        self.commit
            .signer_key
            .verify(&self.commit.signed_bytes(), &self.signature)
    }

    /// Decodes without checking the signature. Total and canonical.
    pub fn decode(bytes: &[u8]) -> Result<SignedCommit, DecodeError> {
        let mut r = Reader::open(bytes, MAGIC, "TBCM commit", FORMAT_VERSION)?;
        let case = r.parsed("case", MAX_CASE, CaseId::parse)?;
        let office = r.parsed("office", MAX_OFFICE, OfficeId::parse)?;
        let operator = r.parsed("operator", MAX_OPERATOR, Operator::parse)?;
        let at = Timestamp(r.i64("at")?);
        let heads = r.heads(1, MAX_HEADS)?;
        let signer_key = PublicKey(r.array::<32>("signer_key")?);
        let signature = r.array::<64>("signature")?;
        r.finish()?;
        Ok(SignedCommit {
            commit: Commit {
                case,
                office,
                operator,
                at,
                heads,
                signer_key,
            },
            signature,
        })
    }
}

/// One signed record of a case, of either kind, decoded from its bytes by magic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedRecord {
    /// A stage transition.
    Transition(crate::transition::SignedTransition),
    /// A signed commit.
    Commit(SignedCommit),
}

impl SignedRecord {
    /// Decodes either kind (by its magic).
    pub fn decode(bytes: &[u8]) -> Result<SignedRecord, DecodeError> {
        if bytes.starts_with(MAGIC) {
            SignedCommit::decode(bytes).map(SignedRecord::Commit)
        } else {
            crate::transition::SignedTransition::decode(bytes).map(SignedRecord::Transition)
        }
    }

    /// The signing office.
    pub fn office(&self) -> &OfficeId {
        match self {
            SignedRecord::Transition(t) => &t.transition.office,
            SignedRecord::Commit(c) => &c.commit.office,
        }
    }

    /// The signing key.
    pub fn signer_key(&self) -> &PublicKey {
        match self {
            SignedRecord::Transition(t) => &t.transition.signer_key,
            SignedRecord::Commit(c) => &c.commit.signer_key,
        }
    }

    /// The signed time.
    pub fn at(&self) -> Timestamp {
        match self {
            SignedRecord::Transition(t) => t.transition.at,
            SignedRecord::Commit(c) => c.commit.at,
        }
    }

    /// The heads it vouches for.
    pub fn heads(&self) -> &[[u8; 32]] {
        match self {
            SignedRecord::Transition(t) => &t.transition.heads,
            SignedRecord::Commit(c) => &c.commit.heads,
        }
    }

    /// The case it is for.
    pub fn case(&self) -> &CaseId {
        match self {
            SignedRecord::Transition(t) => &t.transition.case,
            SignedRecord::Commit(c) => &c.commit.case,
        }
    }

    /// The message its signature covers and the signature.
    pub fn signed_parts(&self) -> (Vec<u8>, &[u8; 64]) {
        match self {
            SignedRecord::Transition(t) => (t.transition.signed_bytes(), &t.signature),
            SignedRecord::Commit(c) => (c.commit.signed_bytes(), &c.signature),
        }
    }

    /// Whether the signature verifies for the key it names (strict ed25519).
    pub fn verify_signature(&self) -> bool {
        match self {
            SignedRecord::Transition(t) => t.verify_signature(),
            SignedRecord::Commit(c) => c.verify_signature(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn commit(key: &OfficeKey) -> Commit {
        Commit {
            case: CaseId::parse("440106001-20261128-K7Q2XM").unwrap(),
            office: OfficeId::parse("440106001-01").unwrap(),
            operator: Operator::parse("王芳").unwrap(),
            at: Timestamp(1_764_300_000_000),
            heads: vec![[3; 32], [1; 32]],
            signer_key: key.public(),
        }
    }

    #[test]
    fn a_commit_round_trips_and_verifies() {
        let key = OfficeKey::from_bytes(&[7; 32]);
        let signed = SignedCommit::sign(commit(&key), &key).unwrap();
        assert_eq!(signed.commit.heads, vec![[1; 32], [3; 32]]);
        let bytes = signed.encode();
        let decoded = SignedCommit::decode(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert!(decoded.verify_signature());
        assert!(matches!(
            SignedRecord::decode(&bytes),
            Ok(SignedRecord::Commit(_))
        ));
        let mut altered = bytes.clone();
        let at = altered.len() - 100;
        altered[at] ^= 1;
        assert!(
            SignedCommit::decode(&altered).map_or(true, |c| !c.verify_signature()),
            "an altered commit must not verify"
        );
    }

    #[test]
    fn decoding_is_total_on_every_prefix() {
        let key = OfficeKey::from_bytes(&[7; 32]);
        let bytes = SignedCommit::sign(commit(&key), &key).unwrap().encode();
        for len in 0..bytes.len() {
            assert!(SignedCommit::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedCommit::decode(&longer).is_err());
    }

    #[test]
    fn a_commit_needs_a_head() {
        let key = OfficeKey::from_bytes(&[7; 32]);
        let mut empty = commit(&key);
        empty.heads.clear();
        assert!(SignedCommit::sign(empty, &key).is_err());
    }
}
