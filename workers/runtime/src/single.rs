//! [`SingleInput`]: the [`Family`] of a family that serves one input, written as its config
//! parser, its listeners and a constructor for the running input.
//!
//! ```ignore
//! impl SingleInput for GraphiteFamily {
//!     const FAMILY: &'static str = "graphite";
//!     const INPUT: &'static str = "graphite";
//!     const SAMPLE: &'static str = include_str!("../../../conf.d/graphite/graphite.conf");
//!     type Config = GraphiteConfig;
//!     type Shared = Metrics;
//!     fn parse(toml: &str) -> Result<GraphiteConfig, Vec<ConfigProblem>> { config::parse(toml) }
//!     fn listeners_of(cfg: &GraphiteConfig) -> Vec<ListenSpec> { cfg.listeners() }
//!     fn input(cfg: GraphiteConfig, source: &str, kit: &Kit<Metrics>) -> Box<dyn Input> { ... }
//! }
//! ```
//!
//! Every `Family` method then comes for free: names and sample, validation of every key
//! (`validate` is `parse`), listeners, and `build`, which makes one [`Kit`] per worker
//! generation (the uniform [`Telemetry`], with `datakit_inputs_instance` counted, and the
//! family's own `Shared` state such as its counters) and one input per instance.

use dk_proto::rpc::WorkerConfig;

use crate::http::RoutePath;
use crate::telemetry::Telemetry;
use crate::{ConfigProblem, Family, Input, ListenSpec};

/// What every instance of one worker generation shares.
#[derive(Debug, Default)]
pub struct Kit<S> {
    /// The uniform self-metrics (register them from the input with `telemetry.register`).
    pub telemetry: Telemetry,
    /// The family's own shared state (its counters...).
    pub shared: S,
}

/// A family of one input (see the module docs).
pub trait SingleInput: Send + Sync + 'static {
    /// The family name (`datakit worker <FAMILY>`).
    const FAMILY: &'static str;
    /// The Datakit input name (`[[inputs.<INPUT>]]`).
    const INPUT: &'static str;
    /// The `conf.d` sample.
    const SAMPLE: &'static str;
    /// The checked config of one instance.
    type Config;
    /// State shared by the instances of one generation.
    type Shared: Default + Send + Sync + 'static;
    /// Whether instances are independent ([`Family::per_instance`]): a reconfigure then keeps
    /// the unchanged ones running, and one [`Kit`] serves the worker's whole life (its
    /// metrics are registered once and never reset).
    const PER_INSTANCE: bool = false;

    /// Reads one instance's TOML table, reporting every problem.
    ///
    /// # Errors
    /// Every problem found.
    fn parse(toml_text: &str) -> Result<Self::Config, Vec<ConfigProblem>>;

    /// Every problem of one instance, warnings included (what the loader and `datakit check`
    /// report); by default the errors of [`SingleInput::parse`].
    fn problems(toml_text: &str) -> Vec<ConfigProblem> {
        Self::parse(toml_text).err().unwrap_or_default()
    }

    /// The sockets one instance listens on.
    fn listeners_of(cfg: &Self::Config) -> Vec<ListenSpec> {
        let _ = cfg;
        Vec::new()
    }

    /// The sockets of an instance from its text; by default those of a config that parses.
    /// Override to name the sockets of an instance with other problems.
    fn listeners_of_text(toml_text: &str) -> Vec<ListenSpec> {
        Self::parse(toml_text)
            .map(|cfg| Self::listeners_of(&cfg))
            .unwrap_or_default()
    }

    /// The running input of one instance read from the file `source`.
    fn input(cfg: Self::Config, source: &str, kit: &Kit<Self::Shared>) -> Box<dyn Input>;

    /// The routes one instance serves on the API port (its running input handles them with
    /// [`Input::routes`]); none by default.
    fn routes_of(cfg: &Self::Config) -> Vec<RoutePath> {
        let _ = cfg;
        Vec::new()
    }
}

