//! The change logs pushed as inventories, the cursors into the peer's log and
//! their acknowledgement, and fetch requests: asking for documents an inventory
//! names (`WantDocs`, or an Automerge sync of a partly held one) and answering
//! a peer's `WantDocs` with `Docs` frames.

use std::collections::{BTreeMap, BTreeSet};

use automerge::Automerge;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Timestamp};

use super::{InBatch, SessionId, SyncError, SyncNode, Work, store_err};
use crate::route::{CaseRoute, attestation_on_route, on_route};
use crate::store::{StoreWrite, SyncStore, has_change};
use crate::wire::{
    Cursor, Hash32, Incarnation, Inventory, InventoryEntry, MAX_DOCS, MAX_HEADS, MAX_PAYLOAD,
    MAX_WANTS, Message,
};

/// Bytes a document adds to a `Docs` frame besides its save: the case id with its
/// length byte, and the blob length.
const DOC_ENTRY_OVERHEAD: usize = 1 + 64 + 4;

/// Attestation bytes after which an inventory ends (the log's next entries go
/// in the next one): far below the frame limit, so a frame stays quick to
/// send and check.
const ATTESTATION_FRAME_BYTES: usize = 512 << 10;

/// The route a case id and a domicile give.
fn route_from(case: &CaseId, domicile: DivisionCode) -> Option<CaseRoute> {
    let acceptance = DivisionCode::parse(case.acceptance_township()).ok()?;
    CaseRoute::new(acceptance, domicile).ok()
}

impl SyncNode {
    /// Sends inventories while the window allows and the log has more.
    pub(super) fn fill_outbound<S: SyncStore>(
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
            if log.is_empty() {
                return Ok(());
            }
            let mut upto = s.out_sent;
            let mut entries = Vec::new();
            let mut attestations = Vec::new();
            let mut attestation_bytes = 0usize;
            for entry in log {
                if attestation_bytes >= ATTESTATION_FRAME_BYTES {
                    // The rest goes in the next inventory.
                    break;
                }
                upto = entry.seq;
                let Some(route) = entry.route else { continue };
                if let Some(office) = &entry.attestation {
                    if !attestation_on_route(&s.peer_place, &route)
                        || entry
                            .heads
                            .first()
                            .is_some_and(|h| s.peer_has_attestation.remove(h))
                    {
                        continue;
                    }
                    if let Some(bytes) =
                        store.attestation(&entry.case, office).map_err(store_err)?
                    {
                        attestation_bytes += bytes.len() + 4;
                        attestations.push(bytes);
                    }
                    continue;
                }
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
                attestations,
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

    pub(super) fn pump_all<S: SyncStore>(
        &mut self,
        store: &S,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.fill_outbound(store, id, now)?;
        }
        Ok(())
    }

    pub(super) fn on_ack<S: SyncStore>(
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

    pub(super) fn on_inventory<S: SyncStore>(
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
        let attested = self.admit_attestations(session, inventory.attestations);
        if !attested.is_empty() {
            store.commit(attested).map_err(store_err)?;
            // What was stored is logged here: offer it on.
            self.pump_all(store, now)?;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
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

    /// The attestations of an inventory this node keeps: each decoded, on its
    /// way here ([`attestation_on_route`]) and made by an office of its case
    /// with a valid signature and key (`check_attestation`). Every other one is
    /// refused and logged; none of them holds the inventory up.
    fn admit_attestations(&mut self, session: SessionId, items: Vec<Vec<u8>>) -> Vec<StoreWrite> {
        use tongban_ledger::supervision::{SignedAttestation, check_attestation};
        let mut writes = Vec::new();
        let mut refusals = Vec::new();
        for bytes in items {
            let signed = match SignedAttestation::decode(&bytes) {
                Ok(signed) => signed,
                Err(err) => {
                    refusals.push((None, format!("attestation does not decode: {err}")));
                    continue;
                }
            };
            let a = &signed.attestation;
            let route = DivisionCode::parse(&a.domicile)
                .ok()
                .and_then(|d| route_from(&a.case, d));
            let Some(route) = route else {
                refusals.push((
                    Some(a.case.clone()),
                    "attestation has no valid route".into(),
                ));
                continue;
            };
            if !attestation_on_route(&self.place, &route) {
                refusals.push((
                    Some(a.case.clone()),
                    "attestation of a case off this node's region".into(),
                ));
                continue;
            }
            if let Err(reason) = check_attestation(&self.directory, &signed) {
                refusals.push((Some(a.case.clone()), reason));
                continue;
            }
            if let Some(s) = self.sessions.get_mut(&session) {
                s.peer_has_attestation
                    .insert(*blake3::hash(&bytes).as_bytes());
            }
            writes.push(StoreWrite::Attestation {
                case: a.case.clone(),
                office: a.office.clone(),
                at: a.at,
                domicile: route.domicile(),
                bytes,
            });
        }
        for (case, reason) in refusals {
            self.refused(session, case, reason);
        }
        writes
    }

    /// Asks again for documents still missing: their saves when nothing is held
    /// here, a fresh Automerge sync otherwise.
    pub(super) fn request<S: SyncStore>(
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
            // A case held in part goes by Automerge sync, unless an exchange
            // of it was refused: then the whole document, merged here.
            let whole = s.whole.remove(&case);
            if whole || store.heads(&case).map_err(store_err)?.is_none() {
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

    /// The head sets sessions wait for on `case` that `doc` contains.
    pub(super) fn pending_heads_in(
        &self,
        case: &CaseId,
        has_change: &dyn Fn(&Hash32) -> bool,
    ) -> Vec<Vec<Hash32>> {
        let mut held: Vec<Vec<Hash32>> = Vec::new();
        for s in self.sessions.values() {
            for batch in s.batches.values() {
                if let Some(heads) = batch.pending.get(case)
                    && !held.contains(heads)
                    && heads.iter().all(has_change)
                {
                    held.push(heads.clone());
                }
            }
        }
        held
    }

    /// Every session waiting for changes of `case` that `doc` now holds stops
    /// waiting; cursors move where they can.
    pub(super) fn case_settled<S: SyncStore>(
        &mut self,
        store: &mut S,
        case: &CaseId,
        doc: &Automerge,
    ) -> Result<(), SyncError> {
        self.settle(store, case, &|heads| {
            heads.iter().all(|h| has_change(doc, h))
        })
    }

    /// A case this node refused as `session` offered it. The session's cursor
    /// moves past it — waiting would hold every later entry of the peer's log
    /// behind one document the peer altered — and the case is asked for again
    /// after the stall period: a forgery in transit heals from the honest copy,
    /// and a peer whose own copy is altered is refused again, holding nothing
    /// else up.
    pub(super) fn give_up<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        case: &CaseId,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Ok(());
        };
        let mut hit = false;
        for batch in s.batches.values_mut() {
            hit |= batch.pending.remove(case).is_some();
        }
        s.retry.insert(case.clone(), Work { asked_at: now });
        if hit {
            self.advance_cursor(store, session)?;
        }
        Ok(())
    }

    /// Every session waiting for head sets of `case` that `has` says are stored
    /// stops waiting; cursors move where they can.
    pub(super) fn settle<S: SyncStore>(
        &mut self,
        store: &mut S,
        case: &CaseId,
        has: &dyn Fn(&Vec<Hash32>) -> bool,
    ) -> Result<(), SyncError> {
        let mut touched = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            // Stored now: no longer asked for again after a refusal.
            s.retry.remove(case);
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

    pub(super) fn on_want_docs<S: SyncStore>(
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
}
