//! [`CaseDocument`]: one case as an Automerge document, and the only way a stage
//! changes — by signing a transition into it.
//!
//! Applying a transition (1) reads the chain of signed transitions already in the
//! document, (2) asks the stage machine whether this office may move the case from
//! the chain's tip to the requested stage, (3) signs a transition that commits to
//! the document's current heads and to the previous transition's hash, and (4)
//! records the signed bytes, the payload and readable copies in the document, in one
//! Automerge change. Reading the stage is always derived from the signed chain, never
//! stored separately.

use std::collections::BTreeMap;

use automerge::{AutoCommit, ChangeHash, ReadDoc, ScalarValue};
use autosurgeon::bytes::ByteVec;
use serde::{Deserialize, Serialize};
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::policy::{Policy, SubsidyKind, first_paid_month};
use tongban_domain::rights::{self, Part, Situation};
use tongban_domain::stage::{self, Anchor, CaseFacts, OfficeFacts, Stage, TransitionError};
use tongban_ledger::commit::{Commit, SignedCommit};
use tongban_ledger::keys::OfficeKey;
use tongban_ledger::transition::{SignedTransition, Transition};
use tongban_ledger::verify::{
    CaseHistory, Report, VerifiedSignatures, VerifyContext, Violation, ViolationKind, verify_case,
};

use crate::intake::Intake;
use crate::scanned::Scanned;
use crate::schema::{
    self, Acceptance, Applicant, CaseCore, CaseDoc, Household, MaterialsNotice, NoticeItem,
    SCHEMA_VERSION, TransitionRecord,
};

/// Why an operation on a case document failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The bytes are not an Automerge document.
    #[error("not a case document: {0}")]
    Load(#[source] automerge::AutomergeError),
    /// The document does not have the case schema.
    #[error("the case document does not match the case schema: {0}")]
    Schema(String),
    /// Written by a newer Tongban.
    #[error(
        "the case document has schema version {found}; this Tongban reads up to {SCHEMA_VERSION}: upgrade Tongban"
    )]
    NewerSchema {
        /// Version found.
        found: u64,
    },
    /// The stage machine refuses.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The chain of signed transitions is broken or forked; resolve before signing.
    #[error("the signed history of this case is not a single valid chain: {0}")]
    Chain(String),
    /// Writing to Automerge failed.
    #[error("automerge: {0}")]
    Automerge(String),
    /// The payload does not fit the transition.
    #[error("{0}")]
    Payload(String),
    /// A guard of the stage table does not hold (materials, reasons, publicity
    /// period, eligibility).
    #[error("{0}")]
    Guard(String),
    /// The write-rights table does not let this office write that, then.
    #[error(transparent)]
    Write(#[from] tongban_domain::rights::WriteRefused),
}

/// How a review ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 同意
    Approve,
    /// 退回补正
    Return,
    /// 不予通过
    Reject,
}

impl Outcome {
    /// Code name.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Approve => "approve",
            Outcome::Return => "return",
            Outcome::Reject => "reject",
        }
    }
}

/// What a transition carries beyond its stage: the opinion, the decision, how the
/// applicant was told. Serialized to JSON once; the exact bytes are kept in the
/// document and their BLAKE3 digest is signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Opinion or remark.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opinion: String,
    /// Review outcome, for reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Awards, for `decided`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awards: Vec<AwardLine>,
    /// First paid month `YYYY-MM`, for `decided`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_paid_month: Option<String>,
    /// Notification method, for `notified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// For `decided`: why a kind the domicile policy does not grant is awarded
    /// anyway. Signed with the decision; without it an ineligible award is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

/// One awarded subsidy in a decision payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwardLine {
    /// Subsidy kind.
    pub kind: SubsidyKind,
    /// Monthly amount, yuan.
    pub monthly_yuan: u32,
    /// Differs from the policy amount (reason in the opinion).
    #[serde(default)]
    pub overridden: bool,
}

/// The office that signs: its key, id and what its certificate says.
pub struct SigningOffice<'a> {
    /// The office key.
    pub key: &'a OfficeKey,
    /// Office facts from its certificate (id, role, division).
    pub facts: OfficeFacts,
}

/// One link of the signed chain, decoded.
#[derive(Debug, Clone)]
pub struct ChainLink {
    /// The signed transition.
    pub signed: SignedTransition,
    /// Its hash.
    pub hash: [u8; 32],
    /// Its payload bytes as stored.
    pub payload: Vec<u8>,
}

/// The signed chain as found in a document.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Links from the first transition to the tip, following the lowest hash at forks.
    pub links: Vec<ChainLink>,
    /// True when some transition has two signed successors.
    pub forked: bool,
    /// Records that do not decode (reported by the verifier; ignored here).
    pub undecodable: usize,
}

impl Chain {
    /// The current stage: the tip's `to`.
    pub fn stage(&self) -> Option<Stage> {
        self.links.last().map(|l| l.signed.transition.to)
    }

    /// When the case entered its current stage.
    pub fn entered_at(&self) -> Option<Timestamp> {
        self.links.last().map(|l| l.signed.transition.at)
    }

    /// Whether the chain passed through `decided` since the last return.
    pub fn approved(&self) -> bool {
        self.links
            .iter()
            .rev()
            .map(|l| l.signed.transition.to)
            .take_while(|s| *s != Stage::Returned)
            .any(|s| s == Stage::Decided)
    }

    /// The link that entered `stage` most recently.
    pub fn last_entered(&self, stage: Stage) -> Option<&ChainLink> {
        self.links
            .iter()
            .rev()
            .find(|l| l.signed.transition.to == stage)
    }
}

/// One signed transition as stored: its signed bytes and its payload bytes.
pub type RawTransition = (Vec<u8>, Vec<u8>);

/// A case document.
pub struct CaseDocument {
    doc: AutoCommit,
    /// The case as last read or written, with the heads it was read at: a
    /// write reads the whole case first (its guards and the write-rights
    /// table need it), and autosurgeon's hydration — a lookup per field, each
    /// scanning the map's columns — was over half of every write's cost.
    /// Valid only while the document's heads are these and no operation is
    /// pending; anything that changes the document (a merge through
    /// [`CaseDocument::automerge_mut`] included) changes the heads, so a stale
    /// entry is never read. Debug builds check every hit against a fresh
    /// hydration.
    read_cache: std::sync::Mutex<Option<(Vec<ChangeHash>, CaseDoc)>>,
}

impl std::fmt::Debug for CaseDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseDocument").finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

impl CaseDocument {
    /// Starts a case at the acceptance office: the intake, the materials notice from
    /// the domicile province's policy, and the signed `draft` transition.
    pub fn create(
        case_id: &CaseId,
        intake: &Intake,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
    ) -> Result<(CaseDocument, SignedTransition), CaseError> {
        let policy = Policy::for_province(intake.hukou_township.province().as_str())
            .map_err(|e| CaseError::Payload(e.to_string()))?;
        let items = policy
            .checklist(&intake.subsidy_kinds, &intake.facts)
            .into_iter()
            .map(|m| NoticeItem {
                code: m.code.clone(),
                zh: m.zh.clone(),
            })
            .collect();
        let case = CaseDoc {
            schema_version: SCHEMA_VERSION,
            case_id: case_id.to_string(),
            created_at: at.millis(),
            acceptance: Acceptance {
                office: office.facts.office.clone(),
                township: office.facts.division.clone(),
            },
            applicant: Applicant {
                name: intake.name.clone(),
                resident_id: intake.resident_id.expose().to_string(),
                sex: match intake.resident_id.sex() {
                    tongban_domain::ids::Sex::Male => "male".into(),
                    tongban_domain::ids::Sex::Female => "female".into(),
                },
                birth_date: intake.resident_id.birth_date().to_string(),
                hukou_township: intake.hukou_township.to_string(),
                phone: intake.phone.clone(),
                address: intake.address.clone(),
                agent: intake.agent.clone(),
            },
            certificate: intake.certificate.as_ref().map(|c| schema::Certificate {
                number: c.expose(),
                category: c.category().code().to_string(),
                level: u64::from(c.level().get()),
            }),
            household: Household {
                dibao: intake.facts.dibao,
                low_income: intake.facts.low_income,
                long_term_care: intake.facts.long_term_care,
                other_allowances: intake.facts.other_allowances.clone(),
            },
            subsidy_kinds: intake
                .subsidy_kinds
                .iter()
                .map(|k| k.code().to_string())
                .collect(),
            materials: BTreeMap::new(),
            materials_notice: Some(MaterialsNotice {
                policy_province: policy.province.clone(),
                items,
                given_at: at.millis(),
                office: office.facts.office.clone(),
            }),
            reviews: Vec::new(),
            decision: None,
            notification: None,
            evaluation: None,
            confirmations: Vec::new(),
            transitions: BTreeMap::new(),
            seals: BTreeMap::new(),
        };
        let mut document = CaseDocument::from_automerge(AutoCommit::new());
        document.bind_actor(&office.facts.office, at, case_id.as_str().as_bytes())?;
        autosurgeon::reconcile(&mut document.doc, &case)
            .map_err(|e| CaseError::Automerge(e.to_string()))?;
        document.commit(at, "intake");
        let signed = document.apply(Stage::Draft, office, operator, at, &Payload::default())?;
        Ok((document, signed))
    }

