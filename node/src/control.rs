//! The control API: how `tongban` commands (and later the office window's browser
//! console) reach a running node. HTTP/1.1 on loopback, JSON bodies, versioned
//! under `/v1`, every request carrying `Authorization: Bearer <token>` where the
//! token is the content of `DATA_DIR/control.token` (mode 0600, made on first
//! start). The address is written to `DATA_DIR/control.addr` while the daemon runs.
//! `docs/control-api.md` documents each route.
//!
//! Every route runs the same [`LocalNode`] method the command runs on the store
//! directly, on the daemon's engine, so both paths share one code path; the daemon
//! then offers what was written to its peers.
//!
//! Errors are `{"error": "...", "rejection": true|false}` with status 422 for the
//! office's input refused by a rule, 404 for an unknown case, 401 for a missing or
//! wrong token, 400 for a malformed request and 500 otherwise.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tongban_case::{IntakeForm, Payload};
use tongban_domain::ids::{CaseId, Operator};
use tongban_domain::stage::Stage;

use crate::daemon::{CONTROL_ADDR_FILE, CONTROL_TOKEN_FILE, DaemonError, DaemonHandle};
use crate::local::NodeError;

/// The largest upload (a scanned material) the API accepts: the largest material.
pub const MAX_UPLOAD: usize = tongban_domain::material::MAX_MATERIAL_BYTES as usize;

#[derive(Clone)]
struct Api {
    node: DaemonHandle,
    token: String,
}

/// An error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// Whether it was the office's input refused by a rule.
    pub rejection: bool,
}

struct Failure(StatusCode, ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

impl From<NodeError> for Failure {
    fn from(err: NodeError) -> Failure {
        let status = match &err {
            NodeError::UnknownCase(_) => StatusCode::NOT_FOUND,
            e if e.is_rejection() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(
            status,
            ApiError {
                rejection: err.is_rejection(),
                error: err.to_string(),
            },
        )
    }
}

impl From<crate::archive::ExportError> for Failure {
    fn from(err: crate::archive::ExportError) -> Failure {
        match err {
            crate::archive::ExportError::Node(err) => err.into(),
            err => Failure(
                if err.is_rejection() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                ApiError {
                    rejection: err.is_rejection(),
                    error: err.to_string(),
                },
            ),
        }
    }
}

impl From<DaemonError> for Failure {
    fn from(err: DaemonError) -> Failure {
        Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError {
                error: err.to_string(),
                rejection: false,
            },
        )
    }
}

fn bad_request(message: String) -> Failure {
    Failure(
        StatusCode::BAD_REQUEST,
        ApiError {
            error: message,
            rejection: true,
        },
    )
}

impl Api {
    fn check(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare in constant time so the token cannot be guessed byte by byte.
        let ok = given.is_some_and(|g| {
            g.len() == self.token.len()
                && g.bytes()
                    .zip(self.token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if ok {
            Ok(())
        } else {
            Err(Failure(
                StatusCode::UNAUTHORIZED,
                ApiError {
                    error: format!("missing or wrong bearer token (see {CONTROL_TOKEN_FILE})"),
                    rejection: true,
                },
            ))
        }
    }
}

fn parse_case(id: &str) -> Result<CaseId, Failure> {
    CaseId::parse(id).map_err(|e| bad_request(format!("case id {id:?}: {e}")))
}

fn parse_operator(text: &str) -> Result<Operator, Failure> {
    Operator::parse(text).map_err(|e| bad_request(format!("operator: {e}")))
}

/// `POST /v1/cases` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewCaseRequest {
    /// The intake form.
    pub form: IntakeForm,
    /// The clerk.
    pub operator: String,
}

/// `POST /v1/cases/{id}/transitions` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransitionRequest {
    /// The stage to move to.
    pub to: Stage,
    /// Opinion, outcome, awards, method.
    #[serde(default)]
    pub payload: Payload,
    /// The clerk.
    pub operator: String,
}

/// `POST /v1/cases/{id}/evaluation` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// 1–5.
    pub score: u8,
    /// The applicant's words.
    #[serde(default)]
    pub comment: String,
    /// The clerk who records it.
    pub operator: String,
}

/// `POST /v1/cases/{id}/materials` query.
#[derive(Debug, Serialize, Deserialize)]
pub struct MaterialQuery {
    /// Material kind code of the policy.
    pub kind: String,
    /// Media type (default from the file name).
    #[serde(default)]
    pub media_type: Option<String>,
    /// The original file name.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The clerk who attaches it.
    pub operator: String,
}

/// `POST /v1/backup` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupRequest {
    /// Where the node writes the backup file (an absolute path on the node's
    /// machine; it must not exist).
    pub out: std::path::PathBuf,
}

/// `POST /v1/directory` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DirectoryQuery {
    /// The authority's public key (64 hex digits), when the importer names one:
    /// it must be the key the node trusts.
    #[serde(default)]
    pub authority: Option<String>,
}

/// `POST /v1/directory` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct DirectoryImported {
    /// The version the node now holds.
    pub version: u64,
}

/// `GET /v1/cases/{id}/archive` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ArchiveQuery {
    /// Include the scanned materials' bytes (the node must hold every one).
    #[serde(default)]
    pub with_materials: bool,
}

/// `GET /v1/cases` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only this stage (code).
    #[serde(default)]
    pub stage: Option<Stage>,
}

async fn status(State(api): State<Api>, headers: HeaderMap) -> Result<Response, Failure> {
    api.check(&headers)?;
    Ok(axum::Json(api.node.status().await?).into_response())
}

async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let rows = api
        .node
        .exec(move |node, now| node.list(query.stage, now.china_date()))
        .await??;
    Ok(axum::Json(rows).into_response())
}

