//! A running office node: [`NodeConfig`] (`tongban.toml`), and [`Daemon`], which
//! opens the store, checks that the directory certifies the node, binds QUIC,
//! starts the engine ([`crate::engine`]) with its accept, reconnect and timer
//! tasks, serves the control API ([`crate::control`]) and stops it all cleanly.
//!
//! The top layer of the crate: it composes the engine and the control API and
//! nothing below reaches it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tongban_domain::ids::OfficeId;
use tongban_ledger::keys::OfficeKey;
use tongban_replica::Replica;
use tongban_store::{Store, StoreOptions};
use tongban_sync::{Config as SyncConfig, Limits, SyncNode};
use tongban_transport::{Backoff, BackoffConfig, DirectoryHandle, Endpoint, EndpointConfig};

use tracing::Instrument;

use crate::api::CONTROL_ADDR_FILE;
pub use crate::engine::{Clock, DaemonError, DaemonHandle};
use crate::engine::{Engine, Input, keep_upstream, run_session, wait_stop};
use crate::local::{LocalNode, NodeError};

/// `tongban.toml`: how one node runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's data directory (made by `tongban node init`).
    pub data_dir: PathBuf,
    /// Where to accept QUIC connections from children (hubs, and any node that
    /// should be reachable). A township office behind NAT leaves it out and only
    /// connects out; it then listens on an ephemeral loopback port only.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The hubs this node connects to.
    #[serde(default)]
    pub upstream: Vec<Upstream>,
    /// A TCP address for the control API (loopback only), for the browser
    /// console; none by default. Commands always use the Unix socket
    /// `DATA_DIR/control.sock`.
    #[serde(default)]
    pub control: Option<SocketAddr>,
    /// Log level filter (`info`, `debug`, `tongban=debug`); `RUST_LOG` wins.
    #[serde(default)]
    pub log: Option<String>,
    /// Seconds of the longest reconnect backoff (default 60).
    #[serde(default)]
    pub max_backoff_secs: Option<u64>,
    /// The office console (`tongban console`, a separate process and client
    /// of the control API): the daemon does not read it.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
}

/// `[console]` of `tongban.toml`: what `tongban console` may listen on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The address the console listens on. The console listens on loopback
    /// unless this names another address: opening it to the office LAN is a
    /// decision written in the node's configuration, never a flag alone.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// One upstream hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The hub's office id (its certificate must name it).
    pub office: String,
    /// Its QUIC address, `host:port`: an IP address or a host name, resolved
    /// again at every connection attempt so that a hub whose address changes
    /// (DHCP, a new machine behind the same name) is still found.
    pub address: String,
}

/// Checks that `address` has the form `host:port` (an IP address, a bracketed
/// IPv6 address or a host name, and a port from 1 to 65535); answers why not.
fn check_peer_address(address: &str) -> Result<(), String> {
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected host:port, for example 10.20.0.1:7443 or hub.example.cn:7443".into());
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("port {port:?} is not a port from 1 to 65535")),
        Ok(_) => {}
    }
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid_name {
        Ok(())
    } else {
        Err(format!(
            "host {host:?} is neither an IP address nor a host name (IPv6 goes in brackets: [::1]:7443)"
        ))
    }
}

