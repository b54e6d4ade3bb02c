//! Collector tests on a fake `/proc` + `/sys` tree, and the field-type table of every
//! measurement checked against Datakit's.

use std::fs;
use std::time::Duration;

use dk_proto::{Point, Value};
use dk_worker::Family;
use dk_worker::testing::{instances, spec, worker_config};

use crate::config::{InputConfig, decode};
use crate::inputs::{cpu, disk, diskio, hostobject, mem, net, swap, system};
use crate::runner::Collector;
use crate::sys::HostPaths;

const SEC: i64 = 1_000_000_000;

/// A fake host file-system tree in a temporary directory.
struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> Self {
        let h = FakeHost {
            dir: tempfile::tempdir().unwrap(),
        };
        h.write("proc/stat", include_str!("../testdata/proc_stat"));
        h.write("proc/meminfo", include_str!("../testdata/proc_meminfo"));
        h.write("proc/loadavg", include_str!("../testdata/proc_loadavg"));
        h.write("proc/uptime", include_str!("../testdata/proc_uptime"));
        h.write("proc/vmstat", include_str!("../testdata/proc_vmstat"));
        h.write("proc/cpuinfo", include_str!("../testdata/proc_cpuinfo"));
        h.write("proc/diskstats", include_str!("../testdata/proc_diskstats"));
        h.write("proc/net/dev", include_str!("../testdata/net_dev"));
        h.write("proc/net/snmp", include_str!("../testdata/net_snmp"));
        h.write("proc/sys/fs/file-nr", include_str!("../testdata/file-nr"));
        h.write("proc/sys/kernel/osrelease", "6.1.0-test\n");
        h.write("etc/debian_version", "12.11\n");
        for (name, flags) in [("lo", "0x9"), ("eth0", "0x1003"), ("eth1", "0x1002")] {
            h.write(&format!("sys/class/net/{name}/flags"), flags);
            h.write(&format!("sys/class/net/{name}/mtu"), "1500");
            h.write(
                &format!("sys/class/net/{name}/address"),
                "52:54:00:00:00:01",
            );
        }
        h.write("sys/class/net/lo/ifindex", "1");
        h.write("sys/class/net/eth0/ifindex", "2");
        h.write("sys/class/net/eth1/ifindex", "3");
        fs::create_dir_all(h.path("sys/devices/virtual/net/lo")).unwrap();
        h
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn paths(&self) -> HostPaths {
        HostPaths::under(self.dir.path())
    }
}

fn cfg(input: &str, text: &str) -> InputConfig {
    decode(input, text).unwrap()
}

fn variant(v: &Value) -> &'static str {
    v.type_name()
}

/// Asserts that a point has exactly these fields with these types (`int`, `uint`,
/// `float`, `string`).
fn assert_fields(p: &Point, expected: &[(&str, &str)]) {
    let mut got: Vec<(String, &'static str)> = p
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), variant(v)))
        .collect();
    got.sort();
    let mut want: Vec<(String, &'static str)> = expected
        .iter()
        .map(|(k, t)| (k.to_string(), type_static(t)))
        .collect();
    want.sort();
    assert_eq!(got, want, "fields of {}", p.name);
}

fn type_static(t: &str) -> &'static str {
    match t {
        "int" => "int",
        "uint" => "uint",
        "float" => "float",
        "string" => "string",
        other => panic!("unknown type {other}"),
    }
}

fn tags(p: &Point) -> Vec<&str> {
    let mut t: Vec<&str> = p.tags.iter().map(|(k, _)| k.as_str()).collect();
    t.sort();
    t
}

const CPU_FIELDS: [(&str, &str); 11] = [
    ("usage_user", "float"),
    ("usage_system", "float"),
    ("usage_idle", "float"),
    ("usage_nice", "float"),
    ("usage_iowait", "float"),
    ("usage_irq", "float"),
    ("usage_softirq", "float"),
    ("usage_steal", "float"),
    ("usage_guest", "float"),
    ("usage_guest_nice", "float"),
    ("usage_total", "float"),
];

