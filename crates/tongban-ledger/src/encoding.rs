//! The tiny canonical writer and reader behind every signed encoding of this crate.
//!
//! No serializer (serde with bincode, postcard, CBOR…) is used for signed bytes on
//! purpose: a signature covers exact bytes, and those bytes must not change when a
//! serializer changes its field order, its integer encoding or its version. Every
//! signed format of the ledger is therefore written field by field, in the order
//! its layout table documents, with these few primitives:
//!
//! - integers are big-endian and fixed width;
//! - strings are UTF-8 behind a big-endian `u16` byte length;
//! - hashes and keys are raw 32-byte arrays, signatures raw 64-byte arrays.
//!
//! The reader is total: every method checks the remaining length before it reads,
//! and a failure is a [`DecodeError`] naming the field and the byte offset at which
//! it starts. It never slices without a check and never panics.
//!
//! The writer and reader stay hand-written by design, even where the rest of the
//! workspace reads and writes bytes with the `bytes` crate (the store's rows, the
//! sync wire frames): these are the only byte layouts that signatures cover
//! (transitions, signed commits, certificates, revocations, the directory), they
//! are small enough to read in full, and a change of any dependency must never be
//! able to change them. Hexadecimal for display (`to_hex`, `from_hex`) is not
//! signed and comes from `data-encoding`.

use thiserror::Error;

