//! Config of each host input, decoded with Datakit's keys and defaults, reporting every
//! problem at once.
//!
//! Unknown keys are ignored, as Datakit ignores them. A key of the wrong type, a bad
//! duration or a regular expression that does not compile is a [`ConfigProblem`] naming
//! the key. Intervals outside Datakit's protected range are clamped, as Datakit does in
//! its default protect mode.

use std::collections::BTreeMap;
use std::time::Duration;

use dk_worker::ConfigProblem;
use dk_worker::config::{Decoded, Problems};
use regex::Regex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The default `ignore_fstypes` of `disk` and `hostobject`.
pub const DEFAULT_IGNORE_FSTYPES: &str =
    "^(tmpfs|autofs|binfmt_misc|devpts|fuse.lxcfs|overlay|proc|squashfs|sysfs)$";
/// The default `ignore_mountpoints` of `disk` and `hostobject`.
pub const DEFAULT_IGNORE_MOUNTPOINTS: &str = "^(/usr/local/datakit/.*|/run/containerd/.*)$";

/// `[[inputs.cpu]]`.
#[derive(Debug, Clone)]
pub struct CpuConfig {
    /// Collect interval (default 10 s, clamped to 1 s..1 min).
    pub interval: Duration,
    /// Also report one point per CPU (`percpu`).
    pub percpu: bool,
    /// Report `core_temperature` (`enable_temperature`, default true).
    pub enable_temperature: bool,
    /// Report `load5s` (`enable_load5s`).
    pub enable_load5s: bool,
    /// `[inputs.cpu.tags]`.
    pub tags: Vec<(String, String)>,
}

/// `[[inputs.mem]]`, `[[inputs.swap]]` and `[[inputs.system]]`: interval and tags only.
#[derive(Debug, Clone)]
pub struct BasicConfig {
    /// Collect interval (default 10 s, clamped to 1 s..1 min).
    pub interval: Duration,
    /// `[inputs.X.tags]`.
    pub tags: Vec<(String, String)>,
}

/// Mount filters shared by `disk` and `hostobject`.
#[derive(Debug, Clone)]
pub struct MountFilter {
    /// `exclude_device`: devices to skip (case-insensitive exact match).
    pub exclude_device: Vec<String>,
    /// `ignore_fstypes`.
    pub ignore_fstypes: Option<Regex>,
    /// `ignore_mountpoints`.
    pub ignore_mountpoints: Option<Regex>,
}

impl MountFilter {
    /// Whether a mount passes the filters.
    pub fn keeps(&self, device: &str, fstype: &str, mount_point: &str) -> bool {
        if self
            .exclude_device
            .iter()
            .any(|d| d.eq_ignore_ascii_case(device))
        {
            return false;
        }
        if self
            .ignore_fstypes
            .as_ref()
            .is_some_and(|r| r.is_match(fstype))
        {
            return false;
        }
        !self
            .ignore_mountpoints
            .as_ref()
            .is_some_and(|r| r.is_match(mount_point))
    }
}

/// `[[inputs.disk]]`.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Collect interval (default 10 s, clamped to 1 s..1 min).
    pub interval: Duration,
    /// Which mounts to report.
    pub filter: MountFilter,
    /// `[inputs.disk.tags]`.
    pub tags: Vec<(String, String)>,
}

/// `[[inputs.diskio]]`.
#[derive(Debug, Clone)]
pub struct DiskioConfig {
    /// Collect interval (default 10 s, clamped to 1 s..1 min).
    pub interval: Duration,
    /// `devices`: regular expressions a device name or one of its udev links must match.
    pub devices: Vec<Regex>,
    /// `device_tags`: udev properties added as tags.
    pub device_tags: Vec<String>,
    /// `name_templates`: templates for the `name` tag.
    pub name_templates: Vec<String>,
    /// `skip_serial_number`: omit the `serial` tag.
    pub skip_serial_number: bool,
    /// `[inputs.diskio.tags]`.
    pub tags: Vec<(String, String)>,
}

