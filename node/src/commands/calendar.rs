//! `tongban calendar add|between|import|show`.
//!
//! The shipped schedules (2021-2026 at build time) are embedded in the domain
//! crate; a node's data directory may hold imported years under `calendar/`, which
//! extend or replace shipped years. A year that neither covers is reported as not
//! covered, and any deadline through it is marked provisional.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;
use tongban_domain::calendar::Calendar;

use crate::cli::{CalendarCommand, DataDirArg};
use crate::output::print_json;

/// The calendar a node of `data_dir` counts with: the shipped years, the years
/// imported into its `calendar/`, and over them the signed calendar it holds
/// (`calendar publish`). Without a node there, the shipped years (and any
/// imported into `data_dir/calendar/`).
pub fn load_calendar(data_dir: Option<&Path>) -> anyhow::Result<Calendar> {
    if let Some(dir) = data_dir
        && dir.join(tongban_node::local::NODE_FILE).is_file()
    {
        let node = tongban_node::client::open(dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        return Ok(node.calendar().clone());
    }
    tongban_node::local::load_calendar(data_dir).map_err(anyhow::Error::msg)
}

/// The years a date given to the calendar may fall in. Working-day schedules
/// exist only for the present; far outside this range chrono's own limits would
/// cap an answer silently instead of giving a true one.
const SANE_YEARS: std::ops::RangeInclusive<i32> = 1949..=2199;

fn parse_date(field: &str, value: &str) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| format!("{field} {value:?} is not a date of the form YYYY-MM-DD"))?;
    check_sane(field, date)?;
    Ok(date)
}

fn check_sane(field: &str, date: NaiveDate) -> Result<(), String> {
    use chrono::Datelike;
    if SANE_YEARS.contains(&date.year()) {
        Ok(())
    } else {
        Err(format!(
            "{field} {date}: outside the calendar's range, years {} to {} \
             日期超出日历范围",
            SANE_YEARS.start(),
            SANE_YEARS.end()
        ))
    }
}

#[derive(Serialize)]
struct AddReport {
    start: NaiveDate,
    working_days: u32,
    date: NaiveDate,
    provisional: bool,
    warning: Option<String>,
}

#[derive(Serialize)]
struct BetweenReport {
    from: NaiveDate,
    to: NaiveDate,
    working_days: i64,
    provisional: bool,
    warning: Option<String>,
}

