//! Reference datasets every office must agree on, and the one table that says
//! who issues each, for which region, and which offices receive it.
//!
//! A dataset is signed by its issuer (`tongban_ledger::dataset`), versioned, and
//! carried by sync like the office directory: the working-day calendar (so that
//! every office counts the same deadline), and the registry feeds a county
//! compares its cases with — the disability-certificate registry, the dibao
//! roster and death registrations (payloads in [`crate::registry`]).
//!
//! The issuer of each kind ([`DatasetKind::issuer`]) and where it may travel
//! ([`reaches`]) are decided here and nowhere else: the ledger's verification, a
//! node's admission of a dataset from a peer, what a node offers a peer, and the
//! publishing commands all ask this module.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stage::Role;

/// The kinds of signed reference data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// 工作日历: the national working-day calendar with adjusted weekends.
    Calendar,
    /// 补贴政策: one province's policy (`crate::policy::Policy`: materials,
    /// eligibility, amounts by city or county with effective dates), published
    /// by the directory authority; scope the 2-digit province, `00` for the
    /// national default.
    Policy,
    /// 残疾人证信息: the county DPF's disability-certificate registry.
    Certificates,
    /// 低保对象名单: the county civil-affairs bureau's dibao roster.
    Dibao,
    /// 死亡登记: death registrations, as the county civil-affairs bureau holds
    /// them (funeral and cremation records, and the cancelled household
    /// registrations the public-security organs share with it).
    Deaths,
    /// 补贴发放记录: what a county paid for one month
    /// ([`crate::payroll::PayrollRecord`]), signed by its civil affairs bureau
    /// so that the next month knows.
    Payroll,
    /// 补贴发放汇总: a county's payroll month without any person in it
    /// ([`crate::supervision::PayrollSummary`]: totals by kind), signed by
    /// its civil affairs bureau with the record; it reaches the hubs and the
    /// supervisors above the county, for the disbursement report.
    PayrollSummary,
}

/// Who signs a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// The directory authority's own key (the one every node trusts).
    Authority,
    /// An office of this role, certified by the directory, whose division is the
    /// dataset's scope.
    Office(Role),
}

/// The size of the region a dataset covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeLevel {
    /// The whole country: the scope is `00`.
    Nation,
    /// One province's rules, which every office applies to its residents:
    /// the scope is the 2-digit province, or `00` for the national default.
    Province,
    /// One county: the scope is its 6-digit division code.
    County,
    /// One county and month: `130102:2026-11`.
    CountyMonth,
}

impl DatasetKind {
    /// Every kind.
    pub const ALL: [DatasetKind; 7] = [
        DatasetKind::Calendar,
        DatasetKind::Policy,
        DatasetKind::Certificates,
        DatasetKind::Dibao,
        DatasetKind::Deaths,
        DatasetKind::Payroll,
        DatasetKind::PayrollSummary,
    ];

    /// The byte on the wire and in signed encodings. Stable forever.
    pub fn wire(self) -> u8 {
        match self {
            DatasetKind::Calendar => 1,
            DatasetKind::Policy => 2,
            DatasetKind::Certificates => 3,
            DatasetKind::Dibao => 4,
            DatasetKind::Deaths => 5,
            DatasetKind::Payroll => 6,
            DatasetKind::PayrollSummary => 7,
        }
    }

    /// Inverse of [`DatasetKind::wire`].
    pub fn from_wire(byte: u8) -> Option<DatasetKind> {
        DatasetKind::ALL.into_iter().find(|k| k.wire() == byte)
    }

