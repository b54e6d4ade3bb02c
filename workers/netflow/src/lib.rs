//! The `netflow` family: Datakit's NetFlow/IPFIX collector (`[[inputs.netflow]]`).
//!
//! Each `[[inputs.netflow.listeners]]` is a UDP port receiving NetFlow v5, v9 or IPFIX from
//! exporters. Flows are decoded ([`decode`]), aggregated as Datakit does ([`aggregate`]: key,
//! 10 s flush, 300 s re-emit, port rollup to `*`) and fed as `netflow` logging points
//! ([`payload`]). sFlow v5 is not decoded yet.

pub mod aggregate;
pub mod decode;
pub mod payload;

#[cfg(test)]
mod tests;
