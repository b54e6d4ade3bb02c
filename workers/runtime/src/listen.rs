//! Turning the sockets inherited from the supervisor into std sockets an input owns.
//!
//! The supervisor binds every port and passes the descriptors across exec
//! (`WorkerConfig::listeners`). An input asks for its address; it gets a *duplicate* of the
//! descriptor, so the original stays open for the worker's whole life (a reconfigure builds new
//! inputs on the same ports) and dropping an input never closes the port.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use dk_proto::rpc::{InheritedListener, ListenerKind};

use crate::InputContext;

pub mod procnet;

/// Why an inherited socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The supervisor passed no socket for this address.
    #[error(
        "no inherited socket for {0}; the supervisor binds the addresses the family declares in Family::listeners"
    )]
    Missing(String),
    /// The socket is of another kind than asked for.
    #[error("the inherited socket for {address} is {got:?}, not {want:?}")]
    WrongKind {
        /// The address.
        address: String,
        /// What it is.
        got: ListenerKind,
        /// What was asked for.
        want: ListenerKind,
    },
    /// Duplicating the descriptor failed.
    #[error("cannot use the inherited socket for {address} (fd {fd}): {source}")]
    Dup {
        /// The address.
        address: String,
        /// The descriptor.
        fd: i32,
        /// The OS error.
        source: io::Error,
    },
}

fn dup(l: &InheritedListener, want: ListenerKind) -> Result<OwnedFd, ListenError> {
    if l.kind != want {
        return Err(ListenError::WrongKind {
            address: l.address.clone(),
            got: l.kind,
            want,
        });
    }
    // SAFETY: the supervisor passed `l.fd` open across exec for this worker's whole life and
    // the runtime never closes it; we only borrow it long enough to duplicate it (F_DUPFD_CLOEXEC).
    let borrowed = unsafe { BorrowedFd::borrow_raw(l.fd) };
    borrowed
        .try_clone_to_owned()
        .map_err(|source| ListenError::Dup {
            address: l.address.clone(),
            fd: l.fd,
            source,
        })
}

fn find<'a>(ctx: &'a InputContext, address: &str) -> Result<&'a InheritedListener, ListenError> {
    ctx.listener(address)
        .ok_or_else(|| ListenError::Missing(address.to_string()))
}

/// The UDP socket bound for `address`, non-blocking (ready for tokio).
///
/// # Errors
/// [`ListenError`] when there is no such socket or it is not UDP.
pub fn udp(ctx: &InputContext, address: &str) -> Result<std::net::UdpSocket, ListenError> {
    let s = std::net::UdpSocket::from(dup(find(ctx, address)?, ListenerKind::Udp)?);
    s.set_nonblocking(true).map_err(|source| ListenError::Dup {
        address: address.into(),
        fd: -1,
        source,
    })?;
    Ok(s)
}

/// Every UDP socket bound for `address` (several when the spec asked for `SO_REUSEPORT`
/// sockets), non-blocking.
///
/// # Errors
/// [`ListenError`] when there is no such socket or one is not UDP.
pub fn udp_all(ctx: &InputContext, address: &str) -> Result<Vec<std::net::UdpSocket>, ListenError> {
    let mut out = Vec::new();
    for l in ctx.listeners.iter().filter(|l| l.address == address) {
        let s = std::net::UdpSocket::from(dup(l, ListenerKind::Udp)?);
        s.set_nonblocking(true).map_err(|source| ListenError::Dup {
            address: address.into(),
            fd: l.fd,
            source,
        })?;
        out.push(s);
    }
    if out.is_empty() {
        return Err(ListenError::Missing(address.to_string()));
    }
    Ok(out)
}

/// The listening TCP socket bound for `address`, non-blocking (ready for tokio).
///
/// # Errors
/// [`ListenError`] when there is no such socket or it is not TCP.
pub fn tcp(ctx: &InputContext, address: &str) -> Result<std::net::TcpListener, ListenError> {
    let s = std::net::TcpListener::from(dup(find(ctx, address)?, ListenerKind::Tcp)?);
    s.set_nonblocking(true).map_err(|source| ListenError::Dup {
        address: address.into(),
        fd: -1,
        source,
    })?;
    Ok(s)
}

/// The Unix datagram socket bound for `address`, non-blocking (ready for tokio).
///
/// # Errors
/// [`ListenError`] when there is no such socket or it is not a Unix datagram socket.
pub fn unix_datagram(
    ctx: &InputContext,
    address: &str,
) -> Result<std::os::unix::net::UnixDatagram, ListenError> {
    let s = std::os::unix::net::UnixDatagram::from(dup(
        find(ctx, address)?,
        ListenerKind::UnixDatagram,
    )?);
    s.set_nonblocking(true).map_err(|source| ListenError::Dup {
        address: address.into(),
        fd: -1,
        source,
    })?;
    Ok(s)
}

