//! The monthly payroll (发放) of a county: who is paid what for which months,
//! as one pure calculation over the awards' signed histories and the payroll
//! records signed before.
//!
//! The rules, from the notice (自递交申请当月起计发) and the registries issue:
//!
//! - an award is paid from its first paid month (the month of application), once
//!   it has become `active`: months between the application and the first
//!   payroll that sees the award active are paid then, as back pay (a late
//!   decision costs the applicant nothing);
//! - a standing stop (`suspended` or `terminated`, the trailing run of such
//!   stages in the chain) withholds the month in which it was signed and every
//!   month after it (自暂停当月起停发);
//! - a stop later reversed (`suspended → active`, or the correction row
//!   `terminated → active`) was wrong: the months it withheld are owed, and the
//!   next payroll pays them back;
//! - each month is paid at the amount of the domicile province's policy in force
//!   on its first day, for the certificate's level, unless the decision fixed an
//!   amount (an override with a signed reason);
//! - what earlier records paid is never paid again, and a payroll in which one
//!   person would be paid twice for one kind and month (two cases of the same
//!   person, say) is refused ([`PayrollError::PaidTwice`]) before anything is
//!   signed.
//!
//! A record is the payload of a signed dataset of kind
//! [`crate::dataset::DatasetKind::Payroll`] issued by county civil affairs, one
//! per county and month (`130102:2026-11`), so that the next month knows what
//! was paid. This module does no I/O and reads no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ids::{DisabilityLevel, ResidentId};
use crate::policy::{Policy, SubsidyKind};
use crate::stage::Stage;

/// A calendar month, `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

/// Why a month does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found:?} is not a month in the form YYYY-MM (2026-11)")]
pub struct MonthError {
    /// What was given.
    pub found: String,
}

