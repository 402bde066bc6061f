//! Signed case archives (`TBARC` v1): one case, self-contained, for inspection
//! (the notice's "备份以供查阅") on a machine that holds nothing else.
//!
//! An archive carries everything a verifier needs to check one case without a node:
//! the case's Automerge document (a full save), its signed stage transitions with
//! their payloads (they also live inside the document; the separate section lets a
//! reader without an Automerge implementation read the signed history, and the
//! verifier checks the two agree), the signed office directory the exporting node
//! held (so every signer can be checked against the authority key the verifier is
//! given), and optionally the case's materials, content-addressed by BLAKE3.
//!
//! The layout is in `docs/formats.md` ("Signed case archive"), and in short:
//!
//! ```text
//! "TBARC" · version 1 · HEAD · DIRC · DOCU · TRNS · MATS · BLAKE3 of all before
//! ```
//!
//! each section being a 4-byte ASCII tag, a `u64` big-endian length and that many
//! bytes. The trailing digest protects the file against damage, not against a
//! forger: anyone can re-seal an altered archive. Authenticity comes from inside —
//! the directory is signed by the authority whose key the verifier brings, and
//! each transition is signed by an office that directory certifies.
//!
//! Decoding ([`Archive::decode`]) is total: any bytes give an archive or an
//! [`ArchiveError`] naming the section, field and byte offset at fault. It never
//! allocates from a length it has not checked against the bytes actually present.
//! Verification ([`verify_archive`]) runs in stages — integrity, directory,
//! document, transitions, history, materials — and reports every failure with a
//! stable code, as the case verifier does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::Serialize;
use tongban_case::CaseDocument;
use tongban_domain::calendar::Calendar;
use tongban_domain::ids::{CaseId, OfficeId, Timestamp};
use tongban_ledger::directory::{Directory, DirectoryError, SignedDirectory};
use tongban_ledger::keys::PublicKey;
use tongban_ledger::verify::{Report, Severity};
use tongban_store::{MaterialHash, StoreError};

use crate::local::{LocalNode, NodeError};

/// The magic bytes every archive starts with.
pub const MAGIC: &[u8; 5] = b"TBARC";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the trailing BLAKE3 digest.
pub const DIGEST_LEN: usize = 32;
/// Magic plus version byte.
const HEADER_LEN: usize = MAGIC.len() + 1;
/// A section's tag plus its `u64` length.
const SECTION_HEADER_LEN: usize = 4 + 8;
/// Longest `tool` string in the manifest.
const MAX_TOOL: usize = 256;

/// The sections, in the only order version 1 allows: tag and name.
const SECTIONS: [(&[u8; 4], &str); 5] = [
    (b"HEAD", "HEAD manifest"),
    (b"DIRC", "DIRC directory"),
    (b"DOCU", "DOCU document"),
    (b"TRNS", "TRNS transitions"),
    (b"MATS", "MATS materials"),
];

/// What the archive says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The case archived.
    pub case: CaseId,
    /// When the exporting node wrote the archive (its clock).
    pub exported_at: Timestamp,
    /// The office whose node wrote it.
    pub exported_by: OfficeId,
    /// The program that wrote it, e.g. `tongban 0.1.0`.
    pub tool: String,
    /// Whether the archive claims to hold every material the document records.
    pub with_materials: bool,
}

/// One signed transition as archived: its `TBTR` bytes and its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchivedTransition {
    /// The signed transition's canonical encoding.
    pub signed: Vec<u8>,
    /// The payload whose digest it signed.
    pub payload: Vec<u8>,
}

/// One material as archived.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchivedMaterial {
    /// BLAKE3 of `bytes`, as the document records it.
    pub hash: [u8; 32],
    /// The content.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for ArchivedMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The content may be an ID card scan: never print it.
        f.debug_struct("ArchivedMaterial")
            .field("hash", &hex(&self.hash))
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A decoded archive. [`Archive::encode`] seals it; [`Archive::decode`] checks the
/// framing and the seal, not the signatures: [`verify_archive`] does that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The manifest (`HEAD`).
    pub manifest: Manifest,
    /// The signed directory, `TBDIR` bytes (`DIRC`).
    pub directory: Vec<u8>,
    /// The Automerge document, a full save (`DOCU`).
    pub document: Vec<u8>,
    /// The signed transitions with payloads (`TRNS`).
    pub transitions: Vec<ArchivedTransition>,
    /// The materials (`MATS`).
    pub materials: Vec<ArchivedMaterial>,
}

