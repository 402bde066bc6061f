//! Reconnection: exponential backoff with jitter, and the loop that uses it.
//!
//! The schedule is this crate's own (a dozen lines) and its random draws come
//! from `fastrand`. The backoff crates were weighed and do not fit: `backoff` is
//! unmaintained (RUSTSEC-2025-0012) and spreads delays on both sides of the
//! interval; `backon` adds its jitter on top of the delay, so a delay could reach
//! twice the cap the operator configured (`max_backoff_secs`), and it offers no
//! reset after a success nor the ceiling that `node status` and the tests read.
//! Here no delay exceeds the cap, the jitter is taken off the ceiling ("equal
//! jitter"), and a seed replays a schedule exactly.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::endpoint::{ConnectError, Connection, Endpoint};

/// The shape of a backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The ceiling of the first delay (default 500 ms).
    pub base: Duration,
    /// No delay exceeds this (default 60 s): a hub that comes back is found
    /// within a minute, and a down hub costs one handshake attempt a minute.
    pub cap: Duration,
    /// The fraction of each ceiling that is randomly taken off, in `[0, 1]`
    /// (default 0.5, "equal jitter"): nodes cut off together by one outage do not
    /// all come back in the same instant.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

impl BackoffConfig {
    /// A schedule with this base and cap and the default jitter.
    pub fn new(base: Duration, cap: Duration) -> BackoffConfig {
        BackoffConfig {
            base,
            cap,
            ..BackoffConfig::default()
        }
    }

    /// The same schedule with another jitter fraction.
    pub fn with_jitter(self, jitter: f64) -> BackoffConfig {
        BackoffConfig { jitter, ..self }
    }
}

/// Exponential backoff with jitter: a pure value, driven by the caller.
///
/// The `n`th delay after a reset (counting from 0) has the *ceiling*
/// `min(cap, base · 2ⁿ)`, which never decreases, and is drawn uniformly from
/// `[ceiling · (1 − jitter), ceiling]` by a generator seeded by the caller, so a
/// schedule is reproducible in tests.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// Parts of 2³² of the ceiling that may be taken off (`jitter` as a fixed-point
    /// fraction, so the arithmetic is exact).
    jitter_fixed: u64,
    attempt: u32,
    /// The jitter's generator (fastrand's wyrand): seeded by the caller, so a
    /// schedule replays in tests; not for cryptography.
    rng: fastrand::Rng,
}

impl Backoff {
    /// A schedule whose jitter comes from a generator seeded with `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Backoff {
        let jitter = if config.jitter.is_nan() {
            0.0
        } else {
            config.jitter.clamp(0.0, 1.0)
        };
        Backoff {
            config: BackoffConfig { jitter, ..config },
            jitter_fixed: (jitter * (1u64 << 32) as f64) as u64,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A schedule seeded from the process's randomness, for production use.
    pub fn with_random_seed(config: BackoffConfig) -> Backoff {
        Backoff::new(config, fastrand::u64(..))
    }

    /// The configuration (with `jitter` clamped to `[0, 1]`).
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered delay of the `attempt`th retry: `min(cap, base · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let base = self.config.base.as_nanos();
        let cap = self.config.cap.as_nanos();
        let factor = 1u128.checked_shl(attempt.min(127)).unwrap_or(u128::MAX);
        let nanos = base.saturating_mul(factor).min(cap);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The next delay to wait before retrying, and one more attempt counted.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling =
            u128::from(u64::try_from(self.ceiling(self.attempt).as_nanos()).unwrap_or(u64::MAX));
        self.attempt = self.attempt.saturating_add(1);
        // ceiling · jitter · u with u uniform in [0, 1), in 64.32 fixed point.
        let spread = (ceiling * u128::from(self.jitter_fixed)) >> 32;
        let draw = u128::from(self.rng.u32(..));
        let off = (spread * draw) >> 32;
        let nanos = ceiling - off.min(ceiling);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Back to the first delay: call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A connection made by [`connect_with_backoff`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Connected {
    /// The connection.
    pub connection: Connection,
    /// How many attempts it took (1 if the first succeeded).
    pub attempts: u32,
}

/// [`connect_with_backoff`] was cancelled before a connection was made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("reconnecting was cancelled after {attempts} attempts")]
#[non_exhaustive]
pub struct ConnectCancelled {
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's failure, if one finished.
    pub last_error: Option<ConnectError>,
}

/// Connects to `addr`, retrying after each failure with the delays of `backoff`,
/// until a connection is made or `cancel` completes. Every failure is retried,
/// including refusals by the directory (a directory update may admit the key
/// later). On success `backoff` is reset.
///
/// Each attempt is bounded by the endpoint's `connect_timeout`, so a partition
/// costs at most that long per attempt.
pub async fn connect_with_backoff(
    endpoint: &Endpoint,
    addr: SocketAddr,
    backoff: &mut Backoff,
    cancel: impl Future<Output = ()>,
) -> Result<Connected, ConnectCancelled> {
    let mut cancel = std::pin::pin!(cancel);
    let mut attempts = 0u32;
    let mut last_error = None;
    loop {
        attempts = attempts.saturating_add(1);
        let outcome = tokio::select! {
            biased;
            () = &mut cancel => return Err(ConnectCancelled { attempts: attempts - 1, last_error }),
            outcome = endpoint.connect(addr) => outcome,
        };
        match outcome {
            Ok(connection) => {
                backoff.reset();
                return Ok(Connected {
                    connection,
                    attempts,
                });
            }
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::info!(%addr, attempt = attempts, error = %err, ?delay, "connect failed; retrying");
                last_error = Some(err);
                tokio::select! {
                    biased;
                    () = &mut cancel => return Err(ConnectCancelled { attempts, last_error }),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_to_the_cap() {
        let mut backoff = Backoff::new(
            BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.0),
            1,
        );
        let delays: Vec<u128> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }
}
