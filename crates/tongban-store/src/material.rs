//! Reading materials back, chunk by chunk, with every chunk checked.

use std::io::{self, Read};
use std::path::PathBuf;

use redb::ReadOnlyTable;

use crate::error::{Fail, R, StoreError};
use crate::store::Store;
use crate::tables::{CHUNK_SIZE, MATERIAL_CHUNKS};
use crate::types::MaterialHash;

/// A stored material, read from one consistent snapshot of the store.
///
/// Every chunk is checked against its stored BLAKE3 before any of its bytes are
/// returned, and the whole content against the material hash at the end: a damaged
/// chunk is an [`io::ErrorKind::InvalidData`] error wrapping
/// [`StoreError::CorruptMaterial`], never wrong bytes.
pub struct MaterialReader {
    chunks: ReadOnlyTable<(u64, u32), &'static [u8]>,
    db_file: PathBuf,
    hash: MaterialHash,
    blob: u64,
    len: u64,
    n_chunks: u32,
    next_chunk: u32,
    buf: Vec<u8>,
    pos: usize,
    delivered: u64,
    whole: blake3::Hasher,
    finished: bool,
}

impl std::fmt::Debug for MaterialReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterialReader")
            .field("hash", &self.hash)
            .field("len", &self.len)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a stored material for reading. See [`MaterialReader`].
    pub fn open_material(&self, hash: &MaterialHash) -> Result<MaterialReader, StoreError> {
        let inner = || -> R<MaterialReader> {
            let txn = self.begin_read()?;
            let Some(record) = self.material_record(&txn, hash)? else {
                return Err(StoreError::UnknownMaterial { hash: *hash }.into());
            };
            Ok(MaterialReader {
                chunks: txn.open_table(MATERIAL_CHUNKS)?,
                db_file: self.db_file.clone(),
                hash: *hash,
                blob: record.blob,
                len: record.len,
                n_chunks: record.n_chunks,
                next_chunk: 0,
                buf: Vec::new(),
                pos: 0,
                delivered: 0,
                whole: blake3::Hasher::new(),
                finished: false,
            })
        };
        inner().map_err(|f| self.fail(f))
    }
}

impl Store {
    /// Part of a stored material: `min(max_len, len - offset)` bytes from `offset`
    /// (none at or after its end), with the material's whole length; `None` when
    /// it is not stored. Reads only the chunks the range covers, each checked
    /// against its stored BLAKE3 before any of its bytes are returned (the hash of
    /// the whole content needs every chunk: [`MaterialReader`] checks it). This is
    /// how a node serves a material to a peer chunk by chunk; the peer checks the
    /// whole hash itself.
    pub fn read_material_range(
        &self,
        hash: &MaterialHash,
        offset: u64,
        max_len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let inner = || -> R<Option<(u64, Vec<u8>)>> {
            let txn = self.begin_read()?;
            let Some(record) = self.material_record(&txn, hash)? else {
                return Ok(None);
            };
            let end = offset
                .saturating_add(u64::try_from(max_len).unwrap_or(u64::MAX))
                .min(record.len);
            if offset >= end {
                return Ok(Some((record.len, Vec::new())));
            }
            let corrupt = |chunk: u64, detail: String| -> Fail {
                StoreError::CorruptMaterial {
                    path: self.db_file.clone(),
                    hash: *hash,
                    chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
                    detail,
                }
                .into()
            };
            let chunks = txn.open_table(MATERIAL_CHUNKS)?;
            let size = CHUNK_SIZE as u64;
            let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
            for idx in offset / size..=(end - 1) / size {
                let Some(idx32) = u32::try_from(idx).ok().filter(|i| *i < record.n_chunks) else {
                    return Err(corrupt(idx, "is past the recorded chunk count".into()));
                };
                let Some(value) = chunks.get((record.blob, idx32))? else {
                    return Err(corrupt(idx, "is missing".into()));
                };
                let bytes = value.value();
                if bytes.len() < 32 {
                    return Err(corrupt(idx, "is shorter than its checksum".into()));
                }
                let (stored_hash, data) = bytes.split_at(32);
                if blake3::hash(data).as_bytes() != stored_hash {
                    return Err(corrupt(idx, "fails its BLAKE3 check".into()));
                }
                let start = idx * size;
                let expected = (record.len - start).min(size);
                if data.len() as u64 != expected {
                    return Err(corrupt(
                        idx,
                        format!("has {} bytes, not {expected}", data.len()),
                    ));
                }
                let from = (offset.max(start) - start) as usize;
                let to = (end.min(start + expected) - start) as usize;
                out.extend_from_slice(&data[from..to]);
            }
            Ok(Some((record.len, out)))
        };
        inner().map_err(|f| self.fail(f))
    }
}

impl MaterialReader {
    /// The material's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the material is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn corrupt(&self, chunk: u32, detail: impl Into<String>) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            StoreError::CorruptMaterial {
                path: self.db_file.clone(),
                hash: self.hash,
                chunk,
                detail: detail.into(),
            },
        )
    }

    /// Loads and checks the next chunk into `buf`.
    fn fill(&mut self) -> io::Result<()> {
        let idx = self.next_chunk;
        let value = self
            .chunks
            .get((self.blob, idx))
            .map_err(|err| io::Error::other(format!("reading material chunk {idx}: {err}")))?;
        let Some(value) = value else {
            return Err(self.corrupt(idx, "is missing"));
        };
        let bytes = value.value();
        if bytes.len() < 32 {
            return Err(self.corrupt(idx, "is shorter than its checksum"));
        }
        let (stored_hash, data) = bytes.split_at(32);
        if blake3::hash(data).as_bytes() != stored_hash {
            return Err(self.corrupt(idx, "fails its BLAKE3 check"));
        }
        self.whole.update(data);
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.pos = 0;
        self.next_chunk += 1;
        Ok(())
    }

    /// At the end: the whole content must hash to the material's address.
    fn check_end(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let last = self.n_chunks.saturating_sub(1);
        if self.delivered != self.len {
            return Err(self.corrupt(
                last,
                format!("ends after {} of {} bytes", self.delivered, self.len),
            ));
        }
        if self.whole.finalize().as_bytes() != &self.hash.0 {
            return Err(self.corrupt(last, "the whole content does not match the material hash"));
        }
        self.finished = true;
        Ok(())
    }
}

impl Read for MaterialReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.buf.len() {
            if self.next_chunk == self.n_chunks {
                self.check_end()?;
                return Ok(0);
            }
            self.fill()?;
            if self.delivered + (self.buf.len() as u64) > self.len {
                return Err(self.corrupt(self.next_chunk - 1, "runs past the material length"));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.delivered += n as u64;
        Ok(n)
    }
}