#[test]
fn cpu_reports_nothing_on_the_first_sample_then_usage_of_the_delta() {
    let h = FakeHost::new();
    let InputConfig::Cpu(c) = cfg("cpu", "percpu = true\nenable_load5s = true") else {
        panic!()
    };
    let mut cpu = cpu::Cpu::new(c, h.paths());
    assert!(cpu.collect(0).unwrap().is_empty());
    h.write(
        "proc/stat",
        "cpu  10522 0 4542 83771 394 0 49 657 0 0\n\
         cpu0 5033 0 2113 42448 64 0 9 316 0 0\n\
         cpu1 5489 0 2428 41322 330 0 39 341 0 0\n",
    );
    let points = cpu.collect(10 * SEC).unwrap();
    let names: Vec<&str> = points.iter().filter_map(|p| p.get_tag("cpu")).collect();
    assert_eq!(names, ["cpu0", "cpu1", "cpu-total"]);
    let total = &points[2];
    assert_eq!(total.time, 10 * SEC);
    let mut fields = CPU_FIELDS.to_vec();
    fields.push(("load5s", "int"));
    assert_fields(total, &fields);
    assert_eq!(total.get_field("usage_user"), Some(&Value::F(25.0)));
    assert_eq!(total.get_field("usage_idle"), Some(&Value::F(75.0)));
    assert_eq!(total.get_field("usage_total"), Some(&Value::F(25.0)));
    assert_eq!(tags(total), ["cpu"]);
}

#[test]
fn cpu_counters_going_backwards_emit_nothing_rather_than_negative_usage() {
    let h = FakeHost::new();
    let mut cpu = cpu::Cpu::new(
        match cfg("cpu", "") {
            InputConfig::Cpu(c) => c,
            _ => panic!(),
        },
        h.paths(),
    );
    cpu.collect(0).unwrap();
    h.write("proc/stat", "cpu 1 0 1 1 0 0 0 0 0 0\n");
    assert!(cpu.collect(SEC).unwrap().is_empty());
}

#[test]
fn cpu_reports_coretemp_average_on_cpu_total() {
    let h = FakeHost::new();
    h.write("sys/class/hwmon/hwmon0/name", "coretemp\n");
    h.write("sys/class/hwmon/hwmon0/temp2_label", "Core 0\n");
    h.write("sys/class/hwmon/hwmon0/temp2_input", "40000\n");
    h.write("sys/class/hwmon/hwmon0/temp3_label", "Core 1\n");
    h.write("sys/class/hwmon/hwmon0/temp3_input", "44000\n");
    let InputConfig::Cpu(c) = cfg("cpu", "") else {
        panic!()
    };
    let mut cpu = cpu::Cpu::new(c, h.paths());
    cpu.collect(0).unwrap();
    h.write("proc/stat", "cpu  10522 0 4542 83771 394 0 49 657 0 0\n");
    let p = &cpu.collect(SEC).unwrap()[0];
    assert_eq!(p.get_field("core_temperature"), Some(&Value::F(42.0)));
}

#[test]
fn mem_point_has_datakit_linux_fields_with_unsigned_byte_counts() {
    let h = FakeHost::new();
    let InputConfig::Mem(c) = cfg("mem", "") else {
        panic!()
    };
    let p = mem::Mem::new(c, h.paths()).collect(7).unwrap().remove(0);
    assert_eq!(p.name, "mem");
    assert_eq!(p.time, 7);
    let mut want: Vec<(&str, &str)> = [
        "total",
        "available",
        "used",
        "active",
        "buffered",
        "cached",
        "commit_limit",
        "committed_as",
        "dirty",
        "free",
        "high_free",
        "high_total",
        "huge_pages_free",
        "huge_pages_size",
        "huge_pages_total",
        "inactive",
        "low_free",
        "low_total",
        "mapped",
        "page_tables",
        "shared",
        "slab",
        "sreclaimable",
        "sunreclaim",
        "swap_cached",
        "swap_free",
        "swap_total",
        "vmalloc_chunk",
        "vmalloc_total",
        "vmalloc_used",
        "write_back",
        "write_back_tmp",
    ]
    .iter()
    .map(|k| (*k, "uint"))
    .collect();
    want.push(("used_percent", "float"));
    want.push(("available_percent", "float"));
    assert_fields(&p, &want);
    assert_eq!(p.get_field("total"), Some(&Value::U(24_684_084 * 1024)));
    assert!(p.tags.is_empty());
}

