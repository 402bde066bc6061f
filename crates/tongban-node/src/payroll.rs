//! The monthly payroll at county civil affairs (`tongban payroll`): the awards'
//! histories read from the signed chains this node holds, the county's earlier
//! payroll records, and the new record signed as a dataset
//! ([`tongban_domain::dataset::DatasetKind::Payroll`]) so that it travels to
//! the county's offices and into backups like a registry feed.
//!
//! The rules of who is paid what live in [`tongban_domain::payroll`]; this
//! module only gathers their inputs and keeps the record.

use serde::{Deserialize, Serialize};
use tongban_case::CaseDocument;
use tongban_domain::dataset::{DatasetKind, payroll_scope};
use tongban_domain::ids::{DisabilityLevel, Operator, ResidentId, Timestamp};
use tongban_domain::payroll::{
    AwardHistory, KindTotal, PayrollError, PayrollRecord, YearMonth, compute,
};
use tongban_domain::policy::{Policy, SubsidyKind};
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::dataset::Dataset;
use tongban_sync::check_dataset;

use crate::local::{LocalNode, NodeError};

/// What `tongban payroll` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayrollRun {
    /// The record (new, or the one signed before for this month).
    pub record: PayrollRecord,
    /// Its dataset version.
    pub version: u64,
    /// False when the month was already recorded and this is that record.
    pub signed_now: bool,
    /// Totals by kind.
    pub totals: Vec<(SubsidyKind, KindTotal)>,
}

impl PayrollRun {
    fn of(record: PayrollRecord, version: u64, signed_now: bool) -> PayrollRun {
        let totals = record.totals().into_iter().collect();
        PayrollRun {
            record,
            version,
            signed_now,
            totals,
        }
    }
}

/// A payroll ready to keep: the record already held, or a new one signed.
pub enum Prepared {
    /// The month was recorded before: nothing new is signed.
    Held(PayrollRun),
    /// A new record: the signed datasets to adopt — the record, then its
    /// summary for supervisors (`payroll_summary`, no person in it) — and
    /// the run.
    New(Vec<Vec<u8>>, PayrollRun),
}

/// The award histories of one case: each kind its decision awarded, with the
/// award's stages after the decision. Empty for a case without an approving
/// decision.
pub fn award_histories(doc: &CaseDocument) -> Result<Vec<AwardHistory>, NodeError> {
    let case = doc.read()?;
    let chain = doc.chain()?;
    let Some(decision) = case.decision.as_ref().filter(|d| d.outcome == "approve") else {
        return Ok(Vec::new());
    };
    let Some(decided_at) = chain
        .links
        .iter()
        .rposition(|l| l.signed.transition.to == Stage::Decided)
    else {
        return Ok(Vec::new());
    };
    let stages: Vec<_> = chain.links[decided_at..]
        .iter()
        .map(|l| &l.signed.transition)
        .filter(|t| matches!(t.to, Stage::Active | Stage::Suspended | Stage::Terminated))
        .map(|t| (t.to, t.at.china_date()))
        .collect();
    let bad = |what: String| NodeError::Rejected(format!("case {}: {what}", case.case_id));
    let holder = ResidentId::parse_on(&case.applicant.resident_id, chrono::NaiveDate::MAX)
        .map_err(|e| bad(format!("applicant resident_id: {e}")))?;
    let level = case
        .certificate
        .as_ref()
        .and_then(|c| u8::try_from(c.level).ok())
        .and_then(DisabilityLevel::new)
        .ok_or_else(|| bad("no disability certificate level".into()))?;
    let first_month = YearMonth::parse(&decision.first_paid_month)
        .map_err(|e| bad(format!("decision first_paid_month: {e}")))?;
    let mut out = Vec::new();
    for award in &decision.awards {
        let kind = SubsidyKind::from_code(&award.kind)
            .ok_or_else(|| bad(format!("unknown award kind {:?}", award.kind)))?;
        out.push(AwardHistory {
            case: case.case_id.clone(),
            holder: holder.clone(),
            name: case.applicant.name.clone(),
            kind,
            level,
            fixed_yuan: award
                .overridden
                .then(|| u32::try_from(award.monthly_yuan).unwrap_or(u32::MAX)),
            first_month,
            stages: stages.clone(),
        });
    }
    Ok(out)
}

impl LocalNode {
    /// The payroll records of `county` this node holds, verified, oldest month
    /// first, with their versions.
    pub fn payroll_records(&self, county: &str) -> Result<Vec<(PayrollRecord, u64)>, NodeError> {
        let (Some(authority), Ok(directory)) = (self.authority(), self.directory()) else {
            return Ok(Vec::new());
        };
        let cert = self.certificate(Timestamp::now())?;
        let prefix =
            tongban_replica::dataset_key(DatasetKind::Payroll.wire(), &format!("{county}:"));
        let mut out = Vec::new();
        for (_, bytes) in self.store().meta_with_prefix(&prefix)? {
            match check_dataset(&bytes, directory, &authority, cert.role, &cert.division) {
                Ok(held) => {
                    let d = &held.signed.dataset;
                    match PayrollRecord::decode(&d.payload) {
                        Ok(record) => out.push((record, d.version)),
                        Err(err) => tracing::warn!(%err, "a held payroll record does not decode"),
                    }
                }
                Err(err) => tracing::warn!(%err, "a stored payroll record is not held"),
            }
        }
        out.sort_by_key(|(r, _)| r.month);
        Ok(out)
    }