/// `[[inputs.net]]`.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Collect interval (default 10 s, clamped to 1 s..1 min).
    pub interval: Duration,
    /// `interfaces`: regular expressions an interface name must match.
    pub interfaces: Vec<Regex>,
    /// `enable_virtual_interfaces`.
    pub enable_virtual_interfaces: bool,
    /// `ignore_protocol_stats`: skip the `interface=all` TCP/UDP point.
    pub ignore_protocol_stats: bool,
    /// `[inputs.net.tags]`.
    pub tags: Vec<(String, String)>,
}

/// `[inputs.hostobject]`.
#[derive(Debug, Clone)]
pub struct HostObjectConfig {
    /// Collect interval (default 5 min, clamped to 10 s..30 min).
    pub interval: Duration,
    /// `enable_net_virtual_interfaces`.
    pub enable_net_virtual_interfaces: bool,
    /// `ignore_zero_bytes_disk` (default true).
    pub ignore_zero_bytes_disk: bool,
    /// Which mounts to report.
    pub filter: MountFilter,
    /// `config_path`: small text files embedded in `message.host.config_file`.
    pub config_path: Vec<String>,
    /// `[inputs.hostobject.tags]`.
    pub tags: Vec<(String, String)>,
    /// Cloud metadata settings.
    pub cloud: crate::inputs::cloud::CloudConfig,
}

/// A decoded instance of any host input.
#[derive(Debug, Clone)]
pub enum InputConfig {
    /// `cpu`.
    Cpu(CpuConfig),
    /// `mem`.
    Mem(BasicConfig),
    /// `disk`.
    Disk(DiskConfig),
    /// `diskio`.
    Diskio(DiskioConfig),
    /// `net`.
    Net(NetConfig),
    /// `system`.
    System(BasicConfig),
    /// `swap`.
    Swap(BasicConfig),
    /// `hostobject`.
    HostObject(HostObjectConfig),
    /// `host_processes`.
    HostProcesses(crate::inputs::process::ProcessesConfig),
    /// `dk`.
    Dk(crate::inputs::dk::DkConfig),
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const TEN_SECONDS: Duration = Duration::from_secs(10);

// The inputs as written: Datakit's keys and defaults, read by the runtime's collector. Datakit
// declares the intervals as `time.Duration`: a bare number is nanoseconds. Keys Datakit
// accepts and this build does not act on are typed as Datakit decodes them (see compat.md).

/// `[[inputs.cpu]]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct CpuToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    percpu: bool,
    enable_temperature: bool,
    enable_load5s: bool,
    tags: BTreeMap<String, String>,
    // Deprecated, without effect (as in Datakit).
    totalcpu: bool,
    collect_cpu_time: bool,
    report_active: bool,
    disable_temperature_collect: bool,
}

impl Default for CpuToml {
    fn default() -> Self {
        CpuToml {
            interval: TEN_SECONDS,
            percpu: false,
            enable_temperature: true,
            enable_load5s: false,
            tags: BTreeMap::new(),
            totalcpu: false,
            collect_cpu_time: false,
            report_active: false,
            disable_temperature_collect: false,
        }
    }
}

/// `[[inputs.mem]]`, `[[inputs.swap]]` and `[[inputs.system]]` (`fielddrop` is system's).
#[derive(Debug, Deserialize)]
#[serde(default)]
struct BasicToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    tags: BTreeMap<String, String>,
}

impl Default for BasicToml {
    fn default() -> Self {
        BasicToml {
            interval: TEN_SECONDS,
            tags: BTreeMap::new(),
        }
    }
}

/// `[[inputs.system]]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct SystemToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    tags: BTreeMap<String, String>,
    fielddrop: Vec<String>,
}

impl Default for SystemToml {
    fn default() -> Self {
        SystemToml {
            interval: TEN_SECONDS,
            tags: BTreeMap::new(),
            fielddrop: Vec::new(),
        }
    }
}

