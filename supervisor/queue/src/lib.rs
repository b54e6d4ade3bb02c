//! The durable per-category queue (being written).