/// Why bytes are not a well-formed, intact archive. Every variant that concerns a
/// place in the file names the byte offset (and the section) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The file does not start with `TBARC`.
    #[error("not a Tongban case archive: byte 0 starts {found}, not \"TBARC\"")]
    NotAnArchive {
        /// The first bytes found, escaped.
        found: String,
    },
    /// A version this code does not read.
    #[error(
        "archive format version {found} at byte 5; this Tongban reads version {FORMAT_VERSION}: upgrade Tongban"
    )]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The file ends before what it declares.
    #[error(
        "truncated: at byte {offset}, {section} {field} needs {needed} bytes but only {available} remain before the digest (file of {file_len} bytes cut short or damaged)"
    )]
    Truncated {
        /// The section being read (`header` or a section name).
        section: &'static str,
        /// The field being read.
        field: &'static str,
        /// Where the field starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left.
        available: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A section tag is not the one expected at that place.
    #[error("at byte {offset}: expected section {expected}, found tag {found}")]
    WrongSection {
        /// Where the tag starts.
        offset: u64,
        /// The section expected.
        expected: &'static str,
        /// The tag found, escaped.
        found: String,
    },
    /// Bytes between the last section and the digest.
    #[error("at byte {offset}: {count} unexpected bytes after the last section")]
    TrailingBytes {
        /// Where they start.
        offset: u64,
        /// How many.
        count: u64,
    },
    /// The digest does not match the content.
    #[error(
        "integrity digest mismatch at byte {offset}: the archive records BLAKE3 {recorded}, its content hashes to {computed}: the file was altered or damaged after export"
    )]
    Digest {
        /// Where the digest starts.
        offset: u64,
        /// The digest the file records (hex).
        recorded: String,
        /// The digest of the content (hex).
        computed: String,
    },
    /// A field inside an intact section is not valid.
    #[error("at byte {offset}, {section} {field}: {reason}")]
    Malformed {
        /// The section.
        section: &'static str,
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl ArchiveError {
    /// The stable code of the failure (as in `--json` output).
    pub fn code(&self) -> &'static str {
        match self {
            ArchiveError::NotAnArchive { .. } => "not_an_archive",
            ArchiveError::UnsupportedVersion { .. } => "unsupported_version",
            ArchiveError::Truncated { .. } => "truncated",
            ArchiveError::WrongSection { .. } => "bad_section",
            ArchiveError::TrailingBytes { .. } => "trailing_bytes",
            ArchiveError::Digest { .. } => "integrity_digest",
            ArchiveError::Malformed { .. } => "malformed",
        }
    }

    /// The byte offset at fault, when the error concerns one place.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ArchiveError::NotAnArchive { .. } => Some(0),
            ArchiveError::UnsupportedVersion { .. } => Some(MAGIC.len() as u64),
            ArchiveError::Truncated { offset, .. }
            | ArchiveError::WrongSection { offset, .. }
            | ArchiveError::TrailingBytes { offset, .. }
            | ArchiveError::Digest { offset, .. }
            | ArchiveError::Malformed { offset, .. } => Some(*offset),
        }
    }
}

/// Why a case could not be exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The node refused (unknown case, no directory, damaged document).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--with-materials`, but a material the document records is not held here.
    #[error(
        "material {hash} ({kind}) is recorded in the case but not held by this node: export without --with-materials, or from a node that holds it"
    )]
    MaterialNotHeld {
        /// Its hash (hex).
        hash: String,
        /// Its checklist code.
        kind: String,
    },
    /// A stored material could not be read back intact.
    #[error("material {hash} cannot be read: {reason}")]
    Material {
        /// Its hash (hex).
        hash: String,
        /// Why.
        reason: String,
    },
}

impl ExportError {
    /// Whether the error is the office's request refused by a rule.
    pub fn is_rejection(&self) -> bool {
        match self {
            ExportError::Node(err) => err.is_rejection(),
            ExportError::MaterialNotHeld { .. } => true,
            ExportError::Store(_) | ExportError::Material { .. } => false,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    tongban_ledger::hex(bytes)
}

/// Escapes up to eight bytes for an error message.
fn escaped(bytes: &[u8]) -> String {
    let shown: Vec<u8> = bytes.iter().take(8).copied().collect();
    format!("{:?}", String::from_utf8_lossy(&shown))
}

/// The BLAKE3 digest of a whole archive file's content (everything before its
/// trailing digest), or `None` when the file is too short to have one.
pub fn content_digest(bytes: &[u8]) -> Option<[u8; 32]> {
    let end = bytes.len().checked_sub(DIGEST_LEN)?;
    bytes.get(..end).map(|body| *blake3::hash(body).as_bytes())
}

/// Builds the archive of one case held by `node`. Reads only: the store is opened
/// for reading and nothing is written.
pub fn export(
    node: &LocalNode,
    case: &CaseId,
    with_materials: bool,
    now: Timestamp,
) -> Result<Archive, ExportError> {
    // The directory as the node keeps it: the exact signed bytes it verified.
    node.directory()?;
    let directory = node
        .store()
        .meta(tongban_replica::META_DIRECTORY)?
        .ok_or(NodeError::NoDirectory)?;
    let mut doc = node.case(case)?;
    let document = doc.save();
    let transitions = doc
        .raw_transitions()
        .map_err(NodeError::from)?
        .into_iter()
        .map(|(signed, payload)| ArchivedTransition { signed, payload })
        .collect();
    let mut materials = Vec::new();
    if with_materials {
        // The scans go only where the materials rule lets them: an office of
        // the case, never a hub that holds them to relay them.
        crate::materials::may_hand_out(node, case, &doc)
            .map_err(|e| ExportError::Node(NodeError::Rejected(e.to_string())))?;
        let records = doc.read().map_err(NodeError::from)?.materials;
        let mut wanted: BTreeMap<[u8; 32], String> = BTreeMap::new();
        for record in records.values() {
            let hash: MaterialHash = record.hash.parse().map_err(|_| ExportError::Material {
                hash: record.hash.clone(),
                reason: "the document records a hash that is not 64 hex digits".into(),
            })?;
            wanted.entry(hash.0).or_insert_with(|| record.kind.clone());
        }
        for (hash, kind) in wanted {
            let material = MaterialHash(hash);
            if !node.store().has_material(&material)? {
                return Err(ExportError::MaterialNotHeld {
                    hash: hex(&hash),
                    kind,
                });
            }
            let mut reader = node.store().open_material(&material)?;
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| ExportError::Material {
                    hash: hex(&hash),
                    reason: e.to_string(),
                })?;
            materials.push(ArchivedMaterial { hash, bytes });
        }
    }
    Ok(Archive {
        manifest: Manifest {
            case: case.clone(),
            exported_at: now,
            exported_by: node.office().clone(),
            tool: format!("tongban {}", env!("CARGO_PKG_VERSION")),
            with_materials,
        },
        directory,
        document,
        transitions,
        materials,
    })
}

// ---------------------------------------------------------------------------
// Encoding

fn put_u32_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let len = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

fn put_section(out: &mut Vec<u8>, tag: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(tag);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
}

impl Archive {
    /// The canonical encoding, sealed with its BLAKE3 digest. Transitions are
    /// written in ascending order of their hash and materials in ascending order of
    /// theirs (a repeated material is written once), so equal archives give equal
    /// bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut head = Vec::new();
        put_str(&mut head, self.manifest.case.as_str());
        head.extend_from_slice(&self.manifest.exported_at.millis().to_be_bytes());
        put_str(&mut head, self.manifest.exported_by.as_str());
        put_str(&mut head, &self.manifest.tool);
        head.push(u8::from(self.manifest.with_materials));

