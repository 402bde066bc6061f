//! `verify --all` on a node's own store: every case's signed history checked
//! against the directory ([`tongban_case::CaseDocument::verify`], the one
//! verifier every path uses), on all cores, keeping only the reports that
//! found something — a hub's million cases must not be a million reports in
//! memory.
//!
//! Also the floor `tongban bench verify` measures it against: loading the
//! same documents and checking every signed record they hold in batches.

use rayon::prelude::*;
use tongban_case::CaseDocument;
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_ledger::verify::{Report, VerifiedSignatures};

use crate::local::{LocalNode, NodeError};

/// Cases verified in one parallel step (and between progress reports).
const CHUNK: usize = 512;

/// What `verify --all` found.
#[derive(Debug, Default)]
pub struct VerifiedStore {
    /// Cases verified.
    pub cases: u64,
    /// The reports of the cases that failed, in case order.
    pub failed: Vec<Report>,
}

fn load(node: &LocalNode, case: &CaseId) -> Result<(Vec<u8>, CaseDocument), NodeError> {
    let bytes = node
        .store()
        .case_bytes(case)?
        .ok_or_else(|| NodeError::UnknownCase(case.clone()))?;
    let doc = CaseDocument::load(&bytes)?;
    Ok((bytes, doc))
}

/// Verifies every case of `cases` held by `node`; `progress` is told how many
/// were done after each step.
pub fn verify_cases(
    node: &LocalNode,
    cases: &[CaseId],
    now: Timestamp,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifiedStore, NodeError> {
    let directory = node.directory()?;
    let calendar = node.calendar();
    let mut out = VerifiedStore::default();
    for chunk in cases.chunks(CHUNK) {
        let reports: Vec<Result<Report, NodeError>> = chunk
            .par_iter()
            .map(|case| {
                let (bytes, mut doc) = load(node, case)?;
                Ok(doc.verify_saved(&bytes, directory, calendar, now)?)
            })
            .collect();
        for report in reports {
            let report = report?;
            if !report.is_ok() {
                out.failed.push(report);
            }
        }
        out.cases += chunk.len() as u64;
        progress(chunk.len() as u64);
    }
    Ok(out)
}

/// The floor of [`verify_cases`]: each document loaded from the store as
/// verification loads it, and every signed record it holds (transitions and
/// signed changes) checked in one batch a step, on all cores. Answers how
/// many records were checked; fails if a batch does not verify.
pub fn floor(
    node: &LocalNode,
    cases: &[CaseId],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, NodeError> {
    let mut records = 0;
    for chunk in cases.chunks(CHUNK) {
        let parts: Vec<Result<Vec<Vec<u8>>, NodeError>> = chunk
            .par_iter()
            .map(|case| {
                let (bytes, mut doc) = load(node, case)?;
                let scan =
                    tongban_case::authorship::scan_saved(doc.automerge_mut().document(), &bytes);
                Ok(scan.record_bytes().map(<[u8]>::to_vec).collect())
            })
            .collect();
        let mut all = Vec::new();
        for part in parts {
            all.extend(part?);
        }
        // Two batches, one a core, as verification runs on both.
        let half = all.len() / 2;
        let (a, b) = all.split_at(half);
        let (ok_a, ok_b) = rayon::join(
            || VerifiedSignatures::batch(a.iter().map(Vec::as_slice)).is_some(),
            || VerifiedSignatures::batch(b.iter().map(Vec::as_slice)).is_some(),
        );
        if !(ok_a && ok_b) {
            return Err(NodeError::Rejected(
                "a batch of signatures did not verify".into(),
            ));
        }
        records += all.len() as u64;
        progress(chunk.len() as u64);
    }
    Ok(records)
}
