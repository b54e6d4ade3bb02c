//! End-to-end tests of the statsd family (being written).
