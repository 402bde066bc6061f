//! `tongban node init`, `tongban node directory-import`.

use std::process::ExitCode;

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_node::authority::read_public_key;
use tongban_node::local::LocalNode;

use super::{fail, require_data_dir};
use crate::cli::NodeCommand;

pub fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Init { office, data } => {
            let dir = match require_data_dir(&data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            let office = match OfficeId::parse(&office) {
                Ok(o) => o,
                Err(e) => return Ok(super::reject(&format!("--office: {e}"))),
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
            let mut node = match LocalNode::open(&dir) {
                Ok(n) => n,
                Err(err) => return Ok(fail(&err)),
            };
            match node.import_directory(&bytes, authority) {
                Ok(version) => {
                    println!("目录已导入 directory imported: version {version}");
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
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(fail(&err)),
            }
        }
    }
}
