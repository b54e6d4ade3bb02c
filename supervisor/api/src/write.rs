//! `POST /v1/write/:category`: body decoding by content type and encoding, normalisation, feed (spec §1.6).

use std::io::Read;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dk_proto::lineproto::{self, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::{Category, FeedOpts, Point, json, pb};
use http_body_util::{BodyExt, LengthLimitError, Limited};

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
                // Election tags override the ignore flags (spec §1.6).
                no_global_tags: ignore && !election,
            },
            encoding: get("encoding").map(str::to_string),
        }
    }
}

/// How the body is encoded, by `Content-Type` (spec §1.6).
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

/// Undoes the compression, refusing output larger than `max` bytes.
pub(crate) fn decompress(body: Bytes, how: Compression, max: usize) -> Result<Bytes, ApiError> {
    fn read_capped(mut r: impl Read, max: usize, what: &str) -> Result<Bytes, ApiError> {
        let mut out = Vec::new();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        (&mut r)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::DecodeBodyFailed(format!("{what} body: {e}")))?;
        if out.len() > max {
            return Err(too_large(max, "decompressed body"));
        }
        Ok(Bytes::from(out))
    }
    match how {
        Compression::Identity => Ok(body),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(&body[..]), max, "gzip"),
        Compression::Deflate => {
            // HTTP "deflate" is zlib-wrapped, but some clients send raw DEFLATE.
            let zlib = body.len() >= 2
                && body[0] & 0x0f == 8
                && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
            if zlib {
                read_capped(flate2::read::ZlibDecoder::new(&body[..]), max, "deflate")
            } else {
                read_capped(flate2::read::DeflateDecoder::new(&body[..]), max, "deflate")
            }
        }
    }
}

fn too_large(max: usize, what: &str) -> ApiError {
    ApiError::BodyTooLarge(format!(
        "{what} exceeds {max} bytes: split the batch or raise [http_api] max_body_bytes"
    ))
}

/// Decodes points from a plain body.
pub(crate) fn decode_points(
    body: &[u8],
    format: BodyFormat,
    precision: Precision,
    now_ns: i64,
) -> Result<Vec<Point>, ApiError> {
    // Datakit applies `precision` and "time 0 means now" to every body format.
    let opts = lineproto::DecodeOptions { precision, now_ns };
    match format {
        BodyFormat::LineProto => {
            lineproto::decode(body, &opts).map_err(|e| ApiError::InvalidLinePoint(e.to_string()))
        }
        BodyFormat::Json => {
            json::decode_with(body, &opts).map_err(|e| ApiError::InvalidJsonPoint(e.to_string()))
        }
        BodyFormat::PbJson => json::decode_pbjson_with(body, &opts)
            .map_err(|e| ApiError::InvalidJsonPoint(e.to_string())),
        BodyFormat::Protobuf => {
            pb::decode_with(body, &opts).map_err(|e| ApiError::InvalidProtobufPoint(e.to_string()))
        }
    }
}

