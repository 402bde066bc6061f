//! The checker can fail: a healed world corrupted on purpose yields violations,
//! so a green campaign means something.

use tongban_sim::check::check;
use tongban_sim::{SimConfig, run_seed};
use tongban_sync::route::on_route;
use tongban_sync::store::{StoreWrite, SyncStore};

/// A small healed world whose checks pass.
fn healed() -> tongban_sim::Sim {
    healed_seed(7)
}

fn healed_seed(seed: u64) -> tongban_sim::Sim {
    let mut config = SimConfig::for_seed(seed);
    config.cases = 2;
    let (sim, violations) = run_seed(config).unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(!sim.cases.is_empty());
    sim
}

/// The first healed run, from seed 7 on, with a case that travels (its
/// domicile township is not its acceptance township): which seeds make one
/// depends on the whole run, so the test looks for it rather than naming it.
fn healed_with_a_travelling_case() -> tongban_sim::Sim {
    (7..40)
        .map(healed_seed)
        .find(|sim| {
            sim.cases
                .iter()
                .any(|t| t.route.acceptance() != t.route.domicile())
        })
        .expect("a seed from 7 to 39 has a case that travels")
}

#[test]
fn a_case_planted_off_its_route_is_caught() {
    let mut sim = healed();
    let track = sim.cases[0].clone();
    let holder = track
        .route
        .nodes()
        .iter()
        .find_map(|p| sim.world.at(p))
        .unwrap();
    let doc = sim.store(holder).unwrap().load(&track.id).unwrap().unwrap();
    let outsider = sim
        .nodes()
        .find(|idx| !on_route(&sim.office(*idx).place, &track.route))
        .unwrap();
    let office = sim.office(outsider).id.clone();
    sim.store_mut(outsider)
        .unwrap()
        .commit(vec![StoreWrite::case(
            track.id.clone(),
            track.route,
            doc,
            None,
        )])
        .unwrap();
    let violations = check(&sim);
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&office.to_string()) && v.contains("off its route")),
        "{violations:?}"
    );
}

#[test]
fn a_transition_made_but_lost_is_caught() {
    let mut sim = healed();
    sim.cases[0].made.insert([7; 32]);
    let violations = check(&sim);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("made but held nowhere")),
        "{violations:?}"
    );
}

#[test]
fn a_route_node_that_lacks_the_case_is_caught() {
    let mut sim = healed();
    // Claim a case the world never synced: every node of its route lacks it.
    let mut ghost = sim.cases[0].clone();
    ghost.id = tongban_domain::ids::CaseId::parse(&format!(
        "{}-20260302-GH0575",
        ghost.route.acceptance()
    ))
    .unwrap();
    sim.cases.push(ghost);
    let violations = check(&sim);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("GH0575") && v.contains("does not hold it")),
        "{violations:?}"
    );
}

#[test]
fn a_route_node_that_lacks_a_material_is_caught() {
    let mut sim = healed();
    // A scan the acceptance office attached that never reached anyone.
    sim.cases[0]
        .materials
        .push(*blake3::hash(b"a scan that never travelled").as_bytes());
    let violations = check(&sim);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("is on the route of") && v.contains("lacks material")),
        "{violations:?}"
    );
}

#[test]
fn a_material_planted_off_its_route_is_caught() {
    let mut sim = healed();
    let track = sim.cases[0].clone();
    let scan = b"a township's scan, where it must not be".to_vec();
    let outsider = sim
        .nodes()
        .find(|idx| !on_route(&sim.office(*idx).place, &track.route))
        .unwrap();
    let office = sim.office(outsider).id.clone();
    sim.store_mut(outsider)
        .unwrap()
        .inner()
        .put_material(scan.as_slice())
        .unwrap();
    sim.cases[0].materials.push(*blake3::hash(&scan).as_bytes());
    let violations = check(&sim);
    assert!(
        violations.iter().any(|v| v.contains(&office.to_string())
            && v.contains("holds a material of")
            && v.contains("off its route")),
        "{violations:?}"
    );
}

#[test]
fn materials_travel_in_the_campaign() {
    // Some seeds' cases carry scans (one of more than a chunk): they reach every
    // node of the route, which the checker verifies.
    let mut carried = 0;
    for seed in 0..6 {
        let (sim, violations) = run_seed(SimConfig::for_seed(seed)).unwrap();
        assert!(violations.is_empty(), "seed {seed}: {violations:?}");
        carried += sim.cases.iter().filter(|t| !t.materials.is_empty()).count();
    }
    assert!(carried > 0);
}

