//! What `node status` shows: the node, its peers and what it refused, as a
//! running node's engine reports it and as the store alone tells it when no node
//! runs. The control API carries [`NodeStatus`] as it is.

use serde::{Deserialize, Serialize};

use crate::local::{LocalNode, NodeError};

/// One peer as `node status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's office.
    pub office: String,
    /// Whether a session is open now: true only while the connection is live
    /// (a vanished peer is noticed within the transport's idle timeout, a
    /// restarted one at its first answer).
    pub connected: bool,
    /// Its address, when connected.
    pub address: Option<String>,
    /// The address configured for this hub in `[[upstream]]`, when it is one:
    /// configured hubs are listed whether or not they ever connected.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The last failure to connect, or why the last session ended.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When that was (ms since the epoch).
    #[serde(default)]
    pub last_error_ms: Option<i64>,
    /// Why the last attempt was refused, by the hub or by this node (an unknown
    /// or revoked key), in Chinese and English; cleared once a session opens.
    #[serde(default)]
    pub refusal: Option<String>,
    /// When both sides last had nothing left to send (ms since the epoch).
    pub last_synced_ms: Option<i64>,
    /// Cases of this node's log on the peer's route not yet acknowledged by it.
    pub waiting: u64,
    /// How far the peer acknowledged this node's log.
    pub acked_seq: u64,
    /// How far this node consumed the peer's log.
    pub consumed_seq: u64,
}

/// What `node status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This office.
    pub office: String,
    /// This office's public key (hex), so that a command talking to a running
    /// node can find its certificate in the directory.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Whether a daemon is running (false when read from the store directly).
    pub running: bool,
    /// The QUIC address, when running.
    pub listen: Option<String>,
    /// This node's change log position.
    pub latest_seq: u64,
    /// Cases held.
    pub cases: u64,
    /// The directory version held.
    pub directory_version: Option<u64>,
    /// Scanned materials the held cases list that this node does not hold yet
    /// (still to be fetched from route peers).
    #[serde(default)]
    pub materials_missing: u64,
    /// Cases this node flagged as duplicates (重复) of another case of the
    /// same person ([`crate::duplicates`]).
    #[serde(default)]
    pub duplicates: u64,
    /// Peers: every configured hub, those connected now and those remembered
    /// from earlier sessions.
    pub peers: Vec<PeerStatus>,
    /// Why the store cannot write now (a full disk, an I/O error), while it
    /// cannot: writes are refused, reads and sync from the store go on, and the
    /// node reopens the store by itself once the disk has room.
    #[serde(default)]
    pub store_error: Option<String>,
    /// The documents and messages this node refused from its peers since it
    /// started, newest last (at most [`MAX_REFUSALS`]): an unsigned or
    /// unauthorised change names the case, the change's office and the path.
    #[serde(default)]
    pub refusals: Vec<RefusalRecord>,
}

/// How many refusals `node status` keeps.
pub const MAX_REFUSALS: usize = 50;

/// One refusal, as `node status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The peer that sent it.
    pub peer: String,
    /// The case concerned, if any.
    pub case: Option<String>,
    /// Why, with the change, its office and the path for a refused change.
    pub reason: String,
}

/// The store meta key under which a peer's last status is kept across runs.
pub(crate) fn peer_status_key(peer: &str) -> String {
    format!("status.peer.{peer}")
}

/// What `node status` can tell from the store alone (no daemon running).
pub fn status_from_store(node: &LocalNode) -> Result<NodeStatus, NodeError> {
    let store = node.store();
    let latest_seq = store.latest_seq()?;
    let mut peers = Vec::new();
    if let Ok(directory) = node.directory() {
        for cert in &directory.certificates {
            let office = cert.cert.office.to_string();
            if let Some(bytes) = store.meta(&peer_status_key(&office))?
                && let Ok(mut peer) = serde_json::from_slice::<PeerStatus>(&bytes)
            {
                peer.connected = false;
                peer.address = None;
                peers.push(peer);
            }
        }
    }
    peers.sort_by(|a, b| a.office.cmp(&b.office));
    peers.dedup_by(|a, b| a.office == b.office);
    Ok(NodeStatus {
        office: node.office().to_string(),
        public_key: Some(node.public_key().to_string()),
        running: false,
        listen: None,
        latest_seq,
        cases: store.stats()?.cases,
        directory_version: node.directory().ok().map(|d| d.version),
        materials_missing: store.missing_materials()?.len() as u64,
        duplicates: store.flagged_cases(crate::duplicates::FLAG)?.len() as u64,
        peers,
        store_error: store.failure(),
        refusals: Vec::new(),
    })
}
