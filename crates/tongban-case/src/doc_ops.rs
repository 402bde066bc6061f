//! Every operation of a saved document, with its id, read straight from the
//! document chunk's columns: what the authorship scan needs to attribute
//! operations to changes without `Automerge::get_changes`.
//!
//! Written here rather than taken from Automerge: a loaded document keeps its
//! operations in one op set, and the crate's only public way to see them per
//! change is `get_changes`, which rebuilds every change from the op set —
//! encoding each one's columns again and hashing it — after `Automerge::load`
//! did the same to verify the heads. That was about a quarter of a document's
//! admission (`cargo bench -p tongban-case --bench admission`). The document
//! chunk already holds each operation with its id; this reader walks the columns
//! the scan needs (the document chunk format of the Automerge binary
//! specification: header, actors, heads, change and operation column metadata,
//! then the columns, deflated ones inflated with `flate2` as Automerge does) and
//! puts back the deletions, which a document stores only as successors of the
//! operations they deleted, the way Automerge's own change collector does.
//!
//! It never guesses: a chunk it does not fully understand (a value or run it
//! cannot read, columns of unequal length, anything after the chunk) gives
//! `None`, and the caller falls back to `get_changes`. The change hashes never
//! come from here: the scan takes them, with each change's actor and operation
//! range, from the loaded document (`Automerge::get_changes_meta`), so the
//! operations read here are bound to the hashes `Automerge::load` verified. A
//! property test holds the attribution equal to `get_changes` on generated
//! documents (`authorship` tests).

use std::cell::RefCell;
use std::collections::HashSet;

use automerge::ActorId;
use flate2::{Decompress, FlushDecompress, Status};

use crate::ops::{Action, Cursor, DEFLATE, Key, Rle, VALUE_BYTES, spec};

/// One operation of the document: its id and what it did. Actor indices are
/// into [`DocOps::actors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocOp {
    /// Its id: counter, actor.
    pub id: (u64, usize),
    /// The object it is in: the making op's counter and actor; `None` for the
    /// root map.
    pub obj: Option<(u64, usize)>,
    pub key: Key,
    pub action: Action,
}

/// The operations of a document chunk, deletions included, in no particular
/// order.
#[derive(Debug)]
pub(crate) struct DocOps {
    /// The chunk's actor table.
    pub actors: Vec<ActorId>,
    /// The chunk's heads.
    pub heads: Vec<[u8; 32]>,
    pub ops: Vec<DocOp>,
}

/// The magic bytes every Automerge chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The most bytes one inflated column may take (a received document is at most
/// a frame of 1 MiB; Automerge has inflated the same column before this runs).
const MAX_INFLATED: u64 = 64 << 20;

/// The columns read, by specification (see [`crate::ops`] for the types): the
/// object's actor and counter, the key's actor, counter and string, the op id's
/// actor and counter, the insert flag, the action, the value's metadata and raw
/// bytes, and the successors' count, actor and counter.
const WANTED: [u32; 14] = [
    spec(0, 1),
    spec(0, 2),
    spec(1, 1),
    spec(1, 3),
    spec(1, 5),
    spec(2, 1),
    spec(2, 3),
    spec(3, 4),
    spec(4, 2),
    spec(5, 6),
    spec(5, 7),
    spec(8, 0),
    spec(8, 1),
    spec(8, 3),
];

/// A boolean column: alternating run lengths, the first of `false`. Past its
/// end it reads `false`.
struct Bools<'a> {
    input: Cursor<'a>,
    value: bool,
    left: u64,
}

impl<'a> Bools<'a> {
    fn new(bytes: &'a [u8]) -> Bools<'a> {
        Bools {
            input: Cursor::new(bytes),
            value: true,
            left: 0,
        }
    }

    fn next(&mut self) -> Option<bool> {
        while self.left == 0 {
            if self.input.remaining() == 0 {
                return Some(false);
            }
            self.left = self.input.uleb()?;
            self.value = !self.value;
        }
        self.left -= 1;
        Some(self.value)
    }

    fn at_end(&self) -> bool {
        self.input.remaining() == 0 && self.left == 0
    }
}

/// A delta column: each value the sum of the deltas so far (a null leaves the
/// sum as it is).
struct Delta<'a> {
    rle: Rle<'a>,
    sum: i64,
}