/// `[[inputs.disk]]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct DiskToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    exclude_device: Vec<String>,
    ignore_fstypes: String,
    ignore_mountpoints: String,
    tags: BTreeMap<String, String>,
    extra_device: Vec<String>,
    ignore_zero_bytes_disk: bool,
    use_nsenter: bool,
    merge_on_device: bool,
    enable_lvm_mapper_path: bool,
}

impl Default for DiskToml {
    fn default() -> Self {
        DiskToml {
            interval: TEN_SECONDS,
            exclude_device: Vec::new(),
            ignore_fstypes: DEFAULT_IGNORE_FSTYPES.to_string(),
            ignore_mountpoints: DEFAULT_IGNORE_MOUNTPOINTS.to_string(),
            tags: BTreeMap::new(),
            extra_device: Vec::new(),
            ignore_zero_bytes_disk: false,
            use_nsenter: false,
            merge_on_device: false,
            enable_lvm_mapper_path: false,
        }
    }
}

/// `[[inputs.diskio]]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct DiskioToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    devices: Vec<String>,
    device_tags: Vec<String>,
    name_templates: Vec<String>,
    skip_serial_number: bool,
    tags: BTreeMap<String, String>,
}

impl Default for DiskioToml {
    fn default() -> Self {
        DiskioToml {
            interval: TEN_SECONDS,
            devices: Vec::new(),
            device_tags: Vec::new(),
            name_templates: Vec::new(),
            skip_serial_number: false,
            tags: BTreeMap::new(),
        }
    }
}

/// `[[inputs.net]]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct NetToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    interfaces: Vec<String>,
    enable_virtual_interfaces: bool,
    ignore_protocol_stats: bool,
    tags: BTreeMap<String, String>,
}

impl Default for NetToml {
    fn default() -> Self {
        NetToml {
            interval: TEN_SECONDS,
            interfaces: Vec::new(),
            enable_virtual_interfaces: false,
            ignore_protocol_stats: false,
            tags: BTreeMap::new(),
        }
    }
}

/// `[inputs.hostobject]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct HostObjectToml {
    #[serde(with = "dk_worker::config::go")]
    interval: Duration,
    enable_net_virtual_interfaces: bool,
    ignore_zero_bytes_disk: bool,
    exclude_device: Vec<String>,
    ignore_fstypes: String,
    ignore_mountpoints: String,
    config_path: Vec<String>,
    tags: BTreeMap<String, String>,
    // Accepted and type-checked; see docs/compat.md for what is not implemented.
    name: String,
    class: String,
    description: String,
    pipeline: String,
    enable_cloud_host_tags_as_global_election_tags: bool,
    enable_cloud_host_tags_global_election: bool,
    enable_cloud_host_tags_as_global_host_tags: bool,
    enable_cloud_host_tags_global_host: bool,
    use_nsenter: bool,
    disable_cloud_provider_sync: bool,
    enable_cloud_aws_imds_v2: bool,
    enable_cloud_aws_ipv6: bool,
    #[serde(with = "dk_worker::config::go")]
    ignore_inputs_errors_before: Duration,
    #[serde(with = "dk_worker::config::go")]
    io_timeout: Duration,
    extra_device: Vec<String>,
    cloud_info: BTreeMap<String, String>,
    cloud_meta_url: BTreeMap<String, String>,
    cloud_meta_token_url: BTreeMap<String, String>,
}