        let mut transitions: Vec<(&[u8; 32], &ArchivedTransition)> = Vec::new();
        let hashes: Vec<[u8; 32]> = self
            .transitions
            .iter()
            .map(|t| *blake3::hash(&t.signed).as_bytes())
            .collect();
        transitions.extend(hashes.iter().zip(self.transitions.iter()));
        transitions.sort();
        let mut trns = Vec::new();
        put_u32_len(&mut trns, transitions.len());
        for (_, t) in transitions {
            put_u32_len(&mut trns, t.signed.len());
            trns.extend_from_slice(&t.signed);
            put_u32_len(&mut trns, t.payload.len());
            trns.extend_from_slice(&t.payload);
        }

        let mut materials: BTreeMap<[u8; 32], &[u8]> = BTreeMap::new();
        for m in &self.materials {
            materials.entry(m.hash).or_insert(&m.bytes);
        }
        let mut mats = Vec::new();
        put_u32_len(&mut mats, materials.len());
        for (hash, bytes) in materials {
            mats.extend_from_slice(&hash);
            mats.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            mats.extend_from_slice(bytes);
        }

        let mut out = Vec::with_capacity(
            HEADER_LEN
                + 5 * SECTION_HEADER_LEN
                + head.len()
                + self.directory.len()
                + self.document.len()
                + trns.len()
                + mats.len()
                + DIGEST_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        let [head_tag, dir_tag, doc_tag, trns_tag, mats_tag] = SECTIONS.map(|(tag, _)| tag);
        put_section(&mut out, head_tag, &head);
        put_section(&mut out, dir_tag, &self.directory);
        put_section(&mut out, doc_tag, &self.document);
        put_section(&mut out, trns_tag, &trns);
        put_section(&mut out, mats_tag, &mats);
        let digest = blake3::hash(&out);
        out.extend_from_slice(digest.as_bytes());
        out
    }

