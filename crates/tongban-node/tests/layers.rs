//! The crate's modules are layers (the list in `src/lib.rs`): each may use only
//! the modules listed before it. This test reads every module's code (comments
//! left out) and fails on any `crate::MODULE` that reaches up or sideways into a
//! later layer, so the import circle that once ran through `local`, `client`,
//! `control`, `daemon` and `archive` cannot come back unnoticed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

/// The `pub mod` lines of `lib.rs`, in order.
fn layers(src: &Path) -> Vec<String> {
    std::fs::read_to_string(src.join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// The modules `text` names as `crate::MODULE`, outside comments.
fn uses(text: &str, modules: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && !found.contains(&name) {
                found.push(name);
            }
        }
        // `use crate::{a, b}` names several at once.
        if let Some(group) = code.split("crate::{").nth(1) {
            for part in group.split([',', '}']) {
                let name = part.trim().split("::").next().unwrap_or("").to_string();
                if modules.contains(&name) && !found.contains(&name) {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[test]
fn no_module_reaches_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layers(&src);
    assert!(order.len() >= 10, "lib.rs lists the layers: {order:?}");
    let mut wrong = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        let text = std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap();
        for used in uses(&text, &order) {
            let used_rank = order.iter().position(|m| *m == used).unwrap();
            if used_rank > rank {
                wrong.push(format!("{module} uses {used}, a later layer"));
            }
        }
    }
    assert!(wrong.is_empty(), "layers reached up: {wrong:#?}");
}

#[test]
fn the_check_sees_a_reach_up() {
    let order: Vec<String> = ["local", "client"].map(String::from).to_vec();
    assert_eq!(
        uses("use crate::client::NodeFileView; // crate::local", &order),
        ["client"]
    );
    assert_eq!(
        uses("use crate::{client::X, local};", &order),
        ["client", "local"]
    );
    assert!(uses("/// see crate::client", &order).is_empty());
}
