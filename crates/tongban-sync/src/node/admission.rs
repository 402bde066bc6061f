//! Admission of documents that changed through a peer (`crate::admit` does the
//! checks of one document): whole documents of a `Docs` frame checked on all
//! cores, the frame's admission taken out of the node ([`DocsJob`], its parts and
//! their join) and handed back ([`CheckedDocs`]), and storing what passed, with
//! receipts, fork reports and the sessions waiting for it, in one transaction.

use std::sync::Arc;

use automerge::sync;
use automerge::{Automerge, ChangeHash, ReadDoc, SaveOptions};
use tongban_case::CaseSummary;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::Directory;
use tongban_ledger::verify::VerifiedSignatures;

use super::receipts::receipt_for;
use super::{Event, SessionId, SyncError, SyncNode, store_err};
use crate::admit::{self, Refusal};
use crate::material::MaterialRef;
use crate::route::{CaseRoute, Place, on_route};
use crate::store::{StoreWrite, SyncStore, heads_of};
use crate::wire::{Hash32, Message};

impl SyncNode {
    /// Whole documents from a peer. Those this node holds nothing of (the usual
    /// case: a first sync) are loaded and verified in parallel, off the protocol's
    /// own thread of control, and stored in one transaction; a document this node
    /// already holds is merged into its copy and admitted alone.
    pub(super) fn on_docs<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        docs: Vec<(CaseId, Vec<u8>)>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let mut fresh = Vec::with_capacity(docs.len());
        for (case, bytes) in docs {
            match store.load(&case).map_err(store_err)? {
                None => fresh.push((case, bytes)),
                Some(held) => self.on_doc_held(store, session, case, held, bytes, now)?,
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let checker = Checker {
            place: self.place,
            directory: self.directory.as_ref(),
            calendar: &self.calendar,
            now,
        };
        let checked = checker.check_all(fresh);
        self.store_checked(store, session, checked, now)
    }

    /// Takes the admission of a `Docs` frame out of the node, to run
    /// ([`DocsJob::split`], [`DocsPart::run`], [`DocsJoin::join`]) on other
    /// threads while the node handles further input;
    /// its outcome comes back through [`SyncNode::handle_checked`]. `None` when
    /// `frame` is not a well-formed `Docs` frame of an open session: give it to
    /// [`SyncNode::handle_message`] as usual.
    ///
    /// Documents are checked as if this node held none of them (the usual case:
    /// a first sync); [`SyncNode::handle_checked`] merges those it holds by then
    /// as `handle_message` would have, and checks everything again if the
    /// directory changed meanwhile. The protocol does not depend on the order
    /// in which frames are handled, so the outcome arriving after later frames
    /// changes nothing but timing.
    pub fn docs_job(&self, session: SessionId, frame: &[u8], now: Timestamp) -> Option<DocsJob> {
        let is_docs = matches!(
            crate::wire::FrameHeader::parse(frame),
            Ok(Some(header)) if header.kind == crate::wire::Kind::Docs
        );
        if !is_docs || !self.sessions.contains_key(&session) {
            return None;
        }
        let Ok(Message::Docs { docs }) = Message::decode(frame) else {
            return None;
        };
        Some(DocsJob {
            session,
            docs,
            place: self.place,
            directory: self.directory.clone(),
            calendar: self.calendar.clone(),
            now,
        })
    }

    /// The outcome of a [`DocsJob`]: stores what was admitted, as
    /// [`SyncNode::handle_message`] does for the frame.
    pub fn handle_checked<S: SyncStore>(
        &mut self,
        store: &mut S,
        checked: CheckedDocs,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let CheckedDocs {
            session,
            directory,
            checked,
        } = checked;
        if !self.sessions.contains_key(&session) {
            return Ok(());
        }
        if !Arc::ptr_eq(&directory, &self.directory) {
            // Checked under a directory since replaced: check again.
            let docs = checked
                .into_iter()
                .map(|(case, bytes, _)| (case, bytes))
                .collect();
            return self.on_docs(store, session, docs, now);
        }
        let mut fresh = Vec::with_capacity(checked.len());
        for (case, bytes, result) in checked {
            match store.load(&case).map_err(store_err)? {
                None => fresh.push((case, bytes, result)),
                Some(held) => self.on_doc_held(store, session, case, held, bytes, now)?,
            }
        }
        self.store_checked(store, session, fresh, now)
    }

    /// Stores the documents admission passed, of those it checked as fresh, and
    /// reports the refused.
    fn store_checked<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        checked: Vec<Checked>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(peer) = self.sessions.get(&session).map(|s| s.peer.clone()) else {
            return Ok(());
        };
        let mut ready = Vec::with_capacity(checked.len());
        for (case, bytes, result) in checked {
            match result {
                Ok(Some(admitted)) => {
                    // Both sides now share at least the sent document's heads:
                    // record that, so a later Automerge sync of this document
                    // starts from there.
                    let mut state = sync::State::new();
                    state.shared_heads = admitted.body.heads();
                    let extra = vec![StoreWrite::SyncState {
                        peer: peer.clone(),
                        case: case.clone(),
                        state: state.encode(),
                    }];
                    // The bytes stay the document's full save unless this node
                    // changes it (a receipt) or dropped orphans from it.
                    let saved = (!admitted.stripped).then_some(bytes);
                    ready.push(Ready {
                        case,
                        admitted,
                        saved,
                        extra,
                    });
                }
                Ok(None) => {}
                Err(refusal) => {
                    self.refused(session, Some(case.clone()), refusal.to_string());
                    self.give_up(store, session, &case, now)?;
                }
            }
        }
        self.store_admitted(store, session, ready, false, now)?;
        Ok(())
    }

