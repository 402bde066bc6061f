//! The working-day calendar: China's public holidays and adjusted working days
//! (调休), and the deadlines counted in working days.
//!
//! # Model
//!
//! Every year the State Council General Office publishes the next year's holiday
//! schedule. A schedule lists only the dates that differ from the plain rule: public
//! holidays (rest days, often on weekdays) and adjusted working days (usually a
//! Saturday or Sunday next to a holiday). Every other date is a working day Monday
//! to Friday and a rest day on Saturday and Sunday. A schedule may list dates in a
//! neighbouring year (the 2023 notice makes Saturday 2022-12-31 part of New Year).
//!
//! A year is *covered* once its schedule is loaded into the [`Calendar`]. A date in
//! an uncovered year is not silently treated as ordinary: [`Calendar::day_kind`]
//! says [`DayKind::Uncovered`], [`Calendar::is_working_day`] refuses, and the
//! counting functions fall back to the Monday–Friday rule for such dates but mark
//! their result `provisional`, naming the years in [`WorkingDate::warning`]. A date
//! that a loaded schedule lists explicitly is known even when its own year is not
//! covered.
//!
//! The calendar is data the product ships and can update, not code: the shipped
//! schedules are the embedded `data/holidays.txt` ([`Calendar::shipped`]), and a
//! node adds a newly published year with [`Calendar::import_holiday_cn_json`] (the
//! public holiday-cn format) or [`Calendar::import_text`] (the project's own format),
//! and saves it with [`Calendar::to_text`].
//!
//! # The project's text format
//!
//! UTF-8, one statement per line; blank lines and lines starting with `#` are
//! ignored:
//!
//! ```text
//! year 2024
//! paper https://www.gov.cn/zhengce/zhengceku/202310/content_6911528.htm
//! off 2024-01-01 元旦
//! work 2024-02-04 春节
//! off 2024-02-10..2024-02-17 春节
//! ```
//!
//! `year YYYY` starts the schedule of one year, which must list at least one day;
//! `paper URL` names the notice it comes from; `off DATE NAME` is a public holiday
//! and `work DATE NAME` an adjusted working day, where `DATE` is `YYYY-MM-DD` or an
//! inclusive run `FIRST..LAST` of at most 31 days. Dates must lie in the schedule's
//! year or a neighbouring one. Errors name the line at fault.
//!
//! # Counting
//!
//! "The n-th working day after a date" counts working days strictly after it:
//! [`Calendar::add_working_days`]. [`Calendar::working_days_between`] is its exact
//! inverse. "Within N working days of receipt" is [`Calendar::deadline_from_receipt`],
//! the one function to change for a province that counts otherwise. Dates are
//! Beijing dates: turn a timestamp into one with [`china_date`].
//!
//! Counting walks day by day only across the years the calendar has data for (and
//! their neighbours); before and after, where every date is uncovered and follows
//! the Monday–Friday rule, it counts arithmetically, so no input makes it slow.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;

use chrono::{Datelike, FixedOffset, NaiveDate};

/// The embedded schedules, in the project's text format.
const SHIPPED_TEXT: &str = include_str!("../data/holidays.txt");

/// The years a schedule may be given for (four-digit years).
const YEAR_RANGE: RangeInclusive<i32> = 1000..=9999;

/// The longest run `FIRST..LAST` one text line may give, in days. Real holiday runs
/// are at most nine days; the limit catches a mistyped end date before it turns a
/// season into holidays.
const MAX_RUN_DAYS: i64 = 31;

/// Beijing time: UTC+8 all year, no daylight saving, as chrono's `FixedOffset`.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// The calendar date in Beijing (UTC+8, no daylight saving) of a Unix timestamp in
/// milliseconds. Deadlines count in Beijing dates wherever a node runs. Timestamps
/// beyond the dates chrono represents give its first or last date.
pub fn china_date(unix_ms: i64) -> NaiveDate {
    match chrono::DateTime::from_timestamp_millis(unix_ms) {
        // `checked_add_offset`, not `with_timezone`: the last hours of chrono's
        // range have no Beijing date it can represent, and must not panic.
        Some(utc) => utc
            .naive_utc()
            .checked_add_offset(BEIJING)
            .map_or(NaiveDate::MAX, |local| local.date()),
        None if unix_ms < 0 => NaiveDate::MIN,
        None => NaiveDate::MAX,
    }
}

/// What kind of day a date is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DayKind {
    /// An ordinary working day (Monday to Friday) of a covered year.
    Working,
    /// An ordinary Saturday or Sunday of a covered year.
    Weekend,
    /// A public holiday (rest day), with the holiday's name (e.g. `春节`).
    Holiday(String),
    /// An adjusted working day (调休), usually a weekend, with the holiday it
    /// makes up for.
    AdjustedWorking(String),
    /// A date in a year whose schedule is not loaded: unknown.
    Uncovered {
        /// What the Monday–Friday rule would say; only a guess.
        weekday_guess_working: bool,
    },
}

impl DayKind {
    /// Whether this is a working day; `None` when the date is not covered.
    pub fn is_working(&self) -> Option<bool> {
        match self {
            DayKind::Working | DayKind::AdjustedWorking(_) => Some(true),
            DayKind::Weekend | DayKind::Holiday(_) => Some(false),
            DayKind::Uncovered { .. } => None,
        }
    }
}

/// A date whose year's holiday schedule is not loaded.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("{date} is not covered: the working-day calendar of {} is not published or not imported", date.year())]
pub struct NotCovered {
    /// The date asked about.
    pub date: NaiveDate,
}

/// Why a schedule could not be imported. Nothing is imported when any error is
/// returned.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalendarError {
    /// The holiday-cn file is not JSON at all.
    #[error("holiday JSON is malformed: {message}")]
    Json {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// The parser's description, including the position.
        message: String,
    },
    /// A field of the holiday-cn file is missing or wrong.
    #[error("holiday JSON field `{field}`: {problem}")]
    Field {
        /// Path of the field, e.g. `days[3].date`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The file declares a year but lists no days and no notice: the schedule is
    /// not published yet, and the year stays uncovered.
    #[error(
        "the {year} holiday schedule is not published (it lists no days); {year} stays uncovered"
    )]
    NotPublished {
        /// The year declared.
        year: i32,
    },
    /// A line of the project's text format is wrong.
    #[error("calendar text line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// Two schedules disagree on whether a date is worked.
    #[error(
        "{date} is a rest day in one of the {first_year} and {second_year} schedules and a working day in the other"
    )]
    Conflict {
        /// The date in dispute.
        date: NaiveDate,
        /// The year of one schedule listing it.
        first_year: i32,
        /// The year of the other.
        second_year: i32,
    },
}

