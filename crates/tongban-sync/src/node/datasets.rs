//! Signed reference datasets (the calendar, the county registry feeds): what a
//! node holds, what it tells a peer it holds, and the newer datasets it takes
//! from peers or from its own office and passes on.
//!
//! Each side of a session sends [`Message::Datasets`] (kind, scope, version of
//! every dataset it holds that the peer may receive) once the hellos are
//! exchanged, and each answers with the datasets it holds newer than the
//! other's. A dataset is taken only when it verifies against the directory
//! (`SignedDataset::verify`: the issuer `DatasetKind::issuer` names), carries a
//! valid payload, may reach this node (`tongban_domain::dataset::reaches`) and
//! is newer than the one held; it is then stored and offered to every peer it
//! may reach. Older or equal versions are ignored; anything else is refused.

use std::sync::Arc;

use tongban_domain::dataset::{DatasetKind, check_payload, reaches};
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::dataset::{DatasetError, SignedDataset};
use tongban_ledger::directory::Directory;
use tongban_ledger::keys::PublicKey;

use super::{Event, SessionId, SyncError, SyncNode, store_err};
use crate::store::{StoreWrite, SyncStore};
use crate::wire::{DatasetVersion, MAX_DATASETS, Message};

/// A node's list of held datasets as frames of at most `per_frame` entries:
/// every frame full but the last, which is shorter — empty when the list
/// fills its frames exactly — so the receiver knows where the list ends.
/// (A national hub holds every county's monthly payroll summaries: far more
/// than one frame's [`MAX_DATASETS`].)
pub(crate) fn list_frames(held: Vec<DatasetVersion>, per_frame: usize) -> Vec<Vec<DatasetVersion>> {
    let per_frame = per_frame.max(1);
    let mut frames: Vec<Vec<DatasetVersion>> = held
        .chunks(per_frame)
        .map(<[DatasetVersion]>::to_vec)
        .collect();
    if frames.last().is_none_or(|f| f.len() == per_frame) {
        frames.push(Vec::new());
    }
    frames
}

/// Takes one frame of a peer's list into what arrived so far; the whole list
/// once its last (shorter) frame is in.
pub(crate) fn assemble_list(
    incoming: &mut Vec<DatasetVersion>,
    frame: Vec<DatasetVersion>,
    per_frame: usize,
) -> Option<Vec<DatasetVersion>> {
    let last = frame.len() < per_frame.max(1);
    incoming.extend(frame);
    last.then(|| std::mem::take(incoming))
}

/// A dataset this node holds, verified.
#[derive(Debug, Clone)]
pub struct HeldDataset {
    /// The dataset as signed.
    pub signed: SignedDataset,
    /// Its encoding, as stored and sent.
    pub bytes: Arc<Vec<u8>>,
    /// What its payload holds, in words (`check_payload`).
    pub summary: String,
}

