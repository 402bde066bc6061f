//! The directory authority's files: its key, its public key and the current signed
//! directory, in one folder the administrator keeps offline.
//!
//! ```text
//! AUTH/authority.key     the authority's secret key (mode 0600)
//! AUTH/authority.pub     its public key, hex: what every node trusts
//! AUTH/directory.tbdir   the current signed directory (TBDIR v1)
//! AUTH/calendar.tbset    the current signed working-day calendar (TBSET v1)
//! ```
//!
//! Every change publishes a new directory version containing all earlier entries
//! plus the new one, signed as a whole.

use std::path::{Path, PathBuf};

use tongban_domain::calendar::Calendar;
use tongban_domain::dataset::DatasetKind;
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::dataset::{Dataset, SignedDataset};
use tongban_ledger::directory::{
    Directory, DirectoryAuthority, OfficeCertificate, Revocation, SignedCertificate,
    SignedDirectory, SignedRevocation,
};
use tongban_ledger::keys::{OfficeKey, PublicKey};

use crate::files::write_atomic;

/// File names inside the authority folder.
pub const AUTHORITY_KEY: &str = "authority.key";
/// The public key file.
pub const AUTHORITY_PUB: &str = "authority.pub";
/// The current directory.
pub const DIRECTORY_FILE: &str = "directory.tbdir";
/// The current signed calendar.
pub const CALENDAR_FILE: &str = "calendar.tbset";

/// Why an authority operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `init` found an existing authority.
    #[error("{path} already holds a directory authority; refusing to overwrite its key")]
    Exists {
        /// The folder.
        path: PathBuf,
    },
    /// A file is damaged or of the wrong kind.
    #[error("{path}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorityError + '_ {
    move |source| AuthorityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a public key file (hex, one line).
