//! One module per command family. Each returns the process exit code, so that an
//! input rejected by a domain rule exits 1 with that rule's message.

mod backup;
mod calendar;
mod demo;
mod id;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(cmd) => id::run(cmd),
        Command::Calendar(cmd) => calendar::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore { file, data } => backup::restore(&file, &data),
    }
}

/// The data directory from `--data-dir` or `TONGBAN_DATA_DIR`, or a rejection
/// that says how to give one.
pub fn require_data_dir(data: &crate::cli::DataDirArg) -> Result<std::path::PathBuf, ExitCode> {
    data.data_dir.clone().ok_or_else(|| {
        eprintln!("输入有误 rejected: --data-dir DIR (or TONGBAN_DATA_DIR) is required");
        rejected()
    })
}

/// Exit status of a command whose input was rejected.
pub fn rejected() -> ExitCode {
    ExitCode::from(1)
}
