//! `tongban bench` as an operator runs it, at sizes a test can afford: every
//! scenario runs end to end over real nodes, prints its figures with their
//! floors as JSON, keeps a prepared data set that a second run copies, and
//! refuses nonsense sizes naming the argument.

use std::path::Path;

use crate::support::{stderr, stdout, tongban};

fn bench(args: &[&str], sets: &Path) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--data-sets", sets.to_str().unwrap()]);
    let out = tongban(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn figure<'a>(outcome: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    outcome["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no figure {name} in {outcome}"))
}

#[test]
fn every_scenario_runs_over_real_nodes_and_reports_its_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = tmp.path().join("sets");

    let initial = bench(&["initial", "--docs", "30"], &sets);
    assert_eq!(initial["scenario"], "initial");
    assert_eq!(initial["docs"], 30);
    let sync = figure(&initial, "sync_docs_per_s");
    assert!(sync["value"].as_f64().unwrap() > 0.0);
    assert!(sync["floor"].as_f64().unwrap() > 0.0);
    assert!(sync["ratio"].as_f64().unwrap() > 0.0);
    // The data set was kept, and the next run at that size copies it.
    assert!(sets.join("v2-30").join("complete").exists());
    let again = bench(&["verify", "--docs", "30"], &sets);
    let verify = figure(&again, "verify_s");
    assert!(verify["value"].as_f64().unwrap() > 0.0);
    assert!(verify["floor"].as_f64().unwrap() > 0.0);
    // Every signed record of every case: ten transitions and the writes.
    assert!(figure(&again, "signed_records")["value"].as_f64().unwrap() >= 300.0);

    let resume = bench(&["resume", "--docs", "30", "--changed", "3"], &sets);
    assert_eq!(resume["changed"], 3);
    assert!(figure(&resume, "resume_ms")["value"].as_f64().unwrap() > 0.0);

    let fanout = bench(&["fanout", "--docs", "20", "--children", "2"], &sets);
    let served = figure(&fanout, "fanout_docs_per_s");
    assert!(served["ratio"].as_f64().unwrap() > 0.0);
    assert!(served["met"].is_boolean());

    let open = bench(&["open", "--docs", "30"], &sets);
    let idle = figure(&open, "idle_mib")["value"].as_f64().unwrap();
    assert!(idle > 1.0 && idle < 1024.0, "idle {idle} MiB");
    assert!(figure(&open, "start_ms")["value"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_hop_goes_through_five_hubs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tongban(&[
        "bench",
        "hop",
        "--json",
        "--fresh",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hop: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let through = figure(&hop, "hop_ms");
    // The floor is the first hop of the same transitions: the chain is longer.
    assert!(through["value"].as_f64().unwrap() >= through["floor"].as_f64().unwrap());
    // --dir keeps the nodes.
    assert!(
        tmp.path()
            .join("hop")
            .join("hub-cn")
            .join("tongban.redb")
            .exists()
    );
}

#[test]
fn nonsense_sizes_are_refused_naming_the_argument() {
    for (args, field) in [
        (vec!["bench", "initial", "--docs", "0"], "--docs"),
        (vec!["bench", "initial", "--docs", "99999999999"], "--docs"),
        (
            vec!["bench", "resume", "--docs", "10", "--changed", "11"],
            "--changed",
        ),
        (vec!["bench", "fanout", "--children", "0"], "--children"),
    ] {
        let out = tongban(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(field), "{args:?}: {}", stderr(&out));
    }
    let out = tongban(&["bench", "sideways"]);
    assert_eq!(out.status.code(), Some(2));
}