pub fn run(cmd: CalendarCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CalendarCommand::Add {
            date,
            n,
            json,
            data,
        } => {
            let start = match parse_date("DATE", &date) {
                Ok(d) => d,
                Err(msg) => return Ok(Failure::rejected(msg).at("DATE").report()),
            };
            let calendar = load_calendar(data.data_dir.as_deref())?;
            let result = calendar.add_working_days(start, n);
            // A count that runs past the range would be answered with a capped
            // date: refused, naming the count.
            if let Err(msg) = check_sane("N", result.date) {
                return Ok(reject(&format!("{n} working days after {start}: {msg}")));
            }
            let report = AddReport {
                start,
                working_days: n,
                date: result.date,
                provisional: result.provisional,
                warning: result.warning(),
            };
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{start} 后第 {n} 个工作日 / {n} working days after {start}: {}{}",
                    report.date,
                    if report.provisional {
                        "（暂定 provisional）"
                    } else {
                        ""
                    }
                );
                if let Some(w) = &report.warning {
                    eprintln!("注意 warning: {w}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CalendarCommand::Between {
            from,
            to,
            json,
            data,
        } => {
            let (from, to) = match (parse_date("D1", &from), parse_date("D2", &to)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(msg), _) => return Ok(Failure::rejected(msg).at("D1").report()),
                (_, Err(msg)) => return Ok(Failure::rejected(msg).at("D2").report()),
            };
            let calendar = load_calendar(data.data_dir.as_deref())?;
            let count = calendar.working_days_between(from, to);
            let report = BetweenReport {
                from,
                to,
                working_days: count.days,
                provisional: count.provisional,
                warning: count.warning(),
            };
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{from} 至 {to} 的工作日 / working days after {from} up to {to}: {}{}",
                    report.working_days,
                    if report.provisional {
                        "（暂定 provisional）"
                    } else {
                        ""
                    }
                );
                if let Some(w) = &report.warning {
                    eprintln!("注意 warning: {w}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CalendarCommand::Import { file, data } => import(&file, &data),
        CalendarCommand::Publish {
            auth,
            file,
            data_dir,
        } => publish(&auth.authority, &file, data_dir.as_deref()),
        CalendarCommand::Show { json, data } => {
            let calendar = load_calendar(data.data_dir.as_deref())?;
            let years: Vec<i32> = calendar.covered_years();
            if json {
                print_json(&serde_json::json!({ "covered_years": years }))?;
            } else {
                let list: Vec<String> = years.iter().map(i32::to_string).collect();
                println!("已覆盖年份 covered years: {}", list.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

use super::reject;
use crate::error::Failure;

/// `calendar publish`: the authority signs the years of FILE over those it
/// published before; with `--data-dir`, the node takes it (a running one
/// passes it on at once).
fn publish(authority: &Path, file: &Path, data_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(err) => {
            return Ok(Failure::field("FILE", format!("{}: {err}", file.display())).report());
        }
    };
    let mut calendar = Calendar::default();
    let parsed = if text.trim_start().starts_with('{') {
        calendar.import_holiday_cn_json(&text).map(|y| vec![y])
    } else {
        calendar.import_text(&text)
    };
    if let Err(err) = parsed {
        return Ok(Failure::field("FILE", format!("{}: {err}", file.display())).report());
    }
    let auth = match tongban_node::authority::Authority::open(authority) {
        Ok(a) => a,
        Err(err) => return Ok(Failure::failed(err.to_string()).at("--authority").report()),
    };
    let (bytes, version, years) =
        match auth.publish_calendar(&calendar, tongban_domain::ids::Timestamp::now()) {
            Ok(done) => done,
            Err(err) => return Ok(Failure::failed(err.to_string()).report()),
        };
    let list: Vec<String> = years.iter().map(i32::to_string).collect();
    println!(
        "工作日历已签发 calendar signed: version {version}, years {} → {}",
        list.join(", "),
        auth.calendar_path().display()
    );
    Ok(super::hand_to_node(&bytes, data_dir, &auth.calendar_path()))
}

fn import(file: &Path, data: &DataDirArg) -> anyhow::Result<ExitCode> {
    let Some(dir) = data.data_dir.as_deref() else {
        return Ok(reject(
            "--data-dir (or TONGBAN_DATA_DIR) is needed: imported years are kept in the node's data directory",
        ));
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(err) => return Ok(reject(&format!("cannot read {}: {err}", file.display()))),
    };
    // Parse into a scratch calendar first: a bad file changes nothing stored.
    let mut scratch = load_calendar(Some(dir))?;
    let years = if text.trim_start().starts_with('{') {
        scratch.import_holiday_cn_json(&text).map(|y| vec![y])
    } else {
        scratch.import_text(&text)
    };
    let years = match years {
        Ok(y) => y,
        Err(err) => return Ok(reject(&format!("{}: {err}", file.display()))),
    };
    let cal_dir = dir.join("calendar");
    std::fs::create_dir_all(&cal_dir)
        .with_context(|| format!("cannot create {}", cal_dir.display()))?;
    for year in &years {
        let target = cal_dir.join(format!("{year}.txt"));
        let tmp = cal_dir.join(format!(".{year}.txt.tmp"));
        let Some(text) = scratch.to_text(*year) else {
            continue;
        };
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        println!("已导入 imported: {year} → {}", target.display());
    }
    Ok(ExitCode::SUCCESS)
}
