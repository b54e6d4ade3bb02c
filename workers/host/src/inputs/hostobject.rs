//! `hostobject`: the `HOST` object (category O), a summary of the host with a JSON
//! `message` describing its OS, CPUs, memory, interfaces, disks and kernel tables.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use dk_proto::{Category, Point, Value};
use serde::Serialize;

use crate::config::HostObjectConfig;
use crate::inputs::cloud::CloudProbe;
use crate::inputs::disk::{MountUsage, mounts};
use crate::inputs::secs_between;
use crate::inputs::system::conntrack;
use crate::parse::conntrack::{maximum_mega, parse_file_nr};
use crate::parse::cpuinfo::{CpuModel, max_freq_mhz, parse_cpuinfo};
use crate::parse::diskstats::parse_diskstats;
use crate::parse::meminfo::parse_meminfo;
use crate::parse::netdev::parse_net_dev;
use crate::parse::platform::{ReleaseFiles, detect_platform};
use crate::parse::stat::{CpuTimes, busy_percent, parse_stat};
use crate::parse::util::{parse_cpus_allowed, parse_loadavg};
use crate::runner::Collector;
use crate::sys::{
    CollectError, HostPaths, IFF_BROADCAST, IFF_LOOPBACK, IFF_MASTER, IFF_MULTICAST,
    IFF_POINTOPOINT, IFF_SLAVE, IFF_UP, IfaceInfo, Reader, interface_addresses, local_ip,
};

/// Largest `config_path` file embedded in the message, as in Datakit.
const MAX_CONFIG_FILE: u64 = 4 * 1024;

/// `message.host.meta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostMeta {
    /// The agent's host name.
    pub host_name: String,
    /// Boot time, seconds since the epoch.
    pub boot_time: u64,
    /// `linux`.
    pub os: String,
    /// Distribution (`debian`, `ubuntu`, `centos`...).
    pub platform: String,
    /// Distribution family (`debian`, `rhel`...).
    pub platform_family: String,
    /// Distribution version.
    pub platform_version: String,
    /// Kernel release (`uname -r`).
    pub kernel_release: String,
    /// Machine architecture (`uname -m`).
    pub arch: String,
}

/// `message.host.mem`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemSummary {
    /// `MemTotal` in bytes.
    pub memory_total: u64,
    /// `SwapTotal` in bytes.
    pub swap_total: u64,
}

/// One entry of `message.host.net`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetSummary {
    /// MTU.
    pub mtu: i64,
    /// Interface name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// `up`, `broadcast`, `loopback`, `pointtopoint`, `master`, `slave`, `multicast`.
    pub flags: Option<Vec<String>>,
    /// The last non-loopback IPv4 address, `addr/prefix`.
    pub ip4: String,
    /// The last non-loopback IPv6 address, `addr/prefix`.
    pub ip6: String,
    /// Every non-loopback IPv4 address.
    pub ip4_all: Option<Vec<String>>,
    /// Every non-loopback IPv6 address.
    pub ip6_all: Option<Vec<String>>,
}

/// One entry of `message.host.disk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiskSummary {
    /// Device.
    pub device: String,
    /// Size in bytes.
    pub total: u64,
    /// Used bytes.
    pub used: u64,
    /// `used / (used + free)` in percent.
    pub used_percent: f64,
    /// Inodes.
    pub inodes_total: u64,
    /// Used inodes.
    pub inodes_used: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Used inodes in percent.
    pub inodes_used_percent: f64,
    /// Free bytes.
    pub free: u64,
    /// File system type.
    pub fstype: String,
    /// Mount point.
    pub mountpoint: String,
}

/// `message.host.conntrack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConntrackSummary {
    /// Current entries (-1 without conntrack).
    pub entries: i64,
    /// Table size (-1 without conntrack).
    pub entries_limit: i64,
    /// Summed statistics.
    pub stat_found: i64,
    /// Summed statistics.
    pub stat_invalid: i64,
    /// Summed statistics.
    pub stat_ignore: i64,
    /// Summed statistics.
    pub stat_insert: i64,
    /// Summed statistics.
    pub stat_insert_failed: i64,
    /// Summed statistics.
    pub stat_drop: i64,
    /// Summed statistics.
    pub stat_early_drop: i64,
    /// Summed statistics.
    pub stat_search_restart: i64,
}

