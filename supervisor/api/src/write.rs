//! `POST /v1/write/:category`: body decoding by content type and encoding, normalisation, feed.

use dk_proto::clock::now_ns;
use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use dk_proto::lineproto::{self, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::{Category, FeedOpts, Point, json, pb};
use http_body_util::BodyExt;

use crate::budget::{Budget, Lease};
use crate::error::ApiError;
use crate::metrics::CategoryLabels;
use crate::middleware::ClientInfo;
use crate::{FeedError, Inner};

/// Bodies at least this big are decoded on the blocking pool instead of the async workers.
const BLOCKING_THRESHOLD: usize = 512 * 1024;

/// The exact content type Datakit treats as PB-JSON.
pub const CONTENT_TYPE_PBJSON: &str = "application/pbjson; proto=com.guance.Point";
/// The exact content type Datakit treats as protobuf `PBPoints`.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/protobuf; proto=com.guance.Point";

/// What `echo` asks the response to contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Echo {
    /// Line protocol, `\n`-joined.
    LineProto,
    /// Datakit's JSON form.
    Json,
}

/// The query parameters of a write request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WriteParams {
    pub(crate) precision: Precision,
    pub(crate) input: Option<String>,
    pub(crate) echo: Option<Echo>,
    pub(crate) strict: bool,
    pub(crate) dry: bool,
    pub(crate) opts: FeedOpts,
    pub(crate) encoding: Option<String>,
}

impl WriteParams {
    /// Reads the parameters from decoded query pairs; the first occurrence of a key wins,
    /// and a boolean is on when present with a non-empty value (so `strict=false` is on).
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let flag = |k: &str| get(k).is_some_and(|v| !v.is_empty());
        let echo = match get("echo") {
            Some("lp") => Some(Echo::LineProto),
            Some("json") => Some(Echo::Json),
            _ if flag("echo_line_proto") => Some(Echo::LineProto),
            _ if flag("echo_json") => Some(Echo::Json),
            _ => None,
        };
        let election = flag("global_election_tags");
        let ignore = flag("ignore_global_host_tags") || flag("ignore_global_tags");
        WriteParams {
            precision: get("precision")
                .map(Precision::from_query)
                .unwrap_or_default(),
            input: get("input").filter(|v| !v.is_empty()).map(str::to_string),
            echo,
            strict: flag("strict"),
            dry: flag("dry"),
            opts: FeedOpts {
                election,
                // Election tags override the ignore flags.
                no_global_tags: ignore && !election,
            },
            encoding: get("encoding").map(str::to_string),
        }
    }
}

/// How the body is encoded, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    LineProto,
    Json,
    PbJson,
    Protobuf,
}

impl BodyFormat {
    /// `application/json` anywhere in the type ⇒ JSON; the two exact `com.guance.Point`
    /// types ⇒ PB-JSON or protobuf; anything else ⇒ line protocol.
    pub(crate) fn from_content_type(ct: Option<&str>) -> Self {
        match ct {
            Some(ct) if ct.contains("application/json") => BodyFormat::Json,
            Some(CONTENT_TYPE_PBJSON) => BodyFormat::PbJson,
            Some(CONTENT_TYPE_PROTOBUF) => BodyFormat::Protobuf,
            _ => BodyFormat::LineProto,
        }
    }
}

/// A body compression we can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    Identity,
    Gzip,
    Deflate,
}

impl Compression {
    /// The `encoding` query parameter if present, else `Content-Encoding`.
    pub(crate) fn select(query: Option<&str>, header: Option<&str>) -> Result<Self, ApiError> {
        let name = query.or(header).unwrap_or("").trim().to_ascii_lowercase();
        match name.as_str() {
            "" | "identity" => Ok(Compression::Identity),
            "gzip" | "x-gzip" => Ok(Compression::Gzip),
            "deflate" => Ok(Compression::Deflate),
            other => Err(ApiError::DecodeBodyFailed(format!(
                "unsupported content encoding {other:?}: send gzip, deflate or an uncompressed body"
            ))),
        }
    }
}

/// Inflated output is collected in blocks of at most this size (no reallocation while
/// inflating, so a refused bomb leaves no trail of freed huge buffers in the allocator).
const INFLATE_BLOCK: usize = 1 << 20;
/// The first block is sized from the body (see [`first_block`]), but never below this.
const INFLATE_FIRST_MIN: usize = 64 << 10;

