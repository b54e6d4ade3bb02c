//! Per-process files: `/proc/<pid>/stat`, `status`, `io`, `cmdline`, `cgroup`, the
//! `/proc/net/tcp{,6}` socket tables (listening ports by socket inode) and `/etc/passwd`.
//!
//! The parsers borrow from the text they are given and allocate only where the result is
//! kept (the passwd map, the socket map), so a scan of thousands of processes reuses one
//! buffer per file.

use std::collections::HashMap;

use super::ParseError;

const STAT: &str = "/proc/<pid>/stat";
const STATUS: &str = "/proc/<pid>/status";

/// What the host_processes input takes from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PidStat<'a> {
    /// `comm`: the executable name, at most 15 bytes (between the outer parentheses).
    pub comm: &'a str,
    /// `state`: one letter (`R`, `S`, `D`, `Z`, `T`, `t`, `I`...).
    pub state: u8,
    /// `minflt`.
    pub minflt: u64,
    /// `cminflt`.
    pub cminflt: u64,
    /// `majflt`.
    pub majflt: u64,
    /// `cmajflt`.
    pub cmajflt: u64,
    /// `utime` in clock ticks.
    pub utime: u64,
    /// `stime` in clock ticks.
    pub stime: u64,
    /// `num_threads`.
    pub num_threads: i64,
    /// `starttime`: clock ticks after boot.
    pub starttime: u64,
    /// `vsize` in bytes.
    pub vsize: u64,
    /// `rss` in pages.
    pub rss_pages: u64,
    /// `delayacct_blkio_ticks` (0 on kernels without it).
    pub blkio_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The name may hold spaces and parentheses: it runs from
/// the first `(` to the last `)`.
///
/// # Errors
/// [`ParseError`] when the layout or a number is wrong.
pub fn parse_pid_stat(text: &str) -> Result<PidStat<'_>, ParseError> {
    let bad = |reason: &str| ParseError::BadLine {
        file: STAT,
        line: 1,
        reason: reason.to_string(),
    };
    let open = text
        .find('(')
        .ok_or_else(|| bad("no '(' before the name"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| bad("no ')' after the name"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let comm = &text[open + 1..close];
    // Fields after the name, numbered as in proc(5) from 3 (`state`).
    let mut rest = text[close + 1..].split_ascii_whitespace();
    let mut at = 3usize;
    let mut out = PidStat {
        comm,
        ..PidStat::default()
    };
    let num = |v: &str, key: &'static str| -> Result<u64, ParseError> {
        v.parse::<u64>().map_err(|_| ParseError::BadNumber {
            file: STAT,
            key: key.to_string(),
            value: v.to_string(),
        })
    };
    for v in rest.by_ref() {
        match at {
            3 => out.state = v.bytes().next().unwrap_or(b'?'),
            10 => out.minflt = num(v, "minflt")?,
            11 => out.cminflt = num(v, "cminflt")?,
            12 => out.majflt = num(v, "majflt")?,
            13 => out.cmajflt = num(v, "cmajflt")?,
            14 => out.utime = num(v, "utime")?,
            15 => out.stime = num(v, "stime")?,
            20 => {
                out.num_threads = v.parse().map_err(|_| ParseError::BadNumber {
                    file: STAT,
                    key: "num_threads".into(),
                    value: v.to_string(),
                })?;
            }
            22 => out.starttime = num(v, "starttime")?,
            23 => out.vsize = num(v, "vsize")?,
            24 => out.rss_pages = num(v, "rss")?,
            // Columns Datakit reads, but not this one: a parse failure is not worth a point.
            42 => {
                out.blkio_ticks = v.parse().unwrap_or(0);
                break;
            }
            _ => {}
        }
        at += 1;
    }
    if at < 25 {
        return Err(ParseError::Missing {
            file: STAT,
            what: format!("column {at} (the file has fewer than 24 columns)"),
        });
    }
    Ok(out)
}

/// What the host_processes input takes from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PidStatus {
    /// The real user id (first column of `Uid:`).
    pub uid: Option<u32>,
    /// `Threads:`.
    pub threads: Option<i64>,
    /// `voluntary_ctxt_switches:`.
    pub voluntary: Option<i64>,
    /// `nonvoluntary_ctxt_switches:`.
    pub nonvoluntary: Option<i64>,
}