/// `message.host.filefd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileFdSummary {
    /// Allocated file handles.
    pub allocated: i64,
    /// Maximum file handles.
    pub maximum: i64,
    /// Maximum in millions.
    pub maximum_mega: f64,
}

/// `message.host`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostInfo {
    /// OS facts.
    pub meta: HostMeta,
    /// One entry per logical CPU.
    pub cpu: Option<Vec<CpuModel>>,
    /// Memory sizes.
    pub mem: Option<MemSummary>,
    /// Interfaces.
    pub net: Option<Vec<NetSummary>>,
    /// File systems.
    pub disk: Option<Vec<DiskSummary>>,
    /// Conntrack table.
    pub conntrack: ConntrackSummary,
    /// File handles.
    pub filefd: Option<FileFdSummary>,
    /// Election state (not known to a worker: always null).
    pub election: Option<()>,
    /// `config_path` files: path to content.
    pub config_file: BTreeMap<String, String>,
}

/// `message.config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostConfigSummary {
    /// The host's outbound IP.
    pub ip: String,
    /// DCA settings (not known to a worker: null).
    pub dca_config: Option<()>,
    /// HTTP API listen address (not known to a worker: empty).
    pub http_listen: String,
}

/// The JSON `message` field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostMessage {
    /// Host facts.
    pub host: HostInfo,
    /// Agent facts.
    pub config: HostConfigSummary,
}

/// The `hostobject` input.
pub struct HostObject {
    cfg: HostObjectConfig,
    reader: Reader,
    hostname: String,
    last_cpu: Option<CpuTimes>,
    last_disk: Option<(i64, u64, u64)>,
    last_net: Option<(i64, u64, u64)>,
    disk_rates: (i64, i64),
    net_rates: (i64, i64),
    cloud: Option<CloudProbe>,
}

impl HostObject {
    /// A `hostobject` input reading from `paths`; `hostname` is replaced by the runtime's
    /// when the input starts.
    pub fn new(cfg: HostObjectConfig, paths: HostPaths, hostname: String) -> Self {
        HostObject {
            cfg,
            reader: Reader::new(paths),
            hostname,
            last_cpu: None,
            last_disk: None,
            last_net: None,
            disk_rates: (0, 0),
            net_rates: (0, 0),
            cloud: None,
        }
    }

    fn release_files(&mut self) -> ReleaseFiles {
        let p = self.reader.paths.clone();
        let mut read = |rel: &str| self.reader.read(&p.etc(rel)).ok().map(str::to_string);
        ReleaseFiles {
            oracle_release: read("oracle-release").or_else(|| read("enterprise-release")),
            debian_version: read("debian_version"),
            lsb_release: read("lsb-release"),
            raspi_config: Path::new("/usr/bin/raspi-config").exists(),
            redhat_release: read("redhat-release"),
            system_release: read("system-release"),
            gentoo_release: read("gentoo-release"),
            suse_release: read("SuSE-release"),
            arch_release: p.etc("arch-release").exists(),
            alpine_release: read("alpine-release"),
            os_release: read("os-release"),
        }
    }

    fn meta(&mut self, boot_time: u64) -> HostMeta {
        let platform = detect_platform(&self.release_files());
        let kernel_release = self
            .reader
            .small(&self.reader.paths.proc("sys/kernel/osrelease"))
            .unwrap_or_default();
        let arch = self
            .reader
            .small(&self.reader.paths.proc("sys/kernel/arch"))
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        HostMeta {
            host_name: self.hostname.clone(),
            boot_time,
            os: "linux".to_string(),
            platform: platform.platform,
            platform_family: platform.family,
            platform_version: platform.version,
            kernel_release,
            arch,
        }
    }

