//! Which keys a serde-derived config struct knows, asked of the struct itself.
//!
//! [`lookup`] drives `T::deserialize` with a deserializer that offers exactly one key at each
//! level of a path and stops where the path ends: a derived struct answers with its field names
//! (`deserialize_struct`), an unknown key is skipped with `deserialize_ignored_any`, a map or a
//! custom type reads anything. So unknown keys and their closest known sibling come from the
//! same `#[derive(Deserialize)]` that reads the config: nothing to keep in step by hand.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// One step of a key path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    /// A table key.
    Key(&'a str),
    /// An item of an array (of tables).
    Index(usize),
}

/// What a config struct holds at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// A struct with these keys: its keys are checked.
    Struct(&'static [&'static str]),
    /// An array: its tables are checked item by item.
    Seq,
    /// A map, a plain value or a type with its own reader: anything goes below it.
    Free,
    /// A key the struct around it does not have; its known siblings.
    Unknown(&'static [&'static str]),
}

/// What `T` holds at `path`.
pub(crate) fn lookup<T: DeserializeOwned>(path: &[Seg<'_>]) -> Found {
    let found = Cell::new(None);
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe {
        rest: path,
        found: &found,
        fields: &fields,
    });
    // A struct that refuses unknown fields fails on the key itself, before we see its value.
    found.get().unwrap_or(Found::Unknown(fields.get()))
}

/// Stops the probe once it has its answer.
#[derive(Debug)]
pub(crate) struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe done")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

struct Probe<'p, 'a> {
    rest: &'p [Seg<'a>],
    found: &'p Cell<Option<Found>>,
    fields: &'p Cell<&'static [&'static str]>,
}

impl Probe<'_, '_> {
    fn answer<V>(&self, found: Found) -> Result<V, Stop> {
        if self.found.get().is_none() {
            self.found.set(Some(found));
        }
        Err(Stop)
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_, '_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.answer(Found::Free)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        let fields = self.fields.get();
        self.answer(Found::Unknown(fields))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        match self.rest.split_first() {
            None => self.answer(Found::Struct(fields)),
            Some((Seg::Key(key), rest)) => {
                self.fields.set(fields);
                visitor.visit_map(OneEntry {
                    key: Some(key),
                    value: Some(Probe {
                        rest,
                        found: self.found,
                        fields: self.fields,
                    }),
                })
            }
            Some((Seg::Index(_), _)) => self.answer(Found::Free),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.rest.split_first() {
            None => self.answer(Found::Seq),
            Some((Seg::Index(_), rest)) => visitor.visit_seq(OneItem(Some(Probe {
                rest,
                found: self.found,
                fields: self.fields,
            }))),
            Some((Seg::Key(_), _)) => self.answer(Found::Free),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.answer(Found::Free)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct enum identifier
    }
}

/// A map of one entry: the next key of the path and the probe for its value.
struct OneEntry<'p, 'a> {
    key: Option<&'a str>,
    value: Option<Probe<'p, 'a>>,
}

impl<'de> MapAccess<'de> for OneEntry<'_, '_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(IntoDeserializer::<Stop>::into_deserializer(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe),
            None => Err(Stop),
        }
    }
}

/// A sequence of one item: the probe for the rest of the path.
struct OneItem<'p, 'a>(Option<Probe<'p, 'a>>);

impl<'de> SeqAccess<'de> for OneItem<'_, '_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.0.take() {
            Some(probe) => seed.deserialize(probe).map(Some),
            None => Ok(None),
        }
    }
}

/// The known key closest to `unknown`, when one is close enough to be a likely typo: the same
/// word in another case or with `-`/`_` swapped, or a few edits away.
pub fn closest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squash(unknown);
    if let Some(same) = known.iter().find(|k| squash(k) == wanted) {
        return Some(same);
    }
    let limit = (unknown.chars().count() / 4).max(2);
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}
