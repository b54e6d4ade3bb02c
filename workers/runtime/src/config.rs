//! Input config: ONE collector that decodes a TOML table into a serde-derived struct and
//! reports every problem at once, one duration reader, and the validate/build loops every
//! family shares. `datakit.conf` is read by the same collector (in `dk-config`).
//!
//! [`decode`] finds, in one call: every key of the wrong type (each dropped and the decoding
//! retried, so one bad key does not hide the next), every bare-number duration (a warning that
//! says what Datakit reads it as, see [`go`] and [`seconds`]), and every unknown key (a warning
//! naming the closest known key, found by asking the struct itself, see [`probe`]).

mod collect;
mod duration;
mod probe;

use dk_proto::rpc::{InputSpec, WorkerConfig};
use serde::de::DeserializeOwned;

use crate::family::{Family, Input};

pub use collect::{Decoded, Problems, decode, decode_table, join};
pub use duration::{go, seconds};
pub use probe::{closest, edit_distance};

/// Whether a problem stops the config or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Severity {
    /// The instance is refused.
    #[default]
    Error,
    /// Reported (log, `datakit check`), the instance still runs.
    Warning,
}

/// One problem in an input's config: the key and what to do about it.
/// The supervisor adds the file name and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key inside the instance (`dest_url[1]`, `interval`), or empty for the whole table.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl ConfigProblem {
    /// An error with a key.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning with a key.
    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            severity: Severity::Warning,
            ..ConfigProblem::new(key, message)
        }
    }

    /// Whether this only warns.
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Decodes one `[[inputs.NAME]]` table (given as TOML text) into the input's config struct.
///
/// Config structs use `#[serde(deny_unknown_fields)]` only where Datakit also rejects unknown
/// keys; otherwise unknown keys are ignored as Datakit ignores them.
///
/// # Errors
/// A [`ConfigProblem`] naming the key TOML reported and the expected type.
pub fn parse_instance<T: DeserializeOwned>(toml_text: &str) -> Result<T, ConfigProblem> {
    toml::from_str::<T>(toml_text).map_err(|e| {
        let key = e
            .span()
            .and_then(|span| toml_text.get(..span.start))
            .and_then(|before| before.lines().last())
            .map(|line| line.split('=').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        ConfigProblem::new(key, e.message().to_string())
    })
}

/// Parses a Go duration value of key `key`, naming the key in the problem.
///
/// # Errors
/// A [`ConfigProblem`] for `key` when the text is not a duration.
pub fn duration(key: &str, text: &str) -> Result<std::time::Duration, ConfigProblem> {
    dk_proto::duration::parse(text).map_err(|e| ConfigProblem::new(key, e.to_string()))
}

/// Reads the `tags` key of an `[[inputs.INPUT]]` table (`[inputs.INPUT.tags]`): its
/// `(key, value)` pairs in key order, empty when the key is absent.
///
/// A `tags` that is not a table, and every value in it that is not a string, adds a problem
/// to `problems` naming the key and the fix; the string values are still returned.
pub fn tags(
    input: &str,
    table: &toml::Table,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(String, String)> {
    match table.get("tags") {
        None => Vec::new(),
        Some(toml::Value::Table(tags)) => string_table("tags", tags, problems),
        Some(other) => {
            problems.push(ConfigProblem::new(
                "tags",
                format!(
                    "expected a table, found {}; write [inputs.{input}.tags] with key = \"value\" lines",
                    other.type_str()
                ),
            ));
            Vec::new()
        }
    }
}

/// The string values of the table at dotted key `key`, in key order; every other value adds
/// a problem for `key.NAME` saying to quote it.
pub fn string_table(
    key: &str,
    table: &toml::Table,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(table.len());
    for (k, v) in table {
        match v {
            toml::Value::String(s) => out.push((k.clone(), s.clone())),
            other => problems.push(ConfigProblem::new(
                format!("{key}.{k}"),
                format!(
                    "expected a string, found {}; quote the value: {k} = \"...\"",
                    other.type_str()
                ),
            )),
        }
    }
    out
}

/// The problem for an instance of `input` sent to a family that does not serve it.
///
/// The message names the input and the `[[inputs.NAME]]` tables the family does serve.
pub fn unknown_input<F: Family + ?Sized>(family: &F, input: &str) -> ConfigProblem {
    let served: Vec<String> = family
        .inputs()
        .iter()
        .map(|name| format!("[[inputs.{name}]]"))
        .collect();
    let verb = if served.len() == 1 { "does" } else { "do" };
    ConfigProblem::new(
        "",
        format!(
            "input {input:?} does not belong to the {} family; only {} {verb}",
            family.name(),
            served.join(", ")
        ),
    )
}

/// [`Family::validate`] for a family whose instances are read by one `decode` function:
/// refuses inputs the family does not serve, then returns every problem (errors and
/// warnings) `decode` finds.
pub fn validate_instance<F, T>(
    family: &F,
    input: &str,
    toml_text: &str,
    decode: impl FnOnce(&str) -> Decoded<T>,
) -> Vec<ConfigProblem>
where
    F: Family + ?Sized,
{
    if !family.inputs().contains(&input) {
        return vec![unknown_input(family, input)];
    }
    decode(toml_text).into_problems()
}

/// [`Family::build`] for a family that makes one input per instance: calls `build` on every
/// instance of `config` that the family serves, in order.
///
/// # Errors
/// Every problem of every instance, each message prefixed with the instance's source file
/// (`conf.d/x.conf: ...`), plus an [`unknown_input`] problem per instance of an input the
/// family does not serve. No input is returned unless there are no problems at all.
pub fn build_instances<F, I>(
    family: &F,
    config: &WorkerConfig,
    mut build: impl FnMut(&InputSpec) -> Result<I, Vec<ConfigProblem>>,
) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>>
where
    F: Family + ?Sized,
    I: Input + 'static,
{
    let mut inputs: Vec<Box<dyn Input>> = Vec::new();
    let mut problems = Vec::new();
    for spec in &config.inputs {
        if !family.inputs().contains(&spec.name.as_str()) {
            problems.push(unknown_input(family, &spec.name));
            continue;
        }
        match build(spec) {
            Ok(input) => inputs.push(Box::new(input)),
            Err(found) => problems.extend(
                found
                    .into_iter()
                    .map(|p| ConfigProblem::new(p.key, format!("{}: {}", spec.source, p.message))),
            ),
        }
    }
    if problems.is_empty() {
        Ok(inputs)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::InputContext;
    use crate::testing::{spec, worker_config};

    /// A family serving the listed inputs; an instance is valid when its text is a number.
    struct Numbers(&'static [&'static str]);

    /// [`Numbers`] serving `one` and `two`.
    const ONE_TWO: Numbers = Numbers(&["one", "two"]);

    struct Number;

    impl Input for Number {
        fn name(&self) -> &str {
            "one"
        }

        fn run(self: Box<Self>, _ctx: InputContext) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
    }

    fn parse(text: &str) -> Result<u32, Vec<ConfigProblem>> {
        text.trim()
            .parse()
            .map_err(|_| vec![ConfigProblem::new("n", format!("{text:?} is not a number"))])
    }

    impl Family for Numbers {
        fn name(&self) -> &'static str {
            "numbers"
        }

        fn inputs(&self) -> &'static [&'static str] {
            self.0
        }

        fn samples(&self) -> &'static [(&'static str, &'static str)] {
            &[]
        }

        fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem> {
            validate_instance(self, input, toml_text, |text| {
                let mut problems = Problems::default();
                if let Err(found) = parse(text) {
                    problems.0 = found;
                }
                Decoded {
                    value: (),
                    problems,
                }
            })
        }

        fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
            build_instances(self, config, |spec| parse(&spec.toml).map(|_| Number))
        }
    }

    /// A config of `(input, toml)` instances, the n-th from `conf.d/n.conf`.
    fn config(instances: &[(&str, &str)]) -> WorkerConfig {
        let specs = instances
            .iter()
            .enumerate()
            .map(|(i, (name, toml))| spec(name, &format!("conf.d/{i}.conf"), toml));
        worker_config("numbers", specs)
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tags_reads_string_values_in_key_order() {
        let mut problems = Vec::new();
        let t = table("[tags]\nteam = \"ops\"\nenv = \"prod\"\n");
        assert_eq!(
            tags("x", &t, &mut problems),
            vec![
                ("env".to_string(), "prod".to_string()),
                ("team".to_string(), "ops".to_string())
            ]
        );
        assert_eq!(tags("x", &table("a = 1"), &mut problems), Vec::new());
        assert_eq!(problems, Vec::new());
    }

    #[test]
    fn tags_names_every_mistyped_value_and_a_tags_that_is_not_a_table() {
        let mut problems = Vec::new();
        let t = table("[tags]\na = 1\nb = \"ok\"\nc = true\n");
        let found = tags("socket", &t, &mut problems);
        assert_eq!(found, vec![("b".to_string(), "ok".to_string())]);
        assert_eq!(
            problems,
            vec![
                ConfigProblem::new(
                    "tags.a",
                    "expected a string, found integer; quote the value: a = \"...\""
                ),
                ConfigProblem::new(
                    "tags.c",
                    "expected a string, found boolean; quote the value: c = \"...\""
                ),
            ]
        );
        problems.clear();
        assert_eq!(
            tags("socket", &table("tags = 3"), &mut problems),
            Vec::new()
        );
        assert_eq!(
            problems,
            vec![ConfigProblem::new(
                "tags",
                "expected a table, found integer; write [inputs.socket.tags] with key = \"value\" lines"
            )]
        );
    }

    #[test]
    fn unknown_input_names_the_input_and_what_the_family_serves() {
        assert_eq!(
            unknown_input(&Numbers(&["one"]), "cpu"),
            ConfigProblem::new(
                "",
                "input \"cpu\" does not belong to the numbers family; only [[inputs.one]] does"
            )
        );
        assert_eq!(
            unknown_input(&ONE_TWO, "cpu").message,
            "input \"cpu\" does not belong to the numbers family; only [[inputs.one]], [[inputs.two]] do"
        );
    }

    #[test]
    fn validate_instance_refuses_other_inputs_before_parsing() {
        assert_eq!(ONE_TWO.validate("two", "7"), Vec::new());
        let parsed = ONE_TWO.validate("one", "x");
        assert_eq!(
            parsed,
            vec![ConfigProblem::new("n", "\"x\" is not a number")]
        );
        let refused = ONE_TWO.validate("three", "x");
        assert_eq!(refused, vec![unknown_input(&ONE_TWO, "three")]);
    }

    #[test]
    fn build_instances_makes_one_input_per_instance_in_order() {
        let mut seen = Vec::new();
        let built = build_instances(&ONE_TWO, &config(&[("one", "1"), ("two", "2")]), |spec| {
            let n = parse(&spec.toml)?;
            seen.push((spec.name.clone(), n));
            Ok(Number)
        });
        assert_eq!(built.map(|inputs| inputs.len()).ok(), Some(2));
        assert_eq!(seen, vec![("one".to_string(), 1), ("two".to_string(), 2)]);
    }

    #[test]
    fn build_instances_collects_every_problem_with_its_source_file() {
        let config = config(&[("one", "x"), ("cpu", "1"), ("two", "3"), ("two", "y")]);
        let Err(problems) = ONE_TWO.build(&config) else {
            panic!("bad instances must not build");
        };
        assert_eq!(
            problems,
            vec![
                ConfigProblem::new("n", "conf.d/0.conf: \"x\" is not a number"),
                unknown_input(&ONE_TWO, "cpu"),
                ConfigProblem::new("n", "conf.d/3.conf: \"y\" is not a number"),
            ]
        );
    }

    #[test]
    fn build_instances_of_no_instances_is_empty() {
        let built = ONE_TWO.build(&WorkerConfig::default());
        assert_eq!(built.map(|inputs| inputs.len()).ok(), Some(0));
    }
}
