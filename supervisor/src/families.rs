//! The input families this build serves: adding one is one line here plus its crate.

use dk_worker::Family;

/// Every family, in a stable order.
pub fn all() -> Vec<&'static dyn Family> {
    vec![
        &dk_input_host::HostFamily,
        &dk_input_socket::SocketFamily,
        &dk_input_statsd::StatsdFamily,
        &dk_input_graphite::GraphiteFamily,
        &dk_input_logging::LoggingFamily,
        &dk_input_beats::BeatsFamily,
        &dk_input_netflow::NetflowFamily,
        &dk_input_cat::CatFamily,
        &dk_input_logfwd::LogfwdFamily,
        &dk_input_otel::OtelFamily,
        &dk_input_pyroscope::PyroscopeFamily,
    ]
}

/// The family with this name.
pub fn by_name(name: &str) -> Option<&'static dyn Family> {
    all().into_iter().find(|f| f.name() == name)
}

#[cfg(test)]
mod readme;

#[cfg(test)]
mod tests {
    use dk_worker::testing::{instances, uncommented};

    use super::*;

    /// The samples are what `datakit run` starts with and what users copy: neither they nor
    /// the settings they document (commented out) may draw a warning.
    #[test]
    fn every_sample_and_every_setting_it_documents_validates_without_a_problem() {
        let mut checked = 0;
        for family in all() {
            for (input, sample) in family.samples() {
                for text in [sample.to_string(), uncommented(sample)] {
                    for instance in instances(&text, input) {
                        let problems = family.validate(input, &instance);
                        assert!(problems.is_empty(), "{input}: {problems:?}\n{instance}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 24, "only {checked} instances checked");
    }

    /// A first start (no datakit.conf) runs Datakit's whole default input list from the
    /// built-in samples, with no warning about any of them.
    #[test]
    fn the_first_run_datakit_conf_enables_every_default_input_without_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
        let env = dk_config::MapEnv(std::collections::HashMap::new());
        let loaded = crate::app::with_config_families(|descriptors| {
            dk_config::load(dir.path(), descriptors, &env).expect("loads")
        });
        assert_eq!(
            loaded.main.default_enabled_inputs,
            dk_config::DATAKIT_DEFAULT_ENABLED_INPUTS
        );
        let about_inputs: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.key.starts_with("default_enabled_inputs"))
            .collect();
        assert!(about_inputs.is_empty(), "{about_inputs:#?}");
        let mut running: Vec<&str> = loaded
            .plan
            .families
            .values()
            .flat_map(|f| f.inputs.iter().map(|i| i.name.as_str()))
            .collect();
        running.sort_unstable();
        assert_eq!(running, dk_config::DATAKIT_DEFAULT_ENABLED_INPUTS);
    }

    /// Datakit's `ENV_INPUT_HOST_PROCESSES_*` variables set the keys of the host_processes
    /// sample, and the host family accepts the result.
    #[test]
    fn env_input_host_processes_variables_configure_the_input() {
        let vars = [
            ("ENV_INPUT_HOST_PROCESSES_OPEN_METRIC", "true"),
            ("ENV_INPUT_HOST_PROCESSES_PROCESS_NAME", ".*datakit.*,nginx"),
            ("ENV_INPUT_HOST_PROCESSES_MIN_RUN_TIME", "1m"),
            ("ENV_INPUT_HOST_PROCESSES_ENABLE_LISTEN_PORTS", "true"),
            ("ENV_INPUT_HOST_PROCESSES_ONLY_CONTAINER_PROCESSES", "true"),
            ("ENV_INPUT_HOST_PROCESSES_METRIC_INTERVAL", "15s"),
            ("ENV_INPUT_HOST_PROCESSES_OBJECT_INTERVAL", "60s"),
            ("ENV_INPUT_HOST_PROCESSES_TAGS", "team=ops"),
        ];
        let env = dk_config::MapEnv(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let confs = crate::app::with_config_families(|descriptors| {
            dk_config::input_confs(&env, &["host_processes".to_string()], descriptors).unwrap()
        });
        assert!(confs.warnings.is_empty(), "{:?}", confs.warnings);
        let (name, text) = &confs.files[0];
        assert_eq!(name, "ENV_INPUT_HOST_PROCESSES.conf");
        let t: toml::Table = toml::from_str(text).unwrap();
        let i = &t["inputs"]["host_processes"][0];
        assert_eq!(i["open_metric"].as_bool(), Some(true));
        assert_eq!(i["process_name"].as_array().map(Vec::len), Some(2));
        assert_eq!(i["min_run_time"].as_str(), Some("1m"));
        assert_eq!(i["enable_listen_ports"].as_bool(), Some(true));
        assert_eq!(i["only_container_processes"].as_bool(), Some(true));
        assert_eq!(i["metric_interval"].as_str(), Some("15s"));
        assert_eq!(i["object_interval"].as_str(), Some("60s"));
        assert_eq!(i["tags"]["team"].as_str(), Some("ops"));
        let host = by_name("host").unwrap();
        let instance = toml::to_string(i).unwrap();
        assert_eq!(host.validate("host_processes", &instance), vec![]);
    }
}

#[cfg(test)]
mod compliance;
