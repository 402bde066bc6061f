//! The ledger's integration tests, as one test binary (one link, one run).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod dataset;
mod decode;
mod directory;
mod fixture;
mod mutation;
mod roundtrip;
mod strict;
mod supervision;
mod verify;
