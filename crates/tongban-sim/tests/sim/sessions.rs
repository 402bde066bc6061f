//! Sessions between two real sync nodes, frame by frame (the `materials`
//! harness): the hellos that open them (`node/handshake.rs`) and the cursor
//! into the peer's log that a reconnect resumes from (`node/inventory.rs`).

use tongban_domain::ids::OfficeId;
use tongban_sync::store::SyncStore;
use tongban_sync::wire::{GoodbyeReason, Hello, Message, PROTOCOL_VERSION};

use crate::materials::Net;

const TA: &str = "130102001";
const TD: &str = "130102002";
const HUB: &str = "hub-130102";

fn office(id: &str) -> OfficeId {
    OfficeId::parse(id).unwrap()
}

fn entries(net: &Net, from: &str, to: &str) -> usize {
    net.sent(from, to, |m| matches!(m, Message::Inventory(_)))
        .map(|m| match m {
            Message::Inventory(inventory) => inventory.entries.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_reconnect_resumes_from_the_stored_cursor() {
    let mut net = Net::new(&[TA, HUB]);
    net.connect(TA, HUB);
    let (case, _) = net.new_case(TA, TD, 1_000);
    net.run(60_000);
    assert!(net.holds_case(HUB, &case));
    let cursor = net.node(HUB).store.cursor(&office(TA)).unwrap();
    let cursor = cursor.expect("the hub acknowledged the township's log");
    assert!(cursor.seq >= 1);
    let offered = entries(&net, TA, HUB);
    assert!(offered >= 1);

    net.restart(HUB);
    net.connect(TA, HUB);
    net.run(60_000);
    // The restarted hub's hello carries the cursor it stored...
    let hellos: Vec<_> = net
        .sent(HUB, TA, |m| matches!(m, Message::Hello(_)))
        .collect();
    let Some(Message::Hello(last)) = hellos.last() else {
        panic!("no hello")
    };
    assert_eq!(last.cursor, Some(cursor));
    // ...so the township offers nothing again.
    assert_eq!(entries(&net, TA, HUB), offered);
    assert!(net.refusals(HUB).is_empty());
}

#[test]
fn a_hello_naming_another_office_ends_the_session() {
    let mut net = Net::new(&[TA, HUB]);
    net.connect(TA, HUB);
    net.run(1_000);
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        node: office(TD),
        incarnation: [0; 16],
        directory_version: 0,
        cursor: None,
    });
    net.inject(TA, HUB, &hello);
    net.run(1_000);
    let goodbyes = net
        .sent(HUB, TA, |m| {
            matches!(
                m,
                Message::Goodbye {
                    reason: GoodbyeReason::UnknownPeer,
                    ..
                }
            )
        })
        .count();
    assert_eq!(goodbyes, 1);
    assert_eq!(net.node(HUB).sync.sessions().count(), 0);
}
