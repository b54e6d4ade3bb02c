//! Decoding OTLP/HTTP bodies: protobuf or JSON chosen from `Content-Type` (leniently:
//! parameters and case ignored), gzip inflated under a cap.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;

/// An OTLP export request: protobuf through prost, OTLP/JSON through the generated serde
/// derives (hex ids, lowerCamelCase, 64-bit integers as strings or numbers, unknown fields
/// ignored). The generated top-level types require their one field, which OTLP/JSON may
/// leave out: they are read through a wrapper that defaults it.
pub trait OtlpRequest: prost::Message + Default + Sized {
    /// Decodes OTLP/JSON.
    ///
    /// # Errors
    /// serde's error.
    fn from_json(bytes: &[u8]) -> serde_json::Result<Self>;
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct TracesJson {
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricsJson {
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LogsJson {
    resource_logs: Vec<ResourceLogs>,
}

impl OtlpRequest for ExportTraceServiceRequest {
    fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        let j: TracesJson = serde_json::from_slice(bytes)?;
        Ok(ExportTraceServiceRequest {
            resource_spans: j.resource_spans,
        })
    }
}

impl OtlpRequest for ExportMetricsServiceRequest {
    fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        let j: MetricsJson = serde_json::from_slice(bytes)?;
        Ok(ExportMetricsServiceRequest {
            resource_metrics: j.resource_metrics,
        })
    }
}

impl OtlpRequest for ExportLogsServiceRequest {
    fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        let j: LogsJson = serde_json::from_slice(bytes)?;
        Ok(ExportLogsServiceRequest {
            resource_logs: j.resource_logs,
        })
    }
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (or `application/protobuf`).
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// Why a body was refused (each answers 400, or 413 when too large).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Neither protobuf nor JSON.
    #[error(
        "unsupported Content-Type {0:?}: send application/x-protobuf or application/json (OTLP/HTTP)"
    )]
    ContentType(String),
    /// The inflated body is over the cap.
    #[error("the decompressed body is over {0} bytes; send smaller batches")]
    TooLarge(usize),
    /// Not gzip although `Content-Encoding: gzip` said so.
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    /// Not an OTLP message.
    #[error("the body is not a valid OTLP {encoding} export request: {reason}")]
    Decode {
        /// `protobuf` or `JSON`.
        encoding: &'static str,
        /// The decoder's error.
        reason: String,
    },
}

impl BodyError {
    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            _ => 400,
        }
    }
}

/// The encoding named by a `Content-Type` value: its media type, case-insensitive and without
/// parameters (`application/json; charset=utf-8` is JSON). `None` (no header) is protobuf, the
/// OTLP/HTTP default; `accept_other` (an expected header matched) reads any other type as
/// protobuf too.
///
/// # Errors
/// [`BodyError::ContentType`] for another media type.
pub fn encoding(content_type: Option<&str>, accept_other: bool) -> Result<Encoding, BodyError> {
    let Some(ct) = content_type else {
        return Ok(Encoding::Protobuf);
    };
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/x-protobuf")
        || media.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else if accept_other {
        Ok(Encoding::Protobuf)
    } else {
        Err(BodyError::ContentType(ct.to_string()))
    }
}

/// Inflates `body` when `content_encoding` is gzip and the body is gzip (the API server may
/// have inflated it already), refusing more than `max` bytes out.
///
/// # Errors
/// [`BodyError::TooLarge`] over the cap, [`BodyError::Gzip`] for a broken stream.
pub fn inflate<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    max: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, BodyError> {
    let gzip = content_encoding.is_some_and(|e| {
        let e = e.trim();
        e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip")
    });
    if !gzip || !body.starts_with(&[0x1f, 0x8b]) {
        if body.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Gzip(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLarge(max));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Decodes one export request from `body`.
///
/// # Errors
/// [`BodyError::Decode`] when the bytes are not such a message.
pub fn decode<T>(body: &[u8], encoding: Encoding) -> Result<T, BodyError>
where
    T: OtlpRequest,
{
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| BodyError::Decode {
            encoding: "protobuf",
            reason: e.to_string(),
        }),
        Encoding::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        Encoding::Json => T::from_json(body).map_err(|e| BodyError::Decode {
            encoding: "JSON",
            reason: e.to_string(),
        }),
    }
}

/// [`encoding`], [`inflate`] and [`decode`] in one step.
///
/// # Errors
/// The first [`BodyError`].
pub fn read<T>(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    accept_other: bool,
    max: usize,
) -> Result<T, BodyError>
where
    T: OtlpRequest,
{
    let enc = encoding(content_type, accept_other)?;
    let bytes = inflate(body, content_encoding, max)?;
    decode(&bytes, enc)
}
