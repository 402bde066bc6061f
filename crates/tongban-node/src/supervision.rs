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
                store.write(|tx| tx.put_supervised(case, &bytes))?;
                written += 1;
            }
        }
        after = Some(last);
    }
    Ok(written)
}

/// Every supervised case this node holds that concerns `region` (a division
/// code prefix, `00` for all), read in one pass. A row that does not decode
/// is an error naming the case: the store is damaged.
pub fn supervised_cases(local: &LocalNode, region: &str) -> Result<Vec<SupervisedCase>, NodeError> {
    let mut out = Vec::new();
    let visited = local.store().for_each_supervised(|case, bytes| {
        let supervised: SupervisedCase = serde_json::from_slice(bytes).map_err(|e| {
            NodeError::Rejected(format!(
                "supervised row of case {case} does not decode: {e}"
            ))
        })?;
        if supervised.in_region(region) {
            out.push(supervised);
        }
        Ok::<(), NodeError>(())
    })?;
    visited?;
    Ok(out)
}

/// The payroll summaries this node holds of counties in `region` (a division
/// prefix, `00` for all), each verified as one from a peer, by county then
/// month.
pub fn payroll_summaries(
    local: &LocalNode,
    region: &str,
) -> Result<Vec<tongban_domain::supervision::PayrollSummary>, NodeError> {
    use tongban_domain::dataset::DatasetKind;
    let (Some(authority), Ok(directory)) = (local.authority(), local.directory()) else {
        return Ok(Vec::new());
    };
    let cert = local.certificate(tongban_domain::ids::Timestamp::now())?;
    let region = if region == "00" { "" } else { region };
    let prefix = tongban_replica::dataset_key(DatasetKind::PayrollSummary.wire(), region);
    let mut out = Vec::new();
    for (_, bytes) in local.store().meta_with_prefix(&prefix)? {
        match tongban_sync::check_dataset(&bytes, directory, &authority, cert.role, &cert.division)
        {
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
