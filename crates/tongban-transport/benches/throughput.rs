//! Raw frame throughput over QUIC on loopback: the transport's tuned configuration
//! against quinn's default transport configuration, in the same run.
//!
//! Run with `cargo bench -p tongban-transport --bench throughput`. It prints a
//! Markdown table (the figures in `docs/performance.md`, section "Transport").
//! Each figure is the median of several runs; the payload is opaque bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::directory::{Directory, DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::OfficeKey;
use tongban_transport::relay::FaultRelay;
use tongban_transport::{Congestion, DirectoryHandle, Endpoint, EndpointConfig};

const MIB: usize = 1024 * 1024;
const RUNS: usize = 5;

struct Pair {
    server: Arc<Endpoint>,
    client: Endpoint,
}

fn directory(keys: &[(&str, &OfficeKey)]) -> DirectoryHandle {
    let authority = DirectoryAuthority::new(OfficeKey::generate().unwrap());
    let now = Timestamp::now().millis();
    let certificates = keys
        .iter()
        .enumerate()
        .map(|(serial, (id, key))| {
            authority
                .issue(OfficeCertificate {
                    office: OfficeId::parse(id).unwrap(),
                    name: format!("基准 {id}"),
                    role: Role::Hub,
                    division: "440106".to_string(),
                    public_key: key.public(),
                    not_before: Timestamp(now - 1000),
                    not_after: Timestamp(now + 86_400_000),
                    serial: serial as u64 + 1,
                })
                .unwrap()
        })
        .collect();
    let signed = authority.publish(1, Timestamp(now), certificates, vec![]);
    DirectoryHandle::new(Directory::verify(&signed.encode(), &authority.public()).unwrap())
}

fn pair(config: &EndpointConfig) -> Pair {
    let hub = OfficeKey::generate().unwrap();
    let township = OfficeKey::generate().unwrap();
    let directory = directory(&[("bench-hub", &hub), ("bench-township", &township)]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Arc::new(Endpoint::bind(any, &hub, directory.clone(), config.clone()).unwrap());
    let client = Endpoint::bind(any, &township, directory, config.clone()).unwrap();
    // The server side counts the bytes of every stream and answers with the count.
    let accepting = server.clone();
    tokio::spawn(async move {
        while let Some(connection) = accepting.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_stream().await {
                    tokio::spawn(async move {
                        let mut n_bytes = 0u64;
                        while let Ok(Some(frame)) = recv.recv_frame().await {
                            n_bytes += frame.len() as u64;
                        }
                        let _ = send.send_frame(&n_bytes.to_be_bytes()).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    Pair { server, client }
}

/// Sends `total` bytes in frames of `frame_size` over `n_streams` parallel streams
/// and waits for the receiver's counts; returns MB/s (10⁶ bytes per second).
async fn transfer(
    connection: &tongban_transport::Connection,
    total: usize,
    frame_size: usize,
    n_streams: usize,
) -> f64 {
    let frame = Arc::new(vec![0xa5u8; frame_size]);
    let per_stream = total / n_streams / frame_size;
    let started = Instant::now();
    let tasks: Vec<_> = (0..n_streams)
        .map(|_| {
            let connection = connection.clone();
            let frame = frame.clone();
            tokio::spawn(async move {
                let (mut send, mut recv) = connection.open_stream().await.unwrap();
                for _ in 0..per_stream {
                    send.send_frame(&frame).await.unwrap();
                }
                send.finish().unwrap();
                let count = recv.recv_frame().await.unwrap().unwrap();
                assert_eq!(
                    u64::from_be_bytes(count.try_into().unwrap()),
                    (per_stream * frame.len()) as u64
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let bytes = (per_stream * n_streams * frame_size) as f64;
    bytes / started.elapsed().as_secs_f64() / 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Profile {
    name: &'static str,
    config: EndpointConfig,
}

fn profiles() -> Vec<Profile> {
    let tuned = EndpointConfig::default();
    let mut tuned_cubic = EndpointConfig::default();
    tuned_cubic.congestion = Congestion::Cubic;
    let mut quinn_defaults = EndpointConfig::default().with_quinn_transport_defaults();
    quinn_defaults.udp_buffer_size = 0;
    vec![
        Profile {
            name: "tongban (BBR, 2/8 MiB windows)",
            config: tuned,
        },
        Profile {
            name: "tongban windows, CUBIC",
            config: tuned_cubic,
        },
        Profile {
            name: "quinn defaults (CUBIC)",
            config: quinn_defaults,
        },
    ]
}

async fn loopback_row(profile: &Profile, total: usize, frame_size: usize, n_streams: usize) -> f64 {
    let pair = pair(&profile.config);
    let connection = pair.client.connect(pair.server.local_addr()).await.unwrap();
    // One warm-up transfer so the congestion window has opened.
    transfer(&connection, total / 4, frame_size, n_streams).await;
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        rates.push(transfer(&connection, total, frame_size, n_streams).await);
    }
    connection.close("done");
    median(rates)
}

async fn relay_row(profile: &Profile, total: usize, loss: f64) -> f64 {
    let pair = pair(&profile.config);
    let relay = FaultRelay::start(pair.server.local_addr(), 99)
        .await
        .unwrap();
    relay.set_delay(Duration::from_millis(20));
    let connection = pair.client.connect(relay.local_addr()).await.unwrap();
    relay.set_loss(loss);
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(transfer(&connection, total, MIB, 1).await);
    }
    connection.close("done");
    median(rates)
}

async fn handshake_ms(profile: &Profile) -> f64 {
    let pair = pair(&profile.config);
    let mut times = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let connection = pair.client.connect(pair.server.local_addr()).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        connection.close("done");
    }
    median(times)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "| configuration | 1 MiB frames, 1 stream | 4 KiB frames, 1 stream | 1 MiB frames, 8 streams | relay 2×20 ms, no loss | relay 2×20 ms, 1% loss | connect (handshake + admission) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for profile in profiles() {
            let big = loopback_row(&profile, 256 * MIB, MIB, 1).await;
            let small = loopback_row(&profile, 64 * MIB, 4096, 1).await;
            let parallel = loopback_row(&profile, 256 * MIB, MIB, 8).await;
            let relay_clean = relay_row(&profile, 32 * MIB, 0.0).await;
            let relay_lossy = relay_row(&profile, 8 * MIB, 0.01).await;
            let handshake = handshake_ms(&profile).await;
            println!(
                "| {} | {big:.0} MB/s | {small:.0} MB/s | {parallel:.0} MB/s | {relay_clean:.1} MB/s | {relay_lossy:.1} MB/s | {handshake:.2} ms |",
                profile.name
            );
        }
    });
}
