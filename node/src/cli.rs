//! Command-line grammar (clap). Parsing only; validation of values that need the
//! domain rules happens in `commands/`, so that a rejected value exits 1 with the
//! rule that failed, and a malformed command line exits 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tongban 通办: cross-province handling of the two disability subsidies.
#[derive(Debug, Parser)]
#[command(name = "tongban", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resident ID numbers (居民身份证号码).
    #[command(subcommand)]
    Id(IdCommand),
    /// The working-day calendar (工作日历), with adjusted working weekends.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Carry a cross-province case through every stage and verify its signed history.
    Demo(DemoArgs),
    /// Take a consistent backup of a node's store (备份以供查阅), or verify one.
    Backup(BackupArgs),
    /// Restore a verified backup into an empty data directory.
    Restore {
        /// The backup file.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban backup --out FILE` or `tongban backup verify FILE`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// `verify FILE` checks a backup end to end.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Where to write the backup (written to a temporary file, then renamed).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `tongban backup verify`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check every record, checksum, document and material of a backup file.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `tongban id ...`
#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Check a resident ID number: valid or not, the rule that failed, the masked form.
    Check {
        /// The 18-character number.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where a node keeps its state.
#[derive(Debug, Args, Clone)]
pub struct DataDirArg {
    /// The node's data directory (default: $TONGBAN_DATA_DIR).
    #[arg(long, env = "TONGBAN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `tongban calendar ...`
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// The date N working days after DATE (the deadline rule: counting starts the
    /// first working day after DATE).
    Add {
        /// Start date, YYYY-MM-DD.
        date: String,
        /// Working days.
        n: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Working days after D1 up to and including D2.
    Between {
        /// From, YYYY-MM-DD (not counted).
        from: String,
        /// To, YYYY-MM-DD (counted).
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Import a year's schedule (holiday-cn JSON, or Tongban's own text format) into
    /// the node's data directory, without a new build.
    Import {
        /// The schedule file.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Show which years the calendar covers.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// `tongban demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}
