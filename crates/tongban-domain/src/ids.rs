//! Identifiers: the resident ID number, the disability certificate number, case,
//! office and operator identifiers, and timestamps.
//!
//! Every type here can only exist valid: parsing is the single way in, and each
//! error names the rule that failed and, where it helps, the character position.
//! Personal identifiers ([`ResidentId`], [`CertificateNumber`]) display masked;
//! the clear value is reachable only through an explicitly named method.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Weights of the ISO 7064 MOD 11-2 check over the first 17 digits (GB 11643).
const CHECK_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each value of the weighted sum modulo 11.
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Province prefixes that may open a resident ID number: the 31 mainland provinces,
/// plus 71 (Taiwan), 81 (Hong Kong), 82 (Macao) and 83 (residence permits for
/// Taiwan residents), which the national scheme issues.
const KNOWN_ID_PROVINCES: [&str; 35] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82", "83",
];

/// Computes the GB 11643 check character of 17 leading digits.
///
/// Returns `None` when `first17` is not exactly 17 ASCII digits.
pub fn resident_id_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(CHECK_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(CHECK_CHARS[(sum % 11) as usize])
}

/// Why a resident ID number was refused. Each variant is one rule of GB 11643.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResidentIdError {
    /// The number does not have 18 characters.
    #[error("a resident ID number has 18 characters, found {found}")]
    Length {
        /// Number of characters found.
        found: usize,
    },
    /// One of the first 17 characters is not a digit.
    #[error("character {position} must be a digit, found {found:?}")]
    NotDigit {
        /// 1-based position of the offending character.
        position: usize,
        /// The character found there.
        found: char,
    },
    /// The 18th character is neither a digit nor X.
    #[error("character 18 is the check character, a digit or X, found {found:?}")]
    BadCheckCharacter {
        /// The character found.
        found: char,
    },
    /// The first two digits are not a known province.
    #[error("province prefix {prefix} (characters 1-2) is not a known province")]
    UnknownProvince {
        /// The two-digit prefix.
        prefix: String,
    },
    /// Characters 7-14 are not a real date.
    #[error("birth date {digits} (characters 7-14) is not a real date")]
    InvalidBirthDate {
        /// The eight digits found.
        digits: String,
    },
    /// The birth date lies after today.
    #[error("birth date {date} (characters 7-14) is in the future")]
    FutureBirthDate {
        /// The birth date.
        date: NaiveDate,
    },
    /// The check character does not match the first 17 digits.
    #[error("check character (character 18) is {found}, but the first 17 digits give {expected}")]
    CheckMismatch {
        /// The check character the digits require.
        expected: char,
        /// The check character found.
        found: char,
    },
}

/// Sex recorded in a resident ID number (odd sequence digit: male).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// 男
    Male,
    /// 女
    Female,
}

impl Sex {
    /// Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
        }
    }
}

/// A valid 18-character resident ID number (居民身份证号码, GB 11643).
///
/// The area code (characters 1-6) is where the person was first registered and may
/// be a code that no longer exists; it proves nothing about today's household
/// registration and is never checked beyond its province prefix.
///
/// `Display` and `Debug` are masked (first 6 and last 4 characters kept); use
/// [`ResidentId::expose`] where the clear value is needed, and nowhere else.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId(String);

impl ResidentId {
    /// Parses and validates against today's date in Beijing.
    pub fn parse(input: &str) -> Result<ResidentId, ResidentIdError> {
        ResidentId::parse_on(input, crate::today_in_china())
    }

