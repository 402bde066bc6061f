//! `tongban policy show DIVISION`: what the window explains to the applicant.

use std::process::ExitCode;

use tongban_domain::division::Divisions;
use tongban_domain::ids::{DisabilityLevel, Timestamp};
use tongban_domain::policy::{MaterialCondition, Policy, SubsidyKind};

use tongban_domain::dataset::DatasetKind;
use tongban_ledger::dataset::SignedDataset;

use super::reject;
use crate::cli::PolicyCommand;
use crate::error::Failure;
use crate::output::print_json;

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    let (division, json, data) = match cmd {
        PolicyCommand::Show {
            division,
            json,
            data,
        } => (division, json, data),
        PolicyCommand::Publish {
            auth,
            file,
            data_dir,
        } => return publish(&auth.authority, &file, data_dir.as_deref()),
    };
    let table = Divisions::national()?;
    let found = match table.lookup(division.trim()) {
        Ok(d) => d,
        Err(e) => return Ok(reject(&e.to_string())),
    };
    let province = found.code.province();
    if let Some(dir) = data.data_dir.as_deref() {
        // The policies that node holds signed, installed here as the node
        // installs them: what it applies is what is shown.
        let node = match tongban_node::client::open(dir) {
            Ok(node) => node,
            Err(err) => return Ok(super::fail(&err)),
        };
        for scope in [province.as_str(), "00"] {
            match node.dataset_bytes(DatasetKind::Policy, scope) {
                Ok(Some(bytes)) => {
                    if let Some(policy) = SignedDataset::decode(&bytes).ok().and_then(|d| {
                        let text = String::from_utf8(d.dataset.payload).ok()?;
                        Policy::from_toml(scope, &text).ok()
                    }) {
                        Policy::install(policy);
                    }
                }
                Ok(None) => {}
                Err(err) => return Ok(super::fail(&err)),
            }
        }
    }
    let policy = Policy::for_province(province.as_str())?;
    let today = Timestamp::now().china_date();
    if json {
        print_json(&serde_json::json!({
            "division": found.code.as_str(),
            "division_name": table.full_name(&found.code),
            "policy": policy,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let name = table.full_name(&found.code).unwrap_or_default();
    println!("{name}（{}）居民适用的残疾人两项补贴政策", found.code);
    if policy.is_default() {
        println!("（本省未单独配置政策文件，适用全国基准 the national default applies）");
    }
    if policy.amounts_are_examples {
        println!("注意：以下金额为示例数据，以户籍地现行文件为准 (amounts are examples)");
    }
    println!("\n一、补贴类型与条件");
    println!(
        "  1. {}：低保家庭中的残疾人{}。",
        SubsidyKind::Living.zh(),
        if policy.eligibility.living_low_income_extension {
            "，本省扩大到低收入家庭"
        } else {
            ""
        }
    );
    println!(
        "  2. {}：残疾等级为一级、二级且需要长期照护的重度残疾人{}；已享受同类护理补贴（如高龄津贴、工伤护理费）的不重复享受。",
        SubsidyKind::Nursing.zh(),
        if policy.eligibility.nursing_extension_intellectual_mental_3_4 {
            "，本省扩大到三级、四级智力、精神残疾人"
        } else {
            ""
        }
    );
    println!("\n二、每月标准（{today} 适用）");
    for kind in SubsidyKind::ALL {
        for level in 1..=4u8 {
            let Some(level) = DisabilityLevel::new(level) else {
                continue;
            };
            if let Some(yuan) = policy.monthly_amount(kind, level, today, found.code.as_str()) {
                println!("  {} {}：{yuan} 元/月", kind.zh(), level.zh());
            }
        }
    }
    println!("  自递交申请当月起计发。");
    println!("\n三、一次性告知材料（电子文档留存，无需转寄纸质材料）");
    for item in &policy.materials {
        let kinds: Vec<&str> = item.kinds.iter().map(|k| k.zh()).collect();
        let when = match item.when {
            MaterialCondition::Always => "",
            MaterialCondition::Dibao => "（低保家庭）",
            MaterialCondition::LowIncome => "（低收入家庭）",
        };
        println!("  - {}{when}：{}", item.zh, kinds.join("、"));
    }
    if policy.province != "00" || !policy.is_default() {
        println!("\n类型及标准由业务属地（{}）负责解释。", policy.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy publish`: the authority signs the province's policy as its next
/// version; with `--data-dir`, the node takes it (a running one passes it on at
/// once).
fn publish(
    authority: &std::path::Path,
    file: &std::path::Path,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read(file).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(err)) => {
            return Ok(Failure::field(
                "FILE",
                format!("{} is not UTF-8 text: {err}", file.display()),
            )
            .report());
        }
        Err(err) => {
            return Ok(Failure::field("FILE", format!("{}: {err}", file.display())).report());
        }
    };
    let auth = match tongban_node::authority::Authority::open(authority) {
        Ok(a) => a,
        Err(err) => return Ok(Failure::failed(err.to_string()).at("--authority").report()),
    };
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (bytes, version, policy) = match auth.publish_policy(&name, &text, Timestamp::now()) {
        Ok(done) => done,
        Err(err) => return Ok(Failure::field("FILE", err.to_string()).report()),
    };
    println!(
        "补贴政策已签发 policy signed: {}（{}）version {version} → {}",
        policy.name,
        policy.province,
        auth.policy_path(&policy.province).display()
    );
    Ok(super::hand_to_node(
        &bytes,
        data_dir,
        &auth.policy_path(&policy.province),
    ))
}
