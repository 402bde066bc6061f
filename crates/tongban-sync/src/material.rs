//! Material transfer: the scans a case document references (ID card, disability
//! certificate, ...) follow the document to every node of its route.
//!
//! A case document lists its materials by BLAKE3 hash and declared size
//! (`materials.<kind:hash>`, see [`referenced`]); the bytes live content-addressed
//! in each node's store. When a node stores a case (from a peer) whose document
//! lists a material it does not hold, it *wants* it, and this module fetches it:
//!
//! - **Whom to ask.** First the session the case came from, then any other
//!   established session whose peer is on the route of a case referencing the
//!   material. A peer that does not hold it (yet) answers
//!   [`Message::MaterialMissing`]; when every candidate did, the node waits
//!   [`Limits::material_retry_ms`], doubling after each fruitless round up to
//!   [`Limits::stall_ms`], and asks again (through
//!   [`SyncNode::poll_timeout`]/[`SyncNode::handle_timeout`]). A peer that connects
//!   is asked at the next timeout call, without waiting for the round to end. Hubs
//!   are on the route of what they relay, so they fetch too, and a material
//!   crosses a hub chain one hop at a time.
//! - **Chunks.** Requests are for [`MAX_CHUNK`] bytes at multiples of it, at most
//!   [`Limits::material_window`] unanswered per session. A server answers exactly
//!   `min(asked, total - offset)` bytes (none past the end); any other length, a
//!   total above the size the document declares (an upper bound), or a total that
//!   changes, refuses the material from that peer.
//! - **Checked before stored.** The whole material must hash to its address; then
//!   it is stored and attached to the case in one commit
//!   ([`StoreWrite::Material`]). Wrong bytes are dropped, never stored: the peer
//!   gets an [`Event::Refused`] and the fetch starts over, from another peer when
//!   there is one.
//! - **Interrupted and resumed.** When a session ends mid-transfer, the received
//!   prefix is kept and the fetch resumes from it on the next candidate: the
//!   content is addressed by its hash, so any honest peer's bytes fit, and the
//!   final hash check catches a mix.
//! - **Serving.** A node serves a chunk only when the request names a case it holds
//!   that is on the *requesting peer's* route and whose document references the
//!   hash: a township never obtains another township's scans, whatever it asks.
//!   Otherwise, and when it does not hold the material, it answers
//!   `MaterialMissing` (a refused request also raises an [`Event::Refused`]).
//!
//! # Where partial data lives
//!
//! In memory, not staged in the store. A material is stored only once whole and
//! checked, in one transaction, so the store never holds unverified bytes under a
//! material's address and needs no cleanup of abandoned partial blobs after a
//! crash; the cost is that a crash loses the partial data (the fetch restarts from
//! zero, [`SyncStore::missing_materials`] tells the restarted node what it still
//! wants). Memory is bounded by [`Limits::max_material_bytes`]: a material whose
//! document declares more is refused (an [`Event::Refused`] and a warning, once
//! per node run) and never fetched, and fetches start only while the declared
//! sizes of those in progress fit in that budget (one always may).
//!
//! Everything here is sans-IO like the rest of the crate: time comes in as `now`,
//! frames go out through the node's transmit queue.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, Value};
use tongban_domain::ids::{CaseId, Timestamp};

#[cfg(doc)]
use crate::node::Event;
use crate::node::{Limits, SessionId, SyncError, SyncNode};
use crate::route::{CaseRoute, on_route};
use crate::store::{StoreWrite, SyncStore};
use crate::wire::{Hash32, MAX_CHUNK, Message};

/// The length every request asks for.
const CHUNK: u32 = MAX_CHUNK as u32;

/// Most (case, material) authorisations remembered per session before the cache
/// is emptied (each is re-checked against the document when asked again).
const SERVED_CACHE: usize = 1024;

/// A material a case document references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaterialRef {
    /// Its BLAKE3 hash: its address in every store.
    pub hash: Hash32,
    /// The size the document declares, in bytes: an upper bound on what a peer
    /// may send.
    pub size: u64,
}