    /// A whole document of a case this node already holds: merged into the held
    /// copy, then admitted alone.
    fn on_doc_held<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        case: CaseId,
        mut held: Automerge,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let old_heads = heads_of(&held);
        let shared = match Automerge::load(&bytes)
            .and_then(|mut sent| held.merge(&mut sent).map(|_| sent.get_heads()))
        {
            Ok(shared) => shared,
            Err(err) => {
                self.refused(
                    session,
                    Some(case),
                    format!("document does not load: {err}"),
                );
                return Ok(());
            }
        };
        let mut state = sync::State::new();
        state.shared_heads = shared;
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        let extra = vec![StoreWrite::SyncState {
            peer: s.peer.clone(),
            case: case.clone(),
            state: state.encode(),
        }];
        self.admit_and_store(store, session, &case, held, Some(old_heads), extra, now)?;
        Ok(())
    }

    /// Verifies a document that changed through a peer, signs a receipt if one is
    /// due, stores it (with `extra` writes, atomically) and updates every session
    /// waiting for it. Returns the stored document, or `None` when it was refused.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit_and_store<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        case: &CaseId,
        doc: Automerge,
        old_heads: Option<Vec<Hash32>>,
        extra: Vec<StoreWrite>,
        now: Timestamp,
    ) -> Result<Option<Automerge>, SyncError> {
        if !self.sessions.contains_key(&session) {
            return Ok(None);
        }
        let checker = Checker {
            place: self.place,
            directory: self.directory.as_ref(),
            calendar: &self.calendar,
            now,
        };
        let admitted = match checker.check_changed(case, doc, old_heads.as_deref()) {
            Ok(Changed::Admitted(admitted)) => *admitted,
            Ok(Changed::Unchanged(doc)) => {
                self.case_settled(store, case, &doc)?;
                return Ok(Some(*doc));
            }
            Ok(Changed::Empty) => return Ok(None),
            Err(refusal) => {
                self.refused(session, Some(case.clone()), refusal.to_string());
                self.give_up(store, session, case, now)?;
                return Ok(None);
            }
        };
        let ready = vec![Ready {
            case: case.clone(),
            admitted,
            saved: None,
            extra,
        }];
        Ok(self.store_admitted(store, session, ready, true, now)?.pop())
    }

    /// Stores admitted documents from `session` in one transaction: signs the
    /// receipts due, reports forks, then settles the sessions waiting for them.
    /// Returns the stored documents, in order, when `keep_docs` (else none: the
    /// documents move into the write uncopied).
    fn store_admitted<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        ready: Vec<Ready>,
        keep_docs: bool,
        now: Timestamp,
    ) -> Result<Vec<Automerge>, SyncError> {
        let Some(peer) = self.sessions.get(&session).map(|s| s.peer.clone()) else {
            return Ok(Vec::new());
        };
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let mut writes = Vec::with_capacity(ready.len() * 2);
        let mut stored = Vec::with_capacity(ready.len());
        let mut docs = Vec::new();
        for item in ready {
            let Ready {
                case,
                admitted,
                saved: sent,
                extra,
            } = item;
            let mut saved: Option<Vec<u8>>;
            let Admitted {
                body,
                route,
                findings,
                tips,
                materials,
                mut summary,
                ..
            } = admitted;
            if findings.forked {
                tracing::warn!(case = case.short(), "case carries a fork");
                self.events.push_back(Event::Forked { case: case.clone() });
            }
            let mut doc = match (body, sent) {
                (Body::Doc(doc), kept) => {
                    saved = kept;
                    *doc
                }
                // Admitted without its document (no receipt due): stored from
                // the bytes it came as.
                (
                    Body::Heads {
                        heads,
                        changes,
                        summary,
                    },
                    Some(bytes),
                ) => {
                    let held = self.pending_heads_in(&case, &|h| {
                        changes.binary_search_by(|c| c.0.cmp(h)).is_ok()
                    });
                    writes.push(StoreWrite::Received {
                        case: case.clone(),
                        route,
                        saved: bytes,
                        heads: heads.into_iter().map(|h| h.0).collect(),
                        materials: materials.clone(),
                        summary,
                    });
                    writes.extend(extra);
                    stored.push((case, route, materials, held));
                    continue;
                }
                (Body::Heads { .. }, None) => {
                    // Never made: admission keeps the document of one it
                    // stripped. Left unstored; the protocol asks again.
                    tracing::error!(case = case.short(), "admitted without its bytes");
                    continue;
                }
            };
            if let Some(stage) = receipt_for(&self.place, &route, &tips) {
                match self.sign_receipt(&doc, &case, stage, now) {
                    Ok(signed) => {
                        doc = signed;
                        saved = None;
                        // The receipt moved the stage: the store reads it anew.
                        summary = None;
                        self.stats.receipts += 1;
                        self.events.push_back(Event::ReceiptSigned {
                            case: case.clone(),
                            stage,
                        });
                    }
                    Err(err) => {
                        tracing::warn!(case = case.short(), %err, "automatic receipt not signed");
                    }
                }
            }
            // What the sessions and the material fetcher need of the document,
            // read before it moves into the write (no copy of it is kept).
            let held = self.pending_heads_in(&case, &|h| crate::store::has_change(&doc, h));
            if keep_docs {
                docs.push(doc.clone());
            }
            writes.push(StoreWrite::Case {
                case: case.clone(),
                route,
                doc: Box::new(doc),
                saved,
                materials: materials.clone(),
                summary: summary.map(Box::new),
            });
            writes.extend(extra);
            stored.push((case, route, materials, held));
        }
        store.commit(writes).map_err(store_err)?;
        for (case, route, refs, held) in stored {
            self.stats.cases_stored += 1;
            self.want_materials(store, session, &case, route, refs, now)?;
            tracing::debug!(case = case.short(), peer = %peer, "case stored");
            self.events.push_back(Event::CaseStored {
                case: case.clone(),
                peer: peer.clone(),
            });
            self.settle(store, &case, &|heads| held.contains(heads))?;
            if !keep_docs {
                self.sync_newer(store, &case)?;
            }
        }
        self.pump_all(store, now)?;
        Ok(docs)
    }
}