#[test]
fn swap_reports_sizes_and_traffic_in_bytes() {
    let h = FakeHost::new();
    h.write(
        "proc/meminfo",
        "MemTotal: 100 kB\nSwapTotal: 1000 kB\nSwapFree: 750 kB\n",
    );
    h.write("proc/vmstat", "pswpin 3\npswpout 5\n");
    let InputConfig::Swap(c) = cfg("swap", "") else {
        panic!()
    };
    let p = swap::Swap::new(c, h.paths()).collect(0).unwrap().remove(0);
    assert_fields(
        &p,
        &[
            ("total", "uint"),
            ("used", "uint"),
            ("free", "uint"),
            ("used_percent", "float"),
            ("in", "uint"),
            ("out", "uint"),
        ],
    );
    assert_eq!(p.get_field("used"), Some(&Value::U(250 * 1024)));
    assert_eq!(p.get_field("used_percent"), Some(&Value::F(25.0)));
    assert_eq!(p.get_field("in"), Some(&Value::U(3 * 4096)));
    assert_eq!(p.get_field("out"), Some(&Value::U(5 * 4096)));
}

#[test]
fn system_reports_system_conntrack_and_filefd() {
    let h = FakeHost::new();
    let mut utmp = vec![0u8; 384 * 3];
    utmp[0..2].copy_from_slice(&7i16.to_ne_bytes());
    utmp[384..386].copy_from_slice(&2i16.to_ne_bytes());
    utmp[768..770].copy_from_slice(&7i16.to_ne_bytes());
    fs::create_dir_all(h.path("var/run")).unwrap();
    fs::write(h.path("var/run/utmp"), utmp).unwrap();
    for pid in ["1", "42", "self"] {
        fs::create_dir_all(h.path(&format!("proc/{pid}"))).unwrap();
    }
    h.write("proc/sys/net/netfilter/nf_conntrack_count", "12\n");
    h.write(
        "proc/net/stat/nf_conntrack",
        include_str!("../testdata/nf_conntrack_stat"),
    );
    let InputConfig::System(c) = cfg("system", "") else {
        panic!()
    };
    let points = system::System::new(c, h.paths()).collect(0).unwrap();
    let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["conntrack", "filefd", "system"]);
    let conntrack = &points[0];
    assert_fields(
        conntrack,
        &[
            ("entries", "int"),
            ("entries_limit", "int"),
            ("stat_found", "int"),
            ("stat_invalid", "int"),
            ("stat_ignore", "int"),
            ("stat_insert", "int"),
            ("stat_insert_failed", "int"),
            ("stat_drop", "int"),
            ("stat_early_drop", "int"),
            ("stat_search_restart", "int"),
        ],
    );
    assert_eq!(conntrack.get_field("entries"), Some(&Value::I(12)));
    assert_eq!(
        conntrack.get_field("entries_limit"),
        Some(&Value::I(-1)),
        "absent nf_conntrack_max reads as -1 as in Datakit"
    );
    assert_fields(
        &points[1],
        &[("allocated", "int"), ("maximum_mega", "float")],
    );
    let s = &points[2];
    assert_fields(
        s,
        &[
            ("load1", "float"),
            ("load5", "float"),
            ("load15", "float"),
            ("load1_per_core", "float"),
            ("load5_per_core", "float"),
            ("load15_per_core", "float"),
            ("n_cpus", "int"),
            ("n_users", "int"),
            ("process_count", "int"),
            ("uptime", "uint"),
            ("cpu_total_usage", "float"),
            ("memory_usage", "float"),
        ],
    );
    assert_eq!(s.get_field("n_users"), Some(&Value::I(2)));
    assert_eq!(s.get_field("n_cpus"), Some(&Value::I(2)));
    assert_eq!(s.get_field("process_count"), Some(&Value::I(2)));
    assert_eq!(s.get_field("load1"), Some(&Value::F(0.30)));
    assert_eq!(s.get_field("load1_per_core"), Some(&Value::F(0.15)));
    assert_eq!(s.get_field("uptime"), Some(&Value::U(498)));
}