    fn cpus(&mut self) -> Option<Vec<CpuModel>> {
        let mut cpus = parse_cpuinfo(self.reader.proc("cpuinfo").ok()?);
        for c in &mut cpus {
            let p = self.reader.paths.sys(&format!(
                "devices/system/cpu/cpu{}/cpufreq/cpuinfo_max_freq",
                c.processor
            ));
            if let Some(m) = self.reader.small(&p).as_deref().and_then(max_freq_mhz) {
                c.mhz = m;
            }
        }
        (!cpus.is_empty()).then_some(cpus)
    }

    fn interfaces(&mut self, addrs: &[(String, IpAddr, u8)]) -> Vec<NetSummary> {
        let ifaces = self.reader.interfaces();
        let skip: HashSet<String> = if self.cfg.enable_net_virtual_interfaces {
            HashSet::new()
        } else {
            self.reader.virtual_ifaces(true)
        };
        ifaces
            .into_iter()
            .filter(|i| !skip.contains(&i.name))
            .map(|i| net_summary(&i, addrs))
            .collect()
    }

    fn config_files(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for path in &self.cfg.config_path {
            match std::fs::metadata(path) {
                Ok(m) if m.len() <= MAX_CONFIG_FILE => {}
                Ok(_) => {
                    tracing::warn!(path, "config_path file larger than 4 KiB; skipped");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(path, error = %e, "config_path file not readable; skipped");
                    continue;
                }
            }
            match std::fs::read(path) {
                Ok(bytes) if looks_like_text(&bytes) => {
                    out.insert(path.clone(), String::from_utf8_lossy(&bytes).into_owned());
                }
                Ok(_) => tracing::warn!(path, "config_path file is not text; skipped"),
                Err(e) => tracing::warn!(path, error = %e, "config_path file not readable"),
            }
        }
        out
    }

    /// Updates the summed disk I/O rates (all devices in `/proc/diskstats`, as Datakit).
    fn disk_rates(&mut self, ts: i64) {
        let Ok(text) = self.reader.proc("diskstats") else {
            return;
        };
        let Ok(stats) = parse_diskstats(text) else {
            return;
        };
        let (r, w) = stats.iter().fold((0u64, 0u64), |(r, w), s| {
            (r.wrapping_add(s.read_bytes), w.wrapping_add(s.write_bytes))
        });
        if let Some((t, pr, pw)) = self.last_disk {
            self.disk_rates = (
                summed_rate(r, pr, secs_between(t, ts)),
                summed_rate(w, pw, secs_between(t, ts)),
            );
        }
        self.last_disk = Some((ts, r, w));
    }

    /// Updates the summed network rates over the reported interfaces.
    fn net_rates(&mut self, ts: i64, names: &HashSet<&str>) {
        let Ok(text) = self.reader.proc("net/dev") else {
            return;
        };
        let Ok(devs) = parse_net_dev(text) else {
            return;
        };
        let (recv, sent) = devs
            .iter()
            .filter(|d| names.contains(d.name.as_str()))
            .fold((0u64, 0u64), |(r, s), d| {
                (r.wrapping_add(d.bytes_recv), s.wrapping_add(d.bytes_sent))
            });
        if let Some((t, pr, ps)) = self.last_net {
            self.net_rates = (
                summed_rate(recv, pr, secs_between(t, ts)),
                summed_rate(sent, ps, secs_between(t, ts)),
            );
        }
        self.last_net = Some((ts, recv, sent));
    }
}

fn summed_rate(cur: u64, prev: u64, secs: f64) -> i64 {
    crate::inputs::rate(cur, prev, secs).unwrap_or(0)
}

/// Whether bytes look like a text file (valid UTF-8 without NUL or other binary control
/// characters), standing in for Go's `http.DetectContentType` "text/" check.
fn looks_like_text(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => !s
            .bytes()
            .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)),
        Err(_) => false,
    }
}

