//! NetFlow v9 throughput: decoding softflowd-shaped packets with warm templates, and decoding
//! plus Datakit's aggregation (rollup, merge) and the flush into points. Throughput is in
//! flow records. sFlow v5: decoding switch-shaped datagrams of flow samples with raw headers,
//! and decoding plus aggregation; throughput in samples.
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dk_input_netflow::aggregate::Aggregator;
use dk_input_netflow::decode::{Counts, Templates, decode};
use dk_input_netflow::payload::{PointSettings, point};

/// softflowd's v9 export: 5 templates, options data and 14 IPv4 flow records.
const V9: &[u8] = include_bytes!("../tests/fixtures/softflowd_v9.bin");

const RECORD: usize = 42;
const TEMPLATE_ID: u16 = 1024;

/// A v9 packet of `n` records of softflowd's IPv4 template 1024 (42 bytes each), with
/// distinct addresses and ports so that aggregation sees many keys.
fn data_packet(n: usize, salt: usize) -> Vec<u8> {
    let mut p = vec![
        0, 9, 0, 0, 0, 0, 0x10, 0, 0x65, 0x53, 0xf1, 0, 0, 0, 0, 1, 0, 0, 0, 0,
    ];
    let set_len = u16::try_from(4 + n * RECORD).expect("fits");
    p.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
    p.extend_from_slice(&set_len.to_be_bytes());
    for i in 0..n {
        let k = salt * n + i;
        p.extend_from_slice(&[10, 0, (k >> 8) as u8, k as u8]); // src 8
        p.extend_from_slice(&[10, 1, 0, (k % 7) as u8]); // dst 12
        p.extend_from_slice(&0x0000_0800u32.to_be_bytes()); // first 22
        p.extend_from_slice(&0x0000_1000u32.to_be_bytes()); // last 21
        p.extend_from_slice(&1500u32.to_be_bytes()); // bytes 1
        p.extend_from_slice(&3u32.to_be_bytes()); // packets 2
        p.extend_from_slice(&1u32.to_be_bytes()); // in if 10
        p.extend_from_slice(&2u32.to_be_bytes()); // out if 14
        p.push(0); // direction 61
        p.push(2); // flow end reason 136
        p.extend_from_slice(&(40000 + (k % 20) as u16).to_be_bytes()); // src port 7
        p.extend_from_slice(&443u16.to_be_bytes()); // dst port 11
        p.push(6); // proto 4
        p.push(0x1b); // flags 6
        p.push(4); // ip version 60
        p.push(0); // tos 5
    }
    p
}

fn warm() -> Templates {
    let mut t = Templates::new();
    let mut out = Vec::new();
    decode(
        &mut t,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        V9,
        1,
        &mut out,
        &mut Counts::default(),
    )
    .expect("template packet");
    t
}

fn bench(c: &mut Criterion) {
    let exporter = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // 30 records a packet (1,284 bytes, as exporters fill a 1,500-byte MTU).
    let packets: Vec<Vec<u8>> = (0..100).map(|s| data_packet(30, s)).collect();
    let records = 30 * packets.len() as u64;
    {
        let mut t = warm();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        decode(&mut t, exporter, &packets[0], 1, &mut out, &mut counts).expect("decodes");
        assert_eq!(out.len(), 30, "{counts:?}");
    }
    let mut g = c.benchmark_group("netflow_v9");
    g.throughput(Throughput::Elements(records));
    g.bench_function("decode", |b| {
        let mut t = warm();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        b.iter(|| {
            for p in &packets {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(p), 1, &mut out, &mut counts);
                black_box(&out);
            }
        });
    });
    let settings = PointSettings {
        source: "netflow".into(),
        namespace: "namespace".into(),
        host: "bench".into(),
        tags: Vec::new(),
    };
    g.bench_function("decode_aggregate_flush", |b| {
        let mut t = warm();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        let mut now = 1;
        b.iter(|| {
            let mut agg = Aggregator::new(now);
            for p in &packets {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(p), now, &mut out, &mut counts);
                for r in out.drain(..) {
                    agg.add(r, now);
                }
            }
            now += 10;
            let flows = agg.flush(now);
            let points: Vec<_> = flows.iter().map(|f| point(f, 0, &settings)).collect();
            black_box(points);
        });
    });
    // Steady state: the same 3,000 keys again and again (records merge into held flows).
    g.bench_function("decode_merge", |b| {
        let mut t = warm();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        let mut agg = Aggregator::new(1);
        b.iter(|| {
            for p in &packets {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(p), 1, &mut out, &mut counts);
                for r in out.drain(..) {
                    agg.add(r, 1);
                }
            }
            black_box(agg.len());
        });
    });
    // Every record a new key (a fresh aggregator each round).
    g.bench_function("decode_aggregate", |b| {
        let mut t = warm();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        b.iter(|| {
            let mut agg = Aggregator::new(1);
            for p in &packets {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(p), 1, &mut out, &mut counts);
                for r in out.drain(..) {
                    agg.add(r, 1);
                }
            }
            black_box(agg.len());
        });
    });
    g.finish();
}

