//! The pages: sessions, CSRF, and one handler a page or a form.
//!
//! Every handler that reaches the node runs the [`Office`] call on a blocking
//! thread (the control API's client waits for its answer), one at a time: the
//! console serves one office window, not a crowd. Nothing here panics on a
//! request: every failure is a page with a Chinese message and a status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use tongban_case::document::policy_awards;
use tongban_case::{CaseDocument, IntakeForm, Outcome, Payload};
use tongban_domain::division::{DivisionCode, Divisions};
use tongban_domain::ids::{CaseId, Operator, Timestamp};
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::verify::SignatureStatus;
use tongban_node::local::{CaseActions, CaseRow, MAX_MATERIAL_BYTES, NodeError};
use tongban_node::office::Office;
use tongban_node::supervision::{ReportKind, ReportRequest};

use crate::accounts::Accounts;

/// The session cookie's name, before the office id: cookies do not tell
/// ports apart, so the consoles of several offices on one machine (a test, a
/// training room) each keep their own session.
const SESSION_COOKIE: &str = "tb_session_";
/// The high-contrast preference cookie.
const CONTRAST_COOKIE: &str = "tb_contrast";
/// How long a session lasts without a request.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// The largest form body (every form but the upload).
const MAX_FORM_BODY: usize = 64 * 1024;
/// The most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 1024;

type Shared = Arc<Console>;
type BoxedOffice = Box<dyn Office + Send>;

/// One browser's session.
#[derive(Debug, Clone)]
struct Session {
    /// The signed-in operator, if any.
    user: Option<Operator>,
    /// The CSRF token every form of this session carries.
    csrf: String,
    /// Last request.
    seen: Instant,
    /// A message for the next page (after a redirect).
    flash: Option<String>,
}

/// The console of one office: its node's client, its accounts and sessions.
pub struct Console {
    office: Mutex<BoxedOffice>,
    accounts: Accounts,
    sessions: Mutex<HashMap<String, Session>>,
    templates: minijinja::Environment<'static>,
    office_id: String,
    office_name: String,
    role: Role,
    division: String,
    spool: tempfile::TempDir,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("office", &self.office_id)
            .finish_non_exhaustive()
    }
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The node does not run, or its control API refused.
    #[error("{0}")]
    Node(String),
    /// A template does not parse (a bug).
    #[error("template: {0}")]
    Template(String),
    /// A file could not be made.
    #[error("{0}")]
    Io(String),
}

impl Console {
    /// The console of the node whose data directory is `data_dir`, through its
    /// running daemon's control API (the Unix socket and the token). Refuses
    /// when no node runs there: the console never opens the store itself.
    pub fn connect(data_dir: &Path) -> Result<Console, ConsoleError> {
        let view = tongban_node::local::read_node_file(data_dir)
            .map_err(|e| ConsoleError::Node(e.to_string()))?
            .ok_or_else(|| {
                ConsoleError::Node(format!(
                    "{} is not a node's data directory (tongban node init)",
                    data_dir.display()
                ))
            })?;
        let client = tongban_node::client::Client::connect(data_dir, &view)
            .map_err(|e| ConsoleError::Node(e.to_string()))?
            .ok_or_else(|| {
                ConsoleError::Node(format!(
                    "节点未运行 no node runs on {}: start it first (tongban node run --config tongban.toml); \
                     the console is a client of its control API",
                    data_dir.display()
                ))
            })?;
        Console::with_office(data_dir, Box::new(client))
    }

    /// The console over any [`Office`]: the control API's client in use, a
    /// node opened directly in tests.
    pub fn with_office(data_dir: &Path, office: BoxedOffice) -> Result<Console, ConsoleError> {
        let certificate = office
            .certificate(Timestamp::now())
            .map_err(|e| ConsoleError::Node(e.to_string()))?;
        let spool = tempfile::Builder::new()
            .prefix("tongban-console-")
            .tempdir()
            .map_err(|e| ConsoleError::Io(format!("upload spool: {e}")))?;
        Ok(Console {
            office_id: certificate.office.to_string(),
            office_name: certificate.name.clone(),
            role: certificate.role,
            division: certificate.division.clone(),
            office: Mutex::new(office),
            accounts: Accounts::in_dir(data_dir),
            sessions: Mutex::new(HashMap::new()),
            templates: templates()?,
            spool,
        })
    }

    /// The accounts of this console.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Runs `f` on the office on a blocking thread.
    async fn call<T, F>(self: &Arc<Self>, f: F) -> Result<T, PageError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Office) -> Result<T, NodeError> + Send + 'static,
    {
        let me = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let office = me.office.lock().map_err(|_| {
                PageError::internal("节点连接不可用 the node connection is unusable")
            })?;
            f(&**office).map_err(PageError::from)
        })
        .await;
        joined.map_err(|_| PageError::internal("内部错误 internal error"))?
    }

    fn cookie_name(&self) -> String {
        let office: String = self
            .office_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!("{SESSION_COOKIE}{office}")
    }

    fn session_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name()
        )
    }

    fn session_of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, &self.cookie_name())?;
        let mut sessions = self.sessions.lock().ok()?;
        let session = sessions.get_mut(&id)?;
        if session.seen.elapsed() > SESSION_IDLE {
            sessions.remove(&id);
            return None;
        }
        session.seen = Instant::now();
        Some((id, session.clone()))
    }

    fn new_session(&self, user: Option<Operator>) -> Result<(String, Session), PageError> {
        let id = random_token()?;
        let session = Session {
            user,
            csrf: random_token()?,
            seen: Instant::now(),
            flash: None,
        };
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| PageError::internal("会话不可用 sessions unusable"))?;
        sessions.retain(|_, s| s.seen.elapsed() <= SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    fn set_flash(&self, id: &str, message: String) {
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(session) = sessions.get_mut(id)
        {
            session.flash = Some(message);
        }
    }

    fn take_flash(&self, id: &str) -> Option<String> {
        self.sessions
            .lock()
            .ok()?
            .get_mut(id)
            .and_then(|s| s.flash.take())
    }

    /// The signed-in session, or a redirect to the sign-in page.
    fn signed_in(&self, headers: &HeaderMap) -> Result<(String, Session, Operator), Redirect> {
        match self.session_of(headers) {
            Some((id, session)) => match session.user.clone() {
                Some(user) => Ok((id, session, user)),
                None => Err(Redirect::to("/login")),
            },
            None => Err(Redirect::to("/login")),
        }
    }

    /// Checks a POST: its origin is this console, and its CSRF token is its
    /// session's. Answers the session.
    fn check_post(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(String, Session), PageError> {
        check_origin(headers)?;
        let (id, session) = self.session_of(headers).ok_or_else(|| {
            PageError::new(
                StatusCode::FORBIDDEN,
                "会话已过期，请重新登录 the session expired: sign in again",
            )
        })?;
        let given = csrf.unwrap_or("");
        if !constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "表单校验失败（跨站请求防护），请刷新页面后重试 the form's CSRF token does not match: reload the page",
            ));
        }
        Ok((id, session))
    }

    fn render(&self, name: &str, page: Page<'_>, context: Value) -> Response {
        let Page {
            title,
            nav,
            session,
            user,
            contrast,
            flash,
        } = page;
        let mut ctx = json!({
            "title": title,
            "nav": nav,
            "office": self.office_id,
            "office_name": self.office_name,
            "role_zh": self.role.zh(),
            "user": user.map(Operator::as_str),
            "csrf": session.map(|s| s.csrf.as_str()),
            "contrast": contrast,
            "flash": flash,
        });
        if let (Some(target), Value::Object(extra)) = (ctx.as_object_mut(), context) {
            target.extend(extra);
        }
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(&ctx))
        {
            Ok(html) => Html(html).into_response(),
            Err(err) => {
                tracing::error!(template = name, error = %err, "a page could not be rendered");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "页面生成失败 the page could not be rendered",
                )
                    .into_response()
            }
        }
    }
}