    /// Loads a saved document and checks its schema version.
    pub fn load(bytes: &[u8]) -> Result<CaseDocument, CaseError> {
        let doc = AutoCommit::load(bytes).map_err(CaseError::Load)?;
        let document = CaseDocument::from_automerge(doc);
        document.read()?;
        Ok(document)
    }

    /// Wraps an Automerge document (for the store and sync layers).
    pub fn from_automerge(doc: AutoCommit) -> CaseDocument {
        CaseDocument {
            doc,
            read_cache: std::sync::Mutex::new(None),
        }
    }

    /// The Automerge document.
    pub fn automerge(&self) -> &AutoCommit {
        &self.doc
    }

    /// The Automerge document, mutable (for merging and sync).
    pub fn automerge_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Consumes the wrapper.
    pub fn into_automerge(self) -> AutoCommit {
        self.doc
    }

    /// An independent copy (a save and a reload), for trying a step on the side.
    pub fn clone_for_test(&mut self) -> CaseDocument {
        CaseDocument::from_automerge(self.doc.fork())
    }

    /// Full save.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Current heads, sorted.
    pub fn heads(&mut self) -> Vec<[u8; 32]> {
        let mut heads: Vec<[u8; 32]> = self.doc.get_heads().into_iter().map(|h| h.0).collect();
        heads.sort_unstable();
        heads
    }

    /// Whether a change with this hash is in the document's history.
    pub fn has_change(&mut self, hash: &[u8; 32]) -> bool {
        // A lookup in the change graph: `get_change_by_hash` would rebuild the
        // whole change from the document's columns only to drop it.
        ReadDoc::get_missing_deps(self.doc.document(), &[ChangeHash(*hash)]).is_empty()
    }

    /// Hydrates the whole document (or answers the case as this document
    /// last read or wrote it, when its heads are still the same).
    pub fn read(&self) -> Result<CaseDoc, CaseError> {
        use automerge::transaction::Transactable;
        if self.doc.pending_ops() > 0 {
            return read_case(&self.doc);
        }
        let heads = Transactable::base_heads(&self.doc);
        if let Some(case) = self.cached(&heads) {
            #[cfg(debug_assertions)]
            assert_eq!(
                Some(&case),
                read_case(&self.doc).ok().as_ref(),
                "the cached case differs from the document"
            );
            return Ok(case);
        }
        let case = read_case(&self.doc)?;
        self.remember(heads, case.clone());
        Ok(case)
    }

    fn cached(&self, heads: &[ChangeHash]) -> Option<CaseDoc> {
        let cache = self.read_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .as_ref()
            .filter(|(at, _)| at == heads)
            .map(|(_, case)| case.clone())
    }

    fn remember(&self, heads: Vec<ChangeHash>, case: CaseDoc) {
        *self.read_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((heads, case));
    }

    /// After a write that reconciled `case` into the document and committed:
    /// the document now holds exactly `case`.
    fn remember_written(&mut self, case: CaseDoc) {
        let heads = self.doc.get_heads();
        self.remember(heads, case);
    }

    /// Reads only the case's [`CaseCore`] (see [`read_core`]).
    pub fn read_core(&self) -> Result<CaseCore, CaseError> {
        read_core(&self.doc)
    }

    /// Changes the document through its Rust form, as one Automerge change that
    /// **nobody signs**: every node refuses a document carrying it, and the
    /// verifier reports it. For tests and tools that show what tampering looks
    /// like; offices write through [`CaseDocument::write`] and
    /// [`CaseDocument::apply`].
    pub fn update_unsigned(
        &mut self,
        at: Timestamp,
        message: &str,
        change: impl FnOnce(&mut CaseDoc) -> Result<(), CaseError>,
    ) -> Result<(), CaseError> {
        let mut case = self.read()?;
        change(&mut case)?;
        autosurgeon::reconcile(&mut self.doc, &case)
            .map_err(|e| CaseError::Automerge(e.to_string()))?;
        self.commit(at, message);
        Ok(())
    }