/// Most documents whose signatures admission checks as one batch. The key-grouped
/// batch gains little per signature beyond a few dozen signatures (measured with
/// `cargo bench -p tongban-ledger --bench batch`: 16.8 µs a signature in batches
/// of 48, 15.9 in 192, 13.8 in 384), and a failed batch is checked again document
/// by document.
const MAX_VERIFY_BATCH: usize = 128;

/// Fewest documents of a verification batch when a frame is split over the cores
/// (about 50 signatures).
const MIN_VERIFY_BATCH: usize = 16;

/// Chunks of a frame per core, for load balance.
const CHUNKS_PER_CORE: usize = 4;

/// Documents a chunk of `n` checks: several chunks a core, each one signature
/// batch of a useful size.
fn chunk_len(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1) * CHUNKS_PER_CORE)
        .clamp(MIN_VERIFY_BATCH, MAX_VERIFY_BATCH)
}

/// What admission keeps of a document it passed.
enum Body {
    /// The document itself (a receipt may be due, or it was merged or
    /// stripped, or does not read as a case core).
    Doc(Box<Automerge>),
    /// Only what storing it needs beside the bytes it came as: its heads and
    /// the hashes of its changes (for sessions waiting for some), sorted. The
    /// document is dropped on the thread that loaded it.
    Heads {
        heads: Vec<ChangeHash>,
        changes: Vec<ChangeHash>,
        /// What the store's indexes need of it.
        summary: Box<CaseSummary>,
    },
}

