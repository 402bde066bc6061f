//! The control API: how `tongban` commands (and later the office window's browser
//! console) reach a running node. HTTP/1.1, JSON bodies, versioned under `/v1`,
//! every request carrying `Authorization: Bearer <token>` where the token is the
//! content of `DATA_DIR/control.token` (mode 0600, made on first start).
//! `docs/control-api.md` documents each route.
//!
//! # Who can reach it
//!
//! Commands reach their node over a Unix domain socket, `DATA_DIR/control.sock`
//! (mode 0600 inside the 0700 data directory), so only the node's own operators
//! can connect at all, and a stale socket left by a killed node refuses the
//! connection before any token or form is sent. A TCP listener on loopback is
//! opened only when `control` is configured (the browser console); its address
//! is written to `DATA_DIR/control.addr`, which commands never read.
//!
//! Every listener checks the token in a layer in front of every route, before
//! any body is read; each route has its own body limit; connections are capped
//! and a connection that sends no complete header in time is closed.
//!
//! Every route runs the same [`LocalNode`] method the command runs on the store
//! directly, on the daemon's engine, so both paths share one code path; the daemon
//! then offers what was written to its peers.
//!
//! Errors are `{"error": "...", "rejection": true|false}` with status 422 for the
//! office's input refused by a rule, 409 for an award refused as a duplicate
//! (防止重复享受), 404 for an unknown case or material (with `"missing"` saying
//! which), 401 for a missing or wrong token, 400 for a malformed request and
//! 500 otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tongban_domain::dataset::DatasetKind;
use tongban_domain::ids::{CaseId, Operator};

use tracing::Instrument;

use crate::api::{
    ApiError, ArchiveQuery, BackupRequest, CONTROL_ADDR_FILE, CONTROL_SOCKET_FILE,
    CONTROL_TOKEN_FILE, CheckRequest, DatasetImported, DirectoryImported, DirectoryQuery,
    EvaluationRequest, ListQuery, MAX_DATASET_BODY, MaterialQuery, NewCaseRequest, PayrollRequest,
    TransitionRequest,
};
use crate::engine::{DaemonError, DaemonHandle, wait_stop};
use crate::local::{MAX_MATERIAL_BYTES, NodeError};
use crate::materials::{MaterialError, Missing};

/// The largest JSON body a route takes (an intake form, a transition, a backup
/// request): far above any real one, far below what could hurt the node.
pub const MAX_JSON_BODY: usize = 256 * 1024;
/// The largest signed directory `POST /v1/directory` takes.
pub const MAX_DIRECTORY_BODY: usize = 16 * 1024 * 1024;
/// Most connections served at once on each listener; one more is closed at
/// once, so that idle connections cannot pile up until the node has no file
/// descriptors left.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a request's header, and how long an
/// idle kept-alive connection is kept.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upload may go without sending a byte.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Api {
    node: DaemonHandle,
    token: String,
    /// The data directory, where uploads are spooled before the engine stores
    /// them.
    dir: PathBuf,
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
            NodeError::Duplicate(_) => StatusCode::CONFLICT,
            e if e.is_rejection() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(
            status,
            ApiError {
                rejection: err.is_rejection(),
                error: err.to_string(),
                missing: matches!(err, NodeError::UnknownCase(_)).then_some(Missing::Case),
            },
        )
    }
}

