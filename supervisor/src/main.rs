//! The `datakit` binary (being written).
fn main() {}
