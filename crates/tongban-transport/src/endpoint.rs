//! The endpoint (server and client in one), authenticated connections and framed
//! streams.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_ledger::directory::OfficeCertificate;
use tongban_ledger::keys::{OfficeKey, PublicKey};

use crate::config::{ConfigError, EndpointConfig};
use crate::directory::{DirectoryHandle, PeerRejection};
use crate::frame::{FrameError, read_frame, write_frame};
use crate::identity::{
    Identity, IdentityError, RejectionSlot, SERVER_NAME, client_tls, peer_key_of, provider,
    server_tls,
};

/// The token a server sends on its first unidirectional stream once it has
/// admitted the client: until it arrives the client cannot know that the server
/// accepted its certificate (in TLS 1.3 the client finishes its handshake first).
const ADMISSION_TOKEN: &[u8] = b"TBADMIT1";

/// Application close and stream error codes (see `docs/transport.md`).
pub(crate) mod codes {
    /// Orderly close.
    pub(crate) const NORMAL: u32 = 0;
    /// The peer's key is not (or no longer) allowed by the directory.
    pub(crate) const PEER_NOT_ALLOWED: u32 = 1;
    /// The peer broke the transport's own protocol (bad admission token).
    pub(crate) const PROTOCOL: u32 = 2;
    /// Stream stopped: a frame exceeded the receiver's limit.
    pub(crate) const FRAME_TOO_LARGE: u32 = 3;
    /// The endpoint is shutting down.
    pub(crate) const SHUTDOWN: u32 = 4;
}

/// Connections waiting in [`Endpoint::accept`]'s queue before handshakes of new
/// peers wait for the application to take them.
const ACCEPT_QUEUE: usize = 64;

/// Who is at the other end of a connection, as the directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's office key, proven by the TLS handshake.
    pub public_key: PublicKey,
    /// The directory certificate under which the key was allowed at connect time.
    pub certificate: OfficeCertificate,
    /// The peer's UDP address at connect time.
    pub address: SocketAddr,
}