#[test]
fn system_counts_logind_sessions_without_utmp_and_omits_n_users_without_either() {
    let h = FakeHost::new();
    let InputConfig::System(c) = cfg("system", "") else {
        panic!()
    };
    let mut s = system::System::new(c, h.paths());
    let p = s.collect(0).unwrap().pop().unwrap();
    assert_eq!(p.get_field("n_users"), None);
    h.write("run/systemd/sessions/3", "CLASS=user\nSTATE=active\n");
    h.write("run/systemd/sessions/4", "CLASS=user\nSTATE=closing\n");
    h.write("run/systemd/sessions/3.ref", "x");
    let p = s.collect(SEC).unwrap().pop().unwrap();
    assert_eq!(p.get_field("n_users"), Some(&Value::I(1)));
}

const NET_FIELDS: [(&str, &str); 8] = [
    ("bytes_sent", "uint"),
    ("bytes_recv", "uint"),
    ("packets_sent", "uint"),
    ("packets_recv", "uint"),
    ("err_in", "uint"),
    ("err_out", "uint"),
    ("drop_in", "uint"),
    ("drop_out", "uint"),
];

fn net_dev(eth0: [u64; 4]) -> String {
    let [br, pr, bs, ps] = eth0;
    format!(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo:    3743      39    0    0    0     0          0         0     3743      39    0    0    0     0       0          0\n  \
         eth0: {br} {pr} 0 0 0 0 0 0 {bs} {ps} 0 0 0 0 0 0\n  \
         eth1: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n"
    )
}

#[test]
fn net_reports_up_physical_interfaces_with_rates_and_the_protocol_point() {
    let h = FakeHost::new();
    h.write("proc/net/dev", &net_dev([1000, 10, 500, 5]));
    let InputConfig::Net(c) = cfg("net", "") else {
        panic!()
    };
    let mut n = net::Net::new(c, h.paths());
    let first = n.collect(0).unwrap();
    let ifaces: Vec<&str> = first
        .iter()
        .filter_map(|p| p.get_tag("interface"))
        .collect();
    assert_eq!(ifaces, ["eth0", "all"], "lo is virtual, eth1 is down");
    assert_fields(&first[0], &NET_FIELDS);

    h.write("proc/net/dev", &net_dev([3000, 30, 1500, 15]));
    h.write(
        "proc/net/snmp",
        &include_str!("../testdata/net_snmp").replace(
            "Tcp: 1 200 120000 -1 39 2 0 29 0 2202 1540",
            "Tcp: 1 200 120000 -1 39 2 0 29 0 2222 1560",
        ),
    );
    let second = n.collect(10 * SEC).unwrap();
    let eth0 = &second[0];
    let mut want = NET_FIELDS.to_vec();
    want.extend([
        ("bytes_sent/sec", "int"),
        ("bytes_recv/sec", "int"),
        ("packets_sent/sec", "int"),
        ("packets_recv/sec", "int"),
    ]);
    assert_fields(eth0, &want);
    assert_eq!(eth0.get_field("bytes_recv/sec"), Some(&Value::I(200)));
    assert_eq!(eth0.get_field("bytes_sent/sec"), Some(&Value::I(100)));
    assert_eq!(eth0.get_field("packets_recv/sec"), Some(&Value::I(2)));

    let all = &second[1];
    assert_eq!(all.get_field("tcp_insegs/sec"), Some(&Value::I(2)));
    assert_eq!(all.get_field("tcp_outsegs/sec"), Some(&Value::I(2)));
    assert_eq!(all.get_field("udp_indatagrams/sec"), Some(&Value::I(0)));
    assert_eq!(all.get_field("tcp_maxconn"), Some(&Value::I(-1)));
    let mut proto_keys: Vec<&str> = all
        .fields
        .iter()
        .map(|(k, v)| {
            assert!(matches!(v, Value::I(_)), "{k} must be an int");
            k.as_str()
        })
        .collect();
    proto_keys.sort();
    assert_eq!(
        proto_keys,
        [
            "tcp_activeopens",
            "tcp_attemptfails",
            "tcp_currestab",
            "tcp_estabresets",
            "tcp_incsumerrors",
            "tcp_inerrs",
            "tcp_insegs",
            "tcp_insegs/sec",
            "tcp_maxconn",
            "tcp_outrsts",
            "tcp_outsegs",
            "tcp_outsegs/sec",
            "tcp_passiveopens",
            "tcp_retranssegs",
            "tcp_rtoalgorithm",
            "tcp_rtomax",
            "tcp_rtomin",
            "udp_ignoredmulti",
            "udp_incsumerrors",
            "udp_indatagrams",
            "udp_indatagrams/sec",
            "udp_inerrors",
            "udp_memerrors",
            "udp_noports",
            "udp_outdatagrams",
            "udp_outdatagrams/sec",
            "udp_rcvbuferrors",
            "udp_sndbuferrors",
        ]
    );
}

