//! The thin I/O shell: reads `/proc`, `/sys`, `/etc` and `/run` files (relocatable with
//! gopsutil's `HOST_PROC`-style variables) and calls `statvfs`/`getifaddrs`.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::parse::ParseError;
use crate::parse::cpuinfo::HwmonReading;
use crate::parse::udev::{UdevInfo, parse_udev_data};

/// Why one collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Where the host's pseudo file systems are. Defaults to `/proc`, `/sys`...; the
/// `HOST_PROC`, `HOST_SYS`, `HOST_ETC`, `HOST_VAR`, `HOST_RUN` and `HOST_DEV` variables
/// (as gopsutil reads them) relocate them, e.g. when the agent runs in a container with
/// the host's `/proc` mounted at `/rootfs/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    proc_dir: PathBuf,
    sys_dir: PathBuf,
    etc_dir: PathBuf,
    var_dir: PathBuf,
    run_dir: PathBuf,
    dev_dir: PathBuf,
    /// Prefix to put before mount points for `statvfs` (empty on the host itself).
    mount_root: PathBuf,
}

impl HostPaths {
    /// The paths of this host, honouring the `HOST_*` variables.
    pub fn from_env() -> Self {
        let get = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        HostPaths {
            proc_dir: get("HOST_PROC", "/proc"),
            sys_dir: get("HOST_SYS", "/sys"),
            etc_dir: get("HOST_ETC", "/etc"),
            var_dir: get("HOST_VAR", "/var"),
            run_dir: get("HOST_RUN", "/run"),
            dev_dir: get("HOST_DEV", "/dev"),
            mount_root: get("HOST_ROOT", ""),
        }
    }

    /// Everything under one directory (`root/proc`, `root/sys`...), for tests on a fake
    /// file-system tree.
    pub fn under(root: &Path) -> Self {
        HostPaths {
            proc_dir: root.join("proc"),
            sys_dir: root.join("sys"),
            etc_dir: root.join("etc"),
            var_dir: root.join("var"),
            run_dir: root.join("run"),
            dev_dir: root.join("dev"),
            mount_root: root.join("mnt"),
        }
    }

    /// A path under the proc directory.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc_dir.join(rel)
    }

    /// A path under the sys directory.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys_dir.join(rel)
    }

    /// A path under the etc directory.
    pub fn etc(&self, rel: &str) -> PathBuf {
        self.etc_dir.join(rel)
    }

    /// A path under the var directory.
    pub fn var(&self, rel: &str) -> PathBuf {
        self.var_dir.join(rel)
    }

    /// A path under the run directory.
    pub fn run(&self, rel: &str) -> PathBuf {
        self.run_dir.join(rel)
    }

    /// A path under the dev directory.
    pub fn dev(&self, rel: &str) -> PathBuf {
        self.dev_dir.join(rel)
    }

    /// Where to `statvfs` a mount point.
    pub fn mount_point(&self, mount_point: &str) -> PathBuf {
        if self.mount_root.as_os_str().is_empty() {
            PathBuf::from(mount_point)
        } else {
            self.mount_root.join(mount_point.trim_start_matches('/'))
        }
    }
}

/// Reads files into one reusable buffer (collections run every few seconds; the buffer
/// keeps its capacity between them).
#[derive(Debug)]
pub struct Reader {
    /// Where the files are.
    pub paths: HostPaths,
    buf: String,
}

impl Reader {
    /// A reader over `paths`.
    pub fn new(paths: HostPaths) -> Self {
        Reader {
            paths,
            buf: String::with_capacity(4096),
        }
    }