impl PeerInfo {
    /// The peer's office id.
    pub fn office(&self) -> &OfficeId {
        &self.certificate.office
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectionLost {
    /// The peer closed it (or its QUIC stack aborted it).
    #[error("the peer closed the connection (code {code}): {reason}")]
    ClosedByPeer {
        /// The close code (see `docs/transport.md`).
        code: u64,
        /// The peer's reason text.
        reason: String,
    },
    /// We closed it.
    #[error("the connection was closed locally")]
    ClosedLocally,
    /// Nothing came from the peer for longer than the idle timeout.
    #[error("the peer was silent for longer than the idle timeout")]
    TimedOut,
    /// The peer restarted and no longer knows the connection.
    #[error("the peer reset the connection")]
    Reset,
    /// A transport failure.
    #[error("transport failure: {reason}")]
    Failed {
        /// What failed.
        reason: String,
    },
}

impl ConnectionLost {
    pub(crate) fn from_quinn(err: quinn::ConnectionError) -> ConnectionLost {
        match err {
            quinn::ConnectionError::ApplicationClosed(close) => ConnectionLost::ClosedByPeer {
                code: close.error_code.into_inner(),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            quinn::ConnectionError::ConnectionClosed(close) => ConnectionLost::ClosedByPeer {
                code: u64::from(close.error_code),
                reason: close.to_string(),
            },
            quinn::ConnectionError::LocallyClosed => ConnectionLost::ClosedLocally,
            quinn::ConnectionError::TimedOut => ConnectionLost::TimedOut,
            quinn::ConnectionError::Reset => ConnectionLost::Reset,
            other => ConnectionLost::Failed {
                reason: other.to_string(),
            },
        }
    }
}

/// Why an endpoint could not be bound.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BindError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node's own key could not be made into a TLS identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// rustls or quinn refused the TLS configuration.
    #[error("TLS configuration refused: {0}")]
    Tls(String),
    /// The socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Socket {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `bind` was called outside a tokio runtime.
    #[error("the endpoint must be bound inside a tokio runtime")]
    NoRuntime,
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server's key is not allowed by our directory.
    #[error("refused the peer at {addr}: {rejection}")]
    PeerNotAllowed {
        /// The server's address.
        addr: SocketAddr,
        /// Why.
        rejection: PeerRejection,
    },
    /// The server refused us (our key is not in its directory, or revoked there).
    #[error("the peer at {addr} refused our key ({because}): {reason}")]
    RefusedByPeer {
        /// The server's address.
        addr: SocketAddr,
        /// Why, as far as the server's alert tells.
        because: Refusal,
        /// What the server said.
        reason: String,
    },
    /// No handshake and admission within the connect timeout.
    #[error("no connection to {addr} within {timeout:?}")]
    TimedOut {
        /// The server's address.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection failed for another reason.
    #[error("connection to {addr} failed: {reason}")]
    Failed {
        /// The server's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The endpoint is closed or the address cannot be used.
    #[error("cannot start a connection to {addr}: {reason}")]
    CannotStart {
        /// The server's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Why a peer refused our key, as far as its TLS alert tells (the peer's typed
/// reason stays on its side; `docs/transport.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer's directory does not know our key (`unknown_ca`): one side
    /// holds an older directory, or the key was never certified.
    #[error("our key is unknown to the peer")]
    UnknownKey,
    /// The peer's directory revokes our key (`certificate_revoked`).
    #[error("the peer holds our key revoked")]
    Revoked,
    /// The peer's directory has no certificate of our key valid now
    /// (`certificate_expired`).
    #[error("the peer has no certificate of our key valid now")]
    NotValidNow,
    /// Another reason: a certificate it could not use, or a refusal after the
    /// handshake.
    #[error("the peer did not accept our certificate")]
    Other,
}

impl Refusal {
    /// The refusal a QUIC CRYPTO_ERROR code (0x100 + TLS alert) stands for.
    fn from_crypto_code(code: u64) -> Refusal {
        // TLS alert numbers (RFC 8446 §6): certificate_revoked 44,
        // certificate_expired 45, unknown_ca 48.
        match code.saturating_sub(0x100) {
            44 => Refusal::Revoked,
            45 => Refusal::NotValidNow,
            48 => Refusal::UnknownKey,
            _ => Refusal::Other,
        }
    }
}

/// Why a stream could not be opened or accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection is gone.
    #[error(transparent)]
    ConnectionLost(#[from] ConnectionLost),
}

/// Counters of a connection, for status displays and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// The current smoothed round-trip time.
    pub rtt: Duration,
    /// UDP datagrams sent.
    pub datagrams_sent: u64,
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// Packets declared lost.
    pub lost_packets: u64,
    /// The congestion window in bytes.
    pub congestion_window: u64,
}

/// A QUIC endpoint that listens and connects, whose TLS identity is the office key.
///
/// Connections in both directions are authenticated against the shared
/// [`DirectoryHandle`]; see the crate documentation for the model.
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Identity,
    directory: DirectoryHandle,
    config: EndpointConfig,
    transport: Arc<quinn::TransportConfig>,
    provider: Arc<CryptoProvider>,
    local_addr: SocketAddr,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    accept_task: JoinHandle<()>,
    live: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.local_addr)
            .field("key", &self.identity.public)
            .finish_non_exhaustive()
    }
}

/// The key derivation contexts (BLAKE3 `derive_key`) of the endpoint's
/// stateless-reset key and connection-id key: fixed strings, so that every start
/// of a node derives the same keys from its office key, and keys for other
/// purposes can never coincide with these.
const RESET_KEY_CONTEXT: &str = "tongban 2025-06 transport stateless reset key (HMAC-SHA256)";
const CID_KEY_CONTEXT: &str = "tongban 2025-06 transport connection id key";

/// quinn's endpoint configuration with a stateless-reset key and a
/// connection-id generator derived from the office key.
///
/// A node that restarts (a crash, a power cut, an upgrade) no longer knows its
/// old connections; its peers keep sending on them. With the same keys as
/// before, the new process recognises those packets as carrying connection ids
/// it issued (the hashed generator checks them with its key) and answers with a
/// stateless reset whose token the peer holds from the old handshake, so the
/// peer drops the dead connection at its next packet — a keep-alive within
/// about a second — and reconnects at once, instead of waiting out the idle
/// timeout. quinn's defaults draw both keys at random on every start, which
/// makes such resets impossible. The keys are one-way derivations of the
/// office secret: they reveal nothing of it.
fn quinn_endpoint_config(key: &OfficeKey) -> quinn::EndpointConfig {
    let secret = key.to_bytes();
    let reset = blake3::derive_key(RESET_KEY_CONTEXT, &secret);
    let cid = blake3::derive_key(CID_KEY_CONTEXT, &secret);
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// A UDP socket with the requested buffer sizes.
fn bind_socket(addr: SocketAddr, buffer_size: usize) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4-mapped peers too on a wildcard IPv6 address.
        let _ = socket.set_only_v6(false);
    }
    if buffer_size > 0 {
        // The kernel caps these at net.core.{r,w}mem_max; a smaller buffer than
        // asked for is not an error.
        let _ = socket.set_recv_buffer_size(buffer_size);
        let _ = socket.set_send_buffer_size(buffer_size);
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl Endpoint {
    /// Binds a UDP socket at `addr` (use port 0 for any) and starts accepting
    /// connections. `key` is this office's key; `directory` is the shared handle
    /// every handshake is checked against.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        key: &OfficeKey,
        directory: DirectoryHandle,
        config: EndpointConfig,
    ) -> Result<Endpoint, BindError> {
        tokio::runtime::Handle::try_current().map_err(|_| BindError::NoRuntime)?;
        let transport = config.quinn_transport()?;
        let provider = provider();
        let identity = Identity::new(key, &provider)?;

        let server_tls = server_tls(&identity, directory.clone(), provider.clone())
            .map_err(|err| BindError::Tls(err.to_string()))?;
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|err| BindError::Tls(err.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport.clone());

        let socket = bind_socket(addr, config.udp_buffer_size)
            .map_err(|source| BindError::Socket { addr, source })?;
        let inner = quinn::Endpoint::new(
            quinn_endpoint_config(key),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| BindError::Socket { addr, source })?;
        let local_addr = inner
            .local_addr()
            .map_err(|source| BindError::Socket { addr, source })?;

        let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
        let live = Arc::new(Mutex::new(Vec::new()));
        let accept_task = tokio::spawn(accept_loop(
            inner.clone(),
            directory.clone(),
            config.clone(),
            sender,
            live.clone(),
        ));
        tracing::debug!(%local_addr, key = %identity.public.fingerprint(), "endpoint bound");
        Ok(Endpoint {
            inner,
            identity,
            directory,
            config,
            transport,
            provider,
            local_addr,
            accepted: tokio::sync::Mutex::new(receiver),
            accept_task,
            live,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's office key.
    pub fn public_key(&self) -> PublicKey {
        self.identity.public
    }

    /// The directory handle handshakes are checked against.
    pub fn directory(&self) -> &DirectoryHandle {
        &self.directory
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Connects to the node at `addr`. Returns only when both sides have
    /// authenticated each other against their directories and the server has
    /// admitted us.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, ConnectError> {
        let rejection: RejectionSlot = Arc::new(Mutex::new(None));
        let client_tls = client_tls(
            &self.identity,
            self.directory.clone(),
            self.provider.clone(),
            rejection.clone(),
        )
        .map_err(|err| ConnectError::CannotStart {
            addr,
            reason: err.to_string(),
        })?;
        let client_crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).map_err(|err| {
                ConnectError::CannotStart {
                    addr,
                    reason: err.to_string(),
                }
            })?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(self.transport.clone());
        let connecting = self
            .inner
            .connect_with(client_config, addr, SERVER_NAME)
            .map_err(|err| ConnectError::CannotStart {
                addr,
                reason: err.to_string(),
            })?;

        let timeout = self.config.connect_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            let connection = connecting.await.map_err(Failure::Connection)?;
            let result = async {
                let mut admission = connection.accept_uni().await.map_err(Failure::Connection)?;
                let token = admission
                    .read_to_end(ADMISSION_TOKEN.len())
                    .await
                    .map_err(|err| Failure::Protocol(err.to_string()))?;
                if token != ADMISSION_TOKEN {
                    return Err(Failure::Protocol("unexpected admission token".to_string()));
                }
                // The directory may have changed since the handshake began; check
                // again and build the peer's description.
                peer_info(&connection, &self.directory).map_err(Failure::Rejected)
            }
            .await;
            match result {
                Ok(peer) => Ok((connection, peer)),
                Err(failure) => {
                    let code = match failure {
                        Failure::Rejected(_) => codes::PEER_NOT_ALLOWED,
                        _ => codes::PROTOCOL,
                    };
                    connection.close(code.into(), b"refused");
                    Err(failure)
                }
            }
        })
        .await;

        let stored_rejection = || {
            rejection
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        };
        match outcome {
            Ok(Ok((connection, peer))) => {
                tracing::debug!(
                    %addr,
                    peer = %peer.public_key.fingerprint(),
                    office = %peer.office(),
                    "connected"
                );
                let connection = Connection::new(connection, peer, self.config.max_frame_size);
                self.track(&connection);
                Ok(connection)
            }
            Ok(Err(Failure::Rejected(rejection))) => {
                Err(ConnectError::PeerNotAllowed { addr, rejection })
            }
            Ok(Err(Failure::Connection(err))) => {
                if let Some(rejection) = stored_rejection() {
                    return Err(ConnectError::PeerNotAllowed { addr, rejection });
                }
                Err(classify_connect_failure(addr, err))
            }
            Ok(Err(Failure::Protocol(reason))) => Err(ConnectError::Failed { addr, reason }),
            Err(_) => match stored_rejection() {
                Some(rejection) => Err(ConnectError::PeerNotAllowed { addr, rejection }),
                None => Err(ConnectError::TimedOut { addr, timeout }),
            },
        }
    }

    /// The next authenticated incoming connection; `None` once the endpoint is
    /// closed. Handshakes run in the background, so a slow peer does not hold up
    /// others; peers refused by the directory never appear here.
    pub async fn accept(&self) -> Option<Connection> {
        let connection = self.accepted.lock().await.recv().await?;
        Some(connection)
    }

    /// Closes every live connection whose peer the directory no longer allows
    /// (after a [`DirectoryHandle::update`], for example a revocation); returns how
    /// many were closed. New handshakes always use the current directory.
    pub fn enforce_directory(&self) -> usize {
        let now = Timestamp::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed = 0;
        live.retain(|known| {
            let Some(shared) = known.upgrade() else {
                return false;
            };
            if shared.inner.close_reason().is_some() {
                return false;
            }
            match self.directory.check_key(&shared.peer.public_key, now) {
                Ok(_) => true,
                Err(rejection) => {
                    tracing::warn!(
                        peer = %shared.peer.public_key.fingerprint(),
                        %rejection,
                        "closing a connection the directory no longer allows"
                    );
                    shared
                        .inner
                        .close(codes::PEER_NOT_ALLOWED.into(), b"key no longer allowed");
                    closed += 1;
                    false
                }
            }
        });
        closed
    }

    /// Closes every connection and stops accepting. Call [`Endpoint::wait_idle`]
    /// afterwards to let the close reach the peers.
    pub fn close(&self) {
        self.inner.close(codes::SHUTDOWN.into(), b"shutting down");
        self.accept_task.abort();
    }

    /// Waits until every connection has been closed and drained.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }

    fn track(&self, connection: &Connection) {
        track(&self.live, connection);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

fn track(live: &Mutex<Vec<Weak<Shared>>>, connection: &Connection) {
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    live.retain(|known| {
        known
            .upgrade()
            .is_some_and(|shared| shared.inner.close_reason().is_none())
    });
    live.push(Arc::downgrade(&connection.shared));
}

/// What went wrong while connecting, before it becomes a [`ConnectError`].
enum Failure {
    Connection(quinn::ConnectionError),
    Rejected(PeerRejection),
    Protocol(String),
}

/// Distinguishes "the server refused our certificate" from other failures: TLS
/// alerts arrive as CRYPTO_ERROR closes (0x100-0x1ff), a refusal after the
/// handshake as our PEER_NOT_ALLOWED application code.
fn classify_connect_failure(addr: SocketAddr, err: quinn::ConnectionError) -> ConnectError {
    match &err {
        quinn::ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            if (0x100..0x200).contains(&code) {
                return ConnectError::RefusedByPeer {
                    addr,
                    because: Refusal::from_crypto_code(code),
                    reason: close.to_string(),
                };
            }
        }
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(codes::PEER_NOT_ALLOWED) =>
        {
            return ConnectError::RefusedByPeer {
                addr,
                because: Refusal::Other,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            };
        }
        quinn::ConnectionError::TimedOut => {
            return ConnectError::Failed {
                addr,
                reason: "the handshake timed out".to_string(),
            };
        }
        _ => {}
    }
    ConnectError::Failed {
        addr,
        reason: err.to_string(),
    }
}

/// The authenticated peer of an established connection, checked against the
/// directory as it is now.
fn peer_info(
    connection: &quinn::Connection,
    directory: &DirectoryHandle,
) -> Result<PeerInfo, PeerRejection> {
    let certificates = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(PeerRejection::NoCertificate)?;
    let end_entity = certificates.first().ok_or(PeerRejection::NoCertificate)?;
    let public_key = peer_key_of(end_entity)?;
    let certificate = directory.check_key(&public_key, Timestamp::now())?;
    Ok(PeerInfo {
        public_key,
        certificate,
        address: connection.remote_address(),
    })
}

/// Accepts incoming connections forever, each handshake in its own task.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    directory: DirectoryHandle,
    config: EndpointConfig,
    sender: mpsc::Sender<Connection>,
    live: Arc<Mutex<Vec<Weak<Shared>>>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let directory = directory.clone();
        let sender = sender.clone();
        let live = live.clone();
        let timeout = config.connect_timeout;
        let max_frame_size = config.max_frame_size;
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match tokio::time::timeout(timeout, admit(incoming, &directory)).await {
                Ok(Ok((connection, peer))) => {
                    tracing::debug!(
                        %remote,
                        peer = %peer.public_key.fingerprint(),
                        office = %peer.office(),
                        "accepted"
                    );
                    let connection = Connection::new(connection, peer, max_frame_size);
                    track(&live, &connection);
                    // If the endpoint was dropped nobody will take it; dropping
                    // the connection closes it.
                    let _ = sender.send(connection).await;
                }
                Ok(Err(reason)) => {
                    tracing::info!(%remote, %reason, "incoming connection refused or failed");
                }
                Err(_) => tracing::info!(%remote, "incoming handshake timed out"),
            }
        });
    }
}

