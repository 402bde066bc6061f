//! Administrative divisions (行政区划) of China down to townships, and the division
//! codes that name them.
//!
//! A division code is a string of digits whose length gives its level: 2 digits for
//! a province (省级), 4 for a prefecture (地级), 6 for a county (县级, GB/T 2260) and
//! 9 for a township or street (乡级, the statistical division code). Each code
//! starts with the code of every division above it, so "is inside" is "starts
//! with": [`DivisionCode::covers`]. The hub tree of the sync layer is this prefix
//! tree, which is why [`DivisionCode`] checks syntax only and the table of
//! divisions that exist is a separate value, [`Divisions`].
//!
//! Syntax and existence are kept apart on purpose. A code on a certificate or a
//! case is validated with [`DivisionCode::parse`] and carried as a value; whether
//! the statistical tables still list it is a question for [`Divisions`], whose
//! answer may change when the tables are updated. Some 4-digit prefixes are
//! placeholders rather than real prefectures (`1101 市辖区`, `4190
//! 省直辖县级行政区划`); the table keeps them, and a county's
//! [`parent`](DivisionCode::parent) is always its 4-digit prefix whether or not the
//! table lists it.
//!
//! # The embedded table
//!
//! [`Divisions::national`] parses `data/divisions.txt`, compiled into the crate,
//! once per process. The file is UTF-8 text, one entry per line, in ascending code
//! order compared as strings (so a province precedes its prefectures and a
//! prefecture its counties):
//!
//! ```text
//! 13 河北省
//! 1301 石家庄市
//! 130102 长安区|001建北街道|002青园街道|003广安街道
//! ```
//!
//! A province or prefecture line is `CODE NAME`. A county line is `CODE NAME`
//! followed by its townships, each as `|` then the last three digits of the 9-digit
//! township code and the name, so townships share their county's prefix. Blank
//! lines and lines starting with `#` are comments. A prefecture's province and a
//! county's province must appear earlier; a county's prefecture may be absent.
//! `data/gen_divisions.py` regenerates the file from the published CSV tables.
//! A malformed table is reported as [`DivisionError::Table`] with its line number,
//! never as a panic.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The embedded division table; see the module documentation for its format.
const NATIONAL_TABLE: &str = include_str!("../data/divisions.txt");

/// Prefecture names that are statistical placeholders, not places: left out of
/// [`Divisions::full_name`].
const PLACEHOLDER_PREFECTURES: [&str; 4] = [
    "市辖区",
    "县",
    "省直辖县级行政区划",
    "自治区直辖县级行政区划",
];

/// The level of a division, given by the length of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivisionLevel {
    /// Province, autonomous region or municipality (省级): 2 digits.
    Province,
    /// Prefecture-level city, prefecture, league or placeholder (地级): 4 digits.
    Prefecture,
    /// County, district or county-level city (县级, GB/T 2260): 6 digits.
    County,
    /// Township, town or street (乡级, 乡镇街道): 9 digits.
    Township,
}

impl DivisionLevel {
    /// The number of digits of a code at this level.
    pub fn digits(self) -> usize {
        match self {
            DivisionLevel::Province => 2,
            DivisionLevel::Prefecture => 4,
            DivisionLevel::County => 6,
            DivisionLevel::Township => 9,
        }
    }

    /// The level whose codes have `digits` digits, if any.
    pub fn from_digits(digits: usize) -> Option<DivisionLevel> {
        match digits {
            2 => Some(DivisionLevel::Province),
            4 => Some(DivisionLevel::Prefecture),
            6 => Some(DivisionLevel::County),
            9 => Some(DivisionLevel::Township),
            _ => None,
        }
    }

    /// The Chinese name of the level (省级, 地级, 县级, 乡级).
    pub fn zh(self) -> &'static str {
        match self {
            DivisionLevel::Province => "省级",
            DivisionLevel::Prefecture => "地级",
            DivisionLevel::County => "县级",
            DivisionLevel::Township => "乡级",
        }
    }
}

impl fmt::Display for DivisionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DivisionLevel::Province => "province",
            DivisionLevel::Prefecture => "prefecture",
            DivisionLevel::County => "county",
            DivisionLevel::Township => "township",
        })
    }
}

