//! The byte encodings of the store's rows and of backup records.
//!
//! Integers are little-endian and fixed-width; strings and byte strings carry a
//! length prefix. Every row value starts with a version byte. Decoding checks every
//! length against what is left and validates every identifier, so that a damaged row
//! is a typed error and never a panic or a wrong value. See docs/store-format.md.

use automerge::ChangeHash;
use bytes::{Buf, BufMut};
use chrono::{Datelike, NaiveDate};
use tongban_domain::ids::{CaseId, OfficeId};
use tongban_domain::stage::Stage;

use crate::types::{CaseMeta, ResidentKey};

/// Version byte of every row value written by this build.
pub(crate) const ROW_VERSION: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type D<T> = Result<T, DecodeError>;

/// An append-only encoder; the integers are written by `bytes`' `BufMut`.
#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub(crate) fn new() -> Enc {
        Enc(Vec::new())
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Enc {
        self.0.put_u8(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Enc {
        self.0.put_u16_le(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Enc {
        self.0.put_u32_le(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Enc {
        self.0.put_u64_le(v);
        self
    }
    pub(crate) fn i32(&mut self, v: i32) -> &mut Enc {
        self.0.put_i32_le(v);
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Enc {
        self.0.put_i64_le(v);
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Enc {
        self.0.put_slice(v);
        self
    }
    /// A byte string with a u32 length prefix. Callers keep values far below 4 GiB.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Enc {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.raw(v)
    }
    pub(crate) fn str(&mut self, v: &str) -> &mut Enc {
        self.bytes(v.as_bytes())
    }
    pub(crate) fn heads(&mut self, heads: &[ChangeHash]) -> &mut Enc {
        self.u16(u16::try_from(heads.len()).unwrap_or(u16::MAX));
        for head in heads.iter().take(usize::from(u16::MAX)) {
            self.raw(&head.0);
        }
        self
    }
}

/// A checked decoder over a byte slice: every read checks the length left
/// first (naming what it reads and where), then `bytes`' `Buf` reads the
/// little-endian integer from exactly the bytes taken.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> D<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        match end {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(DecodeError(format!(
                "truncated: {what} needs {n} bytes at byte {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> D<[u8; N]> {
        let mut out = [0u8; N];
        self.take(N, what)?.copy_to_slice(&mut out);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> D<u8> {
        Ok(self.take(1, what)?.get_u8())
    }
    pub(crate) fn u16(&mut self, what: &str) -> D<u16> {
        Ok(self.take(2, what)?.get_u16_le())
    }
    pub(crate) fn u32(&mut self, what: &str) -> D<u32> {
        Ok(self.take(4, what)?.get_u32_le())
    }
    pub(crate) fn u64(&mut self, what: &str) -> D<u64> {
        Ok(self.take(8, what)?.get_u64_le())
    }
    pub(crate) fn i32(&mut self, what: &str) -> D<i32> {
        Ok(self.take(4, what)?.get_i32_le())
    }
    pub(crate) fn i64(&mut self, what: &str) -> D<i64> {
        Ok(self.take(8, what)?.get_i64_le())
    }
    pub(crate) fn hash32(&mut self, what: &str) -> D<[u8; 32]> {
        self.array(what)
    }
    pub(crate) fn bytes(&mut self, what: &str) -> D<&'a [u8]> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }
    pub(crate) fn str(&mut self, what: &str) -> D<&'a str> {
        let bytes = self.bytes(what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }
    pub(crate) fn heads(&mut self) -> D<Vec<ChangeHash>> {
        let n = self.u16("head count")?;
        (0..n)
            .map(|_| self.hash32("head").map(ChangeHash))
            .collect()
    }
    pub(crate) fn case_id(&mut self) -> D<CaseId> {
        let text = self.str("case id")?;
        CaseId::parse(text).map_err(|e| DecodeError(e.to_string()))
    }
    pub(crate) fn version(&mut self) -> D<()> {
        match self.u8("version")? {
            ROW_VERSION => Ok(()),
            other => Err(DecodeError(format!(
                "row version {other} is not known to this build (expected {ROW_VERSION})"
            ))),
        }
    }
    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> D<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} unexpected trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Days from the common era of a date, the key of the due-date index.
pub(crate) fn date_key(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

pub(crate) fn date_from_key(days: i32) -> D<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days)
        .ok_or_else(|| DecodeError(format!("day number {days} is not a date")))
}

pub(crate) fn stage_from_wire(byte: u8) -> D<Stage> {
    Stage::from_wire(byte).ok_or_else(|| DecodeError(format!("stage byte {byte} is unknown")))
}

pub(crate) fn encode_meta(enc: &mut Enc, meta: &CaseMeta) {
    enc.u8(meta.stage.wire());
    match meta.due {
        Some(date) => enc.u8(1).i32(date_key(date)),
        None => enc.u8(0),
    };
    enc.raw(&meta.resident_key.0);
    enc.u16(u16::try_from(meta.offices.len()).unwrap_or(u16::MAX));
    for office in meta.offices.iter().take(usize::from(u16::MAX)) {
        enc.str(office.as_str());
    }
    enc.u16(u16::try_from(meta.subsidy_kinds.len()).unwrap_or(u16::MAX));
    for kind in meta.subsidy_kinds.iter().take(usize::from(u16::MAX)) {
        enc.str(kind);
    }
}

pub(crate) fn decode_meta(dec: &mut Dec<'_>) -> D<CaseMeta> {
    let stage = stage_from_wire(dec.u8("stage")?)?;
    let due = match dec.u8("due flag")? {
        0 => None,
        1 => Some(date_from_key(dec.i32("due")?)?),
        other => return Err(DecodeError(format!("due flag {other} is neither 0 nor 1"))),
    };
    let resident_key = ResidentKey(dec.hash32("resident key")?);
    let n_offices = dec.u16("office count")?;
    let offices = (0..n_offices)
        .map(|_| {
            let text = dec.str("office id")?;
            OfficeId::parse(text).map_err(|e| DecodeError(e.to_string()))
        })
        .collect::<D<Vec<_>>>()?;
    let n_kinds = dec.u16("subsidy kind count")?;
    let subsidy_kinds = (0..n_kinds)
        .map(|_| dec.str("subsidy kind").map(str::to_string))
        .collect::<D<Vec<_>>>()?;
    Ok(CaseMeta {
        stage,
        due,
        resident_key,
        offices,
        subsidy_kinds,
    })
}

/// The value of a row of the `cases` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaseRecord {
    pub seq: u64,
    pub heads: Vec<ChangeHash>,
    pub increments: u32,
    pub increment_bytes: u64,
    pub meta: CaseMeta,
}

impl CaseRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut enc = Enc::new();
        enc.u8(ROW_VERSION)
            .u64(self.seq)
            .heads(&self.heads)
            .u32(self.increments)
            .u64(self.increment_bytes);
        encode_meta(&mut enc, &self.meta);
        enc.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> D<CaseRecord> {
        let mut dec = Dec::new(bytes);
        dec.version()?;
        let seq = dec.u64("seq")?;
        let heads = dec.heads()?;
        let increments = dec.u32("increment count")?;
        let increment_bytes = dec.u64("increment bytes")?;
        let meta = decode_meta(&mut dec)?;
        dec.finish()?;
        Ok(CaseRecord {
            seq,
            heads,
            increments,
            increment_bytes,
            meta,
        })
    }
}

/// The value of a row of the `changes` table: the case and its heads at that seq.
pub(crate) fn encode_change(case: &CaseId, heads: &[ChangeHash]) -> Vec<u8> {
    let mut enc = Enc::new();
    enc.u8(ROW_VERSION).str(case.as_str()).heads(heads);
    enc.0
}

/// The first byte of a `changes` row that logs an attestation rather than a
/// case document: a row version no case row has.
const ATTESTATION_CHANGE: u8 = 0xA1;

/// The value of a `changes` row that logs an attestation: the case, the
/// attesting office, the case's domicile (its route) and the attestation's
/// BLAKE3.
pub(crate) fn encode_attestation_change(
    case: &CaseId,
    office: &str,
    domicile: &str,
    hash: &[u8; 32],
) -> Vec<u8> {
    let mut enc = Enc::new();
    enc.u8(ATTESTATION_CHANGE)
        .str(case.as_str())
        .str(office)
        .str(domicile)
        .raw(hash);
    enc.0
}

/// What a `changes` row logs.
pub(crate) enum LogRow {
    /// A case document and its heads.
    Case(CaseId, Vec<ChangeHash>),
    /// An attestation: case, office, domicile, hash.
    Attestation(CaseId, String, String, [u8; 32]),
}

pub(crate) fn decode_change(bytes: &[u8]) -> D<LogRow> {
    let mut dec = Dec::new(bytes);
    if bytes.first() == Some(&ATTESTATION_CHANGE) {
        dec.u8("version")?;
        let case = dec.case_id()?;
        let office = dec.str("office")?.to_string();
        let domicile = dec.str("domicile")?.to_string();
        let hash = dec.hash32("attestation hash")?;
        dec.finish()?;
        return Ok(LogRow::Attestation(case, office, domicile, hash));
    }
    dec.version()?;
    let case = dec.case_id()?;
    let heads = dec.heads()?;
    dec.finish()?;
    Ok(LogRow::Case(case, heads))
}

/// The value of an `attestations` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttestationRow {
    /// Its `changes` seq.
    pub seq: u64,
    /// The signed time, ms.
    pub at_ms: i64,
    /// The case's domicile township.
    pub domicile: String,
    /// The encoded signed attestation.
    pub bytes: Vec<u8>,
}

impl AttestationRow {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut enc = Enc::new();
        enc.u8(ROW_VERSION)
            .u64(self.seq)
            .i64(self.at_ms)
            .str(&self.domicile)
            .bytes(&self.bytes);
        enc.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> D<AttestationRow> {
        let mut dec = Dec::new(bytes);
        dec.version()?;
        let seq = dec.u64("seq")?;
        let at_ms = dec.i64("at")?;
        let domicile = dec.str("domicile")?.to_string();
        let bytes = dec.bytes("attestation")?.to_vec();
        dec.finish()?;
        Ok(AttestationRow {
            seq,
            at_ms,
            domicile,
            bytes,
        })
    }
}

/// The value of a row of the `materials` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaterialRecord {
    pub len: u64,
    pub n_chunks: u32,
    pub blob: u64,
    pub stored_ms: i64,
}

