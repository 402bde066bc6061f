//! Mutual authentication against the directory.

use std::sync::Arc;
use std::time::Duration;

use tongban_domain::ids::Timestamp;
use tongban_transport::{ConnectError, ConnectionLost, DirectoryHandle, PeerRejection, Refusal};

use crate::support::{DAY_MS, World, assert_nothing_accepted, endpoint, spawn_echo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_peers_see_each_others_office() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let server = endpoint(&hub, &directory);
    let client = endpoint(&township, &directory);

    let (connected, accepted) = tokio::join!(client.connect(server.local_addr()), server.accept());
    let connected = connected.unwrap();
    let accepted = accepted.unwrap();

    assert_eq!(connected.peer().office().as_str(), "440106-hub");
    assert_eq!(connected.peer().public_key, hub.key.public());
    assert_eq!(connected.peer().certificate.public_key, hub.key.public());
    assert_eq!(accepted.peer().office().as_str(), "440106001");
    assert_eq!(accepted.peer().public_key, township.key.public());
    assert_eq!(accepted.peer().address, client.local_addr());

    // And application data flows both ways on the authenticated connection.
    let (mut send, mut recv) = connected.open_stream().await.unwrap();
    send.send_frame(b"hello hub").await.unwrap();
    let (mut back, mut incoming) = accepted.accept_stream().await.unwrap();
    assert_eq!(incoming.recv_frame().await.unwrap().unwrap(), b"hello hub");
    back.send_frame(b"hello township").await.unwrap();
    assert_eq!(recv.recv_frame().await.unwrap().unwrap(), b"hello township");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_is_refused_by_a_known_server() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let stranger = world.office("440106999");
    // The directory knows the hub, not the stranger; the stranger trusts the hub.
    let directory = DirectoryHandle::new(world.directory(1, &[&hub], &[]));
    let server = endpoint(&hub, &directory);
    let client = endpoint(&stranger, &directory);

    let err = client.connect(server.local_addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::RefusedByPeer {
                because: Refusal::UnknownKey,
                ..
            }
        ),
        "{err}"
    );
    assert_nothing_accepted(&server, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_client_refuses_an_unknown_server() {
    let mut world = World::new();
    let rogue = world.office("440106-hub");
    let township = world.office("440106001");
    // The rogue server would accept the township, but the township's directory
    // does not know the rogue's key.
    let server_directory = DirectoryHandle::new(world.directory(1, &[&rogue, &township], &[]));
    let client_directory = DirectoryHandle::new(world.directory(1, &[&township], &[]));
    let server = endpoint(&rogue, &server_directory);
    let client = endpoint(&township, &client_directory);

    let err = client.connect(server.local_addr()).await.unwrap_err();
    match err {
        ConnectError::PeerNotAllowed {
            rejection:
                PeerRejection::UnknownKey {
                    key,
                    directory_version: 1,
                },
            ..
        } => assert_eq!(key, rogue.key.public()),
        other => panic!("expected an unknown-key refusal, got {other}"),
    }
    assert_nothing_accepted(&server, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_keys_are_refused_both_ways() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let revoked_hub = world.office("440106-old-hub");
    let directory = DirectoryHandle::new(world.directory(
        1,
        &[&hub, &township, &revoked_hub],
        &[&township, &revoked_hub],
    ));

    // A revoked client is refused by the server.
    let server = endpoint(&hub, &directory);
    let client = endpoint(&township, &directory);
    let err = client.connect(server.local_addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::RefusedByPeer {
                because: Refusal::Revoked,
                ..
            }
        ),
        "{err}"
    );
    assert_nothing_accepted(&server, Duration::from_millis(300)).await;

    // A revoked server is refused by the client, with the reason.
    let revoked_server = endpoint(&revoked_hub, &directory);
    let good_client = endpoint(&hub, &directory);
    let err = good_client
        .connect(revoked_server.local_addr())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ConnectError::PeerNotAllowed { rejection: PeerRejection::Revoked { office, .. }, .. }
                if office.as_str() == "440106-old-hub"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let now = Timestamp::now().millis();
    let expired = world.certify_window(
        &township,
        Timestamp(now - 30 * DAY_MS),
        Timestamp(now - DAY_MS),
    );
    let current = world.certify(&hub);
    let signed = world
        .authority
        .publish(1, Timestamp(now), vec![current, expired], vec![]);
    let directory = DirectoryHandle::new(
        tongban_ledger::Directory::verify(&signed.encode(), &world.authority.public()).unwrap(),
    );
    assert!(matches!(
        directory.check_key(&township.key.public(), Timestamp::now()),
        Err(PeerRejection::NotValidNow { .. })
    ));
    let server = endpoint(&hub, &directory);
    let client = endpoint(&township, &directory);
    let err = client.connect(server.local_addr()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::RefusedByPeer {
                because: Refusal::NotValidNow,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_update_revoking_a_key_refuses_the_next_connection() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let server = Arc::new(endpoint(&hub, &directory));
    let _echo = spawn_echo(server.clone());
    // The client keeps its own copy of the directory, as a real node would.
    let client_directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let client = endpoint(&township, &client_directory);

    let first = client.connect(server.local_addr()).await.unwrap();
    let (mut send, mut recv) = first.open_stream().await.unwrap();
    send.send_frame(b"before").await.unwrap();
    assert_eq!(recv.recv_frame().await.unwrap().unwrap(), b"before");

    // The server learns of the revocation.
    let revoking = world.directory(2, &[&hub, &township], &[&township]);
    assert!(directory.update(revoking).unwrap());
    assert_eq!(directory.version(), 2);
    // An older directory does not replace it.
    assert!(
        !directory
            .update(world.directory(1, &[&hub, &township], &[]))
            .unwrap()
    );

    let err = client.connect(server.local_addr()).await.unwrap_err();
    assert!(matches!(err, ConnectError::RefusedByPeer { .. }), "{err}");

    // The connection made before the update lives until the node enforces the
    // new directory on live connections.
    assert_eq!(server.enforce_directory(), 1);
    let lost = tokio::time::timeout(Duration::from_secs(5), first.closed())
        .await
        .unwrap();
    assert!(
        matches!(lost, ConnectionLost::ClosedByPeer { code: 1, .. }),
        "{lost}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_endpoint_ends_accept_and_its_connections() {
    let mut world = World::new();
    let hub = world.office("440106-hub");
    let township = world.office("440106001");
    let directory = DirectoryHandle::new(world.directory(1, &[&hub, &township], &[]));
    let server = endpoint(&hub, &directory);
    let client = endpoint(&township, &directory);
    let (connection, accepted) = tokio::join!(client.connect(server.local_addr()), server.accept());
    let connection = connection.unwrap();
    // Held until after the close: dropping the last handle would close it with
    // code 0 first.
    let _accepted = accepted.unwrap();

    server.close();
    let next = tokio::time::timeout(Duration::from_secs(5), server.accept())
        .await
        .unwrap();
    assert!(next.is_none());
    let lost = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .unwrap();
    assert!(
        matches!(lost, ConnectionLost::ClosedByPeer { code: 4, .. }),
        "{lost}"
    );
    server.wait_idle().await;
}
