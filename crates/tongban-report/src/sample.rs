//! Plausible supervised cases and payroll summaries from a seed, for tests,
//! benchmarks and demonstrations: four provinces of 9 counties of 4
//! townships; most applications local, some from another township or
//! province; chains that go as far as the end date lets them, with late
//! steps, returns, rejections, withdrawals, stops, evaluations, and a
//! pending deadline for a case left waiting. Deadlines are counted in
//! calendar days as an approximation of working days — the reports read the
//! signed `late` flags and deadlines, not the calendar.
//!
//! The same seed gives the same cases (fastrand's generator).

use chrono::{Days, NaiveDate};
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_domain::payroll::{KindTotal, YearMonth};
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::{Role, Stage};
use tongban_domain::supervision::{
    Award, Evaluation, PayrollSummary, Pending, Step, SupervisedCase,
};

use crate::disbursement::entitled_in;

const PROVINCES: [&str; 4] = ["11", "13", "32", "44"];

fn township(rng: &mut fastrand::Rng, province: &str) -> String {
    format!(
        "{province}{:02}{:02}{:03}",
        rng.u32(1..=3),
        rng.u32(1..=3),
        rng.u32(1..=4)
    )
}

struct Chain<'a> {
    rng: &'a mut fastrand::Rng,
    case: SupervisedCase,
    now: i64,
    end: i64,
}

const DAY: i64 = 24 * Timestamp::HOUR_MS;

impl Chain<'_> {
    fn date_plus(&self, days: u64) -> NaiveDate {
        let today = Timestamp(self.now).china_date();
        today.checked_add_days(Days::new(days)).unwrap_or(today)
    }

    /// Signs `to` after `delay_days` (plus some hours) unless that falls past
    /// the end; with `allowance`, the step has a deadline that many days
    /// after the current stage was entered. Returns false when the chain
    /// stops here, waiting, with its pending deadline set.
    fn step(
        &mut self,
        to: Stage,
        office: &str,
        role: Role,
        delay_days: u64,
        allowance: Option<u64>,
    ) -> bool {
        let deadline = allowance.map(|days| self.date_plus(days));
        let delay = i64::try_from(delay_days).unwrap_or(0) * DAY
            + i64::from(self.rng.u32(0..8)) * Timestamp::HOUR_MS;
        let at = self.now + delay;
        if at > self.end {
            if let Some(deadline) = deadline {
                let next = match to {
                    Stage::Pushed | Stage::Notified => vec![to],
                    _ => vec![to, Stage::Returned, Stage::Rejected],
                };
                let office = if role == Role::Township {
                    office.to_string()
                } else {
                    String::new()
                };
                self.case.pending = Some(Pending {
                    next,
                    deadline,
                    provisional: false,
                    role,
                    office,
                });
            }
            return false;
        }
        self.now = at;
        let at = Timestamp(at);
        let late = deadline.is_some_and(|dl| at.china_date() > dl);
        self.case.steps.push(Step {
            seq: u32::try_from(self.case.steps.len()).unwrap_or(u32::MAX),
            from: self.case.stage(),
            to,
            office: office.to_string(),
            role,
            at,
            deadline,
            late,
            provisional: deadline.is_some() && self.rng.u32(0..100) == 0,
        });
        true
    }

    /// A review: approve to `approve`, or return or reject.
    fn review(
        &mut self,
        approve: Stage,
        office: &str,
        role: Role,
        allowance: u64,
        pass: u32,
    ) -> Option<Stage> {
        let roll = self.rng.u32(0..100);
        let to = if roll < pass {
            approve
        } else if roll < pass + (100 - pass) / 2 {
            Stage::Returned
        } else {
            Stage::Rejected
        };
        let delay = if self.rng.u32(0..10) < 8 {
            self.rng.u64(0..=allowance)
        } else {
            self.rng.u64(0..=allowance * 3)
        };
        self.step(to, office, role, delay, Some(allowance))
            .then_some(to)
    }
}

/// `n` cases accepted between `start` and `end` (Beijing dates), their
/// chains cut at the end of `end`.
pub fn cases(n: usize, seed: u64, start: NaiveDate, end: NaiveDate) -> Vec<SupervisedCase> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let span = u64::try_from((end - start).num_days().max(1)).unwrap_or(1);
    let end_ms = Timestamp::start_of_china_date(end).millis() + DAY - 1;
    (0..n).map(|_| one(&mut rng, start, span, end_ms)).collect()
}