impl Body {
    fn heads(&self) -> Vec<ChangeHash> {
        match self {
            Body::Doc(doc) => doc.get_heads(),
            Body::Heads { heads, .. } => heads.clone(),
        }
    }
}

/// A document that passed admission.
struct Admitted {
    body: Body,
    route: CaseRoute,
    findings: admit::Findings,
    tips: Vec<Stage>,
    /// Changes whose dependencies had not arrived were dropped from it.
    stripped: bool,
    /// The materials it lists.
    materials: Vec<MaterialRef>,
    /// What the store's indexes need of it, read with its transitions (in
    /// the body when that is [`Body::Heads`]).
    summary: Option<CaseSummary>,
}

/// A document past the checks that need no signature, its transitions read.
struct ReadyToVerify {
    doc: Automerge,
    route: CaseRoute,
    transitions: Vec<Vec<u8>>,
    summary: Option<CaseSummary>,
    /// What the write-rights table needs of the case (boxed with the scan: the
    /// enum holding this is moved between threads by value).
    facts: Box<Option<tongban_domain::stage::CaseFacts>>,
    /// Its change graph, for signed authorship.
    scan: Box<tongban_case::authorship::Scan>,
    stripped: bool,
}

/// What [`Checker::prepare`] found.
enum Prepared {
    Ready(ReadyToVerify),
    /// The document holds nothing the store lacked.
    Unchanged(Automerge),
    /// Nothing complete is left of it.
    Empty,
}

/// A received document and what admission made of it.
type Checked = (CaseId, Vec<u8>, Result<Option<Admitted>, Refusal>);

/// An admitted document on its way into the store.
struct Ready {
    case: CaseId,
    admitted: Admitted,
    /// The document's full save, when the bytes received are exactly that.
    saved: Option<Vec<u8>>,
    extra: Vec<StoreWrite>,
}

/// What admission of a changed document found.
enum Changed {
    Admitted(Box<Admitted>),
    /// The document holds nothing the store lacked.
    Unchanged(Box<Automerge>),
    /// Nothing complete is left of it.
    Empty,
}

/// The admission of one `Docs` frame, taken out of its node by
/// [`SyncNode::docs_job`]: what it needs of the node travels with it (the
/// directory and calendar shared, not copied), so it runs on any thread.
pub struct DocsJob {
    session: SessionId,
    docs: Vec<(CaseId, Vec<u8>)>,
    place: Place,
    directory: Arc<Directory>,
    calendar: Arc<Calendar>,
    now: Timestamp,
}

