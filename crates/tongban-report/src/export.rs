//! The Apache Parquet export: what the reports are computed from, as
//! hive-partitioned tables that DuckDB, Spark or Trino read
//! (`docs/analytics.md`).
//!
//! ```text
//! DIR/_tongban_export.json                               what this export wrote
//! DIR/steps/province=PP/month=YYYY-MM/part-0.parquet     one row per signed step
//! DIR/cases/province=PP/part-0.parquet                   one row per case
//! DIR/payroll/province=PP/part-0.parquet                 one row per summary and kind
//! ```
//!
//! `province` is the domicile's (the payroll's county's) 2-digit code, and
//! `month` the Beijing month of the step; a domicile without a 2-digit
//! province lands in `province=__HIVE_DEFAULT_PARTITION__`, Hive's name for
//! a missing value. Partition values are not repeated inside the files.
//!
//! Every file is written under a temporary name in its own directory, synced
//! and renamed into place, so a reader never sees half a file. The target
//! must be a new or empty directory, or a previous export — a directory
//! holding `_tongban_export.json` (the list of the files it wrote, written
//! last): the export then replaces those files, removes the ones this export
//! no longer has (a partition gone), and leaves anything else alone. Any
//! other non-empty directory is refused ([`ReportError::NotAnExport`]). A
//! reader running during a re-export may see some partitions old and some
//! new.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt8Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tongban_domain::payroll::YearMonth;
use tongban_domain::policy::SubsidyKind;
use tongban_domain::stage::Stage;
use tongban_domain::supervision::{PayrollSummary, SupervisedCase};

use crate::ReportError;

/// The file that marks a directory as an export and lists its files.
pub const MARKER: &str = "_tongban_export.json";

/// The marker's `format` value.
const FORMAT: &str = "tongban-supervision-parquet";

/// The partition value of a missing or malformed province (Hive's).
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// The marker's format name.
    pub format: String,
    /// The layout's version.
    pub version: u32,
    /// The files written, relative to the directory, `/`-separated, sorted.
    pub files: Vec<String>,
    /// Rows of `steps`.
    pub steps: u64,
    /// Rows of `cases`.
    pub cases: u64,
    /// Rows of `payroll`.
    pub payroll: u64,
    /// Files of the previous export this one removed (not in the marker).
    #[serde(skip)]
    pub removed: Vec<String>,
}

/// Writes `cases` and `summaries` as Parquet under `dir` (see the module
/// documentation for the layout and the rules of the target directory).
pub fn export_parquet(
    dir: &Path,
    cases: &[SupervisedCase],
    summaries: &[PayrollSummary],
) -> Result<ExportSummary, ReportError> {
    let previous = check_target(dir)?;
    let mut summary = ExportSummary {
        format: FORMAT.to_string(),
        version: 1,
        files: Vec::new(),
        steps: 0,
        cases: 0,
        payroll: 0,
        removed: Vec::new(),
    };

    let mut steps: BTreeMap<(&str, YearMonth), Vec<(&SupervisedCase, usize)>> = BTreeMap::new();
    let mut by_province: BTreeMap<&str, Vec<&SupervisedCase>> = BTreeMap::new();
    for case in cases {
        let province = province(case.domicile_province());
        by_province.entry(province).or_default().push(case);
        for (idx, step) in case.steps.iter().enumerate() {
            steps
                .entry((province, YearMonth::of(step.at.china_date())))
                .or_default()
                .push((case, idx));
        }
    }
    for ((province, month), rows) in &steps {
        let rel = format!("steps/province={province}/month={month}/part-0.parquet");
        write_batch(dir, &rel, |path| steps_batch(path, rows))?;
        summary.steps += rows.len() as u64;
        summary.files.push(rel);
    }
    for (province, rows) in &by_province {
        let rel = format!("cases/province={province}/part-0.parquet");
        write_batch(dir, &rel, |path| cases_batch(path, rows))?;
        summary.cases += rows.len() as u64;
        summary.files.push(rel);
    }
    let mut payroll: BTreeMap<&str, Vec<&PayrollSummary>> = BTreeMap::new();
    for s in summaries {
        payroll
            .entry(province(s.county.get(..2).unwrap_or("")))
            .or_default()
            .push(s);
    }
    for (province, rows) in &payroll {
        let rel = format!("payroll/province={province}/part-0.parquet");
        write_batch(dir, &rel, |path| payroll_batch(path, rows))?;
        summary.payroll += (rows.len() * SubsidyKind::ALL.len()) as u64;
        summary.files.push(rel);
    }
    summary.files.sort();

    if let Some(previous) = previous {
        for old in previous.files {
            if summary.files.contains(&old) || !is_export_file(&old) {
                continue;
            }
            remove_stale(dir, &old)?;
            summary.removed.push(old);
        }
    }
    let marker = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    write_atomic(dir, MARKER, |file, _| {
        io::Write::write_all(file, &marker).map_err(|source| ReportError::Io {
            path: dir.join(MARKER),
            source,
        })
    })?;
    Ok(summary)
}

