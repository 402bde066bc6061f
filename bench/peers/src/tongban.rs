//! Tongban's own figures, from the shipped binary: `tongban bench initial
//! --docs N --json` and `tongban bench resume --docs N --changed K --json`.
//! A binary without the subcommand (or none at all) leaves them unmeasured.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// What `tongban bench … --json` prints (extra fields are ignored).
#[derive(Debug, Deserialize)]
pub struct BenchReport {
    /// `initial` or `resume`.
    pub scenario: String,
    /// Documents held.
    pub docs: u64,
    /// Documents changed (resume).
    #[serde(default)]
    pub changed: Option<u64>,
    /// Its figures.
    pub figures: Vec<Figure>,
}

/// One figure of a report.
#[derive(Debug, Deserialize)]
pub struct Figure {
    /// `sync_docs_per_s`, `resume_ms`, …
    pub name: String,
    /// The value.
    pub value: f64,
}

/// Runs `tongban bench <args> --json`: the named figure's value, or why
/// there is none.
pub fn figure(binary: &Path, args: &[String], name: &str) -> Result<f64, String> {
    if !binary.exists() {
        return Err(format!("{} does not exist", binary.display()));
    }
    let output = Command::new(binary)
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} bench {}` exited with {} (no bench subcommand in this build?)",
            binary.display(),
            args.join(" "),
            output.status
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let report = parse(&text).ok_or_else(|| {
        format!(
            "`tongban bench {}` printed no report: {}",
            args.join(" "),
            text.chars().take(200).collect::<String>()
        )
    })?;
    // The report must be of the run asked for.
    let asked = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if args.first().map(String::as_str) != Some(report.scenario.as_str())
        || asked("--docs") != Some(report.docs)
        || asked("--changed").is_some() && asked("--changed") != report.changed
    {
        return Err(format!(
            "`tongban bench {}` reported {} at {} docs (changed {:?})",
            args.join(" "),
            report.scenario,
            report.docs,
            report.changed
        ));
    }
    report
        .figures
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value)
        .ok_or_else(|| format!("`tongban bench {}` has no {name}", args.join(" ")))
}

/// The report in `text`: all of it as one JSON value, or else its last line
/// that is one.
pub fn parse(text: &str) -> Option<BenchReport> {
    serde_json::from_str(text.trim()).ok().or_else(|| {
        text.lines()
            .rev()
            .find_map(|line| serde_json::from_str(line.trim()).ok())
    })
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_with_extra_fields() {
        let text = r#"progress…
{"scenario":"initial","docs":5000,"changed":null,"cores":2,"figures":[{"name":"sync_docs_per_s","value":6120.5,"unit":"docs/s","floor":4000.0,"ratio":0.65,"target":"≥ 4,000","met":true,"extra":1}]}
"#;
        let report = parse(text).expect("a report");
        assert_eq!(report.scenario, "initial");
        assert_eq!(report.docs, 5000);
        assert_eq!(report.changed, None);
        assert_eq!(report.figures[0].name, "sync_docs_per_s");
        assert!((report.figures[0].value - 6120.5).abs() < 1e-9);
    }

    #[test]
    fn a_missing_binary_is_not_measured() {
        let missing = Path::new("/nonexistent/tongban");
        assert!(figure(missing, &[], "sync_docs_per_s").is_err());
    }
}
