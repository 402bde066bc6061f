//! Background compaction: replacing a case's full save and increments by one
//! full save.
//!
//! Crash safety: each batch of cases is compacted in one write transaction that
//! writes the new full save, deletes the increments and resets the counters of the
//! case record together. Before its commit the old full save and increments are
//! intact and load to the recorded heads; after it, the new full save loads to the
//! same heads. There is no state in between, so a crash at any point leaves a
//! loadable document, and the queue entry is removed in the same transaction, so an
//! interrupted compaction is simply done again.

use redb::{ReadableTable, ReadableTableMetadata};
use tongban_domain::ids::CaseId;

use crate::cache::CachedDoc;
use crate::codec::CaseRecord;
use crate::error::{R, StoreError};
use crate::store::{Store, parse_case, row};
use crate::tables::*;
use crate::types::CompactionReport;

/// Cases compacted per write transaction.
const CASES_PER_TRANSACTION: usize = 16;

impl Store {
    /// Compacts up to `budget` cases from the compaction queue, each into one full
    /// save. The daemon calls this periodically; it is safe to interrupt at any
    /// point (see the module docs) and does not change any document's content,
    /// heads or change-log sequence number.
    pub fn compact_pending(&self, budget: usize) -> Result<CompactionReport, StoreError> {
        let mut compacted = 0;
        while compacted < budget {
            let batch = (budget - compacted).min(CASES_PER_TRANSACTION);
            let done = self.compact_batch(batch).map_err(|f| self.fail(f))?;
            if done == 0 {
                break;
            }
            compacted += done;
        }
        let remaining = (|| -> R<u64> {
            let txn = self.begin_read()?;
            Ok(txn.open_table(COMPACT_QUEUE)?.len()?)
        })()
        .map_err(|f| self.fail(f))?;
        Ok(CompactionReport {
            compacted,
            remaining,
        })
    }

    /// Compacts up to `n` queued cases in one transaction; returns how many queue
    /// entries were handled.
    fn compact_batch(&self, n: usize) -> R<usize> {
        let txn = self.begin_write()?;
        let queued: Vec<String> = {
            let queue = txn.open_table(COMPACT_QUEUE)?;
            let mut out = Vec::new();
            for item in queue.iter()?.take(n) {
                let (key, _) = item?;
                out.push(key.value().to_string());
            }
            out
        };
        if queued.is_empty() {
            txn.abort()?;
            return Ok(0);
        }
        let mut done = Vec::new();
        for text in &queued {
            txn.open_table(COMPACT_QUEUE)?.remove(text.as_str())?;
            let case: CaseId = row(&self.db_file, "compact_queue", text, parse_case(text))?;
            let record: Option<CaseRecord> = {
                let cases = txn.open_table(CASES)?;
                self.get_record(&cases, &case)?
            };
            let Some(mut record) = record else {
                continue;
            };
            if record.increments == 0 {
                continue;
            }
            let cached = match self.cached_doc(&case, &record) {
                Some(cached) => cached,
                None => {
                    let base = txn.open_table(DOC_BASE)?;
                    let incr = txn.open_table(DOC_INCR)?;
                    CachedDoc::new(self.load_doc(&base, &incr, &case, &record)?)
                }
            };
            let full = cached.doc.save();
            txn.open_table(DOC_BASE)?
                .insert(case.as_str(), full.as_slice())?;
            txn.open_table(DOC_INCR)?
                .retain_in((case.as_str(), 0u64)..=(case.as_str(), u64::MAX), |_, _| {
                    false
                })?;
            record.increments = 0;
            record.increment_bytes = 0;
            txn.open_table(CASES)?
                .insert(case.as_str(), record.encode().as_slice())?;
            tracing::debug!(case = %case.short(), bytes = full.len(), "case compacted");
            done.push((case, record.seq, cached));
        }
        txn.commit()?;
        // The documents just saved are current: keep them cached.
        let mut cache = self.cache();
        for (case, seq, cached) in done {
            cache.insert(&case, seq, cached);
        }
        Ok(queued.len())
    }
}
