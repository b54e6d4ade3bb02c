//! Test support for input families (feature `test-util`): the instance tables of a sample
//! config, input specs and worker configs as the supervisor sends them, and the seed corpus
//! and mutator of [`dk_proto::testing`] for corpus tests.
//!
//! Only dev-dependencies enable the feature, so release builds leave this module out. The
//! functions panic with a message on bad test data.

pub mod fake_http;
pub mod load;

use dk_proto::rpc::{InputSpec, WorkerConfig};
pub use dk_proto::testing::{Corpus, Mutator};

use crate::ConfigProblem;

/// The `[[inputs.NAME]]` tables (or the one `[inputs.NAME]` table) of `input` in a conf
/// file, each re-serialised as the supervisor passes it to `validate` and `build`.
///
/// # Panics
/// When `conf` is not TOML or has no instance of `input`.
pub fn instances(conf: &str, input: &str) -> Vec<String> {
    let doc: toml::Table = toml::from_str(conf).unwrap_or_else(|e| panic!("conf parses: {e}"));
    let Some(toml::Value::Table(inputs)) = doc.get("inputs") else {
        panic!("no [inputs] in the conf");
    };
    let list = match inputs.get(input) {
        Some(toml::Value::Array(list)) => list.clone(),
        Some(table @ toml::Value::Table(_)) => vec![table.clone()],
        _ => panic!("no [[inputs.{input}]] in the conf"),
    };
    list.iter()
        .map(|v| toml::to_string(v).unwrap_or_else(|e| panic!("re-serialise {input}: {e}")))
        .collect()
}

/// One instance of `input` read from the file `source`.
pub fn spec(input: &str, source: &str, toml: &str) -> InputSpec {
    InputSpec {
        name: input.to_string(),
        source: source.to_string(),
        toml: toml.to_string(),
    }
}

/// The config of a `family` worker running `inputs`, on host `test-host` (the host name of
/// [`crate::InputContext::for_test`]).
pub fn worker_config(family: &str, inputs: impl IntoIterator<Item = InputSpec>) -> WorkerConfig {
    WorkerConfig {
        family: family.to_string(),
        hostname: "test-host".to_string(),
        inputs: inputs.into_iter().collect(),
        ..WorkerConfig::default()
    }
}

/// The keys of `problems`, in order: what a test of a config parser asserts on.
pub fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

/// A sample with its commented-out settings turned on: every line whose text after the `#`s
/// is a `key = value` that parses as TOML or a `[table]` header loses its `#`s; prose stays. For checking
/// that every key a sample documents is a known key.
pub fn uncommented(sample: &str) -> String {
    let mut out = String::with_capacity(sample.len());
    for line in sample.lines() {
        let body = line.trim_start().trim_start_matches('#').trim_start();
        let is_key = |k: &str| {
            let k = k.trim();
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"'))
        };
        let header = body.split(" #").next().unwrap_or(body).trim_end();
        let is_header = header.starts_with('[') && header.ends_with(']');
        let is_setting = body.split_once('=').is_some_and(|(k, _)| is_key(k))
            && body.parse::<toml::Table>().is_ok();
        if line.trim_start().starts_with('#') && (is_header || is_setting) {
            out.push_str(if is_header { header } else { body });
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
[[inputs.a]]
  n = 1
  [inputs.a.tags]
    team = "x"

[[inputs.a]]
  n = 2

[inputs.b]
  s = "one"
"#;

    #[test]
    fn instances_splits_arrays_of_tables_and_single_tables() {
        let a = instances(CONF, "a");
        assert_eq!(a.len(), 2);
        let first: toml::Table = toml::from_str(&a[0]).unwrap_or_default();
        assert_eq!(first.get("n").and_then(toml::Value::as_integer), Some(1));
        assert_eq!(
            first
                .get("tags")
                .and_then(|t| t.get("team"))
                .and_then(toml::Value::as_str),
            Some("x")
        );
        assert_eq!(instances(CONF, "b"), vec!["s = \"one\"\n".to_string()]);
    }

    #[test]
    #[should_panic(expected = "no [[inputs.c]]")]
    fn instances_panics_on_a_missing_input() {
        instances(CONF, "c");
    }

    #[test]
    fn keys_lists_the_problem_keys_in_order() {
        let problems = [ConfigProblem::new("b", "x"), ConfigProblem::new("a", "y")];
        assert_eq!(keys(&problems), vec!["b", "a"]);
    }

    #[test]
    fn worker_config_carries_the_specs_in_order() {
        let config = worker_config("f", [spec("a", "x.conf", "n = 1"), spec("b", "y.conf", "")]);
        assert_eq!(config.family, "f");
        assert_eq!(config.hostname, "test-host");
        let names: Vec<(&str, &str)> = config
            .inputs
            .iter()
            .map(|s| (s.name.as_str(), s.source.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "x.conf"), ("b", "y.conf")]);
        assert_eq!(config.inputs[0].toml, "n = 1");
    }
}