/// Sets `SO_RCVBUF` and returns the size the kernel reports afterwards (Linux doubles the
/// request for its bookkeeping and caps it at `net.core.rmem_max`). When the cap bites and the
/// process may (`CAP_NET_ADMIN`, as a root agent has), `SO_RCVBUFFORCE` sets it past the cap,
/// so `read_buffer_size` works without a sysctl change.
///
/// # Errors
/// The OS error of `setsockopt`/`getsockopt`.
pub fn set_recv_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    set_int_option(fd, libc::SO_RCVBUF, bytes)?;
    let got = recv_buffer(fd)?;
    if got < bytes && set_int_option(fd, libc::SO_RCVBUFFORCE, bytes).is_ok() {
        return recv_buffer(fd);
    }
    Ok(got)
}

/// Applies a configured `read_buffer_size` to a socket (0 leaves the kernel default; a larger
/// buffer already set is kept) and logs
/// what the kernel did not grant: a warning for a size the operator chose, an info line for a
/// default (`is_default`), which is a wish rather than a setting.
pub fn apply_read_buffer(
    fd: BorrowedFd<'_>,
    bytes: usize,
    is_default: bool,
    input: &str,
    listener: &str,
) {
    // Never shrink: a larger buffer was set on purpose (the supervisor raises it while a binary
    // swap leaves the socket unread), and shrinking it under a backlog drops new datagrams.
    if bytes == 0 || recv_buffer(fd).is_ok_and(|have| have >= bytes) {
        return;
    }
    match set_recv_buffer(fd, bytes) {
        Ok(got) if got < bytes && is_default => tracing::info!(
            input,
            listener,
            "the receive buffer is {got} bytes (net.core.rmem_max); raise it to {bytes} for bursts above ~100k datagrams/s"
        ),
        Ok(got) if got < bytes => tracing::warn!(
            input,
            listener,
            "read_buffer_size {bytes} was capped by the kernel to {got}; raise net.core.rmem_max"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(input, listener, "cannot set read_buffer_size: {e}"),
    }
}

fn set_int_option(fd: BorrowedFd<'_>, option: libc::c_int, value: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is a valid open socket for the duration of the borrow; the option value
    // points to a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The socket's current `SO_RCVBUF` as the kernel reports it.
///
/// # Errors
/// The OS error of `getsockopt`.
pub fn recv_buffer(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is a valid open socket; `value` and `len` are live, writable and `len`
    // holds the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::Emitter;

    #[tokio::test]
    async fn an_inherited_udp_socket_is_duplicated_and_the_original_stays_open() {
        let original = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = original.local_addr().unwrap();
        let (emitter, _rx) = Emitter::channel(1);
        let (mut ctx, _, _) = InputContext::for_test(emitter);
        ctx.listeners = vec![InheritedListener {
            address: "udp://x".into(),
            kind: ListenerKind::Udp,
            fd: original.as_raw_fd(),
        }];
        let mine = udp(&ctx, "udp://x").unwrap();
        assert_ne!(mine.as_raw_fd(), original.as_raw_fd());
        drop(mine);
        // The port is still ours: a second duplicate receives what is sent to it.
        let again = tokio::net::UdpSocket::from_std(udp(&ctx, "udp://x").unwrap()).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"hi", addr).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = again.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert!(matches!(
            tcp(&ctx, "udp://x"),
            Err(ListenError::WrongKind { .. })
        ));
        assert!(matches!(udp(&ctx, "udp://y"), Err(ListenError::Missing(_))));
    }

    #[test]
    fn every_socket_of_an_address_is_handed_out() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (emitter, _rx) = Emitter::channel(1);
        let (mut ctx, _, _) = InputContext::for_test(emitter);
        ctx.listeners = [("udp://x", &a), ("udp://other", &other), ("udp://x", &b)]
            .into_iter()
            .map(|(address, s)| InheritedListener {
                address: address.into(),
                kind: ListenerKind::Udp,
                fd: s.as_raw_fd(),
            })
            .collect();
        let mine = udp_all(&ctx, "udp://x").unwrap();
        let ports: Vec<u16> = mine
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(
            ports,
            vec![
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port()
            ]
        );
        assert!(matches!(
            udp_all(&ctx, "udp://y"),
            Err(ListenError::Missing(_))
        ));
    }

    #[test]
    fn sets_the_receive_buffer_past_rmem_max_when_privileged() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let got = set_recv_buffer(rx.as_fd(), 256 * 1024).unwrap();
        assert_eq!(got, recv_buffer(rx.as_fd()).unwrap());
        assert!(got >= 256 * 1024, "{got}");
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(212_992);
        let want = rmem_max * 4;
        let got = set_recv_buffer(rx.as_fd(), want).unwrap();
        // CAP_NET_ADMIN (bit 12) in the effective set allows SO_RCVBUFFORCE.
        let net_admin = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| {
                let hex = t
                    .lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))?
                    .trim()
                    .to_string();
                u64::from_str_radix(&hex, 16).ok()
            })
            .is_some_and(|caps| caps & (1 << 12) != 0);
        if net_admin {
            assert!(got >= want, "forced past rmem_max {rmem_max}: {got}");
        } else {
            assert!(got <= 2 * rmem_max, "capped at rmem_max {rmem_max}: {got}");
        }
    }
}
