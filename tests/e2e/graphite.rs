//! End-to-end tests of the graphite family (being written).