/// An sFlow v5 datagram of `n` flow samples (1 in 256) from agent 192.0.2.10, each with an
/// extended switch record and a 128-byte raw Ethernet/IPv4/TCP header (as switches send),
/// with distinct addresses and ports so that aggregation sees many keys.
fn sflow_datagram(n: usize, salt: usize) -> Vec<u8> {
    let u32s = |out: &mut Vec<u8>, vs: &[u32]| {
        for v in vs {
            out.extend_from_slice(&v.to_be_bytes());
        }
    };
    let mut d = Vec::new();
    u32s(&mut d, &[5, 1, 0xc000_020a, 0, salt as u32, 1000, n as u32]);
    for i in 0..n {
        let k = salt * n + i;
        let mut header = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        header.extend_from_slice(&[0x45, 0, 5, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        header.extend_from_slice(&[10, 0, (k >> 8) as u8, k as u8]);
        header.extend_from_slice(&[10, 1, 0, (k % 7) as u8]);
        header.extend_from_slice(&(40000 + (k % 20) as u16).to_be_bytes());
        header.extend_from_slice(&443u16.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        header.resize(128, b'x');
        let mut sample = Vec::new();
        u32s(&mut sample, &[k as u32, 3, 256, 256 * k as u32, 0, 3, 4, 2]);
        u32s(&mut sample, &[1001, 16, 10, 0, 10, 0]);
        u32s(&mut sample, &[1, 16 + 128, 1, 1518, 4, 128]);
        sample.extend_from_slice(&header);
        u32s(&mut d, &[1, sample.len() as u32]);
        d.extend_from_slice(&sample);
    }
    d
}

fn bench_sflow(c: &mut Criterion) {
    let exporter = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // 7 samples a datagram (1,392 bytes, under a 1,500-byte MTU as agents fill it).
    let datagrams: Vec<Vec<u8>> = (0..400).map(|s| sflow_datagram(7, s)).collect();
    let samples = 7 * datagrams.len() as u64;
    {
        let mut out = Vec::new();
        let mut counts = Counts::default();
        decode(
            &mut Templates::new(),
            exporter,
            &datagrams[0],
            1,
            &mut out,
            &mut counts,
        )
        .expect("decodes");
        assert_eq!(out.len(), 7, "{counts:?}");
        assert_eq!((out[0].dst_port, out[0].bytes), (443, 1518));
    }
    let mut g = c.benchmark_group("sflow_v5");
    g.throughput(Throughput::Elements(samples));
    g.bench_function("decode", |b| {
        let mut t = Templates::new();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        b.iter(|| {
            for d in &datagrams {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(d), 1, &mut out, &mut counts);
                black_box(&out);
            }
        });
    });
    // Steady state: the same 2,800 keys again and again (samples merge into held flows).
    g.bench_function("decode_merge", |b| {
        let mut t = Templates::new();
        let mut out = Vec::with_capacity(64);
        let mut counts = Counts::default();
        let mut agg = Aggregator::new(1);
        b.iter(|| {
            for d in &datagrams {
                out.clear();
                let _ = decode(&mut t, exporter, black_box(d), 1, &mut out, &mut counts);
                for r in out.drain(..) {
                    agg.add(r, 1);
                }
            }
            black_box(agg.len());
        });
    });
    g.finish();
}

criterion_group!(benches, bench, bench_sflow);
criterion_main!(benches);
