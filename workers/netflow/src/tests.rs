//! Decoding real packets softflowd 1.1.0 exported for `tests/fixtures/flows.pcap` (written by
//! `tests/fixtures/mkpcap.py`: one TCP flow of 3 packets, one UDP flow of 2 and 12 one-packet
//! TCP flows from distinct source ports to 10.0.0.6:443).

use std::net::{IpAddr, Ipv4Addr};

use crate::decode::{Counts, DecodeError, FlowRecord, FlowType, Templates, decode};

const V5: &[u8] = include_bytes!("../tests/fixtures/softflowd_v5.bin");
const V9: &[u8] = include_bytes!("../tests/fixtures/softflowd_v9.bin");
const IPFIX: &[u8] = include_bytes!("../tests/fixtures/softflowd_ipfix.bin");

const EXPORTER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const NOW: u64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn run(t: &mut Templates, bytes: &[u8]) -> (Vec<FlowRecord>, Counts) {
    let mut out = Vec::new();
    let mut counts = Counts::default();
    decode(t, EXPORTER, bytes, NOW, &mut out, &mut counts).expect("decodes");
    (out, counts)
}

fn find<'a>(flows: &'a [FlowRecord], src: &str, sport: u16) -> &'a FlowRecord {
    flows
        .iter()
        .find(|f| f.src_addr == ip(src) && f.src_port == sport)
        .unwrap_or_else(|| panic!("no flow from {src}:{sport} in {flows:?}"))
}

fn check_softflowd_flows(flows: &[FlowRecord], flow_type: FlowType) {
    assert_eq!(flows.len(), 14);
    assert!(
        flows
            .iter()
            .all(|f| f.flow_type == flow_type && f.exporter == EXPORTER)
    );
    let tcp = find(flows, "10.0.0.1", 40000);
    assert_eq!(tcp.dst_addr, ip("10.0.0.2"));
    assert_eq!(tcp.dst_port, 80);
    assert_eq!(tcp.ip_protocol, 6);
    assert_eq!(tcp.packets, 3);
    // 54-byte frames minus the 14-byte Ethernet header, payload 100 on the second.
    assert_eq!(tcp.bytes, 40 + 140 + 40);
    assert_eq!(tcp.tcp_flags, 0x02 | 0x18 | 0x11);
    assert_eq!(tcp.ether_type, 0x0800);
    assert_eq!(tcp.end - tcp.start, 2, "the pcap's flow lasts 2 s");
    let udp = find(flows, "10.0.0.3", 5353);
    assert_eq!(
        (udp.dst_port, udp.ip_protocol, udp.packets, udp.bytes),
        (53, 17, 2, 2 * 58)
    );
    for i in 0..12 {
        let f = find(flows, "10.0.0.5", 50000 + i);
        assert_eq!(
            (f.dst_addr, f.dst_port, f.packets, f.bytes),
            (ip("10.0.0.6"), 443, 1, 50)
        );
    }
}

#[test]
fn decodes_softflowd_netflow_v5() {
    let (flows, counts) = run(&mut Templates::new(), V5);
    check_softflowd_flows(&flows, FlowType::Netflow5);
    assert_eq!(counts.records, 14);
}

#[test]
fn decodes_softflowd_netflow_v9_with_its_templates() {
    let mut t = Templates::new();
    let (flows, counts) = run(&mut t, V9);
    check_softflowd_flows(&flows, FlowType::Netflow9);
    assert_eq!(
        counts.templates, 5,
        "4 data templates and 1 options template"
    );
    assert_eq!(counts.options_skipped, 1);
    assert_eq!(t.len(), 5);
    assert!(
        flows.iter().all(|f| f.sampling_rate == 1),
        "from options data"
    );
}

