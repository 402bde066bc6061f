//! `tongban case material ...`: a case's scanned materials for its reviewers.
//! Which material `KIND|HASH` names, and whether this node may hand it out,
//! are the node library's (`tongban_node::materials`); this module only asks,
//! writes the file and prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use tongban_node::materials::{MaterialRow, Missing, select};
use tongban_store::MaterialHash;

use super::case::case_id;
use super::{open_target, reject_field};
use crate::cli::MaterialCommand;
use crate::error::Failure;
use crate::output::print_json;

macro_rules! tryx {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return Ok(code),
        }
    };
}

/// The argument that names a material.
const MATERIAL_ARG: &str = "KIND|HASH";

pub fn run(cmd: MaterialCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MaterialCommand::List { case, json, data } => {
            let id = tryx!(case_id(&case));
            let node = tryx!(open_target(&data));
            let rows = match node.materials(&id) {
                Ok(rows) => rows,
                Err(e) => return Ok(Failure::from(&e).naming("CASE").report()),
            };
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("案件 {id} 尚未记录材料 no materials recorded");
            } else {
                print_list(&id.to_string(), &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        MaterialCommand::Get {
            case,
            material,
            out,
            force,
            json,
            data,
        } => get(&case, &material, &out, force, json, &data),
    }
}

fn print_list(case: &str, rows: &[MaterialRow]) {
    println!("案件 {case} 的材料 materials:");
    let lines = rows.iter().map(|r| {
        vec![
            if r.kind_zh.is_empty() {
                r.kind.clone()
            } else {
                format!("{} {}", r.kind_zh, r.kind)
            },
            r.size.to_string(),
            r.hash[..r.hash.len().min(16)].to_string(),
            if r.held {
                "已存 held".to_string()
            } else {
                "尚未同步 not yet".to_string()
            },
            r.file_name.clone(),
        ]
    });
    println!(
        "{}",
        crate::output::table(
            &[
                "材料 kind",
                "字节 bytes",
                "哈希 hash",
                "本节点 here",
                "文件 file"
            ],
            lines
        )
    );
}

/// What `case material get --json` prints.
#[derive(Serialize)]
struct Written<'a> {
    case_id: String,
    kind: &'a str,
    kind_zh: &'a str,
    hash: &'a str,
    size: usize,
    media_type: &'a str,
    file_name: &'a str,
    out: String,
}

fn get(
    case: &str,
    given: &str,
    out: &Path,
    force: bool,
    json: bool,
    data: &crate::cli::DataDirArg,
) -> anyhow::Result<ExitCode> {
    let id = tryx!(case_id(case));
    let to_stdout = out.as_os_str() == "-";
    if to_stdout && json {
        return Ok(reject_field(
            "--json",
            "不能与 --out - 同用 cannot go with `--out -` (standard output carries the material)",
        ));
    }
    // Checked before the node is asked: nothing is read for a file that
    // would not be written.
    if !to_stdout && !force && std::fs::symlink_metadata(out).is_ok() {
        return Ok(exists(out));
    }
    let node = tryx!(open_target(data));
    let rows = match node.materials(&id) {
        Ok(rows) => rows,
        Err(e) => return Ok(Failure::from(&e).naming("CASE").report()),
    };
    let row = match select(&rows, &id, given) {
        Ok(row) => row,
        Err(e) => return Ok(Failure::from(&e).at(MATERIAL_ARG).report()),
    };
    let hash: MaterialHash = match row.hash.parse() {
        Ok(hash) => hash,
        Err(e) => {
            return Ok(
                Failure::failed(format!("the case records material {:?}: {e}", row.hash))
                    .at(MATERIAL_ARG)
                    .report(),
            );
        }
    };
    let spinner = crate::output::spinner("取出中 reading…", json);
    let fetched = node.material(&id, &hash);
    spinner.finish_and_clear();
    // The library checked the bytes against the hash on both paths (and the
    // node's answer again on arrival) before handing them here.
    let bytes = match fetched {
        Ok(bytes) => bytes,
        Err(e) => {
            let failure = Failure::from(&e);
            // What is missing names the argument; a refusal of this office
            // (a hub) or a damaged store is no argument's fault.
            let failure = match e.missing() {
                Some(Missing::Case) => failure.naming("CASE"),
                Some(Missing::Material | Missing::MaterialNotHeld) => failure.naming(MATERIAL_ARG),
                None => failure,
            };
            return Ok(failure.report());
        }
    };
    let written = if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes).and_then(|()| stdout.flush())
    } else if force {
        tongban_node::files::write_atomic(out, &bytes, Some(0o600))
    } else {
        // Never over a file that appeared meanwhile; made 0600 by its
        // temporary file, like every private file the node writes.
        tongban_node::files::write_new(out, &bytes)
    };
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(exists(out)),
        Err(e) => {
            return Ok(
                Failure::failed(format!("cannot write {}: {e}", out.display()))
                    .at("--out")
                    .report(),
            );
        }
    }
    let target = if to_stdout {
        "标准输出 stdout".to_string()
    } else {
        out.display().to_string()
    };
    if json {
        print_json(&Written {
            case_id: id.to_string(),
            kind: &row.kind,
            kind_zh: &row.kind_zh,
            hash: &row.hash,
            size: bytes.len(),
            media_type: &row.media_type,
            file_name: &row.file_name,
            out: target,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let summary = format!(
        "已取出材料 material written: {}{} ({})，{} 字节 bytes → {target}\n  BLAKE3 {}",
        if row.kind_zh.is_empty() {
            String::new()
        } else {
            format!("{} ", row.kind_zh)
        },
        row.kind,
        row.media_type,
        bytes.len(),
        row.hash
    );
    // With `--out -` standard output is the material itself.
    if to_stdout {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn exists(out: &Path) -> ExitCode {
    reject_field(
        "--out",
        format!(
            "{}: 文件已存在 the file exists; choose another name or give --force to replace it",
            out.display()
        ),
    )
}
