//! Nobody receives the same subsidy twice (防止重复享受, 冀民〔2021〕36号): the one
//! rule of what a duplicate is, asked by every path that flags or refuses one.
//!
//! A case *claims* subsidy kinds: a live application claims the kinds it applies
//! for, an award in force claims the kinds it awards, an ended case claims
//! nothing ([`Standing`]). Two cases of the same person (the same resident ID
//! number) whose claims share a kind conflict, whichever offices accepted them;
//! of the two, the one that [`precedes`] stands and the other is the duplicate:
//!
//! - an award in force precedes every live application: an application for a
//!   kind the person already receives is the duplicate, however early it was
//!   made;
//! - between two live applications (or, should two ever exist, two awards), the
//!   earlier stands: the one whose first signed transition (the `draft` its
//!   acceptance office signed when it started the case) carries the earlier
//!   time, and at equal times the lower case id. The draft is signed once and
//!   never changes, unlike acceptance, which a return for correction repeats.
//!   Its time is the acceptance office's clock; offices' clocks are close
//!   enough that a difference below their skew says nothing either way, and
//!   the tie-break keeps the order the same at every node.
//!
//! [`conflicts`] lists a case's conflicts, [`is_duplicate`] says whether it is
//! the one that must not proceed, and [`check_award`] is the decision's test: an
//! award of some kinds is refused when the person holds an award in force of one
//! of them or an earlier live application for one of them. The duplicate is
//! then rejected or withdrawn with a reason through the ordinary transitions.
//!
//! The domicile county catches duplicates: every case of a resident goes to the
//! offices of the household-registration county (the domicile township, county
//! DPF and county civil affairs, [`keeps_watch`]), so they hold all of them.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::CaseId;
use crate::policy::SubsidyKind;
use crate::stage::{CaseFacts, OfficeFacts, Signer, Stage, TRANSITIONS, signer_admits};

/// Where a case stands towards the subsidies it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// 在办申请: not decided yet, and the stage table still leads to a decision.
    Live,
    /// 已享受: approved (`decided` since the last return) and not terminated:
    /// decided, told, paid or suspended.
    Award,
    /// 已结束: rejected, withdrawn or terminated.
    Ended,
}

impl Standing {
    /// Of a case at `stage` whose signed chain passed through `decided` since its
    /// last return (`approved`). Live means that a row of the stage table still
    /// leads from `stage` to `decided`, so the table alone says which stages
    /// are live. `decided` itself is an approval (a rejection goes to
    /// `rejected`).
    pub fn of(stage: Stage, approved: bool) -> Standing {
        if approved || stage == Stage::Decided {
            if stage.is_final() {
                Standing::Ended
            } else {
                Standing::Award
            }
        } else if leads_to_decision(stage) {
            Standing::Live
        } else {
            Standing::Ended
        }
    }

    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            Standing::Live => "live",
            Standing::Award => "award",
            Standing::Ended => "ended",
        }
    }

    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            Standing::Live => "在办申请",
            Standing::Award => "已享受",
            Standing::Ended => "已结束",
        }
    }

    /// Awards come first in [`precedes`].
    fn rank(self) -> u8 {
        match self {
            Standing::Award => 0,
            Standing::Live => 1,
            Standing::Ended => 2,
        }
    }
}

/// Whether some walk of the stage table (guards aside) leads from `stage` to
/// `decided`.
fn leads_to_decision(stage: Stage) -> bool {
    let mut seen = vec![stage];
    let mut next = 0;
    while let Some(&at) = seen.get(next) {
        next += 1;
        if at == Stage::Decided {
            return true;
        }
        for rule in TRANSITIONS.iter().filter(|r| r.from == Some(at)) {
            if !seen.contains(&rule.to) {
                seen.push(rule.to);
            }
        }
    }
    false
}