    /// Decodes an archive: framing, then the integrity digest, then each section's
    /// content. Total: any bytes give an archive or an error naming the place.
    pub fn decode(bytes: &[u8]) -> Result<Archive, ArchiveError> {
        let bodies = frame(bytes)?;
        let [head, dir, doc, trns, mats] = bodies;
        let manifest = decode_manifest(bytes, head)?;
        let transitions = decode_transitions(bytes, trns)?;
        let materials = decode_materials(bytes, mats)?;
        let slice = |(start, end): (usize, usize)| bytes.get(start..end).unwrap_or_default();
        Ok(Archive {
            manifest,
            directory: slice(dir).to_vec(),
            document: slice(doc).to_vec(),
            transitions,
            materials,
        })
    }
}

/// Checks magic, version, the five section headers and the digest; returns each
/// section body's `(start, end)` in `bytes`.
fn frame(bytes: &[u8]) -> Result<[(usize, usize); 5], ArchiveError> {
    let file_len = bytes.len() as u64;
    let truncated =
        |section, field, offset: usize, needed: usize, available: usize| ArchiveError::Truncated {
            section,
            field,
            offset: offset as u64,
            needed: needed as u64,
            available: available as u64,
            file_len,
        };
    let magic_found = bytes
        .get(..MAGIC.len().min(bytes.len()))
        .unwrap_or_default();
    if !MAGIC.starts_with(magic_found) {
        return Err(ArchiveError::NotAnArchive {
            found: escaped(magic_found),
        });
    }
    let Some(&version) = bytes.get(MAGIC.len()) else {
        return Err(truncated(
            "header",
            "magic and version",
            0,
            HEADER_LEN,
            bytes.len(),
        ));
    };
    if version != FORMAT_VERSION {
        return Err(ArchiveError::UnsupportedVersion { found: version });
    }
    // Everything between the header and the digest belongs to the sections.
    let Some(body_end) = bytes
        .len()
        .checked_sub(DIGEST_LEN)
        .filter(|end| *end >= HEADER_LEN)
    else {
        return Err(truncated(
            "header",
            "sections and digest",
            HEADER_LEN,
            DIGEST_LEN,
            bytes.len().saturating_sub(HEADER_LEN),
        ));
    };
    let mut pos = HEADER_LEN;
    let mut bodies = [(0usize, 0usize); 5];
    for (slot, (tag, name)) in bodies.iter_mut().zip(SECTIONS) {
        let available = body_end - pos;
        let Some(header) = bytes
            .get(pos..pos + SECTION_HEADER_LEN)
            .filter(|_| available >= SECTION_HEADER_LEN)
        else {
            return Err(truncated(
                name,
                "tag and length",
                pos,
                SECTION_HEADER_LEN,
                available,
            ));
        };
        let (found_tag, len_bytes) = header.split_at(4);
        if found_tag != tag {
            return Err(ArchiveError::WrongSection {
                offset: pos as u64,
                expected: name,
                found: escaped(found_tag),
            });
        }
        let mut len_array = [0u8; 8];
        len_array.copy_from_slice(len_bytes);
        let declared = u64::from_be_bytes(len_array);
        let start = pos + SECTION_HEADER_LEN;
        let available = body_end - start;
        let len = usize::try_from(declared)
            .ok()
            .filter(|len| *len <= available)
            .ok_or(ArchiveError::Truncated {
                section: name,
                field: "body",
                offset: start as u64,
                needed: declared,
                available: available as u64,
                file_len,
            })?;
        *slot = (start, start + len);
        pos = start + len;
    }
    if pos != body_end {
        return Err(ArchiveError::TrailingBytes {
            offset: pos as u64,
            count: (body_end - pos) as u64,
        });
    }
    let recorded = bytes.get(body_end..).unwrap_or_default();
    let computed = blake3::hash(bytes.get(..body_end).unwrap_or_default());
    if computed.as_bytes().as_slice() != recorded {
        return Err(ArchiveError::Digest {
            offset: body_end as u64,
            recorded: hex(recorded),
            computed: computed.to_hex().to_string(),
        });
    }
    Ok(bodies)
}

/// A bounds-checked reader over one section body; offsets in errors are absolute.
struct SectionReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    section: &'static str,
}

impl<'a> SectionReader<'a> {
    fn new(bytes: &'a [u8], (start, end): (usize, usize), section: &'static str) -> Self {
        SectionReader {
            bytes,
            pos: start,
            end,
            section,
        }
    }

    fn malformed(&self, field: &'static str, offset: usize, reason: String) -> ArchiveError {
        ArchiveError::Malformed {
            section: self.section,
            field,
            offset: offset as u64,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, len: u64) -> Result<&'a [u8], ArchiveError> {
        let available = self.end - self.pos;
        let slice = usize::try_from(len)
            .ok()
            .filter(|len| *len <= available)
            .and_then(|len| self.bytes.get(self.pos..self.pos + len))
            .ok_or_else(|| {
                self.malformed(
                    field,
                    self.pos,
                    format!(
                        "needs {len} bytes, only {available} remain in the section: the section is inconsistent"
                    ),
                )
            })?;
        self.pos += slice.len();
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ArchiveError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N as u64)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ArchiveError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ArchiveError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ArchiveError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn str(&mut self, field: &'static str, max: usize) -> Result<(usize, &'a str), ArchiveError> {
        let at = self.pos;
        let len = u16::from_be_bytes(self.array(field)?);
        if usize::from(len) > max {
            return Err(self.malformed(field, at, format!("{len} bytes, at most {max} allowed")));
        }
        let bytes = self.take(field, u64::from(len))?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| self.malformed(field, at, "not valid UTF-8".into()))?;
        Ok((at, text))
    }

    fn finish(&self) -> Result<(), ArchiveError> {
        if self.pos != self.end {
            return Err(self.malformed(
                "end",
                self.pos,
                format!("{} bytes left over in the section", self.end - self.pos),
            ));
        }
        Ok(())
    }
}

fn decode_manifest(bytes: &[u8], body: (usize, usize)) -> Result<Manifest, ArchiveError> {
    let mut r = SectionReader::new(bytes, body, SECTIONS[0].1);
    let (at, case) = r.str("case", 64)?;
    let case = CaseId::parse(case).map_err(|e| r.malformed("case", at, e.to_string()))?;
    let exported_at = Timestamp(i64::from_be_bytes(r.array("exported_at")?));
    let (at, office) = r.str("exported_by", 64)?;
    let exported_by =
        OfficeId::parse(office).map_err(|e| r.malformed("exported_by", at, e.to_string()))?;
    let (_, tool) = r.str("tool", MAX_TOOL)?;
    let tool = tool.to_string();
    let at = r.pos;
    let with_materials = match r.u8("with_materials")? {
        0 => false,
        1 => true,
        other => {
            return Err(r.malformed("with_materials", at, format!("{other}, must be 0 or 1")));
        }
    };
    r.finish()?;
    Ok(Manifest {
        case,
        exported_at,
        exported_by,
        tool,
        with_materials,
    })
}