    /// Reads a whole text file into the shared buffer.
    ///
    /// # Errors
    /// [`CollectError::Io`] naming the path.
    pub fn read(&mut self, path: &Path) -> Result<&str, CollectError> {
        self.buf.clear();
        fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .map_err(|source| CollectError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(&self.buf)
    }

    /// Reads a file under `/proc`.
    ///
    /// # Errors
    /// [`CollectError::Io`] naming the path.
    pub fn proc(&mut self, rel: &str) -> Result<&str, CollectError> {
        let p = self.paths.proc(rel);
        self.read(&p)
    }

    /// Reads a small file, trimmed, or `None` when it cannot be read.
    pub fn small(&mut self, path: &Path) -> Option<String> {
        self.read(path).ok().map(|s| s.trim().to_string())
    }

    /// The mount table: `/proc/1/mountinfo`, or `/proc/self/mountinfo` when PID 1's is
    /// not readable.
    ///
    /// # Errors
    /// [`CollectError::Io`] when neither can be read.
    pub fn mountinfo(&mut self) -> Result<&str, CollectError> {
        let pid1 = self.paths.proc("1/mountinfo");
        if fs::metadata(&pid1).is_ok() && self.read(&pid1).is_ok() {
            return Ok(&self.buf);
        }
        self.proc("self/mountinfo")
    }

    /// The udev database entry of a block device.
    pub fn udev_data(&mut self, major: u32, minor: u32) -> Option<UdevInfo> {
        let p = self.paths.run(&format!("udev/data/b{major}:{minor}"));
        self.read(&p).ok().map(parse_udev_data)
    }

    /// All hwmon temperature inputs (`/sys/class/hwmon/hwmon*/[device/]temp*_input`).
    pub fn hwmon_readings(&mut self) -> Vec<HwmonReading> {
        let mut out = Vec::new();
        let Ok(chips) = fs::read_dir(self.paths.sys("class/hwmon")) else {
            return out;
        };
        for chip in chips.flatten() {
            let dir = chip.path();
            let before = out.len();
            for d in [dir.clone(), dir.join("device")] {
                // Older kernels (CentOS 7) keep the sensors under `device/`; look there
                // only when the chip directory itself had none, as gopsutil does.
                if out.len() > before {
                    break;
                }
                let Some(name) = self.small(&d.join("name")) else {
                    continue;
                };
                let Ok(entries) = fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let file = e.file_name();
                    let Some(file) = file.to_str() else { continue };
                    let Some(prefix) = file
                        .strip_suffix("_input")
                        .filter(|p| p.starts_with("temp"))
                    else {
                        continue;
                    };
                    let Some(value) = self
                        .small(&d.join(file))
                        .and_then(|v| v.parse::<f64>().ok())
                    else {
                        continue;
                    };
                    let label = self
                        .small(&d.join(format!("{prefix}_label")))
                        .unwrap_or_default();
                    out.push(HwmonReading {
                        chip: name.clone(),
                        label,
                        millidegrees: value,
                    });
                }
            }
        }
        out
    }

    /// The `flags` of a network interface (`IFF_*`), or `None` if it has no sysfs entry.
    pub fn iface_flags(&mut self, name: &str) -> Option<u32> {
        let p = self.paths.sys(&format!("class/net/{name}/flags"));
        let text = self.small(&p)?;
        crate::parse::util::parse_hex_flags("/sys/class/net/<if>/flags", &text).ok()
    }

