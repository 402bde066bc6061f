//! The wire format: every message two nodes exchange, as one length-prefixed,
//! versioned binary frame. `docs/sync-protocol.md` is the design document; this
//! module is its implementation and the two must agree.
//!
//! # Frame
//!
//! | field   | size | notes                                              |
//! |---------|------|----------------------------------------------------|
//! | magic   | 2    | `TB`                                               |
//! | version | 1    | framing version, [`FRAME_VERSION`]                 |
//! | kind    | 1    | [`Kind`] byte                                      |
//! | length  | 4    | u32, payload bytes that follow, ≤ [`MAX_PAYLOAD`]  |
//! | payload | n    | the message body, laid out per kind                |
//!
//! Integers are big-endian and fixed width. An *id* is a `u8` length and that many
//! ASCII bytes, parsed with the domain type's own parser. A *blob* is a `u32`
//! length and that many bytes. A hash is 32 raw bytes.
//!
//! Decoding is total: [`Message::decode`] takes any byte string and returns a
//! message or a [`WireError`] naming the field and its offset; it never panics,
//! never allocates more than the input's length justifies (every count is checked
//! against the bytes that remain before a vector is reserved), and refuses
//! trailing bytes. The fuzz target `fuzz/fuzz_targets/wire_decode.rs`, the corpus
//! test `tests/corpus.rs` and the property tests below hold it to that.

use bytes::{Buf, BufMut};
use tongban_domain::division::{DivisionCode, DivisionLevel};
use tongban_domain::ids::{CaseId, OfficeId};

/// The two magic bytes that open every frame.
pub const MAGIC: [u8; 2] = *b"TB";
/// The framing version this code writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// The protocol version a node announces in its hello. Peers with different
/// protocol versions say goodbye; the framing version protects the frame layout.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload a frame may carry: 16 MiB. A whole case document or a
/// material chunk fits many times over; anything larger is refused before it is
/// buffered.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Most entries in one inventory.
pub const MAX_INVENTORY_ENTRIES: usize = 4096;
/// Longest attestation an inventory carries
/// (`tongban_ledger::supervision::MAX_ATTESTATION_BYTES`).
pub const MAX_ATTESTATION: usize = 1 << 20;
/// Most Automerge heads one inventory entry may name.
pub const MAX_HEADS: usize = 256;
/// Most cases one [`Message::WantDocs`] may name.
pub const MAX_WANTS: usize = 4096;
/// Most documents one [`Message::Docs`] may carry (the frame's payload limit
/// bounds their bytes).
pub const MAX_DOCS: usize = 4096;
/// Largest material chunk: 1 MiB, the store's chunk size.
pub const MAX_CHUNK: usize = 1 << 20;
/// Longest goodbye reason, in bytes.
pub const MAX_REASON: usize = 1024;
/// Longest id field (case or office id), in bytes.
const MAX_ID: usize = 64;

/// A 32-byte hash: an Automerge change hash or a material's BLAKE3 hash.
pub type Hash32 = [u8; 32];

/// The random identifier of one copy of a node's store (see
/// `tongban_store::Store::incarnation`): sequence numbers of the change log are only
/// comparable within one incarnation.
pub type Incarnation = [u8; 16];

/// A position in a node's change log: everything up to and including `seq` of the
/// log with this `incarnation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The log's incarnation.
    pub incarnation: Incarnation,
    /// The last sequence number covered.
    pub seq: u64,
}

/// The first message of a session, sent by both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The sender's office id; the transport has already authenticated its key.
    pub node: OfficeId,
    /// The incarnation of the sender's change log.
    pub incarnation: Incarnation,
    /// The version of the office directory the sender holds (0: none).
    pub directory_version: u64,
    /// How far the sender has durably consumed the *receiver's* change log, as
    /// recorded by the sender; `None` when it has never synced with the receiver.
    pub cursor: Option<Cursor>,
}

/// One case in an inventory: the case, the township of its domicile (so a hub can
/// route it without opening the document) and its heads in the sender's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The case.
    pub case: CaseId,
    /// The 9-digit township of the applicant's household registration.
    pub domicile: DivisionCode,
    /// The document's heads at the sender, as logged.
    pub heads: Vec<Hash32>,
}

