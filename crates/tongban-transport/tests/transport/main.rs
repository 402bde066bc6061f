//! Integration tests of the transport over real QUIC on 127.0.0.1 (port 0 everywhere,
//! so tests run in parallel).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod backoff;
mod faults;
mod frames;
mod handshake;
mod support;