    fn commit(&mut self, at: Timestamp, message: &str) {
        self.doc.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_time(at.millis() / 1000)
                .with_message(message.to_string()),
        );
    }

    /// Writes as `office` from here on: an Automerge actor id that names the
    /// office ([`crate::authorship::actor_for`]), fresh for this writing session
    /// (salted with the heads, the time and `salt`), unless the document already
    /// writes as that office.
    pub fn bind_actor(
        &mut self,
        office: &str,
        at: Timestamp,
        salt: &[u8],
    ) -> Result<(), CaseError> {
        let office = OfficeId::parse(office).map_err(|e| CaseError::Payload(e.to_string()))?;
        if crate::authorship::office_of_actor(self.doc.get_actor()).as_ref() == Some(&office) {
            return Ok(());
        }
        let mut material = Vec::new();
        for head in self.heads() {
            material.extend_from_slice(&head);
        }
        material.extend_from_slice(&at.millis().to_be_bytes());
        material.extend_from_slice(salt);
        self.doc
            .set_actor(crate::authorship::actor_for(&office, &material));
        Ok(())
    }

    /// A signed write that changes no stage: `change` edits the case; every part
    /// it touches is asked of the write-rights table
    /// ([`tongban_domain::rights`]) for this office at the case's stage; the
    /// office then signs the heads after the write (a signed commit in `seals`).
    /// Returns `None` when the change left the case as it was (nothing signed).
    pub fn write(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        message: &str,
        change: impl FnOnce(&mut CaseDoc) -> Result<(), CaseError>,
    ) -> Result<Option<SignedCommit>, CaseError> {
        let before = self.read()?;
        let mut after = before.clone();
        change(&mut after)?;
        let parts = changed_parts(&before, &after);
        if parts.is_empty() {
            return Ok(None);
        }
        let chain = self.chain()?;
        let stage = chain.stage().ok_or_else(|| {
            CaseError::Chain("the case has no signed stage yet; it cannot be written".into())
        })?;
        let facts = facts_of(&before, &chain);
        for part in parts {
            rights::check_write(
                part,
                &office.facts,
                &facts,
                Situation::At(stage),
                part == Part::Evaluation && before.evaluation.is_some(),
            )?;
        }
        self.bind_actor(&office.facts.office, at, message.as_bytes())?;
        reconcile_changed(&mut self.doc, &before, &after)?;
        self.commit(at, message);
        self.remember_written(after);
        self.seal(office, operator, at).map(Some)
    }

    /// Signs the document's current heads as `office` (a signed commit in
    /// `seals`): the office vouches for every change of its own before them.
    /// [`CaseDocument::write`] calls it after asking the write-rights table;
    /// calling it directly signs whatever the office's actor wrote, which
    /// admission and the verifier then judge against the table.
    pub fn seal(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
    ) -> Result<SignedCommit, CaseError> {
        let case = self.case_id()?;
        let commit = Commit {
            case,
            office: OfficeId::parse(&office.facts.office)
                .map_err(|e| CaseError::Payload(e.to_string()))?,
            operator: operator.clone(),
            at,
            heads: self.heads(),
            signer_key: office.key.public(),
        };
        let signed = SignedCommit::sign(commit, office.key)
            .map_err(|e| CaseError::Payload(e.to_string()))?;
        let bytes = signed.encode();
        self.put_record(
            "seals",
            &bytes,
            &[
                (
                    "office",
                    ScalarValue::Str(office.facts.office.clone().into()),
                ),
                ("at", ScalarValue::Int(at.millis())),
            ],
            at,
            "seal",
        )?;
        Ok(signed)
    }

    /// `case attach`: records a material (its bytes are in the node's store,
    /// content-addressed) as a signed write of `office`, which the write-rights
    /// table must allow (the acceptance office, before push or after a return).
    /// The metadata is checked first (file name, media type, size).
    pub fn add_material(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        material: schema::Material,
    ) -> Result<Option<SignedCommit>, CaseError> {
        self.add_materials(office, operator, at, vec![material])
    }

    /// Several materials recorded in one signed write (scans uploaded
    /// together), each checked as [`CaseDocument::add_material`] checks one.
    pub fn add_materials(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        materials: Vec<schema::Material>,
    ) -> Result<Option<SignedCommit>, CaseError> {
        for material in &materials {
            tongban_domain::material::check_material_meta(
                &material.file_name,
                &material.media_type,
                material.size,
            )
            .map_err(|e| CaseError::Payload(e.to_string()))?;
            if material.kind.is_empty() || material.hash.len() != 64 {
                return Err(CaseError::Payload(
                    "a material needs its checklist kind and its 64-digit BLAKE3 hash".into(),
                ));
            }
        }
        self.write(office, operator, at, "attach material", move |case| {
            for material in materials {
                let key = schema::material_key(&material.kind, &material.hash);
                case.materials.insert(key, material);
            }
            Ok(())
        })
    }

    /// Records the applicant's satisfaction (服务评价) as a signed write of the
    /// acceptance office, once: a second evaluation is refused, never a silent
    /// overwrite.
    pub fn record_evaluation(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        score: u8,
        comment: &str,
    ) -> Result<Option<SignedCommit>, CaseError> {
        if !(1..=5).contains(&score) {
            return Err(CaseError::Payload(format!(
                "评分须为1-5 --score must be 1-5, found {score}"
            )));
        }
        let evaluation = schema::Evaluation {
            score: u64::from(score),
            comment: comment.to_string(),
            at: at.millis(),
            office: office.facts.office.clone(),
            operator: operator.to_string(),
        };
        self.write(office, operator, at, "evaluation", move |case| {
            case.evaluation = Some(evaluation);
            Ok(())
        })
    }

    /// Records what the registry feeds confirmed or contradicted
    /// ([`tongban_domain::registry::compare`]) as a signed write of this
    /// office; a finding already recorded for the same feed version is not
    /// recorded again. Answers how many were new.
    pub fn record_confirmations(
        &mut self,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        findings: &[tongban_domain::registry::Finding],
    ) -> Result<usize, CaseError> {
        let held = self.read()?.confirmations;
        let new: Vec<schema::Confirmation> = findings
            .iter()
            .filter(|f| {
                !held.iter().any(|c| {
                    c.feed == f.feed.code()
                        && c.feed_version == f.feed_version.to_string()
                        && c.fact == f.fact
                })
            })
            .map(|f| schema::Confirmation {
                feed: f.feed.code().to_string(),
                feed_version: f.feed_version.to_string(),
                fact: f.fact.to_string(),
                at: at.millis(),
                confirmed: f.confirmed,
                detail: f.detail.clone(),
                office: office.facts.office.clone(),
            })
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        let count = new.len();
        self.write(office, operator, at, "confirmations", move |case| {
            case.confirmations.extend(new);
            Ok(())
        })?;
        Ok(count)
    }

    /// Writes one signature record as a change of its own: a map under its hash
    /// in `field`, holding the signed bytes and readable copies. Nothing else
    /// goes in that change (see [`crate::authorship`]).
    fn put_record(
        &mut self,
        field: &str,
        signed: &[u8],
        copies: &[(&str, ScalarValue)],
        at: Timestamp,
        message: &str,
    ) -> Result<(), CaseError> {
        use automerge::transaction::Transactable;
        let err = |e: automerge::AutomergeError| CaseError::Automerge(e.to_string());
        let container = match ReadDoc::get(&self.doc, automerge::ROOT, field).map_err(err)? {
            Some((automerge::Value::Object(automerge::ObjType::Map), id)) => id,
            _ => {
                return Err(CaseError::Schema(format!(
                    "the case document has no {field} map"
                )));
            }
        };
        let key = hex(blake3::hash(signed).as_bytes());
        let before = Transactable::base_heads(&self.doc);
        let record = self
            .doc
            .put_object(&container, &key, automerge::ObjType::Map)
            .map_err(err)?;
        self.doc
            .put(&record, "signed", ScalarValue::Bytes(signed.to_vec()))
            .map_err(err)?;
        for (name, value) in copies {
            self.doc.put(&record, *name, value.clone()).map_err(err)?;
        }
        self.commit(at, message);
        // The case before the record, if it was read at the heads this
        // record's change follows, plus the record as autosurgeon reads it.
        let cached = self
            .read_cache
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|(heads, _)| heads == &before);
        if let Some((_, mut case)) = cached {
            let hydrate_err = |e: autosurgeon::HydrateError| CaseError::Schema(e.to_string());
            match field {
                "transitions" => {
                    let read = autosurgeon::hydrate_prop(&self.doc, &container, key.as_str())
                        .map_err(hydrate_err)?;
                    case.transitions.insert(key, read);
                }
                "seals" => {
                    let read = autosurgeon::hydrate_prop(&self.doc, &container, key.as_str())
                        .map_err(hydrate_err)?;
                    case.seals.insert(key, read);
                }
                _ => return Ok(()),
            }
            self.remember_written(case);
        }
        Ok(())
    }

    /// The raw signed transitions as stored (for the verifier), with their payloads.
    pub fn raw_transitions(&self) -> Result<Vec<RawTransition>, CaseError> {
        let case = self.read()?;
        Ok(case
            .transitions
            .into_values()
            .map(|r| (r.signed.to_vec(), r.payload.to_vec()))
            .collect())
    }

    /// Decodes the chain of signed transitions: from the first transition, follow
    /// successors (by previous hash); at a fork, follow the lowest hash and flag it.
    pub fn chain(&self) -> Result<Chain, CaseError> {
        Ok(self.read_core()?.chain())
    }

    /// The current stage, from the signed chain.
    pub fn stage(&self) -> Result<Option<Stage>, CaseError> {
        Ok(self.chain()?.stage())
    }

    /// The facts the stage machine needs.
    pub fn facts(&self) -> Result<CaseFacts, CaseError> {
        let core = self.read_core()?;
        Ok(core.facts(&core.chain()))
    }
}

/// Reads (hydrates) the case from any Automerge document view, checking its
/// schema version: what [`CaseDocument::read`] does, for a caller holding a
/// plain `Automerge` (the store and sync layers), without a save and reload.
pub fn read_case<D: ReadDoc + autosurgeon::ReadDoc>(doc: &D) -> Result<CaseDoc, CaseError> {
    check_version(doc)?;
    autosurgeon::hydrate(&Scanned::new(doc)).map_err(|e| CaseError::Schema(e.to_string()))
}

/// Reads (hydrates) only the [`CaseCore`] of the case: the fields its chain, its
/// deadlines and the store's index need, at a fraction of [`read_case`]'s cost.
/// Checks the schema version as `read_case` does.
///
/// Sync admission and every store write read the core of each document, so it
/// is read by hand rather than through autosurgeon: one pass over each map
/// (`map_range`) instead of a lookup per field, which is where autosurgeon's
/// hydration spends nearly all its time (a lookup scans the map's columns).
/// The hand reading takes only the well-formed shape — each field present,
/// with exactly the type the schema writes — and any other document goes to
/// autosurgeon's hydration, so the result and the errors are always exactly
/// `autosurgeon::hydrate`'s (tests hold the two equal).
pub fn read_core<D: ReadDoc + autosurgeon::ReadDoc>(doc: &D) -> Result<CaseCore, CaseError> {
    if let Some(core) = read_core_well_formed(doc)
        && core.schema_version <= SCHEMA_VERSION
    {
        return Ok(core);
    }
    read_core_hydrated(doc)
}