    /// Names under `/sys/devices/virtual/net` (software interfaces: `lo`, bridges,
    /// veths...). With `keep_bonding`, bonding masters are not counted as virtual, as the
    /// host object does.
    pub fn virtual_ifaces(&self, keep_bonding: bool) -> HashSet<String> {
        let dir = self.paths.sys("devices/virtual/net");
        let Ok(entries) = fs::read_dir(&dir) else {
            return HashSet::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter(|e| !(keep_bonding && e.path().join("bonding").exists()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Every interface under `/sys/class/net`, ordered by `ifindex`.
    pub fn interfaces(&mut self) -> Vec<IfaceInfo> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(self.paths.sys("class/net")) else {
            return out;
        };
        let names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for name in names {
            let base = self.paths.sys(&format!("class/net/{name}"));
            let num = |r: &mut Self, f: &str| {
                r.small(&base.join(f))
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let index = num(self, "ifindex");
            let mtu = num(self, "mtu");
            let mac = self.small(&base.join("address")).unwrap_or_default();
            let flags = self.iface_flags(&name).unwrap_or(0);
            out.push(IfaceInfo {
                index,
                name,
                mtu,
                mac,
                flags,
            });
        }
        out.sort_by_key(|i| i.index);
        out
    }

    /// Resolves the device names the kernel shows in mountinfo as gopsutil does:
    /// `/dev/mapper/*` to the real `/dev/dm-N`, `/dev/root` to the block device behind
    /// the mount's `major:minor`.
    pub fn resolve_device(&self, device: &str, major_minor: &str) -> String {
        if let Some(rest) = device.strip_prefix("/dev/mapper/") {
            let p = self.paths.dev(&format!("mapper/{rest}"));
            if let Ok(real) = fs::canonicalize(&p) {
                return real.display().to_string();
            }
        } else if device == "/dev/root" {
            let p = self.paths.sys(&format!("dev/block/{major_minor}"));
            if let Ok(target) = fs::read_link(&p)
                && let Some(base) = target.file_name().and_then(|b| b.to_str())
            {
                return format!("/dev/{base}");
            }
        }
        device.to_string()
    }
}

/// One network interface as `/sys/class/net` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    /// `ifindex`.
    pub index: i64,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: i64,
    /// MAC address (`aa:bb:...`; all zeros for `lo`).
    pub mac: String,
    /// `IFF_*` flags.
    pub flags: u32,
}

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
/// `IFF_BROADCAST`.
pub const IFF_BROADCAST: u32 = 0x2;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_POINTOPOINT`.
pub const IFF_POINTOPOINT: u32 = 0x10;
/// `IFF_MASTER`.
pub const IFF_MASTER: u32 = 0x400;
/// `IFF_SLAVE`.
pub const IFF_SLAVE: u32 = 0x800;
/// `IFF_MULTICAST`.
pub const IFF_MULTICAST: u32 = 0x1000;

/// Raw `statvfs` numbers of one mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStat {
    /// Fragment size: the unit of the block counts.
    pub fragment_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_available: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
}

/// `statvfs(2)` on a path.
///
/// # Errors
/// [`CollectError::Io`] naming the path.
pub fn statvfs(path: &Path) -> Result<FsStat, CollectError> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| CollectError::Io {
        path: path.display().to_string(),
        source: std::io::Error::from(e),
    })?;
    let frag = s.fragment_size() as u64;
    Ok(FsStat {
        fragment_size: if frag == 0 {
            s.block_size() as u64
        } else {
            frag
        },
        blocks: s.blocks() as u64,
        blocks_free: s.blocks_free() as u64,
        blocks_available: s.blocks_available() as u64,
        files: s.files() as u64,
        files_free: s.files_free() as u64,
    })
}

/// One interface address from `getifaddrs(3)`: `(interface, address, prefix length)`.
pub fn interface_addresses() -> Vec<(String, IpAddr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else {
            continue;
        };
        if let (Some(ip), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            let prefix = u32::from(m.ip()).count_ones() as u8;
            out.push((a.interface_name, IpAddr::V4(ip.ip()), prefix));
        } else if let (Some(ip), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            let prefix = u128::from(m.ip()).count_ones() as u8;
            out.push((a.interface_name, IpAddr::V6(ip.ip()), prefix));
        }
    }
    out
}

/// The source address the host would use to reach the Internet (Datakit's `LocalIP`:
/// a connected UDP socket toward public resolvers; no packet is sent), falling back to
/// the first global unicast IPv4 address of an interface.
pub fn local_ip(addrs: &[(String, IpAddr, u8)]) -> Option<String> {
    for dest in ["114.114.114.114:80", "8.8.8.8:80"] {
        if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0")
            && sock.connect(dest).is_ok()
            && let Ok(local) = sock.local_addr()
        {
            return Some(local.ip().to_string());
        }
    }
    addrs.iter().find_map(|(_, ip, _)| match ip {
        IpAddr::V4(v4)
            if !v4.is_loopback()
                && !v4.is_link_local()
                && !v4.is_unspecified()
                && !v4.is_multicast()
                && !v4.is_broadcast() =>
        {
            Some(v4.to_string())
        }
        _ => None,
    })
}