impl std::fmt::Debug for DocsJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocsJob")
            .field("session", &self.session)
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl DocsJob {
    /// The session the frame came on.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The job as parts that can be checked on any threads, in any order: the
    /// frame's documents in the chunks [`SyncNode::handle_message`] checks them
    /// in (16–128 documents, each chunk's signatures one batch). [`DocsJoin::join`] puts
    /// the outcomes back together. A driver that starts each frame's parts
    /// before the next frame's keeps the cores busy between frames without
    /// delaying the earlier frame.
    pub fn split(self) -> (DocsJoin, Vec<DocsPart>) {
        let context = Arc::new(PartContext {
            place: self.place,
            directory: self.directory.clone(),
            calendar: self.calendar,
            now: self.now,
        });
        let len = chunk_len(self.docs.len());
        let mut docs = self.docs.into_iter();
        let parts: Vec<DocsPart> = std::iter::from_fn(|| {
            let part: Vec<_> = docs.by_ref().take(len).collect();
            (!part.is_empty()).then_some(part)
        })
        .enumerate()
        .map(|(index, docs)| DocsPart {
            index,
            docs,
            context: context.clone(),
        })
        .collect();
        let join = DocsJoin {
            session: self.session,
            directory: self.directory,
            parts: parts.len(),
        };
        (join, parts)
    }
}

/// What the parts of a [`DocsJob`] share.
struct PartContext {
    place: Place,
    directory: Arc<Directory>,
    calendar: Arc<Calendar>,
    now: Timestamp,
}

/// A chunk of a [`DocsJob`]'s documents ([`DocsJob::split`]).
pub struct DocsPart {
    index: usize,
    docs: Vec<(CaseId, Vec<u8>)>,
    context: Arc<PartContext>,
}

impl std::fmt::Debug for DocsPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocsPart")
            .field("index", &self.index)
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl DocsPart {
    /// Loads and verifies the chunk's documents on this thread, their
    /// signatures as one batch. Touches no node and no store.
    pub fn run(self) -> CheckedPart {
        let checker = Checker {
            place: self.context.place,
            directory: &self.context.directory,
            calendar: &self.context.calendar,
            now: self.context.now,
        };
        CheckedPart {
            index: self.index,
            checked: checker.check_many(self.docs),
        }
    }
}

/// What a [`DocsPart`] found.
pub struct CheckedPart {
    index: usize,
    checked: Vec<Checked>,
}

impl std::fmt::Debug for CheckedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedPart")
            .field("index", &self.index)
            .field("docs", &self.checked.len())
            .finish_non_exhaustive()
    }
}

/// Puts the parts of a [`DocsJob`] back together ([`DocsJob::split`]).
#[derive(Debug)]
pub struct DocsJoin {
    session: SessionId,
    directory: Arc<Directory>,
    parts: usize,
}

impl DocsJoin {
    /// How many parts the job was split into.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The job's outcome from its parts' outcomes, in any order. A part that is
    /// missing (its thread failed) leaves its documents unstored: the protocol
    /// asks for them again.
    pub fn join(self, mut parts: Vec<CheckedPart>) -> CheckedDocs {
        parts.sort_by_key(|p| p.index);
        CheckedDocs {
            session: self.session,
            directory: self.directory,
            checked: parts.into_iter().flat_map(|p| p.checked).collect(),
        }
    }
}

/// What a [`DocsJob`] found, for [`SyncNode::handle_checked`].
pub struct CheckedDocs {
    session: SessionId,
    directory: Arc<Directory>,
    checked: Vec<Checked>,
}

impl std::fmt::Debug for CheckedDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedDocs")
            .field("session", &self.session)
            .field("docs", &self.checked.len())
            .finish_non_exhaustive()
    }
}