/// What changed in the sender's log in `(from, upto]` that is on the receiver's
/// route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The incarnation of the sender's log.
    pub incarnation: Incarnation,
    /// The cursor this batch starts after (exclusive).
    pub from: u64,
    /// The last sequence number this batch covers (inclusive).
    pub upto: u64,
    /// The cases of that range on the receiver's route.
    pub entries: Vec<InventoryEntry>,
    /// The attestations of that range that reach the receiver
    /// (`tongban_ledger::supervision`, signed `TBSV` encodings), sent whole:
    /// they are small and a supervisor holds no document to sync them against.
    /// On the wire after the entries, only when there is at least one, so a
    /// frame without any is the frame of version 1.
    pub attestations: Vec<Vec<u8>>,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Opens a session.
    Hello(Hello),
    /// Cases changed since a cursor.
    Inventory(Inventory),
    /// The receiver of an inventory holds nothing of these cases: send their saves.
    WantDocs {
        /// The cases.
        cases: Vec<CaseId>,
    },
    /// Whole saved documents, for a receiver that has nothing of them: the answer
    /// to [`Message::WantDocs`], many documents a frame so the receiver admits
    /// them as one batch (one store transaction, verification spread over cores).
    Docs {
        /// `(case, Automerge::save output)` pairs.
        docs: Vec<(CaseId, Vec<u8>)>,
    },
    /// One Automerge sync message about one document.
    DocSync {
        /// The case.
        case: CaseId,
        /// `automerge::sync::Message::encode` output.
        message: Vec<u8>,
    },
    /// The receiver of inventories has durably stored everything they announced up
    /// to `upto` and recorded that as its cursor into the sender's log.
    Ack {
        /// The incarnation of the log acknowledged.
        incarnation: Incarnation,
        /// The last sequence number acknowledged.
        upto: u64,
    },
    /// The signed office directory (`SignedDirectory::encode` output).
    Directory {
        /// The encoded signed directory.
        bytes: Vec<u8>,
    },
    /// A request for part of a material a case on both nodes' route references.
    MaterialRequest {
        /// The case that references the material.
        case: CaseId,
        /// The material's BLAKE3 hash.
        hash: Hash32,
        /// Where to start.
        offset: u64,
        /// Most bytes wanted (≤ [`MAX_CHUNK`]).
        max_len: u32,
    },
    /// Part of a material.
    MaterialChunk {
        /// The material's BLAKE3 hash.
        hash: Hash32,
        /// Offset of `data` in the material.
        offset: u64,
        /// The material's whole length.
        total_len: u64,
        /// The bytes (≤ [`MAX_CHUNK`]).
        data: Vec<u8>,
    },
    /// The answer to a [`Message::MaterialRequest`] the sender does not serve: it
    /// does not hold the material (yet), or the request was refused (a case off the
    /// asker's route, a hash the case does not reference). The asker tries another
    /// peer or asks again later. Both get the same answer, so a refusal tells the
    /// asker nothing about what the sender holds.
    MaterialMissing {
        /// The material's BLAKE3 hash, as requested.
        hash: Hash32,
    },
    /// The signed reference datasets the sender holds (kind, scope, version),
    /// sent once a session opens, so that each side sends the other what it
    /// holds newer (`tongban_domain::dataset`).
    Datasets {
        /// What the sender holds.
        held: Vec<DatasetVersion>,
    },
    /// One signed dataset (`SignedDataset::encode` output).
    Dataset {
        /// The encoded signed dataset.
        bytes: Vec<u8>,
    },
    /// The sender ends the session, saying why.
    Goodbye {
        /// Why.
        reason: GoodbyeReason,
        /// Details in words (≤ [`MAX_REASON`] bytes).
        detail: String,
    },
}

/// One dataset a node holds: its kind byte, its scope and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetVersion {
    /// `DatasetKind::wire` (unknown kinds are carried, and ignored).
    pub kind: u8,
    /// `00` or a county code.
    pub scope: String,
    /// The version held.
    pub version: u64,
}

/// Most entries of a [`Message::Datasets`].
pub const MAX_DATASETS: usize = 4096;

/// Why a node ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GoodbyeReason {
    /// A normal close.
    Done,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The peer is not the node the transport authenticated, or is not in the
    /// directory with a role this node talks to.
    UnknownPeer,
    /// The peer sent something the protocol forbids (a case off its route, a
    /// message that does not decode).
    ProtocolViolation,
}

impl GoodbyeReason {
    fn wire(self) -> u8 {
        match self {
            GoodbyeReason::Done => 1,
            GoodbyeReason::VersionMismatch => 2,
            GoodbyeReason::UnknownPeer => 3,
            GoodbyeReason::ProtocolViolation => 4,
        }
    }

    fn from_wire(byte: u8) -> Option<GoodbyeReason> {
        Some(match byte {
            1 => GoodbyeReason::Done,
            2 => GoodbyeReason::VersionMismatch,
            3 => GoodbyeReason::UnknownPeer,
            4 => GoodbyeReason::ProtocolViolation,
            _ => return None,
        })
    }
}

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// [`Message::Hello`].
    Hello,
    /// [`Message::Inventory`].
    Inventory,
    /// [`Message::WantDocs`].
    WantDocs,
    /// [`Message::DocSync`].
    DocSync,
    /// [`Message::Docs`].
    Docs,
    /// [`Message::Ack`].
    Ack,
    /// [`Message::Directory`].
    Directory,
    /// [`Message::MaterialRequest`].
    MaterialRequest,
    /// [`Message::MaterialChunk`].
    MaterialChunk,
    /// [`Message::Goodbye`].
    Goodbye,
    /// [`Message::MaterialMissing`].
    MaterialMissing,
    /// [`Message::Datasets`].
    Datasets,
    /// [`Message::Dataset`].
    Dataset,
}

