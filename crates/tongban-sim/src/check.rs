//! The invariants checked after a simulation healed.
//!
//! 1. Every node of a case's route holds the case, and they all hold the same
//!    document (the same Automerge heads).
//! 2. No node holds a case off its route.
//! 3. Every signed transition made — by a clerk or as a receipt — is present on
//!    every node of the route.
//! 4. The verifier passes (no error-severity finding) on every node's copy, against
//!    that node's directory and clock.
//! 5. No case went backwards on any node (checked while running, by
//!    `Sim::observe`: a node's set of signed transitions only grows).
//! 6. Every node computes the same deadline for every case.
//! 7. Every node of a case's route holds every material of the case, whole, with
//!    the right BLAKE3, and attached to the case.
//! 8. No node holds a material of a case off its route (unless a case on its route
//!    references the same content).
//! 9. Every supervisor whose region holds a case's acceptance office or
//!    domicile holds what the case's offices attested, and its own reading of
//!    the case shows the stage the route's copies reached, with no problem.
//! 10. No supervisor holds a case document or a material, and nothing a
//!     supervisor holds — attestations, supervised rows — contains a byte
//!     string of any applicant's personal data.

use std::collections::{BTreeMap, BTreeSet};

use tongban_case::CaseDocument;
use tongban_ledger::directory::Directory;
use tongban_ledger::verify::{CaseHistory, Severity, VerifyContext, verify_case};
use tongban_sync::admit;
use tongban_sync::route::on_route;
use tongban_sync::store::{SyncStore, heads_of};

use crate::sim::Sim;

