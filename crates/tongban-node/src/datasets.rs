//! The signed reference datasets a node holds (the working-day calendar, its
//! county's registry feeds): listing them, importing one given by hand, and —
//! at the issuing office — signing a registry feed from the registry's CSV.
//!
//! Every check is `tongban_sync::check_dataset` (signature, issuer by the one
//! table in `tongban_domain::dataset`, payload, whether it may reach this
//! office), the same check sync runs on a dataset from a peer.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tongban_case::{CaseDocument, CaseError, SigningOffice};
use tongban_domain::dataset::{DatasetKind, Issuer};
use tongban_domain::ids::Timestamp;
use tongban_domain::ids::{Operator, ResidentId};
use tongban_domain::policy::SubsidyKind;
use tongban_domain::registry::{
    AwardState, DEATH_REASON, Feed, Finding, Stated, award_check, compare,
};
use tongban_domain::stage::Stage;
use tongban_ledger::dataset::Dataset;
use tongban_sync::{AdoptError, HeldDataset, check_dataset};

use crate::local::{LocalNode, NodeError};

/// What `tongban feed show` lists of one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Kind code (`calendar`, `certificates`, `dibao`, `deaths`).
    pub kind: DatasetKind,
    /// `00` or a county code.
    pub scope: String,
    /// Version.
    pub version: u64,
    /// The issuing office, or `authority`.
    pub issuer: String,
    /// When it was signed (ms UTC).
    pub issued_at_ms: i64,
    /// When it was signed, Beijing time.
    pub issued_at: String,
    /// What it holds (`2025, 2026`, `41 rows`).
    pub holds: String,
}

impl DatasetInfo {
    /// The listing of a held dataset.
    pub fn of(held: &HeldDataset) -> DatasetInfo {
        let d = &held.signed.dataset;
        DatasetInfo {
            kind: d.kind,
            scope: d.scope.clone(),
            version: d.version,
            issuer: d
                .issuer
                .as_ref()
                .map_or_else(|| "authority".to_string(), ToString::to_string),
            issued_at_ms: d.issued_at.0,
            issued_at: d.issued_at.china_display(),
            holds: held.summary.clone(),
        }
    }
}

/// What `tongban check run` did to one award.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The case.
    pub case: String,
    /// Its stage before.
    pub from: String,
    /// Its stage now (`suspended`, `terminated`, `active`), when the check
    /// signed a transition.
    pub to: String,
    /// Why, with the feeds and versions (signed in the transition's opinion).
    pub reason: String,
    /// Set when the transition could not be signed: why.
    pub error: Option<String>,
}

/// A dataset refused, as the office sees it.
pub(crate) fn refused(err: AdoptError) -> NodeError {
    match err {
        AdoptError::Sync(err) => NodeError::Rejected(err.to_string()),
        other => NodeError::Rejected(format!("数据集被拒绝 dataset refused: {other}")),
    }
}

impl LocalNode {
    /// The facts of this office the dataset rules need: role and division.
    /// Without a certificate valid now, only national datasets are held (a
    /// supervisor of the nation receives exactly those).
    fn dataset_place(&self) -> (tongban_domain::stage::Role, String) {
        match self.certificate(Timestamp::now()) {
            Ok(cert) => (cert.role, cert.division.clone()),
            Err(_) => (tongban_domain::stage::Role::Supervisor, "00".to_string()),
        }
    }

    /// Every dataset the store holds that verifies and may reach this office.
    pub fn held_datasets(&self) -> Result<Vec<HeldDataset>, NodeError> {
        let (Some(authority), Ok(directory)) = (self.authority(), self.directory()) else {
            return Ok(Vec::new());
        };
        let (role, division) = self.dataset_place();
        let mut out = Vec::new();
        for (_, bytes) in self
            .store()
            .meta_with_prefix(tongban_replica::META_DATASET_PREFIX)?
        {
            match check_dataset(&bytes, directory, &authority, role, &division) {
                Ok(held) => out.push(held),
                Err(err) => tracing::warn!(%err, "a stored dataset is not held"),
            }
        }
        out.sort_by(|a, b| {
            let (a, b) = (&a.signed.dataset, &b.signed.dataset);
            (a.kind, &a.scope).cmp(&(b.kind, &b.scope))
        });
        Ok(out)
    }

    /// The held dataset of `kind` for `scope`.
    pub fn held_dataset(
        &self,
        kind: DatasetKind,
        scope: &str,
    ) -> Result<Option<HeldDataset>, NodeError> {
        // One row read and checked: opening a node (its calendar) and every
        // review (its county's feeds) asks for one dataset, not for all.
        let (Some(authority), Ok(directory)) = (self.authority(), self.directory()) else {
            return Ok(None);
        };
        let key = tongban_replica::dataset_key(kind.wire(), scope);
        let Some(bytes) = self.store().meta(&key)? else {
            return Ok(None);
        };
        let (role, division) = self.dataset_place();
        match check_dataset(&bytes, directory, &authority, role, &division) {
            Ok(held) => Ok(Some(held)),
            Err(err) => {
                tracing::warn!(%err, "a stored dataset is not held");
                Ok(None)
            }
        }
    }