    /// Stable code name (`certificates`).
    pub fn code(self) -> &'static str {
        match self {
            DatasetKind::Calendar => "calendar",
            DatasetKind::Policy => "policy",
            DatasetKind::Certificates => "certificates",
            DatasetKind::Dibao => "dibao",
            DatasetKind::Deaths => "deaths",
            DatasetKind::Payroll => "payroll",
            DatasetKind::PayrollSummary => "payroll_summary",
        }
    }

    /// Parses a code name.
    pub fn from_code(code: &str) -> Option<DatasetKind> {
        DatasetKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            DatasetKind::Calendar => "工作日历",
            DatasetKind::Policy => "补贴政策",
            DatasetKind::Certificates => "残疾人证信息",
            DatasetKind::Dibao => "低保对象名单",
            DatasetKind::Deaths => "死亡登记信息",
            DatasetKind::Payroll => "补贴发放记录",
            DatasetKind::PayrollSummary => "补贴发放汇总",
        }
    }

    /// Who may sign it.
    pub fn issuer(self) -> Issuer {
        match self {
            DatasetKind::Calendar | DatasetKind::Policy => Issuer::Authority,
            DatasetKind::Certificates => Issuer::Office(Role::CountyDpf),
            DatasetKind::Dibao
            | DatasetKind::Deaths
            | DatasetKind::Payroll
            | DatasetKind::PayrollSummary => Issuer::Office(Role::CountyCivilAffairs),
        }
    }

    /// The region it covers.
    pub fn scope_level(self) -> ScopeLevel {
        match self {
            DatasetKind::Calendar => ScopeLevel::Nation,
            DatasetKind::Policy => ScopeLevel::Province,
            DatasetKind::Certificates | DatasetKind::Dibao | DatasetKind::Deaths => {
                ScopeLevel::County
            }
            DatasetKind::Payroll | DatasetKind::PayrollSummary => ScopeLevel::CountyMonth,
        }
    }

    /// Whether it holds personal data (ID numbers): such a dataset never
    /// reaches a supervisor or an office outside its county.
    pub fn personal(self) -> bool {
        matches!(
            self,
            DatasetKind::Certificates
                | DatasetKind::Dibao
                | DatasetKind::Deaths
                | DatasetKind::Payroll
        )
    }

    /// Whether it is a registry feed a county compares its cases with
    /// ([`crate::registry::Feed`]).
    pub fn is_feed(self) -> bool {
        self.scope_level() == ScopeLevel::County
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a scope does not fit a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A province scope is two digits.
    #[error(
        "scope of {kind} must be a 2-digit province code (00 for the national default), found {found:?}"
    )]
    NotProvince {
        /// The kind.
        kind: DatasetKind,
        /// What was given.
        found: String,
    },
    /// The national scope is `00`.
    #[error("scope of {kind} must be 00 (the whole country), found {found:?}")]
    NotNation {
        /// The kind.
        kind: DatasetKind,
        /// What was given.
        found: String,
    },
    /// A county scope is six digits.
    #[error("scope of {kind} must be a 6-digit county code, found {found:?}")]
    NotCounty {
        /// The kind.
        kind: DatasetKind,
        /// What was given.
        found: String,
    },
    /// A county-month scope is `130102:2026-11`.
    #[error("scope of {kind} must be a county code and a month, 130102:2026-11, found {found:?}")]
    NotCountyMonth {
        /// The kind.
        kind: DatasetKind,
        /// What was given.
        found: String,
    },
}

/// The division a scope covers: the county of a county-month scope, else the
/// scope itself.
pub fn region(scope: &str) -> &str {
    scope.split_once(':').map_or(scope, |(county, _)| county)
}

/// The scope of a county's payroll record for `month`.
pub fn payroll_scope(county: &str, month: crate::payroll::YearMonth) -> String {
    format!("{county}:{month}")
}

/// Checks that `scope` has the shape `kind` requires.
pub fn check_scope(kind: DatasetKind, scope: &str) -> Result<(), ScopeError> {
    let county =
        |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) && !s.ends_with("00");
    match kind.scope_level() {
        ScopeLevel::Nation if scope == "00" => Ok(()),
        ScopeLevel::Nation => Err(ScopeError::NotNation {
            kind,
            found: scope.to_string(),
        }),
        ScopeLevel::Province if scope.len() == 2 && scope.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(())
        }
        ScopeLevel::Province => Err(ScopeError::NotProvince {
            kind,
            found: scope.chars().take(40).collect(),
        }),
        ScopeLevel::County if county(scope) => Ok(()),
        ScopeLevel::County => Err(ScopeError::NotCounty {
            kind,
            found: scope.to_string(),
        }),
        ScopeLevel::CountyMonth => match scope.split_once(':') {
            Some((c, m)) if county(c) && crate::payroll::YearMonth::parse(m).is_ok() => Ok(()),
            _ => Err(ScopeError::NotCountyMonth {
                kind,
                found: scope.chars().take(40).collect(),
            }),
        },
    }
}

