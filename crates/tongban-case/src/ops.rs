//! What the authorship scan needs of each operation of an Automerge change —
//! the object it is in, its key, whether it makes an object, and the bytes it
//! puts — read straight from the change's columns.
//!
//! Written here rather than taken from Automerge: the crate's only public view
//! of a change's operations is `Change::decode`, which expands every operation
//! into owned structures (its key as a string, its object and predecessors as
//! op ids each holding a copy of the actor id) and cost about a third of the
//! authorship scan — as much as every other check of admission together
//! (`cargo bench -p tongban-case --bench admission`). This reader walks the
//! few columns the scan reads (the change chunk format of the Automerge binary
//! specification: RLE, delta and raw columns) and allocates nothing per
//! operation but the bytes of a put.
//!
//! It never guesses: a chunk it does not fully understand (compressed columns,
//! a value or run it cannot read, a column shorter or longer than the change's
//! operation count) gives `None`, and the caller falls back to
//! `Change::decode`, which reads everything. A property test holds the two
//! equal on generated documents (`tests` below).

use automerge::{ActorId, Change, ObjType};

/// The object an operation is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Obj {
    /// The document's root map.
    Root,
    /// The object made by the operation `counter` of the actor at `actor` in
    /// the change's actor list (0: the change's own actor).
    Id { counter: u64, actor: usize },
}

/// An operation's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A map key.
    Map(String),
    /// A position in a list or text (not needed by the scan).
    Seq,
}

/// What an operation does, as far as the scan cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Makes an object of this type.
    Make(ObjType),
    /// Puts a byte value.
    PutBytes(Vec<u8>),
    /// Anything else (puts of other values, deletes, increments, marks).
    Other,
}

/// One operation of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiteOp {
    pub obj: Obj,
    pub key: Key,
    pub action: Action,
}

/// The change's actors by index as its operations refer to them: its own
/// actor, then the others in order.
pub(crate) fn actors(change: &Change) -> Vec<ActorId> {
    std::iter::once(change.actor_id().clone())
        .chain(change.other_actor_ids().iter().cloned())
        .collect()
}

/// The change's operations, read from its columns; `None` when the chunk is
/// not one this reader fully understands (then use [`from_decoded`]).
pub(crate) fn read(change: &Change) -> Option<Vec<LiteOp>> {
    let bytes = change.raw_bytes();
    let n = change.len();
    let mut input = Cursor::new(bytes);
    // Chunk header: magic, checksum, type (1: change), length.
    input.take(8)?;
    if input.byte()? != 1 {
        return None;
    }
    let len = usize::try_from(input.uleb()?).ok()?;
    if len != input.remaining() {
        return None;
    }
    let deps = usize::try_from(input.uleb()?).ok()?;
    input.take(deps.checked_mul(32)?)?;
    let actor = usize::try_from(input.uleb()?).ok()?;
    input.take(actor)?;
    input.uleb()?; // seq
    input.uleb()?; // start op
    input.sleb()?; // time
    let message = usize::try_from(input.uleb()?).ok()?;
    input.take(message)?;
    let others = usize::try_from(input.uleb()?).ok()?;
    for _ in 0..others {
        let len = usize::try_from(input.uleb()?).ok()?;
        input.take(len)?;
    }
    // Column metadata, then the columns' data in the same order.
    let columns = usize::try_from(input.uleb()?).ok()?;
    let mut specs = Vec::with_capacity(columns);
    for _ in 0..columns {
        let spec = u32::try_from(input.uleb()?).ok()?;
        let len = usize::try_from(input.uleb()?).ok()?;
        if spec & DEFLATE != 0 {
            return None;
        }
        specs.push((spec, len));
    }
    let mut data: [&[u8]; 8] = [&[]; 8];
    for (spec, len) in specs {
        let column = input.take(len)?;
        if let Some(slot) = WANTED.iter().position(|w| *w == spec) {
            data[slot] = column;
        }
    }
    let [
        obj_actor,
        obj_ctr,
        key_actor,
        key_ctr,
        key_str,
        action,
        val_meta,
        val_raw,
    ] = data;
    let mut obj_actor = Rle::new(obj_actor);
    let mut obj_ctr = Rle::new(obj_ctr);
    let mut key_actor = Rle::new(key_actor);
    let mut key_ctr = Rle::new(key_ctr);
    let mut key_str = Rle::new(key_str);
    let mut actions = Rle::new(action);
    let mut val_meta = Rle::new(val_meta);
    let mut val_raw = Cursor::new(val_raw);
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let obj = match (obj_actor.next_uint().ok()?, obj_ctr.next_uint().ok()?) {
            (None, None) => Obj::Root,
            (Some(actor), Some(counter)) => Obj::Id {
                counter,
                actor: usize::try_from(actor).ok()?,
            },
            _ => return None,
        };
        // The key's actor and counter (a list position) are read to keep the
        // columns in step; a map key is the string.
        key_actor.next_uint().ok()?;
        key_ctr.next_sleb().ok()?;
        let key = match key_str.next_str().ok()? {
            Some(name) => Key::Map(name.to_string()),
            None => Key::Seq,
        };
        let code = actions.next_uint().ok()??;
        let meta = val_meta.next_uint().ok()?.unwrap_or(0);
        let value = val_raw.take(usize::try_from(meta >> 4).ok()?)?;
        let action = match code {
            0 => Action::Make(ObjType::Map),
            2 => Action::Make(ObjType::List),
            4 => Action::Make(ObjType::Text),
            6 => Action::Make(ObjType::Table),
            1 if meta & 0x0f == VALUE_BYTES => Action::PutBytes(value.to_vec()),
            1 | 3 | 5 | 7 => Action::Other,
            _ => return None,
        };
        ops.push(LiteOp { obj, key, action });
    }
    // Every column read to its end: anything left over means the chunk holds
    // more than this reader understood.
    let done = obj_actor.at_end()
        && obj_ctr.at_end()
        && key_actor.at_end()
        && key_ctr.at_end()
        && key_str.at_end()
        && actions.at_end()
        && val_meta.at_end()
        && val_raw.remaining() == 0;
    done.then_some(ops)
}

