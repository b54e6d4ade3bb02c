//! From one Beats event (its JSON text) to a logging point, as Datakit's `beats_output` maps
//! it: measurement = `source`, time = receive time, tags `host` (← `host.name`), `filepath`
//! (← `log.file.path`), `service`, the string members of `fields` and the input's tags;
//! fields `message`, `status = "info"` and the other members of `fields`. Events without a
//! `message` are skipped. Pure: no I/O.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use dk_proto::{Point, Value};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

/// What every event of one instance gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    /// The measurement (`source`).
    pub source: String,
    /// The `service` tag.
    pub service: String,
    /// `[inputs.beats_output.tags]`.
    pub tags: Vec<(String, String)>,
}

/// Why an event gave no point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// No `message`, or an empty one (Datakit skips these).
    NoMessage,
}

fn at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a Json> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn json_field(v: &Json) -> Option<Value> {
    match v {
        Json::Null => None,
        Json::Bool(b) => Some(Value::B(*b)),
        // Go's json.Unmarshal reads every number as float64.
        Json::Number(n) => n.as_f64().map(Value::F),
        Json::String(s) => Some(Value::S(s.clone())),
        other => Some(Value::S(other.to_string())),
    }
}

impl Mapping {
    /// The point of one event received at `now` (ns).
    ///
    /// An event that is not JSON (a client sending plain lines) is taken as its `message`.
    ///
    /// The event is read once, without building a JSON tree: strings are borrowed from the
    /// event, the members the point does not use are only checked. An event this reading
    /// refuses (not JSON, or one of serde_json's private keys) goes through
    /// [`Mapping::point_via_value`], so the answer is always that one's.
    ///
    /// # Errors
    /// [`Skip`] when the event has no message.
    pub fn point(&self, event: &[u8], now: i64) -> Result<Point, Skip> {
        // Invalid UTF-8 makes every JSON reading fail; serde_json only checks it in the
        // strings it keeps, so check it here once.
        let Ok(text) = std::str::from_utf8(event) else {
            return self.point_via_value(event, now);
        };
        let Ok(parsed) = serde_json::from_str::<Doc<'_>>(text) else {
            return self.point_via_value(event, now);
        };
        let (message, host, path, fields) = match parsed {
            Doc::Object(o) => {
                let message = match o.message {
                    Some(Val::Str(s)) => s.into_owned(),
                    Some(Val::Null) | None => String::new(),
                    Some(Val::Other(other)) => other.to_string(),
                };
                (message, o.host, o.path, o.fields)
            }
            Doc::Str(s) => (s.into_owned(), None, None, None),
            Doc::Other => (text.to_owned(), None, None, None),
        };
        if message.is_empty() {
            return Err(Skip::NoMessage);
        }
        let n_fields = fields.as_ref().map_or(0, Vec::len);
        let mut p = Point {
            name: self.source.clone(),
            tags: Vec::with_capacity(self.tags.len() + 3 + n_fields),
            fields: Vec::with_capacity(2 + n_fields),
            time: now,
        };
        for (k, v) in &self.tags {
            p.set_tag(k.as_str(), v.as_str());
        }
        if let Some(Val::Str(h)) = host {
            p.set_tag("host", h);
        }
        if let Some(Val::Str(f)) = path {
            p.set_tag("filepath", f);
        }
        if !self.service.is_empty() {
            p.set_tag("service", self.service.as_str());
        }
        if let Some(fields) = fields {
            for (k, v) in as_json_map(fields) {
                match v {
                    // Strings are tags (and only tags: a key both tag and field is refused).
                    Val::Str(s) => p.set_tag(k, s),
                    Val::Null => {}
                    Val::Other(other) => {
                        if let Some(value) = json_field(&other) {
                            p.set_field(k, value);
                        }
                    }
                }
            }
        }
        p.set_field("message", Value::S(message));
        p.set_field("status", Value::S("info".to_string()));
        Ok(p)
    }

    /// The same mapping through a whole `serde_json::Value` tree: the reference [`Mapping::point`]
    /// is checked and benched against, and its answer for the events it cannot read itself.
    ///
    /// # Errors
    /// [`Skip`] when the event has no message.
    #[doc(hidden)]
    pub fn point_via_value(&self, event: &[u8], now: i64) -> Result<Point, Skip> {
        let parsed: Option<Json> = serde_json::from_slice(event).ok();
        let mut p = Point::new(self.source.as_str(), now);
        for (k, v) in &self.tags {
            p.set_tag(k.as_str(), v.as_str());
        }
        let message = match &parsed {
            Some(Json::Object(_)) => match parsed.as_ref().and_then(|v| v.get("message")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
            Some(Json::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(event).into_owned(),
        };
        if message.is_empty() {
            return Err(Skip::NoMessage);
        }
        if let Some(v) = &parsed {
            if let Some(Json::String(h)) = at(v, &["host", "name"]) {
                p.set_tag("host", h.as_str());
            }
            if let Some(Json::String(f)) = at(v, &["log", "file", "path"]) {
                p.set_tag("filepath", f.as_str());
            }
        }
        if !self.service.is_empty() {
            p.set_tag("service", self.service.as_str());
        }
        if let Some(Json::Object(fields)) = parsed.as_ref().and_then(|v| v.get("fields")) {
            for (k, v) in fields {
                match v {
                    // Strings are tags (and only tags: a key both tag and field is refused).
                    Json::String(s) => p.set_tag(k.as_str(), s.as_str()),
                    other => {
                        if let Some(value) = json_field(other) {
                            p.set_field(k.as_str(), value);
                        }
                    }
                }
            }
        }
        p.set_field("message", Value::S(message));
        p.set_field("status", Value::S("info".to_string()));
        Ok(p)
    }
}

// ---- Reading an event once, borrowing its strings ------------------------------------------
//
// Every value goes through `deserialize_any`, as a `serde_json::Value` would: the same
// numbers, escapes and nesting depth are refused, so an event is read here exactly when the
// reference reads it. Duplicate keys: the last one wins, as in a `serde_json::Map`.

/// A value the point may use: a string (borrowed unless it has escapes), `null`, or anything
/// else as a small tree (numbers and booleans; objects and arrays are only kept where their
/// text is a field).
enum Val<'a> {
    Str(Cow<'a, str>),
    Null,
    Other(Json),
}

/// The members of an event object the point uses.
#[derive(Default)]
struct Object<'a> {
    message: Option<Val<'a>>,
    /// `host.name`.
    host: Option<Val<'a>>,
    /// `log.file.path`.
    path: Option<Val<'a>>,
    /// `fields`, when it is an object: its members in text order, duplicates kept.
    fields: Option<Vec<(Cow<'a, str>, Val<'a>)>>,
}

