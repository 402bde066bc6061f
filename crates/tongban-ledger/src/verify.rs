//! The verifier of one case's signed history.
//!
//! [`verify_case`] takes every encoded signed transition found in a case document,
//! in any order, and checks them against the directory, the stage machine, the
//! calendar and the document's own change history. It reports every violation it
//! finds, each with a stable [`ViolationKind`], a [`Severity`] and a precise reason,
//! and a [`timeline`](Report::timeline) of the chain (one branch per fork) for
//! `tongban history` and `tongban demo`.
//!
//! The checks, in the order they run:
//!
//! 1. Each entry alone: it decodes (`undecodable`), names this case (`wrong_case`),
//!    its signature is valid for the key it names (`bad_signature`), the directory
//!    certified that key for the named office at the signed time (`unknown_key`,
//!    `key_not_valid_at_time`, `revoked_key`), every head it vouches for is in the
//!    document (`head_missing`), and it is not signed in the future
//!    (`time_order`). Entries that do not decode, name another case or carry a bad
//!    signature are left out of the chain: nothing they say is authenticated.
//!    Byte-identical copies of one entry count once.
//! 2. The chain: each `prev` names an authenticated transition and `seq` follows it
//!    (`broken_chain`); exactly one transition creates the case (`missing_genesis`,
//!    `fork`); no transition has two signed successors (`fork`).
//! 3. Walking every branch from the transition that created the case: `from` is the
//!    previous `to` and the stage machine has the row (`illegal_transition`), the
//!    signing office's certificate has the role and jurisdiction the row requires
//!    (`wrong_signer`), time does not run backwards beyond the clock-skew tolerance
//!    (`time_order`), and the step was made on or before its deadline
//!    (`deadline_missed`, `provisional_deadline`). At the end of each branch, the
//!    current stage is `overdue` when every next step that has a deadline is past it.
//!
//! Branches not connected to the case's first transition are listed in the
//! timeline as detached; only the per-entry checks and the links between their own
//! members apply to them, because the facts the other checks need (the acceptance
//! office, the time the case entered a stage) come from the missing part.
//!
//! The verifier never reads a clock: `now` comes from the caller.

use std::collections::HashMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::{
    Anchor, CaseFacts, DeadlineRule, OfficeFacts, Stage, TransitionError, TransitionRule,
    check_transition, guard_holds, rule_for, rules_from,
};

use crate::directory::{Directory, KeyStatus, OfficeCertificate};
use crate::encoding::to_hex;
use crate::transition::SignedTransition;

/// Everything the verifier needs from a case document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseHistory {
    /// The case the document is for.
    pub case: CaseId,
    /// The encoded signed transitions found in the document, in any order.
    pub transitions: Vec<Vec<u8>>,
    /// The 9-digit township of the applicant's household registration, from the
    /// case document.
    pub domicile_township: String,
}

/// What the verifier checks against.
pub struct VerifyContext<'a> {
    /// The verified office directory.
    pub directory: &'a Directory,
    /// The working-day calendar.
    pub calendar: &'a Calendar,
    /// The present, from the caller's clock.
    pub now: Timestamp,
    /// How far signed times may run backwards, or ahead of `now`, before it is a
    /// violation: office clocks drift.
    pub clock_skew_ms: i64,
    /// The domicile policy's publicity period in calendar days (local applications).
    pub publicity_days: u32,
    /// Whether an Automerge change hash is in the document's history.
    pub has_head: &'a dyn Fn(&[u8; 32]) -> bool,
    /// Entries whose signatures were already checked in a batch over many cases
    /// ([`VerifiedSignatures::batch`]); the verifier does not check them again.
    pub verified: Option<&'a VerifiedSignatures>,
}

impl<'a> VerifyContext<'a> {
    /// Default clock-skew tolerance: ten minutes.
    pub const DEFAULT_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
    /// Default publicity period, as in the shipped default policy.
    pub const DEFAULT_PUBLICITY_DAYS: u32 = 7;

    /// A context with the default tolerance and publicity period.
    pub fn new(
        directory: &'a Directory,
        calendar: &'a Calendar,
        now: Timestamp,
        has_head: &'a dyn Fn(&[u8; 32]) -> bool,
    ) -> VerifyContext<'a> {
        VerifyContext {
            directory,
            calendar,
            now,
            clock_skew_ms: VerifyContext::DEFAULT_CLOCK_SKEW_MS,
            publicity_days: VerifyContext::DEFAULT_PUBLICITY_DAYS,
            has_head,
            verified: None,
        }
    }

    /// This context, trusting the signatures of the entries in `verified`.
    pub fn with_verified(self, verified: &'a VerifiedSignatures) -> VerifyContext<'a> {
        VerifyContext {
            verified: Some(verified),
            ..self
        }
    }
}

