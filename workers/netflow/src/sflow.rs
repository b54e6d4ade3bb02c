//! Pure sFlow v5 decoding: bytes of one datagram to the [`FlowRecord`]s the aggregator takes.
//!
//! Only flow samples (enterprise 0, formats 1 and 3) make records, one record per sample, as
//! Datakit's decoder (goflow2) does: the exporter is the datagram's *agent address*, the
//! sampling rate comes from the sample, `bytes` is the sampled frame's length and `packets` is
//! 1 (nothing is multiplied by the sampling rate), start and end are the receive time.
//! Addresses, ports, protocol, ToS and TCP flags come from the raw packet header record
//! (Ethernet with 802.1Q/802.1ad tags or MPLS labels, or a bare IPv4/IPv6 header), or from the
//! sampled Ethernet/IPv4/IPv6 records; the extended router record gives the next hop and the
//! prefix lengths. Counter samples, other formats and flow samples without any packet data are
//! counted and skipped.
//!
//! Nothing is allocated from a length or count the datagram claims: samples and records are
//! walked in place, a count larger than the bytes could hold is an error, and at most
//! [`MAX_SAMPLES`] samples of at most [`MAX_RECORDS`] records each are read.

use std::net::IpAddr;

use crate::decode::{
    Counts, Cursor, DecodeError, FlowRecord, FlowType, MAX_RECORDS_PER_PACKET, ipv4, ipv6,
};

/// Samples one datagram may carry (a full 64 KiB datagram of the smallest flow samples holds
/// about 1,600; agents send a few dozen).
pub const MAX_SAMPLES: u32 = 1024;
/// Records one flow sample may carry (agents send 2 to 6).
pub const MAX_RECORDS: u32 = 64;

/// Ethernet types.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_MPLS: u16 = 0x8847;

/// Decodes one sFlow v5 datagram (whose first four bytes, the version, are already read from
/// `c`) received at `now` (Unix seconds), appending one record per flow sample to `out`.
/// Records decoded before an error in a later sample are kept.
///
/// # Errors
/// Why the datagram, or the rest of it, could not be read.
pub(crate) fn datagram(
    mut c: Cursor<'_>,
    now: u64,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let agent = match c.u32("sFlow header")? {
        1 => ipv4(c.take(4, "sFlow agent address")?),
        2 => ipv6(c.take(16, "sFlow agent address")?),
        _ => return Err(DecodeError::Malformed("sFlow agent address type")),
    }
    .ok_or(DecodeError::Malformed("sFlow agent address"))?;
    let _sub_agent = c.u32("sFlow header")?;
    let sequence = c.u32("sFlow header")?;
    let _uptime = c.u32("sFlow header")?;
    let samples = c.u32("sFlow header")?;
    // Every sample takes at least its 8-byte header.
    if samples > MAX_SAMPLES || usize::try_from(samples).unwrap_or(usize::MAX) > c.b.len() / 8 {
        return Err(DecodeError::Malformed("sFlow sample count"));
    }
    let limit = out.len() + MAX_RECORDS_PER_PACKET;
    let at = Sample {
        agent,
        sequence,
        now,
    };
    for _ in 0..samples {
        let format = c.u32("sFlow sample header")?;
        let len = usize::try_from(c.u32("sFlow sample header")?).unwrap_or(usize::MAX);
        let body = Cursor {
            b: c.take(len, "sFlow sample")?,
        };
        match format {
            1 | 3 => {
                if out.len() >= limit {
                    return Err(DecodeError::TooManyRecords);
                }
                match flow_sample(body, format == 3, &at)? {
                    Some(f) => {
                        out.push(f);
                        counts.records += 1;
                    }
                    None => counts.sflow_skipped += 1,
                }
            }
            2 | 4 => counts.sflow_counter_samples += 1,
            // Other enterprises and formats.
            _ => counts.sflow_skipped += 1,
        }
    }
    Ok(())
}

/// What the samples of one datagram share.
struct Sample {
    agent: IpAddr,
    sequence: u32,
    now: u64,
}

/// The interface index of a compact flow sample's input/output (the top two bits are its
/// format; 0x3fffffff is "unknown").
fn compact_if(v: u32) -> u32 {
    v & 0x3fff_ffff
}

