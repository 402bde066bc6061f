//! The registry feeds a county compares its cases with: what the CSV an office
//! exports from its registry looks like, and the compact form a signed feed
//! carries on the wire and in the store.
//!
//! Three feeds, each a full snapshot of the county's registry at the time it is
//! published (`docs/cli.md` documents the columns):
//!
//! - certificates (county DPF): `certificate_number,holder_id,category,level,status`
//! - dibao (county civil affairs): `holder_id,status,since`
//! - deaths (county civil affairs): `holder_id,date_of_death`
//!
//! Parsing names the line and column at fault; decoding is total (any bytes give
//! a feed or an error, never a panic).
//!
//! # Compact form (version 1)
//!
//! | field   | size | notes                                       |
//! |---------|------|---------------------------------------------|
//! | magic   | 4    | `TBFD`                                      |
//! | version | 1    | `1`                                         |
//! | kind    | 1    | [`DatasetKind::wire`]                       |
//! | count   | 4    | u32 big-endian, rows that follow            |
//! | rows    | …    | per kind, sorted by holder (then number)    |
//!
//! A certificate row is the number (`u8` length, 20-24 ASCII bytes: holder,
//! category, level and any reissue suffix) and a status byte (1 valid,
//! 2 revoked). A dibao row is the holder (18 ASCII bytes), a status byte (1 on
//! the roster, 2 left it) and the date it took effect; a death row is the holder
//! and the date of death. Dates are `i32` days from 0001-01-01 (CE day 1).
//! Hand-written like the other signed encodings, so that no dependency can
//! change the bytes a county signed.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::dataset::DatasetKind;
use crate::ids::{CertificateNumber, DisabilityCategory, DisabilityLevel, ResidentId};

const MAGIC: &[u8; 4] = b"TBFD";
const VERSION: u8 = 1;
/// Most rows in one feed (a county's registry).
pub const MAX_ROWS: usize = 2_000_000;

/// Whether a certificate is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// 有效
    Valid,
    /// 注销 (revoked, cancelled or expired)
    Revoked,
}

/// One row of the certificate registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// The certificate number (holder, category and level are read from it).
    pub number: CertificateNumber,
    /// In force or not.
    pub status: CertificateStatus,
}

/// Whether a person is on the dibao roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DibaoStatus {
    /// 在保: on the roster.
    On,
    /// 退保: left it.
    Off,
}

/// One row of the dibao roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DibaoRow {
    /// The person.
    pub holder: ResidentId,
    /// On the roster or not.
    pub status: DibaoStatus,
    /// Since when.
    pub since: NaiveDate,
}

/// One death registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathRow {
    /// The person.
    pub holder: ResidentId,
    /// The date of death.
    pub died: NaiveDate,
}

/// A registry snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The certificate registry, sorted by holder then number.
    Certificates(Vec<CertificateRow>),
    /// The dibao roster, sorted by holder.
    Dibao(Vec<DibaoRow>),
    /// Death registrations, sorted by holder.
    Deaths(Vec<DeathRow>),
}

/// Why a CSV feed was refused: the line (1 is the header) and column at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct FeedError {
    /// 1-based line; 1 is the header.
    pub line: u64,
    /// The column's name.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