    /// Parses and validates with an explicit "today", for deterministic callers.
    ///
    /// Rules are checked in order: length, digits, check character form, province,
    /// birth date, check character value. A lowercase `x` is accepted and
    /// normalised to `X`.
    pub fn parse_on(input: &str, today: NaiveDate) -> Result<ResidentId, ResidentIdError> {
        let trimmed = input.trim();
        let chars: Vec<char> = trimmed.chars().collect();
        if chars.len() != 18 {
            return Err(ResidentIdError::Length { found: chars.len() });
        }
        for (idx, c) in chars.iter().take(17).enumerate() {
            if !c.is_ascii_digit() {
                return Err(ResidentIdError::NotDigit {
                    position: idx + 1,
                    found: *c,
                });
            }
        }
        let last = chars[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(ResidentIdError::BadCheckCharacter { found: chars[17] });
        }
        let prefix: String = chars[..2].iter().collect();
        if !KNOWN_ID_PROVINCES.contains(&prefix.as_str()) {
            return Err(ResidentIdError::UnknownProvince { prefix });
        }
        let digits: String = chars[6..14].iter().collect();
        let birth = NaiveDate::parse_from_str(&digits, "%Y%m%d")
            .ok()
            .filter(|d| d.year() >= 1850)
            .ok_or_else(|| ResidentIdError::InvalidBirthDate {
                digits: digits.clone(),
            })?;
        if birth > today {
            return Err(ResidentIdError::FutureBirthDate { date: birth });
        }
        let first17: String = chars[..17].iter().collect();
        let expected = resident_id_check_char(&first17)
            .ok_or(ResidentIdError::Length { found: chars.len() })?;
        if expected != last {
            return Err(ResidentIdError::CheckMismatch {
                expected,
                found: last,
            });
        }
        Ok(ResidentId(format!("{first17}{last}")))
    }

    /// The clear number. Call only where the clear value is needed (the case
    /// document, the keyed duplicate index); never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form: first 6 and last 4 characters kept.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }

    /// Birth date (characters 7-14).
    pub fn birth_date(&self) -> NaiveDate {
        // Validated at construction; the fallback is unreachable but keeps this total.
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").unwrap_or(NaiveDate::MIN)
    }

    /// Sex from the parity of character 17.
    pub fn sex(&self) -> Sex {
        let digit = self.0.as_bytes()[16] - b'0';
        if digit % 2 == 1 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The area of first registration (characters 1-6), which may no longer exist.
    pub fn registration_area(&self) -> &str {
        &self.0[..6]
    }

    /// The province prefix (characters 1-2).
    pub fn province_prefix(&self) -> &str {
        &self.0[..2]
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

/// Disability category, the 19th character of a certificate number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabilityCategory {
    /// 1 视力残疾
    Visual,
    /// 2 听力残疾
    Hearing,
    /// 3 言语残疾
    Speech,
    /// 4 肢体残疾
    Physical,
    /// 5 智力残疾
    Intellectual,
    /// 6 精神残疾
    Mental,
    /// 7 多重残疾
    Multiple,
}

impl DisabilityCategory {
    /// All categories in digit order.
    pub const ALL: [DisabilityCategory; 7] = [
        DisabilityCategory::Visual,
        DisabilityCategory::Hearing,
        DisabilityCategory::Speech,
        DisabilityCategory::Physical,
        DisabilityCategory::Intellectual,
        DisabilityCategory::Mental,
        DisabilityCategory::Multiple,
    ];

    /// From the certificate digit 1-7.
    pub fn from_digit(digit: u8) -> Option<DisabilityCategory> {
        DisabilityCategory::ALL
            .get(usize::from(digit).checked_sub(1)?)
            .copied()
    }

    /// The certificate digit 1-7.
    pub fn digit(self) -> u8 {
        self as u8 + 1
    }

    /// Chinese label, as printed on the certificate.
    pub fn zh(self) -> &'static str {
        match self {
            DisabilityCategory::Visual => "视力",
            DisabilityCategory::Hearing => "听力",
            DisabilityCategory::Speech => "言语",
            DisabilityCategory::Physical => "肢体",
            DisabilityCategory::Intellectual => "智力",
            DisabilityCategory::Mental => "精神",
            DisabilityCategory::Multiple => "多重",
        }
    }

    /// Parses a code name (`physical`).
    pub fn from_code(code: &str) -> Option<DisabilityCategory> {
        DisabilityCategory::ALL
            .into_iter()
            .find(|c| c.code() == code)
    }

    /// Stable code name used in documents and policy files.
    pub fn code(self) -> &'static str {
        match self {
            DisabilityCategory::Visual => "visual",
            DisabilityCategory::Hearing => "hearing",
            DisabilityCategory::Speech => "speech",
            DisabilityCategory::Physical => "physical",
            DisabilityCategory::Intellectual => "intellectual",
            DisabilityCategory::Mental => "mental",
            DisabilityCategory::Multiple => "multiple",
        }
    }
}

