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
}

#[cfg(test)]
mod compliance;