impl NodeConfig {
    /// A node on loopback: QUIC on any free port of 127.0.0.1, connecting to `hub`
    /// (office id and address) when given, reconnecting within a second. What the
    /// demo, the benchmarks and the multi-node tests run.
    pub fn loopback(data_dir: &Path, hub: Option<(&str, SocketAddr)>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            upstream: hub
                .map(|(office, address)| Upstream {
                    office: office.to_string(),
                    address: address.to_string(),
                })
                .into_iter()
                .collect(),
            control: None,
            log: None,
            max_backoff_secs: Some(1),
            console: None,
        }
    }

    /// Reads and checks `tongban.toml`. Relative data directories are relative to
    /// the file.
    pub fn load(path: &Path) -> Result<NodeConfig, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|e| DaemonError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // The default operator has one home, the node's own `DATA_DIR/node.toml`,
        // which commands read whether or not the node runs; here it would
        // silently do nothing, so it is refused with where it belongs.
        if let Ok(table) = text.parse::<toml::Table>()
            && table.contains_key("operator")
        {
            return Err(DaemonError::Config {
                path: path.to_path_buf(),
                reason: "operator: the default operator belongs in DATA_DIR/node.toml \
                         (operator = \"窗口01\"), not in the run configuration \
                         默认经办人请写在数据目录的 node.toml 中"
                    .into(),
            });
        }
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| DaemonError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if config.data_dir.is_relative()
            && let Some(parent) = path.parent()
        {
            config.data_dir = parent.join(&config.data_dir);
        }
        if let Some(control) = config.control
            && !control.ip().is_loopback()
        {
            return Err(DaemonError::Config {
                path: path.to_path_buf(),
                reason: format!("control = {control}: the control API listens on loopback only"),
            });
        }
        for up in &config.upstream {
            OfficeId::parse(&up.office).map_err(|e| DaemonError::Config {
                path: path.to_path_buf(),
                reason: format!("upstream office {:?}: {e}", up.office),
            })?;
            check_peer_address(&up.address).map_err(|e| DaemonError::Config {
                path: path.to_path_buf(),
                reason: format!(
                    "upstream address {:?} (office {}): {e}",
                    up.address, up.office
                ),
            })?;
        }
        Ok(config)
    }
}

/// A running node.
pub struct Daemon {
    office: OfficeId,
    inputs: mpsc::Sender<Input>,
    listen: SocketAddr,
    control: Option<SocketAddr>,
    control_socket: Option<PathBuf>,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    engine: Option<JoinHandle<Result<(), DaemonError>>>,
    endpoint: Arc<Endpoint>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("office", &self.office)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Options of [`Daemon::start`] beyond the config file.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The clock.
    pub clock: Clock,
    /// Serve the control API (and write `control.addr`).
    pub control_api: bool,
    /// Sync protocol limits.
    pub limits: Limits,
    /// QUIC settings.
    pub endpoint: EndpointConfig,
    /// The shortest reconnect delay.
    pub min_backoff: Duration,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            clock: Clock::System,
            control_api: true,
            limits: Limits::default(),
            endpoint: EndpointConfig::default(),
            min_backoff: Duration::from_millis(200),
        }
    }
}

