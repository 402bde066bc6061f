//! How a command reaches its node: through the running daemon's control API when
//! one runs (redb admits one process per store), on the store directly otherwise.
//!
//! [`Target`] offers the same operations either way; the daemon runs the very
//! [`LocalNode`] method the direct path runs, so both paths share one code path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tongban_case::{CaseDocument, IntakeForm, Payload};
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::Directory;

use crate::control::{
    ApiError, EvaluationRequest, ListQuery, MaterialQuery, NewCaseRequest, TransitionRequest,
};
use crate::daemon::{CONTROL_ADDR_FILE, CONTROL_TOKEN_FILE, NodeStatus};
use crate::local::{CaseRow, LocalNode, NewCase, NodeError, load_calendar};

/// A client of a running daemon's control API.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    office: OfficeId,
    operator: Option<String>,
    calendar: Calendar,
    directory: Option<Directory>,
}

fn daemon_err(message: impl Into<String>) -> NodeError {
    NodeError::Daemon {
        message: message.into(),
        rejection: false,
    }
}

impl Client {
    /// Connects to the daemon of `dir` if `control.addr` names one that answers.
    pub fn connect(dir: &Path, node_file: &NodeFileView) -> Result<Option<Client>, NodeError> {
        let Ok(addr) = std::fs::read_to_string(dir.join(CONTROL_ADDR_FILE)) else {
            return Ok(None);
        };
        let token_path = dir.join(CONTROL_TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| daemon_err(format!("{}: {e}", token_path.display())))?
            .trim()
            .to_string();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        let agent: ureq::Agent = config.into();
        let mut client = Client {
            base: format!("http://{}", addr.trim()),
            token,
            agent,
            office: node_file.office.clone(),
            operator: node_file.operator.clone(),
            calendar: load_calendar(Some(dir)).map_err(daemon_err)?,
            directory: None,
        };
        // A stale control.addr (the daemon was killed) answers nothing.
        if client.status().is_err() {
            return Ok(None);
        }
        client.directory = client.fetch_directory().ok();
        Ok(Some(client))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, NodeError> {
        let mut response = response.map_err(|e| daemon_err(format!("control API: {e}")))?;
        let status = response.status();
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(crate::control::MAX_UPLOAD as u64 * 2)
            .read_to_end(&mut body)
            .map_err(|e| daemon_err(format!("control API: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let err: ApiError = serde_json::from_slice(&body).unwrap_or(ApiError {
            error: format!("control API answered {status}"),
            rejection: false,
        });
        if status.as_u16() == 422 || status.as_u16() == 404 || status.as_u16() == 400 {
            Err(NodeError::Rejected(err.error))
        } else {
            Err(NodeError::Daemon {
                message: err.error,
                rejection: err.rejection,
            })
        }
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, NodeError> {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .call();
        self.answer(response)
    }

    fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<Vec<u8>, NodeError> {
        let response = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.auth())
            .send_json(body);
        self.answer(response)
    }

    fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, NodeError> {
        serde_json::from_slice(bytes).map_err(|e| daemon_err(format!("control API answer: {e}")))
    }

    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        Self::json(&self.get("/v1/status")?)
    }

    fn fetch_directory(&self) -> Result<Directory, NodeError> {
        let bytes = self.get("/v1/directory")?;
        // The daemon verified it against its authority key when it was imported.
        let signed = tongban_ledger::directory::SignedDirectory::decode(&bytes)
            .map_err(|e| daemon_err(format!("directory: {e}")))?;
        Ok(signed.directory)
    }
}

/// What a client needs of `node.toml` without opening the store.
#[derive(Debug, Clone)]
pub struct NodeFileView {
    /// The office.
    pub office: OfficeId,
    /// The default operator.
    pub operator: Option<String>,
}

/// Where a command acts: the store directly, or the running daemon.
#[derive(Debug)]
pub enum Target {
    /// No daemon runs: the store is open in this process.
    Direct(Box<LocalNode>),
    /// A daemon runs and holds the store.
    Daemon(Box<Client>),
}

impl Target {
    /// The daemon's control API when it runs, else the store directly.
    pub fn open(dir: &Path) -> Result<Target, NodeError> {
        if let Some(view) = crate::local::read_node_file(dir)?
            && let Some(client) = Client::connect(dir, &view)?
        {
            return Ok(Target::Daemon(Box::new(client)));
        }
        match LocalNode::open(dir) {
            Ok(node) => Ok(Target::Direct(Box::new(node))),
            Err(NodeError::Store(tongban_store::StoreError::Locked { path })) => {
                Err(NodeError::Daemon {
                    message: format!(
                        "{} is held by a running node whose control API does not answer; \
                         wait for it or stop it (tongban node run)",
                        path.display()
                    ),
                    rejection: false,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the command goes through a daemon.
    pub fn via_daemon(&self) -> bool {
        matches!(self, Target::Daemon(_))
    }

    /// The node, when the store is open here.
    pub fn local(&self) -> Option<&LocalNode> {
        match self {
            Target::Direct(node) => Some(node),
            Target::Daemon(_) => None,
        }
    }

    /// This office.
    pub fn office(&self) -> &OfficeId {
        match self {
            Target::Direct(node) => node.office(),
            Target::Daemon(client) => &client.office,
        }
    }

    /// The default operator of `node.toml`.
    pub fn default_operator(&self) -> Option<&str> {
        match self {
            Target::Direct(node) => node.default_operator(),
            Target::Daemon(client) => client.operator.as_deref(),
        }
    }

    /// The calendar.
    pub fn calendar(&self) -> &Calendar {
        match self {
            Target::Direct(node) => node.calendar(),
            Target::Daemon(client) => &client.calendar,
        }
    }

    /// The directory the node holds.
    pub fn directory(&self) -> Result<&Directory, NodeError> {
        match self {
            Target::Direct(node) => node.directory(),
            Target::Daemon(client) => client.directory.as_ref().ok_or(NodeError::NoDirectory),
        }
    }

    /// A case held by the node.
    pub fn case(&self, case: &CaseId) -> Result<CaseDocument, NodeError> {
        match self {
            Target::Direct(node) => node.case(case),
            Target::Daemon(client) => {
                let bytes = client.get(&format!("/v1/cases/{case}"))?;
                Ok(CaseDocument::load(&bytes)?)
            }
        }
    }

    /// `node directory-import`: a signed directory, verified against the authority
    /// the node trusts (`authority`, when given, must be that key; the first
    /// import on a stopped node needs it). Answers the version now held.
    pub fn import_directory(
        &mut self,
        bytes: &[u8],
        authority: Option<tongban_ledger::keys::PublicKey>,
    ) -> Result<u64, NodeError> {
        match self {
            Target::Direct(node) => node.import_directory(bytes, authority),
            Target::Daemon(client) => {
                let mut request = client
                    .agent
                    .post(client.url("/v1/directory"))
                    .header("Authorization", client.auth());
                if let Some(key) = authority {
                    request = request.query("authority", key.to_string());
                }
                let response = request.send(bytes);
                let answer: crate::control::DirectoryImported =
                    Client::json(&client.answer(response)?)?;
                Ok(answer.version)
            }
        }
    }

    /// `case export`: the encoded archive of one case (`crate::archive`).
    pub fn archive(
        &self,
        case: &CaseId,
        with_materials: bool,
        now: Timestamp,
    ) -> Result<Vec<u8>, crate::archive::ExportError> {
        match self {
            Target::Direct(node) => {
                crate::archive::export(node, case, with_materials, now).map(|a| a.encode())
            }
            Target::Daemon(client) => Ok(client.get(&format!(
                "/v1/cases/{case}/archive?with_materials={with_materials}"
            ))?),
        }
    }

    /// `case new`.
    pub fn new_case(
        &self,
        form: &IntakeForm,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<NewCase, NodeError> {
        match self {
            Target::Direct(node) => node.new_case(form, operator, now),
            Target::Daemon(client) => Client::json(&client.post_json(
                "/v1/cases",
                &NewCaseRequest {
                    form: form.clone(),
                    operator: operator.to_string(),
                },
            )?),
        }
    }

    /// `case attach`.
    pub fn attach(
        &self,
        case: &CaseId,
        file: &Path,
        kind: &str,
        media_type: Option<&str>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<String, NodeError> {
        match self {
            Target::Direct(node) => node.attach(case, file, kind, media_type, operator, now),
            Target::Daemon(client) => {
                let bytes = std::fs::read(file).map_err(|source| NodeError::Io {
                    path: PathBuf::from(file),
                    source,
                })?;
                let query = MaterialQuery {
                    kind: kind.to_string(),
                    media_type: media_type.map(str::to_string),
                    file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()),
                    operator: operator.to_string(),
                };
                let mut request = client
                    .agent
                    .post(client.url(&format!("/v1/cases/{case}/materials")))
                    .header("Authorization", client.auth())
                    .query("kind", &query.kind)
                    .query("operator", &query.operator);
                if let Some(name) = &query.file_name {
                    request = request.query("file_name", name);
                }
                if let Some(media_type) = &query.media_type {
                    request = request.query("media_type", media_type);
                }
                let response = request.send(&bytes[..]);
                Client::json(&client.answer(response)?)
            }
        }
    }

    /// Signs a stage transition.
    pub fn act(
        &self,
        case: &CaseId,
        to: Stage,
        payload: &Payload,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        match self {
            Target::Direct(node) => node.act(case, to, payload, operator, now),
            Target::Daemon(client) => client
                .post_json(
                    &format!("/v1/cases/{case}/transitions"),
                    &TransitionRequest {
                        to,
                        payload: payload.clone(),
                        operator: operator.to_string(),
                    },
                )
                .map(|_| ()),
        }
    }

    /// Records the applicant's evaluation.
    pub fn evaluate(
        &self,
        case: &CaseId,
        score: u8,
        comment: &str,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<(), NodeError> {
        match self {
            Target::Direct(node) => node.evaluate(case, score, comment, operator, now),
            Target::Daemon(client) => client
                .post_json(
                    &format!("/v1/cases/{case}/evaluation"),
                    &EvaluationRequest {
                        score,
                        comment: comment.to_string(),
                        operator: operator.to_string(),
                    },
                )
                .map(|_| ()),
        }
    }

    /// `case list` rows.
    pub fn list(
        &self,
        stage: Option<Stage>,
        today: chrono::NaiveDate,
    ) -> Result<Vec<CaseRow>, NodeError> {
        match self {
            Target::Direct(node) => node.list(stage, today),
            Target::Daemon(client) => {
                let query = ListQuery { stage };
                let path = match query.stage {
                    Some(stage) => format!("/v1/cases?stage={}", stage.code()),
                    None => "/v1/cases".to_string(),
                };
                Client::json(&client.get(&path)?)
            }
        }
    }

    /// Materials of the notice not yet attached.
    pub fn missing_materials(
        &self,
        doc: &CaseDocument,
    ) -> Result<Vec<(String, String)>, NodeError> {
        crate::local::missing_materials(doc)
    }

    /// A consistent backup of the node's store into `out` (taken by the running
    /// node when there is one).
    pub fn backup(&self, out: &Path) -> Result<tongban_store::BackupSummary, NodeError> {
        match self {
            Target::Direct(node) => node
                .store()
                .backup_to(out)
                .map_err(|e| NodeError::Rejected(e.to_string())),
            Target::Daemon(client) => {
                let out = std::path::absolute(out).map_err(|source| NodeError::Io {
                    path: out.to_path_buf(),
                    source,
                })?;
                Client::json(
                    &client.post_json("/v1/backup", &crate::control::BackupRequest { out })?,
                )
            }
        }
    }

    /// Every case the node holds, sorted.
    pub fn case_ids(&self) -> Result<Vec<CaseId>, NodeError> {
        let mut ids = match self {
            Target::Direct(node) => {
                let mut ids = Vec::new();
                let mut cursor = 0;
                loop {
                    let batch = node.store().changes_since(cursor, 1000)?;
                    let Some(last) = batch.last() else { break };
                    cursor = last.seq;
                    ids.extend(batch.into_iter().map(|c| c.case));
                }
                ids
            }
            Target::Daemon(_) => self
                .list(None, chrono::NaiveDate::MIN)?
                .into_iter()
                .filter_map(|row| CaseId::parse(&row.case_id).ok())
                .collect(),
        };
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        match self {
            Target::Direct(node) => crate::daemon::status_from_store(node),
            Target::Daemon(client) => client.status(),
        }
    }
}
