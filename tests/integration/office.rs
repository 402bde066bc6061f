//! An office's day on one node: the authority certifies it, the window takes an
//! application, the materials notice is given once, materials are attached, and
//! each stage command signs with the office key.

use std::path::{Path, PathBuf};

use tongban_domain::ids::resident_id_check_char;

use crate::support::{stderr, stdout};

struct Office {
    tmp: tempfile::TempDir,
    data: PathBuf,
    auth: PathBuf,
}

fn run(office: &Office, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(args)
        .env("TONGBAN_DATA_DIR", &office.data)
        .env("TONGBAN_AUTHORITY_DIR", &office.auth)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(office: &Office, args: &[&str]) -> String {
    let out = run(office, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A certified township office node at `division`.
fn office(division: &str) -> Office {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let auth = tmp.path().join("auth");
    let office = Office { tmp, data, auth };
    ok(&office, &["directory", "init"]);
    let out = ok(&office, &["node", "init", "--office", division]);
    let key = out.lines().nth(2).unwrap().trim().to_string();
    ok(
        &office,
        &[
            "directory",
            "add",
            "--office",
            division,
            "--name",
            "测试街道办事处",
            "--role",
            "township",
            "--division",
            division,
            "--public-key",
            &key,
        ],
    );
    let dir_file = office.auth.join("directory.tbdir");
    let pub_file = office.auth.join("authority.pub");
    ok(
        &office,
        &[
            "node",
            "directory-import",
            dir_file.to_str().unwrap(),
            "--authority-key",
            pub_file.to_str().unwrap(),
        ],
    );
    office
}

fn resident(seq: &str) -> String {
    let first17 = format!("130102196805120{seq}");
    format!("{first17}{}", resident_id_check_char(&first17).unwrap())
}

fn new_case(office: &Office, id: &str) -> serde_json::Value {
    let cert = format!("{id}62");
    let out = ok(
        office,
        &[
            "case",
            "new",
            "--name",
            "李四",
            "--id",
            id,
            "--hukou",
            "130102001",
            "--certificate",
            &cert,
            "--dibao",
            "--long-term-care",
            "--kind",
            "living",
            "--kind",
            "nursing",
            "--operator",
            "窗口01",
            "--json",
        ],
    );
    serde_json::from_str(&out).unwrap()
}

fn scan(dir: &Path) -> PathBuf {
    let path = dir.join("scan.pdf");
    std::fs::write(&path, vec![0x25u8; 120_000]).unwrap();
    path
}

#[test]
fn a_local_application_from_intake_to_publicity() {
    let office = office("130102001");
    let created = new_case(&office, &resident("31"));
    let case = created["case_id"].as_str().unwrap().to_string();
    let notice: Vec<String> = created["notice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        notice.contains(&"dibao_certificate".to_string()),
        "{notice:?}"
    );

    // Accepting before the materials are complete lists every missing item.
    let out = run(&office, &["case", "accept", &case, "--operator", "窗口01"]);
    assert_eq!(out.status.code(), Some(1));
    for code in &notice {
        assert!(
            stderr(&out).contains(code.as_str()),
            "{code} not listed: {}",
            stderr(&out)
        );
    }
    let file = scan(office.tmp.path());
    for code in &notice {
        ok(
            &office,
            &[
                "case",
                "attach",
                &case,
                file.to_str().unwrap(),
                "--kind",
                code,
                "--operator",
                "窗口01",
            ],
        );
    }
    let out = run(
        &office,
        &[
            "case",
            "attach",
            &case,
            file.to_str().unwrap(),
            "--kind",
            "passport",
            "--operator",
            "窗口01",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("passport"));
    ok(&office, &["case", "accept", &case, "--operator", "窗口01"]);

    // A local application is publicized, not pushed; the review waits for the period.
    let out = run(&office, &["case", "push", &case, "--operator", "窗口01"]);
    assert_eq!(out.status.code(), Some(1));
    ok(
        &office,
        &["case", "publicize", &case, "--operator", "窗口01"],
    );
    let out = run(
        &office,
        &[
            "case",
            "review",
            &case,
            "--approve",
            "--opinion",
            "同意",
            "--operator",
            "初审01",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("公示期未满"), "{}", stderr(&out));

    let list: serde_json::Value =
        serde_json::from_str(&ok(&office, &["case", "list", "--json"])).unwrap();
    let row = &list.as_array().unwrap()[0];
    assert_eq!(row["case_id"], case.as_str());
    assert_eq!(row["stage"], "publicized");
    assert!(row["due"].is_string());
    let out = ok(&office, &["history", &case]);
    assert!(
        out.contains("公示 publicized") && out.contains("有效 valid"),
        "{out}"
    );
    ok(&office, &["verify", "--all"]);
    let show = ok(&office, &["case", "show", &case]);
    assert!(
        !show.contains("19680512"),
        "the ID appears in clear: {show}"
    );
}

#[test]
fn attach_refuses_bad_material_metadata_and_stores_nothing() {
    let office = office("130102001");
    let created = new_case(&office, &resident("42"));
    let case = created["case_id"].as_str().unwrap().to_string();
    let kind = created["notice"][0][0].as_str().unwrap().to_string();
    let dir = office.tmp.path();
    let attach = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "case",
            "attach",
            &case,
            file.to_str().unwrap(),
            "--kind",
            &kind,
            "--operator",
            "窗口01",
        ];
        args.extend_from_slice(extra);
        run(&office, &args)
    };
    let refused = |out: std::process::Output, expect: &[&str]| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        for text in ["材料信息有误", "material refused"].iter().chain(expect) {
            assert!(stderr(&out).contains(text), "{text}: {}", stderr(&out));
        }
    };
    let empty = dir.join("empty.pdf");
    std::fs::write(&empty, b"").unwrap();
    refused(attach(&empty, &[]), &["size", "empty"]);
    let unknown = dir.join("scan.heic");
    std::fs::write(&unknown, b"not really a scan").unwrap();
    refused(attach(&unknown, &[]), &["media_type", "--media-type"]);
    refused(
        attach(&unknown, &["--media-type", "text/plain"]),
        &["media_type \"text/plain\""],
    );
    let control = dir.join("id\ncard.pdf");
    std::fs::write(&control, b"%PDF").unwrap();
    refused(attach(&control, &[]), &["file_name", "control character"]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&office, &["case", "show", &case, "--json"])).unwrap();
    assert_eq!(shown["materials"].as_array().unwrap().len(), 0, "{shown}");
    // Named, the same file is a material.
    let out = attach(&unknown, &["--media-type", "image/jpeg"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&office, &["case", "show", &case, "--json"])).unwrap();
    assert_eq!(shown["materials"].as_array().unwrap().len(), 1, "{shown}");
}

#[test]
fn a_second_live_case_of_the_same_person_is_flagged_and_withdrawal_ends_it() {
    let office = office("130102001");
    let id = resident("53");
    let first = new_case(&office, &id);
    assert_eq!(first["possible_duplicates"].as_array().unwrap().len(), 0);
    let second = new_case(&office, &id);
    assert_eq!(second["possible_duplicates"][0], first["case_id"]);
    // Made at the domicile township itself, the second is flagged at once.
    let flagged = || -> Vec<String> {
        let rows: serde_json::Value =
            serde_json::from_str(&ok(&office, &["case", "list", "--json"])).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["duplicate"] == true)
            .map(|r| r["case_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(flagged(), [second["case_id"].as_str().unwrap()]);
    let first_id = first["case_id"].as_str().unwrap();
    ok(
        &office,
        &[
            "case",
            "withdraw",
            first_id,
            "--operator",
            "窗口01",
            "--reason",
            "重复申请",
        ],
    );
    // The first withdrawn, the second stands: its flag goes.
    assert!(flagged().is_empty());
    let third = new_case(&office, &id);
    assert_eq!(third["possible_duplicates"][0], second["case_id"]);
    assert_eq!(flagged(), [third["case_id"].as_str().unwrap()]);
    assert_eq!(third["possible_duplicates"].as_array().unwrap().len(), 1);
}

#[test]
fn intake_errors_name_every_field_and_store_nothing() {
    let office = office("130102001");
    let out = run(
        &office,
        &[
            "case",
            "new",
            "--name",
            "",
            "--id",
            "123",
            "--hukou",
            "130102999",
            "--kind",
            "food",
            "--operator",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for field in ["name:", "resident_id:", "hukou_township:", "subsidy_kinds:"] {
        assert!(err.contains(field), "{field} missing: {err}");
    }
    assert!(err.contains("130102 长安区"), "{err}");
    let list: serde_json::Value =
        serde_json::from_str(&ok(&office, &["case", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn a_revoked_office_can_no_longer_sign() {
    let office = office("130102001");
    let case = new_case(&office, &resident("75"))["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &office,
        &[
            "directory",
            "revoke",
            "--office",
            "130102001",
            "--reason",
            "电脑丢失",
        ],
    );
    let dir_file = office.auth.join("directory.tbdir");
    ok(
        &office,
        &["node", "directory-import", dir_file.to_str().unwrap()],
    );
    let out = run(
        &office,
        &["case", "withdraw", &case, "--operator", "窗口01"],
    );
    assert_eq!(out.status.code(), Some(1));
    // The office is told the real reason: its key was revoked (issue #14).
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // What it signed before the revocation still verifies.
    ok(&office, &["verify", &case]);
    let shown = ok(&office, &["directory", "show"]);
    assert!(shown.contains("revoked"), "{shown}");
}

#[test]
fn the_authority_certifies_only_strong_keys_for_a_real_time() {
    let office = office("130102001");
    let dir_file = office.auth.join("directory.tbdir");
    let before = std::fs::read(&dir_file).unwrap();
    let add = |key: &str, years: &str| {
        run(
            &office,
            &[
                "directory",
                "add",
                "--office",
                "130102002",
                "--name",
                "测试第二街道办事处",
                "--role",
                "township",
                "--division",
                "130102002",
                "--public-key",
                key,
                "--valid-years",
                years,
            ],
        )
    };
    let refused = |out: std::process::Output, expect: &[&str]| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        for text in expect {
            assert!(stderr(&out).contains(text), "{text}: {}", stderr(&out));
        }
    };
    // The identity and a point of order 4 (small order), and bytes that are no
    // curve point.
    let identity = format!("01{}", "0".repeat(62));
    refused(add(&identity, "5"), &["--public-key", "弱公钥", "weak key"]);
    refused(add(&"0".repeat(64), "5"), &["--public-key", "small order"]);
    let no_point = format!("02{}", "0".repeat(62));
    refused(add(&no_point, "5"), &["--public-key", "not a point"]);
    // The base point is a strong key, but not for zero years.
    let strong = format!("58{}", "66".repeat(31));
    refused(add(&strong, "0"), &["--valid-years", "至少一年"]);
    // A rotation to a weak key is refused before the current key is revoked.
    refused(
        run(
            &office,
            &[
                "directory",
                "rotate",
                "--office",
                "130102001",
                "--public-key",
                &identity,
            ],
        ),
        &["--public-key", "weak key"],
    );
    assert_eq!(std::fs::read(&dir_file).unwrap(), before);
    ok(
        &office,
        &[
            "directory",
            "add",
            "--office",
            "130102002",
            "--name",
            "测试第二街道办事处",
            "--role",
            "township",
            "--division",
            "130102002",
            "--public-key",
            &strong,
            "--valid-years",
            "1",
        ],
    );
}

#[test]
fn commands_without_a_node_say_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let office = Office {
        data: tmp.path().join("none"),
        auth: tmp.path().join("auth"),
        tmp,
    };
    let out = run(&office, &["case", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("none"), "{}", stderr(&out));
    std::fs::create_dir_all(&office.data).unwrap();
    let out = run(&office, &["case", "list"]);
    assert!(stderr(&out).contains("node init"), "{}", stderr(&out));
}