#[test]
fn net_32_bit_counter_wrap_drops_the_rate_instead_of_going_negative() {
    let h = FakeHost::new();
    h.write("proc/net/dev", &net_dev([4_294_967_000, 10, 500, 5]));
    let InputConfig::Net(c) = cfg("net", "ignore_protocol_stats = true") else {
        panic!()
    };
    let mut n = net::Net::new(c, h.paths());
    assert_eq!(n.collect(0).unwrap().len(), 1);
    h.write("proc/net/dev", &net_dev([200, 20, 600, 6]));
    let p = n.collect(10 * SEC).unwrap().remove(0);
    assert_eq!(p.get_field("bytes_recv/sec"), None);
    assert_eq!(p.get_field("bytes_sent/sec"), Some(&Value::I(10)));
    assert_eq!(p.get_field("packets_recv/sec"), Some(&Value::I(1)));
}

#[test]
fn net_filters_by_regex_and_can_include_virtual_interfaces() {
    let h = FakeHost::new();
    let InputConfig::Net(c) = cfg(
        "net",
        "interfaces = ['^lo$', '^eth']\nenable_virtual_interfaces = true\nignore_protocol_stats = true",
    ) else {
        panic!()
    };
    let points = net::Net::new(c, h.paths()).collect(0).unwrap();
    let ifaces: Vec<&str> = points
        .iter()
        .filter_map(|p| p.get_tag("interface"))
        .collect();
    assert_eq!(ifaces, ["lo", "eth0"]);
}

fn diskstats(read_sectors: u64, write_sectors: u64) -> String {
    format!(
        "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
         254       0 vda 100 5 {read_sectors} 27 20 18 {write_sectors} 66 0 60 34 0 0 0 0 0 0\n \
         254       1 vda1 10 0 8 2 0 0 0 0 0 1 2\n"
    )
}

const DISKIO_FIELDS: [(&str, &str); 11] = [
    ("reads", "uint"),
    ("writes", "uint"),
    ("read_bytes", "uint"),
    ("write_bytes", "uint"),
    ("read_time", "uint"),
    ("write_time", "uint"),
    ("io_time", "uint"),
    ("weighted_io_time", "uint"),
    ("iops_in_progress", "uint"),
    ("merged_reads", "uint"),
    ("merged_writes", "uint"),
];

