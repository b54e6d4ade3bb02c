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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::{TcpListener, UdpSocket};

    use super::*;

    const SHORT: UdpPlan = UdpPlan {
        probes: 3,
        spacing: Duration::from_millis(100),
    };

    /// A loopback port with nothing bound to it (bound once, then released).
    async fn closed_tcp_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        port
    }

    async fn closed_udp_port() -> u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = s.local_addr().expect("addr").port();
        drop(s);
        port
    }

    #[tokio::test]
    async fn tcp_probe_to_an_open_port_measures_a_plausible_connect_time() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let timing = probe_tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .expect("open port");
        assert_eq!(timing.dns, Duration::ZERO);
        assert!(timing.response_time_us() > 0);
        assert!(
            timing.connect < Duration::from_secs(1),
            "{:?}",
            timing.connect
        );
        assert_eq!(
            timing.response_time_with_dns_us(),
            timing.response_time_us()
        );
    }

    #[tokio::test]
    async fn tcp_probe_to_a_closed_port_fails_with_connect_error() {
        let port = closed_tcp_port().await;
        let err = probe_tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .expect_err("closed");
        match err {
            ProbeError::Connect { addr, source } => {
                assert_eq!(addr.port(), port);
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn tcp_probe_resolves_localhost_and_times_the_lookup_separately() {
        let first = tokio::net::lookup_host(("localhost", 0))
            .await
            .expect("localhost resolves")
            .next()
            .expect("an address");
        let l = TcpListener::bind((first.ip(), 0)).await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let timing = probe_tcp("localhost", port, Duration::from_secs(5))
            .await
            .expect("open");
        assert!(timing.dns > Duration::ZERO);
        assert!(timing.response_time_with_dns_us() >= timing.response_time_us());
    }

    #[tokio::test]
    async fn resolve_failure_names_the_host() {
        let err = probe_tcp("no-such-host.invalid", 80, Duration::from_secs(5))
            .await
            .expect_err("unresolvable");
        assert!(
            matches!(&err, ProbeError::Resolve { host, .. } | ProbeError::NoAddress { host } | ProbeError::ResolveTimeout { host, .. } if host == "no-such-host.invalid"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn udp_probe_succeeds_when_the_peer_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = server.local_addr().expect("addr").port();
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            server.send_to(&buf[..n], from).await.expect("send");
            buf[..n].to_vec()
        });
        let verdict = probe_udp("127.0.0.1", port, Duration::from_secs(5), SHORT).await;
        assert_eq!(verdict.expect("reply"), UdpVerdict::Replied);
        assert_eq!(echo.await.expect("echo task"), UDP_PAYLOAD.to_vec());
    }

    #[tokio::test]
    async fn udp_probe_succeeds_when_a_bound_port_stays_silent() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = server.local_addr().expect("addr").port();
        let verdict = probe_udp("127.0.0.1", port, Duration::from_secs(5), SHORT).await;
        assert_eq!(verdict.expect("no error"), UdpVerdict::NoError);
        let mut buf = [0u8; 16];
        let (n, _) = server
            .try_recv_from(&mut buf)
            .expect("probe datagram queued");
        assert_eq!(&buf[..n], UDP_PAYLOAD);
    }

    #[tokio::test]
    async fn udp_probe_fails_when_the_port_is_closed() {
        let port = closed_udp_port().await;
        let err = probe_udp("127.0.0.1", port, Duration::from_secs(5), SHORT)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, ProbeError::UdpRefused { addr } if addr.port() == port),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn udp_probe_window_is_cut_short_by_the_timeout() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = server.local_addr().expect("addr").port();
        let plan = UdpPlan {
            probes: 3,
            spacing: Duration::from_secs(10),
        };
        let start = Instant::now();
        let verdict = probe_udp("127.0.0.1", port, Duration::from_millis(100), plan).await;
        assert_eq!(verdict.expect("no error"), UdpVerdict::NoError);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
