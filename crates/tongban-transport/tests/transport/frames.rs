//! Frames on streams: round trips, limits, backpressure.

use std::sync::Arc;
use std::time::Instant;

use tongban_transport::{DEFAULT_MAX_FRAME_SIZE, DirectoryHandle, FrameError};

use crate::support::{World, endpoint, endpoint_with, payload, spawn_echo, test_config};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multi_mebibyte_frames_round_trip() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let server = Arc::new(endpoint(&hub, &directory));
    let _echo = spawn_echo(server.clone());
    let client = endpoint(&township, &directory);
    let connection = client.connect(server.local_addr()).await.unwrap();

    let sizes = [
        0,
        1,
        1000,
        65_536,
        3 * MIB + 7,
        DEFAULT_MAX_FRAME_SIZE as usize,
    ];
    let started = Instant::now();
    let (mut send, mut recv) = connection.open_stream().await.unwrap();
    let writer = tokio::spawn(async move {
        for (salt, size) in sizes.iter().enumerate() {
            send.send_frame(&payload(*size, salt as u8)).await.unwrap();
        }
        send.finish().unwrap();
        send.delivered().await.unwrap();
    });
    for (salt, size) in sizes.iter().enumerate() {
        let frame = recv.recv_frame().await.unwrap().unwrap();
        assert_eq!(frame.len(), *size);
        assert!(
            frame == payload(*size, salt as u8),
            "frame of {size} bytes differs"
        );
    }
    assert_eq!(
        recv.recv_frame().await.unwrap(),
        None,
        "the echo finished the stream"
    );
    writer.await.unwrap();
    eprintln!(
        "echoed {} MiB in {:?}",
        sizes.iter().sum::<usize>() / MIB,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_with_typed_errors() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    // The server accepts frames of at most 1 MiB; the client's limit is the default.
    let mut small = test_config();
    small.max_frame_size = MIB as u32;
    let server = endpoint_with(&hub, &directory, small);
    let client = endpoint(&township, &directory);
    let (connection, accepted) = tokio::join!(client.connect(server.local_addr()), server.accept());
    let connection = connection.unwrap();
    let accepted = accepted.unwrap();

    // Above our own limit: refused before anything is sent.
    let (mut send, _recv) = connection.open_stream().await.unwrap();
    let too_big = vec![0u8; DEFAULT_MAX_FRAME_SIZE as usize + 1];
    assert_eq!(
        send.send_frame(&too_big).await,
        Err(FrameError::OutgoingTooLarge {
            len: DEFAULT_MAX_FRAME_SIZE as usize + 1,
            max: DEFAULT_MAX_FRAME_SIZE
        })
    );

    // Within ours, above the peer's: the peer refuses it on the header and stops
    // the stream; we learn that from the stream.
    send.send_frame(b"fine").await.unwrap();
    let sender = tokio::spawn(async move {
        let outcome = send.send_frame(&vec![7u8; 2 * MIB]).await;
        match outcome {
            Ok(()) => {
                send.finish().ok();
                send.delivered().await
            }
            Err(err) => Err(err),
        }
    });
    let (_back, mut recv) = accepted.accept_stream().await.unwrap();
    assert_eq!(recv.recv_frame().await.unwrap().unwrap(), b"fine");
    assert_eq!(
        recv.recv_frame().await,
        Err(FrameError::IncomingTooLarge {
            len: 2 * MIB as u32,
            max: MIB as u32
        })
    );
    assert_eq!(
        sender.await.unwrap(),
        Err(FrameError::StoppedByPeer { code: 3 })
    );

    // The connection itself is unharmed.
    let (mut send, _recv) = connection.open_stream().await.unwrap();
    send.send_frame(b"still here").await.unwrap();
    let (_back, mut recv) = accepted.accept_stream().await.unwrap();
    assert_eq!(recv.recv_frame().await.unwrap().unwrap(), b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_batches_than_the_stream_limit_all_complete() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let mut config = test_config();
    config.max_concurrent_streams = 4;
    let server = Arc::new(endpoint_with(&hub, &directory, config.clone()));
    let _echo = spawn_echo(server.clone());
    let client = endpoint_with(&township, &directory, config);
    let connection = client.connect(server.local_addr()).await.unwrap();

    // 40 batches at once against a limit of 4 open streams: opening waits for
    // the peer to grant more (backpressure), and every batch completes.
    let batches: Vec<_> = (0..40u8)
        .map(|batch| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let (mut send, mut recv) = connection.open_stream().await.unwrap();
                for frame in 0..5u8 {
                    send.send_frame(&payload(10_000, batch ^ frame))
                        .await
                        .unwrap();
                }
                send.finish().unwrap();
                let mut n_frames = 0;
                while let Some(frame) = recv.recv_frame().await.unwrap() {
                    assert!(frame == payload(10_000, batch ^ n_frames));
                    n_frames += 1;
                }
                n_frames
            })
        })
        .collect();
    for batch in batches {
        assert_eq!(batch.await.unwrap(), 5);
    }
}