impl From<MaterialError> for Failure {
    fn from(err: MaterialError) -> Failure {
        let err = match err {
            MaterialError::Node(err) => return err.into(),
            err => err,
        };
        let status = if err.missing().is_some() {
            StatusCode::NOT_FOUND
        } else if err.is_rejection() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Failure(
            status,
            ApiError {
                rejection: err.is_rejection(),
                error: err.to_string(),
                missing: err.missing(),
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
                    missing: None,
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
                missing: None,
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
            missing: None,
        },
    )
}

fn not_found(message: String) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        ApiError {
            error: message,
            rejection: true,
            missing: None,
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
                    missing: None,
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

async fn status(State(api): State<Api>) -> Result<Response, Failure> {
    Ok(axum::Json(api.node.status().await?).into_response())
}

async fn list(State(api): State<Api>, Query(query): Query<ListQuery>) -> Result<Response, Failure> {
    let rows = api
        .node
        .exec(move |node, now| node.list(query.stage, now.china_date()))
        .await??;
    Ok(axum::Json(rows).into_response())
}

async fn new_case(
    State(api): State<Api>,
    axum::Json(request): axum::Json<NewCaseRequest>,
) -> Result<Response, Failure> {
    let operator = parse_operator(&request.operator)?;
    let made = api
        .node
        .exec(move |node, now| node.new_case(&request.form, &operator, now))
        .await??;
    Ok((StatusCode::CREATED, axum::Json(made)).into_response())
}

async fn document(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let bytes = api
        .node
        .exec(move |node, _| node.case(&case).map(|mut d| d.save()))
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn archive(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<ArchiveQuery>,
) -> Result<Response, Failure> {
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
    UrlPath(id): UrlPath<String>,
    axum::Json(request): axum::Json<TransitionRequest>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let operator = parse_operator(&request.operator)?;
    api.node
        .exec(move |node, now| node.act(&case, request.to, &request.payload, &operator, now))
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn duplicates(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let found = api
        .node
        .exec(move |node, _| node.duplicates(&case))
        .await??;
    Ok(axum::Json(found).into_response())
}

async fn actions(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let found = api
        .node
        .exec(move |node, now| node.actions(&case, now))
        .await??;
    Ok(axum::Json(found).into_response())
}

async fn evaluation(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    axum::Json(request): axum::Json<EvaluationRequest>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let operator = parse_operator(&request.operator)?;
    api.node
        .exec(move |node, now| {
            node.evaluate(&case, request.score, &request.comment, &operator, now)
        })
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn checks(
    State(api): State<Api>,
    axum::Json(request): axum::Json<CheckRequest>,
) -> Result<Response, Failure> {
    let operator = parse_operator(&request.operator)?;
    let results = api
        .node
        .exec(move |node, now| node.check_awards(&request.county, &operator, now))
        .await??;
    Ok(axum::Json(results).into_response())
}

async fn payroll(
    State(api): State<Api>,
    axum::Json(request): axum::Json<PayrollRequest>,
) -> Result<Response, Failure> {
    let operator = parse_operator(&request.operator)?;
    let month = tongban_domain::payroll::YearMonth::parse(&request.month)
        .map_err(|e| bad_request(format!("month: {e}")))?;
    let run = api.node.payroll(request.county, month, operator).await??;
    Ok(axum::Json(run).into_response())
}

async fn materials(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let rows = api
        .node
        .exec(move |node, _| crate::materials::list(node, &case))
        .await??;
    Ok(axum::Json(rows).into_response())
}

async fn material_bytes(
    State(api): State<Api>,
    UrlPath((id, hash)): UrlPath<(String, String)>,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let hash: tongban_store::MaterialHash = hash
        .parse()
        .map_err(|e| bad_request(format!("hash {hash:?}: {e}")))?;
    // The rule and the bookkeeping on the engine; the bytes are read beside
    // it on a read transaction of their own, like a backup, and checked
    // against the hash before a byte is sent.
    let store = api
        .node
        .exec(move |node, _| {
            crate::materials::authorise(node, &case, &hash).map(|_| node.shared_store().clone())
        })
        .await??;
    let bytes = tokio::task::spawn_blocking(move || crate::materials::read_checked(&store, &hash))
        .await
        .map_err(|e| Failure::from(DaemonError::Control(e.to_string())))??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn material(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<MaterialQuery>,
    body: Body,
) -> Result<Response, Failure> {
    let case = parse_case(&id)?;
    let operator = parse_operator(&query.operator)?;
    // The upload is spooled to a private temporary file in the data directory
    // chunk by chunk, never held whole in memory, and only then handed to the
    // engine: the engine must not wait on a slow client.
    let spool = spool_upload(&api.dir, body).await?;
    let hash = api
        .node
        .exec(move |node, now| {
            let file_name = query.file_name.unwrap_or_default();
            let media_type = query
                .media_type
                .unwrap_or_else(|| crate::local::guess_media_type(Path::new(&file_name)));
            let reader = spool.reopen().map_err(|source| NodeError::Io {
                path: spool.path().to_path_buf(),
                source,
            })?;
            node.attach_reader(
                &case,
                std::io::BufReader::with_capacity(1 << 20, reader),
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

/// Writes an upload's body to a temporary file (0600, removed when dropped),
/// refusing it as soon as it passes [`MAX_MATERIAL_BYTES`] or stalls for
/// [`BODY_IDLE_TIMEOUT`].
async fn spool_upload(dir: &Path, body: Body) -> Result<tempfile::NamedTempFile, Failure> {
    use http_body_util::BodyExt;
    use std::io::Write;
    let spool = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(dir)
        .map_err(|e| store_failure(format!("{}: {e}", dir.display())))?;
    let mut file = spool
        .reopen()
        .map_err(|e| store_failure(format!("{}: {e}", spool.path().display())))?;
    let mut body = body;
    let mut len: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(Failure(
                    StatusCode::REQUEST_TIMEOUT,
                    ApiError {
                        error: format!(
                            "上传中断 upload stalled: no data for {} s",
                            BODY_IDLE_TIMEOUT.as_secs()
                        ),
                        rejection: true,
                        missing: None,
                    },
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(bad_request(format!("upload interrupted: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > MAX_MATERIAL_BYTES {
            let err = NodeError::TooLarge {
                limit: MAX_MATERIAL_BYTES,
            };
            return Err(Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiError {
                    error: err.to_string(),
                    rejection: true,
                    missing: None,
                },
            ));
        }
        // A blocking write of at most one frame: small, and the spool is local.
        file.write_all(&data)
            .map_err(|e| store_failure(format!("{}: {e}", spool.path().display())))?;
    }
    file.flush()
        .map_err(|e| store_failure(format!("{}: {e}", spool.path().display())))?;
    Ok(spool)
}

fn store_failure(message: String) -> Failure {
    Failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        ApiError {
            error: message,
            rejection: false,
            missing: None,
        },
    )
}

async fn backup(
    State(api): State<Api>,
    axum::Json(request): axum::Json<BackupRequest>,
) -> Result<Response, Failure> {
    if !request.out.is_absolute() {
        return Err(bad_request(format!(
            "out {}: give an absolute path",
            request.out.display()
        )));
    }
    crate::local::check_backup_destination(&request.out)?;
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
                    missing: None,
                },
            )
        })?;
    Ok(axum::Json(summary).into_response())
}

async fn report(
    State(api): State<Api>,
    axum::Json(request): axum::Json<crate::supervision::ReportRequest>,
) -> Result<Response, Failure> {
    // A report reads every supervised case of its region: it runs beside the
    // engine on its own read transaction, like a backup.
    let held = api
        .node
        .exec(|node, _| crate::supervision::Holdings::of(node))
        .await??;
    let answer = tokio::task::spawn_blocking(move || crate::supervision::report(&held, &request))
        .await
        .map_err(|e| Failure::from(DaemonError::Control(e.to_string())))??;
    Ok(axum::Json(answer).into_response())
}

async fn export(
    State(api): State<Api>,
    axum::Json(request): axum::Json<crate::api::ExportRequest>,
) -> Result<Response, Failure> {
    if !request.out.is_absolute() {
        return Err(bad_request(format!(
            "out {}: give an absolute path",
            request.out.display()
        )));
    }
    let held = api
        .node
        .exec(|node, _| crate::supervision::Holdings::of(node))
        .await??;
    let summary = tokio::task::spawn_blocking(move || {
        crate::supervision::export(&held, &request.out, &request.region)
    })
    .await
    .map_err(|e| Failure::from(DaemonError::Control(e.to_string())))??;
    Ok(axum::Json(summary).into_response())
}

async fn check_materials(State(api): State<Api>) -> Result<Response, Failure> {
    // Reading every material back is one long read: it runs beside the engine
    // on its own read transactions, like a backup.
    let node_store = api.node.exec(|node, _| {
        Ok::<_, NodeError>((
            crate::office::Office::case_ids(node)?,
            node.shared_store().clone(),
        ))
    });
    let (ids, store) = node_store.await??;
    let check = tokio::task::spawn_blocking(move || crate::local::rehash_in(&store, &ids))
        .await
        .map_err(|e| Failure::from(DaemonError::Control(e.to_string())))??;
    Ok(axum::Json(check).into_response())
}

async fn directory(State(api): State<Api>) -> Result<Response, Failure> {
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
    Query(query): Query<DirectoryQuery>,
    body: Bytes,
) -> Result<Response, Failure> {
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
                    missing: None,
                },
            ),
            err => err.into(),
        })?;
    Ok(axum::Json(DirectoryImported { version }).into_response())
}

async fn datasets(State(api): State<Api>) -> Result<Response, Failure> {
    let list = api
        .node
        .exec(|node, _| crate::office::Office::datasets(node))
        .await??;
    Ok(axum::Json(list).into_response())
}

async fn dataset(
    State(api): State<Api>,
    UrlPath((kind, scope)): UrlPath<(String, String)>,
) -> Result<Response, Failure> {
    let kind = DatasetKind::from_code(&kind)
        .ok_or_else(|| not_found(format!("kind: no dataset kind {kind:?}")))?;
    let held = api
        .node
        .exec(move |node, _| node.held_dataset(kind, &scope))
        .await??
        .ok_or_else(|| not_found(format!("{kind}: this node holds none for that scope")))?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        held.bytes.to_vec(),
    )
        .into_response())
}

async fn import_dataset(State(api): State<Api>, body: Bytes) -> Result<Response, Failure> {
    let version = api.node.import_dataset(body.to_vec()).await??;
    Ok(axum::Json(DatasetImported { version }).into_response())
}

async fn publish_feed(
    State(api): State<Api>,
    UrlPath(kind): UrlPath<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let kind = DatasetKind::from_code(&kind)
        .ok_or_else(|| not_found(format!("kind: no dataset kind {kind:?}")))?;
    let csv = String::from_utf8(body.to_vec())
        .map_err(|e| bad_request(format!("the CSV is not UTF-8: {e}")))?;
    let version = api.node.publish_feed(kind, csv).await??;
    Ok(axum::Json(DatasetImported { version }).into_response())
}

/// Refuses every request without the right token before any handler runs, so
/// that no body of an unauthenticated request is ever read or parsed.
async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    match api.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            let mut response = failure.into_response();
            // The unread body is not drained: the connection ends here.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// The routes, each with its own body limit, behind the token check.
fn router(api: Api) -> Router {
    let json = DefaultBodyLimit::max(MAX_JSON_BODY);
    Router::new()
        .route("/v1/status", get(status))
        .route(
            "/v1/directory",
            get(directory)
                .post(import_directory)
                .layer(DefaultBodyLimit::max(MAX_DIRECTORY_BODY)),
        )
        .route(
            "/v1/datasets",
            get(datasets)
                .post(import_dataset)
                .layer(DefaultBodyLimit::max(MAX_DATASET_BODY)),
        )
        .route("/v1/datasets/{kind}/{scope}", get(dataset))
        .route(
            "/v1/feeds/{kind}",
            post(publish_feed).layer(DefaultBodyLimit::max(MAX_DATASET_BODY)),
        )
        .route("/v1/checks", post(checks).layer(json))
        .route("/v1/payroll", post(payroll).layer(json))
        .route("/v1/backup", post(backup).layer(json))
        .route("/v1/report", post(report).layer(json))
        .route("/v1/export", post(export).layer(json))
        .route("/v1/materials/check", get(check_materials))
        .route("/v1/cases", get(list).post(new_case).layer(json))
        .route("/v1/cases/{id}", get(document))
        .route("/v1/cases/{id}/archive", get(archive))
        .route("/v1/cases/{id}/duplicates", get(duplicates))
        .route("/v1/cases/{id}/actions", get(actions))
        .route("/v1/cases/{id}/transitions", post(transition).layer(json))
        .route("/v1/cases/{id}/evaluation", post(evaluation).layer(json))
        // The upload handler streams and enforces MAX_MATERIAL_BYTES itself.
        .route("/v1/cases/{id}/materials", get(materials).post(material))
        .route("/v1/cases/{id}/materials/{hash}", get(material_bytes))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            require_token,
        ))
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
    let token = tongban_ledger::hex(&bytes);
    crate::files::write_atomic(&path, token.as_bytes(), Some(0o600))
        .map_err(|e| DaemonError::Control(format!("{}: {e}", path.display())))?;
    Ok(token)
}