impl<T: SingleInput> Family for T {
    fn name(&self) -> &'static str {
        T::FAMILY
    }

    fn inputs(&self) -> &'static [&'static str] {
        std::slice::from_ref(&T::INPUT)
    }

    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        std::slice::from_ref(&(T::INPUT, T::SAMPLE))
    }

    fn validate(&self, input: &str, toml_text: &str) -> Vec<ConfigProblem> {
        if input != T::INPUT {
            return vec![crate::unknown_input(self, input)];
        }
        T::problems(toml_text)
    }

    fn per_instance(&self) -> bool {
        T::PER_INSTANCE
    }

    fn listeners(&self, input: &str, toml_text: &str) -> Vec<ListenSpec> {
        if input != T::INPUT {
            return Vec::new();
        }
        T::listeners_of_text(toml_text)
    }

    fn routes(&self, input: &str, toml_text: &str) -> Vec<RoutePath> {
        if input != T::INPUT {
            return Vec::new();
        }
        T::parse(toml_text)
            .map(|cfg| T::routes_of(&cfg))
            .unwrap_or_default()
    }

    fn build(&self, config: &WorkerConfig) -> Result<Vec<Box<dyn Input>>, Vec<ConfigProblem>> {
        let kit = if T::PER_INSTANCE {
            process_kit::<T>()
        } else {
            std::sync::Arc::new(Kit::<T::Shared>::default())
        };
        let mut inputs = Vec::new();
        let mut problems = Vec::new();
        for spec in &config.inputs {
            if spec.name != T::INPUT {
                problems.push(crate::unknown_input(self, &spec.name));
                continue;
            }
            match T::parse(&spec.toml) {
                Ok(cfg) => {
                    // Counted before the input is made: an input may ask whether it is the
                    // generation's first (to register shared counters once).
                    let n = i64::try_from(inputs.len() + 1).unwrap_or(i64::MAX);
                    kit.telemetry.set_instances(T::INPUT, n);
                    inputs.push(T::input(cfg, &spec.source, &kit));
                }
                Err(found) => {
                    problems.extend(found.into_iter().map(|p| {
                        ConfigProblem::new(p.key, format!("{}: {}", spec.source, p.message))
                    }))
                }
            }
        }
        if problems.is_empty() {
            Ok(inputs)
        } else {
            Err(problems)
        }
    }
}