/// The materials a case document lists (`materials.<kind:hash>.hash` and
/// `.size`), one per hash (the same file may serve several checklist items; the
/// largest declared size counts), sorted by hash. Entries whose hash is not 64 hex
/// digits or whose size is missing are skipped. Reads the document through
/// `ReadDoc`, without hydrating it.
pub fn referenced(doc: &Automerge) -> Vec<MaterialRef> {
    let Ok(Some((Value::Object(ObjType::Map), materials))) = doc.get(&automerge::ROOT, "materials")
    else {
        return Vec::new();
    };
    let mut out: BTreeMap<Hash32, u64> = BTreeMap::new();
    // One pass over the map's entries (cheaper than looking each key up).
    for item in doc.map_range(&materials, ..) {
        let automerge::ValueRef::Object(ObjType::Map) = item.value else {
            continue;
        };
        let entry = item.id();
        let hash = match doc.get(&entry, "hash") {
            Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
                ScalarValue::Str(text) => parse_hex32(text),
                _ => None,
            },
            _ => None,
        };
        let size = match doc.get(&entry, "size") {
            Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
                ScalarValue::Uint(n) => Some(*n),
                ScalarValue::Int(n) => u64::try_from(*n).ok(),
                _ => None,
            },
            _ => None,
        };
        if let (Some(hash), Some(size)) = (hash, size) {
            let declared = out.entry(hash).or_insert(size);
            *declared = (*declared).max(size);
        }
    }
    out.into_iter()
        .map(|(hash, size)| MaterialRef { hash, size })
        .collect()
}

/// A 32-byte hash from 64 hex digits (either case).
fn parse_hex32(text: &str) -> Option<Hash32> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The first 12 hex digits of a material hash, for logs and refusal reasons (a
/// content hash is not personal data).
pub fn short_hex(hash: &Hash32) -> String {
    data_encoding::HEXLOWER.encode(&hash[..6])
}

/// Counters of material transfer, for tests and status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaterialStats {
    /// Chunk requests sent.
    pub requests_sent: u64,
    /// Chunks sent to peers.
    pub chunks_sent: u64,
    /// Material bytes sent to peers.
    pub bytes_sent: u64,
    /// `MaterialMissing` answers sent (not held, or refused).
    pub missing_sent: u64,
    /// Materials received whole, checked and stored.
    pub stored: u64,
    /// Materials refused: bytes that fail their hash or the chunk rules, sizes
    /// above the limit.
    pub refused: u64,
}

/// What arrived of a material so far.
#[derive(Debug, Default)]
struct Partial {
    /// The whole length, as the first chunk told.
    total: Option<u64>,
    /// The contiguous prefix received.
    data: Vec<u8>,
    /// Chunks received after a gap (reordered delivery), by offset.
    early: BTreeMap<u64, Vec<u8>>,
}

impl Partial {
    /// Whether anything is held in memory for it (it counts against the budget).
    fn started(&self) -> bool {
        self.total.is_some() || !self.data.is_empty()
    }
}

/// The peer a material is being fetched from.
#[derive(Debug)]
struct Source {
    session: SessionId,
    /// The case the requests name (on the peer's route, referencing the hash).
    case: CaseId,
    /// Offsets asked and not answered, with the length asked.
    asked: BTreeMap<u64, u32>,
    /// The next offset to ask for.
    next: u64,
    /// The last request sent with none outstanding, or the last answer.
    progress_at: Timestamp,
    /// Stalls in a row on this source.
    stalls: u32,
}

/// A material this node wants.
#[derive(Debug)]
struct Want {
    /// The cases referencing it, with their routes.
    cases: BTreeMap<CaseId, CaseRoute>,
    /// The largest size a referencing document declares.
    declared: u64,
    /// The session a referencing case came from: asked first.
    prefer: Option<SessionId>,
    /// Sessions asked in this round that do not serve it.
    tried: BTreeSet<SessionId>,
    /// Fruitless rounds in a row.
    rounds: u32,
    /// After a fruitless round: no request before this.
    not_before: Option<Timestamp>,
    /// Since when it waits for a source.
    idle_since: Timestamp,
    got: Partial,
    source: Option<Source>,
}

impl Want {
    fn new(declared: u64, prefer: Option<SessionId>, now: Timestamp) -> Want {
        Want {
            cases: BTreeMap::new(),
            declared,
            prefer,
            tried: BTreeSet::new(),
            rounds: 0,
            not_before: None,
            idle_since: now,
            got: Partial::default(),
            source: None,
        }
    }

    fn busy(&self) -> bool {
        self.source.is_some() || self.got.started()
    }