/// The same operations from Automerge's own expansion of the change.
pub(crate) fn from_decoded(change: &Change) -> Vec<LiteOp> {
    use automerge::legacy::{Key as LKey, ObjectId, OpType};
    let actors = actors(change);
    let index = |actor: &ActorId| actors.iter().position(|a| a == actor).unwrap_or(usize::MAX);
    change
        .decode()
        .operations
        .into_iter()
        .map(|op| LiteOp {
            obj: match &op.obj {
                ObjectId::Root => Obj::Root,
                ObjectId::Id(id) => Obj::Id {
                    counter: id.0,
                    actor: index(&id.1),
                },
            },
            key: match &op.key {
                LKey::Map(key) => Key::Map(key.to_string()),
                LKey::Seq(_) => Key::Seq,
            },
            action: match op.action {
                OpType::Make(kind) => Action::Make(kind),
                OpType::Put(automerge::ScalarValue::Bytes(bytes)) => Action::PutBytes(bytes),
                _ => Action::Other,
            },
        })
        .collect()
}

/// The deflate bit of a column specification.
pub(crate) const DEFLATE: u32 = 1 << 3;
/// The value type code of bytes in a value-metadata column.
pub(crate) const VALUE_BYTES: u64 = 7;

/// The columns read, by specification (column id << 4 | type): the object's
/// actor and counter, the key's actor, counter (delta) and string, the action,
/// the value's metadata and raw bytes.
const WANTED: [u32; 8] = [
    spec(0, 1),
    spec(0, 2),
    spec(1, 1),
    spec(1, 3),
    spec(1, 5),
    spec(4, 2),
    spec(5, 6),
    spec(5, 7),
];

/// A column specification: its id, and its type (1 actor, 2 integer, 3 delta,
/// 5 string, 6 value metadata, 7 value).
pub(crate) const fn spec(id: u32, kind: u32) -> u32 {
    (id << 4) | kind
}

/// A read position in a byte slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// An unsigned LEB128 of at most 10 bytes that fits in a u64.
    pub(crate) fn uleb(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            let low = u64::from(byte & 0x7f);
            if shift == 63 && low > 1 {
                return None;
            }
            value |= low.checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A signed LEB128 that fits in an i64.
    pub(crate) fn sleb(&mut self) -> Option<i64> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            if shift >= 64 {
                return None;
            }
            value |= i64::from(byte & 0x7f).checked_shl(shift)?;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
    }
}

