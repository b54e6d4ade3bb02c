//! Config of each host input, decoded with Datakit's keys and defaults, reporting every
//! problem at once.
//!
//! Unknown keys are ignored, as Datakit ignores them. A key of the wrong type, a bad
//! duration or a regular expression that does not compile is a [`ConfigProblem`] naming
//! the key. Intervals outside Datakit's protected range are clamped, as Datakit does in
//! its default protect mode.

use std::time::Duration;

use dk_worker::ConfigProblem;
use regex::Regex;
use toml::{Table, Value};

/// The default `ignore_fstypes` of `disk` and `hostobject`.
pub const DEFAULT_IGNORE_FSTYPES: &str =
    "^(tmpfs|autofs|binfmt_misc|devpts|fuse.lxcfs|overlay|proc|squashfs|sysfs)$";
/// The default `ignore_mountpoints` of `disk` and `hostobject`.
pub const DEFAULT_IGNORE_MOUNTPOINTS: &str = "^(/usr/local/datakit/.*|/run/containerd/.*)$";

/// Reads keys from one instance table, collecting problems instead of stopping.
struct Decoder<'a> {
    table: &'a Table,
    problems: Vec<ConfigProblem>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Decoder<'a> {
    fn new(table: &'a Table) -> Self {
        Decoder {
            table,
            problems: Vec::new(),
        }
    }

    fn wrong(&mut self, key: &str, want: &str, got: &Value) {
        self.problems.push(ConfigProblem::new(
            key,
            format!(
                "expected {want}, found {}; e.g. {}",
                type_name(got),
                example_for(key, want)
            ),
        ));
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.table.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                self.wrong(key, "true or false", v);
                default
            }
        }
    }

    fn string(&mut self, key: &str, default: &str) -> String {
        match self.table.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                self.wrong(key, "a string", v);
                default.to_string()
            }
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.table.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let k = format!("{key}[{i}]");
                            self.wrong(&k, "a string", other);
                        }
                    }
                }
                out
            }
            Some(v) => {
                self.wrong(key, "an array of strings", v);
                Vec::new()
            }
        }
    }

    /// A table of string values (`[inputs.X.tags]`), in key order.
    fn string_map(&mut self, key: &str) -> Vec<(String, String)> {
        match self.table.get(key) {
            None => Vec::new(),
            Some(Value::Table(t)) => {
                let mut out = Vec::with_capacity(t.len());
                for (k, v) in t {
                    match v {
                        Value::String(s) => out.push((k.clone(), s.clone())),
                        other => {
                            let kk = format!("{key}.{k}");
                            self.wrong(&kk, "a string", other);
                        }
                    }
                }
                out
            }
            Some(v) => {
                self.wrong(key, "a table of strings", v);
                Vec::new()
            }
        }
    }

    /// A Go duration string (`"10s"`) or an integer number of nanoseconds.
    fn duration(&mut self, key: &str, default: Duration) -> Duration {
        match self.table.get(key) {
            None => default,
            Some(Value::String(s)) => match dk_worker::config::duration(key, s) {
                Ok(d) => d,
                Err(p) => {
                    self.problems.push(p);
                    default
                }
            },
            Some(Value::Integer(n)) if *n >= 0 => Duration::from_nanos(n.unsigned_abs()),
            Some(v) => {
                self.wrong(key, "a duration string", v);
                default
            }
        }
    }

    fn interval(&mut self, default: Duration, min: Duration, max: Duration) -> Duration {
        self.duration("interval", default).clamp(min, max)
    }

    fn regex(&mut self, key: &str, default: &str) -> Option<Regex> {
        let text = self.string(key, default);
        self.compile(key, &text)
    }

    fn regexes(&mut self, key: &str) -> Vec<Regex> {
        let texts: Vec<(usize, String)> = match self.table.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_str().map(|s| (i, s.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        // Type problems (non-string items, a non-array value) are reported by `strings`.
        self.strings(key);
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in &texts {
            if let Some(r) = self.compile(&format!("{key}[{i}]"), t) {
                out.push(r);
            }
        }
        out
    }

    fn compile(&mut self, key: &str, text: &str) -> Option<Regex> {
        if text.is_empty() {
            return None;
        }
        match Regex::new(text) {
            Ok(r) => Some(r),
            Err(e) => {
                let first = e.to_string().lines().last().unwrap_or("").to_string();
                self.problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "{text:?} is not a valid regular expression ({first}); fix or remove it"
                    ),
                ));
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<ConfigProblem>> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems)
        }
    }
}

fn example_for(key: &str, want: &str) -> String {
    match want {
        "true or false" => format!("{key} = true"),
        "a duration string" => format!("{key} = \"10s\""),
        "an array of strings" => format!("{key} = [\"...\"]"),
        "a table of strings" => format!("[inputs.NAME.{key}] with key = \"value\" lines"),
        _ => format!("{key} = \"...\""),
    }
}

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
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const TEN_SECONDS: Duration = Duration::from_secs(10);

