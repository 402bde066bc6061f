//! The replica of Tongban (通办): a node's case documents as the sync protocol sees
//! them, over the node's redb store.
//!
//! [`Replica`] implements `tongban_sync::store::SyncStore` over a shared
//! `tongban_store::Store`, and [`put_case`] is the one way a case document is
//! written — by the office's own commands and by sync alike — so that every write
//! carries the same index metadata ([`case_meta`]: stage, due date, keyed
//! resident hash, route offices) and the case's route in the meta table, and the
//! sync layer can route a case from the change log without loading it.
//!
//! The sync crate's `SyncStore` contract maps onto the store like this:
//!
//! - the change log and its incarnation are the store's own;
//! - a case write is `put_document` with the index metadata, plus the route in the
//!   meta table (`sync.route.<case>`: acceptance and domicile township, 18 ASCII
//!   digits, then `H` while the case is held at its acceptance office before
//!   the stage that releases it), written in the same transaction;
//! - a cursor is one record, `sync.cursor.<peer>` in the meta table (the peer's
//!   log incarnation, 16 bytes, and the sequence number, 8 bytes big-endian): a
//!   sequence number means nothing without the incarnation it counts in, so the
//!   store's incarnation-less `peer_cursors` table is not written;
//! - the directory is the meta value `directory`, where the node keeps it;
//! - every case write also attaches the materials its document lists
//!   (`tongban_sync::material::referenced`), held or not, in the same transaction;
//!   a received material (`StoreWrite::Material`) is `put_material` plus
//!   `attach_material` in one transaction, refused when its bytes hash to another
//!   address; `read_material` reads only the chunks a range covers
//!   (`Store::read_material_range`), and `missing_materials` is the store's list of
//!   referenced materials neither held nor removed.
//!
//! # What it must never do
//!
//! It opens no sockets and runs no protocol: it only maps. It never writes a case
//! without its index metadata and route in the same transaction, and never stores
//! a resident ID number in clear (only its keyed hash).

use std::path::Path;
use std::sync::Arc;

use automerge::Automerge;
use tongban_case::{CaseDocument, CaseSummary, read_core};
use tongban_domain::calendar::Calendar;
use tongban_domain::division::DivisionCode;
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::{Role, Stage};
use tongban_ledger::directory::SignedDirectory;
use tongban_store::{
    CaseMeta, MaterialHash, ResidentKey, Store, StoreError, StoreOptions, WriteTx,
};
use tongban_sync::route::CaseRoute;
use tongban_sync::store::{LogEntry, MaterialPart, StoreWrite, SyncStore};
use tongban_sync::wire::{Cursor, Hash32, Incarnation};

/// The meta key of the signed directory (shared with the node).
pub const META_DIRECTORY: &str = "directory";
/// The `meta` keys of signed datasets start with this: `dataset/KIND/SCOPE`.
pub const META_DATASET_PREFIX: &str = "dataset/";

/// The `meta` key of the dataset of `kind` (its wire byte) for `scope`.
pub fn dataset_key(kind: u8, scope: &str) -> String {
    format!("{META_DATASET_PREFIX}{kind:03}/{scope}")
}

