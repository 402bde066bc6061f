//! Office certificates, revocations and the signed, versioned office directory.
//!
//! The directory authority (an offline key run from the CLI) certifies each office's
//! public key: office id, Chinese name, role, division code and a validity window.
//! It revokes keys with signed revocations. It publishes the whole set as one signed,
//! versioned [`SignedDirectory`] that every node carries; every verification in the
//! product (signed transitions, peer authentication) is against it.
//!
//! Key rotation is a new certificate for the same office with a new key: both keys
//! are valid in their own windows, so transitions signed with the old key stay
//! valid. A revocation makes a key invalid from its `effective` time on; signatures
//! made before that time stay valid, which is what lets a lost laptop's key be
//! revoked without invalidating the cases it signed last year.
//!
//! Validity windows are inclusive at both ends: a key is valid at `at` when
//! `not_before <= at <= not_after`; a revocation applies when `effective <= at`.
//!
//! # Byte layouts (version 1)
//!
//! Integers are big-endian; `str` is a `u16` byte length then UTF-8; the signature
//! is ed25519 by the directory authority over every preceding byte of the entry.
//!
//! Certificate (`SignedCertificate`):
//!
//! | field        | size     | notes                                   |
//! |--------------|----------|-----------------------------------------|
//! | magic        | 5        | `TBCRT`                                 |
//! | version      | 1        | `1`                                     |
//! | serial       | 8        | u64                                     |
//! | office       | 2 + n    | str, an [`OfficeId`] (≤ 64)             |
//! | name         | 2 + n    | str, 1-256 bytes, no control characters |
//! | role         | 1        | [`Role::wire`]                          |
//! | division     | 2 + n    | str, 2, 6 or 9 ASCII digits             |
//! | public_key   | 32       | ed25519 public key                      |
//! | not_before   | 8        | i64 ms UTC                              |
//! | not_after    | 8        | i64 ms UTC, ≥ not_before                |
//! | signature    | 64       | authority over all preceding bytes      |
//!
//! Revocation (`SignedRevocation`):
//!
//! | field        | size     | notes                                   |
//! |--------------|----------|-----------------------------------------|
//! | magic        | 5        | `TBREV`                                 |
//! | version      | 1        | `1`                                     |
//! | serial       | 8        | u64                                     |
//! | office       | 2 + n    | str, an [`OfficeId`]                    |
//! | public_key   | 32       | the revoked key                         |
//! | effective    | 8        | i64 ms UTC                              |
//! | reason       | 2 + n    | str, 0-1024 bytes, no control characters|
//! | signature    | 64       | authority over all preceding bytes      |
//!
//! Directory (`SignedDirectory`):
//!
//! | field          | size     | notes                                 |
//! |----------------|----------|---------------------------------------|
//! | magic          | 5        | `TBDIR`                               |
//! | version byte   | 1        | `1` (format version)                  |
//! | version        | 8        | u64, the directory's own version      |
//! | issued_at      | 8        | i64 ms UTC                            |
//! | authority      | 32       | the authority's public key            |
//! | n_certificates | 4        | u32                                   |
//! | certificates   | n × (4 + len) | u32 length, then a certificate   |
//! | n_revocations  | 4        | u32                                   |
//! | revocations    | n × (4 + len) | u32 length, then a revocation    |
//! | signature      | 64       | authority over all preceding bytes    |

use std::collections::BTreeSet;

use serde::Serialize;
use thiserror::Error;
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::keys::{KeyError, OfficeKey, PublicKey};

const CERT_MAGIC: &[u8] = b"TBCRT";
const REV_MAGIC: &[u8] = b"TBREV";
const DIR_MAGIC: &[u8] = b"TBDIR";
const FORMAT_VERSION: u8 = 1;

/// Longest office name, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest revocation reason, in bytes.
pub const MAX_REASON: usize = 1024;
/// Longest single directory entry, in bytes.
const MAX_ENTRY: usize = 4096;
/// Most entries of either kind in one directory.
pub const MAX_ENTRIES: usize = 1_000_000;

