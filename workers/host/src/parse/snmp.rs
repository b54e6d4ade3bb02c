//! `/proc/net/snmp`: system-wide protocol counters (the `net` input reports TCP and UDP).

use super::{ParseError, i64_of};

const FILE: &str = "/proc/net/snmp";

/// The counters of one protocol, in the kernel's column order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtoCounters {
    /// Lower-case protocol name (`tcp`, `udp`).
    pub protocol: String,
    /// `(counter name as the kernel spells it, value)`.
    pub stats: Vec<(String, i64)>,
}

impl ProtoCounters {
    /// The value of a counter, by its lower-case name.
    pub fn get(&self, lower_name: &str) -> Option<i64> {
        self.stats
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(lower_name))
            .map(|(_, v)| *v)
    }
}

/// Parses the header/value line pairs of `/proc/net/snmp` for the `wanted` protocols
/// (lower-case, e.g. `["tcp", "udp"]`); other protocols (`ip`, `udplite`...) are skipped.
///
/// # Errors
/// [`ParseError::BadLine`] when a line has no `:`, a header has no value line, or the
/// column counts differ; [`ParseError::BadNumber`] for a value that is not a number.
pub fn parse_snmp(text: &str, wanted: &[&str]) -> Result<Vec<ProtoCounters>, ParseError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header = lines[i];
        let bad = |line: usize, reason: String| ParseError::BadLine {
            file: FILE,
            line: line + 1,
            reason,
        };
        let (proto, names) = header
            .split_once(':')
            .ok_or_else(|| bad(i, "expected \"Proto: ...\"".to_string()))?;
        let proto = proto.to_ascii_lowercase();
        if !wanted.contains(&proto.as_str()) {
            i += 2;
            continue;
        }
        let values_line = lines
            .get(i + 1)
            .ok_or_else(|| bad(i, format!("{proto} header without a value line")))?;
        let (_, values) = values_line
            .split_once(':')
            .ok_or_else(|| bad(i + 1, "expected \"Proto: ...\"".to_string()))?;
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if names.len() != values.len() {
            return Err(bad(
                i + 1,
                format!(
                    "{proto} has {} names but {} values",
                    names.len(),
                    values.len()
                ),
            ));
        }
        let mut stats = Vec::with_capacity(names.len());
        for (n, v) in names.iter().zip(&values) {
            stats.push((n.to_string(), i64_of(FILE, n, v)?));
        }
        out.push(ProtoCounters {
            protocol: proto,
            stats,
        });
        i += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/net_snmp");

    #[test]
    fn parses_tcp_and_udp_from_a_captured_file() {
        let p = parse_snmp(FIXTURE, &["tcp", "udp"]).unwrap();
        assert_eq!(p.len(), 2, "udplite must not match udp");
        assert_eq!(p[0].protocol, "tcp");
        assert_eq!(p[0].get("maxconn"), Some(-1));
        assert_eq!(p[0].get("rtomax"), Some(120_000));
        assert_eq!(p[0].get("insegs"), Some(2202));
        assert_eq!(p[0].stats.len(), 15);
        assert_eq!(p[1].protocol, "udp");
        assert_eq!(p[1].get("indatagrams"), Some(73));
        assert_eq!(p[1].get("memerrors"), Some(0));
    }

    #[test]
    fn mismatched_columns_are_an_error() {
        let e = parse_snmp("Tcp: A B\nTcp: 1\n", &["tcp"]).unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 2, .. }), "{e}");
    }

    #[test]
    fn a_header_without_values_is_an_error() {
        let e = parse_snmp("Udp: A B\n", &["udp"]).unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 1, .. }), "{e}");
    }

    #[test]
    fn unwanted_protocols_are_skipped_even_when_odd() {
        let p = parse_snmp("Ip: A\nIp: x\nUdp: InDatagrams\nUdp: 5\n", &["udp"]).unwrap();
        assert_eq!(p[0].get("indatagrams"), Some(5));
    }
}