/// Why a division code or the division table was refused.
///
/// Syntax errors do not repeat the refused input: a string in the wrong field may
/// be personal data (an 18-character resident ID number passed as a division code
/// must not end up in a log), so they give its length or the offending position.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DivisionError {
    /// The code does not have 2, 4, 6 or 9 characters.
    #[error(
        "a division code has 2 (province), 4 (prefecture), 6 (county) or 9 (township) digits, not {len}"
    )]
    BadLength {
        /// The number of characters given.
        len: usize,
    },
    /// The code contains something other than an ASCII digit.
    #[error("a division code has only the digits 0-9; found {found:?} at byte {position}")]
    NonDigit {
        /// Byte offset of the first non-digit.
        position: usize,
        /// The character found there.
        found: char,
    },
    /// The code is well formed but the table does not list it.
    #[error(
        "unknown division code {code}; {}",
        match nearest_parent {
            Some((parent, name)) => format!("nearest known parent: {parent} {name}"),
            None => "no known parent (its province is not in the table)".to_owned(),
        }
    )]
    Unknown {
        /// The code looked up.
        code: DivisionCode,
        /// The closest enclosing division the table does list, with its name.
        nearest_parent: Option<(DivisionCode, String)>,
    },
    /// The division table itself is malformed (for the embedded table: a bug).
    #[error("division table line {line}: {problem}")]
    Table {
        /// 1-based line number in the table text.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// A syntactically valid division code: 2, 4, 6 or 9 ASCII digits.
///
/// It is a small `Copy` value. Order is the order of the code strings, which puts
/// every division right before the divisions inside it. It serializes as its
/// string. Whether the code exists is a question for [`Divisions`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DivisionCode {
    /// ASCII digits; bytes past `len` are `b'0'`.
    digits: [u8; 9],
    /// 2, 4, 6 or 9.
    len: u8,
}

impl DivisionCode {
    /// Checks the syntax of `code`: only ASCII digits, and 2, 4, 6 or 9 of them.
    /// Does not check that the division exists; see [`Divisions::lookup`].
    pub fn parse(code: &str) -> Result<DivisionCode, DivisionError> {
        if let Some((position, found)) = code.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(DivisionError::NonDigit { position, found });
        }
        let len = code.len();
        if DivisionLevel::from_digits(len).is_none() {
            return Err(DivisionError::BadLength { len });
        }
        let mut digits = [b'0'; 9];
        digits[..len].copy_from_slice(code.as_bytes());
        Ok(DivisionCode {
            digits,
            len: len as u8,
        })
    }

    /// The code as a string of digits.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII digits by construction, so this never falls back.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The level of the division, from the length of the code.
    pub fn level(&self) -> DivisionLevel {
        match self.len {
            2 => DivisionLevel::Province,
            4 => DivisionLevel::Prefecture,
            6 => DivisionLevel::County,
            _ => DivisionLevel::Township,
        }
    }

    /// The first `len` digits as a code; `len` must be a valid length not longer
    /// than this code's.
    fn truncated(&self, len: usize) -> DivisionCode {
        let mut digits = [b'0'; 9];
        digits[..len].copy_from_slice(&self.digits[..len]);
        DivisionCode {
            digits,
            len: len as u8,
        }
    }

    /// The province this code lies in (the code itself for a province).
    pub fn province(&self) -> DivisionCode {
        self.truncated(2)
    }

    /// The 4-digit prefecture prefix, for prefecture, county and township codes.
    /// The table may not list it (see the module documentation).
    pub fn prefecture(&self) -> Option<DivisionCode> {
        (self.len >= 4).then(|| self.truncated(4))
    }

    /// The 6-digit county, for county and township codes.
    pub fn county(&self) -> Option<DivisionCode> {
        (self.len >= 6).then(|| self.truncated(6))
    }

    /// The code one level up: township → county, county → prefecture, prefecture →
    /// province; `None` for a province. Syntactic: the table may not list the parent
    /// (a county under a placeholder prefecture still has its 4-digit prefix).
    pub fn parent(&self) -> Option<DivisionCode> {
        match self.level() {
            DivisionLevel::Province => None,
            DivisionLevel::Prefecture => Some(self.truncated(2)),
            DivisionLevel::County => Some(self.truncated(4)),
            DivisionLevel::Township => Some(self.truncated(6)),
        }
    }

    /// Whether `other` lies inside this division: this code is a prefix of
    /// `other`'s. A code covers itself.
    pub fn covers(&self, other: &DivisionCode) -> bool {
        other.as_str().starts_with(self.as_str())
    }
}

