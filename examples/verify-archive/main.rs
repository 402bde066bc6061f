//! Verifying a signed case archive from Rust.
//!
//! A case archive (`.tbarc`, written by `tongban case export`) carries one case
//! document, its signed stage transitions, the signed office directory and,
//! optionally, the scanned materials. Anyone holding the directory authority's
//! public key can check it on any machine, with no node and no network: this
//! program does what `tongban verify --archive FILE --authority-key KEY` does,
//! through the library call [`verify_archive`], and prints each stage.
//!
//! ```sh
//! tongban case export 440106001-20261128-K7Q2XM --out case.tbarc --data-dir /srv/tongban
//! cargo run -p tongban-examples --example verify_archive -- case.tbarc authority.pub
//! ```
//!
//! Exit status 0 when the archive verifies, 1 when anything fails (every failure
//! is printed with its stable code), 2 on a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::Timestamp;
use tongban_ledger::keys::PublicKey;
use tongban_node::archive::{ArchiveReport, StageStatus, verify_archive};

/// Reads the archive and the authority's public key (the hex line of
/// `authority.pub`) and verifies the one against the other, as of now.
pub fn run(archive: &Path, authority_key: &Path) -> anyhow::Result<ArchiveReport> {
    let key_text = std::fs::read_to_string(authority_key)
        .with_context(|| format!("reading {}", authority_key.display()))?;
    let authority = PublicKey::from_hex(key_text.trim())
        .with_context(|| format!("{} is not an authority key", authority_key.display()))?;
    let bytes = std::fs::read(archive).with_context(|| format!("reading {}", archive.display()))?;
    // The shipped working-day calendar: deadlines in the history are checked
    // against it (a year it does not cover makes a deadline provisional).
    let calendar = Calendar::shipped()?;
    Ok(verify_archive(
        &bytes,
        &authority,
        &calendar,
        Timestamp::now(),
    ))
}

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [archive, key] = args.as_slice() else {
        eprintln!("usage: verify_archive ARCHIVE.tbarc AUTHORITY.pub");
        return Ok(ExitCode::from(2));
    };
    let report = run(archive, key)?;
    if let Some(manifest) = &report.manifest {
        println!("案件 case {}", manifest.case);
    }
    for stage in &report.stages {
        let mark = match stage.status {
            StageStatus::Passed => "✔",
            StageStatus::Failed => "✘",
            StageStatus::Skipped => "-",
        };
        println!(
            "{mark} {} {}: {}",
            stage.stage_zh,
            stage.stage.code(),
            stage.detail
        );
    }
    for failure in &report.failures {
        println!(
            "    ✘ [{}] {}: {}",
            failure.stage.code(),
            failure.code,
            failure.reason
        );
    }
    if report.ok {
        println!("结论 result: ✔ 档案验证通过 archive verified");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "结论 result: ✘ 档案验证失败 archive refused（{} 个问题 problems）",
            report.failures.len()
        );
        Ok(ExitCode::from(1))
    }
}