impl Kind {
    /// The byte on the wire. Stable forever: a new kind gets a new byte.
    pub fn wire(self) -> u8 {
        match self {
            Kind::Hello => 1,
            Kind::Inventory => 2,
            Kind::WantDocs => 3,
            // 4 was `Doc` (one whole document), retired for `Docs`: never reuse it.
            Kind::DocSync => 5,
            Kind::Ack => 6,
            Kind::Directory => 7,
            Kind::MaterialRequest => 8,
            Kind::MaterialChunk => 9,
            Kind::Goodbye => 10,
            Kind::Docs => 11,
            Kind::MaterialMissing => 12,
            Kind::Datasets => 13,
            Kind::Dataset => 14,
        }
    }

    /// Inverse of [`Kind::wire`].
    pub fn from_wire(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Inventory,
            3 => Kind::WantDocs,
            // 4, the retired `Doc`, is an unknown kind.
            5 => Kind::DocSync,
            6 => Kind::Ack,
            7 => Kind::Directory,
            8 => Kind::MaterialRequest,
            9 => Kind::MaterialChunk,
            10 => Kind::Goodbye,
            11 => Kind::Docs,
            12 => Kind::MaterialMissing,
            13 => Kind::Datasets,
            14 => Kind::Dataset,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid frame, or a message cannot be framed. Every decoding
/// variant names the field and the byte offset (from the start of the frame) at
/// which it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated at byte {offset}: field `{field}` needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The frame does not start with `TB`.
    #[error("not a Tongban sync frame: bad magic bytes")]
    BadMagic,
    /// The framing version is not one this code reads.
    #[error("unsupported framing version {found} (this code reads version {FRAME_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The kind byte names no message.
    #[error("unknown message kind {found}")]
    UnknownKind {
        /// The kind byte found.
        found: u8,
    },
    /// A length or count is above its limit.
    #[error("field `{field}` at byte {offset}: {found} exceeds the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// The length or count found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A field's value is not allowed.
    #[error("field `{field}` at byte {offset}: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The payload is longer than its fields.
    #[error("{count} trailing bytes after the message at byte {offset}")]
    TrailingBytes {
        /// Offset of the first trailing byte.
        offset: usize,
        /// How many.
        count: usize,
    },
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message kind.
    pub kind: Kind,
    /// The payload length.
    pub payload_len: usize,
}

impl FrameHeader {
    /// Parses the header at the start of `bytes`. `Ok(None)` means fewer than
    /// [`HEADER_LEN`] bytes are available yet (a stream reader waits for more); an
    /// error means the stream is not a valid frame sequence and must be closed.
    pub fn parse(bytes: &[u8]) -> Result<Option<FrameHeader>, WireError> {
        let Some(header) = bytes.get(..HEADER_LEN) else {
            // Check what is there already, so garbage is refused early.
            if let Some(magic) = bytes.get(..bytes.len().min(2))
                && magic != &MAGIC[..magic.len()]
            {
                return Err(WireError::BadMagic);
            }
            return Ok(None);
        };
        if header[..2] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if header[2] != FRAME_VERSION {
            return Err(WireError::UnsupportedVersion { found: header[2] });
        }
        let kind = Kind::from_wire(header[3]).ok_or(WireError::UnknownKind { found: header[3] })?;
        let payload_len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if payload_len > MAX_PAYLOAD {
            return Err(WireError::TooLong {
                field: "length",
                offset: 4,
                found: payload_len,
                max: MAX_PAYLOAD,
            });
        }
        Ok(Some(FrameHeader { kind, payload_len }))
    }

    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }
}

/// If `buffer` starts with a whole frame, its length; `Ok(None)` when more bytes are
/// needed. For stream transports: read until this gives a length, then
/// [`Message::decode`] that many bytes.
pub fn frame_len(buffer: &[u8]) -> Result<Option<usize>, WireError> {
    Ok(FrameHeader::parse(buffer)?
        .map(|h| h.frame_len())
        .filter(|len| *len <= buffer.len()))
}

