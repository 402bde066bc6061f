//! The office console (办理控制台): the window clerk's and the reviewer's day in
//! the browser, served by the office's own machine, so it works with the link
//! to the hub down.
//!
//! # What it owns
//!
//! The web pages and their sessions: sign-in with local accounts
//! ([`accounts`], argon2id PHC strings in `DATA_DIR/console-users.json`, mode
//! 0600), the address it listens on ([`listen`]: loopback unless the node's
//! `tongban.toml` opens it to the office LAN), and the pages ([`web`]): the
//! queue, intake with uploads and the push, the case page with the actions
//! this office may take, the link panel and the supervision charts. Each form
//! carries a per-session CSRF token, checked with the request's `Origin` on
//! every POST; every action names the signed-in operator.
//!
//! # What it must never do
//!
//! It is a second client of the node's documented control API beside the
//! command line, and nothing more: it never opens the store, never signs,
//! never holds the office key and never reads anything outside its node's
//! data directory. Every read and write goes through
//! [`tongban_node::office::Office`] as implemented by the control API's
//! [`tongban_node::client::Client`], over the Unix socket with the token, as
//! the command line does. It re-implements no rule: which transitions the
//! office may sign, and whether it may attach or record an evaluation, come
//! from the node (`GET /v1/cases/{id}/actions`, asking the stage table and the
//! write-rights table); the intake form is checked by
//! [`tongban_case::IntakeForm::validate`] and again by the node. It never
//! writes a name or an ID number to its log in clear.

pub mod accounts;
pub mod listen;
pub mod web;

pub use listen::{ListenError, resolve_listen};
pub use web::{Console, serve};
