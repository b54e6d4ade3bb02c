//! The collector: a TOML table into a serde-derived struct, with every problem at once.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::ConfigProblem;
use super::duration::parse_bare;
use super::probe::{Found, Seg, closest, lookup};

/// Every problem found so far (errors and warnings, in the order found).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<ConfigProblem>);

impl Problems {
    /// Adds an error.
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::new(key, message));
    }

    /// Adds a warning.
    pub fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::warning(key, message));
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| !p.is_warning())
    }

    /// Whether `key` has a problem already (a later check need not repeat it).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.key == key)
    }

    /// Moves `d` into `min..=max` as Datakit does, and says so: in the warning already given
    /// for `key` (a bare number), else in a new one.
    pub fn clamp(&mut self, key: &str, d: Duration, min: Duration, max: Duration) -> Duration {
        let used = d.clamp(min, max);
        if used == d {
            return d;
        }
        let f = crate::duration::format;
        let bound = if used == min {
            format!("raises it to its minimum {}", f(min))
        } else {
            format!("lowers it to its maximum {}", f(max))
        };
        if let Some(p) = self.0.iter_mut().find(|p| p.key == key && p.is_warning()) {
            p.message.push_str(&format!("; the input then {bound}"));
        } else {
            self.warn(
                key,
                format!(
                    "{} is outside {}-{}: the input {bound}, as Datakit does",
                    f(d),
                    f(min),
                    f(max)
                ),
            );
        }
        used
    }

    /// Every problem.
    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// A decoded value with every problem found on the way.
#[derive(Debug, Clone)]
pub struct Decoded<T> {
    /// The value: keys that did not decode keep their defaults.
    pub value: T,
    /// Errors and warnings.
    pub problems: Problems,
}

impl<T> Decoded<T> {
    /// Turns the value into another, with the chance to add problems (semantic checks).
    /// A key that already has an error gets no second one from `f` (a stand-in value that
    /// replaced a bad array item, say, is not reported again).
    pub fn map<U>(self, f: impl FnOnce(T, &mut Problems) -> U) -> Decoded<U> {
        let mut problems = self.problems;
        let before = problems.0.len();
        let value = f(self.value, &mut problems);
        let mut added = problems.0.split_off(before);
        added.retain(|p| {
            p.is_warning() || !problems.0.iter().any(|q| !q.is_warning() && q.key == p.key)
        });
        problems.0.extend(added);
        Decoded { value, problems }
    }

    /// The value when there is no error (warnings are dropped).
    ///
    /// # Errors
    /// Every error when there is one.
    pub fn into_result(self) -> Result<T, Vec<ConfigProblem>> {
        if self.problems.has_errors() {
            Err(self
                .problems
                .0
                .into_iter()
                .filter(|p| !p.is_warning())
                .collect())
        } else {
            Ok(self.value)
        }
    }

    /// Every problem, errors and warnings (what `Family::validate` returns).
    pub fn into_problems(self) -> Vec<ConfigProblem> {
        self.problems.0
    }
}

/// Decodes one instance (or any table) given as TOML text: see [`decode_table`].
pub fn decode<T: DeserializeOwned + Default>(toml_text: &str) -> Decoded<T> {
    match toml_text.parse::<toml::Table>() {
        Ok(table) => decode_table(table),
        Err(e) => {
            let mut problems = Problems::default();
            problems.error("", format!("not valid TOML: {}", e.message().trim_end()));
            Decoded {
                value: T::default(),
                problems,
            }
        }
    }
}

