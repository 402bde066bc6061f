//! A case's materials as a reviewer sees them: what the case records, which of
//! it this node holds, and the bytes of one material, checked against its hash.
//!
//! Materials travel by content hash along the case's route (`tongban-sync`'s
//! `material`): every office of the route and the hubs between them store them.
//! Only an *office of the case* — its acceptance office, domicile township,
//! domicile county DPF or civil affairs, as the case's index names them — is
//! handed a material's bytes here; a hub holds them only to relay them.
//! [`may_hand_out`] is that one rule, and both paths of
//! [`crate::office::Office::material`] (the store opened directly, and a
//! running node behind its control API) ask it; the command line keeps none.
//!
//! Which material a reviewer means (`KIND` or `HASH`, or a hash prefix) is
//! decided by [`select`] over the case's rows, so that the command line keeps
//! no rule of that either.

use std::io::Read;

use serde::{Deserialize, Serialize};
use tongban_case::CaseDocument;
use tongban_domain::ids::CaseId;
use tongban_store::{MaterialHash, Store};

use crate::local::{LocalNode, MAX_MATERIAL_BYTES, NodeError};

/// The fewest hex digits a hash prefix may have.
pub const MIN_PREFIX: usize = 8;

/// One material a case records (`materials.<kind:hash>`), and whether this node
/// holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRow {
    /// Checklist code (`hukou_book`, `id_card`, ...).
    pub kind: String,
    /// Its Chinese name, from the case's materials notice or the domicile
    /// province's policy (empty when neither names it).
    pub kind_zh: String,
    /// BLAKE3 of the content, 64 hex digits: its address in every store.
    pub hash: String,
    /// Size in bytes, as the case records it.
    pub size: u64,
    /// Media type (`image/jpeg`, `application/pdf`, ...).
    pub media_type: String,
    /// The file name the clerk attached.
    pub file_name: String,
    /// When it was attached (ms since the epoch).
    pub added_at: i64,
    /// The office that attached it.
    pub added_by: String,
    /// Whether this node holds the bytes (else sync has not fetched them yet).
    pub held: bool,
}

/// What is missing, when a material cannot be handed out: named in the control
/// API's 404 answers (`ApiError::missing`) and told apart by the command line
/// (a material recorded but not yet held has its own exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The node holds no such case.
    Case,
    /// The case records no such material.
    Material,
    /// The case records the material, but its bytes have not reached this node.
    MaterialNotHeld,
}

/// Why a material cannot be listed, chosen or handed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialError {
    /// The node refused (unknown case, damaged document, store error).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The case records no material of that kind or hash.
    #[error(
        "KIND|HASH {given:?}: 案件未记录该材料 case {case} records no material {given:?} \
         (recorded: {recorded}); see `tongban case material list {case}`"
    )]
    NotRecorded {
        /// The case.
        case: CaseId,
        /// The kind or hash given.
        given: String,
        /// The kinds the case records, in words.
        recorded: String,
    },
    /// The case records several materials of the kind (or hashes with the
    /// prefix) given.
    #[error(
        "KIND|HASH {given:?}: 该类材料有多份，请指定哈希 case {case} records {} materials for {given:?}; \
         name one by its hash: {}",
        hashes.len(),
        hashes.join(", ")
    )]
    Ambiguous {
        /// The case.
        case: CaseId,
        /// The kind or prefix given.
        given: String,
        /// The hashes it matches (full hex).
        hashes: Vec<String>,
    },
    /// A hash prefix shorter than [`MIN_PREFIX`].
    #[error(
        "KIND|HASH {given:?}: 哈希前缀过短 a hash prefix needs at least {MIN_PREFIX} hex digits \
         (the full hash has 64)"
    )]
    ShortPrefix {
        /// The prefix given.
        given: String,
    },
    /// The case records the material, but this node does not hold its bytes.
    #[error(
        "材料尚未同步到本节点 material {kind} {hash} of case {case} is recorded but not yet held \
         by this node: sync fetches it from the offices of the route; wait for it \
         (`tongban node status --follow`) and try again"
    )]
    NotHeld {
        /// The case.
        case: CaseId,
        /// Its checklist code(s).
        kind: String,
        /// Its hash (hex).
        hash: String,
    },
    /// This node's office is not an office of the case.
    #[error(
        "本节点不是该案件的办理机关，不提供材料 office {office} is not an office of case {case} \
         (its offices: {offices}); hubs hold materials only to relay them: open it at an \
         office of the case"
    )]
    NotAnOffice {
        /// This node's office.
        office: String,
        /// The case.
        case: CaseId,
        /// The case's offices, in words.
        offices: String,
    },
    /// The stored bytes cannot be read back intact.
    #[error("材料已损坏 material {hash} cannot be read intact: {reason}")]
    Damaged {
        /// Its hash (hex).
        hash: String,
        /// What reading it found.
        reason: String,
    },
    /// The running node refused, naming what is missing.
    #[error("{message}")]
    Remote {
        /// The node's message.
        message: String,
        /// What is missing.
        missing: Missing,
    },
}

