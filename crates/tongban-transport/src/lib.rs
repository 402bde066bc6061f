//! The transport of Tongban (通办): QUIC between office nodes, where a node's TLS
//! identity is its office key from the signed directory.
//!
//! # The model
//!
//! Every office node holds one ed25519 key, certified by the directory authority
//! (see `tongban_ledger::directory`). This crate makes that key the node's TLS
//! identity: an [`Endpoint`] presents a self-signed X.509 certificate over the office
//! key, and both sides of every connection verify the other with a custom rustls
//! verifier that extracts the peer's ed25519 key from its certificate and asks the
//! shared [`DirectoryHandle`] whether that key is certified and not revoked *now*.
//! The X.509 wrapping is only a carrier for the key: issuer, subject, names and
//! validity dates are ignored, because the directory alone says who is who and when.
//! The TLS 1.3 handshake signature (ring's ed25519) proves that the peer holds the
//! private half of the key its certificate carries.
//!
//! A client learns that the server admitted it only when the server sends a small
//! admission token on a unidirectional stream after its own check, so
//! [`Endpoint::connect`] returns a [`Connection`] only when *both* sides have
//! authenticated each other; [`Endpoint::accept`] yields only authenticated peers.
//! Each [`Connection`] exposes the peer's key and office certificate
//! ([`Connection::peer`]).
//!
//! Application data moves in length-prefixed frames ([`frame`]) on bidirectional
//! streams, one stream per batch. Backpressure is QUIC flow control with explicit
//! receive windows; the transport parameters are tuned for slow, lossy rural links
//! ([`EndpointConfig`]). [`connect_with_backoff`] reconnects with exponential backoff
//! and jitter ([`Backoff`]). [`relay::FaultRelay`] is a real UDP relay on loopback
//! that drops, delays, duplicates and partitions datagrams, for tests.
//!
//! The wire format and the reasons for each limit are in `docs/transport.md`.
//!
//! # What it must never do
//!
//! - **It never lets a byte of application data flow before the peer's key has been
//!   checked against the directory.** The check runs inside the TLS handshake, on
//!   both sides; a connection whose peer is unknown, expired or revoked fails the
//!   handshake and no stream is ever accepted from it. TLS session resumption and
//!   0-RTT are disabled, because a resumed session skips certificate verification.
//! - **It never interprets case content.** Frames are opaque bytes; the sync
//!   protocol above gives them meaning.
//! - **Only this crate knows about QUIC.** No quinn or rustls type appears in its
//!   public API; errors carry their own types and reasons.
//! - **It never allocates from an unchecked length.** A frame's declared length is
//!   checked against the configured maximum before any buffer is reserved, and the
//!   buffer then grows only as bytes actually arrive.

mod backoff;
mod config;
mod directory;
mod endpoint;
pub mod frame;
mod identity;
pub mod relay;

pub use backoff::{Backoff, BackoffConfig, ConnectCancelled, Connected, connect_with_backoff};
pub use config::{ConfigError, Congestion, EndpointConfig};
pub use directory::{DirectoryHandle, PeerRejection};
pub use endpoint::{
    BindError, ConnectError, Connection, ConnectionLost, Endpoint, FrameReceiver, FrameSender,
    PeerInfo, Refusal, StreamError, TransportStats,
};
pub use frame::{DEFAULT_MAX_FRAME_SIZE, FrameError};

/// The ALPN protocol both sides require: `tongban/1`.
pub const ALPN: &[u8] = b"tongban/1";