/// The size of the first output block: the length a single-member gzip body declares in its
/// trailer (ISIZE, a hint only: the body is untrusted and may lie) plus a little, else eight
/// times the compressed size; between [`INFLATE_FIRST_MIN`] and [`INFLATE_BLOCK`] and never
/// over `max + 1`. A right guess inflates into one block: no copy, and no megabyte zeroed for a
/// 10 KiB body.
fn first_block(body: &[u8], how: Compression, max: usize) -> usize {
    let declared = match (how, body.len()) {
        (Compression::Gzip, n) if n >= 18 => body
            .get(n - 4..)
            .and_then(|t| <[u8; 4]>::try_from(t).ok())
            .map(|t| u32::from_le_bytes(t) as usize + 1),
        _ => None,
    };
    declared
        .unwrap_or_else(|| body.len().saturating_mul(8))
        .clamp(INFLATE_FIRST_MIN, INFLATE_BLOCK)
        .min(max.saturating_add(1).max(1))
}

/// Undoes the compression in a streaming loop, refusing output larger than `max` bytes and
/// taking every block of the output from `lease` before it is allocated (and the final
/// contiguous copy before it is made); `held` is what the lease holds for other things (the
/// compressed body).
pub(crate) fn inflate(
    body: &[u8],
    how: Compression,
    max: usize,
    lease: &mut Lease,
    held: usize,
    budget_total: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut reader: Box<dyn Read + '_> = match how {
        Compression::Identity => return Ok(body.to_vec()),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Compression::Deflate => {
            // HTTP "deflate" is zlib-wrapped, but some clients send raw DEFLATE.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                Box::new(flate2::read::ZlibDecoder::new(body))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(body))
            }
        }
    };
    let what = match how {
        Compression::Gzip => "gzip",
        _ => "deflate",
    };
    // Each block is zeroed once when allocated and filled up to `filled`.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut filled = 0usize;
    let mut reserved = 0usize;
    let mut total = 0usize;
    loop {
        if blocks.last().is_none_or(|b| filled == b.len()) {
            let size = if blocks.is_empty() {
                first_block(body, how, max)
            } else {
                INFLATE_BLOCK
            };
            reserved += size;
            lease
                .grow_to(held + reserved)
                .map_err(|_| spent(budget_total))?;
            if let Some(b) = blocks.last_mut() {
                b.truncate(filled);
            }
            blocks.push(vec![0; size]);
            filled = 0;
        }
        let Some(block) = blocks.last_mut() else {
            break;
        };
        let n = match reader.read(&mut block[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ApiError::DecodeBodyFailed(format!("{what} body: {e}"))),
        };
        filled += n;
        total += n;
        if total > max {
            return Err(too_large(max, "decompressed body"));
        }
        if n == 0 {
            break;
        }
    }
    if let Some(b) = blocks.last_mut() {
        b.truncate(filled);
    }
    if blocks.len() == 1 {
        let out = blocks.pop().unwrap_or_default();
        lease.shrink_to(held + out.capacity());
        return Ok(out);
    }
    // One contiguous copy for the decoders; the blocks go as it fills.
    lease
        .grow_to(held + reserved + total)
        .map_err(|_| spent(budget_total))?;
    let mut out = Vec::with_capacity(total);
    for b in blocks {
        out.extend_from_slice(&b);
    }
    lease.shrink_to(held + out.capacity());
    Ok(out)
}

fn too_large(max: usize, what: &str) -> ApiError {
    ApiError::BodyTooLarge(format!(
        "{what} exceeds {max} bytes ({} MiB): split the batch or raise [http_api] max_body_size_mb",
        max >> 20
    ))
}

/// The 503 of a spent memory budget.
pub(crate) fn spent(total: usize) -> ApiError {
    ApiError::IoBusy(format!(
        "the memory budget for write bodies in flight ({} MiB, [http_api] max_inflight_body_mb) is spent; retry later or raise max_inflight_body_mb",
        total >> 20
    ))
}

/// Points decoded, normalised and fed together at most.
pub(crate) const CHUNK_POINTS: usize = 10_000;
/// Text bytes decoded per chunk at most (the point crossing it ends the chunk).
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// What a decoded point costs besides its text: the struct, its vectors, allocation headers.
const POINT_OVERHEAD: usize = 192;
/// Budget taken for a chunk before decoding it.
const CHUNK_CHARGE: usize = CHUNK_POINTS * POINT_OVERHEAD + 2 * CHUNK_BYTES;

/// Everything decoding needs besides the body.
#[derive(Debug, Clone)]
pub(crate) struct ProcessArgs {
    pub(crate) category: Category,
    pub(crate) format: BodyFormat,
    pub(crate) params: WriteParams,
    pub(crate) client_ip: String,
    pub(crate) now_ns: i64,
    pub(crate) limits: Arc<Limits>,
    /// Debug knob: panic while decoding a body that starts with [`DEBUG_PANIC_MARK`].
    pub(crate) debug_panic: bool,
}

/// With `DK_DEBUG_API_PANIC=decode`, decoding a body that starts with this panics.
pub(crate) const DEBUG_PANIC_MARK: &[u8] = b"dk_debug_panic";

