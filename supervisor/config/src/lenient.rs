//! Decoding a TOML table into a typed struct while collecting every bad key, not just the first.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::diag::Sink;

/// Decodes `table` into `T`. A key whose value has the wrong type (or does not parse) is
/// reported as an error under `prefix`, dropped, and decoding is retried, so one pass finds
/// every bad key; dropped keys keep `T`'s default. Returns the value and the cleaned table.
pub(crate) fn decode<T: DeserializeOwned + Default>(
    mut table: toml::Table,
    file: &Path,
    prefix: &str,
    sink: &mut Sink,
) -> (T, toml::Table) {
    // Each round removes at least one key, so the number of leaves bounds the rounds.
    let rounds = count_leaves(&table) + 1;
    for _ in 0..rounds {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => return (v, table),
            Err(e) => {
                let key = join(prefix, &e.path().to_string());
                sink.error(file, key, describe(e.inner().message()));
                let segments: Vec<Segment> = e.path().iter().cloned().collect();
                if !remove(&mut table, &segments) {
                    break;
                }
            }
        }
    }
    (T::default(), table)
}

/// Warns about every key of `input` that `decoded` does not have after a round trip: a key
/// this build (and Datakit) does not know, most often a typo. Datakit ignores them too.
pub(crate) fn warn_unknown<T: Serialize>(
    decoded: &T,
    input: &toml::Table,
    file: &Path,
    prefix: &str,
    sink: &mut Sink,
) {
    let Ok(toml::Value::Table(known)) = toml::Value::try_from(decoded) else {
        return;
    };
    compare(input, &known, file, prefix, sink);
}

fn compare(input: &toml::Table, known: &toml::Table, file: &Path, prefix: &str, sink: &mut Sink) {
    for (k, v) in input {
        let key = join(prefix, k);
        match (v, known.get(k)) {
            (_, None) => sink.warn(
                file,
                key,
                "unknown key, ignored: check the spelling against the sample datakit.conf",
            ),
            (toml::Value::Table(a), Some(toml::Value::Table(b))) => compare(a, b, file, &key, sink),
            _ => {}
        }
    }
}

fn describe(msg: &str) -> String {
    let msg = msg.trim_end();
    if msg.contains("invalid duration") {
        msg.to_string()
    } else {
        format!("{msg}; fix the value or remove the key to use the default")
    }
}

pub(crate) fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty() || key == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => key.to_string(),
        (false, false) if key.starts_with('[') => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

/// Removes the value at `path` (a whole array when the path goes into one). False when
/// nothing could be removed.
fn remove(table: &mut toml::Table, path: &[Segment]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let key = match first {
        Segment::Map { key } => key.as_str(),
        _ => return false,
    };
    let descend = matches!(rest.first(), Some(Segment::Map { .. }));
    if descend && let Some(toml::Value::Table(inner)) = table.get_mut(key) {
        return remove(inner, rest) || table.remove(key).is_some();
    }
    table.remove(key).is_some()
}

fn count_leaves(table: &toml::Table) -> usize {
    table
        .values()
        .map(|v| match v {
            toml::Value::Table(t) => count_leaves(t) + 1,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        n: u32,
        s: String,
    }

    #[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
    #[serde(default)]
    struct Outer {
        a: u32,
        b: bool,
        inner: Inner,
        list: Vec<String>,
    }

    #[test]
    fn reports_every_bad_key_and_keeps_the_good_ones() {
        let table: toml::Table = toml::from_str(
            "a = \"x\"\nb = true\nlist = [\"ok\", 3]\n[inner]\nn = -1\ns = \"kept\"\n",
        )
        .expect("valid toml");
        let mut sink = Sink::default();
        let (v, _) = decode::<Outer>(table, Path::new("f"), "", &mut sink);
        let keys: Vec<&str> = sink.errors.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["a", "inner.n", "list[1]"]);
        assert_eq!(
            v,
            Outer {
                a: 0,
                b: true,
                inner: Inner {
                    n: 0,
                    s: "kept".into()
                },
                list: vec![],
            }
        );
    }

    #[test]
    fn warns_about_unknown_keys_with_their_path() {
        let table: toml::Table =
            toml::from_str("a = 1\nzz = 2\n[inner]\nnn = 3\n").expect("valid toml");
        let mut sink = Sink::default();
        let (v, clean) = decode::<Outer>(table, Path::new("f"), "top", &mut sink);
        warn_unknown(&v, &clean, Path::new("f"), "top", &mut sink);
        let keys: Vec<&str> = sink.warnings.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["top.inner.nn", "top.zz"]);
        assert!(sink.errors.is_empty());
    }
}