#[test]
fn decodes_softflowd_ipfix_with_times_from_the_system_init_option() {
    let mut t = Templates::new();
    let (flows, counts) = run(&mut t, IPFIX);
    check_softflowd_flows(&flows, FlowType::Ipfix);
    assert_eq!(counts.templates, 5);
    // Times come from the exporter's boot time (IE 160 in the options data) plus the
    // uptime-relative IEs 21/22; without it they would all be the export time.
    let export_secs = u64::from(u32::from_be_bytes([IPFIX[4], IPFIX[5], IPFIX[6], IPFIX[7]]));
    let tcp = find(&flows, "10.0.0.1", 40000);
    assert_ne!(tcp.start, export_secs, "{tcp:?}");
    assert!(
        tcp.start > 1_600_000_000 && tcp.start < 2_000_000_000,
        "{tcp:?}"
    );
}

fn data_sets_only(packet: &[u8], header: usize, template_set: u16, options_set: u16) -> Vec<u8> {
    let mut out = packet[..header].to_vec();
    let mut o = header;
    while o + 4 <= packet.len() {
        let id = u16::from_be_bytes([packet[o], packet[o + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[o + 2], packet[o + 3]]));
        if id != template_set && id != options_set {
            out.extend_from_slice(&packet[o..o + len]);
        }
        o += len;
    }
    if template_set == 2 {
        let len = u16::try_from(out.len()).expect("fits");
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
    out
}

#[test]
fn data_before_its_template_is_counted_and_skipped_then_decoded_once_learnt() {
    let data = data_sets_only(V9, 20, 0, 1);
    let mut t = Templates::new();
    let (flows, counts) = run(&mut t, &data);
    assert!(flows.is_empty());
    assert_eq!(
        counts.unknown_template, 2,
        "the options data and the flow data"
    );
    run(&mut t, V9);
    let (flows, _) = run(&mut t, &data);
    assert_eq!(flows.len(), 14);
}

#[test]
fn templates_are_kept_per_exporter_and_expire() {
    let mut t = Templates::new();
    run(&mut t, IPFIX);
    let data = data_sets_only(IPFIX, 16, 2, 3);
    let mut out = Vec::new();
    let mut counts = Counts::default();
    decode(&mut t, ip("192.0.2.2"), &data, NOW, &mut out, &mut counts).expect("decodes");
    assert!(out.is_empty(), "another exporter's templates are not used");
    assert_eq!(counts.unknown_template, 2);
    assert_eq!(t.expire(NOW + crate::decode::TEMPLATE_TTL_SECS), 0);
    assert_eq!(t.expire(NOW + crate::decode::TEMPLATE_TTL_SECS + 1), 5);
    assert!(t.is_empty());
    let (flows, _) = run(&mut t, &data);
    assert!(flows.is_empty(), "expired templates are gone");
}

#[test]
fn truncated_and_foreign_packets_are_errors_not_panics() {
    let mut t = Templates::new();
    for packet in [V5, V9, IPFIX] {
        for cut in 0..packet.len() {
            let mut out = Vec::new();
            let _ = decode(
                &mut t,
                EXPORTER,
                &packet[..cut],
                NOW,
                &mut out,
                &mut Counts::default(),
            );
        }
    }
    let mut out = Vec::new();
    let e = decode(
        &mut t,
        EXPORTER,
        b"\x00\x07abc",
        NOW,
        &mut out,
        &mut Counts::default(),
    );
    assert_eq!(e, Err(DecodeError::Version(7)));
    let e = decode(
        &mut t,
        EXPORTER,
        &V5[..30],
        NOW,
        &mut out,
        &mut Counts::default(),
    );
    assert_eq!(e, Err(DecodeError::Truncated("v5 records")));
}

/// A v9 packet with one template of `fields` fields (type 1, length 4 each).
fn v9_template(template_id: u16, fields: u16) -> Vec<u8> {
    let mut p = vec![0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let set_len = 4 + 4 + 4 * fields;
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&set_len.to_be_bytes());
    p.extend_from_slice(&template_id.to_be_bytes());
    p.extend_from_slice(&fields.to_be_bytes());
    for _ in 0..fields {
        p.extend_from_slice(&[0, 1, 0, 4]);
    }
    p
}

#[test]
fn a_hostile_exporter_cannot_grow_the_template_cache_without_bound() {
    use crate::decode::{MAX_FIELDS, MAX_TEMPLATES_PER_DOMAIN};
    let mut t = Templates::new();
    let mut refused = 0;
    for id in 256..(256 + 2 * MAX_TEMPLATES_PER_DOMAIN as u16) {
        refused += run(&mut t, &v9_template(id, 2)).1.templates_refused;
    }
    assert_eq!(t.len(), MAX_TEMPLATES_PER_DOMAIN);
    assert_eq!(refused, MAX_TEMPLATES_PER_DOMAIN as u64);
    let (_, counts) = run(&mut t, &v9_template(256, MAX_FIELDS as u16 + 1));
    assert_eq!(counts.templates_refused, 1, "too many fields");
    // A known template may still be refreshed when the domain is full.
    assert_eq!(run(&mut t, &v9_template(300, 3)).1.templates, 1);
}

#[test]
fn ipfix_variable_length_fields_with_short_and_long_lengths_are_skipped_over() {
    let packet = include_bytes!("../fuzz/seeds/decode/ipfix_varlen.bin");
    let (flows, counts) = run(&mut Templates::new(), packet);
    assert_eq!(counts.templates, 1);
    let pairs: Vec<(IpAddr, IpAddr)> = flows.iter().map(|f| (f.src_addr, f.dst_addr)).collect();
    assert_eq!(
        pairs,
        vec![
            (ip("10.0.0.1"), ip("10.0.0.2")),
            (ip("10.0.0.3"), ip("10.0.0.4"))
        ]
    );
    // The export time stands in for missing flow times.
    assert!(
        flows
            .iter()
            .all(|f| f.start == 1_700_000_000 && f.end == 1_700_000_000)
    );
}

#[test]
fn ipfix_enterprise_fields_are_skipped_and_options_data_sets_the_boot_time() {
    let packet = include_bytes!("../fuzz/seeds/decode/ipfix_enterprise_and_options.bin");
    let (flows, counts) = run(&mut Templates::new(), packet);
    assert_eq!((counts.templates, counts.options_skipped), (2, 1));
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].src_addr, flows[0].packets), (ip("10.1.1.1"), 5));
}

