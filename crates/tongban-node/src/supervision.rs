//! A supervisor's node (省级 / 国家监管, section 三 of the notice): the
//! supervised cases it holds, kept in step with the attestations it stores,
//! and read whole for reports and exports.
//!
//! The sync engine's replica updates a case's supervised row whenever it
//! stores an attestation of it (`tongban_replica::supervised_of`, in the same
//! transaction). [`reconcile`] fills the rows a restore or an older build left
//! out, when the daemon starts. Nothing here reads or writes a case document:
//! a supervisor holds none.

use tongban_domain::ids::CaseId;
use tongban_domain::stage::Role;
use tongban_domain::supervision::SupervisedCase;

use crate::local::{LocalNode, NodeError};

/// Whether this node is a supervisor's.
pub fn is_supervisor(local: &LocalNode) -> bool {
    local
        .office_facts()
        .is_some_and(|facts| facts.role == Role::Supervisor)
}

/// Computes the supervised row of every attested case that has none; returns
/// how many it wrote.
pub fn reconcile(local: &LocalNode) -> Result<usize, NodeError> {
    let directory = local.directory()?.clone();
    let store = local.store();
    let mut after: Option<CaseId> = None;
    let mut written = 0;
    loop {
        let page = store.attested_cases(after.as_ref(), 1024)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for case in &page {
            if store.supervised(case)?.is_some() {
                continue;
            }
            let all = store.attestations_of(case)?;
            if let Some(bytes) =
                tongban_replica::supervised_of(case, &all, &directory, local.calendar())
            {
                local.put_supervised(case, &bytes)?;
                written += 1;
            }
        }
        after = Some(last);
    }
    Ok(written)
}

/// What reports and exports read of a node, taken from it at once so that
/// they run beside its engine (on their own read transactions, as a backup
/// does) rather than on it.
pub struct Holdings {
    store: std::sync::Arc<tongban_store::Store>,
    directory: tongban_ledger::Directory,
    calendar: tongban_domain::calendar::Calendar,
    supervisor: bool,
    authority: Option<tongban_ledger::keys::PublicKey>,
    role: Role,
    division: String,
}

impl Holdings {
    /// What `local` holds, as of now.
    pub fn of(local: &LocalNode) -> Result<Holdings, NodeError> {
        let cert = local.certificate(tongban_domain::ids::Timestamp::now())?;
        Ok(Holdings {
            store: local.shared_store().clone(),
            directory: local.directory()?.clone(),
            calendar: local.calendar().clone(),
            supervisor: cert.role == Role::Supervisor,
            authority: local.authority(),
            role: cert.role,
            division: cert.division.clone(),
        })
    }
}

/// Every supervised case this node holds that concerns `region` (a division
/// code prefix, `00` for all), read in one pass: rows are taken from redb in
/// one read transaction and decoded on all cores a batch at a time. A row
/// that does not decode is an error naming the case: the store is damaged.
pub fn supervised_cases(held: &Holdings, region: &str) -> Result<Vec<SupervisedCase>, NodeError> {
    use rayon::prelude::*;
    const BATCH: usize = 1 << 14;
    let decode = |batch: &mut Vec<(String, Vec<u8>)>,
                  out: &mut Vec<SupervisedCase>|
     -> Result<(), NodeError> {
        let decoded: Result<Vec<Option<SupervisedCase>>, NodeError> = batch
            .par_iter()
            .map(|(case, bytes)| {
                let supervised = SupervisedCase::from_row(bytes).map_err(|e| {
                    NodeError::Store(tongban_store::StoreError::InvalidArgument {
                        detail: format!(
                            "the supervised row of case {case} does not decode (the store is damaged; `tongban node restore` a backup, whose attestations rebuild it): {e}"
                        ),
                    })
                })?;
                Ok(supervised.in_region(region).then_some(supervised))
            })
            .collect();
        out.extend(decoded?.into_iter().flatten());
        batch.clear();
        Ok(())
    };
    let mut out = Vec::new();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(BATCH);
    let visited = held.store.for_each_supervised(|case, bytes| {
        batch.push((case.to_string(), bytes.to_vec()));
        if batch.len() == BATCH {
            decode(&mut batch, &mut out)?;
        }
        Ok::<(), NodeError>(())
    })?;
    visited?;
    decode(&mut batch, &mut out)?;
    Ok(out)
}

