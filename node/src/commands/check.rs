//! `tongban check run`: the dynamic check (动态管理) of a county's awards
//! against its latest registry feeds, at county civil affairs.

use std::process::ExitCode;

use tongban_domain::ids::Timestamp;

use super::{fail, open_target};
use crate::cli::CheckCommand;
use crate::error::Failure;
use crate::output::{print_json, table};

pub fn run(cmd: CheckCommand) -> anyhow::Result<ExitCode> {
    let CheckCommand::Run {
        county,
        operator,
        json,
        data,
    } = cmd;
    if county.len() != 6 || !county.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Failure::field(
            "--county",
            format!("{county:?} is not a 6-digit county code"),
        )
        .report());
    }
    let node = match open_target(&data) {
        Ok(node) => node,
        Err(code) => return Ok(code),
    };
    let operator = match super::case::operator(node.as_ref(), &operator) {
        Ok(op) => op,
        Err(code) => return Ok(code),
    };
    let results = match node.check_awards(&county, &operator, Timestamp::now()) {
        Ok(results) => results,
        Err(err) => return Ok(fail(&err)),
    };
    if json {
        print_json(&results)?;
    } else if results.is_empty() {
        println!("核查完毕，无需变更 checked: every award of {county} stands");
    } else {
        let rows = results.iter().map(|r| {
            vec![
                r.case.clone(),
                format!("{} → {}", r.from, r.to),
                match &r.error {
                    None => r.reason.clone(),
                    Some(err) => format!("未能签署 not signed: {err}"),
                },
            ]
        });
        println!(
            "{}",
            table(&["案件 case", "变更 change", "理由 reason"], rows)
        );
    }
    if results.iter().any(|r| r.error.is_some()) {
        return Ok(Failure::failed("有核查结果未能签署 some results could not be signed").report());
    }
    Ok(ExitCode::SUCCESS)
}