    /// Stops asking the current source, keeping the received prefix.
    fn drop_source(&mut self, now: Timestamp) -> Option<Source> {
        self.got.early.clear();
        self.idle_since = now;
        self.source.take()
    }
}

/// The material-transfer state of a node: what it wants, what it is fetching
/// from whom, and which requests of each session it already authorised.
#[derive(Debug)]
pub(crate) struct Materials {
    limits: Limits,
    wants: BTreeMap<Hash32, Want>,
    /// Materials refused for their declared size (reported once).
    too_large: BTreeSet<Hash32>,
    /// Per session, the (case, material) pairs already checked servable to it.
    served: BTreeMap<SessionId, BTreeSet<(CaseId, Hash32)>>,
    stats: MaterialStats,
}

fn store_err<E: std::error::Error + Send + Sync + 'static>(err: E) -> SyncError {
    SyncError::Store(Box::new(err))
}

impl Materials {
    /// The state of a node starting on `store`: every material a stored case
    /// references and the store lacks is wanted again (from any route peer).
    pub(crate) fn recover<S: SyncStore>(store: &S, limits: Limits) -> Result<Materials, SyncError> {
        let mut materials = Materials::empty(limits);
        let missing = store.missing_materials().map_err(store_err)?;
        materials.recover_from(store, missing)?;
        Ok(materials)
    }

    /// No material wanted yet: a node whose start must not wait for the walk
    /// over every material reference ([`SyncNode::recover_materials`]).
    pub(crate) fn empty(limits: Limits) -> Materials {
        Materials {
            limits,
            wants: BTreeMap::new(),
            too_large: BTreeSet::new(),
            served: BTreeMap::new(),
            stats: MaterialStats::default(),
        }
    }

    /// Wants every material of `missing` (references the store lacks, as
    /// [`SyncStore::missing_materials`] lists them) that is still lacking,
    /// merged with what is wanted already.
    fn recover_from<S: SyncStore>(
        &mut self,
        store: &S,
        missing: Vec<(CaseId, Hash32)>,
    ) -> Result<(), SyncError> {
        let materials = self;
        let limits = materials.limits;
        let mut docs: BTreeMap<CaseId, Vec<MaterialRef>> = BTreeMap::new();
        for (case, hash) in missing {
            // Fetched since the list was made: nothing to want.
            if store.has_material(&hash).map_err(store_err)? {
                continue;
            }
            if materials.too_large.contains(&hash)
                || store.material_removed(&hash).map_err(store_err)?
            {
                continue;
            }
            let Some(route) = store.route(&case).map_err(store_err)? else {
                continue;
            };
            if !docs.contains_key(&case) {
                let refs = store
                    .load(&case)
                    .map_err(store_err)?
                    .map(|doc| referenced(&doc))
                    .unwrap_or_default();
                docs.insert(case.clone(), refs);
            }
            let Some(size) = docs
                .get(&case)
                .and_then(|refs| refs.iter().find(|r| r.hash == hash))
                .map(|r| r.size)
            else {
                continue;
            };
            if size > limits.max_material_bytes {
                tracing::warn!(
                    material = short_hex(&hash),
                    case = case.short(),
                    size,
                    limit = limits.max_material_bytes,
                    "material above the size limit: not fetched"
                );
                materials.too_large.insert(hash);
                materials.wants.remove(&hash);
                continue;
            }
            let want = materials
                .wants
                .entry(hash)
                .or_insert_with(|| Want::new(size, None, Timestamp(0)));
            want.declared = want.declared.max(size);
            want.cases.insert(case, route);
        }
        Ok(())
    }

    /// The sum of the declared sizes of the materials being fetched: the most
    /// partial data held in memory.
    fn buffered(&self) -> u64 {
        self.wants
            .values()
            .filter(|w| w.busy())
            .map(|w| w.declared)
            .sum()
    }

    /// Whether a fetch of `hash` may start (or go on) within the memory budget.
    fn may_buffer(&self, hash: &Hash32) -> bool {
        let Some(want) = self.wants.get(hash) else {
            return false;
        };
        if want.busy() {
            return true;
        }
        let buffered = self.buffered();
        buffered == 0 || buffered.saturating_add(want.declared) <= self.limits.max_material_bytes
    }