/// Entries (encoded signed transitions and signed commits, by the blake3 hash of
/// their bytes) whose
/// signatures verified together in one batch.
///
/// A node admitting many case documents at once checks all their signatures as
/// one batch, on its worker threads, ahead of the verifier. The batch decides
/// each signature as [`crate::keys::PublicKey::verify`] does alone
/// ([`crate::keys::verify_batch`]), so a signature counts as verified here
/// exactly when it would anywhere. Only
/// [`VerifiedSignatures::batch`] makes a set, so holding one means its signatures
/// were checked; everything else about each entry (the key's certificate, the
/// signer's role, the chain) is still checked by [`verify_case`].
#[derive(Debug, Default, Clone)]
pub struct VerifiedSignatures {
    hashes: std::collections::HashSet<[u8; 32]>,
}

impl VerifiedSignatures {
    /// Checks the signature of every decodable entry in `entries` as one batch
    /// ([`crate::keys::verify_batch`]). `None` when the batch fails (some
    /// signature is bad, or a key is not a usable curve point): the caller then
    /// verifies each case alone, which names the failing entry. Entries that do
    /// not decode are left out (the verifier refuses them anyway).
    pub fn batch<'b>(entries: impl IntoIterator<Item = &'b [u8]>) -> Option<VerifiedSignatures> {
        let mut hashes = std::collections::HashSet::new();
        let mut decoded = Vec::new();
        for bytes in entries {
            if let Ok(record) = crate::commit::SignedRecord::decode(bytes)
                && hashes.insert(*blake3::hash(bytes).as_bytes())
            {
                let (message, signature) = record.signed_parts();
                decoded.push((message, *signature, *record.signer_key()));
            }
        }
        if decoded.is_empty() {
            return Some(VerifiedSignatures { hashes });
        }
        let items: Vec<(&[u8], &[u8; 64], &crate::keys::PublicKey)> = decoded
            .iter()
            .map(|(message, signature, key)| (message.as_slice(), signature, key))
            .collect();
        crate::keys::verify_batch(&items).then_some(VerifiedSignatures { hashes })
    }

    /// Whether the entry with this blake3 hash verified in the batch.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.hashes.contains(hash)
    }

    /// How many distinct entries verified.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

impl std::fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyContext")
            .field("directory_version", &self.directory.version)
            .field("now", &self.now)
            .field("clock_skew_ms", &self.clock_skew_ms)
            .field("publicity_days", &self.publicity_days)
            .finish_non_exhaustive()
    }
}

/// How serious a violation is. Any error makes the report fail (non-zero exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The history is not valid as it stands.
    Error,
    /// Worth attention; the history is valid.
    Warning,
}

/// The stable kind of a violation (its `snake_case` name appears in JSON output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationKind {
    /// An entry is not a valid signed-transition encoding.
    Undecodable,
    /// The signature does not verify for the key the transition names.
    BadSignature,
    /// The transition is for another case.
    WrongCase,
    /// `prev` names no authenticated transition of the case, or `seq` does not follow.
    BrokenChain,
    /// No transition creates the case.
    MissingGenesis,
    /// Two signed successors of one transition (or two transitions creating the case).
    Fork,
    /// The directory does not certify the key for the office.
    UnknownKey,
    /// The key's certificate did not cover the signed time.
    KeyNotValidAtTime,
    /// The key was revoked at or before the signed time.
    RevokedKey,
    /// The office lacks the role or jurisdiction the stage machine requires.
    WrongSigner,
    /// The stage change is not in the table, or `from` is not the previous `to`.
    IllegalTransition,
    /// Signed before its predecessor, or after `now`, beyond the tolerance.
    TimeOrder,
    /// A vouched-for head is not in the document's history.
    HeadMissing,
    /// The step was made after its deadline.
    DeadlineMissed,
    /// The case waits at a stage whose next step is past its deadline.
    Overdue,
    /// A deadline crossed dates the calendar does not cover.
    ProvisionalDeadline,
    /// The payload kept beside a transition is not the one its digest signed
    /// (reported by the case document layer, which holds the payloads).
    PayloadMismatch,
    /// A change of the document that no valid signature of its office covers
    /// (reported by the case document layer, which reads the changes).
    UnsignedChange,
    /// A signed change that its office had no right to make, then (the
    /// write-rights table), or a malformed signature record.
    UnauthorisedChange,
    /// A transition signed although a guard of the stage table did not hold
    /// (materials incomplete, no reason, publicity period not over, an
    /// ineligible award without a signed override).
    GuardFailed,
}