impl Message {
    /// The kind of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Inventory(_) => Kind::Inventory,
            Message::WantDocs { .. } => Kind::WantDocs,
            Message::Docs { .. } => Kind::Docs,
            Message::DocSync { .. } => Kind::DocSync,
            Message::Ack { .. } => Kind::Ack,
            Message::Directory { .. } => Kind::Directory,
            Message::MaterialRequest { .. } => Kind::MaterialRequest,
            Message::MaterialChunk { .. } => Kind::MaterialChunk,
            Message::Goodbye { .. } => Kind::Goodbye,
            Message::MaterialMissing { .. } => Kind::MaterialMissing,
            Message::Datasets { .. } => Kind::Datasets,
            Message::Dataset { .. } => Kind::Dataset,
        }
    }

    /// Encodes the message as one frame. Fails only when a field is above its
    /// limit (a document larger than [`MAX_PAYLOAD`], too many entries), in which
    /// case nothing should be sent: the decoder would refuse it.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut w = Writer::new(self.kind());
        match self {
            Message::Hello(hello) => {
                w.u16(hello.protocol_version);
                w.id("node", hello.node.as_str())?;
                w.raw(&hello.incarnation);
                w.u64(hello.directory_version);
                match &hello.cursor {
                    None => w.u8(0),
                    Some(cursor) => {
                        w.u8(1);
                        w.raw(&cursor.incarnation);
                        w.u64(cursor.seq);
                    }
                }
            }
            Message::Inventory(inv) => {
                w.raw(&inv.incarnation);
                w.u64(inv.from);
                w.u64(inv.upto);
                w.count("entries", inv.entries.len(), MAX_INVENTORY_ENTRIES)?;
                for entry in &inv.entries {
                    w.id("case", entry.case.as_str())?;
                    w.id("domicile", entry.domicile.as_str())?;
                    w.count("heads", entry.heads.len(), MAX_HEADS)?;
                    for head in &entry.heads {
                        w.raw(head);
                    }
                }
                if !inv.attestations.is_empty() {
                    w.count(
                        "attestations",
                        inv.attestations.len(),
                        MAX_INVENTORY_ENTRIES,
                    )?;
                    for bytes in &inv.attestations {
                        w.blob("attestation", bytes, MAX_ATTESTATION)?;
                    }
                }
            }
            Message::WantDocs { cases } => {
                w.count("cases", cases.len(), MAX_WANTS)?;
                for case in cases {
                    w.id("case", case.as_str())?;
                }
            }
            Message::Docs { docs } => {
                w.count("docs", docs.len(), MAX_DOCS)?;
                for (case, bytes) in docs {
                    w.id("case", case.as_str())?;
                    w.blob("bytes", bytes, MAX_PAYLOAD)?;
                }
            }
            Message::DocSync { case, message } => {
                w.id("case", case.as_str())?;
                w.blob("message", message, MAX_PAYLOAD)?;
            }
            Message::Ack { incarnation, upto } => {
                w.raw(incarnation);
                w.u64(*upto);
            }
            Message::Directory { bytes } => {
                w.blob("bytes", bytes, MAX_PAYLOAD)?;
            }
            Message::MaterialRequest {
                case,
                hash,
                offset,
                max_len,
            } => {
                w.id("case", case.as_str())?;
                w.raw(hash);
                w.u64(*offset);
                if *max_len as usize > MAX_CHUNK {
                    return Err(WireError::TooLong {
                        field: "max_len",
                        offset: w.offset(),
                        found: *max_len as usize,
                        max: MAX_CHUNK,
                    });
                }
                w.u32(*max_len);
            }
            Message::MaterialChunk {
                hash,
                offset,
                total_len,
                data,
            } => {
                w.raw(hash);
                w.u64(*offset);
                w.u64(*total_len);
                w.blob("data", data, MAX_CHUNK)?;
            }
            Message::Goodbye { reason, detail } => {
                w.u8(reason.wire());
                w.blob("detail", detail.as_bytes(), MAX_REASON)?;
            }
            Message::MaterialMissing { hash } => w.raw(hash),
            Message::Datasets { held } => {
                w.count("held", held.len(), MAX_DATASETS)?;
                for entry in held {
                    w.u8(entry.kind);
                    w.id("scope", &entry.scope)?;
                    w.u64(entry.version);
                }
            }
            Message::Dataset { bytes } => {
                w.blob("bytes", bytes, MAX_PAYLOAD)?;
            }
        }
        w.finish()
    }

    /// Decodes exactly one frame: header, payload and nothing after it.
    pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
        let Some(header) = FrameHeader::parse(frame)? else {
            return Err(WireError::Truncated {
                field: "header",
                offset: 0,
                needed: HEADER_LEN,
                available: frame.len(),
            });
        };
        let payload = &frame[HEADER_LEN..];
        if payload.len() < header.payload_len {
            return Err(WireError::Truncated {
                field: "payload",
                offset: HEADER_LEN,
                needed: header.payload_len,
                available: payload.len(),
            });
        }
        if payload.len() > header.payload_len {
            return Err(WireError::TrailingBytes {
                offset: HEADER_LEN + header.payload_len,
                count: payload.len() - header.payload_len,
            });
        }
        let mut r = Reader {
            bytes: frame,
            pos: HEADER_LEN,
        };
        let message = match header.kind {
            Kind::Hello => {
                let protocol_version = r.u16("protocol_version")?;
                let node = r.office("node")?;
                let incarnation = r.array::<16>("incarnation")?;
                let directory_version = r.u64("directory_version")?;
                let at = r.pos;
                let cursor = match r.u8("has_cursor")? {
                    0 => None,
                    1 => Some(Cursor {
                        incarnation: r.array::<16>("cursor.incarnation")?,
                        seq: r.u64("cursor.seq")?,
                    }),
                    other => {
                        return Err(WireError::InvalidValue {
                            field: "has_cursor",
                            offset: at,
                            reason: format!("must be 0 or 1, found {other}"),
                        });
                    }
                };
                Message::Hello(Hello {
                    protocol_version,
                    node,
                    incarnation,
                    directory_version,
                    cursor,
                })
            }
            Kind::Inventory => {
                let incarnation = r.array::<16>("incarnation")?;
                let from = r.u64("from")?;
                let at = r.pos;
                let upto = r.u64("upto")?;
                if upto < from {
                    return Err(WireError::InvalidValue {
                        field: "upto",
                        offset: at,
                        reason: format!("upto {upto} is before from {from}"),
                    });
                }
                // The smallest entry is an 18-byte case id, a 9-byte domicile and
                // a head count: the count can never ask for more than that allows.
                let n = r.count("entries", MAX_INVENTORY_ENTRIES, 1 + 18 + 1 + 9 + 2)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let case = r.case("case")?;
                    let domicile = r.township("domicile")?;
                    let n_heads = r.count("heads", MAX_HEADS, 32)?;
                    let mut heads = Vec::with_capacity(n_heads);
                    for _ in 0..n_heads {
                        heads.push(r.array::<32>("head")?);
                    }
                    entries.push(InventoryEntry {
                        case,
                        domicile,
                        heads,
                    });
                }
                let mut attestations = Vec::new();
                if r.pos < r.bytes.len() {
                    let at = r.pos;
                    let n = r.count("attestations", MAX_INVENTORY_ENTRIES, 4)?;
                    if n == 0 {
                        return Err(WireError::InvalidValue {
                            field: "attestations",
                            offset: at,
                            reason: "an empty list is written as none".into(),
                        });
                    }
                    for _ in 0..n {
                        attestations.push(r.blob("attestation", MAX_ATTESTATION)?.to_vec());
                    }
                }
                Message::Inventory(Inventory {
                    incarnation,
                    from,
                    upto,
                    entries,
                    attestations,
                })
            }
            Kind::WantDocs => {
                let n = r.count("cases", MAX_WANTS, 1 + 18)?;
                let mut cases = Vec::with_capacity(n);
                for _ in 0..n {
                    cases.push(r.case("case")?);
                }
                Message::WantDocs { cases }
            }
            Kind::Docs => {
                // The smallest entry is an 18-byte case id and an empty blob.
                let n = r.count("docs", MAX_DOCS, 1 + 18 + 4)?;
                let mut docs = Vec::with_capacity(n);
                for _ in 0..n {
                    let case = r.case("case")?;
                    let bytes = r.blob("bytes", MAX_PAYLOAD)?.to_vec();
                    docs.push((case, bytes));
                }
                Message::Docs { docs }
            }
            Kind::DocSync => Message::DocSync {
                case: r.case("case")?,
                message: r.blob("message", MAX_PAYLOAD)?.to_vec(),
            },
            Kind::Ack => Message::Ack {
                incarnation: r.array::<16>("incarnation")?,
                upto: r.u64("upto")?,
            },
            Kind::Directory => Message::Directory {
                bytes: r.blob("bytes", MAX_PAYLOAD)?.to_vec(),
            },
            Kind::MaterialRequest => {
                let case = r.case("case")?;
                let hash = r.array::<32>("hash")?;
                let offset = r.u64("offset")?;
                let at = r.pos;
                let max_len = r.u32("max_len")?;
                if max_len as usize > MAX_CHUNK {
                    return Err(WireError::TooLong {
                        field: "max_len",
                        offset: at,
                        found: max_len as usize,
                        max: MAX_CHUNK,
                    });
                }
                Message::MaterialRequest {
                    case,
                    hash,
                    offset,
                    max_len,
                }
            }
            Kind::MaterialChunk => Message::MaterialChunk {
                hash: r.array::<32>("hash")?,
                offset: r.u64("offset")?,
                total_len: r.u64("total_len")?,
                data: r.blob("data", MAX_CHUNK)?.to_vec(),
            },
            Kind::Goodbye => {
                let at = r.pos;
                let byte = r.u8("reason")?;
                let reason =
                    GoodbyeReason::from_wire(byte).ok_or_else(|| WireError::InvalidValue {
                        field: "reason",
                        offset: at,
                        reason: format!("unknown goodbye reason {byte}"),
                    })?;
                let at = r.pos;
                let detail = r.blob("detail", MAX_REASON)?;
                let detail = std::str::from_utf8(detail)
                    .map_err(|_| WireError::InvalidValue {
                        field: "detail",
                        offset: at,
                        reason: "not UTF-8".into(),
                    })?
                    .to_string();
                Message::Goodbye { reason, detail }
            }
            Kind::MaterialMissing => Message::MaterialMissing {
                hash: r.array::<32>("hash")?,
            },
            Kind::Datasets => {
                // The smallest entry: kind, an empty scope, a version.
                let n = r.count("held", MAX_DATASETS, 1 + 1 + 8)?;
                let mut held = Vec::with_capacity(n);
                for _ in 0..n {
                    let kind = r.u8("kind")?;
                    let (scope, _) = r.id("scope")?;
                    let scope = scope.to_string();
                    let version = r.u64("version")?;
                    held.push(DatasetVersion {
                        kind,
                        scope,
                        version,
                    });
                }
                Message::Datasets { held }
            }
            Kind::Dataset => Message::Dataset {
                bytes: r.blob("bytes", MAX_PAYLOAD)?.to_vec(),
            },
        };
        if r.pos != frame.len() {
            return Err(WireError::TrailingBytes {
                offset: r.pos,
                count: frame.len() - r.pos,
            });
        }
        Ok(message)
    }
}