    /// How long to wait after `rounds` fruitless rounds.
    fn backoff(&self, rounds: u32) -> i64 {
        let base = self.limits.material_retry_ms.max(1);
        let cap = self.limits.stall_ms.max(base);
        let doublings = rounds.saturating_sub(1).min(20);
        base.saturating_mul(1i64 << doublings).min(cap)
    }
}

/// How a material request is answered.
enum Verdict {
    Serve,
    Missing,
    Refuse(String),
}

impl SyncNode {
    /// Materials this node wants and does not hold yet (being fetched or waiting
    /// for a peer that has them).
    pub fn materials_wanted(&self) -> usize {
        self.materials.wants.len()
    }

    /// Wants the materials of `missing` — the store's references to materials
    /// it lacks, listed by [`SyncStore::missing_materials`] off the node's
    /// thread — for a node made by [`SyncNode::new_deferring_materials`]:
    /// the walk over every reference grows with the store (600,000 rows at
    /// a hub of 100,000 cases), and a node must not wait for it to start.
    pub fn recover_materials<S: SyncStore>(
        &mut self,
        store: &S,
        missing: Vec<(CaseId, Hash32)>,
    ) -> Result<(), SyncError> {
        self.materials.recover_from(store, missing)
    }

    /// Counters of material transfer since the node was made.
    pub fn material_stats(&self) -> MaterialStats {
        self.materials.stats
    }

    /// A case was stored from `session` (admitted, committed): fetch the materials
    /// its document lists (`refs`, from [`referenced`]) that the store does not
    /// hold, asking `session` first. Called wherever a case from a peer is
    /// committed.
    pub(crate) fn want_materials<S: SyncStore>(
        &mut self,
        store: &S,
        session: SessionId,
        case: &CaseId,
        route: CaseRoute,
        refs: Vec<MaterialRef>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        if refs.is_empty() {
            return Ok(());
        }
        let limit = self.materials.limits.max_material_bytes;
        for material in refs {
            let hash = material.hash;
            if self.materials.too_large.contains(&hash) {
                continue;
            }
            let declared = match self.materials.wants.get_mut(&hash) {
                Some(want) => {
                    want.cases.insert(case.clone(), route);
                    want.prefer.get_or_insert(session);
                    want.declared = want.declared.max(material.size);
                    want.declared
                }
                None => {
                    if store.has_material(&hash).map_err(store_err)?
                        || store.material_removed(&hash).map_err(store_err)?
                    {
                        continue;
                    }
                    material.size
                }
            };
            if declared > limit {
                self.materials.wants.remove(&hash);
                self.materials.too_large.insert(hash);
                self.materials.stats.refused += 1;
                self.refused(
                    session,
                    Some(case.clone()),
                    format!(
                        "material {} declares {declared} bytes, above this node's limit of \
                         {limit}: not fetched",
                        short_hex(&hash)
                    ),
                );
                continue;
            }
            self.materials
                .wants
                .entry(hash)
                .or_insert_with(|| Want::new(declared, Some(session), now))
                .cases
                .insert(case.clone(), route);
        }
        self.pump_materials(now);
        Ok(())
    }