/// Decodes `table` into `T`, collecting every problem in one pass:
/// * a key of the wrong type (or a value that does not parse) is an error; it is dropped and
///   decoding is retried, so every bad key is found; dropped keys keep `T`'s default;
/// * a bare-number duration is a warning saying what Datakit reads it as (the value is kept);
/// * a key `T` does not know is a warning naming the closest known key.
///
/// Keys are dotted paths (`metric_mapper.mappings[0].match`).
pub fn decode_table<T: DeserializeOwned + Default>(mut table: toml::Table) -> Decoded<T> {
    let mut problems = Problems::default();
    let unknown = unknown_keys::<T>(&table);
    // Each round removes a key or turns a bare number into a string: bounded by the leaves.
    let rounds = 2 * count_leaves(&table) + 1;
    let mut value = None;
    for _ in 0..rounds {
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone())) {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(e) => {
                let segments: Vec<Segment> = e.path().iter().cloned().collect();
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                let message = e.inner().message().trim_end().to_string();
                if let Some((written, replacement, reading)) = parse_bare(&message) {
                    problems.warn(
                        &key,
                        bare_warning(leaf(&segments), written, replacement, reading),
                    );
                    if set(
                        &mut table,
                        &segments,
                        toml::Value::String(replacement.to_string()),
                    ) {
                        continue;
                    }
                } else {
                    problems.error(&key, describe(leaf(&segments), &message));
                    // An array item is replaced by a stand-in of the expected type, so the
                    // other items are still read (and keep their indices).
                    if matches!(segments.last(), Some(Segment::Seq { .. }))
                        && let Some(stand_in) = stand_in(&message)
                        && set(&mut table, &segments, stand_in)
                    {
                        continue;
                    }
                }
                if !remove(&mut table, &segments) {
                    break;
                }
            }
        }
    }
    problems.0.extend(unknown);
    Decoded {
        value: value.unwrap_or_default(),
        problems,
    }
}

/// A value of the type a serde message expects, to stand in for a bad array item.
fn stand_in(message: &str) -> Option<toml::Value> {
    let expected = message.rsplit("expected ").next()?;
    Some(match expected {
        "a string" => toml::Value::String(String::new()),
        "a boolean" => toml::Value::Boolean(false),
        "f32" | "f64" => toml::Value::Float(0.0),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            toml::Value::Integer(0)
        }
        e if e.starts_with("struct ") => toml::Value::Table(toml::Table::new()),
        _ => return None,
    })
}

/// Joins a prefix and a dotted key (`inputs.cpu[0]` + `interval`).
pub fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty() || key == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => key.to_string(),
        (false, false) if key.starts_with('[') => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

fn bare_warning(key: &str, written: &str, replacement: &str, reading: &str) -> String {
    let meant = written
        .parse::<f64>()
        .map(|n| format!("{n}s"))
        .unwrap_or_else(|_| format!("{written}s"));
    let fix = if meant == replacement {
        format!("write {key} = \"{meant}\" to make the unit plain")
    } else {
        format!("if you meant {meant}, write {key} = \"{meant}\"")
    };
    format!("{key} = {written} is {replacement} as Datakit reads it ({reading}); {fix}")
}

/// The last key of a path (`interval` of `inputs.cpu.interval`).
fn leaf(path: &[Segment]) -> &str {
    path.iter()
        .rev()
        .find_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// A serde message in the words of a config file, with an example of a right value.
fn describe(key: &str, msg: &str) -> String {
    if msg.contains("invalid duration") || msg.contains("write") {
        return msg.to_string();
    }
    let mut out = msg.to_string();
    for (from, to) in [
        ("expected u8", "expected a whole number >= 0"),
        ("expected u16", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
    ] {
        if let Some(rest) = out.strip_suffix(from) {
            out = format!("{rest}{to}");
            break;
        }
    }
    if let Some(at) = out.find("expected struct ") {
        out.truncate(at);
        out.push_str("expected a table");
    }
    let example = if out.ends_with("true or false") {
        Some("true")
    } else if out.ends_with("a string") {
        Some("\"...\"")
    } else if out.ends_with("an array") {
        Some("[\"...\"]")
    } else if out.ends_with("a whole number >= 0") || out.ends_with("an integer") {
        Some("100")
    } else if out.contains("expected a duration") {
        Some("\"10s\"")
    } else {
        None
    };
    match example {
        Some(e) if !key.is_empty() => {
            format!("{out}; write e.g. {key} = {e}, or remove the key to use the default")
        }
        _ => format!("{out}; fix the value or remove the key to use the default"),
    }
}

/// Every key of `table` that `T` does not know, as warnings with the closest known key.
fn unknown_keys<T: DeserializeOwned>(table: &toml::Table) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk::<T>(table, &mut path, &mut out);
    out
}

fn walk<'a, T: DeserializeOwned>(
    table: &'a toml::Table,
    path: &mut Vec<Seg<'a>>,
    out: &mut Vec<ConfigProblem>,
) {
    for (k, v) in table {
        path.push(Seg::Key(k));
        match lookup::<T>(path) {
            Found::Unknown(known) => out.push(ConfigProblem::warning(
                key_of(path),
                unknown_message(k, known),
            )),
            Found::Struct(_) => {
                if let toml::Value::Table(inner) = v {
                    walk::<T>(inner, path, out);
                }
            }
            Found::Seq => {
                if let toml::Value::Array(items) = v {
                    for (i, item) in items.iter().enumerate() {
                        if let toml::Value::Table(inner) = item {
                            path.push(Seg::Index(i));
                            walk::<T>(inner, path, out);
                            path.pop();
                        }
                    }
                }
            }
            Found::Free => {}
        }
        path.pop();
    }
}

