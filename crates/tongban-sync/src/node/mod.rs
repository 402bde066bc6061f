//! [`SyncNode`]: the protocol state of one node and its sessions with peers.
//!
//! This module holds the node, its configuration, events and sessions, and the
//! driving API (`connect`, `handle_*`, `poll_*`). The protocol's parts are
//! `impl SyncNode` blocks in submodules:
//!
//! - `handshake`: the hellos that open a session;
//! - `inventory`: inventories of the change log, the cursor into the peer's log
//!   and its acknowledgement, fetch requests and their answers;
//! - `docsync`: the Automerge sync of documents held in part;
//! - `admission`: checking and storing documents from a peer, and the `Docs`
//!   admission a driver runs off the node ([`DocsJob`], [`CheckedDocs`]);
//! - `receipts`: the receipts the node signs by itself ([`receipt_for`]);
//! - `directory`: adopting and passing on a newer office directory;
//! - `datasets`: the signed reference datasets (calendar, registry feeds).
//!
//! Material transfer is `crate::material`.

mod admission;
mod datasets;
mod directory;
mod docsync;
mod handshake;
mod inventory;
mod receipts;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use automerge::sync;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::{OfficeFacts, Stage};
use tongban_ledger::directory::{Directory, DirectoryError};
use tongban_ledger::keys::{OfficeKey, PublicKey};

use crate::material::Materials;
use crate::route::{Place, RouteError};
use crate::store::SyncStore;
use crate::wire::{Cursor, GoodbyeReason, Hash32, Incarnation, Message, WireError};

pub use admission::{CheckedDocs, CheckedPart, DocsJob, DocsJoin, DocsPart};
pub use datasets::{AdoptError, HeldDataset, check_dataset};
pub use receipts::{RECEIPT_OPERATOR, receipt_for};

/// Tunable limits of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most log entries one inventory covers.
    pub batch_entries: usize,
    /// Most inventories in flight (sent, not acknowledged) per session.
    pub window: usize,
    /// After this long without progress, a session repeats what it is waiting for
    /// (its hello, its unacknowledged inventories, its document requests).
    pub stall_ms: i64,
    /// Most bytes of saved documents one `Docs` frame carries (one document
    /// larger than this still goes, alone).
    pub docs_frame_bytes: usize,
    /// The largest material this node fetches, and the most bytes of partly
    /// received materials it keeps in memory at once (`crate::material`). A
    /// material whose document declares more is refused, never fetched.
    pub max_material_bytes: u64,
    /// Most material chunk requests in flight per session.
    pub material_window: usize,
    /// How long to wait before asking again for a material no connected peer
    /// serves yet; doubled after each fruitless round, up to `stall_ms`.
    pub material_retry_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_entries: 512,
            window: 8,
            stall_ms: 30_000,
            docs_frame_bytes: 1 << 20,
            max_material_bytes: 64 << 20,
            material_window: 4,
            material_retry_ms: 2_000,
        }
    }
}

/// What a node needs to run the protocol.
#[derive(Clone)]
pub struct Config {
    /// This node's office id.
    pub office: OfficeId,
    /// This node's office key: it signs the receipts (`received`,
    /// `result_received`) and nothing else.
    pub key: Arc<OfficeKey>,
    /// The directory authority every directory must be signed by.
    pub authority: PublicKey,
    /// The working-day calendar the verifier counts deadlines with.
    pub calendar: Arc<Calendar>,
    /// Protocol limits.
    pub limits: Limits,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("office", &self.office)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Identifies one session (one connection to one peer) within a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Bytes to send on a session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The session.
    pub session: SessionId,
    /// One encoded frame.
    pub bytes: Vec<u8>,
}