/// Parses the lines of `/proc/<pid>/status` the input needs; other lines are skipped
/// without being split.
///
/// # Errors
/// [`ParseError::BadNumber`] when one of those lines has no number.
pub fn parse_pid_status(text: &str) -> Result<PidStatus, ParseError> {
    let mut out = PidStatus::default();
    let num = |key: &str, v: &str| -> Result<i64, ParseError> {
        let first = v.split_ascii_whitespace().next().unwrap_or("");
        first.parse().map_err(|_| ParseError::BadNumber {
            file: STATUS,
            key: key.to_string(),
            value: v.trim().to_string(),
        })
    };
    for line in text.lines() {
        let Some((key, v)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" => {
                let n = num(key, v)?;
                out.uid = u32::try_from(n).ok();
            }
            "Threads" => out.threads = Some(num(key, v)?),
            "voluntary_ctxt_switches" => out.voluntary = Some(num(key, v)?),
            "nonvoluntary_ctxt_switches" => out.nonvoluntary = Some(num(key, v)?),
            _ => {}
        }
    }
    Ok(out)
}

/// `/proc/<pid>/io` counters, as gopsutil's `IOCounters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PidIo {
    /// `syscr`.
    pub syscr: u64,
    /// `syscw`.
    pub syscw: u64,
    /// `read_bytes`.
    pub read_bytes: u64,
    /// `write_bytes`.
    pub write_bytes: u64,
}

/// Parses `/proc/<pid>/io`; lines it does not know or cannot read are skipped.
pub fn parse_pid_io(text: &str) -> PidIo {
    let mut out = PidIo::default();
    for line in text.lines() {
        let Some((key, v)) = line.split_once(':') else {
            continue;
        };
        let Ok(n) = v.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "syscr" => out.syscr = n,
            "syscw" => out.syscw = n,
            "read_bytes" => out.read_bytes = n,
            "write_bytes" => out.write_bytes = n,
            _ => {}
        }
    }
    out
}

/// The command line as gopsutil joins it: the NUL-separated arguments, empty ones
/// dropped, joined by one space. Appends to `out` (cleared first); bytes that are not
/// UTF-8 become U+FFFD.
pub fn join_cmdline(raw: &[u8], out: &mut String) {
    out.clear();
    for arg in raw.split(|b| *b == 0).filter(|a| !a.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(arg));
    }
}

/// The process name as gopsutil's `Name()`: `comm` unless the kernel truncated it (15
/// bytes or more), then the base name of the first argument when it starts with `comm`,
/// else the whole first argument.
pub fn process_name<'a>(comm: &'a str, raw_cmdline: &'a [u8]) -> std::borrow::Cow<'a, str> {
    if comm.len() < 15 {
        return comm.into();
    }
    let first = raw_cmdline.split(|b| *b == 0).next().unwrap_or(&[]);
    if first.is_empty() {
        return comm.into();
    }
    let first = String::from_utf8_lossy(first);
    let base = first.rsplit('/').next().unwrap_or("");
    if base.starts_with(comm) {
        base.to_string().into()
    } else {
        first
    }
}

/// gopsutil's state names for the one-letter state of `/proc/<pid>/stat`.
pub fn state_name(state: u8) -> &'static str {
    match state {
        b'A' => "daemon",
        b'D' | b'U' => "blocked",
        b'E' => "detached",
        b'I' => "idle",
        b'L' => "lock",
        b'O' => "orphan",
        b'R' => "running",
        b'S' => "sleep",
        b'T' | b't' => "stop",
        b'W' => "wait",
        b'Y' => "system",
        b'Z' => "zombie",
        _ => "",
    }
}

/// Whether `id` has the shape Datakit accepts as a container id: exactly 64 of word
/// characters, `+`, `,`, `-` and `.`.
fn is_container_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b',' | b'-' | b'.'))
}

