//! `tongban backup`, `tongban backup verify`, `tongban restore`: the notice's
//! "备份以供查阅". The store takes the snapshot in one read transaction, so a backup
//! is consistent even while writes continue.

use std::path::Path;
use std::process::ExitCode;

use tongban_store::{BackupError, BackupSummary, Store, StoreOptions};

use super::require_data_dir;
use crate::cli::{BackupArgs, BackupCommand, DataDirArg};
use crate::output::print_json;

pub fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(BackupCommand::Verify { file, json }) => verify(&file, json),
        None => {
            let dir = match require_data_dir(&args.data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            let Some(out) = args.out else {
                eprintln!(
                    "输入有误 rejected: --out FILE is required (or use `tongban backup verify FILE`)"
                );
                return Ok(super::rejected());
            };
            // Through the running node when there is one (it holds the store),
            // else on the store directly (also a bare store without a node file).
            let result = match tongban_node::client::Target::open(&dir) {
                Ok(target) => target.backup(&out),
                Err(tongban_node::local::NodeError::NotInitialised { .. }) => {
                    tongban_node::local::check_backup_destination(&out)
                        .and_then(|()| {
                            Store::open(&dir, &StoreOptions::default())
                                .map_err(tongban_node::local::NodeError::from)
                        })
                        .and_then(|store| {
                            store.backup_to(&out).map_err(|e| {
                                tongban_node::local::NodeError::Rejected(e.to_string())
                            })
                        })
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(summary) => {
                    println!("备份完成 backup written: {}", out.display());
                    print_summary(&summary);
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("备份失败 backup failed: {err}");
                    Ok(super::rejected())
                }
            }
        }
    }
}

fn verify(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match tongban_store::verify_backup(file) {
        Ok(summary) => {
            if json {
                print_json(&serde_json::json!({ "ok": true, "summary": summary }))?;
            } else {
                println!("备份完好 backup verified: {}", file.display());
                print_summary(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if json {
                print_json(&serde_json::json!({ "ok": false, "error": err.to_string() }))?;
            } else {
                eprintln!("备份损坏或不可用 backup refused: {err}");
            }
            Ok(super::rejected())
        }
    }
}

pub fn restore(file: &Path, data: &DataDirArg) -> anyhow::Result<ExitCode> {
    let dir = match require_data_dir(data) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    match tongban_store::restore(file, &dir) {
        Ok(summary) => {
            println!("恢复完成 restored into {}", dir.display());
            print_summary(&summary);
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ BackupError::DestinationNotEmpty { .. }) => {
            eprintln!("拒绝恢复 refused: {err} (restore only into an empty directory)");
            Ok(super::rejected())
        }
        Err(err) => {
            eprintln!("恢复失败 restore failed: {err}");
            Ok(super::rejected())
        }
    }
}

fn print_summary(summary: &BackupSummary) {
    println!(
        "  案件 cases {}，材料 materials {}（{} 字节 bytes），同步游标 peer cursors {}，变更序号 latest seq {}，文件 {} 字节",
        summary.cases,
        summary.materials,
        summary.material_bytes,
        summary.peer_cursors,
        summary.latest_seq,
        summary.file_bytes
    );
}