impl MaterialError {
    /// Whether the error is the office's request refused by a rule.
    pub fn is_rejection(&self) -> bool {
        match self {
            MaterialError::Node(err) => err.is_rejection(),
            MaterialError::Damaged { .. } => false,
            _ => true,
        }
    }

    /// What is missing, when something is.
    pub fn missing(&self) -> Option<Missing> {
        match self {
            MaterialError::Node(NodeError::UnknownCase(_)) => Some(Missing::Case),
            MaterialError::NotRecorded { .. } => Some(Missing::Material),
            MaterialError::NotHeld { .. } => Some(Missing::MaterialNotHeld),
            MaterialError::Remote { missing, .. } => Some(*missing),
            _ => None,
        }
    }
}

/// Whether `node` may hand out the materials of `doc`: only when its office is
/// one of the case's offices (acceptance office, domicile township, domicile
/// county DPF or civil affairs, as the case's index names them from the
/// directory). A hub holds a case's materials only to relay them, and a node
/// off the route never holds them at all. The one rule; every path asks it.
pub fn may_hand_out(
    node: &LocalNode,
    case: &CaseId,
    doc: &CaseDocument,
) -> Result<(), MaterialError> {
    let offices = node.meta_of(doc)?.offices;
    if offices.contains(node.office()) {
        return Ok(());
    }
    Err(MaterialError::NotAnOffice {
        office: node.office().to_string(),
        case: case.clone(),
        offices: offices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The materials `case` records, in the order of the document's map (kind,
/// then hash), each with whether this node holds it.
pub fn list(node: &LocalNode, case: &CaseId) -> Result<Vec<MaterialRow>, NodeError> {
    let doc = node.case(case)?;
    rows_of(node.store(), &doc)
}

fn rows_of(store: &Store, doc: &CaseDocument) -> Result<Vec<MaterialRow>, NodeError> {
    let read = doc.read()?;
    let notice: Vec<(String, String)> = read
        .materials_notice
        .as_ref()
        .map(|n| {
            n.items
                .iter()
                .map(|i| (i.code.clone(), i.zh.clone()))
                .collect()
        })
        .unwrap_or_default();
    let province = read.applicant.hukou_township.get(..2).unwrap_or("00");
    let policy = tongban_domain::policy::Policy::for_province(province).ok();
    let zh = |kind: &str| {
        notice
            .iter()
            .find(|(code, _)| code == kind)
            .map(|(_, zh)| zh.clone())
            .or_else(|| policy.and_then(|p| p.material(kind)).map(|m| m.zh.clone()))
            .unwrap_or_default()
    };
    let mut rows = Vec::with_capacity(read.materials.len());
    for material in read.materials.values() {
        // Admission refuses a document whose material hash is not 64 hex
        // digits; one that is not cannot be held.
        let held = match material.hash.parse::<MaterialHash>() {
            Ok(hash) => store.has_material(&hash)?,
            Err(_) => false,
        };
        rows.push(MaterialRow {
            kind_zh: zh(&material.kind),
            kind: material.kind.clone(),
            hash: material.hash.clone(),
            size: material.size,
            media_type: material.media_type.clone(),
            file_name: material.file_name.clone(),
            added_at: material.added_at,
            added_by: material.added_by.clone(),
            held,
        });
    }
    Ok(rows)
}

/// Which material of a case `given` names: a kind code the case records (one
/// material of it: several are refused, listing their hashes), else a hash or
/// a unique prefix of at least [`MIN_PREFIX`] hex digits (either case).
pub fn select<'r>(
    rows: &'r [MaterialRow],
    case: &CaseId,
    given: &str,
) -> Result<&'r MaterialRow, MaterialError> {
    let given = given.trim();
    let unique = |matched: Vec<&'r MaterialRow>| -> Result<Option<&'r MaterialRow>, MaterialError> {
        let mut hashes: Vec<String> = matched.iter().map(|r| r.hash.clone()).collect();
        hashes.sort();
        hashes.dedup();
        match hashes.len() {
            0 => Ok(None),
            1 => Ok(matched.first().copied()),
            _ => Err(MaterialError::Ambiguous {
                case: case.clone(),
                given: given.to_string(),
                hashes,
            }),
        }
    };
    let by_kind: Vec<&MaterialRow> = rows.iter().filter(|r| r.kind == given).collect();
    if let Some(row) = unique(by_kind)? {
        return Ok(row);
    }
    let is_hex = !given.is_empty() && given.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        if given.len() < MIN_PREFIX {
            return Err(MaterialError::ShortPrefix {
                given: given.to_string(),
            });
        }
        let prefix = given.to_ascii_lowercase();
        let by_hash: Vec<&MaterialRow> = rows
            .iter()
            .filter(|r| r.hash.to_ascii_lowercase().starts_with(&prefix))
            .collect();
        if let Some(row) = unique(by_hash)? {
            return Ok(row);
        }
    }
    Err(not_recorded(rows, case, given))
}