/// An office certificate: the authority's statement that `public_key` belongs to
/// `office`, with this role and division, between `not_before` and `not_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfficeCertificate {
    /// The office.
    pub office: OfficeId,
    /// The office's Chinese name, e.g. `广州市越秀区北京街道办事处`.
    pub name: String,
    /// The role granted.
    pub role: Role,
    /// GB/T 2260 division code: 2 digits (province), 6 (county) or 9 (township).
    pub division: String,
    /// The office's key.
    pub public_key: PublicKey,
    /// Start of validity (inclusive).
    pub not_before: Timestamp,
    /// End of validity (inclusive).
    pub not_after: Timestamp,
    /// The authority's serial number for this certificate.
    pub serial: u64,
}

/// A revocation: from `effective` on, `public_key` signs nothing valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The office the key was certified for (for people; matching is by key).
    pub office: OfficeId,
    /// The revoked key.
    pub public_key: PublicKey,
    /// From when signatures by the key are invalid (inclusive).
    pub effective: Timestamp,
    /// Why, in words (may be empty).
    pub reason: String,
    /// The authority's serial number for this revocation.
    pub serial: u64,
}

/// A certificate with the authority's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertificate {
    /// The certificate.
    pub cert: OfficeCertificate,
    /// ed25519 signature by the authority over the encoding before it.
    pub signature: [u8; 64],
}

/// A revocation with the authority's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRevocation {
    /// The revocation.
    pub revocation: Revocation,
    /// ed25519 signature by the authority over the encoding before it.
    pub signature: [u8; 64],
}

/// The office directory: every certificate and revocation the authority has
/// published, at one version. A `Directory` returned by [`Directory::verify`] has
/// had every signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// Monotonic version; a higher one replaces a lower one.
    pub version: u64,
    /// When the authority published it.
    pub issued_at: Timestamp,
    /// The authority's key.
    pub authority: PublicKey,
    /// Every certificate, in publication order.
    pub certificates: Vec<SignedCertificate>,
    /// Every revocation, in publication order.
    pub revocations: Vec<SignedRevocation>,
}

/// A directory with the authority's signature over all of it: the form that is
/// stored, copied between nodes and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDirectory {
    /// The directory.
    pub directory: Directory,
    /// ed25519 signature by `directory.authority` over the encoding before it.
    pub signature: [u8; 64],
}

/// Why a certificate or revocation cannot be issued (or was refused on decoding).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InvalidEntry {
    /// The office name is empty, too long or contains control characters.
    #[error("office name must be 1-{MAX_NAME} bytes without control characters")]
    Name,
    /// The division is not 2, 6 or 9 ASCII digits.
    #[error("division {0:?} must be 2, 6 or 9 digits")]
    Division(String),
    /// The validity window ends before it starts.
    #[error("not_after {not_after:?} is before not_before {not_before:?}")]
    Window {
        /// Start.
        not_before: Timestamp,
        /// End.
        not_after: Timestamp,
    },
    /// The revocation reason is too long or contains control characters.
    #[error("revocation reason must be at most {MAX_REASON} bytes without control characters")]
    Reason,
    /// The key to certify is not a strong key ([`PublicKey::check_strong`]).
    /// Refused when issuing; [`SignedDirectory::decode`] reads such a
    /// certificate, and [`SignedDirectory::verify`] refuses it
    /// ([`DirectoryError::WeakKey`]).
    #[error("public key {fingerprint}: {reason}")]
    WeakKey {
        /// The key's fingerprint.
        fingerprint: String,
        /// What is wrong with it.
        reason: KeyError,
    },
    /// The validity window to certify is empty: it ends when it begins (or
    /// before). Refused when issuing; decoding refuses only a window that ends
    /// before it begins ([`InvalidEntry::Window`]).
    #[error(
        "the validity window is empty: not_after ({}) must be later than not_before ({})",
        not_after.china_display(),
        not_before.china_display()
    )]
    EmptyWindow {
        /// Start.
        not_before: Timestamp,
        /// End.
        not_after: Timestamp,
    },
}

