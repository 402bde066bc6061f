//! [`SyncNode`]: the protocol state of one node and its sessions with peers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ReadDoc, SaveOptions};
use tongban_case::{CaseDocument, CaseSummary, Payload, SigningOffice};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId, Operator, Timestamp};
use tongban_domain::stage::{OfficeFacts, Stage};
use tongban_ledger::directory::{Directory, DirectoryError};
use tongban_ledger::keys::{OfficeKey, PublicKey};
use tongban_ledger::verify::VerifiedSignatures;

use crate::admit::{self, Refusal};
use crate::material::{MaterialRef, Materials};
use crate::route::{CaseRoute, Place, RouteError, on_route};
use crate::store::{StoreWrite, SyncStore, has_change, heads_of};
use crate::wire::{
    Cursor, GoodbyeReason, Hash32, Hello, Incarnation, Inventory, InventoryEntry, MAX_DOCS,
    MAX_HEADS, MAX_PAYLOAD, MAX_WANTS, Message, PROTOCOL_VERSION, WireError,
};

/// The operator named in receipts the node signs by itself.
pub const RECEIPT_OPERATOR: &str = "auto-receipt";

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
    // Inbound: the peer's log towards this node.
    stored_cursor: Option<Cursor>,
    in_seq: u64,
    batches: BTreeMap<u64, InBatch>,
    work: BTreeMap<CaseId, Work>,
    sync_states: BTreeMap<CaseId, sync::State>,
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

/// The receipt this node signs automatically when a case with these chain tips
/// reaches it, if any: the domicile township signs `received` for a pushed case,
/// the acceptance office `result_received` for a decision. A forked chain gets no
/// automatic receipt: the fork must be resolved first.
pub fn receipt_for(place: &Place, route: &CaseRoute, tips: &[Stage]) -> Option<Stage> {
    let [tip] = tips else { return None };
    match (place, tip) {
        (Place::Township(t), Stage::Pushed) if *t == route.domicile() => Some(Stage::Received),
        (Place::Township(t), Stage::Decided | Stage::Rejected) if *t == route.acceptance() => {
            Some(Stage::ResultReceived)
        }
        _ => None,
    }
}

/// The route a case id and a domicile give.
fn route_from(case: &CaseId, domicile: DivisionCode) -> Option<CaseRoute> {
    let acceptance = DivisionCode::parse(case.acceptance_township()).ok()?;
    CaseRoute::new(acceptance, domicile).ok()
}

impl SyncNode {
    /// A node with the directory held by `store` (which must certify
    /// `config.office`). Reads the store; writes nothing.
    pub fn new<S: SyncStore>(config: Config, store: &S) -> Result<SyncNode, SyncError> {
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
        Ok(SyncNode {
            office: config.office,
            key: config.key,
            facts,
            place,
            authority: config.authority,
            calendar: config.calendar,
            limits: config.limits,
            directory: Arc::new(directory),
            directory_bytes,
            incarnation: store.incarnation(),
            sessions: BTreeMap::new(),
            next_session: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            receipt_operator,
            stats: Stats::default(),
            materials: Materials::recover(store, config.limits)?,
        })
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
                stored_cursor,
                in_seq: 0,
                batches: BTreeMap::new(),
                work: BTreeMap::new(),
                sync_states: BTreeMap::new(),
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
                if let Some(oldest) = s.work.values().map(|w| w.asked_at.0).min() {
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
            let stale: Vec<CaseId> = s
                .work
                .iter()
                .filter(|(_, w)| now.0 - w.asked_at.0 >= stall)
                .map(|(case, _)| case.clone())
                .collect();
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
            Message::Doc { case, bytes } => self.on_docs(store, session, vec![(case, bytes)], now),
            Message::Docs { docs } => self.on_docs(store, session, docs, now),
            Message::DocSync { case, message } => {
                self.on_doc_sync(store, session, case, message, now)
            }
            Message::Ack { incarnation, upto } => {
                self.on_ack(store, session, incarnation, upto, now)
            }
            Message::Directory { bytes } => self.on_directory(store, session, bytes, now),
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

    fn send_hello(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        let hello = Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            node: self.office.clone(),
            incarnation: self.incarnation,
            directory_version: self.directory.version,
            cursor: s.stored_cursor,
        });
        let _ = self.send(session, &hello);
    }