impl MaterialRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut enc = Enc::new();
        enc.u8(ROW_VERSION)
            .u64(self.len)
            .u32(self.n_chunks)
            .u64(self.blob)
            .i64(self.stored_ms);
        enc.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> D<MaterialRecord> {
        let mut dec = Dec::new(bytes);
        dec.version()?;
        let record = MaterialRecord {
            len: dec.u64("length")?,
            n_chunks: dec.u32("chunk count")?,
            blob: dec.u64("blob id")?,
            stored_ms: dec.i64("stored at")?,
        };
        dec.finish()?;
        Ok(record)
    }
}

/// The value of a row of the `material_removals` table.
pub(crate) fn encode_removal(len: u64, at_ms: i64, reason: &str) -> Vec<u8> {
    let mut enc = Enc::new();
    enc.u8(ROW_VERSION).u64(len).i64(at_ms).str(reason);
    enc.0
}

pub(crate) fn decode_removal(bytes: &[u8]) -> D<(u64, i64, String)> {
    let mut dec = Dec::new(bytes);
    dec.version()?;
    let len = dec.u64("length")?;
    let at = dec.i64("removed at")?;
    let reason = dec.str("reason")?.to_string();
    dec.finish()?;
    Ok((len, at, reason))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta() -> CaseMeta {
        CaseMeta {
            stage: Stage::Pushed,
            due: NaiveDate::from_ymd_opt(2026, 12, 3),
            resident_key: ResidentKey([7; 32]),
            offices: vec![
                OfficeId::parse("440106001").unwrap(),
                OfficeId::parse("130102-dpf").unwrap(),
            ],
            subsidy_kinds: vec!["living".into(), "nursing".into()],
        }
    }

    #[test]
    fn case_record_round_trip() {
        let record = CaseRecord {
            seq: 42,
            heads: vec![ChangeHash([1; 32]), ChangeHash([2; 32])],
            increments: 3,
            increment_bytes: 900,
            meta: meta(),
        };
        let bytes = record.encode();
        assert_eq!(CaseRecord::decode(&bytes).unwrap(), record);
        // Every truncation and every trailing byte is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(CaseRecord::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(CaseRecord::decode(&longer).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = CaseRecord::decode(&bytes);
            let _ = decode_change(&bytes);
            let _ = MaterialRecord::decode(&bytes);
            let _ = decode_removal(&bytes);
        }
    }

    #[test]
    fn bad_identifiers_are_refused() {
        let mut record = CaseRecord {
            seq: 1,
            heads: vec![],
            increments: 0,
            increment_bytes: 0,
            meta: meta(),
        }
        .encode();
        // The stage byte sits after version, seq, head count, increments, bytes.
        let stage_at = 1 + 8 + 2 + 4 + 8;
        record[stage_at] = 200;
        let err = CaseRecord::decode(&record).unwrap_err();
        assert!(err.0.contains("stage byte 200"), "{err}");
    }
}