#[test]
fn diskio_reports_devices_with_rates_from_the_previous_sample() {
    let h = FakeHost::new();
    h.write("proc/diskstats", &diskstats(1000, 2000));
    h.write(
        "run/udev/data/b254:0",
        "S:disk/by-id/virtio-abc\nE:ID_SERIAL=abc123\nE:ID_FS_TYPE=ext4\n",
    );
    let InputConfig::Diskio(c) = cfg("diskio", "device_tags = ['ID_FS_TYPE', 'NOPE']") else {
        panic!()
    };
    let mut d = diskio::Diskio::new(c, h.paths());
    let first = d.collect(0).unwrap();
    let names: Vec<&str> = first.iter().filter_map(|p| p.get_tag("name")).collect();
    assert_eq!(names, ["/dev/vda", "/dev/vda1"], "idle loop0 is skipped");
    assert_fields(&first[0], &DISKIO_FIELDS);
    assert_eq!(first[0].get_tag("serial"), Some("abc123"));
    assert_eq!(first[0].get_tag("ID_FS_TYPE"), Some("ext4"));
    assert_eq!(tags(&first[0]), ["ID_FS_TYPE", "name", "serial"]);

    h.write("proc/diskstats", &diskstats(1020, 1990));
    let p = d.collect(10 * SEC).unwrap().remove(0);
    assert_eq!(p.get_field("read_bytes/sec"), Some(&Value::I(1024)));
    assert_eq!(
        p.get_field("write_bytes/sec"),
        None,
        "a counter going backwards gives no rate"
    );
}

#[test]
fn diskio_names_templates_and_device_filter_use_udev_links() {
    let h = FakeHost::new();
    h.write("proc/diskstats", &diskstats(1, 1));
    h.write(
        "run/udev/data/b254:0",
        "S:mapper/vg0-root\nE:DM_VG_NAME=vg0\nE:DM_LV_NAME=root\n",
    );
    let InputConfig::Diskio(c) = cfg(
        "diskio",
        "devices = ['^/dev/mapper/']\nname_templates = ['$ID_FS_LABEL', '$DM_VG_NAME/$DM_LV_NAME']\nskip_serial_number = true",
    ) else {
        panic!()
    };
    let p = diskio::Diskio::new(c, h.paths())
        .collect(0)
        .unwrap()
        .remove(0);
    assert_eq!(p.get_tag("name"), Some("vg0/root"));
    assert_eq!(p.get_tag("serial"), None);
}

#[test]
fn diskio_serial_is_unknown_without_udev_data() {
    let h = FakeHost::new();
    h.write("proc/diskstats", &diskstats(1, 1));
    let InputConfig::Diskio(c) = cfg("diskio", "") else {
        panic!()
    };
    let p = diskio::Diskio::new(c, h.paths())
        .collect(0)
        .unwrap()
        .remove(0);
    assert_eq!(p.get_tag("serial"), Some("unknown"));
}

fn fake_mounts(h: &FakeHost) {
    fs::create_dir_all(h.path("mnt/data")).unwrap();
    fs::create_dir_all(h.path("mnt/run/containerd/x")).unwrap();
    h.write(
        "proc/1/mountinfo",
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
         28 27 254:1 / /data rw - xfs /dev/vda1 rw\n\
         29 27 0:5 / /dev/shm rw - tmpfs tmpfs rw\n\
         30 27 254:2 / /run/containerd/x rw - ext4 /dev/vdb rw\n\
         31 27 254:3 / /missing rw - ext4 /dev/vdc rw\n",
    );
}

const DISK_FIELDS: [(&str, &str); 11] = [
    ("total", "uint"),
    ("free", "uint"),
    ("used", "uint"),
    ("used_percent", "float"),
    ("inodes_used_percent", "float"),
    ("inodes_total_mb", "uint"),
    ("inodes_free_mb", "uint"),
    ("inodes_used_mb", "uint"),
    ("inodes_total", "uint"),
    ("inodes_free", "uint"),
    ("inodes_used", "uint"),
];

#[test]
fn disk_reports_mounts_that_pass_the_filters_and_can_be_statted() {
    let h = FakeHost::new();
    fake_mounts(&h);
    let InputConfig::Disk(c) = cfg("disk", "exclude_device = ['/DEV/VDA1']") else {
        panic!()
    };
    let points = disk::Disk::new(c, h.paths()).collect(5).unwrap();
    let mps: Vec<&str> = points
        .iter()
        .filter_map(|p| p.get_tag("mount_point"))
        .collect();
    assert_eq!(
        mps,
        ["/"],
        "vda1 excluded, tmpfs and containerd ignored, /missing not stat-able"
    );
    let p = &points[0];
    assert_eq!(tags(p), ["device", "fstype", "mount_point"]);
    assert_eq!(p.get_tag("device"), Some("/dev/vda"));
    assert_fields(p, &DISK_FIELDS);
    let Some(Value::U(total)) = p.get_field("total") else {
        panic!()
    };
    assert!(*total > 0);
}