/// Something the application may want to know or show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Both hellos were exchanged.
    Connected {
        /// The session.
        session: SessionId,
        /// The peer.
        peer: OfficeId,
    },
    /// New changes of a case from a peer were verified and stored.
    CaseStored {
        /// The case.
        case: CaseId,
        /// The peer it came from.
        peer: OfficeId,
    },
    /// This node signed a receipt into a case.
    ReceiptSigned {
        /// The case.
        case: CaseId,
        /// `received` or `result_received`.
        stage: Stage,
    },
    /// A stored case carries a fork: two signed successors of one transition. It
    /// is kept and must be resolved by the offices concerned.
    Forked {
        /// The case.
        case: CaseId,
    },
    /// A message, document or case from a peer was refused.
    Refused {
        /// The peer.
        peer: OfficeId,
        /// The case concerned, if any.
        case: Option<CaseId>,
        /// Why.
        reason: String,
    },
    /// A newer directory was verified and adopted.
    DirectoryUpdated {
        /// Its version.
        version: u64,
    },
    /// A newer signed dataset was verified and adopted.
    DatasetUpdated {
        /// Its kind.
        kind: tongban_domain::dataset::DatasetKind,
        /// Its scope.
        scope: String,
        /// Its version.
        version: u64,
    },
    /// The session ended.
    Closed {
        /// The session.
        session: SessionId,
        /// The peer.
        peer: OfficeId,
        /// Why.
        reason: String,
    },
}

/// Counters, for tests, benchmarks and status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames queued for sending.
    pub frames_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Inventories sent.
    pub inventories_sent: u64,
    /// Inventory entries sent.
    pub entries_sent: u64,
    /// Whole documents sent.
    pub docs_sent: u64,
    /// Automerge sync messages sent.
    pub doc_syncs_sent: u64,
    /// Cases written to the store from peers.
    pub cases_stored: u64,
    /// Refusals.
    pub refusals: u64,
    /// Receipts signed.
    pub receipts: u64,
}

/// Why a node operation failed. Misbehaviour of a peer is never an error: it is
/// an [`Event::Refused`] and, when the session cannot go on, a goodbye.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store failed; the caller should stop the node and restart it from the
    /// store (nothing unacknowledged was lost: peers will resend).
    #[error("store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store holds no directory.
    #[error("the store holds no office directory")]
    NoDirectory,
    /// The stored directory does not verify.
    #[error("the stored directory is refused: {0}")]
    Directory(#[from] DirectoryError),
    /// The directory does not certify this node's office.
    #[error("the directory does not certify office {0}")]
    NotCertified(OfficeId),
    /// The peer is not in the directory, or has no place in the hub tree.
    #[error("peer {0} is not a node of the hub tree in the directory")]
    UnknownPeer(OfficeId),
    /// This node's certificate names no place in the hub tree.
    #[error(transparent)]
    NoPlace(#[from] RouteError),
}

fn store_err<E: std::error::Error + Send + Sync + 'static>(err: E) -> SyncError {
    SyncError::Store(Box::new(err))
}

/// What the peer told in its hello.
#[derive(Debug, Clone, Copy)]
struct Remote {
    incarnation: Incarnation,
    directory_version: u64,
}

/// Where one session stands, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// The peer.
    pub peer: OfficeId,
    /// Whether the peer's hello arrived.
    pub established: bool,
    /// How far the peer acknowledged this node's log.
    pub out_acked: u64,
    /// How far this node has offered its log to the peer.
    pub out_sent: u64,
    /// How far this node consumed the peer's log.
    pub in_seq: u64,
    /// Documents being fetched from the peer.
    pub fetching: usize,
}

/// An inventory being consumed: the cases of it still missing here.
#[derive(Debug, Clone)]
struct InBatch {
    upto: u64,
    pending: BTreeMap<CaseId, Vec<Hash32>>,
}

/// A document this node is fetching from the peer.
#[derive(Debug, Clone, Copy)]
struct Work {
    asked_at: Timestamp,
}

