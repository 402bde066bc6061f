//! `tongban case material`: the scans attached at the acceptance office reach
//! the domicile township and county offices by real sync between `tongban node
//! run` processes, and a reviewer there writes one out byte for byte — through
//! the running node's control API and on the stopped node's store. A hub relays
//! them but hands none out; a material the case records but the node does not
//! hold yet has its own exit status until sync fetches it; every bad request is
//! refused naming its field, and writes nothing.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use tongban_domain::ids::CaseId;
use tongban_node::local::LocalNode;

use crate::daemon::{NodeProcess, case_new_ok, offices, ok, tongban};
use crate::support::{stderr, stdout};

const HUB_CN: &str = "hub-cn";
const HUB_COUNTY: &str = "hub-130102";
const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL_AFFAIRS: &str = "130102-ca";

/// `len` bytes that look like nothing in particular (a scan), from `seed`.
fn scan_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// `case material list CASE --json` at `data`, when it succeeds.
fn material_rows(data: &Path, auth: &Path, case: &str) -> Option<Vec<serde_json::Value>> {
    let out = tongban(
        Some(data),
        auth,
        &["case", "material", "list", case, "--json"],
    );
    if out.status.code() != Some(0) {
        return None;
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    rows.as_array().cloned()
}

/// Waits until `data` holds all `n` materials of `case`.
fn wait_for_materials(data: &Path, auth: &Path, case: &str, n: usize) {
    let start = Instant::now();
    loop {
        let rows = material_rows(data, auth, case).unwrap_or_default();
        if rows.len() == n && rows.iter().all(|r| r["held"] == true) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{}: materials of {case} did not arrive: {rows:?}",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(data: &Path, auth: &Path, case: &str, material: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "case",
        "material",
        "get",
        case,
        material,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tongban(Some(data), auth, &args)
}

/// A `get` that must succeed and write exactly `want` to `out`, 0600.
fn get_exactly(data: &Path, auth: &Path, case: &str, material: &str, out: &Path, want: &[u8]) {
    let run = get(data, auth, case, material, out, &[]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{material}\n{}\n{}",
        stdout(&run),
        stderr(&run)
    );
    let text = stdout(&run);
    assert!(text.contains("已取出材料 material written"), "{text}");
    assert!(text.contains(&blake3_hex(want)), "{text}");
    assert!(
        text.contains(&format!("{} 字节 bytes", want.len())),
        "{text}"
    );
    assert!(
        std::fs::read(out).unwrap() == want,
        "{} differs",
        out.display()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", out.display());
    }
}

/// A `get` that must be refused with exit status `code`, naming `field` and
/// saying `reason`, and leave `out` as it was (absent, or with `before`).
#[allow(clippy::too_many_arguments)]
fn get_refused(
    data: &Path,
    auth: &Path,
    case: &str,
    material: &str,
    out: &Path,
    extra: &[&str],
    code: i32,
    field: &str,
    reason: &str,
) {
    let before = std::fs::read(out).ok();
    let run = get(data, auth, case, material, out, extra);
    let text = stderr(&run);
    assert_eq!(run.status.code(), Some(code), "{material}: {text}");
    assert!(text.contains(field), "{material}: no {field:?} in {text}");
    assert!(text.contains(reason), "{material}: no {reason:?} in {text}");
    assert_eq!(std::fs::read(out).ok(), before, "{material}: --out changed");
    // And in `--json`, the same failure names the field.
    if !extra.contains(&"--json") && out.to_str() != Some("-") {
        let mut extra = extra.to_vec();
        extra.push("--json");
        let run = get(data, auth, case, material, out, &extra);
        assert_eq!(run.status.code(), Some(code));
        let json: serde_json::Value =
            serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&run)));
        assert_eq!(json["error"]["field"], field, "{json}");
        assert_eq!(json["error"]["code"], code, "{json}");
        assert_eq!(std::fs::read(out).ok(), before, "{material}: --out changed");
    }
}

/// A raw `GET path` on the control socket of the running node in `data`, with
/// its token: the status code and the body.
#[cfg(unix)]
fn control_get(data: &Path, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(data.join("control.token")).unwrap();
    let mut stream = std::os::unix::net::UnixStream::connect(data.join("control.sock")).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: tongban\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    (status, answer[split + 4..].to_vec())
}