/// Runs the server side of a handshake and sends the admission token.
async fn admit(
    incoming: quinn::Incoming,
    directory: &DirectoryHandle,
) -> Result<(quinn::Connection, PeerInfo), String> {
    // The client's certificate is checked inside the handshake by the
    // `DirectoryVerifier`; a refused client fails here.
    let connection = incoming
        .await
        .map_err(|err| format!("handshake failed: {err}"))?;
    let peer = match peer_info(&connection, directory) {
        Ok(peer) => peer,
        Err(rejection) => {
            connection.close(codes::PEER_NOT_ALLOWED.into(), b"key not allowed");
            return Err(rejection.to_string());
        }
    };
    let mut admission = connection
        .open_uni()
        .await
        .map_err(|err| format!("cannot open the admission stream: {err}"))?;
    admission
        .write_all(ADMISSION_TOKEN)
        .await
        .map_err(|err| format!("cannot send the admission token: {err}"))?;
    admission
        .finish()
        .map_err(|err| format!("cannot finish the admission stream: {err}"))?;
    Ok((connection, peer))
}

/// An authenticated connection to another office node. Cheap to clone: clones
/// share the connection.
///
/// Dropping the last clone closes the connection.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

/// What the clones of a [`Connection`] share. The endpoint keeps only weak
/// references, so dropping the last clone drops the quinn handle, which closes it.
struct Shared {
    inner: quinn::Connection,
    peer: PeerInfo,
    max_frame_size: u32,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer.public_key)
            .field("office", &self.shared.peer.certificate.office)
            .field("address", &self.shared.peer.address)
            .finish()
    }
}

