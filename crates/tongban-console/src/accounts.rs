//! Local operator accounts: `DATA_DIR/console-users.json` (mode 0600), each an
//! operator name and an argon2id password hash as a PHC string. The account
//! name is the operator every action of the account is signed with, so it must
//! be a valid [`Operator`].

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use tongban_domain::ids::Operator;

/// The accounts file inside the node's data directory.
pub const ACCOUNTS_FILE: &str = "console-users.json";

/// The shortest password an account may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why an account could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The name is not a valid operator.
    #[error("账户名不是有效的经办人 the account name is not a valid operator: {0}")]
    Name(String),
    /// The password is too short.
    #[error(
        "密码至少 {MIN_PASSWORD_CHARS} 个字符 the password needs at least {MIN_PASSWORD_CHARS} characters"
    )]
    ShortPassword,
    /// An account of that name exists.
    #[error("账户已存在 the account {0} exists already")]
    Exists(String),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Hashing failed.
    #[error("argon2: {0}")]
    Hash(String),
}

/// One account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// The operator name.
    pub name: String,
    /// The argon2id hash of the password, a PHC string.
    pub password_hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountsFile {
    accounts: Vec<Account>,
}

/// The accounts of one data directory.
#[derive(Debug, Clone)]
pub struct Accounts {
    path: PathBuf,
}

impl Accounts {
    /// The accounts kept in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Accounts {
        Accounts {
            path: data_dir.join(ACCOUNTS_FILE),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<AccountsFile, AccountError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AccountError::Format {
                path: self.path.clone(),
                message: e.to_string(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(source) => Err(AccountError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The names of the accounts.
    pub fn names(&self) -> Result<Vec<String>, AccountError> {
        Ok(self.read()?.accounts.into_iter().map(|a| a.name).collect())
    }

    /// Adds an account with `password`, hashed with argon2id and a random salt.
    pub fn add(&self, name: &str, password: &str) -> Result<(), AccountError> {
        let operator = Operator::parse(name).map_err(|e| AccountError::Name(e.to_string()))?;
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountError::ShortPassword);
        }
        let mut file = self.read()?;
        if file.accounts.iter().any(|a| a.name == operator.as_str()) {
            return Err(AccountError::Exists(operator.as_str().to_string()));
        }
        file.accounts.push(Account {
            name: operator.as_str().to_string(),
            password_hash: hash_password(password)?,
        });
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| AccountError::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        tongban_node::files::write_atomic(&self.path, &bytes, Some(0o600)).map_err(|source| {
            AccountError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The operator whose password `password` is, when the account exists and
    /// the password verifies. A missing account costs the same hash as a wrong
    /// password, so the answer's time does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<Operator>, AccountError> {
        let file = self.read()?;
        let account = file.accounts.iter().find(|a| a.name == name);
        let Some(account) = account else {
            let _ = hash_password(password);
            return Ok(None);
        };
        if !verify_password(&account.password_hash, password) {
            return Ok(None);
        }
        Ok(Operator::parse(&account.name).ok())
    }
}

/// An argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (false for a string that
/// does not parse).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn argon2_hash_verifies_the_password_and_nothing_else() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horsf"));
        assert!(!verify_password("not a phc string", "correct horse"));
    }

    #[test]
    fn accounts_file_is_private_and_names_are_operators() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::in_dir(dir.path());
        accounts.add("窗口01", "password-1").unwrap();
        assert!(matches!(
            accounts.add("窗口01", "password-2"),
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            accounts.add("", "password-2"),
            Err(AccountError::Name(_))
        ));
        assert!(matches!(
            accounts.add("窗口02", "short"),
            Err(AccountError::ShortPassword)
        ));
        assert_eq!(
            accounts
                .verify("窗口01", "password-1")
                .unwrap()
                .unwrap()
                .as_str(),
            "窗口01"
        );
        assert!(accounts.verify("窗口01", "password-2").unwrap().is_none());
        assert!(accounts.verify("nobody", "password-1").unwrap().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(accounts.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(accounts.path()).unwrap();
        assert!(!text.contains("password-1"));
    }
}
