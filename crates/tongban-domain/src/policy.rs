//! Provincial policy, as data: which materials the acceptance office must ask for
//! (一次性告知), who is eligible, the monthly amounts by kind and level over time,
//! and the first paid month.
//!
//! The domicile province's policy decides a case ("享受补贴政策的类型及标准由业务属地负责
//! 解释"): the acceptance office reads the *domicile's* policy to tell the applicant
//! what to bring. Policies ship as TOML files in `data/policies/` (one per province
//! that has its own, `default.toml` for the rest); each file says whether its
//! amounts are examples. The directory authority may publish a province's policy
//! as a signed dataset (`tongban policy publish`, [`crate::dataset::DatasetKind::Policy`]);
//! a node installs the policies it holds ([`Policy::install`]) and from then on
//! [`Policy::for_province`] answers the published one, so that every rule that
//! asks it — the checklist at intake, the guards of the stage table in commands,
//! admission and the verifier, the decision's amounts, the payroll — asks the
//! same policy. One process is one node: the installed set is the process's.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ids::{DisabilityCategory, DisabilityLevel};

/// The two subsidies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubsidyKind {
    /// 困难残疾人生活补贴
    Living,
    /// 重度残疾人护理补贴
    Nursing,
}

impl SubsidyKind {
    /// Both kinds.
    pub const ALL: [SubsidyKind; 2] = [SubsidyKind::Living, SubsidyKind::Nursing];

    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            SubsidyKind::Living => "living",
            SubsidyKind::Nursing => "nursing",
        }
    }

    /// Parses a code name.
    pub fn from_code(code: &str) -> Option<SubsidyKind> {
        SubsidyKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            SubsidyKind::Living => "困难残疾人生活补贴",
            SubsidyKind::Nursing => "重度残疾人护理补贴",
        }
    }
}

impl fmt::Display for SubsidyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// When a material is needed beyond the subsidy kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialCondition {
    /// Always, for the kinds listed.
    Always,
    /// Only for applicants in a dibao household.
    Dibao,
    /// Only for applicants in a low-income household.
    LowIncome,
}

/// One item of the materials checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialItem {
    /// Stable code, used as the `--kind` of an attachment.
    pub code: String,
    /// Chinese name shown to the applicant.
    pub zh: String,
    /// Subsidy kinds that need it.
    pub kinds: Vec<SubsidyKind>,
    /// Narrower condition.
    pub when: MaterialCondition,
}

/// Provincial options of eligibility (国发〔2015〕52号 lets provinces extend both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    /// Living subsidy also for low-income households.
    pub living_low_income_extension: bool,
    /// Nursing subsidy also for level 3-4 intellectual or mental disability.
    pub nursing_extension_intellectual_mental_3_4: bool,
}

/// A monthly amount from a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountEntry {
    /// Subsidy kind.
    pub kind: SubsidyKind,
    /// Disability levels it applies to.
    pub levels: Vec<u8>,
    /// Yuan per month.
    pub monthly_yuan: u32,
    /// First day it applies.
    pub effective_from: NaiveDate,
    /// The cities (4 digits) or counties (6 digits) of the province it applies
    /// to; empty for the whole province. A city's or county's own standard
    /// prevails over the province's from its date on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub divisions: Vec<String>,
}

impl AmountEntry {
    /// How closely the entry names `division`: `None` when it does not apply
    /// there, else the length of the prefix that matched (0 for the province).
    fn specificity(&self, division: &str) -> Option<usize> {
        if self.divisions.is_empty() {
            return Some(0);
        }
        self.divisions
            .iter()
            .filter(|d| division.starts_with(d.as_str()))
            .map(String::len)
            .max()
    }
}

/// One province's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Two-digit province code, `00` for the national default.
    pub province: String,
    /// Name of the province (or of the default).
    pub name: String,
    /// Calendar days of the village / residents' committee notice of a local application.
    pub publicity_days: u32,
    /// True when the amounts are illustrative, not the province's published standard.
    pub amounts_are_examples: bool,
    /// Eligibility options.
    pub eligibility: Eligibility,
    /// The checklist.
    pub materials: Vec<MaterialItem>,
    /// Amounts over time.
    pub amounts: Vec<AmountEntry>,
}

/// Household and disability facts that eligibility depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplicantFacts {
    /// In a dibao (minimum living guarantee) household.
    pub dibao: bool,
    /// In a low-income household.
    pub low_income: bool,
    /// Disability category and level from the certificate, if one was given.
    pub disability: Option<(DisabilityCategory, DisabilityLevel)>,
    /// Needs long-term care (nursing subsidy).
    pub long_term_care: bool,
    /// Similar allowances the applicant declared receiving (elderly nursing
    /// allowance, work-injury nursing allowance, retired-cadre nursing allowance).
    pub other_allowances: Vec<String>,
}

