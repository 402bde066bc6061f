//! Tongban's integration tests: the real `tongban` binary, run as an office clerk or
//! an administrator would run it, in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod archive;
mod authorship;
mod backup;
mod bench;
mod calendar;
mod cli_behaviour;
mod cli_surface;
mod console;
mod daemon;
mod datasets;
mod demo;
mod disk;
mod duplicates;
mod examples;
mod hardening;
mod id;
mod js_interop;
mod links;
mod materials;
mod office;
mod package;
mod paths;
mod payroll;
mod supervision;
mod support;