impl PartialOrd for DivisionCode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DivisionCode {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DivisionCode({})", self.as_str())
    }
}

impl FromStr for DivisionCode {
    type Err = DivisionError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        DivisionCode::parse(code)
    }
}

impl Serialize for DivisionCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DivisionCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        DivisionCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One division of the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Division {
    /// Its code.
    pub code: DivisionCode,
    /// Its name as the statistical tables give it (e.g. `长安区`).
    pub name: String,
    /// Its level (the level of `code`).
    pub level: DivisionLevel,
}

/// A table of the divisions that exist, to township level.
///
/// Entries are kept sorted by code, so a division and everything inside it form
/// one contiguous run; lookups are binary searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divisions {
    entries: Vec<(DivisionCode, Box<str>)>,
}

impl Divisions {
    /// The national table embedded in the crate, parsed on first use.
    ///
    /// An error here means the embedded file is broken, which the unit tests rule
    /// out; callers still get an error, not a panic.
    pub fn national() -> Result<&'static Divisions, DivisionError> {
        static NATIONAL: OnceLock<Result<Divisions, DivisionError>> = OnceLock::new();
        NATIONAL
            .get_or_init(|| Divisions::parse(NATIONAL_TABLE))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses a table in the format described in the module documentation.
    pub fn parse(text: &str) -> Result<Divisions, DivisionError> {
        let mut table = Divisions {
            entries: Vec::new(),
        };
        for (line_idx, line) in text.lines().enumerate() {
            let line_no = line_idx + 1;
            let problem = |problem: String| DivisionError::Table {
                line: line_no,
                problem,
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split('|');
            let head = parts.next().unwrap_or_default();
            let Some((code_text, name)) = head.split_once(' ') else {
                return Err(problem(format!("expected `CODE NAME`, found {head:?}")));
            };
            let code = DivisionCode::parse(code_text).map_err(|e| problem(e.to_string()))?;
            check_name(name).map_err(&problem)?;
            match code.level() {
                DivisionLevel::Township => {
                    return Err(problem(format!(
                        "township {code} must be listed on its county's line"
                    )));
                }
                DivisionLevel::Province => {}
                DivisionLevel::Prefecture | DivisionLevel::County => {
                    let province = code.province();
                    if table.name(&province).is_none() {
                        return Err(problem(format!(
                            "{code} {name}: its province {province} is not listed before it"
                        )));
                    }
                }
            }
            table.push(code, name).map_err(&problem)?;
            for township in parts {
                if code.level() != DivisionLevel::County {
                    return Err(problem(format!(
                        "only county lines list townships, but {code} is a {}",
                        code.level()
                    )));
                }
                let suffix = township.get(..3).unwrap_or(township);
                let township_name = township.get(3..).unwrap_or_default();
                if suffix.len() != 3 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(problem(format!(
                        "township entry {township:?} of {code} must start with 3 digits"
                    )));
                }
                check_name(township_name).map_err(&problem)?;
                let township_code = DivisionCode::parse(&format!("{code}{suffix}"))
                    .map_err(|e| problem(e.to_string()))?;
                table.push(township_code, township_name).map_err(&problem)?;
            }
        }
        Ok(table)
    }

    /// Appends an entry, keeping the table strictly ascending.
    fn push(&mut self, code: DivisionCode, name: &str) -> Result<(), String> {
        if let Some((last, _)) = self.entries.last()
            && *last >= code
        {
            return Err(format!(
                "{code} comes after {last}: entries must be unique and in ascending code order"
            ));
        }
        self.entries.push((code, name.into()));
        Ok(())
    }

    /// The index of `code` in the table, if listed.
    fn index_of(&self, code: &DivisionCode) -> Option<usize> {
        self.entries.binary_search_by(|(c, _)| c.cmp(code)).ok()
    }