    /// Stores a signed dataset given by hand into a stopped node (a running
    /// node takes it through its sync engine, which also passes it on): it must
    /// pass [`check_dataset`] and be newer than the one held. Answers the
    /// version.
    pub fn import_dataset(&mut self, bytes: &[u8]) -> Result<u64, NodeError> {
        let authority = self.authority().ok_or(NodeError::NoDirectory)?;
        let (role, division) = self.dataset_place();
        let held = check_dataset(bytes, self.directory()?, &authority, role, &division)
            .map_err(refused)?;
        let d = &held.signed.dataset;
        if let Some(current) = self.held_dataset(d.kind, &d.scope)? {
            let version = current.signed.dataset.version;
            if version >= d.version {
                return Err(refused(AdoptError::NotNewer {
                    kind: d.kind,
                    scope: d.scope.clone(),
                    held: version,
                    given: d.version,
                }));
            }
        }
        let key = tongban_replica::dataset_key(d.kind.wire(), &d.scope);
        self.store().write(|tx| tx.set_meta(&key, bytes))?;
        if d.kind == DatasetKind::Calendar {
            self.reload_calendar()?;
        }
        if d.kind == DatasetKind::Policy {
            self.install_policies()?;
        }
        Ok(d.version)
    }

    /// The registry feeds of `county` this node holds, decoded, with their
    /// versions.
    pub fn county_feeds(&self, county: &str) -> Result<Vec<(Feed, u64)>, NodeError> {
        let mut feeds = Vec::new();
        for kind in DatasetKind::ALL.into_iter().filter(|k| k.is_feed()) {
            let Some(held) = self.held_dataset(kind, county)? else {
                continue;
            };
            let d = &held.signed.dataset;
            match Feed::decode(d.kind, &d.payload) {
                Ok(feed) => feeds.push((feed, d.version)),
                Err(err) => {
                    tracing::warn!(%err, kind = d.kind.code(), "a held feed does not decode")
                }
            }
        }
        Ok(feeds)
    }

    /// The findings of the feeds of `doc`'s domicile county this node holds
    /// ([`tongban_domain::registry::compare`]).
    pub fn findings(&self, doc: &CaseDocument) -> Result<Vec<Finding>, NodeError> {
        let county: String = doc
            .read()?
            .applicant
            .hukou_township
            .chars()
            .take(6)
            .collect();
        findings_with(doc, &self.county_feeds(&county)?)
    }

    /// Records the findings of the county's feeds in `doc` when this office
    /// may write them at the case's stage (the write-rights table: the
    /// reviewing office of that stage); an office without that right, or a
    /// node without the feeds, records nothing.
    pub fn compare_with_feeds(
        &self,
        doc: &mut CaseDocument,
        signer: &SigningOffice<'_>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<usize, NodeError> {
        let findings = self.findings(doc)?;
        record_findings(doc, signer, operator, now, &findings)
    }

