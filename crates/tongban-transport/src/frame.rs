//! Length-prefixed frames: the unit of application data on a stream.
//!
//! A frame is a 4-byte big-endian unsigned length `n` followed by `n` bytes of
//! payload. A stream carries zero or more frames and ends cleanly only at a frame
//! boundary. The payload is opaque here: the sync protocol above decides what it
//! means.
//!
//! The length is checked against the configured maximum before anything is
//! allocated, and the payload buffer then grows only as bytes arrive, so a peer
//! that declares a large frame and sends little costs little memory.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::endpoint::ConnectionLost;

/// The default (and suggested) largest frame: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16 * 1024 * 1024;

/// Bytes reserved for a payload before its first bytes arrive.
const FIRST_RESERVATION: usize = 64 * 1024;

/// Why a frame could not be sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame to send is larger than the limit; nothing was sent.
    #[error("refusing to send a frame of {len} bytes: the limit is {max} bytes")]
    OutgoingTooLarge {
        /// The payload length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The peer declared a frame larger than the limit; nothing was allocated and
    /// the stream was stopped.
    #[error("the peer sent a frame of {len} bytes: the limit is {max} bytes")]
    IncomingTooLarge {
        /// The declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended after {received} of {expected} bytes of a frame")]
    Truncated {
        /// Bytes the frame (or its 4-byte header) needed.
        expected: u64,
        /// Bytes that arrived.
        received: u64,
    },
    /// The peer stopped reading the stream (for example because a frame was too
    /// large for it); the code says why.
    #[error("the peer stopped the stream with code {code}")]
    StoppedByPeer {
        /// The application error code (see `docs/transport.md`).
        code: u64,
    },
    /// The peer abandoned the stream it was sending.
    #[error("the peer reset the stream with code {code}")]
    ResetByPeer {
        /// The application error code.
        code: u64,
    },
    /// The stream was already finished or reset locally.
    #[error("the stream is already closed")]
    StreamClosed,
    /// The connection was lost.
    #[error(transparent)]
    ConnectionLost(#[from] ConnectionLost),
    /// Another I/O failure (for frames over a non-QUIC reader or writer).
    #[error("stream I/O failed: {reason}")]
    Io {
        /// The error's text.
        reason: String,
    },
}

impl FrameError {
    /// Maps an I/O error from a stream, recovering quinn's typed errors where the
    /// stream is a QUIC stream.
    pub(crate) fn from_io(err: io::Error) -> FrameError {
        if let Some(inner) = err.get_ref() {
            if let Some(write) = inner.downcast_ref::<quinn::WriteError>() {
                return FrameError::from_write(write.clone());
            }
            if let Some(read) = inner.downcast_ref::<quinn::ReadError>() {
                return FrameError::from_read(read.clone());
            }
        }
        FrameError::Io {
            reason: err.to_string(),
        }
    }

    pub(crate) fn from_write(err: quinn::WriteError) -> FrameError {
        match err {
            quinn::WriteError::Stopped(code) => FrameError::StoppedByPeer {
                code: code.into_inner(),
            },
            quinn::WriteError::ConnectionLost(lost) => {
                FrameError::ConnectionLost(ConnectionLost::from_quinn(lost))
            }
            quinn::WriteError::ClosedStream => FrameError::StreamClosed,
            quinn::WriteError::ZeroRttRejected => FrameError::Io {
                reason: "0-RTT rejected".to_string(),
            },
        }
    }

    pub(crate) fn from_read(err: quinn::ReadError) -> FrameError {
        match err {
            quinn::ReadError::Reset(code) => FrameError::ResetByPeer {
                code: code.into_inner(),
            },
            quinn::ReadError::ConnectionLost(lost) => {
                FrameError::ConnectionLost(ConnectionLost::from_quinn(lost))
            }
            quinn::ReadError::ClosedStream => FrameError::StreamClosed,
            other => FrameError::Io {
                reason: other.to_string(),
            },
        }
    }
}

/// Writes one frame. A payload larger than `max_frame_size` is refused before
/// any byte is written.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
    max_frame_size: u32,
) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= max_frame_size)
        .ok_or(FrameError::OutgoingTooLarge {
            len: payload.len(),
            max: max_frame_size,
        })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(FrameError::from_io)?;
    writer
        .write_all(payload)
        .await
        .map_err(FrameError::from_io)?;
    Ok(())
}

/// Reads one frame: `Ok(None)` when the stream ended cleanly before a new frame.
/// A declared length above `max_frame_size` is refused before any allocation.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_size: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        let n = reader
            .read(&mut header[filled..])
            .await
            .map_err(FrameError::from_io)?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                expected: header.len() as u64,
                received: filled as u64,
            });
        }
        filled += n;
    }
    let declared = u32::from_be_bytes(header);
    if declared > max_frame_size {
        return Err(FrameError::IncomingTooLarge {
            len: declared,
            max: max_frame_size,
        });
    }
    let len = declared as usize;
    let mut payload: Vec<u8> = Vec::with_capacity(len.min(FIRST_RESERVATION));
    let mut limited = reader.take(u64::from(declared));
    while payload.len() < len {
        if payload.len() == payload.capacity() {
            // Double, but never past the declared length: the final buffer is
            // exactly the frame, and memory follows what actually arrived.
            let target = payload.capacity().saturating_mul(2).clamp(1, len);
            payload.reserve_exact(target - payload.len());
        }
        let n = limited
            .read_buf(&mut payload)
            .await
            .map_err(FrameError::from_io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: u64::from(declared) + 4,
                received: payload.len() as u64 + 4,
            });
        }
    }
    Ok(Some(payload))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn frames_round_trip_over_a_pipe() {
        run(async {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            let writer = tokio::spawn(async move {
                for size in [0usize, 1, 4095, 70_000, 300_000] {
                    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                    write_frame(&mut a, &payload, 1 << 20).await.unwrap();
                }
            });
            for size in [0usize, 1, 4095, 70_000, 300_000] {
                let frame = read_frame(&mut b, 1 << 20).await.unwrap().unwrap();
                assert_eq!(frame.len(), size);
                assert_eq!(frame.capacity(), size, "the buffer is exactly the frame");
                assert!(frame.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
            }
            writer.await.unwrap();
            assert_eq!(read_frame(&mut b, 1 << 20).await.unwrap(), None);
        });
    }

    #[test]
    fn limits_and_truncation_are_typed_errors() {
        run(async {
            let mut sink = Vec::new();
            assert_eq!(
                write_frame(&mut sink, &[0; 11], 10).await,
                Err(FrameError::OutgoingTooLarge { len: 11, max: 10 })
            );
            assert!(sink.is_empty(), "nothing is written for a refused frame");

            // A header declaring 4 GiB - 1 is refused without allocating.
            let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
            assert_eq!(
                read_frame(&mut huge, DEFAULT_MAX_FRAME_SIZE).await,
                Err(FrameError::IncomingTooLarge {
                    len: u32::MAX,
                    max: DEFAULT_MAX_FRAME_SIZE
                })
            );

            let mut short_header: &[u8] = &[0, 0];
            assert_eq!(
                read_frame(&mut short_header, 100).await,
                Err(FrameError::Truncated {
                    expected: 4,
                    received: 2
                })
            );
            let mut short_body: &[u8] = &[0, 0, 0, 5, 1, 2];
            assert_eq!(
                read_frame(&mut short_body, 100).await,
                Err(FrameError::Truncated {
                    expected: 9,
                    received: 6
                })
            );
        });
    }
}