fn one(rng: &mut fastrand::Rng, start: NaiveDate, span: u64, end: i64) -> SupervisedCase {
    let province = PROVINCES[rng.usize(0..PROVINCES.len())];
    let acceptance = township(rng, province);
    let domicile = match rng.u32(0..10) {
        0..7 => acceptance.clone(),
        7..9 => township(rng, province),
        _ => {
            let other = PROVINCES[rng.usize(0..PROVINCES.len())];
            township(rng, other)
        }
    };
    let day = start
        .checked_add_days(Days::new(rng.u64(0..span)))
        .unwrap_or(start);
    let id = CaseId::new(&acceptance, day, rng.u32(..).to_be_bytes())
        .map(String::from)
        .unwrap_or_else(|_| format!("{acceptance}-{}", rng.u32(..)));
    let kinds = match rng.u32(0..10) {
        0..6 => vec![SubsidyKind::Living],
        6..8 => vec![SubsidyKind::Nursing],
        _ => vec![SubsidyKind::Living, SubsidyKind::Nursing],
    };
    let county = domicile.get(..6).unwrap_or_default().to_string();
    let (dpf, ca) = (format!("{county}-dpf"), format!("{county}-ca"));
    let local = acceptance == domicile;
    let now = Timestamp::start_of_china_date(day).millis() + 9 * Timestamp::HOUR_MS;
    let mut chain = Chain {
        rng,
        case: SupervisedCase {
            case: id,
            acceptance_office: acceptance.clone(),
            acceptance: acceptance.clone(),
            domicile: domicile.clone(),
            kinds: kinds.clone(),
            steps: Vec::new(),
            pending: None,
            awards: Vec::new(),
            first_paid_month: None,
            evaluation: None,
            problems: Vec::new(),
        },
        now,
        end,
    };
    let _ = run(
        &mut chain,
        &acceptance,
        &domicile,
        &dpf,
        &ca,
        local,
        &kinds,
        day,
    );
    if chain.case.steps.len() >= 2 && chain.rng.u32(0..10) < 6 {
        let score = match chain.rng.u32(0..100) {
            0..3 => 1,
            3..8 => 2,
            8..20 => 3,
            20..50 => 4,
            _ => 5,
        };
        let at =
            chain.case.steps[1].at.millis() + i64::from(chain.rng.u32(0..72)) * Timestamp::HOUR_MS;
        if at <= end {
            chain.case.evaluation = Some(Evaluation {
                score,
                office: acceptance.clone(),
                at: Timestamp(at),
            });
        }
    }
    chain.case
}

#[allow(clippy::too_many_arguments)]
fn run(
    c: &mut Chain<'_>,
    acceptance: &str,
    domicile: &str,
    dpf: &str,
    ca: &str,
    local: bool,
    kinds: &[SubsidyKind],
    day: NaiveDate,
) -> Option<()> {
    let t = Role::Township;
    c.step(Stage::Draft, acceptance, t, 0, None).then_some(())?;
    if c.rng.u32(0..50) == 0 {
        c.step(Stage::Withdrawn, acceptance, t, 1, None);
        return None;
    }
    let mut returns: u64 = 0;
    loop {
        c.step(Stage::Accepted, acceptance, t, returns * 5, None)
            .then_some(())?;
        let reviewed = if local {
            c.step(Stage::Publicized, domicile, t, 1, None)
                .then_some(())?;
            let delay = c.rng.u64(7..14);
            let allowance = 10;
            let to = if c.rng.u32(0..10) < 9 {
                Stage::InitialReviewed
            } else {
                Stage::Returned
            };
            c.step(to, domicile, t, delay, Some(allowance))
                .then_some(to)?
        } else {
            let delay = if c.rng.u32(0..10) < 8 {
                c.rng.u64(0..=3)
            } else {
                c.rng.u64(0..=9)
            };
            c.step(Stage::Pushed, acceptance, t, delay, Some(4))
                .then_some(())?;
            let delay = c.rng.u64(0..=1);
            c.step(Stage::Received, domicile, t, delay, None)
                .then_some(())?;
            c.review(Stage::InitialReviewed, domicile, t, 4, 88)?
        };
        let reviewed = match reviewed {
            Stage::InitialReviewed => c.review(Stage::DpfReviewed, dpf, Role::CountyDpf, 3, 90)?,
            other => other,
        };
        let reviewed = match reviewed {
            Stage::DpfReviewed => c.review(Stage::Decided, ca, Role::CountyCivilAffairs, 7, 92)?,
            other => other,
        };
        match reviewed {
            Stage::Returned if returns == 0 && c.rng.bool() => returns += 1,
            Stage::Returned => return None,
            outcome => {
                if outcome == Stage::Decided {
                    c.case.awards = kinds
                        .iter()
                        .map(|&kind| Award {
                            kind,
                            monthly_yuan: if kind == SubsidyKind::Living { 100 } else { 80 },
                        })
                        .collect();
                    c.case.first_paid_month = Some(YearMonth::of(day));
                }
                c.step(Stage::ResultReceived, acceptance, t, 0, None)
                    .then_some(())?;
                let delay = if c.rng.u32(0..10) < 9 {
                    c.rng.u64(0..=3)
                } else {
                    c.rng.u64(4..=8)
                };
                c.step(Stage::Notified, acceptance, t, delay, Some(4))
                    .then_some(())?;
                if outcome != Stage::Decided {
                    return None;
                }
                let delay = c.rng.u64(0..=5);
                c.step(Stage::Active, ca, Role::CountyCivilAffairs, delay, None)
                    .then_some(())?;
                match c.rng.u32(0..20) {
                    0 => {
                        let delay = c.rng.u64(20..90);
                        c.step(Stage::Suspended, ca, Role::CountyCivilAffairs, delay, None)
                            .then_some(())?;
                        if c.rng.bool() {
                            let delay = c.rng.u64(10..40);
                            c.step(Stage::Active, ca, Role::CountyCivilAffairs, delay, None);
                        }
                    }
                    1 => {
                        let delay = c.rng.u64(20..120);
                        c.step(Stage::Terminated, ca, Role::CountyCivilAffairs, delay, None);
                    }
                    _ => {}
                }
                return Some(());
            }
        }
    }
}