#[test]
fn v5_header_fields_reach_every_record() {
    let packet = include_bytes!("../fuzz/seeds/decode/v5_one_record.bin");
    let (flows, _) = run(&mut Templates::new(), packet);
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(
        (f.sampling_rate, f.sequence),
        (0x64, 42),
        "low 14 bits of the interval"
    );
    // Uptime 5 s at export, first/last at 1 s and 2 s of uptime.
    assert_eq!((f.start, f.end), (1_700_000_000 - 4, 1_700_000_000 - 3));
    assert_eq!(
        (f.src_port, f.dst_port, f.tcp_flags, f.ip_protocol),
        (1234, 443, 0x12, 6)
    );
    assert_eq!(
        (f.src_mask, f.dst_mask, f.input_if, f.output_if),
        (24, 16, 1, 2)
    );
    assert_eq!((f.packets, f.bytes), (10, 1500));
}

#[test]
fn a_datagram_of_tiny_records_yields_at_most_the_per_packet_cap() {
    use crate::decode::MAX_RECORDS_PER_PACKET;
    // Template 256: one 1-byte field (protocol); then 60,000 one-byte records.
    let mut p = vec![0, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0, 0, 0, 12, 1, 0, 0, 1, 0, 4, 0, 1]);
    let n: u16 = 60_000;
    p.extend_from_slice(&[1, 0]);
    p.extend_from_slice(&(n + 4).to_be_bytes());
    p.resize(p.len() + usize::from(n), 6);
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let e = decode(
        &mut Templates::new(),
        EXPORTER,
        &p,
        NOW,
        &mut out,
        &mut counts,
    );
    assert_eq!(e, Err(DecodeError::TooManyRecords));
    assert_eq!(out.len(), MAX_RECORDS_PER_PACKET);
    assert!(out.iter().all(|f| f.ip_protocol == 6));
}