    fn on_hello<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        hello: Hello,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            let detail = format!(
                "protocol version {} is not this node's {PROTOCOL_VERSION}",
                hello.protocol_version
            );
            self.goodbye(session, GoodbyeReason::VersionMismatch, detail);
            return Ok(());
        }
        if hello.node != s.peer {
            let detail = format!(
                "hello names {}, the transport authenticated {}",
                hello.node, s.peer
            );
            self.goodbye(session, GoodbyeReason::UnknownPeer, detail);
            return Ok(());
        }
        let acked = hello
            .cursor
            .filter(|c| c.incarnation == self.incarnation)
            .map_or(0, |c| c.seq);
        if let Some(remote) = &mut s.remote {
            // A repeated hello (the peer did not see ours in time, or the network
            // duplicated it): it may only move things forward.
            remote.directory_version = remote.directory_version.max(hello.directory_version);
            if hello.incarnation == remote.incarnation && acked > s.out_acked {
                s.out_acked = acked;
                s.out_sent = s.out_sent.max(acked);
            }
            // A peer repeats its hello only while it has not seen this node's:
            // answer with ours, at most once per half stall period, so that two
            // established sides bounce a duplicated hello once, not forever.
            if now.0 - s.hello_at.0 >= self.limits.stall_ms / 2 {
                s.hello_at = now;
                self.send_hello(session);
            }
            return Ok(());
        }
        s.remote = Some(Remote {
            incarnation: hello.incarnation,
            directory_version: hello.directory_version,
        });
        s.in_seq = s
            .stored_cursor
            .filter(|c| c.incarnation == hello.incarnation)
            .map_or(0, |c| c.seq);
        s.out_acked = acked;
        s.out_sent = acked;
        s.out_progress_at = now;
        let peer = s.peer.clone();
        if hello.directory_version < self.directory.version {
            let bytes = self.directory_bytes.clone();
            let _ = self.send(session, &Message::Directory { bytes });
        }
        self.events.push_back(Event::Connected { session, peer });
        self.fill_outbound(store, session, now)
    }

    /// Sends inventories while the window allows and the log has more.
    fn fill_outbound<S: SyncStore>(
        &mut self,
        store: &S,
        session: SessionId,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let latest = store.latest_seq().map_err(store_err)?;
        loop {
            let Some(s) = self.sessions.get_mut(&session) else {
                return Ok(());
            };
            if s.remote.is_none() || s.inflight.len() >= self.limits.window || s.out_sent >= latest
            {
                return Ok(());
            }
            let log = store
                .changes_since(s.out_sent, self.limits.batch_entries)
                .map_err(store_err)?;
            let Some(upto) = log.last().map(|e| e.seq) else {
                return Ok(());
            };
            let mut entries = Vec::new();
            for entry in log {
                let Some(route) = entry.route else { continue };
                if !on_route(&s.peer_place, &route) || entry.heads.len() > MAX_HEADS {
                    continue;
                }
                if s.peer_has.get(&entry.case) == Some(&entry.heads) {
                    s.peer_has.remove(&entry.case);
                    continue;
                }
                entries.push(InventoryEntry {
                    case: entry.case,
                    domicile: route.domicile(),
                    heads: entry.heads,
                });
            }
            let inventory = Inventory {
                incarnation: self.incarnation,
                from: s.out_sent,
                upto,
                entries,
            };
            if s.inflight.is_empty() {
                s.out_progress_at = now;
            }
            s.inflight.push_back(upto);
            s.out_sent = upto;
            self.stats.inventories_sent += 1;
            self.stats.entries_sent += inventory.entries.len() as u64;
            let _ = self.send(session, &Message::Inventory(inventory));
        }
    }

    fn pump_all<S: SyncStore>(&mut self, store: &S, now: Timestamp) -> Result<(), SyncError> {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.fill_outbound(store, id, now)?;
        }
        Ok(())
    }

    fn on_ack<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        incarnation: Incarnation,
        upto: u64,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        if incarnation != self.incarnation || upto <= s.out_acked {
            return Ok(());
        }
        s.out_acked = upto;
        s.out_sent = s.out_sent.max(upto);
        s.inflight.retain(|end| *end > upto);
        s.out_progress_at = now;
        self.fill_outbound(store, session, now)
    }

    fn on_inventory<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        inventory: Inventory,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let Some(remote) = s.remote else {
            // The peer's hello was lost or overtaken: it will repeat the inventory.
            return Ok(());
        };
        if inventory.incarnation != remote.incarnation {
            return Ok(());
        }
        if inventory.upto <= s.in_seq {
            // Already consumed (a repeat after a lost acknowledgement): acknowledge
            // again.
            let ack = Message::Ack {
                incarnation: remote.incarnation,
                upto: s.in_seq,
            };
            let _ = self.send(session, &ack);
            return Ok(());
        }
        let mut pending = BTreeMap::new();
        let mut wants = Vec::new();
        let mut syncs = Vec::new();
        let mut off_route = Vec::new();
        for entry in inventory.entries {
            let Some(route) = route_from(&entry.case, entry.domicile) else {
                continue;
            };
            if !on_route(&self.place, &route) {
                off_route.push(entry.case);
                continue;
            }
            if store
                .contains(&entry.case, &entry.heads)
                .map_err(store_err)?
            {
                s.peer_has.insert(entry.case, entry.heads);
                continue;
            }
            if !s.work.contains_key(&entry.case) {
                if store.heads(&entry.case).map_err(store_err)?.is_none() {
                    wants.push(entry.case.clone());
                } else {
                    syncs.push(entry.case.clone());
                }
                s.work.insert(entry.case.clone(), Work { asked_at: now });
            }
            pending.insert(entry.case, entry.heads);
        }
        s.batches.insert(
            inventory.from,
            InBatch {
                upto: inventory.upto,
                pending,
            },
        );
        for case in off_route {
            self.refused(
                session,
                Some(case),
                "inventory offers a case off this node's route".into(),
            );
        }
        for chunk in wants.chunks(MAX_WANTS) {
            let _ = self.send(
                session,
                &Message::WantDocs {
                    cases: chunk.to_vec(),
                },
            );
        }
        for case in syncs {
            self.start_sync(store, session, &case)?;
        }
        self.advance_cursor(store, session)
    }

    /// Asks again for documents still missing: their saves when nothing is held
    /// here, a fresh Automerge sync otherwise.
    fn request<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        cases: Vec<CaseId>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let mut wants = Vec::new();
        for case in cases {
            let Some(s) = self.sessions.get_mut(&session) else {
                return Ok(());
            };
            s.work.insert(case.clone(), Work { asked_at: now });
            if store.heads(&case).map_err(store_err)?.is_none() {
                wants.push(case);
            } else {
                self.start_sync(store, session, &case)?;
            }
        }
        for chunk in wants.chunks(MAX_WANTS) {
            let _ = self.send(
                session,
                &Message::WantDocs {
                    cases: chunk.to_vec(),
                },
            );
        }
        Ok(())
    }

    /// The sync state of (peer, case) as persisted, or a new one.
    fn persisted_state<S: SyncStore>(
        &self,
        store: &S,
        peer: &OfficeId,
        case: &CaseId,
    ) -> Result<sync::State, SyncError> {
        Ok(store
            .sync_state(peer, case)
            .map_err(store_err)?
            .and_then(|bytes| sync::State::decode(&bytes).ok())
            .unwrap_or_default())
    }

    /// Opens (or reopens) the Automerge sync of one document with the peer, from
    /// the persisted state, so only changes since the last shared heads are
    /// summarised.
    fn start_sync<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        case: &CaseId,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        let mut state = self.persisted_state(store, &s.peer, case)?;
        // A fresh exchange, often a repeat after a stall: the peer may remember
        // having sent changes that never arrived here (a lost frame, a refused
        // document) and would never send them again. The reset flag makes it
        // forget what it sent. Every peer runs this protocol version, so it
        // understands the flag.
        state.their_capabilities = Some(vec![
            sync::Capability::MessageV2,
            sync::Capability::SyncReset,
        ]);
        state.needs_reset = true;
        let doc = store.load(case).map_err(store_err)?.unwrap_or_default();
        let message = doc.generate_sync_message(&mut state);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.sync_states.insert(case.clone(), state);
        }
        if let Some(message) = message {
            self.stats.doc_syncs_sent += 1;
            let _ = self.send(
                session,
                &Message::DocSync {
                    case: case.clone(),
                    message: message.encode(),
                },
            );
        }
        Ok(())
    }

    /// Moves the cursor into the peer's log over every inventory fully stored,
    /// persists it and acknowledges it.
    fn advance_cursor<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let Some(remote) = s.remote else {
            return Ok(());
        };
        let start = s.in_seq;
        loop {
            let in_seq = s.in_seq;
            s.batches.retain(|_, b| b.upto > in_seq);
            let next = s
                .batches
                .range(..=in_seq)
                .filter(|(_, b)| b.pending.is_empty())
                .map(|(_, b)| b.upto)
                .max();
            match next {
                Some(upto) => s.in_seq = upto,
                None => break,
            }
        }
        if s.in_seq == start {
            return Ok(());
        }
        // Fetches no inventory still needs are over. (Only batches the cursor
        // passed were dropped, so this runs once per batch, not once per case.)
        let needed: BTreeSet<&CaseId> = s.batches.values().flat_map(|b| b.pending.keys()).collect();
        s.work.retain(|case, _| needed.contains(case));
        let cursor = Cursor {
            incarnation: remote.incarnation,
            seq: s.in_seq,
        };
        s.stored_cursor = Some(cursor);
        let peer = s.peer.clone();
        store
            .commit(vec![StoreWrite::Cursor { peer, cursor }])
            .map_err(store_err)?;
        let _ = self.send(
            session,
            &Message::Ack {
                incarnation: cursor.incarnation,
                upto: cursor.seq,
            },
        );
        Ok(())
    }

    fn on_want_docs<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        cases: Vec<CaseId>,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get(&session) else {
            return Ok(());
        };
        let peer_place = s.peer_place;
        // Saved documents go out many to a frame (up to `docs_frame_bytes`), so the
        // receiver admits them as one batch.
        let mut batch: Vec<(CaseId, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0usize;
        for case in cases {
            let route = store.route(&case).map_err(store_err)?;
            if !route.is_some_and(|r| on_route(&peer_place, &r)) {
                // Never send a case off the peer's route, whatever it asks.
                continue;
            }
            let Some(bytes) = store.saved(&case).map_err(store_err)? else {
                continue;
            };
            if bytes.len() + DOC_ENTRY_OVERHEAD > MAX_PAYLOAD {
                self.refused(
                    session,
                    Some(case),
                    format!(
                        "document too large to send: {} bytes, the frame limit is {MAX_PAYLOAD}",
                        bytes.len()
                    ),
                );
                continue;
            }
            if !batch.is_empty()
                && (batch_bytes + bytes.len() + DOC_ENTRY_OVERHEAD > self.limits.docs_frame_bytes
                    || batch.len() >= MAX_DOCS)
            {
                self.send_docs(session, std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch_bytes += bytes.len() + DOC_ENTRY_OVERHEAD;
            batch.push((case, bytes));
        }
        if !batch.is_empty() {
            self.send_docs(session, batch);
        }
        Ok(())
    }

    fn send_docs(&mut self, session: SessionId, docs: Vec<(CaseId, Vec<u8>)>) {
        let n = docs.len() as u64;
        let cases: Vec<CaseId> = docs.iter().map(|(case, _)| case.clone()).collect();
        match self.send(session, &Message::Docs { docs }) {
            Ok(()) => self.stats.docs_sent += n,
            Err(err) => {
                for case in cases {
                    self.refused(
                        session,
                        Some(case),
                        format!("documents too large to send: {err}"),
                    );
                }
            }
        }
    }

    /// Whole documents from a peer. Those this node holds nothing of (the usual
    /// case: a first sync) are loaded and verified in parallel, off the protocol's
    /// own thread of control, and stored in one transaction; a document this node
    /// already holds is merged into its copy and admitted alone.
    fn on_docs<S: SyncStore>(
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
    /// ([`DocsJob::run`]) on other threads while the node handles further input;
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
                    state.shared_heads = admitted.doc.get_heads();
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
                Err(refusal) => self.refused(session, Some(case), refusal.to_string()),
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

    fn on_doc_sync<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        case: CaseId,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let peer = s.peer.clone();
        let peer_place = s.peer_place;
        let known_route = store.route(&case).map_err(store_err)?;
        if known_route.is_some_and(|r| !on_route(&peer_place, &r)) {
            self.refused(
                session,
                Some(case),
                "sync message about a case off the peer's route".into(),
            );
            return Ok(());
        }
        let message = match sync::Message::decode(&bytes) {
            Ok(message) => message,
            Err(err) => {
                self.refused(
                    session,
                    Some(case),
                    format!("sync message does not decode: {err}"),
                );
                return Ok(());
            }
        };
        let mut state = match s.sync_states.remove(&case) {
            Some(state) => state,
            None => self.persisted_state(store, &peer, &case)?,
        };
        // The peer asks explicitly for changes it lacks: whatever this node sent of
        // them was lost or refused, so they must not count as sent. (Automerge
        // assumes a reliable channel; without this a lost changes message leaves
        // both sides exchanging the same request and empty answer forever.)
        for hash in &message.need {
            state.sent_hashes.remove(hash);
        }
        let stored = store.load(&case).map_err(store_err)?;
        let old_heads = stored.as_ref().map(heads_of);
        let mut doc = stored.unwrap_or_default();
        if let Err(err) = doc.receive_sync_message(&mut state, message) {
            self.refused(
                session,
                Some(case),
                format!("sync message refused by automerge: {err}"),
            );
            return Ok(());
        }
        let new_heads = heads_of(&doc);
        let mut reply_doc = doc;
        if old_heads.as_ref() != Some(&new_heads) && !new_heads.is_empty() {
            let extra = vec![StoreWrite::SyncState {
                peer: peer.clone(),
                case: case.clone(),
                state: state.encode(),
            }];
            match self.admit_and_store(store, session, &case, reply_doc, old_heads, extra, now)? {
                Some(stored) => reply_doc = stored,
                None => {
                    // Refused: forget this exchange; a later one starts afresh.
                    return Ok(());
                }
            }
        }
        // Answer only about a case the peer may hold.
        let route = store.route(&case).map_err(store_err)?;
        if route.is_some_and(|r| !on_route(&peer_place, &r)) {
            return Ok(());
        }
        let reply = reply_doc.generate_sync_message(&mut state);
        let held = route.is_some();
        match reply {
            Some(reply) => {
                self.stats.doc_syncs_sent += 1;
                let _ = self.send(
                    session,
                    &Message::DocSync {
                        case: case.clone(),
                        message: reply.encode(),
                    },
                );
            }
            None if held => {
                // The exchange is at rest: keep its shared heads for next time.
                store
                    .commit(vec![StoreWrite::SyncState {
                        peer: peer.clone(),
                        case: case.clone(),
                        state: state.encode(),
                    }])
                    .map_err(store_err)?;
            }
            None => {}
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.sync_states.insert(case, state);
        }
        Ok(())
    }

    /// Verifies a document that changed through a peer, signs a receipt if one is
    /// due, stores it (with `extra` writes, atomically) and updates every session
    /// waiting for it. Returns the stored document, or `None` when it was refused.
    #[allow(clippy::too_many_arguments)]
    fn admit_and_store<S: SyncStore>(
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
            Ok(Changed::Admitted(admitted)) => admitted,
            Ok(Changed::Unchanged(doc)) => {
                self.case_settled(store, case, &doc)?;
                return Ok(Some(doc));
            }
            Ok(Changed::Empty) => return Ok(None),
            Err(refusal) => {
                self.refused(session, Some(case.clone()), refusal.to_string());
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
                mut saved,
                extra,
            } = item;
            let Admitted {
                mut doc,
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
            let held = self.pending_heads_in(&case, &doc);
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

    /// A whole document just stored (asked for with `WantDocs`) may be older
    /// than what a peer announced meanwhile — an inventory naming newer heads
    /// arrived while the document was on its way or being admitted, and the
    /// case was not asked for again because it was being fetched. Every session
    /// still waiting for other heads of the case, with no exchange of it under
    /// way, starts an Automerge sync of it now rather than after a stall.
    fn sync_newer<S: SyncStore>(&mut self, store: &mut S, case: &CaseId) -> Result<(), SyncError> {
        let behind: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.sync_states.contains_key(case)
                    && s.batches.values().any(|b| b.pending.contains_key(case))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in behind {
            self.start_sync(store, id, case)?;
        }
        Ok(())
    }

    /// The head sets sessions wait for on `case` that `doc` contains.
    fn pending_heads_in(&self, case: &CaseId, doc: &Automerge) -> Vec<Vec<Hash32>> {
        let mut held: Vec<Vec<Hash32>> = Vec::new();
        for s in self.sessions.values() {
            for batch in s.batches.values() {
                if let Some(heads) = batch.pending.get(case)
                    && !held.contains(heads)
                    && heads.iter().all(|h| has_change(doc, h))
                {
                    held.push(heads.clone());
                }
            }
        }
        held
    }

    /// Every session waiting for changes of `case` that `doc` now holds stops
    /// waiting; cursors move where they can.
    fn case_settled<S: SyncStore>(
        &mut self,
        store: &mut S,
        case: &CaseId,
        doc: &Automerge,
    ) -> Result<(), SyncError> {
        self.settle(store, case, &|heads| {
            heads.iter().all(|h| has_change(doc, h))
        })
    }

    /// Every session waiting for head sets of `case` that `has` says are stored
    /// stops waiting; cursors move where they can.
    fn settle<S: SyncStore>(
        &mut self,
        store: &mut S,
        case: &CaseId,
        has: &dyn Fn(&Vec<Hash32>) -> bool,
    ) -> Result<(), SyncError> {
        let mut touched = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            let mut hit = false;
            for batch in s.batches.values_mut() {
                if batch.pending.get(case).is_some_and(has) {
                    if let Some(heads) = batch.pending.remove(case) {
                        s.peer_has.insert(case.clone(), heads);
                    }
                    hit = true;
                }
            }
            if hit {
                if !s.batches.values().any(|b| b.pending.contains_key(case)) {
                    s.work.remove(case);
                }
                touched.push(*id);
            }
        }
        for id in touched {
            self.advance_cursor(store, id)?;
        }
        Ok(())
    }

    /// Signs `stage` into the case with this node's key, through the case
    /// document (which checks the stage machine), with an actor id fixed by this
    /// office and case, so the same inputs give the same document.
    fn sign_receipt(
        &self,
        doc: &Automerge,
        case: &CaseId,
        stage: Stage,
        now: Timestamp,
    ) -> Result<Automerge, String> {
        let mut document = CaseDocument::load(&doc.save()).map_err(|e| e.to_string())?;
        let actor = blake3_actor(&self.office, case);
        document.automerge_mut().set_actor(actor);
        let signing = SigningOffice {
            key: &self.key,
            facts: self.facts.clone(),
        };
        document
            .apply(
                stage,
                &signing,
                &self.receipt_operator,
                now,
                &Payload::default(),
            )
            .map_err(|e| e.to_string())?;
        Ok(document.automerge_mut().document().clone())
    }

    fn on_directory<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let directory = match Directory::verify(&bytes, &self.authority) {
            Ok(directory) => directory,
            Err(err) => {
                self.refused(session, None, format!("directory refused: {err}"));
                return Ok(());
            }
        };
        let version = directory.version;
        if let Some(remote) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.remote.as_mut())
        {
            remote.directory_version = remote.directory_version.max(version);
        }
        if version <= self.directory.version {
            return Ok(());
        }
        self.install_directory(store, directory, bytes, now)
    }

    /// Adopts a directory given locally (`tongban node directory-import` on a
    /// running node): verified against the authority this node trusts, stored,
    /// and passed on to every peer, as a directory received by sync is. Returns
    /// the new version, or `None` when this node holds that version or a newer one.
    pub fn adopt_directory<S: SyncStore>(
        &mut self,
        store: &mut S,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<Option<u64>, SyncError> {
        let directory = Directory::verify(&bytes, &self.authority)?;
        let version = directory.version;
        if version <= self.directory.version {
            return Ok(None);
        }
        self.install_directory(store, directory, bytes, now)?;
        Ok(Some(version))
    }

    /// Stores a verified, newer directory, takes it, tells the peers and retries
    /// what the older one refused.
    fn install_directory<S: SyncStore>(
        &mut self,
        store: &mut S,
        directory: Directory,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let version = directory.version;
        store
            .commit(vec![StoreWrite::Directory {
                bytes: bytes.clone(),
            }])
            .map_err(store_err)?;
        self.directory = Arc::new(directory);
        self.directory_bytes = bytes;
        self.events.push_back(Event::DirectoryUpdated { version });
        // Pass it on, and retry at once what an older directory refused.
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            if s.remote.is_some_and(|r| r.directory_version < version) {
                let bytes = self.directory_bytes.clone();
                let _ = self.send(id, &Message::Directory { bytes });
                if let Some(remote) = self.sessions.get_mut(&id).and_then(|s| s.remote.as_mut()) {
                    remote.directory_version = version;
                }
            }
            let waiting: Vec<CaseId> = self
                .sessions
                .get(&id)
                .map(|s| s.work.keys().cloned().collect())
                .unwrap_or_default();
            if !waiting.is_empty() {
                self.request(store, id, waiting, now)?;
            }
        }
        Ok(())
    }
}