/// A date reached by counting working days.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkingDate {
    /// The date reached.
    pub date: NaiveDate,
    /// Whether the count crossed dates not covered by the calendar, for which the
    /// Monday–Friday rule was assumed: the date may move once those years' schedules
    /// are imported. True exactly when `uncovered_years` is not empty.
    pub provisional: bool,
    /// The uncovered years crossed, as ascending runs of years.
    pub uncovered_years: Vec<RangeInclusive<i32>>,
}

impl WorkingDate {
    /// For a provisional date, the explanation to show with it.
    pub fn warning(&self) -> Option<String> {
        uncovered_warning(&self.uncovered_years)
    }
}

impl fmt::Display for WorkingDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date)?;
        if self.provisional {
            f.write_str(" (provisional)")?;
        }
        Ok(())
    }
}

/// A number of working days between two dates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkingCount {
    /// The count; negative when counting backwards.
    pub days: i64,
    /// Whether the span contains dates not covered by the calendar, counted by the
    /// Monday–Friday rule. True exactly when `uncovered_years` is not empty.
    pub provisional: bool,
    /// The uncovered years in the span, as ascending runs of years.
    pub uncovered_years: Vec<RangeInclusive<i32>>,
}

impl WorkingCount {
    /// For a provisional count, the explanation to show with it.
    pub fn warning(&self) -> Option<String> {
        uncovered_warning(&self.uncovered_years)
    }
}

