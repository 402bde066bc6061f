//! Puts the commit the binary was built from into `tongban --version`:
//! `TONGBAN_COMMIT` from the environment when a packager sets it, else
//! `git rev-parse --short HEAD`, else `unknown` (a tarball outside git still
//! builds).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TONGBAN_COMMIT");
    let commit = std::env::var("TONGBAN_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let commit = git(&["rev-parse", "--short", "HEAD"])?;
            // A new commit (or a checkout) moves this worktree's HEAD log.
            for path in ["HEAD", "logs/HEAD"] {
                if let Some(file) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            Some(commit)
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TONGBAN_COMMIT={commit}");
}