impl ViolationKind {
    /// The severity of this kind.
    pub fn severity(self) -> Severity {
        match self {
            ViolationKind::Overdue | ViolationKind::ProvisionalDeadline => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// One finding of the verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What kind of violation.
    pub kind: ViolationKind,
    /// Its severity ([`ViolationKind::severity`]).
    pub severity: Severity,
    /// Position of the entry in [`CaseHistory::transitions`], when it concerns one.
    pub index: Option<usize>,
    /// The transition's `seq`, when it decoded.
    pub seq: Option<u32>,
    /// The transition's hash (hex), when it decoded; for a finding about a
    /// document change, the change's hash.
    pub hash: Option<String>,
    /// The precise reason, in words.
    pub reason: String,
    /// For a finding about a document change: the office its actor names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// For a finding about a document change: the top-level fields it touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]", serde_kind(self.kind))?;
        if let Some(index) = self.index {
            write!(f, " entry #{index}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(hash) = &self.hash {
            write!(f, " ({})", hash.get(..12).unwrap_or(hash))?;
        }
        if let Some(author) = &self.author {
            write!(f, " by {author}")?;
        }
        if !self.paths.is_empty() {
            write!(f, " at {}", self.paths.join(", "))?;
        }
        write!(f, ": {}", self.reason)
    }
}

fn serde_kind(kind: ViolationKind) -> &'static str {
    match kind {
        ViolationKind::Undecodable => "undecodable",
        ViolationKind::BadSignature => "bad_signature",
        ViolationKind::WrongCase => "wrong_case",
        ViolationKind::BrokenChain => "broken_chain",
        ViolationKind::MissingGenesis => "missing_genesis",
        ViolationKind::Fork => "fork",
        ViolationKind::UnknownKey => "unknown_key",
        ViolationKind::KeyNotValidAtTime => "key_not_valid_at_time",
        ViolationKind::RevokedKey => "revoked_key",
        ViolationKind::WrongSigner => "wrong_signer",
        ViolationKind::IllegalTransition => "illegal_transition",
        ViolationKind::TimeOrder => "time_order",
        ViolationKind::HeadMissing => "head_missing",
        ViolationKind::DeadlineMissed => "deadline_missed",
        ViolationKind::Overdue => "overdue",
        ViolationKind::ProvisionalDeadline => "provisional_deadline",
        ViolationKind::PayloadMismatch => "payload_mismatch",
        ViolationKind::UnsignedChange => "unsigned_change",
        ViolationKind::UnauthorisedChange => "unauthorised_change",
        ViolationKind::GuardFailed => "guard_failed",
    }
}

impl ViolationKind {
    /// The stable `snake_case` code (as in JSON output).
    pub fn code(self) -> &'static str {
        serde_kind(self)
    }
}

/// What the directory said of the key of an authenticated transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Valid signature by a key certified for the office at the signed time.
    Valid,
    /// Valid signature, but the key is not certified for the office.
    UnknownKey,
    /// Valid signature, but the key's certificate did not cover the signed time.
    KeyNotValidAtTime,
    /// Valid signature, but the key was revoked at or before the signed time.
    Revoked,
}

/// The deadline of one step and whether it was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadlineCheck {
    /// Working days allowed by the stage table.
    pub working_days: u32,
    /// The Beijing date the count starts after (receipt, or end of publicity).
    pub anchor_date: NaiveDate,
    /// The last Beijing date on which the step is on time.
    pub date: NaiveDate,
    /// Whether the calendar did not cover every date counted.
    pub provisional: bool,
    /// Whether the step was made on or before `date`.
    pub met: bool,
}

/// One transition as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Position in [`CaseHistory::transitions`].
    pub index: usize,
    /// Position in the chain.
    pub seq: u32,
    /// The transition's hash (hex).
    pub hash: String,
    /// Stage before.
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// Signing office.
    pub office: OfficeId,
    /// The office's name from its certificate, when the key is known.
    pub office_name: Option<String>,
    /// The clerk.
    pub operator: Operator,
    /// Signed time.
    pub at: Timestamp,
    /// Signed time in Beijing, `YYYY-MM-DD HH:MM`.
    pub at_china: String,
    /// The deadline of this step, when the stage table sets one and it could be
    /// computed (not on detached branches).
    pub deadline: Option<DeadlineCheck>,
    /// What the directory said of the signing key.
    pub signature: SignatureStatus,
}

/// The deadline of the next step of a branch's current stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeadline {
    /// The stage the case is at.
    pub stage: Stage,
    /// The next stages that have this deadline.
    pub next: Vec<Stage>,
    /// The last Beijing date on which the next step is on time.
    pub date: NaiveDate,
    /// Whether the calendar did not cover every date counted.
    pub provisional: bool,
    /// Whether `date` has passed at `now`.
    pub overdue: bool,
}

/// One path through the case's chain, from its first transition to a last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Branch {
    /// Whether the branch starts at the transition that created the case. A detached
    /// branch starts at a transition whose predecessor is missing.
    pub connected: bool,
    /// The transitions, oldest first.
    pub entries: Vec<TimelineEntry>,
    /// The next step's deadline, when the current stage has one (connected branches).
    pub next_deadline: Option<PendingDeadline>,
}

/// The verifier's findings for one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The case.
    pub case: CaseId,
    /// Entries examined (before removing identical copies).
    pub n_entries: usize,
    /// Every violation, ordered by `seq`, then entry.
    pub violations: Vec<Violation>,
    /// The chain, one branch per path (more than one on a fork).
    pub branches: Vec<Branch>,
}

impl Report {
    /// True when there is no error-level violation.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// Error-level violations.
    pub fn errors(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.severity == Severity::Error)
    }

    /// Warning-level violations.
    pub fn warnings(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.severity == Severity::Warning)
    }

    /// Whether some violation has this kind.
    pub fn has(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }

    /// The chain as branches: one for a linear history, one per path on a fork,
    /// connected branches first.
    pub fn timeline(&self) -> &[Branch] {
        &self.branches
    }
}

