//! `tongban console`: serves the office console (crate `tongban-console`) for
//! the node of `--data-dir`, over its running daemon's control API; and
//! `tongban console user add|list`, its local accounts.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use tongban_console::accounts::Accounts;
use tongban_console::web::Console;

use super::{reject, require_data_dir};
use crate::cli::{ConsoleArgs, ConsoleCommand, ConsoleUserCommand};
use crate::error::Failure;

/// The file the console writes the address it listens on into (for scripts
/// and tests that start it on port 0).
const CONSOLE_ADDR_FILE: &str = "console.addr";

pub fn run(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ConsoleCommand::User(ConsoleUserCommand::Add { name, data })) => {
            let dir = match require_data_dir(&data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            let password = match read_password() {
                Ok(p) => p,
                Err(err) => return Ok(reject(&format!("password: {err}"))),
            };
            match Accounts::in_dir(&dir).add(&name, &password) {
                Ok(()) => {
                    println!("账户已创建 account created: {name}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(reject(&err.to_string())),
            }
        }
        Some(ConsoleCommand::User(ConsoleUserCommand::List { data })) => {
            let dir = match require_data_dir(&data) {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            match Accounts::in_dir(&dir).names() {
                Ok(names) => {
                    for name in names {
                        println!("{name}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => Ok(reject(&err.to_string())),
            }
        }
        None => serve(args),
    }
}

/// One line of standard input, without echo when it is a terminal.
fn read_password() -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("密码 Password: ");
        std::io::stderr().flush()?;
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn serve(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let dir = match require_data_dir(&args.data) {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };
    let addr = match tongban_console::resolve_listen(args.listen, args.config.as_deref()) {
        Ok(a) => a,
        Err(err) => return Ok(reject(&err.to_string())),
    };
    // The control API's client blocks on its own runtime: it connects
    // before the console's runtime starts.
    let console = match Console::connect(&dir) {
        Ok(c) => c,
        Err(err) => {
            return Ok(Failure::failed(err.to_string())
                .during("错误 error: 控制台无法启动 the console cannot start")
                .report());
        }
    };
    if console
        .accounts()
        .names()
        .map(|n| n.is_empty())
        .unwrap_or(true)
    {
        eprintln!(
            "注意 note: no console account yet: make one with `tongban console user add NAME --data-dir {}`",
            dir.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(err) => {
                return Ok(Failure::failed(format!("{addr}: {err}"))
                    .during("错误 error: 控制台无法监听 the console cannot listen")
                    .report());
            }
        };
        let bound = listener.local_addr()?;
        tongban_node::files::write_atomic(
            &dir.join(CONSOLE_ADDR_FILE),
            bound.to_string().as_bytes(),
            Some(0o600),
        )?;
        println!("控制台运行中 console running: http://{bound}/");
        tongban_console::serve(console, listener, async {
            let _ = super::node::stop_requested().await;
        })
        .await?;
        let _ = std::fs::remove_file(dir.join(CONSOLE_ADDR_FILE));
        println!("已停止 stopped");
        Ok(ExitCode::SUCCESS)
    })
}
