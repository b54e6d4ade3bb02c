//! `net`: per-interface traffic from `/proc/net/dev` (up, non-virtual interfaces by
//! default) and system-wide TCP/UDP counters from `/proc/net/snmp` (`interface=all`).

use std::collections::HashMap;
use std::time::Duration;

use dk_proto::{Point, Value};

use crate::config::NetConfig;
use crate::inputs::{rate, secs_between};
use crate::parse::netdev::{NetDev, parse_net_dev};
use crate::parse::snmp::{ProtoCounters, parse_snmp};
use crate::runner::Collector;
use crate::sys::{CollectError, HostPaths, IFF_UP, Reader};

/// Protocol counters that also get a `/sec` rate.
const RATED: [&str; 4] = ["insegs", "outsegs", "indatagrams", "outdatagrams"];

/// The `net` input.
pub struct Net {
    cfg: NetConfig,
    reader: Reader,
    last: HashMap<String, NetDev>,
    last_proto: HashMap<String, i64>,
    last_ts: Option<i64>,
}

impl Net {
    /// A `net` input reading from `paths`.
    pub fn new(cfg: NetConfig, paths: HostPaths) -> Self {
        Net {
            cfg,
            reader: Reader::new(paths),
            last: HashMap::new(),
            last_proto: HashMap::new(),
            last_ts: None,
        }
    }
}

/// The per-interface point; `prev` is the same interface `secs` seconds ago.
pub fn iface_point(d: &NetDev, prev: Option<&NetDev>, secs: f64, ts: i64) -> Point {
    let u = Value::U;
    let mut p = Point::new("net", ts)
        .tag("interface", d.name.as_str())
        .field("bytes_sent", u(d.bytes_sent))
        .field("bytes_recv", u(d.bytes_recv))
        .field("packets_sent", u(d.packets_sent))
        .field("packets_recv", u(d.packets_recv))
        .field("err_in", u(d.err_in))
        .field("err_out", u(d.err_out))
        .field("drop_in", u(d.drop_in))
        .field("drop_out", u(d.drop_out));
    if let Some(prev) = prev {
        let pairs = [
            ("bytes_sent/sec", d.bytes_sent, prev.bytes_sent),
            ("bytes_recv/sec", d.bytes_recv, prev.bytes_recv),
            ("packets_sent/sec", d.packets_sent, prev.packets_sent),
            ("packets_recv/sec", d.packets_recv, prev.packets_recv),
        ];
        for (key, cur, before) in pairs {
            if let Some(r) = rate(cur, before, secs) {
                p.set_field(key, Value::I(r));
            }
        }
    }
    p
}

/// The `interface=all` point of TCP/UDP counters (`tcp_insegs`...), with rates of the
/// segment and datagram counters from `prev` (keyed by field name).
pub fn proto_point(
    protos: &[ProtoCounters],
    prev: &HashMap<String, i64>,
    secs: f64,
    ts: i64,
) -> Option<Point> {
    let mut p = Point::new("net", ts).tag("interface", "all");
    for proto in protos {
        for (stat, value) in &proto.stats {
            let key = format!("{}_{}", proto.protocol, stat.to_ascii_lowercase());
            p.fields.push((key, Value::I(*value)));
        }
    }
    for proto in protos {
        for (stat, value) in &proto.stats {
            let lower = stat.to_ascii_lowercase();
            if !RATED.contains(&lower.as_str()) {
                continue;
            }
            let key = format!("{}_{lower}", proto.protocol);
            if let Some(before) = prev.get(&key)
                && *value >= *before
                && secs > 0.0
            {
                let r = rate(value.unsigned_abs(), before.unsigned_abs(), secs);
                if let Some(r) = r {
                    p.fields.push((format!("{key}/sec"), Value::I(r)));
                }
            }
        }
    }
    (!p.fields.is_empty()).then_some(p)
}

impl Collector for Net {
    fn name(&self) -> &'static str {
        "net"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let devs = parse_net_dev(self.reader.proc("net/dev")?)?;
        let secs = self.last_ts.map(|t| secs_between(t, ts)).unwrap_or(0.0);
        let virtual_ifaces = if self.cfg.enable_virtual_interfaces {
            Default::default()
        } else {
            self.reader.virtual_ifaces(false)
        };
        let mut points = Vec::with_capacity(devs.len() + 1);
        let mut seen = HashMap::with_capacity(devs.len());
        for d in devs {
            let up = self
                .reader
                .iface_flags(&d.name)
                .is_some_and(|f| f & IFF_UP != 0);
            if !up
                || (!self.cfg.interfaces.is_empty()
                    && !self.cfg.interfaces.iter().any(|r| r.is_match(&d.name)))
                || virtual_ifaces.contains(&d.name)
            {
                continue;
            }
            points.push(iface_point(&d, self.last.get(&d.name), secs, ts));
            seen.insert(d.name.clone(), d);
        }
        self.last = seen;

        if !self.cfg.ignore_protocol_stats {
            // Datakit ignores an unreadable /proc/net/snmp: no protocol point then.
            let protos = self
                .reader
                .proc("net/snmp")
                .ok()
                .and_then(|t| parse_snmp(t, &["tcp", "udp"]).ok())
                .unwrap_or_default();
            if let Some(p) = proto_point(&protos, &self.last_proto, secs, ts) {
                points.push(p);
            }
            self.last_proto = protos
                .iter()
                .flat_map(|proto| {
                    proto.stats.iter().map(move |(s, v)| {
                        (format!("{}_{}", proto.protocol, s.to_ascii_lowercase()), *v)
                    })
                })
                .collect();
        }
        self.last_ts = Some(ts);
        Ok(points)
    }
}
