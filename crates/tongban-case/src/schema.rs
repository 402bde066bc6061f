//! The case document's schema: plain Rust types mapped onto Automerge with
//! autosurgeon. Field names here are the names another Automerge implementation
//! sees; `docs/case-schema.md` documents them and must change with this file.
//!
//! Every value is a plain Automerge type (string, integer, boolean, bytes, map,
//! list), so the JavaScript package reads it without Tongban's code. Enumerations are
//! stored as their code names (`"living"`, `"initial_reviewed"`), times as integer
//! milliseconds since the Unix epoch (UTC), dates as `YYYY-MM-DD` strings.
//!
//! Versions: `schema_version` is [`SCHEMA_VERSION`] for documents this code writes.
//! A reader accepts any version up to its own; fields added in a later version are
//! marked `missing = ...` so that an older document hydrates with their default.
//! A document with a newer version than the reader knows is refused, not guessed at.

use std::collections::BTreeMap;
use std::fmt;

use autosurgeon::bytes::ByteVec;
use autosurgeon::{Hydrate, Reconcile};

/// The schema version this code writes.
pub const SCHEMA_VERSION: u64 = 2;

/// The whole case document.
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate)]
pub struct CaseDoc {
    /// Schema version the document was written with.
    pub schema_version: u64,
    /// The case id, `440106001-20261128-K7Q2XM`.
    pub case_id: String,
    /// When the acceptance office started the case (ms since epoch).
    pub created_at: i64,
    /// The acceptance office.
    pub acceptance: Acceptance,
    /// The applicant.
    pub applicant: Applicant,
    /// Disability certificate, if the applicant holds one.
    pub certificate: Option<Certificate>,
    /// Household status and declared allowances.
    pub household: Household,
    /// Subsidy kinds applied for: `"living"`, `"nursing"`.
    pub subsidy_kinds: Vec<String>,
    /// Materials by `kind:hash` (checklist code, then BLAKE3 content hash in hex):
    /// the same file may serve several items; electronic copies only.
    pub materials: BTreeMap<String, Material>,
    /// The one-time notice of materials given to the applicant.
    pub materials_notice: Option<MaterialsNotice>,
    /// Review opinions, in the order they were signed.
    pub reviews: Vec<Review>,
    /// The county civil affairs decision.
    pub decision: Option<Decision>,
    /// How the applicant was told the result.
    pub notification: Option<Notification>,
    /// The applicant's satisfaction (服务评价).
    pub evaluation: Option<Evaluation>,
    /// Facts confirmed by registry feeds (data comparison instead of originals).
    pub confirmations: Vec<Confirmation>,
    /// Signed stage transitions by transition hash (hex).
    pub transitions: BTreeMap<String, TransitionRecord>,
    /// Signed commits (writes that change no stage) by record hash (hex).
    pub seals: BTreeMap<String, SealRecord>,
}

/// A signed commit as stored in the document (format TBCM v1, `docs/formats.md`),
/// with readable copies of who signed and when (never trusted).
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct SealRecord {
    /// The encoded signed commit.
    pub signed: ByteVec,
    /// Signing office (readable copy).
    pub office: String,
    /// Time of signing, ms (readable copy).
    pub at: i64,
}

/// The acceptance office.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Acceptance {
    /// Office id.
    pub office: String,
    /// Its 9-digit township code.
    pub township: String,
}

/// The applicant. `Debug` masks the personal fields.
#[derive(Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Applicant {
    /// Name (personal data).
    pub name: String,
    /// Resident ID number in clear (personal data).
    pub resident_id: String,
    /// `"male"` or `"female"`, from the ID number.
    pub sex: String,
    /// Birth date `YYYY-MM-DD`, from the ID number.
    pub birth_date: String,
    /// 9-digit township of the household register (户籍地), stated separately from the ID.
    pub hukou_township: String,
    /// Contact telephone (personal data).
    pub phone: String,
    /// Current address (personal data).
    pub address: String,
    /// Guardian or agent, if someone applies on the applicant's behalf.
    pub agent: Option<String>,
}

/// The key of a material in [`CaseDoc::materials`].
pub fn material_key(kind: &str, hash_hex: &str) -> String {
    format!("{kind}:{hash_hex}")
}

impl fmt::Debug for Applicant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applicant")
            .field("name", &mask_name(&self.name))
            .field("resident_id", &mask_id(&self.resident_id))
            .field("hukou_township", &self.hukou_township)
            .finish_non_exhaustive()
    }
}

/// The fields of a case document that its signed chain, its deadlines and the
/// store's index need, hydrated without the rest ([`crate::read_core`]): reading
/// the whole [`CaseDoc`] costs several times more, most of it in the materials
/// notice, the household and the opinions, which none of these use. Field names
/// are those of [`CaseDoc`].
#[derive(Debug, Clone, PartialEq, Eq, Hydrate)]
pub struct CaseCore {
    /// Schema version the document was written with.
    pub schema_version: u64,
    /// The case id.
    pub case_id: String,
    /// The acceptance office.
    pub acceptance: Acceptance,
    /// The applicant's resident id and household-registration township.
    pub applicant: ApplicantCore,
    /// Subsidy kinds applied for.
    pub subsidy_kinds: Vec<String>,
    /// Signed stage transitions by transition hash (hex).
    pub transitions: BTreeMap<String, SignedRecord>,
}

/// Of the applicant, what routing and the resident index need. `Debug` masks the
/// id number.
#[derive(Clone, PartialEq, Eq, Hydrate)]
pub struct ApplicantCore {
    /// Resident ID number in clear (personal data).
    pub resident_id: String,
    /// 9-digit township of the household register.
    pub hukou_township: String,
}

