//! The signed attestation a supervisor receives of a case, and the supervisor's
//! own reading of it.
//!
//! A supervisor (省级 / 国家监管) never holds a case document: names, ID
//! numbers, contacts and scans must not reach it. What reaches it is one
//! [`SignedAttestation`] per case and office: an office of the case (the
//! acceptance office, the domicile township, the domicile county's DPF or civil
//! affairs bureau) signs, after each write it makes, the case's signed stage
//! transitions as they stand and the case's non-personal facts — the domicile
//! township, the kinds applied for, the decision's awards, the evaluation score.
//!
//! The supervisor trusts none of it blindly. [`supervise`] verifies every
//! transition's signature and the chain with the ledger's own verifier
//! ([`crate::verify::verify_case`]), counting each deadline from the signed
//! times with the shared calendar; the facts count only from the office whose
//! write right they are (the awards from the domicile county's civil affairs
//! bureau, which decided; the evaluation from the acceptance office, which
//! recorded it), and only when that office's signature and key hold.
//!
//! # Byte layout (version 1)
//!
//! Integers are big-endian; `str` is a `u16` byte length and UTF-8; `nested` a
//! `u32` byte length and the bytes.
//!
//! | field            | size      | notes                                              |
//! |------------------|-----------|----------------------------------------------------|
//! | magic            | 4         | `TBSV`                                             |
//! | version          | 1         | `1`                                                |
//! | case             | 2 + n     | str, a [`CaseId`], n ≤ 64                          |
//! | office           | 2 + n     | str, the attesting [`OfficeId`], n ≤ 64            |
//! | at               | 8         | i64, ms since the Unix epoch, UTC                  |
//! | domicile         | 2 + 9     | str, the 9-digit domicile township                 |
//! | kinds            | 1         | bit 0 living, bit 1 nursing; other bits 0          |
//! | n_transitions    | 2         | u16, at most 256                                   |
//! | transitions      | …         | nested, each a `TBTR` encoding of ≤ 4 KiB, distinct|
//! | n_awards         | 1         | u8, at most 2                                      |
//! | awards           | 5 × n     | kind byte (1 living, 2 nursing), u32 yuan a month  |
//! | first_paid_month | 2 + n     | str, `YYYY-MM` or empty                            |
//! | has_evaluation   | 1         | `0` or `1`                                         |
//! | evaluation       | 0 or 9    | score u8 (1–5), i64 ms recorded                    |
//! | signer_key       | 32        | ed25519 public key of the attesting office         |
//! | signature        | 64        | ed25519 over every preceding byte                  |
//!
//! Decoding is total and canonical: any bytes give a value or a
//! [`DecodeError`] naming the field and offset.

use std::collections::{BTreeMap, BTreeSet};

use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};
use tongban_domain::payroll::YearMonth;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::{self, Role, Stage};
use tongban_domain::supervision::{Award, Evaluation, Pending, Step, SupervisedCase};

use crate::directory::Directory;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::keys::{OfficeKey, PublicKey};
use crate::transition::SignError;
use crate::verify::{CaseHistory, SignatureStatus, VerifyContext, key_authority, verify_case};

const MAGIC: &[u8] = b"TBSV";
const FORMAT_VERSION: u8 = 1;
const MAX_CASE: usize = 64;
const MAX_OFFICE: usize = 64;
/// Most transitions one attestation carries.
pub const MAX_TRANSITIONS: usize = 256;
/// Longest transition encoding an attestation carries.
const MAX_TRANSITION_BYTES: usize = 4096;
/// Longest attestation encoding, in bytes: the limit a receiver applies before
/// decoding.
pub const MAX_ATTESTATION_BYTES: usize = 1 << 20;

/// What an office attests of a case, before or after signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The case.
    pub case: CaseId,
    /// The attesting office.
    pub office: OfficeId,
    /// When it attested (its clock).
    pub at: Timestamp,
    /// The 9-digit township of the applicant's household registration.
    pub domicile: String,
    /// The kinds applied for.
    pub kinds: Vec<SubsidyKind>,
    /// The case's signed transitions (`TBTR` encodings), distinct, in the order
    /// the document lists them.
    pub transitions: Vec<Vec<u8>>,
    /// The decision's awards, as the attesting office holds them.
    pub awards: Vec<Award>,
    /// The decision's first paid month.
    pub first_paid_month: Option<YearMonth>,
    /// The evaluation score and when it was recorded.
    pub evaluation: Option<(u8, Timestamp)>,
    /// The attesting office's public key.
    pub signer_key: PublicKey,
}