fn decode_transitions(
    bytes: &[u8],
    body: (usize, usize),
) -> Result<Vec<ArchivedTransition>, ArchiveError> {
    let mut r = SectionReader::new(bytes, body, SECTIONS[3].1);
    let count = r.u32("n_transitions")?;
    // No capacity from `count`: each entry takes at least 8 bytes, so the loop is
    // bounded by the bytes present, and the vector grows only with what was read.
    let mut out = Vec::new();
    let mut previous: Option<[u8; 32]> = None;
    for _ in 0..count {
        let at = r.pos;
        let len = r.u32("signed_len")?;
        let signed = r.take("signed", u64::from(len))?.to_vec();
        let len = r.u32("payload_len")?;
        let payload = r.take("payload", u64::from(len))?.to_vec();
        let hash = *blake3::hash(&signed).as_bytes();
        if previous.is_some_and(|p| p >= hash) {
            return Err(r.malformed(
                "signed",
                at,
                "transitions must be in strictly ascending order of their hash (repeated or unsorted)"
                    .into(),
            ));
        }
        previous = Some(hash);
        out.push(ArchivedTransition { signed, payload });
    }
    r.finish()?;
    Ok(out)
}

fn decode_materials(
    bytes: &[u8],
    body: (usize, usize),
) -> Result<Vec<ArchivedMaterial>, ArchiveError> {
    let mut r = SectionReader::new(bytes, body, SECTIONS[4].1);
    let count = r.u32("n_materials")?;
    let mut out: Vec<ArchivedMaterial> = Vec::new();
    for _ in 0..count {
        let at = r.pos;
        let hash: [u8; 32] = r.array("hash")?;
        if out.last().is_some_and(|m| m.hash >= hash) {
            return Err(r.malformed(
                "hash",
                at,
                "materials must be in strictly ascending order of hash (repeated or unsorted)"
                    .into(),
            ));
        }
        let len = r.u64("len")?;
        let content = r.take("content", len)?.to_vec();
        out.push(ArchivedMaterial {
            hash,
            bytes: content,
        });
    }
    r.finish()?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Verification

/// The stages of archive verification, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveStage {
    /// The framing and the integrity digest.
    Integrity,
    /// The directory's signature against the given authority key.
    Directory,
    /// The Automerge document loads, has the case schema, and is the manifest's case.
    Document,
    /// The transition section is exactly the document's signed transitions.
    Transitions,
    /// The signed history, by the case verifier.
    History,
    /// Materials against their hashes and the document's material records.
    Materials,
}

impl ArchiveStage {
    /// Every stage, in order.
    pub const ALL: [ArchiveStage; 6] = [
        ArchiveStage::Integrity,
        ArchiveStage::Directory,
        ArchiveStage::Document,
        ArchiveStage::Transitions,
        ArchiveStage::History,
        ArchiveStage::Materials,
    ];

    /// The stable code name.
    pub fn code(self) -> &'static str {
        match self {
            ArchiveStage::Integrity => "integrity",
            ArchiveStage::Directory => "directory",
            ArchiveStage::Document => "document",
            ArchiveStage::Transitions => "transitions",
            ArchiveStage::History => "history",
            ArchiveStage::Materials => "materials",
        }
    }

    /// The Chinese label.
    pub fn zh(self) -> &'static str {
        match self {
            ArchiveStage::Integrity => "文件完整性",
            ArchiveStage::Directory => "目录签名",
            ArchiveStage::Document => "案件文档",
            ArchiveStage::Transitions => "转换记录",
            ArchiveStage::History => "签名历史",
            ArchiveStage::Materials => "材料",
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Checked, nothing wrong.
    Passed,
    /// Checked, something wrong (see the failures of this stage).
    Failed,
    /// Not checked: an earlier stage it depends on failed, or nothing to check.
    Skipped,
}

/// One stage's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageOutcome {
    /// The stage.
    pub stage: ArchiveStage,
    /// Its Chinese label.
    pub stage_zh: &'static str,
    /// How it ended.
    pub status: StageStatus,
    /// What was checked, or why it was skipped.
    pub detail: String,
}

/// One failure, with its stage, a stable code and the precise reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The stage that found it.
    pub stage: ArchiveStage,
    /// Stable code: an [`ArchiveError::code`], a directory or material code, or
    /// the case verifier's violation kind.
    pub code: String,
    /// The reason, in words.
    pub reason: String,
}

/// The whole verification of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// True when no stage failed.
    pub ok: bool,
    /// BLAKE3 of the archive content (hex), when the file is long enough to have one.
    pub digest: Option<String>,
    /// The manifest, once the archive decoded.
    pub manifest: Option<Manifest>,
    /// The directory's version and authority fingerprint, once it verified.
    pub directory_version: Option<u64>,
    /// Every stage, in order.
    pub stages: Vec<StageOutcome>,
    /// Every failure, in stage order.
    pub failures: Vec<Failure>,
    /// The case verifier's report, when the history stage ran.
    pub history: Option<Report>,
}

