//! The bench fixture's cases are what the benchmarks claim: finished cases
//! that verify clean against the directory (no guard, authorship or
//! signature finding), with ten signed transitions, and a suspension that
//! verifies too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tongban_domain::ids::Timestamp;
use tongban_domain::stage::Stage;
use tongban_node::fixture::{self, CaseFactory};
use tongban_node::local::LocalNode;
use tongban_node::office::Office;

#[test]
fn a_finished_case_verifies_clean_and_a_suspension_too() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::provision_route(tmp.path(), &[]).unwrap();
    let factory = CaseFactory::open(tmp.path()).unwrap();
    let mut built = factory.finished(7).unwrap();
    assert_eq!(built.case, factory.case_id(7).unwrap());
    assert_eq!(built.scans.len(), 6, "one scan for each item of the notice");
    let node = LocalNode::open(&tmp.path().join("hub-cn")).unwrap();
    let report = built
        .doc
        .verify(node.directory().unwrap(), node.calendar(), Timestamp::now())
        .unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(
        report.n_entries, 10,
        "draft and nine more signed transitions"
    );
    assert_eq!(built.doc.stage().unwrap(), Some(Stage::Active));
    factory.suspend(&mut built.doc).unwrap();
    let report = built
        .doc
        .verify(node.directory().unwrap(), node.calendar(), Timestamp::now())
        .unwrap();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(built.doc.stage().unwrap(), Some(Stage::Suspended));
}

#[test]
fn filled_cases_are_held_with_their_scans_and_verify_all_finds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::provision_route(tmp.path(), &[]).unwrap();
    let factory = CaseFactory::open(tmp.path()).unwrap();
    let dir = tmp.path().join("hub-cn");
    let mut told = 0;
    fixture::fill(&factory, &dir, 0..40, 16, |k| told += k).unwrap();
    assert_eq!(told, 40);
    let node = LocalNode::open(&dir).unwrap();
    let stats = node.store().stats().unwrap();
    assert_eq!(stats.cases, 40);
    assert_eq!(stats.materials, 6, "the scans are shared by every case");
    assert!(node.store().missing_materials().unwrap().is_empty());
    let cases = node.case_ids().unwrap();
    let found = node.verify_all(&cases, Timestamp::now(), &|_| {}).unwrap();
    assert_eq!(found.cases, 40);
    assert!(found.failed.is_empty(), "{:#?}", found.failed);
    // The floor checks the same documents' signed records in batches.
    let records = tongban_node::verify::floor(&node, &cases, &|_| {}).unwrap();
    assert!(records >= 40 * 10, "{records} records");
}

/// Where building a finished case goes (`cargo test --release -p
/// tongban-node --test fixture -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement"]
fn building_cost() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::provision_route(tmp.path(), &[]).unwrap();
    let factory = CaseFactory::open(tmp.path()).unwrap();
    let node = LocalNode::open(&tmp.path().join("hub-cn")).unwrap();
    let n = 200;
    let start = std::time::Instant::now();
    let mut built = Vec::new();
    for i in 0..n {
        built.push(factory.finished(i).unwrap());
    }
    let build = start.elapsed();
    let start = std::time::Instant::now();
    for b in &built {
        node.meta_of(&b.doc).unwrap();
    }
    let meta = start.elapsed();
    let start = std::time::Instant::now();
    let mut bytes = 0;
    for b in built.iter_mut() {
        bytes += b.doc.save().len();
    }
    let save = start.elapsed();
    println!(
        "a case: build {:.2} ms, meta {:.2} ms, save {:.2} ms, {} bytes saved",
        build.as_secs_f64() * 1e3 / n as f64,
        meta.as_secs_f64() * 1e3 / n as f64,
        save.as_secs_f64() * 1e3 / n as f64,
        bytes / n as usize
    );
}
