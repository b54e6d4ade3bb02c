//! The `netflow` logging point of one aggregated flow: Datakit's `message` JSON and flat
//! fields.

use std::net::IpAddr;

use dk_proto::{Point, Value};
use serde_json::Value as Json;

use crate::aggregate::AggFlow;

/// What every point of an input shares.
#[derive(Clone, Debug)]
pub struct PointSettings {
    /// The measurement (`source`, default `netflow`).
    pub source: String,
    /// `device.namespace` in the message.
    pub namespace: String,
    /// `host` in the message (the agent's host name).
    pub host: String,
    /// `[inputs.netflow.tags]`.
    pub tags: Vec<(String, String)>,
}

/// The IANA keyword of an IP protocol (Datakit's table for the common ones); other numbers
/// are rendered as decimal.
pub fn protocol_name(p: u8) -> String {
    let name = match p {
        0 => "HOPOPT",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPv4",
        6 => "TCP",
        8 => "EGP",
        17 => "UDP",
        41 => "IPv6",
        43 => "IPv6-Route",
        44 => "IPv6-Frag",
        46 => "RSVP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "IPv6-ICMP",
        59 => "IPv6-NoNxt",
        60 => "IPv6-Opts",
        88 => "EIGRP",
        89 => "OSPFIGP",
        103 => "PIM",
        112 => "VRRP",
        115 => "L2TP",
        132 => "SCTP",
        136 => "UDPLite",
        137 => "MPLS-in-IP",
        _ => return p.to_string(),
    };
    name.to_string()
}

/// `aa:bb:cc:dd:ee:ff` from the low 48 bits.
pub fn format_mac(mac: u64) -> String {
    let b = mac.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// The network of `ip` with prefix length `mask` in CIDR form (`10.0.0.0/10`).
pub fn format_mask(ip: IpAddr, mask: u8) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::from(mask.min(32));
            let bits = if m == 0 { 0 } else { u32::MAX << (32 - m) };
            format!("{}/{m}", std::net::Ipv4Addr::from(u32::from(v4) & bits))
        }
        IpAddr::V6(v6) => {
            let m = u32::from(mask.min(128));
            let bits = if m == 0 { 0 } else { u128::MAX << (128 - m) };
            format!("{}/{m}", std::net::Ipv6Addr::from(u128::from(v6) & bits))
        }
    }
}