/// Normalised points of one chunk of a body, holding their share of the budget.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) points: Vec<Point>,
    pub(crate) dropped: usize,
    /// Why the first dropped point of the chunk was dropped.
    pub(crate) drop_reason: Option<String>,
    pub(crate) echo: Option<Vec<u8>>,
    pub(crate) lease: Lease,
}

impl Chunk {
    /// Appends `other` and takes over its lease (keeps small bodies all-or-nothing in one feed).
    fn absorb(&mut self, other: Chunk) {
        self.points.extend(other.points);
        self.dropped += other.dropped;
        if self.drop_reason.is_none() {
            self.drop_reason = other.drop_reason;
        }
        if let (Some(mine), Some(theirs)) = (self.echo.as_mut(), other.echo) {
            join_echo(mine, &theirs);
        }
        self.lease.absorb(other.lease);
    }
}

/// Appends one chunk's echo to the echo so far: JSON arrays are merged, line protocol joined.
fn join_echo(out: &mut Vec<u8>, next: &[u8]) {
    let is_json_array = |b: &[u8]| b.first() == Some(&b'[') && b.last() == Some(&b']');
    if is_json_array(out) && is_json_array(next) {
        let inner = &next[1..next.len() - 1];
        if inner.is_empty() {
            return;
        }
        out.pop();
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(inner);
        out.push(b']');
    } else if !next.is_empty() {
        if !out.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(next);
    }
}

