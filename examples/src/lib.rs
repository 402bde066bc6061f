//! Tongban's runnable examples, one directory each under `examples/`
//! (`examples/README.md`):
//!
//! - `three-offices/` — three office nodes as separate `tongban node run`
//!   processes, their configuration files, and `run.sh`, which takes one case
//!   from the acceptance office to the domicile office with the documented
//!   commands (run by `tests/integration/examples.rs` against the built binary);
//! - `embed-sync/` — the sans-IO sync protocol (`tongban_sync::SyncNode`) driven
//!   by another Rust program over the in-memory store, carrying a signed case
//!   between two nodes (`cargo run -p tongban-examples --example embed_sync`);
//! - `verify-archive/` — a signed case archive verified from Rust with
//!   `tongban_node::archive::verify_archive`;
//! - `js-read-case/` — a case document read from JavaScript with the Automerge
//!   package.
//!
//! `tests/examples.rs` runs each of them. This package owns only examples: it
//! must never hold code that the product depends on, nor replace a real
//! component with a stand-in — every example runs the real crates, and every
//! example is run by a test so that it cannot rot. It is never published.