/// An attestation with its office's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAttestation {
    /// The attestation.
    pub attestation: Attestation,
    /// ed25519 by `attestation.signer_key` over the encoding before it.
    pub signature: [u8; 64],
}

fn kind_byte(kind: SubsidyKind) -> u8 {
    match kind {
        SubsidyKind::Living => 1,
        SubsidyKind::Nursing => 2,
    }
}

impl Attestation {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, FORMAT_VERSION);
        w.str(self.case.as_str());
        w.str(self.office.as_str());
        w.i64(self.at.0);
        w.str(&self.domicile);
        w.u8(self
            .kinds
            .iter()
            .fold(0, |bits, k| bits | (1 << (kind_byte(*k) - 1))));
        w.u16(u16::try_from(self.transitions.len()).unwrap_or(u16::MAX));
        for t in &self.transitions {
            w.nested(t);
        }
        w.u8(u8::try_from(self.awards.len()).unwrap_or(u8::MAX));
        for award in &self.awards {
            w.u8(kind_byte(award.kind));
            w.u32(award.monthly_yuan);
        }
        w.str(
            &self
                .first_paid_month
                .map(|m| m.to_string())
                .unwrap_or_default(),
        );
        match self.evaluation {
            Some((score, at)) => {
                w.u8(1);
                w.u8(score);
                w.i64(at.0);
            }
            None => w.u8(0),
        }
        w.raw(self.signer_key.as_bytes());
        w.finish()
    }

    /// Puts the attestation in its one canonical form: kinds sorted and
    /// distinct, transitions distinct, awards by kind.
    fn canonical(mut self) -> Attestation {
        self.kinds.sort_unstable();
        self.kinds.dedup();
        let mut seen = BTreeSet::new();
        self.transitions.retain(|t| seen.insert(t.clone()));
        self.awards.sort_by_key(|a| a.kind);
        self.awards.dedup_by_key(|a| a.kind);
        self
    }
}