impl YearMonth {
    /// The month of `date`.
    pub fn of(date: NaiveDate) -> YearMonth {
        YearMonth {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Parses `YYYY-MM` (years 2000–2199).
    pub fn parse(text: &str) -> Result<YearMonth, MonthError> {
        let err = || MonthError {
            found: text.chars().take(40).collect(),
        };
        let (y, m) = text.split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        if !(2000..=2199).contains(&year) || !(1..=12).contains(&month) {
            return Err(err());
        }
        Ok(YearMonth { year, month })
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        // Always valid: month is 1..=12 and the year in range by construction.
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The month after.
    pub fn next(self) -> YearMonth {
        if self.month == 12 {
            YearMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            YearMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Months from `self` through `last`, both included (empty when `last` is
    /// earlier).
    pub fn through(self, last: YearMonth) -> impl Iterator<Item = YearMonth> {
        std::iter::successors(Some(self), move |m| Some(m.next()).filter(|n| *n <= last))
            .filter(move |m| *m <= last)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for YearMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<YearMonth, D::Error> {
        let text = String::deserialize(d)?;
        YearMonth::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One awarded kind of one case, as its signed chain tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardHistory {
    /// The case id.
    pub case: String,
    /// Who is paid.
    pub holder: ResidentId,
    /// The holder's name, for the bank's file.
    pub name: String,
    /// The kind awarded.
    pub kind: SubsidyKind,
    /// The certificate's level, for the policy's amount.
    pub level: DisabilityLevel,
    /// An amount the decision fixed (an override), instead of the policy's.
    pub fixed_yuan: Option<u32>,
    /// The first paid month (the month of application).
    pub first_month: YearMonth,
    /// The award's stages after the decision, in chain order, each with the
    /// Beijing date it was signed: `active`, `suspended`, `terminated`.
    pub stages: Vec<(Stage, NaiveDate)>,
}

impl AwardHistory {
    /// The months owed up to and including `through`, as far as the chain
    /// tells: none before the award was first `active`; from the first paid
    /// month on, but not the month a standing stop was signed nor any after.
    pub fn entitled(&self, through: YearMonth) -> Vec<YearMonth> {
        if !self.stages.iter().any(|(s, _)| *s == Stage::Active) {
            return Vec::new();
        }
        let stopped = |s: &Stage| matches!(s, Stage::Suspended | Stage::Terminated);
        // The trailing run of stops: the first of them is when payment stopped.
        let standing = self
            .stages
            .iter()
            .rev()
            .take_while(|(s, _)| stopped(s))
            .last()
            .map(|(_, date)| YearMonth::of(*date));
        self.first_month
            .through(through)
            .filter(|m| standing.is_none_or(|stop| *m < stop))
            .collect()
    }
}

/// One month paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidMonth {
    /// The month the money is for.
    pub month: YearMonth,
    /// Yuan.
    pub yuan: u32,
}

/// One line of a payroll: one kind of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayLine {
    /// The case id.
    pub case: String,
    /// The holder's resident ID (clear: the record is personal data and stays
    /// in its county, like the registry feeds).
    pub holder: String,
    /// The holder's name.
    pub name: String,
    /// The kind.
    pub kind: SubsidyKind,
    /// The months paid by this line: the record's month, and earlier months as
    /// back pay.
    pub months: Vec<PaidMonth>,
}

impl PayLine {
    /// Yuan in all.
    pub fn total(&self) -> u64 {
        self.months.iter().map(|m| u64::from(m.yuan)).sum()
    }
}

/// What a county paid for one month: signed by its civil affairs bureau.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayrollRecord {
    /// The 6-digit county code.
    pub county: String,
    /// The payroll month.
    pub month: YearMonth,
    /// The operator who made it at the signing office.
    pub operator: String,
    /// The lines, by case then kind.
    pub lines: Vec<PayLine>,
}

/// The totals of one kind in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KindTotal {
    /// People paid.
    pub people: u64,
    /// Months paid, back pay included.
    pub months: u64,
    /// Yuan paid, back pay included.
    pub yuan: u64,
    /// Months paid for months before the record's month.
    pub back_months: u64,
    /// Yuan of those.
    pub back_yuan: u64,
}

/// Why a payroll was not produced or a record does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayrollError {
    /// One person would be paid twice for one kind and month.
    #[error(
        "同一人同一类别同一月份重复发放 {holder} would be paid twice for {kind} in {month} (cases {cases}): end one of the awards first"
    )]
    PaidTwice {
        /// The holder, masked.
        holder: String,
        /// The kind.
        kind: SubsidyKind,
        /// The month.
        month: YearMonth,
        /// The cases paying it.
        cases: String,
    },
    /// The policy has no amount for a month owed.
    #[error("{policy} 未规定 {month} {kind} {level} 级的标准 has no amount for case {case}")]
    NoAmount {
        /// The case.
        case: String,
        /// The policy's name.
        policy: String,
        /// The kind.
        kind: SubsidyKind,
        /// The level.
        level: u8,
        /// The month.
        month: YearMonth,
    },
    /// A record's bytes are not a payroll record.
    #[error("payroll record: {0}")]
    Decode(String),
    /// A record breaks a rule of its own.
    #[error("payroll record {county} {month}: {message}")]
    Invalid {
        /// The county.
        county: String,
        /// The month.
        month: YearMonth,
        /// What is wrong.
        message: String,
    },
}

/// The most bytes a record may have: the signed dataset's payload limit
/// (about 100,000 lines of one month each).
pub const MAX_RECORD_BYTES: usize = 15 << 20;

impl PayrollRecord {
    /// The signed payload bytes (JSON: the bank-facing file is written from
    /// it, and an auditor reads it without this program).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and checks a record.
    pub fn decode(bytes: &[u8]) -> Result<PayrollRecord, PayrollError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(PayrollError::Decode(format!(
                "{} bytes, more than the {MAX_RECORD_BYTES} allowed",
                bytes.len()
            )));
        }
        let record: PayrollRecord =
            serde_json::from_slice(bytes).map_err(|e| PayrollError::Decode(e.to_string()))?;
        record.check()?;
        Ok(record)
    }