/// The warning for counts that crossed `years`, if any.
fn uncovered_warning(years: &[RangeInclusive<i32>]) -> Option<String> {
    let (first, rest) = years.split_first()?;
    let list = std::iter::once(first)
        .chain(rest)
        .map(|run| {
            if run.start() == run.end() {
                run.start().to_string()
            } else {
                format!("{}–{}", run.start(), run.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let single = rest.is_empty() && first.start() == first.end();
    let (calendars, is) = if single {
        ("calendar", "is")
    } else {
        ("calendars", "are")
    };
    Some(format!(
        "provisional: the working-day {calendars} of {list} {is} not published or not imported; \
         Monday to Friday were assumed to be working days there"
    ))
}

/// Ascending runs of years, built in ascending order.
#[derive(Default)]
struct YearRuns(Vec<RangeInclusive<i32>>);

impl YearRuns {
    /// Adds the years `first..=last` (`first` not before any year added so far).
    fn add(&mut self, first: i32, last: i32) {
        if let Some(run) = self.0.last_mut()
            && first <= run.end().saturating_add(1)
        {
            if last > *run.end() {
                *run = *run.start()..=last;
            }
            return;
        }
        self.0.push(first..=last);
    }

    fn working_date(self, date: NaiveDate) -> WorkingDate {
        WorkingDate {
            date,
            provisional: !self.0.is_empty(),
            uncovered_years: self.0,
        }
    }

    fn working_count(self, days: i64) -> WorkingCount {
        WorkingCount {
            days,
            provisional: !self.0.is_empty(),
            uncovered_years: self.0,
        }
    }
}

/// A date a schedule lists.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SpecialDay {
    /// Holiday (true) or adjusted working day (false).
    off: bool,
    /// The holiday's name.
    name: String,
}

/// One year's published schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Schedule {
    /// The notices it comes from.
    papers: Vec<String>,
    /// The dates that differ from the Monday–Friday rule.
    days: BTreeMap<NaiveDate, SpecialDay>,
}

/// Whether a date is worked, and whether that is known or guessed.
#[derive(Clone, Copy)]
enum Status {
    Known(bool),
    Guess(bool),
}

/// The working-day calendar: the loaded yearly schedules.
///
/// `Calendar::default()` covers nothing; [`Calendar::shipped`] covers the years in
/// the embedded data (2021–2026).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Calendar {
    schedules: BTreeMap<i32, Schedule>,
}

impl Calendar {
    /// The schedules shipped with the crate (`data/holidays.txt`). An error means the
    /// embedded file is broken, which the unit tests rule out.
    pub fn shipped() -> Result<Calendar, CalendarError> {
        let mut calendar = Calendar::default();
        calendar.import_text(SHIPPED_TEXT)?;
        Ok(calendar)
    }

    /// Imports one year in the public holiday-cn JSON format (`year`, `papers`,
    /// `days` of `{name, date, isOffDay}`), replacing any schedule already loaded for
    /// that year, and returns the year. A file with no days is refused:
    /// [`CalendarError::NotPublished`] when it lists no papers either (the year is not
    /// published yet), [`CalendarError::Field`] otherwise.
    pub fn import_holiday_cn_json(&mut self, json: &str) -> Result<i32, CalendarError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|err| CalendarError::Json {
                line: err.line(),
                column: err.column(),
                message: err.to_string(),
            })?;
        let field = |field: &str, problem: String| CalendarError::Field {
            field: field.to_owned(),
            problem,
        };
        let root = value
            .as_object()
            .ok_or_else(|| field("(top level)", "must be an object".to_owned()))?;
        let year = match root.get("year") {
            None => return Err(field("year", "missing".to_owned())),
            Some(year) => year
                .as_i64()
                .and_then(|year| i32::try_from(year).ok())
                .filter(|year| YEAR_RANGE.contains(year))
                .ok_or_else(|| field("year", format!("must be a four-digit year, found {year}")))?,
        };
        let papers = root
            .get("papers")
            .ok_or_else(|| field("papers", "missing".to_owned()))?
            .as_array()
            .ok_or_else(|| field("papers", "must be an array of strings".to_owned()))?;
        let mut schedule = Schedule::default();
        for (idx, paper) in papers.iter().enumerate() {
            let paper = paper
                .as_str()
                .ok_or_else(|| field(&format!("papers[{idx}]"), "must be a string".to_owned()))?;
            check_one_line(paper).map_err(|problem| field(&format!("papers[{idx}]"), problem))?;
            schedule.papers.push(paper.to_owned());
        }
        let days = root
            .get("days")
            .ok_or_else(|| field("days", "missing".to_owned()))?
            .as_array()
            .ok_or_else(|| field("days", "must be an array".to_owned()))?;
        if days.is_empty() {
            return Err(if schedule.papers.is_empty() {
                CalendarError::NotPublished { year }
            } else {
                field("days", "is empty although papers are listed".to_owned())
            });
        }
        let mut first_listed: HashMap<NaiveDate, usize> = HashMap::new();
        for (idx, day) in days.iter().enumerate() {
            let path = |name: &str| format!("days[{idx}]{name}");
            let day = day
                .as_object()
                .ok_or_else(|| field(&path(""), "must be an object".to_owned()))?;
            let name = day
                .get("name")
                .and_then(|name| name.as_str())
                .ok_or_else(|| field(&path(".name"), "missing or not a string".to_owned()))?;
            check_one_line(name).map_err(|problem| field(&path(".name"), problem))?;
            let date_text = day
                .get("date")
                .and_then(|date| date.as_str())
                .ok_or_else(|| field(&path(".date"), "missing or not a string".to_owned()))?;
            let date = parse_date(date_text).ok_or_else(|| {
                field(
                    &path(".date"),
                    format!("{date_text:?} is not a date YYYY-MM-DD"),
                )
            })?;
            check_near_year(date, year).map_err(|problem| field(&path(".date"), problem))?;
            let off = day
                .get("isOffDay")
                .and_then(|off| off.as_bool())
                .ok_or_else(|| field(&path(".isOffDay"), "missing or not true/false".to_owned()))?;
            if let Some(first) = first_listed.insert(date, idx) {
                return Err(field(
                    &path(".date"),
                    format!("{date} is already listed by days[{first}]"),
                ));
            }
            schedule.days.insert(
                date,
                SpecialDay {
                    off,
                    name: name.to_owned(),
                },
            );
        }
        self.install(vec![(year, schedule)])?;
        Ok(year)
    }

    /// Imports schedules in the project's text format (see the module
    /// documentation), replacing any already loaded for the same years, and returns
    /// the years in the order given.
    pub fn import_text(&mut self, text: &str) -> Result<Vec<i32>, CalendarError> {
        let mut parsed: Vec<(i32, Schedule)> = Vec::new();
        for (line_idx, raw_line) in text.lines().enumerate() {
            let line_no = line_idx + 1;
            let error = |problem: String| CalendarError::Line {
                line: line_no,
                problem,
            };
            let line = raw_line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim();
            if keyword == "year" {
                if let Some((year, schedule)) = parsed.last()
                    && schedule.days.is_empty()
                {
                    return Err(CalendarError::NotPublished { year: *year });
                }
                let year = rest
                    .parse::<i32>()
                    .ok()
                    .filter(|year| YEAR_RANGE.contains(year) && rest.len() == 4)
                    .ok_or_else(|| {
                        error(format!("`year` needs a four-digit year, found {rest:?}"))
                    })?;
                if parsed.iter().any(|(other, _)| *other == year) {
                    return Err(error(format!("year {year} is given twice")));
                }
                parsed.push((year, Schedule::default()));
                continue;
            }
            let Some((year, schedule)) = parsed.last_mut() else {
                return Err(error(format!("`{keyword}` before any `year` line")));
            };
            match keyword {
                "paper" => {
                    if rest.is_empty() {
                        return Err(error("`paper` needs the notice's address".to_owned()));
                    }
                    schedule.papers.push(rest.to_owned());
                }
                "off" | "work" => {
                    let (span, name) = rest.split_once(' ').ok_or_else(|| {
                        error(format!("expected `{keyword} DATE NAME`, found {line:?}"))
                    })?;
                    let name = name.trim();
                    let (first, last) = parse_span(span).map_err(&error)?;
                    for date in [first, last] {
                        check_near_year(date, *year).map_err(&error)?;
                    }
                    let mut date = first;
                    loop {
                        let special = SpecialDay {
                            off: keyword == "off",
                            name: name.to_owned(),
                        };
                        if schedule.days.insert(date, special).is_some() {
                            return Err(error(format!("{date} is already listed for {year}")));
                        }
                        if date >= last {
                            break;
                        }
                        let Some(next) = date.succ_opt() else { break };
                        date = next;
                    }
                }
                other => {
                    return Err(error(format!(
                        "unknown statement `{other}`; expected year, paper, off or work"
                    )));
                }
            }
        }
        if let Some((year, schedule)) = parsed.last()
            && schedule.days.is_empty()
        {
            return Err(CalendarError::NotPublished { year: *year });
        }
        let years = parsed.iter().map(|(year, _)| *year).collect();
        self.install(parsed)?;
        Ok(years)
    }

    /// Replaces the schedules of the given years, after checking that no two
    /// schedules disagree about a date; on error nothing changes.
    fn install(&mut self, schedules: Vec<(i32, Schedule)>) -> Result<(), CalendarError> {
        let mut candidate = self.schedules.clone();
        candidate.extend(schedules);
        let mut seen: HashMap<NaiveDate, (i32, bool)> = HashMap::new();
        for (year, schedule) in &candidate {
            for (date, special) in &schedule.days {
                match seen.get(date) {
                    Some((other_year, other_off)) if *other_off != special.off => {
                        return Err(CalendarError::Conflict {
                            date: *date,
                            first_year: *other_year,
                            second_year: *year,
                        });
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(*date, (*year, special.off));
                    }
                }
            }
        }
        self.schedules = candidate;
        Ok(())
    }

    /// The schedule of `year` in the project's text format, to save an imported
    /// year; `None` if the year is not covered. Consecutive days of one holiday are
    /// written as one `FIRST..LAST` run.
    pub fn to_text(&self, year: i32) -> Option<String> {
        let schedule = self.schedules.get(&year)?;
        let mut text = format!("year {year}\n");
        for paper in &schedule.papers {
            text.push_str(&format!("paper {paper}\n"));
        }
        let mut runs: Vec<(NaiveDate, NaiveDate, &SpecialDay)> = Vec::new();
        for (date, special) in &schedule.days {
            if let Some((_, last, run_special)) = runs.last_mut()
                && *run_special == special
                && last.succ_opt() == Some(*date)
            {
                *last = *date;
                continue;
            }
            runs.push((*date, *date, special));
        }
        for (first, last, special) in runs {
            let keyword = if special.off { "off" } else { "work" };
            if first == last {
                text.push_str(&format!("{keyword} {first} {}\n", special.name));
            } else {
                text.push_str(&format!("{keyword} {first}..{last} {}\n", special.name));
            }
        }
        Some(text)
    }

    /// The covered years, ascending.
    pub fn covered_years(&self) -> Vec<i32> {
        self.schedules.keys().copied().collect()
    }

    /// The notices the schedule of `year` comes from; `None` if not covered.
    pub fn papers(&self, year: i32) -> Option<&[String]> {
        self.schedules
            .get(&year)
            .map(|schedule| schedule.papers.as_slice())
    }

    /// Whether the calendar knows what kind of day `date` is: its year is covered,
    /// or a loaded schedule lists it.
    pub fn is_covered(&self, date: NaiveDate) -> bool {
        self.schedules.contains_key(&date.year()) || self.special(date).is_some()
    }

    /// The listing of `date` in a loaded schedule: its own year's first, then the
    /// neighbours' (schedules only list dates within a year of their own).
    fn special(&self, date: NaiveDate) -> Option<&SpecialDay> {
        let year = date.year();
        [year, year.saturating_sub(1), year.saturating_add(1)]
            .iter()
            .find_map(|year| self.schedules.get(year)?.days.get(&date))
    }

    /// What kind of day `date` is.
    pub fn day_kind(&self, date: NaiveDate) -> DayKind {
        if let Some(special) = self.special(date) {
            let name = special.name.clone();
            return if special.off {
                DayKind::Holiday(name)
            } else {
                DayKind::AdjustedWorking(name)
            };
        }
        let weekday = is_weekday(date);
        if !self.schedules.contains_key(&date.year()) {
            DayKind::Uncovered {
                weekday_guess_working: weekday,
            }
        } else if weekday {
            DayKind::Working
        } else {
            DayKind::Weekend
        }
    }

    /// Whether `date` is a working day; an error if the calendar does not cover it.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, NotCovered> {
        self.day_kind(date).is_working().ok_or(NotCovered { date })
    }

    /// Like [`Calendar::day_kind`], without allocating, for the counting loops.
    fn status(&self, date: NaiveDate) -> Status {
        if let Some(special) = self.special(date) {
            return Status::Known(!special.off);
        }
        if self.schedules.contains_key(&date.year()) {
            Status::Known(is_weekday(date))
        } else {
            Status::Guess(is_weekday(date))
        }
    }

    /// The dates outside of which every date is uncovered and follows the
    /// Monday–Friday rule: from the year before the first covered year to the year
    /// after the last. `None` for an empty calendar.
    fn data_span(&self) -> Option<(NaiveDate, NaiveDate)> {
        let first = *self.schedules.keys().next()?;
        let last = *self.schedules.keys().next_back()?;
        Some((
            NaiveDate::from_ymd_opt(first - 1, 1, 1)?,
            NaiveDate::from_ymd_opt(last + 1, 12, 31)?,
        ))
    }

    /// The `n`-th working day strictly after `start`. For `n = 0` it is `start`
    /// itself, working day or not, so that
    /// `working_days_between(start, add_working_days(start, n).date) == n` for every
    /// `n`. Uncovered dates crossed count by the Monday–Friday rule and make the
    /// result provisional. A count that would run past the last date chrono
    /// represents stops there, provisional.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> WorkingDate {
        let mut uncovered = YearRuns::default();
        let date = self.walk(start, i64::from(n), &mut uncovered);
        uncovered.working_date(date)
    }

    /// The deadline for a step that must happen "within `n` working days of
    /// receipt" of something received on `received` (a Beijing date): the count
    /// starts from the first working day after the day of receipt, so the deadline is
    /// the `n`-th working day after `received` ([`Calendar::add_working_days`]). The
    /// step is on time when done on or before that date. A province that counts
    /// otherwise changes only this function.
    pub fn deadline_from_receipt(&self, received: NaiveDate, n: u32) -> WorkingDate {
        self.add_working_days(received, n)
    }

    /// The number of working days `d` with `from < d <= to`, negated when `to` is
    /// before `from`. The inverse of [`Calendar::add_working_days`].
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> WorkingCount {
        let mut uncovered = YearRuns::default();
        let days = match from.cmp(&to) {
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Less => self.count(from, to, &mut uncovered),
            std::cmp::Ordering::Greater => -self.count(to, from, &mut uncovered),
        };
        uncovered.working_count(days)
    }

    /// How many working days after `deadline` a step done on `done` was: the working
    /// days in `deadline < d <= done`, or 0 when `done` is not after `deadline`. A
    /// step done on a rest day right after its deadline is late (`done > deadline`)
    /// by 0 working days.
    pub fn working_days_late(&self, deadline: NaiveDate, done: NaiveDate) -> WorkingCount {
        if done <= deadline {
            return YearRuns::default().working_count(0);
        }
        self.working_days_between(deadline, done)
    }

    /// The `n`-th working day after `start`, recording uncovered years crossed.
    fn walk(&self, start: NaiveDate, n: i64, uncovered: &mut YearRuns) -> NaiveDate {
        if n <= 0 {
            return start;
        }
        let mut remaining = n;
        let mut current = start;
        if let Some((span_first, span_last)) = self.data_span() {
            // Before the data span: arithmetic.
            if let Some(before) = span_first.pred_opt()
                && current < before
            {
                let available = weekdays_in(current, before);
                if available >= remaining {
                    return nth_weekday_after_recorded(current, remaining, uncovered);
                }
                remaining -= available;
                uncovered.add(year_after(current), before.year());
                current = before;
            }
            // Inside the data span: day by day.
            while current < span_last {
                let Some(date) = current.succ_opt() else {
                    break;
                };
                current = date;
                let working = match self.status(date) {
                    Status::Known(working) => working,
                    Status::Guess(working) => {
                        uncovered.add(date.year(), date.year());
                        working
                    }
                };
                if working {
                    remaining -= 1;
                    if remaining == 0 {
                        return date;
                    }
                }
            }
        }
        // After the data span (or with no data at all): arithmetic.
        nth_weekday_after_recorded(current, remaining, uncovered)
    }

    /// The working days in `from < d <= to` (`from < to`), recording uncovered years.
    fn count(&self, from: NaiveDate, to: NaiveDate, uncovered: &mut YearRuns) -> i64 {
        let mut total = 0;
        let mut current = from;
        if let Some((span_first, span_last)) = self.data_span() {
            if let Some(before) = span_first.pred_opt()
                && current < before
            {
                let end = to.min(before);
                total += weekdays_in(current, end);
                uncovered.add(year_after(current), end.year());
                current = end;
            }
            while current < to && current < span_last {
                let Some(date) = current.succ_opt() else {
                    break;
                };
                current = date;
                let working = match self.status(date) {
                    Status::Known(working) => working,
                    Status::Guess(working) => {
                        uncovered.add(date.year(), date.year());
                        working
                    }
                };
                total += i64::from(working);
            }
        }
        if current < to {
            total += weekdays_in(current, to);
            uncovered.add(year_after(current), to.year());
        }
        total
    }
}