/// [`read_core`] through autosurgeon's hydration.
fn read_core_hydrated<D: ReadDoc + autosurgeon::ReadDoc>(doc: &D) -> Result<CaseCore, CaseError> {
    check_version(doc)?;
    autosurgeon::hydrate(&Scanned::new(doc)).map_err(|e| CaseError::Schema(e.to_string()))
}

/// The core of a well-formed case document — every field of [`CaseCore`]
/// present with exactly the type Tongban writes — read by hand in one pass per
/// map; `None` for any other document (which [`read_core`] leaves to
/// autosurgeon). Does not check the schema version.
pub fn read_core_well_formed<D: ReadDoc>(doc: &D) -> Option<CaseCore> {
    use automerge::{ObjType, ScalarValueRef, ValueRef};
    fn text(value: &ValueRef<'_>) -> Option<String> {
        match value {
            ValueRef::Scalar(ScalarValueRef::Str(s)) => Some(s.to_string()),
            _ => None,
        }
    }
    fn bytes(value: &ValueRef<'_>) -> Option<Vec<u8>> {
        match value {
            ValueRef::Scalar(ScalarValueRef::Bytes(b)) => Some(b.to_vec()),
            _ => None,
        }
    }
    fn is_map(value: &ValueRef<'_>) -> bool {
        matches!(value, ValueRef::Object(ObjType::Map))
    }
    /// The values at keys `a` and `b` of the map `obj`, each read by `read`.
    fn pair<D: ReadDoc, T>(
        doc: &D,
        obj: automerge::ObjId,
        [a, b]: [&str; 2],
        read: fn(&ValueRef<'_>) -> Option<T>,
    ) -> Option<(T, T)> {
        let (mut first, mut second) = (None, None);
        for field in doc.map_range(obj, ..) {
            if field.key == a {
                first = Some(read(&field.value)?);
            } else if field.key == b {
                second = Some(read(&field.value)?);
            }
        }
        Some((first?, second?))
    }
    let (mut version, mut case_id, mut acceptance, mut applicant) = (None, None, None, None);
    let (mut kinds, mut transitions) = (None, None);
    for item in doc.map_range(automerge::ROOT, ..) {
        match item.key.as_ref() {
            "schema_version" => match item.value {
                ValueRef::Scalar(ScalarValueRef::Uint(v)) => version = Some(v),
                _ => return None,
            },
            "case_id" => case_id = Some(text(&item.value)?),
            "acceptance" if is_map(&item.value) => {
                let (office, township) = pair(doc, item.id(), ["office", "township"], text)?;
                acceptance = Some(Acceptance { office, township });
            }
            "applicant" if is_map(&item.value) => {
                let (resident_id, hukou_township) =
                    pair(doc, item.id(), ["resident_id", "hukou_township"], text)?;
                applicant = Some(schema::ApplicantCore {
                    resident_id,
                    hukou_township,
                });
            }
            "subsidy_kinds" if matches!(item.value, ValueRef::Object(ObjType::List)) => {
                let mut list = Vec::new();
                for element in doc.list_range(item.id(), ..) {
                    list.push(text(&element.value)?);
                }
                kinds = Some(list);
            }
            "transitions" if is_map(&item.value) => {
                let mut records = BTreeMap::new();
                for entry in doc.map_range(item.id(), ..) {
                    if !is_map(&entry.value) {
                        return None;
                    }
                    let (signed, payload) = pair(doc, entry.id(), ["signed", "payload"], bytes)?;
                    records.insert(
                        entry.key.to_string(),
                        schema::SignedRecord {
                            signed: ByteVec::from(signed),
                            payload: ByteVec::from(payload),
                        },
                    );
                }
                transitions = Some(records);
            }
            "acceptance" | "applicant" | "subsidy_kinds" | "transitions" => return None,
            _ => {}
        }
    }
    Some(CaseCore {
        schema_version: version?,
        case_id: case_id?,
        acceptance: acceptance?,
        applicant: applicant?,
        subsidy_kinds: kinds?,
        transitions: transitions?,
    })
}

/// Refuses a document without a schema version or with a newer one than this
/// code knows.
fn check_version<D: ReadDoc>(doc: &D) -> Result<(), CaseError> {
    let version: Option<u64> = match ReadDoc::get(doc, automerge::ROOT, "schema_version") {
        Ok(Some((automerge::Value::Scalar(s), _))) => s.as_u64(),
        _ => None,
    };
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(CaseError::NewerSchema { found: v }),
        Some(_) => Ok(()),
        None => Err(CaseError::Schema("schema_version is missing".into())),
    }
}

/// The facts the stage machine needs, from a read case and its chain.
pub fn facts_of(case: &CaseDoc, chain: &Chain) -> CaseFacts {
    CaseFacts {
        acceptance_office: case.acceptance.office.clone(),
        acceptance_township: case.acceptance.township.clone(),
        domicile_township: case.applicant.hukou_township.clone(),
        approved: chain.approved(),
    }
}

impl CaseCore {
    /// The signed chain (see [`Chain::of`]).
    pub fn chain(&self) -> Chain {
        Chain::from_records(
            self.transitions
                .values()
                .map(|r| (r.signed.as_slice(), r.payload.as_slice())),
        )
    }

    /// The facts the stage machine needs (see [`facts_of`]).
    pub fn facts(&self, chain: &Chain) -> CaseFacts {
        CaseFacts {
            acceptance_office: self.acceptance.office.clone(),
            acceptance_township: self.acceptance.township.clone(),
            domicile_township: self.applicant.hukou_township.clone(),
            approved: chain.approved(),
        }
    }

    /// The due date of the current stage (see [`CaseDocument::due`]).
    pub fn due(&self, chain: &Chain, calendar: &Calendar) -> Result<Option<Due>, CaseError> {
        due_from_facts(&self.facts(chain), chain, calendar)
    }
}

/// What a store's indexes need of a case, read once: the stage and due date its
/// signed chain gives, the applicant's resident ID, the acceptance office and the
/// subsidy kinds. Sync admission reads it on the core that verified the document,
/// so the store's transaction need not read the document again. `Debug` masks the
/// ID number.
#[derive(Clone, PartialEq, Eq)]
pub struct CaseSummary {
    /// The stage the signed chain is at (`Draft` before the first transition).
    pub stage: Stage,
    /// The last day the next step is on time, if a deadline runs.
    pub due: Option<chrono::NaiveDate>,
    /// The applicant's resident ID number in clear (personal data).
    pub resident_id: String,
    /// The acceptance office, as written in the document.
    pub acceptance_office: String,
    /// Subsidy kinds applied for.
    pub subsidy_kinds: Vec<String>,
}

impl std::fmt::Debug for CaseSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseSummary")
            .field("stage", &self.stage)
            .field("due", &self.due)
            .field("resident_id", &schema::mask_id(&self.resident_id))
            .field("acceptance_office", &self.acceptance_office)
            .field("subsidy_kinds", &self.subsidy_kinds)
            .finish()
    }
}

impl CaseSummary {
    /// The summary of a read case core, its deadline counted on `calendar`.
    pub fn of(core: &CaseCore, calendar: &Calendar) -> CaseSummary {
        let chain = core.chain();
        CaseSummary {
            stage: chain.stage().unwrap_or(Stage::Draft),
            due: core.due(&chain, calendar).ok().flatten().map(|d| d.date),
            resident_id: core.applicant.resident_id.clone(),
            acceptance_office: core.acceptance.office.clone(),
            subsidy_kinds: core.subsidy_kinds.clone(),
        }
    }
}

impl Chain {
    /// Decodes the chain of signed transitions of a read case: from the first
    /// transition, follow successors (by previous hash); at a fork, follow the
    /// lowest hash and flag it.
    pub fn of(case: &CaseDoc) -> Chain {
        Chain::from_records(
            case.transitions
                .values()
                .map(|r| (r.signed.as_slice(), r.payload.as_slice())),
        )
    }

