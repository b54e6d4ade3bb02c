//! Checks shared by the fuzz target and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use dk_input_otel::config;
use dk_input_otel::receiver::{Receiver, Signal};
use dk_worker::Telemetry;
use dk_worker::http::HttpRequest;

/// The first byte picks the signal, the content type and gzip; the rest is the body. The
/// answer is 200 with points of the signal's category, or 400/413 with none; every point has
/// a name and (spans) the ids and `resource`.
pub fn check_body(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let signal = match sel % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    };
    let content_type = match (sel / 3) % 4 {
        0 => "application/x-protobuf",
        1 => "application/json",
        2 => "application/json; charset=utf-8",
        _ => "text/plain",
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if sel & 0x80 != 0 {
        headers.push(("content-encoding".into(), "gzip".into()));
    }
    let mut cfg = config::parse("[grpc]\nmax_payload = 262144\n").expect("a valid config");
    cfg.options.log_max_runes = 64;
    let receiver = Receiver::new(cfg, &Telemetry::default());
    let answer = receiver.http(
        signal,
        &HttpRequest {
            query: String::new(),
            headers,
            body: body.to_vec(),
        },
    );
    match answer.status {
        200 => {
            assert_eq!(answer.points.len(), 1);
            assert_eq!(answer.points[0].0, signal.category());
            for p in &answer.points[0].1 {
                assert!(!p.name.is_empty());
                if signal == Signal::Traces {
                    assert!(p.get_field("trace_id").is_some());
                    assert!(p.get_field("resource").is_some());
                    assert!(p.get_tag("span_type").is_some());
                }
            }
        }
        400 | 413 => {
            assert!(answer.points.is_empty());
            assert!(!answer.body.is_empty(), "a refusal says why");
        }
        other => panic!("unexpected status {other}"),
    }
}