    fn division_at(&self, idx: usize) -> Option<Division> {
        self.entries.get(idx).map(|(code, name)| Division {
            code: *code,
            name: name.to_string(),
            level: code.level(),
        })
    }

    /// The number of divisions in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the table lists `code`.
    pub fn contains(&self, code: &DivisionCode) -> bool {
        self.index_of(code).is_some()
    }

    /// The name of `code`, if listed.
    pub fn name(&self, code: &DivisionCode) -> Option<&str> {
        self.index_of(code)
            .and_then(|idx| self.entries.get(idx))
            .map(|(_, name)| &**name)
    }

    /// The division `code` names, or the closest division above it that the table
    /// lists; `None` when not even its province is listed.
    pub fn nearest_known(&self, code: &DivisionCode) -> Option<Division> {
        let mut current = Some(*code);
        while let Some(candidate) = current {
            if let Some(idx) = self.index_of(&candidate) {
                return self.division_at(idx);
            }
            current = candidate.parent();
        }
        None
    }

    /// Validates `code` and finds it in the table. A well-formed code the table does
    /// not list gives [`DivisionError::Unknown`] naming its nearest listed parent.
    pub fn lookup(&self, code: &str) -> Result<Division, DivisionError> {
        let code = DivisionCode::parse(code)?;
        self.get(&code)
    }

    /// Finds an already parsed `code` in the table, like [`Divisions::lookup`].
    pub fn get(&self, code: &DivisionCode) -> Result<Division, DivisionError> {
        if let Some(division) = self.index_of(code).and_then(|idx| self.division_at(idx)) {
            return Ok(division);
        }
        let nearest_parent = code
            .parent()
            .and_then(|parent| self.nearest_known(&parent))
            .map(|division| (division.code, division.name));
        Err(DivisionError::Unknown {
            code: *code,
            nearest_parent,
        })
    }

    /// The divisions directly inside `code`: those whose nearest listed ancestor is
    /// `code`. Normally these are the next level down; a county whose 4-digit
    /// prefecture is not listed is a child of its province. In code order.
    pub fn children(&self, code: &DivisionCode) -> impl Iterator<Item = Division> + '_ {
        let start = self.entries.partition_point(|(c, _)| c <= code);
        self.runs_from(start, Some(*code))
    }

    /// The provinces in the table, in code order.
    pub fn provinces(&self) -> impl Iterator<Item = Division> + '_ {
        self.runs_from(0, None)
    }

    /// Walks the table from `start`, yielding the first entry of each run of
    /// entries inside `within` (all entries when `None`) and skipping what lies
    /// inside the entry just yielded. Because a division sorts right before
    /// everything inside it, each yielded entry's nearest listed ancestor is
    /// `within`.
    fn runs_from(
        &self,
        start: usize,
        within: Option<DivisionCode>,
    ) -> impl Iterator<Item = Division> + '_ {
        let mut idx = start;
        std::iter::from_fn(move || {
            let (code, _) = self.entries.get(idx)?;
            if within.is_some_and(|parent| !parent.covers(code)) {
                return None;
            }
            let yielded = self.division_at(idx);
            let code = *code;
            idx = self
                .entries
                .partition_point(|(c, _)| *c <= code || code.covers(c));
            yielded
        })
    }

    /// Every division in the table, in code order.
    pub fn iter(&self) -> impl Iterator<Item = Division> + '_ {
        (0..self.entries.len()).filter_map(|idx| self.division_at(idx))
    }

    /// The names of `code` and every listed division above it, from the province
    /// down, separated by spaces: `河北省 石家庄市 长安区 建北街道`. Placeholder
    /// prefectures (`市辖区`, `县`, `省直辖县级行政区划`, ...) are left out, so
    /// `110101001` reads `北京市 东城区 东华门街道`. `None` if `code` is not listed.
    pub fn full_name(&self, code: &DivisionCode) -> Option<String> {
        self.index_of(code)?;
        let mut names = Vec::with_capacity(4);
        let mut current = Some(*code);
        while let Some(candidate) = current {
            if let Some(name) = self.name(&candidate) {
                let placeholder = candidate.level() == DivisionLevel::Prefecture
                    && PLACEHOLDER_PREFECTURES.contains(&name);
                if !placeholder {
                    names.push(name);
                }
            }
            current = candidate.parent();
        }
        names.reverse();
        Some(names.join(" "))
    }
}