fn flow_sample(
    mut c: Cursor<'_>,
    expanded: bool,
    at: &Sample,
) -> Result<Option<FlowRecord>, DecodeError> {
    let mut f = FlowRecord::empty(FlowType::Sflow5, at.agent);
    f.sequence = at.sequence;
    f.start = at.now;
    f.end = at.now;
    f.packets = 1;
    let _sample_sequence = c.u32("sFlow flow sample")?;
    if expanded {
        let _source_type = c.u32("sFlow flow sample")?;
        let _source_index = c.u32("sFlow flow sample")?;
    } else {
        let _source = c.u32("sFlow flow sample")?;
    }
    f.sampling_rate = u64::from(c.u32("sFlow flow sample")?);
    let _pool = c.u32("sFlow flow sample")?;
    let _drops = c.u32("sFlow flow sample")?;
    if expanded {
        let _in_format = c.u32("sFlow flow sample")?;
        f.input_if = c.u32("sFlow flow sample")?;
        let _out_format = c.u32("sFlow flow sample")?;
        f.output_if = c.u32("sFlow flow sample")?;
    } else {
        f.input_if = compact_if(c.u32("sFlow flow sample")?);
        f.output_if = compact_if(c.u32("sFlow flow sample")?);
    }
    let records = c.u32("sFlow flow sample")?;
    if records > MAX_RECORDS || usize::try_from(records).unwrap_or(usize::MAX) > c.b.len() / 8 {
        return Err(DecodeError::Malformed("sFlow record count"));
    }
    let mut packet_data = false;
    for _ in 0..records {
        let format = c.u32("sFlow record header")?;
        let len = usize::try_from(c.u32("sFlow record header")?).unwrap_or(usize::MAX);
        let body = Cursor {
            b: c.take(len, "sFlow record")?,
        };
        packet_data |= flow_record(&mut f, format, body)?;
    }
    Ok(packet_data.then_some(f))
}

/// Applies one flow record; whether it described the sampled packet.
fn flow_record(f: &mut FlowRecord, format: u32, mut c: Cursor<'_>) -> Result<bool, DecodeError> {
    match format {
        // Raw packet header.
        1 => {
            let protocol = c.u32("sFlow raw header")?;
            f.bytes = u64::from(c.u32("sFlow raw header")?);
            let _stripped = c.u32("sFlow raw header")?;
            let len = usize::try_from(c.u32("sFlow raw header")?).unwrap_or(usize::MAX);
            let header = c.take(len, "sFlow raw header")?;
            match protocol {
                1 => ethernet(f, header),
                11 => ip(f, ETH_IPV4, header),
                12 => ip(f, ETH_IPV6, header),
                _ => {}
            }
            Ok(true)
        }
        // Sampled Ethernet frame.
        2 => {
            f.bytes = u64::from(c.u32("sFlow sampled Ethernet")?);
            f.src_mac = mac(c.take(8, "sFlow sampled Ethernet")?);
            f.dst_mac = mac(c.take(8, "sFlow sampled Ethernet")?);
            let etype = c.u32("sFlow sampled Ethernet")?;
            if f.ether_type == 0 {
                f.ether_type = u16::try_from(etype).unwrap_or(0);
            }
            Ok(true)
        }
        // Sampled IPv4 / IPv6.
        3 | 4 => {
            let v6 = format == 4;
            f.bytes = u64::from(c.u32("sFlow sampled IP")?);
            f.ip_protocol = low_u8(c.u32("sFlow sampled IP")?);
            let addr_len = if v6 { 16 } else { 4 };
            let src = c.take(addr_len, "sFlow sampled IP")?;
            let dst = c.take(addr_len, "sFlow sampled IP")?;
            let (src, dst) = if v6 {
                (ipv6(src), ipv6(dst))
            } else {
                (ipv4(src), ipv4(dst))
            };
            f.src_addr = src.unwrap_or(f.src_addr);
            f.dst_addr = dst.unwrap_or(f.dst_addr);
            f.src_port = low_u16(c.u32("sFlow sampled IP")?);
            f.dst_port = low_u16(c.u32("sFlow sampled IP")?);
            f.tcp_flags = low_u8(c.u32("sFlow sampled IP")?);
            f.tos = low_u8(c.u32("sFlow sampled IP")?);
            f.ether_type = if v6 { ETH_IPV6 } else { ETH_IPV4 };
            Ok(true)
        }
        // Extended router: next hop and prefix lengths.
        1002 => {
            f.next_hop = match c.u32("sFlow extended router")? {
                1 => ipv4(c.take(4, "sFlow extended router")?),
                2 => ipv6(c.take(16, "sFlow extended router")?),
                _ => return Err(DecodeError::Malformed("sFlow next hop address type")),
            };
            f.src_mask = low_u8(c.u32("sFlow extended router")?);
            f.dst_mask = low_u8(c.u32("sFlow extended router")?);
            Ok(false)
        }
        // Extended switch (VLANs), gateway (BGP) and the rest: not part of a netflow point.
        _ => Ok(false),
    }
}