/// Disability level 1 (most severe) to 4, the 20th character of a certificate number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct DisabilityLevel(u8);

impl DisabilityLevel {
    /// A level from 1 to 4.
    pub fn new(level: u8) -> Option<DisabilityLevel> {
        (1..=4).contains(&level).then_some(DisabilityLevel(level))
    }

    /// The level number, 1 (most severe) to 4.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Chinese label, e.g. "一级".
    pub fn zh(self) -> &'static str {
        ["一级", "二级", "三级", "四级"][usize::from(self.0 - 1)]
    }
}

impl TryFrom<u8> for DisabilityLevel {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        DisabilityLevel::new(value)
            .ok_or_else(|| format!("disability level must be 1-4, found {value}"))
    }
}

impl From<DisabilityLevel> for u8 {
    fn from(level: DisabilityLevel) -> u8 {
        level.0
    }
}

/// Why a disability certificate number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Fewer than 20 characters, or an over-long suffix.
    #[error(
        "a disability certificate number has 20 characters plus an optional reissue suffix of up to 4, found {found}"
    )]
    Length {
        /// Number of characters found.
        found: usize,
    },
    /// Characters 1-18 are not a valid resident ID number.
    #[error("characters 1-18 are the holder's ID number: {0}")]
    Holder(ResidentIdError),
    /// Character 19 is not a category digit 1-7.
    #[error("character 19 is the disability category, 1-7, found {found:?}")]
    Category {
        /// The character found.
        found: char,
    },
    /// Character 20 is not a level digit 1-4.
    #[error("character 20 is the disability level, 1-4, found {found:?}")]
    Level {
        /// The character found.
        found: char,
    },
    /// The reissue suffix has characters other than ASCII letters and digits.
    #[error(
        "the reissue suffix after character 20 may hold only letters and digits, found {found:?}"
    )]
    Suffix {
        /// The suffix found.
        found: String,
    },
    /// The holder part is not the applicant's ID number.
    #[error("the certificate belongs to {certificate_holder}, not to the applicant {applicant}")]
    HolderMismatch {
        /// Masked holder ID in the certificate.
        certificate_holder: String,
        /// Masked applicant ID.
        applicant: String,
    },
}

/// A second-generation disability certificate number (第二代残疾人证号): the
/// holder's 18-character ID, a category digit, a level digit, and an optional
/// reissue suffix. Displays masked like the ID it contains.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CertificateNumber {
    holder: ResidentId,
    category: DisabilityCategory,
    level: DisabilityLevel,
    suffix: String,
}

impl CertificateNumber {
    /// Parses against today's date in Beijing.
    pub fn parse(input: &str) -> Result<CertificateNumber, CertificateError> {
        CertificateNumber::parse_on(input, crate::today_in_china())
    }