/// Why compact feed bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed bytes: {field} at byte {offset}: {message}")]
pub struct FeedDecodeError {
    /// The field.
    pub field: &'static str,
    /// Its offset.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Feed {
    /// The columns of `kind`'s CSV, in order. `None` for a kind that is not a
    /// registry feed.
    pub fn columns(kind: DatasetKind) -> Option<&'static [&'static str]> {
        match kind {
            DatasetKind::Certificates => Some(&[
                "certificate_number",
                "holder_id",
                "category",
                "level",
                "status",
            ]),
            DatasetKind::Dibao => Some(&["holder_id", "status", "since"]),
            DatasetKind::Deaths => Some(&["holder_id", "date_of_death"]),
            DatasetKind::Calendar
            | DatasetKind::Policy
            | DatasetKind::Payroll
            | DatasetKind::PayrollSummary => None,
        }
    }

    /// The kind of this feed.
    pub fn kind(&self) -> DatasetKind {
        match self {
            Feed::Certificates(_) => DatasetKind::Certificates,
            Feed::Dibao(_) => DatasetKind::Dibao,
            Feed::Deaths(_) => DatasetKind::Deaths,
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Feed::Certificates(rows) => rows.len(),
            Feed::Dibao(rows) => rows.len(),
            Feed::Deaths(rows) => rows.len(),
        }
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses a registry export. The header must name exactly the kind's
    /// columns; every ID number is checked (check character, birth date not
    /// after `today`); a person or certificate listed twice is refused with
    /// both lines.
    pub fn parse_csv(kind: DatasetKind, text: &str, today: NaiveDate) -> Result<Feed, FeedError> {
        let (Some(columns), Some(fk)) = (Feed::columns(kind), FeedKind::of(kind)) else {
            return Err(FeedError {
                line: 1,
                column: String::new(),
                message: format!("{kind} is not a registry feed"),
            });
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes());
        let header = reader.headers().map_err(|e| FeedError {
            line: 1,
            column: String::new(),
            message: e.to_string(),
        })?;
        let found: Vec<&str> = header.iter().collect();
        if found != columns {
            return Err(FeedError {
                line: 1,
                column: String::new(),
                message: format!(
                    "the header must be {}, found {}",
                    columns.join(","),
                    found.join(",")
                ),
            });
        }
        let mut certificates = Vec::new();
        let mut dibao = Vec::new();
        let mut deaths = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| FeedError {
                line: e.position().map_or(0, |p| p.line()),
                column: String::new(),
                message: e.to_string(),
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let field = |idx: usize| record.get(idx).unwrap_or_default();
            let fail = |idx: usize, message: String| FeedError {
                line,
                column: columns[idx].to_string(),
                message,
            };
            let holder = |idx: usize| {
                ResidentId::parse_on(field(idx), today).map_err(|e| fail(idx, e.to_string()))
            };
            let date = |idx: usize| {
                NaiveDate::parse_from_str(field(idx), "%Y-%m-%d").map_err(|e| {
                    fail(
                        idx,
                        format!("{:?} is not a YYYY-MM-DD date: {e}", field(idx)),
                    )
                })
            };
            match fk {
                FeedKind::Certificates => {
                    let number = CertificateNumber::parse_on(field(0), today)
                        .map_err(|e| fail(0, e.to_string()))?;
                    let holder = holder(1)?;
                    number
                        .check_holder(&holder)
                        .map_err(|e| fail(1, e.to_string()))?;
                    let category = parse_category(field(2))
                        .ok_or_else(|| fail(2, format!("unknown category {:?}", field(2))))?;
                    if category != number.category() {
                        return Err(fail(
                            2,
                            format!(
                                "category {} differs from the certificate number's {}",
                                category.zh(),
                                number.category().zh()
                            ),
                        ));
                    }
                    let level = parse_level(field(3))
                        .ok_or_else(|| fail(3, format!("unknown level {:?}", field(3))))?;
                    if level != number.level() {
                        return Err(fail(
                            3,
                            format!(
                                "level {} differs from the certificate number's {}",
                                level.zh(),
                                number.level().zh()
                            ),
                        ));
                    }
                    let status = match field(4) {
                        "valid" | "有效" => CertificateStatus::Valid,
                        "revoked" | "注销" => CertificateStatus::Revoked,
                        other => {
                            return Err(fail(
                                4,
                                format!("status must be valid or revoked, found {other:?}"),
                            ));
                        }
                    };
                    certificates.push((line, CertificateRow { number, status }));
                }
                FeedKind::Dibao => {
                    let holder = holder(0)?;
                    let status = match field(1) {
                        "on" | "在保" => DibaoStatus::On,
                        "off" | "退保" => DibaoStatus::Off,
                        other => {
                            return Err(fail(
                                1,
                                format!("status must be on or off, found {other:?}"),
                            ));
                        }
                    };
                    let since = date(2)?;
                    if since > today {
                        return Err(fail(2, format!("{since} is in the future")));
                    }
                    dibao.push((
                        line,
                        DibaoRow {
                            holder,
                            status,
                            since,
                        },
                    ));
                }
                FeedKind::Deaths => {
                    let holder = holder(0)?;
                    let died = date(1)?;
                    if died > today {
                        return Err(fail(1, format!("{died} is in the future")));
                    }
                    deaths.push((line, DeathRow { holder, died }));
                }
            }
            if certificates.len() + dibao.len() + deaths.len() > MAX_ROWS {
                return Err(fail(0, format!("more than {MAX_ROWS} rows")));
            }
        }
        let twice = |first: u64, second: u64, column: &str, what: &str| FeedError {
            line: second,
            column: column.to_string(),
            message: format!("{what} is listed twice (lines {first} and {second})"),
        };
        Ok(match fk {
            FeedKind::Certificates => {
                certificates.sort_by(|(_, a), (_, b)| cert_key(a).cmp(&cert_key(b)));
                for pair in certificates.windows(2) {
                    let ((l1, a), (l2, b)) = (&pair[0], &pair[1]);
                    if a.number.expose() == b.number.expose() {
                        return Err(twice(
                            *l1.min(l2),
                            *l1.max(l2),
                            "certificate_number",
                            "a certificate",
                        ));
                    }
                    if a.number.holder() == b.number.holder()
                        && a.status == CertificateStatus::Valid
                        && b.status == CertificateStatus::Valid
                    {
                        return Err(twice(
                            *l1.min(l2),
                            *l1.max(l2),
                            "holder_id",
                            "a holder with two valid certificates",
                        ));
                    }
                }
                Feed::Certificates(certificates.into_iter().map(|(_, r)| r).collect())
            }
            FeedKind::Dibao => {
                dibao.sort_by(|(_, a), (_, b)| a.holder.expose().cmp(b.holder.expose()));
                for pair in dibao.windows(2) {
                    if pair[0].1.holder == pair[1].1.holder {
                        let (l1, l2) = (pair[0].0, pair[1].0);
                        return Err(twice(l1.min(l2), l1.max(l2), "holder_id", "a person"));
                    }
                }
                Feed::Dibao(dibao.into_iter().map(|(_, r)| r).collect())
            }
            FeedKind::Deaths => {
                deaths.sort_by(|(_, a), (_, b)| a.holder.expose().cmp(b.holder.expose()));
                for pair in deaths.windows(2) {
                    if pair[0].1.holder == pair[1].1.holder {
                        let (l1, l2) = (pair[0].0, pair[1].0);
                        return Err(twice(l1.min(l2), l1.max(l2), "holder_id", "a person"));
                    }
                }
                Feed::Deaths(deaths.into_iter().map(|(_, r)| r).collect())
            }
        })
    }

    /// The compact form (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.len() * 26);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.kind().wire());
        // MAX_ROWS fits a u32; parse and decode hold feeds to it.
        out.extend_from_slice(&u32::try_from(self.len()).unwrap_or(u32::MAX).to_be_bytes());
        match self {
            Feed::Certificates(rows) => {
                for row in rows {
                    let number = row.number.expose();
                    out.push(number.len() as u8);
                    out.extend_from_slice(number.as_bytes());
                    out.push(match row.status {
                        CertificateStatus::Valid => 1,
                        CertificateStatus::Revoked => 2,
                    });
                }
            }
            Feed::Dibao(rows) => {
                for row in rows {
                    out.extend_from_slice(row.holder.expose().as_bytes());
                    out.push(match row.status {
                        DibaoStatus::On => 1,
                        DibaoStatus::Off => 2,
                    });
                    out.extend_from_slice(&row.since.num_days_from_ce().to_be_bytes());
                }
            }
            Feed::Deaths(rows) => {
                for row in rows {
                    out.extend_from_slice(row.holder.expose().as_bytes());
                    out.extend_from_slice(&row.died.num_days_from_ce().to_be_bytes());
                }
            }
        }
        out
    }

    /// Reads the compact form of a feed of `kind`. Total: never panics.
    pub fn decode(kind: DatasetKind, bytes: &[u8]) -> Result<Feed, FeedDecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take("magic", 4)? != MAGIC {
            return Err(r.fail("magic", 0, "not a Tongban feed"));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(r.fail("version", 4, format!("unknown version {version}")));
        }
        let at = r.pos;
        let found = r.u8("kind")?;
        if found != kind.wire() {
            return Err(r.fail(
                "kind",
                at,
                format!("kind byte {found}, expected {}", kind.wire()),
            ));
        }
        let at = r.pos;
        let count = r.u32("count")? as usize;
        // Every row has at least 22 bytes: refuse counts the input cannot hold.
        if count > MAX_ROWS || count > r.remaining() / 22 {
            return Err(r.fail("count", at, format!("{count} rows do not fit the input")));
        }
        // Far-future "today": a feed decodes the same on every day.
        let any_day = NaiveDate::MAX;
        let feed = match kind {
            DatasetKind::Certificates => {
                let mut rows = Vec::with_capacity(count);
                for _ in 0..count {
                    let at = r.pos;
                    let len = usize::from(r.u8("certificate length")?);
                    let text = r.ascii("certificate_number", len)?;
                    let number = CertificateNumber::parse_on(text, any_day)
                        .map_err(|e| r.fail("certificate_number", at, e.to_string()))?;
                    let at = r.pos;
                    let status = match r.u8("status")? {
                        1 => CertificateStatus::Valid,
                        2 => CertificateStatus::Revoked,
                        other => return Err(r.fail("status", at, format!("status byte {other}"))),
                    };
                    rows.push(CertificateRow { number, status });
                }
                if !rows.is_sorted_by(|a, b| cert_key(a) < cert_key(b)) {
                    return Err(r.fail("rows", 10, "rows are not in order or repeat"));
                }
                Feed::Certificates(rows)
            }
            DatasetKind::Dibao => {
                let mut rows = Vec::with_capacity(count);
                for _ in 0..count {
                    let holder = r.holder()?;
                    let at = r.pos;
                    let status = match r.u8("status")? {
                        1 => DibaoStatus::On,
                        2 => DibaoStatus::Off,
                        other => return Err(r.fail("status", at, format!("status byte {other}"))),
                    };
                    let since = r.date("since")?;
                    rows.push(DibaoRow {
                        holder,
                        status,
                        since,
                    });
                }
                if !rows.is_sorted_by(|a, b| a.holder.expose() < b.holder.expose()) {
                    return Err(r.fail("rows", 10, "rows are not in order or repeat"));
                }
                Feed::Dibao(rows)
            }
            DatasetKind::Deaths => {
                let mut rows = Vec::with_capacity(count);
                for _ in 0..count {
                    let holder = r.holder()?;
                    let died = r.date("date_of_death")?;
                    rows.push(DeathRow { holder, died });
                }
                if !rows.is_sorted_by(|a, b| a.holder.expose() < b.holder.expose()) {
                    return Err(r.fail("rows", 10, "rows are not in order or repeat"));
                }
                Feed::Deaths(rows)
            }
            DatasetKind::Calendar
            | DatasetKind::Policy
            | DatasetKind::Payroll
            | DatasetKind::PayrollSummary => {
                return Err(r.fail(
                    "kind",
                    5,
                    format!("the {} is not a registry feed", kind.code()),
                ));
            }
        };
        if r.remaining() != 0 {
            return Err(r.fail(
                "end",
                r.pos,
                format!("{} bytes after the last row", r.remaining()),
            ));
        }
        Ok(feed)
    }

    /// The certificates of `holder` (valid ones first).
    pub fn certificates_of(&self, holder: &ResidentId) -> Vec<&CertificateRow> {
        let Feed::Certificates(rows) = self else {
            return Vec::new();
        };
        let start = rows.partition_point(|r| r.number.holder().expose() < holder.expose());
        let mut found: Vec<&CertificateRow> = rows[start..]
            .iter()
            .take_while(|r| r.number.holder() == holder)
            .collect();
        found.sort_by_key(|r| r.status != CertificateStatus::Valid);
        found
    }

    /// The dibao row of `holder`.
    pub fn dibao_of(&self, holder: &ResidentId) -> Option<&DibaoRow> {
        let Feed::Dibao(rows) = self else {
            return None;
        };
        rows.binary_search_by(|r| r.holder.expose().cmp(holder.expose()))
            .ok()
            .map(|i| &rows[i])
    }

    /// The death registration of `holder`.
    pub fn death_of(&self, holder: &ResidentId) -> Option<&DeathRow> {
        let Feed::Deaths(rows) = self else {
            return None;
        };
        rows.binary_search_by(|r| r.holder.expose().cmp(holder.expose()))
            .ok()
            .map(|i| &rows[i])
    }
}