/// Checks the invariants; returns every violation found.
pub fn check(sim: &Sim) -> Vec<String> {
    let mut out = Vec::new();
    // 2: nothing off route, on any node — and nothing anywhere but its
    // acceptance office before the stage that releases it, judged on the
    // node's own copy.
    let route_of: BTreeMap<_, _> = sim.cases.iter().map(|c| (c.id.clone(), c.route)).collect();
    for idx in sim.nodes() {
        let office = sim.office(idx);
        let Some(store) = sim.store(idx) else {
            out.push(format!("{} is down after healing", office.id));
            continue;
        };
        match store.all_cases() {
            Ok(cases) => {
                for case in cases {
                    let released = store
                        .load(&case)
                        .ok()
                        .flatten()
                        .is_some_and(|doc| admit::released(&admit::transitions_of(&doc)));
                    match route_of.get(&case) {
                        Some(route) if on_route(&office.place, &route.released(released)) => {}
                        Some(route) if on_route(&office.place, route) => out.push(format!(
                            "{} holds {case} before it was pushed (it may not leave its acceptance office yet)",
                            office.id
                        )),
                        Some(_) => out.push(format!(
                            "{} holds {case}, which is off its route",
                            office.id
                        )),
                        None => out.push(format!("{} holds unknown case {case}", office.id)),
                    }
                }
            }
            Err(err) => out.push(format!("{}: store: {err}", office.id)),
        }
    }
    let directory = match Directory::verify(&sim.world.directory, &sim.world.authority) {
        Ok(directory) => directory,
        Err(err) => {
            out.push(format!("directory: {err}"));
            return out;
        }
    };
    for track in &sim.cases {
        let route_nodes: Vec<usize> = sim
            .effective_route(track)
            .nodes()
            .iter()
            .filter_map(|p| sim.world.at(p))
            .collect();
        let mut heads = BTreeMap::new();
        let mut transitions: BTreeMap<usize, BTreeSet<[u8; 32]>> = BTreeMap::new();
        let mut dues = BTreeMap::new();
        for &idx in &route_nodes {
            let office = &sim.office(idx).id;
            let Some(store) = sim.store(idx) else {
                continue;
            };
            let doc = match store.load(&track.id) {
                Ok(Some(doc)) => doc,
                Ok(None) => {
                    out.push(format!(
                        "{office} is on the route of {} but does not hold it",
                        track.id
                    ));
                    continue;
                }
                Err(err) => {
                    out.push(format!("{office}: store: {err}"));
                    continue;
                }
            };
            heads.insert(idx, heads_of(&doc));
            let signed = admit::transitions_of(&doc);
            transitions.insert(
                idx,
                signed.iter().map(|b| *blake3::hash(b).as_bytes()).collect(),
            );
            // 4: the verifier.
            let has_head = |h: &[u8; 32]| tongban_sync::store::has_change(&doc, h);
            let ctx =
                VerifyContext::new(&directory, &sim.world.calendar, sim.clock(idx), &has_head);
            let report = verify_case(
                &CaseHistory {
                    case: track.id.clone(),
                    transitions: signed,
                    domicile_township: track.route.domicile().to_string(),
                },
                &ctx,
            );
            for violation in report
                .violations
                .iter()
                .filter(|v| v.severity == Severity::Error)
            {
                out.push(format!("{office}: verifier on {}: {violation}", track.id));
            }
            // 6: deadlines.
            match CaseDocument::load(&doc.save()).and_then(|d| d.due(&sim.world.calendar)) {
                Ok(due) => {
                    dues.insert(idx, format!("{due:?}"));
                }
                Err(err) => out.push(format!("{office}: case {} does not read: {err}", track.id)),
            }
        }
        // 1: convergence.
        let distinct: BTreeSet<_> = heads.values().collect();
        if distinct.len() > 1 {
            let who: Vec<String> = heads
                .iter()
                .map(|(idx, h)| format!("{}:{}", sim.office(*idx).id, h.len()))
                .collect();
            out.push(format!("{} did not converge: {}", track.id, who.join(" ")));
        }
        // 3: every transition everywhere.
        let all: BTreeSet<[u8; 32]> = transitions.values().flatten().copied().collect();
        for missing in track.made.difference(&all) {
            out.push(format!(
                "{}: transition {} made but held nowhere",
                track.id,
                tongban_ledger::hex(&missing[..6])
            ));
        }
        for (idx, held) in &transitions {
            let lacking = all.difference(held).count();
            if lacking > 0 {
                out.push(format!(
                    "{}: {} lacks {lacking} signed transition(s)",
                    track.id,
                    sim.office(*idx).id
                ));
            }
        }
        let distinct_dues: BTreeSet<_> = dues.values().collect();
        if distinct_dues.len() > 1 {
            out.push(format!(
                "{}: nodes compute different deadlines: {distinct_dues:?}",
                track.id
            ));
        }
        // 7: materials everywhere on the route.
        for &idx in &route_nodes {
            let Some(store) = sim.store(idx) else {
                continue;
            };
            let office = &sim.office(idx).id;
            for hash in &track.materials {
                out.extend(material_problem(store, &track.id, hash).map(|problem| {
                    format!("{office} is on the route of {} but {problem}", track.id)
                }));
            }
        }
    }
    // 8: no material off its route.
    for idx in sim.nodes() {
        let place = sim.office(idx).place;
        let Some(store) = sim.store(idx) else {
            continue;
        };
        let mine: BTreeSet<[u8; 32]> = sim
            .cases
            .iter()
            .filter(|t| on_route(&place, &sim.effective_route(t)))
            .flat_map(|t| t.materials.iter().copied())
            .collect();
        for track in sim
            .cases
            .iter()
            .filter(|t| !on_route(&place, &sim.effective_route(t)))
        {
            for hash in track.materials.iter().filter(|h| !mine.contains(*h)) {
                if store.has_material(hash).unwrap_or(true) {
                    out.push(format!(
                        "{} holds a material of {}, which is off its route",
                        sim.office(idx).id,
                        track.id
                    ));
                }
            }
        }
    }
    out.extend(check_supervisors(sim));
    out
}