/// What every page shows besides its own content.
struct Page<'a> {
    title: &'a str,
    nav: &'a str,
    session: Option<&'a Session>,
    user: Option<&'a Operator>,
    contrast: bool,
    flash: Option<String>,
}

/// A failed request, as a page.
#[derive(Debug)]
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<NodeError> for PageError {
    fn from(err: NodeError) -> PageError {
        let status = match &err {
            NodeError::UnknownCase(_) => StatusCode::NOT_FOUND,
            NodeError::Rejected(_) | NodeError::Duplicate(_) | NodeError::TooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            NodeError::Daemon {
                rejection: true, ..
            } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_GATEWAY,
        };
        PageError::new(status, err.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>出错了 Error · 通办</title><link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
             <body><main id=\"main\"><h1>出错了 Error {}</h1><p role=\"alert\">{}</p>\
             <p><a href=\"/\">返回我的待办 Back to my queue</a></p></main></body></html>",
            self.status.as_u16(),
            escape(&self.message)
        );
        (self.status, Html(body)).into_response()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn templates() -> Result<minijinja::Environment<'static>, ConsoleError> {
    let mut env = minijinja::Environment::new();
    let sources: [(&str, &str); 9] = [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("queue.html", include_str!("../templates/queue.html")),
        ("intake.html", include_str!("../templates/intake.html")),
        ("case.html", include_str!("../templates/case.html")),
        ("notice.html", include_str!("../templates/notice.html")),
        ("links.html", include_str!("../templates/links.html")),
        (
            "supervision.html",
            include_str!("../templates/supervision.html"),
        ),
        ("macros.html", include_str!("../templates/macros.html")),
    ];
    for (name, source) in sources {
        env.add_template(name, source)
            .map_err(|e| ConsoleError::Template(e.to_string()))?;
    }
    Ok(env)
}

fn random_token() -> Result<String, PageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| PageError::internal("随机数不可用 no randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Refuses a request another site made: its `Origin` (or, without one, its
/// `Referer`) must be this console as the browser addressed it (`Host`), and
/// `Sec-Fetch-Site`, when sent, must not say cross-site.
fn check_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let refuse = || {
        PageError::new(
            StatusCode::FORBIDDEN,
            "请求来源不符（跨站请求防护） the request does not come from this console",
        )
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refuse)?;
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site == "cross-site"
    {
        return Err(refuse());
    }
    let same = |url: &str| {
        url.strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or("") == host)
            .unwrap_or(false)
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| refuse())?;
        return if same(origin) { Ok(()) } else { Err(refuse()) };
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let referer = referer.to_str().map_err(|_| refuse())?;
        return if same(referer) { Ok(()) } else { Err(refuse()) };
    }
    // Neither header: not a browser's cross-site form (browsers send Origin
    // with every cross-origin POST); the CSRF token still has to match.
    Ok(())
}

fn contrast_of(headers: &HeaderMap) -> bool {
    cookie(headers, CONTRAST_COOKIE).as_deref() == Some("high")
}

/// A form body as its fields, in order (a field may repeat).
fn form_fields(body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "表单格式错误 the form could not be read",
        )
    })
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn today() -> NaiveDate {
    Timestamp::now().china_date()
}

fn parse_case(id: &str) -> Result<CaseId, PageError> {
    CaseId::parse(id).map_err(|_| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("案件编号格式不对 not a case id: {}", escape(id)),
        )
    })
}

/// Stage code and Chinese label of `stage`, for templates.
fn stage_json(stage: Stage) -> Value {
    json!({"code": stage.code(), "zh": stage.zh()})
}

/// What a transition is called on its button, by where it leads.
fn action_label(to: Stage) -> &'static str {
    match to {
        Stage::Accepted => "受理（材料齐全）",
        Stage::Pushed => "推送至户籍地",
        Stage::Publicized => "公示",
        Stage::InitialReviewed => "初审通过，报县残联",
        Stage::DpfReviewed => "复审通过，报县民政",
        Stage::Decided => "审定通过",
        Stage::Returned => "退回补正",
        Stage::Rejected => "不予通过",
        Stage::Notified => "已告知申请人",
        Stage::Withdrawn => "撤回申请",
        Stage::Active => "发放",
        Stage::Suspended => "暂停发放",
        Stage::Terminated => "终止发放",
        _ => "签署",
    }
}

fn ms_china(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            (t + chrono::Duration::hours(8))
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

fn township_name(code: &str) -> Option<String> {
    let code = DivisionCode::parse(code).ok()?;
    Divisions::national().ok()?.full_name(&code)
}

/// Applies in this process the policies the node holds signed, as the node
/// applies them (and as `tongban policy show` does): the awards the console
/// proposes and signs are then those of the node's policy, not of the file
/// shipped with the binary.
fn install_node_policies(office: &dyn Office, province: &str) {
    use tongban_domain::dataset::DatasetKind;
    use tongban_domain::policy::Policy;
    for scope in [province, "00"] {
        if let Ok(Some(bytes)) = office.dataset_bytes(DatasetKind::Policy, scope)
            && let Ok(signed) = tongban_ledger::dataset::SignedDataset::decode(&bytes)
            && let Ok(text) = String::from_utf8(signed.dataset.payload)
            && let Ok(policy) = Policy::from_toml(scope, &text)
        {
            Policy::install(policy);
        }
    }
}

/// The awards the domicile policy gives the case, and the first paid month,
/// as `tongban case decide` signs them without amounts of its own.
fn proposed_awards(
    office: &dyn Office,
    case: &tongban_case::schema::CaseDoc,
) -> Result<(Vec<tongban_case::document::AwardLine>, String), NodeError> {
    install_node_policies(
        office,
        case.applicant.hukou_township.get(..2).unwrap_or("00"),
    );
    let submitted = Timestamp(case.created_at).china_date();
    Ok(policy_awards(case, submitted)?)
}

/// The router of the console.
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(queue))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/prefs/contrast", post(toggle_contrast))
        .route("/intake", get(intake_page).post(intake))
        .route("/cases/{id}", get(case_page))
        .route("/cases/{id}/notice", get(notice_page))
        .route("/cases/{id}/act", post(act))
        .route("/cases/{id}/evaluation", post(evaluate))
        .route(
            "/cases/{id}/materials",
            post(upload).layer(DefaultBodyLimit::max(
                usize::try_from(MAX_MATERIAL_BYTES).unwrap_or(usize::MAX) + 64 * 1024,
            )),
        )
        .route("/cases/{id}/materials/{hash}", get(material))
        .route("/links", get(links))
        .route("/supervision", get(supervision))
        .route("/api/check", get(check_field))
        .route("/api/divisions", get(divisions))
        .route("/api/notice", get(notice_preview))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A material keeps its own, stricter policy (`sandbox`).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    console: Console,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(console)))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/console.js"),
    )
        .into_response()
}