/// The result of [`process`]: points to feed and what to answer.
#[derive(Debug)]
pub(crate) struct Processed {
    pub(crate) points: Vec<Point>,
    pub(crate) dropped: usize,
    pub(crate) echo: Option<(Vec<u8>, &'static str)>,
}

/// Everything [`process`] needs besides the body.
#[derive(Debug, Clone)]
pub(crate) struct ProcessArgs {
    pub(crate) category: Category,
    pub(crate) format: BodyFormat,
    pub(crate) compression: Compression,
    pub(crate) params: WriteParams,
    pub(crate) max_body: usize,
    pub(crate) client_ip: String,
    pub(crate) now_ns: i64,
    pub(crate) limits: Arc<Limits>,
}

/// Decompresses, decodes and normalises a write body; pure (no I/O).
pub(crate) fn process(body: Bytes, a: &ProcessArgs) -> Result<Processed, ApiError> {
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let body = decompress(body, a.compression, a.max_body)?;
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let decoded = decode_points(&body, a.format, a.params.precision, a.now_ns)?;
    drop(body);
    if decoded.is_empty() {
        return Err(ApiError::NoPoints);
    }
    let mut points = Vec::with_capacity(decoded.len());
    let mut dropped = 0;
    for mut p in decoded {
        if a.category == Category::Rum {
            for k in ["city", "province", "country", "isp"] {
                p.add_tag_if_absent(k, "unknown");
            }
            if !a.client_ip.is_empty() {
                p.add_tag_if_absent("ip", &a.client_ip);
            }
        }
        let (keep, warns) = match normalize::normalize(&mut p, a.category, &a.limits) {
            Ok(w) => (true, w),
            Err(w) => (false, w),
        };
        if a.params.strict
            && let Some(w) = warns.first()
        {
            return Err(ApiError::PointGotWarning(format!(
                "{}: {}",
                w.kind, w.message
            )));
        }
        if keep {
            points.push(p);
        } else {
            dropped += 1;
        }
    }
    if points.is_empty() {
        return Err(ApiError::NoPoints);
    }
    let echo = a.params.echo.map(|e| match e {
        Echo::Json => (json::encode(&points), "application/json"),
        Echo::LineProto => (lineproto::encode(&points), "text/plain; charset=utf-8"),
    });
    Ok(Processed {
        points,
        dropped,
        echo,
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads the whole body, refusing more than `max` bytes.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        return Err(too_large(max, "request body"));
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large(max, "request body"))
        }
        Err(e) => Err(ApiError::DecodeBodyFailed(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// The `POST /v1/write/{category}` handler.
pub(crate) async fn write(
    State(inner): State<Arc<Inner>>,
    Path(category): Path<String>,
    req: Request,
) -> Response {
    match write_inner(&inner, &category, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
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
    let body = read_body(body, &parts.headers, max_body).await?;

    let feed_name = format!(
        "v1-write.{}",
        params.input.as_deref().unwrap_or(category.name())
    );
    let (dry, opts) = (params.dry, params.opts);
    let args = ProcessArgs {
        category,
        format,
        compression,
        params,
        max_body,
        client_ip,
        now_ns: now_ns(),
        limits: inner.limits.clone(),
    };
    let processed = if body.len() >= BLOCKING_THRESHOLD {
        tokio::task::spawn_blocking(move || process(body, &args))
            .await
            .map_err(|e| ApiError::Untyped(format!("decoding task failed: {e}")))??
    } else {
        process(body, &args)?
    };

    let cat = CategoryLabels {
        category: category.name().to_string(),
    };
    let metrics = &inner.state.metrics;
    metrics
        .write_points
        .get_or_create(&cat)
        .inc_by(processed.points.len() as u64);
    if processed.dropped > 0 {
        metrics
            .write_dropped
            .get_or_create(&cat)
            .inc_by(processed.dropped as u64);
    }

    if !dry {
        let res = inner
            .state
            .feeder
            .feed(category, feed_name.clone(), opts, processed.points)
            .await;
        if let Err(e) = res {
            let msg = e.to_string();
            inner
                .state
                .last_errors
                .record(&feed_name, &feed_name, category.name(), &msg);
            return Err(match e {
                FeedError::Busy(_) => ApiError::IoBusy(msg),
                FeedError::Closed => ApiError::IoClosed(msg),
            });
        }
    }

    Ok(match processed.echo {
        Some((body, ct)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response()
        }
        None => ().into_response(),
    })
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

    #[test]
    fn decompresses_gzip_and_both_deflate_flavours_within_the_cap() {
        let plain = b"cpu usage=1 1".repeat(10);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        let out = decompress(Bytes::from(gz.clone()), Compression::Gzip, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));
        let too_big = decompress(Bytes::from(gz), Compression::Gzip, plain.len() - 1);
        assert_eq!(too_big.map_err(|e| e.status().as_u16()), Err(413));

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&plain).unwrap_or_default();
        let z = z.finish().unwrap_or_default();
        let out = decompress(Bytes::from(z), Compression::Deflate, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));

        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&plain).unwrap_or_default();
        let d = d.finish().unwrap_or_default();
        let out = decompress(Bytes::from(d), Compression::Deflate, 1000);
        assert_eq!(out.as_deref().ok(), Some(&plain[..]));

        let bad = decompress(Bytes::from_static(b"not gzip"), Compression::Gzip, 1000);
        assert_eq!(
            bad.map_err(|e| e.code()),
            Err("datakit.decodeBodyFailed".to_string())
        );
    }
}