/// The TCP flags set, in Datakit's order.
pub fn tcp_flags(flags: u8) -> Vec<&'static str> {
    [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

fn port(p: Option<u16>) -> String {
    p.map_or_else(|| "*".to_string(), |p| p.to_string())
}

/// A JSON string literal of `s` (quoted and escaped).
fn json_str(s: &str) -> String {
    Json::from(s).to_string()
}

/// Appends the `message` JSON of a flow flushed at `flush_ms` (Unix ms) to `out`, keys in
/// Datakit's order. Written by hand: building a `serde_json::Value` per flow cost 10 µs.
pub fn write_message(flow: &AggFlow, flush_ms: u64, settings: &PointSettings, out: &mut String) {
    use std::fmt::Write as _;
    let r = &flow.record;
    let direction = if r.direction == 1 {
        "egress"
    } else {
        "ingress"
    };
    let _ = write!(
        out,
        r#"{{"flush_timestamp":{flush_ms},"type":"{}","sampling_rate":{},"direction":"{direction}","start":{},"end":{},"bytes":{},"packets":{},"#,
        r.flow_type.as_str(),
        r.sampling_rate,
        r.start,
        r.end,
        r.bytes,
        r.packets,
    );
    match r.ether_type {
        0x0800 => out.push_str(r#""ether_type":"IPv4","#),
        0x86dd => out.push_str(r#""ether_type":"IPv6","#),
        _ => {}
    }
    let host = if settings.host.is_empty() {
        "unknown"
    } else {
        settings.host.as_str()
    };
    let _ = write!(
        out,
        r#""ip_protocol":{},"device":{{"namespace":{}}},"exporter":{{"ip":"{}"}},"source":{{"ip":"{}","port":"{}","mac":"{}","mask":"{}"}},"destination":{{"ip":"{}","port":"{}","mac":"{}","mask":"{}"}},"ingress":{{"interface":{{"index":{}}}}},"egress":{{"interface":{{"index":{}}}}},"host":{}"#,
        json_str(&protocol_name(r.ip_protocol)),
        json_str(&settings.namespace),
        r.exporter,
        r.src_addr,
        port(flow.src_port),
        format_mac(r.src_mac),
        format_mask(r.src_addr, r.src_mask),
        r.dst_addr,
        port(flow.dst_port),
        format_mac(r.dst_mac),
        format_mask(r.dst_addr, r.dst_mask),
        r.input_if,
        r.output_if,
        json_str(host),
    );
    let flags = tcp_flags(r.tcp_flags);
    if !flags.is_empty() {
        out.push_str(r#","tcp_flags":["#);
        for (i, f) in flags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#""{f}""#);
        }
        out.push(']');
    }
    let next_hop = r.next_hop.map(|ip| ip.to_string()).unwrap_or_default();
    let _ = write!(out, r#","next_hop":{{"ip":"{next_hop}"}}}}"#);
}

/// The `message` JSON of a flow flushed at `flush_ms` (Unix ms).
pub fn message(flow: &AggFlow, flush_ms: u64, settings: &PointSettings) -> String {
    let mut out = String::with_capacity(640);
    write_message(flow, flush_ms, settings, &mut out);
    out
}

/// The logging point of a flow flushed at `flush_ns`.
pub fn point(flow: &AggFlow, flush_ns: i64, settings: &PointSettings) -> Point {
    let r = &flow.record;
    let flush_ms = u64::try_from(flush_ns / 1_000_000).unwrap_or(0);
    let mut p = Point::new(settings.source.clone(), flush_ns);
    for (k, v) in &settings.tags {
        p.set_tag(k.clone(), v.clone());
    }
    let s = |v: String| Value::S(v);
    p.field("message", s(message(flow, flush_ms, settings)))
        .field("status", s("OK".into()))
        .field(
            "bytes",
            Value::I(i64::try_from(r.bytes).unwrap_or(i64::MAX)),
        )
        .field("source_ip", s(r.src_addr.to_string()))
        .field("dest_ip", s(r.dst_addr.to_string()))
        .field("source_port", s(port(flow.src_port)))
        .field("dest_port", s(port(flow.dst_port)))
        .field("device_ip", s(r.exporter.to_string()))
        .field("ip_protocol", s(protocol_name(r.ip_protocol)))
        .field("type", s(r.flow_type.as_str().into()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;
    use crate::decode::{FlowRecord, FlowType};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn sample() -> AggFlow {
        AggFlow {
            record: FlowRecord {
                flow_type: FlowType::Netflow9,
                exporter: ip("127.0.0.1"),
                sampling_rate: 1,
                direction: 0,
                start: 1_700_000_000,
                end: 1_700_000_002,
                bytes: 220,
                packets: 3,
                ether_type: 0x0800,
                ip_protocol: 6,
                src_addr: ip("10.0.0.1"),
                dst_addr: ip("10.200.3.4"),
                src_port: 40000,
                dst_port: 80,
                src_mac: 0x0200_0000_0001,
                dst_mac: 0x0200_0000_0002,
                src_mask: 24,
                dst_mask: 10,
                input_if: 1,
                output_if: 2,
                tos: 0,
                tcp_flags: 0x1b,
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))),
                sequence: 5,
            },
            src_port: None,
            dst_port: Some(80),
        }
    }

    fn settings() -> PointSettings {
        PointSettings {
            source: "netflow".into(),
            namespace: "namespace".into(),
            host: "box".into(),
            tags: vec![("dc".into(), "eu".into())],
        }
    }

    #[test]
    fn the_message_has_datakits_keys_and_formats() {
        let text = message(&sample(), 1_700_000_010_000, &settings());
        let m: Json = serde_json::from_str(&text).expect("json");
        let expected = json!({
            "flush_timestamp": 1_700_000_010_000u64,
            "type": "netflow9",
            "sampling_rate": 1,
            "direction": "ingress",
            "start": 1_700_000_000u64,
            "end": 1_700_000_002u64,
            "bytes": 220,
            "packets": 3,
            "ether_type": "IPv4",
            "ip_protocol": "TCP",
            "device": {"namespace": "namespace"},
            "exporter": {"ip": "127.0.0.1"},
            "source": {"ip": "10.0.0.1", "port": "*", "mac": "02:00:00:00:00:01", "mask": "10.0.0.0/24"},
            "destination": {"ip": "10.200.3.4", "port": "80", "mac": "02:00:00:00:00:02", "mask": "10.192.0.0/10"},
            "ingress": {"interface": {"index": 1}},
            "egress": {"interface": {"index": 2}},
            "host": "box",
            "tcp_flags": ["FIN", "SYN", "PSH", "ACK"],
            "next_hop": {"ip": "10.0.0.254"},
        });
        assert_eq!(m, expected);
        assert!(
            text.starts_with(r#"{"flush_timestamp":1700000010000,"type":"netflow9","#),
            "{text}"
        );
        let mut odd = settings();
        odd.namespace = "a\"b".into();
        odd.host = String::new();
        let mut flow = sample();
        flow.record.tcp_flags = 0;
        flow.record.ether_type = 0;
        flow.record.next_hop = None;
        let m: Json = serde_json::from_str(&message(&flow, 1, &odd)).expect("json");
        assert_eq!(m["device"]["namespace"], "a\"b");
        assert_eq!(m["host"], "unknown");
        assert_eq!(m["next_hop"]["ip"], "");
        assert!(m.get("tcp_flags").is_none() && m.get("ether_type").is_none());
    }

    #[test]
    fn the_point_carries_the_flat_fields_and_input_tags() {
        let p = point(&sample(), 1_700_000_010_000_000_000, &settings());
        assert_eq!(p.name, "netflow");
        assert_eq!(p.get_tag("dc"), Some("eu"));
        assert_eq!(p.get_field("bytes"), Some(&Value::I(220)));
        assert_eq!(p.get_field("source_port"), Some(&Value::S("*".into())));
        assert_eq!(p.get_field("dest_port"), Some(&Value::S("80".into())));
        assert_eq!(p.get_field("ip_protocol"), Some(&Value::S("TCP".into())));
        assert_eq!(
            p.get_field("device_ip"),
            Some(&Value::S("127.0.0.1".into()))
        );
        assert_eq!(p.get_field("status"), Some(&Value::S("OK".into())));
        assert_eq!(p.get_field("type"), Some(&Value::S("netflow9".into())));
        let Some(Value::S(msg)) = p.get_field("message") else {
            panic!("no message");
        };
        let m: Json = serde_json::from_str(msg).expect("json");
        assert_eq!(m["flush_timestamp"], json!(1_700_000_010_000u64));
    }

    #[test]
    fn masks_macs_and_protocols_render_like_datakit() {
        assert_eq!(format_mask(ip("192.168.1.77"), 0), "0.0.0.0/0");
        assert_eq!(format_mask(ip("192.168.1.77"), 32), "192.168.1.77/32");
        assert_eq!(format_mask(ip("2001:db8::1"), 32), "2001:db8::/32");
        assert_eq!(format_mac(0xffff_0011_2233_4455), "00:11:22:33:44:55");
        assert_eq!(protocol_name(17), "UDP");
        assert_eq!(protocol_name(58), "IPv6-ICMP");
        assert_eq!(protocol_name(253), "253");
        assert!(tcp_flags(0).is_empty());
    }
}
