//! One node's data directory and the operations offices run on it.
//!
//! ```text
//! DIR/tongban.redb   the store (documents, change log, materials, indexes)
//! DIR/office.key     the office's ed25519 key (mode 0600)
//! DIR/node.toml      `office = "440106001"` and optional `operator = "..."`
//! DIR/calendar/      imported calendar years (`tongban calendar import`)
//! ```
//!
//! The trusted directory authority key, the current signed directory and the node's
//! secret for keyed resident-ID hashes live in the store's meta table, so a backup
//! carries them. Every case write computes the case's index metadata (stage, due
//! date, keyed resident hash, route offices) from the document itself and writes it
//! in the same transaction as the document.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tongban_case::document::Due;
use tongban_case::{CaseDocument, CaseError, FieldError, IntakeForm, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::material::{MaterialMetaError, check_material_meta};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::directory::{Directory, OfficeCertificate};
use tongban_ledger::keys::{OfficeKey, PublicKey};
use tongban_store::{CaseMeta, ResidentKey, Store, StoreError, StoreOptions};

use crate::files::write_atomic;

/// The office key file.
pub const KEY_FILE: &str = "office.key";
const DB_FILE: &str = tongban_store::DB_FILE_NAME;
/// The store meta key under which a copy of `node.toml` travels in backups.
pub const META_NODE_FILE: &str = "node_file";
/// The node file.
pub const NODE_FILE: &str = "node.toml";
const META_AUTHORITY: &str = "authority_key";
const META_DIRECTORY: &str = "directory";
const META_RESIDENT_SECRET: &str = "resident_key_secret";

/// The largest scanned material a node takes, by either path (a command on the
/// store, or an upload to a running node): the domain's one limit, 64 MiB, far
/// above a scan's size.
pub use tongban_domain::material::MAX_MATERIAL_BYTES;

/// Why a node operation failed. `Rejected` and `Invalid` are the office's input
/// refused by a rule (exit status 1 with the rule); the others are conditions of the
/// node itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The case document refused.
    #[error(transparent)]
    Case(#[from] CaseError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `node init` has not been run here.
    #[error(
        "{path} is not an initialised node (run `tongban node init --data-dir {path} --office OFFICE-ID`)"
    )]
    NotInitialised {
        /// The data directory.
        path: PathBuf,
    },
    /// `node init` found an existing node, or part of one.
    #[error("{path} already holds {found}; refusing to overwrite it")]
    AlreadyInitialised {
        /// The data directory.
        path: PathBuf,
        /// What was found there, in words.
        found: String,
    },
    /// No directory imported yet.
    #[error(
        "this node has no office directory yet: import one with `tongban node directory import FILE --authority-key KEYFILE`"
    )]
    NoDirectory,
    /// The directory does not certify this node's key.
    #[error(
        "the directory (version {version}) holds no valid certificate for office {office} with key {fingerprint}: send the public key to the directory authority"
    )]
    NotCertified {
        /// This office.
        office: OfficeId,
        /// Key fingerprint.
        fingerprint: String,
        /// Directory version.
        version: u64,
    },
    /// The directory revoked this node's key.
    #[error(
        "本节点密钥已被吊销 this office's key {fingerprint} was revoked by the directory (version {version}) \
         from {effective}{reason}: ask the directory authority to certify a new key \
         (tongban directory rotate) and import the new directory"
    )]
    Revoked {
        /// Key fingerprint.
        fingerprint: String,
        /// Directory version.
        version: u64,
        /// When the revocation took effect.
        effective: String,
        /// `; reason: …` or nothing.
        reason: String,
    },
    /// A directory file was refused.
    #[error("directory refused: {0}")]
    Directory(String),
    /// A damaged file.
    #[error("{path}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The case is not held here.
    #[error("case {0} is not held by this node")]
    UnknownCase(CaseId),
    /// Input refused by a rule.
    #[error("{0}")]
    Rejected(String),
    /// An award refused because the person holds the same subsidy, or applied
    /// for it first, in another case held here (防止重复享受,
    /// [`crate::duplicates::check_award`]): the message names that case.
    #[error("{0}")]
    Duplicate(String),
    /// A material larger than [`MAX_MATERIAL_BYTES`].
    #[error(
        "材料文件过大 material too large: at most {} MiB ({limit} bytes) per file",
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Intake fields refused, all at once.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    /// A material's file name, media type or size refused
    /// ([`tongban_domain::material::check_material_meta`]).
    #[error("材料信息有误 material refused: {0}{hint}", hint = material_hint(.0))]
    Material(#[from] MaterialMetaError),
    /// The running daemon answered with an error.
    #[error("{message}")]
    Daemon {
        /// The daemon's message.
        message: String,
        /// Whether it was the office's input refused by a rule.
        rejection: bool,
    },
}

impl NodeError {
    /// Whether the error is the office's input refused by a rule.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            NodeError::Rejected(_)
                | NodeError::Duplicate(_)
                | NodeError::TooLarge { .. }
                | NodeError::Invalid(_)
                | NodeError::Material(_)
                | NodeError::UnknownCase(_)
                | NodeError::Case(_)
                | NodeError::Daemon {
                    rejection: true,
                    ..
                }
        )
    }
}

/// What the clerk can do about a refused media type: it is guessed from the file
/// name's extension unless named.
fn material_hint(err: &MaterialMetaError) -> &'static str {
    match err {
        MaterialMetaError::MediaType { .. } => {
            " (guessed from the file name's extension when not given: name it with --media-type)"
        }
        _ => "",
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The node file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// This node's office id.
    pub office: OfficeId,
    /// Default operator for stage commands.
    #[serde(default)]
    pub operator: Option<String>,
}

/// A node's data directory, opened.
pub struct LocalNode {
    dir: PathBuf,
    store: Arc<Store>,
    calendar: Calendar,
    file: NodeFile,
    key: OfficeKey,
    authority: Option<PublicKey>,
    directory: Option<Directory>,
    resident_secret: [u8; 32],
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("dir", &self.dir)
            .field("office", &self.file.office)
            .finish_non_exhaustive()
    }
}