impl SignedAttestation {
    /// Signs `attestation` with the office's key, in canonical form.
    pub fn sign(attestation: Attestation, key: &OfficeKey) -> Result<SignedAttestation, SignError> {
        let attestation = attestation.canonical();
        let actual = key.public();
        if attestation.signer_key != actual {
            return Err(SignError::KeyMismatch {
                named: attestation.signer_key,
                actual,
            });
        }
        let signature = key.sign(&attestation.signed_bytes());
        Ok(SignedAttestation {
            attestation,
            signature,
        })
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.attestation.signed_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Its identity: BLAKE3 of the full encoding.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Whether the signature is valid for `attestation.signer_key` (strict).
    pub fn verify_signature(&self) -> bool {
        self.attestation
            .signer_key
            .verify(&self.attestation.signed_bytes(), &self.signature)
    }

    /// Decodes without checking the signature. Total and canonical.
    pub fn decode(bytes: &[u8]) -> Result<SignedAttestation, DecodeError> {
        if bytes.len() > MAX_ATTESTATION_BYTES {
            return Err(DecodeError::TooLong {
                field: "attestation",
                offset: 0,
                found: bytes.len(),
                max: MAX_ATTESTATION_BYTES,
            });
        }
        let mut r = Reader::open(bytes, MAGIC, "TBSV attestation", FORMAT_VERSION)?;
        let case = r.parsed("case", MAX_CASE, CaseId::parse)?;
        let office = r.parsed("office", MAX_OFFICE, OfficeId::parse)?;
        let at = Timestamp(r.i64("at")?);
        let domicile = r.parsed("domicile", 9, |s| {
            DivisionCode::parse(s)
                .ok()
                .filter(|_| s.len() == 9)
                .map(|_| s.to_string())
                .ok_or("not a 9-digit township code")
        })?;
        let offset = r.offset();
        let bits = r.u8("kinds")?;
        if bits & !0b11 != 0 {
            return Err(DecodeError::InvalidValue {
                field: "kinds",
                offset,
                reason: format!("unknown kind bits {bits:#04x}"),
            });
        }
        let kinds: Vec<SubsidyKind> = SubsidyKind::ALL
            .into_iter()
            .filter(|k| bits & (1 << (kind_byte(*k) - 1)) != 0)
            .collect();
        let offset = r.offset();
        let n = usize::from(r.u16("n_transitions")?);
        if n > MAX_TRANSITIONS {
            return Err(DecodeError::TooLong {
                field: "n_transitions",
                offset,
                found: n,
                max: MAX_TRANSITIONS,
            });
        }
        let mut transitions = Vec::with_capacity(n);
        let mut seen = BTreeSet::new();
        for _ in 0..n {
            let (bytes, offset) = r.nested("transition", MAX_TRANSITION_BYTES)?;
            if !seen.insert(bytes) {
                return Err(DecodeError::NonCanonical {
                    field: "transition",
                    offset,
                    reason: "a transition repeated",
                });
            }
            transitions.push(bytes.to_vec());
        }
        let offset = r.offset();
        let n = usize::from(r.u8("n_awards")?);
        if n > 2 {
            return Err(DecodeError::TooLong {
                field: "n_awards",
                offset,
                found: n,
                max: 2,
            });
        }
        let mut awards: Vec<Award> = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = r.offset();
            let kind = match r.u8("award kind")? {
                1 => SubsidyKind::Living,
                2 => SubsidyKind::Nursing,
                other => {
                    return Err(DecodeError::InvalidValue {
                        field: "award kind",
                        offset,
                        reason: format!("unknown kind byte {other}"),
                    });
                }
            };
            if awards.last().is_some_and(|a| a.kind >= kind) {
                return Err(DecodeError::NonCanonical {
                    field: "award kind",
                    offset,
                    reason: "awards not in kind order or repeated",
                });
            }
            let monthly_yuan = r.u32("award yuan")?;
            awards.push(Award { kind, monthly_yuan });
        }
        let first_paid_month = r.parsed("first_paid_month", 7, |s| {
            if s.is_empty() {
                Ok(None)
            } else {
                YearMonth::parse(s).map(Some)
            }
        })?;
        let offset = r.offset();
        let evaluation = match r.u8("has_evaluation")? {
            0 => None,
            1 => {
                let offset = r.offset();
                let score = r.u8("evaluation score")?;
                if !(1..=5).contains(&score) {
                    return Err(DecodeError::InvalidValue {
                        field: "evaluation score",
                        offset,
                        reason: format!("score {score} is not 1 to 5"),
                    });
                }
                Some((score, Timestamp(r.i64("evaluation at")?)))
            }
            other => {
                return Err(DecodeError::InvalidValue {
                    field: "has_evaluation",
                    offset,
                    reason: format!("{other} is neither 0 nor 1"),
                });
            }
        };
        let signer_key = PublicKey(r.array::<32>("signer_key")?);
        let signature = r.array::<64>("signature")?;
        r.finish()?;
        Ok(SignedAttestation {
            attestation: Attestation {
                case,
                office,
                at,
                domicile,
                kinds,
                transitions,
                awards,
                first_paid_month,
                evaluation,
                signer_key,
            },
            signature,
        })
    }
}

/// Where an office stands to a case: which member of its route it is, by its
/// certificate's role and division. `None` for an office off the route.
fn member_role(
    directory: &Directory,
    office: &OfficeId,
    key: &PublicKey,
    at: Timestamp,
    acceptance: &str,
    domicile: &str,
) -> Option<Member> {
    let (status, cert, _) = key_authority(directory, office, key, at);
    let cert = cert.filter(|_| status == SignatureStatus::Valid)?;
    let county = domicile.get(..6)?;
    match cert.role {
        Role::Township if cert.division == acceptance => Some(Member::Acceptance),
        Role::Township if cert.division == domicile => Some(Member::DomicileTownship),
        Role::CountyDpf if cert.division == county => Some(Member::Dpf),
        Role::CountyCivilAffairs if cert.division == county => Some(Member::CivilAffairs),
        _ => None,
    }
}

/// A member of a case's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Acceptance,
    DomicileTownship,
    Dpf,
    CivilAffairs,
}