/// A partition value from a province code: 2 ASCII digits, else the default
/// partition (never a path separator or `..`).
fn province(code: &str) -> &str {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) {
        code
    } else {
        DEFAULT_PARTITION
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` if needed and reads the previous export's marker, refusing a
/// non-empty directory without one.
fn check_target(dir: &Path) -> Result<Option<ExportSummary>, ReportError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
    if entries.next().is_none() {
        return Ok(None);
    }
    let marker = dir.join(MARKER);
    let previous = match fs::read(&marker) {
        Ok(bytes) => serde_json::from_slice::<ExportSummary>(&bytes)
            .ok()
            .filter(|m| m.format == FORMAT),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ReportError::Io {
                path: marker,
                source,
            });
        }
    };
    match previous {
        Some(previous) => Ok(Some(previous)),
        None => Err(ReportError::NotAnExport {
            path: dir.to_path_buf(),
        }),
    }
}

/// Whether a marker's entry names a file of this layout (so removing it can
/// never reach outside the export).
fn is_export_file(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let table_ok = matches!(parts.first(), Some(&"steps" | &"cases" | &"payroll"));
    let partitions_ok = parts
        .get(1..parts.len().saturating_sub(1))
        .is_some_and(|mid| {
            !mid.is_empty()
                && mid.iter().all(|p| {
                    p.split_once('=').is_some_and(|(k, v)| {
                        matches!(k, "province" | "month")
                            && !v.is_empty()
                            && v.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    })
                })
        });
    table_ok && partitions_ok && parts.last() == Some(&"part-0.parquet")
}

fn remove_stale(dir: &Path, rel: &str) -> Result<(), ReportError> {
    let path = dir.join(rel);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(ReportError::Io { path, source }),
    }
    // Remove the partition directories left empty (a failure means not empty).
    let mut parent = path.parent();
    while let Some(p) = parent {
        if p == dir || fs::remove_dir(p).is_err() {
            break;
        }
        parent = p.parent();
    }
    Ok(())
}

/// Writes `dir/rel` under a temporary name in the same directory, syncs it
/// and renames it into place.
fn write_atomic(
    dir: &Path,
    rel: &str,
    write: impl FnOnce(&mut fs::File, &Path) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let target = dir.join(rel);
    let parent = target.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".part-")
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(io_err(parent))?;
    write(temp.as_file_mut(), &target)?;
    temp.as_file().sync_all().map_err(io_err(&target))?;
    temp.persist(&target).map_err(|e| ReportError::Io {
        path: target.clone(),
        source: e.error,
    })?;
    // Make the rename durable; a directory that cannot be opened for sync
    // (some platforms) is left to the file system.
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_batch(
    dir: &Path,
    rel: &str,
    build: impl FnOnce(&Path) -> Result<RecordBatch, ReportError>,
) -> Result<(), ReportError> {
    write_atomic(dir, rel, |file, path| {
        let batch = build(path)?;
        let parquet_err = |source| ReportError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        writer.close().map_err(parquet_err)?;
        Ok(())
    })
}

fn days(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
    i32::try_from((date - epoch).num_days()).unwrap_or(i32::MAX)
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn timestamp(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        nullable,
    )
}

fn batch(
    path: &Path,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, ReportError> {
    RecordBatch::try_new(schema, columns).map_err(|source| ReportError::Arrow {
        path: path.to_path_buf(),
        source,
    })
}

/// The schema of `steps` files.
pub fn steps_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("case_id", false),
        Field::new("seq", DataType::UInt32, false),
        utf8("from_stage", true),
        utf8("to_stage", false),
        utf8("office", false),
        utf8("role", false),
        timestamp("at", false),
        Field::new("at_date", DataType::Date32, false),
        Field::new("deadline", DataType::Date32, true),
        Field::new("late", DataType::Boolean, false),
        Field::new("provisional", DataType::Boolean, false),
        utf8("acceptance_office", false),
        utf8("acceptance", false),
        utf8("domicile", false),
        utf8("domicile_county", false),
    ]))
}

fn steps_batch(path: &Path, rows: &[(&SupervisedCase, usize)]) -> Result<RecordBatch, ReportError> {
    let steps: Vec<(&SupervisedCase, &tongban_domain::supervision::Step)> = rows
        .iter()
        .filter_map(|(case, idx)| Some((*case, case.steps.get(*idx)?)))
        .collect();
    let col_str = |f: &dyn Fn(&(&SupervisedCase, &tongban_domain::supervision::Step)) -> String| {
        Arc::new(StringArray::from_iter_values(steps.iter().map(f))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        col_str(&|(c, _)| c.case.clone()),
        Arc::new(UInt32Array::from_iter_values(
            steps.iter().map(|(_, s)| s.seq),
        )),
        Arc::new(StringArray::from_iter(
            steps.iter().map(|(_, s)| s.from.map(Stage::code)),
        )),
        col_str(&|(_, s)| s.to.code().to_string()),
        col_str(&|(_, s)| s.office.clone()),
        col_str(&|(_, s)| s.role.code().to_string()),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(steps.iter().map(|(_, s)| s.at.millis()))
                .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter_values(
            steps.iter().map(|(_, s)| days(s.at.china_date())),
        )),
        Arc::new(Date32Array::from_iter(
            steps.iter().map(|(_, s)| s.deadline.map(days)),
        )),
        Arc::new(BooleanArray::from_iter(
            steps.iter().map(|(_, s)| Some(s.late)),
        )),
        Arc::new(BooleanArray::from_iter(
            steps.iter().map(|(_, s)| Some(s.provisional)),
        )),
        col_str(&|(c, _)| c.acceptance_office.clone()),
        col_str(&|(c, _)| c.acceptance.clone()),
        col_str(&|(c, _)| c.domicile.clone()),
        col_str(&|(c, _)| c.domicile_county().to_string()),
    ];
    batch(path, steps_schema(), columns)
}

/// The schema of `cases` files.
pub fn cases_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("case_id", false),
        utf8("acceptance_office", false),
        utf8("acceptance", false),
        utf8("domicile", false),
        utf8("domicile_county", false),
        Field::new(
            "kinds",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        utf8("stage", true),
        timestamp("entered_at", true),
        Field::new("entered_date", DataType::Date32, true),
        Field::new("approved", DataType::Boolean, false),
        Field::new("pending_deadline", DataType::Date32, true),
        Field::new("pending_provisional", DataType::Boolean, true),
        utf8("pending_role", true),
        utf8("pending_office", true),
        Field::new("living_yuan", DataType::UInt32, true),
        Field::new("nursing_yuan", DataType::UInt32, true),
        utf8("first_paid_month", true),
        Field::new("evaluation_score", DataType::UInt8, true),
        utf8("evaluation_office", true),
        timestamp("evaluation_at", true),
        Field::new("evaluation_date", DataType::Date32, true),
        Field::new("problems", DataType::UInt32, false),
    ]))
}

fn cases_batch(path: &Path, cases: &[&SupervisedCase]) -> Result<RecordBatch, ReportError> {
    let strings = |f: &dyn Fn(&SupervisedCase) -> &str| {
        Arc::new(StringArray::from_iter_values(cases.iter().map(|c| f(c)))) as ArrayRef
    };
    let mut kinds = ListBuilder::new(StringBuilder::new());
    for case in cases {
        for kind in &case.kinds {
            kinds.values().append_value(kind.code());
        }
        kinds.append(true);
    }
    let award = |kind: SubsidyKind| {
        Arc::new(UInt32Array::from_iter(cases.iter().map(|c| {
            c.awards
                .iter()
                .find(|a| a.kind == kind)
                .map(|a| a.monthly_yuan)
        }))) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|c| &c.case),
        strings(&|c| &c.acceptance_office),
        strings(&|c| &c.acceptance),
        strings(&|c| &c.domicile),
        strings(&|c| c.domicile_county()),
        Arc::new(kinds.finish()),
        Arc::new(StringArray::from_iter(
            cases.iter().map(|c| c.stage().map(Stage::code)),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter(
                cases.iter().map(|c| c.entered().map(|t| t.millis())),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter(
            cases
                .iter()
                .map(|c| c.entered().map(|t| days(t.china_date()))),
        )),
        Arc::new(BooleanArray::from_iter(
            cases
                .iter()
                .map(|c| Some(c.steps.iter().any(|s| s.to == Stage::Decided))),
        )),
        Arc::new(Date32Array::from_iter(
            cases
                .iter()
                .map(|c| c.pending.as_ref().map(|p| days(p.deadline))),
        )),
        Arc::new(BooleanArray::from_iter(
            cases
                .iter()
                .map(|c| c.pending.as_ref().map(|p| p.provisional)),
        )),
        Arc::new(StringArray::from_iter(
            cases
                .iter()
                .map(|c| c.pending.as_ref().map(|p| p.role.code())),
        )),
        Arc::new(StringArray::from_iter(
            cases
                .iter()
                .map(|c| c.pending.as_ref().map(|p| p.office.as_str())),
        )),
        award(SubsidyKind::Living),
        award(SubsidyKind::Nursing),
        Arc::new(StringArray::from_iter(
            cases
                .iter()
                .map(|c| c.first_paid_month.map(|m| m.to_string())),
        )),
        Arc::new(UInt8Array::from_iter(
            cases.iter().map(|c| c.evaluation.as_ref().map(|e| e.score)),
        )),
        Arc::new(StringArray::from_iter(
            cases
                .iter()
                .map(|c| c.evaluation.as_ref().map(|e| e.office.as_str())),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter(
                cases
                    .iter()
                    .map(|c| c.evaluation.as_ref().map(|e| e.at.millis())),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from_iter(
            cases
                .iter()
                .map(|c| c.evaluation.as_ref().map(|e| days(e.at.china_date()))),
        )),
        Arc::new(UInt32Array::from_iter_values(
            cases
                .iter()
                .map(|c| u32::try_from(c.problems.len()).unwrap_or(u32::MAX)),
        )),
    ];
    batch(path, cases_schema(), columns)
}

/// The schema of `payroll` files.
pub fn payroll_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("county", false),
        utf8("month", false),
        utf8("kind", false),
        Field::new("people", DataType::UInt64, false),
        Field::new("months", DataType::UInt64, false),
        Field::new("yuan", DataType::UInt64, false),
        Field::new("back_months", DataType::UInt64, false),
        Field::new("back_yuan", DataType::UInt64, false),
    ]))
}

fn payroll_batch(path: &Path, summaries: &[&PayrollSummary]) -> Result<RecordBatch, ReportError> {
    let rows: Vec<(&PayrollSummary, SubsidyKind)> = summaries
        .iter()
        .flat_map(|s| SubsidyKind::ALL.into_iter().map(move |k| (*s, k)))
        .collect();
    let num = |f: &dyn Fn(&tongban_domain::payroll::KindTotal) -> u64| {
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(s, k)| f(s.total(*k))),
        )) as ArrayRef
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(s, _)| &s.county),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(s, _)| s.month.to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, k)| k.code()),
        )),
        num(&|t| t.people),
        num(&|t| t.months),
        num(&|t| t.yuan),
        num(&|t| t.back_months),
        num(&|t| t.back_yuan),
    ];
    batch(path, payroll_schema(), columns)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::sample;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn rows_in(path: &Path) -> usize {
        let file = fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        reader.map(|b| b.unwrap().num_rows()).sum()
    }

    #[test]
    fn writes_partitions_that_read_back() {
        let cases = sample::cases(500, 3, d(2026, 9, 1), d(2026, 12, 31));
        let sums = sample::summaries(
            &cases,
            3,
            YearMonth::of(d(2026, 9, 1)),
            YearMonth::of(d(2026, 12, 31)),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let summary = export_parquet(&out, &cases, &sums).unwrap();
        let steps: usize = cases.iter().map(|c| c.steps.len()).sum();
        assert_eq!(summary.steps, steps as u64);
        assert_eq!(summary.cases, 500);
        assert_eq!(summary.payroll, sums.len() as u64 * 2);
        assert!(
            summary
                .files
                .iter()
                .any(|f| f == "steps/province=13/month=2026-11/part-0.parquet")
        );
        let read: usize = summary
            .files
            .iter()
            .filter(|f| f.starts_with("steps/"))
            .map(|f| rows_in(&out.join(f)))
            .sum();
        assert_eq!(read, steps);
        let cases_read: usize = summary
            .files
            .iter()
            .filter(|f| f.starts_with("cases/"))
            .map(|f| rows_in(&out.join(f)))
            .sum();
        assert_eq!(cases_read, 500);
        // No temporary file is left behind.
        let leftovers = fs::read_dir(out.join("cases/province=13")).unwrap().count();
        assert_eq!(leftovers, 1);
        let marker: ExportSummary =
            serde_json::from_slice(&fs::read(out.join(MARKER)).unwrap()).unwrap();
        assert_eq!(marker.files, summary.files);
    }

    #[test]
    fn a_previous_export_is_replaced_and_anything_else_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases = sample::cases(200, 5, d(2026, 9, 1), d(2026, 12, 31));
        let first = export_parquet(dir.path(), &cases, &[]).unwrap();
        // Only Hebei's cases the second time: the other provinces' files go,
        // a file of the user's stays.
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let hebei: Vec<SupervisedCase> = cases
            .iter()
            .filter(|c| c.domicile.starts_with("13"))
            .cloned()
            .collect();
        let second = export_parquet(dir.path(), &hebei, &[]).unwrap();
        assert!(second.files.len() < first.files.len());
        assert!(!second.removed.is_empty());
        assert!(!dir.path().join("cases/province=44").exists());
        assert!(dir.path().join("cases/province=13/part-0.parquet").exists());
        assert!(dir.path().join("notes.txt").exists());

        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("data.csv"), "x").unwrap();
        let err = export_parquet(other.path(), &cases, &[]).unwrap_err();
        assert!(matches!(err, ReportError::NotAnExport { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&other.path().display().to_string())
        );
    }

    #[test]
    fn marker_entries_outside_the_layout_are_never_removed() {
        assert!(is_export_file(
            "steps/province=13/month=2026-11/part-0.parquet"
        ));
        assert!(is_export_file(
            "cases/province=__HIVE_DEFAULT_PARTITION__/part-0.parquet"
        ));
        for bad in [
            "../x/part-0.parquet",
            "steps/part-0.parquet",
            "steps/province=../part-0.parquet",
            "steps/province=13/../../part-0.parquet",
            "other/province=13/part-0.parquet",
            "/etc/passwd",
        ] {
            assert!(!is_export_file(bad), "{bad}");
        }
        assert_eq!(province("1"), DEFAULT_PARTITION);
        assert_eq!(province(".."), DEFAULT_PARTITION);
    }
}
