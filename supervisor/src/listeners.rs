//! Binding every listening socket of the plan before any worker starts.
//!
//! The supervisor owns the sockets for its whole life: a worker inherits them across exec, and
//! a worker restart never closes a port (the kernel queues datagrams and connections meanwhile).
//!
//! Unix sockets get mode [`UNIX_SOCKET_MODE`] (the agent's user and group may send; nobody
//! else) and the files the supervisor created are removed when their listener is dropped (a
//! clean stop, a reload that drops the address), unless another program has replaced them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use dk_proto::rpc::{InheritedListener, ListenerKind};
use dk_worker::ListenSpec;
use socket2::{Domain, Socket, Type};

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

/// Mode of the Unix socket files the supervisor binds: read and write for the agent's user
/// and group, nothing for others (Datakit makes its StatsD socket world-writable, 0722).
pub const UNIX_SOCKET_MODE: u32 = 0o660;

/// The sockets bound for one listen spec and how the worker finds them.
#[derive(Debug)]
pub struct BoundListener {
    /// The configured address and transport.
    pub spec: ListenSpec,
    /// The sockets (more than one for `SO_REUSEPORT` UDP).
    pub fds: Vec<OwnedFd>,
    /// The socket file this listener created (Unix sockets), held only to remove it on drop.
    _created: Option<CreatedSocket>,
}

/// A Unix socket file we bound, identified by device and inode so that a file another program
/// put at the same path later is never removed.
#[derive(Debug)]
struct CreatedSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl CreatedSocket {
    fn record(path: &Path) -> Option<CreatedSocket> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(CreatedSocket {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for CreatedSocket {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "Cannot remove the socket file; delete it by hand.");
        }
    }
}

impl BoundListener {
    /// The descriptions passed to the worker: one per socket, all under the spec's address.
    pub fn inherited(&self) -> impl Iterator<Item = InheritedListener> + '_ {
        self.fds.iter().map(|fd| InheritedListener {
            address: self.spec.address.clone(),
            kind: self.spec.kind,
            fd: fd.as_raw_fd(),
        })
    }
}

impl BoundListener {
    /// A listener from sockets inherited across an exec (the previous binary bound them).
    pub fn adopt(spec: &ListenSpec, fds: Vec<OwnedFd>) -> BoundListener {
        let created = matches!(
            spec.kind,
            ListenerKind::UnixDatagram | ListenerKind::UnixStream
        )
        .then(|| CreatedSocket::record(Path::new(unix_path(&spec.address))))
        .flatten();
        BoundListener {
            spec: spec.clone(),
            fds,
            _created: created,
        }
    }

    /// Raises the receive buffer of its datagram sockets to at least `bytes` (SO_RCVBUFFORCE
    /// when privileged), so datagrams that arrive while no worker reads them — during a binary
    /// swap — wait in the kernel instead of being dropped. The buffer is a cap, not an
    /// allocation; the next worker applies its configured `read_buffer_size` again.
    pub fn hold_datagrams(&self, bytes: usize) {
        use std::os::fd::AsFd as _;
        if !matches!(
            self.spec.kind,
            ListenerKind::Udp | ListenerKind::UnixDatagram
        ) {
            return;
        }
        for fd in &self.fds {
            let have = dk_worker::listen::recv_buffer(fd.as_fd()).unwrap_or(0);
            if have < bytes
                && let Err(e) = dk_worker::listen::set_recv_buffer(fd.as_fd(), bytes)
            {
                tracing::warn!(address = %self.spec.address, error = %e, "Cannot raise the receive buffer for the handover; datagrams may be dropped meanwhile.");
            }
        }
    }