impl CheckedDocs {
    /// The session the frame came on.
    pub fn session(&self) -> SessionId {
        self.session
    }
}

/// Admission's inputs, shared read-only by the threads that check a batch.
#[derive(Clone, Copy)]
struct Checker<'a> {
    place: Place,
    directory: &'a Directory,
    calendar: &'a Calendar,
    now: Timestamp,
}

impl Checker<'_> {
    /// Admission (see the `admit` module): complete history only, the case on
    /// this node's route, every transition's authority verified.
    fn check_changed(
        &self,
        case: &CaseId,
        doc: Automerge,
        old_heads: Option<&[Hash32]>,
    ) -> Result<Changed, Refusal> {
        match self.prepare(case, doc, old_heads, None)? {
            Prepared::Ready(ready) => self
                .finish(case, ready, None, false)
                .map(|a| Changed::Admitted(Box::new(a))),
            Prepared::Unchanged(doc) => Ok(Changed::Unchanged(Box::new(doc))),
            Prepared::Empty => Ok(Changed::Empty),
        }
    }

    /// Admission of documents this node holds nothing of. Loading and verifying
    /// are most of a document's cost, and independent per document: spread them
    /// over the cores in chunks, each chunk's signatures checked as one batch
    /// (rayon keeps the order, so the outcome does not depend on scheduling).
    /// Several chunks a core, so that a core that finishes early takes another
    /// instead of waiting for the slowest.
    fn check_all(&self, fresh: Vec<(CaseId, Vec<u8>)>) -> Vec<Checked> {
        let chunk = chunk_len(fresh.len());
        if fresh.len() <= chunk {
            return self.check_many(fresh);
        }
        use rayon::prelude::*;
        let chunks: Vec<Vec<(CaseId, Vec<u8>)>> = {
            let mut fresh = fresh.into_iter();
            std::iter::from_fn(|| {
                let part: Vec<_> = fresh.by_ref().take(chunk).collect();
                (!part.is_empty()).then_some(part)
            })
            .collect()
        };
        chunks
            .into_par_iter()
            .map(|part| self.check_many(part))
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect()
    }

    /// Admission of documents this node held nothing of, all signatures checked
    /// in one batch (see [`VerifiedSignatures`]): a batch of a hundred costs about
    /// half as much per signature as one per case. When the batch fails, each
    /// document is verified alone, so only the one carrying the bad signature is
    /// refused, by name.
    fn check_many(&self, docs: Vec<(CaseId, Vec<u8>)>) -> Vec<Checked> {
        let prepared: Vec<(CaseId, Vec<u8>, Result<Prepared, Refusal>)> = docs
            .into_iter()
            .map(|(case, bytes)| {
                let prepared = Automerge::load(&bytes)
                    .map_err(|err| Refusal::Automerge(format!("document does not load: {err}")))
                    .and_then(|doc| self.prepare(&case, doc, None, Some(&bytes)));
                (case, bytes, prepared)
            })
            .collect();
        // Every signed record of the chunk — transitions and signed commits,
        // as the change graph holds them — in one batch.
        let verified = VerifiedSignatures::batch(prepared.iter().flat_map(|(_, _, p)| {
            let records: Box<dyn Iterator<Item = &[u8]>> = match p {
                Ok(Prepared::Ready(ready)) => Box::new(ready.scan.record_bytes()),
                _ => Box::new(std::iter::empty()),
            };
            records
        }));
        prepared
            .into_iter()
            .map(|(case, bytes, prepared)| {
                let checked = prepared.and_then(|p| match p {
                    Prepared::Ready(ready) => {
                        self.finish(&case, ready, verified.as_ref(), true).map(Some)
                    }
                    Prepared::Unchanged(_) | Prepared::Empty => Ok(None),
                });
                (case, bytes, checked)
            })
            .collect()
    }

    /// The checks before signatures: complete history, something new, the route
    /// from the document itself and this node on it. `saved` is the bytes `doc`
    /// was loaded from, when it was: the authorship scan then reads the changes'
    /// operations from them instead of having Automerge rebuild every change.
    fn prepare(
        &self,
        case: &CaseId,
        mut doc: Automerge,
        old_heads: Option<&[Hash32]>,
        mut saved: Option<&[u8]>,
    ) -> Result<Prepared, Refusal> {
        let mut stripped = false;
        if !doc.get_missing_deps(&[]).is_empty() {
            // A partly delivered sync queues changes whose dependencies have not
            // arrived; the store takes only complete history, and the sync fetches
            // the rest.
            let complete = doc.save_with_options(SaveOptions {
                deflate: true,
                retain_orphans: false,
            });
            doc = Automerge::load(&complete)
                .map_err(|err| Refusal::Automerge(format!("document does not reload: {err}")))?;
            stripped = true;
            saved = None;
            if doc.get_heads().is_empty() {
                return Ok(Prepared::Empty);
            }
        }
        if old_heads == Some(heads_of(&doc).as_slice()) {
            return Ok(Prepared::Unchanged(doc));
        }
        let admit::Reading {
            route,
            transitions,
            summary,
            facts,
        } = admit::read(&doc, case, self.calendar)?;
        if !on_route(&self.place, &route) {
            return Err(Refusal::OffRoute);
        }
        let scan = Box::new(match saved {
            Some(saved) => tongban_case::authorship::scan_saved(&doc, saved),
            None => tongban_case::authorship::scan(&doc),
        });
        let facts = Box::new(facts);
        Ok(Prepared::Ready(ReadyToVerify {
            doc,
            route,
            transitions,
            summary,
            facts,
            scan,
            stripped,
        }))
    }

    /// Every transition's authority verified (signatures in `verified` are not
    /// checked again), and what the store and the material fetcher need read.
    /// With `received_whole` (the document was loaded from the bytes that are
    /// to be stored), a document that needs nothing more of itself — no receipt
    /// due, not stripped, read as a case core — is dropped here and admitted as
    /// its heads ([`Body::Heads`]).
    fn finish(
        &self,
        case: &CaseId,
        ready: ReadyToVerify,
        verified: Option<&VerifiedSignatures>,
        received_whole: bool,
    ) -> Result<Admitted, Refusal> {
        let ReadyToVerify {
            doc,
            route,
            transitions,
            summary,
            facts,
            scan,
            stripped,
        } = ready;
        admit::check_authorship(
            &scan,
            case,
            facts.as_ref().as_ref(),
            self.directory,
            verified,
        )?;
        admit::check_materials(&doc)?;
        let tips = admit::tips_of(&transitions);
        let findings = admit::verify_transitions(
            &doc,
            transitions,
            case,
            &route,
            self.directory,
            self.calendar,
            self.now,
            verified,
        )?;
        let materials = crate::material::referenced(&doc);
        let (body, summary) = match summary {
            Some(summary)
                if received_whole
                    && !stripped
                    && receipt_for(&self.place, &route, &tips).is_none() =>
            {
                let mut changes: Vec<ChangeHash> = scan.change_hashes().collect();
                changes.sort_unstable();
                let heads = doc.get_heads();
                drop(doc);
                let body = Body::Heads {
                    heads,
                    changes,
                    summary: Box::new(summary),
                };
                (body, None)
            }
            summary => (Body::Doc(Box::new(doc)), summary),
        };
        Ok(Admitted {
            body,
            route,
            findings,
            tips,
            stripped,
            materials,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_signature_batches_of_a_useful_size() {
        for n in [0, 1, 15, 16, 100, 1_000, 4_096, 100_000] {
            let len = chunk_len(n);
            assert!(
                (MIN_VERIFY_BATCH..=MAX_VERIFY_BATCH).contains(&len),
                "{n}: {len}"
            );
        }
        assert_eq!(chunk_len(100_000), MAX_VERIFY_BATCH);
    }
}
