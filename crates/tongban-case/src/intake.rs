//! Intake: turning what a clerk typed (flags or a JSON file) into a validated
//! application. Validation reports every bad field at once, each named, so the
//! clerk fixes the form in one pass (the spirit of 一次性告知).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tongban_domain::division::{DivisionCode, DivisionLevel, Divisions};
use tongban_domain::ids::{CertificateNumber, ResidentId};
use tongban_domain::policy::{ApplicantFacts, SubsidyKind};

/// The intake form as entered: every field a plain string or flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeForm {
    /// Applicant's name.
    pub name: String,
    /// Resident ID number.
    pub resident_id: String,
    /// 9-digit township code of the household register.
    pub hukou_township: String,
    /// Disability certificate number (empty when none).
    pub certificate: String,
    /// In a dibao household.
    pub dibao: bool,
    /// In a low-income household.
    pub low_income: bool,
    /// Needs long-term care.
    pub long_term_care: bool,
    /// Similar allowances already received.
    pub other_allowances: Vec<String>,
    /// Subsidy kinds: `living`, `nursing`.
    pub subsidy_kinds: Vec<String>,
    /// Contact telephone.
    pub phone: String,
    /// Current address.
    pub address: String,
    /// Guardian or agent applying on the applicant's behalf.
    pub agent: Option<String>,
}

/// One bad field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field name as in the form.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A validated application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// Name.
    pub name: String,
    /// Resident ID.
    pub resident_id: ResidentId,
    /// Household register township (9 digits, known in the division table).
    pub hukou_township: DivisionCode,
    /// Certificate, checked to belong to the applicant.
    pub certificate: Option<CertificateNumber>,
    /// Household and care facts.
    pub facts: ApplicantFacts,
    /// Kinds applied for, deduplicated, in order.
    pub subsidy_kinds: Vec<SubsidyKind>,
    /// Telephone.
    pub phone: String,
    /// Address.
    pub address: String,
    /// Agent.
    pub agent: Option<String>,
}

impl IntakeForm {
    /// Validates every field against `today`; returns all errors at once.
    pub fn validate(&self, today: NaiveDate) -> Result<Intake, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad =
            |field: &'static str, message: String| errors.push(FieldError { field, message });

        let name = self.name.trim().to_string();
        let name_len = name.chars().count();
        if name_len == 0 || name_len > 64 || name.chars().any(char::is_control) {
            bad(
                "name",
                "姓名必填，1-64 个字符 (1-64 characters, required)".into(),
            );
        }
        let resident_id = match ResidentId::parse_on(&self.resident_id, today) {
            Ok(id) => Some(id),
            Err(e) => {
                bad("resident_id", e.to_string());
                None
            }
        };
        let hukou_township = match DivisionCode::parse(self.hukou_township.trim()) {
            Ok(code) if code.level() != DivisionLevel::Township => {
                bad(
                    "hukou_township",
                    format!("{code} is not a 9-digit township code"),
                );
                None
            }
            Ok(code) => match Divisions::national().map(|t| t.lookup(code.as_str())) {
                Ok(Ok(_)) => Some(code),
                Ok(Err(e)) => {
                    bad("hukou_township", e.to_string());
                    None
                }
                Err(e) => {
                    bad("hukou_township", e.to_string());
                    None
                }
            },
            Err(e) => {
                bad("hukou_township", e.to_string());
                None
            }
        };
        let certificate = if self.certificate.trim().is_empty() {
            None
        } else {
            match CertificateNumber::parse_on(&self.certificate, today) {
                Ok(cert) => {
                    if let Some(id) = &resident_id
                        && let Err(e) = cert.check_holder(id)
                    {
                        bad("certificate", e.to_string());
                    }
                    Some(cert)
                }
                Err(e) => {
                    bad("certificate", e.to_string());
                    None
                }
            }
        };
        let mut subsidy_kinds = Vec::new();
        if self.subsidy_kinds.is_empty() {
            bad(
                "subsidy_kinds",
                "至少选择一项补贴 (choose living and/or nursing)".into(),
            );
        }
        for kind in &self.subsidy_kinds {
            match SubsidyKind::from_code(kind.trim()) {
                Some(k) if !subsidy_kinds.contains(&k) => subsidy_kinds.push(k),
                Some(_) => {}
                None => bad(
                    "subsidy_kinds",
                    format!("{kind:?} is not a subsidy kind (living, nursing)"),
                ),
            }
        }
        if self.dibao && self.low_income {
            bad(
                "low_income",
                "a household is either dibao or low-income, not both".into(),
            );
        }
        let phone = self.phone.trim().to_string();
        if !phone.is_empty()
            && !phone
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == ' ')
        {
            bad(
                "phone",
                "电话只能包含数字、空格、+ 和 - (digits, spaces, + and - only)".into(),
            );
        }
        if self.address.chars().any(char::is_control) {
            bad("address", "contains control characters".into());
        }
        let (Some(resident_id), Some(hukou_township)) = (resident_id, hukou_township) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let facts = ApplicantFacts {
            dibao: self.dibao,
            low_income: self.low_income,
            disability: certificate.as_ref().map(|c| (c.category(), c.level())),
            long_term_care: self.long_term_care,
            other_allowances: self.other_allowances.clone(),
        };
        Ok(Intake {
            name,
            resident_id,
            hukou_township,
            certificate,
            facts,
            subsidy_kinds,
            phone,
            address: self.address.trim().to_string(),
            agent: self.agent.clone().filter(|a| !a.trim().is_empty()),
        })
    }
}