    /// The sockets, for handing over to the next binary: a Unix socket file stays in place.
    pub fn into_fds(mut self) -> Vec<OwnedFd> {
        if let Some(c) = self._created.take() {
            std::mem::forget(c);
        }
        std::mem::take(&mut self.fds)
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

/// Which IP families an address asks for: `udp4://`/`tcp4://` IPv4 only, `udp6://`/`tcp6://`
/// IPv6 only, anything else both (as Go's `net.Listen` does for a wildcard address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IpFamily {
    Both,
    V4,
    V6,
}

fn ip_family(address: &str) -> IpFamily {
    match address.split_once("://").map(|(scheme, _)| scheme) {
        Some(s) if s.ends_with('4') => IpFamily::V4,
        Some(s) if s.ends_with('6') => IpFamily::V6,
        _ => IpFamily::Both,
    }
}

/// Where to bind an IP address: a `:port` address means every address, on IPv6 and IPv4 at
/// once where the host has IPv6 (like Go), else IPv4; any other form binds what it names.
fn bind_targets(address: &str) -> Result<Vec<(SocketAddr, Option<bool>)>, String> {
    let without_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    if let Some(port) = without_scheme.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("expected host:port, got {address:?}"))?;
        let v4 = (SocketAddr::from(([0, 0, 0, 0], port)), None);
        let v6 = |only: bool| (SocketAddr::from(([0u16; 8], port)), Some(only));
        return Ok(match ip_family(address) {
            IpFamily::Both => vec![v6(false), v4],
            IpFamily::V4 => vec![v4],
            IpFamily::V6 => vec![v6(true)],
        });
    }
    let addr = resolve(address)?;
    Ok(vec![(addr, addr.is_ipv6().then_some(true))])
}

/// Backlog asked for TCP listeners (the kernel caps it at `net.core.somaxconn`).
const TCP_BACKLOG: i32 = 4096;

fn inet_socket(
    addr: SocketAddr,
    ty: Type,
    only_v6: Option<bool>,
    reuse_port: bool,
) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if let Some(only) = only_v6 {
        socket.set_only_v6(only)?;
    }
    if ty == Type::STREAM {
        // As std does: a restarted agent rebinds while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    if ty == Type::STREAM {
        socket.listen(TCP_BACKLOG)?;
    }
    Ok(socket)
}

/// Binds `count` sockets on an IP address (with `SO_REUSEPORT` when more than one), trying
/// the dual-stack wildcard first and IPv4 where the host has no IPv6.
fn bind_inet(address: &str, ty: Type, count: u16) -> Result<Vec<OwnedFd>, String> {
    let targets = bind_targets(address)?;
    let reuse_port = count > 1;
    let mut last_error = String::new();
    for (i, (addr, only_v6)) in targets.iter().enumerate() {
        let first = match inet_socket(*addr, ty, *only_v6, reuse_port) {
            Ok(s) => s,
            Err(e) => {
                let no_ipv6 = matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
                );
                last_error = e.to_string();
                if no_ipv6 && i + 1 < targets.len() {
                    continue;
                }
                return Err(last_error);
            }
        };
        // Port 0 picks a port on the first socket; the others join that one.
        let actual = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(*addr);
        let mut fds: Vec<OwnedFd> = vec![first.into()];
        for _ in 1..count {
            let s = inet_socket(actual, ty, *only_v6, true).map_err(|e| {
                format!(
                    "binding socket {} of {count} with SO_REUSEPORT: {e}",
                    fds.len() + 1
                )
            })?;
            fds.push(s.into());
        }
        return Ok(fds);
    }
    Err(last_error)
}

/// Makes `path` ready for a Unix socket: creates its directory, removes a stale socket left by
/// a previous run, and refuses to touch anything that is not a socket or a socket another
/// program still serves.
fn prepare_unix_path(path: &Path, kind: ListenerKind) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _};
    if path.as_os_str().is_empty() {
        return Err("empty socket path".into());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; refusing to delete it: move it away or choose another path",
            path.display()
        ));
    }
    if served(path, kind) {
        return Err(format!(
            "{} is a socket another running program serves; stop it or choose another path",
            path.display()
        ));
    }
    std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket: {e}"))
}

/// Whether a running program answers on the Unix socket at `path`.
fn served(path: &Path, kind: ListenerKind) -> bool {
    match kind {
        ListenerKind::UnixStream => std::os::unix::net::UnixStream::connect(path).is_ok(),
        _ => UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok(),
    }
}