/// Whether an office of `role` at `division` receives (and may hold) a dataset
/// of `kind` for `scope`.
///
/// National data reaches every office. A county's registry feeds hold ID
/// numbers: they reach the offices of that county (the county's bureaus, its
/// townships and its county hub) and the province hub above it, through which
/// a county whose offices link only to their province still gets them — never
/// the national hub, another county, another province or a supervisor. A
/// county's payroll records stay in the county: the province hub would hold
/// every county's every month, and no office outside the county pays. Its
/// payroll summaries, which name no one, reach the county's offices and
/// every hub and supervisor above it, up to the national ones.
pub fn reaches(kind: DatasetKind, scope: &str, role: Role, division: &str) -> bool {
    if kind == DatasetKind::PayrollSummary {
        let county = region(scope);
        return division.starts_with(county)
            || (matches!(role, Role::Hub | Role::Supervisor)
                && (division == "00" || county.starts_with(division)));
    }
    match kind.scope_level() {
        // Every acceptance office tells applicants of any province what to
        // bring, and every node checks decisions by the domicile's policy.
        ScopeLevel::Nation | ScopeLevel::Province => true,
        ScopeLevel::CountyMonth => role != Role::Supervisor && division.starts_with(region(scope)),
        ScopeLevel::County => {
            if role == Role::Supervisor {
                return false;
            }
            division.starts_with(scope)
                || (role == Role::Hub && division.len() == 2 && scope.starts_with(division))
        }
    }
}

