//! The engine of a running node: the one task that owns everything stateful —
//! the [`LocalNode`] (office commands), the [`Replica`] (the sync protocol's view
//! of the same store) and the sans-IO [`SyncNode`] — and the session, accept and
//! reconnect tasks that feed it messages. [`DaemonHandle`] runs work on it, for
//! the control API. [`crate::daemon`] starts and stops it.
//!
//! Store calls run in `block_in_place`, so a slow disk stalls the engine, not
//! the runtime.
//!
//! Whole-document batches are admitted off the engine: a `Docs` frame becomes a
//! job (`SyncNode::docs_job`: load and verify every document, pure CPU) split
//! into chunks that run on rayon's threads in arrival order, and their
//! outcomes come back to the engine as inputs; once a frame's are all back the
//! engine stores what passed (`SyncNode::handle_checked`). So the engine
//! commits one batch while the cores check the next; at most [`MAX_ADMITTING`]
//! frames are out at once, and the rest wait in QUIC's flow control.
//!
//! A session is one bidirectional QUIC stream per connection, carrying the sync
//! protocol's frames in order (the protocol is correct under loss and reordering,
//! and efficient when frames arrive in order). The side that connected opens the
//! stream; its first frame is its hello. Whole-document batches (`Docs` frames,
//! up to 1 MiB) each go on a stream of their own, at most [`BATCH_STREAMS`] in
//! flight, so a large batch never holds up acknowledgements and inventories, and
//! the peer's stream limit pushes back on the sender; every further stream a peer
//! opens is read into the same session.
//!
//! It never acknowledges a write before the store committed it (the sync layer
//! acknowledges only what `Replica::commit` made durable, and control-API writes
//! answer after their commit); it never logs personal data in clear; it never
//! talks to a peer whose key the directory does not certify now (the transport
//! refuses it in the handshake, and a directory update closes connections whose
//! key was revoked). It knows nothing of the control API's server or of how a
//! node is configured: those are the layers above it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_ledger::keys::PublicKey;
use tongban_replica::Replica;
use tongban_sync::route::on_route;
use tongban_sync::wire::Kind;
use tongban_sync::{
    CheckedPart, Config as SyncConfig, DocsJoin, Event, SessionId, SyncError, SyncNode, SyncStore,
};
use tongban_transport::{
    Backoff, BackoffConfig, ConnectError, Connection, Endpoint, FrameReceiver, FrameSender,
    PeerRejection, Refusal,
};

use tracing::Instrument;

use crate::local::{LocalNode, NodeError};
use crate::status::{
    MAX_REFUSALS, NodeStatus, PeerStatus, RefusalRecord, peer_status_key, status_from_store,
};

/// Where the daemon's clock comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock the caller sets (the demo's business clock): milliseconds since the
    /// Unix epoch.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// Now.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(ms) => Timestamp(ms.load(Ordering::SeqCst)),
        }
    }
}

/// Why the daemon could not start or a request to it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration file is unreadable or wrong.
    #[error("config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node's data directory refused.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node is not certified by its directory, so it may not start.
    #[error("this node may not start: {0}")]
    NotCertified(String),
    /// The sync protocol failed (a store error: restart from the store).
    #[error("sync: {0}")]
    Sync(#[from] tongban_sync::SyncError),
    /// The QUIC endpoint could not bind.
    #[error("QUIC endpoint: {0}")]
    Bind(String),
    /// The control API could not start.
    #[error("control API: {0}")]
    Control(String),
    /// The daemon has stopped.
    #[error("the node has stopped")]
    Stopped,
}

pub(crate) type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// What the engine is told: by sessions, the control API and the timer.
pub(crate) enum Input {
    Session {
        peer: OfficeId,
        address: SocketAddr,
        tx: mpsc::UnboundedSender<Vec<u8>>,
        reply: oneshot::Sender<Option<SessionId>>,
    },
    Frame {
        session: SessionId,
        bytes: Vec<u8>,
    },
    Closed {
        session: SessionId,
        /// Why it ended, when it ended by a failure.
        reason: Option<String>,
    },
    /// A connection attempt to a configured hub failed.
    LinkFailed {
        office: String,
        error: String,
        refusal: Option<String>,
    },
    Job(Job),
    /// A part of a `Docs` frame's admission finished (`None`: it panicked, and
    /// its documents are dropped; the protocol asks for them again).
    Checked {
        frame: u64,
        part: Option<CheckedPart>,
    },
    Tick,
}

/// Most `Docs` frames being admitted off the engine at once. Admission (loading
/// and verifying) runs on rayon's threads while the engine commits the frame
/// before, so both cores work; a few frames ahead is enough to keep them busy,
/// and the limit holds frames back in QUIC's flow control instead of in memory.
pub(crate) const MAX_ADMITTING: usize = 3;