/// Checks a string stored on one line of the text format.
fn check_one_line(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("is empty".to_owned());
    }
    if text.trim() != text || text.contains(['\n', '\r']) {
        return Err(format!(
            "{text:?} has surrounding whitespace or a line break"
        ));
    }
    Ok(())
}

/// Parses `YYYY-MM-DD` exactly (zero-padded, nothing else).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    (text.len() == 10 && date.format("%Y-%m-%d").to_string() == text).then_some(date)
}

/// Parses `DATE` or `FIRST..LAST` of the text format.
fn parse_span(span: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let parse =
        |text: &str| parse_date(text).ok_or_else(|| format!("{text:?} is not a date YYYY-MM-DD"));
    let Some((first, last)) = span.split_once("..") else {
        let date = parse(span)?;
        return Ok((date, date));
    };
    let (first, last) = (parse(first)?, parse(last)?);
    let days = (last - first).num_days();
    if !(1..MAX_RUN_DAYS).contains(&days) {
        return Err(format!(
            "the run {first}..{last} must go forward and last at most {MAX_RUN_DAYS} days"
        ));
    }
    Ok((first, last))
}

/// Checks that a schedule for `year` may list `date`.
fn check_near_year(date: NaiveDate, year: i32) -> Result<(), String> {
    if (date.year() - year).abs() > 1 {
        return Err(format!("{date} is too far from {year} for its schedule"));
    }
    Ok(())
}