/// Invariants 9 and 10: what supervisors hold.
fn check_supervisors(sim: &Sim) -> Vec<String> {
    use tongban_domain::supervision::SupervisedCase;
    use tongban_sync::route::{Place, attestation_on_route};
    let mut out = Vec::new();
    let personal: Vec<&[u8]> = sim
        .cases
        .iter()
        .flat_map(|t| t.personal.iter())
        .filter(|p| p.len() >= 4)
        .map(|p| p.as_bytes())
        .collect();
    let leaks = |bytes: &[u8]| {
        personal
            .iter()
            .any(|p| bytes.windows(p.len()).any(|w| w == *p))
    };
    for idx in sim.nodes() {
        let office = sim.office(idx);
        if !matches!(office.place, Place::Supervisor(_)) {
            continue;
        }
        let Some(store) = sim.store(idx) else {
            continue;
        };
        match store.all_cases() {
            Ok(cases) if !cases.is_empty() => out.push(format!(
                "supervisor {} holds {} case document(s)",
                office.id,
                cases.len()
            )),
            Ok(_) => {}
            Err(err) => out.push(format!("{}: store: {err}", office.id)),
        }
        for track in &sim.cases {
            for hash in &track.materials {
                if store.has_material(hash).unwrap_or(false) {
                    out.push(format!(
                        "supervisor {} holds a material of {}",
                        office.id, track.id
                    ));
                }
            }
            let attested = store.inner().attestations_of(&track.id).unwrap_or_default();
            if attested.iter().any(|b| leaks(b)) {
                out.push(format!(
                    "supervisor {} holds personal data in an attestation of {}",
                    office.id, track.id
                ));
            }
            let supervised = store.inner().supervised(&track.id).ok().flatten();
            if supervised.as_deref().is_some_and(leaks) {
                out.push(format!(
                    "supervisor {} holds personal data in its reading of {}",
                    office.id, track.id
                ));
            }
            // 9: what the route attested reaches the supervisors of its region.
            let route = sim.effective_route(track);
            if !attestation_on_route(&office.place, &route) {
                if !attested.is_empty() {
                    out.push(format!(
                        "supervisor {} holds attestations of {}, outside its region",
                        office.id, track.id
                    ));
                }
                continue;
            }
            let expected = route
                .members()
                .iter()
                .filter_map(|p| sim.world.at(p))
                .filter_map(|i| sim.store(i)?.inner().attestations_of(&track.id).ok())
                .flatten()
                .count();
            if attested.len() < expected {
                out.push(format!(
                    "supervisor {} holds {} of the {expected} attestations of {}",
                    office.id,
                    attested.len(),
                    track.id
                ));
            }
            if expected == 0 {
                continue;
            }
            let Some(bytes) = supervised else {
                out.push(format!(
                    "supervisor {} has no reading of {}",
                    office.id, track.id
                ));
                continue;
            };
            match SupervisedCase::from_row(&bytes) {
                Ok(seen) => {
                    if !seen.problems.is_empty() {
                        out.push(format!(
                            "supervisor {} finds problems in {}: {}",
                            office.id,
                            track.id,
                            seen.problems.join("; ")
                        ));
                    }
                    if seen.steps.is_empty() {
                        out.push(format!(
                            "supervisor {} reads no signed step of {}",
                            office.id, track.id
                        ));
                    }
                }
                Err(err) => out.push(format!(
                    "supervisor {}: reading of {} does not decode: {err}",
                    office.id, track.id
                )),
            }
        }
    }
    out
}

/// What is wrong with a route node's copy of a material, if anything.
fn material_problem(
    store: &tongban_replica::Replica,
    case: &tongban_domain::ids::CaseId,
    hash: &[u8; 32],
) -> Option<String> {
    use std::io::Read;
    let address = tongban_store::MaterialHash(*hash);
    let short = tongban_ledger::hex(&hash[..6]);
    let mut bytes = Vec::new();
    match store.inner().open_material(&address) {
        Ok(mut reader) => {
            // The reader checks every chunk and the whole hash.
            if let Err(err) = reader.read_to_end(&mut bytes) {
                return Some(format!("its material {short} is damaged: {err}"));
            }
        }
        Err(tongban_store::StoreError::UnknownMaterial { .. }) => {
            return Some(format!("lacks material {short}"));
        }
        Err(err) => return Some(format!("cannot read material {short}: {err}")),
    }
    if blake3::hash(&bytes).as_bytes() != hash {
        return Some(format!("its material {short} has the wrong content"));
    }
    match store.inner().case_materials(case) {
        Ok(attached) if attached.contains(&address) => None,
        Ok(_) => Some(format!("material {short} is not attached to the case")),
        Err(err) => Some(format!("store: {err}")),
    }
}
