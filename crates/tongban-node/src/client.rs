//! How a command reaches its node: through the running daemon's control API when
//! one runs (redb admits one process per store), on the store directly otherwise.
//!
//! [`open`] answers an [`Office`] either way: the control-API [`Client`] or the
//! [`LocalNode`] itself. The daemon runs the very `LocalNode` method the direct
//! path runs, so both paths share one code path. This module speaks the control
//! API's protocol ([`crate::api`]); it never reaches into the daemon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use tongban_case::{CaseDocument, IntakeForm, Payload};
use tongban_domain::calendar::Calendar;
use tongban_domain::dataset::DatasetKind;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::Directory;

use tongban_ledger::directory::OfficeCertificate;
use tongban_ledger::keys::PublicKey;
use tongban_store::{BackupSummary, MaterialHash, Progress};

use crate::api::{
    ApiError, BackupRequest, CONTROL_TOKEN_FILE, CheckRequest, DatasetImported, DirectoryImported,
    EvaluationRequest, ListQuery, MaterialQuery, NewCaseRequest, TransitionRequest,
};
use crate::archive::ExportError;
use crate::datasets::{CheckResult, DatasetInfo};
use crate::duplicates::CaseDuplicates;
use crate::local::{
    CaseRow, LocalNode, MAX_MATERIAL_BYTES, MaterialCheck, NewCase, NodeError, NodeFileView,
    load_calendar,
};
use crate::materials::{MaterialError, MaterialRow, Missing};
use crate::office::Office;
use crate::status::NodeStatus;

/// The longest answer the client reads (an archive with its materials).
const MAX_ANSWER: usize = 1024 * 1024 * 1024;
/// How long a request may take, a backup or a large upload included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long connecting and a quick request may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);

type RequestBody = BoxBody<Bytes, std::io::Error>;

/// A client of a running daemon's control API, over its Unix socket.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    token: String,
    runtime: tokio::runtime::Runtime,
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

/// The control connection: the Unix socket `DATA_DIR/control.sock`, or where
/// there are no Unix sockets, loopback TCP at the address the node wrote to
/// `DATA_DIR/control.addr` (`control::serve`).
#[cfg(unix)]
type ControlStream = tokio::net::UnixStream;
#[cfg(not(unix))]
type ControlStream = tokio::net::TcpStream;

/// The file that names the control endpoint in `dir`.
fn control_endpoint(dir: &Path) -> PathBuf {
    #[cfg(unix)]
    {
        dir.join(crate::api::CONTROL_SOCKET_FILE)
    }
    #[cfg(not(unix))]
    {
        dir.join(crate::api::CONTROL_ADDR_FILE)
    }
}

/// Connects to the control endpoint named by `endpoint`.
async fn open_control(endpoint: &Path) -> std::io::Result<ControlStream> {
    #[cfg(unix)]
    {
        tokio::net::UnixStream::connect(endpoint).await
    }
    #[cfg(not(unix))]
    {
        let text = std::fs::read_to_string(endpoint)?;
        let addr: std::net::SocketAddr = text
            .trim()
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        tokio::net::TcpStream::connect(addr).await
    }
}

/// Whether a connection error means that no node listens on the socket: a
/// stale socket left by a killed node, or none at all.
fn nobody_listens(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    )
}

