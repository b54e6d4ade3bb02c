//! OTLP attribute values as Datakit sees them: typed field values, strings, and the public
//! attribute names Datakit extracts from spans (`otelPubAttrs`).

use dk_proto::Value;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::Regex;

/// Longest string attribute kept on a metric tag (Datakit's `maxLogMetricFiledLen`).
pub const MAX_METRIC_STRING: usize = 32 * 1024;

/// Datakit's public span attributes and the field each becomes.
pub const PUBLIC: &[(&str, &str)] = &[
    ("db.system", "db_system"),
    ("db.system.name", "db_system"),
    ("db.operation", "db_operation"),
    ("db.operation.name", "db_operation"),
    ("db.name", "db_name"),
    ("db.namespace", "db_name"),
    ("db.statement", "db_statement"),
    ("db.query.text", "db_statement"),
    ("db.collection.name", "db_collection"),
    ("server.address", "server_address"),
    ("net.host.name", "net_host_name"),
    ("server.port", "server_port"),
    ("net.host.port", "net_host_port"),
    ("network.peer.address", "network_peer_address"),
    ("network.peer.port", "network_peer_port"),
    ("network.transport", "network_transport"),
    ("http.request.method", "http_method"),
    ("http.method", "http_method"),
    ("error.type", "error_type"),
    ("http.response.status_code", "http_status_code"),
    ("http.status_code", "http_status_code"),
    ("http.route", "http_route"),
    ("http.target", "http_target"),
    ("http.scheme", "http_scheme"),
    ("http.url", "http_url"),
    ("url.full", "url_full"),
    ("url.scheme", "url_scheme"),
    ("url.path", "url_path"),
    ("url.query", "url_query"),
    ("client.address", "client_address"),
    ("client.port", "client_port"),
    ("messaging.system", "messaging_system"),
    ("messaging.operation", "messaging_operation"),
    ("messaging.message.id", "messaging_message_id"),
    ("messaging.destination.name", "messaging_destination_name"),
    ("rpc.service", "rpc_service"),
    ("rpc.system", "rpc_system"),
    ("rpc.method", "rpc_method"),
    ("exception", "exception"),
    ("exception.type", "exception_type"),
    ("exception.message", "exception_message"),
    ("exception.stacktrace", "exception_stacktrace"),
    ("container.name", "container_name"),
    ("process.pid", "process_pid"),
    ("project", "project"),
    ("version", "version"),
    ("env", "env"),
    ("host", "host"),
    ("pod_name", "pod_name"),
    ("pod_namespace", "pod_namespace"),
    ("telemetry.sdk.language", "sdk_language"),
    ("telemetry.sdk.name", "sdk_name"),
    ("telemetry.sdk.version", "sdk_version"),
];

/// The field a public attribute becomes (a hash lookup into [`PUBLIC`]).
pub fn public_field(key: &str) -> Option<&'static str> {
    static MAP: std::sync::OnceLock<std::collections::HashMap<&'static str, &'static str>> =
        std::sync::OnceLock::new();
    MAP.get_or_init(|| PUBLIC.iter().copied().collect())
        .get(key)
        .copied()
}

/// Resource and point attributes Datakit drops from metrics (`delMetricKey`).
pub const DROPPED_METRIC_KEYS: &[&str] = &[
    "process.command_line",
    "process.executable.path",
    "process.runtime.description",
    "process.runtime.name",
    "process.runtime.version",
    "telemetry.distro.name",
    "telemetry.distro.version",
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
];

/// `.` → `_`, as Datakit names attribute keys.
pub fn key_name(key: &str) -> String {
    key.replace('.', "_")
}

/// Which attributes become span fields: the public ones, `customer_tags` (exact keys or
/// `reg:` patterns) or all of them.
#[derive(Debug, Clone, Default)]
pub struct Extract {
    /// `customer_tags` written as keys.
    pub keys: Vec<String>,
    /// `customer_tags` written as `reg:<regex>`.
    pub patterns: Vec<Regex>,
    /// `customer_tags_all`.
    pub all: bool,
}

impl Extract {
    /// The field name `key` is extracted as, if it is.
    pub fn field_of(&self, key: &str) -> Option<String> {
        if self.keys.iter().any(|k| k == key) || self.patterns.iter().any(|r| r.is_match(key)) {
            return Some(key_name(key));
        }
        if let Some(f) = public_field(key) {
            return Some(f.to_string());
        }
        self.all.then(|| key_name(key))
    }
}

/// The value of attribute `key` in `attrs`.
pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The string value of attribute `key` (other kinds as text), if set and not empty.
pub fn find_string(attrs: &[KeyValue], key: &str) -> Option<String> {
    find(attrs, key)
        .map(|v| text(Some(v)))
        .filter(|s| !s.is_empty())
}