/// An authenticated transition: decoded, for this case, signature valid.
struct Node<'a> {
    index: usize,
    hash: [u8; 32],
    signed: SignedTransition,
    status: SignatureStatus,
    /// The certificate describing the signing office (role, division), when the
    /// directory knows the key for this office, even outside its window.
    cert: Option<&'a OfficeCertificate>,
}

struct Checker<'c, 'a> {
    ctx: &'c VerifyContext<'a>,
    violations: Vec<Violation>,
}

impl Checker<'_, '_> {
    fn report(&mut self, kind: ViolationKind, node: Option<&Node<'_>>, reason: String) {
        self.violations.push(Violation {
            kind,
            severity: kind.severity(),
            index: node.map(|n| n.index),
            seq: node.map(|n| n.signed.transition.seq),
            hash: node.map(|n| to_hex(&n.hash)),
            reason,
            author: None,
            paths: Vec::new(),
        });
    }
}

/// Verifies one case's history. Never panics, whatever the bytes.
pub fn verify_case(input: &CaseHistory, ctx: &VerifyContext<'_>) -> Report {
    let mut checker = Checker {
        ctx,
        violations: Vec::new(),
    };
    let (nodes, refused) = authenticate(input, &mut checker);
    let chain = link(&nodes, &refused, &mut checker);
    let branches = walk(input, &nodes, &chain, &mut checker);
    let mut violations = checker.violations;
    violations.sort_by_key(|v| (v.seq.unwrap_or(u32::MAX), v.index.unwrap_or(usize::MAX)));
    Report {
        case: input.case.clone(),
        n_entries: input.transitions.len(),
        violations,
        branches,
    }
}

fn key_word(kind: &str, at: Timestamp) -> String {
    format!("{kind} {}", at.china_display())
}

/// Whether the signatures of every decodable transition of the case verify
/// ([`crate::keys::verify_batch`]): the common case. When they do not, each is
/// checked again as the verifier walks the entries, so the failing one is named.
fn batch_verifies(input: &CaseHistory) -> bool {
    let decoded: Vec<(Vec<u8>, SignedTransition)> = input
        .transitions
        .iter()
        .filter_map(|bytes| SignedTransition::decode(bytes).ok())
        .filter(|t| t.transition.case == input.case)
        .map(|t| (t.transition.signed_bytes(), t))
        .collect();
    if decoded.len() < 2 {
        return false;
    }
    let items: Vec<(&[u8], &[u8; 64], &crate::keys::PublicKey)> = decoded
        .iter()
        .map(|(message, t)| (message.as_slice(), &t.signature, &t.transition.signer_key))
        .collect();
    crate::keys::verify_batch(&items)
}

/// Step 1: decode, authenticate and check each entry alone.
fn authenticate<'a>(
    input: &CaseHistory,
    checker: &mut Checker<'_, 'a>,
) -> (Vec<Node<'a>>, HashMap<[u8; 32], usize>) {
    let ctx = checker.ctx;
    let directory: &'a Directory = ctx.directory;
    let mut nodes: Vec<Node<'a>> = Vec::new();
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    // Entries refused as unauthenticated, by hash, for precise broken-chain reasons.
    let mut refused: HashMap<[u8; 32], usize> = HashMap::new();
    let hashes: Vec<[u8; 32]> = input
        .transitions
        .iter()
        .map(|bytes| *blake3::hash(bytes).as_bytes())
        .collect();
    let pre_verified = |hash: &[u8; 32]| ctx.verified.is_some_and(|v| v.contains(hash));
    let batch_verified = hashes.iter().all(pre_verified) || batch_verifies(input);
    for (index, bytes) in input.transitions.iter().enumerate() {
        let hash = hashes[index];
        if seen.insert(hash, index).is_some() {
            continue;
        }
        let signed = match SignedTransition::decode(bytes) {
            Ok(signed) => signed,
            Err(err) => {
                checker.violations.push(Violation {
                    kind: ViolationKind::Undecodable,
                    severity: ViolationKind::Undecodable.severity(),
                    index: Some(index),
                    seq: None,
                    hash: Some(to_hex(&hash)),
                    reason: format!(
                        "entry #{index} ({} bytes) does not decode: {err}",
                        bytes.len()
                    ),
                    author: None,
                    paths: Vec::new(),
                });
                refused.insert(hash, index);
                continue;
            }
        };
        let mut node = Node {
            index,
            hash,
            signed,
            status: SignatureStatus::Valid,
            cert: None,
        };
        let t = &node.signed.transition;
        if t.case != input.case {
            let reason = format!("transition is for case {}, not {}", t.case, input.case);
            checker.report(ViolationKind::WrongCase, Some(&node), reason);
            refused.insert(hash, index);
            continue;
        }
        if !batch_verified && !node.signed.verify_signature() {
            let reason = format!(
                "the signature does not verify for the key it names ({}, office {}): the transition was altered or not signed by that key",
                t.signer_key.fingerprint(),
                t.office
            );
            checker.report(ViolationKind::BadSignature, Some(&node), reason);
            refused.insert(hash, index);
            continue;
        }
        let (status, cert, problem) = key_authority(directory, &t.office, &t.signer_key, t.at);
        let signed_at = || key_word("signed at", t.at);
        let missing: Vec<[u8; 32]> = t
            .heads
            .iter()
            .filter(|head| !(ctx.has_head)(head))
            .copied()
            .collect();
        let future = t.at.0.saturating_sub(ctx.now.0) > ctx.clock_skew_ms;
        let future_reason = || {
            format!(
                "{}, later than now ({}) by more than the {} s clock tolerance",
                signed_at(),
                ctx.now.china_display(),
                ctx.clock_skew_ms / 1000
            )
        };
        node.status = status;
        node.cert = cert;
        if let Some((kind, reason)) = problem {
            checker.report(kind, Some(&node), reason);
        }
        for head in missing {
            let reason = format!(
                "vouches for document change {} which is not in the case document's history",
                to_hex(&head)
            );
            checker.report(ViolationKind::HeadMissing, Some(&node), reason);
        }
        if future {
            checker.report(ViolationKind::TimeOrder, Some(&node), future_reason());
        }
        nodes.push(node);
    }
    (nodes, refused)
}

