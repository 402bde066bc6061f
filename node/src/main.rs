//! The `tongban` binary: the command line over the `tongban_node` library, as
//! a thin layer. It parses arguments (`cli`), runs one command family per
//! module of `commands/` against the library's `Office` trait (so each is
//! written once, whether a running node answers or the store is opened here),
//! prints results (`output`: JSON, tables by display width, progress on a
//! terminal) and maps every failure to text or a `--json` object and an exit
//! status in one place (`error`: 0 success, 1 input rejected or command
//! failed, 2 usage error, 3 a material not yet held here).
//!
//! It must never hold rules of its own (the stage and write-rights tables in
//! the library crates decide), never write a node's store except through the
//! library, never print personal data unmasked, and never draw progress into
//! piped or `--json` output.

mod cli;
mod commands;
#[cfg(test)]
mod docs_check;
mod error;
mod output;

use std::process::ExitCode;

/// mimalloc instead of the system allocator. A node's work is Automerge's: a
/// loaded case document is thousands of small allocations, made on the admission
/// threads and freed on the thread that stores the document. Measured with the
/// sync benchmark at 100,000 documents in one session: 6,801 documents a second
/// against 5,455 with glibc's allocator, and plain Automerge sync itself ~10%
/// faster (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let args = match cli::Cli::parse_or_usage() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let configured = match &args.command {
        cli::Command::Node(cli::NodeCommand::Run { config }) => {
            tongban_node::daemon::NodeConfig::load(config)
                .ok()
                .and_then(|c| c.log)
        }
        _ => None,
    };
    init_logging(args.verbose, configured.as_deref());
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => error::Failure::from(err).report(),
    }
}

/// Ends the command quietly when its output is closed early (`tongban case list
/// | head`). Rust ignores SIGPIPE, so `println!` panics on a closed pipe; that
/// one panic means the reader has all it wanted, so the process exits 0
/// without a message or a backtrace. Every other panic is reported as before.
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Logs go to stderr; the level comes from `RUST_LOG`, else `-v` flags, else the
/// node config's `log`. Personal data is never logged in clear: the domain types
/// display masked. Colour codes only when stderr is a terminal, so that logs
/// written to files stay plain text.
fn init_logging(verbose: u8, configured: Option<&str>) {
    let default = match (verbose, configured) {
        (0, Some(level)) => level,
        (0, None) => "warn",
        (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