fn not_recorded(rows: &[MaterialRow], case: &CaseId, given: &str) -> MaterialError {
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    MaterialError::NotRecorded {
        case: case.clone(),
        given: given.to_string(),
        recorded: if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        },
    }
}

/// Everything about handing out one material but reading it: the case is held,
/// this office may be handed its materials ([`may_hand_out`]), the case records
/// `hash`, and the node holds it. Answers its row. Cheap: the running node asks
/// it on its engine and reads the bytes beside it ([`read_checked`]).
pub fn authorise(
    node: &LocalNode,
    case: &CaseId,
    hash: &MaterialHash,
) -> Result<MaterialRow, MaterialError> {
    let doc = node.case(case)?;
    may_hand_out(node, case, &doc)?;
    let hex = hash.to_hex();
    let rows = rows_of(node.store(), &doc)?;
    let recorded: Vec<&MaterialRow> = rows
        .iter()
        .filter(|r| r.hash.eq_ignore_ascii_case(&hex))
        .collect();
    let Some(first) = recorded.first() else {
        return Err(not_recorded(&rows, case, &hex));
    };
    if !first.held {
        let mut kinds: Vec<&str> = recorded.iter().map(|r| r.kind.as_str()).collect();
        kinds.dedup();
        return Err(MaterialError::NotHeld {
            case: case.clone(),
            kind: kinds.join(","),
            hash: hex,
        });
    }
    Ok((*first).clone())
}