/// Checks a name from the table text.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    if name.trim() != name {
        return Err(format!("name {name:?} has leading or trailing whitespace"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(text: &str) -> DivisionCode {
        DivisionCode::parse(text).unwrap()
    }

    fn national() -> &'static Divisions {
        Divisions::national().unwrap()
    }

    #[test]
    fn embedded_table_parses_fully() {
        let table = national();
        let mut counts = [0usize; 4];
        for division in table.iter() {
            counts[division.level as usize] += 1;
        }
        // 31 provinces, 342 prefectures, 2978 counties, 41352 townships (the 2023
        // statistical tables without Hong Kong, Macao and Taiwan).
        assert_eq!(counts, [31, 342, 2978, 41352]);
        assert_eq!(table.len(), counts.iter().sum::<usize>());
    }

    #[test]
    fn known_codes() {
        let table = national();
        let check = |text: &str, name: &str, level: DivisionLevel| {
            let division = table.lookup(text).unwrap();
            assert_eq!(
                (division.code.as_str(), division.name.as_str()),
                (text, name)
            );
            assert_eq!(division.level, level);
        };
        check("13", "河北省", DivisionLevel::Province);
        check("1301", "石家庄市", DivisionLevel::Prefecture);
        check("130102", "长安区", DivisionLevel::County);
        check("130102001", "建北街道", DivisionLevel::Township);
        check("440106", "天河区", DivisionLevel::County);
        check("440106001", "五山街道", DivisionLevel::Township);
        check("1101", "市辖区", DivisionLevel::Prefecture);
        assert_eq!(
            table.full_name(&code("130102001")).unwrap(),
            "河北省 石家庄市 长安区 建北街道"
        );
        assert_eq!(
            table.full_name(&code("440106")).unwrap(),
            "广东省 广州市 天河区"
        );
        assert_eq!(
            table.full_name(&code("110101001")).unwrap(),
            "北京市 东城区 东华门街道"
        );
        assert_eq!(table.full_name(&code("13")).unwrap(), "河北省");
        assert_eq!(table.full_name(&code("130102999")), None);
        assert!(table.contains(&code("440106")));
        assert!(!table.contains(&code("440199")));
    }

    #[test]
    fn unknown_codes_name_their_nearest_parent() {
        let table = national();
        let message = |text: &str| table.lookup(text).unwrap_err().to_string();
        assert_eq!(
            message("130102999"),
            "unknown division code 130102999; nearest known parent: 130102 长安区"
        );
        // An unknown county under a known prefecture, and under an unknown one.
        assert_eq!(
            message("130199"),
            "unknown division code 130199; nearest known parent: 1301 石家庄市"
        );
        assert_eq!(
            message("139901"),
            "unknown division code 139901; nearest known parent: 13 河北省"
        );
        // A township under an unknown county of an unknown prefecture.
        assert_eq!(
            message("139999001"),
            "unknown division code 139999001; nearest known parent: 13 河北省"
        );
        assert_eq!(
            message("990101"),
            "unknown division code 990101; no known parent (its province is not in the table)"
        );
        assert_eq!(
            table.lookup("130102999").unwrap_err(),
            DivisionError::Unknown {
                code: code("130102999"),
                nearest_parent: Some((code("130102"), "长安区".to_owned())),
            }
        );
    }

    #[test]
    fn syntax_errors_name_the_rule() {
        let err = |text: &str| DivisionCode::parse(text).unwrap_err();
        assert_eq!(err(""), DivisionError::BadLength { len: 0 });
        assert_eq!(err("130"), DivisionError::BadLength { len: 3 });
        assert_eq!(err("1301020010"), DivisionError::BadLength { len: 10 });
        assert_eq!(
            err("13a102"),
            DivisionError::NonDigit {
                position: 2,
                found: 'a'
            }
        );
        assert_eq!(
            err("13 "),
            DivisionError::NonDigit {
                position: 2,
                found: ' '
            }
        );
        assert_eq!(
            err("长安"),
            DivisionError::NonDigit {
                position: 0,
                found: '长'
            }
        );
        // A resident ID number in the wrong field is not repeated in the message.
        let message = err("13010219900101123X").to_string();
        assert_eq!(
            message,
            "a division code has only the digits 0-9; found 'X' at byte 17"
        );
        assert_eq!(
            err("130102199001011234").to_string(),
            "a division code has 2 (province), 4 (prefecture), 6 (county) or 9 (township) digits, not 18"
        );
    }

    #[test]
    fn relations() {
        let township = code("130102001");
        assert_eq!(township.level(), DivisionLevel::Township);
        assert_eq!(township.parent(), Some(code("130102")));
        assert_eq!(township.county(), Some(code("130102")));
        assert_eq!(township.prefecture(), Some(code("1301")));
        assert_eq!(township.province(), code("13"));
        assert_eq!(code("130102").parent(), Some(code("1301")));
        assert_eq!(code("130102").county(), Some(code("130102")));
        assert_eq!(code("1301").parent(), Some(code("13")));
        assert_eq!(code("1301").county(), None);
        assert_eq!(code("13").parent(), None);
        assert_eq!(code("13").province(), code("13"));
        // A county under a placeholder prefecture still has its 4-digit parent.
        assert_eq!(code("429004").parent(), Some(code("4290")));
        assert!(code("13").covers(&township));
        assert!(code("1301").covers(&township));
        assert!(code("130102").covers(&township));
        assert!(township.covers(&township));
        assert!(!township.covers(&code("130102")));
        assert!(!code("130104").covers(&township));
        assert!(!code("44").covers(&township));
        assert!(code("13") < code("1301") && code("1301") < code("130102"));
        assert!(code("130102") < code("130102001") && code("130102999") < code("130103"));
    }

    #[test]
    fn children_and_provinces() {
        let table = national();
        let names = |items: Vec<Division>| {
            items
                .iter()
                .map(|d| format!("{} {}", d.code, d.name))
                .collect::<Vec<_>>()
        };
        let provinces: Vec<_> = table.provinces().collect();
        assert_eq!(provinces.len(), 31);
        assert_eq!(
            names(provinces[..3].to_vec()),
            ["11 北京市", "12 天津市", "13 河北省"]
        );
        let hebei: Vec<_> = table.children(&code("13")).collect();
        assert_eq!(hebei.len(), 11);
        assert!(hebei.iter().all(|d| d.level == DivisionLevel::Prefecture));
        let changan: Vec<_> = table.children(&code("130102")).collect();
        assert_eq!(changan.len(), 16);
        assert_eq!(
            names(changan[..2].to_vec()),
            ["130102001 建北街道", "130102002 青园街道"]
        );
        assert_eq!(table.children(&code("130102001")).count(), 0);
        assert_eq!(table.children(&code("99")).count(), 0);
        // Every entry is reached exactly once by walking children from the provinces.
        let mut reached = 0;
        let mut stack: Vec<Division> = table.provinces().collect();
        while let Some(division) = stack.pop() {
            reached += 1;
            stack.extend(table.children(&division.code));
        }
        assert_eq!(reached, table.len());
    }

    #[test]
    fn children_skip_a_missing_prefecture() {
        // 1301 is not listed; "1302" sorts after "130102".
        let table =
            Divisions::parse("13 河北省\n130102 长安区|001建北街道\n1302 唐山市\n").unwrap();
        let children: Vec<_> = table.children(&code("13")).map(|d| d.code).collect();
        assert_eq!(children, [code("130102"), code("1302")]);
        assert_eq!(
            table.lookup("1301").unwrap_err().to_string(),
            "unknown division code 1301; nearest known parent: 13 河北省"
        );
        assert_eq!(
            table.full_name(&code("130102001")).unwrap(),
            "河北省 长安区 建北街道"
        );
        let provinces: Vec<_> = table.provinces().map(|d| d.code).collect();
        assert_eq!(provinces, [code("13")]);
    }

    #[test]
    fn every_township_and_county_hangs_off_listed_divisions() {
        let table = national();
        for division in table.iter() {
            assert!(
                table.contains(&division.code.province()),
                "{}",
                division.code
            );
            if division.level == DivisionLevel::Township {
                let county = division.code.county().unwrap();
                assert_eq!(
                    table.name(&county).map(|_| ()),
                    Some(()),
                    "{}",
                    division.code
                );
            }
            if division.level == DivisionLevel::County {
                // In the shipped tables every county's prefecture is listed.
                assert!(
                    table.contains(&division.code.parent().unwrap()),
                    "{}",
                    division.code
                );
            }
        }
    }

    #[test]
    fn malformed_tables_are_errors_with_lines() {
        let check = |text: &str, expected: &str| {
            assert_eq!(Divisions::parse(text).unwrap_err().to_string(), expected);
        };
        check(
            "13河北省",
            "division table line 1: expected `CODE NAME`, found \"13河北省\"",
        );
        check(
            "# c\n\n13 河北省\n13 河北省",
            "division table line 4: 13 comes after 13: entries must be unique and in ascending code order",
        );
        check(
            "1301 石家庄市",
            "division table line 1: 1301 石家庄市: its province 13 is not listed before it",
        );
        check(
            "130102001 建北街道",
            "division table line 1: township 130102001 must be listed on its county's line",
        );
        check(
            "13 河北省|001x",
            "division table line 1: only county lines list townships, but 13 is a province",
        );
        check(
            "13 河北省\n130102 长安区|01建北",
            "division table line 2: township entry \"01建北\" of 130102 must start with 3 digits",
        );
        check(
            "13 河北省\n130102 长安区|002甲|001乙",
            "division table line 2: 130102001 comes after 130102002: entries must be unique and in ascending code order",
        );
        check(
            "13 河北省\n130102 长安区|001",
            "division table line 2: empty name",
        );
        check(
            "13  河北省",
            "division table line 1: name \" 河北省\" has leading or trailing whitespace",
        );
        check(
            "1a 河北省",
            "division table line 1: a division code has only the digits 0-9; found 'a' at byte 1",
        );
    }

    #[test]
    fn serde_as_string() {
        let json = serde_json::to_string(&code("130102001")).unwrap();
        assert_eq!(json, "\"130102001\"");
        assert_eq!(
            serde_json::from_str::<DivisionCode>(&json).unwrap(),
            code("130102001")
        );
        let err = serde_json::from_str::<DivisionCode>("\"1301020\"").unwrap_err();
        assert!(err.to_string().contains("not 7"), "{err}");
        assert_eq!(
            serde_json::to_string(&DivisionLevel::County).unwrap(),
            "\"county\""
        );
    }

    fn any_code() -> impl Strategy<Value = String> {
        prop_oneof!["[0-9]{2}", "[0-9]{4}", "[0-9]{6}", "[0-9]{9}",]
    }

    proptest! {
        #[test]
        fn parse_display_round_trips(text in any_code()) {
            let parsed = DivisionCode::parse(&text).unwrap();
            prop_assert_eq!(parsed.as_str(), text.as_str());
            prop_assert_eq!(DivisionCode::parse(&parsed.to_string()).unwrap(), parsed);
            let json = serde_json::to_string(&parsed).unwrap();
            prop_assert_eq!(serde_json::from_str::<DivisionCode>(&json).unwrap(), parsed);
        }

        #[test]
        fn order_and_covers_follow_the_strings(a in any_code(), b in any_code()) {
            let (ca, cb) = (code(&a), code(&b));
            prop_assert_eq!(ca.cmp(&cb), a.cmp(&b));
            prop_assert_eq!(ca.covers(&cb), b.starts_with(&a));
            prop_assert_eq!(ca == cb, a == b);
            if let Some(parent) = ca.parent() {
                prop_assert!(parent.covers(&ca) && parent != ca);
                prop_assert_eq!(parent.level().digits() < ca.level().digits(), true);
            }
            prop_assert!(ca.province().covers(&ca));
        }

        #[test]
        fn lookup_never_panics(text in "\\PC{0,12}") {
            let _ = national().lookup(&text);
        }
    }
}