/// A row of `case list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseRow {
    /// The case.
    pub case_id: String,
    /// Its stage code.
    pub stage: Stage,
    /// Chinese stage label.
    pub stage_zh: String,
    /// Next deadline.
    pub due: Option<NaiveDate>,
    /// Whether the deadline is provisional.
    pub due_provisional: bool,
    /// Whether the deadline has passed.
    pub overdue: bool,
    /// Masked applicant name.
    pub applicant: String,
    /// Domicile township.
    pub hukou_township: String,
    /// The offices on the case's route (acceptance office, domicile township, county
    /// DPF and civil affairs).
    #[serde(default)]
    pub offices: Vec<String>,
    /// Whether this node flagged the case a duplicate (重复) of another case of
    /// the same person ([`crate::duplicates`]).
    #[serde(default)]
    pub duplicate: bool,
    /// What this office may do on the case now ([`actions_of`]): the
    /// transitions it may sign, and whether it may record the evaluation.
    /// Empty when the case waits for another office.
    #[serde(default)]
    pub actions: CaseActions,
}

/// What an office may do on a case now, asked of the stage table and the
/// write-rights table: what the console offers, and nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaseActions {
    /// The stages this office may sign the case into now: the rows of the
    /// stage table leaving its stage that are not signed automatically, whose
    /// guard holds and whose signer is this office.
    pub transitions: Vec<Stage>,
    /// Whether this office may record the applicant's evaluation now (the
    /// write-rights table, and not recorded yet: it is written once).
    pub evaluate: bool,
    /// Whether this office may attach scanned materials now (the
    /// write-rights table: the acceptance office, before the push or after
    /// a return).
    #[serde(default)]
    pub attach: bool,
}

impl CaseActions {
    /// Whether the case waits for this office.
    pub fn any(&self) -> bool {
        !self.transitions.is_empty() || self.evaluate
    }
}

/// What `office` may do on the case `doc` now ([`CaseActions`]). The guards
/// the stage machine checks at signing (materials complete, reasons,
/// eligibility) are not judged here: signing still asks them, and refuses
/// with the reason.
pub fn actions_of(doc: &CaseDocument, office: &OfficeFacts) -> Result<CaseActions, NodeError> {
    let Some(stage) = doc.stage()? else {
        return Ok(CaseActions::default());
    };
    let facts = doc.facts()?;
    let mut transitions: Vec<Stage> = tongban_domain::stage::rules_from(Some(stage))
        .filter(|rule| !rule.automatic)
        .filter(|rule| tongban_domain::stage::guard_holds(rule.guard, &facts))
        .filter(|rule| tongban_domain::stage::signer_admits(rule.signer, office, &facts))
        .map(|rule| rule.to)
        .collect();
    transitions.dedup();
    use tongban_domain::rights::{Part, Situation, writable_parts};
    let writable = writable_parts(office, &facts, Situation::At(stage));
    let evaluated = doc.read()?.evaluation.is_some();
    Ok(CaseActions {
        transitions,
        evaluate: !evaluated && writable.contains(&Part::Evaluation),
        attach: writable.contains(&Part::Materials),
    })
}

/// A stored material whose bytes no longer hash to its address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RottenMaterial {
    /// The case that lists it.
    pub case_id: String,
    /// Its address (BLAKE3, hex).
    pub hash: String,
    /// What reading it found.
    pub reason: String,
}

/// What [`LocalNode::rehash_materials`] found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MaterialCheck {
    /// Materials read and rehashed.
    pub checked: u64,
    /// Those that failed.
    pub rotten: Vec<RottenMaterial>,
}

/// What `case new` produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewCase {
    /// The new case id.
    pub case_id: CaseId,
    /// The materials notice items `(code, zh)`.
    pub notice: Vec<(String, String)>,
    /// The province whose policy gave the notice.
    pub policy_province: String,
    /// Other cases of the same person held here that claim a kind this one
    /// applies for (live applications and awards in force).
    pub possible_duplicates: Vec<CaseId>,
}

impl LocalNode {
    /// Creates a node: data directory, store, office key (0600), node file.
    /// Returns the office's public key for the directory authority.
    pub fn init(dir: &Path, office: OfficeId) -> Result<PublicKey, NodeError> {
        let key = dir.join(KEY_FILE).exists();
        let store = dir.join(tongban_store::DB_FILE_NAME).exists();
        if key || store {
            // Say what is really there: a restored store without its key must
            // not be described as a node with a key.
            let found = match (store, key) {
                (true, true) => format!("a node (store {DB_FILE}, office key {KEY_FILE})"),
                (true, false) => format!(
                    "a store ({DB_FILE}) but no office key; if it was restored, give its key \
                     with `tongban restore --office-key` or restore again with --new-key"
                ),
                (false, _) => format!("an office key ({KEY_FILE}) but no store"),
            };
            return Err(NodeError::AlreadyInitialised {
                path: dir.to_path_buf(),
                found,
            });
        }
        let options = StoreOptions {
            create_if_missing: true,
            ..StoreOptions::default()
        };
        let store = Store::open(dir, &options)?;
        make_private_dir(dir)?;
        let key = OfficeKey::generate().map_err(|e| NodeError::Rejected(e.to_string()))?;
        let secret = OfficeKey::generate().map_err(|e| NodeError::Rejected(e.to_string()))?;
        store.set_meta(META_RESIDENT_SECRET, &secret.to_bytes())?;
        let key_path = dir.join(KEY_FILE);
        write_atomic(&key_path, key.to_pem_like_string().as_bytes(), Some(0o600))
            .map_err(io(&key_path))?;
        let node_path = dir.join(NODE_FILE);
        let file = NodeFile {
            office,
            operator: None,
        };
        let text = toml::to_string(&file).map_err(|e| NodeError::Rejected(e.to_string()))?;
        write_atomic(&node_path, text.as_bytes(), Some(0o600)).map_err(io(&node_path))?;
        // A copy of the node file in the store travels with every backup, so a
        // restored directory is a node again.
        store.set_meta(META_NODE_FILE, text.as_bytes())?;
        Ok(key.public())
    }

