//! Endpoint configuration: the QUIC transport parameters, tuned for slow and lossy
//! rural links, and the frame limit.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::frame::DEFAULT_MAX_FRAME_SIZE;

const MIB: u32 = 1024 * 1024;

/// The congestion controller of every connection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Congestion {
    /// CUBIC (RFC 9438), quinn's default: loss-based, conservative on shared links.
    Cubic,
    /// BBR (v1, quinn's experimental implementation): model-based, keeps its rate
    /// through random, non-congestive loss such as a weak mobile or radio link.
    Bbr,
}

/// How an endpoint's connections behave. `EndpointConfig::default()` is tuned for
/// township offices on slow rural links; `docs/transport.md` explains each value.
///
/// Fields are public so a caller can adjust one value after `default()`; the
/// struct is `#[non_exhaustive]` so new fields can be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// How often an otherwise idle connection sends a PING (default 1 s). It
    /// keeps NAT bindings open (carrier-grade NATs often drop idle UDP after
    /// 30 s), and it is how a node learns that its peer restarted: the restarted
    /// peer answers the next PING with a stateless reset, so the connection is
    /// dropped and remade within about a second. It costs about 100 bytes a
    /// second each way on an idle connection, nothing on a busy one.
    pub keep_alive_interval: Duration,
    /// A connection with no packet from the peer for this long is dead (default
    /// 5 s): a peer that vanished (power cut, cable pulled) shows as not
    /// connected within seconds, and reconnecting starts. Five keep-alives fit
    /// in it, so a few lost ones do not end the connection; on a slow link
    /// quinn never declares a connection idle before three probe timeouts, so
    /// the effective timeout stretches with the round-trip time.
    pub idle_timeout: Duration,
    /// The round-trip estimate before the first measurement (default 500 ms, above
    /// RFC 9002's 333 ms), so a handshake over a high-latency link is not
    /// retransmitted needlessly.
    pub initial_rtt: Duration,
    /// How many bytes the peer may send on one stream ahead of our reading
    /// (default 2 MiB).
    pub stream_receive_window: u32,
    /// How many bytes the peer may send on all streams of a connection ahead of our
    /// reading (default 8 MiB): the bound on what one peer can make us buffer.
    pub connection_receive_window: u32,
    /// How many unacknowledged bytes we keep in flight on a connection (default
    /// 8 MiB).
    pub send_window: u64,
    /// How many bidirectional streams (batches) the peer may have open at once
    /// (default 32).
    pub max_concurrent_streams: u32,
    /// The largest frame accepted or sent (default 16 MiB). Larger frames are
    /// refused with [`crate::FrameError`] before any allocation.
    pub max_frame_size: u32,
    /// How long [`crate::Endpoint::connect`] waits for the handshake and the
    /// server's admission, and how long a server waits for an incoming handshake
    /// (default 30 s).
    pub connect_timeout: Duration,
    /// The requested UDP socket send and receive buffer size in bytes (default
    /// 2 MiB; the kernel may cap it); `0` leaves the operating system's default.
    pub udp_buffer_size: usize,
    /// The congestion controller (default [`Congestion::Bbr`]): on a link with
    /// 15% random loss and 40 ms round trips, 5 MiB took 65 s with CUBIC and 3 s
    /// with BBR (see `docs/transport.md`).
    pub congestion: Congestion,
    /// Use quinn's own transport defaults instead of the values above (for
    /// comparison in benchmarks). The frame limit and timeouts still apply.
    pub(crate) quinn_transport_defaults: bool,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            keep_alive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            initial_rtt: Duration::from_millis(500),
            stream_receive_window: 2 * MIB,
            connection_receive_window: 8 * MIB,
            send_window: 8 * u64::from(MIB),
            max_concurrent_streams: 32,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            connect_timeout: Duration::from_secs(30),
            udp_buffer_size: 2 * MIB as usize,
            congestion: Congestion::Bbr,
            quinn_transport_defaults: false,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The keep-alive interval must be shorter than the idle timeout, or the
    /// connection would time out between two keep-alives.
    #[error("keep-alive interval {keep_alive:?} must be shorter than the idle timeout {idle:?}")]
    KeepAliveNotShorterThanIdle {
        /// The keep-alive interval.
        keep_alive: Duration,
        /// The idle timeout.
        idle: Duration,
    },
    /// The idle timeout cannot be expressed as a QUIC transport parameter.
    #[error("idle timeout {0:?} is out of range")]
    IdleTimeout(Duration),
    /// A window, stream count or frame limit is zero, or a stream window exceeds
    /// the connection window.
    #[error("{0}")]
    Limits(&'static str),
}

impl EndpointConfig {
    /// The same configuration but with quinn's own transport defaults (windows,
    /// RTT estimate, keep-alive off, 30 s idle timeout), for comparison in
    /// benchmarks.
    pub fn with_quinn_transport_defaults(mut self) -> EndpointConfig {
        self.quinn_transport_defaults = true;
        self
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keep_alive_interval >= self.idle_timeout {
            return Err(ConfigError::KeepAliveNotShorterThanIdle {
                keep_alive: self.keep_alive_interval,
                idle: self.idle_timeout,
            });
        }
        quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| ConfigError::IdleTimeout(self.idle_timeout))?;
        if self.stream_receive_window == 0
            || self.connection_receive_window == 0
            || self.send_window == 0
        {
            return Err(ConfigError::Limits("flow-control windows must be positive"));
        }
        if self.stream_receive_window > self.connection_receive_window {
            return Err(ConfigError::Limits(
                "the stream receive window must not exceed the connection receive window",
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::Limits(
                "at least one concurrent stream must be allowed",
            ));
        }
        if self.max_frame_size == 0 {
            return Err(ConfigError::Limits("the frame limit must be positive"));
        }
        Ok(())
    }

    /// The quinn transport configuration these values describe.
    pub(crate) fn quinn_transport(&self) -> Result<Arc<quinn::TransportConfig>, ConfigError> {
        self.validate()?;
        let mut transport = quinn::TransportConfig::default();
        // One unidirectional stream per connection carries the server's admission
        // token; application data only uses bidirectional streams.
        transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(1));
        if self.quinn_transport_defaults {
            return Ok(Arc::new(transport));
        }
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| ConfigError::IdleTimeout(self.idle_timeout))?;
        transport
            .keep_alive_interval(Some(self.keep_alive_interval))
            .max_idle_timeout(Some(idle))
            .initial_rtt(self.initial_rtt)
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window))
            .receive_window(quinn::VarInt::from_u32(self.connection_receive_window))
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_concurrent_streams))
            .datagram_receive_buffer_size(None);
        match self.congestion {
            Congestion::Cubic => {
                transport.congestion_controller_factory(Arc::new(
                    quinn::congestion::CubicConfig::default(),
                ));
            }
            Congestion::Bbr => {
                transport.congestion_controller_factory(Arc::new(
                    quinn::congestion::BbrConfig::default(),
                ));
            }
        }
        Ok(Arc::new(transport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        assert_eq!(EndpointConfig::default().validate(), Ok(()));
        assert!(EndpointConfig::default().quinn_transport().is_ok());

        let mut config = EndpointConfig::default();
        config.keep_alive_interval = config.idle_timeout;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::KeepAliveNotShorterThanIdle { .. })
        ));

        let mut config = EndpointConfig::default();
        config.stream_receive_window = config.connection_receive_window + 1;
        assert!(matches!(config.validate(), Err(ConfigError::Limits(_))));

        let config = EndpointConfig {
            max_frame_size: 0,
            ..EndpointConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::Limits(_))));
    }
}