/// What the engine keeps per open session.
struct Link {
    peer: OfficeId,
    address: SocketAddr,
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// The engine: the one owner of the node's state.
pub struct Engine {
    local: LocalNode,
    replica: Replica,
    sync: SyncNode,
    clock: Clock,
    links: BTreeMap<SessionId, Link>,
    peers: BTreeMap<String, PeerStatus>,
    endpoint: Arc<Endpoint>,
    dirty: bool,
    /// `Docs` frames being admitted, by arrival: how to put each together, its
    /// parts still out, and those back.
    admitting: BTreeMap<u64, (DocsJoin, usize, Vec<CheckedPart>)>,
    next_frame: u64,
    /// Where admission parts report.
    checked: mpsc::UnboundedSender<Input>,
    /// Recent refusals, for `node status`.
    refusals: std::collections::VecDeque<RefusalRecord>,
    /// How the sync node was made, to make it again after the store recovers.
    sync_config: SyncConfig,
    /// While the store cannot write: when to try reopening it next, and the
    /// backoff between tries.
    recovery: Option<(tokio::time::Instant, Backoff)>,
}

impl Engine {
    /// An engine over an opened node, its replica and sync node, reporting
    /// admission outcomes to `checked`.
    pub(crate) fn new(
        local: LocalNode,
        replica: Replica,
        sync: SyncNode,
        clock: Clock,
        endpoint: Arc<Endpoint>,
        checked: mpsc::UnboundedSender<Input>,
        sync_config: SyncConfig,
    ) -> Engine {
        Engine {
            local,
            replica,
            sync,
            clock,
            links: BTreeMap::new(),
            peers: BTreeMap::new(),
            endpoint,
            dirty: false,
            admitting: BTreeMap::new(),
            next_frame: 0,
            checked,
            refusals: std::collections::VecDeque::new(),
            sync_config,
            recovery: None,
        }
    }

    /// Wants the materials the store references and lacks, listed after the
    /// node started (`Daemon::start`).
    pub(crate) fn recover_materials(
        &mut self,
        missing: Vec<(tongban_domain::ids::CaseId, [u8; 32])>,
    ) {
        if let Err(err) = self.sync.recover_materials(&self.replica, missing) {
            tracing::warn!(error = %err, "missing materials not wanted again");
        }
    }

    /// Lists a configured hub in `node status`, with what earlier runs
    /// recorded of it, before it ever connects.
    pub(crate) fn configure_upstream(&mut self, office: &str, address: &str) {
        let remembered = self
            .local
            .store()
            .meta(&peer_status_key(office))
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<PeerStatus>(&bytes).ok());
        let mut peer = remembered.unwrap_or_default();
        peer.office = office.to_string();
        peer.upstream = Some(address.to_string());
        peer.connected = false;
        peer.address = None;
        self.peers.insert(office.to_string(), peer);
        self.dirty = true;
    }