/// The shape of the authenticated transitions: who follows whom.
struct Chain {
    /// Node of the predecessor, when linked.
    parent: Vec<Option<usize>>,
    /// Successors of each node, ordered by signed time then hash.
    children: Vec<Vec<usize>>,
    /// Transitions creating the case (seq 0, no prev), ordered by time then hash.
    genesis: Vec<usize>,
    /// Starts of detached branches: transitions whose predecessor is not linked.
    detached: Vec<usize>,
}

/// Step 2: link transitions by `prev` and report broken links and forks.
fn link(
    nodes: &[Node<'_>],
    refused: &HashMap<[u8; 32], usize>,
    checker: &mut Checker<'_, '_>,
) -> Chain {
    // Two encodings of one signed statement (the same transition, another
    // valid signature over it) are one transition, not a fork: the one with
    // the lowest hash stands for both, and a successor may name either.
    let mut canonical: Vec<usize> = (0..nodes.len()).collect();
    for i in 0..nodes.len() {
        if let Some(j) = (0..nodes.len()).find(|&j| {
            nodes[j].signed.transition == nodes[i].signed.transition
                && nodes[j].hash < nodes[canonical[i]].hash
        }) {
            canonical[i] = j;
        }
    }
    let by_hash: HashMap<[u8; 32], usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.hash, canonical[i]))
        .collect();
    let mut chain = Chain {
        parent: vec![None; nodes.len()],
        children: vec![Vec::new(); nodes.len()],
        genesis: Vec::new(),
        detached: Vec::new(),
    };
    for (i, node) in nodes.iter().enumerate() {
        if canonical[i] != i {
            continue;
        }
        let t = &node.signed.transition;
        match t.prev {
            None if t.seq == 0 => chain.genesis.push(i),
            None => {
                let reason = format!(
                    "seq {} names no previous transition (only seq 0 may)",
                    t.seq
                );
                checker.report(ViolationKind::BrokenChain, Some(node), reason);
                chain.detached.push(i);
            }
            Some(prev) => {
                if let Some(&p) = by_hash.get(&prev) {
                    let parent_seq = nodes[p].signed.transition.seq;
                    if parent_seq.checked_add(1) != Some(t.seq) {
                        let reason = format!(
                            "seq {} follows the transition with seq {parent_seq} (entry #{}); it must be {}",
                            t.seq,
                            nodes[p].index,
                            u64::from(parent_seq) + 1
                        );
                        checker.report(ViolationKind::BrokenChain, Some(node), reason);
                    }
                    chain.parent[i] = Some(p);
                    chain.children[p].push(i);
                } else {
                    let reason = match refused.get(&prev) {
                        Some(entry) => format!(
                            "the previous transition {} is entry #{entry}, which was refused (see its violation)",
                            short(&prev)
                        ),
                        None => format!(
                            "the previous transition {} is not in the case history",
                            short(&prev)
                        ),
                    };
                    checker.report(ViolationKind::BrokenChain, Some(node), reason);
                    chain.detached.push(i);
                }
            }
        }
    }
    let order = |i: &usize| (nodes[*i].signed.transition.at, nodes[*i].hash);
    chain.genesis.sort_by_key(order);
    chain.detached.sort_by_key(order);
    for children in &mut chain.children {
        children.sort_by_key(order);
    }
    match chain.genesis.as_slice() {
        [] => checker.report(
            ViolationKind::MissingGenesis,
            None,
            if nodes.is_empty() {
                "the case has no authenticated transition".to_string()
            } else {
                "no authenticated transition creates the case (seq 0 without a previous transition)"
                    .to_string()
            },
        ),
        [_] => {}
        [first, rest @ ..] => {
            for &other in rest {
                let reason = format!(
                    "a second transition creates the case; the first is entry #{} ({})",
                    nodes[*first].index,
                    short(&nodes[*first].hash)
                );
                checker.report(ViolationKind::Fork, Some(&nodes[other]), reason);
            }
        }
    }
    for (p, children) in chain.children.iter().enumerate() {
        if children.len() > 1 {
            let list: Vec<String> = children
                .iter()
                .map(|&c| {
                    let t = &nodes[c].signed.transition;
                    format!(
                        "entry #{} → {} by {} ({})",
                        nodes[c].index,
                        t.to,
                        t.office,
                        short(&nodes[c].hash)
                    )
                })
                .collect();
            let reason = format!("{} signed successors: {}", children.len(), list.join("; "));
            checker.report(ViolationKind::Fork, Some(&nodes[p]), reason);
        }
    }
    chain
}

