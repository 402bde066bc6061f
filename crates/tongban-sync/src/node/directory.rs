//! The office directory: a newer signed directory received from a peer or given
//! locally is verified against the authority, stored, passed on to the peers,
//! and what the older one refused is asked for again.

use std::sync::Arc;

use tongban_domain::ids::{CaseId, Timestamp};
use tongban_ledger::directory::Directory;

use super::{Event, SessionId, SyncError, SyncNode, store_err};
use crate::store::{StoreWrite, SyncStore};
use crate::wire::Message;

impl SyncNode {
    pub(super) fn on_directory<S: SyncStore>(
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
            // A dataset refused under the older directory (an issuer it did
            // not certify yet) is sent again once the peer sees this list.
            if self.sessions.get(&id).is_some_and(|s| s.remote.is_some()) {
                self.send_datasets(id);
            }
        }
        Ok(())
    }
}
