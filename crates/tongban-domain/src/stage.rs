//! The stage machine of a case (docs/design.md §2), as one transition table.
//!
//! Every legal move of a case is one row of [`TRANSITIONS`]: from which stage, to
//! which, which office must sign it (by role and jurisdiction), the deadline in
//! working days, and the event that deadline counts from. Nothing else in the
//! product decides legality: the office commands, the receipts the sync layer signs
//! and the verifier all ask [`rule_for`] / [`check_transition`].
//!
//! The path of a cross-province case:
//! `draft → accepted → pushed → received → initial_reviewed → dpf_reviewed →
//! decided → result_received → notified → active`, with `returned` (back to the
//! acceptance office, which completes materials and accepts again), `rejected` at
//! any review level, `withdrawn` before a decision, and `suspended` / `terminated`
//! after an award (a correction resumes a terminated award: the one row marked
//! `correction`). A local application (the acceptance office is the domicile
//! township) goes `accepted → publicized → initial_reviewed` instead of travelling.
//!
//! Decision outcome and notification are one chain: the award becomes `active`
//! after the applicant was `notified`. Payment is counted from the month of
//! application whatever the activation date, so the ordering costs the applicant
//! nothing and keeps every case a single signed chain.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stage of a case. Code names are the product's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// 受理中: the acceptance office has started the case.
    Draft,
    /// 已受理: materials complete.
    Accepted,
    /// 已推送: sent to the domicile township.
    Pushed,
    /// 已接收: signed by the domicile township node when the case first reached it.
    Received,
    /// 公示: the village or residents' committee notice of a local application.
    Publicized,
    /// 初审: the domicile township approved and submitted to the county DPF.
    InitialReviewed,
    /// 复审: the county DPF approved after checking the certificate registry.
    DpfReviewed,
    /// 审定: county civil affairs approved, with kinds, amounts and first month.
    Decided,
    /// 结果已反馈: the acceptance office node received the result.
    ResultReceived,
    /// 已告知: the acceptance office told the applicant.
    Notified,
    /// 退回补正: returned to the acceptance office to complete materials.
    Returned,
    /// 不予通过: rejected at some review level.
    Rejected,
    /// 撤回: withdrawn by the applicant before a decision.
    Withdrawn,
    /// 发放中: the award is being paid.
    Active,
    /// 暂停: payment suspended after a failed dynamic check.
    Suspended,
    /// 终止: the award ended (death, dibao exit, status change, hukou moved).
    Terminated,
}

impl Stage {
    /// Every stage, in workflow order.
    pub const ALL: [Stage; 16] = [
        Stage::Draft,
        Stage::Accepted,
        Stage::Pushed,
        Stage::Received,
        Stage::Publicized,
        Stage::InitialReviewed,
        Stage::DpfReviewed,
        Stage::Decided,
        Stage::ResultReceived,
        Stage::Notified,
        Stage::Returned,
        Stage::Rejected,
        Stage::Withdrawn,
        Stage::Active,
        Stage::Suspended,
        Stage::Terminated,
    ];

