//! Batched datagram receive and send (`recvmmsg`, `sendmmsg`) and readiness polling.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Largest datagram received whole (the UDP maximum); longer Unix datagrams are truncated.
pub const SLOT_SIZE: usize = 64 * 1024;

/// Waits until `fd` is readable or `timeout` passes; `true` when readable.
///
/// # Errors
/// The OS error of `poll` (`Interrupted` included).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so that a sub-millisecond wait does not become a busy 0 ms poll.
    let ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one live, initialised pollfd and the count passed is 1.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// Receives up to `slots` datagrams per call into one reused buffer.
pub struct MultiRecv {
    buf: Box<[u8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// The sender address of each slot (filled by the kernel).
    names: Box<[libc::sockaddr_storage]>,
    received: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into `buf` and `iovs`, which the
// struct owns and never moves or resizes; moving the struct to another thread moves the heap
// allocations they point to along with it, and nothing else aliases them.
unsafe impl Send for MultiRecv {}

impl MultiRecv {
    /// A receiver for `slots` datagrams of up to [`SLOT_SIZE`] bytes each. The buffer is
    /// zero-allocated, so untouched pages cost no memory.
    pub fn new(slots: usize) -> MultiRecv {
        let slots = slots.max(1);
        let mut buf = vec![0u8; slots * SLOT_SIZE].into_boxed_slice();
        let base = buf.as_mut_ptr();
        let iovs: Vec<libc::iovec> = (0..slots)
            .map(|i| libc::iovec {
                // The pointers stay valid: `buf` is a boxed slice that never moves or grows.
                iov_base: base.wrapping_add(i * SLOT_SIZE).cast(),
                iov_len: SLOT_SIZE,
            })
            .collect();
        // SAFETY: mmsghdr is a plain C struct of integers and pointers; all-zero is valid
        // (null name, no control data).
        let mut hdrs: Vec<libc::mmsghdr> =
            (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (h, iov) in hdrs.iter_mut().zip(&iovs) {
            h.msg_hdr.msg_iov = std::ptr::from_ref(iov).cast_mut();
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: sockaddr_storage is a plain C struct of integers; all-zero is valid.
        let names = (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect();
        MultiRecv {
            buf,
            iovs,
            hdrs,
            names,
            received: 0,
        }
    }

    /// Waits for at least one datagram (up to the socket's receive timeout; not at all with
    /// `dont_wait`), then takes every datagram already queued, up to the slot count. Returns
    /// how many were received.
    ///
    /// # Errors
    /// The OS error; `WouldBlock`/`TimedOut` when nothing was received in time.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, dont_wait: bool) -> io::Result<usize> {
        self.received = 0;
        for (h, name) in self.hdrs.iter_mut().zip(self.names.iter_mut()) {
            h.msg_len = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
            h.msg_hdr.msg_namelen = SOCKADDR_STORAGE_LEN;
        }
        let vlen = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: `hdrs` holds `vlen` initialised headers whose single iovec each points into
        // `buf` (SLOT_SIZE bytes, disjoint, alive as long as `self`) and whose name points to
        // its own `names` entry (boxed, never moved, of the length given); `iovs` is not moved or
        // resized after construction, so the iovec pointers stay valid. A null timeout makes
        // the call wait per MSG_WAITFORONE and the socket's SO_RCVTIMEO.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                vlen,
                if dont_wait {
                    libc::MSG_WAITFORONE | libc::MSG_DONTWAIT
                } else {
                    libc::MSG_WAITFORONE
                },
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = usize::try_from(n).unwrap_or(0);
        debug_assert_eq!(self.iovs.len(), self.hdrs.len());
        Ok(self.received)
    }

    /// Datagram `i` of the last receive and whether the kernel truncated it.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], bool)> {
        if i >= self.received {
            return None;
        }
        let h = &self.hdrs[i];
        let len = usize::try_from(h.msg_len).unwrap_or(0).min(SLOT_SIZE);
        let start = i * SLOT_SIZE;
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        Some((&self.buf[start..start + len], truncated))
    }

    /// The sender of datagram `i` of the last receive (an IP socket's peer; `None` for Unix
    /// datagram sockets).
    pub fn source(&self, i: usize) -> Option<std::net::SocketAddr> {
        if i >= self.received {
            return None;
        }
        let name = &self.names[i];
        let len = usize::try_from(self.hdrs[i].msg_hdr.msg_namelen).unwrap_or(0);
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET, length checked) into
                // storage that is large and aligned enough for any socket address.
                let a = unsafe { &*std::ptr::from_ref(name).cast::<libc::sockaddr_in>() };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(std::net::SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a sockaddr_in6 (family AF_INET6, length checked).
                let a = unsafe { &*std::ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(std::net::SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}

/// The size of the sender address buffer of one slot.
#[allow(clippy::cast_possible_truncation)]
const SOCKADDR_STORAGE_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Sends many datagrams per call (`sendmmsg`) on a connected socket (load tools, tests).
pub struct MultiSend {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for MultiSend {
    fn default() -> Self {
        MultiSend::new()
    }
}

impl MultiSend {
    /// An empty sender; its header arrays grow to the largest batch sent.
    pub fn new() -> MultiSend {
        MultiSend {
            iovs: Vec::new(),
            hdrs: Vec::new(),
        }
    }

    /// Sends `datagrams` on the connected socket `fd`; returns how many the kernel took
    /// (fewer than asked when its buffer is full).
    ///
    /// # Errors
    /// The OS error when not even the first datagram could be sent.
    pub fn send(&mut self, fd: BorrowedFd<'_>, datagrams: &[&[u8]]) -> io::Result<usize> {
        self.iovs.clear();
        self.iovs.extend(datagrams.iter().map(|d| libc::iovec {
            iov_base: d.as_ptr().cast_mut().cast(),
            iov_len: d.len(),
        }));
        self.hdrs.clear();
        for iov in &self.iovs {
            // SAFETY: mmsghdr is a plain C struct; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = std::ptr::from_ref(iov).cast_mut();
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let vlen = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: every header points to one iovec of `iovs`, each describing a live
        // datagram slice borrowed for this call; `hdrs` and `iovs` are not touched until the
        // call returns; the kernel only reads the datagrams (sendmmsg does not write them).
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), vlen, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::*;

    #[test]
    fn receives_every_queued_datagram_in_one_call() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for i in 0..5 {
            tx.send_to(
                format!("m{i}:1|c").as_bytes(),
                rx.local_addr().expect("addr"),
            )
            .expect("send");
        }
        let mut r = MultiRecv::new(8);
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = r.recv(rx.as_fd(), false).expect("recv");
            for i in 0..n {
                let (d, truncated) = r.datagram(i).expect("datagram");
                assert!(!truncated);
                got.push(String::from_utf8(d.to_vec()).expect("utf8"));
            }
        }
        assert_eq!(got, vec!["m0:1|c", "m1:1|c", "m2:1|c", "m3:1|c", "m4:1|c"]);
        assert!(r.datagram(5).is_none());
    }

    #[test]
    fn names_the_sender_of_each_datagram() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = rx.local_addr().expect("addr");
        a.send_to(b"a", to).expect("send");
        b.send_to(b"b", to).expect("send");
        let mut r = MultiRecv::new(4);
        let mut got = Vec::new();
        while got.len() < 2 {
            let n = r.recv(rx.as_fd(), false).expect("recv");
            for i in 0..n {
                got.push((r.datagram(i).expect("datagram").0.to_vec(), r.source(i)));
            }
        }
        assert_eq!(got[0], (b"a".to_vec(), a.local_addr().ok()));
        assert_eq!(got[1], (b"b".to_vec(), b.local_addr().ok()));
        assert_eq!(r.source(2), None);
    }

    #[test]
    fn a_receive_timeout_reports_would_block() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut r = MultiRecv::new(2);
        let e = r.recv(rx.as_fd(), false).expect_err("nothing to receive");
        assert!(!wait_readable(rx.as_fd(), Duration::from_millis(5)).expect("poll"));
        let e2 = r.recv(rx.as_fd(), true).expect_err("nothing queued");
        assert_eq!(e2.kind(), io::ErrorKind::WouldBlock);
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn oversized_unix_datagrams_are_flagged_truncated() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        set_send_buffer_large(&a);
        let big = vec![b'x'; SLOT_SIZE + 10];
        a.send(&big).expect("send");
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut r = MultiRecv::new(1);
        assert!(wait_readable(b.as_fd(), Duration::from_secs(2)).expect("poll"));
        assert_eq!(r.recv(b.as_fd(), true).expect("recv"), 1);
        let (d, truncated) = r.datagram(0).expect("datagram");
        assert_eq!(d.len(), SLOT_SIZE);
        assert!(truncated);
    }

    fn set_send_buffer_large(s: &std::os::unix::net::UnixDatagram) {
        let value: libc::c_int = 1 << 20;
        // SAFETY: test helper; valid socket and a live c_int of the passed size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    #[test]
    fn sends_a_batch_in_one_call() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let mut s = MultiSend::new();
        let sent = s
            .send(tx.as_fd(), &[b"a:1|c", b"b:2|c", b"c:3|c"])
            .expect("sendmmsg");
        assert_eq!(sent, 3);
        let mut r = MultiRecv::new(4);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = r.recv(rx.as_fd(), false).expect("recv");
            got.extend(
                (0..n)
                    .filter_map(|i| r.datagram(i))
                    .map(|(d, _)| d.to_vec()),
            );
        }
        assert_eq!(
            got,
            vec![b"a:1|c".to_vec(), b"b:2|c".to_vec(), b"c:3|c".to_vec()]
        );
    }
}
