//! Node-local case flags and the resident groups they are computed over.

use tongban_domain::stage::Stage;

use crate::kit::{self, Rng, case_id, meta};
use crate::{new_store, open};

#[test]
fn flags_are_set_listed_cleared_and_kept_across_reopening() {
    let (dir, store) = new_store();
    assert!(store.flagged_cases("duplicate").unwrap().is_empty());
    store
        .set_case_flag("duplicate", &case_id(3), Some(b"of 2"))
        .unwrap();
    store
        .write(|tx| {
            tx.set_case_flag("duplicate", &case_id(1), Some(b"of 0"))?;
            tx.set_case_flag("other", &case_id(1), Some(b"x"))
        })
        .unwrap();
    assert_eq!(
        store
            .case_flag("duplicate", &case_id(3))
            .unwrap()
            .as_deref(),
        Some(&b"of 2"[..])
    );
    assert_eq!(store.case_flag("duplicate", &case_id(2)).unwrap(), None);
    let mut want = vec![
        (case_id(1), b"of 0".to_vec()),
        (case_id(3), b"of 2".to_vec()),
    ];
    want.sort();
    assert_eq!(store.flagged_cases("duplicate").unwrap(), want);
    assert_eq!(store.flagged_cases("other").unwrap().len(), 1);
    store.set_case_flag("duplicate", &case_id(1), None).unwrap();
    // Clearing what is not set is no error.
    store.set_case_flag("duplicate", &case_id(9), None).unwrap();
    drop(store);
    let store = open(&dir.path().join("data"));
    assert_eq!(
        store.flagged_cases("duplicate").unwrap(),
        vec![(case_id(3), b"of 2".to_vec())]
    );
    assert!(store.set_case_flag("", &case_id(1), Some(b"x")).is_err());
    assert!(
        store
            .set_case_flag(&"f".repeat(65), &case_id(1), Some(b"x"))
            .is_err()
    );
}

#[test]
fn resident_groups_are_the_cases_sharing_a_resident() {
    let (_dir, store) = new_store();
    let mut rng = Rng::new(11);
    // meta(n) keys the resident by n / 2: cases 0-1, 2-3 and 4-5 share one,
    // and case 6 stands alone.
    for n in 0..7u64 {
        let case = case_id(n);
        store
            .put_changes(
                &case,
                &kit::case_doc(&mut rng, &case).save(),
                &meta(n, Stage::Received),
            )
            .unwrap();
    }
    let mut groups: Vec<Vec<_>> = store
        .resident_groups()
        .unwrap()
        .into_iter()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    let mut want: Vec<Vec<_>> = [(0, 1), (2, 3), (4, 5)]
        .into_iter()
        .map(|(a, b)| {
            let mut g = vec![case_id(a), case_id(b)];
            g.sort();
            g
        })
        .collect();
    want.sort();
    assert_eq!(groups, want);
    // A case that moves to another resident leaves its group.
    let mut moved = meta(5, Stage::Received);
    moved.resident_key = meta(6, Stage::Received).resident_key;
    store
        .put_changes(
            &case_id(5),
            &kit::case_doc(&mut rng, &case_id(5)).save(),
            &moved,
        )
        .unwrap();
    let groups = store.resident_groups().unwrap();
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g.len() == 2));
    assert!(
        groups
            .iter()
            .any(|g| g.contains(&case_id(5)) && g.contains(&case_id(6)))
    );
    assert!(!groups.iter().any(|g| g.contains(&case_id(4))));
}