    /// A peer asks for part of a material.
    pub(crate) fn on_material_request<S: SyncStore>(
        &mut self,
        store: &S,
        session: SessionId,
        case: CaseId,
        hash: Hash32,
        offset: u64,
        max_len: u32,
    ) -> Result<(), SyncError> {
        let Some((peer_place, true)) = self.session_peer(session) else {
            // An unknown session, or no hello yet (the peer repeats unanswered
            // requests).
            return Ok(());
        };
        let key = (case.clone(), hash);
        let known = self
            .materials
            .served
            .get(&session)
            .is_some_and(|served| served.contains(&key));
        let verdict = if known {
            Verdict::Serve
        } else {
            match store.route(&case).map_err(store_err)? {
                None => Verdict::Missing,
                Some(route) if !on_route(&peer_place, &route) => {
                    Verdict::Refuse("material request names a case off the peer's route".into())
                }
                Some(_) => match store.load(&case).map_err(store_err)? {
                    None => Verdict::Missing,
                    Some(doc) if referenced(&doc).iter().any(|m| m.hash == hash) => Verdict::Serve,
                    Some(_) => Verdict::Refuse(format!(
                        "material request for {}, which the case does not reference",
                        short_hex(&hash)
                    )),
                },
            }
        };
        let answer = match verdict {
            Verdict::Refuse(reason) => {
                self.refused(session, Some(case), reason);
                Message::MaterialMissing { hash }
            }
            Verdict::Missing => Message::MaterialMissing { hash },
            Verdict::Serve => {
                let served = self.materials.served.entry(session).or_default();
                if served.len() >= SERVED_CACHE {
                    served.clear();
                }
                served.insert(key);
                let max_len = (max_len as usize).min(MAX_CHUNK);
                match store.read_material(&hash, offset, max_len) {
                    Ok(Some(part)) => Message::MaterialChunk {
                        hash,
                        offset,
                        total_len: part.total_len,
                        data: part.data,
                    },
                    Ok(None) => Message::MaterialMissing { hash },
                    Err(err) => {
                        // A damaged copy here is not the peer's problem, nor a
                        // reason to stop the node: it is not served.
                        tracing::error!(
                            material = short_hex(&hash),
                            %err,
                            "cannot read a stored material; not served"
                        );
                        Message::MaterialMissing { hash }
                    }
                }
            }
        };
        match &answer {
            Message::MaterialChunk { data, .. } => {
                self.materials.stats.chunks_sent += 1;
                self.materials.stats.bytes_sent += data.len() as u64;
            }
            _ => self.materials.stats.missing_sent += 1,
        }
        let _ = self.send(session, &answer);
        Ok(())
    }