/// Why an applicant is not eligible for a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum Ineligible {
    /// No disability certificate.
    NoCertificate,
    /// Living subsidy: not in a dibao (or, with the extension, low-income) household.
    NotInDibaoHousehold {
        /// Whether this province extends to low-income households.
        low_income_extension: bool,
    },
    /// Nursing subsidy: the level is not covered.
    LevelNotCovered {
        /// The applicant's level.
        level: u8,
    },
    /// Nursing subsidy: long-term care not declared.
    NoLongTermCare,
    /// Nursing subsidy: a similar allowance is already received.
    SimilarAllowance {
        /// The allowance declared.
        allowance: String,
    },
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::NoCertificate => f.write_str("未持有第二代残疾人证"),
            Ineligible::NotInDibaoHousehold {
                low_income_extension: true,
            } => f.write_str("不属于低保家庭或低收入家庭"),
            Ineligible::NotInDibaoHousehold { .. } => f.write_str("不属于低保家庭"),
            Ineligible::LevelNotCovered { level } => {
                write!(f, "残疾等级{level}级不在护理补贴范围内")
            }
            Ineligible::NoLongTermCare => f.write_str("未申报长期照护需求"),
            Ineligible::SimilarAllowance { allowance } => {
                write!(f, "已享受同类护理补贴（{allowance}），不重复享受")
            }
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The TOML does not parse or has a wrong field.
    #[error("policy file {file}: {message}")]
    Parse {
        /// File name.
        file: String,
        /// The parser's message, naming the field and line.
        message: String,
    },
    /// A rule of consistency failed.
    #[error("policy file {file}: {message}")]
    Invalid {
        /// File name.
        file: String,
        /// What is wrong.
        message: String,
    },
}

const SHIPPED: &[(&str, &str)] = &[
    (
        "default.toml",
        include_str!("../data/policies/default.toml"),
    ),
    ("13.toml", include_str!("../data/policies/13.toml")),
];

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_toml(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| PolicyError::Invalid {
            file: file.to_string(),
            message,
        };
        if policy.province.len() != 2 || !policy.province.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "province {:?} must be 2 digits",
                policy.province
            )));
        }
        for (idx, entry) in policy.amounts.iter().enumerate() {
            if entry.levels.is_empty() || entry.levels.iter().any(|l| !(1..=4).contains(l)) {
                return Err(invalid(format!("amounts[{idx}].levels must be 1-4")));
            }
            for division in &entry.divisions {
                let digits = division.bytes().all(|b| b.is_ascii_digit());
                if !(digits
                    && matches!(division.len(), 4 | 6)
                    && division.starts_with(&policy.province)
                    && policy.province != "00")
                {
                    return Err(invalid(format!(
                        "amounts[{idx}].divisions: {division:?} is not a city (4 digits) or county (6 digits) of province {}",
                        policy.province
                    )));
                }
            }
        }
        let mut codes = std::collections::BTreeSet::new();
        for item in &policy.materials {
            if !codes.insert(item.code.as_str()) {
                return Err(invalid(format!("materials code {:?} repeats", item.code)));
            }
        }
        Ok(policy)
    }

    /// The policy that applies to residents of `province` (a 2-digit code): the
    /// one installed from a published dataset, else its own shipped file, else
    /// the national default (published or shipped).
    pub fn for_province(province: &str) -> Result<&'static Policy, PolicyError> {
        if let Some(policy) = installed(province).or_else(|| {
            installed("00").filter(|_| shipped().map(|t| !t.contains_key(province)).unwrap_or(true))
        }) {
            return Ok(policy);
        }
        let table = shipped()?;
        Ok(table
            .get(province)
            .or_else(|| table.get("00"))
            .unwrap_or_else(|| unreachable_default()))
    }

    /// Installs a published policy for this process (the node that holds it):
    /// [`Policy::for_province`] answers it from now on. Answers false when the
    /// same policy was installed already. Each distinct policy installed stays
    /// in memory for the life of the process (a province publishes a few a
    /// year), so that callers keep `&'static` references.
    pub fn install(policy: Policy) -> bool {
        let mut table = INSTALLED
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.get(&policy.province).is_some_and(|p| **p == policy) {
            return false;
        }
        let leaked: &'static Policy = Box::leak(Box::new(policy));
        table.insert(leaked.province.clone(), leaked);
        true
    }

    /// Whether this is the province's own policy, not the default.
    pub fn is_default(&self) -> bool {
        self.province == "00"
    }

    /// The one-time checklist for the requested kinds and household.
    pub fn checklist(&self, kinds: &[SubsidyKind], facts: &ApplicantFacts) -> Vec<&MaterialItem> {
        self.materials
            .iter()
            .filter(|item| item.kinds.iter().any(|k| kinds.contains(k)))
            .filter(|item| match item.when {
                MaterialCondition::Always => true,
                MaterialCondition::Dibao => facts.dibao,
                MaterialCondition::LowIncome => facts.low_income && !facts.dibao,
            })
            .collect()
    }

    /// The checklist item with this code.
    pub fn material(&self, code: &str) -> Option<&MaterialItem> {
        self.materials.iter().find(|m| m.code == code)
    }

    /// Every reason the applicant is not eligible for `kind`; empty when eligible.
    pub fn ineligibility(&self, kind: SubsidyKind, facts: &ApplicantFacts) -> Vec<Ineligible> {
        let mut reasons = Vec::new();
        let Some((category, level)) = facts.disability else {
            reasons.push(Ineligible::NoCertificate);
            return reasons;
        };
        match kind {
            SubsidyKind::Living => {
                let ext = self.eligibility.living_low_income_extension;
                if !(facts.dibao || (ext && facts.low_income)) {
                    reasons.push(Ineligible::NotInDibaoHousehold {
                        low_income_extension: ext,
                    });
                }
            }
            SubsidyKind::Nursing => {
                let extension = self.eligibility.nursing_extension_intellectual_mental_3_4
                    && matches!(
                        category,
                        DisabilityCategory::Intellectual | DisabilityCategory::Mental
                    );
                if level.get() > 2 && !extension {
                    reasons.push(Ineligible::LevelNotCovered { level: level.get() });
                }
                if !facts.long_term_care {
                    reasons.push(Ineligible::NoLongTermCare);
                }
                if let Some(allowance) = facts.other_allowances.first() {
                    reasons.push(Ineligible::SimilarAllowance {
                        allowance: allowance.clone(),
                    });
                }
            }
        }
        reasons
    }

    /// The monthly amount in yuan for `kind` at `level` on `date` for a resident
    /// of `division` (a township, county or city code): of the entries in effect
    /// on that date, the most specific to the division (its county's, its
    /// city's, the province's), the latest of those.
    pub fn monthly_amount(
        &self,
        kind: SubsidyKind,
        level: DisabilityLevel,
        date: NaiveDate,
        division: &str,
    ) -> Option<u32> {
        self.amounts
            .iter()
            .filter(|e| {
                e.kind == kind && e.levels.contains(&level.get()) && e.effective_from <= date
            })
            .filter_map(|e| e.specificity(division).map(|s| (s, e)))
            .max_by_key(|(s, e)| (*s, e.effective_from))
            .map(|(_, e)| e.monthly_yuan)
    }
}