    /// The stable code name (`initial_reviewed`).
    pub fn code(self) -> &'static str {
        match self {
            Stage::Draft => "draft",
            Stage::Accepted => "accepted",
            Stage::Pushed => "pushed",
            Stage::Received => "received",
            Stage::Publicized => "publicized",
            Stage::InitialReviewed => "initial_reviewed",
            Stage::DpfReviewed => "dpf_reviewed",
            Stage::Decided => "decided",
            Stage::ResultReceived => "result_received",
            Stage::Notified => "notified",
            Stage::Returned => "returned",
            Stage::Rejected => "rejected",
            Stage::Withdrawn => "withdrawn",
            Stage::Active => "active",
            Stage::Suspended => "suspended",
            Stage::Terminated => "terminated",
        }
    }

    /// The Chinese label shown to offices.
    pub fn zh(self) -> &'static str {
        match self {
            Stage::Draft => "受理中",
            Stage::Accepted => "已受理",
            Stage::Pushed => "已推送",
            Stage::Received => "已接收",
            Stage::Publicized => "公示",
            Stage::InitialReviewed => "初审",
            Stage::DpfReviewed => "复审",
            Stage::Decided => "审定",
            Stage::ResultReceived => "结果已反馈",
            Stage::Notified => "已告知",
            Stage::Returned => "退回补正",
            Stage::Rejected => "不予通过",
            Stage::Withdrawn => "撤回",
            Stage::Active => "发放中",
            Stage::Suspended => "暂停",
            Stage::Terminated => "终止",
        }
    }

    /// The byte used for this stage in signed encodings. Stable forever: a new
    /// stage gets a new number, an old number is never reused.
    pub fn wire(self) -> u8 {
        self as u8 + 1
    }

    /// Inverse of [`Stage::wire`].
    pub fn from_wire(byte: u8) -> Option<Stage> {
        Stage::ALL.get(usize::from(byte).checked_sub(1)?).copied()
    }

    /// Parses a code name.
    pub fn from_code(code: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.code() == code)
    }

    /// True when no transition leaves this stage but a correction: the case
    /// has ended (`withdrawn`; `terminated`, which a correction may reverse).
    pub fn is_final(self) -> bool {
        !TRANSITIONS
            .iter()
            .any(|rule| rule.from == Some(self) && !rule.correction)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The role an office certificate grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 乡镇政府 / 街道办事处 window: accepts anyone, reviews its own residents.
    Township,
    /// 县级残联: re-review against the certificate registry.
    CountyDpf,
    /// 县级民政部门: decision and payment.
    CountyCivilAffairs,
    /// County, province or national relay: stores and forwards, signs nothing about cases.
    Hub,
    /// 省民政厅 / 省残联: read-only supervision.
    Supervisor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Township,
        Role::CountyDpf,
        Role::CountyCivilAffairs,
        Role::Hub,
        Role::Supervisor,
    ];

    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            Role::Township => "township",
            Role::CountyDpf => "county_dpf",
            Role::CountyCivilAffairs => "county_civil_affairs",
            Role::Hub => "hub",
            Role::Supervisor => "supervisor",
        }
    }

    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            Role::Township => "乡镇（街道）受理窗口",
            Role::CountyDpf => "县级残联",
            Role::CountyCivilAffairs => "县级民政部门",
            Role::Hub => "中继枢纽",
            Role::Supervisor => "监管部门",
        }
    }

    /// Byte in signed encodings; stable forever.
    pub fn wire(self) -> u8 {
        self as u8 + 1
    }

    /// Inverse of [`Role::wire`].
    pub fn from_wire(byte: u8) -> Option<Role> {
        Role::ALL.get(usize::from(byte).checked_sub(1)?).copied()
    }

    /// Parses a code name.
    pub fn from_code(code: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Whose jurisdiction a transition needs: which office of the case may sign it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signer {
    /// The acceptance office of the case (any township office, for the first transition).
    Acceptance,
    /// The township office of the applicant's household registration.
    DomicileTownship,
    /// The county DPF of the domicile county.
    DomicileCountyDpf,
    /// The county civil affairs bureau of the domicile county.
    DomicileCountyCivilAffairs,
}

impl Signer {
    /// The role the signing office's certificate must carry.
    pub fn role(self) -> Role {
        match self {
            Signer::Acceptance | Signer::DomicileTownship => Role::Township,
            Signer::DomicileCountyDpf => Role::CountyDpf,
            Signer::DomicileCountyCivilAffairs => Role::CountyCivilAffairs,
        }
    }

    /// Chinese description.
    pub fn zh(self) -> &'static str {
        match self {
            Signer::Acceptance => "受理地乡镇（街道）",
            Signer::DomicileTownship => "户籍地乡镇（街道）",
            Signer::DomicileCountyDpf => "户籍地县级残联",
            Signer::DomicileCountyCivilAffairs => "户籍地县级民政部门",
        }
    }
}

/// The event a deadline counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The signed time at which the case entered the `from` stage of the row.
    EnteredFrom,
    /// The end of the publicity period, which starts when the case entered
    /// `publicized` and lasts the domicile policy's number of calendar days.
    PublicityEnd,
}