/// Checks that `payload` is what a dataset of `kind` carries — a calendar in
/// the text format, a feed in the registry's compact form — and says what it
/// holds (`2025, 2026, 2027`, `41 rows`). A payload that fails is refused
/// however well it is signed.
pub fn check_payload(kind: DatasetKind, scope: &str, payload: &[u8]) -> Result<String, String> {
    match kind {
        DatasetKind::Calendar => {
            let text = std::str::from_utf8(payload)
                .map_err(|e| format!("the calendar is not UTF-8 text: {e}"))?;
            let mut calendar = crate::calendar::Calendar::default();
            let years = calendar.import_text(text).map_err(|e| e.to_string())?;
            if years.is_empty() {
                return Err("the calendar covers no year".into());
            }
            Ok(years
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", "))
        }
        DatasetKind::Certificates | DatasetKind::Dibao | DatasetKind::Deaths => {
            let feed = crate::registry::Feed::decode(kind, payload).map_err(|e| e.to_string())?;
            Ok(format!("{} rows", feed.len()))
        }
        DatasetKind::Policy => {
            let text = std::str::from_utf8(payload)
                .map_err(|e| format!("the policy is not UTF-8 text: {e}"))?;
            let policy = crate::policy::Policy::from_toml(&format!("{scope}.toml"), text)
                .map_err(|e| e.to_string())?;
            if policy.province != scope {
                return Err(format!(
                    "the policy is of province {}, signed as {scope}",
                    policy.province
                ));
            }
            Ok(format!("{}, {} amounts", policy.name, policy.amounts.len()))
        }
        DatasetKind::PayrollSummary => {
            let summary: crate::supervision::PayrollSummary = serde_json::from_slice(payload)
                .map_err(|e| format!("the payroll summary does not decode: {e}"))?;
            if payroll_scope(&summary.county, summary.month) != scope {
                return Err(format!(
                    "the summary is of {} {}, signed as {scope}",
                    summary.county, summary.month
                ));
            }
            Ok(format!(
                "{} people, {} yuan",
                summary.living.people + summary.nursing.people,
                summary.living.yuan + summary.nursing.yuan
            ))
        }
        DatasetKind::Payroll => {
            let record =
                crate::payroll::PayrollRecord::decode(payload).map_err(|e| e.to_string())?;
            if payroll_scope(&record.county, record.month) != scope {
                return Err(format!(
                    "the record is of {} {}, signed as {scope}",
                    record.county, record.month
                ));
            }
            Ok(format!(
                "{} lines, {} yuan",
                record.lines.len(),
                record.total()
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_round_trip_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in DatasetKind::ALL {
            assert!(seen.insert(kind.wire()));
            assert_eq!(DatasetKind::from_wire(kind.wire()), Some(kind));
            assert_eq!(DatasetKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(DatasetKind::from_wire(2), Some(DatasetKind::Policy));
        assert_eq!(DatasetKind::from_wire(0), None);
        assert_eq!(DatasetKind::from_wire(7), Some(DatasetKind::PayrollSummary));
        assert_eq!(DatasetKind::from_wire(8), None);
    }

    #[test]
    fn payroll_summaries_name_no_one_and_climb_to_every_supervisor_above_the_county() {
        let scope = "130102:2026-11";
        let summary = DatasetKind::PayrollSummary;
        assert!(!summary.personal());
        assert!(DatasetKind::Payroll.personal());
        for (role, division) in [
            (Role::CountyCivilAffairs, "130102"),
            (Role::Township, "130102001"),
            (Role::Hub, "130102"),
            (Role::Hub, "13"),
            (Role::Hub, "00"),
            (Role::Supervisor, "13"),
            (Role::Supervisor, "00"),
        ] {
            assert!(
                reaches(summary, scope, role, division),
                "{role:?} {division}"
            );
        }
        for (role, division) in [
            (Role::Supervisor, "44"),
            (Role::Hub, "44"),
            (Role::Hub, "130104"),
            (Role::Township, "130104001"),
            (Role::CountyCivilAffairs, "440106"),
        ] {
            assert!(
                !reaches(summary, scope, role, division),
                "{role:?} {division}"
            );
        }
        // The record itself stays in the county.
        assert!(!reaches(
            DatasetKind::Payroll,
            scope,
            Role::Supervisor,
            "13"
        ));
        assert!(!reaches(DatasetKind::Payroll, scope, Role::Hub, "13"));
    }

    #[test]
    fn scopes_fit_their_kind() {
        assert!(check_scope(DatasetKind::Calendar, "00").is_ok());
        assert!(check_scope(DatasetKind::Calendar, "13").is_err());
        assert!(check_scope(DatasetKind::Certificates, "130102").is_ok());
        for bad in ["13", "130100", "130000", "13010", "1301021", "13010x", ""] {
            assert!(check_scope(DatasetKind::Dibao, bad).is_err(), "{bad}");
        }
        assert!(check_scope(DatasetKind::Payroll, "130102:2026-11").is_ok());
        for bad in [
            "130102",
            "130102:2026-13",
            "130100:2026-11",
            "130102:2026-11:x",
            "",
        ] {
            assert!(check_scope(DatasetKind::Payroll, bad).is_err(), "{bad}");
        }
        assert_eq!(region("130102:2026-11"), "130102");
        assert!(check_scope(DatasetKind::Policy, "13").is_ok());
        assert!(check_scope(DatasetKind::Policy, "00").is_ok());
        for bad in ["1", "130", "130102", "1x", ""] {
            assert!(check_scope(DatasetKind::Policy, bad).is_err(), "{bad}");
        }
        assert!(reaches(
            DatasetKind::Policy,
            "13",
            Role::Township,
            "440106001"
        ));
        assert!(reaches(DatasetKind::Policy, "13", Role::Supervisor, "44"));
    }

    #[test]
    fn feeds_stay_in_their_county() {
        let feed = DatasetKind::Deaths;
        assert!(reaches(feed, "130102", Role::CountyDpf, "130102"));
        assert!(reaches(feed, "130102", Role::Township, "130102001"));
        assert!(reaches(feed, "130102", Role::Hub, "130102"));
        assert!(reaches(feed, "130102", Role::Hub, "13"));
        assert!(!reaches(feed, "130102", Role::Hub, "00"));
        assert!(!reaches(feed, "130102", Role::Hub, "44"));
        assert!(!reaches(feed, "130102", Role::Township, "130104001"));
        assert!(!reaches(feed, "130102", Role::Supervisor, "13"));
        assert!(!reaches(feed, "130102", Role::Supervisor, "130102"));
        assert!(reaches(DatasetKind::Calendar, "00", Role::Supervisor, "44"));
        let pay = DatasetKind::Payroll;
        assert!(reaches(pay, "130102:2026-11", Role::CountyDpf, "130102"));
        assert!(reaches(pay, "130102:2026-11", Role::Hub, "130102"));
        assert!(!reaches(pay, "130102:2026-11", Role::Hub, "13"));
        assert!(!reaches(pay, "130102:2026-11", Role::Township, "130104001"));
        assert!(!reaches(pay, "130102:2026-11", Role::Supervisor, "130102"));
    }
}
