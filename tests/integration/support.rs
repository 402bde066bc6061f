//! Running the binary.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tongban` with `args`, with no inherited data directory.
pub fn tongban(args: &[&str]) -> Output {
    tongban_in(None, args)
}

/// Runs `tongban` with `TONGBAN_DATA_DIR` set to `data_dir` when given.
pub fn tongban_in(data_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongban"));
    cmd.args(args)
        .env_remove("TONGBAN_DATA_DIR")
        .env_remove("RUST_LOG");
    if let Some(dir) = data_dir {
        cmd.env("TONGBAN_DATA_DIR", dir);
    }
    cmd.output().expect("tongban runs")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