pub fn read_public_key(path: &Path) -> Result<PublicKey, AuthorityError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    PublicKey::from_hex(text.trim()).map_err(|e| AuthorityError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The authority folder.
pub struct Authority {
    dir: PathBuf,
    authority: DirectoryAuthority,
    current: Directory,
}

impl Authority {
    /// Creates a new authority with an empty directory at version 1.
    pub fn init(dir: &Path, now: Timestamp) -> Result<Authority, AuthorityError> {
        if dir.join(AUTHORITY_KEY).exists() {
            return Err(AuthorityError::Exists {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = OfficeKey::generate().map_err(|e| AuthorityError::Invalid(e.to_string()))?;
        let key_path = dir.join(AUTHORITY_KEY);
        write_atomic(&key_path, key.to_pem_like_string().as_bytes(), Some(0o600))
            .map_err(io(&key_path))?;
        let pub_path = dir.join(AUTHORITY_PUB);
        write_atomic(
            &pub_path,
            format!("{}\n", key.public()).as_bytes(),
            Some(0o644),
        )
        .map_err(io(&pub_path))?;
        let authority = DirectoryAuthority::new(key);
        let signed = authority.publish(1, now, Vec::new(), Vec::new());
        let mut this = Authority {
            dir: dir.to_path_buf(),
            authority,
            current: signed.directory.clone(),
        };
        this.save(&signed)?;
        Ok(this)
    }

    /// Opens an existing authority folder, verifying its directory.
    pub fn open(dir: &Path) -> Result<Authority, AuthorityError> {
        let key_path = dir.join(AUTHORITY_KEY);
        let text = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = OfficeKey::from_pem_like_str(&text).map_err(|e| AuthorityError::Damaged {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let authority = DirectoryAuthority::new(key);
        let dir_path = dir.join(DIRECTORY_FILE);
        let bytes = std::fs::read(&dir_path).map_err(io(&dir_path))?;
        let current = Directory::verify(&bytes, &authority.public()).map_err(|e| {
            AuthorityError::Damaged {
                path: dir_path.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            authority,
            current,
        })
    }

    /// The authority's public key.
    pub fn public(&self) -> PublicKey {
        self.authority.public()
    }

    /// The current directory.
    pub fn directory(&self) -> &Directory {
        &self.current
    }

    /// Path of the current directory file.
    pub fn directory_path(&self) -> PathBuf {
        self.dir.join(DIRECTORY_FILE)
    }

    /// Path of the current signed calendar.
    pub fn calendar_path(&self) -> PathBuf {
        self.dir.join(CALENDAR_FILE)
    }

    /// Signs the working-day calendar every node counts deadlines with: the
    /// years of `calendar` over those of the calendar this authority published
    /// before (a year published again is replaced; one not given again stays),
    /// as the next version. Writes `calendar.tbset` and answers its bytes and
    /// the years it covers.
    pub fn publish_calendar(
        &self,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<(Vec<u8>, u64, Vec<i32>), AuthorityError> {
        let path = self.calendar_path();
        let mut merged = Calendar::default();
        let mut version = 1;
        if let Some(held) = self.published(&path, DatasetKind::Calendar)? {
            let text = String::from_utf8_lossy(&held.dataset.payload);
            merged
                .import_text(&text)
                .map_err(|e| AuthorityError::Damaged {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            version = held.dataset.version + 1;
        }
        let given = calendar.covered_years();
        if given.is_empty() {
            return Err(AuthorityError::Invalid(
                "the calendar given covers no year".into(),
            ));
        }
        for year in &given {
            if let Some(text) = calendar.to_text(*year) {
                merged
                    .import_text(&text)
                    .map_err(|e| AuthorityError::Invalid(e.to_string()))?;
            }
        }
        let years = merged.covered_years();
        let payload: String = years
            .iter()
            .filter_map(|year| merged.to_text(*year))
            .collect::<Vec<_>>()
            .join("\n");
        let signed = Dataset {
            kind: DatasetKind::Calendar,
            scope: "00".into(),
            version,
            issued_at: now,
            issuer: None,
            public_key: self.public(),
            payload: payload.into_bytes(),
        }
        .sign(&self.authority.key);
        let bytes = signed.encode();
        write_atomic(&path, &bytes, Some(0o644)).map_err(io(&path))?;
        Ok((bytes, version, years))
    }

    /// The dataset of `kind` this authority published last, kept at `path`;
    /// `None` before the first. A file that is not such a dataset signed by
    /// this authority is an error: the next version would be guessed.
    fn published(
        &self,
        path: &Path,
        kind: DatasetKind,
    ) -> Result<Option<SignedDataset>, AuthorityError> {
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        SignedDataset::decode(&bytes)
            .ok()
            .filter(|d| {
                d.dataset.kind == kind
                    && d.dataset.public_key == self.public()
                    && self
                        .public()
                        .verify(&d.dataset.signed_bytes(), &d.signature)
            })
            .map(Some)
            .ok_or_else(|| AuthorityError::Damaged {
                path: path.to_path_buf(),
                reason: format!("not a {} signed by this authority", kind.code()),
            })
    }

    /// Path of the signed policy of `province` this authority published last.
    pub fn policy_path(&self, province: &str) -> PathBuf {
        self.dir.join(format!("policy-{province}.tbset"))
    }

    /// Signs a province's policy (the TOML of `data/policies/`, checked by
    /// `Policy::from_toml`) as the next version of that province's policy
    /// dataset, which replaces the whole policy the nodes apply to its
    /// residents. Writes `policy-PP.tbset` and answers its bytes, version and
    /// the policy.
    pub fn publish_policy(
        &self,
        file_name: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<(Vec<u8>, u64, tongban_domain::policy::Policy), AuthorityError> {
        let policy = tongban_domain::policy::Policy::from_toml(file_name, text)
            .map_err(|e| AuthorityError::Invalid(e.to_string()))?;
        let path = self.policy_path(&policy.province);
        let version = self
            .published(&path, DatasetKind::Policy)?
            .map_or(1, |held| held.dataset.version + 1);
        let signed = Dataset {
            kind: DatasetKind::Policy,
            scope: policy.province.clone(),
            version,
            issued_at: now,
            issuer: None,
            public_key: self.public(),
            payload: text.as_bytes().to_vec(),
        }
        .sign(&self.authority.key);
        let bytes = signed.encode();
        write_atomic(&path, &bytes, Some(0o644)).map_err(io(&path))?;
        Ok((bytes, version, policy))
    }

    fn save(&mut self, signed: &SignedDirectory) -> Result<(), AuthorityError> {
        let path = self.directory_path();
        write_atomic(&path, &signed.encode(), Some(0o644)).map_err(io(&path))?;
        self.current = signed.directory.clone();
        Ok(())
    }

    fn next_serial(&self) -> u64 {
        let certs = self.current.certificates.iter().map(|c| c.cert.serial);
        let revs = self.current.revocations.iter().map(|r| r.revocation.serial);
        certs.chain(revs).max().unwrap_or(0) + 1
    }

    fn publish(
        &mut self,
        now: Timestamp,
        certificates: Vec<SignedCertificate>,
        revocations: Vec<SignedRevocation>,
    ) -> Result<u64, AuthorityError> {
        let version = self.current.version + 1;
        let signed = self
            .authority
            .publish(version, now, certificates, revocations);
        self.save(&signed)?;
        Ok(version)
    }

    /// Certifies an office key; returns the new directory version. Refuses a
    /// certificate that would have expired by `now`, and whatever
    /// [`DirectoryAuthority::issue`] refuses (a weak key, an empty window).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        office: OfficeId,
        name: String,
        role: Role,
        division: String,
        public_key: PublicKey,
        not_before: Timestamp,
        not_after: Timestamp,
        now: Timestamp,
    ) -> Result<u64, AuthorityError> {
        if not_after <= now {
            return Err(AuthorityError::Invalid(format!(
                "证书已过期 the certificate would have expired already: it ends {}, now is {}",
                not_after.china_display(),
                now.china_display()
            )));
        }
        if self
            .current
            .certificates
            .iter()
            .any(|c| c.cert.public_key == public_key)
        {
            return Err(AuthorityError::Invalid(format!(
                "key {} is already certified; one key serves one office",
                public_key.fingerprint()
            )));
        }
        let cert = self
            .authority
            .issue(OfficeCertificate {
                office,
                name,
                role,
                division,
                public_key,
                not_before,
                not_after,
                serial: self.next_serial(),
            })
            .map_err(|e| AuthorityError::Invalid(e.to_string()))?;
        let mut certificates = self.current.certificates.clone();
        certificates.push(cert);
        let revocations = self.current.revocations.clone();
        self.publish(now, certificates, revocations)
    }

    /// Revokes every certified key of `office` (or only `key`) from `effective` on.
    pub fn revoke(
        &mut self,
        office: &OfficeId,
        key: Option<PublicKey>,
        effective: Timestamp,
        reason: String,
        now: Timestamp,
    ) -> Result<(u64, usize), AuthorityError> {
        let targets: Vec<PublicKey> = self
            .current
            .certificates
            .iter()
            .filter(|c| &c.cert.office == office && key.is_none_or(|k| k == c.cert.public_key))
            .map(|c| c.cert.public_key)
            .filter(|k| {
                !self
                    .current
                    .revocations
                    .iter()
                    .any(|r| r.revocation.public_key == *k)
            })
            .collect();
        if targets.is_empty() {
            return Err(AuthorityError::Invalid(format!(
                "office {office} has no certified, unrevoked key{}",
                key.map(|k| format!(" {}", k.fingerprint()))
                    .unwrap_or_default()
            )));
        }
        let mut revocations = self.current.revocations.clone();
        for (serial, public_key) in (self.next_serial()..).zip(targets.iter()) {
            revocations.push(
                self.authority
                    .revoke(Revocation {
                        office: office.clone(),
                        public_key: *public_key,
                        effective,
                        reason: reason.clone(),
                        serial,
                    })
                    .map_err(|e| AuthorityError::Invalid(e.to_string()))?,
            );
        }
        let certificates = self.current.certificates.clone();
        let version = self.publish(now, certificates, revocations)?;
        Ok((version, targets.len()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_strong_keys_are_certified_and_never_already_expired() {
        let tmp = tempfile::tempdir().unwrap();
        let now = Timestamp(1_800_000_000_000);
        let year = 365 * 24 * Timestamp::HOUR_MS;
        let mut authority = Authority::init(tmp.path(), now).unwrap();
        let office = OfficeId::parse("130102001").unwrap();
        let mut add = |key: PublicKey, not_before: Timestamp, not_after: Timestamp| {
            authority
                .add(
                    office.clone(),
                    "测试街道办事处".into(),
                    Role::Township,
                    "130102001".into(),
                    key,
                    not_before,
                    not_after,
                    now,
                )
                .map_err(|e| e.to_string())
        };
        let strong = OfficeKey::from_bytes(&[9; 32]).public();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = add(PublicKey(identity), now, Timestamp(now.0 + year)).unwrap_err();
        assert!(weak.contains("weak key"), "{weak}");
        let expired = add(strong, Timestamp(now.0 - 2 * year), Timestamp(now.0 - year));
        assert!(expired.unwrap_err().contains("已过期"));
        let empty = add(strong, now, now).unwrap_err();
        assert!(empty.contains("已过期"), "{empty}");
        let empty = add(strong, Timestamp(now.0 + year), Timestamp(now.0 + year)).unwrap_err();
        assert!(empty.contains("window is empty"), "{empty}");
        assert_eq!(add(strong, now, Timestamp(now.0 + year)), Ok(2));
    }
}
