//! One module per command family. Each returns the process exit code, so that an
//! input rejected by a domain rule exits 1 with that rule's message.

mod backup;
mod bench;
mod calendar;
mod case;
mod check;
mod console;
mod demo;
mod directory;
mod feed;
mod id;
mod material;
mod node;
mod payroll;
mod policy;
mod report;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::{Failure, Kind};

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(cmd) => id::run(cmd),
        Command::Calendar(cmd) => calendar::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Node(cmd) => node::run(cmd),
        Command::Directory(cmd) => directory::run(cmd),
        Command::Case(cmd) => case::run(cmd),
        Command::Check(cmd) => check::run(cmd),
        Command::Console(args) => console::run(args),
        Command::Feed(cmd) => feed::run(cmd),
        Command::Payroll(args) => payroll::run(args),
        Command::Report(args) => report::run(args),
        Command::Export(args) => report::export(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::History { case, json, data } => verify::history(&case, json, &data),
        Command::Restore {
            file,
            office_key,
            new_key: _,
            data,
        } => backup::restore(&file, office_key.as_deref(), &data),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "tongban", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage { dir } => manpage(dir.as_deref()),
    }
}

/// What the authority's publishing commands do with a signed dataset: hand it
/// to the node at `data_dir` (running or stopped), from which sync carries it
/// on, or say how to.
fn hand_to_node(
    bytes: &[u8],
    data_dir: Option<&std::path::Path>,
    file: &std::path::Path,
) -> ExitCode {
    let Some(dir) = data_dir else {
        println!(
            "交给任一节点 give it to any node: tongban node dataset-import {} --data-dir DIR",
            file.display()
        );
        return ExitCode::SUCCESS;
    };
    let mut node = match tongban_node::client::open(dir) {
        Ok(n) => n,
        Err(err) => return fail(&err),
    };
    match node.import_dataset(bytes) {
        Ok(_) if node.running() => {
            println!("节点已采用，经同步送往各节点 the node took it; sync carries it to every node")
        }
        Ok(_) => println!(
            "节点已保存，运行后经同步送往各节点 the node stored it; sync carries it on once it runs"
        ),
        Err(err) => return fail(&err),
    }
    ExitCode::SUCCESS
}

/// `tongban manpage [--dir DIR]`.
fn manpage(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        Some(dir) => {
            if let Err(err) = clap_mangen::generate_to(command, dir) {
                return Ok(Failure::failed(format!("{}: {err}", dir.display()))
                    .at("--dir")
                    .report());
            }
            println!("手册页已写入 manual pages written: {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            use std::io::Write;
            std::io::stdout().write_all(&page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The data directory from `--data-dir` or `TONGBAN_DATA_DIR`, or a rejection
/// that says how to give one.
pub fn require_data_dir(data: &crate::cli::DataDirArg) -> Result<std::path::PathBuf, ExitCode> {
    data.data_dir.clone().ok_or_else(|| {
        Failure::rejected("--data-dir DIR (or TONGBAN_DATA_DIR) is required")
            .at("--data-dir")
            .report()
    })
}

/// Exit status of a command whose input was rejected, when the command has
/// said why in its own output (`id check`, `verify`).
pub fn rejected() -> ExitCode {
    ExitCode::from(Kind::Rejected.exit_status())
}

/// Reports a rejection; answers its exit status.
pub fn reject(message: &str) -> ExitCode {
    Failure::rejected(message).report()
}

/// Reports a rejection of one argument or field, naming it; answers its exit
/// status.
pub fn reject_field(field: &str, message: impl std::fmt::Display) -> ExitCode {
    Failure::field(field, message).report()
}

/// Reports a node error; answers its exit status.
pub fn fail(err: &tongban_node::local::NodeError) -> ExitCode {
    Failure::from(err).report()
}

/// Opens the node of `--data-dir` for a command: through the running daemon's
/// control API when one runs, on the store directly otherwise.
pub fn open_target(
    data: &crate::cli::DataDirArg,
) -> Result<Box<dyn tongban_node::office::Office>, ExitCode> {
    let dir = require_data_dir(data)?;
    tongban_node::client::open(&dir).map_err(|e| fail(&e))
}
