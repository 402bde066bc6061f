//! Integration tests of the store: one test binary with a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../kit/mod.rs"]
mod kit;

mod attestations;
mod backup;
mod basic;
mod crash;
mod errors;
mod flags;
mod materials;

use std::path::Path;

use tongban_store::{Store, StoreOptions};

/// Options that create the store.
pub fn create() -> StoreOptions {
    StoreOptions {
        create_if_missing: true,
        ..StoreOptions::default()
    }
}

/// A new store in a fresh temporary directory.
pub fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("data"), &create()).unwrap();
    (dir, store)
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, &StoreOptions::default()).unwrap()
}