/// Why a directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The bytes are not a directory encoding.
    #[error("directory does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The directory is signed by another authority than the trusted one.
    #[error("directory is signed by authority {found}, not the trusted authority {trusted}")]
    UntrustedAuthority {
        /// Fingerprint of the key in the directory.
        found: String,
        /// Fingerprint of the trusted key.
        trusted: String,
    },
    /// The signature over the whole directory is invalid.
    #[error("the authority's signature over directory version {version} is invalid")]
    BadSignature {
        /// The directory's version.
        version: u64,
    },
    /// One certificate's signature is invalid.
    #[error(
        "certificate #{index} (serial {serial}, office {office}) has an invalid authority signature"
    )]
    BadCertificateSignature {
        /// Position in the directory's certificate list.
        index: usize,
        /// Its serial.
        serial: u64,
        /// Its office.
        office: OfficeId,
    },
    /// One revocation's signature is invalid.
    #[error(
        "revocation #{index} (serial {serial}, office {office}) has an invalid authority signature"
    )]
    BadRevocationSignature {
        /// Position in the directory's revocation list.
        index: usize,
        /// Its serial.
        serial: u64,
        /// Its office.
        office: OfficeId,
    },
    /// One certificate's key is not a strong key ([`PublicKey::check_strong`]):
    /// signature verification assumes every certified key is one
    /// ([`crate::keys`], "Which signatures are valid").
    #[error("certificate #{index} (serial {serial}, office {office}): {reason}")]
    WeakKey {
        /// Position in the directory's certificate list.
        index: usize,
        /// Its serial.
        serial: u64,
        /// Its office.
        office: OfficeId,
        /// What is wrong with the key.
        reason: KeyError,
    },
    /// Two certificates (or two revocations) carry the same serial.
    #[error("{what} #{index} repeats serial {serial}")]
    DuplicateSerial {
        /// `certificate` or `revocation`.
        what: &'static str,
        /// Position of the second one.
        index: usize,
        /// The serial.
        serial: u64,
    },
    /// A directory of another authority cannot replace this one.
    #[error("cannot merge a directory of authority {found} into one of authority {ours}")]
    AuthorityMismatch {
        /// Fingerprint of our authority.
        ours: String,
        /// Fingerprint of the other.
        found: String,
    },
}