impl<'a> Delta<'a> {
    fn new(bytes: &'a [u8]) -> Delta<'a> {
        Delta {
            rle: Rle::new(bytes),
            sum: 0,
        }
    }

    fn next(&mut self) -> Option<Option<i64>> {
        match self.rle.next_sleb().ok()? {
            Some(delta) => {
                self.sum = self.sum.checked_add(delta)?;
                Some(Some(self.sum))
            }
            None => Some(None),
        }
    }
}

/// Where an operation sits, as Automerge groups operations to put deletions
/// back: its object and its map key or list element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Map(String),
    Elem(Option<usize>, i64),
}

/// The operations of `bytes` when they are exactly one uncompressed-header
/// document chunk this reader fully understands; `None` otherwise.
pub(crate) fn read(bytes: &[u8]) -> Option<DocOps> {
    let mut input = Cursor::new(bytes);
    if input.take(4)? != MAGIC {
        return None;
    }
    input.take(4)?; // checksum (Automerge checked it when it loaded the bytes)
    if input.byte()? != 0 {
        return None;
    }
    let len = usize::try_from(input.uleb()?).ok()?;
    if len != input.remaining() {
        return None;
    }
    let count = usize::try_from(input.uleb()?).ok()?;
    let mut actors = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = usize::try_from(input.uleb()?).ok()?;
        actors.push(ActorId::from(input.take(len)?));
    }
    let count = usize::try_from(input.uleb()?).ok()?;
    let mut heads = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        heads.push(<[u8; 32]>::try_from(input.take(32)?).ok()?);
    }
    let change_columns = column_specs(&mut input)?;
    let op_columns = column_specs(&mut input)?;
    let change_len = change_columns
        .iter()
        .try_fold(0usize, |sum, (_, len)| sum.checked_add(*len))?;
    input.take(change_len)?;
    let mut data: [std::borrow::Cow<'_, [u8]>; 14] = Default::default();
    for (spec, len) in op_columns {
        let column = input.take(len)?;
        if let Some(slot) = WANTED.iter().position(|w| *w == spec & !DEFLATE) {
            data[slot] = if spec & DEFLATE != 0 {
                std::borrow::Cow::Owned(inflate(column)?)
            } else {
                std::borrow::Cow::Borrowed(column)
            };
        }
    }
    // What is left is the heads' indices into the changes (not needed).
    let ops = walk(&data, actors.len())?;
    Some(DocOps { actors, heads, ops })
}

thread_local! {
    /// One raw-deflate inflater a thread, reset for each column: setting one up
    /// (its window and tables) cost more than inflating a document's column.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// A deflated column (raw deflate, as Automerge writes it), inflated; `None`
/// when it is not a complete deflate stream of at most [`MAX_INFLATED`] bytes.
fn inflate(column: &[u8]) -> Option<Vec<u8>> {
    INFLATER.with(|cell| {
        let mut inflater = cell.try_borrow_mut().ok()?;
        inflater.reset(false);
        let mut out = Vec::with_capacity(column.len().saturating_mul(4).max(64));
        loop {
            let (read, written) = (inflater.total_in(), inflater.total_out());
            let rest = column.get(usize::try_from(read).ok()?..)?;
            let status = inflater
                .decompress_vec(rest, &mut out, FlushDecompress::Finish)
                .ok()?;
            if status == Status::StreamEnd {
                return Some(out);
            }
            if out.len() == out.capacity() {
                if out.len() as u64 >= MAX_INFLATED {
                    return None;
                }
                out.reserve(out.capacity());
            } else if inflater.total_in() == read && inflater.total_out() == written {
                // No progress with room to write: the stream is cut short.
                return None;
            }
        }
    })
}

/// A chunk's column metadata: each column's specification and length.
fn column_specs(input: &mut Cursor<'_>) -> Option<Vec<(u32, usize)>> {
    let count = usize::try_from(input.uleb()?).ok()?;
    let mut specs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let spec = u32::try_from(input.uleb()?).ok()?;
        let len = usize::try_from(input.uleb()?).ok()?;
        specs.push((spec, len));
    }
    Some(specs)
}

