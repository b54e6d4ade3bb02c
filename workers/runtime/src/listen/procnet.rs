//! Kernel-side drop counts of our UDP sockets, read from `/proc/net/udp{,6}` by socket inode.

use std::os::fd::RawFd;

/// The inode of the socket behind `fd` (`/proc/self/fd/<fd>` → `socket:[<inode>]`).
pub fn socket_inode(fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    parse_socket_link(link.to_str()?)
}

/// Parses `socket:[12345]`.
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// What `/proc/net/udp` says about one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSocketStats {
    /// Bytes waiting in the receive queue.
    pub rx_queue: u64,
    /// Datagrams the kernel dropped (receive buffer full, bad checksum...).
    pub drops: u64,
}

/// Finds the row of socket `inode` in the text of `/proc/net/udp` or `/proc/net/udp6`.
///
/// Columns: `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref
/// pointer drops`; queues are hexadecimal, the rest decimal.
pub fn find_udp_socket(table: &str, inode: u64) -> Option<UdpSocketStats> {
    for row in table.lines().skip(1) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        if cols.len() < 13 || cols[9].parse::<u64>().ok() != Some(inode) {
            continue;
        }
        let rx_queue = cols[4]
            .split_once(':')
            .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
            .unwrap_or(0);
        let drops = cols[cols.len() - 1].parse().ok()?;
        return Some(UdpSocketStats { rx_queue, drops });
    }
    None
}

/// Watches one UDP socket's kernel drop count.
#[derive(Debug)]
pub struct UdpDrops {
    inode: u64,
    seen: u64,
}

impl UdpDrops {
    /// Watches the socket behind `fd`; `None` when its inode cannot be read. Counting starts
    /// from 0: the supervisor binds the socket and holds it for the agent's life, so the first
    /// poll reports every drop since the socket was bound, across worker restarts.
    pub fn new(fd: RawFd) -> Option<UdpDrops> {
        Some(UdpDrops {
            inode: socket_inode(fd)?,
            seen: 0,
        })
    }

    /// Datagrams the kernel dropped since the last poll (0 when the table cannot be read).
    pub fn poll(&mut self) -> u64 {
        let Some(stats) = udp_socket_stats(self.inode) else {
            return 0;
        };
        let delta = stats.drops.saturating_sub(self.seen);
        self.seen = stats.drops;
        delta
    }
}

/// Reads the stats of UDP socket `inode` (IPv4 table first, then IPv6).
pub fn udp_socket_stats(inode: u64) -> Option<UdpSocketStats> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        find_udp_socket(&text, inode)
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  180: 00000000:1FBD 00000000:0000 07 00000000:00000A00 00:00000000 00000000     0        0 123456 2 0000000000000000 42
  181: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 777 2 0000000000000000 0
";

    #[test]
    fn finds_drops_and_queue_of_a_socket_by_inode() {
        assert_eq!(
            find_udp_socket(TABLE, 123_456),
            Some(UdpSocketStats {
                rx_queue: 0xA00,
                drops: 42
            })
        );
        assert_eq!(
            find_udp_socket(TABLE, 777),
            Some(UdpSocketStats {
                rx_queue: 0,
                drops: 0
            })
        );
        assert_eq!(find_udp_socket(TABLE, 1), None);
        assert_eq!(find_udp_socket("", 1), None);
    }

    #[test]
    fn parses_socket_links() {
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[4242]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
    }

    #[test]
    fn finds_a_live_socket_in_proc() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let inode = socket_inode(s.as_raw_fd()).expect("inode");
        let stats = udp_socket_stats(inode).expect("our socket is listed");
        assert_eq!(stats.drops, 0);
    }

    #[test]
    fn counts_datagrams_the_kernel_drops_on_a_full_socket() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        crate::listen::set_recv_buffer(std::os::fd::AsFd::as_fd(&rx), 4096).expect("rcvbuf");
        let mut drops = UdpDrops::new(rx.as_raw_fd()).expect("inode");
        assert_eq!(drops.poll(), 0);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Nobody reads: a few KiB of buffer overflows long before 2000 datagrams.
        for _ in 0..2000 {
            tx.send_to(&[0u8; 512], rx.local_addr().expect("addr"))
                .expect("send");
        }
        let dropped = drops.poll();
        assert!(dropped > 1000, "{dropped}");
        assert_eq!(drops.poll(), 0, "the next poll reports only new drops");
    }
}
