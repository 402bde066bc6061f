//! The simulation tests: one binary, several modules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod campaign;
mod checker;
mod materials;
mod sessions;
