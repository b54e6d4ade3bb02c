//! Pure NetFlow v5, v9 and IPFIX decoding: bytes of one datagram to typed [`FlowRecord`]s.
//!
//! v9 (RFC 3954) and IPFIX (RFC 7011) data sets are read with templates the exporter sent
//! before; the [`Templates`] cache keys them by exporter address, version, source id /
//! observation domain and template id, bounds how many it holds (per exporter domain and in
//! all) and how many fields a template may have, and forgets templates not refreshed within
//! [`TEMPLATE_TTL_SECS`]. Options templates and their data are skipped. Data sets whose
//! template is unknown are counted and skipped (as goflow2 drops them).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How long a template lives without being sent again (exporters resend every few minutes;
/// softflowd every 16 packets).
pub const TEMPLATE_TTL_SECS: u64 = 30 * 60;
/// Templates kept per exporter, version and domain.
pub const MAX_TEMPLATES_PER_DOMAIN: usize = 256;
/// Templates kept in all.
pub const MAX_TEMPLATES: usize = 16 * 1024;
/// Fields one template may have.
pub const MAX_FIELDS: usize = 128;
/// Records one datagram may yield (a 64 KiB datagram of a 1-byte template would otherwise
/// yield 65,000; exporters send at most a few hundred).
pub const MAX_RECORDS_PER_PACKET: usize = 2048;

/// The kind of flow export a record came from (Datakit's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowType {
    /// NetFlow v5.
    Netflow5,
    /// NetFlow v9.
    Netflow9,
    /// IPFIX (NetFlow v10).
    Ipfix,
    /// sFlow v5 flow samples.
    Sflow5,
}

impl FlowType {
    /// Datakit's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowType::Netflow5 => "netflow5",
            FlowType::Netflow9 => "netflow9",
            FlowType::Ipfix => "ipfix",
            FlowType::Sflow5 => "sflow5",
        }
    }
}

/// One decoded flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// What exported it.
    pub flow_type: FlowType,
    /// The exporter (the datagram's sender).
    pub exporter: IpAddr,
    /// 1 in N packets sampled (0 when unknown).
    pub sampling_rate: u64,
    /// Raw direction (IE 61): 1 is egress.
    pub direction: u8,
    /// Flow start, Unix seconds.
    pub start: u64,
    /// Flow end, Unix seconds.
    pub end: u64,
    /// Bytes.
    pub bytes: u64,
    /// Packets.
    pub packets: u64,
    /// 0x0800 IPv4, 0x86dd IPv6, 0 unknown.
    pub ether_type: u16,
    /// IANA protocol number.
    pub ip_protocol: u8,
    /// Source address.
    pub src_addr: IpAddr,
    /// Destination address.
    pub dst_addr: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Source MAC (low 48 bits).
    pub src_mac: u64,
    /// Destination MAC (low 48 bits).
    pub dst_mac: u64,
    /// Source prefix length.
    pub src_mask: u8,
    /// Destination prefix length.
    pub dst_mask: u8,
    /// Input interface index.
    pub input_if: u32,
    /// Output interface index.
    pub output_if: u32,
    /// Type of service.
    pub tos: u8,
    /// TCP flags OR-ed over the flow.
    pub tcp_flags: u8,
    /// Next hop, when the exporter sent one.
    pub next_hop: Option<IpAddr>,
    /// The export packet's sequence number.
    pub sequence: u32,
}

impl FlowRecord {
    pub(crate) fn empty(flow_type: FlowType, exporter: IpAddr) -> FlowRecord {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        FlowRecord {
            flow_type,
            exporter,
            sampling_rate: 0,
            direction: 0,
            start: 0,
            end: 0,
            bytes: 0,
            packets: 0,
            ether_type: 0,
            ip_protocol: 0,
            src_addr: any,
            dst_addr: any,
            src_port: 0,
            dst_port: 0,
            src_mac: 0,
            dst_mac: 0,
            src_mask: 0,
            dst_mask: 0,
            input_if: 0,
            output_if: 0,
            tos: 0,
            tcp_flags: 0,
            next_hop: None,
            sequence: 0,
        }
    }
}

