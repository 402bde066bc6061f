//! Where a document's admission time goes, per document, in one process: loading
//! the bytes a peer sent, the authorship scan (the change graph read, each
//! change's ops expanded; from Automerge's rebuilt changes, and from the saved
//! document chunk as admission reads it) and reading the case core. The documents of the
//! node's QUIC benchmark before `tongban bench` (whose fixture is a finished
//! case, `tongban_node::fixture`): intake, signed `draft`, `accepted`,
//! `pushed`, and the applicant's evaluation as a signed commit.
//!
//! ```sh
//! cargo bench -p tongban-case --bench admission        # 2,000 documents
//! ```
//!
//! A plain `main` rather than criterion: each figure is a mean over the same
//! documents, printed beside `Automerge::load` of them (the floor every
//! admission pays) measured in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use automerge::Automerge;
use tongban_case::{CaseDocument, IntakeForm, Payload, SigningOffice};
use tongban_domain::ids::{CaseId, Operator, Timestamp, resident_id_check_char};
use tongban_domain::stage::{OfficeFacts, Role, Stage};
use tongban_ledger::keys::OfficeKey;

fn documents(n: usize) -> Vec<Vec<u8>> {
    let key = OfficeKey::from_bytes(&[20; 32]);
    let facts = OfficeFacts {
        office: "440106001".into(),
        role: Role::Township,
        division: "440106001".into(),
    };
    let op = Operator::parse("窗口01").unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let at = Timestamp::start_of_china_date(day);
    (0..n)
        .map(|i| {
            let first17 = format!("13010219{:02}0101{:03}", 50 + (i / 1000) % 40, i % 1000);
            let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
            let form = IntakeForm {
                name: "张建国".into(),
                resident_id: id.clone(),
                hukou_township: "130102001".into(),
                certificate: format!("{id}44"),
                dibao: true,
                subsidy_kinds: vec!["living".into()],
                phone: "13800000000".into(),
                address: "广州市天河区五山路".into(),
                ..IntakeForm::default()
            };
            let intake = form.validate(day).unwrap();
            let case = CaseId::new("440106001", day, (i as u32).to_be_bytes()).unwrap();
            let signer = SigningOffice {
                key: &key,
                facts: facts.clone(),
            };
            let (mut doc, _) = CaseDocument::create(&case, &intake, &signer, &op, at).unwrap();
            for (k, to) in [Stage::Accepted, Stage::Pushed].into_iter().enumerate() {
                doc.apply_unguarded(
                    to,
                    &signer,
                    &op,
                    Timestamp(at.0 + 60_000 * (k as i64 + 1)),
                    &Payload::default(),
                )
                .unwrap();
            }
            doc.record_evaluation(&signer, &op, Timestamp(at.0 + 180_000), 5, "满意")
                .unwrap();
            doc.automerge_mut().document().save()
        })
        .collect()
}

fn per_doc<T>(docs: &[Vec<u8>], mut f: impl FnMut(&[u8]) -> T) -> f64 {
    let start = Instant::now();
    for bytes in docs {
        std::hint::black_box(f(bytes));
    }
    start.elapsed().as_secs_f64() * 1e6 / docs.len() as f64
}

fn main() {
    let n: usize = std::env::var("TONGBAN_BENCH_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let docs = documents(n);
    let loaded: Vec<Automerge> = docs.iter().map(|b| Automerge::load(b).unwrap()).collect();
    let bytes: usize = docs.iter().map(Vec::len).sum();
    println!(
        "{n} documents, {} bytes and {} changes each on average",
        bytes / n,
        loaded
            .iter()
            .map(|d| d.get_changes(&[]).len())
            .sum::<usize>()
            / n
    );
    for round in 0..2 {
        let load = per_doc(&docs, |b| Automerge::load(b).unwrap());
        let mut i = 0;
        let mut next = || {
            i += 1;
            &loaded[(i - 1) % n]
        };
        let changes = per_doc(&docs, |_| next().get_changes(&[]));
        let meta = per_doc(&docs, |_| next().get_changes_meta(&[]).len());
        let decode = per_doc(&docs, |_| {
            next()
                .get_changes(&[])
                .iter()
                .map(|c| c.decode().operations.len())
                .sum::<usize>()
        });
        let scan = per_doc(&docs, |_| tongban_case::authorship::scan(next()).len());
        let mut j = 0;
        let scan_saved = per_doc(&docs, |bytes| {
            j += 1;
            tongban_case::authorship::scan_saved(&loaded[(j - 1) % n], bytes).len()
        });
        // The same documents saved without deflated columns: what inflating
        // costs the scan of the saved chunk.
        let raw: Vec<Vec<u8>> = loaded.iter().map(|d| d.save_nocompress()).collect();
        let mut j2 = 0;
        let scan_raw = per_doc(&docs, |_| {
            j2 += 1;
            tongban_case::authorship::scan_saved(&loaded[(j2 - 1) % n], &raw[(j2 - 1) % n]).len()
        });
        let core = per_doc(&docs, |_| tongban_case::document::read_core(next()).is_ok());
        if round == 1 {
            println!("µs a document (floor: Automerge::load {load:.1} µs)");
            for (what, t) in [
                ("get_changes", changes),
                ("get_changes_meta", meta),
                ("get_changes + decode every change", decode),
                ("authorship scan", scan),
                ("authorship scan of the saved chunk", scan_saved),
                ("  the same of an uncompressed save", scan_raw),
                ("read_core", core),
            ] {
                println!("  {what:<36} {t:>7.1}  {:>5.2}× the floor", t / load);
            }
        }
    }
}