#[test]
fn hostobject_is_an_object_named_after_the_host_with_a_json_message() {
    let h = FakeHost::new();
    fake_mounts(&h);
    h.write("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
    let InputConfig::HostObject(c) = cfg("hostobject", "") else {
        panic!()
    };
    let mut o = hostobject::HostObject::new(c, h.paths(), "boot-name".into());
    o.bind("my-host");
    assert_eq!(o.category(), dk_proto::Category::Object);
    let p = o.collect(3).unwrap().remove(0);
    assert_eq!(p.name, "HOST");
    assert_eq!(p.get_tag("host"), Some("my-host"));
    assert_eq!(p.get_tag("name"), Some("my-host"));
    assert_eq!(p.get_tag("os"), Some("linux"));
    assert_eq!(tags(&p), ["arch", "host", "name", "os", "unicast_ip"]);
    assert_fields(
        &p,
        &[
            ("message", "string"),
            ("start_time", "uint"),
            ("datakit_ver", "string"),
            ("cpu_usage", "float"),
            ("mem_used_percent", "float"),
            ("load", "float"),
            ("disk_used_percent", "float"),
            ("diskio_read_bytes_per_sec", "int"),
            ("diskio_write_bytes_per_sec", "int"),
            ("net_recv_bytes_per_sec", "int"),
            ("net_send_bytes_per_sec", "int"),
            ("logging_level", "string"),
            ("num_cpu", "int"),
            ("disk_total", "uint"),
            ("is_docker", "int"),
        ],
    );
    assert_eq!(
        p.get_field("start_time"),
        Some(&Value::U(1_795_304_018_000))
    );
    let Some(Value::S(msg)) = p.get_field("message") else {
        panic!()
    };
    let m: serde_json::Value = serde_json::from_str(msg).unwrap();
    let host = &m["host"];
    assert_eq!(host["meta"]["host_name"], "my-host");
    assert_eq!(host["meta"]["platform"], "debian");
    assert_eq!(host["meta"]["platform_version"], "12.11");
    assert_eq!(host["meta"]["kernel_release"], "6.1.0-test");
    assert_eq!(host["cpu"].as_array().unwrap().len(), 2);
    assert_eq!(host["mem"]["memory_total"], 24_684_084u64 * 1024);
    let nets: Vec<&str> = host["net"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nets, ["eth0", "eth1"], "virtual lo is left out");
    let disks = host["disk"].as_array().unwrap();
    let mps: Vec<&str> = disks
        .iter()
        .map(|d| d["mountpoint"].as_str().unwrap())
        .collect();
    assert_eq!(mps, ["/", "/data"]);
    assert_eq!(host["conntrack"]["entries"], -1);
    assert_eq!(host["filefd"]["maximum"], 2_466_170);
    assert!(host["election"].is_null());
    assert!(m["config"]["ip"].is_string());
}

#[test]
fn hostobject_rates_are_zero_first_then_per_second() {
    let h = FakeHost::new();
    h.write("proc/diskstats", &diskstats(1000, 1000));
    let InputConfig::HostObject(c) = cfg("hostobject", "") else {
        panic!()
    };
    let mut o = hostobject::HostObject::new(c, h.paths(), "h".into());
    let p = o.collect(0).unwrap().remove(0);
    assert_eq!(p.get_field("diskio_read_bytes_per_sec"), Some(&Value::I(0)));
    h.write("proc/diskstats", &diskstats(3000, 1000));
    h.write("proc/net/dev", &net_dev([39_496_812 + 1000, 0, 201_089, 0]));
    let p = o.collect(10 * SEC).unwrap().remove(0);
    // vda and vda1 are both summed, as Datakit does.
    assert_eq!(
        p.get_field("diskio_read_bytes_per_sec"),
        Some(&Value::I(2000 * 512 / 10))
    );
    assert_eq!(p.get_field("net_recv_bytes_per_sec"), Some(&Value::I(100)));
}

#[test]
fn every_sample_validates_without_problems() {
    let family = crate::HostFamily;
    let samples = family.samples();
    assert_eq!(
        samples.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        family.inputs()
    );
    for (input, text) in samples {
        let header = if *input == "hostobject" {
            format!("[inputs.{input}]")
        } else {
            format!("[[inputs.{input}]]")
        };
        assert!(text.contains(&header), "{input} sample lacks {header}");
        let instances = instances(text, input);
        assert_eq!(instances.len(), 1, "{input}");
        for inst in &instances {
            assert_eq!(family.validate(input, inst), vec![], "{input}: {inst}");
        }
        assert_eq!(family.validate(input, text), vec![], "{input} whole file");
    }
}

#[test]
fn samples_decode_to_datakit_defaults() {
    let family = crate::HostFamily;
    for (input, text) in family.samples() {
        let inst = &instances(text, input)[0];
        let c = decode(input, inst).unwrap();
        let interval = match &c {
            InputConfig::Cpu(c) => c.interval,
            InputConfig::Mem(c) | InputConfig::System(c) | InputConfig::Swap(c) => c.interval,
            InputConfig::Disk(c) => c.interval,
            InputConfig::Diskio(c) => c.interval,
            InputConfig::Net(c) => c.interval,
            InputConfig::HostObject(c) => c.interval,
            InputConfig::HostProcesses(c) => c.object_interval,
            InputConfig::Dk(c) => c.interval,
        };
        let want = match *input {
            "hostobject" | "host_processes" => 300,
            "dk" => 30,
            _ => 10,
        };
        assert_eq!(interval, Duration::from_secs(want), "{input}");
    }
}

#[test]
fn build_reports_problems_with_the_source_file_and_keeps_one_instance_per_input() {
    let spec = |name: &str, toml: &str| spec(name, "conf.d/host/x.conf", toml);
    let mut wc = worker_config("host", [spec("cpu", ""), spec("cpu", ""), spec("mem", "")]);
    let inputs = crate::HostFamily.build(&wc).unwrap();
    let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["cpu", "mem"]);
    wc.inputs = vec![spec("mem", "interval = 3"), spec("net", "interfaces = 'x'")];
    let Err(problems) = crate::HostFamily.build(&wc) else {
        panic!("expected problems")
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "interfaces");
    assert!(problems[0].message.contains("conf.d/host/x.conf"));
}