/// What the rule needs to know of one case of the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The case.
    pub case: CaseId,
    /// Its stage.
    pub stage: Stage,
    /// Live, award or ended.
    pub standing: Standing,
    /// The kinds applied for.
    pub applied: Vec<SubsidyKind>,
    /// The kinds the decision awarded (empty unless approved).
    pub awarded: Vec<SubsidyKind>,
    /// When its first transition (`draft`) was signed, ms since the Unix
    /// epoch; `i64::MAX` when the chain carries none.
    pub first_signed_ms: i64,
    /// The office that accepted it.
    pub acceptance_office: String,
    /// The applicant's household-registration township (9 digits).
    pub domicile_township: String,
}

impl Claim {
    /// The kinds the case claims now: applied for while live, awarded while
    /// an award is in force, none once ended.
    pub fn held(&self) -> Vec<SubsidyKind> {
        let mut kinds = match self.standing {
            Standing::Live => self.applied.clone(),
            Standing::Award => self.awarded.clone(),
            Standing::Ended => Vec::new(),
        };
        kinds.sort();
        kinds.dedup();
        kinds
    }

    fn order_key(&self) -> (u8, i64, &CaseId) {
        (self.standing.rank(), self.first_signed_ms, &self.case)
    }
}

/// Whether `a` stands before `b` when the two conflict: an award in force
/// before a live application, then the earlier first signed transition, then
/// the lower case id. A total order over distinct cases, the same at every node.
pub fn precedes(a: &Claim, b: &Claim) -> bool {
    a.order_key().cmp(&b.order_key()) == Ordering::Less
}

/// How another case of the same person stands to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The other case holds an award in force of the kinds: this case is the
    /// duplicate.
    HeldAward,
    /// The other case is a live application made before this one: this case
    /// is the duplicate.
    EarlierApplication,
    /// The other case came after this one (or applies for what this case
    /// holds): the other is the duplicate.
    Later,
}

impl Relation {
    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            Relation::HeldAward => "held_award",
            Relation::EarlierApplication => "earlier_application",
            Relation::Later => "later",
        }
    }

    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            Relation::HeldAward => "已享受的补贴",
            Relation::EarlierApplication => "在先的申请",
            Relation::Later => "在后的重复申请",
        }
    }

    /// Whether it makes the case it is seen from the duplicate.
    pub fn makes_duplicate(self) -> bool {
        !matches!(self, Relation::Later)
    }
}

/// Another case of the same person that shares a claimed kind with a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The other case.
    pub other: CaseId,
    /// The kinds both claim.
    pub kinds: Vec<SubsidyKind>,
    /// How the other case stands to this one.
    pub relation: Relation,
    /// The other case's stage.
    pub other_stage: Stage,
    /// The other case's standing.
    pub other_standing: Standing,
    /// The office that accepted the other case.
    pub other_acceptance: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|k| format!("{} {}", k.zh(), k.code()))
            .collect();
        write!(
            f,
            "{}（{}）{}：{}，{} {}，受理地 acceptance office {}",
            self.relation.zh(),
            self.relation.code(),
            self.other,
            kinds.join("、"),
            self.other_stage.zh(),
            self.other_stage.code(),
            self.other_acceptance
        )
    }
}

/// The conflicts of `case` among `others` (other cases of the same person; the
/// case itself, if listed, is skipped): every other case that claims a kind
/// `case` claims, those that make it the duplicate first, then by the order
/// of [`precedes`].
pub fn conflicts(case: &Claim, others: &[Claim]) -> Vec<Conflict> {
    conflicts_over(case, &case.held(), others)
}