/// Bytes a document adds to a `Docs` frame besides its save: the case id with its
/// length byte, and the blob length.
const DOC_ENTRY_OVERHEAD: usize = 1 + 64 + 4;

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

/// A document that passed admission.
struct Admitted {
    doc: Automerge,
    route: CaseRoute,
    findings: admit::Findings,
    tips: Vec<Stage>,
    /// Changes whose dependencies had not arrived were dropped from it.
    stripped: bool,
    /// The materials it lists.
    materials: Vec<MaterialRef>,
    /// What the store's indexes need of it, read with its transitions.
    summary: Option<CaseSummary>,
}

/// A document past the checks that need no signature, its transitions read.
struct ReadyToVerify {
    doc: Automerge,
    route: CaseRoute,
    transitions: Vec<Vec<u8>>,
    summary: Option<CaseSummary>,
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
    Admitted(Admitted),
    /// The document holds nothing the store lacked.
    Unchanged(Automerge),
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

    /// Loads and verifies the frame's documents, on rayon's threads as
    /// [`SyncNode::handle_message`] does. Touches no node and no store.
    pub fn run(self) -> CheckedDocs {
        use rayon::prelude::*;
        let (join, parts) = self.split();
        let checked = parts.into_par_iter().map(DocsPart::run).collect();
        join.join(checked)
    }