impl ArchiveReport {
    /// Whether some failure has this code.
    pub fn has(&self, code: &str) -> bool {
        self.failures.iter().any(|f| f.code == code)
    }

    /// The outcome of one stage.
    pub fn stage(&self, stage: ArchiveStage) -> Option<&StageOutcome> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}

struct ReportBuilder {
    stages: Vec<StageOutcome>,
    failures: Vec<Failure>,
}

impl ReportBuilder {
    fn fail(&mut self, stage: ArchiveStage, code: &str, reason: String) {
        self.failures.push(Failure {
            stage,
            code: code.to_string(),
            reason,
        });
    }

    /// Closes a stage: failed when it reported failures, else passed.
    fn close(&mut self, stage: ArchiveStage, detail: String) {
        let failed = self.failures.iter().any(|f| f.stage == stage);
        self.stages.push(StageOutcome {
            stage,
            stage_zh: stage.zh(),
            status: if failed {
                StageStatus::Failed
            } else {
                StageStatus::Passed
            },
            detail,
        });
    }

    fn skip(&mut self, stage: ArchiveStage, why: &str) {
        self.stages.push(StageOutcome {
            stage,
            stage_zh: stage.zh(),
            status: StageStatus::Skipped,
            detail: why.to_string(),
        });
    }
}

fn directory_code(err: &DirectoryError) -> &'static str {
    match err {
        DirectoryError::Decode(_) => "directory_undecodable",
        DirectoryError::UntrustedAuthority { .. } | DirectoryError::AuthorityMismatch { .. } => {
            "wrong_authority"
        }
        DirectoryError::BadSignature { .. }
        | DirectoryError::BadCertificateSignature { .. }
        | DirectoryError::BadRevocationSignature { .. } => "directory_signature",
        _ => "directory_invalid",
    }
}

