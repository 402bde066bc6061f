//! One module per command family. Each returns the process exit code, so that an
//! input rejected by a domain rule exits 1 with that rule's message.

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
    }
}

/// Exit status of a command whose input was rejected.
pub fn rejected() -> ExitCode {
    ExitCode::from(1)
}
