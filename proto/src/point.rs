//! Datakit's point: a measurement with string tags, typed fields and a time in nanoseconds.

use serde::{Deserialize, Serialize};

/// A typed field value, as Datakit's `point.Field` oneof (`i`, `u`, `f`, `b`, `d`, `s`, `a`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Signed integer (`42i` in line protocol).
    I(i64),
    /// Unsigned integer (`42u`).
    U(u64),
    /// Float (`3.14`).
    F(f64),
    /// Boolean (`t`, `false`...).
    B(bool),
    /// String (`"text"`).
    S(String),
    /// Raw bytes (`"<base64>"b`).
    D(Vec<u8>),
    /// Homogeneous array of basic values (`[1i,2i]`); never nested.
    A(Vec<Value>),
}

impl Value {
    /// The name of the value's type as Datakit reports it in warnings.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::I(_) => "int",
            Value::U(_) => "uint",
            Value::F(_) => "float",
            Value::B(_) => "bool",
            Value::S(_) => "string",
            Value::D(_) => "bytes",
            Value::A(_) => "array",
        }
    }
}

/// One Datakit point. Tags and fields keep their insertion order; keys are unique after
/// normalisation (see [`crate::normalize`]).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    /// Measurement name (for logging: the source; for objects: the class).
    pub name: String,
    /// Tags: string keys and values.
    pub tags: Vec<(String, String)>,
    /// Fields: string keys and typed values.
    pub fields: Vec<(String, Value)>,
    /// Unix time in nanoseconds.
    pub time: i64,
}

impl Point {
    /// A point with a name and a time, and no tags or fields yet.
    pub fn new(name: impl Into<String>, time: i64) -> Self {
        Point {
            name: name.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            time,
        }
    }

    /// Adds a tag (builder style); replaces an existing tag of the same key.
    #[must_use]
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_tag(key, value);
        self
    }

    /// Adds a field (builder style); replaces an existing field of the same key.
    #[must_use]
    pub fn field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.set_field(key, value);
        self
    }

    /// Sets a tag, replacing the value of an existing tag with that key.
    pub fn set_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.tags.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.tags.push((key, value)),
        }
    }

    /// Sets a field, replacing the value of an existing field with that key.
    pub fn set_field(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Adds a tag only if no tag of that key exists (how global tags are attached).
    pub fn add_tag_if_absent(&mut self, key: &str, value: &str) {
        if self.get_tag(key).is_none() {
            self.tags.push((key.to_string(), value.to_string()));
        }
    }

    /// The value of a tag.
    pub fn get_tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a field.
    pub fn get_field(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A rough size in bytes, used for memory budgets and batching.
    pub fn approx_size(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        Value::S(s) => s.len() + 2,
                        Value::D(d) => d.len() + 2,
                        Value::A(a) => a.len() * 8 + 2,
                        _ => 8,
                    }
            })
            .sum();
        self.name.len() + tags + fields + 20
    }
}

/// How global tags are attached to a feed, as Datakit's `Feed` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedOpts {
    /// Election-aware input: attach the election tags instead of the host tags.
    pub election: bool,
    /// Attach no global tags at all.
    pub no_global_tags: bool,
}
