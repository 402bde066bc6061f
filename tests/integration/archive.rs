//! Signed case archives: a real cross-province case is built on four real node data
//! directories through the CLI, up to the decision and its receipt at the acceptance
//! office, exported with its materials, and verified with `tongban verify --archive`
//! on nothing but the archive and the authority's public key. Then each kind of
//! tampering is applied — through `tongban_node::archive`, re-sealing the digest where
//! the point is to reach a deeper check — and each must be refused with its own
//! reason and exit status 1.
//!
//! The stage commands run through the binary; carrying the document between the
//! nodes, and the two receipts the nodes sign automatically on arrival, go through
//! the node library, standing in for sync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use tongban_case::schema::TransitionRecord;
use tongban_case::{CaseDocument, Outcome, Payload};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::Stage;
use tongban_ledger::keys::OfficeKey;
use tongban_ledger::transition::{SignedTransition, Transition};
use tongban_node::archive::{Archive, ArchivedTransition};
use tongban_node::local::LocalNode;

use crate::support::{stderr, stdout};

const ACCEPTANCE: &str = "440106001";
const DOMICILE: &str = "130102001";
const DPF: &str = "130102-dpf";
const CIVIL_AFFAIRS: &str = "130102-ca";

/// The case, built once and shared by every test of this module.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    auth: PathBuf,
    nodes: BTreeMap<&'static str, PathBuf>,
    case: CaseId,
    /// The clean archive, exported with materials.
    archive: PathBuf,
    /// A time before the case was started.
    before: Timestamp,
}

fn tongban(data: Option<&Path>, auth: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tongban"));
    cmd.args(args)
        .env_remove("TONGBAN_DATA_DIR")
        .env_remove("TONGBAN_AUTHORITY_DIR")
        .env_remove("RUST_LOG");
    if let Some(dir) = data {
        cmd.env("TONGBAN_DATA_DIR", dir);
    }
    if let Some(dir) = auth {
        cmd.env("TONGBAN_AUTHORITY_DIR", dir);
    }
    cmd.output().unwrap()
}