fn conflicts_over(case: &Claim, kinds: &[SubsidyKind], others: &[Claim]) -> Vec<Conflict> {
    let mut found: Vec<(&Claim, Conflict)> = others
        .iter()
        .filter(|other| other.case != case.case)
        .filter_map(|other| {
            let shared: Vec<SubsidyKind> = other
                .held()
                .into_iter()
                .filter(|k| kinds.contains(k))
                .collect();
            if shared.is_empty() {
                return None;
            }
            let relation = if precedes(other, case) {
                if other.standing == Standing::Award {
                    Relation::HeldAward
                } else {
                    Relation::EarlierApplication
                }
            } else {
                Relation::Later
            };
            Some((
                other,
                Conflict {
                    other: other.case.clone(),
                    kinds: shared,
                    relation,
                    other_stage: other.stage,
                    other_standing: other.standing,
                    other_acceptance: other.acceptance_office.clone(),
                },
            ))
        })
        .collect();
    found.sort_by(|(a, x), (b, y)| {
        y.relation
            .makes_duplicate()
            .cmp(&x.relation.makes_duplicate())
            .then_with(|| a.order_key().cmp(&b.order_key()))
    });
    found.into_iter().map(|(_, c)| c).collect()
}

/// Whether `case` is the duplicate: some other case of the person claims one of
/// its kinds and stands before it.
pub fn is_duplicate(case: &Claim, others: &[Claim]) -> bool {
    conflicts(case, others)
        .iter()
        .any(|c| c.relation.makes_duplicate())
}

/// The decision's test: may `case` be awarded `kinds`? Refused, naming the
/// first case in the way, when another case of the person holds an award in
/// force of one of them or is an earlier live application for one of them.
/// The case is judged as the live application it is until the award is signed.
pub fn check_award(case: &Claim, kinds: &[SubsidyKind], others: &[Claim]) -> Result<(), Conflict> {
    let as_live = Claim {
        standing: Standing::Live,
        ..case.clone()
    };
    match conflicts_over(&as_live, kinds, others)
        .into_iter()
        .find(|c| c.relation.makes_duplicate())
    {
        Some(conflict) => Err(conflict),
        None => Ok(()),
    }
}