/// A value as a typed field: strings, integers, doubles and booleans as themselves, bytes
/// as lowercase hex, arrays and maps as JSON.
pub fn field(v: Option<&Any>) -> Value {
    match v {
        Some(Any::StringValue(s)) => Value::S(s.clone()),
        Some(Any::IntValue(i)) => Value::I(*i),
        Some(Any::DoubleValue(f)) => Value::F(*f),
        Some(Any::BoolValue(b)) => Value::B(*b),
        Some(Any::BytesValue(b)) => Value::S(hex(b)),
        Some(other) => Value::S(json(other).to_string()),
        None => Value::S(String::new()),
    }
}

/// A value as text: strings as themselves, numbers in decimal (doubles as `%.3f` when
/// `fixed3`, else shortest), arrays and maps as JSON, bytes as hex.
pub fn text(v: Option<&Any>) -> String {
    text_with(v, false)
}

/// A value as a metric tag (Datakit: doubles `%.3f`, strings capped at 32 KiB, bytes empty).
pub fn metric_tag(v: Option<&Any>) -> String {
    match v {
        Some(Any::StringValue(s)) => truncate(s, MAX_METRIC_STRING).to_string(),
        Some(Any::BytesValue(_)) => String::new(),
        other => text_with(other, true),
    }
}

fn text_with(v: Option<&Any>, fixed3: bool) -> String {
    match v {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(f)) if fixed3 => format!("{f:.3}"),
        Some(Any::DoubleValue(f)) => f.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::BytesValue(b)) => hex(b),
        Some(other) => json(other).to_string(),
        None => String::new(),
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A value as plain JSON (maps as objects, arrays as arrays).
pub fn json(v: &Any) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Any::StringValue(s) => J::String(s.clone()),
        Any::IntValue(i) => J::from(*i),
        Any::DoubleValue(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Any::BoolValue(b) => J::Bool(*b),
        Any::BytesValue(b) => J::String(hex(b)),
        Any::ArrayValue(a) => J::Array(a.values.iter().map(any_json).collect()),
        Any::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map_or(J::Null, any_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        // An index into a profiles dictionary: meaningless outside one.
        Any::StringValueStrindex(i) => J::from(*i),
    }
}

fn any_json(v: &AnyValue) -> serde_json::Value {
    v.value.as_ref().map_or(serde_json::Value::Null, json)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A trace or span id as Datakit writes it: lowercase hex, `"0"` when empty; with
/// `compatible_ddtrace`, the decimal of its low 8 bytes.
pub fn id(bytes: &[u8], ddtrace: bool) -> String {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return "0".to_string();
    }
    if ddtrace {
        let low = &bytes[bytes.len().saturating_sub(8)..];
        let n = low.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        return n.to_string();
    }
    hex(bytes)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    use super::*;

    fn kv(k: &str, v: Any) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn values_become_typed_fields_and_text() {
        assert_eq!(field(Some(&Any::IntValue(7))), Value::I(7));
        assert_eq!(
            field(Some(&Any::BytesValue(vec![1, 0xab]))),
            Value::S("01ab".into())
        );
        let arr = Any::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Any::StringValue("a".into())),
                },
                AnyValue {
                    value: Some(Any::IntValue(2)),
                },
            ],
        });
        assert_eq!(field(Some(&arr)), Value::S(r#"["a",2]"#.into()));
        let map = Any::KvlistValue(KeyValueList {
            values: vec![kv("k", Any::BoolValue(true))],
        });
        assert_eq!(text(Some(&map)), r#"{"k":true}"#);
        assert_eq!(metric_tag(Some(&Any::DoubleValue(1.0 / 3.0))), "0.333");
        assert_eq!(metric_tag(Some(&Any::BytesValue(vec![1]))), "");
        assert_eq!(
            metric_tag(Some(&Any::StringValue("é".repeat(20_000)))).len(),
            32 * 1024
        );
    }

    #[test]
    fn ids_are_hex_zero_when_empty_and_decimal_low_bytes_for_ddtrace() {
        assert_eq!(id(&[], false), "0");
        assert_eq!(id(&[0; 8], false), "0");
        assert_eq!(id(&[0xab, 1], false), "ab01");
        let mut trace = vec![0xff; 8];
        trace.extend([0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(id(&trace, true), "258");
    }

    #[test]
    fn public_custom_pattern_and_all_attributes_are_extracted() {
        let e = Extract {
            keys: vec!["my.key".into()],
            patterns: vec![Regex::new("^team\\.").unwrap_or_else(|e| panic!("{e}"))],
            all: false,
        };
        assert_eq!(
            e.field_of("http.request.method").as_deref(),
            Some("http_method")
        );
        assert_eq!(e.field_of("my.key").as_deref(), Some("my_key"));
        assert_eq!(e.field_of("team.name").as_deref(), Some("team_name"));
        assert_eq!(e.field_of("other.key"), None);
        let all = Extract {
            all: true,
            ..Extract::default()
        };
        assert_eq!(all.field_of("other.key").as_deref(), Some("other_key"));
    }
}