/// Why a datagram (or part of it) was not decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header says.
    #[error("the packet is truncated ({0})")]
    Truncated(&'static str),
    /// Not NetFlow version 5, 9 or 10, nor sFlow version 5.
    #[error("version {0} is not NetFlow v5, v9, IPFIX nor sFlow v5")]
    Version(u16),
    /// A set or template is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// More than [`MAX_RECORDS_PER_PACKET`] records (the first ones are kept).
    #[error("more than {MAX_RECORDS_PER_PACKET} records in one packet")]
    TooManyRecords,
}

/// What one datagram held besides its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records decoded.
    pub records: u64,
    /// Templates learnt or refreshed.
    pub templates: u64,
    /// Data sets skipped because their template is unknown.
    pub unknown_template: u64,
    /// Templates refused (over the caps or with too many fields).
    pub templates_refused: u64,
    /// Options templates and options data skipped.
    pub options_skipped: u64,
    /// sFlow counter samples skipped.
    pub sflow_counter_samples: u64,
    /// sFlow samples of other formats, and flow samples without packet data, skipped.
    pub sflow_skipped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DomainKey {
    exporter: IpAddr,
    version: u16,
    domain: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    /// The information element id (0 for enterprise-specific ones, which are skipped).
    id: u16,
    /// Bytes, or [`VARIABLE`].
    len: u16,
}

const VARIABLE: u16 = 0xffff;

#[derive(Clone, Debug)]
enum Template {
    Data(Vec<Field>),
    Options(Vec<Field>),
}

impl Template {
    fn fields(&self) -> &[Field] {
        match self {
            Template::Data(f) | Template::Options(f) => f,
        }
    }
}

#[derive(Debug, Default)]
struct Domain {
    templates: HashMap<u16, (Template, u64)>,
    /// From options data: the exporter's boot time in Unix ms (IE 160).
    init_ms: Option<u64>,
    /// From options data: the sampling interval (IE 34 or 305).
    sampling: u64,
}

/// The templates of every exporter (see the module docs).
#[derive(Debug, Default)]
pub struct Templates {
    domains: HashMap<DomainKey, Domain>,
    total: usize,
}

impl Templates {
    /// An empty cache.
    pub fn new() -> Templates {
        Templates::default()
    }

    /// How many templates are held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Forgets templates not refreshed since `now - TEMPLATE_TTL_SECS`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.total;
        let cutoff = now.saturating_sub(TEMPLATE_TTL_SECS);
        self.domains.retain(|_, d| {
            d.templates.retain(|_, (_, seen)| *seen >= cutoff);
            !d.templates.is_empty()
        });
        self.total = self.domains.values().map(|d| d.templates.len()).sum();
        before - self.total
    }

    fn insert(&mut self, key: DomainKey, id: u16, t: Template, now: u64) -> bool {
        if t.fields().len() > MAX_FIELDS {
            return false;
        }
        let full = self.total >= MAX_TEMPLATES;
        let domain = self.domains.entry(key).or_default();
        if let Some(slot) = domain.templates.get_mut(&id) {
            *slot = (t, now);
            return true;
        }
        if full || domain.templates.len() >= MAX_TEMPLATES_PER_DOMAIN {
            if domain.templates.is_empty() {
                self.domains.remove(&key);
            }
            return false;
        }
        domain.templates.insert(id, (t, now));
        self.total += 1;
        true
    }
}

