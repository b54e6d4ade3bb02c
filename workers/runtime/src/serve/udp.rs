//! Shared datagram receiving (UDP and Unix datagram sockets) for every family.
//!
//! [`serve`] waits for the socket to be readable, then takes every queued datagram in
//! `recvmmsg` batches of [`UdpOptions::slots`] into one recycled buffer ([`MultiRecv`]), hands
//! each to the family's [`Datagrams`], and calls its `flush` once per round (at most
//! [`UdpOptions::max_rounds`] batches, or fewer when the family is full). Bytes and datagrams
//! are counted in the uniform telemetry, datagrams cut at 64 KiB as
//! `dropped{reason="truncated"}`, and the kernel's drops on a UDP socket (receive buffer full,
//! read from `/proc/net/udp`) as `dropped{reason="kernel"}` by a [`watch_kernel_drops`] task.
//!
//! Families that receive on their own threads (StatsD) use [`DatagramSocket`], [`MultiRecv`]
//! and [`watch_kernel_drops`] directly.

use std::future::Future;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::Tally;
pub use super::mmsg::{MultiRecv, MultiSend, SLOT_SIZE, wait_readable};
use crate::listen::procnet::UdpDrops;
use crate::telemetry::{ListenerTelemetry, reason};

/// How often the kernel's drop count is read.
pub const KERNEL_DROPS_EVERY: Duration = Duration::from_secs(1);

/// Either kind of datagram socket.
#[derive(Debug)]
pub enum DatagramSocket {
    /// A UDP socket.
    Udp(std::net::UdpSocket),
    /// A Unix datagram socket.
    Unix(std::os::unix::net::UnixDatagram),
}

impl AsFd for DatagramSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DatagramSocket::Udp(s) => s.as_fd(),
            DatagramSocket::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl DatagramSocket {
    /// Makes the socket blocking with a receive timeout (for a receiver thread).
    ///
    /// # Errors
    /// The OS error of the socket options.
    pub fn set_blocking_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            DatagramSocket::Udp(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(timeout))
            }
            DatagramSocket::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(timeout))
            }
        }
    }

    /// The socket as non-blocking (for [`serve`]).
    ///
    /// # Errors
    /// The OS error of the socket option.
    pub fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            DatagramSocket::Udp(s) => s.set_nonblocking(true),
            DatagramSocket::Unix(s) => s.set_nonblocking(true),
        }
    }
}

/// How a datagram socket is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams taken per `recvmmsg` call (each slot is 64 KiB of buffer, touched only as
    /// far as datagrams fill it).
    pub slots: usize,
    /// `recvmmsg` calls per round before the family's `flush`.
    pub max_rounds: usize,
}

impl Default for UdpOptions {
    fn default() -> UdpOptions {
        UdpOptions {
            slots: 32,
            max_rounds: 4,
        }
    }
}

/// What a family does with the datagrams of one socket.
pub trait Datagrams: Send + 'static {
    /// Takes one datagram.
    fn datagram(&mut self, bytes: &[u8]);

    /// Takes one datagram with its sender (`None` on Unix sockets); by default the sender is
    /// ignored.
    fn datagram_from(&mut self, bytes: &[u8], from: Option<std::net::SocketAddr>) {
        let _ = from;
        self.datagram(bytes);
    }

    /// `true` when enough is gathered to hand over before receiving more.
    fn full(&self) -> bool {
        false
    }

    /// Hands over what was gathered; `false` when the runtime is gone (receiving stops).
    fn flush(&mut self) -> impl Future<Output = bool> + Send;
}