    /// Runs the engine until `stop`: inputs from the sessions, the control API
    /// and the timer on `inputs`, finished admissions on `checked`.
    pub(crate) async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut checked: mpsc::UnboundedReceiver<Input>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        loop {
            // Stop on the shutdown signal even while handles to the engine
            // are still held elsewhere.
            // New input first while few frames are being admitted, so that
            // rayon's threads always have a frame to admit while the engine
            // commits the one before; then finished admissions. The rest
            // waits in the channel and in QUIC's flow control.
            let input = tokio::select! {
                biased;
                _ = wait_stop(stop.clone()) => None,
                input = inputs.recv(), if self.admitting.len() < MAX_ADMITTING => input,
                Some(done) = checked.recv() => Some(done),
            };
            let Some(input) = input else { break };
            let handled = self.handle(input).await;
            // A full disk or an I/O error does not stop the node: the store
            // refuses writes with the reason and reopens itself; reads and
            // status go on (`Engine::store_failed`).
            if self.local.store().failure().is_some() {
                if let Err(err) = &handled {
                    tracing::warn!(error = %err, "a store write failed");
                }
                self.store_failed();
                continue;
            }
            if let Err(err) = handled {
                tracing::error!(error = %err, "engine stopped");
                self.persist_peers();
                return Err(err);
            }
        }
        self.dirty = true;
        self.persist_peers();
        Ok(())
    }

    /// The office commands of this node.
    pub fn local(&mut self) -> &mut LocalNode {
        &mut self.local
    }

    /// The engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// After the store stopped writing (a full disk, an I/O error): every
    /// session ends, since what the sync node holds in memory may be ahead of
    /// what was committed, and a reopening is scheduled. Reads and status go on;
    /// writes are refused by the store with the reason.
    fn store_failed(&mut self) {
        if self.recovery.is_some() {
            return;
        }
        let reason = self.local.store().failure().unwrap_or_default();
        tracing::error!(error = %reason, "the store cannot write; sessions end, writes are refused, reopening on a timer");
        let sessions: Vec<SessionId> = self.links.keys().copied().collect();
        for session in sessions {
            self.close(
                session,
                Some("本节点存储暂停写入 this node's store cannot write".into()),
            );
        }
        self.admitting.clear();
        // A try is cheap (open the file, commit a few bytes), so the node
        // tries often: writes resume within seconds of space returning.
        let mut backoff = Backoff::with_random_seed(BackoffConfig::new(
            Duration::from_millis(500),
            Duration::from_secs(5),
        ));
        let at = tokio::time::Instant::now() + backoff.next_delay();
        self.recovery = Some((at, backoff));
    }

    /// While the store cannot write: when it is time, reopens it; once a write
    /// commits again, makes the sync node anew from the store and lets peers
    /// connect again.
    fn try_recover(&mut self) {
        let Some((at, backoff)) = &mut self.recovery else {
            return;
        };
        if tokio::time::Instant::now() < *at {
            return;
        }
        let store = self.local.store();
        match tokio::task::block_in_place(|| store.recover()) {
            Ok(()) => match SyncNode::new(self.sync_config.clone(), &self.replica) {
                Ok(sync) => {
                    self.sync = sync;
                    self.recovery = None;
                    self.dirty = true;
                    tracing::warn!("the store writes again; sync resumes");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the store reopened but sync cannot start yet");
                    *at = tokio::time::Instant::now() + backoff.next_delay();
                }
            },
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, ?delay, "the store still cannot write; trying again later");
                *at = tokio::time::Instant::now() + delay;
            }
        }
    }

    /// After the application wrote cases: offer them to peers.
    fn local_change(&mut self) -> Result<(), DaemonError> {
        let now = self.clock.now();
        tokio::task::block_in_place(|| self.sync.handle_local_change(&mut self.replica, now))?;
        Ok(())
    }

    fn status(&mut self) -> NodeStatus {
        self.refresh_peers(true);
        let mut status = status_from_store(&self.local).unwrap_or(NodeStatus {
            office: self.local.office().to_string(),
            public_key: Some(self.local.public_key().to_string()),
            running: true,
            listen: None,
            latest_seq: 0,
            cases: 0,
            directory_version: None,
            materials_missing: 0,
            duplicates: 0,
            peers: Vec::new(),
            store_error: None,
            refusals: Vec::new(),
        });
        status.store_error = self.local.store().failure();
        status.refusals = self.refusals.iter().cloned().collect();
        status.running = true;
        status.listen = Some(self.endpoint.local_addr().to_string());
        let mut merged: BTreeMap<String, PeerStatus> = status
            .peers
            .into_iter()
            .map(|p| (p.office.clone(), p))
            .collect();
        for (office, peer) in &self.peers {
            merged.insert(office.clone(), peer.clone());
        }
        status.peers = merged.into_values().collect();
        status
    }

    /// Updates the per-peer status from the sessions. Counting what waits for each
    /// peer walks the log, so only `node status` asks for it (`with_waiting`), never
    /// the periodic persisting on the sync path.
    fn refresh_peers(&mut self, with_waiting: bool) {
        let now = self.clock.now();
        let latest = self.replica.latest_seq().unwrap_or(0);
        let ids: Vec<SessionId> = self.links.keys().copied().collect();
        for id in ids {
            let (Some(link), Some(st)) = (self.links.get(&id), self.sync.session_status(id)) else {
                continue;
            };
            let office = link.peer.to_string();
            let waiting = with_waiting.then(|| self.waiting_for(&link.peer, st.out_acked));
            let entry = self.peers.entry(office.clone()).or_default();
            entry.office = office;
            entry.connected = true;
            entry.address = Some(link.address.to_string());
            entry.acked_seq = st.out_acked;
            entry.consumed_seq = st.in_seq;
            if let Some(waiting) = waiting {
                entry.waiting = waiting;
            }
            if st.established && st.fetching == 0 && st.out_acked >= latest {
                entry.last_synced_ms = Some(now.0);
            }
        }
    }

    /// Cases in this node's log after `acked` that are on `peer`'s route.
    fn waiting_for(&self, peer: &OfficeId, acked: u64) -> u64 {
        let Some(place) = self.sync.place_of(peer) else {
            return 0;
        };
        let mut waiting = 0;
        let mut cursor = acked;
        loop {
            let Ok(batch) = self.replica.changes_since(cursor, 1024) else {
                return waiting;
            };
            let Some(last) = batch.last() else {
                return waiting;
            };
            cursor = last.seq;
            waiting += batch
                .iter()
                .filter(|e| {
                    e.route.as_ref().is_some_and(|r| match e.attestation {
                        Some(_) => tongban_sync::route::attestation_on_route(&place, r),
                        None => on_route(&place, r),
                    })
                })
                .count() as u64;
        }
    }

    fn persist_peers(&mut self) {
        if !self.dirty {
            return;
        }
        self.refresh_peers(false);
        let store = self.local.store();
        let result = store.write(|tx| {
            for (office, peer) in &self.peers {
                let bytes = serde_json::to_vec(peer).unwrap_or_default();
                tx.set_meta(&peer_status_key(office), &bytes)?;
            }
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "cannot record peer status");
        }
        self.dirty = false;
    }

    /// Sends what the sync node queued and handles its events.
    async fn flush(&mut self) {
        while let Some(transmit) = self.sync.poll_transmit() {
            let Some(link) = self.links.get(&transmit.session) else {
                continue;
            };
            if link.tx.send(transmit.bytes).is_err() {
                self.links.remove(&transmit.session);
                self.sync.disconnect(transmit.session);
            }
        }
        let mut stored = Vec::new();
        let mut receipts = Vec::new();
        while let Some(event) = self.sync.poll_event() {
            self.dirty = true;
            match event {
                Event::Connected { peer, .. } => tracing::info!(%peer, "session established"),
                Event::CaseStored { case, peer } => {
                    tracing::info!(case = case.short(), %peer, "case stored from peer");
                    stored.push(case);
                }
                Event::ReceiptSigned { case, stage } => {
                    tracing::info!(case = case.short(), stage = stage.code(), "receipt signed");
                    receipts.push(case.clone());
                    stored.push(case);
                }
                Event::Forked { case } => {
                    tracing::warn!(
                        case = case.short(),
                        "case carries a fork; the offices concerned must resolve it"
                    );
                }
                Event::Refused { peer, case, reason } => {
                    tracing::warn!(%peer, case = case.as_ref().map(|c| c.short()), %reason, "refused");
                    if self.refusals.len() == MAX_REFUSALS {
                        self.refusals.pop_front();
                    }
                    self.refusals.push_back(RefusalRecord {
                        at_ms: self.clock.now().millis(),
                        peer: peer.to_string(),
                        case: case.map(|c| c.to_string()),
                        reason,
                    });
                }
                Event::DirectoryUpdated { version } => {
                    tracing::info!(version, "directory updated");
                    let newer = self.sync.directory().clone();
                    if let Err(err) = self.endpoint.directory().update(newer) {
                        tracing::warn!(error = %err, "transport kept its directory");
                    }
                    let closed = self.endpoint.enforce_directory();
                    if closed > 0 {
                        tracing::warn!(closed, "closed connections of revoked keys");
                    }
                    if let Err(err) = self.local.reload_directory() {
                        tracing::warn!(error = %err, "cannot reload the directory");
                    }
                    if let Err(err) = self.replica.refresh_directory() {
                        tracing::warn!(error = %err, "cannot reload the directory");
                    }
                }
                Event::DatasetUpdated {
                    kind,
                    scope,
                    version,
                } => {
                    tracing::info!(kind = kind.code(), scope, version, "dataset updated");
                    if kind == tongban_domain::dataset::DatasetKind::Calendar
                        && let Err(err) = self.local.reload_calendar()
                    {
                        tracing::warn!(error = %err, "cannot reload the calendar");
                    }
                    if kind == tongban_domain::dataset::DatasetKind::Policy
                        && let Err(err) = self.local.install_policies()
                    {
                        tracing::warn!(error = %err, "cannot install the policy");
                    }
                }
                Event::Closed {
                    session,
                    peer,
                    reason,
                } => {
                    tracing::info!(%peer, %reason, "session closed");
                    self.close(session, Some(reason.to_string()));
                }
                _ => {}
            }
        }
        if !stored.is_empty() {
            // Duplicates are flagged on arrival, at the domicile county's
            // offices (`crate::duplicates`).
            let local = &self.local;
            tokio::task::block_in_place(|| local.refresh_duplicates(&stored));
        }
        if !receipts.is_empty() {
            // A receipt is this office's write: it attests the case anew to
            // supervisors (the node's commands attest as they save).
            let local = &self.local;
            let mut attested = false;
            for case in &receipts {
                match tokio::task::block_in_place(|| local.attest(case)) {
                    Ok(done) => attested |= done,
                    Err(err) => {
                        tracing::warn!(case = case.short(), error = %err, "attestation not signed")
                    }
                }
            }
            if attested {
                let now = self.clock.now();
                if let Err(err) = tokio::task::block_in_place(|| {
                    self.sync.handle_local_change(&mut self.replica, now)
                }) {
                    tracing::warn!(error = %err, "attestations not announced");
                }
            }
        }
    }

    fn close(&mut self, session: SessionId, reason: Option<String>) {
        self.refresh_peers(false);
        if let Some(link) = self.links.remove(&session) {
            let now = self.clock.now().millis();
            // Another session with the same peer may still be open (a peer
            // that restarted reconnects before its old connection is reset).
            let still_open = self.links.values().any(|l| l.peer == link.peer);
            if let Some(peer) = self.peers.get_mut(link.peer.as_str()) {
                if !still_open {
                    peer.connected = false;
                    peer.address = None;
                }
                if let Some(reason) = reason {
                    peer.last_error = Some(format!("连接中断 link lost: {reason}"));
                    peer.last_error_ms = Some(now);
                }
            }
            self.dirty = true;
        }
        self.sync.disconnect(session);
    }

    async fn handle(&mut self, input: Input) -> Result<(), DaemonError> {
        let now = self.clock.now();
        match input {
            Input::Session {
                peer,
                address,
                tx,
                reply,
            } => {
                if self.recovery.is_some() {
                    tracing::info!(%peer, "session refused while the store cannot write");
                    let _ = reply.send(None);
                    return Ok(());
                }
                let session = tokio::task::block_in_place(|| {
                    self.sync.connect(&self.replica, peer.clone(), now)
                });
                match session {
                    Ok(id) => {
                        let entry = self.peers.entry(peer.to_string()).or_default();
                        entry.office = peer.to_string();
                        entry.refusal = None;
                        self.links.insert(id, Link { peer, address, tx });
                        self.dirty = true;
                        let _ = reply.send(Some(id));
                    }
                    Err(err) => {
                        tracing::warn!(%peer, error = %err, "session refused");
                        let _ = reply.send(None);
                    }
                }
            }
            // A frame of a session ended meanwhile (the store failed) is
            // dropped; the peer sends it again in a new session.
            Input::Frame { session, .. } if !self.links.contains_key(&session) => {}
            Input::Frame { session, bytes } => match self.sync.docs_job(session, &bytes, now) {
                Some(job) => {
                    // Loading and verifying the documents is most of the work of
                    // a first sync: off the engine, which meanwhile commits.
                    // In parts, each started after the earlier frames' parts
                    // (rayon takes work injected from outside its pool in
                    // order), so the cores go on to the next frame without
                    // holding up this one.
                    let frame = self.next_frame;
                    self.next_frame += 1;
                    let (join, parts) = job.split();
                    if parts.is_empty() {
                        return Ok(());
                    }
                    self.admitting
                        .insert(frame, (join, parts.len(), Vec::new()));
                    for part in parts {
                        let report = self.checked.clone();
                        rayon::spawn_fifo(move || {
                            let part =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    part.run()
                                }))
                                .ok();
                            // The engine may have stopped: nothing to report to.
                            let _ = report.send(Input::Checked { frame, part });
                        });
                    }
                }
                None => tokio::task::block_in_place(|| {
                    self.sync
                        .handle_message(&mut self.replica, session, &bytes, now)
                })?,
            },
            Input::Closed { session, reason } => self.close(session, reason),
            Input::LinkFailed {
                office,
                error,
                refusal,
            } => {
                let entry = self.peers.entry(office.clone()).or_default();
                entry.office = office;
                entry.last_error = Some(error);
                entry.last_error_ms = Some(now.millis());
                entry.refusal = refusal;
                self.dirty = true;
            }
            Input::Job(job) => job(self),
            Input::Checked { frame, part } => {
                let Some((_, out, back)) = self.admitting.get_mut(&frame) else {
                    return Ok(());
                };
                *out = out.saturating_sub(1);
                match part {
                    Some(part) => back.push(part),
                    None => {
                        tracing::error!("document admission failed; part of a batch is dropped")
                    }
                }
                if *out == 0
                    && let Some((join, _, back)) = self.admitting.remove(&frame)
                {
                    let checked = join.join(back);
                    tokio::task::block_in_place(|| {
                        self.sync.handle_checked(&mut self.replica, checked, now)
                    })?;
                }
            }
            Input::Tick if self.recovery.is_some() => self.try_recover(),
            Input::Tick => {
                if self.sync.poll_timeout().is_some_and(|t| t.0 <= now.0) {
                    tokio::task::block_in_place(|| {
                        self.sync.handle_timeout(&mut self.replica, now)
                    })?;
                }
                self.persist_peers();
            }
        }
        self.flush().await;
        Ok(())
    }
}