/// `datakit check`: whether `spec` could be bound now. IP sockets are bound and released at
/// once; a Unix path is only inspected (a file that is not a socket, or a socket another
/// program serves, is a problem), so checking never creates or deletes files.
///
/// # Errors
/// [`BindError`] naming the address, as [`bind`] would report it.
pub fn probe(spec: &ListenSpec) -> Result<(), BindError> {
    use std::os::unix::fs::FileTypeExt as _;
    match spec.kind {
        ListenerKind::Tcp | ListenerKind::Udp => bind(spec).map(drop),
        ListenerKind::UnixDatagram | ListenerKind::UnixStream => {
            let path = Path::new(unix_path(&spec.address));
            let fail = |reason: String| BindError {
                address: spec.address.clone(),
                kind: spec.kind,
                reason,
            };
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.file_type().is_socket() => Err(fail(format!(
                    "{} exists and is not a socket: move it away or choose another path",
                    path.display()
                ))),
                Ok(_) if served(path, spec.kind) => Err(fail(format!(
                    "{} is a socket another running program serves; stop it or choose another path",
                    path.display()
                ))),
                _ => Ok(()),
            }
        }
    }
}

/// Binds one listen spec: every socket it asks for.
///
/// # Errors
/// [`BindError`] naming the address.
pub fn bind(spec: &ListenSpec) -> Result<BoundListener, BindError> {
    let fail = |reason: String| BindError {
        address: spec.address.clone(),
        kind: spec.kind,
        reason,
    };
    let (fds, created): (Vec<OwnedFd>, _) = match spec.kind {
        ListenerKind::Tcp => (
            bind_inet(&spec.address, Type::STREAM, 1).map_err(fail)?,
            None,
        ),
        ListenerKind::Udp => (
            bind_inet(&spec.address, Type::DGRAM, spec.sockets).map_err(fail)?,
            None,
        ),
        ListenerKind::UnixDatagram | ListenerKind::UnixStream => {
            use std::os::unix::fs::PermissionsExt as _;
            let path = Path::new(unix_path(&spec.address));
            prepare_unix_path(path, spec.kind).map_err(fail)?;
            let fd: OwnedFd = if spec.kind == ListenerKind::UnixDatagram {
                UnixDatagram::bind(path)
                    .map_err(|e| fail(e.to_string()))?
                    .into()
            } else {
                UnixListener::bind(path)
                    .map_err(|e| fail(e.to_string()))?
                    .into()
            };
            let created = CreatedSocket::record(path);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))
                .map_err(|e| fail(format!("cannot set the socket's mode: {e}")))?;
            (vec![fd], created)
        }
    };
    Ok(BoundListener {
        spec: spec.clone(),
        fds,
        _created: created,
    })
}

/// Whether an inherited socket has the transport `kind` asks for.
fn kind_matches(fd: &OwnedFd, kind: ListenerKind) -> bool {
    use nix::sys::socket::{SockType, SockaddrStorage, getsockname, getsockopt, sockopt};
    let Ok(ty) = getsockopt(fd, sockopt::SockType) else {
        return false;
    };
    let unix =
        getsockname::<SockaddrStorage>(fd.as_raw_fd()).is_ok_and(|a| a.as_unix_addr().is_some());
    match kind {
        ListenerKind::Tcp => ty == SockType::Stream && !unix,
        ListenerKind::Udp => ty == SockType::Datagram && !unix,
        ListenerKind::UnixStream => ty == SockType::Stream && unix,
        ListenerKind::UnixDatagram => ty == SockType::Datagram && unix,
    }
}

/// What [`bind_all`] bound, and the optional sockets it could not bind (warnings).
#[derive(Debug, Default)]
pub struct Bound {
    /// The bound listeners.
    pub listeners: Vec<BoundListener>,
    /// Optional sockets that failed: log them and go on.
    pub warnings: Vec<BindError>,
}

/// Binds every socket, returning all failures of required sockets at once.
///
/// # Errors
/// Every [`BindError`] of a required socket.
pub fn bind_all(specs: &[ListenSpec]) -> Result<Bound, Vec<BindError>> {
    bind_all_with(specs, &mut std::collections::BTreeMap::new())
}