    /// The dynamic check (动态管理) of every active or suspended award of
    /// `county` this node holds, and of every award it terminated itself for a
    /// death registration (which a later feed may show was made in error), against the latest feeds of that county
    /// ([`tongban_domain::registry::award_check`], the one rule): each finding
    /// is recorded as a confirmation, then a suspension, termination or
    /// resumption is signed by this office with the reason and the feed
    /// versions in its opinion. Only county civil affairs of `county` signs
    /// them (the stage table); any other office is refused before anything is
    /// written.
    pub fn check_awards(
        &self,
        county: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<Vec<CheckResult>, NodeError> {
        let cert = self.certificate(now)?;
        if cert.role != tongban_domain::stage::Role::CountyCivilAffairs
            || cert.division.as_str() != county
        {
            return Err(NodeError::Rejected(format!(
                "动态核查由本县民政部门进行 the check of county {county} is run by its county civil affairs, not {} ({}, {})",
                cert.office,
                cert.role.code(),
                cert.division
            )));
        }
        let feeds = self.county_feeds(county)?;
        if feeds.is_empty() {
            return Err(NodeError::Rejected(format!(
                "本节点没有县 {county} 的比对数据 this node holds no feed of county {county}: nothing to check against"
            )));
        }
        let refs: Vec<(&Feed, u64)> = feeds.iter().map(|(f, v)| (f, *v)).collect();
        let mut out = Vec::new();
        for stage in [Stage::Active, Stage::Suspended, Stage::Terminated] {
            for case_id in self.store().cases_in_stage(stage, None, usize::MAX)? {
                let mut doc = self.case(&case_id)?;
                let case = doc.read()?;
                if !case.applicant.hukou_township.starts_with(county) {
                    continue;
                }
                if stage == Stage::Terminated
                    && !case
                        .reviews
                        .iter()
                        .rev()
                        .find(|r| r.stage == Stage::Terminated.code())
                        .is_some_and(|r| r.opinion.starts_with(DEATH_REASON))
                {
                    // Ended by a decision of the office, not by a feed: only
                    // a signed decision resumes it (`case award --action resume`).
                    continue;
                }
                let Some(decision) = &case.decision else {
                    continue;
                };
                let Ok(holder) = ResidentId::parse_on(&case.applicant.resident_id, NaiveDate::MAX)
                else {
                    continue;
                };
                let award = AwardState {
                    holder,
                    kinds: decision
                        .awards
                        .iter()
                        .filter_map(|a| SubsidyKind::from_code(&a.kind))
                        .collect(),
                    stated: tongban_case::document::applicant_facts(&case),
                    stage,
                };
                let province = county.get(..2).unwrap_or("00");
                let policy = tongban_domain::policy::Policy::for_province(province)
                    .map_err(|e| NodeError::Rejected(e.to_string()))?;
                let Some(action) = award_check(&award, &refs, policy) else {
                    continue;
                };
                let signer = self.signing(now)?;
                // The feeds decoded once for the whole run, not per award.
                let result = findings_with(&doc, &feeds)
                    .and_then(|found| record_findings(&mut doc, &signer, operator, now, &found))
                    .and_then(|_| {
                        let payload = tongban_case::Payload {
                            opinion: action.reason.clone(),
                            ..tongban_case::Payload::default()
                        };
                        doc.apply(action.to, &signer, operator, now, &payload)?;
                        self.save(&case_id, &mut doc)
                    });
                tracing::info!(
                    case = case_id.short(),
                    to = action.to.code(),
                    ok = result.is_ok(),
                    "dynamic check"
                );
                out.push(CheckResult {
                    case: case_id.to_string(),
                    from: stage.code().to_string(),
                    to: action.to.code().to_string(),
                    reason: action.reason,
                    error: result.err().map(|e| e.to_string()),
                });
            }
        }
        Ok(out)
    }

    /// Signs this office's registry feed of `kind` from the registry's CSV
    /// export (`docs/cli.md` has the columns): the office must be the issuer
    /// the kind names (`tongban_domain::dataset`); the scope is its county;
    /// the version follows the one held. Nothing is stored: the caller imports
    /// the bytes (a stopped node) or hands them to the running engine.
    pub fn sign_feed(
        &self,
        kind: DatasetKind,
        csv: &str,
        now: Timestamp,
        today: NaiveDate,
    ) -> Result<Vec<u8>, NodeError> {
        let Issuer::Office(role) = kind.issuer() else {
            return Err(NodeError::Rejected(format!(
                "{} ({kind}) 由目录管理机构发布 is published by the directory authority",
                kind.zh()
            )));
        };
        let cert = self.certificate(now)?;
        if cert.role != role {
            return Err(NodeError::Rejected(format!(
                "{}（{kind}）只能由{}发布 is published by the {} only; this office is {}",
                kind.zh(),
                role.zh(),
                role.code(),
                cert.role.code()
            )));
        }
        let scope = cert.division.clone();
        let feed = Feed::parse_csv(kind, csv, today)
            .map_err(|e| NodeError::Rejected(format!("CSV {e}")))?;
        let version = self
            .held_dataset(kind, &scope)?
            .map_or(1, |h| h.signed.dataset.version + 1);
        let dataset = Dataset {
            kind,
            scope,
            version,
            issued_at: now,
            issuer: Some(self.office().clone()),
            public_key: self.public_key(),
            payload: feed.encode(),
        };
        Ok(dataset.sign(self.key()).encode())
    }
}

/// What `feeds` (a county's, decoded) confirm or contradict of `doc`.
fn findings_with(doc: &CaseDocument, feeds: &[(Feed, u64)]) -> Result<Vec<Finding>, NodeError> {
    if feeds.is_empty() {
        return Ok(Vec::new());
    }
    let case = doc.read()?;
    let Ok(holder) = ResidentId::parse_on(&case.applicant.resident_id, NaiveDate::MAX) else {
        return Ok(Vec::new());
    };
    let stated = Stated {
        holder,
        certificate: case.certificate.as_ref().map(|c| c.number.clone()),
        living: case.subsidy_kinds.iter().any(|k| k == "living"),
        dibao: case.household.dibao,
    };
    let refs: Vec<(&Feed, u64)> = feeds.iter().map(|(f, v)| (f, *v)).collect();
    Ok(compare(&stated, &refs))
}

/// Signs `findings` into `doc` as this office's write where the write-rights
/// table lets it at the case's stage; elsewhere records nothing.
fn record_findings(
    doc: &mut CaseDocument,
    signer: &SigningOffice<'_>,
    operator: &Operator,
    now: Timestamp,
    findings: &[Finding],
) -> Result<usize, NodeError> {
    if findings.is_empty() {
        return Ok(0);
    }
    match doc.record_confirmations(signer, operator, now, findings) {
        Ok(n) => Ok(n),
        // Not this office's to write at this stage: the review that may
        // records them.
        Err(CaseError::Write(_)) => Ok(0),
        Err(err) => Err(err.into()),
    }
}