/// What the event's JSON text is.
enum Doc<'a> {
    Object(Object<'a>),
    Str(Cow<'a, str>),
    /// A number, boolean, null or array: the message is the event's text.
    Other,
}

/// serde_json reads objects whose first key starts with this specially (with its `raw_value`
/// or `arbitrary_precision` features); such events go through the reference.
const PRIVATE_KEY: &str = "$serde_json::private::";

fn private_key<E: de::Error>(key: &str) -> Result<(), E> {
    if key.starts_with(PRIVATE_KEY) {
        Err(E::custom("serde_json private key"))
    } else {
        Ok(())
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                private_key(s)?;
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                private_key(s)?;
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value that is checked and dropped.
struct Ignored;

struct IgnoredVisitor;

impl<'de> Visitor<'de> for IgnoredVisitor {
    type Value = Ignored;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_str<E>(self, _: &str) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_unit<E>(self) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ignored, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok(Ignored)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ignored, A::Error> {
        while map.next_key::<Key<'de>>()?.is_some() {
            map.next_value::<Ignored>()?;
        }
        Ok(Ignored)
    }
}

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IgnoredVisitor)
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Val<'de>, E> {
                Ok(Val::Other(Json::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Val<'de>, E> {
                Ok(Val::Other(Json::Number(n.into())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Val<'de>, E> {
                Ok(Val::Other(Json::Number(n.into())))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Val<'de>, E> {
                // As serde_json's own `Value` does.
                Ok(Val::Other(
                    serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number),
                ))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Val<'de>, A::Error> {
                Json::deserialize(SeqAccessDeserializer::new(seq)).map(Val::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val<'de>, A::Error> {
                Json::deserialize(MapAccessDeserializer::new(map)).map(Val::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The value at a path of object keys (`["name"]` in `host`), as `serde_json::Value::get`
/// finds it: `None` as soon as a level is not an object or lacks the key.
struct At<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Option<Val<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let Some((first, rest)) = self.0.split_first() else {
            return Val::deserialize(d).map(Some);
        };
        struct V<'p> {
            first: &'p str,
            rest: &'p [&'p str],
        }
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Option<Val<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredVisitor.visit_seq(seq).map(|_| None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    if k == self.first {
                        found = map.next_value_seed(At(self.rest))?;
                    } else {
                        map.next_value::<Ignored>()?;
                    }
                }
                Ok(found)
            }
        }
        d.deserialize_any(V { first, rest })
    }
}