/// Why a dataset given locally was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// It does not verify.
    #[error(transparent)]
    Refused(#[from] DatasetError),
    /// Its payload is not what its kind carries.
    #[error("the {kind} payload is refused: {reason}")]
    Payload {
        /// Kind.
        kind: DatasetKind,
        /// Why.
        reason: String,
    },
    /// It may not reach this node.
    #[error("{kind} of {scope} does not reach this office")]
    NotHere {
        /// Kind.
        kind: DatasetKind,
        /// Scope.
        scope: String,
    },
    /// This node holds that version or a newer one.
    #[error("this node holds {kind} {scope} version {held}; version {given} is not newer")]
    NotNewer {
        /// Kind.
        kind: DatasetKind,
        /// Scope.
        scope: String,
        /// Held.
        held: u64,
        /// Given.
        given: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// Verifies a dataset for a node of `role` at `division`: signature and
/// issuer, payload, and that it may reach the node. The one check every path
/// (sync, a local import, loading the store) runs.
pub fn check_dataset(
    bytes: &[u8],
    directory: &Directory,
    authority: &PublicKey,
    role: Role,
    division: &str,
) -> Result<HeldDataset, AdoptError> {
    let signed = SignedDataset::verify(bytes, directory, authority)?;
    let d = &signed.dataset;
    let summary =
        check_payload(d.kind, &d.scope, &d.payload).map_err(|reason| AdoptError::Payload {
            kind: d.kind,
            reason,
        })?;
    if !reaches(d.kind, &d.scope, role, division) {
        return Err(AdoptError::NotHere {
            kind: d.kind,
            scope: d.scope.clone(),
        });
    }
    Ok(HeldDataset {
        signed,
        bytes: Arc::new(bytes.to_vec()),
        summary,
    })
}

impl SyncNode {
    /// The datasets this node holds, by kind and scope.
    pub fn datasets(&self) -> impl Iterator<Item = &HeldDataset> {
        self.datasets.values()
    }

    /// The dataset of `kind` for `scope`, if held.
    pub fn dataset(&self, kind: DatasetKind, scope: &str) -> Option<&HeldDataset> {
        self.datasets.get(&(kind, scope.to_string()))
    }

    /// The role and division the directory gives `office` (its latest
    /// certificate).
    fn facts_of(&self, office: &OfficeId) -> Option<(Role, String)> {
        self.directory
            .certificates_of(office)
            .last()
            .map(|cert| (cert.role, cert.division.clone()))
    }

    /// Tells the peer of `session` what this node holds that may reach it.
    pub(super) fn send_datasets(&mut self, session: SessionId) {
        let Some(peer) = self.sessions.get(&session).map(|s| s.peer.clone()) else {
            return;
        };
        let Some((role, division)) = self.facts_of(&peer) else {
            return;
        };
        let held: Vec<DatasetVersion> = self
            .datasets
            .values()
            .map(|h| &h.signed.dataset)
            .filter(|d| reaches(d.kind, &d.scope, role, &division))
            .map(|d| DatasetVersion {
                kind: d.kind.wire(),
                scope: d.scope.clone(),
                version: d.version,
            })
            .collect();
        for held in list_frames(held, MAX_DATASETS) {
            if let Err(err) = self.send(session, &Message::Datasets { held }) {
                tracing::warn!(%peer, %err, "the list of datasets held was not sent");
                return;
            }
        }
    }

    /// The peer's list: send it what this node holds newer.
    pub(super) fn on_datasets(&mut self, session: SessionId, held: Vec<DatasetVersion>) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(held) = assemble_list(&mut s.datasets_incoming, held, MAX_DATASETS) else {
            // More of the list is on its way.
            return;
        };
        // The peer's list is what it holds now: a dataset sent before and
        // refused (an issuer its directory did not certify yet) goes again.
        s.datasets_known = held
            .into_iter()
            .filter_map(|e| Some(((DatasetKind::from_wire(e.kind)?, e.scope), e.version)))
            .collect();
        let peer = s.peer.clone();
        self.offer_datasets(session, &peer);
    }

    /// Sends the peer of `session` every dataset that may reach it and that it
    /// is not known to hold.
    fn offer_datasets(&mut self, session: SessionId, peer: &OfficeId) {
        let Some((role, division)) = self.facts_of(peer) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let mut out = Vec::new();
        for ((kind, scope), held) in &self.datasets {
            let version = held.signed.dataset.version;
            let known = s.datasets_known.get(&(*kind, scope.clone())).copied();
            if reaches(*kind, scope, role, &division) && known.is_none_or(|k| k < version) {
                s.datasets_known.insert((*kind, scope.clone()), version);
                out.push(held.bytes.to_vec());
            }
        }
        for bytes in out {
            let _ = self.send(session, &Message::Dataset { bytes });
        }
    }

    pub(super) fn on_dataset<S: SyncStore>(
        &mut self,
        store: &mut S,
        session: SessionId,
        bytes: Vec<u8>,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        match self.adopt_dataset(store, bytes, now) {
            Ok(_) | Err(AdoptError::NotNewer { .. }) => Ok(()),
            Err(AdoptError::Sync(err)) => Err(err),
            Err(err) => {
                self.refused(session, None, format!("dataset refused: {err}"));
                Ok(())
            }
        }
    }

    /// Takes a dataset given locally (`tongban feed publish`, `calendar
    /// publish` into a running node) or by a peer: checked like every dataset
    /// ([`check_dataset`]), stored when newer than the one held, and passed on
    /// to every peer it may reach. Returns its version.
    pub fn adopt_dataset<S: SyncStore>(
        &mut self,
        store: &mut S,
        bytes: Vec<u8>,
        _now: Timestamp,
    ) -> Result<u64, AdoptError> {
        let held = check_dataset(
            &bytes,
            &self.directory,
            &self.authority,
            self.facts.role,
            &self.facts.division,
        )?;
        let d = &held.signed.dataset;
        let key = (d.kind, d.scope.clone());
        if let Some(current) = self.datasets.get(&key) {
            let version = current.signed.dataset.version;
            if version >= d.version {
                return Err(AdoptError::NotNewer {
                    kind: d.kind,
                    scope: d.scope.clone(),
                    held: version,
                    given: d.version,
                });
            }
        }
        store
            .commit(vec![StoreWrite::Dataset {
                kind: d.kind.wire(),
                scope: d.scope.clone(),
                bytes,
            }])
            .map_err(store_err)?;
        let (kind, scope, version) = (d.kind, d.scope.clone(), d.version);
        if kind == DatasetKind::Calendar {
            self.apply_calendar(&held);
        }
        tracing::info!(kind = kind.code(), scope, version, "dataset adopted");
        self.datasets.insert(key, held);
        self.events.push_back(Event::DatasetUpdated {
            kind,
            scope,
            version,
        });
        let sessions: Vec<(SessionId, OfficeId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.remote.is_some())
            .map(|(id, s)| (*id, s.peer.clone()))
            .collect();
        for (id, peer) in sessions {
            self.offer_datasets(id, &peer);
        }
        Ok(version)
    }

    /// Counts deadlines with a newer signed calendar: its years replace the
    /// same years of the calendar in force.
    fn apply_calendar(&mut self, held: &HeldDataset) {
        let Ok(text) = std::str::from_utf8(&held.signed.dataset.payload) else {
            return;
        };
        let mut calendar = (*self.calendar).clone();
        // check_payload parsed it already.
        if calendar.import_text(text).is_ok() {
            self.calendar = Arc::new(calendar);
        }
    }

    /// The datasets `store` holds that still verify against the directory in
    /// force and may reach this node; the others are left out, with a warning.
    pub(super) fn load_datasets<S: SyncStore>(&mut self, store: &S) -> Result<(), SyncError> {
        for bytes in store.datasets().map_err(store_err)? {
            match check_dataset(
                &bytes,
                &self.directory,
                &self.authority,
                self.facts.role,
                &self.facts.division,
            ) {
                Ok(held) => {
                    let d = &held.signed.dataset;
                    let key = (d.kind, d.scope.clone());
                    if held.signed.dataset.kind == DatasetKind::Calendar {
                        self.apply_calendar(&held);
                    }
                    self.datasets.insert(key, held);
                }
                Err(err) => tracing::warn!(%err, "a stored dataset is not held"),
            }
        }
        Ok(())
    }

    /// The working-day calendar in force: the configured one with the signed
    /// calendar's years over it.
    pub fn calendar(&self) -> &Arc<tongban_domain::calendar::Calendar> {
        &self.calendar
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn list(n: usize) -> Vec<DatasetVersion> {
        (0..n)
            .map(|i| DatasetVersion {
                kind: 7,
                scope: format!("130102:{}", 2000 + i),
                version: 1,
            })
            .collect()
    }

    /// A list of any length goes in frames the receiver puts back together
    /// whole, exactly once, at its last frame.
    #[test]
    fn a_long_list_of_datasets_goes_in_frames_and_arrives_whole() {
        for n in [0, 1, 2, 3, 4, 6, 7, 10] {
            let frames = list_frames(list(n), 3);
            assert!(frames.iter().all(|f| f.len() <= 3), "{n}");
            assert!(
                frames.last().unwrap().len() < 3,
                "{n}: the last frame is shorter"
            );
            let mut incoming = Vec::new();
            let mut whole = None;
            for (i, frame) in frames.iter().enumerate() {
                let got = assemble_list(&mut incoming, frame.clone(), 3);
                assert_eq!(got.is_some(), i + 1 == frames.len(), "{n}: frame {i}");
                whole = whole.or(got);
            }
            assert_eq!(whole.unwrap(), list(n), "{n}");
            assert!(incoming.is_empty());
        }
        // At the wire's limit: 4,096 entries take two frames, the second empty.
        let frames = list_frames(list(MAX_DATASETS), MAX_DATASETS);
        assert_eq!(frames.len(), 2);
        assert!(frames[1].is_empty());
    }
}