/// The bytes of a stored material, read back chunk by chunk (each chunk checked
/// against its stored BLAKE3) and the whole checked against its hash; at most
/// [`MAX_MATERIAL_BYTES`].
pub fn read_checked(store: &Store, hash: &MaterialHash) -> Result<Vec<u8>, MaterialError> {
    let damaged = |reason: String| MaterialError::Damaged {
        hash: hash.to_hex(),
        reason,
    };
    let reader = store.open_material(hash).map_err(NodeError::from)?;
    if reader.len() > MAX_MATERIAL_BYTES {
        return Err(damaged(format!(
            "{} bytes, above the limit of {MAX_MATERIAL_BYTES}",
            reader.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(reader.len()).unwrap_or(0));
    reader
        .take(MAX_MATERIAL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| damaged(e.to_string()))?;
    check_bytes(hash, &bytes)?;
    Ok(bytes)
}

/// Checks `bytes` against `hash` (BLAKE3): what both paths do before a
/// material's bytes are handed on.
pub fn check_bytes(hash: &MaterialHash, bytes: &[u8]) -> Result<(), MaterialError> {
    if bytes.len() as u64 > MAX_MATERIAL_BYTES {
        return Err(MaterialError::Damaged {
            hash: hash.to_hex(),
            reason: format!("more than {MAX_MATERIAL_BYTES} bytes"),
        });
    }
    if blake3::hash(bytes).as_bytes() != &hash.0 {
        return Err(MaterialError::Damaged {
            hash: hash.to_hex(),
            reason: format!(
                "the {} bytes do not hash to the material's address",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// `case material get` on a node's store: [`authorise`], then [`read_checked`].
pub fn read(
    node: &LocalNode,
    case: &CaseId,
    hash: &MaterialHash,
) -> Result<Vec<u8>, MaterialError> {
    authorise(node, case, hash)?;
    read_checked(node.store(), hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, hash: &str) -> MaterialRow {
        MaterialRow {
            kind: kind.into(),
            kind_zh: String::new(),
            hash: hash.into(),
            size: 1,
            media_type: "image/jpeg".into(),
            file_name: format!("{kind}.jpg"),
            added_at: 0,
            added_by: "440106001".into(),
            held: true,
        }
    }

    fn case() -> CaseId {
        CaseId::parse("440106001-20261128-K7Q2XM").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_kind_a_hash_or_a_long_enough_prefix_selects_one_material() {
        let a = "ab".repeat(32);
        let b = format!("abababab{}", "cd".repeat(28));
        let c = "ef".repeat(32);
        let rows = vec![
            row("hukou_book", &a),
            row("id_card", &b),
            row("id_card", &c),
            // The same file under a second kind is still one material.
            row("residence_proof", &a),
        ];
        let case = case();
        let hash = |given: &str| select(&rows, &case, given).map(|r| r.hash.clone());
        assert_eq!(hash("hukou_book").ok(), Some(a.clone()));
        assert_eq!(hash(&c).ok(), Some(c.clone()));
        assert_eq!(hash(&c.to_ascii_uppercase()).ok(), Some(c.clone()));
        assert_eq!(hash(&c[..8]).ok(), Some(c.clone()));
        assert_eq!(hash(&a[..10]).ok(), Some(a.clone()));
        assert_eq!(hash(&b[..10]).ok(), Some(b.clone()));
        // Two materials of one kind: refused, listing both hashes.
        match select(&rows, &case, "id_card") {
            Err(MaterialError::Ambiguous { hashes, .. }) => {
                assert_eq!(hashes, vec![b.clone(), c.clone()]);
            }
            other => panic!("{other:?}"),
        }
        // A prefix two materials share: refused as ambiguous too.
        assert!(matches!(
            select(&rows, &case, "abababab"),
            Err(MaterialError::Ambiguous { .. })
        ));
        // Too short, wrong, unknown: each names what was given.
        let err = select(&rows, &case, &c[..7]).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("at least 8")),
            "{err:?}"
        );
        let wrong = "0".repeat(64);
        let err = select(&rows, &case, &wrong).err();
        assert!(
            matches!(err, Some(MaterialError::NotRecorded { .. })),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.to_string().contains(&wrong)));
        let err = select(&rows, &case, "disability_certificate").err();
        assert_eq!(
            err.as_ref().and_then(MaterialError::missing),
            Some(Missing::Material)
        );
        assert!(err.is_some_and(|e| {
            e.to_string()
                .contains("hukou_book, id_card, residence_proof")
        }),);
        assert!(select(&[], &case, "").is_err());
    }

    #[test]
    fn bytes_are_checked_against_their_hash() {
        let bytes = b"scan of hukou_book".to_vec();
        let hash = MaterialHash(*blake3::hash(&bytes).as_bytes());
        assert!(check_bytes(&hash, &bytes).is_ok());
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        let err = check_bytes(&hash, &flipped).err();
        assert!(
            matches!(err, Some(MaterialError::Damaged { .. })),
            "{err:?}"
        );
        assert!(check_bytes(&hash, &bytes[..3]).is_err());
    }
}
