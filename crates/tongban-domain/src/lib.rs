//! The pure domain rules of Tongban (通办): everything the notice 冀民〔2021〕36号
//! decides, expressed as data and plain functions.
//!
//! This crate owns the vocabulary every other layer speaks: identifiers and their
//! validation ([`ids`]), the division tree of GB/T 2260 down to townships
//! ([`division`]), the working-day calendar with adjusted weekends ([`calendar`]),
//! provincial policy (materials, eligibility, amounts: [`policy`]), what a
//! material's file name, media type and size may be ([`material`]), the stage
//! machine with its deadlines and signers ([`stage`]), what makes a case a
//! duplicate of another of the same person ([`duplicates`]), the registry feeds
//! and the dynamic check ([`registry`]) and the monthly payroll ([`payroll`]).
//!
//! It must never do I/O beyond reading its own embedded data files: no disk, no
//! network, no clock except the explicitly named `*_now`/`today` helpers that I/O
//! shells call. Every function is deterministic given its inputs, so the simulator
//! and every node compute the same deadlines.

pub mod calendar;
pub mod dataset;
pub mod division;
pub mod duplicates;
pub mod ids;
pub mod material;
pub mod payroll;
pub mod policy;
pub mod registry;
pub mod rights;
pub mod stage;
pub mod supervision;

/// Today's date in Beijing (UTC+8), from the system clock. Pure code takes dates as
/// arguments; only the binary's edges call this.
pub fn today_in_china() -> chrono::NaiveDate {
    ids::Timestamp::now().china_date()
}