/// A deadline: `working_days` counted by the calendar's receipt rule from `anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineRule {
    /// Working days allowed.
    pub working_days: u32,
    /// What the count starts from.
    pub anchor: Anchor,
}

/// A condition on the case beyond its current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// No condition.
    None,
    /// The acceptance office is not the domicile township: the case travels.
    CrossTownship,
    /// The acceptance office is the domicile township: a local application.
    LocalApplication,
    /// The case was approved (it passed through `decided`).
    Approved,
}

/// One row of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TransitionRule {
    /// Stage before; `None` for the transition that creates the case.
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// Which office must sign.
    pub signer: Signer,
    /// Deadline for making this transition, if the notice sets one.
    pub deadline: Option<DeadlineRule>,
    /// Extra condition.
    pub guard: Guard,
    /// Signed by a node automatically when a case reaches it (receipts).
    pub automatic: bool,
    /// Taken only to correct an earlier stop (a feed that reverses the finding,
    /// or a signed decision): a case at its `from` stage has ended unless a
    /// correction comes, so such a row does not make `from` live
    /// ([`Stage::is_final`] ignores it). The months the stop withheld are owed
    /// as back pay (`tongban_domain::payroll`).
    pub correction: bool,
}

const fn row(from: Option<Stage>, to: Stage, signer: Signer) -> TransitionRule {
    TransitionRule {
        from,
        to,
        signer,
        deadline: None,
        guard: Guard::None,
        automatic: false,
        correction: false,
    }
}

const fn correction(mut rule: TransitionRule) -> TransitionRule {
    rule.correction = true;
    rule
}

const fn within(mut rule: TransitionRule, working_days: u32, anchor: Anchor) -> TransitionRule {
    rule.deadline = Some(DeadlineRule {
        working_days,
        anchor,
    });
    rule
}

const fn guarded(mut rule: TransitionRule, guard: Guard) -> TransitionRule {
    rule.guard = guard;
    rule
}

const fn automatic(mut rule: TransitionRule) -> TransitionRule {
    rule.automatic = true;
    rule
}

use Anchor::{EnteredFrom, PublicityEnd};
use Signer::{Acceptance, DomicileCountyCivilAffairs, DomicileCountyDpf, DomicileTownship};
use Stage::*;

/// The whole stage machine. Deadlines are those of the notice (冀民〔2021〕36号 一):
/// push within 3 working days of materials complete; initial review within 3 of
/// receipt; county DPF within 2; county civil affairs within 5; notify the applicant
/// within 3 of the result reaching the acceptance office.
pub const TRANSITIONS: &[TransitionRule] = &[
    row(None, Draft, Acceptance),
    row(Some(Draft), Accepted, Acceptance),
    guarded(
        within(row(Some(Accepted), Pushed, Acceptance), 3, EnteredFrom),
        Guard::CrossTownship,
    ),
    guarded(
        row(Some(Accepted), Publicized, DomicileTownship),
        Guard::LocalApplication,
    ),
    automatic(row(Some(Pushed), Received, DomicileTownship)),
    within(
        row(Some(Received), InitialReviewed, DomicileTownship),
        3,
        EnteredFrom,
    ),
    within(
        row(Some(Received), Returned, DomicileTownship),
        3,
        EnteredFrom,
    ),
    within(
        row(Some(Received), Rejected, DomicileTownship),
        3,
        EnteredFrom,
    ),
    within(
        row(Some(Publicized), InitialReviewed, DomicileTownship),
        3,
        PublicityEnd,
    ),
    within(
        row(Some(Publicized), Returned, DomicileTownship),
        3,
        PublicityEnd,
    ),
    within(
        row(Some(Publicized), Rejected, DomicileTownship),
        3,
        PublicityEnd,
    ),
    within(
        row(Some(InitialReviewed), DpfReviewed, DomicileCountyDpf),
        2,
        EnteredFrom,
    ),
    within(
        row(Some(InitialReviewed), Returned, DomicileCountyDpf),
        2,
        EnteredFrom,
    ),
    within(
        row(Some(InitialReviewed), Rejected, DomicileCountyDpf),
        2,
        EnteredFrom,
    ),
    within(
        row(Some(DpfReviewed), Decided, DomicileCountyCivilAffairs),
        5,
        EnteredFrom,
    ),
    within(
        row(Some(DpfReviewed), Returned, DomicileCountyCivilAffairs),
        5,
        EnteredFrom,
    ),
    within(
        row(Some(DpfReviewed), Rejected, DomicileCountyCivilAffairs),
        5,
        EnteredFrom,
    ),
    row(Some(Returned), Accepted, Acceptance),
    automatic(row(Some(Decided), ResultReceived, Acceptance)),
    automatic(row(Some(Rejected), ResultReceived, Acceptance)),
    within(
        row(Some(ResultReceived), Notified, Acceptance),
        3,
        EnteredFrom,
    ),
    guarded(
        row(Some(Notified), Active, DomicileCountyCivilAffairs),
        Guard::Approved,
    ),
    row(Some(Active), Suspended, DomicileCountyCivilAffairs),
    row(Some(Active), Terminated, DomicileCountyCivilAffairs),
    row(Some(Suspended), Active, DomicileCountyCivilAffairs),
    row(Some(Suspended), Terminated, DomicileCountyCivilAffairs),
    correction(row(Some(Terminated), Active, DomicileCountyCivilAffairs)),
    row(Some(Draft), Withdrawn, Acceptance),
    row(Some(Accepted), Withdrawn, Acceptance),
    row(Some(Pushed), Withdrawn, Acceptance),
    row(Some(Received), Withdrawn, Acceptance),
    row(Some(Publicized), Withdrawn, Acceptance),
    row(Some(InitialReviewed), Withdrawn, Acceptance),
    row(Some(DpfReviewed), Withdrawn, Acceptance),
    row(Some(Returned), Withdrawn, Acceptance),
];