    /// The rules every record keeps: a county code, lines each with a valid
    /// resident ID, months no later than the record's, none paid twice.
    pub fn check(&self) -> Result<(), PayrollError> {
        let invalid = |message: String| PayrollError::Invalid {
            county: self.county.clone(),
            month: self.month,
            message,
        };
        if self.county.len() != 6
            || !self.county.bytes().all(|b| b.is_ascii_digit())
            || self.county.ends_with("00")
        {
            return Err(invalid(format!(
                "county {:?} is not a 6-digit county code",
                self.county
            )));
        }
        let mut seen = BTreeMap::new();
        for (idx, line) in self.lines.iter().enumerate() {
            let holder = ResidentId::parse_on(&line.holder, NaiveDate::MAX)
                .map_err(|e| invalid(format!("lines[{idx}].holder: {e}")))?;
            if line.months.is_empty() {
                return Err(invalid(format!("lines[{idx}] pays no month")));
            }
            for paid in &line.months {
                if paid.month > self.month {
                    return Err(invalid(format!(
                        "lines[{idx}] pays {} after the record's month",
                        paid.month
                    )));
                }
                if let Some(other) =
                    seen.insert((holder.clone(), line.kind, paid.month), line.case.clone())
                {
                    return Err(PayrollError::PaidTwice {
                        holder: holder.masked(),
                        kind: line.kind,
                        month: paid.month,
                        cases: format!("{other}, {}", line.case),
                    });
                }
            }
        }
        Ok(())
    }

    /// Totals by kind.
    pub fn totals(&self) -> BTreeMap<SubsidyKind, KindTotal> {
        let mut out: BTreeMap<SubsidyKind, KindTotal> = BTreeMap::new();
        let mut people: BTreeSet<(SubsidyKind, &str)> = BTreeSet::new();
        for line in &self.lines {
            let t = out.entry(line.kind).or_default();
            if people.insert((line.kind, line.holder.as_str())) {
                t.people += 1;
            }
            for paid in &line.months {
                t.months += 1;
                t.yuan += u64::from(paid.yuan);
                if paid.month < self.month {
                    t.back_months += 1;
                    t.back_yuan += u64::from(paid.yuan);
                }
            }
        }
        out
    }

    /// Yuan in all.
    pub fn total(&self) -> u64 {
        self.lines.iter().map(PayLine::total).sum()
    }
}