async fn new_case(
    State(api): State<Api>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<NewCaseRequest>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let operator = parse_operator(&request.operator)?;
    let made = api
        .node
        .exec(move |node, now| node.new_case(&request.form, &operator, now))
        .await??;
    Ok((StatusCode::CREATED, axum::Json(made)).into_response())
}

async fn document(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let case = parse_case(&id)?;
    let bytes = api
        .node
        .exec(move |node, _| node.case(&case).map(|mut d| d.save()))
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn archive(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<ArchiveQuery>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let case = parse_case(&id)?;
    // Built on the engine's thread from its own store, as `case export` does on
    // a stopped node: one read, nothing written.
    let bytes = api
        .node
        .exec(move |node, now| {
            crate::archive::export(node, &case, query.with_materials, now).map(|a| a.encode())
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn transition(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    axum::Json(request): axum::Json<TransitionRequest>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let case = parse_case(&id)?;
    let operator = parse_operator(&request.operator)?;
    api.node
        .exec(move |node, now| node.act(&case, request.to, &request.payload, &operator, now))
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn evaluation(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    axum::Json(request): axum::Json<EvaluationRequest>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let case = parse_case(&id)?;
    let operator = parse_operator(&request.operator)?;
    api.node
        .exec(move |node, now| {
            node.evaluate(&case, request.score, &request.comment, &operator, now)
        })
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn material(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<MaterialQuery>,
    body: Bytes,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let case = parse_case(&id)?;
    let operator = parse_operator(&query.operator)?;
    let hash = api
        .node
        .exec(move |node, now| {
            let file_name = query.file_name.unwrap_or_default();
            let media_type = query
                .media_type
                .unwrap_or_else(|| crate::local::guess_media_type(Path::new(&file_name)));
            node.attach_bytes(
                &case,
                &body,
                &file_name,
                &query.kind,
                &media_type,
                &operator,
                now,
            )
        })
        .await??;
    Ok((StatusCode::CREATED, axum::Json(hash)).into_response())
}

async fn backup(
    State(api): State<Api>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<BackupRequest>,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    if !request.out.is_absolute() {
        return Err(bad_request(format!(
            "out {}: give an absolute path",
            request.out.display()
        )));
    }
    // The snapshot is one read transaction: it runs beside the engine, which goes
    // on syncing and writing meanwhile.
    let store = api.node.exec(|node, _| node.shared_store().clone()).await?;
    let summary = tokio::task::spawn_blocking(move || store.backup_to(&request.out))
        .await
        .map_err(|e| Failure::from(DaemonError::Control(e.to_string())))?
        .map_err(|e| {
            Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiError {
                    error: e.to_string(),
                    rejection: true,
                },
            )
        })?;
    Ok(axum::Json(summary).into_response())
}

async fn directory(State(api): State<Api>, headers: HeaderMap) -> Result<Response, Failure> {
    api.check(&headers)?;
    let bytes = api
        .node
        .exec(|node, _| node.store().meta("directory"))
        .await?
        .map_err(NodeError::from)?
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn import_directory(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(query): Query<DirectoryQuery>,
    body: Bytes,
) -> Result<Response, Failure> {
    api.check(&headers)?;
    let authority = query
        .authority
        .as_deref()
        .map(tongban_ledger::keys::PublicKey::from_hex)
        .transpose()
        .map_err(|e| bad_request(format!("authority: {e}")))?;
    let version = api
        .node
        .import_directory(body.to_vec(), authority)
        .await?
        .map_err(|err| match err {
            // The directory given is what is wrong: 422, as documented.
            NodeError::Directory(_) => Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiError {
                    rejection: err.is_rejection(),
                    error: err.to_string(),
                },
            ),
            err => err.into(),
        })?;
    Ok(axum::Json(DirectoryImported { version }).into_response())
}

/// The routes, for the server and for documentation.
fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/directory", get(directory).post(import_directory))
        .route("/v1/backup", post(backup))
        .route("/v1/cases", get(list).post(new_case))
        .route("/v1/cases/{id}", get(document))
        .route("/v1/cases/{id}/archive", get(archive))
        .route("/v1/cases/{id}/transitions", post(transition))
        .route("/v1/cases/{id}/evaluation", post(evaluation))
        .route("/v1/cases/{id}/materials", post(material))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(api)
}

/// Reads the node's control token, making one (0600) if there is none.
pub fn token(dir: &Path) -> Result<String, DaemonError> {
    let path = dir.join(CONTROL_TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim().to_string();
        if text.len() >= 32 {
            return Ok(text);
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DaemonError::Control(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::authority::write_atomic(&path, token.as_bytes(), Some(0o600))
        .map_err(|e| DaemonError::Control(format!("{}: {e}", path.display())))?;
    Ok(token)
}

/// Serves the API on `addr` until `stop`; writes `control.addr`.
pub(crate) async fn serve(
    addr: SocketAddr,
    dir: &Path,
    node: DaemonHandle,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), DaemonError> {
    if !addr.ip().is_loopback() {
        return Err(DaemonError::Control(format!(
            "{addr}: the control API listens on loopback only"
        )));
    }
    let token = token(dir)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Control(format!("{addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    let addr_file = dir.join(CONTROL_ADDR_FILE);
    crate::authority::write_atomic(&addr_file, local.to_string().as_bytes(), Some(0o644))
        .map_err(|e| DaemonError::Control(format!("{}: {e}", addr_file.display())))?;
    let app = router(Api { node, token });
    let task = tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %err, "control API stopped");
        }
    });
    tracing::info!(%local, "control API listening");
    Ok((local, task))
}
