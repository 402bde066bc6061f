//! The shared, updatable directory every handshake is checked against, and the
//! reasons a peer's key is refused.

use std::sync::{Arc, PoisonError, RwLock};

use thiserror::Error;
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_ledger::directory::{Directory, DirectoryError, KeyStatus, OfficeCertificate};
use tongban_ledger::keys::PublicKey;

/// A handle on the node's current office directory, shared by its endpoint's
/// verifiers. Cloning it shares the same directory; an update through any clone
/// takes effect for every handshake that starts afterwards.
#[derive(Debug, Clone)]
pub struct DirectoryHandle {
    inner: Arc<RwLock<Directory>>,
}

/// Why a peer's key was refused during the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PeerRejection {
    /// The peer sent no certificate (a client must always present one).
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The peer sent a chain where a single self-signed certificate is expected.
    #[error("the peer presented {count} certificates; one self-signed certificate is expected")]
    UnexpectedChain {
        /// How many certificates it sent.
        count: usize,
    },
    /// The certificate is not DER X.509 that webpki can parse.
    #[error("the peer's certificate does not parse: {reason}")]
    BadCertificate {
        /// The parser's reason.
        reason: String,
    },
    /// The certificate carries another kind of key than ed25519.
    #[error("the peer's certificate does not carry an ed25519 key")]
    NotEd25519,
    /// No certificate in the directory names the key.
    #[error("key {key:?} is not in directory version {directory_version}")]
    UnknownKey {
        /// The peer's key.
        key: PublicKey,
        /// The version of the directory consulted.
        directory_version: u64,
    },
    /// The key is revoked.
    #[error("key {key:?} of office {office} was revoked effective {effective:?}")]
    Revoked {
        /// The peer's key.
        key: PublicKey,
        /// The office it was certified for.
        office: OfficeId,
        /// When the revocation took effect.
        effective: Timestamp,
    },
    /// The key is certified, but no certificate covers the present moment.
    #[error("key {key:?} of office {office} has no certificate valid now")]
    NotValidNow {
        /// The peer's key.
        key: PublicKey,
        /// The office it was certified for.
        office: OfficeId,
    },
}

impl DirectoryHandle {
    /// A handle on this (already verified) directory.
    pub fn new(directory: Directory) -> DirectoryHandle {
        DirectoryHandle {
            inner: Arc::new(RwLock::new(directory)),
        }
    }

    /// Replaces the directory with `newer` when its version is higher (see
    /// `Directory::merge_newer`); returns whether it was replaced. `newer` must have
    /// been verified against the trusted authority.
    pub fn update(&self, newer: Directory) -> Result<bool, DirectoryError> {
        // A poisoned lock only means a reader panicked; the directory itself is
        // always a whole value, so it is safe to go on.
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        guard.merge_newer(newer)
    }

    /// The current directory's version.
    pub fn version(&self) -> u64 {
        self.read(|directory| directory.version)
    }

    /// Runs `f` on the current directory.
    pub fn read<R>(&self, f: impl FnOnce(&Directory) -> R) -> R {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    /// The certificate under which `key` may connect at `now`, or why it may not.
    pub fn check_key(
        &self,
        key: &PublicKey,
        now: Timestamp,
    ) -> Result<OfficeCertificate, PeerRejection> {
        self.read(|directory| check_key_in(directory, key, now))
    }
}

/// The answer of [`DirectoryHandle::check_key`] for one directory.
fn check_key_in(
    directory: &Directory,
    key: &PublicKey,
    now: Timestamp,
) -> Result<OfficeCertificate, PeerRejection> {
    if let Some(certificate) = directory.office_for_key_at(key, now) {
        return Ok(certificate.clone());
    }
    // Refused: find the most precise reason, from the offices the key was ever
    // certified for.
    let mut offices: Vec<&OfficeId> = directory
        .certificates
        .iter()
        .map(|entry| &entry.cert)
        .filter(|cert| cert.public_key == *key)
        .map(|cert| &cert.office)
        .collect();
    offices.sort();
    offices.dedup();
    let Some(first) = offices.first() else {
        return Err(PeerRejection::UnknownKey {
            key: *key,
            directory_version: directory.version,
        });
    };
    for office in &offices {
        if let KeyStatus::Revoked { effective, .. } =
            directory.certificate_for_key_at(office, key, now)
        {
            return Err(PeerRejection::Revoked {
                key: *key,
                office: (*office).clone(),
                effective,
            });
        }
    }
    Err(PeerRejection::NotValidNow {
        key: *key,
        office: (*first).clone(),
    })
}