/// Writes one frame; the header's length is filled in by [`Writer::finish`].
/// Integers are big-endian, written by `bytes`' `BufMut`.
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn new(kind: Kind) -> Writer {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&MAGIC);
        bytes.push(FRAME_VERSION);
        bytes.push(kind.wire());
        bytes.extend_from_slice(&[0; 4]);
        Writer { bytes }
    }

    fn offset(&self) -> usize {
        self.bytes.len()
    }

    fn u8(&mut self, value: u8) {
        self.bytes.put_u8(value);
    }

    fn u16(&mut self, value: u16) {
        self.bytes.put_u16(value);
    }

    fn u32(&mut self, value: u32) {
        self.bytes.put_u32(value);
    }

    fn u64(&mut self, value: u64) {
        self.bytes.put_u64(value);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.bytes.put_slice(bytes);
    }

    fn too_long(&self, field: &'static str, found: usize, max: usize) -> WireError {
        WireError::TooLong {
            field,
            offset: self.offset(),
            found,
            max,
        }
    }

    fn id(&mut self, field: &'static str, text: &str) -> Result<(), WireError> {
        if text.len() > MAX_ID {
            return Err(self.too_long(field, text.len(), MAX_ID));
        }
        self.u8(text.len() as u8);
        self.raw(text.as_bytes());
        Ok(())
    }

    fn count(&mut self, field: &'static str, n: usize, max: usize) -> Result<(), WireError> {
        if n > max {
            return Err(self.too_long(field, n, max));
        }
        self.u32(n as u32);
        Ok(())
    }

    fn blob(&mut self, field: &'static str, bytes: &[u8], max: usize) -> Result<(), WireError> {
        if bytes.len() > max {
            return Err(self.too_long(field, bytes.len(), max));
        }
        self.u32(bytes.len() as u32);
        self.raw(bytes);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>, WireError> {
        let payload_len = self.bytes.len() - HEADER_LEN;
        if payload_len > MAX_PAYLOAD {
            return Err(WireError::TooLong {
                field: "length",
                offset: 4,
                found: payload_len,
                max: MAX_PAYLOAD,
            });
        }
        (&mut self.bytes[4..HEADER_LEN]).put_u32(payload_len as u32);
        Ok(self.bytes)
    }
}