/// The flag names Datakit lists, in its order.
pub fn flag_names(flags: u32) -> Option<Vec<String>> {
    let names: Vec<String> = [
        (IFF_UP, "up"),
        (IFF_BROADCAST, "broadcast"),
        (IFF_LOOPBACK, "loopback"),
        (IFF_POINTOPOINT, "pointtopoint"),
        (IFF_MASTER, "master"),
        (IFF_SLAVE, "slave"),
        (IFF_MULTICAST, "multicast"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, n)| n.to_string())
    .collect();
    (!names.is_empty()).then_some(names)
}

/// One `message.host.net` entry from sysfs facts and `getifaddrs` addresses.
pub fn net_summary(i: &IfaceInfo, addrs: &[(String, IpAddr, u8)]) -> NetSummary {
    let mut s = NetSummary {
        mtu: i.mtu,
        name: i.name.clone(),
        mac: i.mac.clone(),
        flags: flag_names(i.flags),
        ..Default::default()
    };
    for (name, ip, prefix) in addrs {
        if *name != i.name || ip.is_loopback() {
            continue;
        }
        let cidr = format!("{ip}/{prefix}");
        if ip.is_ipv4() {
            s.ip4.clone_from(&cidr);
            s.ip4_all.get_or_insert_with(Vec::new).push(cidr);
        } else {
            s.ip6.clone_from(&cidr);
            s.ip6_all.get_or_insert_with(Vec::new).push(cidr);
        }
    }
    s
}

/// The `disk` list and `(disk_total, disk_used_percent)` of the reported mounts.
pub fn disk_summaries(mounts: &[MountUsage], ignore_zero: bool) -> (Vec<DiskSummary>, u64, f64) {
    let mut out = Vec::new();
    let (mut total, mut used) = (0f64, 0f64);
    let mut total_bytes = 0u64;
    for m in mounts {
        let u = &m.usage;
        if ignore_zero && u.total == 0 {
            continue;
        }
        total += u.total as f64;
        used += u.used as f64;
        total_bytes = total_bytes.saturating_add(u.total);
        out.push(DiskSummary {
            device: m.device.clone(),
            total: u.total,
            used: u.used,
            used_percent: u.used_percent,
            inodes_total: u.inodes_total,
            inodes_used: u.inodes_used,
            inodes_free: u.inodes_free,
            inodes_used_percent: u.inodes_used_percent,
            free: u.free,
            fstype: m.fstype.clone(),
            mountpoint: m.mount_point.clone(),
        });
    }
    let pct = if total > 0.0 {
        used / total * 100.0
    } else {
        0.0
    };
    (out, total_bytes, pct)
}