    /// Parses with an explicit "today".
    pub fn parse_on(input: &str, today: NaiveDate) -> Result<CertificateNumber, CertificateError> {
        let chars: Vec<char> = input.trim().chars().collect();
        if chars.len() < 20 || chars.len() > 24 {
            return Err(CertificateError::Length { found: chars.len() });
        }
        let holder_str: String = chars[..18].iter().collect();
        let holder = ResidentId::parse_on(&holder_str, today).map_err(CertificateError::Holder)?;
        let category = chars[18]
            .to_digit(10)
            .and_then(|d| DisabilityCategory::from_digit(d as u8))
            .ok_or(CertificateError::Category { found: chars[18] })?;
        let level = chars[19]
            .to_digit(10)
            .and_then(|d| DisabilityLevel::new(d as u8))
            .ok_or(CertificateError::Level { found: chars[19] })?;
        let suffix: String = chars[20..].iter().collect();
        if !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CertificateError::Suffix { found: suffix });
        }
        Ok(CertificateNumber {
            holder,
            category,
            level,
            suffix: suffix.to_ascii_uppercase(),
        })
    }

    /// Parses and checks that the certificate belongs to `applicant`.
    pub fn parse_for(
        input: &str,
        applicant: &ResidentId,
        today: NaiveDate,
    ) -> Result<CertificateNumber, CertificateError> {
        let number = CertificateNumber::parse_on(input, today)?;
        number.check_holder(applicant)?;
        Ok(number)
    }

    /// Fails unless the certificate's holder is `applicant`.
    pub fn check_holder(&self, applicant: &ResidentId) -> Result<(), CertificateError> {
        if &self.holder == applicant {
            Ok(())
        } else {
            Err(CertificateError::HolderMismatch {
                certificate_holder: self.holder.masked(),
                applicant: applicant.masked(),
            })
        }
    }

    /// The holder's resident ID number.
    pub fn holder(&self) -> &ResidentId {
        &self.holder
    }

    /// Disability category.
    pub fn category(&self) -> DisabilityCategory {
        self.category
    }

    /// Disability level.
    pub fn level(&self) -> DisabilityLevel {
        self.level
    }

    /// Reissue suffix, empty for a first issue.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The clear number; never log it.
    pub fn expose(&self) -> String {
        format!(
            "{}{}{}{}",
            self.holder.expose(),
            self.category.digit(),
            self.level.get(),
            self.suffix
        )
    }

    /// Masked form, as the holder ID is masked.
    pub fn masked(&self) -> String {
        format!(
            "{}{}{}{}",
            self.holder.masked(),
            self.category.digit(),
            self.level.get(),
            self.suffix
        )
    }
}

impl fmt::Display for CertificateNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for CertificateNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateNumber({})", self.masked())
    }
}

/// Why an identifier (case, office, operator) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A case id is `TTTTTTTTT-YYYYMMDD-XXXXXX`.
    #[error("case id {found:?} must look like 440106001-20261128-K7Q2XM: {rule}")]
    CaseId {
        /// The input.
        found: String,
        /// The rule that failed.
        rule: &'static str,
    },
    /// An office id is 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit.
    #[error(
        "office id {found:?} must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'"
    )]
    OfficeId {
        /// The input.
        found: String,
    },
    /// An operator name is 1-64 printable characters.
    #[error("operator must be 1-64 printable characters, found {found_len} characters")]
    Operator {
        /// Characters found.
        found_len: usize,
    },
    /// The operator holds a control character (a newline, an escape).
    #[error(
        "operator: 经办人不能含控制字符 holds control character U+{code:04X} at character {position}"
    )]
    OperatorControl {
        /// The character's code point.
        code: u32,
        /// Its position (0-based, in characters).
        position: usize,
    },
}

/// Crockford base32 alphabet, used for the random part of case ids: no I, L, O, U,
/// so a clerk reading an id aloud cannot confuse characters.
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The Crockford base32 encoding (data-encoding), strict: upper case, no padding.
/// Case ids keep their own parsing rule (six symbols of the alphabet), which
/// data-encoding's byte-oriented decoder cannot express for 30 bits.
#[allow(clippy::expect_used)]
static CROCKFORD_BASE32: std::sync::LazyLock<data_encoding::Encoding> =
    std::sync::LazyLock::new(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols.push_str(CROCKFORD);
        // A specification of 32 distinct ASCII symbols is always valid.
        spec.encoding()
            .expect("32 distinct symbols form a base32 encoding")
    });

/// A case identifier: the acceptance township's 9-digit code, the acceptance date
/// and six random Crockford base32 characters, e.g. `440106001-20261128-K7Q2XM`.
///
/// Offices create cases offline, so ids cannot come from a central counter: the
/// random part makes a collision within one office and day a one-in-a-billion event,
/// and the readable prefix lets a clerk tell where and when a case started.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseId(String);