/// Reads fields from a frame; every read checks the remaining length first
/// (naming the field and offset in the error), then `bytes`' `Buf` reads the
/// big-endian integer from exactly the bytes taken.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(WireError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        self.take(field, N)?.copy_to_slice(&mut out);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(field, 1)?.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(self.take(field, 2)?.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(self.take(field, 4)?.get_u32())
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(self.take(field, 8)?.get_u64())
    }

    /// A count of items, each at least `min_item` bytes: refused when above `max`
    /// or when the remaining bytes cannot hold that many items, so a forged count
    /// never makes the decoder reserve memory the input does not back.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, WireError> {
        let at = self.pos;
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(WireError::TooLong {
                field,
                offset: at,
                found: n,
                max,
            });
        }
        let available = self.bytes.len() - self.pos;
        if n.saturating_mul(min_item) > available {
            return Err(WireError::Truncated {
                field,
                offset: self.pos,
                needed: n.saturating_mul(min_item),
                available,
            });
        }
        Ok(n)
    }

    fn blob(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let at = self.pos;
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(WireError::TooLong {
                field,
                offset: at,
                found: n,
                max,
            });
        }
        self.take(field, n)
    }

    fn id(&mut self, field: &'static str) -> Result<(&'a str, usize), WireError> {
        let at = self.pos;
        let n = usize::from(self.u8(field)?);
        if n > MAX_ID {
            return Err(WireError::TooLong {
                field,
                offset: at,
                found: n,
                max: MAX_ID,
            });
        }
        let bytes = self.take(field, n)?;
        if !bytes.is_ascii() {
            return Err(WireError::InvalidValue {
                field,
                offset: at,
                reason: "ids are ASCII".into(),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| WireError::InvalidValue {
            field,
            offset: at,
            reason: "ids are ASCII".into(),
        })?;
        Ok((text, at))
    }

    fn case(&mut self, field: &'static str) -> Result<CaseId, WireError> {
        let (text, at) = self.id(field)?;
        CaseId::parse(text).map_err(|e| WireError::InvalidValue {
            field,
            offset: at,
            reason: e.to_string(),
        })
    }

    fn office(&mut self, field: &'static str) -> Result<OfficeId, WireError> {
        let (text, at) = self.id(field)?;
        OfficeId::parse(text).map_err(|e| WireError::InvalidValue {
            field,
            offset: at,
            reason: e.to_string(),
        })
    }

    fn township(&mut self, field: &'static str) -> Result<DivisionCode, WireError> {
        let (text, at) = self.id(field)?;
        let code = DivisionCode::parse(text).map_err(|e| WireError::InvalidValue {
            field,
            offset: at,
            reason: e.to_string(),
        })?;
        if code.level() != DivisionLevel::Township {
            return Err(WireError::InvalidValue {
                field,
                offset: at,
                reason: "a domicile is a 9-digit township code".into(),
            });
        }
        Ok(code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use expect_test::expect;
    use proptest::prelude::*;

    fn case(n: u32) -> CaseId {
        let date = chrono_date();
        CaseId::new("440106001", date, n.to_be_bytes()).unwrap()
    }

    fn chrono_date() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
    }

    fn arb_case() -> impl Strategy<Value = CaseId> {
        any::<u32>().prop_map(case)
    }

    fn arb_township() -> impl Strategy<Value = DivisionCode> {
        "[0-9]{9}".prop_map(|s| DivisionCode::parse(&s).unwrap())
    }

    fn arb_office() -> impl Strategy<Value = OfficeId> {
        "[a-z0-9][a-z0-9-]{0,63}".prop_map(|s| OfficeId::parse(&s).unwrap())
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let hello = (
            any::<u16>(),
            arb_office(),
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::option::of((any::<[u8; 16]>(), any::<u64>())),
        )
            .prop_map(|(v, node, incarnation, dir, cursor)| {
                Message::Hello(Hello {
                    protocol_version: v,
                    node,
                    incarnation,
                    directory_version: dir,
                    cursor: cursor.map(|(incarnation, seq)| Cursor { incarnation, seq }),
                })
            });
        let entry = (
            arb_case(),
            arb_township(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
        )
            .prop_map(|(case, domicile, heads)| InventoryEntry {
                case,
                domicile,
                heads,
            });
        let inventory = (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(entry, 0..5),
            proptest::collection::vec(arb_bytes(200), 0..3),
        )
            .prop_map(|(incarnation, from, len, entries, attestations)| {
                Message::Inventory(Inventory {
                    incarnation,
                    from: u64::from(from),
                    upto: u64::from(from) + u64::from(len),
                    entries,
                    attestations,
                })
            });
        prop_oneof![
            hello,
            inventory,
            proptest::collection::vec(arb_case(), 0..5)
                .prop_map(|cases| Message::WantDocs { cases }),
            proptest::collection::vec((arb_case(), arb_bytes(100)), 0..4)
                .prop_map(|docs| Message::Docs { docs }),
            (arb_case(), arb_bytes(300))
                .prop_map(|(case, message)| Message::DocSync { case, message }),
            (any::<[u8; 16]>(), any::<u64>())
                .prop_map(|(incarnation, upto)| Message::Ack { incarnation, upto }),
            arb_bytes(300).prop_map(|bytes| Message::Directory { bytes }),
            (
                arb_case(),
                any::<[u8; 32]>(),
                any::<u64>(),
                0..=MAX_CHUNK as u32
            )
                .prop_map(|(case, hash, offset, max_len)| Message::MaterialRequest {
                    case,
                    hash,
                    offset,
                    max_len
                }),
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u64>(),
                arb_bytes(300)
            )
                .prop_map(|(hash, offset, total_len, data)| Message::MaterialChunk {
                    hash,
                    offset,
                    total_len,
                    data
                }),
            (1u8..=4, ".{0,40}").prop_map(|(r, detail)| Message::Goodbye {
                reason: GoodbyeReason::from_wire(r).unwrap(),
                detail
            }),
            any::<[u8; 32]>().prop_map(|hash| Message::MaterialMissing { hash }),
            proptest::collection::vec((any::<u8>(), "[0-9]{0,6}", any::<u64>()), 0..5).prop_map(
                |held| Message::Datasets {
                    held: held
                        .into_iter()
                        .map(|(kind, scope, version)| DatasetVersion {
                            kind,
                            scope,
                            version
                        })
                        .collect()
                }
            ),
            arb_bytes(300).prop_map(|bytes| Message::Dataset { bytes }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(message in arb_message()) {
            let bytes = message.encode().unwrap();
            prop_assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
            prop_assert_eq!(Message::decode(&bytes).unwrap(), message);
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(bytes in arb_bytes(600)) {
            let _ = Message::decode(&bytes);
            let _ = frame_len(&bytes);
        }

        #[test]
        fn any_payload_behind_a_valid_header_decodes_or_fails(kind in 1u8..=12, payload in arb_bytes(400)) {
            let mut frame = vec![b'T', b'B', FRAME_VERSION, kind];
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            let _ = Message::decode(&frame);
        }

        #[test]
        fn mutated_frames_decode_or_fail_without_panic(
            message in arb_message(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = message.encode().unwrap();
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn every_strict_prefix_is_refused(message in arb_message(), cut in any::<usize>()) {
            let bytes = message.encode().unwrap();
            let cut = cut % bytes.len();
            prop_assert!(Message::decode(&bytes[..cut]).is_err());
            prop_assert_eq!(frame_len(&bytes[..cut]).unwrap(), None);
        }
    }

    fn check(bytes: &[u8], expect: expect_test::Expect) {
        let actual = match Message::decode(bytes) {
            Ok(message) => format!("{message:?}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn typed_errors() {
        check(
            b"",
            expect!["error: truncated at byte 0: field `header` needs 8 bytes, 0 left"],
        );
        check(
            b"XX\x01\x01\0\0\0\0",
            expect!["error: not a Tongban sync frame: bad magic bytes"],
        );
        check(
            b"TB\x02\x01\0\0\0\0",
            expect!["error: unsupported framing version 2 (this code reads version 1)"],
        );
        check(
            b"TB\x01\x63\0\0\0\0",
            expect!["error: unknown message kind 99"],
        );
        // Kind 4 was `Doc`, retired for `Docs`: no longer a message.
        check(
            b"TB\x01\x04\0\0\0\0",
            expect!["error: unknown message kind 4"],
        );
        check(
            b"TB\x01\x01\x7f\xff\xff\xff",
            expect!["error: field `length` at byte 4: 2147483647 exceeds the limit of 16777216"],
        );
        check(
            b"TB\x01\x06\0\0\0\x18\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x07",
            expect![
                "Ack { incarnation: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], upto: 7 }"
            ],
        );
        check(
            b"TB\x01\x06\0\0\0\x19\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x07\0",
            expect!["error: 1 trailing bytes after the message at byte 32"],
        );
        // A count that the remaining bytes cannot back is refused before any
        // allocation.
        check(
            b"TB\x01\x03\0\0\0\x04\0\0\x0f\xff",
            expect!["error: truncated at byte 12: field `cases` needs 77805 bytes, 0 left"],
        );
        check(
            b"TB\x01\x03\0\0\0\x07\0\0\0\x01\x02ab",
            expect!["error: truncated at byte 12: field `cases` needs 19 bytes, 3 left"],
        );
    }

    #[test]
    fn material_missing_round_trips_and_is_checked() {
        let message = Message::MaterialMissing { hash: [7; 32] };
        let bytes = message.encode().unwrap();
        assert_eq!(&bytes[..8], b"TB\x01\x0c\0\0\0\x20");
        assert_eq!(Message::decode(&bytes).unwrap(), message);
        check(
            &bytes[..20],
            expect!["error: truncated at byte 8: field `payload` needs 32 bytes, 12 left"],
        );
        let mut short = b"TB\x01\x0c\0\0\0\x1f".to_vec();
        short.extend_from_slice(&[7; 31]);
        check(
            &short,
            expect!["error: truncated at byte 8: field `hash` needs 32 bytes, 31 left"],
        );
        let mut long = b"TB\x01\x0c\0\0\0\x21".to_vec();
        long.extend_from_slice(&[7; 33]);
        check(
            &long,
            expect!["error: 1 trailing bytes after the message at byte 40"],
        );
    }

    #[test]
    fn oversize_messages_are_not_encoded() {
        let message = Message::WantDocs {
            cases: vec![case(1); MAX_WANTS + 1],
        };
        assert!(matches!(
            message.encode(),
            Err(WireError::TooLong { field: "cases", .. })
        ));
    }
}