#[derive(Debug)]
struct Session {
    peer: OfficeId,
    peer_place: Place,
    hello_at: Timestamp,
    remote: Option<Remote>,
    // Outbound: this node's log towards the peer.
    out_acked: u64,
    out_sent: u64,
    inflight: VecDeque<u64>,
    out_progress_at: Timestamp,
    /// Heads the peer is known to hold, so its own changes are not echoed back.
    peer_has: BTreeMap<CaseId, Vec<Hash32>>,
    /// Attestations (by BLAKE3) this peer sent us: not sent back to it.
    peer_has_attestation: std::collections::HashSet<Hash32>,
    // Inbound: the peer's log towards this node.
    stored_cursor: Option<Cursor>,
    in_seq: u64,
    batches: BTreeMap<u64, InBatch>,
    work: BTreeMap<CaseId, Work>,
    /// Cases refused as this peer offered them, asked for again after the
    /// stall period; kept apart from `work`, which the cursor prunes, so that a
    /// refused document holds up nothing else of the peer's log.
    retry: BTreeMap<CaseId, Work>,
    sync_states: BTreeMap<CaseId, sync::State>,
    /// Cases whose Automerge exchange was refused: asked for whole next time.
    whole: std::collections::BTreeSet<CaseId>,
    /// The version of each dataset the peer holds or was sent.
    datasets_known: BTreeMap<(tongban_domain::dataset::DatasetKind, String), u64>,
    /// The peer's list of datasets as far as it arrived: a list longer than
    /// one frame holds comes in full frames and ends with a shorter one.
    datasets_incoming: Vec<crate::wire::DatasetVersion>,
}

/// The sync protocol of one node: its sessions with peers, routing, admission of
/// incoming documents, receipts. Sans-IO: it owns no socket, reads no clock and
/// opens no file; the store is passed to every call that needs it.
///
/// # Driving it
///
/// ```text
/// let mut node = SyncNode::new(config, &store)?;
/// // The transport authenticated a peer (directory key) and opened a stream:
/// let session = node.connect(&store, peer_office, now)?;
/// loop {
///     // Inputs, in any order, each with the caller's `now`:
///     node.handle_message(&mut store, session, &frame, now)?; // each frame received
///     node.handle_timeout(&mut store, now)?;      // when now >= poll_timeout()
///     node.handle_local_change(&mut store, now)?; // after the application wrote cases
///     node.disconnect(session);                   // the connection is gone
///     // Outputs, drained after every input:
///     while let Some(t) = node.poll_transmit() { /* send t.bytes on t.session, in order */ }
///     while let Some(e) = node.poll_event() { /* show or log */ }
///     let wake_at = node.poll_timeout();          // call handle_timeout then
/// }
/// ```
///
/// Frames of one session must be delivered to the peer in the order
/// [`SyncNode::poll_transmit`] gives them for the protocol to be efficient; it stays
/// correct when frames are lost, duplicated or reordered (every message is
/// idempotent, and a session that stops making progress repeats itself after
/// [`Limits::stall_ms`]).
///
/// # The protocol, per session
///
/// Both sides send a hello carrying their log's incarnation, their directory
/// version and their cursor into the other's log. Each side then pushes its own
/// change log to the other as inventories (case, domicile, heads) of the entries
/// on the peer's route since the peer's cursor. The receiver of an inventory asks
/// for the saves of cases it has nothing of, runs the Automerge sync protocol for
/// cases it has in part, verifies every incoming document before storing it, and
/// once every case of an inventory is stored, records the inventory's end as its
/// cursor into the sender's log and acknowledges it. A reconnect resumes from
/// that cursor, so it costs what changed since, not what either side holds.
pub struct SyncNode {
    office: OfficeId,
    key: Arc<OfficeKey>,
    facts: OfficeFacts,
    place: Place,
    authority: PublicKey,
    calendar: Arc<Calendar>,
    limits: Limits,
    directory: Arc<Directory>,
    directory_bytes: Vec<u8>,
    /// Signed datasets held, by kind and scope (`datasets`).
    datasets: BTreeMap<(tongban_domain::dataset::DatasetKind, String), HeldDataset>,
    incarnation: Incarnation,
    sessions: BTreeMap<SessionId, Session>,
    next_session: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    receipt_operator: Operator,
    stats: Stats,
    /// Material transfer (`crate::material`).
    pub(crate) materials: Materials,
}

