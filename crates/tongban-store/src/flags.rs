//! Node-local case flags and the groups of cases that share a resident.
//!
//! A flag is what a node notes about a case for itself and never writes into
//! the case document (the duplicate flag of the domicile county's offices:
//! other counties do not know). The store keeps the caller's bytes under
//! (flag name, case id) and does not interpret them; flags are derived state,
//! left out of backups, which the node recomputes.

use redb::ReadableTable;
use tongban_domain::ids::CaseId;

use crate::error::{R, StoreError};
use crate::store::{Store, parse_case, row};
use crate::tables::{CASE_FLAGS, IDX_RESIDENT};
use crate::write::WriteTx;

/// Longest flag name, in bytes.
const MAX_FLAG_NAME: usize = 64;

fn check_flag_name(flag: &str) -> Result<(), StoreError> {
    if flag.is_empty() || flag.len() > MAX_FLAG_NAME {
        return Err(StoreError::InvalidArgument {
            detail: format!("flag names have 1-{MAX_FLAG_NAME} bytes"),
        });
    }
    Ok(())
}

impl Store {
    /// The bytes of `flag` on `case`, if set.
    pub fn case_flag(&self, flag: &str, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = || -> R<Option<Vec<u8>>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(CASE_FLAGS)?;
            Ok(table
                .get((flag, case.as_str()))?
                .map(|v| v.value().to_vec()))
        };
        inner().map_err(|f| self.fail(f))
    }

    /// Every case carrying `flag`, in case-id order, with the flag's bytes.
    pub fn flagged_cases(&self, flag: &str) -> Result<Vec<(CaseId, Vec<u8>)>, StoreError> {
        let inner = || -> R<Vec<(CaseId, Vec<u8>)>> {
            let txn = self.begin_read()?;
            let table = txn.open_table(CASE_FLAGS)?;
            let mut out = Vec::new();
            for item in table.range((flag, "")..)? {
                let (key, value) = item?;
                let (name, case) = key.value();
                if name != flag {
                    break;
                }
                let case = row(&self.db_file, "case_flags", case, parse_case(case))?;
                out.push((case, value.value().to_vec()));
            }
            Ok(out)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// The cases that share a resident key with at least one other case, one
    /// group per resident, from the resident index alone (no document and no
    /// case record is read). What a node rebuilding its duplicate flags walks.
    pub fn resident_groups(&self) -> Result<Vec<Vec<CaseId>>, StoreError> {
        let inner = || -> R<Vec<Vec<CaseId>>> {
            let txn = self.begin_read()?;
            let idx = txn.open_table(IDX_RESIDENT)?;
            let mut groups = Vec::new();
            let mut current: Option<([u8; 32], Vec<CaseId>)> = None;
            for item in idx.iter()? {
                let (key, _) = item?;
                let (resident, case) = key.value();
                let case = row(&self.db_file, "idx_resident", case, parse_case(case))?;
                match &mut current {
                    Some((key, cases)) if *key == resident => cases.push(case),
                    _ => {
                        if let Some((_, cases)) = current.take()
                            && cases.len() > 1
                        {
                            groups.push(cases);
                        }
                        current = Some((resident, vec![case]));
                    }
                }
            }
            if let Some((_, cases)) = current
                && cases.len() > 1
            {
                groups.push(cases);
            }
            Ok(groups)
        };
        inner().map_err(|f| self.fail(f))
    }

    /// [`WriteTx::set_case_flag`] in a transaction of its own.
    pub fn set_case_flag(
        &self,
        flag: &str,
        case: &CaseId,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.write(|tx| tx.set_case_flag(flag, case, value))
    }
}

impl WriteTx<'_> {
    /// Sets `flag` on `case` to `value`, or clears it (`None`). The case need
    /// not be stored: the flag is the caller's note.
    pub fn set_case_flag(
        &mut self,
        flag: &str,
        case: &CaseId,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        check_flag_name(flag)?;
        self.with_table(CASE_FLAGS, |table| {
            match value {
                Some(bytes) => {
                    table.insert((flag, case.as_str()), bytes)?;
                }
                None => {
                    table.remove((flag, case.as_str()))?;
                }
            }
            Ok(())
        })
    }
}
