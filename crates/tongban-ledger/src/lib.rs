//! The ledger of Tongban (通办): who may sign what about a case, and the proof that
//! they did.
//!
//! The model, in four parts:
//!
//! - **Office keys** ([`keys`]): every office node holds one ed25519 key; so does the
//!   directory authority, offline.
//! - **The office directory** ([`directory`]): the authority certifies each office's
//!   key with its role (township window, county DPF, county civil affairs, hub,
//!   supervisor), its division code and a validity window, revokes keys, and
//!   publishes the set as one signed, versioned document every node carries.
//! - **Signed stage transitions** ([`transition`]): each stage change of a case is
//!   a statement signed by the office the stage machine names. It chains to the
//!   previous transition by hash, names the clerk, and commits to the Automerge heads
//!   of the case document at the moment of signing: the signer vouches for all
//!   content up to those heads. Its byte encoding is hand-written and canonical
//!   ([`encoding`] explains why no serializer is used).
//! - **The verifier** ([`verify`]): checks one case's transitions against the
//!   directory, the stage machine, the working-day calendar and the document, and
//!   reports every violation with a precise reason, plus the timeline of the chain.
//!
//! Architecture invariant: this crate does no I/O and reads no clock. Callers pass
//! `now`, the directory, the calendar and the document's history in; key generation
//! takes its randomness from the operating system's random source only in
//! [`OfficeKey::generate`], and every other function is deterministic. Decoders are
//! total: no input bytes make them panic.

pub mod commit;
pub mod dataset;
pub mod directory;
pub mod encoding;
pub mod keys;
pub mod supervision;
pub mod transition;
pub mod verify;

pub use commit::{Commit, SignedCommit, SignedRecord};
pub use dataset::{Dataset, DatasetError, SignedDataset};
pub use directory::{
    Directory, DirectoryAuthority, DirectoryError, InvalidEntry, KeyStatus, OfficeCertificate,
    Revocation, SignedCertificate, SignedDirectory, SignedRevocation,
};
pub use encoding::DecodeError;
pub use keys::{KeyError, OfficeKey, PublicKey};
pub use transition::{SignError, SignedTransition, Transition};
pub use verify::{
    Branch, CaseHistory, DeadlineCheck, PendingDeadline, Report, Severity, SignatureStatus,
    TimelineEntry, VerifiedSignatures, VerifyContext, Violation, ViolationKind, key_authority,
    verify_case,
};

/// Lower-case hexadecimal of `bytes` (hashes, keys) for display.
pub fn hex(bytes: &[u8]) -> String {
    encoding::to_hex(bytes)
}