    /// [`Chain::of`] the records' (signed transition, payload) bytes.
    pub fn from_records<'a>(records: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Chain {
        let mut links = Vec::new();
        let mut undecodable = 0;
        for (signed, payload) in records {
            match SignedTransition::decode(signed) {
                Ok(t) => links.push(ChainLink {
                    hash: *blake3::hash(signed).as_bytes(),
                    signed: t,
                    payload: payload.to_vec(),
                }),
                Err(_) => undecodable += 1,
            }
        }
        let mut by_prev: BTreeMap<Option<[u8; 32]>, Vec<ChainLink>> = BTreeMap::new();
        for link in links {
            by_prev
                .entry(link.signed.transition.prev)
                .or_default()
                .push(link);
        }
        let mut chain = Chain {
            undecodable,
            ..Chain::default()
        };
        let mut prev: Option<[u8; 32]> = None;
        while let Some(mut next) = by_prev.remove(&prev) {
            next.sort_by_key(|l| l.hash);
            // Another valid signature over the same transition is the same
            // transition, not a fork (the lowest hash stands for it).
            let mut unique: Vec<ChainLink> = Vec::with_capacity(next.len());
            for link in next {
                if !unique
                    .iter()
                    .any(|u| u.signed.transition == link.signed.transition)
                {
                    unique.push(link);
                }
            }
            let mut next = unique;
            if next.len() > 1 {
                chain.forked = true;
            }
            let link = next.swap_remove(0);
            prev = Some(link.hash);
            chain.links.push(link);
            if chain.links.len() > 100_000 {
                break;
            }
        }
        chain
    }
}

impl CaseDocument {
    /// The case id.
    pub fn case_id(&self) -> Result<CaseId, CaseError> {
        let text = match ReadDoc::get(&self.doc, automerge::ROOT, "case_id") {
            Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                automerge::ScalarValue::Str(text) => text.to_string(),
                _ => return Err(CaseError::Schema("case_id is not a string".into())),
            },
            _ => return Err(CaseError::Schema("case_id is missing".into())),
        };
        CaseId::parse(&text).map_err(|e| CaseError::Schema(e.to_string()))
    }

    /// Moves the case to `to`: checks the stage machine and its guards
    /// ([`check_guards`]), writes what the transition records in readable form
    /// (the review opinion, the decision, the notification) as this office —
    /// each part asked of the write-rights table — then signs the transition
    /// over the heads after that write and records it in a change of its own.
    pub fn apply(
        &mut self,
        to: Stage,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        payload: &Payload,
    ) -> Result<SignedTransition, CaseError> {
        self.apply_inner(to, office, operator, at, payload, true)
    }

    /// [`CaseDocument::apply`] without the guards beyond the stage table's rows
    /// (materials, reasons, publicity period, eligibility), as an altered node
    /// might sign. No office path calls it; it exists so that tests can show the
    /// verifier catching what such a signer leaves.
    pub fn apply_unguarded(
        &mut self,
        to: Stage,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        payload: &Payload,
    ) -> Result<SignedTransition, CaseError> {
        self.apply_inner(to, office, operator, at, payload, false)
    }

    fn apply_inner(
        &mut self,
        to: Stage,
        office: &SigningOffice<'_>,
        operator: &Operator,
        at: Timestamp,
        payload: &Payload,
        guarded: bool,
    ) -> Result<SignedTransition, CaseError> {
        let before = self.read()?;
        let core = self.read_core()?;
        let chain = core.chain();
        if chain.forked {
            return Err(CaseError::Chain(
                "two signed successors of one transition (a fork); resolve it first".into(),
            ));
        }
        let from = chain.stage();
        let facts = core.facts(&chain);
        stage::check_transition(from, to, &facts, &office.facts)?;
        if guarded {
            let problems = check_guards(&before, &chain, from, to, at, payload);
            if !problems.is_empty() {
                return Err(CaseError::Guard(problems.join("；")));
            }
        }
        let case_id = CaseId::parse(&core.case_id).map_err(|e| CaseError::Schema(e.to_string()))?;
        let payload_bytes =
            serde_json::to_vec(payload).map_err(|e| CaseError::Payload(e.to_string()))?;
        let office_id =
            OfficeId::parse(&office.facts.office).map_err(|e| CaseError::Payload(e.to_string()))?;
        let last = chain.links.last();
        let seq = last.map_or(0, |l| l.signed.transition.seq + 1);
        let mut after = before.clone();
        record_readable(&mut after, from, to, seq, &office_id, at, payload, operator);
        let parts = changed_parts(&before, &after);
        for part in &parts {
            rights::check_write(*part, &office.facts, &facts, Situation::With(to), false)?;
        }
        self.bind_actor(&office.facts.office, at, to.code().as_bytes())?;
        let message = format!("{} → {}", from.map_or("-", Stage::code), to.code());
        if !parts.is_empty() {
            reconcile_changed(&mut self.doc, &before, &after)?;
            self.commit(at, &message);
            self.remember_written(after);
        }
        let transition = Transition {
            case: case_id,
            seq,
            from,
            to,
            office: office_id,
            operator: operator.clone(),
            at,
            heads: self.heads(),
            prev: last.map(|l| l.hash),
            payload_digest: *blake3::hash(&payload_bytes).as_bytes(),
            signer_key: office.key.public(),
        };
        let signed = SignedTransition::sign(transition, office.key)
            .map_err(|e| CaseError::Payload(e.to_string()))?;
        self.put_record(
            "transitions",
            &signed.encode(),
            &[
                ("payload", ScalarValue::Bytes(payload_bytes)),
                ("seq", ScalarValue::Uint(u64::from(seq))),
                (
                    "from",
                    ScalarValue::Str(from.map_or("", Stage::code).into()),
                ),
                ("to", ScalarValue::Str(to.code().into())),
                (
                    "office",
                    ScalarValue::Str(office.facts.office.clone().into()),
                ),
                ("at", ScalarValue::Int(at.millis())),
            ],
            at,
            &message,
        )?;
        Ok(signed)
    }

    /// Verifies the document's signed history against the directory: every
    /// violation the ledger's verifier finds, plus payloads whose bytes in the
    /// document do not match the digest their transition signed.
    pub fn verify(
        &mut self,
        directory: &tongban_ledger::directory::Directory,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<Report, CaseError> {
        self.verify_inner(directory, calendar, now, None)
    }

    /// [`CaseDocument::verify`] of a document loaded from `saved` (its bytes
    /// as stored): the change graph is read from the saved chunk
    /// ([`crate::authorship::scan_saved`]) and every signed record is checked
    /// in one batch, as admission does — the same findings, at a fraction of
    /// the cost, for `verify --all` over a whole store.
    pub fn verify_saved(
        &mut self,
        saved: &[u8],
        directory: &tongban_ledger::directory::Directory,
        calendar: &Calendar,
        now: Timestamp,
    ) -> Result<Report, CaseError> {
        self.verify_inner(directory, calendar, now, Some(saved))
    }

    fn verify_inner(
        &mut self,
        directory: &tongban_ledger::directory::Directory,
        calendar: &Calendar,
        now: Timestamp,
        saved: Option<&[u8]>,
    ) -> Result<Report, CaseError> {
        let scan = match saved {
            Some(saved) => crate::authorship::scan_saved(self.doc.document(), saved),
            None => crate::authorship::scan(self.doc.document()),
        };
        // A failed batch (some signature is bad) leaves every record to be
        // checked alone, which names the failing one.
        let verified = saved.and_then(|_| VerifiedSignatures::batch(scan.record_bytes()));
        let case = self.read()?;
        let records: Vec<TransitionRecord> = case.transitions.values().cloned().collect();
        // The verifier asks whether each vouched head is in the document's history;
        // Automerge answers that through `&mut`, so collect the answers first.
        let mut present = std::collections::HashSet::new();
        for record in &records {
            if let Ok(signed) = SignedTransition::decode(&record.signed) {
                for head in &signed.transition.heads {
                    if self.has_change(head) {
                        present.insert(*head);
                    }
                }
            }
        }
        let has_head = |head: &[u8; 32]| present.contains(head);
        let domicile = case.applicant.hukou_township.clone();
        let policy = Policy::for_province(domicile.get(..2).unwrap_or("00"))
            .map_err(|e| CaseError::Payload(e.to_string()))?;
        let mut ctx = VerifyContext::new(directory, calendar, now, &has_head);
        if let Some(verified) = &verified {
            ctx = ctx.with_verified(verified);
        }
        ctx.publicity_days = policy.publicity_days;
        let case_id = CaseId::parse(&case.case_id).map_err(|e| CaseError::Schema(e.to_string()))?;
        let history = CaseHistory {
            case: case_id,
            transitions: records.iter().map(|r| r.signed.to_vec()).collect(),
            domicile_township: domicile,
        };
        let mut report = verify_case(&history, &ctx);
        for (index, record) in records.iter().enumerate() {
            let Ok(signed) = SignedTransition::decode(&record.signed) else {
                continue;
            };
            if Transition::digest_payload(&record.payload) != signed.transition.payload_digest {
                report.violations.push(Violation {
                    kind: ViolationKind::PayloadMismatch,
                    severity: ViolationKind::PayloadMismatch.severity(),
                    index: Some(index),
                    seq: Some(signed.transition.seq),
                    hash: Some(hex(&signed.hash())),
                    reason: "the payload stored in the document (opinion, decision) is not the one the transition signed".into(),
                    author: None,
                    paths: Vec::new(),
                });
            }
        }
        // Every change attributable and authorised (the write-rights table).
        let chain = Chain::from_records(
            records
                .iter()
                .map(|r| (r.signed.as_slice(), r.payload.as_slice())),
        );
        let facts = facts_of(&case, &chain);
        for finding in scan.check(&history.case, &facts, directory, verified.as_ref()) {
            let kind = match finding.kind {
                crate::authorship::FindingKind::Unsigned => ViolationKind::UnsignedChange,
                crate::authorship::FindingKind::BadSignature => ViolationKind::BadSignature,
                _ => ViolationKind::UnauthorisedChange,
            };
            report.violations.push(Violation {
                kind,
                severity: kind.severity(),
                index: None,
                seq: None,
                hash: Some(finding.change),
                reason: finding.reason,
                author: finding.author,
                paths: finding.paths,
            });
        }
        // Every guard the signer held, judged on the case as it stood when signed.
        for (position, link) in chain.links.iter().enumerate() {
            let t = &link.signed.transition;
            let Ok(payload) = serde_json::from_slice::<Payload>(&link.payload) else {
                continue;
            };
            let heads: Vec<ChangeHash> = t.heads.iter().map(|h| ChangeHash(*h)).collect();
            if heads.iter().any(|h| !present.contains(&h.0)) {
                continue; // reported as a missing head
            }
            // Only acceptance (the materials then), the decision (the
            // applicant's facts then), the end of publicity (the domicile's
            // policy then) and an approval without an opinion (the registry
            // findings then) judge the case as it stood (`check_guards`);
            // every other guard reads only the signed payload. Rebuilding the
            // document at a transition's heads is most of what verifying
            // costs, so only those do.
            let needs_then = matches!(t.to, Stage::Accepted | Stage::Decided)
                || t.from == Some(Stage::Publicized)
                || (matches!(t.to, Stage::InitialReviewed | Stage::DpfReviewed)
                    && payload.opinion.trim().is_empty());
            let then = if needs_then {
                let Ok(then) = guard_view_at(self.doc.document(), &heads, &case) else {
                    continue;
                };
                std::borrow::Cow::Owned(then)
            } else {
                std::borrow::Cow::Borrowed(&case)
            };
            let before = Chain {
                links: chain.links[..position].to_vec(),
                ..Chain::default()
            };
            for problem in check_guards(&then, &before, t.from, t.to, t.at, &payload) {
                report.violations.push(Violation {
                    kind: ViolationKind::GuardFailed,
                    severity: ViolationKind::GuardFailed.severity(),
                    index: None,
                    seq: Some(t.seq),
                    hash: Some(hex(&link.hash)),
                    reason: problem,
                    author: Some(t.office.to_string()),
                    paths: Vec::new(),
                });
            }
        }
        Ok(report)
    }

    /// The due date of the current stage: the earliest deadline among the rules that
    /// leave it, counted by the calendar from the signed time of entering it.
    pub fn due(&self, calendar: &Calendar) -> Result<Option<Due>, CaseError> {
        let core = self.read_core()?;
        core.due(&core.chain(), calendar)
    }
}

