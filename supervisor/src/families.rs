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
    ]
}

/// The family with this name.
pub fn by_name(name: &str) -> Option<&'static dyn Family> {
    all().into_iter().find(|f| f.name() == name)
}

#[cfg(test)]
mod compliance;
