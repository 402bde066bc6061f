//! The case document: one application for the two disability subsidies as an
//! Automerge document, and the only code that signs a stage change into it.
//!
//! The document is plain Automerge (see [`schema`] and `docs/case-schema.md`): any
//! Automerge implementation can read it. Its stage is never stored; it is derived from
//! the chain of signed transitions the document carries, each of which commits to the
//! document's heads at the moment of signing, so an office vouches for exactly the
//! content it saw.
//!
//! This crate must never do I/O: it takes time, keys and policies as arguments. It
//! does not decide who may sign what — the stage machine in `tongban-domain` does —
//! and it does not judge a history — the verifier in `tongban-ledger` does.

pub mod authorship;
mod doc_ops;
pub mod document;
pub mod duplicates;
pub mod intake;
mod ops;
mod scanned;
pub mod schema;
pub mod supervision;

pub use document::{
    CaseDocument, CaseError, CaseSummary, Chain, Due, Outcome, Payload, SigningOffice, due_of,
    facts_of, read_case, read_core,
};
pub use intake::{FieldError, Intake, IntakeForm};
