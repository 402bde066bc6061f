//! How a command reaches its node: through the running daemon's control API when
//! one runs (redb admits one process per store), on the store directly otherwise.
//!
//! [`Target`] offers the same operations either way; the daemon runs the very
//! [`LocalNode`] method the direct path runs, so both paths share one code path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use tongban_case::{CaseDocument, IntakeForm, Payload};
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::Directory;

use crate::control::{
    ApiError, EvaluationRequest, ListQuery, MaterialQuery, NewCaseRequest, TransitionRequest,
};
use crate::daemon::{CONTROL_TOKEN_FILE, NodeStatus};
use crate::local::{CaseRow, LocalNode, MAX_MATERIAL_BYTES, NewCase, NodeError, load_calendar};

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

/// Whether a connection error means that no node listens on the socket: a
/// stale socket left by a killed node, or none at all.
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
        dir.join(crate::daemon::CONTROL_SOCKET_FILE)
    }
    #[cfg(not(unix))]
    {
        dir.join(crate::daemon::CONTROL_ADDR_FILE)
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
        Ok(Some(client))
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
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
            .map_err(|_| daemon_err("control API: the node did not answer in time"))?
            .map_err(|e| daemon_err(format!("control API: {e}")))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let err: ApiError = serde_json::from_slice(&body).unwrap_or(ApiError {
            error: format!("control API answered {status}"),
            rejection: false,
        });
        if matches!(status.as_u16(), 400 | 404 | 413 | 422) {
            Err(NodeError::Rejected(err.error))
        } else {
            Err(NodeError::Daemon {
                message: err.error,
                rejection: err.rejection,
            })
        }
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
                let path = match authority {
                    Some(key) => format!("/v1/directory?authority={key}"),
                    None => "/v1/directory".to_string(),
                };
                let answer = client.request(
                    hyper::Method::POST,
                    &path,
                    "application/octet-stream",
                    full_body(bytes.to_vec()),
                    Some(bytes.len() as u64),
                    REQUEST_TIMEOUT,
                )?;
                let answer: crate::control::DirectoryImported = Client::json(&answer)?;
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
                let query = MaterialQuery {
                    kind: kind.to_string(),
                    media_type: media_type.map(str::to_string),
                    file_name: file.file_name().map(|n| n.to_string_lossy().into_owned()),
                    operator: operator.to_string(),
                };
                let query = serde_urlencoded::to_string(&query)
                    .map_err(|e| daemon_err(format!("control API request: {e}")))?;
                let answer = client.upload(&format!("/v1/cases/{case}/materials?{query}"), file)?;
                Client::json(&answer)
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
        crate::local::check_backup_destination(out)?;
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

    /// Every stored material of `cases` read back and rehashed.
    pub fn rehash_materials(
        &self,
        cases: &[CaseId],
    ) -> Result<crate::local::MaterialCheck, NodeError> {
        match self {
            Target::Direct(node) => node.rehash_materials(cases),
            // The node checks every case it holds; `verify --all` asks for all.
            Target::Daemon(client) => Client::json(&client.get("/v1/materials/check")?),
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
