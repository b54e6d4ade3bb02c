//! Passing listening sockets to a running worker (`SCM_RIGHTS` over a Unix datagram pair).
//!
//! A reload can give a running worker a new listener without restarting it: the supervisor
//! creates a socket pair per worker at spawn (the worker's end is named in
//! [`ENV_FD_CHANNEL`]), sends each new address with its descriptors as one message, then calls
//! `Control::reconfigure`. The worker takes the messages when it reconfigures and uses the
//! received descriptors for those addresses (their numbers differ from the supervisor's).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The environment variable naming the worker's end of the channel.
pub const ENV_FD_CHANNEL: &str = "DK_FD_CHANNEL";
/// Descriptors per message (one address; SO_REUSEPORT groups are small).
pub const MAX_FDS_PER_MESSAGE: usize = 64;

/// Sends `address` with its descriptors (the supervisor side).
///
/// # Errors
/// The OS error of `sendmsg`, or `InvalidInput` for more than [`MAX_FDS_PER_MESSAGE`].
pub fn send(channel: &impl AsRawFd, address: &str, fds: &[RawFd]) -> std::io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} descriptors for {address}", fds.len()),
        ));
    }
    let iov = [IoSlice::new(address.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(
        channel.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    Ok(())
}

/// Takes every message waiting on the channel (the worker side), by address.
pub fn receive_all(channel: &impl AsRawFd) -> BTreeMap<String, Vec<OwnedFd>> {
    let mut got: BTreeMap<String, Vec<OwnedFd>> = BTreeMap::new();
    loop {
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return got;
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = c {
                    // SAFETY: the kernel just installed these descriptors in this process for
                    // this message; nothing else owns them.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let len = msg.bytes;
        let address = String::from_utf8_lossy(&buf[..len]).into_owned();
        got.entry(address).or_default().extend(fds);
    }
}

/// The worker's end of the channel, from [`ENV_FD_CHANNEL`] (taken once).
pub fn from_env() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(ENV_FD_CHANNEL).ok()?.parse().ok()?;
    // SAFETY: the supervisor opened this descriptor for this worker and named it in the
    // environment; it is taken once, at start, before anything else could own the number.
    let fd = (fd > 2).then(|| unsafe { OwnedFd::from_raw_fd(fd) })?;
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(fd)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn descriptors_sent_for_an_address_arrive_as_working_sockets() {
        let (sup, worker) = UnixDatagram::pair().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        send(&sup, "udp://a", &[a.as_raw_fd()]).unwrap();
        send(&sup, "tcp://b", &[b.as_raw_fd()]).unwrap();
        let mut got = receive_all(&worker);
        assert_eq!(got.keys().collect::<Vec<_>>(), vec!["tcp://b", "udp://a"]);
        let udp = std::net::UdpSocket::from(got.remove("udp://a").unwrap().pop().unwrap());
        assert_eq!(udp.local_addr().unwrap(), a.local_addr().unwrap());
        let tcp = std::net::TcpListener::from(got.remove("tcp://b").unwrap().pop().unwrap());
        assert_eq!(tcp.local_addr().unwrap(), b.local_addr().unwrap());
        // Nothing more waiting.
        assert!(receive_all(&worker).is_empty());
    }
}