impl std::fmt::Debug for SyncNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncNode")
            .field("office", &self.office)
            .field("place", &self.place)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl SyncNode {
    /// A node with the directory held by `store` (which must certify
    /// `config.office`). Reads the store; writes nothing.
    pub fn new<S: SyncStore>(config: Config, store: &S) -> Result<SyncNode, SyncError> {
        let mut node = SyncNode::new_deferring_materials(config, store)?;
        node.materials = Materials::recover(store, node.limits)?;
        Ok(node)
    }

    /// [`SyncNode::new`] without wanting the materials the store lacks yet:
    /// the caller lists them ([`SyncStore::missing_materials`]) off its
    /// thread and hands them to [`SyncNode::recover_materials`], so that a
    /// node holding a million cases starts at once.
    pub fn new_deferring_materials<S: SyncStore>(
        config: Config,
        store: &S,
    ) -> Result<SyncNode, SyncError> {
        let directory_bytes = store
            .directory()
            .map_err(store_err)?
            .ok_or(SyncError::NoDirectory)?;
        let directory = Directory::verify(&directory_bytes, &config.authority)?;
        let cert = directory
            .certificate_for_key(&config.office, &config.key.public())
            .ok_or_else(|| SyncError::NotCertified(config.office.clone()))?;
        let place = Place::from_certificate(cert.role, &cert.division)?;
        let facts = OfficeFacts {
            office: cert.office.to_string(),
            role: cert.role,
            division: cert.division.clone(),
        };
        let receipt_operator = Operator::parse(RECEIPT_OPERATOR)
            .map_err(|_| SyncError::NotCertified(config.office.clone()))?;
        let mut node = SyncNode {
            office: config.office,
            key: config.key,
            facts,
            place,
            authority: config.authority,
            calendar: config.calendar,
            limits: config.limits,
            directory: Arc::new(directory),
            directory_bytes,
            datasets: BTreeMap::new(),
            incarnation: store.incarnation(),
            sessions: BTreeMap::new(),
            next_session: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            receipt_operator,
            stats: Stats::default(),
            materials: Materials::empty(config.limits),
        };
        node.load_datasets(store)?;
        Ok(node)
    }

    /// This node's office.
    pub fn office(&self) -> &OfficeId {
        &self.office
    }

    /// This node's place in the hub tree.
    pub fn place(&self) -> Place {
        self.place
    }

    /// The directory in force.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Counters since the node was made.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The place of `office` according to the directory.
    pub fn place_of(&self, office: &OfficeId) -> Option<Place> {
        let cert = self.directory.certificates_of(office).pop()?;
        Place::from_certificate(cert.role, &cert.division).ok()
    }

    /// The open sessions and their peers.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, &OfficeId)> {
        self.sessions.iter().map(|(id, s)| (*id, &s.peer))
    }

    /// Where a session stands.
    pub fn session_status(&self, session: SessionId) -> Option<SessionStatus> {
        self.sessions.get(&session).map(|s| SessionStatus {
            peer: s.peer.clone(),
            established: s.remote.is_some(),
            out_acked: s.out_acked,
            out_sent: s.out_sent,
            in_seq: s.in_seq,
            fetching: s.work.len(),
        })
    }

    /// The peer's place and whether the hellos were exchanged, for an open
    /// session (for `crate::material`).
    pub(crate) fn session_peer(&self, session: SessionId) -> Option<(Place, bool)> {
        self.sessions
            .get(&session)
            .map(|s| (s.peer_place, s.remote.is_some()))
    }

    /// Whether every session is idle: hellos exchanged, nothing in flight, nothing
    /// being fetched, and everything this node's log holds offered to the peer.
    pub fn is_idle<S: SyncStore>(&self, store: &S) -> Result<bool, SyncError> {
        let latest = store.latest_seq().map_err(store_err)?;
        Ok(self.sessions.values().all(|s| {
            s.remote.is_some()
                && s.inflight.is_empty()
                && s.work.is_empty()
                && s.batches.is_empty()
                && s.out_sent >= latest
        }))
    }

    /// Opens a session with `peer`, whom the transport has authenticated with its
    /// directory key. Queues the hello.
    pub fn connect<S: SyncStore>(
        &mut self,
        store: &S,
        peer: OfficeId,
        now: Timestamp,
    ) -> Result<SessionId, SyncError> {
        let peer_place = self
            .place_of(&peer)
            .ok_or_else(|| SyncError::UnknownPeer(peer.clone()))?;
        let stored_cursor = store.cursor(&peer).map_err(store_err)?;
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                peer,
                peer_place,
                hello_at: now,
                remote: None,
                out_acked: 0,
                out_sent: 0,
                inflight: VecDeque::new(),
                out_progress_at: now,
                peer_has: BTreeMap::new(),
                peer_has_attestation: std::collections::HashSet::new(),
                stored_cursor,
                in_seq: 0,
                batches: BTreeMap::new(),
                work: BTreeMap::new(),
                retry: BTreeMap::new(),
                sync_states: BTreeMap::new(),
                datasets_known: BTreeMap::new(),
                datasets_incoming: Vec::new(),
                whole: std::collections::BTreeSet::new(),
            },
        );
        self.send_hello(id);
        Ok(id)
    }

    /// Forgets a session whose connection is gone. Everything acknowledged is in the
    /// store; everything else will be offered again on the next session.
    pub fn disconnect(&mut self, session: SessionId) {
        self.sessions.remove(&session);
        self.material_disconnect(session);
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`SyncNode::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let stall = self.limits.stall_ms;
        self.sessions
            .values()
            .filter_map(|s| {
                let mut at: Option<i64> = None;
                let mut consider = |t: i64| at = Some(at.map_or(t, |a| a.min(t)));
                if s.remote.is_none() {
                    consider(s.hello_at.0 + stall);
                }
                if !s.inflight.is_empty() {
                    consider(s.out_progress_at.0 + stall);
                }
                if let Some(oldest) = s
                    .work
                    .values()
                    .chain(s.retry.values())
                    .map(|w| w.asked_at.0)
                    .min()
                {
                    consider(oldest + stall);
                }
                at
            })
            .min()
            .map(Timestamp)
            .into_iter()
            .chain(self.material_timeout())
            .min()
    }

    /// The application wrote cases to the store: offer them to the peers.
    pub fn handle_local_change<S: SyncStore>(
        &mut self,
        store: &mut S,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        self.pump_all(store, now)
    }

    /// Repeats whatever a session has waited for longer than [`Limits::stall_ms`].
    pub fn handle_timeout<S: SyncStore>(
        &mut self,
        store: &mut S,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let stall = self.limits.stall_ms;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.remote.is_none() && now.0 - s.hello_at.0 >= stall {
                s.hello_at = now;
                self.send_hello(id);
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if !s.inflight.is_empty() && now.0 - s.out_progress_at.0 >= stall {
                // Inventories or their acknowledgements were lost: offer again from
                // what the peer acknowledged.
                s.inflight.clear();
                s.out_sent = s.out_acked;
                self.fill_outbound(store, id, now)?;
            }
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            let mut stale: Vec<CaseId> = s
                .work
                .iter()
                .filter(|(_, w)| now.0 - w.asked_at.0 >= stall)
                .map(|(case, _)| case.clone())
                .collect();
            let again: Vec<CaseId> = s
                .retry
                .iter()
                .filter(|(_, w)| now.0 - w.asked_at.0 >= stall)
                .map(|(case, _)| case.clone())
                .collect();
            for case in again {
                // Asked again now; a new refusal puts it back.
                s.retry.remove(&case);
                if !stale.contains(&case) {
                    stale.push(case);
                }
            }
            if !stale.is_empty() {
                self.request(store, id, stale, now)?;
            }
        }
        self.material_handle_timeout(now);
        Ok(())
    }

    /// One frame received on `session`.
    pub fn handle_message<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        frame: &[u8],
        now: Timestamp,
    ) -> Result<(), SyncError> {
        if !self.sessions.contains_key(&session) {
            return Ok(());
        }
        let message = match Message::decode(frame) {
            Ok(message) => message,
            Err(err) => {
                self.violation(session, None, format!("undecodable frame: {err}"));
                return Ok(());
            }
        };
        match message {
            Message::Hello(hello) => self.on_hello(store, session, hello, now),
            Message::Inventory(inventory) => self.on_inventory(store, session, inventory, now),
            Message::WantDocs { cases } => self.on_want_docs(store, session, cases),
            Message::Docs { docs } => self.on_docs(store, session, docs, now),
            Message::DocSync { case, message } => {
                self.on_doc_sync(store, session, case, message, now)
            }
            Message::Ack { incarnation, upto } => {
                self.on_ack(store, session, incarnation, upto, now)
            }
            Message::Directory { bytes } => self.on_directory(store, session, bytes, now),
            Message::Datasets { held } => {
                self.on_datasets(session, held);
                Ok(())
            }
            Message::Dataset { bytes } => self.on_dataset(store, session, bytes, now),
            Message::MaterialRequest {
                case,
                hash,
                offset,
                max_len,
            } => self.on_material_request(store, session, case, hash, offset, max_len),
            Message::MaterialChunk {
                hash,
                offset,
                total_len,
                data,
            } => self.on_material_chunk(store, session, hash, offset, total_len, data, now),
            Message::MaterialMissing { hash } => {
                self.on_material_missing(session, hash, now);
                Ok(())
            }
            Message::Goodbye { reason, detail } => {
                if let Some(s) = self.sessions.remove(&session) {
                    self.events.push_back(Event::Closed {
                        session,
                        peer: s.peer,
                        reason: format!("peer said goodbye ({reason:?}): {detail}"),
                    });
                }
                Ok(())
            }
        }
    }

    pub(crate) fn send(&mut self, session: SessionId, message: &Message) -> Result<(), WireError> {
        let bytes = message.encode()?;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.transmits.push_back(Transmit { session, bytes });
        Ok(())
    }

    pub(crate) fn refused(&mut self, session: SessionId, case: Option<CaseId>, reason: String) {
        self.stats.refusals += 1;
        if let Some(s) = self.sessions.get(&session) {
            tracing::warn!(peer = %s.peer, case = case.as_ref().map(CaseId::short), reason, "refused");
            self.events.push_back(Event::Refused {
                peer: s.peer.clone(),
                case,
                reason,
            });
        }
    }

    /// A violation that ends the session.
    fn violation(&mut self, session: SessionId, case: Option<CaseId>, reason: String) {
        self.refused(session, case, reason.clone());
        self.goodbye(session, GoodbyeReason::ProtocolViolation, reason);
    }

    fn goodbye(&mut self, session: SessionId, reason: GoodbyeReason, detail: String) {
        let mut detail = detail;
        detail.truncate(crate::wire::MAX_REASON);
        while !detail.is_char_boundary(detail.len()) {
            detail.pop();
        }
        let _ = self.send(
            session,
            &Message::Goodbye {
                reason,
                detail: detail.clone(),
            },
        );
        if let Some(s) = self.sessions.remove(&session) {
            self.events.push_back(Event::Closed {
                session,
                peer: s.peer,
                reason: detail,
            });
        }
    }
}
