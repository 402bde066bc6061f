//! `examples/three-offices/run.sh` against the built binary: three `tongban
//! node run` processes on loopback (ports the system picks), one case taken
//! from the acceptance office through the hub to the domicile office and its
//! initial review back, verified at both ends and as a signed archive. The
//! script needs bash, which every supported Linux has.

use std::path::Path;
use std::process::Command;

use crate::support::{stderr, stdout};

#[test]
fn the_three_office_example_runs_one_case_through_three_processes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-offices/run.sh");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&work)
        .env("TONGBAN", env!("CARGO_BIN_EXE_tongban"))
        .env_remove("TONGBAN_DATA_DIR")
        .env_remove("TONGBAN_AUTHORITY_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (text, errors) = (stdout(&out), stderr(&out));
    let logs = |office: &str| std::fs::read_to_string(work.join(format!("{office}.log")));
    assert!(
        out.status.success(),
        "run.sh failed\n--- stdout\n{text}\n--- stderr\n{errors}\n--- 130102001.log\n{:?}",
        logs("130102001")
    );
    let case = text
        .lines()
        .find_map(|l| l.strip_prefix("完成 done: case "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no final line\n{text}"));
    assert!(
        tongban_domain::ids::CaseId::parse(case).is_ok(),
        "{case}\n{text}"
    );
    // Both offices verified the signed history, and so did the archive check.
    let verified = format!("✔ 验证通过 {case}");
    assert_eq!(text.matches(&verified).count(), 3, "{text}");
    assert!(text.contains("档案验证通过 archive verified"), "{text}");
    // The script left each node's data directory and configuration.
    for office in ["hub-cn", "440106001", "130102001"] {
        assert!(work.join(office).join("node.toml").is_file(), "{office}");
        assert!(work.join(format!("{office}.toml")).is_file(), "{office}");
    }
    let archive = work.join(format!("{case}.tbarc"));
    assert!(archive.is_file());
}
