//! [`Office`]: every operation an office command runs on its node, as one trait.
//!
//! A command does not care whether its node runs: [`LocalNode`] implements
//! `Office` on the store opened in this process, and the control-API client
//! ([`crate::client::Client`]) implements it by asking the running node, which
//! runs the very same `LocalNode` method on its engine. [`crate::client::open`]
//! picks one. So each command is written once, against this trait, and both
//! paths share one code path for every rule.

use std::path::Path;

use tongban_case::{CaseDocument, IntakeForm, Payload};
use tongban_domain::calendar::Calendar;
use tongban_domain::dataset::DatasetKind;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::{Directory, OfficeCertificate};
use tongban_ledger::keys::PublicKey;
use tongban_store::{BackupSummary, MaterialHash, Progress};

use crate::archive::ExportError;
use crate::datasets::{CheckResult, DatasetInfo};
use crate::duplicates::CaseDuplicates;
use crate::local::{CaseRow, LocalNode, MaterialCheck, NewCase, NodeError};
use crate::materials::{MaterialError, MaterialRow};
use crate::payroll::PayrollRun;
use crate::status::NodeStatus;
use crate::supervision::{Holdings, ReportAnswer, ReportRequest};
use tongban_domain::payroll::YearMonth;

/// One office node, as the commands see it: on the store directly, or through
/// the running node's control API.
pub trait Office {
    /// This office.
    fn office(&self) -> &OfficeId;

    /// The default operator of `node.toml`.
    fn default_operator(&self) -> Option<&str>;

    /// The working-day calendar, imported years included.
    fn calendar(&self) -> &Calendar;

    /// The directory the node holds.
    fn directory(&self) -> Result<&Directory, NodeError>;

    /// Whether a running node answers the command (and syncs what it writes).
    fn running(&self) -> bool;

    /// This office's certificate in the directory it holds, valid at `now`.
    fn certificate(&self, now: Timestamp) -> Result<OfficeCertificate, NodeError>;

    /// A case held by the node.
    fn case(&self, case: &CaseId) -> Result<CaseDocument, NodeError>;

    /// `node directory-import`: a signed directory, verified against the
    /// authority the node trusts (`authority`, when given, must be that key;
    /// the first import on a stopped node needs it). Answers the version now
    /// held. A running node also passes it to its peers.
    fn import_directory(
        &mut self,
        bytes: &[u8],
        authority: Option<PublicKey>,
    ) -> Result<u64, NodeError>;

    /// `feed show`: the signed datasets the node holds.
    fn datasets(&self) -> Result<Vec<DatasetInfo>, NodeError>;

    /// `feed export`: the signed bytes of the dataset of `kind` for `scope`,
    /// if held (to carry to an offline node by hand).
    fn dataset_bytes(&self, kind: DatasetKind, scope: &str) -> Result<Option<Vec<u8>>, NodeError>;

    /// `node dataset-import`, `calendar publish --data-dir`: a signed dataset,
    /// checked as one from a peer and stored when newer; a running node also
    /// passes it to its peers. Answers the version.
    fn import_dataset(&mut self, bytes: &[u8]) -> Result<u64, NodeError>;

    /// `feed publish`: signs this office's registry feed of `kind` from the
    /// registry's CSV and takes it as [`Office::import_dataset`] does.
    fn publish_feed(&mut self, kind: DatasetKind, csv: &str) -> Result<u64, NodeError>;

    /// `case export`: the encoded archive of one case ([`crate::archive`]).
    fn archive(
        &self,
        case: &CaseId,
        with_materials: bool,
        now: Timestamp,
    ) -> Result<Vec<u8>, ExportError>;