/// Why a byte string is not a valid encoding. Every variant names the field being
/// read and the byte offset at which that field starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated at byte {offset}: field `{field}` needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// The input does not start with the format's magic bytes.
    #[error("not a {expected} encoding: bad magic bytes at offset 0")]
    BadMagic {
        /// The magic expected, e.g. `TBTR`.
        expected: &'static str,
    },
    /// The version byte names a version this code does not read.
    #[error("unsupported version {found} at byte {offset} (this code reads version {supported})")]
    UnsupportedVersion {
        /// Offset of the version byte.
        offset: usize,
        /// The version found.
        found: u8,
        /// The version this code reads.
        supported: u8,
    },
    /// A string field is not valid UTF-8.
    #[error("field `{field}` at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// A length or count is above the format's limit.
    #[error("field `{field}` at byte {offset}: {found} exceeds the limit of {max}")]
    TooLong {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// The length or count found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A field's value is not allowed (an unknown stage byte, an invalid office id…).
    #[error("field `{field}` at byte {offset}: {reason}")]
    InvalidValue {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The value is valid but not in its one canonical form (unsorted heads, a
    /// duplicate entry), so re-encoding would not give the same bytes.
    #[error("field `{field}` at byte {offset} is not canonical: {reason}")]
    NonCanonical {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Why it is not canonical.
        reason: &'static str,
    },
    /// Bytes follow the end of the encoding.
    #[error("{count} trailing bytes after the end of the encoding at byte {offset}")]
    TrailingBytes {
        /// Offset of the first trailing byte.
        offset: usize,
        /// How many trailing bytes.
        count: usize,
    },
}

/// Builds a canonical encoding, field by field.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// A writer that starts with the format's magic and version byte.
    pub(crate) fn new(magic: &[u8], version: u8) -> Writer {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(magic);
        bytes.push(version);
        Writer { bytes }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn raw(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    /// A string behind its `u16` byte length. Callers guarantee the length fits:
    /// every string type written here is validated to at most [`MAX_STRING`]
    /// bytes; a longer one is cut at the limit rather than wrapping the prefix, so
    /// the output stays self-consistent (and then fails to decode, loudly).
    pub(crate) fn str(&mut self, value: &str) {
        let bytes = value.as_bytes();
        let len = bytes.len().min(MAX_STRING);
        self.u16(u16::try_from(len).unwrap_or(u16::MAX));
        self.bytes
            .extend_from_slice(bytes.get(..len).unwrap_or_default());
    }

    /// A nested encoding behind its `u32` byte length.
    pub(crate) fn nested(&mut self, value: &[u8]) {
        self.u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.bytes.extend_from_slice(value);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Longest string any format accepts, in bytes.
pub(crate) const MAX_STRING: usize = 1024;

/// Reads a canonical encoding, field by field, checking every length.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Checks the magic bytes and version byte, and returns a reader after them.
    pub(crate) fn open(
        input: &'a [u8],
        magic: &'static [u8],
        name: &'static str,
        version: u8,
    ) -> Result<Reader<'a>, DecodeError> {
        if input.get(..magic.len()) != Some(magic) {
            return Err(DecodeError::BadMagic { expected: name });
        }
        let mut reader = Reader {
            input,
            offset: magic.len(),
        };
        let version_offset = reader.offset;
        let found = reader.u8("version")?;
        if found != version {
            return Err(DecodeError::UnsupportedVersion {
                offset: version_offset,
                found,
                supported: version,
            });
        }
        Ok(reader)
    }

    /// The offset of the next byte to read.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.input.len().saturating_sub(self.offset);
        let end = self.offset.checked_add(n);
        match end.and_then(|end| self.input.get(self.offset..end)) {
            Some(bytes) => {
                self.offset += n;
                Ok(bytes)
            }
            None => Err(DecodeError::Truncated {
                field,
                offset: self.offset,
                needed: n,
                available,
            }),
        }
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A `u16`-length-prefixed UTF-8 string of at most `max` bytes. Returns the
    /// string and the offset at which its length prefix started.
    pub(crate) fn str(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<(&'a str, usize), DecodeError> {
        let start = self.offset;
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong {
                field,
                offset: start,
                found: len,
                max,
            });
        }
        let bytes = self.take(field, len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            field,
            offset: start,
        })?;
        Ok((text, start))
    }

    /// A string field parsed into a typed value (a case id, an office id, an
    /// operator): a parse failure names the field and the offset.
    pub(crate) fn parsed<T, E: std::fmt::Display>(
        &mut self,
        field: &'static str,
        max: usize,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, DecodeError> {
        let (text, offset) = self.str(field, max)?;
        parse(text).map_err(|err| DecodeError::InvalidValue {
            field,
            offset,
            reason: err.to_string(),
        })
    }

    /// A `u16` count, then that many 32-byte hashes, strictly ascending (a set
    /// in its one canonical order); the count must be within `min..=max`.
    pub(crate) fn heads(&mut self, min: usize, max: usize) -> Result<Vec<[u8; 32]>, DecodeError> {
        let count_offset = self.offset;
        let count = usize::from(self.u16("n_heads")?);
        if count > max {
            return Err(DecodeError::TooLong {
                field: "n_heads",
                offset: count_offset,
                found: count,
                max,
            });
        }
        if count < min {
            return Err(DecodeError::InvalidValue {
                field: "n_heads",
                offset: count_offset,
                reason: format!("at least {min} heads, found {count}"),
            });
        }
        let mut heads: Vec<[u8; 32]> = Vec::with_capacity(count);
        for _ in 0..count {
            let head_offset = self.offset;
            let head = self.array::<32>("heads")?;
            if heads.last().is_some_and(|last| *last >= head) {
                return Err(DecodeError::NonCanonical {
                    field: "heads",
                    offset: head_offset,
                    reason: "heads must be strictly ascending",
                });
            }
            heads.push(head);
        }
        Ok(heads)
    }

    /// A `u32`-length-prefixed nested encoding of at most `max` bytes.
    pub(crate) fn nested(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<(&'a [u8], usize), DecodeError> {
        let start = self.offset;
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong {
                field,
                offset: start,
                found: len,
                max,
            });
        }
        Ok((self.take(field, len)?, start))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let count = self.input.len().saturating_sub(self.offset);
        if count == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                offset: self.offset,
                count,
            })
        }
    }
}

/// Lower-case hexadecimal of `bytes` (data-encoding's `HEXLOWER`).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Parses exactly `N` bytes of hexadecimal (either case, data-encoding's
/// `HEXLOWER_PERMISSIVE`). `None` on any other input.
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    data_encoding::HEXLOWER_PERMISSIVE
        .decode_mut(text, &mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex::<4>("0001ABff"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
        assert_eq!(from_hex::<1>("é"), None);
    }

    #[test]
    fn reader_names_field_and_offset() {
        let mut w = Writer::new(b"TEST", 1);
        w.u16(3);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, b"TEST", "TEST", 1).unwrap();
        let err = r.str("name", 10).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                field: "name",
                offset: 7,
                needed: 3,
                available: 0
            }
        );
        assert_eq!(
            Reader::open(b"TES", b"TEST", "TEST", 1).unwrap_err(),
            DecodeError::BadMagic { expected: "TEST" }
        );
        assert!(matches!(
            Reader::open(b"TEST\x02", b"TEST", "TEST", 1).unwrap_err(),
            DecodeError::UnsupportedVersion {
                offset: 4,
                found: 2,
                ..
            }
        ));
    }
}
