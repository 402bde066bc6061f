//! `tongban node init`, `tongban node directory-import`.

use std::process::ExitCode;

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_node::authority::read_public_key;
use tongban_node::daemon::{Daemon, NodeConfig, StartOptions};
use tongban_node::local::LocalNode;

use super::{fail, require_data_dir};
use crate::cli::NodeCommand;
use crate::error::Failure;

/// Waits for Ctrl-C, or for SIGTERM where there are Unix signals (what
/// `systemctl stop` and `kill` send).
pub(super) async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    }
}

pub fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Init { office, data } => {
            let dir = match require_data_dir(&data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            let office = match OfficeId::parse(&office) {
                Ok(o) => o,
                Err(e) => return Ok(super::reject_field("--office", e)),
            };
            match LocalNode::init(&dir, office.clone()) {
                Ok(public) => {
                    println!(
                        "节点已创建 node created: {} (office {office})",
                        dir.display()
                    );
                    println!("办公室公钥 office public key (send to the directory authority):");
                    println!("{public}");
                    println!("指纹 fingerprint: {}", public.fingerprint());
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(fail(&err)),
            }
        }
        NodeCommand::Run { config } => run_daemon(&config),
        NodeCommand::Status { json, follow, data } => status(json, follow, &data),
        NodeCommand::DatasetImport { file, data } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    return Ok(Failure::field("FILE", format!("{}: {e}", file.display())).report());
                }
            };
            let mut node = match super::open_target(&data) {
                Ok(n) => n,
                Err(code) => return Ok(code),
            };
            match node.import_dataset(&bytes) {
                Ok(version) => {
                    println!("已导入 imported: version {version}");
                    if node.running() {
                        println!(
                            "运行中的节点已采用并转发给对端 the running node took it and passes it to its peers"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(fail(&err)),
            }
        }
        NodeCommand::DirectoryImport {
            file,
            authority_key,
            data,
        } => {
            let dir = match require_data_dir(&data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    return Ok(super::reject(&format!(
                        "cannot read {}: {e}",
                        file.display()
                    )));
                }
            };
            let authority = match authority_key.as_deref().map(read_public_key).transpose() {
                Ok(k) => k,
                Err(e) => return Ok(super::reject(&e.to_string())),
            };
            // A running node takes the directory through its control API and
            // passes it to its peers; a stopped one stores it directly.
            let mut node = match tongban_node::client::open(&dir) {
                Ok(n) => n,
                Err(err) => return Ok(fail(&err)),
            };
            match node.import_directory(&bytes, authority) {
                Ok(version) => {
                    println!("目录已导入 directory imported: version {version}");
                    if node.running() {
                        println!(
                            "运行中的节点已采用并转发给对端 the running node took it and passes it to its peers"
                        );
                    }
                    {
                        match node.certificate(Timestamp::now()) {
                            Ok(cert) => println!(
                                "本节点证书 this office: {} {}（{}，{}）",
                                cert.office,
                                cert.name,
                                cert.role.zh(),
                                cert.division
                            ),
                            Err(err) => eprintln!("注意 warning: {err}"),
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(fail(&err)),
            }
        }
    }
}

/// `tongban node run --config FILE`.
fn run_daemon(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match NodeConfig::load(path) {
        Ok(c) => c,
        Err(e) => return Ok(super::reject(&e.to_string())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let daemon = match Daemon::start(&config, StartOptions::default()).await {
            Ok(d) => d,
            Err(err) => {
                return Ok(Failure::failed(err.to_string())
                    .during("错误 error: 节点无法启动 the node cannot start")
                    .report());
            }
        };
        println!(
            "节点运行中 node running: {} QUIC {} 控制接口 control {}",
            daemon.office(),
            daemon.listen_addr(),
            daemon
                .control_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "—".into())
        );
        stop_requested().await?;
        println!("正在停止 stopping…");
        match daemon.shutdown().await {
            Ok(()) => {
                println!("已停止 stopped cleanly");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => Ok(Failure::failed(err.to_string()).report()),
        }
    })
}

/// `tongban node status`.
fn status(json: bool, follow: bool, data: &crate::cli::DataDirArg) -> anyhow::Result<ExitCode> {
    let dir = match require_data_dir(data) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    let target = match tongban_node::client::open(&dir) {
        Ok(t) => t,
        Err(err) => return Ok(fail(&err)),
    };
    let status = match target.status() {
        Ok(s) => s,
        Err(err) => return Ok(fail(&err)),
    };
    let status = if follow {
        if !target.running() {
            return Ok(Failure::rejected(
                "--follow needs a running node (tongban node run); this one is stopped",
            )
            .at("--follow")
            .report());
        }
        match follow_sync(&*target, status) {
            Ok(s) => s,
            Err(err) => return Ok(fail(&err)),
        }
    } else {
        status
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "节点 node {}：{}{}",
        status.office,
        if status.running {
            "运行中 running"
        } else {
            "未运行 not running"
        },
        status
            .listen
            .as_ref()
            .map(|l| format!("（QUIC {l}）"))
            .unwrap_or_default()
    );
    println!(
        "本地变更序号 log position {}，案件 {} 件，目录版本 directory version {}",
        status.latest_seq,
        status.cases,
        status
            .directory_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "—".into())
    );
    if let Some(error) = &status.store_error {
        println!(
            "存储暂停写入 the store cannot write now（读取照常，空间恢复后自动继续 reads go on; writing resumes by itself once the disk has room）: {error}"
        );
    }
    if status.materials_missing > 0 {
        println!(
            "待取材料 materials still to fetch: {} 份（从路由上的对端获取）",
            status.materials_missing
        );
    }
    if status.duplicates > 0 {
        println!(
            "重复申请 duplicates flagged: {} 件（tongban case list 中标「重复」，case show 列出同一申请人的其他案件）",
            status.duplicates
        );
    }
    if status.peers.is_empty() {
        println!("尚无同步对端 no peer has synced with this node yet");
    }
    for peer in &status.peers {
        let last = peer
            .last_synced_ms
            .map(|ms| Timestamp(ms).china_display())
            .unwrap_or_else(|| "从未 never".into());
        println!(
            "  {:<14} {:<14} 最近同步 last synced {}  待发送 waiting {} 件",
            peer.office,
            if peer.connected {
                "已连接 connected"
            } else {
                "未连接 offline"
            },
            last,
            peer.waiting
        );
        if let Some(upstream) = &peer.upstream {
            println!("      上级枢纽 configured hub at {upstream}");
        }
        if let Some(refusal) = &peer.refusal {
            println!("      被拒绝 refused: {refusal}");
        }
        if !peer.connected
            && let Some(error) = &peer.last_error
        {
            let at = peer
                .last_error_ms
                .map(|ms| Timestamp(ms).china_display())
                .unwrap_or_default();
            println!("      最近错误 last error（{at}）: {error}");
        }
    }
    if !status.refusals.is_empty() {
        println!(
            "已拒收 refused from peers（最近 {} 条 latest）:",
            status.refusals.len()
        );
        for refusal in &status.refusals {
            println!(
                "  {}  来自 from {}  案件 case {}  {}",
                Timestamp(refusal.at_ms).china_display(),
                refusal.peer,
                refusal.case.as_deref().unwrap_or("—"),
                refusal.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a node still has to do before it is in step with its peers: cases on
/// its peers' routes they have not acknowledged, and materials to fetch.
fn outstanding(status: &tongban_node::status::NodeStatus) -> u64 {
    status.peers.iter().map(|p| p.waiting).sum::<u64>() + status.materials_missing
}

/// `node status --follow`: polls the running node until nothing waits (an
/// initial sync done), drawing the work done so far as a bar on a terminal.
fn follow_sync(
    node: &dyn tongban_node::office::Office,
    mut status: tongban_node::status::NodeStatus,
) -> Result<tongban_node::status::NodeStatus, tongban_node::local::NodeError> {
    let mut most = outstanding(&status);
    let bar = crate::output::bar(most, "同步中 syncing", false);
    while outstanding(&status) > 0 {
        let left = outstanding(&status);
        most = most.max(left);
        bar.set_length(most);
        bar.set_position(most - left);
        bar.set_message(format!("案件 cases {}", status.cases));
        std::thread::sleep(std::time::Duration::from_secs(1));
        status = node.status()?;
    }
    bar.finish_and_clear();
    Ok(status)
}
