//! Checks shared by the fuzz targets and the stable corpus test (`tests/corpus.rs`).
#![allow(dead_code)]

use dk_input_graphite::line::{LineFramer, MAX_LINE, Tag, parse_line, split_lines};

/// Frames `data` in chunks whose sizes cycle through `sizes` and returns the non-empty lines
/// and the count of over-long lines.
fn framed(data: &[u8], sizes: &[usize]) -> (Vec<Vec<u8>>, usize) {
    let mut framer = LineFramer::new(MAX_LINE);
    let mut lines = Vec::new();
    let mut too_long = 0;
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        too_long += framer.feed(chunk, |l| lines.push(l.to_vec()));
        rest = after;
        i += 1;
    }
    too_long += framer.finish(|l| lines.push(l.to_vec()));
    lines.retain(|l| !l.is_empty());
    assert_eq!(framer.pending(), 0, "finish leaves nothing behind");
    (lines, too_long)
}

/// The line layer: datagram splitting and stream framing agree whatever the read sizes, and
/// every line parses to a sane sample or an error.
pub fn check_lines(data: &[u8]) {
    let whole = framed(data, &[usize::MAX]);
    let sizes: Vec<usize> = data
        .iter()
        .take(8)
        .map(|b| usize::from(*b % 17) + 1)
        .collect();
    let chunked = framed(data, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(whole, chunked, "framing depends on read boundaries");

    let split: Vec<Vec<u8>> = split_lines(data)
        .filter(|l| !l.is_empty() && l.len() <= MAX_LINE)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(split, whole.0, "datagram and stream splitting disagree");

    for line in &whole.0 {
        check_line(line);
    }
}

/// One line parses to a sample whose parts are well-formed, or to an error with a message.
pub fn check_line(line: &[u8]) {
    match parse_line(line) {
        Ok(None) => assert!(line.iter().all(|b| b" \t\r\n\x0b\x0c".contains(b))),
        Ok(Some(s)) => {
            assert!(!s.name.is_empty());
            assert!(!s.name.iter().any(|b| b.is_ascii_whitespace() || *b == b';'));
            assert!(!s.value.is_nan());
            for tag in s.tags() {
                match tag {
                    Tag::Pair(k, v) => {
                        assert!(!k.is_empty() && !v.is_empty());
                        assert!(!k.contains(&b';') && !v.contains(&b';') && !k.contains(&b'='));
                    }
                    Tag::Invalid(t) => assert!(!t.contains(&b';')),
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A processor with glob, regex and drop rules, as a real config would have.
fn processor() -> dk_input_graphite::process::Processor {
    use dk_input_graphite::mapper::{Mapper, RuleConfig};
    let rule = |m: &str, t: Option<&str>, name: &str, labels: &[(&str, &str)]| RuleConfig {
        match_text: m.to_string(),
        match_type: t.map(str::to_string),
        name: name.to_string(),
        measurement_name: Some("mapped".to_string()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..RuleConfig::default()
    };
    let rules = vec![
        rule(
            "test.dispatcher.*.*.*",
            None,
            "events_$3",
            &[("proc", "$1"), ("act", "${2}")],
        ),
        rule("*.signup.*.*", None, "signup", &[("job", "${1}_server")]),
        rule(
            r"servers\.(.*)\.net\.([a-z0-9-]+)\.(.*)",
            Some("regex"),
            "net_${3}",
            &[("host", "$1")],
        ),
        RuleConfig {
            action_type: Some("drop".to_string()),
            ..rule("noisy.*", None, "x", &[])
        },
    ];
    let mapper = Mapper::new(&rules).unwrap_or_else(|p| panic!("{p:?}"));
    dk_input_graphite::process::Processor::new(mapper, false, vec![("dc".into(), "eu".into())])
}

/// The whole pipeline: every non-blank line becomes a point, a parse error or a drop, and
/// every point is well-formed.
pub fn check_process(data: &[u8]) {
    use dk_input_graphite::process::Counts;
    use dk_proto::Value;
    let p = processor();
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let mut framer = LineFramer::new(MAX_LINE);
    let mut each = |l: &[u8]| {
        let _ = p.line(l, 1_700_000_000_000_000_000, &mut out, &mut counts);
    };
    framer.feed(data, &mut each);
    framer.finish(&mut each);
    assert_eq!(
        counts.lines,
        counts.parse_errors + counts.dropped + counts.points,
        "{counts:?}"
    );
    assert_eq!(counts.points as usize, out.len());
    for point in &out {
        assert!(
            point.name == "graphite" || point.name == "mapped",
            "{point:?}"
        );
        let (last, value) = point.fields.last().expect("a field");
        assert_eq!(last, "timestamp");
        assert_eq!(value, &Value::I(point.time));
        assert!(point.fields.len() <= 2);
        for (k, v) in &point.fields {
            assert!(!k.is_empty());
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{k}"
            );
            if let Value::F(f) = v {
                assert!(!f.is_nan());
            }
        }
        assert!(point.get_tag("dc").is_some());
    }
}