    /// Makes a restored data directory a working node: writes `node.toml` from
    /// the copy the backup carried, and the office key — `key`, the node's own,
    /// or a new one when `None`. Answers the node, opened.
    pub fn adopt_restored(dir: &Path, key: Option<&OfficeKey>) -> Result<LocalNode, NodeError> {
        let text = {
            let store = Store::open(dir, &StoreOptions::default())?;
            store
                .meta(META_NODE_FILE)?
                .ok_or_else(|| NodeError::Damaged {
                    path: dir.join(DB_FILE),
                    reason: "the backup carries no node configuration (it was made by an older \
                         version): copy node.toml from the old data directory"
                        .into(),
                })?
        };
        let text = String::from_utf8(text).map_err(|e| NodeError::Damaged {
            path: dir.join(DB_FILE),
            reason: format!("the node configuration in the backup: {e}"),
        })?;
        toml::from_str::<NodeFile>(&text).map_err(|e| NodeError::Damaged {
            path: dir.join(DB_FILE),
            reason: format!("the node configuration in the backup: {e}"),
        })?;
        let key = match key {
            Some(key) => key.clone(),
            None => OfficeKey::generate().map_err(|e| NodeError::Rejected(e.to_string()))?,
        };
        let key_path = dir.join(KEY_FILE);
        write_atomic(&key_path, key.to_pem_like_string().as_bytes(), Some(0o600))
            .map_err(io(&key_path))?;
        let node_path = dir.join(NODE_FILE);
        write_atomic(&node_path, text.as_bytes(), Some(0o600)).map_err(io(&node_path))?;
        make_private_dir(dir)?;
        let node = LocalNode::open(dir)?;
        // Duplicate flags are not in backups: recomputed from the cases.
        node.reconcile_duplicates()?;
        Ok(node)
    }

    /// Opens an initialised node's data directory.
    pub fn open(dir: &Path) -> Result<LocalNode, NodeError> {
        let node_path = dir.join(NODE_FILE);
        if !node_path.exists() {
            if !dir.exists() {
                return Err(StoreError::Missing {
                    path: dir.to_path_buf(),
                }
                .into());
            }
            return Err(NodeError::NotInitialised {
                path: dir.to_path_buf(),
            });
        }
        let store = Arc::new(Store::open(dir, &StoreOptions::default())?);
        LocalNode::open_with(dir, store)
    }