/// Parses an instance's TOML text into a table. Accepts the bare instance table (how the
/// supervisor passes it) and, for convenience, a whole file holding `[[inputs.NAME]]`
/// or `[inputs.NAME]` (its first instance).
fn instance_table(input: &str, toml_text: &str) -> Result<Table, Vec<ConfigProblem>> {
    let mut table: Table = toml_text.parse().map_err(|e: toml::de::Error| {
        vec![ConfigProblem::new(
            "",
            format!("not valid TOML: {}", e.message()),
        )]
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

/// Decodes one instance of `input`.
///
/// # Errors
/// Every problem found: unknown input names, syntax errors, keys of the wrong type,
/// bad durations and regular expressions.
pub fn decode(input: &str, toml_text: &str) -> Result<InputConfig, Vec<ConfigProblem>> {
    let table = instance_table(input, toml_text)?;
    let mut d = Decoder::new(&table);
    let ten = TEN_SECONDS;
    match input {
        "cpu" => {
            let c = CpuConfig {
                interval: d.interval(ten, SECOND, MINUTE),
                percpu: d.bool("percpu", false),
                enable_temperature: d.bool("enable_temperature", true),
                enable_load5s: d.bool("enable_load5s", false),
                tags: d.string_map("tags"),
            };
            // Deprecated keys: accepted and type-checked, without effect (as in Datakit).
            for k in [
                "totalcpu",
                "collect_cpu_time",
                "report_active",
                "disable_temperature_collect",
            ] {
                d.bool(k, false);
            }
            d.finish(InputConfig::Cpu(c))
        }
        "mem" | "swap" => {
            let c = basic(&mut d);
            d.finish(if input == "mem" {
                InputConfig::Mem(c)
            } else {
                InputConfig::Swap(c)
            })
        }
        "system" => {
            let c = basic(&mut d);
            d.strings("fielddrop");
            d.finish(InputConfig::System(c))
        }
        "disk" => {
            let c = DiskConfig {
                interval: d.interval(ten, SECOND, MINUTE),
                filter: mount_filter(&mut d),
                tags: d.string_map("tags"),
            };
            d.strings("extra_device");
            d.bool("ignore_zero_bytes_disk", false);
            d.bool("use_nsenter", false);
            d.finish(InputConfig::Disk(c))
        }
        "diskio" => {
            let c = DiskioConfig {
                interval: d.interval(ten, SECOND, MINUTE),
                devices: d.regexes("devices"),
                device_tags: d.strings("device_tags"),
                name_templates: d.strings("name_templates"),
                skip_serial_number: d.bool("skip_serial_number", false),
                tags: d.string_map("tags"),
            };
            d.finish(InputConfig::Diskio(c))
        }
        "net" => {
            let c = NetConfig {
                interval: d.interval(ten, SECOND, MINUTE),
                interfaces: d.regexes("interfaces"),
                enable_virtual_interfaces: d.bool("enable_virtual_interfaces", false),
                ignore_protocol_stats: d.bool("ignore_protocol_stats", false),
                tags: d.string_map("tags"),
            };
            d.finish(InputConfig::Net(c))
        }
        "hostobject" => {
            let c = HostObjectConfig {
                interval: d.interval(
                    Duration::from_secs(300),
                    TEN_SECONDS,
                    Duration::from_secs(1800),
                ),
                enable_net_virtual_interfaces: d.bool("enable_net_virtual_interfaces", false),
                ignore_zero_bytes_disk: d.bool("ignore_zero_bytes_disk", true),
                filter: mount_filter(&mut d),
                config_path: d.strings("config_path"),
                tags: d.string_map("tags"),
            };
            // Accepted and type-checked; see docs/compat.md for what is not implemented.
            for k in ["name", "class", "description", "pipeline"] {
                d.string(k, "");
            }
            for k in [
                "enable_cloud_host_tags_as_global_election_tags",
                "enable_cloud_host_tags_global_election",
                "enable_cloud_host_tags_as_global_host_tags",
                "enable_cloud_host_tags_global_host",
                "use_nsenter",
                "disable_cloud_provider_sync",
                "enable_cloud_aws_imds_v2",
                "enable_cloud_aws_ipv6",
            ] {
                d.bool(k, false);
            }
            for k in ["ignore_inputs_errors_before", "io_timeout"] {
                d.duration(k, Duration::ZERO);
            }
            d.strings("extra_device");
            for k in ["cloud_info", "cloud_meta_url", "cloud_meta_token_url"] {
                d.string_map(k);
            }
            d.finish(InputConfig::HostObject(c))
        }
        other => Err(vec![ConfigProblem::new(
            "",
            format!(
                "input {other:?} is not part of the host family (cpu, mem, disk, diskio, net, system, swap, hostobject)"
            ),
        )]),
    }
}

fn basic(d: &mut Decoder<'_>) -> BasicConfig {
    BasicConfig {
        interval: d.interval(TEN_SECONDS, SECOND, MINUTE),
        tags: d.string_map("tags"),
    }
}

fn mount_filter(d: &mut Decoder<'_>) -> MountFilter {
    MountFilter {
        exclude_device: d.strings("exclude_device"),
        ignore_fstypes: d.regex("ignore_fstypes", DEFAULT_IGNORE_FSTYPES),
        ignore_mountpoints: d.regex("ignore_mountpoints", DEFAULT_IGNORE_MOUNTPOINTS),
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
        assert_eq!(keys, ["interval", "percpu", "enable_load5s", "tags.bad"]);
        assert!(p[1].message.contains("expected true or false"), "{}", p[1]);
        assert!(p[0].message.contains("10s"), "{}", p[0]);
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
    fn unknown_keys_are_ignored_and_intervals_are_clamped() {
        let InputConfig::Mem(m) = decode("mem", "interval = '500ms'\nno_such_key = 1\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(m.interval, Duration::from_secs(1));
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
