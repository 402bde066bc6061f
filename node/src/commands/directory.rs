//! `tongban directory init|add|revoke|rotate|show`: the directory authority's CLI.

use std::process::ExitCode;

use serde::Serialize;
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::directory::Directory;
use tongban_ledger::keys::{KeyError, PublicKey};
use tongban_node::authority::{Authority, read_public_key};

use super::{reject, reject_field};
use crate::cli::DirectoryCommand;
use crate::output::print_json;

fn years_from(now: Timestamp, years: u32) -> Timestamp {
    Timestamp(
        now.0
            .saturating_add(i64::from(years).saturating_mul(365 * 24 * Timestamp::HOUR_MS)),
    )
}

/// The key to certify, from `--public-key`, if the authority may certify it:
/// 64 hex digits of a strong key ([`PublicKey::check_strong`]).
fn key_to_certify(text: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_hex(text.trim()).map_err(|e| format!("--public-key: {e}"))?;
    key.check_strong().map_err(|e| {
        let zh = match e {
            KeyError::NotAPoint => "不是有效的 ed25519 公钥",
            KeyError::SmallOrder => "弱公钥（小阶点），不能认证",
            KeyError::NonCanonical => "公钥编码不规范，不能认证",
            KeyError::MixedTorsion => "公钥含小阶分量，不能认证",
            _ => "此公钥不能认证",
        };
        format!("--public-key: {zh} {e}; use the key `tongban node init` generated")
    })?;
    Ok(key)
}

/// `--valid-years`, if a certificate may last that long: at least one year.
fn check_valid_years(years: u32) -> Result<(), String> {
    if years == 0 {
        return Err(
            "--valid-years 0: 证书有效期至少一年 a certificate must be valid for at least one year"
                .to_string(),
        );
    }
    Ok(())
}

