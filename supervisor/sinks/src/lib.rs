//! Upstream sinks behind `dk_delivery::Sink`: Dataway (Datakit-compatible uploads) and InfluxDB.

pub mod dataway;
pub mod influxdb;