/// What the directory says of a key used by an office at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus<'a> {
    /// A certificate of this office for this key covers the time, and no
    /// revocation is effective by then.
    Valid(&'a OfficeCertificate),
    /// No certificate of this office names this key.
    UnknownKey,
    /// Every certificate for the key starts later.
    NotYetValid {
        /// Earliest start among the key's certificates.
        not_before: Timestamp,
    },
    /// Every certificate for the key that started has ended by then.
    Expired {
        /// Latest end among the key's certificates.
        not_after: Timestamp,
    },
    /// The key was revoked at or before the time.
    Revoked {
        /// When the revocation took effect.
        effective: Timestamp,
        /// The revocation.
        revocation: &'a Revocation,
    },
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn valid_division(division: &str) -> bool {
    matches!(division.len(), 2 | 6 | 9) && division.bytes().all(|b| b.is_ascii_digit())
}

impl OfficeCertificate {
    /// Checks what the encoding requires: name, division and window.
    pub fn validate(&self) -> Result<(), InvalidEntry> {
        if self.name.is_empty() || self.name.len() > MAX_NAME || has_control(&self.name) {
            return Err(InvalidEntry::Name);
        }
        if !valid_division(&self.division) {
            return Err(InvalidEntry::Division(self.division.clone()));
        }
        if self.not_after < self.not_before {
            return Err(InvalidEntry::Window {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }

    /// Whether `at` lies inside the validity window (inclusive).
    pub fn covers(&self, at: Timestamp) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(CERT_MAGIC, FORMAT_VERSION);
        w.u64(self.serial);
        w.str(self.office.as_str());
        w.str(&self.name);
        w.u8(self.role.wire());
        w.str(&self.division);
        w.raw(self.public_key.as_bytes());
        w.i64(self.not_before.0);
        w.i64(self.not_after.0);
        w.finish()
    }
}

impl Revocation {
    /// Checks what the encoding requires: the reason.
    pub fn validate(&self) -> Result<(), InvalidEntry> {
        if self.reason.len() > MAX_REASON || has_control(&self.reason) {
            return Err(InvalidEntry::Reason);
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(REV_MAGIC, FORMAT_VERSION);
        w.u64(self.serial);
        w.str(self.office.as_str());
        w.raw(self.public_key.as_bytes());
        w.i64(self.effective.0);
        w.str(&self.reason);
        w.finish()
    }
}

fn read_office(r: &mut Reader<'_>) -> Result<OfficeId, DecodeError> {
    let (text, offset) = r.str("office", 64)?;
    OfficeId::parse(text).map_err(|err| DecodeError::InvalidValue {
        field: "office",
        offset,
        reason: err.to_string(),
    })
}

fn invalid(field: &'static str, offset: usize, err: InvalidEntry) -> DecodeError {
    DecodeError::InvalidValue {
        field,
        offset,
        reason: err.to_string(),
    }
}

impl SignedCertificate {
    /// The canonical encoding (layout in the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.cert.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Decodes a certificate without checking its signature. Total: any input gives
    /// a value or an error naming the field and offset.
    pub fn decode(bytes: &[u8]) -> Result<SignedCertificate, DecodeError> {
        let mut r = Reader::open(bytes, CERT_MAGIC, "TBCRT certificate", FORMAT_VERSION)?;
        let serial = r.u64("serial")?;
        let office = read_office(&mut r)?;
        let (name, name_offset) = r.str("name", MAX_NAME)?;
        let role_offset = r.offset();
        let role_byte = r.u8("role")?;
        let role = Role::from_wire(role_byte).ok_or_else(|| DecodeError::InvalidValue {
            field: "role",
            offset: role_offset,
            reason: format!("unknown role byte {role_byte}"),
        })?;
        let (division, division_offset) = r.str("division", 9)?;
        let public_key = PublicKey(r.array("public_key")?);
        let not_before = Timestamp(r.i64("not_before")?);
        let not_after_offset = r.offset();
        let not_after = Timestamp(r.i64("not_after")?);
        let signature = r.array("signature")?;
        r.finish()?;
        let cert = OfficeCertificate {
            office,
            name: name.to_string(),
            role,
            division: division.to_string(),
            public_key,
            not_before,
            not_after,
            serial,
        };
        cert.validate().map_err(|err| match err {
            InvalidEntry::Name => invalid("name", name_offset, err),
            InvalidEntry::Division(_) => invalid("division", division_offset, err),
            _ => invalid("not_after", not_after_offset, err),
        })?;
        Ok(SignedCertificate { cert, signature })
    }

    /// Whether the signature is `authority`'s over this certificate.
    pub fn verify_signature(&self, authority: &PublicKey) -> bool {
        authority.verify(&self.cert.signed_bytes(), &self.signature)
    }
}

impl SignedRevocation {
    /// The canonical encoding (layout in the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.revocation.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Decodes a revocation without checking its signature. Total.
    pub fn decode(bytes: &[u8]) -> Result<SignedRevocation, DecodeError> {
        let mut r = Reader::open(bytes, REV_MAGIC, "TBREV revocation", FORMAT_VERSION)?;
        let serial = r.u64("serial")?;
        let office = read_office(&mut r)?;
        let public_key = PublicKey(r.array("public_key")?);
        let effective = Timestamp(r.i64("effective")?);
        let (reason, reason_offset) = r.str("reason", MAX_REASON)?;
        let signature = r.array("signature")?;
        r.finish()?;
        let revocation = Revocation {
            office,
            public_key,
            effective,
            reason: reason.to_string(),
            serial,
        };
        revocation
            .validate()
            .map_err(|err| invalid("reason", reason_offset, err))?;
        Ok(SignedRevocation {
            revocation,
            signature,
        })
    }

    /// Whether the signature is `authority`'s over this revocation.
    pub fn verify_signature(&self, authority: &PublicKey) -> bool {
        authority.verify(&self.revocation.signed_bytes(), &self.signature)
    }
}

impl SignedDirectory {
    /// The canonical encoding (layout in the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.directory.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Decodes a directory without checking any signature. Total.
    pub fn decode(bytes: &[u8]) -> Result<SignedDirectory, DecodeError> {
        let mut r = Reader::open(bytes, DIR_MAGIC, "TBDIR directory", FORMAT_VERSION)?;
        let version = r.u64("version")?;
        let issued_at = Timestamp(r.i64("issued_at")?);
        let authority = PublicKey(r.array("authority")?);
        let certificates = read_entries(
            &mut r,
            "n_certificates",
            "certificate",
            SignedCertificate::decode,
        )?;
        let revocations = read_entries(
            &mut r,
            "n_revocations",
            "revocation",
            SignedRevocation::decode,
        )?;
        let signature = r.array("signature")?;
        r.finish()?;
        Ok(SignedDirectory {
            directory: Directory {
                version,
                issued_at,
                authority,
                certificates,
                revocations,
            },
            signature,
        })
    }

    /// Checks the directory against the trusted authority key: the authority, the
    /// signature over the whole, every entry's signature, that every certified
    /// key is strong ([`PublicKey::check_strong`], which signature verification
    /// assumes; it costs about one more signature verification a certificate)
    /// and serial uniqueness.
    pub fn verify(&self, trusted_authority: &PublicKey) -> Result<(), DirectoryError> {
        let dir = &self.directory;
        if dir.authority != *trusted_authority {
            return Err(DirectoryError::UntrustedAuthority {
                found: dir.authority.fingerprint(),
                trusted: trusted_authority.fingerprint(),
            });
        }
        if !dir.authority.verify(&dir.signed_bytes(), &self.signature) {
            return Err(DirectoryError::BadSignature {
                version: dir.version,
            });
        }
        let mut serials = BTreeSet::new();
        for (index, entry) in dir.certificates.iter().enumerate() {
            if !entry.verify_signature(&dir.authority) {
                return Err(DirectoryError::BadCertificateSignature {
                    index,
                    serial: entry.cert.serial,
                    office: entry.cert.office.clone(),
                });
            }
            if let Err(reason) = entry.cert.public_key.check_strong() {
                return Err(DirectoryError::WeakKey {
                    index,
                    serial: entry.cert.serial,
                    office: entry.cert.office.clone(),
                    reason,
                });
            }
            if !serials.insert(entry.cert.serial) {
                return Err(DirectoryError::DuplicateSerial {
                    what: "certificate",
                    index,
                    serial: entry.cert.serial,
                });
            }
        }
        serials.clear();
        for (index, entry) in dir.revocations.iter().enumerate() {
            if !entry.verify_signature(&dir.authority) {
                return Err(DirectoryError::BadRevocationSignature {
                    index,
                    serial: entry.revocation.serial,
                    office: entry.revocation.office.clone(),
                });
            }
            if !serials.insert(entry.revocation.serial) {
                return Err(DirectoryError::DuplicateSerial {
                    what: "revocation",
                    index,
                    serial: entry.revocation.serial,
                });
            }
        }
        Ok(())
    }
}

fn read_entries<T>(
    r: &mut Reader<'_>,
    count_field: &'static str,
    entry_field: &'static str,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let count_offset = r.offset();
    let count = usize::try_from(r.u32(count_field)?).unwrap_or(usize::MAX);
    if count > MAX_ENTRIES {
        return Err(DecodeError::TooLong {
            field: count_field,
            offset: count_offset,
            found: count,
            max: MAX_ENTRIES,
        });
    }
    // No capacity from the untrusted count: the vector grows only as entries are
    // actually read, so a huge count in a short input costs nothing.
    let mut entries = Vec::new();
    for _ in 0..count {
        let (bytes, offset) = r.nested(entry_field, MAX_ENTRY)?;
        // Report errors inside an entry at their absolute offset in the directory.
        let entry = decode(bytes).map_err(|err| shift(err, offset + 4))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Moves an error's offset by `by` bytes (for errors inside nested encodings).
fn shift(err: DecodeError, by: usize) -> DecodeError {
    match err {
        DecodeError::Truncated {
            field,
            offset,
            needed,
            available,
        } => DecodeError::Truncated {
            field,
            offset: offset + by,
            needed,
            available,
        },
        DecodeError::BadMagic { expected } => DecodeError::InvalidValue {
            field: "entry",
            offset: by,
            reason: format!("not a {expected} encoding"),
        },
        DecodeError::UnsupportedVersion {
            offset,
            found,
            supported,
        } => DecodeError::UnsupportedVersion {
            offset: offset + by,
            found,
            supported,
        },
        DecodeError::InvalidUtf8 { field, offset } => DecodeError::InvalidUtf8 {
            field,
            offset: offset + by,
        },
        DecodeError::TooLong {
            field,
            offset,
            found,
            max,
        } => DecodeError::TooLong {
            field,
            offset: offset + by,
            found,
            max,
        },
        DecodeError::InvalidValue {
            field,
            offset,
            reason,
        } => DecodeError::InvalidValue {
            field,
            offset: offset + by,
            reason,
        },
        DecodeError::NonCanonical {
            field,
            offset,
            reason,
        } => DecodeError::NonCanonical {
            field,
            offset: offset + by,
            reason,
        },
        DecodeError::TrailingBytes { offset, count } => DecodeError::TrailingBytes {
            offset: offset + by,
            count,
        },
    }
}

impl Directory {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(DIR_MAGIC, FORMAT_VERSION);
        w.u64(self.version);
        w.i64(self.issued_at.0);
        w.raw(self.authority.as_bytes());
        w.u32(u32::try_from(self.certificates.len()).unwrap_or(u32::MAX));
        for entry in &self.certificates {
            w.nested(&entry.encode());
        }
        w.u32(u32::try_from(self.revocations.len()).unwrap_or(u32::MAX));
        for entry in &self.revocations {
            w.nested(&entry.encode());
        }
        w.finish()
    }

    /// Decodes and fully verifies an encoded [`SignedDirectory`] against the trusted
    /// authority key. The first bad entry is an error naming it.
    pub fn verify(
        bytes: &[u8],
        trusted_authority: &PublicKey,
    ) -> Result<Directory, DirectoryError> {
        let signed = SignedDirectory::decode(bytes)?;
        signed.verify(trusted_authority)?;
        Ok(signed.directory)
    }

    /// What the directory says of `key` used by `office` at `at`.
    ///
    /// Revocations match by key alone: a compromised key is revoked whichever
    /// office it was certified for. A revocation effective later than `at` leaves a
    /// signature made at `at` valid.
    pub fn certificate_for_key_at(
        &self,
        office: &OfficeId,
        key: &PublicKey,
        at: Timestamp,
    ) -> KeyStatus<'_> {
        let certs: Vec<&OfficeCertificate> = self
            .certificates
            .iter()
            .map(|entry| &entry.cert)
            .filter(|cert| cert.office == *office && cert.public_key == *key)
            .collect();
        if certs.is_empty() {
            return KeyStatus::UnknownKey;
        }
        if let Some(revocation) = self.revocation_of(key, at) {
            return KeyStatus::Revoked {
                effective: revocation.effective,
                revocation,
            };
        }
        if let Some(cert) = certs
            .iter()
            .copied()
            .filter(|cert| cert.covers(at))
            .max_by_key(|cert| cert.not_before)
        {
            return KeyStatus::Valid(cert);
        }
        // No certificate covers `at`: each one either starts later or has ended.
        let ended = certs
            .iter()
            .filter(|cert| cert.not_after < at)
            .map(|cert| cert.not_after)
            .max();
        match ended {
            Some(not_after) => KeyStatus::Expired { not_after },
            None => KeyStatus::NotYetValid {
                not_before: certs.iter().map(|cert| cert.not_before).min().unwrap_or(at),
            },
        }
    }

    /// The earliest revocation of `key` effective at or before `at`.
    fn revocation_of(&self, key: &PublicKey, at: Timestamp) -> Option<&Revocation> {
        self.revocations
            .iter()
            .map(|entry| &entry.revocation)
            .filter(|rev| rev.public_key == *key && rev.effective <= at)
            .min_by_key(|rev| rev.effective)
    }

    /// The most recent certificate of `office` naming `key`, whatever its window:
    /// what the office was certified as (role, division) when it used the key.
    pub fn certificate_for_key(
        &self,
        office: &OfficeId,
        key: &PublicKey,
    ) -> Option<&OfficeCertificate> {
        self.certificates
            .iter()
            .map(|entry| &entry.cert)
            .filter(|cert| cert.office == *office && cert.public_key == *key)
            .max_by_key(|cert| (cert.not_before, cert.serial))
    }

    /// The certificate under which `key` may be used at `now`, if any: the question
    /// transport asks of a connecting peer before any case data moves.
    pub fn office_for_key_at(&self, key: &PublicKey, now: Timestamp) -> Option<&OfficeCertificate> {
        if self.revocation_of(key, now).is_some() {
            return None;
        }
        self.certificates
            .iter()
            .map(|entry| &entry.cert)
            .filter(|cert| cert.public_key == *key && cert.covers(now))
            .max_by_key(|cert| (cert.not_before, cert.serial))
    }

    /// Whether `key` is certified for some office at `now` and not revoked.
    pub fn is_key_allowed_now(&self, key: &PublicKey, now: Timestamp) -> bool {
        self.office_for_key_at(key, now).is_some()
    }

    /// Every office with at least one certificate, sorted, without repeats.
    pub fn offices(&self) -> Vec<&OfficeId> {
        let set: BTreeSet<&OfficeId> = self
            .certificates
            .iter()
            .map(|entry| &entry.cert.office)
            .collect();
        set.into_iter().collect()
    }

    /// Every certificate of `office`, oldest first.
    pub fn certificates_of(&self, office: &OfficeId) -> Vec<&OfficeCertificate> {
        let mut certs: Vec<&OfficeCertificate> = self
            .certificates
            .iter()
            .map(|entry| &entry.cert)
            .filter(|cert| cert.office == *office)
            .collect();
        certs.sort_by_key(|cert| (cert.not_before, cert.serial));
        certs
    }

    /// Replaces this directory with `other` when `other` has a higher version.
    /// Returns whether it was replaced. `other` must already be verified (it is, if
    /// it came from [`Directory::verify`]); a directory of another authority is
    /// refused.
    pub fn merge_newer(&mut self, other: Directory) -> Result<bool, DirectoryError> {
        if other.authority != self.authority {
            return Err(DirectoryError::AuthorityMismatch {
                ours: self.authority.fingerprint(),
                found: other.authority.fingerprint(),
            });
        }
        if other.version > self.version {
            *self = other;
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// The directory authority: signs certificates, revocations and directories.
#[derive(Debug)]
pub struct DirectoryAuthority {
    /// The authority's key (kept offline).
    pub key: OfficeKey,
}

impl DirectoryAuthority {
    /// The authority with this key.
    pub fn new(key: OfficeKey) -> DirectoryAuthority {
        DirectoryAuthority { key }
    }

    /// The authority's public key, which every node trusts.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Signs a certificate after checking it can be encoded, that its key is
    /// strong ([`PublicKey::check_strong`]: a small-order key would make anything
    /// "signed" by the office, a crafted one undermines what a signature means)
    /// and that its validity window is not empty. The last two are rules for new
    /// certificates only: [`SignedCertificate::decode`] reads what an earlier
    /// authority issued.
    pub fn issue(&self, cert: OfficeCertificate) -> Result<SignedCertificate, InvalidEntry> {
        cert.validate()?;
        cert.public_key
            .check_strong()
            .map_err(|reason| InvalidEntry::WeakKey {
                fingerprint: cert.public_key.fingerprint(),
                reason,
            })?;
        if cert.not_after <= cert.not_before {
            return Err(InvalidEntry::EmptyWindow {
                not_before: cert.not_before,
                not_after: cert.not_after,
            });
        }
        let signature = self.key.sign(&cert.signed_bytes());
        Ok(SignedCertificate { cert, signature })
    }

    /// Signs a revocation after checking it can be encoded.
    pub fn revoke(&self, revocation: Revocation) -> Result<SignedRevocation, InvalidEntry> {
        revocation.validate()?;
        let signature = self.key.sign(&revocation.signed_bytes());
        Ok(SignedRevocation {
            revocation,
            signature,
        })
    }

    /// Signs a directory of these entries at `version`.
    pub fn publish(
        &self,
        version: u64,
        issued_at: Timestamp,
        certificates: Vec<SignedCertificate>,
        revocations: Vec<SignedRevocation>,
    ) -> SignedDirectory {
        let directory = Directory {
            version,
            issued_at,
            authority: self.public(),
            certificates,
            revocations,
        };
        let signature = self.key.sign(&directory.signed_bytes());
        SignedDirectory {
            directory,
            signature,
        }
    }
}