impl Daemon {
    /// Opens the node's store, checks that the directory certifies it, binds QUIC,
    /// connects to its hubs and serves the control API. Must run inside a
    /// multi-threaded tokio runtime.
    pub async fn start(config: &NodeConfig, options: StartOptions) -> Result<Daemon, DaemonError> {
        let dir = config.data_dir.clone();
        // A directory made by an older version, or by hand, is tightened
        // before anything private is written into it.
        if dir.is_dir() {
            crate::local::make_private_dir(&dir)?;
        }
        let store = tokio::task::block_in_place(|| Store::open(&dir, &StoreOptions::default()))
            .map_err(NodeError::from)?;
        let store = Arc::new(store);
        let local = LocalNode::open_with(&dir, store.clone())?;
        let now = options.clock.now();
        let directory = local
            .directory()
            .map_err(|e| DaemonError::NotCertified(format!("{e}; import the directory first")))?
            .clone();
        let authority = local.authority().ok_or_else(|| {
            DaemonError::NotCertified("no directory authority key; import the directory".into())
        })?;
        if let Err(err) = local.certificate(now) {
            return Err(DaemonError::NotCertified(err.to_string()));
        }
        // Flags written after a case's commit are lost if the node died in
        // between: every duplicate flag is recomputed before sync starts.
        let started = std::time::Instant::now();
        match tokio::task::block_in_place(|| local.reconcile_duplicates()) {
            Ok(done) => tracing::info!(
                groups = done.groups,
                flagged = done.flagged,
                changed = done.changed,
                ms = started.elapsed().as_millis() as u64,
                "duplicate flags checked"
            ),
            Err(err) => tracing::warn!(error = %err, "duplicate flags not checked"),
        }
        let mut replica = Replica::new(
            store.clone(),
            Arc::new(local.calendar().clone()),
            local.resident_secret(),
            None,
        )
        .map_err(NodeError::from)?;
        if crate::supervision::is_supervisor(&local) {
            // A supervisor's replica keeps each case's supervised row in step
            // with the attestations it stores; rows a restore left out are
            // made before sync starts.
            replica.supervise().map_err(NodeError::from)?;
            match tokio::task::block_in_place(|| crate::supervision::reconcile(&local)) {
                Ok(written) => tracing::info!(written, "supervised cases checked"),
                Err(err) => tracing::warn!(error = %err, "supervised cases not checked"),
            }
        }
        let key: OfficeKey = local.key().clone();
        let sync_config = SyncConfig {
            office: local.office().clone(),
            key: Arc::new(key.clone()),
            authority,
            calendar: Arc::new(local.calendar().clone()),
            limits: options.limits,
        };
        // The materials the store lacks are listed after the node started
        // (below): that walk grows with the store, and starting must not.
        let sync = SyncNode::new_deferring_materials(sync_config.clone(), &replica)?;
        let store_for_materials = local.shared_store().clone();
        let listen = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let endpoint = Arc::new(
            Endpoint::bind(
                listen,
                &key,
                DirectoryHandle::new(directory),
                options.endpoint.clone(),
            )
            .map_err(|e| DaemonError::Bind(format!("{listen}: {e}")))?,
        );
        let listen = endpoint.local_addr();
        let office = local.office().clone();
        tracing::info!(%office, %listen, "node started");

        let (inputs, rx) = mpsc::channel::<Input>(4096);
        let (checked, checked_rx) = mpsc::unbounded_channel::<Input>();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut engine = Engine::new(
            local,
            replica,
            sync,
            options.clock.clone(),
            endpoint.clone(),
            checked,
            sync_config,
        );
        // Every configured hub is listed in `node status` from the start, with
        // what earlier runs recorded of it.
        for up in &config.upstream {
            engine.configure_upstream(&up.office, &up.address);
        }
        // Every task of this node logs inside a span naming its office, so that
        // several nodes' logs (the demo's nine in one process) can be told
        // apart; sessions add the peer and the session's number.
        let span = tracing::info_span!("node", office = %office);
        let engine_task = tokio::spawn(
            engine
                .run(rx, checked_rx, shutdown_rx.clone())
                .instrument(span.clone()),
        );

        let mut tasks = Vec::new();
        // The materials the store references and lacks, wanted again once
        // listed (a read transaction of its own, beside the engine).
        {
            let inputs = inputs.clone();
            tasks.push(tokio::spawn(
                async move {
                    let store = store_for_materials;
                    let listed = list_in_background(move || store.missing_materials()).await;
                    let missing: Vec<(tongban_domain::ids::CaseId, [u8; 32])> = match listed {
                        Ok(Ok(missing)) => missing
                            .into_iter()
                            .map(|(case, hash)| (case, hash.0))
                            .collect(),
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "missing materials not listed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let count = missing.len();
                    let job: crate::engine::Job = Box::new(move |engine| {
                        engine.recover_materials(missing);
                    });
                    if inputs.send(Input::Job(job)).await.is_ok() && count > 0 {
                        tracing::info!(count, "materials to fetch listed");
                    }
                }
                .instrument(span.clone()),
            ));
        }
        // Accept children.
        {
            let endpoint = endpoint.clone();
            let inputs = inputs.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(
                async move {
                    loop {
                        let connection = tokio::select! {
                            c = endpoint.accept() => c,
                            _ = stop.changed() => None,
                        };
                        let Some(connection) = connection else { break };
                        let inputs = inputs.clone();
                        let stop = stop.clone();
                        tokio::spawn(
                            async move {
                                let stream = tokio::select! {
                                    s = connection.accept_stream() => s,
                                    _ = wait_stop(stop.clone()) => return,
                                };
                                match stream {
                                    Ok((send, recv)) => {
                                        run_session(connection, send, recv, inputs, stop).await;
                                    }
                                    Err(err) => {
                                        tracing::info!(error = %err, "child left before its hello")
                                    }
                                }
                            }
                            .in_current_span(),
                        );
                    }
                }
                .instrument(span.clone()),
            ));
        }
        // Connect to hubs.
        for up in &config.upstream {
            let Ok(expected) = OfficeId::parse(&up.office) else {
                continue;
            };
            let cap = Duration::from_secs(config.max_backoff_secs.unwrap_or(60).max(1));
            let backoff = Backoff::with_random_seed(BackoffConfig::new(options.min_backoff, cap));
            tasks.push(tokio::spawn(
                keep_upstream(
                    expected,
                    up.address.clone(),
                    endpoint.clone(),
                    inputs.clone(),
                    shutdown_rx.clone(),
                    backoff,
                )
                .instrument(span.clone()),
            ));
        }
        // Timers and status.
        {
            let inputs = inputs.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(
                async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(250));
                    loop {
                        tokio::select! {
                            _ = interval.tick() => {
                                if inputs.send(Input::Tick).await.is_err() { break; }
                            }
                            _ = stop.changed() => break,
                        }
                    }
                }
                .instrument(span.clone()),
            ));
        }
        let mut daemon = Daemon {
            office,
            inputs,
            listen,
            control: None,
            control_socket: None,
            data_dir: dir.clone(),
            shutdown,
            tasks,
            engine: Some(engine_task),
            endpoint,
        };
        if options.control_api {
            let served =
                crate::control::serve(config.control, &dir, daemon.handle(), shutdown_rx.clone())
                    .instrument(span.clone())
                    .await?;
            daemon.control = served.tcp;
            daemon.control_socket = Some(served.socket);
            daemon.tasks.extend(served.tasks);
        }
        Ok(daemon)
    }

    /// This node's office.
    pub fn office(&self) -> &OfficeId {
        &self.office
    }

    /// The bound QUIC address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The control API's TCP address, when one is configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control
    }

    /// The control API's Unix socket, when served.
    pub fn control_socket(&self) -> Option<&Path> {
        self.control_socket.as_deref()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A cheap handle for running work on the engine.
    pub fn handle(&self) -> DaemonHandle {
        DaemonHandle::new(self.inputs.clone())
    }

    /// Stops the node: closes connections, lets the engine finish what it holds,
    /// records peer status and removes `control.sock` and `control.addr`. Everything acknowledged is
    /// already in the store.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        let _ = self.shutdown.send(true);
        self.endpoint.close();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let engine = self.engine.take();
        drop(self.inputs);
        let result = match engine {
            Some(task) => match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) | Err(_) => Err(DaemonError::Stopped),
            },
            None => Ok(()),
        };
        let _ = std::fs::remove_file(self.data_dir.join(CONTROL_ADDR_FILE));
        if let Some(socket) = &self.control_socket {
            let _ = std::fs::remove_file(socket);
        }
        result
    }
}