/// Payment starts from the month in which the application was submitted
/// (自递交申请当月起计发): the first day of that month.
pub fn first_paid_month(submitted: NaiveDate) -> NaiveDate {
    submitted.with_day(1).unwrap_or(submitted)
}

/// Policies installed from published datasets, by province.
static INSTALLED: std::sync::RwLock<BTreeMap<String, &'static Policy>> =
    std::sync::RwLock::new(BTreeMap::new());

fn installed(province: &str) -> Option<&'static Policy> {
    INSTALLED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(province)
        .copied()
}

fn shipped() -> Result<&'static BTreeMap<String, Policy>, PolicyError> {
    static TABLE: OnceLock<Result<BTreeMap<String, Policy>, PolicyError>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            SHIPPED
                .iter()
                .map(|(file, text)| Policy::from_toml(file, text).map(|p| (p.province.clone(), p)))
                .collect()
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn unreachable_default() -> &'static Policy {
    // The shipped table always parses with a "00" entry (a unit test proves it); this
    // keeps `for_province` total without a panic path.
    static EMPTY: OnceLock<Policy> = OnceLock::new();
    EMPTY.get_or_init(|| Policy {
        province: "00".into(),
        name: "无".into(),
        publicity_days: 7,
        amounts_are_examples: true,
        eligibility: Eligibility {
            living_low_income_extension: false,
            nursing_extension_intellectual_mental_3_4: false,
        },
        materials: Vec::new(),
        amounts: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn level(n: u8) -> DisabilityLevel {
        DisabilityLevel::new(n).unwrap()
    }

    #[test]
    fn shipped_policies_parse() {
        let table = shipped().unwrap();
        assert!(table.contains_key("00") && table.contains_key("13"));
        assert_eq!(Policy::for_province("13").unwrap().name, "河北省");
        assert!(Policy::for_province("44").unwrap().is_default());
    }

    #[test]
    fn checklist_depends_on_kind_and_household() {
        let hebei = Policy::for_province("13").unwrap();
        let dibao = ApplicantFacts {
            dibao: true,
            ..Default::default()
        };
        let codes = |kinds: &[SubsidyKind], facts: &ApplicantFacts| {
            hebei
                .checklist(kinds, facts)
                .iter()
                .map(|m| m.code.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        expect_test::expect![
            "application_form,id_card,hukou_book,disability_certificate,bank_card,dibao_certificate"
        ]
        .assert_eq(&codes(&[SubsidyKind::Living], &dibao));
        expect_test::expect![
            "application_form,id_card,hukou_book,disability_certificate,bank_card,care_assessment"
        ]
        .assert_eq(&codes(&[SubsidyKind::Nursing], &ApplicantFacts::default()));
    }

    #[test]
    fn eligibility_rules_and_extensions() {
        let hebei = Policy::for_province("13").unwrap();
        let default = Policy::for_province("44").unwrap();
        let mental3 = ApplicantFacts {
            disability: Some((DisabilityCategory::Mental, level(3))),
            long_term_care: true,
            ..Default::default()
        };
        assert!(
            hebei
                .ineligibility(SubsidyKind::Nursing, &mental3)
                .is_empty()
        );
        assert_eq!(
            default.ineligibility(SubsidyKind::Nursing, &mental3),
            vec![Ineligible::LevelNotCovered { level: 3 }]
        );
        let low_income = ApplicantFacts {
            low_income: true,
            disability: Some((DisabilityCategory::Physical, level(4))),
            ..Default::default()
        };
        assert!(
            hebei
                .ineligibility(SubsidyKind::Living, &low_income)
                .is_empty()
        );
        assert!(
            !default
                .ineligibility(SubsidyKind::Living, &low_income)
                .is_empty()
        );
        let with_allowance = ApplicantFacts {
            other_allowances: vec!["高龄津贴".into()],
            ..mental3.clone()
        };
        assert!(matches!(
            hebei.ineligibility(SubsidyKind::Nursing, &with_allowance)[..],
            [Ineligible::SimilarAllowance { .. }]
        ));
    }

    #[test]
    fn amounts_follow_effective_dates() {
        let hebei = Policy::for_province("13").unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            hebei.monthly_amount(SubsidyKind::Living, level(2), d("2024-06-30"), "130102"),
            Some(80)
        );
        assert_eq!(
            hebei.monthly_amount(SubsidyKind::Living, level(2), d("2024-07-01"), "130102"),
            Some(90)
        );
        assert_eq!(
            hebei.monthly_amount(SubsidyKind::Nursing, level(3), d("2025-01-01"), "130102"),
            Some(50)
        );
        assert_eq!(
            Policy::for_province("44").unwrap().monthly_amount(
                SubsidyKind::Nursing,
                level(3),
                d("2025-01-01"),
                "440106"
            ),
            None
        );
        assert_eq!(first_paid_month(d("2026-11-28")), d("2026-11-01"));
    }

    #[test]
    fn a_county_standard_prevails_over_the_province_from_its_date() {
        let text = include_str!("../data/policies/13.toml").to_string()
            + "\n[[amounts]]\nkind = \"living\"\nlevels = [1, 2, 3, 4]\nmonthly_yuan = 130\n\
               effective_from = \"2026-01-01\"\ndivisions = [\"130102\"]\n\
               \n[[amounts]]\nkind = \"living\"\nlevels = [1, 2, 3, 4]\nmonthly_yuan = 110\n\
               effective_from = \"2025-06-01\"\ndivisions = [\"1301\"]\n";
        let policy = Policy::from_toml("13.toml", &text).unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let living = |date: &str, division: &str| {
            policy.monthly_amount(SubsidyKind::Living, level(1), d(date), division)
        };
        assert_eq!(living("2025-12-01", "130102001"), Some(110), "the city's");
        assert_eq!(living("2026-01-01", "130102001"), Some(130), "the county's");
        assert_eq!(
            living("2026-01-01", "130104"),
            Some(110),
            "another county of the city"
        );
        assert_eq!(
            living("2026-01-01", "130202"),
            Some(90),
            "another city: the province's"
        );
        for bad in ["\"44\"", "\"1301021\"", "\"44010\"", "\"abcd\""] {
            let wrong = text.replace("[\"1301\"]", &format!("[{bad}]"));
            let err = Policy::from_toml("13.toml", &wrong).unwrap_err();
            assert!(err.to_string().contains("divisions"), "{err}");
        }
    }

    #[test]
    fn bad_policy_files_name_the_field() {
        let err = Policy::from_toml("x.toml", "province = 13\n").unwrap_err();
        assert!(err.to_string().contains("province"), "{err}");
        let text =
            include_str!("../data/policies/13.toml").replace("levels = [3, 4]", "levels = [5]");
        let err = Policy::from_toml("x.toml", &text).unwrap_err();
        assert!(err.to_string().contains("levels must be 1-4"), "{err}");
    }
}