/// The container id in `/proc/<pid>/cgroup`, read as Datakit does: from the path of the
/// first line only, either the part after the last `-` of a `*.scope` segment
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`) or the last segment
/// (`/docker/<id>`, `/kubepods/.../<id>`), when it has the shape of an id.
pub fn container_id(cgroup: &str) -> Option<&str> {
    let first = cgroup.lines().next()?.trim();
    let mut items = first.split(':');
    let (_, _, path) = (items.next()?, items.next()?, items.next()?);
    if items.next().is_some() {
        return None;
    }
    if let Some(scope) = path
        .split('/')
        .find_map(|seg| seg.strip_suffix(".scope"))
        .and_then(|s| s.rsplit_once('-').map(|(_, id)| id))
        .filter(|id| is_container_id(id))
    {
        return Some(scope);
    }
    path.rsplit('/').next().filter(|id| is_container_id(id))
}

/// Appends the listening TCP sockets of one `/proc/net/tcp` or `/proc/net/tcp6` table to
/// `out` in table order, as `(inode, local port)`. Only state `0A` (LISTEN) counts, as in
/// Datakit.
pub fn listening_sockets(table: &str, out: &mut Vec<(u64, u16)>) {
    for line in table.lines().skip(1) {
        let mut cols = line.split_ascii_whitespace();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(_), Some(local), Some(_), Some(st)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            continue;
        };
        if st != "0A" {
            continue;
        }
        let Some(inode) = cols.nth(5).and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        let Some(port) = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if inode != 0 {
            out.push((inode, port));
        }
    }
}

/// The socket inode of an fd link target (`socket:[12345]`).
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// `/etc/passwd` as `uid -> user name`; the first entry of a uid wins, as in getpwuid.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut cols = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>() {
            out.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// Runs every parser of this module on `data` and checks what they return stays within
/// it (the fuzz target and the corpus replay call this).
///
/// # Panics
/// When a parser returns something that did not come from `data`.
pub fn check_all(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = parse_pid_stat(&text) {
        assert!(text.contains(s.comm));
    }
    let _ = parse_pid_status(&text);
    let _ = parse_pid_io(&text);
    let mut joined = String::new();
    join_cmdline(data, &mut joined);
    assert!(!joined.contains('\0'));
    let comm = text.get(..text.len().min(15)).unwrap_or("");
    let name = process_name(comm, data);
    assert!(name.len() <= data.len().max(comm.len()) * 3);
    if let Some(id) = container_id(&text) {
        assert_eq!(id.len(), 64);
        assert!(text.contains(id));
    }
    let mut sockets = Vec::new();
    listening_sockets(&text, &mut sockets);
    assert!(sockets.iter().all(|(inode, _)| *inode != 0));
    let _ = socket_inode(data);
    for name in parse_passwd(&text).values() {
        assert!(!name.contains(':') && !name.contains('\n'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_LINE: &str = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1500 300 7 2 \
        250 125 3 4 20 0 6 0 987654 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 \
        0 0 0 17 3 0 0 11 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn stat_columns_are_read_after_a_name_with_spaces_and_parentheses() {
        let s = parse_pid_stat(STAT_LINE).unwrap();
        assert_eq!(s.comm, "my (odd) name");
        assert_eq!(s.state, b'S');
        assert_eq!(
            (s.minflt, s.cminflt, s.majflt, s.cmajflt),
            (1500, 300, 7, 2)
        );
        assert_eq!((s.utime, s.stime), (250, 125));
        assert_eq!(s.num_threads, 6);
        assert_eq!(s.starttime, 987_654);
        assert_eq!(s.vsize, 123_456_789);
        assert_eq!(s.rss_pages, 2048);
        assert_eq!(s.blkio_ticks, 11);
    }

    #[test]
    fn a_truncated_stat_line_is_an_error_naming_the_missing_column() {
        let e = parse_pid_stat("1 (init) S 0 1 1 0 -1 4194560 10 20").unwrap_err();
        assert!(e.to_string().contains("fewer than 24 columns"), "{e}");
        assert!(parse_pid_stat("no name here").is_err());
        let e = parse_pid_stat(&STAT_LINE.replace(" 250 ", " x ")).unwrap_err();
        assert!(e.to_string().contains("utime"), "{e}");
    }

    #[test]
    fn status_gives_uid_threads_and_context_switches() {
        let text = "Name:\tsleep\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n\
                    Gid:\t1000\t1000\t1000\t1000\nThreads:\t3\n\
                    voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t2\n";
        let s = parse_pid_status(text).unwrap();
        assert_eq!(s.uid, Some(1000));
        assert_eq!(s.threads, Some(3));
        assert_eq!((s.voluntary, s.nonvoluntary), (Some(17), Some(2)));
        assert!(parse_pid_status("Threads:\tmany\n").is_err());
    }

    #[test]
    fn io_counters_skip_lines_they_cannot_read() {
        let io = parse_pid_io(
            "rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: x\n",
        );
        assert_eq!(
            io,
            PidIo {
                syscr: 3,
                syscw: 4,
                read_bytes: 4096,
                write_bytes: 0
            }
        );
    }

    #[test]
    fn cmdline_is_joined_by_spaces_without_empty_arguments() {
        let mut s = String::from("stale");
        join_cmdline(b"python3\0-m\0\0http.server\0", &mut s);
        assert_eq!(s, "python3 -m http.server");
        join_cmdline(b"", &mut s);
        assert_eq!(s, "");
    }

    #[test]
    fn long_names_come_from_the_first_argument_as_gopsutil_does() {
        assert_eq!(process_name("sleep", b"/bin/sleep\x0030\0"), "sleep");
        assert_eq!(
            process_name("dk-input-host-w", b"/usr/bin/dk-input-host-worker\0--x\0"),
            "dk-input-host-worker"
        );
        assert_eq!(
            process_name("kworker/0:1-eve", b"renamed-by-prctl\0"),
            "renamed-by-prctl"
        );
        assert_eq!(process_name("kworker/0:1-eve", b""), "kworker/0:1-eve");
    }

    #[test]
    fn state_letters_map_to_gopsutil_names() {
        assert_eq!(state_name(b'S'), "sleep");
        assert_eq!(state_name(b'R'), "running");
        assert_eq!(state_name(b'Z'), "zombie");
        assert_eq!(state_name(b'D'), "blocked");
        assert_eq!(state_name(b'I'), "idle");
        assert_eq!(state_name(b't'), "stop");
        assert_eq!(state_name(b'Y'), "system");
        assert_eq!(state_name(b'X'), "");
    }

    #[test]
    fn container_ids_come_from_docker_containerd_and_kubepods_cgroups() {
        let id = "3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
        assert_eq!(
            container_id(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some(id)
        );
        assert_eq!(
            container_id(&format!(
                "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope\n"
            )),
            Some(id)
        );
        assert_eq!(
            container_id(&format!("12:pids:/docker/{id}\n11:cpu:/docker/{id}\n")),
            Some(id)
        );
        assert_eq!(
            container_id(&format!("0::/kubepods/burstable/pod-x/{id}\n")),
            Some(id)
        );
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(container_id("0::/\n"), None);
        assert_eq!(container_id(""), None);
        // Only the first line counts, as in Datakit.
        assert_eq!(
            container_id(&format!("1:name=x:/\n0::/docker/{id}\n")),
            None
        );
    }

    #[test]
    fn only_listening_tcp_sockets_are_mapped_to_their_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1\n";
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n";
        let mut m = Vec::new();
        listening_sockets(table, &mut m);
        listening_sockets(table6, &mut m);
        assert_eq!(m, [(31337, 8080), (4242, 22)]);
    }

    #[test]
    fn captured_files_parse() {
        let s = parse_pid_stat(include_str!("../../testdata/pid_stat")).unwrap();
        assert_eq!(s.comm, "cp");
        assert_eq!((s.state, s.num_threads, s.starttime), (b'R', 1, 2_918_825));
        assert_eq!((s.vsize, s.rss_pages), (4_141_056, 528));
        let st = parse_pid_status(include_str!("../../testdata/pid_status")).unwrap();
        assert_eq!(st.uid, Some(0));
        assert_eq!(st.threads, Some(1));
        assert!(st.voluntary.is_some() && st.nonvoluntary.is_some());
        let mut l = Vec::new();
        listening_sockets(include_str!("../../testdata/net_tcp"), &mut l);
        listening_sockets(include_str!("../../testdata/net_tcp6"), &mut l);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0], (640, 0x07E8));
    }

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode(b"socket:[31337]"), Some(31337));
        assert_eq!(socket_inode(b"pipe:[31337]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn passwd_maps_uids_to_the_first_name() {
        let m = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# c\nbad\nalias:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n",
        );
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(m.len(), 2);
    }
}