/// Runs `work` on a thread of its own at a lower CPU priority (`nice` 10 on
/// Linux), and answers what it returned (`Err` if it panicked).
///
/// The start-time listing of missing materials walks every material
/// reference the store holds (six a case: 6,000,000 rows at a million
/// cases, seconds of a core): it is recovery work, and on a two-core office
/// PC it must not slow the syncs the node serves meanwhile (`resume` at
/// 1,000,000 held measured 2.45× its cost at 1,000 while the restarted nodes
/// listed). A thread of its own, because a thread's priority cannot be
/// raised back without privileges, so a pooled thread must not be lowered.
async fn list_in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::sync::oneshot::error::RecvError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("tongban-materials-listing".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            {
                // Failing to lower it only leaves the listing at the normal priority.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
            }
            let _ = tx.send(work());
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "no thread for the materials listing");
    }
    rx.await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listing runs on a thread of its own, at a lower priority on Linux
    /// (nice 10, or the process's own if that is lower still), and hands back
    /// what it made.
    #[tokio::test]
    async fn the_background_listing_runs_apart_at_a_lower_priority() -> Result<(), String> {
        let answer = list_in_background(|| {
            let name = std::thread::current().name().map(str::to_string);
            #[cfg(target_os = "linux")]
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
            #[cfg(not(target_os = "linux"))]
            let nice: Option<i32> = None;
            (name, nice)
        })
        .await
        .map_err(|e| e.to_string())?;
        assert_eq!(answer.0.as_deref(), Some("tongban-materials-listing"));
        #[cfg(target_os = "linux")]
        assert!(answer.1 >= Some(10), "{answer:?}");
        Ok(())
    }
}