/// Whether `office` is one of the offices of the domicile county that catch
/// duplicates of a person whose household is registered in `domicile_township`:
/// the domicile township, and the county DPF and civil affairs bureau of its
/// county. The stage table's signers decide (`signer_admits`), so this is
/// exactly the offices that review and decide the person's cases.
pub fn keeps_watch(office: &OfficeFacts, domicile_township: &str) -> bool {
    let case = CaseFacts {
        acceptance_office: String::new(),
        acceptance_township: String::new(),
        domicile_township: domicile_township.to_string(),
        approved: false,
    };
    [
        Signer::DomicileTownship,
        Signer::DomicileCountyDpf,
        Signer::DomicileCountyCivilAffairs,
    ]
    .into_iter()
    .any(|signer| signer_admits(signer, office, &case))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stage::Role;
    use SubsidyKind::{Living, Nursing};
    use proptest::prelude::*;

    fn id(n: u32) -> CaseId {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        CaseId::new("130102001", date, n.to_be_bytes()).unwrap()
    }

    fn claim(n: u32, stage: Stage, approved: bool, kinds: &[SubsidyKind], at: i64) -> Claim {
        Claim {
            case: id(n),
            stage,
            standing: Standing::of(stage, approved),
            applied: kinds.to_vec(),
            awarded: if approved { kinds.to_vec() } else { Vec::new() },
            first_signed_ms: at,
            acceptance_office: "440106001".into(),
            domicile_township: "130102001".into(),
        }
    }

    #[test]
    fn standing_follows_the_stage_table() {
        let live: Vec<&str> = Stage::ALL
            .into_iter()
            .filter(|s| Standing::of(*s, false) == Standing::Live)
            .map(Stage::code)
            .collect();
        assert_eq!(
            live,
            [
                "draft",
                "accepted",
                "pushed",
                "received",
                "publicized",
                "initial_reviewed",
                "dpf_reviewed",
                "returned"
            ]
        );
        // Unapproved and past the decision: a rejection on its way back.
        for stage in [Stage::Rejected, Stage::ResultReceived, Stage::Notified] {
            assert_eq!(Standing::of(stage, false), Standing::Ended, "{stage}");
        }
        for stage in [Stage::Withdrawn, Stage::Terminated] {
            assert_eq!(Standing::of(stage, false), Standing::Ended, "{stage}");
            assert_eq!(Standing::of(stage, true), Standing::Ended, "{stage}");
        }
        for stage in [
            Stage::Decided,
            Stage::ResultReceived,
            Stage::Notified,
            Stage::Active,
            Stage::Suspended,
        ] {
            assert_eq!(Standing::of(stage, true), Standing::Award, "{stage}");
        }
    }

    #[test]
    fn the_later_of_two_live_applications_is_the_duplicate() {
        let first = claim(1, Stage::DpfReviewed, false, &[Living], 1_000);
        let second = claim(2, Stage::DpfReviewed, false, &[Living, Nursing], 2_000);
        let all = [first.clone(), second.clone()];
        assert!(!is_duplicate(&first, &all));
        assert!(is_duplicate(&second, &all));
        let seen = conflicts(&second, &all);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].other, first.case);
        assert_eq!(seen[0].kinds, [Living]);
        assert_eq!(seen[0].relation, Relation::EarlierApplication);
        assert_eq!(conflicts(&first, &all)[0].relation, Relation::Later);
        // The second may not be awarded living; nursing alone is no duplicate.
        let refused = check_award(&second, &[Living], &all).unwrap_err();
        assert_eq!(refused.other, first.case);
        assert!(check_award(&second, &[Nursing], &all).is_ok());
        assert!(check_award(&first, &[Living], &all).is_ok());
    }

    #[test]
    fn an_award_in_force_stands_before_an_earlier_application() {
        let award = claim(1, Stage::Active, true, &[Nursing], 5_000);
        let early = claim(2, Stage::Received, false, &[Nursing], 1_000);
        let all = [award.clone(), early.clone()];
        assert!(is_duplicate(&early, &all));
        assert!(!is_duplicate(&award, &all));
        assert_eq!(
            check_award(&early, &[Nursing], &all).unwrap_err().relation,
            Relation::HeldAward
        );
        // Suspended is still an award; terminated is not.
        let suspended = claim(1, Stage::Suspended, true, &[Nursing], 5_000);
        assert!(check_award(&early, &[Nursing], &[suspended]).is_err());
        let ended = claim(1, Stage::Terminated, true, &[Nursing], 5_000);
        assert!(check_award(&early, &[Nursing], &[ended]).is_ok());
    }

    #[test]
    fn ended_cases_and_other_kinds_are_no_duplicates() {
        let mine = claim(2, Stage::DpfReviewed, false, &[Living], 2_000);
        for other in [
            claim(1, Stage::Withdrawn, false, &[Living], 1_000),
            claim(1, Stage::Rejected, false, &[Living], 1_000),
            claim(1, Stage::Notified, false, &[Living], 1_000),
            claim(1, Stage::Received, false, &[Nursing], 1_000),
        ] {
            assert!(conflicts(&mine, std::slice::from_ref(&other)).is_empty());
            assert!(check_award(&mine, &[Living], &[other]).is_ok());
        }
        // An award only claims what it awarded.
        let mut partial = claim(1, Stage::Active, true, &[Living, Nursing], 1_000);
        partial.awarded = vec![Nursing];
        assert!(check_award(&mine, &[Living], &[partial]).is_ok());
    }

    #[test]
    fn equal_times_fall_back_to_the_case_id() {
        let a = claim(1, Stage::Pushed, false, &[Living], 1_000);
        let b = claim(2, Stage::Pushed, false, &[Living], 1_000);
        assert!(precedes(&a, &b));
        assert!(!precedes(&b, &a));
        assert!(is_duplicate(&b, &[a.clone(), b.clone()]));
        assert!(!is_duplicate(&a, &[a.clone(), b.clone()]));
    }

    #[test]
    fn the_domicile_county_keeps_watch() {
        let office = |role, division: &str| OfficeFacts {
            office: "x".into(),
            role,
            division: division.into(),
        };
        assert!(keeps_watch(
            &office(Role::Township, "130102001"),
            "130102001"
        ));
        assert!(keeps_watch(&office(Role::CountyDpf, "130102"), "130102001"));
        assert!(keeps_watch(
            &office(Role::CountyCivilAffairs, "130102"),
            "130102001"
        ));
        assert!(!keeps_watch(
            &office(Role::Township, "130102002"),
            "130102001"
        ));
        assert!(!keeps_watch(
            &office(Role::Township, "440106001"),
            "130102001"
        ));
        assert!(!keeps_watch(
            &office(Role::CountyDpf, "130104"),
            "130102001"
        ));
        assert!(!keeps_watch(&office(Role::Hub, "130102"), "130102001"));
        assert!(!keeps_watch(&office(Role::Supervisor, "13"), "130102001"));
    }

    fn any_claim(n: u32) -> impl Strategy<Value = Claim> {
        (
            0usize..Stage::ALL.len(),
            any::<bool>(),
            proptest::sample::subsequence(vec![Living, Nursing], 0..=2),
            0i64..4,
        )
            .prop_map(move |(stage, approved, kinds, at)| {
                claim(n, Stage::ALL[stage], approved, &kinds, at)
            })
    }

    proptest! {
        /// Among any cases of one person, at most one per kind is not a
        /// duplicate of it: whatever the stages and times, a kind is never
        /// left to two cases, and the one left is the same from every side.
        #[test]
        fn one_case_per_kind_stands(cases in (0u32..6).prop_flat_map(|n| {
            (0..n).map(any_claim).collect::<Vec<_>>()
        })) {
            for kind in SubsidyKind::ALL {
                let standing: Vec<&Claim> = cases
                    .iter()
                    .filter(|c| c.held().contains(&kind))
                    .filter(|c| !conflicts(c, &cases).iter().any(|x| {
                        x.relation.makes_duplicate() && x.kinds.contains(&kind)
                    }))
                    .collect();
                let claimed = cases.iter().any(|c| c.held().contains(&kind));
                prop_assert_eq!(standing.len(), usize::from(claimed));
            }
            // Conflicts are symmetric: exactly one side of each is the duplicate.
            for a in &cases {
                for b in &cases {
                    if a.case == b.case { continue; }
                    let ab = conflicts(a, std::slice::from_ref(b));
                    let ba = conflicts(b, std::slice::from_ref(a));
                    prop_assert_eq!(ab.len(), ba.len());
                    if let (Some(x), Some(y)) = (ab.first(), ba.first()) {
                        prop_assert_ne!(x.relation.makes_duplicate(), y.relation.makes_duplicate());
                    }
                }
            }
        }

        /// The decision's check and the flag agree, and what the check lets
        /// through stands: once the award is signed, no other case of the
        /// person makes it a duplicate.
        #[test]
        fn what_the_check_passes_stands(cases in (0u32..6).prop_flat_map(|n| {
            (0..n).map(any_claim).collect::<Vec<_>>()
        }), kinds in proptest::sample::subsequence(vec![Living, Nursing], 1..=2), at in 0i64..4) {
            let subject = claim(9, Stage::DpfReviewed, false, &kinds, at);
            let mut cases = cases;
            cases.push(subject.clone());
            let passed = check_award(&subject, &kinds, &cases).is_ok();
            // The decision refuses exactly the applications flagged.
            prop_assert_eq!(passed, !is_duplicate(&subject, &cases));
            if passed {
                let mut awarded = subject.clone();
                awarded.standing = Standing::Award;
                awarded.awarded = kinds;
                let after: Vec<Claim> = cases
                    .iter()
                    .map(|c| if c.case == awarded.case { awarded.clone() } else { c.clone() })
                    .collect();
                prop_assert!(!is_duplicate(&awarded, &after));
            }
        }
    }
}
