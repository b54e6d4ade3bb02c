//! Datakit's flow aggregation (derived from Datadog's agent), pure and clocked by the caller.
//!
//! Flows with the same key (exporter, source and destination address and port, protocol,
//! ToS, input interface) are merged: bytes and packets summed, start the earliest, end the
//! latest, sequence the highest, TCP flags OR-ed. A new key is emitted at the next flush
//! tick ([`FLUSH_TICK_SECS`]), then at most once per [`REEMIT_SECS`]; a key with nothing new
//! for [`CONTEXT_TTL_SECS`] after its last emission is forgotten. Ports roll up: once a
//! source/destination address pair has [`ROLLUP_THRESHOLD`] distinct ports on one side for
//! one port on the other, that side's port becomes ephemeral (`*`); the port memory is
//! renewed every [`ROLLUP_REFRESH_SECS`]. Contexts and rollup entries are capped.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::decode::{FlowRecord, FlowType};

/// How often flows are flushed (Datakit's ticker).
pub const FLUSH_TICK_SECS: u64 = 10;
/// A key is emitted at most once per this.
pub const REEMIT_SECS: u64 = 300;
/// A key without new flows is forgotten this long after its last emission.
pub const CONTEXT_TTL_SECS: u64 = 300;
/// Distinct ports that make the other side's port ephemeral.
pub const ROLLUP_THRESHOLD: usize = 10;
/// How often the port memory is renewed.
pub const ROLLUP_REFRESH_SECS: u64 = 300;
/// Aggregation keys held at most (flows of new keys beyond are dropped and counted).
pub const MAX_CONTEXTS: usize = 200_000;
/// Port-rollup entries held at most per direction.
pub const MAX_ROLLUP_ENTRIES: usize = 400_000;

/// One aggregated flow: the merged record and its ports after rollup (`None` is `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggFlow {
    /// The merged record (its own ports are those of the first flow of the key).
    pub record: FlowRecord,
    /// The source port, `None` when rolled up.
    pub src_port: Option<u16>,
    /// The destination port, `None` when rolled up.
    pub dst_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    flow_type: FlowType,
    exporter: IpAddr,
    src: IpAddr,
    dst: IpAddr,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    proto: u8,
    tos: u8,
    input_if: u32,
}

struct Context {
    flow: Option<AggFlow>,
    next_flush: u64,
    last_flush: u64,
}

type PortKey = (IpAddr, IpAddr, u16);

#[derive(Default)]
struct PortStore {
    /// (src, dst, src port) → distinct destination ports (at most the threshold).
    src_to_dst: HashMap<PortKey, Vec<u16>>,
    /// (src, dst, dst port) → distinct source ports.
    dst_to_src: HashMap<PortKey, Vec<u16>>,
}

fn remember(map: &mut HashMap<PortKey, Vec<u16>>, key: PortKey, port: u16) {
    if let Some(ports) = map.get_mut(&key) {
        if ports.len() < ROLLUP_THRESHOLD && !ports.contains(&port) {
            ports.push(port);
        }
    } else if map.len() < MAX_ROLLUP_ENTRIES {
        map.insert(key, vec![port]);
    }
}

impl PortStore {
    fn add(&mut self, src: IpAddr, dst: IpAddr, sp: u16, dp: u16) {
        remember(&mut self.src_to_dst, (src, dst, sp), dp);
        remember(&mut self.dst_to_src, (src, dst, dp), sp);
    }
}

/// The port memory: flows are remembered in the current and the next store; the next one
/// replaces the current every [`ROLLUP_REFRESH_SECS`] (so a pair is forgotten 300-600 s after
/// it was last seen).
#[derive(Default)]
struct Rollup {
    current: PortStore,
    next: PortStore,
}

impl Rollup {
    /// Remembers the flow's ports and answers its ports after rollup.
    fn ports(&mut self, src: IpAddr, dst: IpAddr, sp: u16, dp: u16) -> (Option<u16>, Option<u16>) {
        self.current.add(src, dst, sp, dp);
        self.next.add(src, dst, sp, dp);
        let count = |m: &HashMap<PortKey, Vec<u16>>, k| m.get(&k).map_or(0, Vec::len);
        let to_dst = count(&self.current.src_to_dst, (src, dst, sp));
        let to_src = count(&self.current.dst_to_src, (src, dst, dp));
        if to_dst < ROLLUP_THRESHOLD && to_src < ROLLUP_THRESHOLD {
            (Some(sp), Some(dp))
        } else if to_dst >= to_src {
            (Some(sp), None)
        } else {
            (None, Some(dp))
        }
    }

