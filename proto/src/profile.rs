//! Profiles as points, and the `multipart/form-data` they travel in to Dataway.
//!
//! A profile (what the pyroscope input accepts) is one [`crate::Category::Profiling`] point:
//! its tags, the `event.json` Datakit sends to Dataway's profiling upload as the string field
//! [`EVENT_FIELD`], then every attachment as a binary field named after its file.
//! [`upload_body`] turns such a point back into Datakit's multipart upload (attachments, then
//! `event.json`); [`parse`] reads multipart bodies (the pyroscope input's uploads, the fake
//! Dataway's checks). A small, bounded reader and writer (RFC 7578) over byte slices: no I/O,
//! no copies of part bodies, limits on parts and header sizes.

use memchr::memmem;

use crate::{Point, Value};

/// The string field of a profiling point holding `event.json`.
pub const EVENT_FIELD: &str = "event.json";
/// Dataway's profiling upload path.
pub const UPLOAD_PATH: &str = "/v1/upload/profiling";

/// Why a point is not a profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No `event.json` string field.
    #[error("the profiling point {0:?} has no {EVENT_FIELD} string field")]
    NoEvent(String),
    /// No binary field.
    #[error("the profiling point {0:?} has no attachment (binary field)")]
    NoAttachment(String),
}

/// Datakit's profiling upload of a profile point: the multipart body (each attachment as a
/// file part named after its field, then `event.json` as the part `event`) and its boundary.
///
/// # Errors
/// [`ProfileError`] when the point is not a profile.
pub fn upload_body(point: &Point, seed: u64) -> Result<(String, Vec<u8>), ProfileError> {
    let event = point
        .fields
        .iter()
        .find_map(|(k, v)| match v {
            Value::S(s) if k == EVENT_FIELD => Some(s.as_bytes()),
            _ => None,
        })
        .ok_or_else(|| ProfileError::NoEvent(point.name.clone()))?;
    let mut parts: Vec<FilePart<'_>> = point
        .fields
        .iter()
        .filter_map(|(k, v)| match v {
            Value::D(d) => Some(FilePart {
                name: k,
                filename: k,
                data: d,
            }),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        return Err(ProfileError::NoAttachment(point.name.clone()));
    }
    parts.push(FilePart {
        name: "event",
        filename: EVENT_FIELD,
        data: event,
    });
    let boundary = boundary_for(&parts, seed);
    let size = parts.iter().map(|p| p.data.len() + 200).sum::<usize>() + 64;
    let mut out = Vec::with_capacity(size);
    write(&boundary, &parts, &mut out);
    Ok((boundary, out))
}

/// Parts one body may hold.
pub const MAX_PARTS: usize = 64;
/// Bytes of one part's header block.
pub const MAX_HEADER_BLOCK: usize = 8 * 1024;
/// Longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY: usize = 70;

/// Why a multipart body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// `Content-Type` has no usable boundary.
    #[error("the multipart Content-Type has no boundary (1 to 70 characters)")]
    NoBoundary,
    /// The first delimiter is missing.
    #[error("the body does not start with the multipart boundary")]
    NoFirstBoundary,
    /// A part's headers do not end, or are too long.
    #[error("part {0} has no end of headers within {MAX_HEADER_BLOCK} bytes")]
    Headers(usize),
    /// A part does not end with a delimiter.
    #[error("part {0} is not closed by the boundary")]
    Unterminated(usize),
    /// Too many parts.
    #[error("the body has more than {MAX_PARTS} parts")]
    TooManyParts,
    /// A part without `Content-Disposition: form-data; name=...`.
    #[error("part {0} has no Content-Disposition form-data name")]
    NoName(usize),
}

