//! Signed reference datasets: the working-day calendar and the county registry
//! feeds, each signed by the issuer `tongban_domain::dataset` names for its
//! kind, versioned, and verified against the directory before a node holds it.
//!
//! # Byte layout (version 1)
//!
//! | field      | size     | notes                                          |
//! |------------|----------|------------------------------------------------|
//! | magic      | 5        | `TBSET`                                        |
//! | version    | 1        | `1` (format version)                           |
//! | kind       | 1        | `DatasetKind::wire`                            |
//! | scope      | 2 + n    | str: `00`, a 6-digit county, or `130102:2026-11` |
//! | version    | 8        | u64, the dataset's own version (≥ 1)           |
//! | issued_at  | 8        | i64 ms UTC                                     |
//! | issuer     | 2 + n    | str: an office id, or empty for the authority  |
//! | public_key | 32       | the key that signed                            |
//! | payload    | 4 + n    | u32 length (≤ [`MAX_PAYLOAD`]), then the data  |
//! | signature  | 64       | ed25519 by `public_key` over all before it     |
//!
//! The payload of a calendar is the calendar's text format (one or more
//! years); of a feed, `tongban_domain::registry`'s compact form.

use thiserror::Error;
use tongban_domain::dataset::{DatasetKind, Issuer, ScopeError, check_scope};
use tongban_domain::ids::{OfficeId, Timestamp};

use crate::directory::{Directory, KeyStatus};
use crate::encoding::{DecodeError, Reader, Writer};
use crate::keys::{OfficeKey, PublicKey};

const MAGIC: &[u8] = b"TBSET";
const FORMAT_VERSION: u8 = 1;
/// The largest payload: a sync frame carries a dataset whole (16 MiB frames).
pub const MAX_PAYLOAD: usize = 15 << 20;

/// A dataset as its issuer signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// What it is.
    pub kind: DatasetKind,
    /// The region it covers (`00` or a county code).
    pub scope: String,
    /// Its version; a node holds only the newest.
    pub version: u64,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// The issuing office, or `None` for the directory authority.
    pub issuer: Option<OfficeId>,
    /// The key that signed.
    pub public_key: PublicKey,
    /// The data.
    pub payload: Vec<u8>,
}

/// A dataset and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDataset {
    /// The dataset.
    pub dataset: Dataset,
    /// ed25519 over [`Dataset::signed_bytes`].
    pub signature: [u8; 64],
}

/// Why a dataset was refused.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// The bytes are not a dataset.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The scope does not fit the kind.
    #[error("{0}")]
    Scope(#[from] ScopeError),
    /// The version must be at least 1.
    #[error("dataset version must be at least 1")]
    ZeroVersion,
    /// The signature does not verify.
    #[error("the signature of {kind} {scope} version {version} does not verify")]
    BadSignature {
        /// Kind.
        kind: DatasetKind,
        /// Scope.
        scope: String,
        /// Version.
        version: u64,
    },
    /// The issuer is not the one the kind requires.
    #[error("{kind} must be signed by {required}, not {found}")]
    WrongIssuer {
        /// Kind.
        kind: DatasetKind,
        /// Who must sign.
        required: String,
        /// Who signed.
        found: String,
    },
    /// The key was not valid for the issuer when it signed.
    #[error("{kind} {scope}: the key of {issuer} was not valid at signing: {reason}")]
    KeyNotValid {
        /// Kind.
        kind: DatasetKind,
        /// Scope.
        scope: String,
        /// The office.
        issuer: String,
        /// What the directory says.
        reason: String,
    },
}

impl Dataset {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, FORMAT_VERSION);
        w.u8(self.kind.wire());
        w.str(&self.scope);
        w.u64(self.version);
        w.i64(self.issued_at.0);
        w.str(self.issuer.as_ref().map_or("", |o| o.as_str()));
        w.raw(&self.public_key.0);
        w.nested(&self.payload);
        w.finish()
    }

    /// Signs it with `key`. The key must be the one named in `public_key`.
    pub fn sign(self, key: &OfficeKey) -> SignedDataset {
        let signature = key.sign(&self.signed_bytes());
        SignedDataset {
            dataset: self,
            signature,
        }
    }

    /// Who signed, in words: `the directory authority` or the office id.
    pub fn issuer_name(&self) -> String {
        self.issuer
            .as_ref()
            .map_or_else(|| "the directory authority".to_string(), |o| o.to_string())
    }
}