impl CaseId {
    /// Builds a case id from its parts; `random` supplies the 30 random bits.
    pub fn new(township: &str, date: NaiveDate, random: [u8; 4]) -> Result<CaseId, IdError> {
        // The low 30 bits, most significant first, as six base32 symbols:
        // shifted to the top of 32 bits they are the first six of the seven
        // symbols data-encoding writes for four bytes (the seventh holds only
        // the two zero bits below them).
        let bits = (u32::from_be_bytes(random) & 0x3FFF_FFFF) << 2;
        let encoded = CROCKFORD_BASE32.encode(&bits.to_be_bytes());
        let tail = encoded.get(..6).unwrap_or_default();
        CaseId::parse(&format!("{township}-{}-{tail}", date.format("%Y%m%d")))
    }

    /// Parses a case id.
    pub fn parse(input: &str) -> Result<CaseId, IdError> {
        let err = |rule| IdError::CaseId {
            found: input.to_string(),
            rule,
        };
        let parts: Vec<&str> = input.split('-').collect();
        if parts.len() != 3 {
            return Err(err("three parts separated by '-'"));
        }
        if parts[0].len() != 9 || !parts[0].bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("first part is the 9-digit acceptance township code"));
        }
        if parts[1].len() != 8 || NaiveDate::parse_from_str(parts[1], "%Y%m%d").is_err() {
            return Err(err("second part is the acceptance date YYYYMMDD"));
        }
        if parts[2].len() != 6 || !parts[2].bytes().all(|b| CROCKFORD.as_bytes().contains(&b)) {
            return Err(err(
                "third part is 6 characters of 0-9 and A-Z without I, L, O, U",
            ));
        }
        Ok(CaseId(input.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The acceptance township code (first part).
    pub fn acceptance_township(&self) -> &str {
        &self.0[..9]
    }

    /// A short form for logs: the random part.
    pub fn short(&self) -> &str {
        &self.0[19..]
    }
}

impl TryFrom<String> for CaseId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CaseId::parse(&value)
    }
}

impl From<CaseId> for String {
    fn from(id: CaseId) -> String {
        id.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaseId({})", self.0)
    }
}

/// An office identifier, as named in its certificate: by convention the 9-digit
/// code for a township or street office (`440106001`), `<county>-dpf` and
/// `<county>-ca` for a county's Disabled Persons' Federation and civil affairs
/// bureau, and `hub-<code>` (or `hub-cn`) for relays. Role and division come from
/// the signed certificate, never from parsing the id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OfficeId(String);

impl OfficeId {
    /// Parses an office id.
    pub fn parse(input: &str) -> Result<OfficeId, IdError> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && !input.starts_with('-')
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(OfficeId(input.to_string()))
        } else {
            Err(IdError::OfficeId {
                found: input.to_string(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OfficeId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OfficeId::parse(&value)
    }
}

impl From<OfficeId> for String {
    fn from(id: OfficeId) -> String {
        id.0
    }
}

impl fmt::Display for OfficeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OfficeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfficeId({})", self.0)
    }
}

/// The clerk who performed a transition, as the office names its staff (a staff
/// number or a name). It is recorded in the signed transition.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[serde(try_from = "String", into = "String")]
pub struct Operator(String);

impl Operator {
    /// Parses an operator: 1-64 characters, none of them control characters.
    pub fn parse(input: &str) -> Result<Operator, IdError> {
        let n = input.chars().count();
        if let Some((position, c)) = input.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(IdError::OperatorControl {
                code: u32::from(c),
                position,
            });
        }
        if n == 0 || n > 64 {
            return Err(IdError::Operator { found_len: n });
        }
        Ok(Operator(input.to_string()))
    }

    /// The operator as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Operator {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Operator::parse(&value)
    }
}