/// The due date of a read case's current stage (see [`CaseDocument::due`]).
pub fn due_of(
    case: &CaseDoc,
    chain: &Chain,
    calendar: &Calendar,
) -> Result<Option<Due>, CaseError> {
    due_from_facts(&facts_of(case, chain), chain, calendar)
}

/// The due date of the current stage of a chain with these facts.
fn due_from_facts(
    facts: &CaseFacts,
    chain: &Chain,
    calendar: &Calendar,
) -> Result<Option<Due>, CaseError> {
    let (Some(stage), Some(entered)) = (chain.stage(), chain.entered_at()) else {
        return Ok(None);
    };
    let policy = Policy::for_province(facts.domicile_township.get(..2).unwrap_or("00"))
        .map_err(|e| CaseError::Payload(e.to_string()))?;
    let mut best: Option<Due> = None;
    for rule in stage::rules_from(Some(stage)).filter(|r| stage::guard_holds(r.guard, facts)) {
        let Some(deadline) = rule.deadline else {
            continue;
        };
        let anchor = match deadline.anchor {
            Anchor::EnteredFrom => entered.china_date(),
            Anchor::PublicityEnd => {
                entered.china_date() + chrono::Duration::days(i64::from(policy.publicity_days))
            }
        };
        let date = calendar.deadline_from_receipt(anchor, deadline.working_days);
        let due = Due {
            date: date.date,
            provisional: date.provisional,
            working_days: deadline.working_days,
            next: rule.to,
        };
        if best.as_ref().is_none_or(|b| due.date < b.date) {
            best = Some(due);
        }
    }
    Ok(best)
}

/// The deadline of the current stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Due {
    /// Last day (Beijing) on which the next step is on time.
    pub date: chrono::NaiveDate,
    /// The calendar did not cover every date counted.
    pub provisional: bool,
    /// Working days allowed.
    pub working_days: u32,
    /// A stage the deadline is for.
    pub next: Stage,
}

