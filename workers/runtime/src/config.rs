//! The validate/build loops every family shares, on top of the one config collector of the
//! contract ([`dk_proto::config`], re-exported here): `datakit.conf` (in `dk-config`) and every
//! input are read by the same code.

use dk_proto::rpc::{InputSpec, WorkerConfig};

use crate::family::{Family, Input};

pub use dk_proto::config::*;

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