/// The one [`Kit`] of a [`SingleInput::PER_INSTANCE`] family in this process.
fn process_kit<T: SingleInput>() -> std::sync::Arc<Kit<T::Shared>> {
    use std::any::{Any, TypeId};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Kits = Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>;
    static KITS: OnceLock<Kits> = OnceLock::new();
    let fresh = || Arc::new(Kit::<T::Shared>::default());
    let Ok(mut kits) = KITS.get_or_init(Kits::default).lock() else {
        return fresh();
    };
    let kit = kits
        .entry(TypeId::of::<T>())
        .or_insert_with(|| fresh() as Arc<dyn Any + Send + Sync>)
        .clone();
    kit.downcast::<Kit<T::Shared>>().unwrap_or_else(|_| fresh())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use dk_proto::rpc::ListenerKind;
    use futures::future::BoxFuture;

    use super::*;
    use crate::testing::{keys, spec, worker_config};
    use crate::{Emitter, InputContext};

    /// A family whose instance is `port = N`.
    struct Ports;

    struct PortInput(Telemetry, u16);

    impl Input for PortInput {
        fn name(&self) -> &str {
            "ports"
        }

        fn routes(&self) -> Vec<crate::http::HttpRoute> {
            let port = self.1;
            vec![crate::http::HttpRoute::new(
                crate::http::Method::Post,
                format!("/v1/ports/{port}"),
                "ports",
                move |_| crate::http::HttpAnswer::text(200, format!("port {port}")),
            )]
        }

        fn run(self: Box<Self>, ctx: InputContext) -> BoxFuture<'static, ()> {
            self.0.register(&ctx);
            Box::pin(async {})
        }
    }

    impl SingleInput for Ports {
        const FAMILY: &'static str = "portfam";
        const INPUT: &'static str = "ports";
        const SAMPLE: &'static str = "[[inputs.ports]]\n  port = 1\n";
        type Config = u16;
        type Shared = Arc<AtomicUsize>;

        fn parse(toml_text: &str) -> Result<u16, Vec<ConfigProblem>> {
            let t: toml::Table = toml::from_str(toml_text)
                .map_err(|e| vec![ConfigProblem::new("", e.to_string())])?;
            t.get("port")
                .and_then(toml::Value::as_integer)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| vec![ConfigProblem::new("port", "expected a port number")])
        }

        fn listeners_of(port: &u16) -> Vec<ListenSpec> {
            vec![ListenSpec::new(format!("tcp://:{port}"), ListenerKind::Tcp)]
        }

        fn routes_of(port: &u16) -> Vec<RoutePath> {
            vec![RoutePath::new(
                crate::http::Method::Post,
                format!("/v1/ports/{port}"),
            )]
        }

        fn input(port: u16, _source: &str, kit: &Kit<Self::Shared>) -> Box<dyn Input> {
            kit.shared.fetch_add(1, Ordering::SeqCst);
            Box::new(PortInput(kit.telemetry.clone(), port))
        }
    }

    #[test]
    fn a_single_input_family_gets_names_validation_listeners_and_build() {
        let f: &dyn Family = &Ports;
        assert_eq!(f.name(), "portfam");
        assert_eq!(f.inputs(), &["ports"]);
        assert_eq!(f.samples()[0].0, "ports");
        assert!(f.validate("ports", "port = 9").is_empty());
        assert_eq!(keys(&f.validate("ports", "port = \"x\"")), vec!["port"]);
        assert_eq!(f.validate("other", "port = 9").len(), 1);
        assert_eq!(
            f.listeners("ports", "port = 9"),
            vec![ListenSpec::new("tcp://:9", ListenerKind::Tcp)]
        );
        assert!(f.listeners("other", "port = 9").is_empty());
        assert!(f.routes("other", "port = 9").is_empty());
        assert!(f.routes("ports", "port = \"x\"").is_empty());
        let inputs = f
            .build(&worker_config(
                "portfam",
                [
                    spec("ports", "a.conf", "port = 1"),
                    spec("ports", "b.conf", "port = 2"),
                ],
            ))
            .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(inputs.len(), 2);
        let problems = f
            .build(&worker_config(
                "portfam",
                [
                    spec("ports", "a.conf", "port = -1"),
                    spec("x", "b.conf", ""),
                ],
            ))
            .err()
            .unwrap();
        assert_eq!(keys(&problems), vec!["port", ""]);
        assert!(problems[0].message.starts_with("a.conf: "), "{problems:?}");
    }

    #[test]
    fn an_instance_declares_the_routes_its_config_names_and_its_input_handles_them() {
        let f: &dyn Family = &Ports;
        let declared = f.routes("ports", "port = 9");
        assert_eq!(
            declared,
            vec![RoutePath::new(crate::http::Method::Post, "/v1/ports/9")]
        );
        let inputs = f
            .build(&worker_config(
                "portfam",
                [spec("ports", "a.conf", "port = 9")],
            ))
            .unwrap_or_else(|p| panic!("{p:?}"));
        let mut table = crate::http::RouteTable::default();
        for route in inputs[0].routes() {
            assert_eq!(route.path(), declared[0]);
            table.add(route).unwrap();
        }
        let answer = table.handle(
            crate::http::Method::Post,
            "/v1/ports/9",
            crate::http::HttpRequest::default(),
        );
        assert_eq!((answer.status, answer.body), (200, b"port 9".to_vec()));
    }

    #[tokio::test]
    async fn build_counts_the_instances_in_the_uniform_telemetry() {
        let f: &dyn Family = &Ports;
        let inputs = f
            .build(&worker_config(
                "portfam",
                [
                    spec("ports", "a.conf", "port = 1"),
                    spec("ports", "b.conf", "port = 2"),
                ],
            ))
            .unwrap_or_else(|p| panic!("{p:?}"));
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, _, _) = InputContext::for_test(emitter);
        for i in inputs {
            i.run(ctx.clone()).await;
        }
        let text = crate::telemetry::encode(&ctx);
        assert_eq!(
            crate::telemetry::sample(&text, "datakit_inputs_instance", r#"input="ports""#),
            2.0
        );
        let all = crate::telemetry::UNIFORM_ALL;
        assert!(crate::telemetry::missing(&text, all).is_empty(), "{text}");
        // Nothing listens: the socket counters have no series.
        assert!(
            !crate::telemetry::missing_uniform(&text).is_empty(),
            "{text}"
        );
    }
}