/// Runs work on a daemon's engine.
#[derive(Clone)]
pub struct DaemonHandle {
    inputs: mpsc::Sender<Input>,
}

impl std::fmt::Debug for DaemonHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonHandle").finish_non_exhaustive()
    }
}

impl DaemonHandle {
    /// A handle sending to the engine's input channel.
    pub(crate) fn new(inputs: mpsc::Sender<Input>) -> DaemonHandle {
        DaemonHandle { inputs }
    }

    /// Runs `f` on the engine with the node and the engine's clock, then offers
    /// whatever it wrote to the peers. Store writes inside `f` are durable when it
    /// returns.
    pub async fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LocalNode, Timestamp) -> R + Send + 'static,
    ) -> Result<R, DaemonError> {
        self.on_engine(move |engine| {
            let now = engine.now();
            let result = tokio::task::block_in_place(|| f(engine.local(), now));
            if let Err(err) = engine.local_change() {
                tracing::error!(error = %err, "cannot offer local changes");
            }
            result
        })
        .await
    }

    /// Adopts a directory given locally (`tongban node directory-import` on a
    /// running node): the sync engine verifies it against the authority the node
    /// trusts, stores it and passes it to its peers; the transport, the replica
    /// and the local node take it as they take one received by sync (the
    /// engine's `DirectoryUpdated` event, handled when the job returns).
    /// `authority`, when given, must be the key the node already trusts.
    pub async fn import_directory(
        &self,
        bytes: Vec<u8>,
        authority: Option<PublicKey>,
    ) -> Result<Result<u64, NodeError>, DaemonError> {
        self.on_engine(move |engine| {
            crate::local::trusted_authority(engine.local.authority(), authority)?;
            let held = engine.sync.directory().version;
            let now = engine.now();
            match tokio::task::block_in_place(|| {
                engine.sync.adopt_directory(&mut engine.replica, bytes, now)
            }) {
                Ok(Some(version)) => Ok(version),
                Ok(None) => Err(NodeError::Directory(format!(
                    "the directory given is not newer than the version {held} this node holds"
                ))),
                Err(SyncError::Directory(err)) => Err(NodeError::Directory(err.to_string())),
                Err(err) => Err(NodeError::Rejected(err.to_string())),
            }
        })
        .await
    }

    /// Adopts a signed dataset given locally (`tongban calendar publish
    /// --data-dir`, `tongban node dataset-import`): the sync engine checks it
    /// as one from a peer, stores it and passes it on (the `DatasetUpdated`
    /// event, handled when the job returns, reloads the calendar).
    pub async fn import_dataset(
        &self,
        bytes: Vec<u8>,
    ) -> Result<Result<u64, NodeError>, DaemonError> {
        self.on_engine(move |engine| {
            let now = engine.now();
            tokio::task::block_in_place(|| {
                engine.sync.adopt_dataset(&mut engine.replica, bytes, now)
            })
            .map_err(crate::datasets::refused)
        })
        .await
    }

    /// Signs this office's registry feed of `kind` from CSV and adopts it
    /// (`tongban feed publish` on a running node).
    pub async fn publish_feed(
        &self,
        kind: tongban_domain::dataset::DatasetKind,
        csv: String,
    ) -> Result<Result<u64, NodeError>, DaemonError> {
        self.on_engine(move |engine| {
            let now = engine.now();
            let bytes = engine.local.sign_feed(kind, &csv, now, now.china_date())?;
            tokio::task::block_in_place(|| {
                engine.sync.adopt_dataset(&mut engine.replica, bytes, now)
            })
            .map_err(crate::datasets::refused)
        })
        .await
    }

    /// Makes the payroll of `county` for `month` (`tongban payroll` on a
    /// running node): a new record is adopted by the sync engine as a dataset
    /// of its own and passed to the county's offices.
    pub async fn payroll(
        &self,
        county: String,
        month: tongban_domain::payroll::YearMonth,
        operator: tongban_domain::ids::Operator,
    ) -> Result<Result<crate::payroll::PayrollRun, NodeError>, DaemonError> {
        self.on_engine(move |engine| {
            let now = engine.now();
            let prepared = tokio::task::block_in_place(|| {
                engine.local.prepare_payroll(&county, month, &operator, now)
            })?;
            match prepared {
                crate::payroll::Prepared::Held(run) => Ok(run),
                crate::payroll::Prepared::New(datasets, run) => {
                    for bytes in datasets {
                        tokio::task::block_in_place(|| {
                            engine.sync.adopt_dataset(&mut engine.replica, bytes, now)
                        })
                        .map_err(crate::datasets::refused)?;
                    }
                    Ok(run)
                }
            }
        })
        .await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, DaemonError> {
        self.on_engine(|engine| tokio::task::block_in_place(|| engine.status()))
            .await
    }

    /// Runs `f` on the engine, between two of its inputs, and answers its result.
    async fn on_engine<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Result<R, DaemonError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |engine: &mut Engine| {
            let _ = tx.send(f(engine));
        });
        self.inputs
            .send(Input::Job(job))
            .await
            .map_err(|_| DaemonError::Stopped)?;
        rx.await.map_err(|_| DaemonError::Stopped)
    }
}