/// What [`serve`] started.
pub(crate) struct Served {
    /// The Unix socket commands reach the node by.
    pub socket: PathBuf,
    /// The TCP address, when one was configured.
    pub tcp: Option<SocketAddr>,
    /// The accept loops.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Serves the API on `DATA_DIR/control.sock` and, when `tcp` is given, on that
/// loopback address (written to `control.addr`), until `stop`.
pub(crate) async fn serve(
    tcp: Option<SocketAddr>,
    dir: &Path,
    node: DaemonHandle,
    stop: watch::Receiver<bool>,
) -> Result<Served, DaemonError> {
    if let Some(addr) = tcp
        && !addr.ip().is_loopback()
    {
        return Err(DaemonError::Control(format!(
            "{addr}: the control API listens on loopback only"
        )));
    }
    let token = token(dir)?;
    let app = router(Api {
        node,
        token,
        dir: dir.to_path_buf(),
    });
    let mut tasks = Vec::new();
    // An address left by a killed node must not be mistaken for this one.
    let addr_file = dir.join(CONTROL_ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);

    let socket = dir.join(CONTROL_SOCKET_FILE);
    #[cfg(unix)]
    {
        let unix = bind_socket(&socket)?;
        // Each listener has its own connection slots, so that connections on TCP
        // can never crowd the node's own commands off the socket.
        tasks.push(tokio::spawn(
            accept_loop(
                unix,
                app.clone(),
                Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                stop.clone(),
            )
            .in_current_span(),
        ));
        tracing::info!(socket = %socket.display(), "control API listening");
    }
    // Without Unix sockets, commands reach the node on loopback TCP: at the
    // configured address, else on a port the system picks, written to
    // `control.addr` like any TCP address (`client::Client` reads it there),
    // behind the same token.
    #[cfg(not(unix))]
    let tcp = tcp.or(Some(SocketAddr::from(([127, 0, 0, 1], 0))));

    let mut bound = None;
    if let Some(addr) = tcp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DaemonError::Control(format!("{addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| DaemonError::Control(e.to_string()))?;
        crate::files::write_atomic(&addr_file, local.to_string().as_bytes(), Some(0o600))
            .map_err(|e| DaemonError::Control(format!("{}: {e}", addr_file.display())))?;
        tasks.push(tokio::spawn(
            accept_loop(
                listener,
                app,
                Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                stop,
            )
            .in_current_span(),
        ));
        tracing::info!(%local, "control API listening on TCP");
        bound = Some(local);
    }
    Ok(Served {
        socket,
        tcp: bound,
        tasks,
    })
}

/// Binds the control socket, removing a stale one a killed node left behind.
/// A socket that still accepts belongs to a live node, which is refused.
#[cfg(unix)]
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    let fail = |e: std::io::Error| DaemonError::Control(format!("{}: {e}", path.display()));
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Control(format!(
                "{}: another node answers on this socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(fail)?;
    // The data directory is 0700 already; the socket is 0600 as well, so that
    // it stays private if the directory's mode is ever loosened.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    Ok(listener)
}

/// Accepts connections until `stop`, serving each with header and idle
/// timeouts, and closing at once any connection beyond [`MAX_CONNECTIONS`].
async fn accept_loop<L: axum::serve::Listener>(
    mut listener: L,
    app: Router,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = wait_stop(stop.clone()) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "control API: too many connections; one closed"
            );
            drop(io);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tokio::spawn(
            async move {
                let _slot = slot;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(64 * 1024);
                let connection =
                    builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(err) = result {
                            tracing::debug!(error = %err, "control connection ended");
                        }
                    }
                    _ = wait_stop(stop) => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                    }
                }
            }
            .in_current_span(),
        );
    }
}