/// Reads every operation from the columns, and puts back the deletions.
fn walk(data: &[std::borrow::Cow<'_, [u8]>; 14], actors: usize) -> Option<Vec<DocOp>> {
    let [
        obj_actor,
        obj_ctr,
        key_actor,
        key_ctr,
        key_str,
        id_actor,
        id_ctr,
        insert,
        action,
        val_meta,
        val_raw,
        succ_count,
        succ_actor,
        succ_ctr,
    ] = data;
    let mut obj_actor = Rle::new(obj_actor);
    let mut obj_ctr = Rle::new(obj_ctr);
    let mut key_actor = Rle::new(key_actor);
    let mut key_ctr = Delta::new(key_ctr);
    let mut key_str = Rle::new(key_str);
    let mut id_actor = Rle::new(id_actor);
    let mut id_ctr = Delta::new(id_ctr);
    let mut insert = Bools::new(insert);
    let mut actions = Rle::new(action);
    let mut val_meta = Rle::new(val_meta);
    let mut val_raw = Cursor::new(val_raw);
    let mut succ_count = Rle::new(succ_count);
    let mut succ_actor = Rle::new(succ_actor);
    let mut succ_ctr = Delta::new(succ_ctr);
    let actor_index = |value: u64| usize::try_from(value).ok().filter(|a| *a < actors);
    let counter = |value: i64| u64::try_from(value).ok().filter(|c| *c > 0);
    let mut ops = Vec::new();
    // Successors not (yet) seen as operations of the current slot: at the end
    // of the slot they are its deletions (Automerge's `flush_deletes`).
    // A set: a slot may hold many successors (a 1 MiB frame can encode
    // millions in a few runs), and each operation looks its own id up.
    let mut group: Option<(Option<(u64, usize)>, Slot)> = None;
    let mut pending: HashSet<(u64, usize)> = HashSet::new();
    let flush = |group: &Option<(Option<(u64, usize)>, Slot)>,
                 pending: &mut HashSet<(u64, usize)>,
                 ops: &mut Vec<DocOp>| {
        if let Some((obj, slot)) = group {
            for id in pending.drain() {
                ops.push(DocOp {
                    id,
                    obj: *obj,
                    key: match slot {
                        Slot::Map(key) => Key::Map(key.clone()),
                        Slot::Elem(..) => Key::Seq,
                    },
                    action: Action::Other,
                });
            }
        }
    };
    while !actions.at_end() {
        let obj = match (obj_actor.next_uint().ok()?, obj_ctr.next_uint().ok()?) {
            (None, None) => None,
            (Some(actor), Some(counter)) => Some((counter, actor_index(actor)?)),
            _ => return None,
        };
        let k_actor = match key_actor.next_uint().ok()? {
            Some(a) => Some(actor_index(a)?),
            None => None,
        };
        let k_ctr = key_ctr.next()?;
        let key_name = key_str.next_str().ok()?;
        let id = (
            counter(id_ctr.next()??)?,
            actor_index(id_actor.next_uint().ok()??)?,
        );
        let inserted = insert.next()?;
        let code = actions.next_uint().ok()??;
        let meta = val_meta.next_uint().ok()?.unwrap_or(0);
        let value = val_raw.take(usize::try_from(meta >> 4).ok()?)?;
        let (key, slot) = match key_name {
            Some(name) if !inserted => (Key::Map(name.to_string()), Slot::Map(name.to_string())),
            Some(_) => return None,
            None if inserted => (Key::Seq, Slot::Elem(Some(id.1), i64::try_from(id.0).ok()?)),
            None => (Key::Seq, Slot::Elem(k_actor, k_ctr.unwrap_or(0))),
        };
        let action = match code {
            0 => Action::Make(automerge::ObjType::Map),
            2 => Action::Make(automerge::ObjType::List),
            4 => Action::Make(automerge::ObjType::Text),
            6 => Action::Make(automerge::ObjType::Table),
            1 if meta & 0x0f == VALUE_BYTES => Action::PutBytes(value.to_vec()),
            1 | 3 | 5 | 7 => Action::Other,
            _ => return None,
        };
        let here = Some((obj, slot));
        if here != group {
            flush(&group, &mut pending, &mut ops);
            group = here;
        }
        pending.remove(&id);
        let succs = succ_count.next_uint().ok()?.unwrap_or(0);
        for _ in 0..succs {
            let succ = (
                counter(succ_ctr.next()??)?,
                actor_index(succ_actor.next_uint().ok()??)?,
            );
            pending.insert(succ);
        }
        ops.push(DocOp {
            id,
            obj,
            key,
            action,
        });
    }
    flush(&group, &mut pending, &mut ops);
    // Every column read to its end: anything left over means the chunk holds
    // more than this reader understood.
    let done = obj_actor.at_end()
        && obj_ctr.at_end()
        && key_actor.at_end()
        && key_ctr.rle.at_end()
        && key_str.at_end()
        && id_actor.at_end()
        && id_ctr.rle.at_end()
        && insert.at_end()
        && val_meta.at_end()
        && val_raw.remaining() == 0
        && succ_count.at_end()
        && succ_actor.at_end()
        && succ_ctr.rle.at_end();
    done.then_some(ops)
}
