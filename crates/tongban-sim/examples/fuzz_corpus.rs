//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) from real
//! encodings: frames of every message kind carrying a real case document and real
//! Automerge sync messages, the signed transitions of a case taken through the
//! stage machine, and the simulated world's directory, certificates and a
//! revocation. The files are checked in; rerun after a format change:
//!
//! ```text
//! cargo run -p tongban-sim --example fuzz_corpus
//! ```

use std::path::{Path, PathBuf};

use automerge::Automerge;
use automerge::sync::{State, SyncDoc};
use tongban_case::Payload;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, Operator, Timestamp};
use tongban_domain::stage::Stage;
use tongban_ledger::directory::{DirectoryAuthority, Revocation, SignedDirectory};
use tongban_ledger::keys::OfficeKey;
use tongban_sim::rng::Rng;
use tongban_sim::world::{World, create_case, epoch, resident_id};
use tongban_sync::admit;
use tongban_sync::wire::{Cursor, GoodbyeReason, Hello, Inventory, InventoryEntry, Message};

type Failure = Box<dyn std::error::Error>;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn main() -> Result<(), Failure> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"));
    let world = World::standard();
    let mut rng = Rng::new(1);
    // A local case (acceptance = domicile) taken to `publicized`, and a travelling
    // one taken to `received`, signed by the right offices.
    let township = world.townships()[0];
    let other = world.townships()[7];
    let acceptance = &world.offices[township];
    let domicile = &world.offices[other];
    let operator = Operator::parse("fuzz-clerk")?;
    let at = epoch();
    let case = CaseId::new(&acceptance.division, at.china_date(), rng.bytes4())?;
    let resident = resident_id(&mut rng, &domicile.division);
    let (mut document, _) = create_case(acceptance, &case, &domicile.division, &resident, at)?;
    let later = |minutes: i64| Timestamp(at.0 + minutes * 60_000);
    document.apply(
        Stage::Accepted,
        &acceptance.signing(),
        &operator,
        later(10),
        &Payload::default(),
    )?;
    document.apply(
        Stage::Pushed,
        &acceptance.signing(),
        &operator,
        later(20),
        &Payload::default(),
    )?;
    let before_receipt = document.automerge_mut().document().clone();
    document.apply(
        Stage::Received,
        &domicile.signing(),
        &operator,
        later(30),
        &Payload::default(),
    )?;
    let doc: Automerge = document.automerge_mut().document().clone();

    // Transitions.
    let transitions = admit::transitions_of(&doc);
    for (n, bytes) in transitions.iter().enumerate() {
        write(
            &root.join("transition_decode"),
            &format!("transition-{n}"),
            bytes,
        )?;
    }

    // Directory, certificates, a revocation.
    let directory = SignedDirectory::decode(&world.directory)?;
    write(
        &root.join("directory_decode"),
        "directory",
        &world.directory,
    )?;
    for (n, cert) in directory.directory.certificates.iter().take(4).enumerate() {
        write(
            &root.join("directory_decode"),
            &format!("certificate-{n}"),
            &cert.encode(),
        )?;
    }
    let authority = DirectoryAuthority::new(OfficeKey::from_bytes(
        blake3::hash(b"tongban-sim authority").as_bytes(),
    ));
    let revoked = &directory.directory.certificates[0].cert;
    let revocation = authority.revoke(Revocation {
        office: revoked.office.clone(),
        public_key: revoked.public_key,
        effective: at,
        reason: "key lost 密钥遗失".into(),
        serial: 100,
    })?;
    write(
        &root.join("directory_decode"),
        "revocation",
        &revocation.encode(),
    )?;
    let with_revocation = authority.publish(
        2,
        at,
        directory
            .directory
            .certificates
            .iter()
            .take(3)
            .cloned()
            .collect(),
        vec![revocation],
    );
    write(
        &root.join("directory_decode"),
        "directory-revocation",
        &with_revocation.encode(),
    )?;

    // Frames of every kind.
    let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    let domicile_code = DivisionCode::parse(&domicile.division)?;
    let incarnation = *blake3::hash(b"incarnation").as_bytes();
    let mut incarnation16 = [0u8; 16];
    incarnation16.copy_from_slice(&incarnation[..16]);
    let mut sender_state = State::new();
    let mut receiver_state = State::new();
    let mut partial = before_receipt.clone();
    // A real exchange: the holder of the older copy asks, the other answers with
    // the missing change.
    let mut sync_messages = Vec::new();
    for _ in 0..4 {
        if let Some(m) = partial.generate_sync_message(&mut receiver_state) {
            sync_messages.push(m.clone().encode());
            doc.clone().receive_sync_message(&mut sender_state, m)?;
        }
        if let Some(m) = doc.generate_sync_message(&mut sender_state) {
            sync_messages.push(m.clone().encode());
            partial.receive_sync_message(&mut receiver_state, m)?;
        }
    }
    let mut messages = vec![
        (
            "hello",
            Message::Hello(Hello {
                protocol_version: tongban_sync::wire::PROTOCOL_VERSION,
                node: acceptance.id.clone(),
                incarnation: incarnation16,
                directory_version: 1,
                cursor: None,
            }),
        ),
        (
            "hello-cursor",
            Message::Hello(Hello {
                protocol_version: tongban_sync::wire::PROTOCOL_VERSION,
                node: domicile.id.clone(),
                incarnation: incarnation16,
                directory_version: 1,
                cursor: Some(Cursor {
                    incarnation: incarnation16,
                    seq: 41,
                }),
            }),
        ),
        (
            "inventory",
            Message::Inventory(Inventory {
                incarnation: incarnation16,
                from: 40,
                upto: 42,
                entries: vec![InventoryEntry {
                    case: case.clone(),
                    domicile: domicile_code,
                    heads: heads.clone(),
                }],
            }),
        ),
        (
            "want-docs",
            Message::WantDocs {
                cases: vec![case.clone()],
            },
        ),
        (
            "doc",
            Message::Doc {
                case: case.clone(),
                bytes: doc.save(),
            },
        ),
        (
            "docs",
            Message::Docs {
                docs: vec![(case.clone(), doc.save()), (case.clone(), doc.save())],
            },
        ),
        (
            "ack",
            Message::Ack {
                incarnation: incarnation16,
                upto: 42,
            },
        ),
        (
            "directory",
            Message::Directory {
                bytes: world.directory.clone(),
            },
        ),
        (
            "material-request",
            Message::MaterialRequest {
                case: case.clone(),
                hash: *blake3::hash(b"material").as_bytes(),
                offset: 0,
                max_len: 1 << 20,
            },
        ),
        (
            "material-chunk",
            Message::MaterialChunk {
                hash: *blake3::hash(b"material").as_bytes(),
                offset: 0,
                total_len: 64,
                data: vec![0x25; 64],
            },
        ),
        (
            "material-missing",
            Message::MaterialMissing {
                hash: *blake3::hash(b"material").as_bytes(),
            },
        ),
        (
            "goodbye",
            Message::Goodbye {
                reason: GoodbyeReason::ProtocolViolation,
                detail: "inventory offers a case off this node's route".into(),
            },
        ),
    ];
    for (n, message) in sync_messages.into_iter().enumerate() {
        let name: &'static str = Box::leak(format!("doc-sync-{n}").into_boxed_str());
        messages.push((
            name,
            Message::DocSync {
                case: case.clone(),
                message,
            },
        ));
    }
    for (name, message) in messages {
        write(&root.join("wire_decode"), name, &message.encode()?)?;
    }
    println!("corpus written under {}", root.display());
    Ok(())
}
