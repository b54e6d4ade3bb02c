//! End-to-end tests of the logging family (being written).