#[test]
fn a_case_planted_at_a_route_node_before_its_push_is_caught() {
    let mut sim = healed_with_a_travelling_case();
    // A new case, still a draft at its acceptance office, written straight
    // into the store of the domicile township — a member of its full route.
    // The first case of the seed that travels (its domicile township is not
    // its acceptance township).
    let track = sim
        .cases
        .iter()
        .find(|t| t.route.acceptance() != t.route.domicile())
        .expect("the seed has a case that travels")
        .clone();
    let place = |code| tongban_sync::route::Place::Township(code);
    let acceptance = sim.world.at(&place(track.route.acceptance())).unwrap();
    let domicile = sim.world.at(&place(track.route.domicile())).unwrap();
    assert_ne!(domicile, acceptance);
    let office = sim.office(acceptance).clone();
    let now = sim.clock(acceptance);
    let case =
        tongban_domain::ids::CaseId::new(&office.division, now.china_date(), [9, 9, 9, 9]).unwrap();
    let resident = tongban_sim::world::resident_id(
        &mut tongban_sim::rng::Rng::new(5),
        &track.route.domicile().to_string(),
    );
    let (mut draft, _) = tongban_sim::world::create_case(
        &office,
        &case,
        &track.route.domicile().to_string(),
        &resident,
        now,
    )
    .unwrap();
    let planted = draft.automerge_mut().document().clone();
    assert!(!tongban_sync::admit::released(
        &tongban_sync::admit::transitions_of(&planted)
    ));
    let mut ghost = track.clone();
    ghost.id = case.clone();
    sim.cases.push(ghost);
    let holder = sim.office(domicile).id.clone();
    sim.store_mut(domicile)
        .unwrap()
        .commit(vec![StoreWrite::case(case, track.route, planted, None)])
        .unwrap();
    let violations = check(&sim);
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&holder.to_string()) && v.contains("before it was pushed")),
        "{violations:?}"
    );
}

/// The supervisors of a healed world each hold the attestations of their
/// region's cases; a case document planted at one, personal data planted in
/// its reading of a case, or an attestation it lost are each caught.
#[test]
fn supervisors_hold_attestations_and_no_personal_data_or_it_is_caught() {
    use tongban_sync::route::{Place, attestation_on_route};
    let sim = healed_with_a_travelling_case();
    let track = sim
        .cases
        .iter()
        .find(|t| t.route.acceptance() != t.route.domicile())
        .unwrap()
        .clone();
    let national = sim.world.at(&Place::Supervisor(None)).unwrap();
    let province = sim
        .world
        .at(&Place::Supervisor(Some(track.route.domicile().province())))
        .unwrap();
    for idx in [national, province] {
        assert!(attestation_on_route(&sim.office(idx).place, &track.route));
        assert!(
            !sim.store(idx)
                .unwrap()
                .inner()
                .attestations_of(&track.id)
                .unwrap()
                .is_empty(),
            "{} holds no attestation of {}",
            sim.office(idx).id,
            track.id
        );
    }

    // A case document planted at the national supervisor.
    let mut planted = healed_with_a_travelling_case();
    let holder = planted
        .world
        .at(&Place::Township(track.route.acceptance()))
        .unwrap();
    let doc = planted
        .store(holder)
        .unwrap()
        .load(&track.id)
        .unwrap()
        .unwrap();
    planted
        .store_mut(national)
        .unwrap()
        .commit(vec![StoreWrite::case(
            track.id.clone(),
            track.route,
            doc,
            None,
        )])
        .unwrap();
    let violations = check(&planted);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("supervisor-cn") && v.contains("case document")),
        "{violations:?}"
    );

    // The applicant's ID number planted in the province supervisor's reading.
    let leaked = healed_with_a_travelling_case();
    let id_number = track.personal[1].clone();
    let row = leaked
        .store(province)
        .unwrap()
        .inner()
        .supervised(&track.id)
        .unwrap()
        .unwrap();
    let mut row = tongban_domain::supervision::SupervisedCase::from_row(&row).unwrap();
    row.problems = vec![format!("note {id_number}")];
    leaked
        .store(province)
        .unwrap()
        .inner()
        .write(|tx| tx.put_supervised(&track.id, &row.to_row()))
        .unwrap();
    let violations = check(&leaked);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("personal data") && v.contains(&track.id.to_string())),
        "{violations:?}"
    );
}
