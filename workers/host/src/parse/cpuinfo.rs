//! `/proc/cpuinfo` (CPU models for the host object) and hwmon core temperatures.

use serde::Serialize;

/// One logical CPU as the host object's `message.host.cpu` lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuModel {
    /// `vendor_id` (or the vendor named by an ARM `CPU implementer`).
    pub vendor_id: String,
    /// `model name`.
    pub module_name: String,
    /// Always 1 per logical CPU on Linux, as gopsutil reports it.
    pub cores: i32,
    /// `cpu MHz`; the reader replaces it with `cpufreq/cpuinfo_max_freq` when present.
    pub mhz: f64,
    /// `cache size` in KB.
    pub cache_size: i32,
    /// The processor number, used to find its cpufreq directory; not serialised.
    #[serde(skip)]
    pub processor: u32,
}

fn arm_vendor(code: u64) -> Option<&'static str> {
    Some(match code {
        0x41 => "ARM",
        0x42 => "Broadcom",
        0x43 => "Cavium",
        0x44 => "DEC",
        0x46 => "Fujitsu",
        0x48 => "HiSilicon",
        0x49 => "Infineon",
        0x4d => "Motorola/Freescale",
        0x4e => "NVIDIA",
        0x50 => "APM",
        0x51 => "Qualcomm",
        0x56 => "Marvell",
        0x61 => "Apple",
        0x69 => "Intel",
        0xc0 => "Ampere",
        _ => return None,
    })
}

/// Parses `/proc/cpuinfo` into one entry per `processor` block. Unknown keys and
/// unparsable optional values are ignored (the host object is informational).
pub fn parse_cpuinfo(text: &str) -> Vec<CpuModel> {
    let mut out: Vec<CpuModel> = Vec::new();
    let mut cur: Option<CpuModel> = None;
    let mut processor_name = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        if key == "Processor" {
            processor_name = value.to_string();
            continue;
        }
        if key == "processor" {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some(CpuModel {
                cores: 1,
                module_name: processor_name.clone(),
                processor: value.parse().unwrap_or(out.len() as u32),
                ..Default::default()
            });
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        match key {
            "vendor_id" | "vendorId" => c.vendor_id = value.to_string(),
            "CPU implementer" => {
                let digits = value.trim_start_matches("0x");
                if let Some(v) = u64::from_str_radix(digits, 16).ok().and_then(arm_vendor) {
                    c.vendor_id = v.to_string();
                }
            }
            "model name" | "cpu" => c.module_name = value.to_string(),
            "cpu MHz" | "clock" => {
                if let Ok(m) = value.trim_end_matches("MHz").trim().parse() {
                    c.mhz = m;
                }
            }
            "cache size" => {
                if let Ok(k) = value.trim_end_matches("KB").trim().parse() {
                    c.cache_size = k;
                }
            }
            _ => {}
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

/// Converts a `cpufreq/cpuinfo_max_freq` value (kHz, or Hz on odd drivers) to MHz.
pub fn max_freq_mhz(text: &str) -> Option<f64> {
    let v: f64 = text.trim().parse().ok()?;
    let mhz = v / 1000.0;
    Some(if mhz > 9999.0 { mhz / 1000.0 } else { mhz })
}

/// One hwmon temperature input: the chip `name`, the sensor's `label` (may be empty)
/// and the raw `temp*_input` value in millidegrees Celsius.
#[derive(Debug, Clone, PartialEq)]
pub struct HwmonReading {
    /// Content of the chip's `name` file (`coretemp`, `k10temp`...).
    pub chip: String,
    /// Content of `tempN_label` (`Core 0`, `Package id 0`), or empty.
    pub label: String,
    /// Content of `tempN_input`, millidegrees.
    pub millidegrees: f64,
}

/// Datakit's `core_temperature` for `cpu-total`: the mean of the Intel `coretemp`
/// per-core sensors (`Core N` labels), in °C; `None` when there is none.
pub fn core_temperature(readings: &[HwmonReading]) -> Option<f64> {
    let (sum, n) = readings
        .iter()
        .filter(|r| r.chip.trim() == "coretemp" && is_core_label(&r.label))
        .fold((0.0, 0usize), |(s, n), r| {
            (s + r.millidegrees / 1000.0, n + 1)
        });
    (n > 0).then(|| sum / n as f64)
}

fn is_core_label(label: &str) -> bool {
    let squashed: String = label
        .trim()
        .to_ascii_lowercase()
        .split(' ')
        .collect::<Vec<_>>()
        .concat();
    squashed
        .strip_prefix("core")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_entry_per_processor_from_a_captured_file() {
        let text = include_str!("../../testdata/proc_cpuinfo");
        let cpus = parse_cpuinfo(text);
        let expected = text.lines().filter(|l| l.starts_with("processor")).count();
        assert_eq!(cpus.len(), expected);
        assert!(!cpus[0].vendor_id.is_empty());
        assert!(!cpus[0].module_name.is_empty());
        assert_eq!(cpus[0].cores, 1);
        assert_eq!(cpus[1].processor, 1);
    }

    #[test]
    fn arm_cpuinfo_names_the_vendor_and_model() {
        let text = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\n\
                    processor\t: 1\nCPU implementer\t: 0xc0\n";
        let cpus = parse_cpuinfo(text);
        assert_eq!(cpus[0].vendor_id, "ARM");
        assert_eq!(cpus[1].vendor_id, "Ampere");
    }

    #[test]
    fn x86_fields_parse_and_serialise_with_datakit_names() {
        let text = "processor : 0\nvendor_id : GenuineIntel\nmodel name : Xeon\ncpu MHz : 2400.5\ncache size : 36608 KB\n";
        let cpus = parse_cpuinfo(text);
        assert_eq!(cpus[0].cache_size, 36608);
        assert_eq!(cpus[0].mhz, 2400.5);
        let json = serde_json::to_string(&cpus[0]).unwrap();
        assert_eq!(
            json,
            r#"{"vendor_id":"GenuineIntel","module_name":"Xeon","cores":1,"mhz":2400.5,"cache_size":36608}"#
        );
    }

    #[test]
    fn max_freq_is_converted_from_khz() {
        assert_eq!(max_freq_mhz("3500000\n"), Some(3500.0));
        assert_eq!(max_freq_mhz("3500000000"), Some(3500.0));
        assert_eq!(max_freq_mhz("n/a"), None);
    }

    #[test]
    fn core_temperature_averages_coretemp_cores_only() {
        let r = |chip: &str, label: &str, m: f64| HwmonReading {
            chip: chip.into(),
            label: label.into(),
            millidegrees: m,
        };
        let readings = [
            r("coretemp", "Package id 0", 90_000.0),
            r("coretemp", "Core 0", 40_000.0),
            r("coretemp", "Core 1", 50_000.0),
            r("k10temp", "Tctl", 70_000.0),
            r("acpitz", "", 30_000.0),
        ];
        assert_eq!(core_temperature(&readings), Some(45.0));
        assert_eq!(core_temperature(&readings[3..]), None);
    }
}