/// The payroll of `county` for `month`: every award in `awards` paid once for
/// each month it is owed through `month` that no record in `earlier` paid, at
/// the amount `policy_of` the holder's domicile province gives for that month.
/// Refused when a person would be paid twice for one kind and month.
pub fn compute<'p>(
    county: &str,
    month: YearMonth,
    awards: &[AwardHistory],
    earlier: &[PayrollRecord],
    policy_of: impl Fn(&str) -> Option<&'p Policy>,
) -> Result<PayrollRecord, PayrollError> {
    let mut paid: BTreeSet<(&str, SubsidyKind, YearMonth)> = BTreeSet::new();
    for record in earlier {
        for line in &record.lines {
            for m in &line.months {
                paid.insert((line.holder.as_str(), line.kind, m.month));
            }
        }
    }
    // The county's province decides (the domicile's: the holder's ID may
    // carry another province of birth).
    let policy = policy_of(county.get(..2).unwrap_or("00"));
    let mut lines = Vec::new();
    // (holder, kind, month) → the case that pays it in this record.
    let mut owed_by: BTreeMap<(&str, SubsidyKind, YearMonth), &str> = BTreeMap::new();
    for award in awards {
        let holder = award.holder.expose();
        let mut months = Vec::new();
        for m in award.entitled(month) {
            if paid.contains(&(holder, award.kind, m)) {
                continue;
            }
            if let Some(first) = owed_by.insert((holder, award.kind, m), &award.case) {
                return Err(PayrollError::PaidTwice {
                    holder: award.holder.masked(),
                    kind: award.kind,
                    month: m,
                    cases: format!("{first}, {}", award.case),
                });
            }
            let yuan = match (award.fixed_yuan, policy) {
                (Some(fixed), _) => Some(fixed),
                (None, Some(policy)) => {
                    policy.monthly_amount(award.kind, award.level, m.first_day(), county)
                }
                (None, None) => None,
            };
            let Some(yuan) = yuan else {
                return Err(PayrollError::NoAmount {
                    case: award.case.clone(),
                    policy: policy.map_or_else(|| "政策".to_string(), |p| p.name.clone()),
                    kind: award.kind,
                    level: award.level.get(),
                    month: m,
                });
            };
            months.push(PaidMonth { month: m, yuan });
        }
        if !months.is_empty() {
            lines.push(PayLine {
                case: award.case.clone(),
                holder: holder.to_string(),
                name: award.name.clone(),
                kind: award.kind,
                months,
            });
        }
    }
    lines.sort_by(|a, b| (&a.case, a.kind).cmp(&(&b.case, b.kind)));
    let record = PayrollRecord {
        county: county.to_string(),
        month,
        operator: String::new(),
        lines,
    };
    record.check()?;
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn ym(s: &str) -> YearMonth {
        YearMonth::parse(s).unwrap()
    }

    fn award(case: &str, id: &str, kind: SubsidyKind, stages: &[(Stage, &str)]) -> AwardHistory {
        AwardHistory {
            case: case.into(),
            holder: ResidentId::parse(id).unwrap(),
            name: "张三".into(),
            kind,
            level: DisabilityLevel::new(1).unwrap(),
            fixed_yuan: None,
            first_month: ym("2026-03"),
            stages: stages.iter().map(|(s, date)| (*s, d(date))).collect(),
        }
    }

    const ID: &str = "110101199003074573";
    const ID2: &str = "11010119900307803X";

    fn hebei(_: &str) -> Option<&'static Policy> {
        Policy::for_province("13").ok()
    }

    #[test]
    fn months_parse_and_order() {
        assert_eq!(ym("2026-11").to_string(), "2026-11");
        assert_eq!(ym("2026-12").next(), ym("2027-01"));
        for bad in [
            "2026-13", "2026-00", "26-11", "2026/11", "2026-1", "", "abcd-ef",
        ] {
            assert!(YearMonth::parse(bad).is_err(), "{bad}");
        }
        let months: Vec<String> = ym("2026-11")
            .through(ym("2027-02"))
            .map(|m| m.to_string())
            .collect();
        assert_eq!(months, ["2026-11", "2026-12", "2027-01", "2027-02"]);
        assert_eq!(ym("2026-11").through(ym("2026-10")).count(), 0);
    }

    #[test]
    fn back_pay_from_the_month_of_application() {
        let a = award(
            "c1",
            ID,
            SubsidyKind::Living,
            &[(Stage::Active, "2026-06-10")],
        );
        let first = compute(
            "130102",
            ym("2026-06"),
            std::slice::from_ref(&a),
            &[],
            hebei,
        )
        .unwrap();
        // March to June: four months at 90 yuan, three of them back pay.
        assert_eq!(first.total(), 360);
        let t = first.totals()[&SubsidyKind::Living];
        assert_eq!((t.people, t.months, t.back_months), (1, 4, 3));
        // The next month pays July only.
        let next = compute("130102", ym("2026-07"), &[a], &[first], hebei).unwrap();
        assert_eq!(next.lines[0].months.len(), 1);
        assert_eq!(next.total(), 90);
    }

    #[test]
    fn not_active_yet_is_not_paid() {
        let a = award("c1", ID, SubsidyKind::Living, &[]);
        assert!(
            compute("130102", ym("2026-06"), &[a], &[], hebei)
                .unwrap()
                .lines
                .is_empty()
        );
    }

    #[test]
    fn a_standing_stop_withholds_and_a_correction_pays_back() {
        let stopped = award(
            "c1",
            ID,
            SubsidyKind::Nursing,
            &[
                (Stage::Active, "2026-03-20"),
                (Stage::Suspended, "2026-05-02"),
                (Stage::Terminated, "2026-06-02"),
            ],
        );
        // March and April only: the stop in May withholds May on.
        assert_eq!(
            stopped.entitled(ym("2026-08")),
            [ym("2026-03"), ym("2026-04")]
        );
        let r5 = compute(
            "130102",
            ym("2026-05"),
            std::slice::from_ref(&stopped),
            &[],
            hebei,
        )
        .unwrap();
        assert_eq!(r5.lines[0].months.len(), 2);
        let mut resumed = stopped.clone();
        resumed
            .stages
            .push((Stage::Active, "2026-08-15".parse().unwrap()));
        // The correction in August: May to August owed, paid once.
        let r8 = compute("130102", ym("2026-08"), &[resumed], &[r5], hebei).unwrap();
        let months: Vec<String> = r8.lines[0]
            .months
            .iter()
            .map(|m| m.month.to_string())
            .collect();
        assert_eq!(months, ["2026-05", "2026-06", "2026-07", "2026-08"]);
        assert_eq!(r8.total(), 4 * 110);
    }

    #[test]
    fn amounts_follow_the_policy_month_by_month() {
        let mut a = award(
            "c1",
            ID,
            SubsidyKind::Living,
            &[(Stage::Active, "2024-08-01")],
        );
        a.first_month = ym("2024-05");
        let r = compute(
            "130102",
            ym("2024-08"),
            std::slice::from_ref(&a),
            &[],
            hebei,
        )
        .unwrap();
        let yuan: Vec<u32> = r.lines[0].months.iter().map(|m| m.yuan).collect();
        // Hebei's example amounts: 80 until June 2024, 90 from July.
        assert_eq!(yuan, [80, 80, 90, 90]);
        a.fixed_yuan = Some(200);
        let r = compute("130102", ym("2024-08"), &[a], &[], hebei).unwrap();
        assert_eq!(r.total(), 800);
    }

    #[test]
    fn one_person_twice_is_refused() {
        let a = award(
            "c1",
            ID,
            SubsidyKind::Living,
            &[(Stage::Active, "2026-03-20")],
        );
        let b = award(
            "c2",
            ID,
            SubsidyKind::Living,
            &[(Stage::Active, "2026-04-20")],
        );
        let err =
            compute("130102", ym("2026-04"), &[a.clone(), b.clone()], &[], hebei).unwrap_err();
        assert!(matches!(err, PayrollError::PaidTwice { .. }), "{err}");
        assert!(!err.to_string().contains(ID), "the ID is masked: {err}");
        // Another person, or another kind, is no duplicate.
        let c = award(
            "c3",
            ID2,
            SubsidyKind::Living,
            &[(Stage::Active, "2026-04-20")],
        );
        let n = award(
            "c4",
            ID,
            SubsidyKind::Nursing,
            &[(Stage::Active, "2026-04-20")],
        );
        assert!(compute("130102", ym("2026-04"), &[a.clone(), c, n], &[], hebei).is_ok());
        // What an earlier record paid for the person is not paid again by a
        // second case.
        let first = compute(
            "130102",
            ym("2026-04"),
            std::slice::from_ref(&a),
            &[],
            hebei,
        )
        .unwrap();
        let next = compute("130102", ym("2026-05"), &[a, b], &[first], hebei);
        assert!(matches!(next, Err(PayrollError::PaidTwice { .. })));
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let a = award(
            "c1",
            ID,
            SubsidyKind::Living,
            &[(Stage::Active, "2026-03-20")],
        );
        let r = compute("130102", ym("2026-04"), &[a], &[], hebei).unwrap();
        assert_eq!(PayrollRecord::decode(&r.encode()).unwrap(), r);
        let mut twice = r.clone();
        twice.lines.push(twice.lines[0].clone());
        assert!(matches!(
            PayrollRecord::decode(&twice.encode()),
            Err(PayrollError::PaidTwice { .. })
        ));
        let mut later = r.clone();
        later.lines[0].months[0].month = ym("2026-05");
        assert!(PayrollRecord::decode(&later.encode()).is_err());
        let bytes = r.encode();
        for cut in 0..bytes.len() {
            assert!(PayrollRecord::decode(&bytes[..cut]).is_err());
        }
        assert!(
            PayrollRecord::decode(
                b"{\"county\":\"130100\",\"month\":\"2026-04\",\"operator\":\"\",\"lines\":[]}"
            )
            .is_err()
        );
    }
}