pub(crate) async fn wait_stop(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Most `Docs` frames a session has in flight on streams of their own (each up
/// to 1 MiB); the writer waits for one to be acknowledged before opening more.
const BATCH_STREAMS: usize = 8;

/// Runs one session until the connection or the engine ends; answers why it
/// ended when that was a failure (`None` on shutdown).
pub(crate) async fn run_session(
    connection: Connection,
    mut send: FrameSender,
    mut recv: FrameReceiver,
    inputs: mpsc::Sender<Input>,
    stop: watch::Receiver<bool>,
) -> Option<String> {
    let peer = connection.peer().office().clone();
    let address = connection.remote_address();
    let (tx, mut out) = mpsc::unbounded_channel::<Vec<u8>>();
    let (reply, answer) = oneshot::channel();
    if inputs
        .send(Input::Session {
            peer: peer.clone(),
            address,
            tx,
            reply,
        })
        .await
        .is_err()
    {
        return None;
    }
    let Ok(Some(session)) = answer.await else {
        connection.close("session refused");
        return Some("此节点拒绝了该会话 this node refused the session".into());
    };
    // Everything this session logs, on its tasks too, carries the peer and
    // the session's number, so that one link can be followed in a node's log.
    let span = tracing::info_span!("session", %peer, session = session.0);
    async move {
        tracing::info!(%address, "connected");
        // Whole documents (`Docs` frames, up to 1 MiB each) go on a stream of their
        // own, a few at a time: a batch held up by loss or flow control does not
        // hold up the acknowledgements and inventories on the session stream, and
        // the stream limit pushes back on the sender. The peer reads every stream it
        // is given into the same session.
        let batch_streams = Arc::new(tokio::sync::Semaphore::new(BATCH_STREAMS));
        let batch_connection = connection.clone();
        let writer = tokio::spawn(
            async move {
                while let Some(frame) = out.recv().await {
                    if frame.get(3) == Some(&Kind::Docs.wire()) {
                        let Ok(permit) = batch_streams.clone().acquire_owned().await else {
                            break;
                        };
                        let connection = batch_connection.clone();
                        tokio::spawn(
                            async move {
                                let _permit = permit;
                                let sent = async {
                                    let (mut stream, _) = connection
                                        .open_stream()
                                        .await
                                        .map_err(|e| e.to_string())?;
                                    stream.send_frame(&frame).await.map_err(|e| e.to_string())?;
                                    stream.finish().map_err(|e| e.to_string())?;
                                    stream.delivered().await.map_err(|e| e.to_string())
                                };
                                if let Err(err) = sent.await {
                                    // The protocol notices the missing documents and asks
                                    // again; nothing else to do here.
                                    tracing::info!(error = %err, "document batch not sent");
                                }
                            }
                            .in_current_span(),
                        );
                        continue;
                    }
                    if let Err(err) = send.send_frame(&frame).await {
                        tracing::info!(error = %err, "send failed");
                        break;
                    }
                }
                let _ = send.finish();
            }
            .in_current_span(),
        );
        let batch_reader = {
            let connection = connection.clone();
            let inputs = inputs.clone();
            tokio::spawn(
                async move {
                    let mut readers = tokio::task::JoinSet::new();
                    while let Ok((_, mut recv)) = connection.accept_stream().await {
                        let inputs = inputs.clone();
                        readers.spawn(
                            async move {
                                while let Ok(Some(bytes)) = recv.recv_frame().await {
                                    if inputs.send(Input::Frame { session, bytes }).await.is_err() {
                                        break;
                                    }
                                }
                            }
                            .in_current_span(),
                        );
                    }
                    readers.shutdown().await;
                }
                .in_current_span(),
            )
        };
        let mut failure = None;
        loop {
            let frame = tokio::select! {
                f = recv.recv_frame() => f,
                _ = wait_stop(stop.clone()) => break,
            };
            match frame {
                Ok(Some(bytes)) => {
                    if inputs.send(Input::Frame { session, bytes }).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    failure = Some("the peer ended the session".to_string());
                    break;
                }
                Err(err) => {
                    tracing::info!(error = %err, "link lost");
                    failure = Some(err.to_string());
                    break;
                }
            }
        }
        // The connection's own reason (reset by a restarted peer, silent past the
        // idle timeout, closed by the peer) says more than the stream's error.
        if failure.is_some()
            && let Some(lost) = connection.close_reason()
        {
            failure = Some(lost.to_string());
        }
        let _ = inputs
            .send(Input::Closed {
                session,
                reason: failure.clone(),
            })
            .await;
        writer.abort();
        batch_reader.abort();
        connection.close("session ended");
        failure
    }
    .instrument(span)
    .await
}

/// Why one connection attempt to a hub failed.
struct AttemptFailed {
    /// What failed, for `node status` and the log.
    error: String,
    /// Set when a key was refused, by the hub or by this node, in Chinese and
    /// English: the operator must act (import a directory, renew a key);
    /// retrying alone does not help.
    refusal: Option<String>,
}

/// What an operator reads for a refused connection.
fn refusal_text(err: &ConnectError) -> Option<String> {
    match err {
        ConnectError::RefusedByPeer { because, .. } => Some(match because {
            Refusal::UnknownKey => "枢纽不认识本节点的密钥，请确认双方导入了最新目录 \
                                    the hub does not know this node's key: import the current directory on both sides"
                .to_string(),
            Refusal::Revoked => "枢纽的目录显示本节点密钥已被吊销 the hub holds this node's key as revoked"
                .to_string(),
            Refusal::NotValidNow => "枢纽认为本节点证书不在有效期内 the hub holds no certificate of this node's key valid now"
                .to_string(),
            _ => "枢纽拒绝了本节点的证书 the hub refused this node's certificate".to_string(),
        }),
        ConnectError::PeerNotAllowed { rejection, .. } => Some(match rejection {
            PeerRejection::UnknownKey { .. } => format!(
                "本节点目录中没有该地址上节点的密钥 the node at this address has a key this node's directory does not know ({rejection})"
            ),
            PeerRejection::Revoked { .. } => format!(
                "该地址上节点的密钥已被吊销 the node at this address has a revoked key ({rejection})"
            ),
            _ => format!("本节点拒绝了对端 this node refused the peer: {rejection}"),
        }),
        _ => None,
    }
}

/// The hub's addresses now: `address` resolved (a host name through the
/// system's resolver, every time, so that a changed address is followed), kept
/// to the address family the endpoint's socket can reach.
async fn resolve(address: &str, local: SocketAddr) -> Result<Vec<SocketAddr>, AttemptFailed> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|err| AttemptFailed {
            error: format!("无法解析地址 cannot resolve {address}: {err}"),
            refusal: None,
        })?
        .collect();
    // An IPv4 socket cannot send to IPv6 addresses; a dual-stack IPv6 socket
    // reaches both.
    let usable: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|addr| local.is_ipv6() || addr.is_ipv4())
        .collect();
    if usable.is_empty() {
        return Err(AttemptFailed {
            error: format!(
                "地址 {address} 没有本节点可用的 IP 地址 resolves to no address this node's socket ({local}) can reach: {found:?}"
            ),
            refusal: None,
        });
    }
    Ok(usable)
}