/// As [`bind_all`], taking sockets inherited across an exec (by address, when the transport
/// and count match) instead of binding them.
///
/// # Errors
/// Every [`BindError`] of a required socket.
pub fn bind_all_with(
    specs: &[ListenSpec],
    inherited: &mut std::collections::BTreeMap<String, Vec<OwnedFd>>,
) -> Result<Bound, Vec<BindError>> {
    let mut bound = Bound::default();
    let mut errors = Vec::new();
    for spec in specs {
        if let Some(fds) = inherited.remove(&spec.address) {
            if fds.len() == usize::from(spec.sockets.max(1)) && kind_matches(&fds[0], spec.kind) {
                bound.listeners.push(BoundListener::adopt(spec, fds));
                continue;
            }
            tracing::info!(address = %spec.address, "The inherited socket does not match the new config; binding anew.");
        }
        match bind(spec) {
            Ok(b) => bound.listeners.push(b),
            Err(e) if spec.optional => bound.warnings.push(e),
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
    use std::net::{TcpListener, UdpSocket};
    use std::time::Duration;

    use super::*;

    fn udp_of(fd: &OwnedFd) -> UdpSocket {
        let s = UdpSocket::from(fd.try_clone().unwrap());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

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
        let err = bind(&ListenSpec::new(format!("tcp://{addr}"), ListenerKind::Tcp)).unwrap_err();
        assert!(err.to_string().contains(&addr), "{err}");
    }

    #[test]
    fn probing_finds_a_busy_port_and_leaves_a_free_one_free() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = holder.local_addr().unwrap().to_string();
        let err = probe(&ListenSpec::new(format!("tcp://{busy}"), ListenerKind::Tcp)).unwrap_err();
        assert!(err.to_string().contains(&busy), "{err}");

        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let free_addr = free.local_addr().unwrap().to_string();
        drop(free);
        probe(&ListenSpec::new(free_addr.clone(), ListenerKind::Tcp)).unwrap();
        // Released: the agent can bind it after the check.
        TcpListener::bind(&free_addr).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let served = UnixListener::bind(&sock).unwrap();
        let spec = ListenSpec::new(sock.display().to_string(), ListenerKind::UnixStream);
        assert!(probe(&spec).is_err());
        drop(served);
        std::fs::remove_file(&sock).unwrap();
        probe(&spec).unwrap();
        assert!(!sock.exists(), "probing creates no socket file");
    }

    #[test]
    fn binds_tcp_udp_and_unix_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let specs = vec![
            ListenSpec::new("tcp://127.0.0.1:0", ListenerKind::Tcp),
            ListenSpec::new("udp://127.0.0.1:0", ListenerKind::Udp),
            ListenSpec::new(sock.display().to_string(), ListenerKind::UnixDatagram),
        ];
        let bound = bind_all(&specs).unwrap();
        assert_eq!(bound.listeners.len(), 3);
        assert!(bound.warnings.is_empty());
        assert!(sock.exists());
        assert!(
            bound
                .listeners
                .iter()
                .all(|b| b.fds.len() == 1 && b.fds[0].as_raw_fd() > 2)
        );
    }

    #[test]
    fn a_port_only_address_receives_over_ipv4_and_ipv6_like_go() {
        let bound = bind(&ListenSpec::new("udp://:0", ListenerKind::Udp)).unwrap();
        let socket = udp_of(&bound.fds[0]);
        let port = socket.local_addr().unwrap().port();
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
        // Hosts without IPv6 fall back to IPv4 only, which the send above covers.
        if let Ok(v6) = UdpSocket::bind("[::1]:0") {
            assert!(socket.local_addr().unwrap().is_ipv6());
            v6.send_to(b"six", ("::1", port)).unwrap();
            let (n, _) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"six");
        }
        let v4_only = bind(&ListenSpec::new("udp4://:0", ListenerKind::Udp)).unwrap();
        assert!(udp_of(&v4_only.fds[0]).local_addr().unwrap().is_ipv4());
    }

    #[test]
    fn several_udp_sockets_share_one_port_and_split_the_senders() {
        let spec = ListenSpec::new("udp://127.0.0.1:0", ListenerKind::Udp).with_sockets(3);
        let bound = bind(&spec).unwrap();
        assert_eq!(bound.fds.len(), 3);
        let sockets: Vec<UdpSocket> = bound.fds.iter().map(udp_of).collect();
        let port = sockets[0].local_addr().unwrap().port();
        assert!(
            sockets
                .iter()
                .all(|s| s.local_addr().unwrap().port() == port)
        );
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
        }
        // Each sender (source port) hashes to one socket; 64 senders reach more than one.
        let senders: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &senders {
            s.send_to(b"x", ("127.0.0.1", port)).unwrap();
        }
        let mut per_socket = vec![0usize; sockets.len()];
        let mut total = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4];
        while total < senders.len() && std::time::Instant::now() < deadline {
            for (i, s) in sockets.iter().enumerate() {
                while s.recv_from(&mut buf).is_ok() {
                    per_socket[i] += 1;
                    total += 1;
                }
            }
        }
        assert_eq!(total, senders.len(), "{per_socket:?}");
        assert!(
            per_socket.iter().filter(|&&n| n > 0).count() >= 2,
            "{per_socket:?}"
        );
        // A plain socket on the same port is refused: the group is closed to outsiders.
        assert!(
            bind(&ListenSpec::new(
                format!("udp://127.0.0.1:{port}"),
                ListenerKind::Udp
            ))
            .is_err()
        );
    }

    #[test]
    fn a_unix_socket_gets_its_directory_created() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/datakit/statsd.sock");
        let b = bind(&ListenSpec::new(
            sock.display().to_string(),
            ListenerKind::UnixDatagram,
        ))
        .unwrap();
        assert_eq!(b.fds.len(), 1);
        assert!(sock.exists());
    }

    #[test]
    fn a_unix_socket_is_not_world_writable_and_its_file_goes_with_the_listener() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        for kind in [ListenerKind::UnixDatagram, ListenerKind::UnixStream] {
            let sock = dir.path().join(format!("{kind:?}.sock"));
            let b = bind(&ListenSpec::new(sock.display().to_string(), kind)).unwrap();
            let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, UNIX_SOCKET_MODE, "{kind:?}: {mode:o}");
            drop(b);
            assert!(!sock.exists(), "{kind:?}: the socket file was left behind");
        }
    }

    #[test]
    fn a_socket_file_another_program_put_in_our_place_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let b = bind(&ListenSpec::new(
            sock.display().to_string(),
            ListenerKind::UnixDatagram,
        ))
        .unwrap();
        // Someone removes ours and binds their own at the same path.
        std::fs::remove_file(&sock).unwrap();
        let theirs = UnixDatagram::bind(&sock).unwrap();
        drop(b);
        assert!(sock.exists(), "another program's socket was removed");
        drop(theirs);
    }

    #[test]
    fn a_stale_socket_is_replaced_but_a_served_one_or_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let spec = ListenSpec::new(sock.display().to_string(), ListenerKind::UnixDatagram);
        // Served: another program holds it bound.
        let holder = UnixDatagram::bind(&sock).unwrap();
        let err = bind(&spec).unwrap_err();
        assert!(err.reason.contains("another running program"), "{err}");
        // Stale: the program is gone, the file remains.
        drop(holder);
        assert!(sock.exists());
        let b = bind(&spec).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.send_to(b"hi", &sock).unwrap();
        let receiver = UnixDatagram::from(b.fds[0].try_clone().unwrap());
        let mut buf = [0u8; 4];
        assert_eq!(receiver.recv(&mut buf).unwrap(), 2);
        // A regular file is never deleted.
        let file = dir.path().join("data.txt");
        std::fs::write(&file, b"keep me").unwrap();
        let err = bind(&ListenSpec::new(
            file.display().to_string(),
            ListenerKind::UnixDatagram,
        ))
        .unwrap_err();
        assert!(err.reason.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }

    #[test]
    fn an_optional_socket_that_cannot_bind_is_a_warning() {
        let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = format!("udp://{}", holder.local_addr().unwrap());
        let specs = vec![
            ListenSpec::new(busy.clone(), ListenerKind::Udp).optional(),
            ListenSpec::new("udp://127.0.0.1:0", ListenerKind::Udp),
        ];
        let bound = bind_all(&specs).unwrap();
        assert_eq!(bound.listeners.len(), 1);
        assert_eq!(bound.warnings.len(), 1);
        assert_eq!(bound.warnings[0].address, busy);
        let required = vec![ListenSpec::new(busy, ListenerKind::Udp)];
        assert_eq!(bind_all(&required).unwrap_err().len(), 1);
    }
}
