//! The node library behind the `tongban` binary: a node's data directory, its office
//! identity and directory, and the case operations offices run.
//!
//! [`local::LocalNode`] owns one data directory: the store (`tongban.redb`), the
//! office key (`office.key`, mode 0600), the node file (`node.toml`) and imported
//! calendar years (`calendar/`). Every office command goes through its methods, so
//! that the daemon's control API ([`control`], reached through [`client::Target`])
//! and direct use share one code path. [`daemon`] runs a node: store, sync over QUIC
//! and the control API.
//! [`authority`] keeps the directory authority's files for the administrator's CLI.
//!
//! This crate must never log personal data in clear, and never write to the store
//! outside `LocalNode`'s methods, which keep each case's indexes in step with it.

pub mod archive;
pub mod authority;
pub mod client;
pub mod control;
pub mod daemon;
pub mod local;
pub mod provision;