fn unknown_message(key: &str, known: &[&str]) -> String {
    match closest(key, known) {
        Some(k) => format!("unknown key, ignored (the default applies): did you mean `{k}`?"),
        None => "unknown key, ignored: check the spelling against the sample config".to_string(),
    }
}

fn key_of(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Replaces the value at `path`; false when the path is not there.
fn set(table: &mut toml::Table, path: &[Segment], value: toml::Value) -> bool {
    let Some((Segment::Map { key }, rest)) = path.split_first() else {
        return false;
    };
    let Some(slot) = table.get_mut(key.as_str()) else {
        return false;
    };
    set_value(slot, rest, value)
}

fn set_value(slot: &mut toml::Value, path: &[Segment], value: toml::Value) -> bool {
    match (path.split_first(), slot) {
        (None, slot) => {
            *slot = value;
            true
        }
        (Some((Segment::Map { key }, rest)), toml::Value::Table(t)) => t
            .get_mut(key.as_str())
            .is_some_and(|inner| set_value(inner, rest, value)),
        (Some((Segment::Seq { index }, rest)), toml::Value::Array(items)) => items
            .get_mut(*index)
            .is_some_and(|inner| set_value(inner, rest, value)),
        _ => false,
    }
}

/// Removes the value at `path`: the key itself, or the whole array when the path ends at an
/// item (removing one item would renumber the others). False when nothing could be removed.
fn remove(table: &mut toml::Table, path: &[Segment]) -> bool {
    let Some((Segment::Map { key }, rest)) = path.split_first() else {
        return false;
    };
    let key = key.as_str();
    let removed_inside = match (table.get_mut(key), rest) {
        (_, []) => false,
        (Some(toml::Value::Table(inner)), rest) => remove(inner, rest),
        (Some(toml::Value::Array(items)), [Segment::Seq { index }, inner_path @ ..])
            if !inner_path.is_empty() =>
        {
            match items.get_mut(*index) {
                Some(toml::Value::Table(inner)) => remove(inner, inner_path),
                _ => false,
            }
        }
        _ => false,
    };
    removed_inside || table.remove(key).is_some()
}

fn count_leaves(table: &toml::Table) -> usize {
    table
        .values()
        .map(|v| match v {
            toml::Value::Table(t) => count_leaves(t) + 1,
            toml::Value::Array(a) => a.len() + 1,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Rule {
        #[serde(rename = "match")]
        pattern: String,
        name: String,
        labels: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Mapper {
        cache_size: u32,
        mappings: Vec<Rule>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Conf {
        service_address: String,
        #[serde(with = "crate::config::go")]
        interval: Duration,
        #[serde(with = "crate::config::seconds")]
        timeout: Duration,
        percpu: bool,
        count: u32,
        list: Vec<String>,
        tags: BTreeMap<String, String>,
        metric_mapper: Mapper,
        #[serde(alias = "pipeline_path")]
        pipeline: String,
    }

    fn keys(problems: &Problems, warning: bool) -> Vec<&str> {
        problems
            .0
            .iter()
            .filter(|p| p.is_warning() == warning)
            .map(|p| p.key.as_str())
            .collect()
    }

    fn message<'p>(problems: &'p Problems, key: &str) -> &'p str {
        problems
            .0
            .iter()
            .find(|p| p.key == key)
            .map_or("", |p| p.message.as_str())
    }

    #[test]
    fn reports_every_bad_key_at_once_and_keeps_the_good_ones() {
        let d = decode::<Conf>(
            "service_address = 8125\npercpu = \"yes\"\ncount = -1\nlist = [\"a\", 3]\ninterval = \"soon\"\npipeline = \"p\"\n[tags]\nok = \"v\"\nbad = 1\n[[metric_mapper.mappings]]\nmatch = \"a.*\"\n[[metric_mapper.mappings]]\nmatch = 7\nname = \"n\"\n",
        );
        let mut errors = keys(&d.problems, false);
        errors.sort_unstable();
        assert_eq!(
            errors,
            [
                "count",
                "interval",
                "list[1]",
                "metric_mapper.mappings[1].match",
                "percpu",
                "service_address",
                "tags.bad"
            ]
        );
        assert_eq!(keys(&d.problems, true), Vec::<&str>::new());
        assert_eq!(
            message(&d.problems, "percpu"),
            "invalid type: string \"yes\", expected true or false; write e.g. percpu = true, or remove the key to use the default"
        );
        assert!(message(&d.problems, "interval").contains("\"10s\""));
        assert_eq!(d.value.pipeline, "p");
        assert_eq!(d.value.metric_mapper.mappings[0].pattern, "a.*");
        assert_eq!(d.value.metric_mapper.mappings[1].name, "n");
        assert_eq!(d.value.tags, BTreeMap::from([("ok".into(), "v".into())]));
        assert!(d.into_result().is_err());
    }

    #[test]
    fn a_bad_array_item_is_named_and_the_other_items_keep_their_indices() {
        let d = decode::<Conf>("list = [1, \"b\", true]");
        assert_eq!(keys(&d.problems, false), ["list[0]", "list[2]"]);
        assert_eq!(d.value.list.get(1).map(String::as_str), Some("b"));
        // A check after decoding does not report the stand-ins again.
        let checked = d.map(|c, p| {
            for (i, item) in c.list.iter().enumerate() {
                if item.is_empty() {
                    p.error(format!("list[{i}]"), "empty");
                }
            }
        });
        assert_eq!(keys(&checked.problems, false), ["list[0]", "list[2]"]);
    }

    #[test]
    fn reads_go_duration_strings() {
        for (text, want) in [
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("500ms", Duration::from_millis(500)),
            ("1h", Duration::from_secs(3600)),
        ] {
            let d = decode::<Conf>(&format!("interval = \"{text}\"\ntimeout = \"{text}\""));
            assert_eq!(d.problems, Problems::default(), "{text}");
            assert_eq!((d.value.interval, d.value.timeout), (want, want), "{text}");
        }
    }

    #[test]
    fn a_bare_number_for_a_go_duration_is_nanoseconds_and_warns_what_was_meant() {
        let d = decode::<Conf>("interval = 10");
        assert_eq!(d.value.interval, Duration::from_nanos(10));
        assert_eq!(keys(&d.problems, true), ["interval"]);
        assert_eq!(
            message(&d.problems, "interval"),
            "interval = 10 is 10ns as Datakit reads it (a bare number is nanoseconds here); if you meant 10s, write interval = \"10s\""
        );
        let zero = decode::<Conf>("interval = 0");
        assert_eq!(zero.problems, Problems::default());
        let negative = decode::<Conf>("interval = -3");
        assert_eq!(keys(&negative.problems, false), ["interval"]);
    }

    #[test]
    fn a_float_for_a_go_duration_is_an_error_with_the_fix() {
        let d = decode::<Conf>("interval = 1.5");
        assert_eq!(keys(&d.problems, false), ["interval"]);
        assert!(
            message(&d.problems, "interval").contains("needs a unit"),
            "{:?}",
            d.problems
        );
    }

    #[test]
    fn a_bare_number_for_a_datakit_duration_is_seconds_and_a_float_drops_its_fraction() {
        let d = decode::<Conf>("timeout = 10");
        assert_eq!(d.value.timeout, Duration::from_secs(10));
        assert_eq!(
            message(&d.problems, "timeout"),
            "timeout = 10 is 10s as Datakit reads it (a bare number is seconds here); write timeout = \"10s\" to make the unit plain"
        );
        let d = decode::<Conf>("timeout = 1.5");
        assert_eq!(d.value.timeout, Duration::from_secs(1));
        assert_eq!(keys(&d.problems, true), ["timeout"]);
        assert!(
            message(&d.problems, "timeout").contains("if you meant 1.5s, write timeout = \"1.5s\""),
            "{:?}",
            d.problems
        );
        assert!(d.into_result().is_ok());
    }

    #[test]
    fn the_clamp_is_named_in_the_bare_number_warning() {
        let mut d = decode::<Conf>("interval = 10");
        let used = d.problems.clamp(
            "interval",
            d.value.interval,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(used, Duration::from_secs(1));
        assert_eq!(d.problems.0.len(), 1);
        assert!(
            message(&d.problems, "interval")
                .ends_with("write interval = \"10s\"; the input then raises it to its minimum 1s"),
            "{:?}",
            d.problems
        );
        let mut p = Problems::default();
        let used = p.clamp(
            "interval",
            Duration::from_secs(600),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(used, Duration::from_secs(60));
        assert_eq!(
            message(&p, "interval"),
            "10m0s is outside 1s-1m0s: the input lowers it to its maximum 1m0s, as Datakit does"
        );
    }

    #[test]
    fn unknown_keys_warn_with_the_closest_known_key_at_every_depth() {
        let d = decode::<Conf>(
            "servce_address = \":18126\"\npipeline_path = \"x.p\"\nCOUNT = 3\nzzz = 1\n[tags]\nanything = \"goes\"\n[metric_mapper]\ncache_sise = 10\n[[metric_mapper.mappings]]\nmatch = \"a\"\nnmae = \"x\"\n[metric_mapper.mappings.labels]\nfree = \"yes\"\n",
        );
        assert_eq!(keys(&d.problems, false), Vec::<&str>::new());
        let mut warned = keys(&d.problems, true);
        warned.sort_unstable();
        assert_eq!(
            warned,
            [
                "COUNT",
                "metric_mapper.cache_sise",
                "metric_mapper.mappings[0].nmae",
                "servce_address",
                "zzz"
            ]
        );
        assert_eq!(
            message(&d.problems, "servce_address"),
            "unknown key, ignored (the default applies): did you mean `service_address`?"
        );
        assert!(message(&d.problems, "COUNT").ends_with("`count`?"));
        assert!(message(&d.problems, "metric_mapper.cache_sise").ends_with("`cache_size`?"));
        assert!(message(&d.problems, "metric_mapper.mappings[0].nmae").ends_with("`name`?"));
        assert_eq!(
            message(&d.problems, "zzz"),
            "unknown key, ignored: check the spelling against the sample config"
        );
        assert_eq!(d.value.service_address, "");
        assert_eq!(d.value.pipeline, "x.p");
    }

    #[test]
    fn syntax_errors_are_one_problem() {
        let d = decode::<Conf>("interval = ");
        assert_eq!(d.problems.0.len(), 1);
        assert!(d.problems.0[0].message.starts_with("not valid TOML"));
    }

    #[test]
    fn closest_finds_typos_and_case_and_not_strangers() {
        let known = ["service_address", "interval", "address", "name"];
        assert_eq!(closest("servce_address", &known), Some("service_address"));
        assert_eq!(closest("adress", &known), Some("address"));
        assert_eq!(closest("serviceAddress", &known), Some("service_address"));
        assert_eq!(closest("intervall", &known), Some("interval"));
        assert_eq!(closest("percentiles", &known), None);
        assert_eq!(crate::config::edit_distance("kitten", "sitting"), 3);
        assert_eq!(crate::config::edit_distance("", "ab"), 2);
    }
}