/// Facts about a case that guards and jurisdiction need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    /// Office id of the acceptance office.
    pub acceptance_office: String,
    /// 9-digit township code of the acceptance office.
    pub acceptance_township: String,
    /// 9-digit township code of the applicant's household registration.
    pub domicile_township: String,
    /// Whether the case has passed through `decided`.
    pub approved: bool,
}

impl CaseFacts {
    /// 6-digit county code of the household registration.
    pub fn domicile_county(&self) -> &str {
        self.domicile_township.get(..6).unwrap_or("")
    }

    /// True when the acceptance office is the domicile township.
    pub fn is_local(&self) -> bool {
        self.acceptance_township == self.domicile_township
    }
}

/// What the stage machine knows of a signing office: from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficeFacts {
    /// Office id.
    pub office: String,
    /// Role granted by its certificate.
    pub role: Role,
    /// Division code from its certificate (9 digits for townships, 6 for county offices).
    pub division: String,
}

/// Why a transition is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// No row of the table goes from `from` to `to`.
    #[error("no transition from {} to {to} ({})", from.map_or("(new case)", |s| s.code()), to.zh())]
    NoSuchTransition {
        /// Stage before.
        from: Option<Stage>,
        /// Stage requested.
        to: Stage,
    },
    /// The row exists but its guard does not hold.
    #[error("transition {} → {to} needs {guard:?}", from.map_or("(new case)", |s| s.code()))]
    GuardFailed {
        /// Stage before.
        from: Option<Stage>,
        /// Stage requested.
        to: Stage,
        /// The guard that failed.
        guard: Guard,
    },
    /// The office may not sign this transition.
    #[error("{office} ({role}, {division}) may not sign {to}: it must be signed by the {} ({expected_role} of {expected_division})", signer.zh())]
    WrongSigner {
        /// Stage requested.
        to: Stage,
        /// The office that tried.
        office: String,
        /// Its role.
        role: Role,
        /// Its division.
        division: String,
        /// Who must sign.
        signer: Signer,
        /// The role that must sign.
        expected_role: Role,
        /// The division (or office id for the acceptance office) that must sign.
        expected_division: String,
    },
}

/// Where a review that approves moves a case at `from`: the row leaving `from`
/// for a review stage (`initial_reviewed`, `dpf_reviewed`, `decided`). `None`
/// when nothing is reviewed at `from`.
pub fn approval_from(from: Stage) -> Option<Stage> {
    rules_from(Some(from)).map(|rule| rule.to).find(|to| {
        matches!(
            to,
            Stage::InitialReviewed | Stage::DpfReviewed | Stage::Decided
        )
    })
}