impl Connection {
    fn new(inner: quinn::Connection, peer: PeerInfo, max_frame_size: u32) -> Connection {
        Connection {
            shared: Arc::new(Shared {
                inner,
                peer,
                max_frame_size,
            }),
        }
    }

    fn quinn(&self) -> &quinn::Connection {
        &self.shared.inner
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.shared.peer
    }

    /// The peer's current UDP address (it may migrate).
    pub fn remote_address(&self) -> SocketAddr {
        self.quinn().remote_address()
    }

    /// Opens a bidirectional stream for one batch. The peer sees the stream only
    /// when the first frame is sent on it. Waits while the peer's stream limit is
    /// reached (backpressure).
    pub async fn open_stream(&self) -> Result<(FrameSender, FrameReceiver), StreamError> {
        let (send, recv) = self
            .quinn()
            .open_bi()
            .await
            .map_err(ConnectionLost::from_quinn)?;
        Ok(self.wrap(send, recv))
    }

    /// The next bidirectional stream the peer opened.
    pub async fn accept_stream(&self) -> Result<(FrameSender, FrameReceiver), StreamError> {
        let (send, recv) = self
            .quinn()
            .accept_bi()
            .await
            .map_err(ConnectionLost::from_quinn)?;
        Ok(self.wrap(send, recv))
    }

