//! A read-only view of an Automerge document for autosurgeon's hydration
//! that reads each object once.
//!
//! Autosurgeon hydrates a struct by asking for each field with `get`, a map
//! by listing its keys and then asking for each key again, and a list by
//! asking for each index; in Automerge 0.12 every `get` seeks the object's
//! ops in the document's columns, and those seeks were most of what reading
//! a case cost (over half of every office write, and most of `verify`). This
//! view answers `get` from one `map_range` (or `list_range`) pass per object,
//! made the first time the object is asked for and kept for the view's life,
//! and hands every other question to the document.
//!
//! Written here rather than taken from a crate because it has to sit between
//! autosurgeon and Automerge exactly: it implements autosurgeon's `ReadDoc`
//! over any other `ReadDoc` (a document, or a document as at some heads).
//! `map_range` and `list_range` yield the value `get` answers for each key —
//! the winner among conflicting writes — so a hydration through this view
//! equals one through the document; the tests hold the two equal, conflicts
//! included.
//!
//! It never writes and lives no longer than one read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::RangeBounds;
use std::rc::Rc;

use automerge::{self as am, AutomergeError, ChangeHash, ObjId, ObjType, Value};

/// One object's visible values, read in one pass.
enum Entries {
    Map(HashMap<String, (Value<'static>, ObjId)>),
    List(Vec<(Value<'static>, ObjId)>),
}

/// See the module documentation.
pub(crate) struct Scanned<'a, D> {
    doc: &'a D,
    objects: RefCell<HashMap<ObjId, Rc<Entries>>>,
}

impl<'a, D: autosurgeon::ReadDoc> Scanned<'a, D> {
    /// A view of `doc` that has read nothing yet.
    pub(crate) fn new(doc: &'a D) -> Self {
        Scanned {
            doc,
            objects: RefCell::new(HashMap::new()),
        }
    }

    /// The values of `obj`, read now if not yet; `None` for text and for an
    /// id the document does not hold (left to the document to answer).
    fn entries(&self, obj: &ObjId) -> Option<Rc<Entries>> {
        if let Some(entries) = self.objects.borrow().get(obj) {
            return Some(entries.clone());
        }
        let entries = match self.doc.object_type(obj)? {
            ObjType::Map | ObjType::Table => Entries::Map(
                self.doc
                    .map_range(obj, ..)
                    .map(|item| {
                        let id = item.id();
                        (item.key.into_owned(), (item.value.into_value(), id))
                    })
                    .collect(),
            ),
            ObjType::List => Entries::List(
                self.doc
                    .list_range(obj, ..)
                    .map(|item| {
                        let id = item.id();
                        (item.value.into_value(), id)
                    })
                    .collect(),
            ),
            ObjType::Text => return None,
        };
        let entries = Rc::new(entries);
        self.objects
            .borrow_mut()
            .insert(obj.clone(), Rc::clone(&entries));
        Some(entries)
    }
}

impl<D: autosurgeon::ReadDoc> autosurgeon::ReadDoc for Scanned<'_, D> {
    type Parents<'b>
        = D::Parents<'b>
    where
        Self: 'b;

    fn get_heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    fn get<P: Into<am::Prop>>(
        &self,
        obj: &ObjId,
        prop: P,
    ) -> Result<Option<(Value<'_>, ObjId)>, AutomergeError> {
        let prop = prop.into();
        if let Some(entries) = self.entries(obj) {
            match (&*entries, &prop) {
                (Entries::Map(map), am::Prop::Map(key)) => {
                    return Ok(map.get(key.as_str()).cloned());
                }
                (Entries::List(list), am::Prop::Seq(index)) => {
                    return Ok(list.get(*index).cloned());
                }
                // A key of a list or an index of a map: the document's error.
                _ => {}
            }
        }
        self.doc.get(obj, prop)
    }

    fn object_type<O: AsRef<ObjId>>(&self, obj: O) -> Option<ObjType> {
        self.doc.object_type(obj)
    }

    fn map_range<'b, O, R>(&'b self, obj: O, range: R) -> am::iter::MapRange<'b>
    where
        R: RangeBounds<String> + 'b,
        O: AsRef<ObjId>,
        R: RangeBounds<String>,
    {
        self.doc.map_range(obj, range)
    }

    fn list_range<O: AsRef<ObjId>, R: RangeBounds<usize>>(
        &self,
        obj: O,
        range: R,
    ) -> am::iter::ListRange<'_> {
        self.doc.list_range(obj, range)
    }

    fn length<O: AsRef<ObjId>>(&self, obj: O) -> usize {
        match self.entries(obj.as_ref()).as_deref() {
            Some(Entries::List(list)) => list.len(),
            Some(Entries::Map(map)) => map.len(),
            None => self.doc.length(obj),
        }
    }

    fn text<O: AsRef<ObjId>>(&self, obj: O) -> Result<String, AutomergeError> {
        self.doc.text(obj)
    }

    fn parents<O: AsRef<ObjId>>(&self, obj: O) -> Result<Self::Parents<'_>, AutomergeError> {
        self.doc.parents(obj)
    }

    fn is_empty(&self) -> bool {
        self.doc.is_empty()
    }
}
