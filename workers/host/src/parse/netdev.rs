//! `/proc/net/dev`: per-interface traffic counters.

use super::{ParseError, u64_of};

const FILE: &str = "/proc/net/dev";

/// The counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub bytes_recv: u64,
    /// Packets received.
    pub packets_recv: u64,
    /// Receive errors.
    pub err_in: u64,
    /// Received packets dropped.
    pub drop_in: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Transmit errors.
    pub err_out: u64,
    /// Outgoing packets dropped.
    pub drop_out: u64,
}

/// Parses `/proc/net/dev`.
///
/// The two header lines and lines without a `:` are skipped; the name is what precedes
/// the last `:`.
///
/// # Errors
/// [`ParseError::BadLine`] for an interface line with fewer than 12 counters;
/// [`ParseError::BadNumber`] for a counter that is not a number.
pub fn parse_net_dev(text: &str) -> Result<Vec<NetDev>, ParseError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let Some(pos) = line.rfind(':') else { continue };
        let name = line[..pos].trim();
        if name.is_empty() || line.contains('|') {
            continue;
        }
        let f: Vec<&str> = line[pos + 1..].split_ascii_whitespace().collect();
        if f.len() < 12 {
            return Err(ParseError::BadLine {
                file: FILE,
                line: idx + 1,
                reason: format!("{name} has {} counters, expected 16", f.len()),
            });
        }
        let n = |i: usize| u64_of(FILE, name, f[i]);
        out.push(NetDev {
            name: name.to_string(),
            bytes_recv: n(0)?,
            packets_recv: n(1)?,
            err_in: n(2)?,
            drop_in: n(3)?,
            bytes_sent: n(8)?,
            packets_sent: n(9)?,
            err_out: n(10)?,
            drop_out: n(11)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/net_dev");

    #[test]
    fn parses_a_captured_file() {
        let d = parse_net_dev(FIXTURE).unwrap();
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
        let eth0 = &d[3];
        assert_eq!(eth0.bytes_recv, 39_496_812);
        assert_eq!(eth0.packets_recv, 2250);
        assert_eq!(eth0.bytes_sent, 201_089);
        assert_eq!(eth0.packets_sent, 1566);
    }

    #[test]
    fn names_glued_to_counters_and_with_colons_parse() {
        let text = "h\nh\neth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  vlan:1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
        let d = parse_net_dev(text).unwrap();
        assert_eq!(d[0].name, "eth0");
        assert_eq!(d[0].bytes_recv, 1);
        assert_eq!(d[0].drop_out, 12);
        assert_eq!(d[1].name, "vlan:1");
    }

    #[test]
    fn a_short_line_is_an_error_not_a_panic() {
        let e = parse_net_dev("eth0: 1 2 3\n").unwrap_err();
        assert!(matches!(e, ParseError::BadLine { line: 1, .. }), "{e}");
    }
}
