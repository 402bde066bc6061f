//! One module per command family. Each returns the process exit code, so that an
//! input rejected by a domain rule exits 1 with that rule's message.

mod backup;
mod calendar;
mod case;
mod demo;
mod directory;
mod id;
mod node;
mod policy;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(cmd) => id::run(cmd),
        Command::Calendar(cmd) => calendar::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Node(cmd) => node::run(cmd),
        Command::Directory(cmd) => directory::run(cmd),
        Command::Case(cmd) => case::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::History { case, json, data } => verify::history(&case, json, &data),
        Command::Restore {
            file,
            office_key,
            new_key: _,
            data,
        } => backup::restore(&file, office_key.as_deref(), &data),
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

/// Prints a rejection and returns exit status 1.
pub fn reject(message: &str) -> ExitCode {
    eprintln!("输入有误 rejected: {message}");
    rejected()
}

/// Prints a node error and returns exit status 1.
pub fn fail(err: &tongban_node::local::NodeError) -> ExitCode {
    if err.is_rejection() {
        eprintln!("拒绝 refused: {err}");
    } else {
        eprintln!("错误 error: {err}");
    }
    rejected()
}

/// Opens the node of `--data-dir` for a command: through the running daemon's
/// control API when one runs, on the store directly otherwise.
pub fn open_target(
    data: &crate::cli::DataDirArg,
) -> Result<tongban_node::client::Target, ExitCode> {
    let dir = require_data_dir(data)?;
    tongban_node::client::Target::open(&dir).map_err(|e| fail(&e))
}