/// Verifies an archive file's bytes against the directory authority's key: the
/// integrity digest, the directory's signature, the document, the agreement of the
/// transition section with the document, the signed history (against the archived
/// directory, `calendar` and `now`) and the materials. Never panics; reports every
/// failure it can reach (a stage whose input failed is skipped, with the reason).
pub fn verify_archive(
    bytes: &[u8],
    authority: &PublicKey,
    calendar: &Calendar,
    now: Timestamp,
) -> ArchiveReport {
    let mut b = ReportBuilder {
        stages: Vec::new(),
        failures: Vec::new(),
    };
    let digest = content_digest(bytes).map(|d| hex(&d));
    let archive = match Archive::decode(bytes) {
        Ok(archive) => {
            b.close(
                ArchiveStage::Integrity,
                format!(
                    "{} 字节 bytes, BLAKE3 {} matches",
                    bytes.len(),
                    digest.as_deref().unwrap_or("-")
                ),
            );
            archive
        }
        Err(err) => {
            b.fail(ArchiveStage::Integrity, err.code(), err.to_string());
            b.close(ArchiveStage::Integrity, "the archive cannot be read".into());
            for stage in ArchiveStage::ALL.into_iter().skip(1) {
                b.skip(stage, "the archive did not pass the integrity check");
            }
            return ArchiveReport {
                ok: false,
                digest,
                manifest: None,
                directory_version: None,
                stages: b.stages,
                failures: b.failures,
                history: None,
            };
        }
    };

    // The directory: signed by the authority the verifier trusts.
    let directory: Option<Directory> = match Directory::verify(&archive.directory, authority) {
        Ok(directory) => {
            b.close(
                ArchiveStage::Directory,
                format!(
                    "版本 version {}, {} certificates, {} revocations, authority {}",
                    directory.version,
                    directory.certificates.len(),
                    directory.revocations.len(),
                    authority.fingerprint()
                ),
            );
            Some(directory)
        }
        Err(err) => {
            let code = directory_code(&err);
            let reason = match (&err, SignedDirectory::decode(&archive.directory)) {
                (DirectoryError::UntrustedAuthority { .. }, Ok(signed)) => format!(
                    "the archived directory (version {}) is signed by authority {}, not by the given authority key {}",
                    signed.directory.version,
                    signed.directory.authority.fingerprint(),
                    authority.fingerprint()
                ),
                _ => format!("the archived directory is refused: {err}"),
            };
            b.fail(ArchiveStage::Directory, code, reason);
            b.close(
                ArchiveStage::Directory,
                "no trusted directory: signers cannot be checked".into(),
            );
            None
        }
    };
    let directory_version = directory.as_ref().map(|d| d.version);

    // The document.
    let mut doc = match CaseDocument::load(&archive.document) {
        Ok(doc) => {
            match doc.case_id() {
                Ok(id) if id == archive.manifest.case => {}
                Ok(id) => b.fail(
                    ArchiveStage::Document,
                    "case_mismatch",
                    format!(
                        "the document is case {id}, but the manifest names case {}",
                        archive.manifest.case
                    ),
                ),
                Err(err) => b.fail(
                    ArchiveStage::Document,
                    "document_undecodable",
                    format!("the document's case id is invalid: {err}"),
                ),
            }
            b.close(
                ArchiveStage::Document,
                format!("Automerge, {} bytes", archive.document.len()),
            );
            Some(doc)
        }
        Err(err) => {
            b.fail(
                ArchiveStage::Document,
                "document_undecodable",
                format!("the case document does not load: {err}"),
            );
            b.close(ArchiveStage::Document, "the document cannot be read".into());
            None
        }
    };

    // The transition section against the document.
    match doc.as_ref().map(CaseDocument::raw_transitions) {
        Some(Ok(raw)) => {
            let in_doc: BTreeSet<ArchivedTransition> = raw
                .into_iter()
                .map(|(signed, payload)| ArchivedTransition { signed, payload })
                .collect();
            let in_archive: BTreeSet<&ArchivedTransition> = archive.transitions.iter().collect();
            for t in &in_archive {
                if !in_doc.contains(*t) {
                    b.fail(
                        ArchiveStage::Transitions,
                        "transitions_mismatch",
                        format!(
                            "transition {} of the transition section (with its payload) is not in the case document",
                            short_hash(&t.signed)
                        ),
                    );
                }
            }
            for t in &in_doc {
                if !in_archive.contains(t) {
                    b.fail(
                        ArchiveStage::Transitions,
                        "transitions_mismatch",
                        format!(
                            "transition {} of the case document (with its payload) is missing from the transition section",
                            short_hash(&t.signed)
                        ),
                    );
                }
            }
            b.close(
                ArchiveStage::Transitions,
                format!(
                    "{} 条签名转换 signed transitions",
                    archive.transitions.len()
                ),
            );
        }
        Some(Err(err)) => {
            b.fail(
                ArchiveStage::Transitions,
                "document_undecodable",
                format!("the document's transitions cannot be read: {err}"),
            );
            b.close(ArchiveStage::Transitions, String::new());
        }
        None => b.skip(ArchiveStage::Transitions, "the document did not load"),
    }

    // The signed history, by the case verifier, against the archived directory.
    let mut history = None;
    match (directory.as_ref(), doc.as_mut()) {
        (Some(directory), Some(doc)) => match doc.verify(directory, calendar, now) {
            Ok(report) => {
                for violation in report
                    .violations
                    .iter()
                    .filter(|v| v.severity == Severity::Error)
                {
                    b.fail(
                        ArchiveStage::History,
                        violation.kind.code(),
                        violation.to_string(),
                    );
                }
                let warnings = report.warnings().count();
                b.close(
                    ArchiveStage::History,
                    format!(
                        "{} 条签名转换 transitions, {} 个分支 branches, {warnings} warnings",
                        report.n_entries,
                        report.branches.len()
                    ),
                );
                history = Some(report);
            }
            Err(err) => {
                b.fail(
                    ArchiveStage::History,
                    "document_undecodable",
                    format!("the history cannot be read from the document: {err}"),
                );
                b.close(ArchiveStage::History, String::new());
            }
        },
        (None, _) => b.skip(
            ArchiveStage::History,
            "no directory signed by the given authority to check signers against",
        ),
        _ => b.skip(ArchiveStage::History, "the document did not load"),
    }

    // Materials: content against hash, hash against the document's records.
    check_materials(&archive, doc.as_ref(), &mut b);

    ArchiveReport {
        ok: b.failures.is_empty(),
        digest,
        manifest: Some(archive.manifest),
        directory_version,
        stages: b.stages,
        failures: b.failures,
        history,
    }
}

fn short_hash(signed: &[u8]) -> String {
    let hash = blake3::hash(signed).to_hex();
    hash.get(..12).unwrap_or_default().to_string()
}