/// Every row that leaves `from` (or creates a case, for `None`).
pub fn rules_from(from: Option<Stage>) -> impl Iterator<Item = &'static TransitionRule> {
    TRANSITIONS.iter().filter(move |rule| rule.from == from)
}

/// The row for `from → to` whose guard holds for `case`.
pub fn rule_for(
    from: Option<Stage>,
    to: Stage,
    case: &CaseFacts,
) -> Result<&'static TransitionRule, TransitionError> {
    let mut candidates = TRANSITIONS
        .iter()
        .filter(|rule| rule.from == from && rule.to == to)
        .peekable();
    let Some(first) = candidates.peek().copied() else {
        return Err(TransitionError::NoSuchTransition { from, to });
    };
    candidates
        .find(|rule| guard_holds(rule.guard, case))
        .ok_or(TransitionError::GuardFailed {
            from,
            to,
            guard: first.guard,
        })
}

/// Whether `guard` holds for `case`.
pub fn guard_holds(guard: Guard, case: &CaseFacts) -> bool {
    match guard {
        Guard::None => true,
        Guard::CrossTownship => !case.is_local(),
        Guard::LocalApplication => case.is_local(),
        Guard::Approved => case.approved,
    }
}

/// Whether `office` may sign for `signer` on `case`. For the transition that creates
/// a case, pass facts whose `acceptance_office` is the creating office.
pub fn signer_admits(signer: Signer, office: &OfficeFacts, case: &CaseFacts) -> bool {
    if office.role != signer.role() {
        return false;
    }
    match signer {
        Signer::Acceptance => {
            office.office == case.acceptance_office && office.division == case.acceptance_township
        }
        Signer::DomicileTownship => office.division == case.domicile_township,
        Signer::DomicileCountyDpf | Signer::DomicileCountyCivilAffairs => {
            office.division == case.domicile_county()
        }
    }
}