/// One part, borrowing from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field name.
    pub name: String,
    /// The file name, if any.
    pub filename: Option<String>,
    /// `Content-Type` of the part, if any.
    pub content_type: Option<String>,
    /// The part's bytes.
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data; boundary=...` Content-Type.
///
/// # Errors
/// [`MultipartError::NoBoundary`].
pub fn boundary_of(content_type: &str) -> Result<String, MultipartError> {
    let b = param(content_type, "boundary").ok_or(MultipartError::NoBoundary)?;
    if b.is_empty() || b.len() > MAX_BOUNDARY || b.contains(['\r', '\n']) {
        return Err(MultipartError::NoBoundary);
    }
    Ok(b)
}

/// Parameter `key` of a header value such as `form-data; name="x"; filename="y"` (case
/// insensitive key, quotes and `\` escapes removed).
pub fn param(header: &str, key: &str) -> Option<String> {
    let mut rest = header.split_once(';')?.1;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let k = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if k.eq_ignore_ascii_case(key) {
            return Some(value);
        }
        rest = next;
    }
}

/// The parts of `body` delimited by `boundary`.
///
/// # Errors
/// [`MultipartError`] for a malformed body.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The first delimiter: at the very start, or after a preamble line.
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        memmem::find(body, delim.as_bytes())
            .map(|i| i + delim.len())
            .ok_or(MultipartError::NoFirstBoundary)?
    };
    let mut parts = Vec::new();
    let finder = memmem::Finder::new(delim.as_bytes());
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let n = parts.len();
        if n == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        // Transport padding, then the line break after the delimiter.
        let skip = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let rest = &rest[skip..];
        let Some(rest) = rest.strip_prefix(b"\r\n") else {
            return Err(MultipartError::Unterminated(n));
        };
        let header_start = pos + skip + 2;
        let window = &rest[..rest.len().min(MAX_HEADER_BLOCK + 4)];
        let (headers, data_start) = if rest.starts_with(b"\r\n") {
            ("", header_start + 2)
        } else {
            let end = memmem::find(window, b"\r\n\r\n").ok_or(MultipartError::Headers(n))?;
            let text = std::str::from_utf8(&rest[..end]).map_err(|_| MultipartError::Headers(n))?;
            (text, header_start + end + 4)
        };
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                let v = v.trim();
                if v.split(';')
                    .next()
                    .is_some_and(|d| d.trim().eq_ignore_ascii_case("form-data"))
                {
                    name = param(v, "name");
                    filename = param(v, "filename");
                }
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        let name = name.ok_or(MultipartError::NoName(n))?;
        let data_len = finder
            .find(&body[data_start..])
            .ok_or(MultipartError::Unterminated(n))?;
        parts.push(Part {
            name,
            filename,
            content_type,
            data: &body[data_start..data_start + data_len],
        });
        pos = data_start + data_len + delim.len();
    }
}

/// One file part to write.
#[derive(Debug, Clone, Copy)]
pub struct FilePart<'a> {
    /// The form field name.
    pub name: &'a str,
    /// The file name.
    pub filename: &'a str,
    /// The bytes.
    pub data: &'a [u8],
}

/// Writes `parts` as a `multipart/form-data` body with `boundary` (each part a file with
/// `Content-Type: application/octet-stream`, as Go's `CreateFormFile` writes them).
pub fn write(boundary: &str, parts: &[FilePart<'_>], out: &mut Vec<u8>) {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(
            format!(
                "\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                escape(p.name),
                escape(p.filename)
            )
            .as_bytes(),
        );
        out.extend_from_slice(p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// A boundary that does not occur in any of `parts` (30 hex digits from `seed`, changed until
/// it is absent), as Go's random 30-byte boundaries.
pub fn boundary_for(parts: &[FilePart<'_>], seed: u64) -> String {
    let mut x = seed | 1;
    loop {
        // xorshift64*: cheap, and only needs to avoid the data.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let b = format!("{v:016x}{:014x}", v.rotate_left(17) >> 8);
        if !parts
            .iter()
            .any(|p| memmem::find(p.data, b.as_bytes()).is_some())
        {
            return b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as Go's `mime/multipart` writes it (what Pyroscope's Go client sends).
    const GO_BODY: &[u8] = b"--b0undary\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n\x1f\x8b\x08\x00pprof\r\nbytes\r\n--b0undary\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"sample_type_config.json\"\r\nContent-Type: application/octet-stream\r\n\r\n{\"cpu\":{\"units\":\"samples\"}}\r\n--b0undary--\r\n";

    #[test]
    fn reads_the_parts_go_writes_with_names_files_and_exact_bytes() {
        let b = boundary_of("multipart/form-data; boundary=b0undary").unwrap();
        let parts = parse(GO_BODY, &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "profile");
        assert_eq!(parts[0].filename.as_deref(), Some("profile.pprof"));
        assert_eq!(
            parts[0].content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(parts[0].data, b"\x1f\x8b\x08\x00pprof\r\nbytes");
        assert_eq!(parts[1].name, "sample_type_config");
        assert_eq!(parts[1].data, b"{\"cpu\":{\"units\":\"samples\"}}");
    }

    #[test]
    fn what_it_writes_it_reads_back() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let parts = [
            FilePart {
                name: "auto.pprof",
                filename: "auto.pprof",
                data: &data,
            },
            FilePart {
                name: "event",
                filename: "event.json",
                data: b"{\"a\":1}",
            },
        ];
        let boundary = boundary_for(&parts, 7);
        assert_eq!(boundary.len(), 30);
        let mut out = Vec::new();
        write(&boundary, &parts, &mut out);
        let back = parse(&out, &boundary).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].data, &data[..]);
        assert_eq!(back[1].filename.as_deref(), Some("event.json"));
        assert_eq!(back[1].data, b"{\"a\":1}");
    }

    #[test]
    fn boundaries_come_quoted_or_bare_and_bad_ones_are_refused() {
        assert_eq!(
            boundary_of("multipart/form-data; charset=utf-8; boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert_eq!(
            boundary_of("multipart/form-data;boundary=xyz").unwrap(),
            "xyz"
        );
        assert_eq!(
            boundary_of("multipart/form-data"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary_of(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            param("form-data; name=\"a\\\"b\"; filename=c.txt", "filename").as_deref(),
            Some("c.txt")
        );
        assert_eq!(
            param("form-data; name=\"a\\\"b\"; filename=c.txt", "name").as_deref(),
            Some("a\"b")
        );
    }

    #[test]
    fn a_profile_point_becomes_datakits_upload_with_event_json_last() {
        let pprof: Vec<u8> = (0..=255u8).collect();
        let point = Point::new("pyroscope", 1)
            .tag("service", "app")
            .field(EVENT_FIELD, Value::S("{\"format\":\"pprof\"}".into()))
            .field("auto.pprof", Value::D(pprof.clone()));
        let (boundary, body) = upload_body(&point, 3).unwrap();
        let parts = parse(&body, &boundary).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].filename.as_deref()),
            ("auto.pprof", Some("auto.pprof"))
        );
        assert_eq!(parts[0].data, &pprof[..]);
        assert_eq!(
            (parts[1].name.as_str(), parts[1].filename.as_deref()),
            ("event", Some(EVENT_FIELD))
        );
        assert_eq!(parts[1].data, b"{\"format\":\"pprof\"}");
        let no_event = Point::new("p", 1).field("a", Value::D(vec![1]));
        assert!(matches!(
            upload_body(&no_event, 1),
            Err(ProfileError::NoEvent(_))
        ));
        let no_file = Point::new("p", 1).field(EVENT_FIELD, Value::S("{}".into()));
        assert!(matches!(
            upload_body(&no_file, 1),
            Err(ProfileError::NoAttachment(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert_eq!(parse(b"junk", "b"), Err(MultipartError::NoFirstBoundary));
        assert_eq!(
            parse(
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ndata",
                "b"
            ),
            Err(MultipartError::Unterminated(0))
        );
        assert_eq!(
            parse(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "b"),
            Err(MultipartError::NoName(0))
        );
        assert_eq!(parse(b"--b\r\nX: y", "b"), Err(MultipartError::Headers(0)));
        let many: Vec<u8> = (0..=MAX_PARTS)
            .flat_map(|_| b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n".to_vec())
            .chain(b"--b--".to_vec())
            .collect();
        assert_eq!(parse(&many, "b"), Err(MultipartError::TooManyParts));
        // A preamble before the first delimiter is allowed; an empty form is no parts.
        let p = parse(
            b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--",
            "b",
        )
        .unwrap();
        assert_eq!(p[0].data, b"1");
        assert_eq!(parse(b"--b--\r\n", "b").unwrap(), Vec::new());
    }
}
