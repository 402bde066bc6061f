//! Provisioning several office nodes under one new directory authority at once:
//! each office gets its data directory `ROOT/<office>/` with its own key, the
//! authority certifies every key in directory version 1, and every node imports
//! it. This is what `tongban demo`, the benchmarks and the multi-node tests need;
//! a real deployment does the same steps one office at a time with
//! `node init`, `directory add` and `node directory-import`.

use std::path::Path;

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::directory::{DirectoryAuthority, OfficeCertificate};
use tongban_ledger::keys::OfficeKey;

use crate::local::{LocalNode, NodeError};

/// One office to provision.
#[derive(Debug, Clone)]
pub struct OfficeSpec {
    /// Office id (also its data directory's name).
    pub office: String,
    /// Name in Chinese.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Division code (`00` for the national hub).
    pub division: String,
}

impl OfficeSpec {
    /// An office named by its id.
    pub fn new(office: &str, role: Role, division: &str) -> OfficeSpec {
        OfficeSpec {
            office: office.to_string(),
            name: office.to_string(),
            role,
            division: division.to_string(),
        }
    }
}

/// Makes every office's node under `root`, certifies their keys for
/// `[not_before, not_after)` in a new authority's directory version 1, and
/// imports it into each node. Returns the authority.
pub fn provision(
    root: &Path,
    offices: &[OfficeSpec],
    not_before: Timestamp,
    not_after: Timestamp,
) -> Result<DirectoryAuthority, NodeError> {
    let key = OfficeKey::generate().map_err(|e| NodeError::Rejected(e.to_string()))?;
    let authority = DirectoryAuthority::new(key);
    let mut certificates = Vec::new();
    for (serial, spec) in offices.iter().enumerate() {
        let office =
            OfficeId::parse(&spec.office).map_err(|e| NodeError::Rejected(e.to_string()))?;
        let public = LocalNode::init(&root.join(&spec.office), office.clone())?;
        certificates.push(
            authority
                .issue(OfficeCertificate {
                    office,
                    name: spec.name.clone(),
                    role: spec.role,
                    division: spec.division.clone(),
                    public_key: public,
                    not_before,
                    not_after,
                    serial: serial as u64 + 1,
                })
                .map_err(|e| NodeError::Rejected(e.to_string()))?,
        );
    }
    let bytes = authority
        .publish(1, not_before, certificates, Vec::new())
        .encode();
    for spec in offices {
        let mut node = LocalNode::open(&root.join(&spec.office))?;
        node.import_directory(&bytes, Some(authority.public()))?;
    }
    Ok(authority)
}
