//! The sync protocol of Tongban (通办): how case documents travel between office
//! nodes that are offline most of the time.
//!
//! # Model
//!
//! Every node keeps its case documents (Automerge) in its store, with a local
//! change log: each write that changes a case gives it a new sequence number. Two
//! connected nodes each push their log to the other, filtered by routing
//! ([`route`]): a node only ever offers, sends or accepts a case on the receiving
//! node's route — the acceptance office, the domicile township, the domicile
//! county's DPF and civil affairs bureau, and the hubs between them in the
//! division tree. The receiver fetches what it lacks (a whole save when it holds
//! nothing of a document, an Automerge sync exchange when it holds part), verifies
//! every signed transition against its office directory before storing
//! ([`admit`]: authority comes from who signed, not who sent), signs the automatic
//! receipts (`received` at the domicile township, `result_received` at the
//! acceptance office), and records how far it has consumed the sender's log — its
//! cursor — in the same store, so a reconnect costs what changed since.
//! [`node::SyncNode`] is the whole state machine; [`wire`] is the framing
//! (`docs/sync-protocol.md`). The scanned materials a case references follow it
//! to the same nodes, fetched in checked chunks ([`material`]).
//!
//! # What this crate must never do
//!
//! It does no I/O: no sockets, no clock, no disk. The caller passes `now` into every
//! call, feeds received frames in and takes frames to send out, and hands in the
//! store as a [`store::SyncStore`]: the same code runs over QUIC in the node and
//! over a simulated network in `tongban-sim`. The one use of threads is pure CPU
//! work: the documents of one received batch are loaded and verified on rayon's
//! pool, with results in the batch's order, so outcomes never depend on
//! scheduling. It never sends a case to a node off
//! the case's route, never stores a document with a transition its directory does
//! not authorise, and never drops a fork: forked cases are stored, reported by the
//! verifier and surfaced as [`node::Event::Forked`].

pub mod admit;
pub mod material;
pub mod node;
pub mod route;
pub mod store;
pub mod wire;

pub use material::{MaterialRef, MaterialStats};
pub use node::{
    AdoptError, CheckedDocs, CheckedPart, Config, DocsJob, DocsJoin, DocsPart, Event, HeldDataset,
    Limits, SessionId, SessionStatus, Stats, SyncError, SyncNode, Transmit, check_dataset,
};
pub use route::{CaseRoute, CountyOffice, Place, next_hops, on_route};
pub use store::{LogEntry, MaterialPart, MemStore, StoreWrite, SyncStore};
pub use wire::{Message, WireError};