/// The payroll summaries the counties of `cases` might have signed for each
/// month `from` through `through`: most entitled people paid, a county now
/// and then not reporting a month.
pub fn summaries(
    cases: &[SupervisedCase],
    seed: u64,
    from: YearMonth,
    through: YearMonth,
) -> Vec<PayrollSummary> {
    use std::collections::BTreeMap;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut entitled: BTreeMap<(&str, YearMonth), [u64; 2]> = BTreeMap::new();
    for case in cases.iter().filter(|c| !c.awards.is_empty()) {
        for month in from.through(through).filter(|m| entitled_in(case, *m)) {
            let counts = entitled.entry((case.domicile_county(), month)).or_default();
            for award in &case.awards {
                counts[usize::from(award.kind == SubsidyKind::Nursing)] += 1;
            }
        }
    }
    let total = |rng: &mut fastrand::Rng, n: u64, yuan: u64| {
        let people = n - n * rng.u64(0..=10) / 100;
        let back_months = people * rng.u64(0..=20) / 100;
        KindTotal {
            people,
            months: people + back_months,
            yuan: (people + back_months) * yuan,
            back_months,
            back_yuan: back_months * yuan,
        }
    };
    let mut out = Vec::new();
    for ((county, month), [living, nursing]) in entitled {
        if rng.u32(0..20) == 0 {
            continue;
        }
        out.push(PayrollSummary {
            county: county.to_string(),
            month,
            living: total(&mut rng, living, 100),
            nursing: total(&mut rng, nursing, 80),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_the_stage_table() {
        let start = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        let cases = cases(3000, 7, start, end);
        assert_eq!(cases, super::cases(3000, 7, start, end), "deterministic");
        let mut stages = std::collections::BTreeSet::new();
        for case in &cases {
            let facts = tongban_domain::stage::CaseFacts {
                acceptance_office: case.acceptance_office.clone(),
                acceptance_township: case.acceptance.clone(),
                domicile_township: case.domicile.clone(),
                approved: false,
            };
            let mut approved = false;
            for s in &case.steps {
                let facts = tongban_domain::stage::CaseFacts {
                    approved,
                    ..facts.clone()
                };
                assert!(
                    tongban_domain::stage::rule_for(s.from, s.to, &facts).is_ok(),
                    "{} {:?} → {}",
                    case.case,
                    s.from,
                    s.to
                );
                if s.to == Stage::Decided {
                    approved = true;
                }
                if s.from == Some(Stage::Returned) {
                    approved = false;
                }
                assert!(s.at.china_date() <= end);
            }
            stages.insert(case.stage());
            if let Some(p) = &case.pending {
                assert!(case.stage().is_some());
                assert!(!p.next.is_empty());
            }
        }
        assert!(stages.len() >= 12, "{stages:?}");
        assert!(cases.iter().any(|c| c.steps.iter().any(|s| s.late)));
        assert!(cases.iter().any(|c| c.evaluation.is_some()));
        let sums = summaries(&cases, 1, YearMonth::of(start), YearMonth::of(end));
        assert!(!sums.is_empty());
    }
}