fn check_materials(archive: &Archive, doc: Option<&CaseDocument>, b: &mut ReportBuilder) {
    let stage = ArchiveStage::Materials;
    for m in &archive.materials {
        let actual = blake3::hash(&m.bytes);
        if actual.as_bytes() != &m.hash {
            b.fail(
                stage,
                "material_hash",
                format!(
                    "material {} ({} bytes) hashes to {}: its content is not the one its hash names",
                    hex(&m.hash),
                    m.bytes.len(),
                    actual.to_hex()
                ),
            );
        }
    }
    let records = match doc.map(CaseDocument::read) {
        Some(Ok(case)) => case.materials,
        _ => {
            if archive.materials.is_empty() {
                b.skip(stage, "the document did not load");
            } else {
                b.close(
                    stage,
                    format!(
                        "{} materials checked against their hashes only (the document did not load)",
                        archive.materials.len()
                    ),
                );
            }
            return;
        }
    };
    // hash → (size, kinds) as the document records them.
    let mut recorded: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for record in records.values() {
        let entry = recorded
            .entry(record.hash.to_ascii_lowercase())
            .or_insert((record.size, Vec::new()));
        entry.1.push(record.kind.clone());
        if entry.0 != record.size {
            b.fail(
                stage,
                "material_size",
                format!(
                    "the document records material {} ({}) with sizes {} and {}",
                    record.hash, record.kind, entry.0, record.size
                ),
            );
        }
    }
    let archived: BTreeMap<String, usize> = archive
        .materials
        .iter()
        .map(|m| (hex(&m.hash), m.bytes.len()))
        .collect();
    for (hash, len) in &archived {
        match recorded.get(hash) {
            None => b.fail(
                stage,
                "material_unrecorded",
                format!("material {hash} is in the archive but the case document records no such material"),
            ),
            Some((size, kinds)) if *size != *len as u64 => b.fail(
                stage,
                "material_size",
                format!(
                    "material {hash} ({}) is {len} bytes, the case document records {size}",
                    kinds.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
    if archive.manifest.with_materials {
        for (hash, (_, kinds)) in &recorded {
            if !archived.contains_key(hash) {
                b.fail(
                    stage,
                    "material_missing",
                    format!(
                        "the archive claims every material, but material {hash} ({}) recorded in the case document is missing",
                        kinds.join(", ")
                    ),
                );
            }
        }
    }
    let detail = if archive.manifest.with_materials {
        format!(
            "{} 个材料 materials, {} recorded in the document",
            archived.len(),
            recorded.len()
        )
    } else {
        format!(
            "未包含 not included ({} recorded in the document)",
            recorded.len()
        )
    };
    b.close(stage, detail);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        let case = CaseId::new(
            "440106001",
            chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            [1, 2, 3, 4],
        )
        .unwrap();
        let content = b"scan of a document".to_vec();
        Archive {
            manifest: Manifest {
                case,
                exported_at: Timestamp(1_790_000_000_000),
                exported_by: OfficeId::parse("440106001").unwrap(),
                tool: "tongban test".into(),
                with_materials: true,
            },
            directory: b"TBDIR-not-really".to_vec(),
            document: b"automerge bytes".to_vec(),
            transitions: vec![
                ArchivedTransition {
                    signed: b"first".to_vec(),
                    payload: b"{}".to_vec(),
                },
                ArchivedTransition {
                    signed: b"second".to_vec(),
                    payload: Vec::new(),
                },
            ],
            materials: vec![ArchivedMaterial {
                hash: *blake3::hash(&content).as_bytes(),
                bytes: content,
            }],
        }
    }

    fn canonical(mut archive: Archive) -> Archive {
        archive
            .transitions
            .sort_by_key(|t| *blake3::hash(&t.signed).as_bytes());
        archive
    }

    #[test]
    fn round_trip_is_canonical() {
        let archive = canonical(sample());
        let bytes = archive.encode();
        let decoded = Archive::decode(&bytes).unwrap();
        assert_eq!(decoded, archive);
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let err = Archive::decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArchiveError::Truncated { .. }
                        | ArchiveError::NotAnArchive { .. }
                        | ArchiveError::Digest { .. }
                        | ArchiveError::TrailingBytes { .. }
                        | ArchiveError::WrongSection { .. }
                ),
                "len {len}: {err}"
            );
        }
        // Cut inside the document: the section's declared length runs past the end.
        let err = Archive::decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert_eq!(err.code(), "truncated", "{err}");
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5a;
            let err = Archive::decode(&damaged).unwrap_err();
            assert!(err.offset().is_some(), "byte {i}: {err}");
        }
    }

    #[test]
    fn resealed_garbage_inside_sections_is_reported_by_field() {
        let bytes = sample().encode();
        // The `with_materials` flag is the last byte of HEAD.
        let head_len =
            u64::from_be_bytes(bytes[HEADER_LEN + 4..HEADER_LEN + 12].try_into().unwrap());
        let flag = HEADER_LEN + SECTION_HEADER_LEN + head_len as usize - 1;
        let mut damaged = bytes.clone();
        damaged[flag] = 7;
        let end = damaged.len() - DIGEST_LEN;
        let digest = blake3::hash(&damaged[..end]);
        damaged[end..].copy_from_slice(digest.as_bytes());
        let err = Archive::decode(&damaged).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert_eq!(err.offset(), Some(flag as u64), "{err}");
        assert!(err.to_string().contains("with_materials"), "{err}");
    }

    #[test]
    fn huge_declared_counts_do_not_allocate() {
        // A transition section that claims u32::MAX entries but holds none.
        let mut archive = sample();
        archive.transitions.clear();
        let mut bytes = archive.encode();
        let trns_count_at =
            bytes.windows(4).position(|w| w == b"TRNS").unwrap() + SECTION_HEADER_LEN;
        bytes[trns_count_at..trns_count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let end = bytes.len() - DIGEST_LEN;
        let digest = blake3::hash(&bytes[..end]);
        bytes[end..].copy_from_slice(digest.as_bytes());
        let err = Archive::decode(&bytes).unwrap_err();
        assert_eq!(err.code(), "malformed", "{err}");
    }

    #[test]
    fn not_an_archive_and_newer_versions_are_named() {
        let err = Archive::decode(b"PK\x03\x04 a zip file").unwrap_err();
        assert_eq!(err.code(), "not_an_archive");
        let mut bytes = sample().encode();
        bytes[5] = 2;
        assert_eq!(
            Archive::decode(&bytes).unwrap_err().code(),
            "unsupported_version"
        );
    }
}