fn num_cpu() -> i64 {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cpus_allowed(&s).ok().flatten());
    let n = allowed.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for HostObject {
    fn name(&self) -> &'static str {
        "hostobject"
    }

    fn category(&self) -> Category {
        Category::Object
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    fn may_block(&self) -> bool {
        true
    }

    fn bind(&mut self, hostname: &str) {
        self.hostname = hostname.to_string();
        // The cloud probe runs beside the collections; they only read its last answer.
        self.cloud = Some(CloudProbe::start(self.cfg.cloud.clone()));
    }

    fn early(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.cloud.as_ref().map(CloudProbe::first_answer)
    }

    fn collect(&mut self, ts: i64) -> Result<Vec<Point>, CollectError> {
        let stat = parse_stat(self.reader.proc("stat")?)?;
        let boot_time = stat.boot_time.unwrap_or(0);
        let prev = self.last_cpu.unwrap_or_default();
        let cpu_usage = busy_percent(&stat.total, &prev);
        self.last_cpu = Some(stat.total);
        let load5 = self
            .reader
            .proc("loadavg")
            .ok()
            .and_then(|t| parse_loadavg(t).ok())
            .map(|l| l.1)
            .unwrap_or(0.0);
        let mem = self
            .reader
            .proc("meminfo")
            .ok()
            .and_then(|t| parse_meminfo(t).ok());
        let filefd = self
            .reader
            .proc("sys/fs/file-nr")
            .ok()
            .and_then(|t| parse_file_nr(t).ok())
            .map(|(allocated, maximum)| FileFdSummary {
                allocated,
                maximum,
                maximum_mega: maximum_mega(maximum),
            });
        let (count, max, cs) = conntrack(&mut self.reader);
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let conntrack = ConntrackSummary {
            entries: count,
            entries_limit: max,
            stat_found: i(cs.found),
            stat_invalid: i(cs.invalid),
            stat_ignore: i(cs.ignore),
            stat_insert: i(cs.insert),
            stat_insert_failed: i(cs.insert_failed),
            stat_drop: i(cs.drop),
            stat_early_drop: i(cs.early_drop),
            stat_search_restart: i(cs.search_restart),
        };
        let meta = self.meta(boot_time);
        let cpus = self.cpus();
        let addrs = interface_addresses();
        let net = self.interfaces(&addrs);
        let mounts = match mounts(&mut self.reader, &self.cfg.filter) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "hostobject: disks not collected");
                Vec::new()
            }
        };
        let (disks, disk_total, disk_used_percent) =
            disk_summaries(&mounts, self.cfg.ignore_zero_bytes_disk);
        let names: HashSet<&str> = net.iter().map(|n| n.name.as_str()).collect();
        self.net_rates(ts, &names);
        self.disk_rates(ts);
        let ip = local_ip(&addrs).unwrap_or_default();

        let msg = HostMessage {
            host: HostInfo {
                meta,
                cpu: cpus,
                mem: mem.map(|m| MemSummary {
                    memory_total: m.total,
                    swap_total: m.swap_total,
                }),
                net: (!net.is_empty()).then_some(net),
                disk: (!disks.is_empty()).then_some(disks),
                conntrack,
                filefd,
                election: None,
                config_file: self.config_files(),
            },
            config: HostConfigSummary {
                ip: ip.clone(),
                dca_config: None,
                http_listen: String::new(),
            },
        };
        let message = serde_json::to_string(&msg).unwrap_or_default();
        let meta = &msg.host.meta;
        let mut p = Point::new("HOST", ts)
            .tag("host", self.hostname.as_str())
            .tag("name", meta.host_name.as_str())
            .tag("os", meta.os.as_str())
            .tag("unicast_ip", ip)
            .tag("arch", meta.arch.as_str())
            .field("message", Value::S(message))
            .field("start_time", Value::U(boot_time.saturating_mul(1000)))
            .field("datakit_ver", Value::S(dk_proto::version().to_string()))
            .field("cpu_usage", Value::F(cpu_usage))
            .field(
                "mem_used_percent",
                Value::F(mem.map(|m| m.used_percent()).unwrap_or(0.0)),
            )
            .field("load", Value::F(load5))
            .field("disk_used_percent", Value::F(disk_used_percent))
            .field("diskio_read_bytes_per_sec", Value::I(self.disk_rates.0))
            .field("diskio_write_bytes_per_sec", Value::I(self.disk_rates.1))
            .field("net_recv_bytes_per_sec", Value::I(self.net_rates.0))
            .field("net_send_bytes_per_sec", Value::I(self.net_rates.1))
            .field("logging_level", Value::S("info".to_string()))
            .field("num_cpu", Value::I(num_cpu()))
            .field("disk_total", Value::U(disk_total))
            .field(
                "is_docker",
                Value::I(i64::from(Path::new("/.dockerenv").exists())),
            );
        if let Some(tags) = self.cloud.as_ref().and_then(CloudProbe::tags) {
            for (k, v) in tags {
                p.set_tag(k, v);
            }
        }
        Ok(vec![p])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_summary_lists_non_loopback_addresses_in_cidr_form() {
        let i = IfaceInfo {
            index: 2,
            name: "eth0".into(),
            mtu: 1500,
            mac: "52:54:00:12:34:56".into(),
            flags: IFF_UP | IFF_BROADCAST | IFF_MULTICAST,
        };
        let addrs = vec![
            ("eth0".to_string(), "10.0.0.5".parse().unwrap(), 24),
            ("eth0".to_string(), "10.0.1.5".parse().unwrap(), 16),
            ("eth0".to_string(), "fe80::1".parse().unwrap(), 64),
            ("lo".to_string(), "127.0.0.1".parse().unwrap(), 8),
        ];
        let s = net_summary(&i, &addrs);
        assert_eq!(s.ip4, "10.0.1.5/16");
        assert_eq!(
            s.ip4_all.as_deref(),
            Some(&["10.0.0.5/24".to_string(), "10.0.1.5/16".to_string()][..])
        );
        assert_eq!(s.ip6, "fe80::1/64");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"mtu":1500,"name":"eth0","mac":"52:54:00:12:34:56","flags":["up","broadcast","multicast"],"ip4":"10.0.1.5/16","ip6":"fe80::1/64","ip4_all":["10.0.0.5/24","10.0.1.5/16"],"ip6_all":["fe80::1/64"]}"#
        );
    }

    #[test]
    fn interfaces_without_addresses_serialise_nulls_like_go() {
        let s = net_summary(&IfaceInfo::default(), &[]);
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert!(v["flags"].is_null() && v["ip4_all"].is_null() && v["ip6_all"].is_null());
    }

    #[test]
    fn text_detection_rejects_binary() {
        assert!(looks_like_text(b"[inputs]\n\tkey = 1\r\n"));
        assert!(!looks_like_text(b"\x7fELF\x00\x01"));
        assert!(!looks_like_text(&[0xff, 0xfe]));
    }

    fn with_cloud(urls: &std::collections::BTreeMap<String, String>) -> HostObject {
        let mut text = String::from("[cloud_meta_url]\n");
        for (k, v) in urls {
            text.push_str(&format!("{k} = {v:?}\n"));
        }
        let crate::config::InputConfig::HostObject(c) =
            crate::config::decode("hostobject", &text).unwrap()
        else {
            panic!()
        };
        HostObject::new(c, HostPaths::from_env(), "h".into())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_host_object_does_not_wait_for_a_metadata_service_that_never_answers() {
        let (addr, accepted) = crate::inputs::cloud::fake::FakeMeta::blackhole();
        let mut o = with_cloud(&crate::inputs::cloud::fake::all_on(addr));
        o.bind("h");
        // Readiness: the probe is in flight (the server holds its connections unanswered).
        tokio::task::block_in_place(|| accepted.recv_timeout(Duration::from_secs(10)))
            .expect("the probe connects to the metadata server");
        let p = tokio::task::block_in_place(|| o.collect(1))
            .unwrap()
            .remove(0);
        assert_eq!(p.name, "HOST");
        assert!(p.get_field("message").is_some());
        assert_eq!(p.get_tag("cloud_provider"), None, "{:?}", p.tags);
        assert!(
            o.cloud.as_ref().unwrap().tags().is_none(),
            "the probe is still waiting: the object did not wait for it"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_objects_after_the_probe_answered_carry_the_cloud_tags() {
        let s = crate::inputs::cloud::fake::FakeMeta::start(
            &[
                ("GET /aliyun/instance-id", "i-bp1"),
                ("GET /aliyun/region-id", "cn-hangzhou"),
                ("GET /aliyun/zone-id", "cn-hangzhou-i"),
            ],
            None,
        );
        let mut o = with_cloud(&crate::inputs::cloud::fake::all_on(s.addr));
        o.bind("h");
        o.cloud.as_mut().unwrap().answered().await.unwrap();
        let p = tokio::task::block_in_place(|| o.collect(1))
            .unwrap()
            .remove(0);
        assert_eq!(p.get_tag("cloud_provider"), Some("aliyun"));
        assert_eq!(p.get_tag("instance_id"), Some("i-bp1"));
        assert_eq!(p.get_tag("region"), Some("cn-hangzhou"));
        assert_eq!(p.get_tag("zone_id"), Some("cn-hangzhou-i"));
        assert!(
            p.get_tag("extra_cloud_meta")
                .is_some_and(|j| j.contains("\"instance_type\":\"-\""))
        );
    }
}
