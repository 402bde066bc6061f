//! The Automerge sync of documents both sides hold in part: per (peer, case)
//! sync states, persisted so an exchange resumes from the last shared heads, and
//! the `DocSync` messages.

use automerge::sync::{self, SyncDoc};
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};

use super::{SessionId, SyncError, SyncNode, store_err};
use crate::route::on_route;
use crate::store::{StoreWrite, SyncStore, heads_of};
use crate::wire::Message;

impl SyncNode {
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
    pub(super) fn start_sync<S: SyncStore>(
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

    pub(super) fn on_doc_sync<S: SyncStore>(
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
                    // Refused: forget this exchange and ask for the whole
                    // document instead: an Automerge exchange can
                    // deliver a writer's change without the signature after it
                    // (a Bloom-filter false positive says this node has the
                    // signature already), which admission rightly refuses,
                    // and the same filter would say so again every round.
                    // Asked at once: a whole document that is refused too
                    // is retried only after the stall period, like any other.
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.whole.insert(case.clone());
                    }
                    self.request(store, session, vec![case], now)?;
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

    /// A whole document just stored (asked for with `WantDocs`) may be older
    /// than what a peer announced meanwhile — an inventory naming newer heads
    /// arrived while the document was on its way or being admitted, and the
    /// case was not asked for again because it was being fetched. Every session
    /// still waiting for other heads of the case, with no exchange of it under
    /// way, starts an Automerge sync of it now rather than after a stall.
    pub(super) fn sync_newer<S: SyncStore>(
        &mut self,
        store: &mut S,
        case: &CaseId,
    ) -> Result<(), SyncError> {
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
}