/// The guards of the stage table beyond its rows: what a transition to `to`
/// needs of the case and its payload. One function for every path — an office
/// signing ([`CaseDocument::apply`]) and the verifier judging a signed history
/// ([`CaseDocument::verify`]) — so a signer cannot hold a rule the verifier
/// does not. Every problem, in words (Chinese with the English rule); empty
/// when the transition may be signed.
///
/// - reviews need an outcome matching the stage; returns, rejections,
///   suspensions and terminations need an opinion saying why;
/// - `accepted` needs every material of the one-time notice attached;
/// - leaving `publicized` (other than by withdrawal) needs the whole publicity
///   period of the domicile policy to have run;
/// - `decided` needs awards and the first paid month, and every awarded kind
///   eligible under the domicile province's policy — or a signed override
///   reason;
/// - `notified` needs the method.
///
/// [`CaseDocument::verify`] reads the case as it stood only for the guards
/// that read it (`needs_then` there), and only the parts `guard_view_at`
/// reads: a guard that starts reading the case, or another part of it, must
/// be added to both.
pub fn check_guards(
    case: &CaseDoc,
    chain: &Chain,
    from: Option<Stage>,
    to: Stage,
    at: Timestamp,
    payload: &Payload,
) -> Vec<String> {
    let mut problems = Vec::new();
    let needs_outcome = matches!(
        to,
        Stage::InitialReviewed
            | Stage::DpfReviewed
            | Stage::Returned
            | Stage::Rejected
            | Stage::Decided
    );
    if needs_outcome && payload.outcome.is_none() {
        problems.push(format!(
            "{}需要审核结论 {to} needs a review outcome",
            to.zh()
        ));
    }
    let expected = match to {
        Stage::Returned => Some(Outcome::Return),
        Stage::Rejected => Some(Outcome::Reject),
        Stage::InitialReviewed | Stage::DpfReviewed | Stage::Decided => Some(Outcome::Approve),
        _ => None,
    };
    if let (Some(expected), Some(found)) = (expected, payload.outcome)
        && expected != found
    {
        problems.push(format!(
            "{to} needs outcome {}, not {}",
            expected.code(),
            found.code()
        ));
    }
    // A contradiction a registry feed recorded before this transition must be
    // answered in the opinion of an approval.
    if matches!(
        to,
        Stage::InitialReviewed | Stage::DpfReviewed | Stage::Decided
    ) && payload.opinion.trim().is_empty()
    {
        let contradicted: Vec<&str> = case
            .confirmations
            .iter()
            .filter(|c| !c.confirmed && c.at <= at.millis())
            .map(|c| c.fact.as_str())
            .collect();
        if !contradicted.is_empty() {
            problems.push(format!(
                "数据比对有不一致，审核意见须作出说明 the registry contradicted {}: the opinion must answer it",
                contradicted.join(", ")
            ));
        }
    }
    // A resumption is a correction of the stop before it: it says why.
    let resumes = to == Stage::Active && matches!(from, Some(Stage::Suspended | Stage::Terminated));
    if (resumes
        || matches!(
            to,
            Stage::Returned | Stage::Rejected | Stage::Suspended | Stage::Terminated
        ))
        && payload.opinion.trim().is_empty()
    {
        problems.push(if resumes {
            "恢复发放须说明理由（更正的依据） resuming an award needs an opinion saying what corrected the stop".to_string()
        } else {
            format!("{}须说明理由 {to} needs an opinion saying why", to.zh())
        });
    }
    let province = case.applicant.hukou_township.get(..2).unwrap_or("00");
    let policy = Policy::for_province(province);
    if to == Stage::Accepted {
        let missing = missing_materials_of(case);
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(code, zh)| format!("{zh} ({code})"))
                .collect();
            problems.push(format!(
                "材料不全，不能受理 materials incomplete: {}",
                list.join("、")
            ));
        }
    }
    if from == Some(Stage::Publicized)
        && to != Stage::Withdrawn
        && let (Ok(policy), Some(started)) = (&policy, chain.entered_at())
    {
        let started = started.china_date();
        let ends = started + chrono::Duration::days(i64::from(policy.publicity_days));
        if at.china_date() < ends {
            problems.push(format!(
                "公示期未满 the publicity period ({} days from {started}) runs until {ends}",
                policy.publicity_days
            ));
        }
    }
    if to == Stage::Decided {
        if payload.awards.is_empty() || payload.first_paid_month.is_none() {
            problems.push(
                "审定须有补贴类别、金额和起始月份 decided needs awards and the first paid month"
                    .into(),
            );
        }
        let overridden = payload
            .override_reason
            .as_deref()
            .is_some_and(|r| !r.trim().is_empty());
        match &policy {
            Ok(policy) if !overridden => {
                let facts = applicant_facts(case);
                for award in &payload.awards {
                    let reasons = policy.ineligibility(award.kind, &facts);
                    if !reasons.is_empty() {
                        let words: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                        problems.push(format!(
                            "不符合{}{}条件：{} — the {} is not granted under {}'s policy (sign an override reason to award it anyway)",
                            policy.name,
                            award.kind.zh(),
                            words.join("；"),
                            award.kind.code(),
                            policy.name
                        ));
                    }
                }
            }
            Ok(_) => {}
            Err(err) => problems.push(err.to_string()),
        }
    }
    const METHODS: [&str; 4] = ["phone", "sms", "in_person", "letter"];
    match (&payload.method, to) {
        (None, Stage::Notified) => {
            problems.push("告知须记录方式 notified needs the notification method".into());
        }
        (Some(method), Stage::Notified) if !METHODS.contains(&method.as_str()) => {
            problems.push(format!(
                "告知方式无效 the notification method {method:?} is not one of {}",
                METHODS.join(", ")
            ));
        }
        _ => {}
    }
    problems
}

/// The eligibility facts the case states (household, certificate, allowances).
pub fn applicant_facts(case: &CaseDoc) -> tongban_domain::policy::ApplicantFacts {
    use tongban_domain::ids::{DisabilityCategory, DisabilityLevel};
    let disability = case.certificate.as_ref().and_then(|c| {
        let category = DisabilityCategory::from_code(&c.category)?;
        let level = DisabilityLevel::new(u8::try_from(c.level).ok()?)?;
        Some((category, level))
    });
    tongban_domain::policy::ApplicantFacts {
        dibao: case.household.dibao,
        low_income: case.household.low_income,
        disability,
        long_term_care: case.household.long_term_care,
        other_allowances: case.household.other_allowances.clone(),
    }
}

/// Items of the case's one-time notice with no material attached, as
/// `(code, Chinese name)`.
pub fn missing_materials_of(case: &CaseDoc) -> Vec<(String, String)> {
    let Some(notice) = &case.materials_notice else {
        return Vec::new();
    };
    notice
        .items
        .iter()
        .filter(|item| !case.materials.values().any(|m| m.kind == item.code))
        .map(|item| (item.code.clone(), item.zh.clone()))
        .collect()
}

/// The parts of a case that differ between two readings of it.
pub fn changed_parts(before: &CaseDoc, after: &CaseDoc) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut differ = |changed: bool, part: Part| {
        if changed && !parts.contains(&part) {
            parts.push(part);
        }
    };
    differ(
        before.schema_version != after.schema_version
            || before.case_id != after.case_id
            || before.created_at != after.created_at
            || before.acceptance != after.acceptance,
        Part::Identity,
    );
    differ(
        before.applicant != after.applicant
            || before.certificate != after.certificate
            || before.household != after.household
            || before.subsidy_kinds != after.subsidy_kinds
            || before.materials_notice != after.materials_notice,
        Part::Application,
    );
    differ(before.materials != after.materials, Part::Materials);
    differ(before.reviews != after.reviews, Part::Reviews);
    differ(before.decision != after.decision, Part::Decision);
    differ(
        before.notification != after.notification,
        Part::Notification,
    );
    differ(before.evaluation != after.evaluation, Part::Evaluation);
    differ(
        before.confirmations != after.confirmations,
        Part::Confirmations,
    );
    differ(
        before.transitions != after.transitions || before.seals != after.seals,
        Part::Signatures,
    );
    parts
}

/// Readable copies of a transition's payload in the document's review, decision and
/// notification fields.
#[allow(clippy::too_many_arguments)]
fn record_readable(
    case: &mut CaseDoc,
    from: Option<Stage>,
    to: Stage,
    seq: u32,
    office: &OfficeId,
    at: Timestamp,
    payload: &Payload,
    operator: &Operator,
) {
    if let Some(outcome) = payload.outcome {
        case.reviews.push(schema::Review {
            stage: to.code().to_string(),
            office: office.to_string(),
            operator: operator.to_string(),
            outcome: outcome.code().to_string(),
            opinion: payload.opinion.clone(),
            at: at.millis(),
            seq: u64::from(seq),
        });
    } else if matches!(to, Stage::Suspended | Stage::Terminated)
        || (to == Stage::Active && matches!(from, Some(Stage::Suspended | Stage::Terminated)))
    {
        case.reviews.push(schema::Review {
            stage: to.code().to_string(),
            office: office.to_string(),
            operator: operator.to_string(),
            outcome: String::new(),
            opinion: payload.opinion.clone(),
            at: at.millis(),
            seq: u64::from(seq),
        });
    }
    if to == Stage::Decided || (to == Stage::Rejected && from == Some(Stage::DpfReviewed)) {
        case.decision = Some(schema::Decision {
            outcome: if to == Stage::Decided {
                "approve"
            } else {
                "reject"
            }
            .to_string(),
            awards: payload
                .awards
                .iter()
                .map(|a| schema::Award {
                    kind: a.kind.code().to_string(),
                    monthly_yuan: u64::from(a.monthly_yuan),
                    overridden: a.overridden,
                })
                .collect(),
            first_paid_month: payload.first_paid_month.clone().unwrap_or_default(),
            reasons: payload.opinion.clone(),
            override_reason: payload.override_reason.clone().unwrap_or_default(),
            at: at.millis(),
            office: office.to_string(),
        });
    }
    if to == Stage::Notified {
        case.notification = Some(schema::Notification {
            method: payload.method.clone().unwrap_or_default(),
            at: at.millis(),
            operator: operator.to_string(),
        });
    }
}