impl Default for HostObjectToml {
    fn default() -> Self {
        HostObjectToml {
            interval: Duration::from_secs(300),
            enable_net_virtual_interfaces: false,
            ignore_zero_bytes_disk: true,
            exclude_device: Vec::new(),
            ignore_fstypes: DEFAULT_IGNORE_FSTYPES.to_string(),
            ignore_mountpoints: DEFAULT_IGNORE_MOUNTPOINTS.to_string(),
            config_path: Vec::new(),
            tags: BTreeMap::new(),
            name: String::new(),
            class: String::new(),
            description: String::new(),
            pipeline: String::new(),
            enable_cloud_host_tags_as_global_election_tags: false,
            enable_cloud_host_tags_global_election: false,
            enable_cloud_host_tags_as_global_host_tags: false,
            enable_cloud_host_tags_global_host: false,
            use_nsenter: false,
            disable_cloud_provider_sync: false,
            enable_cloud_aws_imds_v2: false,
            enable_cloud_aws_ipv6: false,
            ignore_inputs_errors_before: Duration::ZERO,
            io_timeout: Duration::ZERO,
            extra_device: Vec::new(),
            cloud_info: BTreeMap::new(),
            cloud_meta_url: BTreeMap::new(),
            cloud_meta_token_url: BTreeMap::new(),
        }
    }
}

/// Parses an instance's TOML text into a table. Accepts the bare instance table (how the
/// supervisor passes it) and, for convenience, a whole file holding `[[inputs.NAME]]`
/// or `[inputs.NAME]` (its first instance).
fn instance_table(input: &str, toml_text: &str) -> Result<Table, ConfigProblem> {
    let mut table: Table = toml_text.parse().map_err(|e: toml::de::Error| {
        ConfigProblem::new("", format!("not valid TOML: {}", e.message().trim_end()))
    })?;
    if table.len() == 1
        && let Some(Value::Table(inputs)) = table.get("inputs")
        && let Some(inner) = inputs.get(input)
    {
        let inner = match inner {
            Value::Array(a) => a.first().cloned(),
            other => Some(other.clone()),
        };
        if let Some(Value::Table(t)) = inner {
            table = t;
        }
    }
    Ok(table)
}

