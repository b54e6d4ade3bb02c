//! Upstream sinks behind `dk_delivery::Sink`: Dataway (Datakit-compatible uploads) and InfluxDB.

pub mod dataway;
pub mod http;
#[cfg(any(test, feature = "test-util"))]
pub mod influxd;
pub mod influxdb;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