/// `fields`: its members when it is an object, `None` otherwise.
struct Fields<'a>(Option<Vec<(Cow<'a, str>, Val<'a>)>>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_unit<E>(self) -> Result<Fields<'de>, E> {
                Ok(Fields(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Fields<'de>, A::Error> {
                IgnoredVisitor.visit_seq(seq).map(|_| Fields(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    members.push((k, map.next_value::<Val<'de>>()?));
                }
                Ok(Fields(Some(members)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Doc<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Doc<'de>, E> {
                Ok(Doc::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Doc<'de>, E> {
                Ok(Doc::Other)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Doc<'de>, E> {
                Ok(Doc::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Doc<'de>, E> {
                Ok(Doc::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
                Ok(Doc::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Doc<'de>, A::Error> {
                IgnoredVisitor.visit_seq(seq).map(|_| Doc::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
                let mut o = Object::default();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    match &*k {
                        "message" => o.message = Some(map.next_value()?),
                        "host" => o.host = map.next_value_seed(At(&["name"]))?,
                        "log" => o.path = map.next_value_seed(At(&["file", "path"]))?,
                        "fields" => o.fields = map.next_value::<Fields<'de>>()?.0,
                        _ => {
                            map.next_value::<Ignored>()?;
                        }
                    }
                }
                Ok(Doc::Object(o))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether `serde_json::Map` iterates in key order (a `BTreeMap`) rather than in insertion
/// order (its `preserve_order` feature, which another crate of the build may turn on).
fn map_sorts_keys() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut m = serde_json::Map::new();
        m.insert("b".into(), Json::Null);
        m.insert("a".into(), Json::Null);
        m.keys().next().map(String::as_str) == Some("a")
    })
}

/// An object's members in the order, and with the duplicates resolved, of a
/// `serde_json::Map`: the last value of a key wins.
fn as_json_map<'a>(mut members: Vec<(Cow<'a, str>, Val<'a>)>) -> Vec<(Cow<'a, str>, Val<'a>)> {
    if map_sorts_keys() {
        // Stable: the members of one key stay in text order, the last one is kept.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Cow<'a, str>, Val<'a>)> = Vec::with_capacity(members.len());
        for m in members {
            match out.last_mut() {
                Some(last) if last.0 == m.0 => *last = m,
                _ => out.push(m),
            }
        }
        out
    } else {
        // Insertion order: a repeated key keeps its first place and takes the last value.
        let mut out: Vec<(Cow<'a, str>, Val<'a>)> = Vec::with_capacity(members.len());
        for (k, v) in members {
            match out.iter_mut().find(|(o, _)| *o == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            source: "nginx".into(),
            service: "web".into(),
            tags: vec![("env".into(), "prod".into()), ("host".into(), "cfg".into())],
        }
    }

    fn tag<'a>(p: &'a Point, k: &str) -> Option<&'a str> {
        p.tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str())
    }

    fn field<'a>(p: &'a Point, k: &str) -> Option<&'a Value> {
        p.fields.iter().find(|(f, _)| f == k).map(|(_, v)| v)
    }

    #[test]
    fn a_filebeat_event_becomes_a_logging_point_with_host_file_service_and_fields() {
        let event = br#"{"@timestamp":"2026-01-01T00:00:00.000Z","message":"GET / 200","host":{"name":"web-1"},"log":{"file":{"path":"/var/log/nginx/access.log"},"offset":10},"fields":{"team":"ops","n":3,"ok":true,"nested":{"a":1}}}"#;
        let p = mapping().point(event, 42).unwrap();
        assert_eq!(p.name, "nginx");
        assert_eq!(p.time, 42, "receive time, not @timestamp");
        assert_eq!(tag(&p, "host"), Some("web-1"), "the event's host wins");
        assert_eq!(tag(&p, "filepath"), Some("/var/log/nginx/access.log"));
        assert_eq!(tag(&p, "service"), Some("web"));
        assert_eq!(tag(&p, "env"), Some("prod"));
        assert_eq!(tag(&p, "team"), Some("ops"));
        assert_eq!(field(&p, "team"), None, "a string member is a tag only");
        assert_eq!(field(&p, "n"), Some(&Value::F(3.0)));
        assert_eq!(field(&p, "ok"), Some(&Value::B(true)));
        assert_eq!(field(&p, "nested"), Some(&Value::S(r#"{"a":1}"#.into())));
        assert_eq!(field(&p, "message"), Some(&Value::S("GET / 200".into())));
        assert_eq!(field(&p, "status"), Some(&Value::S("info".into())));
    }

    #[test]
    fn events_without_a_message_are_skipped_and_plain_text_is_the_message() {
        let m = mapping();
        assert_eq!(m.point(br#"{"fields":{"a":"b"}}"#, 0), Err(Skip::NoMessage));
        assert_eq!(m.point(br#"{"message":""}"#, 0), Err(Skip::NoMessage));
        assert_eq!(m.point(b"", 0), Err(Skip::NoMessage));
        let p = m.point(b"plain string event", 0).unwrap();
        assert_eq!(
            field(&p, "message"),
            Some(&Value::S("plain string event".into()))
        );
        assert_eq!(
            tag(&p, "host"),
            Some("cfg"),
            "the input's tag stays without host.name"
        );
    }

    /// Events the two readings could tell apart: escapes, duplicates, every JSON type where
    /// the mapping looks, serde_json's private keys, numbers out of range, deep nesting.
    fn varied_corpus() -> Vec<Vec<u8>> {
        let mut events: Vec<Vec<u8>> = [
            r#"{"@timestamp":"2026-01-01T00:00:00.000Z","message":"GET / 200","host":{"name":"web-1"},"log":{"file":{"path":"/var/log/a.log"},"offset":10},"fields":{"team":"ops","n":3,"ok":true,"nested":{"b":1,"a":[1,2.5,"x",null]}}}"#,
            r#"{"message":"a\"b\\c\u00e9\n","host":{"name":"h\u0031"},"fields":{"k\u0065y":"v\t"}}"#,
            r#"{"message":"first","message":"second","host":{"name":"a"},"host":{"os":"linux"}}"#,
            r#"{"message":"m","fields":{"z":1,"a":"x","z":"s","a":2,"m":null,"b":false}}"#,
            r#"{"message":"m","fields":{"team":"ops"},"fields":[1,2]}"#,
            r#"{"message":"m","fields":"str","host":"h","log":{"file":"f"}}"#,
            r#"{"message":"m","host":[{"name":"x"}],"log":[1],"fields":null}"#,
            r#"{"message":"m","host":{"name":3},"log":{"file":{"path":{"p":1}}}}"#,
            r#"{"message":12.50,"host":{"name":null}}"#,
            r#"{"message":-7}"#,
            r#"{"message":18446744073709551615}"#,
            r#"{"message":true}"#,
            r#"{"message":{"b":2,"a":[true,{"c":null}]}}"#,
            r#"{"message":["x",1]}"#,
            r#"{"message":null,"fields":{"a":"b"}}"#,
            r#"{"message":""}"#,
            r#"{}"#,
            r#"  {"message":"spaces around"}  "#,
            r#""a JSON string""#,
            r#""""#,
            r#"42"#,
            r#"-1.5e3"#,
            r#"null"#,
            r#"true"#,
            r#"[1,2,{"message":"in an array"}]"#,
            r#"plain text line"#,
            r#"{"message":"m"} trailing"#,
            r#"{"message":"m","x":1e400}"#,
            r#"{"message":"m","x":"\ud800"}"#,
            r#"{"message":"m","\ud800":1}"#,
            r#"{"message":"m","x":"\ud83d\ude00"}"#,
            r#"{"message":"m","fields":{"n":1e400}}"#,
            r#"{"message":"m","fields":{"big":123456789012345678901234567890,"neg":-9223372036854775808,"f":0.1}}"#,
            r#"{"$serde_json::private::RawValue":"{\"message\":\"raw\"}"}"#,
            r#"{"message":"m","agent":{"$serde_json::private::RawValue":"not json"}}"#,
            r#"{"message":"m","fields":{"$serde_json::private::RawValue":"1"}}"#,
            r#"{"message":"m","host":{"$serde_json::private::RawValue":"{\"name\":\"n\"}"}}"#,
            r#"{"message":"m","fields":{"x":{"$serde_json::private::RawValue":"[1]"}}}"#,
            r#"{"message":"m","service":"s","filepath":"f","fields":{"host":"from-fields","message":3,"status":"x"}}"#,
            r#"{"message":"m","x":"a	tab"}"#,
            r#"{"message":"m",}"#,
            r#"{"message":"m""#,
        ]
        .iter()
        .map(|e| e.as_bytes().to_vec())
        .collect();
        events.push(b"{\"message\":\"m\",\"x\":\"\xff\"}".to_vec());
        events.push(b"{\"message\":\"caf\xc3\xa9\"}".to_vec());
        events.push(b"\xff\xfe plain".to_vec());
        for depth in [126, 127, 128, 129, 300] {
            let deep = format!(
                r#"{{"message":"m","x":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            events.push(deep.into_bytes());
            let deep_fields = format!(
                r#"{{"message":"m","fields":{{"d":{}1{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            events.push(deep_fields.into_bytes());
        }
        // Every prefix and a few byte swaps of the first event.
        let base = events[0].clone();
        for n in 0..base.len() {
            events.push(base[..n].to_vec());
            for b in [b'"', b'\\', b'{', b'1', b'\x00', b'\xc3'] {
                let mut e = base.clone();
                e[n] = b;
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn the_borrowed_reading_maps_every_event_as_the_value_tree_did() {
        let m = mapping();
        let bare = Mapping {
            source: "s".into(),
            service: String::new(),
            tags: Vec::new(),
        };
        let mut mapped = 0;
        let corpus = varied_corpus();
        for e in &corpus {
            for m in [&m, &bare] {
                let new = m.point(e, 7);
                assert_eq!(
                    new,
                    m.point_via_value(e, 7),
                    "event {:?}",
                    String::from_utf8_lossy(e)
                );
                mapped += usize::from(new.is_ok());
            }
        }
        assert!(mapped > corpus.len(), "most events give a point: {mapped}");
    }

    #[test]
    fn the_pylogbeat_fixture_maps_as_the_value_tree_did() {
        let wire = include_bytes!("../fixtures/pylogbeat-two-batches.bin");
        let mut d = crate::frame::Decoder::new(crate::frame::Limits::default());
        d.feed(wire).unwrap();
        let events: Vec<_> = d.take().into_iter().flat_map(|w| w.events).collect();
        assert!(events.len() >= 2, "the fixture holds events");
        let m = mapping();
        for e in &events {
            let new = m.point(&e.json, 1).unwrap();
            assert_eq!(Ok(new), m.point_via_value(&e.json, 1));
        }
    }
}
