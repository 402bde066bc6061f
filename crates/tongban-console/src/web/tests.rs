//! The console's guards over a node opened in the test (the console proper
//! reaches its node through the control API; the guards are the same):
//! sign-in, CSRF and Origin checks, field errors, and actions offered and
//! accepted only when the node says this office may sign them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::Request;
use tongban_domain::ids::resident_id_check_char;
use tongban_node::local::LocalNode;
use tongban_node::provision::{OfficeSpec, provision};
use tower::ServiceExt;

use super::*;

const HOST: &str = "127.0.0.1:8088";

struct Fixture {
    _dir: tempfile::TempDir,
    router: Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    provision(
        dir.path(),
        &[OfficeSpec::new("440106001", Role::Township, "440106001")],
        Timestamp(now.0 - 86_400_000),
        Timestamp(now.0 + 365 * 86_400_000),
    )
    .unwrap();
    let data = dir.path().join("440106001");
    let node = LocalNode::open(&data).unwrap();
    let console = Console::with_office(&data, Box::new(node)).unwrap();
    console.accounts().add("窗口01", "password-1").unwrap();
    Fixture {
        _dir: dir,
        router: router(Arc::new(console)),
    }
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
    bytes: Vec<u8>,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let location = header_text(header::LOCATION);
    let cookie =
        header_text(header::SET_COOKIE).and_then(|c| c.split(';').next().map(str::to_string));
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body.to_vec(),
    }
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str, cookie: &str, origin: Option<&str>, form: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request
        .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
        .unwrap()
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    body[at..at + 64].to_string()
}

const ORIGIN: Option<&str> = Some("http://127.0.0.1:8088");

