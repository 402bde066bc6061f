//! The Tongban office node as a library: one node's data directory, the
//! operations offices run on it, the daemon that runs it (sync over QUIC and the
//! control API) and the files administrators keep. The `tongban` binary is a
//! thin command line over it.
//!
//! # What it owns
//!
//! [`local::LocalNode`] owns one data directory: the store (`tongban.redb`), the
//! office key (`office.key`, mode 0600), the node file (`node.toml`) and imported
//! calendar years (`calendar/`). [`office::Office`] is every operation a command
//! runs, implemented by `LocalNode` on the store and by [`client::Client`] through
//! a running node's control API; [`client::open`] picks one. [`daemon::Daemon`]
//! runs a node: the [`engine`] (store, sync over QUIC) and the [`control`] API.
//! [`materials`] hands a case's scanned materials to its offices' reviewers,
//! [`archive`] writes and checks signed case archives, [`authority`] keeps the
//! directory authority's files, [`provision`] sets up several certified nodes at
//! once (the demo, benchmarks, multi-node tests).
//!
//! # Layers
//!
//! Each module uses only the ones listed before it; none reaches up:
//!
//! ```text
//! files      private files: atomic writes, directory sync
//! duplicates the domicile county's duplicate flags and award check (over the store)
//! local      LocalNode, NodeError, node.toml
//! materials  a case's materials for reviewers: who may be handed them
//! datasets   signed calendar and registry feeds held (over local)
//! payroll    a county's monthly payroll, signed as a dataset (over datasets)
//! supervision a supervisor's supervised cases (over local)
//! archive    signed case archives (over local)
//! authority  the directory authority's files (over files)
//! provision  certified nodes for tests and the demo (over local)
//! fixture    realistic finished cases for benchmarks (over provision)
//! verify     verify --all on the node's own store, on all cores (over local)
//! status     what `node status` shows (over local)
//! api        the control API's protocol: files, bodies, queries
//! office     the Office trait; LocalNode's implementation
//! engine     the running node's engine, its sessions, DaemonHandle
//! control    the control API's server, over a DaemonHandle
//! daemon     NodeConfig and Daemon: engine, QUIC and control API together
//! client     the control API's client, an Office; `open` picks the path
//! ```
//!
//! # What it must never do
//!
//! It never logs personal data in clear (the domain types display masked),
//! never writes to the store outside `LocalNode`'s methods, which keep each
//! case's indexes in step with it, never acknowledges a write before it is
//! durable, and never prints or parses a command line: that is the binary's.

pub mod duplicates;
pub mod files;

pub mod local;

pub mod materials;

pub mod datasets;
pub mod payroll;
pub mod supervision;

pub mod archive;
pub mod authority;
pub mod provision;

pub mod fixture;
pub mod status;
pub mod verify;

pub mod api;
pub mod office;

pub mod engine;

pub mod control;
pub mod daemon;

pub mod client;
