//! The supervision reports of Tongban (监督, section 三 of the notice
//! 冀民〔2021〕36号: provinces supervise acceptance, timely pushes, reviews and
//! payment, and the applicants' evaluations feed the assessment of staff), and
//! the Apache Parquet export of what they are computed from.
//!
//! This crate owns:
//!
//! - five reports, each a pure function over `&[SupervisedCase]` (and
//!   `&[PayrollSummary]` for payment) for a [`Scope`] — a [`Region`], a
//!   [`Period`] of Beijing dates and the `as_of` day on which waiting cases are
//!   judged overdue: [`push`] (push timeliness per acceptance office),
//!   [`review`] (review timeliness per domicile office), [`backlog`] (cases
//!   awaiting an office, by stage), [`disbursement`] (paid against entitled,
//!   per county and month) and [`satisfaction`] (好差评 per acceptance office);
//! - for each report, a drill-down listing the cases behind one row
//!   ([`DrillReport`]), and the three renderings every report has
//!   ([`Report`]): serde for `--json`, CSV with an English snake_case header,
//!   and a table of strings with a Chinese header for the binary's printer;
//! - [`export::export_parquet`], hive-partitioned Parquet files of steps,
//!   cases and payroll totals that DuckDB, Spark or Trino read
//!   (`docs/analytics.md` gives the SQL of every report over them);
//! - [`sample`], a seeded generator of plausible supervised cases for tests,
//!   benchmarks and demonstrations.
//!
//! What it must never do: open a socket, touch a node's store, read a clock
//! (callers pass `as_of`), or read personal data — it cannot, the input types
//! hold none (no name, ID number, certificate, contact, material or free
//! text). Its only I/O is the Parquet writer, which writes into the directory
//! its caller names and nowhere else.

use std::fmt;
use std::io;
use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Serialize;
use tongban_domain::ids::CaseId;
use tongban_domain::payroll::YearMonth;
use tongban_domain::supervision::SupervisedCase;

pub mod backlog;
pub mod disbursement;
pub mod export;
pub mod push;
pub mod review;
pub mod sample;
pub mod satisfaction;

pub use backlog::{BacklogReport, BacklogRow, backlog_cases, backlog_report};
pub use disbursement::{
    DisbursementReport, DisbursementRow, disbursement_cases, disbursement_report,
};
pub use export::{ExportSummary, export_parquet};
pub use push::{PushReport, PushRow, push_cases, push_report};
pub use review::{ReviewReport, ReviewRow, review_cases, review_report};
pub use satisfaction::{
    SatisfactionReport, SatisfactionRow, satisfaction_cases, satisfaction_report,
};

/// Why a report, a rendering or the export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A region is not `00` nor a 2, 4, 6 or 9-digit division code.
    #[error(
        "region {found:?} is not a division code prefix: 00 for the country, or 2 (province), 4 (city), 6 (county) or 9 (township) digits"
    )]
    Region {
        /// What was given.
        found: String,
    },
    /// A period ends before it starts.
    #[error("period {from} .. {to} ends before it starts")]
    Period {
        /// First day.
        from: NaiveDate,
        /// Last day.
        to: NaiveDate,
    },
    /// Writing CSV to the caller's writer failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A file or directory of the export could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Arrow refused a batch the export built.
    #[error("{}: building the Arrow batch: {source}", path.display())]
    Arrow {
        /// The file the batch was for.
        path: PathBuf,
        /// The error.
        source: arrow_schema::ArrowError,
    },
    /// The Parquet writer failed.
    #[error("{}: writing Parquet: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The error.
        source: parquet::errors::ParquetError,
    },
    /// The export's target directory holds files but no mark of an earlier
    /// export, so the export would mix with something else.
    #[error(
        "{}: the directory is not empty and holds no earlier export (no {}); name an empty or new directory",
        path.display(),
        export::MARKER
    )]
    NotAnExport {
        /// The directory.
        path: PathBuf,
    },
}

/// A division code prefix a report covers: `00` the whole country, 2 digits a
/// province, 4 a city, 6 a county, 9 a township.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    /// Parses a region code.
    pub fn parse(code: &str) -> Result<Region, ReportError> {
        let digits = code.bytes().all(|b| b.is_ascii_digit());
        if digits && matches!(code.len(), 2 | 4 | 6 | 9) {
            Ok(Region(code.to_string()))
        } else {
            Err(ReportError::Region {
                found: code.chars().take(40).collect(),
            })
        }
    }

    /// The whole country (`00`).
    pub fn country() -> Region {
        Region("00".to_string())
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a division code (a township, a county) lies in the region.
    pub fn contains(&self, code: &str) -> bool {
        self.0 == "00" || code.starts_with(&self.0)
    }

    /// Whether a case concerns the region: its acceptance township or its
    /// domicile lies in it ([`SupervisedCase::in_region`]).
    pub fn concerns(&self, case: &SupervisedCase) -> bool {
        case.in_region(&self.0)
    }

    /// The region as far as counties go: a township region widened to its
    /// county (payroll is per county), any other region itself.
    pub fn county_level(&self) -> Region {
        Region(self.0.get(..6).unwrap_or(&self.0).to_string())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Beijing dates `from` through `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    from: NaiveDate,
    to: NaiveDate,
}

impl Period {
    /// The period `from ..= to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, ReportError> {
        if to < from {
            return Err(ReportError::Period { from, to });
        }
        Ok(Period { from, to })
    }

    /// The whole of one month.
    pub fn month(month: YearMonth) -> Period {
        let from = month.first_day();
        let to = month.next().first_day().pred_opt().unwrap_or(from);
        Period { from, to }
    }

    /// First day.
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// Last day.
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Whether `date` lies in the period.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }

    /// The months the period touches, in order.
    pub fn months(&self) -> Vec<YearMonth> {
        YearMonth::of(self.from)
            .through(YearMonth::of(self.to))
            .collect()
    }
}