    /// `case new`.
    fn new_case(
        &self,
        form: &IntakeForm,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<NewCase, NodeError>;

    /// `case attach`: a file as a material of a case, at most
    /// [`crate::local::MAX_MATERIAL_BYTES`], never held whole in memory.
    /// Answers the material's hash (hex).
    fn attach(
        &self,
        case: &CaseId,
        file: &Path,
        kind: &str,
        media_type: Option<&str>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<String, NodeError>;

    /// `case material list`: the materials the case records, each with
    /// whether this node holds its bytes ([`crate::materials::list`]).
    fn materials(&self, case: &CaseId) -> Result<Vec<MaterialRow>, NodeError>;

    /// `case material get`: the bytes of the material `hash` of a case, checked
    /// against the hash, for an office of the case only
    /// ([`crate::materials::may_hand_out`]); at most
    /// [`crate::local::MAX_MATERIAL_BYTES`].
    fn material(&self, case: &CaseId, hash: &MaterialHash) -> Result<Vec<u8>, MaterialError>;

    /// Signs a stage transition.
    fn act(
        &self,
        case: &CaseId,
        to: Stage,
        payload: &Payload,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError>;

    /// Records the applicant's evaluation.
    fn evaluate(
        &self,
        case: &CaseId,
        score: u8,
        comment: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError>;

    /// `check run`: the dynamic check of every award of `county`
    /// ([`LocalNode::check_awards`]).
    fn check_awards(
        &self,
        county: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<Vec<CheckResult>, NodeError>;

    /// `payroll`: the payroll of `county` for `month`, signed and kept as a
    /// record, or the record already kept ([`LocalNode::payroll`]).
    fn payroll(
        &mut self,
        county: &str,
        month: YearMonth,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<PayrollRun, NodeError>;

    /// `case list` rows.
    fn list(
        &self,
        stage: Option<Stage>,
        today: chrono::NaiveDate,
    ) -> Result<Vec<CaseRow>, NodeError>;

    /// A consistent backup of the node's store into `out` (taken by the
    /// running node when there is one). `out` must not exist and must lie
    /// outside every node's data directory.
    /// `progress` is told the bytes written and about how many there will be
    /// (a running node writes the backup itself and tells nothing).
    fn backup(&self, out: &Path, progress: Progress<'_>) -> Result<BackupSummary, NodeError>;

    /// Every stored material of `cases` read back and rehashed (a running node
    /// checks every case it holds).
    fn rehash_materials(&self, cases: &[CaseId]) -> Result<MaterialCheck, NodeError>;

    /// A supervision report (or one row's cases) from what the node holds
    /// ([`crate::supervision::report`]).
    fn report(&self, request: &ReportRequest) -> Result<ReportAnswer, NodeError>;

    /// The Parquet export of what the node holds of `region` into `dir`
    /// (written by the running node when there is one).
    fn export(&self, dir: &Path, region: &str) -> Result<tongban_report::ExportSummary, NodeError>;

    /// Every case the node holds, sorted.
    fn case_ids(&self) -> Result<Vec<CaseId>, NodeError>;

    /// `verify --all` of `cases`: the reports that found something, after
    /// `progress` was told of each case. Through a running node, one case
    /// at a time over the control API; on the store, on all cores
    /// ([`crate::verify::verify_cases`]).
    fn verify_all(
        &self,
        cases: &[CaseId],
        now: tongban_domain::ids::Timestamp,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<crate::verify::VerifiedStore, NodeError> {
        let mut out = crate::verify::VerifiedStore::default();
        for case in cases {
            let mut doc = self.case(case)?;
            let report = doc.verify(self.directory()?, self.calendar(), now)?;
            if !report.is_ok() {
                out.failed.push(report);
            }
            out.cases += 1;
            progress(1);
        }
        Ok(out)
    }

    /// The node's status.
    fn status(&self) -> Result<NodeStatus, NodeError>;

    /// `case show`: the other cases of the same person that claim a subsidy
    /// kind the case claims, and whether the node flagged it a duplicate
    /// ([`crate::duplicates`]).
    fn duplicates(&self, case: &CaseId) -> Result<CaseDuplicates, NodeError>;

    /// What this office may do on the case now, from the stage table and the
    /// write-rights table ([`crate::local::actions_of`]).
    fn actions(&self, case: &CaseId) -> Result<crate::local::CaseActions, NodeError>;

    /// Materials of the case's notice (一次性告知) not yet attached: `(code, zh)`.
    fn missing_materials(&self, doc: &CaseDocument) -> Result<Vec<(String, String)>, NodeError> {
        crate::local::missing_materials(doc)
    }
}

impl Office for LocalNode {
    fn office(&self) -> &OfficeId {
        LocalNode::office(self)
    }

    fn default_operator(&self) -> Option<&str> {
        LocalNode::default_operator(self)
    }

    fn calendar(&self) -> &Calendar {
        LocalNode::calendar(self)
    }

    fn directory(&self) -> Result<&Directory, NodeError> {
        LocalNode::directory(self)
    }

    fn running(&self) -> bool {
        false
    }

    fn certificate(&self, now: Timestamp) -> Result<OfficeCertificate, NodeError> {
        LocalNode::certificate(self, now).cloned()
    }

    fn case(&self, case: &CaseId) -> Result<CaseDocument, NodeError> {
        LocalNode::case(self, case)
    }

    fn import_directory(
        &mut self,
        bytes: &[u8],
        authority: Option<PublicKey>,
    ) -> Result<u64, NodeError> {
        LocalNode::import_directory(self, bytes, authority)
    }

    fn datasets(&self) -> Result<Vec<DatasetInfo>, NodeError> {
        Ok(self.held_datasets()?.iter().map(DatasetInfo::of).collect())
    }

    fn dataset_bytes(&self, kind: DatasetKind, scope: &str) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(self.held_dataset(kind, scope)?.map(|h| h.bytes.to_vec()))
    }

    fn import_dataset(&mut self, bytes: &[u8]) -> Result<u64, NodeError> {
        LocalNode::import_dataset(self, bytes)
    }

    fn publish_feed(&mut self, kind: DatasetKind, csv: &str) -> Result<u64, NodeError> {
        let now = Timestamp::now();
        let bytes = self.sign_feed(kind, csv, now, now.china_date())?;
        LocalNode::import_dataset(self, &bytes)
    }

    fn archive(
        &self,
        case: &CaseId,
        with_materials: bool,
        now: Timestamp,
    ) -> Result<Vec<u8>, ExportError> {
        crate::archive::export(self, case, with_materials, now).map(|a| a.encode())
    }

    fn new_case(
        &self,
        form: &IntakeForm,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<NewCase, NodeError> {
        LocalNode::new_case(self, form, operator, now)
    }

    fn attach(
        &self,
        case: &CaseId,
        file: &Path,
        kind: &str,
        media_type: Option<&str>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<String, NodeError> {
        LocalNode::attach(self, case, file, kind, media_type, operator, now)
    }

    fn materials(&self, case: &CaseId) -> Result<Vec<MaterialRow>, NodeError> {
        crate::materials::list(self, case)
    }

    fn material(&self, case: &CaseId, hash: &MaterialHash) -> Result<Vec<u8>, MaterialError> {
        crate::materials::read(self, case, hash)
    }

    fn act(
        &self,
        case: &CaseId,
        to: Stage,
        payload: &Payload,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        LocalNode::act(self, case, to, payload, operator, now)
    }

    fn evaluate(
        &self,
        case: &CaseId,
        score: u8,
        comment: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        LocalNode::evaluate(self, case, score, comment, operator, now)
    }

    fn check_awards(
        &self,
        county: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<Vec<CheckResult>, NodeError> {
        LocalNode::check_awards(self, county, operator, now)
    }

    fn payroll(
        &mut self,
        county: &str,
        month: YearMonth,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<PayrollRun, NodeError> {
        LocalNode::payroll(self, county, month, operator, now)
    }

    fn list(
        &self,
        stage: Option<Stage>,
        today: chrono::NaiveDate,
    ) -> Result<Vec<CaseRow>, NodeError> {
        LocalNode::list(self, stage, today)
    }

    fn backup(&self, out: &Path, progress: Progress<'_>) -> Result<BackupSummary, NodeError> {
        crate::local::check_backup_destination(out)?;
        self.store()
            .backup_to_with(out, progress)
            .map_err(|e| NodeError::Rejected(e.to_string()))
    }

    fn rehash_materials(&self, cases: &[CaseId]) -> Result<MaterialCheck, NodeError> {
        LocalNode::rehash_materials(self, cases)
    }

    fn report(&self, request: &ReportRequest) -> Result<ReportAnswer, NodeError> {
        crate::supervision::report(&Holdings::of(self)?, request)
    }

    fn export(&self, dir: &Path, region: &str) -> Result<tongban_report::ExportSummary, NodeError> {
        crate::supervision::export(&Holdings::of(self)?, dir, region)
    }

    fn case_ids(&self) -> Result<Vec<CaseId>, NodeError> {
        let mut ids = Vec::new();
        let mut cursor = 0;
        loop {
            let batch = self.store().changes_since(cursor, 1000)?;
            let Some(last) = batch.last() else { break };
            cursor = last.seq;
            ids.extend(
                batch
                    .into_iter()
                    .filter(|c| c.attestation.is_none())
                    .map(|c| c.case),
            );
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn status(&self) -> Result<NodeStatus, NodeError> {
        crate::status::status_from_store(self)
    }

    fn verify_all(
        &self,
        cases: &[CaseId],
        now: tongban_domain::ids::Timestamp,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<crate::verify::VerifiedStore, NodeError> {
        crate::verify::verify_cases(self, cases, now, progress)
    }

    fn duplicates(&self, case: &CaseId) -> Result<CaseDuplicates, NodeError> {
        LocalNode::duplicates(self, case)
    }

    fn actions(&self, case: &CaseId) -> Result<crate::local::CaseActions, NodeError> {
        LocalNode::actions(self, case, Timestamp::now())
    }
}
