//! The InfluxDB v1 sink (being written).
