//! Facts about the host the config refers to: the OS host name and the first non-loopback IPv4.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// Where host facts come from (the real host in production, fixed values in tests).
pub trait HostProbe {
    /// The operating system's host name.
    fn os_hostname(&self) -> Option<String>;
    /// The host's main IPv4 address (not loopback), as text.
    fn local_ip(&self) -> Option<String>;
}

/// Reads the facts from the running system, without sending any packet.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemProbe;

impl HostProbe for SystemProbe {
    fn os_hostname(&self) -> Option<String> {
        let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        from_proc.or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .map(|s| s.to_string_lossy().trim().to_string())
                .filter(|s| !s.is_empty())
        })
    }

    fn local_ip(&self) -> Option<String> {
        routed_ipv4()
            .or_else(first_interface_ipv4)
            .map(|ip| ip.to_string())
    }
}

/// The source address the kernel would use to reach a public address. Connecting a UDP socket
/// only selects a route; nothing is sent.
fn routed_ipv4() -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // TEST-NET-1 (RFC 5737): never answered, routed like any public address.
    sock.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match sock.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// The first IPv4 address of an interface that is up and not loopback.
fn first_interface_ipv4() -> Option<Ipv4Addr> {
    use nix::net::if_::InterfaceFlags;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if !ifa.flags.contains(InterfaceFlags::IFF_UP)
            || ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        {
            return None;
        }
        let ip = ifa.address?.as_sockaddr_in()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_probe_reads_a_host_name() {
        let name = SystemProbe.os_hostname();
        assert!(name.is_some_and(|n| !n.is_empty() && !n.contains('\n')));
    }

    #[test]
    fn system_probe_ip_is_not_loopback_when_found() {
        if let Some(ip) = SystemProbe.local_ip() {
            let parsed: Ipv4Addr = ip.parse().expect("an IPv4 address");
            assert!(!parsed.is_loopback());
        }
    }
}
