//! Tests that hold the documents to the command line, so that they cannot
//! drift: README's command table lists exactly the commands `tongban` has (the
//! clap tree walked), README's Documents section lists every file in `docs/`,
//! and the clerk-facing commands' help starts in Chinese.

use clap::CommandFactory;

use crate::cli::Cli;

/// Every runnable command path: `tongban case list`, `tongban backup`, …
/// (a command with subcommands of its own is listed when it also runs alone,
/// as `backup` does).
fn commands() -> Vec<String> {
    fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<String>) {
        let path = format!("{prefix} {}", command.get_name());
        let subs: Vec<&clap::Command> = command
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if subs.is_empty() || !command.is_subcommand_required_set() {
            out.push(path.trim().to_string());
        }
        for sub in subs {
            walk(&path, sub, out);
        }
    }
    let mut out = Vec::new();
    let root = Cli::command();
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        walk("tongban", sub, &mut out);
    }
    out.sort();
    out
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of README's section `## {title}`.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("## {title}");
    text.lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// The commands README's table names: the first cell of each row,
/// `` `tongban case list …` ``, without its arguments.
fn readme_commands(text: &str) -> Vec<String> {
    let mut found: Vec<String> = section(text, "Commands")
        .into_iter()
        .filter_map(|l| l.strip_prefix("| `tongban "))
        .map(|rest| {
            let cell = rest.split('`').next().unwrap_or("");
            let words: Vec<&str> = cell
                .split_whitespace()
                .take_while(|w| w.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .collect();
            format!("tongban {}", words.join(" "))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn readme_lists_every_command_and_no_other() {
    let text = readme();
    let listed = readme_commands(&text);
    let real = commands();
    let missing: Vec<&String> = real.iter().filter(|c| !listed.contains(c)).collect();
    let extra: Vec<&String> = listed.iter().filter(|c| !real.contains(c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README's command table is out of date: missing {missing:?}, not commands {extra:?}"
    );
}

#[test]
fn readme_lists_every_document() {
    let text = readme();
    let documents = section(&text, "Documents").join("\n");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let name = entry.map(|e| e.file_name()).unwrap_or_default();
        let name = format!("docs/{}", name.to_string_lossy());
        if !documents.contains(&format!("`{name}`")) {
            unlisted.push(name);
        }
    }
    assert!(
        unlisted.is_empty(),
        "README's Documents section lacks {unlisted:?}"
    );
}

#[test]
fn the_readme_check_sees_a_missing_command() {
    let text = "## Commands\n\n| command | does |\n|---|---|\n| `tongban case list [--json]` | x |\n\n## Next\n| `tongban demo` | y |\n";
    assert_eq!(readme_commands(text), ["tongban case list"]);
    assert!(commands().contains(&"tongban case list".to_string()));
    assert!(commands().contains(&"tongban backup".to_string()));
    assert!(commands().contains(&"tongban backup verify".to_string()));
    assert!(!commands().contains(&"tongban case".to_string()));
}

#[test]
fn the_top_of_the_readme_keeps_its_two_commands() {
    let text = readme();
    let first_block: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "```sh")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert_eq!(
        first_block,
        [
            "cargo run --release -p tongban -- demo",
            "cargo test --workspace"
        ]
    );
}

/// Whether `text` starts with a Chinese character.
fn chinese_first(text: &str) -> bool {
    text.trim_start()
        .chars()
        .next()
        .is_some_and(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[test]
fn clerk_facing_help_is_chinese_first() {
    let root = Cli::command();
    let mut english_first = Vec::new();
    let mut check = |path: String, command: &clap::Command| {
        let about = command
            .get_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !chinese_first(&about) {
            english_first.push(format!("{path}: {about:?}"));
        }
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "json" | "data_dir" | "operator" | "case")
                && !chinese_first(&arg.get_help().map(ToString::to_string).unwrap_or_default())
            {
                english_first.push(format!("{path} --{id}"));
            }
        }
    };
    for family in [
        "case", "calendar", "id", "policy", "history", "verify", "backup", "restore",
    ] {
        let Some(command) = root.find_subcommand(family) else {
            panic!("no command {family}");
        };
        check(format!("tongban {family}"), command);
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            check(format!("tongban {family} {}", sub.get_name()), sub);
        }
    }
    if let Some(status) = root
        .find_subcommand("node")
        .and_then(|n| n.find_subcommand("status"))
    {
        check("tongban node status".into(), status);
    }
    assert!(
        english_first.is_empty(),
        "help not Chinese first: {english_first:#?}"
    );
    assert!(!chinese_first("Show one case"));
}