/// What a report covers: where, when, and the day waiting cases are judged on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// The region.
    pub region: Region,
    /// Steps, evaluations and months counted.
    pub period: Period,
    /// The day on which a case waiting past its deadline (a pending deadline
    /// earlier than this day) is overdue; usually today.
    pub as_of: NaiveDate,
}

impl Scope {
    /// A scope.
    pub fn new(region: Region, period: Period, as_of: NaiveDate) -> Scope {
        Scope {
            region,
            period,
            as_of,
        }
    }
}

/// The short form of a case id for tables: the random part of a well-formed
/// id (`K7Q2XM`, as logs show it), else the first 8 characters and `…`.
pub fn short_case(case: &str) -> String {
    match CaseId::parse(case) {
        Ok(id) => id.short().to_string(),
        Err(_) if case.chars().count() > 8 => {
            let mut s: String = case.chars().take(8).collect();
            s.push('…');
            s
        }
        Err(_) => case.to_string(),
    }
}

/// The share `part / whole`, `None` when there is no whole.
pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    // Counts stay far below 2^52: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A ratio as a percentage with one decimal (`93.3%`), `-` for none.
pub(crate) fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// A date, `-` for none.
pub(crate) fn date_or_dash(date: Option<NaiveDate>) -> String {
    date.map_or_else(|| "-".to_string(), |d| d.to_string())
}

/// The renderings every report has.
pub trait Report {
    /// One row, serialised flat (CSV and JSON).
    type Row: Serialize;
    /// The CSV header: the row's field names, in order.
    const CSV_HEADER: &'static [&'static str];
    /// The Chinese header of the table.
    const ZH_HEADER: &'static [&'static str];

    /// The rows.
    fn rows(&self) -> &[Self::Row];

    /// One row as the table's cells.
    fn zh_cells(row: &Self::Row) -> Vec<String>;

    /// Lines the table adds after the rows (a total), if any.
    fn zh_footer(&self) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// Writes the rows as CSV with the English header, even when there are
    /// no rows.
    fn write_csv<W: io::Write>(&self, out: W) -> Result<(), ReportError> {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        writer.write_record(Self::CSV_HEADER)?;
        for row in self.rows() {
            writer.serialize(row)?;
        }
        writer.flush().map_err(csv::Error::from)?;
        Ok(())
    }

    /// The table: the Chinese header, then one line per row, then the footer.
    fn table(&self) -> Vec<Vec<String>> {
        let mut table = Vec::with_capacity(self.rows().len() + 2);
        table.push(Self::ZH_HEADER.iter().map(|h| h.to_string()).collect());
        table.extend(self.rows().iter().map(Self::zh_cells));
        table.extend(self.zh_footer());
        table
    }
}

/// How a case stands in a drill-down line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// A step signed on time.
    OnTime,
    /// A step signed late.
    Late,
    /// Waiting, past its deadline on the `as_of` day.
    Overdue,
    /// Waiting, not (yet) overdue.
    Waiting,
    /// Entitled to payment in the month.
    Entitled,
    /// An evaluation recorded.
    Evaluated,
}

impl DrillStatus {
    /// The Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            DrillStatus::OnTime => "按时",
            DrillStatus::Late => "超时",
            DrillStatus::Overdue => "当前超期",
            DrillStatus::Waiting => "待办",
            DrillStatus::Entitled => "应发",
            DrillStatus::Evaluated => "已评价",
        }
    }
}

/// One case behind a report's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillRow {
    /// The full case id.
    pub case: String,
    /// Its short form ([`short_case`]).
    pub short: String,
    /// How it counts in the row.
    pub status: DrillStatus,
    /// The day of the step, of entering the stage, or of the evaluation.
    pub date: Option<NaiveDate>,
    /// The deadline that applied, if any.
    pub deadline: Option<NaiveDate>,
    /// The evaluation's score (satisfaction only).
    pub score: Option<u8>,
}

impl DrillRow {
    pub(crate) fn new(
        case: &str,
        status: DrillStatus,
        date: Option<NaiveDate>,
        deadline: Option<NaiveDate>,
    ) -> DrillRow {
        DrillRow {
            case: case.to_string(),
            short: short_case(case),
            status,
            date,
            deadline,
            score: None,
        }
    }
}

