//! Binding every listening socket of the plan before any worker starts.
//!
//! The supervisor owns the sockets for its whole life: a worker inherits them across exec, and
//! a worker restart never closes a port (the kernel queues datagrams and connections meanwhile).

use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;

use dk_proto::rpc::{InheritedListener, ListenerKind};
use dk_worker::ListenSpec;

/// A socket that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {address} ({kind:?}): {reason}; pick a free port or stop the program that holds it"
)]
pub struct BindError {
    /// The configured address.
    pub address: String,
    /// Transport.
    pub kind: ListenerKind,
    /// Why.
    pub reason: String,
}

/// A bound socket and how the worker finds it.
#[derive(Debug)]
pub struct BoundListener {
    /// The configured address and transport.
    pub spec: ListenSpec,
    /// The socket.
    pub fd: OwnedFd,
}

impl BoundListener {
    /// The description passed to the worker.
    pub fn inherited(&self) -> InheritedListener {
        InheritedListener {
            address: self.spec.address.clone(),
            kind: self.spec.kind,
            fd: self.raw_fd(),
        }
    }

    /// The raw descriptor number.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Turns `tcp://0.0.0.0:9530`, `udp://:8125`, `:8125` or `localhost:9529` into a socket address.
///
/// # Errors
/// A message saying what form is expected.
pub fn resolve(address: &str) -> Result<SocketAddr, String> {
    let without_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    let host_port = if without_scheme.starts_with(':') {
        format!("0.0.0.0{without_scheme}")
    } else {
        without_scheme.to_string()
    };
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("expected host:port, got {address:?} ({e})"))?
        .next()
        .ok_or_else(|| format!("{address:?} resolves to no address"))
}

fn unix_path(address: &str) -> &str {
    address.split_once("://").map_or(address, |(_, rest)| rest)
}

fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Binds one socket.
///
/// # Errors
/// [`BindError`] naming the address.
pub fn bind(spec: &ListenSpec) -> Result<BoundListener, BindError> {
    let fail = |reason: String| BindError {
        address: spec.address.clone(),
        kind: spec.kind,
        reason,
    };
    let fd: OwnedFd = match spec.kind {
        ListenerKind::Tcp => {
            let addr = resolve(&spec.address).map_err(fail)?;
            TcpListener::bind(addr)
                .map_err(|e| fail(e.to_string()))?
                .into()
        }
        ListenerKind::Udp => {
            let addr = resolve(&spec.address).map_err(fail)?;
            UdpSocket::bind(addr)
                .map_err(|e| fail(e.to_string()))?
                .into()
        }
        ListenerKind::UnixDatagram => {
            let path = Path::new(unix_path(&spec.address));
            remove_stale(path).map_err(|e| fail(e.to_string()))?;
            UnixDatagram::bind(path)
                .map_err(|e| fail(e.to_string()))?
                .into()
        }
        ListenerKind::UnixStream => {
            let path = Path::new(unix_path(&spec.address));
            remove_stale(path).map_err(|e| fail(e.to_string()))?;
            UnixListener::bind(path)
                .map_err(|e| fail(e.to_string()))?
                .into()
        }
    };
    Ok(BoundListener {
        spec: spec.clone(),
        fd,
    })
}

/// Binds every socket, returning all failures at once.
///
/// # Errors
/// Every [`BindError`].
pub fn bind_all(specs: &[ListenSpec]) -> Result<Vec<BoundListener>, Vec<BindError>> {
    let mut bound = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        match bind(spec) {
            Ok(b) => bound.push(b),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(bound)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_address_forms_datakit_configs_use() {
        assert_eq!(resolve("udp://0.0.0.0:8125").unwrap().port(), 8125);
        assert_eq!(resolve(":9109").unwrap().to_string(), "0.0.0.0:9109");
        assert_eq!(
            resolve("localhost:9529").unwrap().ip().to_string(),
            "127.0.0.1"
        );
        assert!(resolve("no-port").is_err());
    }

    #[test]
    fn reports_a_busy_port_with_its_address() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap().to_string();
        let err = bind(&ListenSpec {
            address: format!("tcp://{addr}"),
            kind: ListenerKind::Tcp,
        })
        .unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }

    #[test]
    fn binds_tcp_udp_and_unix_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let specs = vec![
            ListenSpec {
                address: "tcp://127.0.0.1:0".into(),
                kind: ListenerKind::Tcp,
            },
            ListenSpec {
                address: "udp://127.0.0.1:0".into(),
                kind: ListenerKind::Udp,
            },
            ListenSpec {
                address: sock.display().to_string(),
                kind: ListenerKind::UnixDatagram,
            },
        ];
        let bound = bind_all(&specs).unwrap();
        assert_eq!(bound.len(), 3);
        assert!(sock.exists());
        assert!(bound.iter().all(|b| b.raw_fd() > 2));
    }
}
