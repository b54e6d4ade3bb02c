//! Decoding real sFlow v5 datagrams pmacct 1.7.7's `sfprobe` plugin exported (sampling 1 in 1,
//! agent address 192.0.2.10, sub-agent 7) for `tests/fixtures/flows.pcap` (`mkpcap.py`: one TCP
//! flow of 3 packets, one UDP flow of 2, 12 one-packet TCP flows to 10.0.0.6:443) and for
//! `mkpcap_sflow.py`'s pcap (an 802.1Q-tagged IPv6 UDP packet and an ICMP echo with ToS 0x20),
//! captured with `cap_sfprobe.py`; and hand-made datagrams for what sfprobe does not send.

use std::net::IpAddr;

use crate::aggregate::Aggregator;
use crate::decode::{Counts, DecodeError, FlowRecord, FlowType, Templates, decode};
use crate::sflow::{MAX_RECORDS, MAX_SAMPLES};

const FLOWS_0: &[u8] = include_bytes!("../tests/fixtures/sfprobe_flows_0.bin");
const FLOWS_1: &[u8] = include_bytes!("../tests/fixtures/sfprobe_flows_1.bin");
const COUNTERS: &[u8] = include_bytes!("../tests/fixtures/sfprobe_counters.bin");
const VLAN_V6_ICMP: &[u8] = include_bytes!("../tests/fixtures/sfprobe_vlan_ipv6_icmp.bin");

/// The UDP sender, which sFlow records do not name.
const SENDER: &str = "127.0.0.1";
const NOW: u64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn run(bytes: &[u8]) -> Result<(Vec<FlowRecord>, Counts), DecodeError> {
    let mut out = Vec::new();
    let mut counts = Counts::default();
    decode(
        &mut Templates::new(),
        ip(SENDER),
        bytes,
        NOW,
        &mut out,
        &mut counts,
    )?;
    Ok((out, counts))
}

fn ok(bytes: &[u8]) -> (Vec<FlowRecord>, Counts) {
    run(bytes).unwrap_or_else(|e| panic!("decodes: {e}"))
}

#[test]
fn sfprobe_flow_samples_become_one_packet_flows_of_the_frame_length_from_the_agent() {
    let (mut flows, counts) = ok(FLOWS_0);
    assert_eq!((flows.len(), counts.records), (8, 8));
    let (more, _) = ok(FLOWS_1);
    assert!(more.iter().all(|f| f.sequence == 2));
    assert!(flows.iter().all(|f| f.sequence == 1));
    flows.extend(more);
    assert_eq!(flows.len(), 17, "one flow per sampled packet");
    for f in &flows {
        assert_eq!(f.flow_type, FlowType::Sflow5);
        assert_eq!(f.exporter, ip("192.0.2.10"), "the agent address");
        assert_eq!((f.sampling_rate, f.packets), (1, 1));
        assert_eq!((f.start, f.end), (NOW, NOW), "the receive time");
        assert_eq!(f.ether_type, 0x0800);
        assert_eq!((f.input_if, f.output_if), (0x3fff_ffff, 0x3fff_ffff));
        assert_eq!((f.src_mac, f.dst_mac), (0x0200_0000_0001, 0x0200_0000_0002));
    }
    let tcp: Vec<&FlowRecord> = flows
        .iter()
        .filter(|f| f.src_addr == ip("10.0.0.1"))
        .collect();
    // Frames of 54, 154 and 54 bytes; sfprobe's frame length counts the 4-byte FCS.
    assert_eq!(
        tcp.iter()
            .map(|f| (f.src_port, f.dst_port, f.ip_protocol, f.tcp_flags, f.bytes))
            .collect::<Vec<_>>(),
        vec![
            (40000, 80, 6, 0x02, 58),
            (40000, 80, 6, 0x18, 158),
            (40000, 80, 6, 0x11, 58)
        ]
    );
    let udp: Vec<&FlowRecord> = flows
        .iter()
        .filter(|f| f.src_addr == ip("10.0.0.3"))
        .collect();
    assert_eq!(udp.len(), 2);
    assert!(udp.iter().all(
        |f| (f.dst_addr, f.src_port, f.dst_port, f.ip_protocol, f.bytes)
            == (ip("10.0.0.4"), 5353, 53, 17, 76)
    ));
    let mut https: Vec<u16> = flows
        .iter()
        .filter(|f| f.dst_addr == ip("10.0.0.6") && f.dst_port == 443)
        .map(|f| f.src_port)
        .collect();
    https.sort_unstable();
    assert_eq!(https, (50000..50012).collect::<Vec<u16>>());
}