    fn wrap(
        &self,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> (FrameSender, FrameReceiver) {
        (
            FrameSender {
                inner: send,
                max_frame_size: self.shared.max_frame_size,
            },
            FrameReceiver {
                inner: recv,
                max_frame_size: self.shared.max_frame_size,
            },
        )
    }

    /// Closes the connection; open streams fail on both sides.
    pub fn close(&self, reason: &str) {
        self.quinn().close(codes::NORMAL.into(), reason.as_bytes());
    }

    /// Waits until the connection ends, and says why.
    pub async fn closed(&self) -> ConnectionLost {
        ConnectionLost::from_quinn(self.quinn().closed().await)
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<ConnectionLost> {
        self.quinn().close_reason().map(ConnectionLost::from_quinn)
    }

    /// Current counters.
    pub fn stats(&self) -> TransportStats {
        let stats = self.quinn().stats();
        TransportStats {
            rtt: stats.path.rtt,
            datagrams_sent: stats.udp_tx.datagrams,
            datagrams_received: stats.udp_rx.datagrams,
            lost_packets: stats.path.lost_packets,
            congestion_window: stats.path.cwnd,
        }
    }
}

/// The sending half of a stream: frames out.
#[derive(Debug)]
pub struct FrameSender {
    inner: quinn::SendStream,
    max_frame_size: u32,
}

impl FrameSender {
    /// Sends one frame; waits while flow control says the peer is not reading
    /// (backpressure). A frame above the limit is refused before anything is sent.
    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        write_frame(&mut self.inner, payload, self.max_frame_size).await
    }

    /// Ends the stream after the frames sent so far.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        self.inner.finish().map_err(|_| FrameError::StreamClosed)
    }