/// The payroll summaries this node holds of counties in `region` (a division
/// prefix, `00` for all), each verified as one from a peer, by county then
/// month.
pub fn payroll_summaries(
    held: &Holdings,
    region: &str,
) -> Result<Vec<tongban_domain::supervision::PayrollSummary>, NodeError> {
    use tongban_domain::dataset::DatasetKind;
    let Some(authority) = held.authority else {
        return Ok(Vec::new());
    };
    // Summaries are kept by county (`COUNTY:MONTH`): a township region reads
    // its county's.
    let region = match region.len() {
        2 if region == "00" => "",
        9 => region.get(..6).unwrap_or(region),
        _ => region,
    };
    let prefix = tongban_replica::dataset_key(DatasetKind::PayrollSummary.wire(), region);
    let mut out = Vec::new();
    for (_, bytes) in held.store.meta_with_prefix(&prefix)? {
        match tongban_sync::check_dataset(
            &bytes,
            &held.directory,
            &authority,
            held.role,
            &held.division,
        ) {
            Ok(held) => match serde_json::from_slice(&held.signed.dataset.payload) {
                Ok(summary) => out.push(summary),
                Err(err) => tracing::warn!(%err, "a held payroll summary does not decode"),
            },
            Err(err) => tracing::warn!(%err, "a stored payroll summary is not held"),
        }
    }
    out.sort_by(|a: &tongban_domain::supervision::PayrollSummary, b| {
        (&a.county, a.month).cmp(&(&b.county, b.month))
    });
    Ok(out)
}

/// The five supervision reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// 推送及时率: push timeliness per acceptance office.
    Push,
    /// 审核及时率: review timeliness per domicile office, DPF and civil affairs.
    Review,
    /// 积压: cases awaiting an office, by stage.
    Backlog,
    /// 发放进度: paid against entitled, per county and month.
    Disbursement,
    /// 满意度: evaluations per acceptance office.
    Satisfaction,
}

impl ReportKind {
    /// Chinese title.
    pub fn zh(self) -> &'static str {
        match self {
            ReportKind::Push => "推送及时率",
            ReportKind::Review => "审核及时率",
            ReportKind::Backlog => "积压案件",
            ReportKind::Disbursement => "发放进度",
            ReportKind::Satisfaction => "服务满意度",
        }
    }

    /// Stable code name.
    pub fn code(self) -> &'static str {
        match self {
            ReportKind::Push => "push",
            ReportKind::Review => "review",
            ReportKind::Backlog => "backlog",
            ReportKind::Disbursement => "disbursement",
            ReportKind::Satisfaction => "satisfaction",
        }
    }
}

/// What a report is asked for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReportRequest {
    /// Which report.
    pub kind: ReportKind,
    /// The region: a division code prefix, `00` for the country.
    pub region: String,
    /// First day of the period (Beijing).
    pub from: chrono::NaiveDate,
    /// Last day of the period.
    pub to: chrono::NaiveDate,
    /// The day waiting cases are judged overdue on.
    pub as_of: chrono::NaiveDate,
    /// The row whose cases to list instead of the report: an office id
    /// (push, satisfaction), `ROLE:OFFICE` with a role code and a township
    /// office id or a 6-digit county (review), a stage code (backlog),
    /// `COUNTY:YYYY-MM:KIND` (disbursement).
    #[serde(default)]
    pub drill: Option<String>,
}

/// A report as the node computed it: the values, and their two renderings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReportAnswer {
    /// The request.
    pub request: ReportRequest,
    /// The supervised cases the node held in the region.
    pub cases: usize,
    /// Whether the node read its own verified supervised rows (a
    /// supervisor), or verified the attestations it holds just now (a hub).
    pub supervisor: bool,
    /// The report (or the drill-down), as JSON.
    pub report: serde_json::Value,
    /// The Chinese table, header first.
    pub table: Vec<Vec<String>>,
    /// The CSV, header first.
    pub csv: String,
}

fn bad(field: &str, detail: impl std::fmt::Display) -> NodeError {
    NodeError::Rejected(format!("{field}: {detail}"))
}

fn render<R: tongban_report::Report + serde::Serialize>(
    report: &R,
) -> Result<(serde_json::Value, Vec<Vec<String>>, String), NodeError> {
    let mut csv = Vec::new();
    report
        .write_csv(&mut csv)
        .map_err(|e| NodeError::Rejected(e.to_string()))?;
    Ok((
        serde_json::to_value(report).map_err(|e| NodeError::Rejected(e.to_string()))?,
        report.table(),
        String::from_utf8_lossy(&csv).into_owned(),
    ))
}

/// The cases a report reads at this node: a supervisor's own rows, or — at a
/// hub, which holds attestations but keeps no reading of them — each attested
/// case verified now.
pub fn cases_for_report(
    held: &Holdings,
    region: &str,
) -> Result<(Vec<SupervisedCase>, bool), NodeError> {
    if held.supervisor {
        return Ok((supervised_cases(held, region)?, true));
    }
    let directory = &held.directory;
    let store = &held.store;
    let mut out = Vec::new();
    let mut after: Option<CaseId> = None;
    loop {
        let page = store.attested_cases(after.as_ref(), 1024)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for case in &page {
            let all = store.attestations_of(case)?;
            if let Some(bytes) =
                tongban_replica::supervised_of(case, &all, directory, &held.calendar)
                && let Ok(seen) = SupervisedCase::from_row(&bytes)
                && seen.in_region(region)
            {
                out.push(seen);
            }
        }
        after = Some(last);
    }
    Ok((out, false))
}