/// The cases behind one row of a report, in the order the report met them
/// (sorted by date, then case id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillReport {
    /// The lines.
    pub rows: Vec<DrillRow>,
}

impl DrillReport {
    pub(crate) fn sorted(mut rows: Vec<DrillRow>) -> DrillReport {
        rows.sort_by(|a, b| (a.date, &a.case).cmp(&(b.date, &b.case)));
        DrillReport { rows }
    }

    /// The full case ids, in order (a case may appear more than once when
    /// it has several steps in the row).
    pub fn case_ids(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r.case.as_str()).collect()
    }
}

impl Report for DrillReport {
    type Row = DrillRow;
    const CSV_HEADER: &'static [&'static str] =
        &["case", "short", "status", "date", "deadline", "score"];
    const ZH_HEADER: &'static [&'static str] = &["案件", "简号", "状态", "日期", "期限", "评分"];

    fn rows(&self) -> &[DrillRow] {
        &self.rows
    }

    fn zh_cells(row: &DrillRow) -> Vec<String> {
        vec![
            row.case.clone(),
            row.short.clone(),
            row.status.zh().to_string(),
            date_or_dash(row.date),
            date_or_dash(row.deadline),
            row.score.map_or_else(|| "-".to_string(), |s| s.to_string()),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    //! Hand-built cases for the reports' unit tests.

    use chrono::NaiveDate;
    use tongban_domain::ids::Timestamp;
    use tongban_domain::stage::{Role, Stage};
    use tongban_domain::supervision::{Pending, Step, SupervisedCase};

    use super::Report;

    pub fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// 10:00 Beijing on a date.
    pub fn at(text: &str) -> Timestamp {
        Timestamp(Timestamp::start_of_china_date(d(text)).millis() + 10 * Timestamp::HOUR_MS)
    }

    /// A case accepted at `acceptance` (office id = township code) for a
    /// resident of `domicile`, with no steps yet.
    pub fn case(id: &str, acceptance: &str, domicile: &str) -> SupervisedCase {
        SupervisedCase {
            case: id.to_string(),
            acceptance_office: acceptance.to_string(),
            acceptance: acceptance.to_string(),
            domicile: domicile.to_string(),
            kinds: vec![tongban_domain::policy::SubsidyKind::Living],
            steps: Vec::new(),
            pending: None,
            awards: Vec::new(),
            first_paid_month: None,
            evaluation: None,
            problems: Vec::new(),
        }
    }

    /// Appends a step to a case.
    pub fn step(
        case: &mut SupervisedCase,
        to: Stage,
        office: &str,
        role: Role,
        date: &str,
        deadline: Option<&str>,
    ) {
        let at = at(date);
        let deadline = deadline.map(d);
        case.steps.push(Step {
            seq: u32::try_from(case.steps.len()).unwrap(),
            from: case.stage(),
            to,
            office: office.to_string(),
            role,
            at,
            deadline,
            late: deadline.is_some_and(|dl| at.china_date() > dl),
            provisional: false,
        });
    }

    /// Sets the pending deadline.
    pub fn pending(
        case: &mut SupervisedCase,
        next: &[Stage],
        role: Role,
        office: &str,
        deadline: &str,
    ) {
        case.pending = Some(Pending {
            next: next.to_vec(),
            deadline: d(deadline),
            provisional: false,
            role,
            office: office.to_string(),
        });
    }

    /// The CSV header a report's rows serialise to, from serde's field
    /// names.
    pub fn serde_header<R: Report>(row: &R::Row) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(row).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        text.lines().next().unwrap().to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_and_contain() {
        assert!(Region::parse("13").is_ok());
        assert!(Region::parse("1301").is_ok());
        assert!(Region::parse("130102001").is_ok());
        assert!(Region::parse("00").is_ok());
        for bad in ["", "1", "130", "13010200", "1301020011", "1a", "../"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
        let hebei = Region::parse("13").unwrap();
        assert!(hebei.contains("130102001"));
        assert!(!hebei.contains("440106001"));
        assert!(Region::country().contains("440106001"));
        assert_eq!(
            Region::parse("130102001").unwrap().county_level().as_str(),
            "130102"
        );
    }

    #[test]
    fn periods() {
        let p = Period::new(testing::d("2026-10-15"), testing::d("2026-12-01")).unwrap();
        assert_eq!(
            p.months().iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            ["2026-10", "2026-11", "2026-12"]
        );
        assert!(p.contains(testing::d("2026-12-01")));
        assert!(!p.contains(testing::d("2026-12-02")));
        assert!(Period::new(testing::d("2026-12-02"), testing::d("2026-12-01")).is_err());
        let feb = Period::month(YearMonth::parse("2028-02").unwrap());
        assert_eq!(feb.to(), testing::d("2028-02-29"));
    }

    #[test]
    fn short_forms() {
        assert_eq!(short_case("440106001-20261128-K7Q2XM"), "K7Q2XM");
        assert_eq!(short_case("not-a-case-id"), "not-a-ca…");
        assert_eq!(short_case("short"), "short");
    }
}
