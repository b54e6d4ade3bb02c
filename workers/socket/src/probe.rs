//! The probes: resolve a destination, then time a TCP connect or test a UDP port natively.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

/// Why a probe failed; the text goes to the last-error report of the target.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The resolver returned an error.
    #[error("DNS lookup of {host:?} failed: {source}; check the host name and the resolver")]
    Resolve {
        /// Host name looked up.
        host: String,
        /// Resolver error.
        source: io::Error,
    },
    /// The resolver answered with no address.
    #[error("DNS lookup of {host:?} returned no address; check the host name")]
    NoAddress {
        /// Host name looked up.
        host: String,
    },
    /// The resolver did not answer in time.
    #[error(
        "DNS lookup of {host:?} did not finish within {timeout}; check the resolver or raise the timeout"
    )]
    ResolveTimeout {
        /// Host name looked up.
        host: String,
        /// The configured timeout, Go-formatted.
        timeout: String,
    },
    /// The TCP connect failed (refused, unreachable...).
    #[error(
        "TCP connect to {addr} failed: {source}; check that the service listens and is reachable"
    )]
    Connect {
        /// Resolved address.
        addr: SocketAddr,
        /// Socket error.
        source: io::Error,
    },
    /// The TCP connect did not finish in time.
    #[error(
        "TCP connect to {addr} did not finish within {timeout}; check firewalls or raise tcp_timeout"
    )]
    ConnectTimeout {
        /// Resolved address.
        addr: SocketAddr,
        /// The configured timeout, Go-formatted.
        timeout: String,
    },
    /// An ICMP port-unreachable answered a UDP probe.
    #[error("UDP port {addr} refused the probe (ICMP port unreachable): nothing listens there")]
    UdpRefused {
        /// Resolved address.
        addr: SocketAddr,
    },
    /// Any other socket error of a UDP probe (host or network unreachable...).
    #[error("UDP probe to {addr} failed: {source}; check routing and firewalls")]
    Udp {
        /// Resolved address.
        addr: SocketAddr,
        /// Socket error.
        source: io::Error,
    },
}

/// A resolved destination and the time the lookup took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// First address the resolver returned (or the IP literal).
    pub addr: SocketAddr,
    /// Lookup time; zero for IP literals.
    pub dns: Duration,
}

/// Resolves `host` (first address of the system resolver), giving up at `deadline`.
///
/// # Errors
/// [`ProbeError::Resolve`], [`ProbeError::NoAddress`] or [`ProbeError::ResolveTimeout`].
pub async fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    budget: Duration,
) -> Result<Resolved, ProbeError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Resolved {
            addr: SocketAddr::new(ip, port),
            dns: Duration::ZERO,
        });
    }
    let start = Instant::now();
    let found = timeout_at(deadline, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| ProbeError::ResolveTimeout {
            host: host.to_string(),
            timeout: dk_proto::duration::format(budget),
        })?
        .map_err(|source| ProbeError::Resolve {
            host: host.to_string(),
            source,
        })?
        .next();
    let dns = start.elapsed();
    let addr = found.ok_or_else(|| ProbeError::NoAddress {
        host: host.to_string(),
    })?;
    Ok(Resolved { addr, dns })
}

/// What a successful TCP probe measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTiming {
    /// DNS lookup time (zero for IP literals).
    pub dns: Duration,
    /// Time from starting the connect to the established connection.
    pub connect: Duration,
}

impl TcpTiming {
    /// `response_time`: connect time in µs, at least 1 so success never reads as 0.
    pub fn response_time_us(&self) -> i64 {
        micros(self.connect).max(1)
    }

    /// `response_time_with_dns`: DNS plus connect time in µs.
    pub fn response_time_with_dns_us(&self) -> i64 {
        micros(self.dns + self.connect).max(1)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Resolves `host` and connects to the first address, all within `timeout`; the connection
/// is closed at once.
///
/// # Errors
/// A resolve error, [`ProbeError::Connect`] or [`ProbeError::ConnectTimeout`].
pub async fn probe_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpTiming, ProbeError> {
    let deadline = Instant::now() + timeout;
    let Resolved { addr, dns } = resolve(host, port, deadline, timeout).await?;
    let start = Instant::now();
    let stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ProbeError::ConnectTimeout {
            addr,
            timeout: dk_proto::duration::format(timeout),
        })?
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let connect = start.elapsed();
    drop(stream);
    Ok(TcpTiming { dns, connect })
}

/// How a UDP probe sends and waits: `probes` datagrams, one every `spacing`; after each send
/// it waits up to `spacing` for a reply or an ICMP error, so the whole window is
/// `probes × spacing`, cut short by the `udp_timeout` deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPlan {
    /// Datagrams to send (at least 1).
    pub probes: u32,
    /// Time between datagrams, and the wait after the last one.
    pub spacing: Duration,
}

impl UdpPlan {
    /// The plan the input uses: 3 datagrams 250 ms apart, a 750 ms window.
    pub const DEFAULT: UdpPlan = UdpPlan {
        probes: 3,
        spacing: Duration::from_millis(250),
    };
}

/// The payload of each probe datagram (one byte, as `nc -uz` sends).
pub const UDP_PAYLOAD: &[u8] = b"X";

/// Why a UDP probe counts as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// A datagram came back.
    Replied,
    /// No reply and no error within the window (open, or silently filtered).
    NoError,
}

/// Resolves `host`, then sends probe datagrams from a connected UDP socket per `plan`: any
/// reply is success, an ICMP port-unreachable (surfacing as `ECONNREFUSED` on a later send or
/// receive) or another socket error is failure, and silence for the whole window is success.
///
/// # Errors
/// A resolve error, [`ProbeError::UdpRefused`] or [`ProbeError::Udp`].
pub async fn probe_udp(
    host: &str,
    port: u16,
    timeout: Duration,
    plan: UdpPlan,
) -> Result<UdpVerdict, ProbeError> {
    let deadline = Instant::now() + timeout;
    let Resolved { addr, .. } = resolve(host, port, deadline, timeout).await?;
    let udp_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::ConnectionRefused {
            ProbeError::UdpRefused { addr }
        } else {
            ProbeError::Udp { addr, source }
        }
    };
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await.map_err(udp_err)?;
    socket.connect(addr).await.map_err(udp_err)?;
    let mut buf = [0u8; 512];
    for _ in 0..plan.probes.max(1) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        socket.send(UDP_PAYLOAD).await.map_err(udp_err)?;
        let slot_end = (now + plan.spacing).min(deadline);
        match timeout_at(slot_end, socket.recv(&mut buf)).await {
            Ok(Ok(_)) => return Ok(UdpVerdict::Replied),
            Ok(Err(e)) => return Err(udp_err(e)),
            Err(_) => {}
        }
    }
    Ok(UdpVerdict::NoError)
}
