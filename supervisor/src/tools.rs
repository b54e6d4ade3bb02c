//! The everyday `datakit tool` commands: `--parse-lp`, `--default-main-conf`, `--dump-samples`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use dk_proto::lineproto::{self, ChunkDecoder, DecodeOptions, Precision};
use dk_proto::normalize::{self, Limits};
use dk_proto::{Category, Point};

/// Exit code when the input file cannot be read (`EX_NOINPUT`).
const EXIT_NOINPUT: u8 = 66;

fn out(text: &[u8]) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text);
}

fn err(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// What one line-protocol body holds, line by line, as the write API would take it.
#[derive(Debug, Default)]
pub struct LpReport {
    /// Accepted points (normalised) and the line each starts on.
    pub points: Vec<(usize, Point)>,
    /// Fixes normalisation made: line, Datakit's warn type, detail.
    pub warnings: Vec<(usize, &'static str, String)>,
    /// Points normalisation drops: line, why.
    pub dropped: Vec<(usize, String)>,
    /// Lines that are not line protocol: line, column, message.
    pub invalid: Vec<(usize, usize, String)>,
}

/// The 1-based line of the first byte at or after `i` that is neither blank nor in a comment.
fn first_content_line(buf: &[u8], mut i: usize) -> usize {
    loop {
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < buf.len() && buf[i] == b'#' {
            while i < buf.len() && buf[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        break;
    }
    buf[..i.min(buf.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The byte offset just after line `line` (1-based) of `buf`, or its length.
fn after_line(buf: &[u8], line: usize) -> usize {
    buf.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line.saturating_sub(1))
        .map_or(buf.len(), |(i, _)| i + 1)
}

/// Decodes `body` with the write API's decoder (precision auto, time 0 = `now_ns`) and
/// normalises each point for `category` with Datakit's limits; a bad line is recorded and
/// decoding goes on after it, so every bad line is found.
pub fn parse_lp(body: &[u8], category: Category, now_ns: i64) -> LpReport {
    let opts = DecodeOptions::new(Precision::Auto, now_ns);
    let limits = Limits::default();
    let mut report = LpReport::default();
    let (mut base, mut lines_before) = (0, 0);
    while base < body.len() {
        let rest = &body[base..];
        let mut decoder = ChunkDecoder::new(rest, &opts);
        let mut failed = None;
        loop {
            let start = decoder.position();
            match decoder.next_chunk(1, usize::MAX) {
                None => break,
                Some(Ok(points)) => {
                    let line = lines_before + first_content_line(rest, start);
                    for mut p in points {
                        match normalize::normalize(&mut p, category, &limits) {
                            Ok(warns) => {
                                for w in warns {
                                    report.warnings.push((line, w.kind, w.message));
                                }
                                report.points.push((line, p));
                            }
                            Err(warns) => {
                                let why: Vec<String> =
                                    warns.into_iter().map(|w| w.message).collect();
                                report.dropped.push((line, why.join("; ")));
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let Some(e) = failed else { break };
        report
            .invalid
            .push((lines_before + e.line, e.column, e.message));
        base += after_line(rest, e.line);
        lines_before += e.line;
    }
    report
}

/// `datakit tool --parse-lp FILE [--json] [--category C]`.
pub fn parse_lp_cmd(file: &Path, json: bool, category: &str) -> ExitCode {
    let Ok(category) = category.parse::<Category>() else {
        err(&format!(
            "datakit tool --parse-lp: {category:?} is not a category: use e.g. metric, logging, object (or an alias: M, L, O)\n"
        ));
        return ExitCode::from(64);
    };
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            err(&format!(
                "datakit tool --parse-lp: cannot read {}: {e}\n",
                file.display()
            ));
            return ExitCode::from(EXIT_NOINPUT);
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let report = parse_lp(&body, category, now);
    let points: Vec<Point> = report.points.iter().map(|(_, p)| p.clone()).collect();
    if json {
        let mut text = dk_proto::json::encode(&points);
        text.push(b'\n');
        out(&text);
    } else {
        for (line, p) in &report.points {
            let mut text = format!("# line {line}\n").into_bytes();
            lineproto::encode_point(p, &mut text);
            if !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            out(&text);
        }
    }
    let name = file.display();
    let mut problems = String::new();
    for (line, kind, message) in &report.warnings {
        problems.push_str(&format!("{name}:{line}: warning: {kind}: {message}\n"));
    }
    for (line, why) in &report.dropped {
        problems.push_str(&format!("{name}:{line}: dropped: {why}\n"));
    }
    for (line, column, message) in &report.invalid {
        problems.push_str(&format!(
            "{name}:{line}:{column}: invalid line protocol: {message}\n"
        ));
    }
    let series: BTreeSet<(&str, Vec<&(String, String)>)> = points
        .iter()
        .map(|p| {
            let mut tags: Vec<&(String, String)> = p.tags.iter().collect();
            tags.sort();
            (p.name.as_str(), tags)
        })
        .collect();
    let measurements: BTreeSet<&str> = points.iter().map(|p| p.name.as_str()).collect();
    problems.push_str(&format!(
        "Parse {} points OK, with {} measurements and {} time series",
        points.len(),
        measurements.len(),
        series.len()
    ));
    let bad = report.invalid.len() + report.dropped.len();
    let empty = points.is_empty() && bad == 0;
    if empty {
        problems.push_str(
            "; the file holds no point (only blank or comment lines): the write API answers 400\n",
        );
    } else if bad > 0 {
        problems.push_str(&format!(
            "; {} invalid line(s), {} point(s) dropped\n",
            report.invalid.len(),
            report.dropped.len()
        ));
    } else {
        problems.push('\n');
    }
    err(&problems);
    if bad > 0 || empty {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `datakit tool --default-main-conf`: the built-in `datakit.conf`.
pub fn default_main_conf() -> ExitCode {
    out(dk_config::MAIN_CONF_SAMPLE.as_bytes());
    ExitCode::SUCCESS
}

/// `datakit tool --dump-samples DIR`: every input's sample config as `DIR/<input>.conf`.
pub fn dump_samples(dir: &Path) -> ExitCode {
    let written = crate::app::with_config_families(|families| {
        std::fs::create_dir_all(dir)?;
        let mut n = 0;
        for f in families {
            for (input, text) in f.samples() {
                std::fs::write(dir.join(format!("{input}.conf")), text)?;
                n += 1;
            }
        }
        Ok::<usize, std::io::Error>(n)
    });
    match written {
        Ok(n) => {
            err(&format!(
                "wrote {n} input samples to {} (copy one into conf.d/ to enable it)\n",
                dir.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            err(&format!(
                "datakit tool --dump-samples: cannot write to {}: {e}\n",
                dir.display()
            ));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn every_invalid_line_is_found_with_its_line_number_and_good_lines_around_them_are_kept() {
        let body = b"# a comment\n\ncpu,host=a usage=1 1700000000000000000\nbad\nmem used=2i\nm f=tru\n\ndisk free=3i\n";
        let r = parse_lp(body, Category::Metric, NOW);
        let lines: Vec<usize> = r.points.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 5, 8]);
        let names: Vec<&str> = r.points.iter().map(|(_, p)| p.name.as_str()).collect();
        assert_eq!(names, ["cpu", "mem", "disk"]);
        let bad: Vec<usize> = r.invalid.iter().map(|(l, ..)| *l).collect();
        assert_eq!(bad, [4, 6]);
        assert_eq!(
            r.points[1].1.time, NOW,
            "no timestamp: now, as the API does"
        );
    }

    #[test]
    fn normalisation_fixes_are_warnings_and_a_point_left_without_fields_is_dropped() {
        // A metric takes no string field: dropped from the first point, which keeps `f`; the
        // second has nothing left and is dropped, as the write API drops it.
        let body = b"m s=\"x\",f=1i\nm s=\"y\"\n";
        let r = parse_lp(body, Category::Metric, NOW);
        assert_eq!(r.points.len(), 1, "{r:?}");
        assert_eq!(r.points[0].1.fields.len(), 1);
        assert_eq!(r.warnings.len(), 1, "{r:?}");
        assert_eq!(r.warnings[0].0, 1);
        assert_eq!(r.warnings[0].1, "invalid_field_value_type");
        assert_eq!(r.dropped.len(), 1, "{r:?}");
        assert_eq!(r.dropped[0].0, 2);
        // The same body is fine for logging, which takes strings.
        let r = parse_lp(body, Category::Logging, NOW);
        assert_eq!((r.points.len(), r.dropped.len()), (2, 0), "{r:?}");
    }
}