/// Receives on `socket` until `shutdown` (then hands over what it holds), counting in
/// `telemetry`. Kernel drops of a UDP socket are watched meanwhile.
pub async fn serve<D: Datagrams>(
    socket: DatagramSocket,
    opts: UdpOptions,
    telemetry: ListenerTelemetry,
    shutdown: CancellationToken,
    mut sink: D,
) {
    let truncated = telemetry.dropped(reason::TRUNCATED);
    if let DatagramSocket::Udp(s) = &socket {
        watch_kernel_drops(
            s.as_raw_fd(),
            telemetry.dropped(reason::KERNEL),
            telemetry.input().to_string(),
            shutdown.clone(),
        );
    }
    let socket = match socket
        .set_nonblocking()
        .and_then(|()| Registered::new(socket))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(input = telemetry.input(), "cannot receive datagrams: {e}");
            return;
        }
    };
    let errors = Tally::default();
    let mut mr = MultiRecv::new(opts.slots);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = socket.readable() => if let Err(e) = r {
                tracing::error!(input = telemetry.input(), "cannot wait for datagrams: {e}");
                break;
            },
        }
        for _ in 0..opts.max_rounds.max(1) {
            // `try_io` clears the readiness on WouldBlock, so the next wait really waits.
            match socket.try_recv(&mut mr) {
                Ok(n) => {
                    take(&mr, n, &mut sink, &telemetry, &truncated);
                    if n < opts.slots.max(1) || sink.full() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(n) = errors.due(1) {
                        tracing::warn!(
                            input = telemetry.input(),
                            errors = n,
                            "receiving a datagram failed: {e}"
                        );
                    }
                    break;
                }
            }
        }
        if !sink.flush().await {
            return;
        }
    }
    sink.flush().await;
}

/// A datagram socket registered with tokio's reactor.
enum Registered {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Registered {
    fn new(socket: DatagramSocket) -> std::io::Result<Registered> {
        Ok(match socket {
            DatagramSocket::Udp(s) => Registered::Udp(tokio::net::UdpSocket::from_std(s)?),
            DatagramSocket::Unix(s) => Registered::Unix(tokio::net::UnixDatagram::from_std(s)?),
        })
    }

    async fn readable(&self) -> std::io::Result<()> {
        match self {
            Registered::Udp(s) => s.readable().await,
            Registered::Unix(s) => s.readable().await,
        }
    }