/// A bounds-checked big-endian reader.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// An unsigned big-endian number of up to 8 bytes (longer values keep their low 8 bytes).
fn uint(b: &[u8]) -> u64 {
    let b = &b[b.len().saturating_sub(8)..];
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

pub(crate) fn ipv4(b: &[u8]) -> Option<IpAddr> {
    <[u8; 4]>::try_from(b)
        .ok()
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
}

pub(crate) fn ipv6(b: &[u8]) -> Option<IpAddr> {
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn low_u8(v: u64) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(0)
}

fn low_u16(v: u64) -> u16 {
    u16::try_from(v & 0xffff).unwrap_or(0)
}

fn low_u32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// Decodes one datagram from `exporter` received at `now` (Unix seconds), appending its
/// records to `out`: NetFlow v5, v9, IPFIX, or sFlow v5 (whose records name the agent address
/// the datagram carries as their exporter, see [`crate::sflow`]). Records decoded before an
/// error in a later set or sample are kept.
///
/// # Errors
/// Why the datagram, or the rest of it, could not be read.
pub fn decode(
    templates: &mut Templates,
    exporter: IpAddr,
    bytes: &[u8],
    now: u64,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let mut c = Cursor { b: bytes };
    match c.u16("version")? {
        5 => v5(exporter, c, out, counts),
        9 => v9(templates, exporter, c, now, out, counts),
        10 => ipfix(templates, exporter, c, now, out, counts),
        // sFlow's version is a 32-bit 5.
        0 if c.u16("version")? == 5 => crate::sflow::datagram(c, now, out, counts),
        v => Err(DecodeError::Version(v)),
    }
}

const V5_RECORD: usize = 48;

fn v5(
    exporter: IpAddr,
    mut c: Cursor<'_>,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let count = usize::from(c.u16("v5 header")?);
    let uptime = u64::from(c.u32("v5 header")?);
    let secs = u64::from(c.u32("v5 header")?);
    let _nsecs = c.u32("v5 header")?;
    let sequence = c.u32("v5 header")?;
    let _engine = c.u16("v5 header")?;
    let sampling = u64::from(c.u16("v5 header")? & 0x3fff);
    if count > 30 {
        return Err(DecodeError::Malformed("v5 header: more than 30 records"));
    }
    let body = c.take(count * V5_RECORD, "v5 records")?;
    let at = |t: u32| since(secs, uptime, u64::from(t));
    for r in body.chunks_exact(V5_RECORD) {
        let mut f = FlowRecord::empty(FlowType::Netflow5, exporter);
        f.sampling_rate = sampling;
        f.sequence = sequence;
        f.ether_type = 0x0800;
        f.src_addr = ipv4(&r[0..4]).unwrap_or(f.src_addr);
        f.dst_addr = ipv4(&r[4..8]).unwrap_or(f.dst_addr);
        f.next_hop = ipv4(&r[8..12]);
        f.input_if = low_u32(uint(&r[12..14]));
        f.output_if = low_u32(uint(&r[14..16]));
        f.packets = uint(&r[16..20]);
        f.bytes = uint(&r[20..24]);
        f.start = at(low_u32(uint(&r[24..28])));
        f.end = at(low_u32(uint(&r[28..32])));
        f.src_port = low_u16(uint(&r[32..34]));
        f.dst_port = low_u16(uint(&r[34..36]));
        f.tcp_flags = r[37];
        f.ip_protocol = r[38];
        f.tos = r[39];
        f.src_mask = r[44];
        f.dst_mask = r[45];
        out.push(f);
        counts.records += 1;
    }
    Ok(())
}

/// Unix seconds of the uptime `t_ms` given the export time and uptime at export. Uptimes are
/// 32-bit milliseconds that wrap (after 49 days, or at once for softflowd reading a pcap):
/// the difference is taken modulo 2^32, as exporters and goflow2 do.
fn since(secs: u64, uptime_ms: u64, t_ms: u64) -> u64 {
    let ago = uptime_ms.wrapping_sub(t_ms) & 0xffff_ffff;
    secs.saturating_sub(ago / 1000)
}

/// The export header's times, for the uptime-relative fields 21 and 22.
#[derive(Clone, Copy)]
struct Clock {
    /// Export time, Unix seconds.
    secs: u64,
    /// The exporter's uptime at export in ms (v9), `None` for IPFIX.
    uptime_ms: Option<u64>,
    /// The exporter's boot time in Unix ms, from IPFIX options data (IE 160).
    init_ms: Option<u64>,
}

impl Clock {
    fn relative(self, t_ms: u64) -> u64 {
        match (self.uptime_ms, self.init_ms) {
            (Some(up), _) => since(self.secs, up, t_ms),
            (None, Some(init)) => init.saturating_add(t_ms) / 1000,
            // IPFIX without systemInitTimeMilliseconds: the export time stands in.
            (None, None) => self.secs,
        }
    }
}

fn v9(
    templates: &mut Templates,
    exporter: IpAddr,
    mut c: Cursor<'_>,
    now: u64,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let _count = c.u16("v9 header")?;
    let uptime = u64::from(c.u32("v9 header")?);
    let secs = u64::from(c.u32("v9 header")?);
    let sequence = c.u32("v9 header")?;
    let domain = c.u32("v9 header")?;
    let key = DomainKey {
        exporter,
        version: 9,
        domain,
    };
    let clock = Clock {
        secs,
        uptime_ms: Some(uptime),
        init_ms: None,
    };
    sets(
        templates,
        key,
        c,
        now,
        clock,
        sequence,
        FlowType::Netflow9,
        out,
        counts,
    )
}

fn ipfix(
    templates: &mut Templates,
    exporter: IpAddr,
    mut c: Cursor<'_>,
    now: u64,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let length = usize::from(c.u16("IPFIX header")?);
    let secs = u64::from(c.u32("IPFIX header")?);
    let sequence = c.u32("IPFIX header")?;
    let domain = c.u32("IPFIX header")?;
    // The message length covers the 16-byte header; anything after it is ignored.
    let body_len = length
        .checked_sub(16)
        .ok_or(DecodeError::Malformed("IPFIX header: length below 16"))?;
    let body = c.take(body_len, "IPFIX message")?;
    let key = DomainKey {
        exporter,
        version: 10,
        domain,
    };
    let clock = Clock {
        secs,
        uptime_ms: None,
        init_ms: None,
    };
    sets(
        templates,
        key,
        Cursor { b: body },
        now,
        clock,
        sequence,
        FlowType::Ipfix,
        out,
        counts,
    )
}

#[allow(clippy::too_many_arguments)]
fn sets(
    templates: &mut Templates,
    key: DomainKey,
    mut c: Cursor<'_>,
    now: u64,
    clock: Clock,
    sequence: u32,
    flow_type: FlowType,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let limit = out.len() + MAX_RECORDS_PER_PACKET;
    let ipfix = flow_type == FlowType::Ipfix;
    let (template_set, options_set) = if ipfix { (2, 3) } else { (0, 1) };
    // Padding shorter than a set header may end a v9 packet.
    while c.b.len() >= 4 {
        let id = c.u16("set header")?;
        let len = usize::from(c.u16("set header")?);
        let body_len = len
            .checked_sub(4)
            .ok_or(DecodeError::Malformed("set: length below 4"))?;
        let body = Cursor {
            b: c.take(body_len, "set")?,
        };
        if id == template_set {
            template_records(templates, key, body, now, ipfix, false, counts)?;
        } else if id == options_set {
            template_records(templates, key, body, now, ipfix, true, counts)?;
        } else if id >= 256 {
            let Some(Domain {
                templates: ts,
                init_ms,
                sampling,
            }) = templates.domains.get_mut(&key)
            else {
                counts.unknown_template += 1;
                continue;
            };
            match ts.get(&id) {
                Some((Template::Data(fields), _)) => {
                    let clock = Clock {
                        init_ms: *init_ms,
                        ..clock
                    };
                    let at = Record {
                        limit,
                        clock,
                        sequence,
                        sampling: *sampling,
                        flow_type,
                        exporter: key.exporter,
                    };
                    data_records(fields, body, &at, out, counts)?;
                }
                Some((Template::Options(fields), _)) => {
                    options_records(fields, body, init_ms, sampling)?;
                    counts.options_skipped += 1;
                }
                None => counts.unknown_template += 1,
            }
        }
        // Set ids 4-255 are reserved: skipped.
    }
    Ok(())
}

fn template_records(
    templates: &mut Templates,
    key: DomainKey,
    mut c: Cursor<'_>,
    now: u64,
    ipfix: bool,
    options: bool,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    // Records continue while a template header fits (the rest is padding).
    while c.b.len() >= 4 {
        let id = c.u16("template")?;
        let (field_count, scope_count) = if options && ipfix {
            let n = c.u16("options template")?;
            (n, c.u16("options template")?)
        } else if options {
            // v9: scope and option lengths in bytes, 4 bytes per field.
            let scope = c.u16("options template")? / 4;
            let opts = c.u16("options template")? / 4;
            (scope.saturating_add(opts), scope)
        } else {
            (c.u16("template")?, 0)
        };
        if id < 256 {
            if id == 0 && field_count == 0 {
                // Padding.
                break;
            }
            return Err(DecodeError::Malformed("template id below 256"));
        }
        if options && ipfix && scope_count > field_count {
            return Err(DecodeError::Malformed("options template scope count"));
        }
        let n = usize::from(field_count);
        let mut fields = Vec::with_capacity(n.min(MAX_FIELDS));
        for _ in 0..n {
            let raw = c.u16("template field")?;
            let len = c.u16("template field")?;
            let mut id = raw;
            if ipfix && raw & 0x8000 != 0 {
                let _enterprise = c.u32("template field")?;
                id = 0;
            }
            if !ipfix && len == VARIABLE {
                return Err(DecodeError::Malformed("v9 field length 65535"));
            }
            if fields.len() <= MAX_FIELDS {
                fields.push(Field { id, len });
            }
        }
        if n > MAX_FIELDS || n == 0 {
            counts.templates_refused += 1;
            continue;
        }
        let t = if options {
            Template::Options(fields)
        } else {
            Template::Data(fields)
        };
        if templates.insert(key, id, t, now) {
            counts.templates += 1;
        } else {
            counts.templates_refused += 1;
        }
    }
    Ok(())
}

/// What the records of one data set share.
struct Record {
    /// `out` may not grow past this.
    limit: usize,
    clock: Clock,
    sequence: u32,
    sampling: u64,
    flow_type: FlowType,
    exporter: IpAddr,
}

/// The shortest record a template describes (variable-length fields take at least a byte).
fn min_record_len(fields: &[Field]) -> Result<usize, DecodeError> {
    let min_len: usize = fields
        .iter()
        .map(|f| {
            if f.len == VARIABLE {
                1
            } else {
                usize::from(f.len)
            }
        })
        .sum();
    if min_len == 0 {
        return Err(DecodeError::Malformed("template of zero-length fields"));
    }
    Ok(min_len)
}

/// Calls `each` with every field of the next record.
fn record<'a>(
    fields: &[Field],
    c: &mut Cursor<'a>,
    mut each: impl FnMut(u16, &'a [u8]),
) -> Result<(), DecodeError> {
    for field in fields {
        let len = if field.len == VARIABLE {
            match c.u8("variable-length field")? {
                255 => usize::from(c.u16("variable-length field")?),
                n => usize::from(n),
            }
        } else {
            usize::from(field.len)
        };
        each(field.id, c.take(len, "data record")?);
    }
    Ok(())
}

/// Options data: the exporter's boot time and sampling interval are kept for its records.
fn options_records(
    fields: &[Field],
    mut c: Cursor<'_>,
    init_ms: &mut Option<u64>,
    sampling: &mut u64,
) -> Result<(), DecodeError> {
    let min_len = min_record_len(fields)?;
    while c.b.len() >= min_len {
        record(fields, &mut c, |id, v| match id {
            160 => *init_ms = Some(uint(v)),
            34 | 305 => *sampling = uint(v),
            _ => {}
        })?;
    }
    Ok(())
}

fn data_records(
    fields: &[Field],
    mut c: Cursor<'_>,
    at: &Record,
    out: &mut Vec<FlowRecord>,
    counts: &mut Counts,
) -> Result<(), DecodeError> {
    let min_len = min_record_len(fields)?;
    let clock = at.clock;
    while c.b.len() >= min_len {
        if out.len() >= at.limit {
            return Err(DecodeError::TooManyRecords);
        }
        let mut f = FlowRecord::empty(at.flow_type, at.exporter);
        f.sequence = at.sequence;
        f.sampling_rate = at.sampling;
        let mut uptime_start = None;
        let mut uptime_end = None;
        record(fields, &mut c, |id, v| {
            apply(&mut f, id, v, &mut uptime_start, &mut uptime_end);
        })?;
        if let Some(t) = uptime_start {
            f.start = clock.relative(t);
        }
        if let Some(t) = uptime_end {
            f.end = clock.relative(t);
        }
        if f.start == 0 {
            f.start = clock.secs;
        }
        if f.end == 0 {
            f.end = clock.secs;
        }
        out.push(f);
        counts.records += 1;
    }
    Ok(())
}

/// Sets the record's field for information element `id` (RFC 7012 numbering, shared by v9).
fn apply(f: &mut FlowRecord, id: u16, v: &[u8], start: &mut Option<u64>, end: &mut Option<u64>) {
    let n = || uint(v);
    match id {
        1 | 23 | 85 => f.bytes = n(),
        2 | 24 | 86 => f.packets = n(),
        4 => f.ip_protocol = low_u8(n()),
        5 => f.tos = low_u8(n()),
        6 => f.tcp_flags = low_u8(n()),
        7 => f.src_port = low_u16(n()),
        8 => f.src_addr = ipv4(v).unwrap_or(f.src_addr),
        9 | 29 => f.src_mask = low_u8(n()),
        10 => f.input_if = low_u32(n()),
        11 => f.dst_port = low_u16(n()),
        12 => f.dst_addr = ipv4(v).unwrap_or(f.dst_addr),
        13 | 30 => f.dst_mask = low_u8(n()),
        14 => f.output_if = low_u32(n()),
        15 | 18 => f.next_hop = ipv4(v).or(f.next_hop),
        62 | 63 => f.next_hop = ipv6(v).or(f.next_hop),
        21 => *end = Some(n()),
        22 => *start = Some(n()),
        27 => f.src_addr = ipv6(v).unwrap_or(f.src_addr),
        28 => f.dst_addr = ipv6(v).unwrap_or(f.dst_addr),
        34 | 305 => f.sampling_rate = n(),
        56 | 81 => f.src_mac = n() & 0xffff_ffff_ffff,
        57 | 80 => f.dst_mac = n() & 0xffff_ffff_ffff,
        60 => {
            f.ether_type = match n() {
                4 => 0x0800,
                6 => 0x86dd,
                _ => f.ether_type,
            }
        }
        61 => f.direction = low_u8(n()),
        150 => f.start = n(),
        151 => f.end = n(),
        152 => f.start = n() / 1000,
        153 => f.end = n() / 1000,
        154 => f.start = n() / 1_000_000,
        155 => f.end = n() / 1_000_000,
        _ => {}
    }
    if f.ether_type == 0 {
        if matches!(id, 8 | 12) {
            f.ether_type = 0x0800;
        } else if matches!(id, 27 | 28) {
            f.ether_type = 0x86dd;
        }
    }
}