    /// Opens an initialised node's data directory over a store this process
    /// already holds open (the daemon shares one store between its control API and
    /// the sync protocol).
    pub fn open_with(dir: &Path, store: Arc<Store>) -> Result<LocalNode, NodeError> {
        let node_path = dir.join(NODE_FILE);
        let text = std::fs::read_to_string(&node_path).map_err(io(&node_path))?;
        let file: NodeFile = toml::from_str(&text).map_err(|e| NodeError::Damaged {
            path: node_path.clone(),
            reason: e.to_string(),
        })?;
        // Keep the store's copy of the node file current (it travels in
        // backups); written only when it differs.
        if store.meta(META_NODE_FILE)?.as_deref() != Some(text.as_bytes()) {
            store.set_meta(META_NODE_FILE, text.as_bytes())?;
        }
        let key_path = dir.join(KEY_FILE);
        let key_text = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = OfficeKey::from_pem_like_str(&key_text).map_err(|e| NodeError::Damaged {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let calendar = load_calendar(Some(dir)).map_err(|e| NodeError::Damaged {
            path: dir.join("calendar"),
            reason: e,
        })?;
        let secret = store
            .meta(META_RESIDENT_SECRET)?
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| NodeError::Damaged {
                path: dir.join(tongban_store::DB_FILE_NAME),
                reason: "the node's resident-key secret is missing".into(),
            })?;
        let authority = store
            .meta(META_AUTHORITY)?
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(PublicKey);
        let directory = match (&authority, store.meta(META_DIRECTORY)?) {
            (Some(authority), Some(bytes)) => Some(Directory::verify(&bytes, authority).map_err(
                |e| NodeError::Damaged {
                    path: dir.join(tongban_store::DB_FILE_NAME),
                    reason: format!("stored directory: {e}"),
                },
            )?),
            _ => None,
        };
        let mut node = LocalNode {
            dir: dir.to_path_buf(),
            store,
            calendar,
            file,
            key,
            authority,
            directory,
            resident_secret: secret,
        };
        node.reload_calendar()?;
        node.install_policies()?;
        Ok(node)
    }

    /// Installs every provincial policy the node holds signed (`tongban policy
    /// publish`) for this process, so that every rule asking
    /// `Policy::for_province` — intake, the stage table's guards on every
    /// path, decisions, the payroll — applies the published one.
    pub fn install_policies(&self) -> Result<(), NodeError> {
        let prefix =
            tongban_replica::dataset_key(tongban_domain::dataset::DatasetKind::Policy.wire(), "");
        for (key, _) in self.store().meta_with_prefix(&prefix)? {
            let scope = key.rsplit('/').next().unwrap_or_default();
            let Some(held) =
                self.held_dataset(tongban_domain::dataset::DatasetKind::Policy, scope)?
            else {
                continue;
            };
            let d = &held.signed.dataset;
            // check_dataset parsed this payload already.
            match std::str::from_utf8(&d.payload)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    tongban_domain::policy::Policy::from_toml(&d.scope, text)
                        .map_err(|e| e.to_string())
                }) {
                Ok(policy) => {
                    if tongban_domain::policy::Policy::install(policy) {
                        tracing::info!(province = d.scope, version = d.version, "policy installed");
                    }
                }
                Err(err) => tracing::warn!(%err, "a held policy is not applied"),
            }
        }
        Ok(())
    }

    /// Reads the calendar again: the shipped years, the years imported into
    /// this data directory, and over them the years of the signed calendar
    /// the node holds (`tongban calendar publish`), so that every office
    /// counts deadlines alike.
    pub fn reload_calendar(&mut self) -> Result<(), NodeError> {
        let mut calendar = load_calendar(Some(&self.dir)).map_err(|e| NodeError::Damaged {
            path: self.dir.join("calendar"),
            reason: e,
        })?;
        if let Some(held) =
            self.held_dataset(tongban_domain::dataset::DatasetKind::Calendar, "00")?
        {
            let text = String::from_utf8_lossy(&held.signed.dataset.payload);
            // check_dataset parsed this payload already.
            if let Err(err) = calendar.import_text(&text) {
                tracing::warn!(%err, "the signed calendar is not applied");
            }
        }
        self.calendar = calendar;
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The shared store.
    pub fn shared_store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The directory authority's public key, once a directory was imported.
    pub fn authority(&self) -> Option<PublicKey> {
        self.authority
    }

    /// The secret of the keyed resident-ID hashes.
    pub fn resident_secret(&self) -> [u8; 32] {
        self.resident_secret
    }

    /// The calendar (shipped plus imported years).
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// This node's office id.
    pub fn office(&self) -> &OfficeId {
        &self.file.office
    }

    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// The office key.
    pub fn key(&self) -> &OfficeKey {
        &self.key
    }

    /// The default operator from the node file.
    pub fn default_operator(&self) -> Option<&str> {
        self.file.operator.as_deref()
    }

    /// The current directory.
    pub fn directory(&self) -> Result<&Directory, NodeError> {
        self.directory.as_ref().ok_or(NodeError::NoDirectory)
    }

    /// Imports a signed directory. The first import fixes the trusted authority key;
    /// later ones must be signed by it and not be older than the one held.
    pub fn import_directory(
        &mut self,
        bytes: &[u8],
        authority: Option<PublicKey>,
    ) -> Result<u64, NodeError> {
        let trusted = trusted_authority(self.authority, authority)?;
        let directory =
            Directory::verify(bytes, &trusted).map_err(|e| NodeError::Directory(e.to_string()))?;
        if let Some(held) = &self.directory
            && directory.version < held.version
        {
            return Err(NodeError::Directory(format!(
                "version {} is older than the version {} this node holds",
                directory.version, held.version
            )));
        }
        self.store.write(|tx| {
            tx.set_meta(META_AUTHORITY, trusted.as_bytes())?;
            tx.set_meta(META_DIRECTORY, bytes)
        })?;
        let version = directory.version;
        self.authority = Some(trusted);
        self.directory = Some(directory);
        Ok(version)
    }

    /// Re-reads the directory from the store after sync adopted a newer one.
    pub fn reload_directory(&mut self) -> Result<(), NodeError> {
        let (Some(authority), Some(bytes)) = (self.authority, self.store.meta(META_DIRECTORY)?)
        else {
            return Ok(());
        };
        let directory = Directory::verify(&bytes, &authority)
            .map_err(|e| NodeError::Directory(e.to_string()))?;
        self.directory = Some(directory);
        Ok(())
    }

    /// This office's certificate, valid now.
    pub fn certificate(&self, now: Timestamp) -> Result<&OfficeCertificate, NodeError> {
        certificate_of(
            self.directory()?,
            &self.file.office,
            &self.key.public(),
            now,
        )
    }

    /// This office's key and what its certificate says, for signing at `now`.
    pub fn signing(&self, now: Timestamp) -> Result<SigningOffice<'_>, NodeError> {
        let cert = self.certificate(now)?;
        Ok(SigningOffice {
            key: &self.key,
            facts: OfficeFacts {
                office: cert.office.to_string(),
                role: cert.role,
                division: cert.division.clone(),
            },
        })
    }

    /// Loads a case held here.
    pub fn case(&self, case: &CaseId) -> Result<CaseDocument, NodeError> {
        let bytes = self
            .store
            .case_bytes(case)?
            .ok_or_else(|| NodeError::UnknownCase(case.clone()))?;
        Ok(CaseDocument::load(&bytes)?)
    }

    /// The keyed hash of a resident ID under this node's secret.
    pub fn resident_key(&self, id: &str) -> ResidentKey {
        tongban_replica::resident_key(&self.resident_secret, id)
    }

    fn offices(&self) -> tongban_replica::OfficeList {
        self.directory
            .as_ref()
            .map(|d| {
                d.certificates
                    .iter()
                    .map(|c| (c.cert.role, c.cert.division.clone(), c.cert.office.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The index metadata of a case document, as sync computes it.
    pub fn meta_of(&self, doc: &CaseDocument) -> Result<CaseMeta, NodeError> {
        let case = doc.read()?;
        Ok(tongban_replica::case_meta(
            doc,
            &case.applicant.hukou_township,
            &self.offices(),
            &self.calendar,
            &self.resident_secret,
        ))
    }

    /// Stores a case document with its indexes and route, in one durable
    /// transaction, through the same write path sync uses.
    pub fn save(&self, case: &CaseId, doc: &mut CaseDocument) -> Result<(), NodeError> {
        let meta = self.meta_of(doc)?;
        let route = tongban_replica::route_of(case, doc).ok_or_else(|| {
            NodeError::Rejected(format!(
                "case {case} has no valid route (acceptance, domicile)"
            ))
        })?;
        let attestation = self.attestation_for(case, doc)?;
        let am = doc.automerge_mut().document();
        self.store.write(|tx| {
            tongban_replica::put_case(tx, case, am, &meta, &route)?;
            if let Some(a) = &attestation {
                let at = a.attestation.at.millis();
                tx.put_attestation(
                    case,
                    a.attestation.office.as_str(),
                    at,
                    &a.attestation.domicile,
                    &a.encode(),
                )?;
            }
            Ok(())
        })?;
        self.refresh_duplicates(std::slice::from_ref(case));
        Ok(())
    }

    /// Signs anew what this office attests of `case` to supervisors
    /// (`tongban_case::supervision::attest`) and stores it, when it differs
    /// from what the office attested last: after a receipt the sync engine
    /// signed (the node's own writes attest in [`LocalNode::save`]).
    pub fn attest(&self, case: &CaseId) -> Result<bool, NodeError> {
        let Some(bytes) = self.store.case_bytes(case)? else {
            return Ok(false);
        };
        let doc = CaseDocument::load(&bytes)?;
        let Some(a) = self.attestation_for(case, &doc)? else {
            return Ok(false);
        };
        let at = a.attestation.at.millis();
        Ok(self.store.write(|tx| {
            tx.put_attestation(
                case,
                a.attestation.office.as_str(),
                at,
                &a.attestation.domicile,
                &a.encode(),
            )
        })?)
    }

    /// What this office attests of a case now, when it is an office of the
    /// case (acceptance office, domicile township, domicile county DPF or
    /// civil affairs), the case has left the draft stage other than by
    /// withdrawal — a draft never leaves the window, not even as an
    /// attestation — and the attestation would say something its last one
    /// does not.
    fn attestation_for(
        &self,
        case: &CaseId,
        doc: &CaseDocument,
    ) -> Result<Option<tongban_ledger::supervision::SignedAttestation>, NodeError> {
        use tongban_ledger::supervision::SignedAttestation;
        let Some(facts) = self.office_facts() else {
            return Ok(None);
        };
        if matches!(facts.role, Role::Hub | Role::Supervisor) {
            // They attest nothing: no need to read the document.
            return Ok(None);
        }
        let read = doc.read()?;
        let domicile = read.applicant.hukou_township.as_str();
        let member = match facts.role {
            Role::Township => {
                facts.division == case.acceptance_township() || facts.division == domicile
            }
            Role::CountyDpf | Role::CountyCivilAffairs => {
                domicile.get(..6) == Some(facts.division.as_str())
            }
            Role::Hub | Role::Supervisor => false,
        };
        let core = doc.read_core()?;
        let chain = core.chain();
        let left_draft = chain
            .links
            .iter()
            .any(|l| !matches!(l.signed.transition.to, Stage::Draft | Stage::Withdrawn));
        if !member || !left_draft {
            return Ok(None);
        }
        let signed = tongban_case::supervision::attest(
            &read,
            &self.file.office,
            &self.key,
            Timestamp::now(),
        )?;
        if let Some(held) = self.store.attestation(case, self.file.office.as_str())?
            && let Ok(held) = SignedAttestation::decode(&held)
        {
            let mut same = held.attestation.clone();
            same.at = signed.attestation.at;
            if same == signed.attestation {
                return Ok(None);
            }
            if held.attestation.at >= signed.attestation.at {
                // A clock set back: sign after the last one, so it replaces it.
                let mut later = signed.attestation.clone();
                later.at = Timestamp(held.attestation.at.millis() + 1);
                return Ok(Some(
                    SignedAttestation::sign(later, &self.key)
                        .map_err(|e| NodeError::Rejected(e.to_string()))?,
                ));
            }
        }
        Ok(Some(signed))
    }

    /// This office's role and division, from its certificate in the directory
    /// held (whatever its validity period): what the duplicate flags need.
    pub fn office_facts(&self) -> Option<OfficeFacts> {
        let public = self.key.public();
        let cert = self
            .directory
            .as_ref()?
            .certificates
            .iter()
            .map(|c| &c.cert)
            .find(|c| c.office == self.file.office && c.public_key == public)?;
        Some(OfficeFacts {
            office: cert.office.to_string(),
            role: cert.role,
            division: cert.division.clone(),
        })
    }

    /// Recomputes the duplicate flags of the people of `cases`, just stored
    /// ([`crate::duplicates::refresh`]). The write before it is committed
    /// already: a failure is logged, and the flags are recomputed at the next
    /// start.
    pub fn refresh_duplicates(&self, cases: &[CaseId]) {
        if let Err(err) =
            crate::duplicates::refresh(&self.store, self.office_facts().as_ref(), cases)
        {
            tracing::warn!(error = %err, "duplicate flags not updated; recomputed at the next start");
        }
    }

    /// Recomputes every duplicate flag ([`crate::duplicates::reconcile`]).
    pub fn reconcile_duplicates(&self) -> Result<crate::duplicates::Reconciled, NodeError> {
        Ok(crate::duplicates::reconcile(
            &self.store,
            self.office_facts().as_ref(),
        )?)
    }

    /// What this office may do on a case held here now ([`actions_of`]),
    /// by its certificate at `now`.
    pub fn actions(&self, case: &CaseId, now: Timestamp) -> Result<CaseActions, NodeError> {
        let doc = self.case(case)?;
        let signer = self.signing(now)?;
        actions_of(&doc, &signer.facts)
    }

    /// `case show`'s duplicates of a case held here.
    pub fn duplicates(
        &self,
        case: &CaseId,
    ) -> Result<crate::duplicates::CaseDuplicates, NodeError> {
        if self.store.case_info(case)?.is_none() {
            return Err(NodeError::UnknownCase(case.clone()));
        }
        Ok(crate::duplicates::view(
            &self.store,
            self.office_facts().as_ref(),
            case,
        )?)
    }

    /// `case new`: validates the form (every bad field at once), starts the case with
    /// the domicile policy's materials notice, signs `draft`, and stores it.
    pub fn new_case(
        &self,
        form: &IntakeForm,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<NewCase, NodeError> {
        let intake = form
            .validate(now.china_date())
            .map_err(NodeError::Invalid)?;
        let signer = self.signing(now)?;
        if signer.facts.role != Role::Township {
            return Err(NodeError::Rejected(format!(
                "only a township or street office accepts applications; this node is {} ({})",
                signer.facts.office,
                signer.facts.role.zh()
            )));
        }
        let mut random = [0u8; 4];
        random.copy_from_slice(
            &OfficeKey::generate()
                .map_err(|e| NodeError::Rejected(e.to_string()))?
                .to_bytes()[..4],
        );
        let case_id = CaseId::new(&signer.facts.division, now.china_date(), random)
            .map_err(|e| NodeError::Rejected(e.to_string()))?;
        let (mut doc, _) = CaseDocument::create(&case_id, &intake, &signer, operator, now)?;
        self.save(&case_id, &mut doc)?;
        let possible_duplicates = crate::duplicates::conflicts_of(&self.store, &case_id)?
            .into_iter()
            .map(|c| c.other)
            .collect();
        let case = doc.read()?;
        let notice = case
            .materials_notice
            .map(|n| (n.policy_province, n.items))
            .unwrap_or_default();
        Ok(NewCase {
            case_id,
            notice: notice.1.into_iter().map(|i| (i.code, i.zh)).collect(),
            policy_province: notice.0,
            possible_duplicates,
        })
    }

    /// `case attach`: stores the file's bytes content-addressed and records it.
    /// The file name, media type and (for a regular file) size are checked
    /// first ([`check_material_meta`]), before a byte is read.
    pub fn attach(
        &self,
        case_id: &CaseId,
        file: &Path,
        kind: &str,
        media_type: Option<&str>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<String, NodeError> {
        let media_type = media_type
            .map(str::to_string)
            .unwrap_or_else(|| guess_media_type(file));
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A regular file's size is known before a byte is read; a device or
        // a pipe is measured as it streams.
        let metadata = std::fs::metadata(file).map_err(io(file))?;
        if metadata.is_file() {
            check_material_meta(&file_name, &media_type, metadata.len())?;
        }
        let reader = std::fs::File::open(file).map_err(io(file))?;
        self.attach_reader(
            case_id,
            std::io::BufReader::new(reader),
            &file_name,
            kind,
            &media_type,
            operator,
            now,
        )
    }

    /// Stores a material streamed from `reader` content-addressed and records
    /// it in the case (the control API's upload path, and `attach`'s). The
    /// file name and media type ([`check_material_meta`]), the kind and the
    /// write right are checked before a byte is read; the content goes to the
    /// store in chunks through a counter that fails past
    /// [`MAX_MATERIAL_BYTES`], so nothing of an oversized or empty file is kept.
    // The file's three facts (name, kind, media type) come from three different
    // places on each path (a path, a query string, a form), so they are passed
    // as they come rather than through a struct built only to be unpacked here.
    #[allow(clippy::too_many_arguments)]
    pub fn attach_reader(
        &self,
        case_id: &CaseId,
        reader: impl std::io::Read,
        file_name: &str,
        kind: &str,
        media_type: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<String, NodeError> {
        // The size is not known before the stream ends: check the rest now
        // (with a nominal size) and the size once it is read.
        check_material_meta(file_name, media_type, 1)?;
        let mut doc = self.case(case_id)?;
        let case = doc.read()?;
        let province = case.applicant.hukou_township.get(..2).unwrap_or("00");
        let policy = tongban_domain::policy::Policy::for_province(province)
            .map_err(|e| NodeError::Rejected(e.to_string()))?;
        if policy.material(kind).is_none() {
            let codes: Vec<&str> = policy.materials.iter().map(|m| m.code.as_str()).collect();
            return Err(NodeError::Rejected(format!(
                "--kind {kind:?} is not a material of {} (one of: {})",
                policy.name,
                codes.join(", ")
            )));
        }
        // The write right is checked before any byte is stored: a refused
        // attachment leaves the store as it was.
        let signer = self.signing(now)?;
        let chain = doc.chain()?;
        let stage = chain.stage().unwrap_or(Stage::Draft);
        tongban_domain::rights::check_write(
            tongban_domain::rights::Part::Materials,
            &signer.facts,
            &tongban_case::facts_of(&case, &chain),
            tongban_domain::rights::Situation::At(stage),
            false,
        )
        .map_err(|e| NodeError::Rejected(e.to_string()))?;
        // Read through a counter that fails past the limit: the store then
        // abandons the transaction, so nothing of an oversized file is kept,
        // and an endless source (a device, a pipe) ends there.
        let mut limited = LimitedReader {
            inner: reader,
            left: MAX_MATERIAL_BYTES,
            exceeded: false,
        };
        let put = match self.store.put_material(&mut limited) {
            Ok(put) => put,
            Err(_) if limited.exceeded => {
                return Err(NodeError::TooLarge {
                    limit: MAX_MATERIAL_BYTES,
                });
            }
            Err(err) => return Err(err.into()),
        };
        check_material_meta(file_name, media_type, put.len)?;
        let hash = put.hash.to_hex();
        let material = tongban_case::schema::Material {
            kind: kind.to_string(),
            hash: hash.clone(),
            size: put.len,
            media_type: media_type.to_string(),
            file_name: file_name.to_string(),
            added_at: now.millis(),
            added_by: self.file.office.to_string(),
        };
        doc.add_material(&signer, operator, now, material)?;
        self.store.attach_material(case_id, &put.hash)?;
        self.save(case_id, &mut doc)?;
        Ok(hash)
    }

    /// Reads every stored material of `cases` back from the store and checks
    /// each chunk and the whole content against its BLAKE3 address: what
    /// `verify --all` does beyond the signatures. A material not fetched yet is
    /// not counted (it is missing, not damaged).
    pub fn rehash_materials(&self, cases: &[CaseId]) -> Result<MaterialCheck, NodeError> {
        rehash_in(&self.store, cases)
    }

    /// Materials of the notice not yet attached.
    pub fn missing_materials(
        &self,
        doc: &CaseDocument,
    ) -> Result<Vec<(String, String)>, NodeError> {
        missing_materials(doc)
    }
    /// Signs a stage transition on a case held here and stores it.
    pub fn act(
        &self,
        case_id: &CaseId,
        to: Stage,
        payload: &Payload,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        // The stage table and its guards (materials complete, reasons,
        // eligibility, contradictions answered) are asked inside `apply`, on
        // every path. Before it, the case is compared with the feeds of its
        // county this node holds, recorded as this office's signed write.
        let mut doc = self.case(case_id)?;
        let signer = self.signing(now)?;
        // Nobody receives the same subsidy twice: an award is checked
        // against the person's other cases held here, on every path.
        if to == Stage::Decided && !payload.awards.is_empty() {
            let kinds: Vec<_> = payload.awards.iter().map(|a| a.kind).collect();
            if let Some(conflict) = crate::duplicates::check_award(&self.store, case_id, &kinds)? {
                return Err(NodeError::Duplicate(crate::duplicates::refusal(
                    case_id, &conflict,
                )));
            }
        }
        self.compare_with_feeds(&mut doc, &signer, operator, now)?;
        doc.apply(to, &signer, operator, now, payload)?;
        self.save(case_id, &mut doc)
    }

    /// Records the applicant's evaluation (not a stage): a signed write of the
    /// acceptance office, once, with the operator.
    pub fn evaluate(
        &self,
        case_id: &CaseId,
        score: u8,
        comment: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        let mut doc = self.case(case_id)?;
        let signer = self.signing(now)?;
        doc.record_evaluation(&signer, operator, now, score, comment)?;
        self.save(case_id, &mut doc)
    }

    /// Rows for `case list`, from the indexes and each listed document.
    pub fn list(&self, stage: Option<Stage>, today: NaiveDate) -> Result<Vec<CaseRow>, NodeError> {
        let mut rows = Vec::new();
        let mut ids: Vec<CaseId> = Vec::new();
        match stage {
            Some(stage) => ids.extend(self.store.cases_in_stage(stage, None, usize::MAX)?),
            None => {
                let mut cursor = 0;
                loop {
                    let batch = self.store.changes_since(cursor, 1000)?;
                    let Some(last) = batch.last() else { break };
                    cursor = last.seq;
                    ids.extend(
                        batch
                            .into_iter()
                            .filter(|c| c.attestation.is_none())
                            .map(|c| c.case),
                    );
                }
            }
        }
        ids.sort();
        ids.dedup();
        let flagged: std::collections::BTreeSet<CaseId> = self
            .store
            .flagged_cases(crate::duplicates::FLAG)?
            .into_iter()
            .map(|(case, _)| case)
            .collect();
        // What this office may do on each case, by its certificate now; a node
        // not certified yet may do nothing.
        let facts = self.signing(Timestamp::now()).ok().map(|s| s.facts);
        for id in ids {
            // One damaged document must not hide every other case from the office.
            let doc = match self.case(&id) {
                Ok(doc) => doc,
                Err(err) => {
                    tracing::warn!(case = %id.short(), error = %err, "case cannot be read; left out of the list");
                    continue;
                }
            };
            let case = doc.read()?;
            let due: Option<Due> = doc.due(&self.calendar)?;
            let stage = doc.stage()?.unwrap_or(Stage::Draft);
            let offices = self
                .meta_of(&doc)?
                .offices
                .iter()
                .map(ToString::to_string)
                .collect();
            rows.push(CaseRow {
                case_id: id.to_string(),
                stage,
                stage_zh: stage.zh().to_string(),
                due: due.as_ref().map(|d| d.date),
                due_provisional: due.as_ref().is_some_and(|d| d.provisional),
                overdue: due.as_ref().is_some_and(|d| d.date < today),
                applicant: tongban_case::schema::mask_name(&case.applicant.name),
                hukou_township: case.applicant.hukou_township,
                offices,
                duplicate: flagged.contains(&id),
                actions: match &facts {
                    Some(office) => actions_of(&doc, office)?,
                    None => CaseActions::default(),
                },
            });
        }
        Ok(rows)
    }
}

/// The certificate `directory` holds for `office` with key `public` at `now`;
/// a revoked key is told so (with when and why), any other key is told to have
/// itself certified. One rule for a node on its store and a command talking
/// to a running node.
pub fn certificate_of<'d>(
    directory: &'d Directory,
    office: &OfficeId,
    public: &PublicKey,
    now: Timestamp,
) -> Result<&'d OfficeCertificate, NodeError> {
    directory
        .office_for_key_at(public, now)
        .filter(|c| c.office == *office)
        .ok_or_else(|| {
            // A revoked key is told so, not asked to send its key again.
            if let Some(revoked) = directory
                .revocations
                .iter()
                .map(|r| &r.revocation)
                .find(|r| r.public_key == *public && r.effective.0 <= now.0)
            {
                return NodeError::Revoked {
                    fingerprint: public.fingerprint(),
                    version: directory.version,
                    effective: revoked.effective.china_display(),
                    reason: if revoked.reason.is_empty() {
                        String::new()
                    } else {
                        // The reason is the authority's words; control
                        // characters in it must not reach the terminal.
                        let reason: String =
                            revoked.reason.chars().filter(|c| !c.is_control()).collect();
                        format!("; reason: {reason}")
                    },
                };
            }
            NodeError::NotCertified {
                office: office.clone(),
                fingerprint: public.fingerprint(),
                version: directory.version,
            }
        })
}

/// Makes a data directory readable by its owner only (0700): it holds the
/// store, the office key and the control token.
pub fn make_private_dir(dir: &Path) -> Result<(), NodeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .map_err(io(dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Checks a backup's destination before anything is written: `--out` must not
/// exist, and must not lie inside any node's data directory (a backup there
/// could replace a live store, and would be lost with the directory).
pub fn check_backup_destination(out: &Path) -> Result<(), NodeError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent).map_err(io(&parent))?;
    for ancestor in parent.ancestors() {
        if ancestor.join(NODE_FILE).exists() || ancestor.join(tongban_store::DB_FILE_NAME).exists()
        {
            return Err(NodeError::Rejected(format!(
                "--out {}: inside the node data directory {}; write the backup elsewhere \
                 (a USB disk, another folder) 备份不能放在节点数据目录内",
                out.display(),
                ancestor.display()
            )));
        }
    }
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(NodeError::Rejected(format!(
            "--out {}: the file exists; a backup never overwrites a file (choose a new name) \
             备份文件已存在，请换一个文件名",
            out.display()
        )));
    }
    Ok(())
}

/// Refuses an export directory inside a node's data directory (an export
/// replaces files it wrote before, and must never mix with a node's own):
/// judged from its nearest existing ancestor, before anything is created.
pub fn check_export_destination(out: &Path) -> Result<(), NodeError> {
    let absolute = std::path::absolute(out).map_err(io(out))?;
    let Some(existing) = absolute.ancestors().find(|a| a.exists()) else {
        return Ok(());
    };
    let existing = std::fs::canonicalize(existing).map_err(io(existing))?;
    for ancestor in existing.ancestors() {
        if ancestor.join(NODE_FILE).exists() || ancestor.join(tongban_store::DB_FILE_NAME).exists()
        {
            return Err(NodeError::Rejected(format!(
                "--out {}: inside the node data directory {}; export elsewhere                  导出目录不能在节点数据目录内",
                out.display(),
                ancestor.display()
            )));
        }
    }
    Ok(())
}

impl LocalNode {
    /// Stores what a supervisor's node made of `case` (the replica does it as
    /// attestations arrive; `supervision::reconcile` for rows missing).
    pub fn put_supervised(&self, case: &CaseId, bytes: &[u8]) -> Result<(), NodeError> {
        Ok(self.store.write(|tx| tx.put_supervised(case, bytes))?)
    }
}

/// [`LocalNode::rehash_materials`] on a store (the daemon runs it beside its
/// engine).
pub fn rehash_in(store: &Store, cases: &[CaseId]) -> Result<MaterialCheck, NodeError> {
    let mut check = MaterialCheck::default();
    for case in cases {
        for hash in store.case_materials(case)? {
            if !store.has_material(&hash)? {
                continue;
            }
            check.checked += 1;
            let read = store
                .open_material(&hash)
                .map_err(|e| e.to_string())
                .and_then(|mut reader| {
                    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| e.to_string())
                });
            if let Err(reason) = read {
                check.rotten.push(RottenMaterial {
                    case_id: case.to_string(),
                    hash: hash.to_hex(),
                    reason,
                });
            }
        }
    }
    Ok(check)
}

/// A reader that fails once more than `left` bytes come through it.
struct LimitedReader<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: std::io::Read> std::io::Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than the limit is asked for, so that a file of exactly
        // the limit passes and one byte over it is noticed.
        let want = buf
            .len()
            .min(usize::try_from(self.left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(std::io::Error::other("material larger than the limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Materials of a case's notice (一次性告知) not yet attached: `(code, zh)`.
pub fn missing_materials(doc: &CaseDocument) -> Result<Vec<(String, String)>, NodeError> {
    Ok(tongban_case::document::missing_materials_of(&doc.read()?))
}

/// What a command needs of `node.toml` without opening the store (the store
/// may be held by a running node).
#[derive(Debug, Clone)]
pub struct NodeFileView {
    /// The office.
    pub office: OfficeId,
    /// The default operator.
    pub operator: Option<String>,
}

/// Reads `node.toml` of a data directory without opening the store; `None` when
/// the directory holds no node.
pub fn read_node_file(dir: &Path) -> Result<Option<NodeFileView>, NodeError> {
    let node_path = dir.join(NODE_FILE);
    if !node_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&node_path).map_err(io(&node_path))?;
    let file: NodeFile = toml::from_str(&text).map_err(|e| NodeError::Damaged {
        path: node_path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some(NodeFileView {
        office: file.office,
        operator: file.operator,
    }))
}

/// The media type a file name suggests.
pub fn guess_media_type(file: &Path) -> String {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("pdf") => "application/pdf",
        Some("tif" | "tiff") => "image/tiff",
        Some("bmp") => "image/bmp",
        Some("webp") => "image/webp",
        Some("ofd") => "application/ofd",
        // Not a material type: check_material_meta refuses it, naming the field.
        _ => "application/octet-stream",
    }
    .to_string()
}

/// Loads the shipped calendar plus every year imported into `data_dir/calendar/`.
pub fn load_calendar(data_dir: Option<&Path>) -> Result<Calendar, String> {
    let mut calendar =
        Calendar::shipped().map_err(|e| format!("the shipped calendar data is damaged: {e}"))?;
    let Some(dir) = data_dir else {
        return Ok(calendar);
    };
    let cal_dir = dir.join("calendar");
    if !cal_dir.is_dir() {
        return Ok(calendar);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cal_dir)
        .map_err(|e| format!("cannot read {}: {e}", cal_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        calendar
            .import_text(&text)
            .map_err(|e| format!("imported calendar {} is damaged: {e}", file.display()))?;
    }
    Ok(calendar)
}

/// The authority key a directory import is verified against: the one the node
/// already trusts (a key given with the import must be that one), or, for a
/// node's first directory, the key given. One rule for a stopped node
/// ([`LocalNode::import_directory`]) and a running one (the daemon).
pub fn trusted_authority(
    held: Option<PublicKey>,
    given: Option<PublicKey>,
) -> Result<PublicKey, NodeError> {
    match (held, given) {
        (Some(held), Some(given)) if held != given => Err(NodeError::Directory(format!(
            "this node trusts authority {}, not {}",
            held.fingerprint(),
            given.fingerprint()
        ))),
        (Some(held), _) => Ok(held),
        (None, Some(given)) => Ok(given),
        (None, None) => Err(NodeError::Rejected(
            "the first directory import needs --authority-key KEYFILE (the authority's public key)"
                .into(),
        )),
    }
}