    /// Waits until the peer's QUIC stack has acknowledged every byte of a finished
    /// stream, or reports that the peer stopped reading it. (Acknowledged means
    /// received, not processed: the protocol above confirms processing itself.)
    pub async fn delivered(&mut self) -> Result<(), FrameError> {
        match self.inner.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(FrameError::StoppedByPeer {
                code: code.into_inner(),
            }),
            Err(quinn::StoppedError::ConnectionLost(lost)) => {
                Err(FrameError::ConnectionLost(ConnectionLost::from_quinn(lost)))
            }
            Err(other) => Err(FrameError::Io {
                reason: other.to_string(),
            }),
        }
    }
}

/// The receiving half of a stream: frames in.
#[derive(Debug)]
pub struct FrameReceiver {
    inner: quinn::RecvStream,
    max_frame_size: u32,
}

impl FrameReceiver {
    /// The next frame, or `None` when the peer finished the stream. A frame above
    /// the limit is refused with [`FrameError::IncomingTooLarge`] before any
    /// allocation, and the stream is stopped so the peer learns of it.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let result = read_frame(&mut self.inner, self.max_frame_size).await;
        if matches!(result, Err(FrameError::IncomingTooLarge { .. })) {
            let _ = self.inner.stop(codes::FRAME_TOO_LARGE.into());
        }
        result
    }
}