fn short(hash: &[u8; 32]) -> String {
    to_hex(hash.get(..6).unwrap_or_default())
}

/// Facts the chain-dependent checks of one tree share.
struct TreeFacts {
    facts: CaseFacts,
}

/// Step 3: walk every branch, check each step in context, build the timeline.
fn walk(
    input: &CaseHistory,
    nodes: &[Node<'_>],
    chain: &Chain,
    checker: &mut Checker<'_, '_>,
) -> Vec<Branch> {
    let mut entries: Vec<Option<TimelineEntry>> = vec![None; nodes.len()];
    let mut visited = vec![false; nodes.len()];
    let mut branches = Vec::new();
    for (&root, connected) in chain
        .genesis
        .iter()
        .map(|r| (r, true))
        .chain(chain.detached.iter().map(|r| (r, false)))
    {
        let tree = connected.then(|| genesis_facts(input, &nodes[root], checker));
        // Depth-first over an explicit stack (a chain may be long): (node, approved).
        let mut stack = vec![(root, false)];
        let mut leaves = Vec::new();
        while let Some((i, approved_before)) = stack.pop() {
            if visited[i] {
                continue;
            }
            visited[i] = true;
            let parent = chain.parent[i];
            let (deadline, approved_after) =
                check_step(nodes, i, parent, tree.as_ref(), approved_before, checker);
            entries[i] = Some(timeline_entry(&nodes[i], deadline));
            if chain.children[i].is_empty() {
                leaves.push((i, approved_after));
            }
            for &child in chain.children[i].iter().rev() {
                stack.push((child, approved_after));
            }
        }
        for (leaf, approved) in leaves {
            let next_deadline = tree
                .as_ref()
                .and_then(|tree| pending_deadline(&nodes[leaf], tree, approved, checker));
            let path = path_to(leaf, root, chain);
            branches.push(Branch {
                connected,
                entries: path.iter().filter_map(|&i| entries[i].clone()).collect(),
                next_deadline,
            });
        }
    }
    for (i, seen) in visited.iter().enumerate() {
        if !seen {
            // Only reachable through a hash cycle, which BLAKE3 makes infeasible; kept
            // so that the verifier's account of every entry stays complete.
            let reason = "the transition is not reachable from any start of the chain (a cycle of prev hashes)";
            checker.report(
                ViolationKind::BrokenChain,
                Some(&nodes[i]),
                reason.to_string(),
            );
        }
    }
    branches
}

/// Node indices from `root` to `leaf`, following parents.
fn path_to(leaf: usize, root: usize, chain: &Chain) -> Vec<usize> {
    let mut path = vec![leaf];
    let mut current = leaf;
    while current != root {
        match chain.parent[current] {
            Some(p) if !path.contains(&p) => {
                path.push(p);
                current = p;
            }
            _ => break,
        }
    }
    path.reverse();
    path
}

/// The case facts a tree's first transition establishes, and checks of that first
/// transition against the case id.
fn genesis_facts(
    input: &CaseHistory,
    genesis: &Node<'_>,
    checker: &mut Checker<'_, '_>,
) -> TreeFacts {
    let t = &genesis.signed.transition;
    let id_township = input.case.acceptance_township().to_string();
    let acceptance_township = match genesis.cert {
        Some(cert) => {
            if cert.division != id_township {
                let reason = format!(
                    "the case id names acceptance township {id_township}, but the transition creating it was signed by {} of division {}",
                    t.office, cert.division
                );
                checker.report(ViolationKind::WrongSigner, Some(genesis), reason);
            }
            cert.division.clone()
        }
        // Unknown key (reported): fall back on the township the case id names.
        None => id_township,
    };
    TreeFacts {
        facts: CaseFacts {
            acceptance_office: t.office.as_str().to_string(),
            acceptance_township,
            domicile_township: input.domicile_township.clone(),
            approved: false,
        },
    }
}

/// Checks one step against its predecessor. Returns its deadline check and whether
/// the case is approved after it.
fn check_step(
    nodes: &[Node<'_>],
    i: usize,
    parent: Option<usize>,
    tree: Option<&TreeFacts>,
    approved_before: bool,
    checker: &mut Checker<'_, '_>,
) -> (Option<DeadlineCheck>, bool) {
    let node = &nodes[i];
    let t = &node.signed.transition;
    let approved_after = approved_before || t.to == Stage::Decided;
    let parent = parent.map(|p| &nodes[p]);
    let ctx = checker.ctx;

    // Links that need no case facts: stage continuity and time order.
    match parent {
        Some(p) => {
            let pt = &p.signed.transition;
            if t.from != Some(pt.to) {
                let reason = format!(
                    "claims to move the case from {}, but the previous transition (seq {}) moved it to {}",
                    stage_name(t.from),
                    pt.seq,
                    pt.to
                );
                checker.report(ViolationKind::IllegalTransition, Some(node), reason);
            }
            if pt.at.0.saturating_sub(t.at.0) > ctx.clock_skew_ms {
                let reason = format!(
                    "signed at {}, before the previous transition (seq {}, {}) by more than the {} s clock tolerance",
                    t.at.china_display(),
                    pt.seq,
                    pt.at.china_display(),
                    ctx.clock_skew_ms / 1000
                );
                checker.report(ViolationKind::TimeOrder, Some(node), reason);
            }
        }
        None if tree.is_some() && t.from.is_some() => {
            let reason = format!(
                "the first transition must create the case (from none), but claims from {}",
                stage_name(t.from)
            );
            checker.report(ViolationKind::IllegalTransition, Some(node), reason);
        }
        None => {}
    }

    let Some(tree) = tree else {
        return (None, approved_after);
    };
    let facts = CaseFacts {
        approved: approved_before,
        ..tree.facts.clone()
    };
    let rule = stage_rule(node, &facts, checker);
    let deadline = match (rule.and_then(|r| r.deadline), parent) {
        (Some(d), Some(p)) => Some(check_deadline(node, p, d, checker)),
        _ => None,
    };
    (deadline, approved_after)
}

fn stage_name(stage: Option<Stage>) -> &'static str {
    stage.map_or("(none)", Stage::code)
}

/// The table row of a step, reporting an illegal step or a wrong signer.
fn stage_rule(
    node: &Node<'_>,
    facts: &CaseFacts,
    checker: &mut Checker<'_, '_>,
) -> Option<&'static TransitionRule> {
    let t = &node.signed.transition;
    let Some(cert) = node.cert else {
        // The key is unknown (reported): the office's role and division are not
        // known, so only the table itself can be checked.
        return match rule_for(t.from, t.to, facts) {
            Ok(rule) => Some(rule),
            Err(err) => {
                checker.report(
                    ViolationKind::IllegalTransition,
                    Some(node),
                    err.to_string(),
                );
                None
            }
        };
    };
    let office = OfficeFacts {
        office: t.office.as_str().to_string(),
        role: cert.role,
        division: cert.division.clone(),
    };
    match check_transition(t.from, t.to, facts, &office) {
        Ok(rule) => Some(rule),
        Err(err @ TransitionError::WrongSigner { .. }) => {
            checker.report(ViolationKind::WrongSigner, Some(node), err.to_string());
            rule_for(t.from, t.to, facts).ok()
        }
        Err(err) => {
            checker.report(
                ViolationKind::IllegalTransition,
                Some(node),
                err.to_string(),
            );
            None
        }
    }
}