    /// Part of a material arrived.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_material_chunk<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        hash: Hash32,
        offset: u64,
        total_len: u64,
        data: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(want) = self.materials.wants.get_mut(&hash) else {
            // Not wanted (any more): a late or duplicated answer.
            return Ok(());
        };
        let Some(source) = want.source.as_mut().filter(|s| s.session == session) else {
            return Ok(());
        };
        let Some(asked) = source.asked.remove(&offset) else {
            // Not asked, or already answered.
            return Ok(());
        };
        let case = source.case.clone();
        let expected = total_len.saturating_sub(offset).min(u64::from(asked));
        let problem = if total_len > want.declared {
            Some(format!(
                "the peer gives {total_len} bytes, the document declares at most {}",
                want.declared
            ))
        } else if want.got.total.is_some_and(|t| t != total_len) {
            Some(format!(
                "the peer gives a length of {total_len} bytes after {:?}",
                want.got.total
            ))
        } else if data.len() as u64 != expected {
            Some(format!(
                "a chunk at {offset} has {} bytes, not {expected}",
                data.len()
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            self.material_refused(session, hash, case, &reason, now);
            return Ok(());
        }
        want.got.total = Some(total_len);
        want.rounds = 0;
        source.progress_at = now;
        source.stalls = 0;
        let have = want.got.data.len() as u64;
        if !data.is_empty() {
            if offset == have {
                want.got.data.extend_from_slice(&data);
                while let Some(next) = want.got.early.remove(&(want.got.data.len() as u64)) {
                    want.got.data.extend_from_slice(&next);
                }
            } else if offset > have {
                want.got.early.insert(offset, data);
            }
        }
        if want.got.data.len() as u64 == total_len {
            return self.finish_material(store, session, hash, now);
        }
        self.fill_requests(session, now);
        Ok(())
    }

    /// A peer does not serve a material this node asked it for.
    pub(crate) fn on_material_missing(&mut self, session: SessionId, hash: Hash32, now: Timestamp) {
        let Some(want) = self.materials.wants.get_mut(&hash) else {
            return;
        };
        if want.source.as_ref().is_none_or(|s| s.session != session) {
            return;
        }
        want.drop_source(now);
        want.tried.insert(session);
        tracing::debug!(
            material = short_hex(&hash),
            "peer does not hold the material yet"
        );
        self.pump_materials(now);
        self.fill_requests(session, now);
    }

    /// When [`SyncNode::handle_timeout`] is next due for materials.
    pub(crate) fn material_timeout(&self) -> Option<Timestamp> {
        let stall = self.materials.limits.stall_ms;
        self.materials
            .wants
            .iter()
            .filter_map(|(hash, want)| match &want.source {
                Some(source) if self.session_peer(source.session).is_none() => {
                    Some(source.progress_at.0)
                }
                Some(source) => Some(source.progress_at.0.saturating_add(stall)),
                None => match want.not_before {
                    Some(at) => Some(at.0),
                    None if self.materials.may_buffer(hash)
                        && self.material_source(hash).is_some() =>
                    {
                        Some(want.idle_since.0)
                    }
                    None => None,
                },
            })
            .min()
            .map(Timestamp)
    }

    /// Timers: fetches whose session is gone move on, stalled requests are
    /// repeated (a second stall in a row moves to another peer), rounds that
    /// waited long enough start again.
    pub(crate) fn material_handle_timeout(&mut self, now: Timestamp) {
        let stall = self.materials.limits.stall_ms;
        let mut resend: Vec<(SessionId, Message)> = Vec::new();
        let mut refill: BTreeSet<SessionId> = BTreeSet::new();
        let open: BTreeSet<SessionId> = self.sessions().map(|(id, _)| id).collect();
        for (hash, want) in self.materials.wants.iter_mut() {
            let Some(source) = want.source.as_mut() else {
                continue;
            };
            if !open.contains(&source.session) {
                want.drop_source(now);
                continue;
            }
            if now.0.saturating_sub(source.progress_at.0) < stall {
                continue;
            }
            if source.asked.is_empty() {
                // Waiting for room in the session's window.
                source.progress_at = now;
                refill.insert(source.session);
            } else if source.stalls == 0 {
                // Requests or answers were lost: ask again.
                source.stalls = 1;
                source.progress_at = now;
                for (offset, len) in &source.asked {
                    resend.push((
                        source.session,
                        Message::MaterialRequest {
                            case: source.case.clone(),
                            hash: *hash,
                            offset: *offset,
                            max_len: *len,
                        },
                    ));
                }
            } else if let Some(gone) = want.drop_source(now) {
                want.tried.insert(gone.session);
                refill.insert(gone.session);
            }
        }
        for (session, message) in resend {
            self.materials.stats.requests_sent += 1;
            let _ = self.send(session, &message);
        }
        self.pump_materials(now);
        for session in refill {
            self.fill_requests(session, now);
        }
    }

    /// A session ended: its fetches stop (keeping what arrived) and resume
    /// elsewhere at the next timeout call.
    pub(crate) fn material_disconnect(&mut self, session: SessionId) {
        self.materials.served.remove(&session);
        for want in self.materials.wants.values_mut() {
            if let Some(source) = want.source.as_ref().filter(|s| s.session == session) {
                let since = source.progress_at;
                want.drop_source(since);
            }
            want.tried.remove(&session);
            if want.prefer == Some(session) {
                want.prefer = None;
            }
        }
    }

    /// The session to ask for `hash` and the case to name: the preferred one if
    /// it may serve, else the first established session whose peer is on the
    /// route of a case referencing it and that was not tried in this round.
    fn material_source(&self, hash: &Hash32) -> Option<(SessionId, CaseId)> {
        let want = self.materials.wants.get(hash)?;
        let eligible = |id: &SessionId| -> Option<CaseId> {
            let (place, established) = self.session_peer(*id)?;
            if !established || want.tried.contains(id) {
                return None;
            }
            want.cases
                .iter()
                .find(|(_, route)| on_route(&place, route))
                .map(|(case, _)| case.clone())
        };
        if let Some(preferred) = want.prefer
            && let Some(case) = eligible(&preferred)
        {
            return Some((preferred, case));
        }
        self.sessions()
            .find_map(|(id, _)| eligible(&id).map(|case| (id, case)))
    }

    /// Starts fetches for wanted materials that have no source, as the memory
    /// budget and the connected peers allow; ends fruitless rounds.
    fn pump_materials(&mut self, now: Timestamp) {
        let idle: Vec<Hash32> = self
            .materials
            .wants
            .iter()
            .filter(|(_, w)| w.source.is_none())
            .map(|(hash, _)| *hash)
            .collect();
        for hash in idle {
            let Some(want) = self.materials.wants.get_mut(&hash) else {
                continue;
            };
            if let Some(at) = want.not_before {
                if at.0 > now.0 {
                    continue;
                }
                want.not_before = None;
                want.tried.clear();
            }
            if !self.materials.may_buffer(&hash) {
                continue;
            }
            match self.material_source(&hash) {
                Some((session, case)) => {
                    let Some(want) = self.materials.wants.get_mut(&hash) else {
                        continue;
                    };
                    want.got.early.clear();
                    want.source = Some(Source {
                        session,
                        case,
                        asked: BTreeMap::new(),
                        next: want.got.data.len() as u64,
                        progress_at: now,
                        stalls: 0,
                    });
                    self.fill_requests(session, now);
                }
                None => {
                    let rounds = self.materials.wants.get(&hash).map_or(0, |w| w.rounds);
                    let backoff = self.materials.backoff(rounds.saturating_add(1));
                    let Some(want) = self.materials.wants.get_mut(&hash) else {
                        continue;
                    };
                    if !want.tried.is_empty() {
                        // Every candidate said no: wait, then ask them again.
                        want.rounds += 1;
                        want.tried.clear();
                        want.not_before = Some(Timestamp(now.0.saturating_add(backoff)));
                    }
                }
            }
        }
    }

    /// Sends requests on `session` while its window has room.
    fn fill_requests(&mut self, session: SessionId, now: Timestamp) {
        let window = self.materials.limits.material_window.max(1);
        let mut inflight: usize = self
            .materials
            .wants
            .values()
            .filter_map(|w| w.source.as_ref())
            .filter(|s| s.session == session)
            .map(|s| s.asked.len())
            .sum();
        let mut out = Vec::new();
        for (hash, want) in self.materials.wants.iter_mut() {
            if inflight >= window {
                break;
            }
            let Some(source) = want.source.as_mut().filter(|s| s.session == session) else {
                continue;
            };
            // Up to the known length, or the declared one before the first answer;
            // an empty material still takes one request.
            let end = want.got.total.unwrap_or(want.declared).max(1);
            while inflight < window && source.next < end {
                if source.asked.is_empty() {
                    source.progress_at = now;
                }
                source.asked.insert(source.next, CHUNK);
                out.push(Message::MaterialRequest {
                    case: source.case.clone(),
                    hash: *hash,
                    offset: source.next,
                    max_len: CHUNK,
                });
                source.next = source.next.saturating_add(u64::from(CHUNK));
                inflight += 1;
            }
        }
        for message in out {
            self.materials.stats.requests_sent += 1;
            let _ = self.send(session, &message);
        }
    }

    /// The whole material arrived from `session`: check it and store it.
    fn finish_material<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        hash: Hash32,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(want) = self.materials.wants.get_mut(&hash) else {
            return Ok(());
        };
        let Some(case) = want.source.as_ref().map(|s| s.case.clone()) else {
            return Ok(());
        };
        let bytes = std::mem::take(&mut want.got.data);
        if blake3::hash(&bytes).as_bytes() != &hash {
            want.got = Partial::default();
            self.material_refused(
                session,
                hash,
                case,
                "the bytes received do not hash to the material's BLAKE3",
                now,
            );
            return Ok(());
        }
        let len = bytes.len();
        store
            .commit(vec![StoreWrite::Material { case, hash, bytes }])
            .map_err(store_err)?;
        self.materials.wants.remove(&hash);
        self.materials.stats.stored += 1;
        tracing::info!(material = short_hex(&hash), len, "material stored");
        self.pump_materials(now);
        self.fill_requests(session, now);
        Ok(())
    }