/// A run-length encoded column: runs of one repeated value (a positive
/// count, then the value), literal runs (a negative count, then that many
/// values) and null runs (zero, then the count). Past its end a column reads
/// as nulls (an encoder leaves out a trailing null run).
pub(crate) struct Rle<'a> {
    input: Cursor<'a>,
    state: Run<'a>,
}

#[derive(Clone, Copy)]
enum Run<'a> {
    None,
    Repeat(u64, &'a [u8]),
    Literal(u64),
    Null(u64),
}

/// What each call reads: `Ok(None)` is a null, `Err(())` a malformed column.
type Read<T> = Result<Option<T>, ()>;

impl<'a> Rle<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Rle<'a> {
        Rle {
            input: Cursor::new(bytes),
            state: Run::None,
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.input.remaining() == 0
            && match self.state {
                Run::None => true,
                Run::Repeat(left, _) | Run::Literal(left) | Run::Null(left) => left == 0,
            }
    }

    /// The bytes of the next value, read by `value`, or `None` for a null.
    fn next_raw(&mut self, value: fn(&mut Cursor<'a>) -> Option<()>) -> Read<&'a [u8]> {
        loop {
            match &mut self.state {
                Run::Repeat(left, bytes) if *left > 0 => {
                    *left -= 1;
                    return Ok(Some(bytes));
                }
                Run::Literal(left) if *left > 0 => {
                    *left -= 1;
                    let before = self.input.bytes;
                    value(&mut self.input).ok_or(())?;
                    return Ok(Some(&before[..before.len() - self.input.remaining()]));
                }
                Run::Null(left) if *left > 0 => {
                    *left -= 1;
                    return Ok(None);
                }
                _ => {}
            }
            if self.input.remaining() == 0 {
                return Ok(None);
            }
            let count = self.input.sleb().ok_or(())?;
            self.state = match count {
                0 => Run::Null(self.input.uleb().ok_or(())?),
                n if n > 0 => {
                    let before = self.input.bytes;
                    value(&mut self.input).ok_or(())?;
                    Run::Repeat(
                        n.unsigned_abs(),
                        &before[..before.len() - self.input.remaining()],
                    )
                }
                n => Run::Literal(n.unsigned_abs()),
            };
        }
    }

    pub(crate) fn next_uint(&mut self) -> Result<Option<u64>, ()> {
        match self.next_raw(|c| c.uleb().map(|_| ()))? {
            Some(bytes) => Ok(Some(Cursor::new(bytes).uleb().ok_or(())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn next_sleb(&mut self) -> Result<Option<i64>, ()> {
        match self.next_raw(|c| c.sleb().map(|_| ()))? {
            Some(bytes) => Ok(Some(Cursor::new(bytes).sleb().ok_or(())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn next_str(&mut self) -> Result<Option<&'a str>, ()> {
        let raw = self.next_raw(|c| {
            let len = usize::try_from(c.uleb()?).ok()?;
            c.take(len).map(|_| ())
        })?;
        match raw {
            Some(bytes) => {
                let mut c = Cursor::new(bytes);
                let len = usize::try_from(c.uleb().ok_or(())?).map_err(|_| ())?;
                let text = c.take(len).ok_or(())?;
                std::str::from_utf8(text).map(Some).map_err(|_| ())
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT, ScalarValue};
    use proptest::prelude::*;

    /// One edit of a generated document.
    #[derive(Debug, Clone)]
    pub(crate) enum Edit {
        Put(String, u8, Vec<u8>),
        MakeMap(String),
        MakeList(String),
        Delete(String),
        Push(u8),
        Commit,
        Actor(u8),
        Counter(String),
        Increment(String),
    }

    pub(crate) fn edit() -> impl Strategy<Value = Edit> {
        let key = prop::sample::select(vec!["a", "b", "signed", "字段", "transitions", ""])
            .prop_map(str::to_string);
        prop_oneof![
            (
                key.clone(),
                0u8..7,
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(k, t, v)| Edit::Put(k, t, v)),
            key.clone().prop_map(Edit::MakeMap),
            key.clone().prop_map(Edit::MakeList),
            key.clone().prop_map(Edit::Delete),
            (0u8..5).prop_map(Edit::Push),
            Just(Edit::Commit),
            (0u8..4).prop_map(Edit::Actor),
            key.clone().prop_map(Edit::Counter),
            key.prop_map(Edit::Increment),
        ]
    }

    /// Applies `edits`, each to the most recently made object (or the root).
    pub(crate) fn build(edits: &[Edit]) -> AutoCommit {
        let mut doc = AutoCommit::new();
        let mut maps = vec![ROOT];
        let mut list = None;
        for edit in edits {
            let at = maps.last().unwrap().clone();
            match edit {
                Edit::Put(key, kind, bytes) => {
                    let value = match kind {
                        0 => ScalarValue::Bytes(bytes.clone()),
                        1 => ScalarValue::Str(String::from_utf8_lossy(bytes).as_ref().into()),
                        2 => ScalarValue::Uint(bytes.len() as u64 * 1000),
                        3 => ScalarValue::Int(-(bytes.len() as i64) * 77),
                        4 => ScalarValue::Boolean(bytes.len() % 2 == 0),
                        5 => ScalarValue::Null,
                        _ => ScalarValue::F64(bytes.len() as f64 / 3.0),
                    };
                    doc.put(&at, key.as_str(), value).unwrap();
                }
                Edit::MakeMap(key) => {
                    let id = doc
                        .put_object(&at, key.as_str(), automerge::ObjType::Map)
                        .unwrap();
                    maps.push(id);
                }
                Edit::MakeList(key) => {
                    list = Some(
                        doc.put_object(&at, key.as_str(), automerge::ObjType::List)
                            .unwrap(),
                    );
                }
                Edit::Delete(key) => {
                    let _ = doc.delete(&at, key.as_str());
                }
                Edit::Push(n) => {
                    if let Some(list) = &list {
                        let len = automerge::ReadDoc::length(&doc, list);
                        if *n == 0 && len > 0 {
                            doc.delete(list, len - 1).unwrap();
                        } else {
                            doc.insert(list, len, ScalarValue::Bytes(vec![*n; *n as usize]))
                                .unwrap();
                        }
                    }
                }
                Edit::Commit => {
                    doc.commit();
                }
                Edit::Actor(a) => {
                    doc.commit();
                    let mut actor = b"440106001\0".to_vec();
                    actor.extend_from_slice(&[*a; 8]);
                    doc.set_actor(ActorId::from(actor));
                }
                Edit::Counter(key) => {
                    doc.put(&at, key.as_str(), ScalarValue::counter(3)).unwrap();
                }
                Edit::Increment(key) => {
                    let _ = doc.increment(&at, key.as_str(), 2);
                }
            }
        }
        doc.commit();
        doc
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The reader agrees with Automerge's own expansion of every change,
        /// or declines (never a different answer).
        #[test]
        fn the_reader_agrees_with_automerge(edits in prop::collection::vec(edit(), 0..60)) {
            let mut doc = build(&edits);
            let saved = doc.save();
            let loaded = automerge::Automerge::load(&saved).unwrap();
            for change in loaded.get_changes(&[]) {
                let read = read(&change);
                prop_assert!(read.is_some(), "declined a change Automerge wrote");
                prop_assert_eq!(read.unwrap(), from_decoded(&change));
            }
        }

        /// Bytes that are not a change never make it panic.
        #[test]
        fn garbage_columns_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut c = Cursor::new(&bytes);
            let _ = c.uleb();
            let _ = c.sleb();
            let mut rle = Rle::new(&bytes);
            for _ in 0..50 {
                if rle.next_str().is_err() { break; }
            }
            let mut rle = Rle::new(&bytes);
            for _ in 0..50 {
                if rle.next_uint().is_err() { break; }
            }
        }
    }

    #[test]
    fn a_case_document_reads_like_automerge_reads_it() {
        // Larger values than the property test makes: a record's signature
        // bytes and long strings (multi-byte LEB lengths).
        let mut doc = AutoCommit::new();
        let transitions = doc
            .put_object(ROOT, "transitions", automerge::ObjType::Map)
            .unwrap();
        let record = doc
            .put_object(&transitions, "ab".repeat(32), automerge::ObjType::Map)
            .unwrap();
        doc.put(&record, "signed", ScalarValue::Bytes(vec![9; 400]))
            .unwrap();
        doc.put(&record, "note", "长".repeat(300)).unwrap();
        doc.commit();
        let loaded = automerge::Automerge::load(&doc.save()).unwrap();
        for change in loaded.get_changes(&[]) {
            assert_eq!(read(&change).unwrap(), from_decoded(&change));
        }
    }
}