/// The Beijing date a deadline counts from: the day the case entered the previous
/// stage, or the last day of the publicity period that began then.
fn anchor_date(parent: &Node<'_>, rule: DeadlineRule, publicity_days: u32) -> NaiveDate {
    let entered = parent.signed.transition.at.china_date();
    match rule.anchor {
        Anchor::EnteredFrom => entered,
        Anchor::PublicityEnd => entered
            .checked_add_days(Days::new(u64::from(publicity_days)))
            .unwrap_or(NaiveDate::MAX),
    }
}

fn anchor_words(anchor: Anchor) -> &'static str {
    match anchor {
        Anchor::EnteredFrom => "the case entered",
        Anchor::PublicityEnd => "the publicity period ended after",
    }
}

fn check_deadline(
    node: &Node<'_>,
    parent: &Node<'_>,
    rule: DeadlineRule,
    checker: &mut Checker<'_, '_>,
) -> DeadlineCheck {
    let ctx = checker.ctx;
    let t = &node.signed.transition;
    let pt = &parent.signed.transition;
    let anchor = anchor_date(parent, rule, ctx.publicity_days);
    let due = ctx
        .calendar
        .deadline_from_receipt(anchor, rule.working_days);
    let done = t.at.china_date();
    let met = done <= due.date;
    if !met {
        let late = ctx.calendar.working_days_late(due.date, done);
        let reason = format!(
            "{} signed on {done}, after its deadline {} ({} working days from {anchor}, when {} {}); late by {} working day(s){}",
            t.to,
            due.date,
            rule.working_days,
            anchor_words(rule.anchor),
            pt.to,
            late.days,
            if late.provisional {
                ", provisionally"
            } else {
                ""
            }
        );
        checker.report(ViolationKind::DeadlineMissed, Some(node), reason);
    }
    if let Some(warning) = due.warning() {
        let reason = format!(
            "the deadline {} of {} is provisional: {warning}",
            due.date, t.to
        );
        checker.report(ViolationKind::ProvisionalDeadline, Some(node), reason);
    }
    DeadlineCheck {
        working_days: rule.working_days,
        anchor_date: anchor,
        date: due.date,
        provisional: due.provisional,
        met,
    }
}