/// Monday to Friday.
fn is_weekday(date: NaiveDate) -> bool {
    date.weekday().number_from_monday() <= 5
}

/// The year of the day after `date` (of `date` itself at the end of time).
fn year_after(date: NaiveDate) -> i32 {
    date.succ_opt().unwrap_or(date).year()
}

/// Day index with 0001-01-01, a Monday, as 0; so index mod 7 is 0 on Mondays.
fn day_index(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - 1
}

/// The number of Monday–Friday days with index below `index`, counted from index 0
/// (negative for negative indices); differences of it count weekdays in a range.
fn weekdays_before(index: i64) -> i64 {
    5 * index.div_euclid(7) + index.rem_euclid(7).min(5)
}

/// The number of Monday–Friday days `d` with `from < d <= to`.
fn weekdays_in(from: NaiveDate, to: NaiveDate) -> i64 {
    weekdays_before(day_index(to) + 1) - weekdays_before(day_index(from) + 1)
}

/// The `n`-th (`n >= 1`) Monday–Friday day strictly after `start`, if chrono can
/// represent it.
fn nth_weekday_after(start: NaiveDate, n: i64) -> Option<NaiveDate> {
    // The target is the weekday with exactly `before` weekdays below its index.
    let before = weekdays_before(day_index(start) + 1).checked_add(n - 1)?;
    let index = before
        .div_euclid(5)
        .checked_mul(7)?
        .checked_add(before.rem_euclid(5))?;
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(index.checked_add(1)?).ok()?)
}