#[test]
fn sampled_flows_aggregate_into_datakit_flows_with_bytes_summed_and_ports_rolled_up() {
    let mut agg = Aggregator::new(NOW);
    for d in [FLOWS_0, FLOWS_1] {
        for f in ok(d).0 {
            agg.add(f, NOW);
        }
    }
    let flows = agg.flush(NOW + 10);
    let tcp = flows
        .iter()
        .find(|f| f.record.src_addr == ip("10.0.0.1"))
        .expect("the TCP flow");
    assert_eq!(
        (tcp.record.packets, tcp.record.bytes, tcp.record.tcp_flags),
        (3, 58 + 158 + 58, 0x1b)
    );
    assert_eq!((tcp.src_port, tcp.dst_port), (Some(40000), Some(80)));
    let https: Vec<_> = flows
        .iter()
        .filter(|f| f.record.dst_addr == ip("10.0.0.6"))
        .collect();
    // The first ports arrive before the rollup threshold; the rest share one `*` flow.
    let rolled = https
        .iter()
        .find(|f| f.src_port.is_none())
        .expect("a rolled-up flow");
    assert_eq!(rolled.dst_port, Some(443));
    let packets: u64 = https.iter().map(|f| f.record.packets).sum();
    assert_eq!(packets, 12);
}

#[test]
fn counter_samples_are_counted_and_skipped() {
    let (flows, counts) = ok(COUNTERS);
    assert!(flows.is_empty());
    assert_eq!((counts.sflow_counter_samples, counts.records), (1, 0));
}

#[test]
fn a_vlan_tagged_ipv6_packet_and_an_icmp_echo_are_read_from_the_raw_header() {
    let (flows, counts) = ok(VLAN_V6_ICMP);
    assert_eq!(counts.records, 2);
    let v6 = &flows[0];
    assert_eq!(
        (v6.src_addr, v6.dst_addr, v6.ether_type),
        (ip("2001:db8::1"), ip("2001:db8::2"), 0x86dd)
    );
    assert_eq!((v6.src_port, v6.dst_port, v6.ip_protocol), (1234, 53, 17));
    // 86 bytes on the wire with the tag, plus the FCS.
    assert_eq!(v6.bytes, 90);
    let icmp = &flows[1];
    assert_eq!(
        (icmp.src_addr, icmp.dst_addr, icmp.ip_protocol, icmp.tos),
        (ip("10.0.0.7"), ip("10.0.0.8"), 1, 0x20)
    );
    assert_eq!((icmp.src_port, icmp.dst_port, icmp.tcp_flags), (0, 0, 0));
}

fn u32s(out: &mut Vec<u8>, vs: &[u32]) {
    for v in vs {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A datagram from the IPv6 agent 2001:db8::a (sequence 9) carrying `samples`.
fn datagram(samples: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut d = Vec::new();
    u32s(&mut d, &[5, 2]);
    d.extend_from_slice(
        &ip("2001:db8::a")
            .to_string()
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets(),
    );
    u32s(
        &mut d,
        &[0, 9, 1000, u32::try_from(samples.len()).expect("fits")],
    );
    for (format, body) in samples {
        u32s(&mut d, &[*format, u32::try_from(body.len()).expect("fits")]);
        d.extend_from_slice(body);
    }
    d
}

/// An expanded flow sample (1 in 512, input 3, output 4) of `records`.
fn expanded(records: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut s = Vec::new();
    u32s(&mut s, &[77, 0, 1, 512, 9000, 0, 0, 3, 0, 4]);
    u32s(&mut s, &[u32::try_from(records.len()).expect("fits")]);
    for (format, body) in records {
        u32s(&mut s, &[*format, u32::try_from(body.len()).expect("fits")]);
        s.extend_from_slice(body);
    }
    s
}

fn sampled_ipv4() -> Vec<u8> {
    let mut r = Vec::new();
    // length, protocol, src, dst, ports, flags, tos
    u32s(&mut r, &[1500, 6]);
    r.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2]);
    u32s(&mut r, &[33000, 22, 0x10, 0x08]);
    r
}

fn extended_router() -> Vec<u8> {
    let mut r = Vec::new();
    u32s(&mut r, &[1]);
    r.extend_from_slice(&[192, 0, 2, 254]);
    u32s(&mut r, &[24, 16]);
    r
}

#[test]
fn expanded_flow_samples_with_sampled_ipv4_and_router_records_from_an_ipv6_agent() {
    let d = datagram(&[
        (
            3,
            expanded(&[(3, sampled_ipv4()), (1002, extended_router())]),
        ),
        // A foreign enterprise's sample and an expanded counter sample.
        ((9 << 12) | 1, vec![0; 8]),
        (4, vec![0; 12]),
        // A flow sample with only an extended switch record: no packet data.
        (3, expanded(&[(1001, vec![0; 16])])),
    ]);
    let (flows, counts) = ok(&d);
    assert_eq!(flows.len(), 1);
    assert_eq!((counts.sflow_skipped, counts.sflow_counter_samples), (2, 1));
    let f = &flows[0];
    assert_eq!((f.exporter, f.sequence), (ip("2001:db8::a"), 9));
    assert_eq!((f.sampling_rate, f.input_if, f.output_if), (512, 3, 4));
    assert_eq!((f.bytes, f.packets), (1500, 1));
    assert_eq!(
        (f.src_addr, f.dst_addr, f.src_port, f.dst_port),
        (ip("192.0.2.1"), ip("198.51.100.2"), 33000, 22)
    );
    assert_eq!((f.ip_protocol, f.tcp_flags, f.tos), (6, 0x10, 0x08));
    assert_eq!(
        (f.next_hop, f.src_mask, f.dst_mask),
        (Some(ip("192.0.2.254")), 24, 16)
    );
}