/// A `SyncStore` over a real `tongban_store::Store`.
pub struct Replica {
    store: Arc<Store>,
    calendar: Arc<Calendar>,
    resident_secret: [u8; 32],
    /// (role, division, office) of every certified office, for the route offices
    /// of the index metadata.
    offices: Vec<(Role, String, OfficeId)>,
    /// On a supervisor's node, the directory its attestations are judged
    /// against: each stored attestation also updates what the supervisor
    /// makes of its case ([`supervised_of`]) in the same transaction.
    supervisor: Option<tongban_ledger::Directory>,
    /// Whether this is a supervisor's replica (its directory may be absent).
    supervising: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn route_key(case: &CaseId) -> String {
    format!("sync.route.{case}")
}

fn cursor_key(peer: &OfficeId) -> String {
    format!("sync.cursor.{peer}")
}

/// The offices of a directory as `(role, division, office)`, which is all
/// [`case_meta`] needs of it.
pub type OfficeList = Vec<(Role, String, OfficeId)>;

/// The offices a signed directory certifies, for [`case_meta`].
pub fn offices_of(directory: &[u8]) -> OfficeList {
    SignedDirectory::decode(directory)
        .map(|signed| {
            signed
                .directory
                .certificates
                .iter()
                .map(|c| (c.cert.role, c.cert.division.clone(), c.cert.office.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a supervisor makes of the attestations held of `case`
/// (`tongban_ledger::supervision::supervise`, deadlines counted with
/// `calendar`, the publicity period from the domicile province's policy), as
/// a `tongban_domain::supervision::SupervisedCase` row (`to_row`); `None` when
/// no attestation holds. Attestations that do not decode are skipped (they
/// were checked before they were stored).
pub fn supervised_of(
    case: &CaseId,
    attestations: &[Vec<u8>],
    directory: &tongban_ledger::Directory,
    calendar: &Calendar,
) -> Option<Vec<u8>> {
    use tongban_ledger::supervision::{SignedAttestation, supervise};
    let decoded: Vec<SignedAttestation> = attestations
        .iter()
        .filter_map(|b| SignedAttestation::decode(b).ok())
        .collect();
    let publicity = |province: &str| {
        tongban_domain::policy::Policy::for_province(province)
            .map(|p| p.publicity_days)
            .unwrap_or(tongban_ledger::verify::VerifyContext::DEFAULT_PUBLICITY_DAYS)
    };
    let supervised = supervise(
        case,
        &decoded,
        directory,
        calendar,
        publicity,
        tongban_domain::ids::Timestamp::now(),
    )?;
    Some(supervised.to_row())
}

/// The keyed hash of a resident ID under a node's secret: duplicate detection
/// without the number in clear.
pub fn resident_key(secret: &[u8; 32], resident_id: &str) -> ResidentKey {
    ResidentKey(*blake3::keyed_hash(secret, resident_id.as_bytes()).as_bytes())
}

/// The route of a case document: its acceptance township (from the case id) and
/// the applicant's domicile township.
pub fn route_of(case: &CaseId, document: &CaseDocument) -> Option<CaseRoute> {
    let core = document.read_core().ok()?;
    let released =
        tongban_sync::route::released_by(core.chain().links.iter().map(|l| l.signed.transition.to));
    let acceptance = DivisionCode::parse(case.acceptance_township()).ok()?;
    let route = CaseRoute::new(
        acceptance,
        DivisionCode::parse(&core.applicant.hukou_township).ok()?,
    )
    .ok()?;
    Some(route.released(released))
}

/// The index metadata of a case document: stage, next due date, keyed resident
/// hash, subsidy kinds and the offices on its route (the acceptance office, and
/// the domicile's township, DPF and civil affairs offices the directory names). A
/// document that does not read as a case (a partly delivered one) gets minimal
/// metadata; the next write corrects it.
pub fn case_meta(
    document: &CaseDocument,
    domicile: &str,
    offices: &[(Role, String, OfficeId)],
    calendar: &Calendar,
    resident_secret: &[u8; 32],
) -> CaseMeta {
    doc_meta(
        document.automerge(),
        domicile,
        offices,
        calendar,
        resident_secret,
    )
}

/// [`case_meta`] of a plain Automerge document: the case's core (`read_core`:
/// the fields the index needs, not the whole document) is read once, and the
/// stage and due date come from that one reading.
pub fn doc_meta<D: automerge::ReadDoc + autosurgeon::ReadDoc>(
    doc: &D,
    domicile: &str,
    offices: &[(Role, String, OfficeId)],
    calendar: &Calendar,
    resident_secret: &[u8; 32],
) -> CaseMeta {
    let summary = read_core(doc)
        .ok()
        .map(|core| CaseSummary::of(&core, calendar));
    summary_meta(summary.as_ref(), domicile, offices, resident_secret)
}

/// [`case_meta`] from a case's summary (`None`: a document that does not read
/// as a case, which gets minimal metadata).
pub fn summary_meta(
    summary: Option<&CaseSummary>,
    domicile: &str,
    offices: &[(Role, String, OfficeId)],
    resident_secret: &[u8; 32],
) -> CaseMeta {
    let mut meta = CaseMeta {
        stage: Stage::Draft,
        due: None,
        resident_key: ResidentKey([0; 32]),
        offices: Vec::new(),
        subsidy_kinds: Vec::new(),
    };
    if let Some(case) = summary {
        meta.resident_key = resident_key(resident_secret, &case.resident_id);
        if let Ok(office) = OfficeId::parse(&case.acceptance_office) {
            meta.offices.push(office);
        }
        meta.stage = case.stage;
        meta.due = case.due;
        meta.subsidy_kinds = case.subsidy_kinds.clone();
    }
    for (role, division, office) in offices {
        let on = match role {
            Role::Township => *division == domicile,
            Role::CountyDpf | Role::CountyCivilAffairs => {
                division.len() == 6 && domicile.starts_with(division.as_str())
            }
            _ => false,
        };
        if on && !meta.offices.contains(office) {
            meta.offices.push(office.clone());
        }
    }
    meta
}

/// Writes a case document in `tx` with its index metadata and its route: the one
/// way a case is stored, by local commands and by sync alike.
pub fn put_case(
    tx: &mut WriteTx<'_>,
    case: &CaseId,
    doc: &Automerge,
    meta: &CaseMeta,
    route: &CaseRoute,
) -> Result<(), StoreError> {
    tx.put_document(case, doc, meta)?;
    put_route(tx, case, route)?;
    attach_materials(tx, case, doc)
}

/// Records that `case` references every material its document lists, held or
/// not (`tongban_sync::material::referenced`): a case may arrive before its scans,
/// and `Store::missing_materials` then tells the node what to fetch (a material
/// removed under a retention rule is not listed there, so not fetched again).
fn attach_materials(
    tx: &mut WriteTx<'_>,
    case: &CaseId,
    doc: &Automerge,
) -> Result<(), StoreError> {
    for material in tongban_sync::material::referenced(doc) {
        tx.attach_material(case, &MaterialHash(material.hash))?;
    }
    Ok(())
}

fn put_route(tx: &mut WriteTx<'_>, case: &CaseId, route: &CaseRoute) -> Result<(), StoreError> {
    // A held case (not yet released to travel) carries a trailing `H`.
    let held = if route.is_released() { "" } else { "H" };
    let value = format!("{}{}{held}", route.acceptance(), route.domicile());
    tx.set_meta(&route_key(case), value.as_bytes())
}

impl Replica {
    /// A replica over an open store. When the store holds no directory yet,
    /// `directory` (if any) is stored.
    pub fn new(
        store: Arc<Store>,
        calendar: Arc<Calendar>,
        resident_secret: [u8; 32],
        directory: Option<&[u8]>,
    ) -> Result<Replica, StoreError> {
        if let Some(directory) = directory
            && store.meta(META_DIRECTORY)?.is_none()
        {
            store.set_meta(META_DIRECTORY, directory)?;
        }
        let bytes = store.meta(META_DIRECTORY)?.unwrap_or_default();
        Ok(Replica {
            offices: offices_of(&bytes),
            store,
            calendar,
            resident_secret,
            supervisor: None,
            supervising: false,
        })
    }

    /// Makes this the replica of a supervisor's node: every attestation it
    /// stores updates the supervised case in the same transaction.
    pub fn supervise(&mut self) -> Result<(), StoreError> {
        let bytes = self.store.meta(META_DIRECTORY)?.unwrap_or_default();
        self.supervising = true;
        self.supervisor = SignedDirectory::decode(&bytes)
            .map(|signed| signed.directory)
            .ok();
        Ok(())
    }

    /// Opens (creating if needed) a small-cache store in `dir`, as the simulator
    /// runs many nodes at once. When the store holds no directory yet,
    /// `directory` is stored.
    pub fn open(
        dir: &Path,
        calendar: Arc<Calendar>,
        resident_secret: [u8; 32],
        directory: &[u8],
    ) -> Result<Replica, StoreError> {
        let options = StoreOptions {
            create_if_missing: true,
            page_cache_bytes: 1 << 20,
            document_cache_capacity: 64,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(dir, &options)?);
        Replica::new(store, calendar, resident_secret, Some(directory))
    }

    /// The store.
    pub fn inner(&self) -> &Store {
        &self.store
    }

    /// The shared store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Reloads the office list after the directory changed outside the sync
    /// protocol (a `directory-import` through the node).
    pub fn refresh_directory(&mut self) -> Result<(), StoreError> {
        let bytes = self.store.meta(META_DIRECTORY)?.unwrap_or_default();
        self.offices = offices_of(&bytes);
        if self.supervising {
            self.supervise()?;
        }
        Ok(())
    }

    /// The index metadata of a case write: from the summary the writer read,
    /// else from the document.
    fn meta_of(
        &self,
        doc: &Automerge,
        route: &CaseRoute,
        summary: Option<&CaseSummary>,
    ) -> CaseMeta {
        let domicile = route.domicile().to_string();
        match summary {
            Some(summary) => summary_meta(
                Some(summary),
                &domicile,
                &self.offices,
                &self.resident_secret,
            ),
            None => doc_meta(
                doc,
                &domicile,
                &self.offices,
                &self.calendar,
                &self.resident_secret,
            ),
        }
    }

    /// Every case the store holds, from the change log (one entry per case).
    pub fn all_cases(&self) -> Result<Vec<CaseId>, StoreError> {
        let mut out: Vec<CaseId> = self
            .store
            .changes_since(0, usize::MAX)?
            .into_iter()
            .filter(|e| e.attestation.is_none())
            .map(|e| e.case)
            .collect();
        out.sort();
        Ok(out)
    }
}

fn parse_route(bytes: &[u8]) -> Option<CaseRoute> {
    let text = std::str::from_utf8(bytes).ok()?;
    let acceptance = DivisionCode::parse(text.get(..9)?).ok()?;
    let domicile = DivisionCode::parse(text.get(9..18)?).ok()?;
    let released = match text.get(18..)? {
        "" => true,
        "H" => false,
        _ => return None,
    };
    Some(
        CaseRoute::new(acceptance, domicile)
            .ok()?
            .released(released),
    )
}

impl SyncStore for Replica {
    type Error = StoreError;

    fn incarnation(&self) -> Incarnation {
        self.store.incarnation()
    }

    fn latest_seq(&self) -> Result<u64, StoreError> {
        self.store.latest_seq()
    }

    fn changes_since(&self, cursor: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        self.store
            .changes_since(cursor, limit)?
            .into_iter()
            .map(|entry| {
                let (route, attestation) = match entry.attestation {
                    Some(logged) => {
                        let route = DivisionCode::parse(entry.case.acceptance_township())
                            .ok()
                            .zip(DivisionCode::parse(&logged.domicile).ok())
                            .and_then(|(a, d)| CaseRoute::new(a, d).ok());
                        (route, OfficeId::parse(&logged.office).ok())
                    }
                    None => (self.route(&entry.case)?, None),
                };
                Ok(LogEntry {
                    seq: entry.seq,
                    heads: entry.heads.iter().map(|h| h.0).collect(),
                    case: entry.case,
                    route,
                    attestation,
                })
            })
            .collect()
    }

    fn attestation(&self, case: &CaseId, office: &OfficeId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.attestation(case, office.as_str())
    }

    fn route(&self, case: &CaseId) -> Result<Option<CaseRoute>, StoreError> {
        Ok(self
            .store
            .meta(&route_key(case))?
            .as_deref()
            .and_then(parse_route))
    }

    fn heads(&self, case: &CaseId) -> Result<Option<Vec<Hash32>>, StoreError> {
        Ok(self
            .store
            .case_info(case)?
            .map(|info| info.heads.iter().map(|h| h.0).collect()))
    }

    fn load(&self, case: &CaseId) -> Result<Option<Automerge>, StoreError> {
        self.store.load_case(case)
    }

    fn saved(&self, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.case_bytes(case)
    }

    fn cursor(&self, peer: &OfficeId) -> Result<Option<Cursor>, StoreError> {
        let Some(bytes) = self.store.meta(&cursor_key(peer))? else {
            return Ok(None);
        };
        if bytes.len() != 24 {
            return Ok(None);
        }
        let mut incarnation = [0u8; 16];
        incarnation.copy_from_slice(&bytes[..16]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[16..]);
        Ok(Some(Cursor {
            incarnation,
            seq: u64::from_be_bytes(seq),
        }))
    }

    fn sync_state(&self, peer: &OfficeId, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.sync_state(peer, case)
    }

    fn directory(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.meta(META_DIRECTORY)
    }

    fn datasets(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .store
            .meta_with_prefix(META_DATASET_PREFIX)?
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect())
    }

    fn material_len(&self, hash: &Hash32) -> Result<Option<u64>, StoreError> {
        self.store.material_len(&MaterialHash(*hash))
    }

    fn read_material(
        &self,
        hash: &Hash32,
        offset: u64,
        max_len: usize,
    ) -> Result<Option<MaterialPart>, StoreError> {
        Ok(self
            .store
            .read_material_range(&MaterialHash(*hash), offset, max_len)?
            .map(|(total_len, data)| MaterialPart { total_len, data }))
    }

    fn missing_materials(&self) -> Result<Vec<(CaseId, Hash32)>, StoreError> {
        Ok(self
            .store
            .missing_materials()?
            .into_iter()
            .map(|(case, hash)| (case, hash.0))
            .collect())
    }

    fn material_removed(&self, hash: &Hash32) -> Result<bool, StoreError> {
        Ok(self.store.material_removal(&MaterialHash(*hash))?.is_some())
    }

    fn commit(&mut self, writes: Vec<StoreWrite>) -> Result<(), StoreError> {
        // Index metadata comes from the summary admission read; a document
        // written without one is read whole (a hydration): independent per
        // document, so several are read on all cores before the transaction.
        let meta = |w: &StoreWrite| match w {
            StoreWrite::Case {
                doc,
                route,
                summary,
                ..
            } => Some(self.meta_of(doc, route, summary.as_deref())),
            StoreWrite::Received { route, summary, .. } => Some(summary_meta(
                Some(summary),
                &route.domicile().to_string(),
                &self.offices,
                &self.resident_secret,
            )),
            _ => None,
        };
        let unread = writes
            .iter()
            .filter(|w| matches!(w, StoreWrite::Case { summary: None, .. }))
            .count();
        let metas: Vec<Option<CaseMeta>> = if unread > 2 {
            use rayon::prelude::*;
            writes.par_iter().map(meta).collect()
        } else {
            writes.iter().map(meta).collect()
        };
        let mut new_directory = None;
        self.store.write(|tx| {
            for (write, meta) in writes.into_iter().zip(metas) {
                match write {
                    StoreWrite::Case {
                        case,
                        route,
                        doc,
                        saved,
                        materials,
                        summary,
                    } => {
                        let meta =
                            meta.unwrap_or_else(|| self.meta_of(&doc, &route, summary.as_deref()));
                        let case = &case;
                        let route = &route;
                        match saved {
                            // The document moves into the store's cache: no copy.
                            Some(saved) => tx.put_saved_document(case, *doc, &saved, &meta)?,
                            None => tx.put_document(case, &doc, &meta)?,
                        };
                        put_route(tx, case, route)?;
                        for material in materials {
                            tx.attach_material(case, &MaterialHash(material.hash))?;
                        }
                    }
                    StoreWrite::Received {
                        case,
                        route,
                        saved,
                        heads,
                        materials,
                        summary,
                    } => {
                        let meta = meta.unwrap_or_else(|| {
                            summary_meta(
                                Some(&summary),
                                &route.domicile().to_string(),
                                &self.offices,
                                &self.resident_secret,
                            )
                        });
                        let heads = heads.into_iter().map(automerge::ChangeHash).collect();
                        tx.put_loaded_save(&case, &saved, heads, &meta)?;
                        put_route(tx, &case, &route)?;
                        for material in materials {
                            tx.attach_material(&case, &MaterialHash(material.hash))?;
                        }
                    }
                    StoreWrite::Cursor { peer, cursor } => {
                        let mut value = cursor.incarnation.to_vec();
                        value.extend_from_slice(&cursor.seq.to_be_bytes());
                        tx.set_meta(&cursor_key(&peer), &value)?;
                    }
                    StoreWrite::SyncState { peer, case, state } => {
                        tx.put_sync_state(&peer, &case, &state)?
                    }
                    StoreWrite::Directory { bytes } => {
                        tx.set_meta(META_DIRECTORY, &bytes)?;
                        new_directory = Some(bytes);
                    }
                    StoreWrite::Dataset { kind, scope, bytes } => {
                        tx.set_meta(&dataset_key(kind, &scope), &bytes)?;
                    }
                    StoreWrite::Attestation {
                        case,
                        office,
                        at,
                        domicile,
                        bytes,
                    } => {
                        let stored = tx.put_attestation(
                            &case,
                            office.as_str(),
                            at.millis(),
                            domicile.as_str(),
                            &bytes,
                        )?;
                        if stored && let Some(directory) = &self.supervisor {
                            let all = tx.attestations_of(&case)?;
                            if let Some(bytes) =
                                supervised_of(&case, &all, directory, &self.calendar)
                            {
                                tx.put_supervised(&case, &bytes)?;
                            }
                        }
                    }
                    StoreWrite::Material { case, hash, bytes } => {
                        let put = tx.put_material(bytes.as_slice())?;
                        if put.hash.0 != hash {
                            // Never keep bytes under another address: abort.
                            return Err(StoreError::InvalidArgument {
                                detail: format!(
                                    "material bytes hash to {}, not {}",
                                    put.hash,
                                    MaterialHash(hash)
                                ),
                            });
                        }
                        tx.attach_material(&case, &put.hash)?;
                    }
                }
            }
            Ok(())
        })?;
        if let Some(bytes) = new_directory {
            self.offices = offices_of(&bytes);
            if self.supervising {
                self.supervise()?;
            }
        }
        Ok(())
    }
}