    fn refresh(&mut self) {
        self.current = std::mem::take(&mut self.next);
    }
}

/// What [`Aggregator::add`] and [`Aggregator::flush`] did, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggCounts {
    /// Flows of new keys dropped because [`MAX_CONTEXTS`] keys are held.
    pub dropped: u64,
    /// Keys forgotten.
    pub expired: u64,
}

/// The aggregation state of one input.
pub struct Aggregator {
    contexts: HashMap<Key, Context>,
    rollup: Rollup,
    next_refresh: u64,
    /// What happened since the caller last took it.
    pub counts: AggCounts,
}

impl Aggregator {
    /// An empty aggregator starting at `now` (Unix seconds).
    pub fn new(now: u64) -> Aggregator {
        Aggregator {
            contexts: HashMap::new(),
            rollup: Rollup::default(),
            next_refresh: now + ROLLUP_REFRESH_SECS,
            counts: AggCounts::default(),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// Adds one decoded flow received at `now`.
    pub fn add(&mut self, record: FlowRecord, now: u64) {
        let (src_port, dst_port) = self.rollup.ports(
            record.src_addr,
            record.dst_addr,
            record.src_port,
            record.dst_port,
        );
        let key = Key {
            flow_type: record.flow_type,
            exporter: record.exporter,
            src: record.src_addr,
            dst: record.dst_addr,
            src_port,
            dst_port,
            proto: record.ip_protocol,
            tos: record.tos,
            input_if: record.input_if,
        };
        let fresh = || AggFlow {
            record: record.clone(),
            src_port,
            dst_port,
        };
        if let Some(ctx) = self.contexts.get_mut(&key) {
            match &mut ctx.flow {
                Some(agg) => merge(&mut agg.record, &record),
                None => ctx.flow = Some(fresh()),
            }
            return;
        }
        if self.contexts.len() >= MAX_CONTEXTS {
            self.counts.dropped += 1;
            return;
        }
        self.contexts.insert(
            key,
            Context {
                flow: Some(fresh()),
                next_flush: now,
                last_flush: now,
            },
        );
    }

    /// The flows due at `now` (call every [`FLUSH_TICK_SECS`]); forgets idle keys and renews
    /// the port memory when due.
    pub fn flush(&mut self, now: u64) -> Vec<AggFlow> {
        let mut out = Vec::new();
        let mut expired = 0;
        self.contexts.retain(|_, ctx| {
            if ctx.flow.is_some() && ctx.next_flush <= now {
                out.extend(ctx.flow.take());
                ctx.last_flush = now;
                ctx.next_flush = now + REEMIT_SECS;
                return true;
            }
            if ctx.flow.is_none() && ctx.last_flush + CONTEXT_TTL_SECS < now {
                expired += 1;
                return false;
            }
            true
        });
        self.counts.expired += expired;
        if now >= self.next_refresh {
            self.rollup.refresh();
            self.next_refresh = now + ROLLUP_REFRESH_SECS;
        }
        out
    }
}

fn merge(into: &mut FlowRecord, r: &FlowRecord) {
    into.bytes = into.bytes.saturating_add(r.bytes);
    into.packets = into.packets.saturating_add(r.packets);
    into.start = into.start.min(r.start);
    into.end = into.end.max(r.end);
    into.sequence = into.sequence.max(r.sequence);
    into.tcp_flags |= r.tcp_flags;
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn flow(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, bytes: u64) -> FlowRecord {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        FlowRecord {
            flow_type: FlowType::Netflow9,
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sampling_rate: 0,
            direction: 0,
            start: 100,
            end: 110,
            bytes,
            packets: 1,
            ether_type: 0x0800,
            ip_protocol: 6,
            src_addr: IpAddr::V4(Ipv4Addr::from(src)),
            dst_addr: IpAddr::V4(Ipv4Addr::from(dst)),
            src_port: sp,
            dst_port: dp,
            src_mac: 0,
            dst_mac: 0,
            src_mask: 0,
            dst_mask: 0,
            input_if: 1,
            output_if: 2,
            tos: 0,
            tcp_flags: 0x02,
            next_hop: Some(any),
            sequence: 7,
        }
    }

    #[test]
    fn same_key_flows_are_merged_and_emitted_at_the_next_tick() {
        let mut a = Aggregator::new(1000);
        a.add(flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, 100), 1000);
        let mut second = flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, 50);
        second.start = 90;
        second.end = 120;
        second.tcp_flags = 0x10;
        second.sequence = 9;
        a.add(second, 1001);
        a.add(flow([10, 0, 0, 1], 4001, [10, 0, 0, 2], 80, 1), 1001);
        let out = a.flush(1010);
        assert_eq!(out.len(), 2);
        let f = out
            .iter()
            .find(|f| f.src_port == Some(4000))
            .expect("merged");
        assert_eq!(
            (
                f.record.bytes,
                f.record.packets,
                f.record.start,
                f.record.end
            ),
            (150, 2, 90, 120)
        );
        assert_eq!((f.record.tcp_flags, f.record.sequence), (0x12, 9));
    }