/// [`nth_weekday_after`] over uncovered dates, recording their years; saturates at
/// the last representable date.
fn nth_weekday_after_recorded(start: NaiveDate, n: i64, uncovered: &mut YearRuns) -> NaiveDate {
    let date = nth_weekday_after(start, n).unwrap_or(NaiveDate::MAX);
    uncovered.add(year_after(start), date.year());
    date
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use proptest::prelude::*;

    fn date(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    fn shipped() -> Calendar {
        Calendar::shipped().unwrap()
    }

    /// Deadlines for `(received, n)` pairs, one line each, with the weekday and kind
    /// of the date reached.
    fn check_deadlines(calendar: &Calendar, cases: &[(&str, u32)], expected: Expect) {
        let mut out = String::new();
        for (received, n) in cases {
            let received = date(received);
            let deadline = calendar.deadline_from_receipt(received, *n);
            let kind = calendar.day_kind(deadline.date);
            out.push_str(&format!(
                "{received} {} +{n} -> {} {} {kind:?}\n",
                received.weekday(),
                deadline,
                deadline.date.weekday(),
            ));
            // Every example also checks the inversion.
            assert_eq!(
                calendar.working_days_between(received, deadline.date).days,
                i64::from(*n)
            );
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn shipped_calendar_covers_2021_to_2026() {
        let calendar = shipped();
        assert_eq!(
            calendar.covered_years(),
            [2021, 2022, 2023, 2024, 2025, 2026]
        );
        assert!(calendar.is_covered(date("2021-01-01")));
        assert!(calendar.is_covered(date("2026-12-31")));
        assert!(!calendar.is_covered(date("2027-01-01")));
        assert!(!calendar.is_covered(date("2020-12-31")));
        assert_eq!(
            calendar.papers(2024).unwrap(),
            ["https://www.gov.cn/zhengce/zhengceku/202310/content_6911528.htm"]
        );
    }

    #[test]
    fn shipped_text_is_what_to_text_writes() {
        let calendar = shipped();
        let header_end = SHIPPED_TEXT.find("\n\nyear ").unwrap() + 1;
        let mut rebuilt = SHIPPED_TEXT[..header_end].to_owned();
        for year in calendar.covered_years() {
            rebuilt.push('\n');
            rebuilt.push_str(&calendar.to_text(year).unwrap());
        }
        assert_eq!(SHIPPED_TEXT.trim_end(), rebuilt.trim_end());
        assert_eq!(calendar.to_text(2027), None);
    }

    #[test]
    fn day_kinds() {
        let calendar = shipped();
        let kind = |text: &str| format!("{text} {:?}", calendar.day_kind(date(text)));
        let days = [
            "2024-02-03",
            "2024-02-04",
            "2024-02-09",
            "2024-02-10",
            "2024-02-12",
            "2024-02-18",
            "2024-02-19",
            "2024-02-24",
            "2022-12-31",
            "2025-10-11",
            "2027-01-01",
            "2027-01-02",
            "2020-12-31",
        ];
        let out = days.map(kind).join("\n");
        expect![[r#"
            2024-02-03 Weekend
            2024-02-04 AdjustedWorking("春节")
            2024-02-09 Working
            2024-02-10 Holiday("春节")
            2024-02-12 Holiday("春节")
            2024-02-18 AdjustedWorking("春节")
            2024-02-19 Working
            2024-02-24 Weekend
            2022-12-31 Holiday("元旦")
            2025-10-11 AdjustedWorking("国庆节、中秋节")
            2027-01-01 Uncovered { weekday_guess_working: true }
            2027-01-02 Uncovered { weekday_guess_working: false }
            2020-12-31 Uncovered { weekday_guess_working: true }"#]]
        .assert_eq(&out);
        assert_eq!(calendar.is_working_day(date("2024-02-04")), Ok(true));
        assert_eq!(calendar.is_working_day(date("2024-02-12")), Ok(false));
        let err = calendar.is_working_day(date("2027-03-01")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2027-03-01 is not covered: the working-day calendar of 2027 is not published or not imported"
        );
    }

    #[test]
    fn deadlines_across_the_2024_spring_festival() {
        // 2024-02-10..17 off; Sunday 02-04 and Sunday 02-18 worked; Friday 02-09
        // (New Year's Eve) is an ordinary working day in the notice.
        check_deadlines(
            &shipped(),
            &[
                ("2024-02-02", 1),
                ("2024-02-02", 3),
                ("2024-02-03", 1),
                ("2024-02-07", 5),
                ("2024-02-08", 0),
                ("2024-02-08", 1),
                ("2024-02-08", 2),
                ("2024-02-08", 3),
                ("2024-02-09", 3),
                ("2024-02-12", 0),
                ("2024-02-12", 2),
                ("2024-02-17", 1),
                ("2024-02-18", 5),
            ],
            expect![[r#"
                2024-02-02 Fri +1 -> 2024-02-04 Sun AdjustedWorking("春节")
                2024-02-02 Fri +3 -> 2024-02-06 Tue Working
                2024-02-03 Sat +1 -> 2024-02-04 Sun AdjustedWorking("春节")
                2024-02-07 Wed +5 -> 2024-02-20 Tue Working
                2024-02-08 Thu +0 -> 2024-02-08 Thu Working
                2024-02-08 Thu +1 -> 2024-02-09 Fri Working
                2024-02-08 Thu +2 -> 2024-02-18 Sun AdjustedWorking("春节")
                2024-02-08 Thu +3 -> 2024-02-19 Mon Working
                2024-02-09 Fri +3 -> 2024-02-20 Tue Working
                2024-02-12 Mon +0 -> 2024-02-12 Mon Holiday("春节")
                2024-02-12 Mon +2 -> 2024-02-19 Mon Working
                2024-02-17 Sat +1 -> 2024-02-18 Sun AdjustedWorking("春节")
                2024-02-18 Sun +5 -> 2024-02-23 Fri Working
            "#]],
        );
    }

    #[test]
    fn deadlines_across_the_2025_national_day() {
        // 2025-10-01..08 off; Sunday 09-28 and Saturday 10-11 worked.
        check_deadlines(
            &shipped(),
            &[
                ("2025-09-26", 1),
                ("2025-09-26", 3),
                ("2025-09-29", 5),
                ("2025-09-30", 1),
                ("2025-09-30", 3),
                ("2025-10-01", 2),
                ("2025-10-10", 1),
                ("2025-10-11", 1),
            ],
            expect![[r#"
                2025-09-26 Fri +1 -> 2025-09-28 Sun AdjustedWorking("国庆节、中秋节")
                2025-09-26 Fri +3 -> 2025-09-30 Tue Working
                2025-09-29 Mon +5 -> 2025-10-13 Mon Working
                2025-09-30 Tue +1 -> 2025-10-09 Thu Working
                2025-09-30 Tue +3 -> 2025-10-11 Sat AdjustedWorking("国庆节、中秋节")
                2025-10-01 Wed +2 -> 2025-10-10 Fri Working
                2025-10-10 Fri +1 -> 2025-10-11 Sat AdjustedWorking("国庆节、中秋节")
                2025-10-11 Sat +1 -> 2025-10-13 Mon Working
            "#]],
        );
    }

    #[test]
    fn counts_and_lateness() {
        let calendar = shipped();
        let between = |a: &str, b: &str| calendar.working_days_between(date(a), date(b)).days;
        assert_eq!(between("2025-09-30", "2025-10-11"), 3);
        assert_eq!(between("2025-10-11", "2025-09-30"), -3);
        assert_eq!(between("2024-02-09", "2024-02-17"), 0);
        assert_eq!(between("2024-02-09", "2024-02-09"), 0);
        // All of 2024: 366 days, 262 weekdays, 11 weekday holidays (01-01, 02-12..16,
        // 04-04..05, 05-01..03, 06-10, 09-16..17, 10-01..04, 10-07 => 1+5+2+3+1+2+5),
        // plus 8 adjusted working days (02-04, 02-18, 04-07, 04-28, 05-11, 09-14,
        // 09-29, 10-12) → 262 - 19 + 8 = 251.
        let year = calendar.working_days_between(date("2023-12-31"), date("2024-12-31"));
        assert_eq!((year.days, year.provisional), (251, false));
        let late = |deadline: &str, done: &str| {
            calendar.working_days_late(date(deadline), date(done)).days
        };
        assert_eq!(late("2024-02-09", "2024-02-08"), 0);
        assert_eq!(late("2024-02-09", "2024-02-09"), 0);
        assert_eq!(late("2024-02-09", "2024-02-17"), 0);
        assert_eq!(late("2024-02-09", "2024-02-19"), 2);
    }

    #[test]
    fn uncovered_dates_make_results_provisional() {
        let calendar = shipped();
        // 2026-12-31 is covered; 2027 is not published.
        let within = calendar.deadline_from_receipt(date("2026-12-30"), 1);
        assert_eq!(
            (within.date, within.provisional, within.warning()),
            (date("2026-12-31"), false, None)
        );
        let across = calendar.deadline_from_receipt(date("2026-12-30"), 3);
        assert_eq!(across.date, date("2027-01-04"));
        assert!(across.provisional);
        assert_eq!(across.uncovered_years, [2027..=2027]);
        assert_eq!(across.to_string(), "2027-01-04 (provisional)");
        expect![[r#"provisional: the working-day calendar of 2027 is not published or not imported; Monday to Friday were assumed to be working days there"#]]
            .assert_eq(&across.warning().unwrap());
        let count = calendar.working_days_between(date("2026-12-30"), date("2027-01-04"));
        assert_eq!((count.days, count.provisional), (3, true));
        // Before the first covered year too: 2020-12-31 is guessed, then 2021-01-01..03
        // are New Year holidays.
        let early = calendar.add_working_days(date("2020-12-30"), 2);
        assert_eq!(
            (early.date, early.uncovered_years.clone()),
            (date("2021-01-04"), vec![2020..=2020])
        );
        // Far ahead, years run together.
        let far = calendar.add_working_days(date("2026-06-01"), 2000);
        assert_eq!(far.uncovered_years, [2027..=2034]);
        expect![[r#"provisional: the working-day calendars of 2027–2034 are not published or not imported; Monday to Friday were assumed to be working days there"#]]
            .assert_eq(&far.warning().unwrap());
        assert_eq!(
            calendar
                .working_days_between(date("2026-06-01"), far.date)
                .days,
            2000
        );
    }

    /// A made-up 2027 schedule in holiday-cn format, for the import tests.
    const MADE_UP_2027: &str = r#"{
        "$schema": "https://raw.githubusercontent.com/NateScarlet/holiday-cn/master/schema.json",
        "$id": "https://raw.githubusercontent.com/NateScarlet/holiday-cn/master/2027.json",
        "year": 2027,
        "papers": ["https://example.invalid/notice-2027"],
        "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
            {"name": "春节", "date": "2027-02-06", "isOffDay": true},
            {"name": "春节", "date": "2027-02-07", "isOffDay": true},
            {"name": "春节", "date": "2027-02-08", "isOffDay": true},
            {"name": "春节", "date": "2027-02-20", "isOffDay": false}
        ]
    }"#;

    #[test]
    fn importing_2027_covers_it() {
        let mut calendar = shipped();
        // The real, still empty holiday-cn file for 2027.
        let unpublished = r#"{
            "$schema": "https://raw.githubusercontent.com/NateScarlet/holiday-cn/master/schema.json",
            "$id": "https://raw.githubusercontent.com/NateScarlet/holiday-cn/master/2027.json",
            "year": 2027,
            "papers": [],
            "days": []
        }"#;
        assert_eq!(
            calendar.import_holiday_cn_json(unpublished),
            Err(CalendarError::NotPublished { year: 2027 })
        );
        assert_eq!(calendar, shipped());
        assert_eq!(calendar.import_holiday_cn_json(MADE_UP_2027), Ok(2027));
        assert!(calendar.is_covered(date("2027-03-01")));
        assert_eq!(
            calendar.day_kind(date("2027-01-01")),
            DayKind::Holiday("元旦".into())
        );
        assert_eq!(calendar.day_kind(date("2027-01-04")), DayKind::Working);
        assert_eq!(
            calendar.day_kind(date("2027-02-20")),
            DayKind::AdjustedWorking("春节".into())
        );
        // 2026-12-31 (1), 2027-01-01 holiday, 2027-01-04 (2), 2027-01-05 (3).
        let deadline = calendar.deadline_from_receipt(date("2026-12-30"), 3);
        assert_eq!(
            (deadline.date, deadline.provisional),
            (date("2027-01-05"), false)
        );
        // Saved in the project's format, it loads the same elsewhere.
        let text = calendar.to_text(2027).unwrap();
        expect![[r#"
            year 2027
            paper https://example.invalid/notice-2027
            off 2027-01-01 元旦
            off 2027-02-06..2027-02-08 春节
            work 2027-02-20 春节
        "#]]
        .assert_eq(&text);
        let mut other = shipped();
        assert_eq!(other.import_text(&text), Ok(vec![2027]));
        assert_eq!(other, calendar);
        // Re-importing a year replaces its schedule.
        let replaced = MADE_UP_2027.replace(
            r#""2027-01-01", "isOffDay": true"#,
            r#""2027-01-02", "isOffDay": true"#,
        );
        assert_eq!(calendar.import_holiday_cn_json(&replaced), Ok(2027));
        assert_eq!(calendar.day_kind(date("2027-01-01")), DayKind::Working);
    }

    #[test]
    fn malformed_json_is_rejected_naming_the_field() {
        let check = |json: &str, expected: &str| {
            let mut calendar = shipped();
            let err = calendar.import_holiday_cn_json(json).unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert_eq!(calendar, shipped(), "nothing is imported on error");
        };
        let with_days = |days: &str| {
            format!(r#"{{"year": 2027, "papers": ["https://example.invalid"], "days": [{days}]}}"#)
        };
        let ok_day = r#"{"name": "元旦", "date": "2027-01-01", "isOffDay": true}"#;
        check(
            "{",
            "holiday JSON is malformed: EOF while parsing an object at line 1 column 1",
        );
        check("[]", "holiday JSON field `(top level)`: must be an object");
        check(
            r#"{"papers": [], "days": []}"#,
            "holiday JSON field `year`: missing",
        );
        check(
            r#"{"year": "2027", "papers": [], "days": []}"#,
            "holiday JSON field `year`: must be a four-digit year, found \"2027\"",
        );
        check(
            r#"{"year": 27, "papers": [], "days": []}"#,
            "holiday JSON field `year`: must be a four-digit year, found 27",
        );
        check(
            r#"{"year": 2027, "days": []}"#,
            "holiday JSON field `papers`: missing",
        );
        check(
            r#"{"year": 2027, "papers": [1], "days": []}"#,
            "holiday JSON field `papers[0]`: must be a string",
        );
        check(
            r#"{"year": 2027, "papers": ["x"]}"#,
            "holiday JSON field `days`: missing",
        );
        check(
            r#"{"year": 2027, "papers": ["x"], "days": []}"#,
            "holiday JSON field `days`: is empty although papers are listed",
        );
        check(
            &with_days(r#"{"name": "元旦", "date": "2027-02-30", "isOffDay": true}"#),
            "holiday JSON field `days[0].date`: \"2027-02-30\" is not a date YYYY-MM-DD",
        );
        check(
            &with_days(r#"{"name": "元旦", "date": "2027-1-1", "isOffDay": true}"#),
            "holiday JSON field `days[0].date`: \"2027-1-1\" is not a date YYYY-MM-DD",
        );
        check(
            &with_days(&format!(
                r#"{ok_day}, {{"name": "元旦", "date": "2027-01-02", "isOffDay": "yes"}}"#
            )),
            "holiday JSON field `days[1].isOffDay`: missing or not true/false",
        );
        check(
            &with_days(&format!(
                r#"{ok_day}, {{"date": "2027-01-02", "isOffDay": true}}"#
            )),
            "holiday JSON field `days[1].name`: missing or not a string",
        );
        check(
            &with_days(r#"{"name": " ", "date": "2027-01-02", "isOffDay": true}"#),
            "holiday JSON field `days[0].name`: is empty",
        );
        check(
            &with_days(r#"{"name": "元旦", "isOffDay": true}"#),
            "holiday JSON field `days[0].date`: missing or not a string",
        );
        check(
            &with_days(&format!("{ok_day}, {ok_day}")),
            "holiday JSON field `days[1].date`: 2027-01-01 is already listed by days[0]",
        );
        check(
            &with_days(r#"{"name": "元旦", "date": "2029-01-01", "isOffDay": true}"#),
            "holiday JSON field `days[0].date`: 2029-01-01 is too far from 2027 for its schedule",
        );
        check(
            &with_days("7"),
            "holiday JSON field `days[0]`: must be an object",
        );
        // A schedule may list a neighbouring year's date, but not contradict that
        // year's own schedule: 2026-01-01 is a holiday in the 2026 schedule.
        let mut calendar = shipped();
        let conflict = r#"{"year": 2025, "papers": [], "days": [{"name": "x", "date": "2026-01-01", "isOffDay": false}]}"#;
        assert_eq!(
            calendar
                .import_holiday_cn_json(conflict)
                .unwrap_err()
                .to_string(),
            "2026-01-01 is a rest day in one of the 2025 and 2026 schedules and a working day in the other"
        );
        assert_eq!(calendar, shipped());
    }

    #[test]
    fn malformed_text_is_rejected_naming_the_line() {
        let check = |text: &str, expected: &str| {
            let mut calendar = shipped();
            let err = calendar.import_text(text).unwrap_err();
            assert_eq!(err.to_string(), expected);
            assert_eq!(calendar, shipped(), "nothing is imported on error");
        };
        check(
            "off 2027-01-01 元旦",
            "calendar text line 1: `off` before any `year` line",
        );
        check(
            "# c\nyear 27",
            "calendar text line 2: `year` needs a four-digit year, found \"27\"",
        );
        check(
            "year 2027",
            "the 2027 holiday schedule is not published (it lists no days); 2027 stays uncovered",
        );
        check(
            "year 2027\nyear 2028\noff 2028-01-01 元旦",
            "the 2027 holiday schedule is not published (it lists no days); 2027 stays uncovered",
        );
        check(
            "year 2027\noff 2027-01-01 元旦\nyear 2027",
            "calendar text line 3: year 2027 is given twice",
        );
        check(
            "year 2027\nholiday 2027-01-01 元旦",
            "calendar text line 2: unknown statement `holiday`; expected year, paper, off or work",
        );
        check(
            "year 2027\noff 2027-01-01",
            "calendar text line 2: expected `off DATE NAME`, found \"off 2027-01-01\"",
        );
        check(
            "year 2027\noff 2027-13-01 元旦",
            "calendar text line 2: \"2027-13-01\" is not a date YYYY-MM-DD",
        );
        check(
            "year 2027\noff 2027-01-03..2027-01-01 元旦",
            "calendar text line 2: the run 2027-01-03..2027-01-01 must go forward and last at most 31 days",
        );
        check(
            "year 2027\noff 2027-01-01..2027-03-01 元旦",
            "calendar text line 2: the run 2027-01-01..2027-03-01 must go forward and last at most 31 days",
        );
        check(
            "year 2027\noff 2027-01-01..2027-01-03 元旦\nwork 2027-01-03 元旦",
            "calendar text line 3: 2027-01-03 is already listed for 2027",
        );
        check(
            "year 2027\nwork 2030-01-01 元旦",
            "calendar text line 2: 2030-01-01 is too far from 2027 for its schedule",
        );
        check(
            "year 2027\npaper\noff 2027-01-01 元旦",
            "calendar text line 2: `paper` needs the notice's address",
        );
    }

    #[test]
    fn china_dates() {
        let ms = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(
            china_date(ms("2024-02-09T15:59:59.999Z")),
            date("2024-02-09")
        );
        assert_eq!(china_date(ms("2024-02-09T16:00:00Z")), date("2024-02-10"));
        assert_eq!(
            china_date(ms("2024-02-10T00:00:00+08:00")),
            date("2024-02-10")
        );
        assert_eq!(china_date(0), date("1970-01-01"));
        assert_eq!(china_date(-8 * 3_600_000 - 1), date("1969-12-31"));
        assert_eq!(china_date(i64::MAX), NaiveDate::MAX);
        assert_eq!(china_date(i64::MIN), NaiveDate::MIN);
    }

    #[test]
    fn extremes_do_not_panic() {
        let calendar = shipped();
        let end = calendar.add_working_days(NaiveDate::MAX, 1);
        assert_eq!((end.date, end.provisional), (NaiveDate::MAX, true));
        // u32::MAX working days are more than chrono's dates hold: saturates.
        let beyond = calendar.add_working_days(NaiveDate::MIN, u32::MAX);
        assert_eq!((beyond.date, beyond.provisional), (NaiveDate::MAX, true));
        // 100 million working days from the first date cross the shipped years.
        let far = calendar.add_working_days(NaiveDate::MIN, 100_000_000);
        assert!(far.provisional && far.date.year() > 2026);
        assert_eq!(far.uncovered_years.len(), 2, "{:?}", far.uncovered_years);
        assert_eq!(
            calendar.working_days_between(NaiveDate::MIN, far.date).days,
            100_000_000
        );
        let all = calendar.working_days_between(NaiveDate::MIN, NaiveDate::MAX);
        assert!(all.days > 0 && all.provisional);
        let empty = Calendar::default();
        let guess = empty.add_working_days(date("2024-02-08"), 3);
        assert_eq!(
            (guess.date, guess.uncovered_years),
            (date("2024-02-13"), vec![2024..=2024])
        );
    }

    /// Working, or assumed working for an uncovered date.
    fn assumed_working(kind: &DayKind) -> bool {
        kind.is_working().unwrap_or(matches!(
            kind,
            DayKind::Uncovered {
                weekday_guess_working: true
            }
        ))
    }

    /// Dates from 2019 to 2029: around, inside and after the shipped years.
    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (0i64..4018).prop_map(|offset| date("2019-01-01") + chrono::Duration::days(offset))
    }

    proptest! {
        #[test]
        fn add_lands_on_a_working_day(start in any_date(), n in 1u32..600) {
            let calendar = shipped();
            let reached = calendar.add_working_days(start, n);
            prop_assert!(reached.date > start);
            let kind = calendar.day_kind(reached.date);
            prop_assert!(assumed_working(&kind), "{} is {:?}", reached.date, kind);
            prop_assert_eq!(reached.provisional, !reached.uncovered_years.is_empty());
        }

        #[test]
        fn between_inverts_add(start in any_date(), n in 0u32..1500) {
            let calendar = shipped();
            let reached = calendar.add_working_days(start, n);
            let count = calendar.working_days_between(start, reached.date);
            prop_assert_eq!(count.days, i64::from(n));
            prop_assert_eq!(count.provisional, reached.provisional);
            prop_assert_eq!(&count.uncovered_years, &reached.uncovered_years);
            let back = calendar.working_days_between(reached.date, start);
            prop_assert_eq!(back.days, -i64::from(n));
        }

        #[test]
        fn counting_matches_a_day_by_day_walk(from in any_date(), to in any_date()) {
            let calendar = shipped();
            let count = calendar.working_days_between(from, to);
            let (low, high, sign) = if from <= to { (from, to, 1) } else { (to, from, -1) };
            let mut expected = 0;
            let mut provisional = false;
            let mut day = low;
            while day < high {
                day = day.succ_opt().unwrap();
                let kind = calendar.day_kind(day);
                provisional |= matches!(kind, DayKind::Uncovered { .. });
                expected += i64::from(assumed_working(&kind));
            }
            prop_assert_eq!(count.days, sign * expected);
            prop_assert_eq!(count.provisional, provisional);
        }

        #[test]
        fn weekday_arithmetic_matches_chrono(
            days_from_ce in -90_000_000i32..90_000_000,
            n in 1i64..100_000,
        ) {
            let start = NaiveDate::from_num_days_from_ce_opt(days_from_ce).unwrap();
            let reached = nth_weekday_after(start, n).unwrap();
            prop_assert!(is_weekday(reached));
            prop_assert_eq!(weekdays_in(start, reached), n);
            let before = reached.pred_opt().unwrap();
            prop_assert_eq!(weekdays_in(start, before), n - 1);
            let monday = start.weekday() == chrono::Weekday::Mon;
            prop_assert_eq!(day_index(start).rem_euclid(7) == 0, monday);
        }

        #[test]
        fn imports_never_panic(text in "\\PC{0,200}") {
            let mut calendar = Calendar::default();
            let _ = calendar.import_text(&text);
            let _ = calendar.import_holiday_cn_json(&text);
        }
    }
}