/// The whole check of one proposed transition: a row exists, its guard holds, and
/// `office` is the office it names. Returns the row.
pub fn check_transition(
    from: Option<Stage>,
    to: Stage,
    case: &CaseFacts,
    office: &OfficeFacts,
) -> Result<&'static TransitionRule, TransitionError> {
    let rule = rule_for(from, to, case)?;
    if !signer_admits(rule.signer, office, case) {
        let expected_division = match rule.signer {
            Signer::Acceptance => case.acceptance_office.clone(),
            Signer::DomicileTownship => case.domicile_township.clone(),
            Signer::DomicileCountyDpf | Signer::DomicileCountyCivilAffairs => {
                case.domicile_county().to_string()
            }
        };
        return Err(TransitionError::WrongSigner {
            to,
            office: office.office.clone(),
            role: office.role,
            division: office.division.clone(),
            signer: rule.signer,
            expected_role: rule.signer.role(),
            expected_division,
        });
    }
    Ok(rule)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cross() -> CaseFacts {
        CaseFacts {
            acceptance_office: "440106001".into(),
            acceptance_township: "440106001".into(),
            domicile_township: "130102001".into(),
            approved: false,
        }
    }

    #[test]
    fn wire_codes_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_wire(stage.wire()), Some(stage));
            assert_eq!(Stage::from_code(stage.code()), Some(stage));
        }
        for role in Role::ALL {
            assert_eq!(Role::from_wire(role.wire()), Some(role));
        }
        assert_eq!(Stage::from_wire(0), None);
        assert_eq!(Stage::from_wire(17), None);
    }

    #[test]
    fn every_stage_is_reachable_and_finals_are_expected() {
        let finals: Vec<&str> = Stage::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.code())
            .collect();
        assert_eq!(finals, ["withdrawn", "terminated"]);
        for stage in Stage::ALL {
            assert!(
                TRANSITIONS.iter().any(|r| r.to == stage),
                "{stage} unreachable"
            );
        }
    }

    #[test]
    fn the_table_reads_as_the_notice() {
        let table: String = TRANSITIONS
            .iter()
            .map(|r| {
                format!(
                    "{:>16} → {:<16} {:<30} {}{}{}\n",
                    r.from.map_or("-", |s| s.code()),
                    r.to.code(),
                    format!("{:?}", r.signer),
                    r.deadline.map_or(String::new(), |d| format!(
                        "{} WD from {:?}",
                        d.working_days, d.anchor
                    )),
                    if r.guard == Guard::None {
                        String::new()
                    } else {
                        format!(" [{:?}]", r.guard)
                    },
                    if r.automatic {
                        " (automatic receipt)"
                    } else if r.correction {
                        " (correction only)"
                    } else {
                        ""
                    },
                )
            })
            .collect();
        expect_test::expect_file!["../tests/transition_table.txt"].assert_eq(&table);
    }

    #[test]
    fn jurisdiction() {
        let case = cross();
        let county_dpf = OfficeFacts {
            office: "130102-dpf".into(),
            role: Role::CountyDpf,
            division: "130102".into(),
        };
        assert!(
            check_transition(
                Some(Stage::InitialReviewed),
                Stage::DpfReviewed,
                &case,
                &county_dpf
            )
            .is_ok()
        );
        let other_dpf = OfficeFacts {
            office: "130104-dpf".into(),
            role: Role::CountyDpf,
            division: "130104".into(),
        };
        let err = check_transition(
            Some(Stage::InitialReviewed),
            Stage::DpfReviewed,
            &case,
            &other_dpf,
        )
        .unwrap_err();
        assert!(err.to_string().contains("户籍地县级残联"), "{err}");
        let acceptance = OfficeFacts {
            office: "440106001".into(),
            role: Role::Township,
            division: "440106001".into(),
        };
        assert!(check_transition(Some(Stage::Accepted), Stage::Pushed, &case, &acceptance).is_ok());
        assert!(matches!(
            check_transition(Some(Stage::Accepted), Stage::Publicized, &case, &acceptance),
            Err(TransitionError::GuardFailed { .. })
        ));
        assert!(matches!(
            check_transition(Some(Stage::Pushed), Stage::Decided, &case, &acceptance),
            Err(TransitionError::NoSuchTransition { .. })
        ));
        let domicile = OfficeFacts {
            office: "130102001".into(),
            role: Role::Township,
            division: "130102001".into(),
        };
        assert!(check_transition(Some(Stage::Pushed), Stage::Received, &case, &domicile).is_ok());
        assert!(
            check_transition(Some(Stage::Pushed), Stage::Received, &case, &acceptance).is_err()
        );
    }

    proptest! {
        /// No walk of legal transitions leaves the table: from any reachable stage,
        /// every chosen next step is a row, and the walk only visits stages with rows.
        #[test]
        fn walks_stay_in_the_table(choices in proptest::collection::vec(0usize..8, 1..40), local in any::<bool>()) {
            let mut case = cross();
            if local {
                case.acceptance_office = "130102001".into();
                case.acceptance_township = "130102001".into();
            }
            let mut stage: Option<Stage> = None;
            for choice in choices {
                let options: Vec<&TransitionRule> = rules_from(stage).filter(|r| guard_holds(r.guard, &case)).collect();
                if options.is_empty() {
                    // A walk ends only in a final stage, or as a rejected case whose
                    // applicant was told (no award to activate).
                    let ended = stage.is_some_and(Stage::is_final)
                        || (stage == Some(Stage::Notified) && !case.approved);
                    prop_assert!(ended, "walk stuck at {:?}", stage);
                    break;
                }
                let next = options[choice % options.len()];
                prop_assert!(rule_for(stage, next.to, &case).is_ok());
                if next.to == Stage::Decided { case.approved = true; }
                if next.to == Stage::Accepted && stage == Some(Stage::Returned) { case.approved = false; }
                stage = Some(next.to);
            }
            // Any transition not in the table is refused.
            for to in Stage::ALL {
                let in_table = TRANSITIONS.iter().any(|r| r.from == stage && r.to == to);
                prop_assert_eq!(in_table, !matches!(rule_for(stage, to, &case), Err(TransitionError::NoSuchTransition { .. })));
            }
        }
    }
}