    /// One non-blocking `recvmmsg` into `mr`.
    fn try_recv(&self, mr: &mut MultiRecv) -> std::io::Result<usize> {
        let read = tokio::io::Interest::READABLE;
        match self {
            Registered::Udp(s) => s.try_io(read, || mr.recv(s.as_fd(), true)),
            Registered::Unix(s) => s.try_io(read, || mr.recv(s.as_fd(), true)),
        }
    }
}

fn take<D: Datagrams>(
    mr: &MultiRecv,
    n: usize,
    sink: &mut D,
    telemetry: &ListenerTelemetry,
    truncated: &Counter,
) {
    let mut bytes = 0u64;
    let mut cut = 0u64;
    for i in 0..n {
        let Some((d, was_cut)) = mr.datagram(i) else {
            break;
        };
        bytes += d.len() as u64;
        if was_cut {
            cut += 1;
        } else {
            sink.datagram_from(d, mr.source(i));
        }
    }
    telemetry.events.inc_by(n as u64);
    telemetry.bytes.inc_by(bytes);
    if cut > 0 {
        truncated.inc_by(cut);
    }
}

/// Counts the datagrams the kernel drops on the UDP socket `fd` into `counter` every
/// [`KERNEL_DROPS_EVERY`] until `shutdown`, warning at most every [`super::REPORT_EVERY`].
/// `/proc/net/udp` is read on the blocking pool. Does nothing when the socket's inode cannot
/// be read.
pub fn watch_kernel_drops(fd: RawFd, counter: Counter, input: String, shutdown: CancellationToken) {
    let Some(mut drops) = UdpDrops::new(fd) else {
        return;
    };
    tokio::spawn(async move {
        let report = Tally::default();
        let mut tick = tokio::time::interval(KERNEL_DROPS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok((back, new)) = tokio::task::spawn_blocking(move || {
                let new = drops.poll();
                (drops, new)
            })
            .await
            else {
                return;
            };
            drops = back;
            if new == 0 {
                continue;
            }
            counter.inc_by(new);
            if let Some(n) = report.due(new) {
                tracing::warn!(
                    input = %input,
                    dropped = n,
                    "the kernel dropped datagrams (receive buffer full); raise read_buffer_size (and net.core.rmem_max) or send over TCP"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::telemetry::{Telemetry, encode, sample};
    use crate::{Emitter, InputContext};

    struct Collect {
        held: Vec<Vec<u8>>,
        out: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Datagrams for Collect {
        fn datagram(&mut self, bytes: &[u8]) {
            self.held.push(bytes.to_vec());
        }

        async fn flush(&mut self) -> bool {
            self.out.lock().unwrap().append(&mut self.held);
            true
        }
    }

    fn setup() -> (InputContext, CancellationToken, ListenerTelemetry) {
        let (emitter, _rx) = Emitter::channel(1);
        let (ctx, stop, _) = InputContext::for_test(emitter);
        let t = Telemetry::new();
        t.register(&ctx);
        let l = t.listener("test", "udp://x");
        (ctx, stop, l)
    }

    #[tokio::test]
    async fn receives_bursts_in_batches_and_counts_bytes_and_datagrams() {
        let (ctx, stop, tel) = setup();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::listen::set_recv_buffer(rx.as_fd(), 4 << 20).unwrap();
        let addr = rx.local_addr().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(
            DatagramSocket::Udp(rx),
            UdpOptions::default(),
            tel,
            stop.clone(),
            Collect {
                held: Vec::new(),
                out: out.clone(),
            },
        ));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..500 {
            tx.send_to(format!("d{i}").as_bytes(), addr).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.lock().unwrap().len() < 500 {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                out.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        task.await.unwrap();
        let got = out.lock().unwrap().clone();
        assert_eq!(got.len(), 500);
        assert_eq!(got[0], b"d0");
        assert_eq!(got[499], b"d499");
        let text = encode(&ctx);
        let l = r#"input="test",listener="udp://x""#;
        assert_eq!(
            sample(&text, "datakit_input_received_events_total", l),
            500.0
        );
        let bytes: usize = (0..500).map(|i| format!("d{i}").len()).sum();
        assert_eq!(
            sample(&text, "datakit_input_received_bytes_total", l),
            bytes as f64
        );
    }

    #[tokio::test]
    async fn counts_kernel_drops_of_a_socket_nobody_reads() {
        let (ctx, stop, tel) = setup();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::listen::set_recv_buffer(rx.as_fd(), 4096).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..2000 {
            tx.send_to(&[0u8; 512], rx.local_addr().unwrap()).unwrap();
        }
        watch_kernel_drops(
            rx.as_raw_fd(),
            tel.dropped(reason::KERNEL),
            "test".into(),
            stop.clone(),
        );
        let labels = r#"input="test",reason="kernel""#;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sample(&encode(&ctx), "datakit_input_dropped_total", labels) < 1000.0 {
            assert!(std::time::Instant::now() < deadline, "{}", encode(&ctx));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn a_unix_datagram_over_64_kib_is_counted_as_truncated() {
        let (ctx, stop, tel) = setup();
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        crate::listen::set_recv_buffer(b.as_fd(), 1 << 20).unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(
            DatagramSocket::Unix(b),
            UdpOptions::default(),
            tel,
            stop.clone(),
            Collect {
                held: Vec::new(),
                out: out.clone(),
            },
        ));
        set_send_buffer(&a, 1 << 20);
        a.send(&vec![b'x'; SLOT_SIZE + 10]).unwrap();
        a.send(b"small").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(out.lock().unwrap().clone(), vec![b"small".to_vec()]);
        assert_eq!(
            sample(
                &encode(&ctx),
                "datakit_input_dropped_total",
                r#"input="test",reason="truncated""#
            ),
            1.0
        );
    }

    fn set_send_buffer(s: &std::os::unix::net::UnixDatagram, bytes: libc::c_int) {
        // SAFETY: test helper; a valid socket and a live c_int of the size passed.
        #[allow(unsafe_code)]
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const bytes).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}