/// Times one full collection of every input on this machine. Run with
/// `cargo test -p dk-input-host -- --ignored --nocapture measure`.
#[test]
#[ignore = "measurement, prints timings"]
fn measure_one_full_collection_of_all_inputs() {
    let paths = HostPaths::from_env();
    let mut all: Vec<Box<dyn FnMut(i64) -> usize>> = Vec::new();
    macro_rules! add {
        ($input:literal, $variant:ident, $ctor:path) => {{
            let InputConfig::$variant(c) = cfg($input, "percpu = true") else {
                panic!()
            };
            let mut col = $ctor(c, paths.clone());
            all.push(Box::new(move |ts| {
                col.collect(ts).map(|p| p.len()).unwrap_or(0)
            }));
        }};
    }
    add!("cpu", Cpu, cpu::Cpu::new);
    add!("mem", Mem, mem::Mem::new);
    add!("disk", Disk, disk::Disk::new);
    add!("diskio", Diskio, diskio::Diskio::new);
    add!("net", Net, net::Net::new);
    add!("system", System, system::System::new);
    add!("swap", Swap, swap::Swap::new);
    let InputConfig::HostObject(c) = cfg("hostobject", "") else {
        panic!()
    };
    let mut ho = hostobject::HostObject::new(c, paths, "h".into());
    all.push(Box::new(move |ts| {
        ho.collect(ts).map(|p| p.len()).unwrap_or(0)
    }));
    for round in 0..3 {
        let start = std::time::Instant::now();
        let points: usize = all.iter_mut().map(|f| f(round * SEC)).sum();
        println!("round {round}: {points} points in {:?}", start.elapsed());
    }
}