    /// The job as parts that can be checked on any threads, in any order: the
    /// frame's documents in the chunks [`DocsJob::run`] checks them in (16–128
    /// documents, each chunk's signatures one batch). [`DocsJoin::join`] puts
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
        match self.prepare(case, doc, old_heads)? {
            Prepared::Ready(ready) => self.finish(case, ready, None).map(Changed::Admitted),
            Prepared::Unchanged(doc) => Ok(Changed::Unchanged(doc)),
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
                    .and_then(|doc| self.prepare(&case, doc, None));
                (case, bytes, prepared)
            })
            .collect();
        let verified = VerifiedSignatures::batch(prepared.iter().flat_map(|(_, _, p)| {
            let transitions = match p {
                Ok(Prepared::Ready(ready)) => ready.transitions.as_slice(),
                _ => &[],
            };
            transitions.iter().map(Vec::as_slice)
        }));
        prepared
            .into_iter()
            .map(|(case, bytes, prepared)| {
                let checked = prepared.and_then(|p| match p {
                    Prepared::Ready(ready) => {
                        self.finish(&case, ready, verified.as_ref()).map(Some)
                    }
                    Prepared::Unchanged(_) | Prepared::Empty => Ok(None),
                });
                (case, bytes, checked)
            })
            .collect()
    }

    /// The checks before signatures: complete history, something new, the route
    /// from the document itself and this node on it.
    fn prepare(
        &self,
        case: &CaseId,
        mut doc: Automerge,
        old_heads: Option<&[Hash32]>,
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
        } = admit::read(&doc, case, self.calendar)?;
        if !on_route(&self.place, &route) {
            return Err(Refusal::OffRoute);
        }
        Ok(Prepared::Ready(ReadyToVerify {
            doc,
            route,
            transitions,
            summary,
            stripped,
        }))
    }

    /// Every transition's authority verified (signatures in `verified` are not
    /// checked again), and what the store and the material fetcher need read.
    fn finish(
        &self,
        case: &CaseId,
        ready: ReadyToVerify,
        verified: Option<&VerifiedSignatures>,
    ) -> Result<Admitted, Refusal> {
        let ReadyToVerify {
            doc,
            route,
            transitions,
            summary,
            stripped,
        } = ready;
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
        Ok(Admitted {
            doc,
            route,
            findings,
            tips,
            stripped,
            materials,
            summary,
        })
    }
}

fn blake3_actor(office: &OfficeId, case: &CaseId) -> ActorId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tongban-sync receipt actor\0");
    hasher.update(office.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(case.as_str().as_bytes());
    ActorId::from(&hasher.finalize().as_bytes()[..16])
}