    #[test]
    fn a_key_is_emitted_again_only_after_300_s_and_forgotten_when_idle() {
        let mut a = Aggregator::new(0);
        a.add(flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, 100), 0);
        assert_eq!(a.flush(10).len(), 1);
        a.add(flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, 5), 15);
        a.add(flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, 5), 200);
        for t in (20..310).step_by(10) {
            assert!(a.flush(t).is_empty(), "nothing due at {t}");
        }
        let again = a.flush(310);
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].record.bytes, 10,
            "what came since the last emission"
        );
        assert_eq!(a.len(), 1);
        assert!(a.flush(610).is_empty());
        assert_eq!(a.len(), 1, "kept until the TTL is over");
        assert!(a.flush(620).is_empty());
        assert!(a.is_empty());
        assert_eq!(a.counts.expired, 1);
    }

    #[test]
    fn the_tenth_source_port_to_one_destination_port_rolls_up_to_a_star() {
        let mut a = Aggregator::new(0);
        for i in 0..12 {
            a.add(flow([10, 0, 0, 5], 50000 + i, [10, 0, 0, 6], 443, 10), 1);
        }
        let out = a.flush(10);
        assert_eq!(out.len(), 10, "9 flows keep their port, 3 become one");
        let star = out
            .iter()
            .find(|f| f.src_port.is_none())
            .expect("rolled up");
        assert_eq!(
            (star.dst_port, star.record.bytes, star.record.packets),
            (Some(443), 30, 3)
        );
        // The memory is renewed: after two refreshes without the pair, ports are kept again.
        a.flush(300);
        a.flush(600);
        a.add(flow([10, 0, 0, 5], 50020, [10, 0, 0, 6], 443, 10), 601);
        assert_eq!(a.flush(610)[0].src_port, Some(50020));
    }

    #[test]
    fn many_destination_ports_roll_up_the_destination_side() {
        let mut a = Aggregator::new(0);
        for i in 0..10 {
            a.add(flow([10, 0, 0, 7], 33000, [10, 0, 0, 8], 1000 + i, 1), 1);
        }
        let out = a.flush(10);
        assert_eq!(out.iter().filter(|f| f.dst_port.is_none()).count(), 1);
        assert!(out.iter().all(|f| f.src_port == Some(33000)));
    }

    #[test]
    fn new_keys_over_the_cap_are_dropped_and_counted() {
        let mut a = Aggregator::new(0);
        for i in 0..(MAX_CONTEXTS as u32 + 5) {
            let [b1, b2, b3, b4] = i.to_be_bytes();
            let _ = b1;
            a.add(flow([11, b2, b3, b4], 1, [10, 0, 0, 1], 2, 1), 1);
        }
        assert_eq!(a.len(), MAX_CONTEXTS);
        assert_eq!(a.counts.dropped, 5);
    }
}