    /// Every award history of `county` among the cases this node holds that
    /// reached `active`.
    pub fn county_awards(&self, county: &str) -> Result<Vec<AwardHistory>, NodeError> {
        let mut out = Vec::new();
        for stage in [Stage::Active, Stage::Suspended, Stage::Terminated] {
            for case_id in self.store().cases_in_stage(stage, None, usize::MAX)? {
                let doc = self.case(&case_id)?;
                if !doc
                    .read_core()?
                    .applicant
                    .hukou_township
                    .starts_with(county)
                {
                    continue;
                }
                out.extend(award_histories(&doc)?);
            }
        }
        Ok(out)
    }

    /// The payroll of `county` for `month`, ready to keep: the record already
    /// held for that month, or a new one computed
    /// ([`tongban_domain::payroll::compute`]) and signed by this office. Only
    /// county civil affairs of `county` pays; a month before the latest
    /// recorded, or more than one month ahead of today, is refused.
    pub fn prepare_payroll(
        &self,
        county: &str,
        month: YearMonth,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<Prepared, NodeError> {
        let cert = self.certificate(now)?;
        if cert.role != Role::CountyCivilAffairs || cert.division.as_str() != county {
            return Err(NodeError::Rejected(format!(
                "补贴发放由本县民政部门办理 the payroll of county {county} is made by its county civil affairs, not {} ({}, {})",
                cert.office,
                cert.role.code(),
                cert.division
            )));
        }
        let this_month = YearMonth::of(now.china_date());
        if month > this_month.next() {
            return Err(NodeError::Rejected(format!(
                "--month {month}: 最多提前一个月编制 a payroll is made at most one month ahead ({})",
                this_month.next()
            )));
        }
        let earlier = self.payroll_records(county)?;
        if let Some((record, version)) = earlier.iter().find(|(r, _)| r.month == month) {
            return Ok(Prepared::Held(PayrollRun::of(
                record.clone(),
                *version,
                false,
            )));
        }
        if let Some((latest, _)) = earlier.last().filter(|(r, _)| r.month > month) {
            return Err(NodeError::Rejected(format!(
                "--month {month}: 已有更晚月份 {} 的发放记录 a later month is already paid; months not paid then are paid back by the next payroll",
                latest.month
            )));
        }
        let awards = self.county_awards(county)?;
        let records: Vec<PayrollRecord> = earlier.into_iter().map(|(r, _)| r).collect();
        let mut record = compute(county, month, &awards, &records, |province| {
            Policy::for_province(province).ok()
        })
        .map_err(|err| match err {
            PayrollError::PaidTwice { .. } => NodeError::Duplicate(err.to_string()),
            other => NodeError::Rejected(other.to_string()),
        })?;
        record.operator = operator.to_string();
        let payload = record.encode();
        if payload.len() > tongban_domain::payroll::MAX_RECORD_BYTES {
            return Err(NodeError::Rejected(format!(
                "发放记录过大 the record of {county} {month} would be {} bytes, more than the {} a signed record holds",
                payload.len(),
                tongban_domain::payroll::MAX_RECORD_BYTES
            )));
        }
        let dataset = Dataset {
            kind: DatasetKind::Payroll,
            scope: payroll_scope(county, month),
            version: 1,
            issued_at: now,
            issuer: Some(self.office().clone()),
            public_key: self.public_key(),
            payload,
        };
        let bytes = dataset.sign(self.key()).encode();
        let totals = record.totals();
        let summary = tongban_domain::supervision::PayrollSummary {
            county: county.to_string(),
            month,
            living: totals
                .get(&tongban_domain::policy::SubsidyKind::Living)
                .copied()
                .unwrap_or_default(),
            nursing: totals
                .get(&tongban_domain::policy::SubsidyKind::Nursing)
                .copied()
                .unwrap_or_default(),
        };
        let summary = Dataset {
            kind: DatasetKind::PayrollSummary,
            scope: payroll_scope(county, month),
            version: 1,
            issued_at: now,
            issuer: Some(self.office().clone()),
            public_key: self.public_key(),
            payload: serde_json::to_vec(&summary)
                .map_err(|e| NodeError::Rejected(format!("payroll summary: {e}")))?,
        };
        let summary = summary.sign(self.key()).encode();
        Ok(Prepared::New(
            vec![bytes, summary],
            PayrollRun::of(record, 1, true),
        ))
    }

    /// `tongban payroll` on a stopped node: prepares the payroll and keeps a
    /// new record in the store (checked as one from a peer); the node sends it
    /// to the county's offices when it runs.
    pub fn payroll(
        &mut self,
        county: &str,
        month: YearMonth,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<PayrollRun, NodeError> {
        match self.prepare_payroll(county, month, operator, now)? {
            Prepared::Held(run) => Ok(run),
            Prepared::New(datasets, run) => {
                for bytes in &datasets {
                    self.import_dataset(bytes)?;
                }
                tracing::info!(county, %month, lines = run.record.lines.len(), "payroll signed");
                Ok(run)
            }
        }
    }
}