pub fn run(cmd: DirectoryCommand) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    match cmd {
        DirectoryCommand::Init { auth } => match Authority::init(&auth.authority, now) {
            Ok(a) => {
                println!(
                    "目录签发机构已创建 authority created: {}",
                    auth.authority.display()
                );
                println!("公钥 public key (every node trusts it): {}", a.public());
                println!(
                    "目录 directory: {} (version 1, empty)",
                    a.directory_path().display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(reject(&e.to_string())),
        },
        DirectoryCommand::Add {
            auth,
            office,
            name,
            role,
            division,
            public_key,
            valid_years,
        } => {
            let office = match OfficeId::parse(&office) {
                Ok(o) => o,
                Err(e) => return Ok(reject_field("--office", e)),
            };
            let Some(role) = Role::from_code(&role) else {
                return Ok(reject(&format!(
                    "--role {role:?} is not one of township, county_dpf, county_civil_affairs, hub, supervisor"
                )));
            };
            let key = match key_to_certify(&public_key) {
                Ok(k) => k,
                Err(msg) => return Ok(reject(&msg)),
            };
            if let Err(msg) = check_division(role, &division) {
                return Ok(reject(&msg));
            }
            if let Err(msg) = check_valid_years(valid_years) {
                return Ok(reject(&msg));
            }
            let mut authority = match Authority::open(&auth.authority) {
                Ok(a) => a,
                Err(e) => return Ok(reject(&e.to_string())),
            };
            match authority.add(
                office.clone(),
                name,
                role,
                division,
                key,
                now,
                years_from(now, valid_years),
                now,
            ) {
                Ok(version) => {
                    println!(
                        "已签发证书 certified: {office} key {} → directory version {version}",
                        key.fingerprint()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(reject(&e.to_string())),
            }
        }
        DirectoryCommand::Revoke {
            auth,
            office,
            public_key,
            reason,
            effective,
        } => {
            let office = match OfficeId::parse(&office) {
                Ok(o) => o,
                Err(e) => return Ok(reject_field("--office", e)),
            };
            let key = match public_key
                .as_deref()
                .map(|k| PublicKey::from_hex(k.trim()))
                .transpose()
            {
                Ok(k) => k,
                Err(e) => return Ok(reject_field("--public-key", e)),
            };
            let effective = match effective.as_deref() {
                None => now,
                Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
                    Ok(t) => Timestamp(t.timestamp_millis()),
                    Err(e) => {
                        return Ok(reject(&format!(
                            "--effective {text:?}: {e} (RFC 3339, e.g. 2026-11-28T09:00:00+08:00)"
                        )));
                    }
                },
            };
            let mut authority = match Authority::open(&auth.authority) {
                Ok(a) => a,
                Err(e) => return Ok(reject(&e.to_string())),
            };
            match authority.revoke(&office, key, effective, reason, now) {
                Ok((version, n)) => {
                    println!(
                        "已吊销 revoked {n} key(s) of {office} from {} → directory version {version}",
                        effective.china_display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(reject(&e.to_string())),
            }
        }
        DirectoryCommand::Rotate {
            auth,
            office,
            public_key,
            valid_years,
        } => {
            let office_id = match OfficeId::parse(&office) {
                Ok(o) => o,
                Err(e) => return Ok(reject_field("--office", e)),
            };
            // Both checked before the old key is revoked: a rotation refused
            // half-way would leave the office without a key.
            let key = match key_to_certify(&public_key) {
                Ok(k) => k,
                Err(msg) => return Ok(reject(&msg)),
            };
            if let Err(msg) = check_valid_years(valid_years) {
                return Ok(reject(&msg));
            }
            let mut authority = match Authority::open(&auth.authority) {
                Ok(a) => a,
                Err(e) => return Ok(reject(&e.to_string())),
            };
            let Some(current) = authority
                .directory()
                .certificates
                .iter()
                .rev()
                .find(|c| c.cert.office == office_id)
                .map(|c| c.cert.clone())
            else {
                return Ok(reject(&format!(
                    "office {office_id} has no certificate to rotate; use `directory add`"
                )));
            };
            if authority
                .directory()
                .certificates
                .iter()
                .any(|c| c.cert.public_key == key)
            {
                return Ok(reject(&format!(
                    "--public-key: 此公钥已认证 key {} is already certified; one key serves one office",
                    key.fingerprint()
                )));
            }
            if let Err(e) = authority.revoke(&office_id, None, now, "key rotation".into(), now) {
                return Ok(reject(&e.to_string()));
            }
            match authority.add(
                office_id.clone(),
                current.name,
                current.role,
                current.division,
                key,
                now,
                years_from(now, valid_years),
                now,
            ) {
                Ok(version) => {
                    println!(
                        "已更换密钥 rotated: {office_id} now uses key {} → directory version {version}",
                        key.fingerprint()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(reject(&e.to_string())),
            }
        }
        DirectoryCommand::Show {
            authority,
            file,
            authority_key,
            json,
        } => {
            let directory = match (authority, file, authority_key) {
                (Some(dir), _, _) => match Authority::open(&dir) {
                    Ok(a) => a.directory().clone(),
                    Err(e) => return Ok(reject(&e.to_string())),
                },
                (None, Some(file), Some(key)) => {
                    let key = match read_public_key(&key) {
                        Ok(k) => k,
                        Err(e) => return Ok(reject(&e.to_string())),
                    };
                    let bytes = match std::fs::read(&file) {
                        Ok(b) => b,
                        Err(e) => return Ok(reject(&format!("{}: {e}", file.display()))),
                    };
                    match Directory::verify(&bytes, &key) {
                        Ok(d) => d,
                        Err(e) => return Ok(reject(&format!("{}: {e}", file.display()))),
                    }
                }
                _ => {
                    return Ok(reject(
                        "give --authority DIR, or --file FILE with --authority-key KEYFILE",
                    ));
                }
            };
            show(&directory, now, json)
        }
    }
}

fn check_division(role: Role, division: &str) -> Result<(), String> {
    let ok = match role {
        Role::Township => division.len() == 9,
        Role::CountyDpf | Role::CountyCivilAffairs => division.len() == 6,
        Role::Hub => matches!(division.len(), 2 | 6),
        Role::Supervisor => division.len() == 2,
    } && division.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(format!(
            "--division {division:?} does not fit role {}: township 9 digits, county offices 6, hubs 6 or 2 (00 national), supervisors 2",
            role.code()
        ));
    }
    if division != "00" {
        let table = tongban_domain::division::Divisions::national().map_err(|e| e.to_string())?;
        table
            .lookup(division)
            .map_err(|e| format!("--division: {e}"))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Row {
    office: String,
    name: String,
    role: &'static str,
    division: String,
    fingerprint: String,
    public_key: String,
    not_before: String,
    not_after: String,
    status: String,
}

fn show(directory: &Directory, now: Timestamp, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<Row> = directory
        .certificates
        .iter()
        .map(|c| {
            let cert = &c.cert;
            let revoked = directory
                .revocations
                .iter()
                .find(|r| r.revocation.public_key == cert.public_key);
            let status = match revoked {
                Some(r) => format!("revoked from {}", r.revocation.effective.china_display()),
                None if cert.not_after < now => "expired".into(),
                None => "valid".into(),
            };
            Row {
                office: cert.office.to_string(),
                name: cert.name.clone(),
                role: cert.role.code(),
                division: cert.division.clone(),
                fingerprint: cert.public_key.fingerprint(),
                public_key: cert.public_key.to_string(),
                not_before: cert.not_before.china_display(),
                not_after: cert.not_after.china_display(),
                status,
            }
        })
        .collect();
    if json {
        print_json(&serde_json::json!({
            "version": directory.version,
            "issued_at": directory.issued_at.china_display(),
            "authority": directory.authority.to_string(),
            "certificates": rows,
        }))?;
    } else {
        println!(
            "目录 directory version {}，签发 issued {}，签发机构 authority {}",
            directory.version,
            directory.issued_at.china_display(),
            directory.authority.fingerprint()
        );
        let lines = rows.iter().map(|r| {
            vec![
                r.office.clone(),
                r.name.clone(),
                r.role.to_string(),
                r.division.clone(),
                r.fingerprint.clone(),
                r.status.clone(),
            ]
        });
        println!(
            "{}",
            crate::output::table(
                &[
                    "办公室 office",
                    "名称 name",
                    "角色 role",
                    "区划 division",
                    "密钥 key",
                    "状态 status",
                ],
                lines,
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