#[test]
fn claimed_sample_and_record_counts_beyond_the_bytes_or_the_caps_are_refused() {
    // More samples than the bytes could hold.
    let mut d = datagram(&[]);
    let at = d.len() - 4;
    d[at..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        run(&d).err(),
        Some(DecodeError::Malformed("sFlow sample count"))
    );
    // More samples than the cap, even with the bytes there.
    let many: Vec<(u32, Vec<u8>)> = (0..=MAX_SAMPLES).map(|_| (2, Vec::new())).collect();
    assert_eq!(
        run(&datagram(&many)).err(),
        Some(DecodeError::Malformed("sFlow sample count"))
    );
    let mut fine = many;
    fine.pop();
    assert_eq!(
        ok(&datagram(&fine)).1.sflow_counter_samples,
        u64::from(MAX_SAMPLES)
    );
    // More records in a sample than the cap.
    let records: Vec<(u32, Vec<u8>)> = (0..=MAX_RECORDS).map(|_| (1001, Vec::new())).collect();
    assert_eq!(
        run(&datagram(&[(3, expanded(&records))])).err(),
        Some(DecodeError::Malformed("sFlow record count"))
    );
    // A record longer than its sample.
    let mut s = expanded(&[(3, sampled_ipv4())]);
    let at = s.len() - sampled_ipv4().len() - 4;
    s[at..at + 4].copy_from_slice(&10_000u32.to_be_bytes());
    assert_eq!(
        run(&datagram(&[(3, s)])).err(),
        Some(DecodeError::Truncated("sFlow record"))
    );
}

#[test]
fn every_truncation_of_real_datagrams_is_an_error_or_fewer_flows_never_a_panic() {
    for d in [FLOWS_0, FLOWS_1, COUNTERS, VLAN_V6_ICMP] {
        let full = ok(d).0.len();
        for cut in 0..d.len() {
            match run(&d[..cut]) {
                Ok((flows, _)) => assert!(flows.len() <= full),
                Err(DecodeError::Truncated(_) | DecodeError::Malformed(_)) => {}
                Err(e) => panic!("cut at {cut}: {e}"),
            }
        }
    }
    assert_eq!(run(b"\0\0\0\x04").err(), Some(DecodeError::Version(0)));
}

#[test]
fn mpls_labels_qinq_tags_fragments_and_ipv6_extension_headers_are_walked() {
    let seed = |name: &str| {
        let path = format!("{}/fuzz/seeds/sflow/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let (f, _) = ok(&seed("mpls_tcp.bin"));
    assert_eq!(
        (
            f[0].ether_type,
            f[0].src_addr,
            f[0].dst_port,
            f[0].tcp_flags,
            f[0].tos
        ),
        (0x0800, ip("10.1.0.1"), 443, 0x12, 0x10)
    );
    assert_eq!(
        (f[0].next_hop, f[0].src_mask, f[0].sampling_rate),
        (Some(ip("10.1.0.254")), 24, 64)
    );
    let (f, _) = ok(&seed("qinq_ipv4_fragment.bin"));
    assert_eq!(
        (
            f[0].dst_addr,
            f[0].ip_protocol,
            f[0].src_port,
            f[0].dst_port
        ),
        (ip("10.1.0.2"), 17, 0, 0),
        "a later fragment has no ports"
    );
    let (f, _) = ok(&seed("ipv6_fragment_header_tcp.bin"));
    assert_eq!(
        (f[0].exporter, f[0].ip_protocol, f[0].src_port, f[0].tos),
        (ip("2001:db8::1"), 6, 40000, 0xa0)
    );
    let (f, _) = ok(&seed("raw_ipv4_header.bin"));
    assert_eq!((f[0].dst_port, f[0].bytes), (443, 40));
    let (f, _) = ok(&seed("sampled_ethernet_ipv4_ipv6.bin"));
    assert_eq!(
        (f[0].src_mac, f[0].bytes, f[0].src_port, f[0].ether_type),
        (0x0200_0000_0001, 1500, 1, 0x0800)
    );
    assert_eq!((f[1].dst_addr, f[1].dst_port), (ip("2001:db8::2"), 5353));
    let (f, counts) = ok(&seed("gateway_and_switch_only.bin"));
    assert!(f.is_empty());
    assert_eq!(counts.sflow_skipped, 1);
}