fn ok(data: Option<&Path>, auth: Option<&Path>, args: &[&str]) -> String {
    let out = tongban(data, auth, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn office_key(data: &Path) -> OfficeKey {
    OfficeKey::from_pem_like_str(&std::fs::read_to_string(data.join("office.key")).unwrap())
        .unwrap()
}

/// Carries the case document from one node to another, as sync would.
fn carry(case: &CaseId, from: &Path, to: &Path) {
    let mut doc = LocalNode::open(from).unwrap().case(case).unwrap();
    LocalNode::open(to).unwrap().save(case, &mut doc).unwrap();
}

/// The transition a node signs by itself when the case reaches it.
fn receipt(case: &CaseId, data: &Path, stage: Stage) {
    LocalNode::open(data)
        .unwrap()
        .act(
            case,
            stage,
            &Payload::default(),
            &Operator::parse("自动签收").unwrap(),
            Timestamp::now(),
        )
        .unwrap();
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

fn build_world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let auth = root.join("auth");
    let before = Timestamp(Timestamp::now().0 - 60 * 60 * 1000);
    ok(None, Some(&auth), &["directory", "init"]);
    let offices: [(&'static str, &str, &str, &str); 4] = [
        (ACCEPTANCE, "五山街道办事处", "township", ACCEPTANCE),
        (DOMICILE, "建北街道办事处", "township", DOMICILE),
        (DPF, "长安区残联", "county_dpf", "130102"),
        (
            CIVIL_AFFAIRS,
            "长安区民政局",
            "county_civil_affairs",
            "130102",
        ),
    ];
    let mut nodes = BTreeMap::new();
    for (office, name, role, division) in offices {
        let data = root.join(office);
        ok(Some(&data), None, &["node", "init", "--office", office]);
        let key = office_key(&data).public().to_string();
        ok(
            None,
            Some(&auth),
            &[
                "directory",
                "add",
                "--office",
                office,
                "--name",
                name,
                "--role",
                role,
                "--division",
                division,
                "--public-key",
                &key,
            ],
        );
        nodes.insert(office, data);
    }
    let dir_file = auth.join("directory.tbdir");
    let pub_file = auth.join("authority.pub");
    for data in nodes.values() {
        ok(
            Some(data),
            None,
            &[
                "node",
                "directory-import",
                dir_file.to_str().unwrap(),
                "--authority-key",
                pub_file.to_str().unwrap(),
            ],
        );
    }

    // Intake at the Guangzhou window for a Hebei resident.
    let a = nodes[ACCEPTANCE].as_path();
    let first17 = "13010219680512031";
    let id = format!("{first17}{}", resident_id_check_char(first17).unwrap());
    let cert = format!("{id}62");
    let created: serde_json::Value = serde_json::from_str(&ok(
        Some(a),
        None,
        &[
            "case",
            "new",
            "--name",
            "张建国",
            "--id",
            &id,
            "--hukou",
            DOMICILE,
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
    ))
    .unwrap();
    let case = CaseId::parse(created["case_id"].as_str().unwrap()).unwrap();
    let case_str = case.to_string();
    for (n, item) in created["notice"].as_array().unwrap().iter().enumerate() {
        let code = item[0].as_str().unwrap();
        let file = root.join(format!("scan-{n}.pdf"));
        std::fs::write(&file, format!("%PDF scan {n} of {code}").repeat(500)).unwrap();
        ok(
            Some(a),
            None,
            &[
                "case",
                "attach",
                &case_str,
                file.to_str().unwrap(),
                "--kind",
                code,
                "--operator",
                "窗口01",
            ],
        );
    }
    ok(
        Some(a),
        None,
        &["case", "accept", &case_str, "--operator", "窗口01"],
    );
    ok(
        Some(a),
        None,
        &["case", "push", &case_str, "--operator", "窗口01"],
    );

    // The domicile township receives and reviews; the county DPF re-reviews; the
    // county civil affairs bureau decides; the decision returns to the window.
    let b = nodes[DOMICILE].as_path();
    carry(&case, a, b);
    receipt(&case, b, Stage::Received);
    ok(
        Some(b),
        None,
        &[
            "case",
            "review",
            &case_str,
            "--approve",
            "--opinion",
            "属实，同意",
            "--operator",
            "初审02",
        ],
    );
    let c = nodes[DPF].as_path();
    carry(&case, b, c);
    ok(
        Some(c),
        None,
        &[
            "case",
            "review",
            &case_str,
            "--approve",
            "--opinion",
            "残疾人证核验一致",
            "--operator",
            "复审03",
        ],
    );
    let d = nodes[CIVIL_AFFAIRS].as_path();
    carry(&case, c, d);
    ok(
        Some(d),
        None,
        &["case", "decide", &case_str, "--operator", "审定04"],
    );
    carry(&case, d, a);
    receipt(&case, a, Stage::ResultReceived);

    // Export must not change what the node stores.
    let stored = |data: &Path| {
        let node = LocalNode::open(data).unwrap();
        (
            node.store().case_bytes(&case).unwrap(),
            node.store().latest_seq().unwrap(),
        )
    };
    let before_export = stored(a);
    let archive = root.join("case.tbarc");
    let out = ok(
        Some(a),
        None,
        &[
            "case",
            "export",
            &case_str,
            "--out",
            archive.to_str().unwrap(),
            "--with-materials",
        ],
    );
    assert!(out.contains("已导出 exported"), "{out}");
    assert_eq!(stored(a), before_export, "export changed the store");

    World {
        _tmp: tmp,
        root,
        auth,
        nodes,
        case,
        archive,
        before,
    }
}

/// `verify --archive FILE --authority-key KEY --json` with no data directory.
fn verify_json(file: &Path, key: &Path) -> (Option<i32>, serde_json::Value) {
    let out = tongban(
        None,
        None,
        &[
            "verify",
            "--archive",
            file.to_str().unwrap(),
            "--authority-key",
            key.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let json = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code(), json)
}

fn verify_text(file: &Path, key: &Path) -> Output {
    tongban(
        None,
        None,
        &[
            "verify",
            "--archive",
            file.to_str().unwrap(),
            "--authority-key",
            key.to_str().unwrap(),
        ],
    )
}

fn codes(json: &serde_json::Value) -> Vec<String> {
    json["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn reasons(json: &serde_json::Value, code: &str) -> String {
    json["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Verifies a tampered archive and returns its failure codes, asserting exit 1.
fn refused(world: &World, name: &str, bytes: &[u8]) -> serde_json::Value {
    let file = world.root.join(name);
    std::fs::write(&file, bytes).unwrap();
    let (code, json) = verify_json(&file, &world.auth.join("authority.pub"));
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["ok"], false);
    json
}

fn clean_archive(world: &World) -> Archive {
    Archive::decode(&std::fs::read(&world.archive).unwrap()).unwrap()
}

/// The document's transition records by key, ordered by seq.
fn records(doc: &CaseDocument) -> Vec<(String, TransitionRecord)> {
    let mut records: Vec<(String, TransitionRecord)> =
        doc.read().unwrap().transitions.into_iter().collect();
    records.sort_by_key(|(_, r)| r.seq);
    records
}

fn record_of(signed: &SignedTransition, payload: &[u8]) -> (String, TransitionRecord) {
    let t = &signed.transition;
    let hash = tongban_ledger::hex(&signed.hash());
    (
        hash,
        TransitionRecord {
            signed: signed.encode().into(),
            payload: payload.to_vec().into(),
            seq: u64::from(t.seq),
            from: t.from.map_or(String::new(), |s| s.code().to_string()),
            to: t.to.code().to_string(),
            office: t.office.to_string(),
            at: t.at.millis(),
        },
    )
}

/// Replaces transition records in the document and the archive, and re-seals.
fn rewrite(
    archive: &mut Archive,
    remove: &[String],
    add: Vec<(String, TransitionRecord)>,
) -> Vec<u8> {
    let mut doc = CaseDocument::load(&archive.document).unwrap();
    doc.update_unsigned(Timestamp::now(), "tamper", |case| {
        for key in remove {
            case.transitions.remove(key);
        }
        case.transitions.extend(add);
        Ok(())
    })
    .unwrap();
    archive.document = doc.save();
    archive.transitions = doc
        .raw_transitions()
        .unwrap()
        .into_iter()
        .map(|(signed, payload)| ArchivedTransition { signed, payload })
        .collect();
    archive.encode()
}

#[test]
fn a_clean_archive_verifies_on_a_machine_with_nothing_else() {
    let world = world();
    let (code, json) = verify_json(&world.archive, &world.auth.join("authority.pub"));
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["manifest"]["case"], world.case.as_str());
    assert_eq!(json["manifest"]["with_materials"], true);
    let stages: Vec<(&str, &str)> = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            ("integrity", "passed"),
            ("directory", "passed"),
            ("document", "passed"),
            ("transitions", "passed"),
            ("history", "passed"),
            ("materials", "passed"),
        ]
    );
    // draft, accepted, pushed, received, initial_reviewed, dpf_reviewed, decided,
    // result_received.
    assert_eq!(json["history"]["n_entries"], 8);

    let archive = clean_archive(world);
    assert!(!archive.materials.is_empty());
    assert_eq!(archive.transitions.len(), 8);

    let out = verify_text(&world.archive, &world.auth.join("authority.pub"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "文件完整性 integrity",
        "目录签名 directory",
        "签名历史 history",
        "材料 materials",
        "档案验证通过 archive verified",
    ] {
        assert!(text.contains(word), "{word} missing: {text}");
    }
    // Personal data is not printed.
    assert!(
        !text.contains("19680512") && !text.contains("张建国"),
        "{text}"
    );
}

#[test]
fn an_archive_without_materials_says_so_and_still_verifies() {
    let world = world();
    let file = world.root.join("no-materials.tbarc");
    let a = world.nodes[ACCEPTANCE].as_path();
    ok(
        Some(a),
        None,
        &[
            "case",
            "export",
            world.case.as_str(),
            "--out",
            file.to_str().unwrap(),
        ],
    );
    let (code, json) = verify_json(&file, &world.auth.join("authority.pub"));
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["manifest"]["with_materials"], false);
    // A node that never held the materials cannot claim them.
    let out = tongban(
        Some(&world.nodes[CIVIL_AFFAIRS]),
        None,
        &[
            "case",
            "export",
            world.case.as_str(),
            "--out",
            world.root.join("ca.tbarc").to_str().unwrap(),
            "--with-materials",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not held by this node"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_flipped_byte_in_the_document_fails_the_integrity_digest() {
    let world = world();
    let mut bytes = std::fs::read(&world.archive).unwrap();
    let docu = bytes.windows(4).position(|w| w == b"DOCU").unwrap();
    bytes[docu + 12 + 40] ^= 0x01;
    let json = refused(world, "flipped.tbarc", &bytes);
    assert_eq!(codes(&json), ["integrity_digest"]);
    assert!(
        reasons(&json, "integrity_digest").contains("altered or damaged"),
        "{json:#}"
    );
    // Re-sealed, the same flip reaches the document itself.
    let end = bytes.len() - 32;
    let digest = blake3::hash(&bytes[..end]);
    bytes[end..].copy_from_slice(digest.as_bytes());
    let json = refused(world, "flipped-resealed.tbarc", &bytes);
    assert!(
        codes(&json).contains(&"document_undecodable".to_string()),
        "{json:#}"
    );
}

#[test]
fn a_forged_transition_signature_is_named() {
    let world = world();
    let mut archive = clean_archive(world);
    let doc = CaseDocument::load(&archive.document).unwrap();
    let (key, tip) = records(&doc).pop().unwrap();
    let mut signed = SignedTransition::decode(&tip.signed).unwrap();
    signed.signature[10] ^= 0x40;
    let bytes = rewrite(&mut archive, &[key], vec![record_of(&signed, &tip.payload)]);
    let json = refused(world, "forged.tbarc", &bytes);
    // The record was put into the document by hand, in a change no office
    // signed: the verifier names that too.
    assert_eq!(
        codes(&json),
        ["bad_signature", "unauthorised_change"],
        "{json:#}"
    );
    assert!(
        reasons(&json, "bad_signature").contains("signature does not verify"),
        "{json:#}"
    );
    let out = verify_text(
        &world.root.join("forged.tbarc"),
        &world.auth.join("authority.pub"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("bad_signature"), "{}", stdout(&out));
}

#[test]
fn a_transition_signed_by_the_wrong_office_is_named() {
    // The domicile township's key signs the county DPF's re-review, and the rest of
    // the chain is re-signed by its real offices on top of it: only the signer is
    // wrong.
    let world = world();
    let keys: BTreeMap<&str, OfficeKey> = world
        .nodes
        .iter()
        .map(|(office, data)| (*office, office_key(data)))
        .collect();
    let mut archive = clean_archive(world);
    let doc = CaseDocument::load(&archive.document).unwrap();
    let chain = records(&doc);
    let start = chain
        .iter()
        .position(|(_, r)| r.to == Stage::DpfReviewed.code())
        .unwrap();
    let mut remove = Vec::new();
    let mut add = Vec::new();
    let mut prev = None;
    for (key, record) in &chain[start..] {
        let old = SignedTransition::decode(&record.signed).unwrap();
        let mut t: Transition = old.transition.clone();
        if prev.is_none() {
            t.office = tongban_domain::ids::OfficeId::parse(DOMICILE).unwrap();
        }
        let signer = &keys[t.office.as_str()];
        t.signer_key = signer.public();
        t.prev = prev.or(t.prev);
        let signed = SignedTransition::sign(t, signer).unwrap();
        prev = Some(signed.hash());
        remove.push(key.clone());
        add.push(record_of(&signed, &record.payload));
    }
    let bytes = rewrite(&mut archive, &remove, add);
    let json = refused(world, "wrong-office.tbarc", &bytes);
    // The record was put into the document by hand, in a change no office
    // signed: the verifier names that too.
    assert_eq!(
        codes(&json),
        ["wrong_signer", "unauthorised_change"],
        "{json:#}"
    );
    let reason = reasons(&json, "wrong_signer");
    assert!(reason.contains(DOMICILE), "{reason}");
}

#[test]
fn a_key_revoked_before_the_transition_is_named() {
    // The authority revokes the county DPF's key from a time before the case began;
    // the archive carries that directory, signed by the same authority.
    let world = world();
    let auth = world.root.join("auth-revoked");
    std::fs::create_dir_all(&auth).unwrap();
    for file in ["authority.key", "authority.pub", "directory.tbdir"] {
        std::fs::copy(world.auth.join(file), auth.join(file)).unwrap();
    }
    let effective = chrono::DateTime::from_timestamp_millis(world.before.millis())
        .unwrap()
        .to_rfc3339();
    ok(
        None,
        Some(&auth),
        &[
            "directory",
            "revoke",
            "--office",
            DPF,
            "--reason",
            "密钥泄露",
            "--effective",
            &effective,
        ],
    );
    let mut archive = clean_archive(world);
    archive.directory = std::fs::read(auth.join("directory.tbdir")).unwrap();
    let json = refused(world, "revoked.tbarc", &archive.encode());
    // The DPF's review opinion was vouched for only by the transition its
    // revoked key signed: no valid signature covers it any more.
    assert_eq!(codes(&json), ["revoked_key", "unsigned_change"], "{json:#}");
    let reason = reasons(&json, "revoked_key");
    assert!(
        reason.contains("revoked from") && reason.contains(DPF),
        "{reason}"
    );
}

#[test]
fn two_signed_successors_of_one_transition_are_a_fork() {
    let world = world();
    let mut archive = clean_archive(world);
    let mut doc = CaseDocument::load(&archive.document).unwrap();
    let (_, received) = records(&doc)
        .into_iter()
        .find(|(_, r)| r.to == Stage::Received.code())
        .unwrap();
    let received = SignedTransition::decode(&received.signed).unwrap();
    let key = office_key(&world.nodes[DOMICILE]);
    let payload = serde_json::to_vec(&Payload {
        opinion: "同意（另一份初审）".into(),
        outcome: Some(Outcome::Approve),
        ..Payload::default()
    })
    .unwrap();
    let second = SignedTransition::sign(
        Transition {
            case: world.case.clone(),
            seq: received.transition.seq + 1,
            from: Some(Stage::Received),
            to: Stage::InitialReviewed,
            office: received.transition.office.clone(),
            operator: Operator::parse("初审09").unwrap(),
            at: Timestamp(received.transition.at.0 + 60_000),
            heads: doc.heads(),
            prev: Some(received.hash()),
            payload_digest: Transition::digest_payload(&payload),
            signer_key: key.public(),
        },
        &key,
    )
    .unwrap();
    let bytes = rewrite(&mut archive, &[], vec![record_of(&second, &payload)]);
    let json = refused(world, "fork.tbarc", &bytes);
    // The record was put into the document by hand, in a change no office
    // signed: the verifier names that too.
    assert_eq!(codes(&json), ["fork", "unauthorised_change"], "{json:#}");
    assert!(
        reasons(&json, "fork").contains("2 signed successors"),
        "{json:#}"
    );
}

#[test]
fn the_wrong_authority_key_is_refused() {
    let world = world();
    let other = world.root.join("other-auth");
    ok(None, Some(&other), &["directory", "init"]);
    let (code, json) = verify_json(&world.archive, &other.join("authority.pub"));
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(codes(&json), ["wrong_authority"]);
    assert!(
        reasons(&json, "wrong_authority").contains("not by the given authority key"),
        "{json:#}"
    );
    // Without a trusted directory the history cannot be checked, and says so.
    let history = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "history")
        .unwrap();
    assert_eq!(history["status"], "skipped");
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let world = world();
    let bytes = std::fs::read(&world.archive).unwrap();
    let json = refused(world, "truncated.tbarc", &bytes[..bytes.len() / 2]);
    assert_eq!(codes(&json), ["truncated"]);
    let out = verify_text(
        &world.root.join("truncated.tbarc"),
        &world.auth.join("authority.pub"),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("truncated") && text.contains("at byte"),
        "{text}"
    );
    assert!(!stderr(&out).contains("panicked"));
    // Not an archive at all.
    let json = refused(world, "not-an-archive.tbarc", b"hello");
    assert_eq!(codes(&json), ["not_an_archive"]);
}

#[test]
fn materials_are_checked_against_their_hashes_and_the_document() {
    let world = world();
    let mut archive = clean_archive(world);
    archive.materials[0].bytes[0] ^= 0x20;
    let json = refused(world, "material-altered.tbarc", &archive.encode());
    assert_eq!(codes(&json), ["material_hash"], "{json:#}");

    let mut archive = clean_archive(world);
    archive.materials.remove(0);
    let json = refused(world, "material-missing.tbarc", &archive.encode());
    assert_eq!(codes(&json), ["material_missing"], "{json:#}");

    let mut archive = clean_archive(world);
    let extra = b"not a material of this case".to_vec();
    archive
        .materials
        .push(tongban_node::archive::ArchivedMaterial {
            hash: *blake3::hash(&extra).as_bytes(),
            bytes: extra,
        });
    let json = refused(world, "material-extra.tbarc", &archive.encode());
    assert_eq!(codes(&json), ["material_unrecorded"], "{json:#}");
}

#[test]
fn usage_errors_exit_2() {
    let world = world();
    let out = tongban(
        None,
        None,
        &["verify", "--archive", world.archive.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = tongban(
        None,
        None,
        &[
            "verify",
            "--all",
            "--archive",
            world.archive.to_str().unwrap(),
            "--authority-key",
            "k",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