// ---- sign-in ----

async fn login_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let (id, session) = match console.session_of(&headers) {
        Some(found) => found,
        None => match console.new_session(None) {
            Ok(made) => made,
            Err(err) => return err.into_response(),
        },
    };
    let flash = console.take_flash(&id);
    let page = console.render(
        "login.html",
        Page {
            title: "登录 Sign in",
            nav: "login",
            session: Some(&session),
            user: None,
            contrast: contrast_of(&headers),
            flash,
        },
        json!({}),
    );
    ([(header::SET_COOKIE, console.session_cookie(&id))], page).into_response()
}

async fn login(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match login_inner(&console, &headers, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn login_inner(
    console: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, PageError> {
    let fields = form_fields(body)?;
    let (old, _) = console.check_post(headers, field(&fields, "csrf"))?;
    let name = field(&fields, "name").unwrap_or("").trim().to_string();
    let password = field(&fields, "password").unwrap_or("").to_string();
    let accounts = console.accounts.clone();
    let verified = tokio::task::spawn_blocking(move || accounts.verify(&name, &password))
        .await
        .map_err(|_| PageError::internal("内部错误 internal error"))?
        .map_err(|e| PageError::internal(e.to_string()))?;
    let Some(operator) = verified else {
        tracing::info!("a sign-in failed");
        console.set_flash(
            &old,
            "账户名或密码不正确 the account name or password is wrong".into(),
        );
        return Ok(Redirect::to("/login").into_response());
    };
    // A new session id at sign-in, so a token planted before it is worthless.
    if let Ok(mut sessions) = console.sessions.lock() {
        sessions.remove(&old);
    }
    let (id, _) = console.new_session(Some(operator))?;
    Ok((
        [(header::SET_COOKIE, console.session_cookie(&id))],
        Redirect::to("/"),
    )
        .into_response())
}

async fn logout(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match form_fields(&body) {
        Ok(f) => f,
        Err(err) => return err.into_response(),
    };
    match console.check_post(&headers, field(&fields, "csrf")) {
        Ok((id, _)) => {
            if let Ok(mut sessions) = console.sessions.lock() {
                sessions.remove(&id);
            }
            Redirect::to("/login").into_response()
        }
        Err(err) => err.into_response(),
    }
}

async fn toggle_contrast(
    State(console): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match form_fields(&body) {
        Ok(f) => f,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = console.check_post(&headers, field(&fields, "csrf")) {
        return err.into_response();
    }
    let next = if contrast_of(&headers) {
        "normal"
    } else {
        "high"
    };
    let back = field(&fields, "back")
        .filter(|b| b.starts_with('/') && !b.starts_with("//"))
        .unwrap_or("/")
        .to_string();
    (
        [(
            header::SET_COOKIE,
            format!("{CONTRAST_COOKIE}={next}; Path=/; SameSite=Strict; Max-Age=31536000"),
        )],
        Redirect::to(&back),
    )
        .into_response()
}

// ---- the queue ----

#[derive(Debug, Deserialize)]
struct QueueQuery {
    #[serde(default)]
    all: Option<String>,
}

async fn queue(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<QueueQuery>,
) -> Response {
    let (id, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let today = today();
    let rows = match console
        .call(move |office| {
            let rows = office.list(None, today)?;
            let calendar = office.calendar();
            Ok(rows
                .into_iter()
                .map(|row| {
                    let left = row
                        .due
                        .map(|due| calendar.working_days_between(today, due).days);
                    (row, left)
                })
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(rows) => rows,
        Err(err) => return err.into_response(),
    };
    let show_all = query.all.is_some();
    let mut mine: Vec<&(CaseRow, Option<i64>)> =
        rows.iter().filter(|(row, _)| row.actions.any()).collect();
    // Overdue first, then the nearest deadline, then cases without one.
    mine.sort_by_key(|(row, _)| {
        (
            !row.overdue,
            row.due.is_none(),
            row.due,
            row.case_id.clone(),
        )
    });
    let view = |(row, left): &(CaseRow, Option<i64>)| {
        let actions: Vec<Value> = row
            .actions
            .transitions
            .iter()
            .map(|to| json!({"code": to.code(), "zh": to.zh(), "label": action_label(*to)}))
            .collect();
        json!({
            "case_id": row.case_id,
            "stage": stage_json(row.stage),
            "applicant": row.applicant,
            "hukou_township": row.hukou_township,
            "township_name": township_name(&row.hukou_township),
            "due": row.due.map(|d| d.to_string()),
            "due_provisional": row.due_provisional,
            "overdue": row.overdue,
            "left": left,
            "late": left.map(|l| -l),
            "duplicate": row.duplicate,
            "actions": actions,
            "evaluate": row.actions.evaluate,
        })
    };
    let queue: Vec<Value> = mine.into_iter().map(view).collect();
    let others: Vec<Value> = if show_all {
        rows.iter()
            .filter(|(row, _)| !row.actions.any())
            .map(view)
            .collect()
    } else {
        Vec::new()
    };
    let n_overdue = queue
        .iter()
        .filter(|r| r["overdue"].as_bool().unwrap_or(false))
        .count();
    let flash = console.take_flash(&id);
    console.render(
        "queue.html",
        Page {
            title: "我的待办 My queue",
            nav: "queue",
            session: Some(&session),
            user: Some(&user),
            contrast: contrast_of(&headers),
            flash,
        },
        json!({
            "queue": queue,
            "others": others,
            "show_all": show_all,
            "n_held": rows.len(),
            "n_overdue": n_overdue,
            "today": today.to_string(),
            "can_intake": console.role == Role::Township,
        }),
    )
}

// ---- intake ----

fn intake_form(fields: &[(String, String)]) -> IntakeForm {
    let text = |name: &str| field(fields, name).unwrap_or("").trim().to_string();
    let checked = |name: &str| field(fields, name).is_some();
    let agent = text("agent");
    IntakeForm {
        name: text("name"),
        resident_id: text("resident_id"),
        hukou_township: text("hukou_township"),
        certificate: text("certificate"),
        dibao: checked("dibao"),
        low_income: checked("low_income"),
        long_term_care: checked("long_term_care"),
        other_allowances: text("other_allowances")
            .split(['，', ','])
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        subsidy_kinds: fields
            .iter()
            .filter(|(k, _)| k == "subsidy_kinds")
            .map(|(_, v)| v.clone())
            .collect(),
        phone: text("phone"),
        address: text("address"),
        agent: (!agent.is_empty()).then_some(agent),
    }
}

/// The Chinese name of an intake field, for error messages.
fn field_zh(field: &str) -> &'static str {
    match field {
        "name" => "姓名",
        "resident_id" => "公民身份号码",
        "hukou_township" => "户籍所在乡镇（街道）",
        "certificate" => "残疾人证号",
        "subsidy_kinds" => "申请补贴类别",
        "phone" => "联系电话",
        "address" => "现居住地址",
        "agent" => "代办人",
        "dibao" | "low_income" => "家庭经济状况",
        "long_term_care" => "长期照护",
        "other_allowances" => "已享受的类似补贴",
        _ => "表单",
    }
}

fn render_intake(
    console: &Console,
    headers: &HeaderMap,
    session: &Session,
    user: &Operator,
    form: &IntakeForm,
    errors: Vec<Value>,
    status: StatusCode,
) -> Response {
    let township = township_name(&form.hukou_township);
    let page = console.render(
        "intake.html",
        Page {
            title: "窗口受理 Intake",
            nav: "intake",
            session: Some(session),
            user: Some(user),
            contrast: contrast_of(headers),
            flash: None,
        },
        json!({
            "form": {
                "name": form.name,
                "resident_id": form.resident_id,
                "hukou_township": form.hukou_township,
                "certificate": form.certificate,
                "dibao": form.dibao,
                "low_income": form.low_income,
                "long_term_care": form.long_term_care,
                "other_allowances": form.other_allowances.join("，"),
                "living": form.subsidy_kinds.iter().any(|k| k == "living"),
                "nursing": form.subsidy_kinds.iter().any(|k| k == "nursing"),
                "phone": form.phone,
                "address": form.address,
                "agent": form.agent.clone().unwrap_or_default(),
            },
            "township_name": township,
            "errors": errors,
            "error_fields": errors_by_field(&errors),
        }),
    );
    (status, page).into_response()
}

fn errors_by_field(errors: &[Value]) -> Value {
    let mut map = serde_json::Map::new();
    for error in errors {
        if let Some(field) = error["field"].as_str() {
            map.entry(field.to_string())
                .or_insert_with(|| error["message"].clone());
        }
    }
    Value::Object(map)
}

async fn intake_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let (_, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let form = IntakeForm {
        subsidy_kinds: Vec::new(),
        ..IntakeForm::default()
    };
    render_intake(
        &console,
        &headers,
        &session,
        &user,
        &form,
        Vec::new(),
        StatusCode::OK,
    )
}

async fn intake(State(console): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, _, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let fields = match form_fields(&body) {
        Ok(f) => f,
        Err(err) => return err.into_response(),
    };
    let (id, session) = match console.check_post(&headers, field(&fields, "csrf")) {
        Ok(s) => s,
        Err(err) => return err.into_response(),
    };
    let form = intake_form(&fields);
    // The intake rule checked here names every bad field at once; the node
    // checks the same rule again before it writes anything.
    if let Err(errors) = form.validate(today()) {
        let errors: Vec<Value> = errors
            .iter()
            .map(|e| {
                // The rule's message leads with Chinese where it has it; where
                // it does not, the field's Chinese name says what is wrong.
                let chinese = e
                    .message
                    .chars()
                    .next()
                    .is_some_and(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
                let message = if chinese {
                    e.message.clone()
                } else {
                    format!("{}填写有误 {}", field_zh(e.field), e.message)
                };
                json!({"field": e.field, "field_zh": field_zh(e.field), "message": message})
            })
            .collect();
        return render_intake(
            &console,
            &headers,
            &session,
            &user,
            &form,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let operator = user.clone();
    let submitted = form.clone();
    match console
        .call(move |office| office.new_case(&submitted, &operator, Timestamp::now()))
        .await
    {
        Ok(made) => {
            tracing::info!(case = %made.case_id, operator = %user.as_str(), "case started at the window");
            console.set_flash(
                &id,
                format!(
                    "已建案 {}：请按一次性告知清单上传材料，材料齐全后受理并推送。",
                    made.case_id
                ),
            );
            Redirect::to(&format!("/cases/{}", made.case_id)).into_response()
        }
        Err(err) => render_intake(
            &console,
            &headers,
            &session,
            &user,
            &form,
            vec![json!({"field": "form", "field_zh": "表单", "message": err.message})],
            err.status,
        ),
    }
}

#[derive(Debug, Deserialize)]
struct CheckQuery {
    #[serde(default)]
    resident_id: String,
    #[serde(default)]
    hukou_township: String,
    #[serde(default)]
    certificate: String,
}

/// Live validation for the intake form: the same rule the form's POST and the
/// node apply ([`IntakeForm::validate`]), on the fields given, so the page's
/// script never holds a rule of its own.
async fn check_field(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<CheckQuery>,
) -> Response {
    if console.signed_in(&headers).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let form = IntakeForm {
        name: "核验".into(),
        resident_id: query.resident_id.clone(),
        hukou_township: query.hukou_township.clone(),
        certificate: query.certificate.clone(),
        subsidy_kinds: vec!["living".into()],
        phone: "0".into(),
        address: "核验".into(),
        ..IntakeForm::default()
    };
    let errors = form.validate(today()).err().unwrap_or_default();
    let mut answer = serde_json::Map::new();
    for (name, given) in [
        ("resident_id", &query.resident_id),
        ("hukou_township", &query.hukou_township),
        ("certificate", &query.certificate),
    ] {
        if given.is_empty() {
            continue;
        }
        let error = errors.iter().find(|e| e.field == name);
        answer.insert(
            name.to_string(),
            json!({"ok": error.is_none(), "message": error.map(|e| e.message.clone())}),
        );
    }
    if !query.hukou_township.is_empty() {
        answer.insert(
            "township_name".into(),
            json!(township_name(query.hukou_township.trim())),
        );
    }
    axum::Json(Value::Object(answer)).into_response()
}

/// The one-time notice the node would record for the form as filled so far:
/// the domicile policy's checklist (the policy the node holds signed) for the
/// kinds and facts given, by the rule `CaseDocument::create` applies. Empty
/// until the resident ID, the township and the certificate are valid.
async fn notice_preview(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(fields): Query<Vec<(String, String)>>,
) -> Response {
    if console.signed_in(&headers).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut form = intake_form(&fields);
    form.name = "核验".into();
    form.phone = "0".into();
    form.address = "核验".into();
    let intake = match form.validate(today()) {
        Ok(intake) => intake,
        Err(errors) => {
            let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
            return axum::Json(json!({"items": null, "waiting_for": fields})).into_response();
        }
    };
    let province = intake.hukou_township.province().as_str().to_string();
    let answer = console
        .call(move |office| {
            install_node_policies(office, &province);
            let policy = tongban_domain::policy::Policy::for_province(&province)
                .map_err(|e| NodeError::Rejected(e.to_string()))?;
            let items: Vec<Value> = policy
                .checklist(&intake.subsidy_kinds, &intake.facts)
                .into_iter()
                .map(|m| json!({"code": m.code, "zh": m.zh}))
                .collect();
            Ok(json!({"items": items, "province": province}))
        })
        .await;
    match answer {
        Ok(v) => axum::Json(v).into_response(),
        Err(err) => (
            err.status,
            axum::Json(json!({"items": null, "error": err.message})),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct DivisionQuery {
    #[serde(default)]
    parent: String,
}

/// The division table's children of `parent` (the provinces for none), for
/// the township picker.
async fn divisions(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<DivisionQuery>,
) -> Response {
    if console.signed_in(&headers).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(table) = Divisions::national() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let list: Vec<Value> = if query.parent.is_empty() {
        table
            .provinces()
            .map(|d| json!({"code": d.code.as_str(), "name": d.name}))
            .collect()
    } else {
        match DivisionCode::parse(&query.parent) {
            Ok(code) => table
                .children(&code)
                .map(|d| json!({"code": d.code.as_str(), "name": d.name}))
                .collect(),
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    };
    axum::Json(list).into_response()
}

// ---- the case page ----

/// Everything the case page shows, read through the control API.
struct CaseData {
    doc: CaseDocument,
    actions: CaseActions,
    materials: Vec<tongban_node::materials::MaterialRow>,
    missing: Vec<(String, String)>,
    duplicates: Option<tongban_node::duplicates::CaseDuplicates>,
    report: Option<tongban_ledger::verify::Report>,
    due: Option<tongban_case::Due>,
    left: Option<i64>,
    /// The decision's awards, where this office may decide.
    proposed: Option<Result<(Vec<tongban_case::document::AwardLine>, String), String>>,
}

async fn read_case_data(console: &Shared, case: CaseId) -> Result<CaseData, PageError> {
    console
        .call(move |office| {
            let mut doc = office.case(&case)?;
            let actions = office.actions(&case)?;
            let materials = office.materials(&case)?;
            let missing = office.missing_materials(&doc)?;
            let duplicates = office.duplicates(&case).ok();
            let due = doc.due(office.calendar())?;
            let left = due
                .as_ref()
                .map(|d| office.calendar().working_days_between(today(), d.date).days);
            let proposed = if actions.transitions.contains(&Stage::Decided) {
                Some(proposed_awards(office, &doc.read()?).map_err(|e| e.to_string()))
            } else {
                None
            };
            let report = match office.directory() {
                Ok(directory) => doc
                    .verify(directory, office.calendar(), Timestamp::now())
                    .ok(),
                Err(_) => None,
            };
            Ok(CaseData {
                doc,
                actions,
                materials,
                missing,
                duplicates,
                report,
                due,
                left,
                proposed,
            })
        })
        .await
}

fn signature_zh(status: &SignatureStatus) -> (&'static str, bool) {
    match status {
        SignatureStatus::Valid => ("有效 valid", true),
        SignatureStatus::UnknownKey => ("未知密钥 unknown key", false),
        SignatureStatus::KeyNotValidAtTime => ("证书当时无效 not valid then", false),
        SignatureStatus::Revoked => ("已吊销 revoked", false),
    }
}

fn case_context(data: &CaseData) -> Result<Value, PageError> {
    let case = data
        .doc
        .read()
        .map_err(|e| PageError::internal(e.to_string()))?;
    let stage = data
        .doc
        .stage()
        .map_err(|e| PageError::internal(e.to_string()))?;
    let history: Vec<Value> = data
        .report
        .as_ref()
        .map(|report| {
            report
                .timeline()
                .iter()
                .flat_map(|branch| branch.entries.iter())
                .map(|e| {
                    let (signature, valid) = signature_zh(&e.signature);
                    json!({
                        "at": e.at_china,
                        "to": stage_json(e.to),
                        "office": e.office_name.clone().unwrap_or_else(|| e.office.to_string()),
                        "office_id": e.office.to_string(),
                        "operator": e.operator.as_str(),
                        "deadline": e.deadline.as_ref().map(|d| json!({
                            "date": d.date.to_string(),
                            "days": d.working_days,
                            "met": d.met,
                            "provisional": d.provisional,
                        })),
                        "signature": signature,
                        "valid": valid,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let violations: Vec<String> = data
        .report
        .as_ref()
        .map(|r| r.violations.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let held: std::collections::BTreeSet<&str> =
        data.materials.iter().map(|m| m.kind.as_str()).collect();
    let notice: Vec<Value> = case
        .materials_notice
        .as_ref()
        .map(|n| {
            n.items
                .iter()
                .map(|item| json!({"code": item.code, "zh": item.zh, "attached": held.contains(item.code.as_str())}))
                .collect()
        })
        .unwrap_or_default();
    let materials: Vec<Value> = data
        .materials
        .iter()
        .map(|m| {
            json!({
                "kind": m.kind, "kind_zh": m.kind_zh, "hash": m.hash, "size": m.size,
                "media_type": m.media_type, "file_name": m.file_name,
                "added_at": ms_china(m.added_at), "added_by": m.added_by, "held": m.held,
                "image": m.media_type.starts_with("image/") && m.media_type != "image/tiff",
            })
        })
        .collect();
    let proposed: Option<Value> = data.proposed.as_ref().map(|found| match found {
        Ok((awards, first)) => json!({
            "awards": awards.iter().map(|a| json!({"kind": a.kind.code(), "kind_zh": a.kind.zh(), "yuan": a.monthly_yuan})).collect::<Vec<_>>(),
            "first": first,
        }),
        Err(err) => json!({"error": err}),
    });
    let actions: Vec<Value> = data
        .actions
        .transitions
        .iter()
        .map(|to| {
            json!({
                "code": to.code(),
                "zh": to.zh(),
                "label": action_label(*to),
                "needs_opinion": matches!(to, Stage::Returned | Stage::Rejected | Stage::Withdrawn | Stage::Suspended | Stage::Terminated),
                "notify": *to == Stage::Notified,
                "decide": *to == Stage::Decided,
                "danger": matches!(to, Stage::Returned | Stage::Rejected | Stage::Withdrawn | Stage::Terminated | Stage::Suspended),
            })
        })
        .collect();
    let duplicates = data.duplicates.as_ref().map(|d| {
        json!({
            "flagged": d.flagged || d.duplicate,
            "conflicts": d.conflicts.iter().map(|c| json!({
                "other": c.other.to_string(),
                "kinds": c.kinds.iter().map(|k| k.zh()).collect::<Vec<_>>().join("、"),
                "relation": format!("{}（{}）", c.relation.zh(), c.relation.code()),
                "stage": stage_json(c.other_stage),
                "acceptance": c.other_acceptance.to_string(),
            })).collect::<Vec<_>>(),
        })
    });
    Ok(json!({
        "case_id": case.case_id,
        "stage": stage.map(stage_json),
        "created": ms_china(case.created_at),
        "applicant": {
            "name": case.applicant.name,
            "resident_id": case.applicant.resident_id,
            "sex": case.applicant.sex,
            "birth_date": case.applicant.birth_date,
            "hukou_township": case.applicant.hukou_township,
            "township_name": township_name(&case.applicant.hukou_township),
            "phone": case.applicant.phone,
            "address": case.applicant.address,
        },
        "certificate": case.certificate.as_ref().map(|c| json!({"number": c.number, "category": c.category, "level": c.level})),
        "kinds": case.subsidy_kinds.iter().map(|k| match k.as_str() { "living" => "困难残疾人生活补贴 living", "nursing" => "重度残疾人护理补贴 nursing", _ => "其他" }).collect::<Vec<_>>(),
        "acceptance": case.acceptance.office,
        "due": data.due.as_ref().map(|d| json!({
            "date": d.date.to_string(), "next": stage_json(d.next), "days": d.working_days,
            "provisional": d.provisional,
        })),
        "left": data.left,
        "late": data.left.map(|l| -l),
        "overdue": data.due.as_ref().is_some_and(|d| d.date < today()),
        "notice": notice,
        "missing": data.missing.iter().map(|(code, zh)| json!({"code": code, "zh": zh})).collect::<Vec<_>>(),
        "materials": materials,
        "confirmations": case.confirmations.iter().map(|f| json!({
            "feed": f.feed, "version": f.feed_version, "fact": f.fact, "confirmed": f.confirmed,
            "detail": f.detail, "office": f.office,
        })).collect::<Vec<_>>(),
        "duplicates": duplicates,
        "reviews": case.reviews.iter().map(|r| json!({
            "stage": r.stage, "office": r.office, "operator": r.operator, "outcome": r.outcome,
            "opinion": r.opinion, "at": ms_china(r.at),
        })).collect::<Vec<_>>(),
        "decision": case.decision.as_ref().map(|d| json!({
            "outcome": d.outcome,
            "awards": d.awards.iter().map(|a| json!({"kind": a.kind, "yuan": a.monthly_yuan})).collect::<Vec<_>>(),
            "first": d.first_paid_month, "reasons": d.reasons, "override": d.override_reason,
        })),
        "notification": case.notification.as_ref().map(|n| json!({"method": n.method, "at": ms_china(n.at), "operator": n.operator})),
        "evaluation": case.evaluation.as_ref().map(|e| json!({"score": e.score, "comment": e.comment})),
        "history": history,
        "violations": violations,
        "actions": actions,
        "proposed": proposed,
        "may_evaluate": data.actions.evaluate,
        "may_attach": data.actions.attach,
    }))
}

async fn case_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let (sid, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let result = async {
        let case = parse_case(&id)?;
        let data = read_case_data(&console, case).await?;
        case_context(&data)
    }
    .await;
    let context = match result {
        Ok(c) => c,
        Err(err) => return err.into_response(),
    };
    let title = format!("案件 Case {id}");
    let flash = console.take_flash(&sid);
    console.render(
        "case.html",
        Page {
            title: &title,
            nav: "case",
            session: Some(&session),
            user: Some(&user),
            contrast: contrast_of(&headers),
            flash,
        },
        context,
    )
}

/// The one-time notice (一次性告知) of a case, printable.
async fn notice_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let (_, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let result = async {
        let case = parse_case(&id)?;
        let data = read_case_data(&console, case).await?;
        case_context(&data)
    }
    .await;
    let context = match result {
        Ok(c) => c,
        Err(err) => return err.into_response(),
    };
    console.render(
        "notice.html",
        Page {
            title: "一次性告知书 One-time notice of materials",
            nav: "case",
            session: Some(&session),
            user: Some(&user),
            contrast: contrast_of(&headers),
            flash: None,
        },
        context,
    )
}

/// Signs a transition the node says this office may sign now; any other is
/// refused before the node is asked to sign anything.
async fn act(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (_, _, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let result = act_inner(&console, &headers, &id, &body, user).await;
    match result {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn act_inner(
    console: &Shared,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    user: Operator,
) -> Result<Response, PageError> {
    let fields = form_fields(body)?;
    let (sid, _) = console.check_post(headers, field(&fields, "csrf"))?;
    let case = parse_case(id)?;
    let to = field(&fields, "to")
        .and_then(Stage::from_code)
        .ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "操作字段 to 无效 the field `to` names no stage",
            )
        })?;
    let opinion = field(&fields, "opinion").unwrap_or("").trim().to_string();
    let method = field(&fields, "method").unwrap_or("").trim().to_string();
    if opinion.chars().count() > 2000 {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "意见（opinion）过长，最多 2000 字 the opinion is at most 2000 characters",
        ));
    }
    let needs_opinion = matches!(
        to,
        Stage::Returned | Stage::Rejected | Stage::Withdrawn | Stage::Suspended | Stage::Terminated
    );
    if needs_opinion && opinion.is_empty() {
        console.set_flash(
            &sid,
            format!(
                "意见（opinion）必填：{}需要写明理由 the opinion is required for {}",
                to.zh(),
                to.code()
            ),
        );
        return Ok(Redirect::to(&format!("/cases/{case}")).into_response());
    }
    if to == Stage::Notified && method.is_empty() {
        console.set_flash(
            &sid,
            "告知方式（method）必填 the notification method is required".into(),
        );
        return Ok(Redirect::to(&format!("/cases/{case}")).into_response());
    }
    let operator = user.clone();
    let case_for_call = case.clone();
    let outcome = console
        .call(move |office| {
            // What the node says this office may sign now, and nothing else.
            let allowed = office.actions(&case_for_call)?;
            if !allowed.transitions.contains(&to) {
                return Err(NodeError::Rejected(format!(
                    "本办公室现在不能签署{}（{}） this office may not sign {} on the case now",
                    to.zh(),
                    to.code(),
                    to.code()
                )));
            }
            let mut payload = Payload {
                opinion: opinion.clone(),
                ..Payload::default()
            };
            match to {
                Stage::InitialReviewed | Stage::DpfReviewed => {
                    payload.outcome = Some(Outcome::Approve);
                }
                Stage::Returned => payload.outcome = Some(Outcome::Return),
                Stage::Rejected => payload.outcome = Some(Outcome::Reject),
                Stage::Decided => {
                    let read = office.case(&case_for_call)?.read()?;
                    let (awards, first) = proposed_awards(office, &read)?;
                    if awards.is_empty() {
                        return Err(NodeError::Rejected(
                            "按政策无可审定的补贴，请选择不予通过并写明理由 the policy grants nothing: reject with the reasons".into(),
                        ));
                    }
                    payload.outcome = Some(Outcome::Approve);
                    payload.awards = awards;
                    payload.first_paid_month = Some(first);
                }
                Stage::Notified => payload.method = Some(method.clone()),
                _ => {}
            }
            office.act(&case_for_call, to, &payload, &operator, Timestamp::now())
        })
        .await;
    match outcome {
        Ok(()) => {
            tracing::info!(case = %case.short(), to = to.code(), operator = %user.as_str(), "signed from the console");
            console.set_flash(
                &sid,
                format!(
                    "已签署：{}（{}），经办人 {}",
                    to.zh(),
                    to.code(),
                    user.as_str()
                ),
            );
            Ok(Redirect::to(&format!("/cases/{case}")).into_response())
        }
        Err(err) if err.status == StatusCode::UNPROCESSABLE_ENTITY => Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("未签署 not signed: {}", err.message),
        )),
        Err(err) => Err(err),
    }
}

async fn evaluate(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (_, _, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let result: Result<Response, PageError> = async {
        let fields = form_fields(&body)?;
        let (sid, _) = console.check_post(&headers, field(&fields, "csrf"))?;
        let case = parse_case(&id)?;
        let score = field(&fields, "score")
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|s| (1..=5).contains(s))
            .ok_or_else(|| {
                PageError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "评分（score）须为 1 到 5 the score must be 1 to 5",
                )
            })?;
        let comment = field(&fields, "comment").unwrap_or("").trim().to_string();
        let operator = user.clone();
        let target = case.clone();
        console
            .call(move |office| {
                office.evaluate(&target, score, &comment, &operator, Timestamp::now())
            })
            .await?;
        console.set_flash(&sid, format!("已记录服务评价 {score}/5"));
        Ok(Redirect::to(&format!("/cases/{case}")).into_response())
    }
    .await;
    match result {
        Ok(r) => r,
        Err(err) => err.into_response(),
    }
}

/// A scan uploaded from the browser: spooled to a private file under its own
/// name, then attached through the control API. Answers JSON to the page's
/// script (`Accept: application/json`), a redirect to a plain form.
async fn upload(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    multipart: Multipart,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let (_, _, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let result = upload_inner(&console, &headers, &id, multipart, user).await;
    match (result, wants_json) {
        (Ok((sid, message, case)), false) => {
            console.set_flash(&sid, message);
            Redirect::to(&format!("/cases/{case}")).into_response()
        }
        (Ok((_, message, _)), true) => {
            axum::Json(json!({"ok": true, "message": message})).into_response()
        }
        (Err(err), true) => (
            err.status,
            axum::Json(json!({"ok": false, "message": err.message})),
        )
            .into_response(),
        (Err(err), false) => err.into_response(),
    }
}

async fn upload_inner(
    console: &Shared,
    headers: &HeaderMap,
    id: &str,
    mut multipart: Multipart,
    user: Operator,
) -> Result<(String, String, CaseId), PageError> {
    // The origin first, before a byte of the body is read.
    check_origin(headers)?;
    let case = parse_case(id)?;
    let bad = |message: &str| PageError::new(StatusCode::BAD_REQUEST, message.to_string());
    let mut csrf = None;
    let mut kind = None;
    let mut file: Option<(PathBuf, tempfile::TempDir, u64)> = None;
    while let Some(mut part) = multipart
        .next_field()
        .await
        .map_err(|_| bad("上传中断或格式错误 the upload was cut off or malformed"))?
    {
        match part.name().unwrap_or("") {
            "csrf" => csrf = Some(part.text().await.map_err(|_| bad("csrf"))?),
            "kind" => kind = Some(part.text().await.map_err(|_| bad("kind"))?),
            "file" => {
                let given = part.file_name().unwrap_or("scan").to_string();
                // Only the last path component of what the browser sends.
                let name = given
                    .rsplit(['/', '\\'])
                    .next()
                    .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                    .unwrap_or("scan")
                    .to_string();
                let dir = tempfile::Builder::new()
                    .prefix("upload-")
                    .tempdir_in(console.spool.path())
                    .map_err(|e| PageError::internal(format!("upload spool: {e}")))?;
                let path = dir.path().join(&name);
                let mut out = tokio::fs::File::create(&path).await.map_err(|_| {
                    PageError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "文件名（file_name）不可用 the file name cannot be used",
                    )
                })?;
                let mut size: u64 = 0;
                while let Some(chunk) = part
                    .chunk()
                    .await
                    .map_err(|_| bad("上传中断 the upload was cut off"))?
                {
                    size += chunk.len() as u64;
                    if size > MAX_MATERIAL_BYTES {
                        return Err(PageError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "材料文件过大，每个文件最多 64 MiB the file is over 64 MiB",
                        ));
                    }
                    tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                        .await
                        .map_err(|e| PageError::internal(format!("upload spool: {e}")))?;
                }
                tokio::io::AsyncWriteExt::flush(&mut out)
                    .await
                    .map_err(|e| PageError::internal(format!("upload spool: {e}")))?;
                file = Some((path, dir, size));
            }
            _ => {}
        }
    }
    let (sid, _) = console.check_post(headers, csrf.as_deref())?;
    let kind = kind.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "材料类别（kind）必选 choose the kind of material",
        )
    })?;
    let Some((path, dir, size)) = file else {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "文件（file）必选 choose a file to upload",
        ));
    };
    if size == 0 {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "文件（file）为空 the file is empty",
        ));
    }
    let operator = user;
    let target = case.clone();
    let kind_for_call = kind.trim().to_string();
    let attached = console
        .call(move |office| {
            let hash = office.attach(
                &target,
                &path,
                &kind_for_call,
                None,
                &operator,
                Timestamp::now(),
            );
            drop(dir);
            hash
        })
        .await?;
    tracing::info!(case = %case.short(), kind = %kind.trim(), size, "material attached from the console");
    Ok((
        sid,
        format!(
            "已上传材料 {}（{} 字节，{}…）",
            kind.trim(),
            size,
            attached.get(..12).unwrap_or(&attached)
        ),
        case,
    ))
}

async fn material(
    State(console): State<Shared>,
    headers: HeaderMap,
    UrlPath((id, hash)): UrlPath<(String, String)>,
) -> Response {
    if let Err(redirect) = console.signed_in(&headers) {
        return redirect.into_response();
    }
    let result: Result<Response, PageError> = async {
        let case = parse_case(&id)?;
        let parsed = hash.parse::<tongban_store::MaterialHash>().map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "材料哈希格式不对 not a material hash",
            )
        })?;
        let target = case.clone();
        let (bytes, media_type) = console
            .call(move |office| {
                let rows = office.materials(&target)?;
                let media_type = rows
                    .iter()
                    .find(|m| m.hash == parsed.to_hex())
                    .map(|m| m.media_type.clone())
                    .unwrap_or_else(|| "application/octet-stream".into());
                let bytes = office
                    .material(&target, &parsed)
                    .map_err(|e| NodeError::Rejected(e.to_string()))?;
                Ok((bytes, media_type))
            })
            .await?;
        // Images are shown in the page's viewer; a PDF or OFD is downloaded
        // to the office's own reader rather than run in the browser.
        let disposition = if media_type.starts_with("image/") {
            "inline".to_string()
        } else {
            format!(
                "attachment; filename=\"{}.{}\"",
                &hash.get(..12).unwrap_or("material"),
                media_type.rsplit('/').next().unwrap_or("bin")
            )
        };
        Ok((
            [
                (header::CONTENT_TYPE, media_type),
                (header::CONTENT_DISPOSITION, disposition),
                (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            ],
            bytes,
        )
            .into_response())
    }
    .await;
    match result {
        Ok(r) => r,
        Err(err) => err.into_response(),
    }
}

// ---- links and supervision ----

async fn links(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let (sid, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let status = match console.call(|office| office.status()).await {
        Ok(s) => s,
        Err(err) => return err.into_response(),
    };
    let peers: Vec<Value> = status
        .peers
        .iter()
        .map(|p| {
            json!({
                "office": p.office,
                "connected": p.connected,
                "address": p.address,
                "last_synced": p.last_synced_ms.map(ms_china),
                "waiting": p.waiting,
                "last_error": p.last_error,
                "refusal": p.refusal,
            })
        })
        .collect();
    let flash = console.take_flash(&sid);
    console.render(
        "links.html",
        Page {
            title: "连接状态 Links",
            nav: "links",
            session: Some(&session),
            user: Some(&user),
            contrast: contrast_of(&headers),
            flash,
        },
        json!({
            "peers": peers,
            "node": {
                "cases": status.cases,
                "latest_seq": status.latest_seq,
                "materials_missing": status.materials_missing,
                "duplicates": status.duplicates,
                "directory_version": status.directory_version,
            },
            "now": ms_china(Timestamp::now().0),
        }),
    )
}

/// A horizontal bar chart as accessible SVG: `bars` of (label, value,
/// second value shown hatched, e.g. overdue), with the data table beside it
/// in the page.
fn bar_chart(title: &str, desc: &str, bars: &[(String, f64, f64)], unit: &str) -> Value {
    let max = bars
        .iter()
        .map(|(_, v, _)| *v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let rows: Vec<Value> = bars
        .iter()
        .enumerate()
        .map(|(n, (label, value, second))| {
            let width = (value / max * 360.0).max(0.0);
            let second_width = (second / max * 360.0).max(0.0);
            json!({
                "y": 10 + n * 34,
                "label": label,
                "value": value,
                "value_text": format!("{value}{unit}"),
                "width": format!("{width:.1}"),
                "second": second,
                "second_width": format!("{second_width:.1}"),
            })
        })
        .collect();
    json!({
        "title": title,
        "desc": desc,
        "height": 20 + bars.len() * 34,
        "rows": rows,
    })
}

async fn supervision(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let (sid, session, user) = match console.signed_in(&headers) {
        Ok(s) => s,
        Err(redirect) => return redirect.into_response(),
    };
    let today = today();
    let from = today - chrono::Duration::days(90);
    let region = match console.division.len() {
        9 => console.division.get(..6).unwrap_or("00").to_string(),
        0 | 1 => "00".to_string(),
        _ => console.division.clone(),
    };
    let region_for_call = region.clone();
    let answers = console
        .call(move |office| {
            let ask = |kind| {
                office.report(&ReportRequest {
                    kind,
                    region: region_for_call.clone(),
                    from,
                    to: today,
                    as_of: today,
                    drill: None,
                })
            };
            Ok((ask(ReportKind::Backlog)?, ask(ReportKind::Review)?))
        })
        .await;
    let (backlog, review) = match answers {
        Ok(a) => a,
        Err(err) => return err.into_response(),
    };
    let backlog_bars: Vec<(String, f64, f64)> = backlog.report["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let stage = row["stage"]
                        .as_str()
                        .and_then(Stage::from_code)
                        .map(|s| format!("{} {}", s.zh(), s.code()))
                        .unwrap_or_default();
                    (
                        stage,
                        row["cases"].as_f64().unwrap_or(0.0),
                        row["overdue"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let review_bars: Vec<(String, f64, f64)> = review.report["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let role = row["role"]
                        .as_str()
                        .and_then(Role::from_code)
                        .map(|r| r.zh())
                        .unwrap_or("");
                    (
                        format!("{} {}", role, row["office"].as_str().unwrap_or("")),
                        (row["on_time_rate"].as_f64().unwrap_or(0.0) * 1000.0).round() / 10.0,
                        0.0,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let flash = console.take_flash(&sid);
    console.render(
        "supervision.html",
        Page {
            title: "监督 Supervision",
            nav: "supervision",
            session: Some(&session),
            user: Some(&user),
            contrast: contrast_of(&headers),
            flash,
        },
        json!({
            "region": region,
            "region_name": DivisionCode::parse(&region).ok().and_then(|c| Divisions::national().ok()?.full_name(&c)),
            "from": from.to_string(),
            "to": today.to_string(),
            "cases": backlog.cases,
            "backlog_chart": bar_chart(
                "积压案件（按阶段） Backlog by stage",
                "每个阶段等待办理的案件数，斜线部分为已超期的案件数。",
                &backlog_bars,
                " 件",
            ),
            "backlog_table": backlog.table,
            "review_chart": bar_chart(
                "审核及时率（按办公室） Review timeliness by office",
                "各审核办公室按时完成审核的比例（百分比）。",
                &review_bars,
                "%",
            ),
            "review_table": review.table,
        }),
    )
}

#[cfg(test)]
mod tests;
