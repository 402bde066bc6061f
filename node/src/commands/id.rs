//! `tongban id check`.

use std::process::ExitCode;

use serde::Serialize;
use tongban_domain::ids::ResidentId;

use crate::cli::IdCommand;
use crate::output::print_json;

#[derive(Serialize)]
struct IdReport {
    valid: bool,
    /// Masked form (first 6 and last 4 kept); never the clear number.
    masked: Option<String>,
    birth_date: Option<String>,
    sex: Option<&'static str>,
    error: Option<String>,
}

pub fn run(cmd: IdCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdCommand::Check { id, json } => {
            let report = match ResidentId::parse(&id) {
                Ok(valid) => IdReport {
                    valid: true,
                    masked: Some(valid.masked()),
                    birth_date: Some(valid.birth_date().to_string()),
                    sex: Some(valid.sex().zh()),
                    error: None,
                },
                Err(err) => IdReport {
                    valid: false,
                    masked: None,
                    birth_date: None,
                    sex: None,
                    error: Some(err.to_string()),
                },
            };
            if json {
                print_json(&report)?;
            } else if report.valid {
                println!(
                    "有效 valid: {}（出生 {}，{}）",
                    report.masked.as_deref().unwrap_or(""),
                    report.birth_date.as_deref().unwrap_or(""),
                    report.sex.unwrap_or("")
                );
            } else {
                println!("无效 invalid: {}", report.error.as_deref().unwrap_or(""));
            }
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                super::rejected()
            })
        }
    }
}
