//! `tongban backup`, `tongban backup verify`, `tongban restore`: the notice's
//! "备份以供查阅". The store takes the snapshot in one read transaction, so a backup
//! is consistent even while writes continue.

use std::path::Path;
use std::process::ExitCode;

use tongban_domain::ids::Timestamp;
use tongban_ledger::keys::OfficeKey;
use tongban_node::local::LocalNode;
use tongban_store::{BackupError, BackupSummary, Store, StoreOptions};

use super::require_data_dir;
use crate::cli::{BackupArgs, BackupCommand, DataDirArg};
use crate::error::Failure;
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
                return Ok(super::reject_field(
                    "--out",
                    "FILE is required (or use `tongban backup verify FILE`)",
                ));
            };
            // Through the running node when there is one (it holds the store),
            // else on the store directly (also a bare store without a node file).
            // A bar in bytes where this process writes the backup; a
            // running node writes it itself, and a spinner shows it works.
            let bar = crate::output::bytes_bar("备份中 backing up", false);
            let report = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let result = match tongban_node::client::open(&dir) {
                Ok(target) if target.running() => {
                    bar.finish_and_clear();
                    let spinner = crate::output::spinner("备份中 backing up…", false);
                    let result = target.backup(&out, &report);
                    spinner.finish_and_clear();
                    result
                }
                Ok(target) => target.backup(&out, &report),
                Err(tongban_node::local::NodeError::NotInitialised { .. }) => {
                    tongban_node::local::check_backup_destination(&out)
                        .and_then(|()| {
                            Store::open(&dir, &StoreOptions::default())
                                .map_err(tongban_node::local::NodeError::from)
                        })
                        .and_then(|store| {
                            store.backup_to_with(&out, &report).map_err(|e| {
                                tongban_node::local::NodeError::Rejected(e.to_string())
                            })
                        })
                }
                Err(err) => Err(err),
            };
            bar.finish_and_clear();
            match result {
                Ok(summary) => {
                    println!("备份完成 backup written: {}", out.display());
                    print_summary(&summary);
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(Failure::from(&err)
                    .during("备份失败 backup failed")
                    .report()),
            }
        }
    }
}

fn verify(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bar = crate::output::bytes_bar("检查备份 verifying", json);
    let verified = tongban_store::verify_backup_with(file, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match verified {
        Ok(summary) => {
            if json {
                print_json(&serde_json::json!({ "ok": true, "summary": summary }))?;
            } else {
                println!("备份完好 backup verified: {}", file.display());
                print_summary(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        // Like every --json failure: `{"error": {...}}` on stdout, the
        // reason on stderr, exit 1.
        Err(err) => Ok(Failure::failed(err.to_string())
            .during("备份损坏或不可用 backup refused")
            .report()),
    }
}

pub fn restore(
    file: &Path,
    office_key: Option<&Path>,
    data: &DataDirArg,
) -> anyhow::Result<ExitCode> {
    let dir = match require_data_dir(data) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    // The key given is checked before anything is written.
    let key = match office_key {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    return Ok(super::reject(&format!(
                        "--office-key {}: {e}",
                        path.display()
                    )));
                }
            };
            match OfficeKey::from_pem_like_str(&text) {
                Ok(k) => Some(k),
                Err(e) => {
                    return Ok(super::reject(&format!(
                        "--office-key {}: not an office key: {e}",
                        path.display()
                    )));
                }
            }
        }
        None => None,
    };
    let bar = crate::output::bytes_bar("恢复中 verifying and restoring", false);
    let restored = tongban_store::restore_with(file, &dir, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let summary = match restored {
        Ok(summary) => summary,
        Err(err @ BackupError::DestinationNotEmpty { .. }) => {
            return Ok(
                Failure::rejected(format!("{err} (restore only into an empty directory)"))
                    .during("拒绝恢复 refused")
                    .report(),
            );
        }
        Err(err) => {
            return Ok(Failure::failed(err.to_string())
                .during("恢复失败 restore failed")
                .report());
        }
    };
    println!("恢复完成 restored into {}", dir.display());
    print_summary(&summary);
    let node = match LocalNode::adopt_restored(&dir, key.as_ref()) {
        Ok(node) => node,
        Err(err) => {
            return Ok(Failure::from(&err)
                .during("错误 error: 数据已恢复，但节点配置未完成 the store is restored but the node is not set up")
                .report());
        }
    };
    println!(
        "节点 node: {}，办公室公钥 office public key {}",
        node.office(),
        node.public_key()
    );
    match node.certificate(Timestamp::now()) {
        Ok(cert) => {
            println!(
                "目录已认证本节点 certified: {} {}（{}）；可以启动 ready: tongban node run",
                cert.office,
                cert.name,
                cert.role.zh()
            );
        }
        Err(err) if key.is_none() => {
            println!(
                "新密钥待认证 new key to certify: 请将上面的公钥交给目录签发机构（tongban directory rotate），\
                 导入新目录后再启动节点 send the public key above to the directory authority, import the \
                 new directory, then start the node ({err})"
            );
        }
        Err(err) => {
            eprintln!("注意 warning: {err}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