fn low_u8(v: u32) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(0)
}

fn low_u16(v: u32) -> u16 {
    u16::try_from(v & 0xffff).unwrap_or(0)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A MAC address (its first 6 bytes) as the low 48 bits.
fn mac(b: &[u8]) -> u64 {
    b.iter()
        .take(6)
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// An Ethernet frame's header, as far as the sampled bytes go: MACs, tags, then IP.
fn ethernet(f: &mut FlowRecord, h: &[u8]) {
    if h.len() < 14 {
        return;
    }
    f.dst_mac = mac(&h[0..6]);
    f.src_mac = mac(&h[6..12]);
    let mut at = 12;
    let mut etype = be16(h, at).unwrap_or(0);
    at += 2;
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if etype != ETH_VLAN && etype != ETH_QINQ {
            break;
        }
        let Some(inner) = be16(h, at + 2) else {
            return;
        };
        etype = inner;
        at += 4;
    }
    if etype == ETH_MPLS {
        // Labels until the bottom of the stack, then the IP version decides.
        for _ in 0..8 {
            let Some(label) = h.get(at..at + 4) else {
                return;
            };
            at += 4;
            if label[2] & 1 == 1 {
                break;
            }
        }
        etype = match h.get(at).map(|b| b >> 4) {
            Some(4) => ETH_IPV4,
            Some(6) => ETH_IPV6,
            _ => 0,
        };
    }
    f.ether_type = etype;
    if let Some(rest) = h.get(at..) {
        ip(f, etype, rest);
    }
}

/// An IPv4 or IPv6 header and the transport header after it, as far as the bytes go.
fn ip(f: &mut FlowRecord, etype: u16, h: &[u8]) {
    let (proto, l4) = match etype {
        ETH_IPV4 => {
            if h.len() < 20 {
                return;
            }
            f.ether_type = ETH_IPV4;
            f.tos = h[1];
            f.ip_protocol = h[9];
            f.src_addr = ipv4(&h[12..16]).unwrap_or(f.src_addr);
            f.dst_addr = ipv4(&h[16..20]).unwrap_or(f.dst_addr);
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let fragment_offset = be16(h, 6).unwrap_or(0) & 0x1fff;
            if fragment_offset != 0 || ihl < 20 {
                // Later fragments carry no transport header.
                return;
            }
            (h[9], h.get(ihl..))
        }
        ETH_IPV6 => {
            if h.len() < 40 {
                return;
            }
            f.ether_type = ETH_IPV6;
            f.tos = (h[0] << 4) | (h[1] >> 4);
            f.src_addr = ipv6(&h[8..24]).unwrap_or(f.src_addr);
            f.dst_addr = ipv6(&h[24..40]).unwrap_or(f.dst_addr);
            let (proto, at) = ipv6_upper(h, h[6], 40);
            f.ip_protocol = proto;
            (proto, at.and_then(|at| h.get(at..)))
        }
        _ => return,
    };
    let Some(l4) = l4 else {
        return;
    };
    if matches!(proto, 6 | 17 | 132)
        && let (Some(sp), Some(dp)) = (be16(l4, 0), be16(l4, 2))
    {
        f.src_port = sp;
        f.dst_port = dp;
    }
    if proto == 6
        && let Some(&flags) = l4.get(13)
    {
        f.tcp_flags = flags;
    }
}

/// Walks IPv6 extension headers (hop-by-hop, routing, fragment, destination options) to the
/// upper-layer protocol; the offset of its header, unless a later fragment or short bytes.
fn ipv6_upper(h: &[u8], mut next: u8, mut at: usize) -> (u8, Option<usize>) {
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (h.get(at), h.get(at + 1)) else {
                    return (next, None);
                };
                next = n;
                at += (usize::from(len) + 1) * 8;
            }
            44 => {
                let (Some(&n), Some(off)) = (h.get(at), be16(h, at + 2)) else {
                    return (next, None);
                };
                next = n;
                at += 8;
                if off & 0xfff8 != 0 {
                    return (next, None);
                }
            }
            _ => return (next, Some(at)),
        }
    }
    (next, None)
}