impl SignedDataset {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.dataset.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Decodes without checking the signature. Total.
    pub fn decode(bytes: &[u8]) -> Result<SignedDataset, DecodeError> {
        let mut r = Reader::open(bytes, MAGIC, "TBSET dataset", FORMAT_VERSION)?;
        let at = r.offset();
        let byte = r.u8("kind")?;
        let kind = DatasetKind::from_wire(byte).ok_or(DecodeError::InvalidValue {
            field: "kind",
            offset: at,
            reason: format!("unknown dataset kind {byte}"),
        })?;
        let (scope, _) = r.str("scope", 14)?;
        let scope = scope.to_string();
        let version = r.u64("version")?;
        let issued_at = Timestamp(r.i64("issued_at")?);
        let (issuer, at) = r.str("issuer", 64)?;
        let issuer = if issuer.is_empty() {
            None
        } else {
            Some(
                OfficeId::parse(issuer).map_err(|e| DecodeError::InvalidValue {
                    field: "issuer",
                    offset: at,
                    reason: e.to_string(),
                })?,
            )
        };
        let public_key = PublicKey(r.array("public_key")?);
        let (payload, _) = r.nested("payload", MAX_PAYLOAD)?;
        let payload = payload.to_vec();
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(SignedDataset {
            dataset: Dataset {
                kind,
                scope,
                version,
                issued_at,
                issuer,
                public_key,
                payload,
            },
            signature,
        })
    }

    /// Decodes and verifies: the scope fits the kind, the issuer is the one
    /// `DatasetKind::issuer` names (the trusted authority key itself, or an
    /// office certified in `directory` with that role, for that county, with a
    /// key valid and not revoked when it signed), and the signature verifies.
    pub fn verify(
        bytes: &[u8],
        directory: &Directory,
        authority: &PublicKey,
    ) -> Result<SignedDataset, DatasetError> {
        let signed = SignedDataset::decode(bytes)?;
        let d = &signed.dataset;
        check_scope(d.kind, &d.scope)?;
        if d.version == 0 {
            return Err(DatasetError::ZeroVersion);
        }
        match (d.kind.issuer(), &d.issuer) {
            (Issuer::Authority, None) => {
                if d.public_key != *authority {
                    return Err(DatasetError::WrongIssuer {
                        kind: d.kind,
                        required: "the directory authority".into(),
                        found: format!("key {}", d.public_key.fingerprint()),
                    });
                }
            }
            (Issuer::Office(role), Some(office)) => {
                let wrong = |found: String| DatasetError::WrongIssuer {
                    kind: d.kind,
                    required: format!("the {} of county {}", role.code(), d.scope),
                    found,
                };
                match directory.certificate_for_key_at(office, &d.public_key, d.issued_at) {
                    KeyStatus::Valid(cert) => {
                        if cert.role != role
                            || cert.division.as_str() != tongban_domain::dataset::region(&d.scope)
                        {
                            return Err(wrong(format!(
                                "{office} ({}, {})",
                                cert.role.code(),
                                cert.division.as_str()
                            )));
                        }
                    }
                    other => {
                        return Err(DatasetError::KeyNotValid {
                            kind: d.kind,
                            scope: d.scope.clone(),
                            issuer: office.to_string(),
                            reason: key_status_words(&other),
                        });
                    }
                }
            }
            (Issuer::Authority, Some(office)) => {
                return Err(DatasetError::WrongIssuer {
                    kind: d.kind,
                    required: "the directory authority".into(),
                    found: office.to_string(),
                });
            }
            (Issuer::Office(role), None) => {
                return Err(DatasetError::WrongIssuer {
                    kind: d.kind,
                    required: format!("the {} of county {}", role.code(), d.scope),
                    found: "the directory authority".into(),
                });
            }
        }
        if !d.public_key.verify(&d.signed_bytes(), &signed.signature) {
            return Err(DatasetError::BadSignature {
                kind: d.kind,
                scope: d.scope.clone(),
                version: d.version,
            });
        }
        Ok(signed)
    }
}

fn key_status_words(status: &KeyStatus<'_>) -> String {
    match status {
        KeyStatus::Valid(_) => "valid".into(),
        KeyStatus::UnknownKey => "the directory does not certify this key for the office".into(),
        KeyStatus::NotYetValid { not_before } => {
            format!("certified only from {}", not_before.china_display())
        }
        KeyStatus::Expired { not_after } => {
            format!("its certificate ended {}", not_after.china_display())
        }
        KeyStatus::Revoked { effective, .. } => {
            format!("revoked from {}", effective.china_display())
        }
    }
}