impl Client {
    /// Connects to the daemon of `dir` when one listens on its control socket.
    /// A stale socket (the node was killed) refuses the connection before the
    /// token or anything else is sent, and the command then opens the store
    /// directly.
    pub fn connect(dir: &Path, node_file: &NodeFileView) -> Result<Option<Client>, NodeError> {
        let socket = control_endpoint(dir);
        if std::fs::symlink_metadata(&socket).is_err() {
            return Ok(None);
        }
        check_owner(dir, &socket)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| daemon_err(format!("control client: {e}")))?;
        let probe = runtime
            .block_on(async { tokio::time::timeout(QUICK_TIMEOUT, open_control(&socket)).await });
        match probe {
            Ok(Ok(_)) => {}
            Ok(Err(err)) if nobody_listens(&err) => return Ok(None),
            Ok(Err(err)) => return Err(daemon_err(format!("{}: {err}", socket.display()))),
            Err(_) => {
                return Err(daemon_err(format!(
                    "{}: the node does not answer",
                    socket.display()
                )));
            }
        }
        let token_path = dir.join(CONTROL_TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| daemon_err(format!("{}: {e}", token_path.display())))?
            .trim()
            .to_string();
        let mut client = Client {
            socket,
            token,
            runtime,
            office: node_file.office.clone(),
            operator: node_file.operator.clone(),
            calendar: load_calendar(Some(dir)).map_err(daemon_err)?,
            directory: None,
        };
        client.status()?;
        client.directory = client.fetch_directory().ok();
        client.refresh_calendar();
        Ok(Some(client))
    }

    /// Counts deadlines as the node does: the files of the data directory and,
    /// over them, the signed calendar the node holds.
    fn refresh_calendar(&mut self) {
        let Ok(bytes) = self.get("/v1/datasets/calendar/00") else {
            return;
        };
        let Ok(signed) = tongban_ledger::dataset::SignedDataset::decode(&bytes) else {
            return;
        };
        let text = String::from_utf8_lossy(&signed.dataset.payload);
        if let Err(err) = self.calendar.import_text(&text) {
            tracing::warn!(%err, "the node's signed calendar is not applied");
        }
    }

    /// Sends one request on a connection of its own and reads the answer.
    fn request(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        content_type: &str,
        body: RequestBody,
        length: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NodeError> {
        let (status, body) = self.exchange(
            method,
            path_and_query,
            content_type,
            body,
            length,
            timeout,
            MAX_ANSWER,
        )?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(refusal(status, api_error(status, &body)))
    }

    /// Sends one request on a connection of its own and reads the answer's
    /// status and body (at most `limit` bytes of it).
    // The request's parts are the HTTP request's own; a struct for them would
    // only be unpacked here.
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        content_type: &str,
        body: RequestBody,
        length: Option<u64>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(hyper::StatusCode, Bytes), NodeError> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, "tongban")
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, content_type);
        if let Some(length) = length {
            request = request.header(hyper::header::CONTENT_LENGTH, length);
        }
        let request = request
            .body(body)
            .map_err(|e| daemon_err(format!("control API request: {e}")))?;
        let socket = self.socket.clone();
        let exchange = async move {
            let stream = open_control(&socket)
                .await
                .map_err(|e| format!("{}: {e}", socket.display()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
            .map_err(|_| daemon_err("control API: the node did not answer in time"))?
            .map_err(|e| daemon_err(format!("control API: {e}")))
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, NodeError> {
        self.request(
            hyper::Method::GET,
            path,
            "application/json",
            empty_body(),
            None,
            REQUEST_TIMEOUT,
        )
    }

    fn post_json(&self, path: &str, body: &impl serde::Serialize) -> Result<Vec<u8>, NodeError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| daemon_err(format!("control API request: {e}")))?;
        let len = bytes.len() as u64;
        self.request(
            hyper::Method::POST,
            path,
            "application/json",
            full_body(bytes),
            Some(len),
            REQUEST_TIMEOUT,
        )
    }

    fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, NodeError> {
        serde_json::from_slice(bytes).map_err(|e| daemon_err(format!("control API answer: {e}")))
    }

    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        Self::json(&self.request(
            hyper::Method::GET,
            "/v1/status",
            "application/json",
            empty_body(),
            None,
            QUICK_TIMEOUT,
        )?)
    }

    fn fetch_directory(&self) -> Result<Directory, NodeError> {
        let bytes = self.get("/v1/directory")?;
        // The daemon verified it against its authority key when it was imported.
        let signed = tongban_ledger::directory::SignedDirectory::decode(&bytes)
            .map_err(|e| daemon_err(format!("directory: {e}")))?;
        Ok(signed.directory)
    }

    /// Uploads a file as a material, streamed from disk in chunks: never whole in
    /// memory, and never more than [`MAX_MATERIAL_BYTES`] of it.
    fn upload(&self, path_and_query: &str, file: &Path) -> Result<Vec<u8>, NodeError> {
        let io_err = |source| NodeError::Io {
            path: file.to_path_buf(),
            source,
        };
        let opened = std::fs::File::open(file).map_err(io_err)?;
        let metadata = opened.metadata().map_err(io_err)?;
        // A regular file states its length up front: a file over the limit is
        // refused before a byte is sent, and the node can tell a cut-off upload
        // from a complete one. Anything else (a pipe, a device) is sent chunked
        // and cut off past the limit.
        let length = metadata.is_file().then_some(metadata.len());
        if length.is_some_and(|len| len > MAX_MATERIAL_BYTES) {
            return Err(NodeError::TooLarge {
                limit: MAX_MATERIAL_BYTES,
            });
        }
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
        let exceeded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reading = {
            let exceeded = exceeded.clone();
            let mut reader = tokio::fs::File::from_std(opened);
            async move {
                use tokio::io::AsyncReadExt;
                let mut sent: u64 = 0;
                loop {
                    let mut buf = vec![0u8; 256 * 1024];
                    match reader.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            sent += n as u64;
                            if sent > MAX_MATERIAL_BYTES {
                                exceeded.store(true, std::sync::atomic::Ordering::SeqCst);
                                tx.abort(std::io::Error::other("material too large"));
                                return;
                            }
                            buf.truncate(n);
                            if tx.send_data(Bytes::from(buf)).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            tx.abort(err);
                            return;
                        }
                    }
                }
            }
        };
        let _guard = self.runtime.enter();
        let feeder = self.runtime.spawn(reading);
        let answer = self.request(
            hyper::Method::POST,
            path_and_query,
            "application/octet-stream",
            body.boxed(),
            length,
            REQUEST_TIMEOUT,
        );
        feeder.abort();
        if exceeded.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(NodeError::TooLarge {
                limit: MAX_MATERIAL_BYTES,
            });
        }
        answer
    }
}