/// Whether `office` may attest `case` at all: an office of its route by its
/// certificate at the attestation's time, with a valid signature. What a
/// relaying node checks before it stores and passes an attestation on.
pub fn check_attestation(directory: &Directory, signed: &SignedAttestation) -> Result<(), String> {
    let a = &signed.attestation;
    if !signed.verify_signature() {
        return Err(format!(
            "attestation by {} has an invalid signature",
            a.office
        ));
    }
    let (status, _, violation) = key_authority(directory, &a.office, &a.signer_key, a.at);
    if status != SignatureStatus::Valid {
        return Err(violation.map_or_else(
            || format!("the key of {} has no authority", a.office),
            |(_, reason)| reason,
        ));
    }
    let acceptance = a.case.acceptance_township();
    match member_role(
        directory,
        &a.office,
        &a.signer_key,
        a.at,
        acceptance,
        &a.domicile,
    ) {
        Some(_) => Ok(()),
        None => Err(format!(
            "office {} is not an office of case {} (acceptance {acceptance}, domicile {})",
            a.office,
            a.case.short(),
            a.domicile
        )),
    }
}

/// The one office of `role` at `division` the directory certifies, when there
/// is exactly one: who must take a pending step.
fn office_at(directory: &Directory, role: Role, division: &str) -> String {
    let mut found = directory
        .certificates
        .iter()
        .map(|entry| &entry.cert)
        .filter(|cert| cert.role == role && cert.division == division)
        .map(|cert| cert.office.as_str().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter();
    match (found.next(), found.next()) {
        (Some(one), None) => one,
        _ => String::new(),
    }
}

/// What a supervisor makes of the attestations it holds of one case: the
/// chain verified from all their transitions together, each deadline counted
/// with `calendar`, the facts from the offices whose right they are. `None`
/// when no attestation is for `case` or none carries a valid signature of an
/// office of the case.
pub fn supervise(
    case: &CaseId,
    attestations: &[SignedAttestation],
    directory: &Directory,
    calendar: &Calendar,
    publicity_days: impl Fn(&str) -> u32,
    now: Timestamp,
) -> Option<SupervisedCase> {
    let acceptance = case.acceptance_township().to_string();
    let mut problems = Vec::new();
    // The attestations that hold, newest last, with the member each comes from.
    let mut valid: Vec<(&Attestation, Member)> = Vec::new();
    for signed in attestations.iter().filter(|s| s.attestation.case == *case) {
        let a = &signed.attestation;
        if !signed.verify_signature() {
            problems.push(format!(
                "{} 的监管报送签名无效 attestation signature invalid",
                a.office
            ));
            continue;
        }
        match member_role(
            directory,
            &a.office,
            &a.signer_key,
            a.at,
            &acceptance,
            &a.domicile,
        ) {
            Some(member) => valid.push((a, member)),
            None => problems.push(format!(
                "{} 不是本案经办机关 not an office of the case",
                a.office
            )),
        }
    }
    valid.sort_by_key(|(a, _)| a.at);
    // The domicile: the acceptance office's word when it attested, else the
    // newest; attestations that disagree are reported.
    let domicile = valid
        .iter()
        .rev()
        .find(|(_, m)| *m == Member::Acceptance)
        .or(valid.last())
        .map(|(a, _)| a.domicile.clone())?;
    let disagreeing: BTreeSet<&str> = valid
        .iter()
        .filter(|(a, _)| a.domicile != domicile)
        .map(|(a, _)| a.office.as_str())
        .collect();
    if !disagreeing.is_empty() {
        problems.push(format!(
            "户籍地不一致 domicile differs in the attestations of {}",
            disagreeing.into_iter().collect::<Vec<_>>().join(", ")
        ));
        valid.retain(|(a, _)| a.domicile == domicile);
    }
    let latest_of = |member: Member| {
        valid
            .iter()
            .rev()
            .find(|(_, m)| *m == member)
            .map(|(a, _)| *a)
    };
    let kinds = latest_of(Member::Acceptance)
        .or(valid.last().map(|(a, _)| *a))
        .map(|a| a.kinds.clone())
        .unwrap_or_default();
    // Every transition any of them carries, verified as one history.
    let transitions: BTreeSet<&Vec<u8>> = valid
        .iter()
        .flat_map(|(a, _)| a.transitions.iter())
        .collect();
    let history = CaseHistory {
        case: case.clone(),
        transitions: transitions.into_iter().cloned().collect(),
        domicile_township: domicile.clone(),
    };
    // The supervisor holds no document: every vouched head counts as present.
    let has_head = |_: &[u8; 32]| true;
    let mut ctx = VerifyContext::new(directory, calendar, now, &has_head);
    ctx.publicity_days = publicity_days(domicile.get(..2).unwrap_or("00"));
    let report = verify_case(&history, &ctx);
    // A late step is a fact the reports count, not a flaw of the chain; any
    // other error is, and the chain counts only up to the first step it
    // touches (a step its signer had no authority for is no step).
    let flaws: Vec<&crate::verify::Violation> = report
        .errors()
        .filter(|v| v.kind != crate::verify::ViolationKind::DeadlineMissed)
        .collect();
    for v in &flaws {
        problems.push(format!("{}: {}", v.kind.code(), v.reason));
    }
    let flawed: BTreeSet<usize> = flaws.iter().filter_map(|v| v.index).collect();
    // The chain the reports count is the history without its flawed steps,
    // verified again: what follows a flawed step hangs from nothing and
    // drops out, and the last sound step's deadline stays pending — so an
    // office cannot hide an overdue step by slipping in a forged one.
    let report = if flawed.is_empty() {
        report
    } else {
        let sound = CaseHistory {
            case: history.case.clone(),
            transitions: history
                .transitions
                .iter()
                .enumerate()
                .filter(|(i, _)| !flawed.contains(i))
                .map(|(_, t)| t.clone())
                .collect(),
            domicile_township: history.domicile_township.clone(),
        };
        verify_case(&sound, &ctx)
    };
    let flawed: BTreeSet<usize> = report
        .errors()
        .filter(|v| v.kind != crate::verify::ViolationKind::DeadlineMissed)
        .filter_map(|v| v.index)
        .collect();
    let roles: BTreeMap<&str, Role> = directory
        .certificates
        .iter()
        .map(|e| (e.cert.office.as_str(), e.cert.role))
        .collect();
    let branch = report.branches.iter().find(|b| b.connected);
    let steps: Vec<Step> = branch
        .map(|b| {
            b.entries
                .iter()
                .take_while(|e| !flawed.contains(&e.index))
                .map(|e| Step {
                    seq: e.seq,
                    from: e.from,
                    to: e.to,
                    office: e.office.as_str().to_string(),
                    role: roles
                        .get(e.office.as_str())
                        .copied()
                        .unwrap_or(Role::Township),
                    at: e.at,
                    deadline: e.deadline.as_ref().map(|d| d.date),
                    late: e.deadline.as_ref().is_some_and(|d| !d.met),
                    provisional: e.deadline.as_ref().is_some_and(|d| d.provisional),
                })
                .collect()
        })
        .unwrap_or_default();
    let acceptance_office = steps
        .first()
        .map(|s| s.office.clone())
        .or_else(|| latest_of(Member::Acceptance).map(|a| a.office.as_str().to_string()))
        .unwrap_or_default();
    let county = domicile.get(..6).unwrap_or("").to_string();
    // The branch's next deadline is its tip's: none when the chain was cut.
    let cut = branch.is_some_and(|b| steps.len() < b.entries.len());
    let pending = branch
        .filter(|_| !cut)
        .and_then(|b| b.next_deadline.as_ref())
        .and_then(|p| {
            let next = *p.next.first()?;
            let rule = stage::TRANSITIONS
                .iter()
                .find(|r| r.from == Some(p.stage) && r.to == next)?;
            let role = rule.signer.role();
            let office = match rule.signer {
                stage::Signer::Acceptance => acceptance_office.clone(),
                stage::Signer::DomicileTownship => office_at(directory, Role::Township, &domicile),
                stage::Signer::DomicileCountyDpf => office_at(directory, Role::CountyDpf, &county),
                stage::Signer::DomicileCountyCivilAffairs => {
                    office_at(directory, Role::CountyCivilAffairs, &county)
                }
            };
            Some(Pending {
                next: p.next.clone(),
                deadline: p.date,
                provisional: p.provisional,
                role,
                office,
            })
        });
    // The facts, each from the office whose write it is.
    let decided = steps.iter().any(|s| s.to == Stage::Decided);
    let decider = latest_of(Member::CivilAffairs).filter(|_| decided);
    let evaluator = latest_of(Member::Acceptance).filter(|a| a.evaluation.is_some());
    Some(SupervisedCase {
        case: case.as_str().to_string(),
        acceptance_office,
        acceptance,
        domicile,
        kinds,
        steps,
        pending,
        awards: decider.map(|a| a.awards.clone()).unwrap_or_default(),
        first_paid_month: decider.and_then(|a| a.first_paid_month),
        evaluation: evaluator.and_then(|a| {
            a.evaluation.map(|(score, at)| Evaluation {
                score,
                office: a.office.as_str().to_string(),
                at,
            })
        }),
        problems,
    })
}