impl fmt::Debug for ApplicantCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicantCore")
            .field("resident_id", &mask_id(&self.resident_id))
            .field("hukou_township", &self.hukou_township)
            .finish()
    }
}

/// Of a [`TransitionRecord`], the signed transition and its payload.
#[derive(Debug, Clone, PartialEq, Eq, Hydrate)]
pub struct SignedRecord {
    /// The encoded signed transition.
    pub signed: ByteVec,
    /// The payload bytes whose digest the transition carries.
    pub payload: ByteVec,
}

/// Masks a name for display: the family name kept, the rest starred.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// Masks an ID-like string: first 6 and last 4 characters kept.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

/// The disability certificate.
#[derive(Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Certificate {
    /// Full certificate number in clear (personal data).
    pub number: String,
    /// Category code: `"visual"`, `"hearing"`, `"speech"`, `"physical"`,
    /// `"intellectual"`, `"mental"`, `"multiple"`.
    pub category: String,
    /// Level 1 (most severe) to 4.
    pub level: u64,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("number", &mask_id(&self.number))
            .field("category", &self.category)
            .field("level", &self.level)
            .finish()
    }
}

/// Household status.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Household {
    /// In a dibao household.
    pub dibao: bool,
    /// In a low-income household.
    pub low_income: bool,
    /// Needs long-term care.
    pub long_term_care: bool,
    /// Similar allowances declared (elderly / work-injury / retired-cadre nursing allowance).
    pub other_allowances: Vec<String>,
}

/// One material: an electronic copy stored content-addressed in the node's store.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Material {
    /// Checklist code (`id_card`, `disability_certificate`, ...).
    pub kind: String,
    /// BLAKE3 of the content (hex): its address in the node store.
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type, e.g. `image/jpeg`, `application/pdf`.
    pub media_type: String,
    /// The file name the clerk attached.
    pub file_name: String,
    /// When it was attached (ms).
    pub added_at: i64,
    /// Office that attached it.
    pub added_by: String,
}

/// The materials notice (一次性告知) given once and completely.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct MaterialsNotice {
    /// Province whose policy decided the list.
    pub policy_province: String,
    /// Items as `code` → Chinese name, in checklist order.
    pub items: Vec<NoticeItem>,
    /// When the notice was given (ms).
    pub given_at: i64,
    /// Office that gave it.
    pub office: String,
}

/// One item of the notice.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct NoticeItem {
    /// Checklist code.
    pub code: String,
    /// Chinese name.
    pub zh: String,
}

/// A review opinion (初审, 复审, 审定 and returns or rejections).
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Review {
    /// Stage the review moved the case to (code name).
    pub stage: String,
    /// Reviewing office.
    pub office: String,
    /// Operator.
    pub operator: String,
    /// `"approve"`, `"return"` or `"reject"`.
    pub outcome: String,
    /// The opinion text.
    pub opinion: String,
    /// When (ms).
    pub at: i64,
    /// Sequence number of the signed transition that carries this review.
    pub seq: u64,
}

/// The decision of county civil affairs.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Decision {
    /// `"approve"` or `"reject"`.
    pub outcome: String,
    /// Awards per subsidy kind.
    pub awards: Vec<Award>,
    /// First paid month `YYYY-MM` (the month of application).
    pub first_paid_month: String,
    /// Reasons, required for rejection and for any override of the policy amount.
    pub reasons: String,
    /// Why a kind the policy does not grant was awarded anyway (signed in the
    /// decision's payload); empty when every kind is eligible.
    pub override_reason: String,
    /// When (ms).
    pub at: i64,
    /// Deciding office.
    pub office: String,
}

/// One awarded subsidy.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Award {
    /// Subsidy kind code.
    pub kind: String,
    /// Monthly amount in yuan.
    pub monthly_yuan: u64,
    /// True when the amount differs from the policy's, with the reason in `reasons`.
    pub overridden: bool,
}

/// How the applicant was told.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Notification {
    /// `"phone"`, `"sms"`, `"in_person"` or `"letter"`.
    pub method: String,
    /// When (ms).
    pub at: i64,
    /// Operator.
    pub operator: String,
}

/// The applicant's satisfaction, recorded once by the acceptance office.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Evaluation {
    /// Score 1-5.
    pub score: u64,
    /// Free comment.
    pub comment: String,
    /// When (ms).
    pub at: i64,
    /// The recording office.
    pub office: String,
    /// The clerk who recorded it.
    pub operator: String,
}

/// A fact a signed registry feed confirmed or contradicted
/// (`tongban_domain::registry::compare`), recorded by the reviewing office.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Confirmation {
    /// The feed's kind: `certificates`, `dibao`, `deaths`.
    pub feed: String,
    /// The feed's signed version.
    pub feed_version: String,
    /// The fact, e.g. `certificate_valid`, `dibao_off`, `deceased`.
    pub fact: String,
    /// When (ms).
    pub at: i64,
    /// Confirmed (true) or contradicted (false).
    pub confirmed: bool,
    /// In words, personal data masked.
    pub detail: String,
    /// The office that compared.
    pub office: String,
}

/// A signed stage transition as stored in the document: its canonical signed bytes
/// (what the verifier reads), the payload bytes its digest covers, and readable
/// copies of a few fields for other readers. The readable copies are never trusted.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct TransitionRecord {
    /// The encoded signed transition (format TBTR v1, `docs/formats.md`).
    pub signed: ByteVec,
    /// The payload bytes (UTF-8 JSON) whose BLAKE3 digest the transition carries.
    pub payload: ByteVec,
    /// Sequence number (readable copy).
    pub seq: u64,
    /// Stage before, empty for the first transition (readable copy).
    pub from: String,
    /// Stage after (readable copy).
    pub to: String,
    /// Signing office (readable copy).
    pub office: String,
    /// Time of signing, ms (readable copy).
    pub at: i64,
}