fn empty_body() -> RequestBody {
    full_body(Vec::new())
}

fn full_body(bytes: Vec<u8>) -> RequestBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// The error body of a refused request (or one made up from its status).
fn api_error(status: hyper::StatusCode, body: &[u8]) -> ApiError {
    serde_json::from_slice(body).unwrap_or(ApiError {
        error: format!("control API answered {status}"),
        rejection: false,
        missing: None,
    })
}

/// A refused request as the node's error.
fn refusal(status: hyper::StatusCode, err: ApiError) -> NodeError {
    if status == hyper::StatusCode::CONFLICT {
        // An award refused as a duplicate: the same error as on the store.
        NodeError::Duplicate(err.error)
    } else if matches!(status.as_u16(), 400 | 404 | 413 | 422) {
        NodeError::Rejected(err.error)
    } else {
        NodeError::Daemon {
            message: err.error,
            rejection: err.rejection,
        }
    }
}

/// Refuses a control socket not owned by the owner of the data directory: only
/// the node's own operators may stand behind it.
#[cfg(unix)]
fn check_owner(dir: &Path, socket: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::MetadataExt;
    let owner = |path: &Path| {
        std::fs::symlink_metadata(path)
            .map(|m| m.uid())
            .map_err(|source| NodeError::Io {
                path: path.to_path_buf(),
                source,
            })
    };
    if owner(dir)? != owner(socket)? {
        return Err(daemon_err(format!(
            "{} is not owned by the owner of {}; refusing to send it anything",
            socket.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Where there are no Unix owners, the data directory's ACL is what keeps
/// others from the endpoint file and the token (docs/install.md).
#[cfg(not(unix))]
fn check_owner(_dir: &Path, _socket: &Path) -> Result<(), NodeError> {
    Ok(())
}

/// The node of `dir` for a command: the running node's control API when one
/// answers on its socket, else the store opened here.
pub fn open(dir: &Path) -> Result<Box<dyn Office>, NodeError> {
    if let Some(view) = crate::local::read_node_file(dir)?
        && let Some(client) = Client::connect(dir, &view)?
    {
        return Ok(Box::new(client));
    }
    match LocalNode::open(dir) {
        Ok(node) => Ok(Box::new(node)),
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

impl Office for Client {
    fn office(&self) -> &OfficeId {
        &self.office
    }

    fn default_operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn directory(&self) -> Result<&Directory, NodeError> {
        self.directory.as_ref().ok_or(NodeError::NoDirectory)
    }

    fn running(&self) -> bool {
        true
    }

    fn certificate(&self, now: Timestamp) -> Result<OfficeCertificate, NodeError> {
        let status = self.status()?;
        let key = status
            .public_key
            .as_deref()
            .ok_or_else(|| daemon_err("the running node does not name its key"))?
            .parse::<PublicKey>()
            .map_err(|e| daemon_err(format!("the running node's key: {e}")))?;
        crate::local::certificate_of(self.directory()?, &self.office, &key, now).cloned()
    }

    fn case(&self, case: &CaseId) -> Result<CaseDocument, NodeError> {
        let bytes = self.get(&format!("/v1/cases/{case}"))?;
        Ok(CaseDocument::load(&bytes)?)
    }

    fn import_directory(
        &mut self,
        bytes: &[u8],
        authority: Option<PublicKey>,
    ) -> Result<u64, NodeError> {
        let path = match authority {
            Some(key) => format!("/v1/directory?authority={key}"),
            None => "/v1/directory".to_string(),
        };
        let answer = self.request(
            hyper::Method::POST,
            &path,
            "application/octet-stream",
            full_body(bytes.to_vec()),
            Some(bytes.len() as u64),
            REQUEST_TIMEOUT,
        )?;
        let answer: DirectoryImported = Client::json(&answer)?;
        // What the node now holds, for what the command asks next.
        self.directory = self.fetch_directory().ok();
        Ok(answer.version)
    }

    fn datasets(&self) -> Result<Vec<DatasetInfo>, NodeError> {
        Client::json(&self.get("/v1/datasets")?)
    }

    fn dataset_bytes(&self, kind: DatasetKind, scope: &str) -> Result<Option<Vec<u8>>, NodeError> {
        let held = self.datasets()?;
        if !held.iter().any(|d| d.kind == kind && d.scope == scope) {
            return Ok(None);
        }
        self.get(&format!("/v1/datasets/{}/{scope}", kind.code()))
            .map(Some)
    }

    fn import_dataset(&mut self, bytes: &[u8]) -> Result<u64, NodeError> {
        let answer = self.request(
            hyper::Method::POST,
            "/v1/datasets",
            "application/octet-stream",
            full_body(bytes.to_vec()),
            Some(bytes.len() as u64),
            REQUEST_TIMEOUT,
        )?;
        let answer: DatasetImported = Client::json(&answer)?;
        self.refresh_calendar();
        Ok(answer.version)
    }

    fn publish_feed(&mut self, kind: DatasetKind, csv: &str) -> Result<u64, NodeError> {
        let answer = self.request(
            hyper::Method::POST,
            &format!("/v1/feeds/{}", kind.code()),
            "text/csv; charset=utf-8",
            full_body(csv.as_bytes().to_vec()),
            Some(csv.len() as u64),
            REQUEST_TIMEOUT,
        )?;
        let answer: DatasetImported = Client::json(&answer)?;
        Ok(answer.version)
    }

    fn archive(
        &self,
        case: &CaseId,
        with_materials: bool,
        _now: Timestamp,
    ) -> Result<Vec<u8>, ExportError> {
        // The node builds it from its own store, with its own clock.
        Ok(self.get(&format!(
            "/v1/cases/{case}/archive?with_materials={with_materials}"
        ))?)
    }

    fn new_case(
        &self,
        form: &IntakeForm,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<NewCase, NodeError> {
        Client::json(&self.post_json(
            "/v1/cases",
            &NewCaseRequest {
                form: form.clone(),
                operator: operator.to_string(),
            },
        )?)
    }

    fn attach(
        &self,
        case: &CaseId,
        file: &Path,
        kind: &str,
        media_type: Option<&str>,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<String, NodeError> {
        let query = MaterialQuery {
            kind: kind.to_string(),
            media_type: media_type.map(str::to_string),
            file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()),
            operator: operator.to_string(),
        };
        let query = serde_urlencoded::to_string(&query)
            .map_err(|e| daemon_err(format!("control API request: {e}")))?;
        let answer = self.upload(&format!("/v1/cases/{case}/materials?{query}"), file)?;
        Client::json(&answer)
    }

    fn materials(&self, case: &CaseId) -> Result<Vec<MaterialRow>, NodeError> {
        Client::json(&self.get(&format!("/v1/cases/{case}/materials"))?)
    }

    fn material(&self, case: &CaseId, hash: &MaterialHash) -> Result<Vec<u8>, MaterialError> {
        // The node checks the rule and the bytes; they are checked again here,
        // against the hash asked for, before the command writes anything.
        let limit = usize::try_from(MAX_MATERIAL_BYTES).unwrap_or(usize::MAX);
        let (status, body) = self.exchange(
            hyper::Method::GET,
            &format!("/v1/cases/{case}/materials/{}", hash.to_hex()),
            "application/json",
            empty_body(),
            None,
            REQUEST_TIMEOUT,
            limit,
        )?;
        if status.is_success() {
            crate::materials::check_bytes(hash, &body)?;
            return Ok(body.to_vec());
        }
        let err = api_error(status, &body);
        Err(match err.missing {
            Some(Missing::Case) => NodeError::UnknownCase(case.clone()).into(),
            Some(missing) => MaterialError::Remote {
                message: err.error,
                missing,
            },
            None => refusal(status, err).into(),
        })
    }

    fn act(
        &self,
        case: &CaseId,
        to: Stage,
        payload: &Payload,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<(), NodeError> {
        self.post_json(
            &format!("/v1/cases/{case}/transitions"),
            &TransitionRequest {
                to,
                payload: payload.clone(),
                operator: operator.to_string(),
            },
        )
        .map(|_| ())
    }

    fn evaluate(
        &self,
        case: &CaseId,
        score: u8,
        comment: &str,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<(), NodeError> {
        self.post_json(
            &format!("/v1/cases/{case}/evaluation"),
            &EvaluationRequest {
                score,
                comment: comment.to_string(),
                operator: operator.to_string(),
            },
        )
        .map(|_| ())
    }

    fn check_awards(
        &self,
        county: &str,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<Vec<CheckResult>, NodeError> {
        // The node checks with its own clock.
        let answer = self.post_json(
            "/v1/checks",
            &CheckRequest {
                county: county.to_string(),
                operator: operator.to_string(),
            },
        )?;
        Client::json(&answer)
    }

    fn payroll(
        &mut self,
        county: &str,
        month: tongban_domain::payroll::YearMonth,
        operator: &Operator,
        _now: Timestamp,
    ) -> Result<crate::payroll::PayrollRun, NodeError> {
        // The node pays by its own clock.
        let answer = self.post_json(
            "/v1/payroll",
            &crate::api::PayrollRequest {
                county: county.to_string(),
                month: month.to_string(),
                operator: operator.to_string(),
            },
        )?;
        Client::json(&answer)
    }

    fn list(
        &self,
        stage: Option<Stage>,
        _today: chrono::NaiveDate,
    ) -> Result<Vec<CaseRow>, NodeError> {
        // The node judges overdue cases by its own clock.
        let query = ListQuery { stage };
        let path = match query.stage {
            Some(stage) => format!("/v1/cases?stage={}", stage.code()),
            None => "/v1/cases".to_string(),
        };
        Client::json(&self.get(&path)?)
    }

    fn backup(&self, out: &Path, _progress: Progress<'_>) -> Result<BackupSummary, NodeError> {
        crate::local::check_backup_destination(out)?;
        let out = std::path::absolute(out).map_err(|source| NodeError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        Client::json(&self.post_json("/v1/backup", &BackupRequest { out })?)
    }

    fn report(
        &self,
        request: &crate::supervision::ReportRequest,
    ) -> Result<crate::supervision::ReportAnswer, NodeError> {
        Client::json(&self.post_json("/v1/report", request)?)
    }

    fn export(&self, dir: &Path, region: &str) -> Result<tongban_report::ExportSummary, NodeError> {
        let out = std::path::absolute(dir).map_err(|source| NodeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Client::json(&self.post_json(
            "/v1/export",
            &crate::api::ExportRequest {
                out,
                region: region.to_string(),
            },
        )?)
    }

    fn rehash_materials(&self, _cases: &[CaseId]) -> Result<MaterialCheck, NodeError> {
        // The node checks every case it holds; `verify --all` asks for all.
        Client::json(&self.get("/v1/materials/check")?)
    }

    fn case_ids(&self) -> Result<Vec<CaseId>, NodeError> {
        let mut ids: Vec<CaseId> = self
            .list(None, chrono::NaiveDate::MIN)?
            .into_iter()
            .filter_map(|row| CaseId::parse(&row.case_id).ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn status(&self) -> Result<NodeStatus, NodeError> {
        Client::status(self)
    }

    fn duplicates(&self, case: &CaseId) -> Result<CaseDuplicates, NodeError> {
        Client::json(&self.get(&format!("/v1/cases/{case}/duplicates"))?)
    }

    fn actions(&self, case: &CaseId) -> Result<crate::local::CaseActions, NodeError> {
        // The node judges by its own certificate and clock.
        Client::json(&self.get(&format!("/v1/cases/{case}/actions"))?)
    }
}
