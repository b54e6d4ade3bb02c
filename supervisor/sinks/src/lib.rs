//! The sinks behind `dk_proto::sink::Sink`: Dataway (Datakit-compatible uploads), InfluxDB and
//! the local files.

pub mod dataway;
pub mod http;
#[cfg(any(test, feature = "test-util"))]
pub mod influxd;
pub mod influxdb;
pub mod local;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
