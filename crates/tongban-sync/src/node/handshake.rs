//! The hello exchange that opens a session: protocol version, the peer's
//! identity, its log incarnation and directory version, and the cursors each
//! side resumes from.

use tongban_domain::ids::Timestamp;

use super::{Event, Remote, SessionId, SyncError, SyncNode};
use crate::store::SyncStore;
use crate::wire::{GoodbyeReason, Hello, Message, PROTOCOL_VERSION};

impl SyncNode {
    pub(super) fn send_hello(&mut self, session: SessionId) {
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

    pub(super) fn on_hello<S: SyncStore>(
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
        self.send_datasets(session);
        self.events.push_back(Event::Connected { session, peer });
        self.fill_outbound(store, session, now)
    }
}