    /// `session` sent bytes that break the rules: drop everything received of
    /// the material, report the peer, and fetch it again from another peer.
    fn material_refused(
        &mut self,
        session: SessionId,
        hash: Hash32,
        case: CaseId,
        reason: &str,
        now: Timestamp,
    ) {
        self.materials.stats.refused += 1;
        if let Some(want) = self.materials.wants.get_mut(&hash) {
            want.got = Partial::default();
            want.drop_source(now);
            want.tried.insert(session);
        }
        self.refused(
            session,
            Some(case),
            format!("material {} refused: {reason}", short_hex(&hash)),
        );
        self.pump_materials(now);
        self.fill_requests(session, now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ScalarValue};

    fn hex(hash: &Hash32) -> String {
        data_encoding::HEXLOWER.encode(hash)
    }

    /// A document with `materials` as the case schema lays them out.
    fn doc_with(materials: &[(&str, String, Option<ScalarValue>)]) -> Automerge {
        let mut doc = AutoCommit::new();
        let map = doc
            .put_object(automerge::ROOT, "materials", ObjType::Map)
            .unwrap();
        for (key, hash, size) in materials {
            let entry = doc.put_object(&map, *key, ObjType::Map).unwrap();
            doc.put(&entry, "hash", hash.as_str()).unwrap();
            if let Some(size) = size {
                doc.put(&entry, "size", size.clone()).unwrap();
            }
            doc.put(&entry, "media_type", "image/jpeg").unwrap();
        }
        doc.document().clone()
    }

    #[test]
    fn referenced_reads_hash_and_size_once_per_hash() {
        let a = *blake3::hash(b"id card").as_bytes();
        let b = *blake3::hash(b"certificate").as_bytes();
        let doc = doc_with(&[
            ("id_card:x", hex(&a), Some(ScalarValue::Uint(10))),
            // The same file for a second item, declared larger: the larger counts.
            (
                "hukou:x",
                hex(&a).to_uppercase(),
                Some(ScalarValue::Int(12)),
            ),
            ("cert:y", hex(&b), Some(ScalarValue::Uint(7))),
            // Malformed entries are skipped.
            ("bad:1", "abc".into(), Some(ScalarValue::Uint(1))),
            ("bad:2", hex(&b), None),
            ("bad:3", hex(&b), Some(ScalarValue::Int(-1))),
        ]);
        let mut want = vec![
            MaterialRef { hash: a, size: 12 },
            MaterialRef { hash: b, size: 7 },
        ];
        want.sort_by_key(|m| m.hash);
        assert_eq!(referenced(&doc), want);
        assert!(referenced(&Automerge::new()).is_empty());
    }

    #[test]
    fn hex_parsing_is_total() {
        let h = *blake3::hash(b"x").as_bytes();
        assert_eq!(parse_hex32(&hex(&h)), Some(h));
        assert_eq!(parse_hex32(""), None);
        assert_eq!(parse_hex32(&"g".repeat(64)), None);
        assert_eq!(parse_hex32(&"é".repeat(32)), None);
        assert_eq!(short_hex(&h).len(), 12);
    }

    #[test]
    fn the_memory_store_keeps_references_and_checked_materials() {
        use crate::store::{MaterialPart, MemStore};
        use tongban_domain::division::DivisionCode;
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let case = CaseId::new("440106001", date, [1, 2, 3, 4]).unwrap();
        let route = CaseRoute::new(
            DivisionCode::parse("440106001").unwrap(),
            DivisionCode::parse("130102001").unwrap(),
        )
        .unwrap();
        let scan = vec![9u8; 3000];
        let hash = *blake3::hash(&scan).as_bytes();
        let mut store = MemStore::new([1; 16]);
        store.put_local(
            &case,
            route,
            doc_with(&[("id_card:x", hex(&hash), Some(ScalarValue::Uint(3000)))]),
        );
        // A case write records the reference; the scan has not arrived.
        assert_eq!(
            store.missing_materials().unwrap(),
            vec![(case.clone(), hash)]
        );
        assert!(!store.has_material(&hash).unwrap());
        assert_eq!(store.read_material(&hash, 0, 10).unwrap(), None);
        // Bytes that do not hash to their address are not kept.
        store
            .commit(vec![StoreWrite::Material {
                case: case.clone(),
                hash,
                bytes: vec![8u8; 3000],
            }])
            .unwrap();
        assert!(!store.has_material(&hash).unwrap());
        assert_eq!(store.put_local_material(&case, scan.clone()), hash);
        assert!(store.missing_materials().unwrap().is_empty());
        assert_eq!(store.material_len(&hash).unwrap(), Some(3000));
        let part = |offset, max| store.read_material(&hash, offset, max).unwrap().unwrap();
        assert_eq!(
            part(2990, 100),
            MaterialPart {
                total_len: 3000,
                data: vec![9; 10]
            }
        );
        assert!(part(3000, 100).data.is_empty());
        assert!(part(u64::MAX, usize::MAX).data.is_empty());
        assert_eq!(part(0, usize::MAX).data, scan);
    }

    #[test]
    fn backoff_doubles_up_to_the_stall_period() {
        let limits = Limits {
            material_retry_ms: 1_000,
            stall_ms: 5_000,
            ..Limits::default()
        };
        let m = Materials::recover(&crate::store::MemStore::new([0; 16]), limits).unwrap();
        let waits: Vec<i64> = (1..=5).map(|r| m.backoff(r)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(m.backoff(u32::MAX), 5_000);
    }
}