/// Signs in; answers the session cookie and its CSRF token.
async fn sign_in(router: &Router) -> (String, String) {
    let page = send(router, get("/login", "")).await;
    let cookie = page.cookie.unwrap();
    let csrf = csrf_of(&page.body);
    let answer = send(
        router,
        post(
            "/login",
            &cookie,
            ORIGIN,
            &[
                ("csrf", &csrf),
                ("name", "窗口01"),
                ("password", "password-1"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.cookie.unwrap();
    let queue = send(router, get("/", &cookie)).await;
    assert_eq!(queue.status, StatusCode::OK);
    (cookie.clone(), csrf_of(&queue.body))
}

fn resident() -> String {
    let first17 = "13010219680510007";
    format!("{first17}{}", resident_id_check_char(first17).unwrap())
}

fn intake_form<'a>(csrf: &'a str, id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", "李四"),
        ("resident_id", id),
        ("hukou_township", "130102001"),
        ("subsidy_kinds", "living"),
        ("dibao", "1"),
        ("phone", "13800000000"),
        ("address", "长安区"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_does_not_sign_in_and_pages_need_a_session() {
    let f = fixture();
    let page = send(&f.router, get("/", "")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/login"));
    let login = send(&f.router, get("/login", "")).await;
    let cookie = login.cookie.unwrap();
    let csrf = csrf_of(&login.body);
    let answer = send(
        &f.router,
        post(
            "/login",
            &cookie,
            ORIGIN,
            &[
                ("csrf", &csrf),
                ("name", "窗口01"),
                ("password", "password-2"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.location.as_deref(), Some("/login"));
    assert_eq!(
        send(&f.router, get("/", &cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_session_csrf_token_or_from_another_origin_is_refused() {
    let f = fixture();
    let (cookie, csrf) = sign_in(&f.router).await;
    let id = resident();
    let wrong = send(
        &f.router,
        post(
            "/intake",
            &cookie,
            ORIGIN,
            &intake_form("0".repeat(64).as_str(), &id),
        ),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert!(wrong.body.contains("跨站请求防护"), "{}", wrong.body);
    let missing: Vec<(&str, &str)> = intake_form(&csrf, &id).into_iter().skip(1).collect();
    let missing = send(&f.router, post("/intake", &cookie, ORIGIN, &missing)).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let foreign = send(
        &f.router,
        post(
            "/intake",
            &cookie,
            Some("http://evil.example"),
            &intake_form(&csrf, &id),
        ),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.body);
    assert!(foreign.body.contains("请求来源不符"), "{}", foreign.body);
    // Nothing was stored by any of them.
    let queue = send(&f.router, get("/?all=1", &cookie)).await;
    assert!(queue.body.contains("本节点共持有 0 件"), "{}", queue.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_intake_names_the_field_and_stores_nothing() {
    let f = fixture();
    let (cookie, csrf) = sign_in(&f.router).await;
    let bad_id = format!("{}0", &resident()[..17]);
    let mut form = intake_form(&csrf, &bad_id);
    form.retain(|(k, _)| *k != "subsidy_kinds");
    let answer = send(&f.router, post("/intake", &cookie, ORIGIN, &form)).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.body.contains("公民身份号码（resident_id）"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("申请补贴类别（subsidy_kinds）"),
        "{}",
        answer.body
    );
    let queue = send(&f.router, get("/?all=1", &cookie)).await;
    assert!(queue.body.contains("本节点共持有 0 件"), "{}", queue.body);
    // A body that is not a form, and one over the limit, are refused too.
    let garbage = Request::post("/intake")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .body(Body::from(vec![0xff_u8; 2 * MAX_FORM_BODY]))
        .unwrap();
    assert!(send(&f.router, garbage).await.status.is_client_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_transitions_the_node_allows_are_offered_and_signed() {
    let f = fixture();
    let (cookie, csrf) = sign_in(&f.router).await;
    let id = resident();
    let made = send(
        &f.router,
        post("/intake", &cookie, ORIGIN, &intake_form(&csrf, &id)),
    )
    .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let case_path = made.location.unwrap();
    let page = send(&f.router, get(&case_path, &cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    // At `draft` the window may accept or withdraw; the domicile's review is
    // not this office's.
    assert!(
        page.body.contains(r#"name="to" value="accepted""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"name="to" value="withdrawn""#));
    assert!(!page.body.contains(r#"value="initial_reviewed""#));
    assert!(page.body.contains("李四"));
    let forged = send(
        &f.router,
        post(
            &format!("{case_path}/act"),
            &cookie,
            ORIGIN,
            &[
                ("csrf", &csrf),
                ("to", "initial_reviewed"),
                ("opinion", "越权"),
            ],
        ),
    )
    .await;
    assert_eq!(
        forged.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        forged.body
    );
    assert!(forged.body.contains("不能签署"), "{}", forged.body);
    let unknown = send(
        &f.router,
        post(
            &format!("{case_path}/act"),
            &cookie,
            ORIGIN,
            &[("csrf", &csrf), ("to", "nonsense")],
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    // A withdrawal needs its reason, then is signed with the operator.
    let no_reason = send(
        &f.router,
        post(
            &format!("{case_path}/act"),
            &cookie,
            ORIGIN,
            &[("csrf", &csrf), ("to", "withdrawn"), ("opinion", " ")],
        ),
    )
    .await;
    assert_eq!(no_reason.status, StatusCode::SEE_OTHER);
    let page = send(&f.router, get(&case_path, &cookie)).await;
    assert!(page.body.contains("意见（opinion）必填"), "{}", page.body);
    assert!(page.body.contains("受理中"), "still a draft");
    let withdrawn = send(
        &f.router,
        post(
            &format!("{case_path}/act"),
            &cookie,
            ORIGIN,
            &[
                ("csrf", &csrf),
                ("to", "withdrawn"),
                ("opinion", "申请人撤回"),
            ],
        ),
    )
    .await;
    assert_eq!(withdrawn.status, StatusCode::SEE_OTHER);
    let page = send(&f.router, get(&case_path, &cookie)).await;
    assert!(page.body.contains("withdrawn"), "{}", page.body);
    assert!(page.body.contains("窗口01"));
    assert!(!page.body.contains(r#"name="to" value="accepted""#));
    // A case id that does not parse, and one not held, are pages, not panics.
    assert_eq!(
        send(&f.router, get("/cases/nonsense", &cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&f.router, get("/cases/440106001-20261127-K7Q2XM", &cookie))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_uploaded_without_script_is_attached_and_served_back() {
    let f = fixture();
    let (cookie, csrf) = sign_in(&f.router).await;
    let id = resident();
    let made = send(
        &f.router,
        post("/intake", &cookie, ORIGIN, &intake_form(&csrf, &id)),
    )
    .await;
    let case_path = made.location.unwrap();
    let scan: &[u8] = b"\x89PNG\r\n\x1a\nnot really a png";
    let boundary = "XBOUNDARYX";
    let mut body = Vec::new();
    for (name, value) in [("csrf", csrf.as_str()), ("kind", "id_card")] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\\\scans\\\\id.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(scan);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let upload = Request::post(format!("{case_path}/materials"))
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, ORIGIN.unwrap())
        .header(header::ACCEPT, "application/json")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let answer = send(&f.router, upload).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("\"ok\":true"), "{}", answer.body);
    let page = send(&f.router, get(&case_path, &cookie)).await;
    assert!(page.body.contains("id.png"), "the file keeps its own name");
    let at = page.body.find("/materials/").unwrap() + "/materials/".len();
    let hash = &page.body[at..at + 64];
    let served = send(
        &f.router,
        get(&format!("{case_path}/materials/{hash}"), &cookie),
    )
    .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(served.bytes, scan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_is_previewed_from_the_policy_once_the_form_allows() {
    let f = fixture();
    let (cookie, _) = sign_in(&f.router).await;
    let id = resident();
    let waiting = send(
        &f.router,
        get("/api/notice?hukou_township=130102001", &cookie),
    )
    .await;
    assert!(waiting.body.contains("\"items\":null"), "{}", waiting.body);
    let query = serde_urlencoded::to_string([
        ("resident_id", id.as_str()),
        ("hukou_township", "130102001"),
        ("subsidy_kinds", "living"),
        ("dibao", "1"),
    ])
    .unwrap();
    let answer = send(&f.router, get(&format!("/api/notice?{query}"), &cookie)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("id_card"), "{}", answer.body);
}