/// The deadline of the next step from a branch's last transition, reporting
/// `overdue` when every next step that has a deadline is past it. Rules without a
/// deadline (an applicant's withdrawal, say) do not make a stage less overdue.
fn pending_deadline(
    last: &Node<'_>,
    tree: &TreeFacts,
    approved: bool,
    checker: &mut Checker<'_, '_>,
) -> Option<PendingDeadline> {
    let ctx = checker.ctx;
    let t = &last.signed.transition;
    let facts = CaseFacts {
        approved,
        ..tree.facts.clone()
    };
    let rules: Vec<(Stage, DeadlineRule)> = rules_from(Some(t.to))
        .filter(|rule| guard_holds(rule.guard, &facts))
        .filter_map(|rule| rule.deadline.map(|d| (rule.to, d)))
        .collect();
    let (_, first) = rules.first().copied()?;
    // In the table every deadline leaving one stage is the same; should that change,
    // the latest one decides whether the stage is overdue.
    let mut due = ctx.calendar.deadline_from_receipt(
        anchor_date(last, first, ctx.publicity_days),
        first.working_days,
    );
    for &(_, rule) in &rules {
        let other = ctx.calendar.deadline_from_receipt(
            anchor_date(last, rule, ctx.publicity_days),
            rule.working_days,
        );
        if other.date > due.date {
            due = other;
        }
    }
    let today = ctx.now.china_date();
    let overdue = today > due.date;
    let next: Vec<Stage> = rules.iter().map(|&(stage, _)| stage).collect();
    if overdue {
        let names: Vec<&str> = next.iter().map(|s| s.code()).collect();
        let reason = format!(
            "the case has been at {} since {}; the next step ({}) was due by {}{}, and today is {today}",
            t.to,
            t.at.china_date(),
            names.join(" / "),
            due.date,
            if due.provisional {
                " (provisional)"
            } else {
                ""
            }
        );
        checker.report(ViolationKind::Overdue, Some(last), reason);
    }
    Some(PendingDeadline {
        stage: t.to,
        next,
        date: due.date,
        provisional: due.provisional,
        overdue,
    })
}

fn timeline_entry(node: &Node<'_>, deadline: Option<DeadlineCheck>) -> TimelineEntry {
    let t = &node.signed.transition;
    TimelineEntry {
        index: node.index,
        seq: t.seq,
        hash: to_hex(&node.hash),
        from: t.from,
        to: t.to,
        office: t.office.clone(),
        office_name: node.cert.map(|cert| cert.name.clone()),
        operator: t.operator.clone(),
        at: t.at,
        at_china: t.at.china_display(),
        deadline,
        signature: node.status,
    }
}

/// What the directory says of `key` signing for `office` at `at`: the status a
/// report shows, the certificate when the key is known, and the violation when
/// the signature carries no authority. One rule for every signed record of a
/// case (stage transitions and signed commits alike).
pub fn key_authority<'d>(
    directory: &'d Directory,
    office: &OfficeId,
    key: &crate::keys::PublicKey,
    at: Timestamp,
) -> (
    SignatureStatus,
    Option<&'d OfficeCertificate>,
    Option<(ViolationKind, String)>,
) {
    let signed_at = || key_word("signed at", at);
    match directory.certificate_for_key_at(office, key, at) {
        KeyStatus::Valid(cert) => (SignatureStatus::Valid, Some(cert), None),
        KeyStatus::UnknownKey => {
            let elsewhere: Vec<&str> = directory
                .certificates
                .iter()
                .filter(|entry| entry.cert.public_key == *key)
                .map(|entry| entry.cert.office.as_str())
                .collect();
            let reason = if elsewhere.is_empty() {
                format!(
                    "key {} is not in directory version {}",
                    key.fingerprint(),
                    directory.version
                )
            } else {
                format!(
                    "key {} is certified for {}, not for office {}",
                    key.fingerprint(),
                    elsewhere.join(", "),
                    office
                )
            };
            (
                SignatureStatus::UnknownKey,
                None,
                Some((ViolationKind::UnknownKey, reason)),
            )
        }
        KeyStatus::NotYetValid { not_before } => (
            SignatureStatus::KeyNotValidAtTime,
            directory.certificate_for_key(office, key),
            Some((
                ViolationKind::KeyNotValidAtTime,
                format!(
                    "{}, but the certificate of {} for key {} is valid only from {}",
                    signed_at(),
                    office,
                    key.fingerprint(),
                    not_before.china_display()
                ),
            )),
        ),
        KeyStatus::Expired { not_after } => (
            SignatureStatus::KeyNotValidAtTime,
            directory.certificate_for_key(office, key),
            Some((
                ViolationKind::KeyNotValidAtTime,
                format!(
                    "{}, but the certificate of {} for key {} expired at {}",
                    signed_at(),
                    office,
                    key.fingerprint(),
                    not_after.china_display()
                ),
            )),
        ),
        KeyStatus::Revoked {
            effective,
            revocation,
        } => (
            SignatureStatus::Revoked,
            directory.certificate_for_key(office, key),
            Some((
                ViolationKind::RevokedKey,
                format!(
                    "{}, but key {} of {} was revoked from {} (revocation serial {}: {})",
                    signed_at(),
                    key.fingerprint(),
                    office,
                    effective.china_display(),
                    revocation.serial,
                    if revocation.reason.is_empty() {
                        "no reason given"
                    } else {
                        &revocation.reason
                    }
                ),
            )),
        ),
    }
}