/// The awards a decision gives by the domicile policy: each kind applied for, at the
/// certificate's level, by the amount in effect in the first paid month.
pub fn policy_awards(
    case: &CaseDoc,
    submitted: chrono::NaiveDate,
) -> Result<(Vec<AwardLine>, String), CaseError> {
    let province = case.applicant.hukou_township.get(..2).unwrap_or("00");
    let policy = Policy::for_province(province).map_err(|e| CaseError::Payload(e.to_string()))?;
    let first = first_paid_month(submitted);
    let level = case
        .certificate
        .as_ref()
        .and_then(|c| u8::try_from(c.level).ok())
        .and_then(tongban_domain::ids::DisabilityLevel::new)
        .ok_or_else(|| CaseError::Payload("no disability certificate level on the case".into()))?;
    let mut awards = Vec::new();
    for code in &case.subsidy_kinds {
        let kind = SubsidyKind::from_code(code)
            .ok_or_else(|| CaseError::Schema(format!("unknown subsidy kind {code:?}")))?;
        let amount = policy
            .monthly_amount(kind, level, first, &case.applicant.hukou_township)
            .ok_or_else(|| {
                CaseError::Payload(format!(
                    "{} has no amount for {} at level {}",
                    policy.name,
                    kind.zh(),
                    level.get()
                ))
            })?;
        awards.push(AwardLine {
            kind,
            monthly_yuan: amount,
            overridden: false,
        });
    }
    Ok((awards, first.format("%Y-%m").to_string()))
}

/// A document as it stood at `heads`, for hydrating without rebuilding it
/// (`Automerge::fork_at` replays every change up to the heads; Automerge's
/// `*_at` reads filter the same op set by the heads' clock instead). Written
/// here because autosurgeon hydrates from any [`autosurgeon::ReadDoc`] but
/// ships no view at heads.
struct At<'a> {
    doc: &'a automerge::Automerge,
    heads: &'a [ChangeHash],
}

impl autosurgeon::ReadDoc for At<'_> {
    type Parents<'b>
        = automerge::Parents<'b>
    where
        Self: 'b;

    fn get_heads(&self) -> Vec<ChangeHash> {
        self.heads.to_vec()
    }

    fn get<P: Into<automerge::Prop>>(
        &self,
        obj: &automerge::ObjId,
        prop: P,
    ) -> Result<Option<(automerge::Value<'_>, automerge::ObjId)>, automerge::AutomergeError> {
        ReadDoc::get_at(self.doc, obj, prop, self.heads)
    }

    fn object_type<O: AsRef<automerge::ObjId>>(&self, obj: O) -> Option<automerge::ObjType> {
        ReadDoc::object_type(self.doc, obj).ok()
    }

    fn map_range<'b, O, R>(&'b self, obj: O, range: R) -> automerge::iter::MapRange<'b>
    where
        R: std::ops::RangeBounds<String> + 'b,
        O: AsRef<automerge::ObjId>,
    {
        ReadDoc::map_range_at(self.doc, obj, range, self.heads)
    }

    fn list_range<O: AsRef<automerge::ObjId>, R: std::ops::RangeBounds<usize>>(
        &self,
        obj: O,
        range: R,
    ) -> automerge::iter::ListRange<'_> {
        ReadDoc::list_range_at(self.doc, obj, range, self.heads)
    }

    fn length<O: AsRef<automerge::ObjId>>(&self, obj: O) -> usize {
        ReadDoc::length_at(self.doc, obj, self.heads)
    }

    fn text<O: AsRef<automerge::ObjId>>(
        &self,
        obj: O,
    ) -> Result<String, automerge::AutomergeError> {
        ReadDoc::text_at(self.doc, obj, self.heads)
    }

    fn parents<O: AsRef<automerge::ObjId>>(
        &self,
        obj: O,
    ) -> Result<Self::Parents<'_>, automerge::AutomergeError> {
        ReadDoc::parents_at(self.doc, obj, self.heads)
    }

    fn is_empty(&self) -> bool {
        ReadDoc::keys_at(self.doc, automerge::ROOT, self.heads).count() == 0
    }
}

/// The case as it stood at `heads` (every head must be in `doc`).
pub fn read_case_at(
    doc: &automerge::Automerge,
    heads: &[ChangeHash],
) -> Result<CaseDoc, CaseError> {
    let at = At { doc, heads };
    let version: Option<u64> = match ReadDoc::get_at(doc, automerge::ROOT, "schema_version", heads)
    {
        Ok(Some((automerge::Value::Scalar(s), _))) => s.as_u64(),
        _ => None,
    };
    match version {
        Some(v) if v > SCHEMA_VERSION => return Err(CaseError::NewerSchema { found: v }),
        Some(_) => {}
        None => return Err(CaseError::Schema("schema_version is missing".into())),
    }
    autosurgeon::hydrate(&Scanned::new(&at)).map_err(|e| CaseError::Schema(e.to_string()))
}

/// The parts of the case [`check_guards`] reads, as they stood at `heads`,
/// over a copy of `current`: the applicant, certificate, household,
/// materials, the materials notice and the registry findings. Hydrating those
/// alone costs a fraction of the whole case.
fn guard_view_at(
    doc: &automerge::Automerge,
    heads: &[ChangeHash],
    current: &CaseDoc,
) -> Result<CaseDoc, CaseError> {
    let at = At { doc, heads };
    let at = Scanned::new(&at);
    let err = |e: autosurgeon::HydrateError| CaseError::Schema(e.to_string());
    let root = automerge::ROOT;
    let mut then = current.clone();
    then.applicant = autosurgeon::hydrate_prop(&at, &root, "applicant").map_err(err)?;
    then.certificate = autosurgeon::hydrate_prop(&at, &root, "certificate").map_err(err)?;
    then.household = autosurgeon::hydrate_prop(&at, &root, "household").map_err(err)?;
    then.materials = autosurgeon::hydrate_prop(&at, &root, "materials").map_err(err)?;
    then.materials_notice =
        autosurgeon::hydrate_prop(&at, &root, "materials_notice").map_err(err)?;
    then.confirmations = autosurgeon::hydrate_prop(&at, &root, "confirmations").map_err(err)?;
    Ok(then)
}

/// Writes into `doc` every top-level field of `after` that differs from
/// `before` (which `doc` holds), leaving the rest unvisited. What
/// `autosurgeon::reconcile` of the whole case writes, without walking every
/// transition and seal record at each write: an office's write touches one
/// or two fields, and the whole walk was most of a write's cost. The
/// destructuring names every field, so a new one cannot be forgotten.
fn reconcile_changed(
    doc: &mut AutoCommit,
    before: &CaseDoc,
    after: &CaseDoc,
) -> Result<(), CaseError> {
    let CaseDoc {
        schema_version,
        case_id,
        created_at,
        acceptance,
        applicant,
        certificate,
        household,
        subsidy_kinds,
        materials,
        materials_notice,
        reviews,
        decision,
        notification,
        evaluation,
        confirmations,
        transitions,
        seals,
    } = after;
    let err = |e: autosurgeon::ReconcileError| CaseError::Automerge(e.to_string());
    macro_rules! field {
        ($($name:ident),*) => {$(
            if before.$name != *$name {
                autosurgeon::reconcile_prop(doc, automerge::ROOT, stringify!($name), $name)
                    .map_err(err)?;
            }
        )*};
    }
    field!(
        schema_version,
        case_id,
        created_at,
        acceptance,
        applicant,
        certificate,
        household,
        subsidy_kinds,
        materials,
        materials_notice,
        reviews,
        decision,
        notification,
        evaluation,
        confirmations,
        transitions,
        seals
    );
    Ok(())
}