/// Decodes and normalises a plain body chunk by chunk, handing each chunk (or the error that
/// ends the body) to `emit`; stops when `emit` returns false. Pure (no I/O).
pub(crate) fn decode_chunks(
    body: &[u8],
    a: &ProcessArgs,
    budget: &Budget,
    emit: &mut dyn FnMut(Result<Chunk, ApiError>) -> bool,
) {
    if a.debug_panic && body.starts_with(DEBUG_PANIC_MARK) {
        panic!("DK_DEBUG_API_PANIC=decode: a body starting with dk_debug_panic");
    }
    // Datakit applies `precision` and "time 0 means now" to every body format.
    let opts = lineproto::DecodeOptions {
        precision: a.params.precision,
        now_ns: a.now_ns,
    };
    let total = budget.total_bytes();
    let mut any = false;
    match a.format {
        BodyFormat::LineProto => {
            let mut d = lineproto::ChunkDecoder::new(body, &opts);
            loop {
                let mut lease = budget.lease();
                if lease.grow(CHUNK_CHARGE).is_err() {
                    emit(Err(spent(total)));
                    return;
                }
                let start = d.position();
                let Some(next) = d.next_chunk(CHUNK_POINTS, CHUNK_BYTES) else {
                    break;
                };
                let r = next
                    .map_err(|e| ApiError::InvalidLinePoint(e.to_string()))
                    .and_then(|points| {
                        // One point larger than a chunk: its text counts too.
                        let text = d.position() - start;
                        lease
                            .grow_to(points.len() * POINT_OVERHEAD + 2 * text)
                            .map_err(|_| spent(total))?;
                        finish_chunk(points, a, lease)
                    });
                any = true;
                let failed = r.is_err();
                if !emit(r) || failed {
                    return;
                }
            }
        }
        BodyFormat::Protobuf => {
            let mut start: Option<usize> = None;
            let mut end = 0;
            let mut n = 0;
            let mut first = 0;
            let base = body.as_ptr() as usize;
            let mut entries = pb::entries(body).peekable();
            loop {
                let next = entries.next();
                let flush = match &next {
                    None => true,
                    Some(Err(_)) => true,
                    Some(Ok(entry)) => {
                        let s = entry.as_ptr() as usize - base;
                        if start.is_none() {
                            start = Some(s);
                        }
                        end = s + entry.len();
                        n += 1;
                        n >= CHUNK_POINTS || end - start.unwrap_or(0) >= CHUNK_BYTES
                    }
                };
                if flush && let Some(s) = start.take() {
                    let mut lease = budget.lease();
                    let r = lease
                        .grow(n * POINT_OVERHEAD + 2 * (end - s))
                        .map_err(|_| spent(total))
                        .and_then(|()| {
                            pb::decode_with(&body[s..end], &opts).map_err(|e| {
                                ApiError::InvalidProtobufPoint(format!(
                                    "in the points from #{first}: {e}"
                                ))
                            })
                        })
                        .and_then(|points| finish_chunk(points, a, lease));
                    first += n;
                    n = 0;
                    any = true;
                    let failed = r.is_err();
                    if !emit(r) || failed {
                        return;
                    }
                }
                match next {
                    None => break,
                    Some(Err(e)) => {
                        emit(Err(ApiError::InvalidProtobufPoint(e.to_string())));
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        BodyFormat::Json | BodyFormat::PbJson => {
            // A JSON document decodes at once; its points are charged before, from an upper
            // bound of their count (every point has at least two objects).
            let braces = body.iter().filter(|b| **b == b'{').count();
            let mut lease = budget.lease();
            if lease
                .grow(braces / 2 * POINT_OVERHEAD + 2 * body.len())
                .is_err()
            {
                emit(Err(spent(total)));
                return;
            }
            let decoded = if a.format == BodyFormat::Json {
                json::decode_with(body, &opts)
            } else {
                json::decode_pbjson_with(body, &opts)
            };
            let r = decoded
                .map_err(|e| ApiError::InvalidJsonPoint(e.to_string()))
                .and_then(|points| {
                    any = !points.is_empty();
                    finish_chunk(points, a, lease)
                });
            emit(r);
            return;
        }
    }
    if !any {
        emit(Err(ApiError::NoPoints(
            "the body holds no point (only blank or comment lines)".into(),
        )));
    }
}

/// Normalises a chunk's points in place (RUM location tags, `strict`) and encodes its echo.
fn finish_chunk(
    mut points: Vec<Point>,
    a: &ProcessArgs,
    mut lease: Lease,
) -> Result<Chunk, ApiError> {
    let mut dropped = 0;
    let mut drop_reason = None;
    let mut strict_error = None;
    points.retain_mut(|p| {
        if strict_error.is_some() {
            return false;
        }
        if a.category == Category::Rum {
            for k in ["city", "province", "country", "isp"] {
                p.add_tag_if_absent(k, "unknown");
            }
            if !a.client_ip.is_empty() {
                p.add_tag_if_absent("ip", &a.client_ip);
            }
        }
        let (keep, warns) = match normalize::normalize(p, a.category, &a.limits) {
            Ok(w) => (true, w),
            Err(w) => (false, w),
        };
        if a.params.strict
            && let Some(w) = warns.first()
        {
            strict_error = Some(ApiError::PointGotWarning(format!(
                "{}: {}",
                w.kind, w.message
            )));
            return false;
        }
        if !keep {
            if drop_reason.is_none() {
                drop_reason = Some(
                    warns
                        .iter()
                        .map(|w| w.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            dropped += 1;
        }
        keep
    });
    if let Some(e) = strict_error {
        return Err(e);
    }
    let echo = a.params.echo.map(|e| match e {
        Echo::Json => json::encode(&points),
        Echo::LineProto => lineproto::encode(&points),
    });
    if let Some(e) = &echo {
        let total = lease.budget_total();
        lease.grow(e.len()).map_err(|_| spent(total))?;
    }
    Ok(Chunk {
        points,
        dropped,
        drop_reason,
        echo,
        lease,
    })
}

/// The `400 datakit.noPoints` of a body whose every point was dropped, saying why.
fn no_points(dropped: usize, reason: Option<&str>, category: Category) -> ApiError {
    let mut msg = format!("all {dropped} point(s) were dropped by normalisation");
    if let Some(r) = reason {
        msg.push_str(&format!("; the first: {r}"));
    }
    if category == Category::Metric {
        msg.push_str(" (metrics keep only numeric and boolean fields: send strings as tags, or write them as logging)");
    }
    ApiError::NoPoints(msg)
}

/// Reads the whole body, refusing more than `max` bytes: at once (413, nothing read) when the
/// declared `Content-Length` is over it, else as the bytes arrive. With a lease, the declared
/// length is taken from the budget before reading, and chunked bodies as their frames arrive.
pub(crate) async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    max: usize,
    mut lease: Option<&mut Lease>,
    budget_total: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        return Err(too_large(max, "request body"));
    }
    let declared = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    if let Some(l) = lease.as_deref_mut() {
        l.grow_to(declared).map_err(|_| spent(budget_total))?;
    }
    let mut out = BytesMut::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::DecodeBodyFailed(format!("reading the request body failed: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let want = out.len() + data.len();
        if want > max {
            return Err(too_large(max, "request body"));
        }
        if want > out.capacity()
            && let Some(l) = lease.as_deref_mut()
        {
            // BytesMut at least doubles when it grows; both buffers exist meanwhile.
            let new = out.capacity().saturating_mul(2).max(want);
            l.grow_to(out.capacity() + new)
                .map_err(|_| spent(budget_total))?;
            out.reserve(data.len());
            l.shrink_to(out.capacity());
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// The `POST /v1/write/{category}` handler.
pub(crate) async fn write(
    State(inner): State<Arc<Inner>>,
    Path(category): Path<String>,
    req: Request,
) -> Response {
    match write_inner(&inner, &category, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let reason = match &e {
                ApiError::BodyTooLarge(_) => Some("body_too_large"),
                ApiError::IoBusy(m) if m.contains("max_inflight_body_mb") => Some("memory_budget"),
                _ => None,
            };
            if let Some(reason) = reason {
                inner.state.metrics.reject(reason);
            }
            e.into_response()
        }
    }
}

async fn write_inner(inner: &Inner, category: &str, req: Request) -> Result<Response, ApiError> {
    let category = Category::WRITABLE
        .iter()
        .copied()
        .find(|c| c.name() == category)
        .ok_or_else(|| {
            ApiError::InvalidCategory(format!(
                "{category:?} is not writable: use one of metric, logging, object, network, tracing, keyevent, custom_object, security, rum"
            ))
        })?;
    let (parts, body) = req.into_parts();
    let pairs: Vec<(String, String)> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let params = WriteParams::from_pairs(&pairs);
    let header_str = |h| {
        parts
            .headers
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let compression = Compression::select(
        params.encoding.as_deref(),
        header_str(header::CONTENT_ENCODING),
    )?;
    let format = BodyFormat::from_content_type(header_str(header::CONTENT_TYPE));
    let client_ip = parts
        .extensions
        .get::<ClientInfo>()
        .map(|c| c.ip.clone())
        .unwrap_or_default();
    let max_body = inner.state.config.max_body_bytes;
    let budget = inner.budget.clone();
    let total = budget.total_bytes();
    let mut lease = budget.lease();
    let body = read_body(body, &parts.headers, max_body, Some(&mut lease), total).await?;
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let body: Bytes = if compression == Compression::Identity {
        body
    } else {
        let slot = inner
            .inflaters
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Untyped(format!("inflating the body failed: {e}")))?;
        let (r, l) = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let held = body.len();
            let r = inflate(&body, compression, max_body, &mut lease, held, total);
            drop(body);
            (r, lease)
        })
        .await
        .map_err(|e| ApiError::Untyped(format!("inflating the body failed: {e}")))?;
        lease = l;
        let out = r?;
        lease.shrink_to(out.capacity());
        Bytes::from(out)
    };
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }

    let feed_name = format!(
        "v1-write.{}",
        params.input.as_deref().unwrap_or(category.name())
    );
    let (dry, opts, echo_kind) = (params.dry, params.opts, params.echo);
    let args = ProcessArgs {
        category,
        format,
        params,
        client_ip,
        now_ns: now_ns(),
        limits: inner.limits.clone(),
        debug_panic: inner.debug_panic_decode,
    };
    let mut feed = FeedState {
        inner,
        category,
        feed_name,
        dry,
        opts,
        fed: 0,
        dropped: 0,
        drop_reason: None,
        echo: None,
        echo_kind,
        echo_lease: budget.lease(),
    };
    if body.len() < BLOCKING_THRESHOLD {
        // Small bodies stay all-or-nothing: every chunk is decoded before any is fed.
        let mut merged: Option<Chunk> = None;
        let mut failed = None;
        decode_chunks(&body, &args, &budget, &mut |c| match c {
            Ok(c) => {
                match merged.as_mut() {
                    None => merged = Some(c),
                    Some(m) => m.absorb(c),
                }
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(c) = merged {
            feed.chunk(c).await?;
        }
    } else {
        // Large bodies: decoded on the blocking pool, one chunk ahead of the feed.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, ApiError>>(1);
        let bg_budget = budget.clone();
        // The body's lease goes with the body: returned when the decoding thread is done.
        let body_lease = std::mem::replace(&mut lease, budget.lease());
        let task = tokio::task::spawn_blocking(move || {
            decode_chunks(&body, &args, &bg_budget, &mut |c| {
                tx.blocking_send(c).is_ok()
            });
            drop(body);
            drop(body_lease);
        });
        while let Some(c) = rx.recv().await {
            match c {
                Ok(c) => feed.chunk(c).await?,
                Err(e) => return Err(feed.late(e)),
            }
        }
        if let Err(e) = task.await {
            return Err(feed.late(ApiError::Untyped(format!("decoding the body failed: {e}"))));
        }
    }
    drop(lease);
    feed.finish()
}

/// Feeds a body's chunks and keeps what the answer needs.
struct FeedState<'a> {
    inner: &'a Inner,
    category: Category,
    feed_name: String,
    dry: bool,
    opts: FeedOpts,
    fed: usize,
    dropped: usize,
    drop_reason: Option<String>,
    echo: Option<Vec<u8>>,
    echo_kind: Option<Echo>,
    echo_lease: Lease,
}

impl FeedState<'_> {
    async fn chunk(&mut self, c: Chunk) -> Result<(), ApiError> {
        let Chunk {
            points,
            dropped,
            drop_reason,
            echo,
            lease,
        } = c;
        let cat = CategoryLabels {
            category: self.category.name().to_string(),
        };
        let metrics = &self.inner.state.metrics;
        if dropped > 0 {
            metrics
                .write_dropped
                .get_or_create(&cat)
                .inc_by(dropped as u64);
            self.dropped += dropped;
            if self.drop_reason.is_none() {
                self.drop_reason = drop_reason;
            }
        }
        if let Some(e) = echo {
            let total = self.echo_lease.budget_total();
            self.echo_lease.grow(e.len()).map_err(|_| spent(total))?;
            match self.echo.as_mut() {
                Some(all) => join_echo(all, &e),
                None => self.echo = Some(e),
            }
        }
        if points.is_empty() {
            return Ok(());
        }
        let n = points.len();
        metrics.write_points.get_or_create(&cat).inc_by(n as u64);
        if !self.dry {
            let res = self
                .inner
                .state
                .feeder
                .feed(self.category, self.feed_name.clone(), self.opts, points)
                .await;
            if let Err(e) = res {
                let msg = e.to_string();
                self.inner.state.last_errors.record(
                    &self.feed_name,
                    &self.feed_name,
                    self.category.name(),
                    &msg,
                );
                return Err(self.late(match e {
                    FeedError::Busy(_) => ApiError::IoBusy(msg),
                    FeedError::Closed => ApiError::IoClosed(msg),
                    FeedError::Rejected(_) => ApiError::BodyTooLarge(format!(
                        "{msg}: send smaller bodies or raise [dataway.wal] max_capacity_gb"
                    )),
                }));
            }
        }
        drop(lease);
        self.fed += n;
        Ok(())
    }

    /// An error after some chunks were accepted says so.
    fn late(&self, e: ApiError) -> ApiError {
        if self.fed == 0 {
            return e;
        }
        e.with_note(&format!(
            "the {} points before it were accepted; send the rest again",
            self.fed
        ))
    }

    fn finish(self) -> Result<Response, ApiError> {
        if self.fed == 0 {
            return Err(no_points(
                self.dropped,
                self.drop_reason.as_deref(),
                self.category,
            ));
        }
        Ok(match self.echo {
            Some(body) => {
                let ct = match self.echo_kind {
                    Some(Echo::Json) => "application/json",
                    _ => "text/plain; charset=utf-8",
                };
                ([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response()
            }
            None => ().into_response(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn booleans_are_on_when_present_with_any_value() {
        let p = WriteParams::from_pairs(&pairs(&[("strict", "false"), ("dry", "")]));
        assert!(p.strict);
        assert!(!p.dry);
    }

    #[test]
    fn election_tags_override_ignore_flags() {
        let p = WriteParams::from_pairs(&pairs(&[
            ("ignore_global_tags", "1"),
            ("global_election_tags", "1"),
        ]));
        assert_eq!(
            p.opts,
            FeedOpts {
                election: true,
                no_global_tags: false
            }
        );
        let p = WriteParams::from_pairs(&pairs(&[("ignore_global_host_tags", "1")]));
        assert!(p.opts.no_global_tags);
    }

    #[test]
    fn echo_and_deprecated_echo_flags() {
        let e = |q: &[(&str, &str)]| WriteParams::from_pairs(&pairs(q)).echo;
        assert_eq!(e(&[("echo", "lp")]), Some(Echo::LineProto));
        assert_eq!(e(&[("echo", "json")]), Some(Echo::Json));
        assert_eq!(e(&[("echo_line_proto", "1")]), Some(Echo::LineProto));
        assert_eq!(e(&[("echo_json", "true")]), Some(Echo::Json));
        assert_eq!(e(&[("echo", "xml")]), None);
    }

    #[test]
    fn precision_absent_is_auto() {
        assert_eq!(WriteParams::from_pairs(&[]).precision, Precision::Auto);
        assert_eq!(
            WriteParams::from_pairs(&pairs(&[("precision", "s")])).precision,
            Precision::S
        );
    }

    #[test]
    fn picks_body_format_by_content_type() {
        use BodyFormat::*;
        assert_eq!(BodyFormat::from_content_type(None), LineProto);
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")),
            Json
        );
        assert_eq!(
            BodyFormat::from_content_type(Some(CONTENT_TYPE_PBJSON)),
            PbJson
        );
        assert_eq!(
            BodyFormat::from_content_type(Some(CONTENT_TYPE_PROTOBUF)),
            Protobuf
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/protobuf")),
            LineProto
        );
    }

    #[test]
    fn query_encoding_overrides_header_and_unknown_is_rejected() {
        assert_eq!(
            Compression::select(Some("gzip"), Some("deflate")),
            Ok(Compression::Gzip)
        );
        assert_eq!(Compression::select(None, None), Ok(Compression::Identity));
        assert_eq!(
            Compression::select(None, Some("br")).map_err(|e| e.code()),
            Err("datakit.decodeBodyFailed".to_string())
        );
    }

    fn budget(bytes: usize) -> Budget {
        Budget::new(bytes, prometheus_client::metrics::gauge::Gauge::default())
    }

    fn inflate_all(body: &[u8], how: Compression, max: usize) -> Result<Vec<u8>, ApiError> {
        let b = budget(1 << 30);
        let mut l = b.lease();
        inflate(body, how, max, &mut l, 0, b.total_bytes())
    }

    #[test]
    fn decompresses_gzip_and_both_deflate_flavours_within_the_cap() {
        let plain = b"cpu usage=1 1".repeat(10);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        let out = inflate_all(&gz, Compression::Gzip, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));
        let too_big = inflate_all(&gz, Compression::Gzip, plain.len() - 1);
        assert_eq!(too_big.map_err(|e| e.status().as_u16()), Err(413));

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&plain).unwrap_or_default();
        let z = z.finish().unwrap_or_default();
        let out = inflate_all(&z, Compression::Deflate, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));

        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&plain).unwrap_or_default();
        let d = d.finish().unwrap_or_default();
        let out = inflate_all(&d, Compression::Deflate, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));

        let bad = inflate_all(b"not gzip", Compression::Gzip, 1000);
        assert_eq!(
            bad.map_err(|e| e.code()),
            Err("datakit.decodeBodyFailed".to_string())
        );
    }

    fn gzip_of(plain: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(plain).unwrap_or_default();
        gz.finish().unwrap_or_default()
    }

    fn lp_body(lines: usize) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| {
                format!("bench,host=h{} value={i}.5,count={i}i {i}\n", i % 10).into_bytes()
            })
            .collect()
    }

    #[test]
    fn a_gzip_body_inflates_into_one_block_sized_from_its_trailer() {
        let plain = lp_body(3000);
        assert!(plain.len() > INFLATE_FIRST_MIN && plain.len() < INFLATE_BLOCK);
        let gz = gzip_of(&plain);
        let b = budget(64 << 20);
        let mut l = b.lease();
        let out = inflate(&gz, Compression::Gzip, 64 << 20, &mut l, 0, b.total_bytes())
            .unwrap_or_default();
        assert_eq!(out, plain);
        // One block of the declared size (+1 to see the end), not a megabyte.
        assert_eq!(out.capacity(), plain.len() + 1);
        assert!(l.held() < plain.len() + 4096, "lease holds {}", l.held());
    }

    #[test]
    fn a_lying_gzip_trailer_is_a_decode_error_and_the_cap_still_holds() {
        let plain = lp_body(40_000);
        assert!(plain.len() > INFLATE_BLOCK);
        for isize in [0u32, 10, u32::MAX] {
            let mut gz = gzip_of(&plain);
            let n = gz.len();
            gz[n - 4..].copy_from_slice(&isize.to_le_bytes());
            // flate2 checks the trailer after the data: the lie is an error, never a short read.
            let r = inflate_all(&gz, Compression::Gzip, 64 << 20);
            assert_eq!(
                r.map_err(|e| e.code()),
                Err("datakit.decodeBodyFailed".to_string()),
                "ISIZE {isize}"
            );
        }
        let gz = gzip_of(&plain);
        assert_eq!(
            inflate_all(&gz, Compression::Gzip, 64 << 20).ok(),
            Some(plain.clone())
        );
        let too_big = inflate_all(&gz, Compression::Gzip, plain.len() - 1);
        assert_eq!(too_big.map_err(|e| e.status().as_u16()), Err(413));
    }

    fn gzip_zeros(n: usize) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..n >> 20 {
            gz.write_all(&zeros).unwrap_or_default();
        }
        gz.finish().unwrap_or_default()
    }

    #[test]
    fn inflating_a_bomb_stops_at_the_budget_with_503_and_gives_everything_back() {
        let bomb = gzip_zeros(64 << 20);
        let gauge = prometheus_client::metrics::gauge::Gauge::default();
        let b = Budget::new(8 << 20, gauge.clone());
        let mut l = b.lease();
        let r = inflate(
            &bomb,
            Compression::Gzip,
            64 << 20,
            &mut l,
            0,
            b.total_bytes(),
        );
        let e = r.err().unwrap_or(ApiError::EmptyBody);
        assert_eq!(e.status().as_u16(), 503, "{e}");
        assert!(e.message().contains("max_inflight_body_mb"), "{e}");
        assert!(gauge.get() <= 8 << 20);
        drop(l);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn inflating_past_the_body_cap_is_413_naming_a_real_key() {
        let bomb = gzip_zeros(8 << 20);
        let e = inflate_all(&bomb, Compression::Gzip, 1 << 20)
            .err()
            .unwrap_or(ApiError::EmptyBody);
        assert_eq!(e.status().as_u16(), 413);
        assert!(e.message().contains("[http_api] max_body_size_mb"), "{e}");
    }

    fn args(category: Category, format: BodyFormat) -> ProcessArgs {
        ProcessArgs {
            category,
            format,
            params: WriteParams {
                precision: Precision::Ns,
                ..WriteParams::default()
            },
            client_ip: String::new(),
            now_ns: 1,
            limits: Arc::new(Limits::default()),
            debug_panic: false,
        }
    }

    fn chunks(body: &[u8], a: &ProcessArgs, b: &Budget) -> Vec<Result<Chunk, ApiError>> {
        let mut out = Vec::new();
        decode_chunks(body, a, b, &mut |c| {
            out.push(c);
            true
        });
        out
    }

    #[test]
    fn a_large_line_protocol_body_decodes_in_bounded_chunks() {
        let n = CHUNK_POINTS * 2 + 5;
        let body: Vec<u8> = (0..n)
            .flat_map(|i| format!("m f={i}i {}\n", i + 1).into_bytes())
            .collect();
        let b = budget(256 << 20);
        let got = chunks(&body, &args(Category::Metric, BodyFormat::LineProto), &b);
        let sizes: Vec<usize> = got
            .iter()
            .map(|c| c.as_ref().map(|c| c.points.len()).unwrap_or(0))
            .collect();
        assert_eq!(sizes, vec![CHUNK_POINTS, CHUNK_POINTS, 5]);
        assert_eq!(
            got.last()
                .and_then(|c| c.as_ref().ok())
                .and_then(|c| c.points.last())
                .map(|p| p.time),
            Some(n as i64)
        );
    }

    #[test]
    fn a_large_protobuf_body_decodes_in_bounded_chunks_with_the_same_points() {
        let points: Vec<Point> = (0..CHUNK_POINTS + 3)
            .map(|i| Point::new("m", i as i64 + 1).field("f", dk_proto::Value::I(i as i64)))
            .collect();
        let body = pb::encode(&points);
        let b = budget(256 << 20);
        let got = chunks(&body, &args(Category::Metric, BodyFormat::Protobuf), &b);
        let mut all = Vec::new();
        for c in got {
            let c = c.unwrap_or_else(|e| panic!("{e}"));
            assert!(c.points.len() <= CHUNK_POINTS);
            all.extend(c.points);
        }
        assert_eq!(all.len(), points.len());
        assert_eq!(all.last().map(|p| p.time), points.last().map(|p| p.time));
    }

    #[test]
    fn decoding_refuses_with_503_when_the_budget_cannot_hold_a_chunk() {
        let b = budget(1 << 20);
        let got = chunks(
            b"m f=1 1",
            &args(Category::Metric, BodyFormat::LineProto),
            &b,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].as_ref().map(|_| 0).map_err(|e| e.status().as_u16()),
            Err(503)
        );
    }

    #[test]
    fn a_metric_with_only_a_string_field_says_which_field_was_dropped_and_why() {
        let b = budget(256 << 20);
        let got = chunks(
            b"m s=\"x\" 1",
            &args(Category::Metric, BodyFormat::LineProto),
            &b,
        );
        let c = got
            .into_iter()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| unreachable!());
        assert!(c.points.is_empty());
        let e = no_points(c.dropped, c.drop_reason.as_deref(), Category::Metric);
        assert_eq!(e.code(), "datakit.noPoints");
        assert_eq!(e.status().as_u16(), 400);
        let m = e.message();
        assert!(m.contains("field \"s\""), "{m}");
        assert!(m.contains("numeric and boolean"), "{m}");
    }

    #[test]
    fn echo_of_several_chunks_is_one_json_array() {
        let mut out = b"[{\"a\":1}]".to_vec();
        join_echo(&mut out, b"[{\"b\":2}]");
        join_echo(&mut out, b"[]");
        assert_eq!(out, b"[{\"a\":1},{\"b\":2}]");
        let mut lp = b"m a=1 1".to_vec();
        join_echo(&mut lp, b"m a=2 2");
        assert_eq!(lp, b"m a=1 1\nm a=2 2");
    }

    #[test]
    fn the_debug_knob_makes_decoding_panic_only_on_marked_bodies() {
        let b = budget(256 << 20);
        let mut a = args(Category::Metric, BodyFormat::LineProto);
        a.debug_panic = true;
        assert_eq!(chunks(b"m f=1 1", &a, &b).len(), 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            chunks(b"dk_debug_panic f=1 1", &a, &b).len()
        }));
        assert!(r.is_err());
    }
}