impl From<Operator> for String {
    fn from(id: Operator) -> String {
        id.0
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC. Dates for deadlines
/// are taken in Beijing time (UTC+8) with [`Timestamp::china_date`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds in one hour.
    pub const HOUR_MS: i64 = 3_600_000;

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The calendar date in Beijing (UTC+8, no daylight saving).
    pub fn china_date(self) -> NaiveDate {
        crate::calendar::china_date(self.0)
    }

    /// Beijing local time as `YYYY-MM-DD HH:MM`.
    pub fn china_display(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .and_then(|utc| utc.naive_utc().checked_add_offset(crate::calendar::BEIJING))
            .map(|local| local.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }

    /// The start (00:00 Beijing) of a date.
    pub fn start_of_china_date(date: NaiveDate) -> Timestamp {
        let utc = date
            .and_hms_opt(0, 0, 0)
            .and_then(|local| local.checked_sub_offset(crate::calendar::BEIJING))
            .map(|utc| utc.and_utc().timestamp_millis())
            .unwrap_or(0);
        Timestamp(utc)
    }

    /// Now, from the system clock. Only I/O shells should call this.
    pub fn now() -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The random part of case ids is the same as before data-encoding wrote
    /// it (values from the hand-written encoder it replaced).
    #[test]
    fn case_id_random_part_is_unchanged() {
        for (random, tail) in [
            ([0, 0, 0, 0], "000000"),
            ([0xFF, 0xFF, 0xFF, 0xFF], "ZZZZZZ"),
            ([0x12, 0x34, 0x56, 0x78], "938NKR"),
            ([0xC0, 0, 0, 1], "000001"),
            ([0xDE, 0xAD, 0xBE, 0xEF], "FAVFQF"),
        ] {
            let id = CaseId::new("440106001", today(), random).unwrap();
            assert_eq!(id.as_str(), format!("440106001-20261128-{tail}"));
            assert_eq!(CaseId::parse(id.as_str()).unwrap(), id);
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    fn with_check(first17: &str) -> String {
        format!("{first17}{}", resident_id_check_char(first17).unwrap())
    }

    fn check(input: &str, expect: expect_test::Expect) {
        let actual = match ResidentId::parse_on(input, today()) {
            Ok(id) => format!("ok {} {:?} {}", id.masked(), id.sex(), id.birth_date()),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn resident_id_rules() {
        check(
            &with_check("11010519491231002"),
            expect_test::expect!["ok 110105********002X Female 1949-12-31"],
        );
        check(
            "11010519491231002x",
            expect_test::expect!["ok 110105********002X Female 1949-12-31"],
        );
        check(
            "1101051949123100",
            expect_test::expect!["err a resident ID number has 18 characters, found 16"],
        );
        check(
            "11010519491231A02X",
            expect_test::expect![[r#"err character 15 must be a digit, found 'A'"#]],
        );
        check(
            "11010519491231002Y",
            expect_test::expect![[
                r#"err character 18 is the check character, a digit or X, found 'Y'"#
            ]],
        );
        check(
            &with_check("99010519491231002"),
            expect_test::expect!["err province prefix 99 (characters 1-2) is not a known province"],
        );
        check(
            &with_check("11010519490231002"),
            expect_test::expect!["err birth date 19490231 (characters 7-14) is not a real date"],
        );
        check(
            &with_check("11010520301231002"),
            expect_test::expect!["err birth date 2030-12-31 (characters 7-14) is in the future"],
        );
        check(
            "110105194912310021",
            expect_test::expect![
                "err check character (character 18) is 1, but the first 17 digits give X"
            ],
        );
        // A retired county code (130103, once 桥东区 of 石家庄) is still a valid ID.
        check(
            &with_check("13010319800101003"),
            expect_test::expect!["ok 130103********0033 Male 1980-01-01"],
        );
    }

    #[test]
    fn certificate_rules() {
        let id = with_check("13010219800101003");
        let owner = ResidentId::parse_on(&id, today()).unwrap();
        let cert = CertificateNumber::parse_for(&format!("{id}42"), &owner, today()).unwrap();
        assert_eq!(cert.category(), DisabilityCategory::Physical);
        assert_eq!(cert.level().get(), 2);
        let reissued = CertificateNumber::parse_on(&format!("{id}51B1"), today()).unwrap();
        assert_eq!(reissued.suffix(), "B1");
        assert!(matches!(
            CertificateNumber::parse_on(&format!("{id}82"), today()),
            Err(CertificateError::Category { found: '8' })
        ));
        assert!(matches!(
            CertificateNumber::parse_on(&format!("{id}45"), today()),
            Err(CertificateError::Level { found: '5' })
        ));
        let other = ResidentId::parse_on(&with_check("13010219800101005"), today()).unwrap();
        assert!(matches!(
            cert.check_holder(&other),
            Err(CertificateError::HolderMismatch { .. })
        ));
        assert!(!format!("{cert}").contains("19800101"));
    }

    #[test]
    fn case_ids() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let id = CaseId::new("440106001", date, [0xde, 0xad, 0xbe, 0xef]).unwrap();
        assert_eq!(id.acceptance_township(), "440106001");
        assert_eq!(CaseId::parse(id.as_str()).unwrap(), id);
        assert!(CaseId::parse("440106001-20261128-K7Q2XI").is_err());
        assert!(CaseId::parse("44010600-20261128-K7Q2XM").is_err());
        assert!(CaseId::parse("440106001-20261328-K7Q2XM").is_err());
    }

    #[test]
    fn china_dates() {
        // 2024-02-09 16:30 UTC is 2024-02-10 00:30 in Beijing.
        let ts = Timestamp(1_707_496_200_000);
        assert_eq!(
            ts.china_date(),
            NaiveDate::from_ymd_opt(2024, 2, 10).unwrap()
        );
        let start = Timestamp::start_of_china_date(NaiveDate::from_ymd_opt(2024, 2, 10).unwrap());
        assert_eq!(
            start.china_date(),
            NaiveDate::from_ymd_opt(2024, 2, 10).unwrap()
        );
        assert_eq!(
            Timestamp(start.0 - 1).china_date(),
            NaiveDate::from_ymd_opt(2024, 2, 9).unwrap()
        );
    }

    proptest! {
        #[test]
        fn check_character_round_trip(
            province in proptest::sample::select(KNOWN_ID_PROVINCES.to_vec()),
            area in 0u32..10_000,
            days in 0i64..40_000,
            seq in 0u32..1000,
        ) {
            let birth = NaiveDate::from_ymd_opt(1920, 1, 1).unwrap() + chrono::Duration::days(days);
            prop_assume!(birth <= today());
            let first17 = format!("{province}{area:04}{}{seq:03}", birth.format("%Y%m%d"));
            let full = with_check(&first17);
            let id = ResidentId::parse_on(&full, today()).unwrap();
            prop_assert_eq!(id.expose(), full.as_str());
            prop_assert_eq!(id.birth_date(), birth);
            // Any other check character is refused.
            for c in "0123456789X".chars().filter(|c| !full.ends_with(*c)) {
                let wrong = format!("{first17}{c}");
                let is_mismatch = matches!(ResidentId::parse_on(&wrong, today()), Err(ResidentIdError::CheckMismatch { .. }));
                prop_assert!(is_mismatch);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = ResidentId::parse_on(&s, today());
            let _ = CertificateNumber::parse_on(&s, today());
            let _ = CaseId::parse(&s);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod operator_tests {
    use super::*;

    #[test]
    fn an_operator_with_a_control_character_is_refused_naming_it() {
        assert!(Operator::parse("窗口01").is_ok());
        let err = Operator::parse("窗口\u{1b}[31m01").unwrap_err();
        assert_eq!(
            err,
            IdError::OperatorControl {
                code: 0x1b,
                position: 2
            }
        );
        assert!(
            err.to_string().contains("control character U+001B"),
            "{err}"
        );
        assert!(matches!(
            Operator::parse(""),
            Err(IdError::Operator { found_len: 0 })
        ));
    }
}