/// One attempt: resolve the hub's address, then try each of its addresses in
/// turn until one connects.
async fn connect_once(endpoint: &Endpoint, address: &str) -> Result<Connection, AttemptFailed> {
    let candidates = resolve(address, endpoint.local_addr()).await?;
    let mut last = None;
    for candidate in candidates {
        match endpoint.connect(candidate).await {
            Ok(connection) => return Ok(connection),
            Err(err) => {
                let refusal = refusal_text(&err);
                last = Some(AttemptFailed {
                    error: err.to_string(),
                    refusal,
                });
                // A refusal is the hub's answer; its other addresses would
                // give the same.
                if last.as_ref().is_some_and(|f| f.refusal.is_some()) {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or(AttemptFailed {
        error: format!("no address to try for {address}"),
        refusal: None,
    }))
}

/// Keeps a session with one configured hub: connects, runs the session, and
/// after any failure or loss tries again with backoff, until the node stops.
/// Every failure goes to the engine (for `node status`); refusals are logged
/// as warnings each time, other failures as a warning when they change (a hub
/// that is down does not fill the log).
pub(crate) async fn keep_upstream(
    expected: OfficeId,
    address: String,
    endpoint: Arc<Endpoint>,
    inputs: mpsc::Sender<Input>,
    stop: watch::Receiver<bool>,
    mut backoff: Backoff,
) {
    let mut last_logged: Option<String> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let attempt = tokio::select! {
            biased;
            () = wait_stop(stop.clone()) => break,
            attempt = connect_once(&endpoint, &address) => attempt,
        };
        let failure = match attempt {
            Ok(connection) if connection.peer().office() != &expected => {
                let found = connection.peer().office().clone();
                connection.close("unexpected office");
                AttemptFailed {
                    error: format!(
                        "地址 {address} 上是另一个办公室 {found} the node at {address} is office {found}, not {expected}"
                    ),
                    refusal: None,
                }
            }
            Ok(connection) => {
                backoff.reset();
                last_logged = None;
                let ended = match connection.open_stream().await {
                    Ok((send, recv)) => {
                        run_session(connection, send, recv, inputs.clone(), stop.clone()).await
                    }
                    Err(err) => Some(err.to_string()),
                };
                if *stop.borrow() {
                    break;
                }
                if let Some(reason) = ended {
                    tracing::warn!(hub = %expected, %address, %reason, "lost the link to the hub; reconnecting");
                }
                sleep_or_stop(backoff.next_delay(), &stop).await;
                continue;
            }
            Err(failure) => failure,
        };
        if let Some(refusal) = &failure.refusal {
            tracing::warn!(hub = %expected, %address, %refusal, error = %failure.error, "the connection to the hub was refused");
        } else if last_logged.as_deref() != Some(failure.error.as_str()) {
            tracing::warn!(hub = %expected, %address, error = %failure.error, "cannot reach the hub; retrying");
        } else {
            tracing::info!(hub = %expected, %address, error = %failure.error, "cannot reach the hub; retrying");
        }
        last_logged = Some(failure.error.clone());
        if inputs
            .send(Input::LinkFailed {
                office: expected.to_string(),
                error: failure.error,
                refusal: failure.refusal,
            })
            .await
            .is_err()
        {
            break;
        }
        sleep_or_stop(backoff.next_delay(), &stop).await;
    }
}

async fn sleep_or_stop(delay: Duration, stop: &watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = wait_stop(stop.clone()) => {}
    }
}