/// Computes a report (or one row's cases) from what this node holds.
pub fn report(held: &Holdings, request: &ReportRequest) -> Result<ReportAnswer, NodeError> {
    use tongban_report::{Period, Region, Scope};
    let region = Region::parse(&request.region).map_err(|e| bad("--region", e))?;
    let period = Period::new(request.from, request.to).map_err(|e| bad("--from/--to", e))?;
    let scope = Scope::new(region, period, request.as_of);
    let (cases, supervisor) = cases_for_report(held, &request.region)?;
    let drill = request.drill.as_deref();
    let (report, table, csv) = match (request.kind, drill) {
        (ReportKind::Push, None) => render(&tongban_report::push_report(&cases, &scope))?,
        (ReportKind::Push, Some(office)) => {
            render(&tongban_report::push_cases(&cases, &scope, office))?
        }
        (ReportKind::Review, None) => render(&tongban_report::review_report(&cases, &scope))?,
        (ReportKind::Review, Some(key)) => {
            let (role, office) = key.split_once(':').ok_or_else(|| {
                bad(
                    "--drill",
                    "a review row is ROLE:OFFICE, township:130102001 or county_dpf:130102",
                )
            })?;
            let role = Role::from_code(role)
                .filter(|r| {
                    matches!(
                        r,
                        Role::Township | Role::CountyDpf | Role::CountyCivilAffairs
                    )
                })
                .ok_or_else(|| {
                    bad(
                        "--drill",
                        format!("{role:?} is not township, county_dpf or county_civil_affairs"),
                    )
                })?;
            let office = match role {
                Role::Township => office.to_string(),
                _ => tongban_report::review::county_office_label(office, role),
            };
            render(&tongban_report::review_cases(&cases, &scope, role, &office))?
        }
        (ReportKind::Backlog, None) => render(&tongban_report::backlog_report(&cases, &scope))?,
        (ReportKind::Backlog, Some(stage)) => {
            let stage = tongban_domain::stage::Stage::from_code(stage)
                .ok_or_else(|| bad("--drill", format!("{stage:?} is not a stage code")))?;
            render(&tongban_report::backlog_cases(&cases, &scope, stage))?
        }
        (ReportKind::Disbursement, drill) => {
            let summaries = payroll_summaries(held, &request.region)?;
            match drill {
                None => render(&tongban_report::disbursement_report(
                    &cases, &summaries, &scope,
                ))?,
                Some(key) => {
                    let mut parts = key.splitn(3, ':');
                    let (Some(county), Some(month), Some(kind)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad(
                            "--drill",
                            "a disbursement row is COUNTY:YYYY-MM:KIND, 130102:2026-11:living",
                        ));
                    };
                    let month = tongban_domain::payroll::YearMonth::parse(month)
                        .map_err(|e| bad("--drill", e))?;
                    let kind =
                        tongban_domain::policy::SubsidyKind::from_code(kind).ok_or_else(|| {
                            bad("--drill", format!("{kind:?} is not living or nursing"))
                        })?;
                    render(&tongban_report::disbursement_cases(
                        &cases, &scope, county, month, kind,
                    ))?
                }
            }
        }
        (ReportKind::Satisfaction, None) => {
            render(&tongban_report::satisfaction_report(&cases, &scope))?
        }
        (ReportKind::Satisfaction, Some(office)) => {
            render(&tongban_report::satisfaction_cases(&cases, &scope, office))?
        }
    };
    Ok(ReportAnswer {
        request: request.clone(),
        cases: cases.len(),
        supervisor,
        report,
        table,
        csv,
    })
}

/// Writes the Parquet export of what this node holds of `region` into `dir`
/// (`tongban_report::export_parquet`: steps, cases and payroll totals,
/// partitioned by province and month).
pub fn export(
    held: &Holdings,
    dir: &std::path::Path,
    region: &str,
) -> Result<tongban_report::ExportSummary, NodeError> {
    tongban_report::Region::parse(region).map_err(|e| bad("--region", e))?;
    crate::local::check_export_destination(dir)?;
    let (cases, _) = cases_for_report(held, region)?;
    let summaries = payroll_summaries(held, region)?;
    tongban_report::export_parquet(dir, &cases, &summaries)
        .map_err(|e| NodeError::Rejected(e.to_string()))
}
