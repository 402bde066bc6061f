//! `tongban id check`.

use crate::support::{stdout, tongban};

#[test]
fn a_valid_number_is_shown_masked() {
    let out = tongban(&["id", "check", "11010519491231002X"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("110105********002X"), "{text}");
    assert!(
        !text.contains("19491231002X"),
        "the clear number must not be printed: {text}"
    );
}

#[test]
fn each_rule_is_named_with_exit_status_1() {
    for (input, rule) in [
        ("1101051949123100", "18 characters"),
        ("11010519491231A02X", "character 15 must be a digit"),
        ("990105194912310021", "province prefix 99"),
        ("110105194902310020", "not a real date"),
        ("110105194912310021", "check character"),
    ] {
        let out = tongban(&["id", "check", input]);
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert!(stdout(&out).contains(rule), "{input}: {}", stdout(&out));
    }
}

#[test]
fn json_output_has_no_clear_number() {
    let out = tongban(&["id", "check", "--json", "11010519491231002X"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["valid"], true);
    assert_eq!(value["masked"], "110105********002X");
    let out = tongban(&["id", "check", "--json", "110105194912310021"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["valid"], false);
    assert!(value["error"].as_str().unwrap().contains("check character"));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_usage_error_exits_2() {
    assert_eq!(tongban(&["id", "check"]).status.code(), Some(2));
    assert_eq!(tongban(&["id", "frobnicate", "x"]).status.code(), Some(2));
}
