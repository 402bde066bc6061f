//! `tongban feed publish|show`: the registry feeds an issuing office signs from
//! its registry's CSV export, and every signed dataset a node holds.

use std::process::ExitCode;

use tongban_domain::dataset::{DatasetKind, ScopeLevel};

use super::{fail, open_target};
use crate::cli::FeedCommand;
use crate::error::Failure;
use crate::output::{print_json, table};

pub fn run(cmd: FeedCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FeedCommand::Publish { kind, file, data } => {
            let Some(kind) = DatasetKind::from_code(&kind).filter(|k| k.is_feed()) else {
                return Ok(Failure::field(
                    "--kind",
                    format!("{kind:?}: must be certificates, dibao or deaths"),
                )
                .report());
            };
            // Read before opening the node: a file that cannot be read changes nothing.
            let csv = match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => {
                        return Ok(Failure::field(
                            "FILE",
                            format!("{} is not UTF-8 text: {e}", file.display()),
                        )
                        .report());
                    }
                },
                Err(e) => {
                    return Ok(Failure::field("FILE", format!("{}: {e}", file.display())).report());
                }
            };
            let mut node = match open_target(&data) {
                Ok(node) => node,
                Err(code) => return Ok(code),
            };
            match node.publish_feed(kind, &csv) {
                Ok(version) => {
                    println!(
                        "已发布 published: {}（{}）version {version}",
                        kind.zh(),
                        kind.code()
                    );
                    if node.running() {
                        println!(
                            "运行中的节点正把它送往本县各办理机构 the running node sends it to the offices of the county"
                        );
                    } else {
                        println!(
                            "节点运行后送往本县各办理机构 it goes to the offices of the county once the node runs"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(fail(&err)),
            }
        }
        FeedCommand::Export {
            kind,
            scope,
            out,
            data,
        } => {
            let Some(kind) = DatasetKind::from_code(&kind) else {
                return Ok(Failure::field(
                    "--kind",
                    format!(
                        "{kind:?}: must be calendar, policy, certificates, dibao, deaths or payroll"
                    ),
                )
                .report());
            };
            let node = match open_target(&data) {
                Ok(node) => node,
                Err(code) => return Ok(code),
            };
            let scope = match (scope, kind.scope_level()) {
                (Some(scope), _) => scope,
                (None, ScopeLevel::Nation) => "00".to_string(),
                (None, ScopeLevel::Province) => {
                    return Ok(Failure::field(
                        "--scope",
                        "a policy needs its province: --scope 13 (00 for the national default)",
                    )
                    .report());
                }
                (None, ScopeLevel::CountyMonth) => {
                    return Ok(Failure::field(
                        "--scope",
                        "a payroll record needs its county and month: --scope 130102:2026-11",
                    )
                    .report());
                }
                (None, ScopeLevel::County) => {
                    match node.certificate(tongban_domain::ids::Timestamp::now()) {
                        Ok(cert) => cert.division.chars().take(6).collect(),
                        Err(err) => return Ok(fail(&err)),
                    }
                }
            };
            let bytes = match node.dataset_bytes(kind, &scope) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    return Ok(Failure::rejected(format!(
                        "本节点没有 this node holds no {}（{kind}）for scope {scope}",
                        kind.zh()
                    ))
                    .at("--kind")
                    .report());
                }
                Err(err) => return Ok(fail(&err)),
            };
            if let Err(e) = tongban_node::files::write_atomic(&out, &bytes, Some(0o600)) {
                return Ok(Failure::failed(format!("{}: {e}", out.display()))
                    .at("--out")
                    .report());
            }
            println!(
                "已导出 exported: {}（{kind}）{scope} → {}",
                kind.zh(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FeedCommand::Show { json, data } => {
            let node = match open_target(&data) {
                Ok(node) => node,
                Err(code) => return Ok(code),
            };
            let list = match node.datasets() {
                Ok(list) => list,
                Err(err) => return Ok(fail(&err)),
            };
            if json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("本节点尚无签名数据 this node holds no signed dataset");
                return Ok(ExitCode::SUCCESS);
            }
            let rows = list.iter().map(|d| {
                vec![
                    format!("{} {}", d.kind.zh(), d.kind.code()),
                    d.scope.clone(),
                    d.version.to_string(),
                    d.issuer.clone(),
                    d.issued_at.clone(),
                    d.holds.clone(),
                ]
            });
            println!(
                "{}",
                table(
                    &[
                        "数据 dataset",
                        "范围 scope",
                        "版本 version",
                        "发布方 issuer",
                        "签发 issued",
                        "内容 holds"
                    ],
                    rows
                )
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