/// Decodes one instance of `input`: the config, or `None` for an input this family does
/// not serve or text that is not TOML, with every error and warning.
pub fn check(input: &str, toml_text: &str) -> Decoded<Option<InputConfig>> {
    let table = match instance_table(input, toml_text) {
        Ok(t) => t,
        Err(p) => {
            return Decoded {
                value: None,
                problems: Problems(vec![p]),
            };
        }
    };
    fn read<T: DeserializeOwned + Default>(table: Table) -> Decoded<T> {
        dk_worker::config::decode_table::<T>(table)
    }
    let interval = |p: &mut Problems, d: Duration| p.clamp("interval", d, SECOND, MINUTE);
    match input {
        "cpu" => read::<CpuToml>(table).map(|t, p| {
            Some(InputConfig::Cpu(CpuConfig {
                interval: interval(p, t.interval),
                percpu: t.percpu,
                enable_temperature: t.enable_temperature,
                enable_load5s: t.enable_load5s,
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "mem" | "swap" => read::<BasicToml>(table).map(|t, p| {
            let c = BasicConfig {
                interval: interval(p, t.interval),
                tags: t.tags.into_iter().collect(),
            };
            Some(if input == "mem" {
                InputConfig::Mem(c)
            } else {
                InputConfig::Swap(c)
            })
        }),
        "system" => read::<SystemToml>(table).map(|t, p| {
            Some(InputConfig::System(BasicConfig {
                interval: interval(p, t.interval),
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "disk" => read::<DiskToml>(table).map(|t, p| {
            Some(InputConfig::Disk(DiskConfig {
                interval: interval(p, t.interval),
                filter: mount_filter(
                    p,
                    t.exclude_device,
                    &t.ignore_fstypes,
                    &t.ignore_mountpoints,
                ),
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "diskio" => read::<DiskioToml>(table).map(|t, p| {
            Some(InputConfig::Diskio(DiskioConfig {
                interval: interval(p, t.interval),
                devices: compile_all(p, "devices", &t.devices),
                device_tags: t.device_tags,
                name_templates: t.name_templates,
                skip_serial_number: t.skip_serial_number,
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "net" => read::<NetToml>(table).map(|t, p| {
            Some(InputConfig::Net(NetConfig {
                interval: interval(p, t.interval),
                interfaces: compile_all(p, "interfaces", &t.interfaces),
                enable_virtual_interfaces: t.enable_virtual_interfaces,
                ignore_protocol_stats: t.ignore_protocol_stats,
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "hostobject" => read::<HostObjectToml>(table).map(|t, p| {
            Some(InputConfig::HostObject(HostObjectConfig {
                interval: p.clamp(
                    "interval",
                    t.interval,
                    TEN_SECONDS,
                    Duration::from_secs(1800),
                ),
                enable_net_virtual_interfaces: t.enable_net_virtual_interfaces,
                ignore_zero_bytes_disk: t.ignore_zero_bytes_disk,
                filter: mount_filter(
                    p,
                    t.exclude_device,
                    &t.ignore_fstypes,
                    &t.ignore_mountpoints,
                ),
                config_path: t.config_path,
                cloud: crate::inputs::cloud::CloudConfig {
                    disabled: t.disable_cloud_provider_sync,
                    provider: t.tags.get("cloud_provider").cloned(),
                    aws_imds_v2: t.enable_cloud_aws_imds_v2,
                    aws_ipv6: t.enable_cloud_aws_ipv6,
                    meta_url: t.cloud_meta_url,
                    token_url: t.cloud_meta_token_url,
                    interval: t.interval,
                },
                tags: t.tags.into_iter().collect(),
            }))
        }),
        "host_processes" => crate::inputs::process::decode_config(table)
            .map(|c, _| Some(InputConfig::HostProcesses(c))),
        "dk" => crate::inputs::dk::decode(table),
        other => Decoded {
            value: None,
            problems: Problems(vec![ConfigProblem::new(
                "",
                format!(
                    "input {other:?} is not part of the host family (cpu, mem, disk, diskio, net, system, swap, hostobject, host_processes, dk)"
                ),
            )]),
        },
    }
}

/// Decodes one instance of `input`.
///
/// # Errors
/// Every error found: unknown input names, syntax errors, keys of the wrong type,
/// bad durations and regular expressions.
pub fn decode(input: &str, toml_text: &str) -> Result<InputConfig, Vec<ConfigProblem>> {
    match check(input, toml_text).into_result() {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(vec![ConfigProblem::new(
            "",
            format!("input {input:?} has no config"),
        )]),
        Err(problems) => Err(problems),
    }
}

fn mount_filter(
    p: &mut Problems,
    exclude_device: Vec<String>,
    fstypes: &str,
    mountpoints: &str,
) -> MountFilter {
    MountFilter {
        exclude_device,
        ignore_fstypes: compile(p, "ignore_fstypes", fstypes),
        ignore_mountpoints: compile(p, "ignore_mountpoints", mountpoints),
    }
}

pub(crate) fn compile_all(p: &mut Problems, key: &str, texts: &[String]) -> Vec<Regex> {
    texts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| compile(p, &format!("{key}[{i}]"), t))
        .collect()
}

fn compile(p: &mut Problems, key: &str, text: &str) -> Option<Regex> {
    if text.is_empty() {
        return None;
    }
    match Regex::new(text) {
        Ok(r) => Some(r),
        Err(e) => {
            let first = e.to_string().lines().last().unwrap_or("").to_string();
            p.error(
                key,
                format!("{text:?} is not a valid regular expression ({first}); fix or remove it"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(input: &str, text: &str) -> Vec<ConfigProblem> {
        decode(input, text).err().unwrap_or_default()
    }

    #[test]
    fn defaults_match_datakit() {
        let InputConfig::Cpu(c) = decode("cpu", "").unwrap() else {
            panic!()
        };
        assert_eq!(c.interval, Duration::from_secs(10));
        assert!(!c.percpu && c.enable_temperature && !c.enable_load5s);
        let InputConfig::HostObject(h) = decode("hostobject", "").unwrap() else {
            panic!()
        };
        assert_eq!(h.interval, Duration::from_secs(300));
        assert!(h.ignore_zero_bytes_disk);
        assert!(h.filter.ignore_fstypes.unwrap().is_match("tmpfs"));
        let InputConfig::Disk(d) = decode("disk", "").unwrap() else {
            panic!()
        };
        assert!(!d.filter.keeps("/dev/x", "overlay", "/"));
        assert!(!d.filter.keeps("/dev/x", "ext4", "/run/containerd/io"));
        assert!(d.filter.keeps("/dev/x", "ext4", "/"));
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_its_key() {
        let text = r#"
interval = "ten seconds"
percpu = "yes"
enable_load5s = 1
[tags]
ok = "v"
bad = 3
"#;
        let p = problems("cpu", text);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["enable_load5s", "interval", "percpu", "tags.bad"]);
        assert!(p[2].message.contains("expected true or false"), "{}", p[2]);
        assert!(p[1].message.contains("10s"), "{}", p[1]);
    }

    #[test]
    fn bad_regular_expressions_and_array_items_are_problems() {
        let p = problems(
            "net",
            "interfaces = ['eth[', 3, 'lo']\nenable_virtual_interfaces = true\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["interfaces[1]", "interfaces[0]"]);
        let p = problems(
            "disk",
            "ignore_fstypes = '(['\nexclude_device = '/dev/sda'\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["exclude_device", "ignore_fstypes"]);
    }

    #[test]
    fn unknown_keys_warn_and_intervals_are_clamped_with_a_warning() {
        let InputConfig::Mem(m) = decode("mem", "interval = '500ms'\nno_such_key = 1\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(m.interval, Duration::from_secs(1));
        let warnings = check("mem", "interval = '500ms'\nintreval = '5s'\n").into_problems();
        assert!(
            warnings.iter().all(ConfigProblem::is_warning),
            "{warnings:?}"
        );
        let keys: Vec<&str> = warnings.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["intreval", "interval"]);
        assert!(warnings[0].message.ends_with("did you mean `interval`?"));
        assert!(warnings[1].message.contains("raises it to its minimum 1s"));
        let InputConfig::Swap(s) = decode("swap", "interval = '1h'").unwrap() else {
            panic!()
        };
        assert_eq!(s.interval, Duration::from_secs(60));
        let InputConfig::HostObject(h) = decode("hostobject", "interval = '1s'").unwrap() else {
            panic!()
        };
        assert_eq!(h.interval, Duration::from_secs(10));
    }

    #[test]
    fn a_bare_number_interval_warns_what_it_means_and_the_clamp() {
        let warnings = check("cpu", "interval = 10").into_problems();
        assert_eq!(
            warnings,
            vec![ConfigProblem::warning(
                "interval",
                "interval = 10 is 10ns as Datakit reads it (a bare number is nanoseconds here); \
                 if you meant 10s, write interval = \"10s\"; the input then raises it to its minimum 1s"
            )]
        );
    }

    #[test]
    fn every_sample_with_its_examples_uncommented_is_known() {
        for (input, sample) in crate::SAMPLES.iter().copied() {
            let uncommented = dk_worker::testing::uncommented(sample);
            for text in [sample.to_string(), uncommented] {
                for instance in dk_worker::testing::instances(&text, input) {
                    assert_eq!(
                        check(input, &instance).into_problems(),
                        Vec::new(),
                        "{input}"
                    );
                }
            }
        }
    }

    #[test]
    fn integer_intervals_are_nanoseconds_as_in_go() {
        let InputConfig::System(s) = decode("system", "interval = 5000000000").unwrap() else {
            panic!()
        };
        assert_eq!(s.interval, Duration::from_secs(5));
    }

    #[test]
    fn whole_files_and_unknown_inputs_are_handled() {
        let InputConfig::Net(n) =
            decode("net", "[[inputs.net]]\nignore_protocol_stats = true\n").unwrap()
        else {
            panic!()
        };
        assert!(n.ignore_protocol_stats);
        assert_eq!(problems("nope", "").len(), 1);
        let p = problems("mem", "interval = ");
        assert_eq!(p.len(), 1);
        assert!(p[0].message.starts_with("not valid TOML"), "{}", p[0]);
    }
}