/// What a case states that a registry can confirm or contradict.
#[derive(Debug, Clone)]
pub struct Stated {
    /// The applicant.
    pub holder: ResidentId,
    /// The certificate number given at intake, if any.
    pub certificate: Option<String>,
    /// Whether the living subsidy (for people in hardship) is applied for.
    pub living: bool,
    /// Whether the applicant declared a dibao household.
    pub dibao: bool,
}

/// One fact a feed confirmed or contradicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The feed.
    pub feed: DatasetKind,
    /// Its version.
    pub feed_version: u64,
    /// Stable code of the fact (`certificate_valid`, `dibao_off`, ...).
    pub fact: &'static str,
    /// Confirmed (true) or contradicted (false).
    pub confirmed: bool,
    /// In words, for the reviewer (Chinese), personal data masked.
    pub detail: String,
}

/// Compares what a case states with the feeds of its domicile county: the
/// one rule of data comparison (比对). A feed that is not given says nothing.
///
/// - certificates: the certificate given is in the registry and valid (which,
///   the number holding holder, category and level, confirms all three); a
///   revoked or unknown one, no certificate where the registry has one, or a
///   newer valid certificate of another category or level, contradicts;
/// - dibao (when the living subsidy is applied for and a dibao household
///   declared): on the roster confirms; off it or not listed contradicts;
/// - deaths: a death registration contradicts; none confirms.
pub fn compare(stated: &Stated, feeds: &[(&Feed, u64)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (feed, version) in feeds {
        let mut find = |fact: &'static str, confirmed: bool, detail: String| {
            out.push(Finding {
                feed: feed.kind(),
                feed_version: *version,
                fact,
                confirmed,
                detail,
            });
        };
        match feed {
            Feed::Certificates(_) => {
                let held = feed.certificates_of(&stated.holder);
                let valid: Vec<&&CertificateRow> = held
                    .iter()
                    .filter(|r| r.status == CertificateStatus::Valid)
                    .collect();
                match &stated.certificate {
                    Some(number) => {
                        let number = number.trim().to_ascii_uppercase();
                        match held.iter().find(|r| r.number.expose() == number) {
                            None => find(
                                "certificate_not_found",
                                false,
                                "残疾人证号不在残疾人证信息中 the certificate is not in the registry".into(),
                            ),
                            Some(row) if row.status == CertificateStatus::Revoked => find(
                                "certificate_revoked",
                                false,
                                "残疾人证已注销 the certificate is revoked".into(),
                            ),
                            Some(row) => {
                                find(
                                    "certificate_valid",
                                    true,
                                    format!(
                                        "残疾人证有效，{}{}，与身份证号一致 valid, matching the ID",
                                        row.number.category().zh(),
                                        row.number.level().zh()
                                    ),
                                );
                                if let Some(other) =
                                    valid.iter().find(|r| r.number.expose() != number)
                                {
                                    find(
                                        "certificate_superseded",
                                        false,
                                        format!(
                                            "登记有另一有效证件：{}{} another valid certificate is registered",
                                            other.number.category().zh(),
                                            other.number.level().zh()
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    None if valid.is_empty() => find(
                        "no_valid_certificate",
                        false,
                        "残疾人证信息中没有申请人的有效证件 no valid certificate is registered"
                            .into(),
                    ),
                    None => find(
                        "certificate_not_given",
                        false,
                        format!(
                            "申请未填残疾人证号，登记有有效证件：{}{} a valid certificate is registered but none was given",
                            valid[0].number.category().zh(),
                            valid[0].number.level().zh()
                        ),
                    ),
                }
            }
            Feed::Dibao(_) => {
                if !(stated.living && stated.dibao) {
                    continue;
                }
                match feed.dibao_of(&stated.holder) {
                    Some(row) if row.status == DibaoStatus::On => find(
                        "dibao_on",
                        true,
                        format!("在低保对象名单中（自 {}）on the dibao roster", row.since),
                    ),
                    Some(row) => find(
                        "dibao_off",
                        false,
                        format!("已于 {} 退出低保 left the dibao roster", row.since),
                    ),
                    None => find(
                        "dibao_not_listed",
                        false,
                        "不在低保对象名单中 not on the dibao roster".into(),
                    ),
                }
            }
            Feed::Deaths(_) => match feed.death_of(&stated.holder) {
                Some(row) => find(
                    "deceased",
                    false,
                    format!("死亡登记：{} a death is registered", row.died),
                ),
                None => find(
                    "no_death_registration",
                    true,
                    "无死亡登记 no death registered".into(),
                ),
            },
        }
    }
    out
}

/// An award as the dynamic check (动态管理) sees it.
#[derive(Debug, Clone)]
pub struct AwardState {
    /// The person paid.
    pub holder: ResidentId,
    /// The kinds awarded.
    pub kinds: Vec<crate::policy::SubsidyKind>,
    /// What the case stated at intake (dibao, low income, care, the
    /// certificate's category and level, other allowances): the registries'
    /// facts replace these where a feed is held.
    pub stated: crate::policy::ApplicantFacts,
    /// Where the award stands: `active`, `suspended`, or `terminated` by an
    /// earlier dynamic check for a death (the only termination a feed can
    /// reverse; see [`DEATH_REASON`]).
    pub stage: crate::stage::Stage,
}

/// How the opinion of a termination for a death registration begins: the
/// dynamic check resumes a termination it signed itself, once the deaths feed
/// no longer lists the person (a registration made in error), and no other.
pub const DEATH_REASON: &str = "死亡登记";

/// What the dynamic check decides for one award.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckAction {
    /// `suspended`, `terminated` or `active` (a suspension corrected).
    pub to: crate::stage::Stage,
    /// Why, in words (Chinese, then the codes), with the feeds and versions.
    pub reason: String,
    /// The feeds the decision rests on, with their versions.
    pub feeds: Vec<(DatasetKind, u64)>,
}

/// The dynamic check of one award against the latest feeds of its county —
/// the one rule: a registered death terminates it; an awarded kind the
/// domicile policy no longer grants with the facts as the registries state
/// them (`Policy::ineligibility`: a revoked certificate, a level below the
/// policy's, a dibao exit for the living subsidy) suspends it; a suspended
/// award whose every kind is granted again, and no death registered, resumes.
/// `None`: nothing to do.
pub fn award_check(
    award: &AwardState,
    feeds: &[(&Feed, u64)],
    policy: &crate::policy::Policy,
) -> Option<CheckAction> {
    let mut facts = award.stated.clone();
    let mut used = Vec::new();
    for (feed, version) in feeds {
        match feed {
            Feed::Deaths(_) => {
                if let Some(row) = feed.death_of(&award.holder) {
                    if award.stage == crate::stage::Stage::Terminated {
                        return None;
                    }
                    return Some(CheckAction {
                        to: crate::stage::Stage::Terminated,
                        reason: format!(
                            "{DEATH_REASON}（{}）deceased: deaths feed version {version}",
                            row.died
                        ),
                        feeds: vec![(DatasetKind::Deaths, *version)],
                    });
                }
            }
            Feed::Dibao(_) => {
                facts.dibao = feed
                    .dibao_of(&award.holder)
                    .is_some_and(|r| r.status == DibaoStatus::On);
                used.push((DatasetKind::Dibao, *version));
            }
            Feed::Certificates(_) => {
                facts.disability = feed
                    .certificates_of(&award.holder)
                    .into_iter()
                    .find(|r| r.status == CertificateStatus::Valid)
                    .map(|r| (r.number.category(), r.number.level()));
                used.push((DatasetKind::Certificates, *version));
            }
        }
    }
    let versions: Vec<String> = used
        .iter()
        .map(|(k, v)| format!("{} feed version {v}", k.code()))
        .collect();
    let reasons: Vec<String> = award
        .kinds
        .iter()
        .flat_map(|kind| {
            policy
                .ineligibility(*kind, &facts)
                .into_iter()
                .map(move |why| format!("{}：{why}", kind.zh()))
        })
        .collect();
    let stopped = award.stage != crate::stage::Stage::Active;
    match (reasons.is_empty(), stopped) {
        (false, false) => Some(CheckAction {
            to: crate::stage::Stage::Suspended,
            reason: format!(
                "比对不再符合条件 no longer eligible by the registries: {} ({})",
                reasons.join("；"),
                versions.join(", ")
            ),
            feeds: used,
        }),
        (true, true) if !used.is_empty() => Some(CheckAction {
            to: crate::stage::Stage::Active,
            reason: format!(
                "比对数据已更正，恢复发放 eligible again by the registries ({})",
                versions.join(", ")
            ),
            feeds: used,
        }),
        _ => None,
    }
}

fn cert_key(row: &CertificateRow) -> (&str, String) {
    (row.number.holder().expose(), row.number.expose())
}

/// The dataset kinds that are registry feeds.
#[derive(Clone, Copy)]
enum FeedKind {
    Certificates,
    Dibao,
    Deaths,
}

impl FeedKind {
    fn of(kind: DatasetKind) -> Option<FeedKind> {
        match kind {
            DatasetKind::Certificates => Some(FeedKind::Certificates),
            DatasetKind::Dibao => Some(FeedKind::Dibao),
            DatasetKind::Deaths => Some(FeedKind::Deaths),
            DatasetKind::Calendar
            | DatasetKind::Policy
            | DatasetKind::Payroll
            | DatasetKind::PayrollSummary => None,
        }
    }
}

fn parse_category(text: &str) -> Option<DisabilityCategory> {
    if let Ok(digit) = text.parse::<u8>() {
        return DisabilityCategory::from_digit(digit);
    }
    let text = text.strip_suffix("残疾").unwrap_or(text);
    DisabilityCategory::from_code(text)
        .or_else(|| DisabilityCategory::ALL.into_iter().find(|c| c.zh() == text))
}

fn parse_level(text: &str) -> Option<DisabilityLevel> {
    if let Ok(n) = text.parse::<u8>() {
        return DisabilityLevel::new(n);
    }
    (1..=4)
        .filter_map(DisabilityLevel::new)
        .find(|l| l.zh() == text)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn fail(
        &self,
        field: &'static str,
        offset: usize,
        message: impl Into<String>,
    ) -> FeedDecodeError {
        FeedDecodeError {
            field,
            offset,
            message: message.into(),
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FeedDecodeError> {
        let Some(slice) = self.bytes.get(self.pos..self.pos.saturating_add(n)) else {
            return Err(self.fail(
                field,
                self.pos,
                format!("needs {n} bytes, {} remain", self.remaining()),
            ));
        };
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FeedDecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FeedDecodeError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn ascii(&mut self, field: &'static str, n: usize) -> Result<&'a str, FeedDecodeError> {
        let at = self.pos;
        let b = self.take(field, n)?;
        if !b.is_ascii() {
            return Err(self.fail(field, at, "not ASCII"));
        }
        std::str::from_utf8(b).map_err(|e| self.fail(field, at, e.to_string()))
    }

    fn holder(&mut self) -> Result<ResidentId, FeedDecodeError> {
        let at = self.pos;
        let text = self.ascii("holder_id", 18)?;
        ResidentId::parse_on(text, NaiveDate::MAX)
            .map_err(|e| self.fail("holder_id", at, e.to_string()))
    }

    fn date(&mut self, field: &'static str) -> Result<NaiveDate, FeedDecodeError> {
        let at = self.pos;
        let b = self.take(field, 4)?;
        let days = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        NaiveDate::from_num_days_from_ce_opt(days)
            .ok_or_else(|| self.fail(field, at, format!("day {days} is not a date")))
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateStatus::Valid => "有效 valid",
            CertificateStatus::Revoked => "注销 revoked",
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    const A: &str = "11010519491231002X";
    const B: &str = "130102198001010010";

    fn valid_id(seed: u32) -> String {
        // 110105 + birth date + sequence + check character.
        let body = format!("110105{}{:03}", 19500101 + (seed % 28), seed % 1000);
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = body
            .bytes()
            .zip(weights)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let check = b"10X98765432"[(sum % 11) as usize] as char;
        format!("{body}{check}")
    }

    #[test]
    fn the_sample_ids_are_valid() {
        ResidentId::parse_on(A, today()).unwrap();
        ResidentId::parse_on(B, today()).unwrap();
        for seed in 0..50 {
            ResidentId::parse_on(&valid_id(seed), today()).unwrap();
        }
    }

    #[test]
    fn certificates_parse_check_and_round_trip() {
        let csv = format!(
            "certificate_number,holder_id,category,level,status\n\
             {B}41,{B},肢体,1,有效\n\
             {A}62,{A},mental,二级,revoked\n"
        );
        let feed = Feed::parse_csv(DatasetKind::Certificates, &csv, today()).unwrap();
        assert_eq!(feed.len(), 2);
        let bytes = feed.encode();
        assert_eq!(
            Feed::decode(DatasetKind::Certificates, &bytes).unwrap(),
            feed
        );
        let b = ResidentId::parse_on(B, today()).unwrap();
        let found = feed.certificates_of(&b);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].number.level().get(), 1);
        assert_eq!(found[0].status, CertificateStatus::Valid);
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            (
                format!(
                    "certificate_number,holder_id,category,level,status\n{B}41,{B},肢体,2,有效\n"
                ),
                2,
                "level",
            ),
            (
                format!(
                    "certificate_number,holder_id,category,level,status\n{B}41,{A},肢体,1,有效\n"
                ),
                2,
                "holder_id",
            ),
            (
                format!(
                    "certificate_number,holder_id,category,level,status\n{B}41,{B},视力,1,有效\n"
                ),
                2,
                "category",
            ),
            (
                format!(
                    "certificate_number,holder_id,category,level,status\n{B}41,{B},肢体,1,maybe\n"
                ),
                2,
                "status",
            ),
            (
                format!(
                    "certificate_number,holder_id,category,level,status\n{B}41,{B},肢体,1,有效\n{B}41,{B},肢体,1,注销\n"
                ),
                3,
                "certificate_number",
            ),
        ];
        for (csv, line, column) in cases {
            let err = Feed::parse_csv(DatasetKind::Certificates, &csv, today()).unwrap_err();
            assert_eq!((err.line, err.column.as_str()), (line, column), "{err}");
        }
        let err = Feed::parse_csv(DatasetKind::Dibao, "holder_id,since\n", today()).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("holder_id,status,since"), "{err}");
        let err = Feed::parse_csv(
            DatasetKind::Deaths,
            &format!("holder_id,date_of_death\n{A},2027-01-01\n"),
            today(),
        )
        .unwrap_err();
        assert_eq!((err.line, err.column.as_str()), (2, "date_of_death"));
        let err = Feed::parse_csv(
            DatasetKind::Deaths,
            &format!("holder_id,date_of_death\n{A},2026-01-01\n{B},2026-02-01\n{A},2026-03-01\n"),
            today(),
        )
        .unwrap_err();
        assert_eq!((err.line, err.column.as_str()), (4, "holder_id"), "{err}");
        assert!(err.message.contains("lines 2 and 4"), "{err}");
    }

    #[test]
    fn comparison_confirms_and_contradicts() {
        let certs = Feed::parse_csv(
            DatasetKind::Certificates,
            &format!(
                "certificate_number,holder_id,category,level,status\n\
                 {B}41,{B},肢体,1,有效\n\
                 {A}62,{A},精神,2,注销\n"
            ),
            today(),
        )
        .unwrap();
        let dibao = Feed::parse_csv(
            DatasetKind::Dibao,
            &format!("holder_id,status,since\n{A},off,2026-03-01\n{B},on,2020-01-01\n"),
            today(),
        )
        .unwrap();
        let deaths = Feed::parse_csv(
            DatasetKind::Deaths,
            &format!("holder_id,date_of_death\n{A},2026-10-01\n"),
            today(),
        )
        .unwrap();
        let feeds = [(&certs, 3), (&dibao, 5), (&deaths, 1)];
        let b = Stated {
            holder: ResidentId::parse_on(B, today()).unwrap(),
            certificate: Some(format!("{B}41")),
            living: true,
            dibao: true,
        };
        let facts: Vec<(&str, bool)> = compare(&b, &feeds)
            .iter()
            .map(|f| (f.fact, f.confirmed))
            .collect();
        assert_eq!(
            facts,
            [
                ("certificate_valid", true),
                ("dibao_on", true),
                ("no_death_registration", true)
            ]
        );
        let a = Stated {
            holder: ResidentId::parse_on(A, today()).unwrap(),
            certificate: Some(format!("{A}62")),
            living: true,
            dibao: true,
        };
        let found = compare(&a, &feeds);
        let facts: Vec<(&str, bool)> = found.iter().map(|f| (f.fact, f.confirmed)).collect();
        assert_eq!(
            facts,
            [
                ("certificate_revoked", false),
                ("dibao_off", false),
                ("deceased", false)
            ]
        );
        assert_eq!(found[1].feed_version, 5);
        // A downgrade: the number given is no longer the one in the registry.
        let mut a = a;
        a.certificate = Some(format!("{A}61"));
        assert_eq!(compare(&a, &feeds[..1])[0].fact, "certificate_not_found");
        // The nursing subsidy alone: the dibao roster is not asked.
        let mut b = b;
        b.living = false;
        assert!(compare(&b, &feeds[1..2]).is_empty());
    }

    proptest! {
        #[test]
        fn dibao_and_deaths_round_trip(seeds in proptest::collection::btree_set(0u32..5000, 0..40)) {
            let mut dibao = String::from("holder_id,status,since\n");
            let mut deaths = String::from("holder_id,date_of_death\n");
            let mut ids = std::collections::BTreeSet::new();
            for seed in seeds {
                let id = valid_id(seed);
                if !ids.insert(id.clone()) { continue; }
                dibao.push_str(&format!("{id},{},2024-0{}-15\n", if seed % 2 == 0 { "在保" } else { "off" }, 1 + seed % 9));
                deaths.push_str(&format!("{id},2025-03-0{}\n", 1 + seed % 9));
            }
            for (kind, csv) in [(DatasetKind::Dibao, dibao), (DatasetKind::Deaths, deaths)] {
                let feed = Feed::parse_csv(kind, &csv, today()).unwrap();
                prop_assert_eq!(feed.len(), ids.len());
                prop_assert_eq!(Feed::decode(kind, &feed.encode()).unwrap(), feed);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), kind in 0u8..6) {
            let kind = DatasetKind::from_wire(kind).unwrap_or(DatasetKind::Deaths);
            let _ = Feed::decode(kind, &bytes);
            let mut framed = b"TBFD\x01".to_vec();
            framed.push(kind.wire());
            framed.extend_from_slice(&bytes);
            let _ = Feed::decode(kind, &framed);
        }

        #[test]
        fn every_truncation_of_a_feed_is_an_error(cut in 0usize..200) {
            let csv = format!("holder_id,status,since\n{A},on,2024-01-01\n{B},off,2025-01-01\n");
            let bytes = Feed::parse_csv(DatasetKind::Dibao, &csv, today()).unwrap().encode();
            let cut = cut % bytes.len();
            prop_assert!(Feed::decode(DatasetKind::Dibao, &bytes[..cut]).is_err());
        }
    }
}