/// The control API's material route, asked directly: the bytes, and 404s
/// that say what is missing.
#[cfg(unix)]
fn control_route(data: &Path, case: &str, hash: &str, want: &[u8]) {
    let (status, body) = control_get(data, &format!("/v1/cases/{case}/materials/{hash}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body == want, "the route's bytes differ");
    let error = |path: &str, want_status: u16| {
        let (status, body) = control_get(data, path);
        assert_eq!(
            status,
            want_status,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let absent = "0".repeat(64);
    let json = error(&format!("/v1/cases/{case}/materials/{absent}"), 404);
    assert_eq!(json["missing"], "material", "{json}");
    assert!(json["error"].as_str().unwrap().contains(&absent), "{json}");
    let json = error(
        &format!("/v1/cases/130102001-20250101-AAAAAA/materials/{hash}"),
        404,
    );
    assert_eq!(json["missing"], "case", "{json}");
    let json = error(&format!("/v1/cases/{case}/materials/{}", &hash[..12]), 400);
    assert!(json["error"].as_str().unwrap().contains("hash"), "{json}");
    let (status, body) = control_get(data, &format!("/v1/cases/{case}/materials"));
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(rows.as_array().unwrap().iter().any(|r| r["hash"] == hash));
}

/// The error cases a reviewer can make, at `data` (running or not).
fn every_refusal(data: &Path, auth: &Path, case: &str, files: &Path, hukou_hash: &str) {
    let out = files.join("refused.jpg");
    let unknown_case = "130102001-20250101-AAAAAA";
    assert!(CaseId::parse(unknown_case).is_ok());
    get_refused(
        data,
        auth,
        unknown_case,
        "hukou_book",
        &out,
        &[],
        1,
        "CASE",
        "is not held by this node",
    );
    get_refused(
        data,
        auth,
        case,
        "residence_permit",
        &out,
        &[],
        1,
        "KIND|HASH",
        "records no material \"residence_permit\"",
    );
    let unknown_hash = "0".repeat(64);
    get_refused(
        data,
        auth,
        case,
        &unknown_hash,
        &out,
        &[],
        1,
        "KIND|HASH",
        &unknown_hash,
    );
    // A prefix too short to be safe, and a prefix of no recorded hash.
    get_refused(
        data,
        auth,
        case,
        &hukou_hash[..7],
        &out,
        &[],
        1,
        "KIND|HASH",
        "at least 8 hex digits",
    );
    let flipped = format!(
        "{}{}",
        if hukou_hash.starts_with('0') {
            '1'
        } else {
            '0'
        },
        &hukou_hash[1..12]
    );
    get_refused(
        data,
        auth,
        case,
        &flipped,
        &out,
        &[],
        1,
        "KIND|HASH",
        "records no material",
    );
    // Two scans of one kind: the kind alone is refused, listing both.
    let run = get(data, auth, case, "id_card", &out, &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("name one by its hash"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
    // An existing file is kept without --force.
    let kept = files.join("kept.jpg");
    std::fs::write(&kept, b"the reviewer's own file").unwrap();
    get_refused(
        data,
        auth,
        case,
        "hukou_book",
        &kept,
        &[],
        1,
        "--out",
        "文件已存在",
    );
    assert_eq!(std::fs::read(&kept).unwrap(), b"the reviewer's own file");
    std::fs::remove_file(&kept).unwrap();
    assert!(!out.exists());
}

#[test]
fn reviewers_at_the_domicile_get_exactly_the_scans_the_acceptance_office_attached() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let auth = offices(
        root,
        &[
            (HUB_CN, "hub", "00"),
            (HUB_COUNTY, "hub", "130102"),
            (ACCEPTANCE, "township", "440106001"),
            (DOMICILE, "township", "130102001"),
            (DPF, "county_dpf", "130102"),
            (CIVIL_AFFAIRS, "county_civil_affairs", "130102"),
        ],
    );
    let dir = |office: &str| root.join(office);
    let hub = NodeProcess::start(root, HUB_CN, None);
    let county = NodeProcess::start(root, HUB_COUNTY, Some((HUB_CN, &hub.quic)));
    let acceptance = NodeProcess::start(root, ACCEPTANCE, Some((HUB_CN, &hub.quic)));
    let domicile = NodeProcess::start(root, DOMICILE, Some((HUB_COUNTY, &county.quic)));
    let dpf = NodeProcess::start(root, DPF, Some((HUB_COUNTY, &county.quic)));

    // The acceptance office takes the application and its scans through its
    // running node: the hukou book a scan of 1.5 MiB (two sync chunks), the ID
    // card front and back, and every other item of the notice.
    let created = case_new_ok(&dir(ACCEPTANCE), &auth, 7);
    let case = created["case_id"].as_str().unwrap().to_string();
    let files = root.join("files");
    std::fs::create_dir(&files).unwrap();
    let mut attached: Vec<(String, Vec<u8>)> = Vec::new();
    let codes: Vec<String> = created["notice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[0].as_str().unwrap().to_string())
        .collect();
    assert!(codes.iter().any(|c| c == "hukou_book"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "id_card"), "{codes:?}");
    for (i, code) in codes.iter().enumerate() {
        let len = if code == "hukou_book" {
            1_536 * 1024
        } else {
            20_000 + i
        };
        attached.push((format!("{code}.jpg"), scan_bytes(i as u64, len)));
    }
    attached.push(("id_card_back.jpg".into(), scan_bytes(99, 30_000)));
    for (name, bytes) in &attached {
        let file = files.join(name);
        std::fs::write(&file, bytes).unwrap();
        let kind = name.trim_end_matches(".jpg").trim_end_matches("_back");
        ok(
            Some(&dir(ACCEPTANCE)),
            &auth,
            &[
                "case",
                "attach",
                &case,
                file.to_str().unwrap(),
                "--kind",
                kind,
                "--operator",
                "窗口01",
            ],
        );
    }
    for step in ["accept", "push"] {
        ok(
            Some(&dir(ACCEPTANCE)),
            &auth,
            &["case", step, &case, "--operator", "窗口01"],
        );
    }
    let bytes_of = |name: &str| {
        attached
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    let hukou = bytes_of("hukou_book.jpg");
    let hukou_hash = blake3_hex(&hukou);
    let front = bytes_of("id_card.jpg");
    let back = bytes_of("id_card_back.jpg");
    let n = attached.len();

    // By sync, the scans reach the domicile township and county DPF, and the
    // county hub that relays them.
    for office in [DOMICILE, DPF, HUB_COUNTY] {
        wait_for_materials(&dir(office), &auth, &case, n);
    }

    // The domicile reviewer, through the running node's control API.
    let status = ok(Some(&dir(DOMICILE)), &auth, &["node", "status", "--json"]);
    assert!(status.contains("\"running\": true"), "{status}");
    let listed = ok(
        Some(&dir(DOMICILE)),
        &auth,
        &["case", "material", "list", &case],
    );
    assert!(listed.contains("户口簿 hukou_book"), "{listed}");
    assert!(listed.contains(&hukou_hash[..16]), "{listed}");
    assert!(listed.contains("已存 held"), "{listed}");
    assert!(!listed.contains("尚未同步"), "{listed}");
    let out = files.join("domicile-hukou.jpg");
    get_exactly(&dir(DOMICILE), &auth, &case, "hukou_book", &out, &hukou);
    // By a hash prefix (upper case too), and by the full hash.
    let front_hash = blake3_hex(&front);
    let out = files.join("domicile-front.jpg");
    get_exactly(
        &dir(DOMICILE),
        &auth,
        &case,
        &front_hash[..12].to_ascii_uppercase(),
        &out,
        &front,
    );
    let out = files.join("domicile-back.jpg");
    get_exactly(
        &dir(DOMICILE),
        &auth,
        &case,
        &blake3_hex(&back),
        &out,
        &back,
    );
    // --force replaces a file; `--out -` writes the bytes to standard output
    // and says what it wrote on stderr; --json says what was written.
    let to_stdout = get(
        &dir(DOMICILE),
        &auth,
        &case,
        "hukou_book",
        Path::new("-"),
        &[],
    );
    assert_eq!(to_stdout.status.code(), Some(0), "{}", stderr(&to_stdout));
    assert!(to_stdout.stdout == hukou);
    assert!(
        stderr(&to_stdout).contains("已取出材料"),
        "{}",
        stderr(&to_stdout)
    );
    let forced = files.join("domicile-back.jpg");
    let run = get(
        &dir(DOMICILE),
        &auth,
        &case,
        "hukou_book",
        &forced,
        &["--force", "--json"],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["hash"], hukou_hash.as_str());
    assert_eq!(json["kind"], "hukou_book");
    assert_eq!(json["size"], hukou.len());
    assert!(std::fs::read(&forced).unwrap() == hukou);
    every_refusal(&dir(DOMICILE), &auth, &case, &files, &hukou_hash);
    #[cfg(unix)]
    control_route(&dir(DOMICILE), &case, &hukou_hash, &hukou);

    // The county DPF's reviewer too.
    let out = files.join("dpf-hukou.jpg");
    get_exactly(&dir(DPF), &auth, &case, "hukou_book", &out, &hukou);

    // The county hub holds them only to relay them: it hands none out.
    let out = files.join("hub-hukou.jpg");
    let run = get(&dir(HUB_COUNTY), &auth, &case, "hukou_book", &out, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("不是该案件的办理机关"),
        "{}",
        stderr(&run)
    );
    assert!(stderr(&run).contains("hubs hold materials only to relay them"));
    assert!(!out.exists());
    // Nor in an archive: `case export --with-materials` asks the same rule.
    let archive = files.join("hub.tbarc");
    let run = tongban(
        Some(&dir(HUB_COUNTY)),
        &auth,
        &[
            "case",
            "export",
            &case,
            "--out",
            archive.to_str().unwrap(),
            "--with-materials",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("hubs hold materials only to relay them"),
        "{}",
        stderr(&run)
    );
    assert!(!archive.exists());
    #[cfg(unix)]
    {
        let (status, body) = control_get(
            &dir(HUB_COUNTY),
            &format!("/v1/cases/{case}/materials/{hukou_hash}"),
        );
        assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    }

    // The domicile node stopped: the same, on its store.
    assert_eq!(domicile.terminate(), 0);
    let status = ok(Some(&dir(DOMICILE)), &auth, &["node", "status", "--json"]);
    assert!(status.contains("\"running\": false"), "{status}");
    let out = files.join("stopped-hukou.jpg");
    get_exactly(&dir(DOMICILE), &auth, &case, "hukou_book", &out, &hukou);
    let out = files.join("stopped-back.jpg");
    get_exactly(
        &dir(DOMICILE),
        &auth,
        &case,
        &blake3_hex(&back)[..8],
        &out,
        &back,
    );
    every_refusal(&dir(DOMICILE), &auth, &case, &files, &hukou_hash);

    // The county civil affairs node has the document but not yet the scans
    // (carried here from the stopped domicile store, standing in for a sync
    // that has not fetched them): not yet held, exit 3, nothing written.
    let id = CaseId::parse(&case).unwrap();
    let mut doc = LocalNode::open(&dir(DOMICILE)).unwrap().case(&id).unwrap();
    LocalNode::open(&dir(CIVIL_AFFAIRS))
        .unwrap()
        .save(&id, &mut doc)
        .unwrap();
    let rows = material_rows(&dir(CIVIL_AFFAIRS), &auth, &case).unwrap();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r["held"] == false), "{rows:?}");
    let listed = ok(
        Some(&dir(CIVIL_AFFAIRS)),
        &auth,
        &["case", "material", "list", &case],
    );
    assert!(listed.contains("尚未同步 not yet"), "{listed}");
    let out = files.join("civil-hukou.jpg");
    get_refused(
        &dir(CIVIL_AFFAIRS),
        &auth,
        &case,
        "hukou_book",
        &out,
        &[],
        3,
        "KIND|HASH",
        "材料尚未同步到本节点",
    );
    let run = get(
        &dir(CIVIL_AFFAIRS),
        &auth,
        &case,
        "hukou_book",
        &out,
        &["--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["error"]["kind"], "not_yet_held", "{json}");

    // Once it runs, sync fetches them from its hub, and the reviewer gets
    // them through its control API.
    let civil = NodeProcess::start(root, CIVIL_AFFAIRS, Some((HUB_COUNTY, &county.quic)));
    wait_for_materials(&dir(CIVIL_AFFAIRS), &auth, &case, n);
    get_exactly(
        &dir(CIVIL_AFFAIRS),
        &auth,
        &case,
        "hukou_book",
        &out,
        &hukou,
    );

    for node in [civil, dpf, acceptance, county, hub] {
        assert_eq!(node.terminate(), 0);
    }
}
