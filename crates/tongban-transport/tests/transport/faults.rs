//! Through the fault-injecting relay: loss, delay, duplication, partitions and
//! reconnection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tongban_transport::relay::FaultRelay;
use tongban_transport::{
    Backoff, BackoffConfig, ConnectError, ConnectionLost, DirectoryHandle, connect_with_backoff,
};

use crate::support::{World, endpoint_with, payload, spawn_echo, test_config};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mebibytes_cross_a_lossy_slow_link() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let mut config = test_config();
    config.connect_timeout = std::time::Duration::from_secs(30);
    let server = Arc::new(endpoint_with(&hub, &directory, config.clone()));
    let client = endpoint_with(&township, &directory, config);
    let relay = FaultRelay::start(server.local_addr(), 0x5eed)
        .await
        .unwrap();
    relay.set_loss(0.15);
    relay.set_delay(Duration::from_millis(20));
    relay.set_duplication(0.02);

    let started = Instant::now();
    let (connection, accepted) = tokio::join!(client.connect(relay.local_addr()), server.accept());
    let connection = connection.unwrap();
    let accepted = accepted.unwrap();
    let handshake = started.elapsed();

    // 5 MiB up in 1 MiB frames; the server answers with what it counted.
    let reader = tokio::spawn(async move {
        let (mut send, mut recv) = accepted.accept_stream().await.unwrap();
        let mut n_bytes = 0usize;
        let mut salt = 0u8;
        while let Some(frame) = recv.recv_frame().await.unwrap() {
            assert!(
                frame == payload(frame.len(), salt),
                "frame {salt} corrupted"
            );
            n_bytes += frame.len();
            salt += 1;
        }
        send.send_frame(&(n_bytes as u64).to_be_bytes())
            .await
            .unwrap();
        send.finish().unwrap();
        send.delivered().await.unwrap();
    });
    let (mut send, mut recv) = connection.open_stream().await.unwrap();
    for salt in 0..5u8 {
        send.send_frame(&payload(MIB, salt)).await.unwrap();
    }
    send.finish().unwrap();
    let answer = recv.recv_frame().await.unwrap().unwrap();
    assert_eq!(answer, (5 * MIB as u64).to_be_bytes());
    reader.await.unwrap();
    let stats = relay.stats();
    eprintln!(
        "5 MiB over 15% loss, 2×20 ms delay: handshake {handshake:?}, total {:?}; relay {stats:?}; client {:?}",
        started.elapsed(),
        connection.stats()
    );
    assert!(
        stats.dropped > 100,
        "the relay dropped datagrams: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_reconnects_with_backoff() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    // Short timers so the partition is noticed in seconds, not a minute.
    let mut config = test_config();
    config.keep_alive_interval = Duration::from_millis(300);
    config.idle_timeout = Duration::from_millis(1500);
    config.connect_timeout = Duration::from_millis(800);
    config.initial_rtt = Duration::from_millis(50);
    let server = Arc::new(endpoint_with(&hub, &directory, config.clone()));
    let _echo = spawn_echo(server.clone());
    let client = endpoint_with(&township, &directory, config);
    let relay = FaultRelay::start(server.local_addr(), 7).await.unwrap();
    relay.set_delay(Duration::from_millis(5));

    let mut backoff = Backoff::new(
        BackoffConfig::new(Duration::from_millis(100), Duration::from_millis(600)),
        42,
    );
    let first = connect_with_backoff(
        &client,
        relay.local_addr(),
        &mut backoff,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(first.attempts, 1);
    echo_once(&first.connection, b"before the partition").await;

    relay.set_partitioned(true);
    let lost = tokio::time::timeout(Duration::from_secs(10), first.connection.closed())
        .await
        .unwrap();
    assert_eq!(lost, ConnectionLost::TimedOut);

    // Reconnect while still partitioned; heal after two seconds.
    let healer = {
        let started = Instant::now();
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            started.elapsed()
        }
    };
    let (second, healed_after) = {
        let reconnect = connect_with_backoff(
            &client,
            relay.local_addr(),
            &mut backoff,
            std::future::pending(),
        );
        let mut reconnect = std::pin::pin!(reconnect);
        let healed_after = tokio::select! {
            _ = &mut reconnect => panic!("connected through a partition"),
            healed_after = healer => healed_after,
        };
        relay.set_partitioned(false);
        let second = tokio::time::timeout(Duration::from_secs(10), reconnect)
            .await
            .unwrap()
            .unwrap();
        (second, healed_after)
    };
    assert!(second.attempts > 1, "{} attempts", second.attempts);
    assert_eq!(backoff.attempt(), 0, "success resets the backoff");
    echo_once(&second.connection, b"after healing").await;
    eprintln!(
        "healed after {healed_after:?}, reconnected in {} attempts",
        second.attempts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_stops_when_cancelled() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let mut config = test_config();
    config.connect_timeout = Duration::from_millis(300);
    let server = endpoint_with(&hub, &directory, config.clone());
    let client = endpoint_with(&township, &directory, config);
    let relay = FaultRelay::start(server.local_addr(), 1).await.unwrap();
    relay.set_partitioned(true);

    let mut backoff = Backoff::new(
        BackoffConfig::new(Duration::from_millis(50), Duration::from_millis(200)),
        3,
    );
    let cancelled = connect_with_backoff(
        &client,
        relay.local_addr(),
        &mut backoff,
        tokio::time::sleep(Duration::from_millis(1500)),
    )
    .await
    .unwrap_err();
    assert!(cancelled.attempts >= 2, "{cancelled}");
    assert!(
        matches!(cancelled.last_error, Some(ConnectError::TimedOut { .. })),
        "{cancelled:?}"
    );
}

async fn echo_once(connection: &tongban_transport::Connection, message: &[u8]) {
    let (mut send, mut recv) = connection.open_stream().await.unwrap();
    send.send_frame(message).await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.recv_frame().await.unwrap().unwrap(), message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_resets_its_old_connections_at_once() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    // The idle timeout is long here, so that only a stateless reset can end the
    // old connection within the time allowed below.
    let mut config = test_config();
    config.keep_alive_interval = Duration::from_millis(200);
    config.idle_timeout = Duration::from_secs(30);
    config.initial_rtt = Duration::from_millis(50);
    let server = Arc::new(endpoint_with(&hub, &directory, config.clone()));
    let port = server.local_addr();
    let echo = spawn_echo(server.clone());
    let client = endpoint_with(&township, &directory, config.clone());
    // The relay swallows the old server's goodbye, as a crash would.
    let relay = FaultRelay::start(port, 11).await.unwrap();
    let connection = client.connect(relay.local_addr()).await.unwrap();

    relay.set_partitioned(true);
    server.close();
    server.wait_idle().await;
    echo.await.unwrap();
    drop(server);
    // The same office starts again on the same port: same key, new process state.
    let started = Instant::now();
    let restarted = loop {
        match tongban_transport::Endpoint::bind(port, &hub.key, directory.clone(), config.clone()) {
            Ok(endpoint) => break endpoint,
            Err(err) => {
                assert!(started.elapsed() < Duration::from_secs(5), "{err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    relay.set_partitioned(false);
    let healed = Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .expect("the old connection outlived the restart");
    assert_eq!(lost, ConnectionLost::Reset);
    assert!(healed.elapsed() < Duration::from_secs(5));
    // And a new connection to the restarted node works.
    let again = client.connect(relay.local_addr()).await.unwrap();
    assert_eq!(again.peer().office(), &hub.id);
    drop(restarted);
}
