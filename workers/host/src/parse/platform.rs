//! OS platform detection from `/etc` release files, as gopsutil's `PlatformInformation`.

/// The `/etc` release files that exist, with their content (the reader fills this).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseFiles {
    /// `/etc/oracle-release` or `/etc/enterprise-release`.
    pub oracle_release: Option<String>,
    /// `/etc/debian_version`.
    pub debian_version: Option<String>,
    /// `/etc/lsb-release`.
    pub lsb_release: Option<String>,
    /// Whether `/usr/bin/raspi-config` exists.
    pub raspi_config: bool,
    /// `/etc/redhat-release`.
    pub redhat_release: Option<String>,
    /// `/etc/system-release`.
    pub system_release: Option<String>,
    /// `/etc/gentoo-release`.
    pub gentoo_release: Option<String>,
    /// `/etc/SuSE-release`.
    pub suse_release: Option<String>,
    /// Whether `/etc/arch-release` exists.
    pub arch_release: bool,
    /// `/etc/alpine-release`.
    pub alpine_release: Option<String>,
    /// `/etc/os-release`.
    pub os_release: Option<String>,
}

/// `(platform, family, version)`, e.g. `("debian", "debian", "12.11")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `ubuntu`, `centos`, `debian`...
    pub platform: String,
    /// `debian`, `rhel`, `suse`...
    pub family: String,
    /// The distribution version.
    pub version: String,
}

fn key_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\''))
    })
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// The version number after `release` in a Red Hat-style release line.
fn redhatish_version(text: &str) -> String {
    let line = first_line(text).to_ascii_lowercase();
    if line.contains("rawhide") {
        return "rawhide".to_string();
    }
    line.split("release")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|v| {
            v.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect()
        })
        .unwrap_or_default()
}

fn redhatish_platform(text: &str) -> String {
    let line = first_line(text).to_ascii_lowercase();
    if line.contains("red hat") {
        return "redhat".to_string();
    }
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// Detects the platform the way gopsutil does, in the same order of precedence.
pub fn detect_platform(f: &ReleaseFiles) -> Platform {
    let lsb_id = f
        .lsb_release
        .as_deref()
        .and_then(|t| key_value(t, "DISTRIB_ID"))
        .unwrap_or("");
    let lsb_release = f
        .lsb_release
        .as_deref()
        .and_then(|t| key_value(t, "DISTRIB_RELEASE"))
        .unwrap_or("")
        .to_string();
    let (platform, version) = if let Some(t) = &f.oracle_release {
        ("oracle".to_string(), redhatish_version(t))
    } else if let Some(t) = &f.debian_version {
        match lsb_id {
            "Ubuntu" => ("ubuntu".to_string(), lsb_release),
            "LinuxMint" => ("linuxmint".to_string(), lsb_release),
            _ => (
                if f.raspi_config { "raspbian" } else { "debian" }.to_string(),
                first_line(t),
            ),
        }
    } else if let Some(t) = f.redhat_release.as_ref().or(f.system_release.as_ref()) {
        (redhatish_platform(t), redhatish_version(t))
    } else if let Some(t) = &f.gentoo_release {
        ("gentoo".to_string(), redhatish_version(t))
    } else if let Some(t) = &f.suse_release {
        let l = t.to_ascii_lowercase();
        let p = if l.contains("opensuse") {
            "opensuse"
        } else {
            "suse"
        };
        let v = key_value(t, "VERSION").unwrap_or("").to_string();
        (p.to_string(), v)
    } else if f.arch_release {
        ("arch".to_string(), lsb_release)
    } else if let Some(t) = &f.alpine_release {
        ("alpine".to_string(), first_line(t))
    } else if let Some(t) = &f.os_release {
        (
            key_value(t, "ID").unwrap_or("").to_string(),
            key_value(t, "VERSION_ID").unwrap_or("").to_string(),
        )
    } else if !lsb_id.is_empty() {
        (lsb_id.to_ascii_lowercase(), lsb_release)
    } else {
        (String::new(), String::new())
    };
    let family = match platform.as_str() {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" => "debian",
        "fedora" => "fedora",
        "oracle"
        | "centos"
        | "redhat"
        | "scientific"
        | "enterpriseenterprise"
        | "amazon"
        | "xenserver"
        | "cloudlinux"
        | "ibm_powerkvm"
        | "rocky" => "rhel",
        "suse"
        | "opensuse"
        | "opensuse-leap"
        | "opensuse-tumbleweed"
        | "opensuse-tumbleweed-kubic"
        | "sles"
        | "sled"
        | "caasp" => "suse",
        "gentoo" => "gentoo",
        "slackware" => "slackware",
        "arch" => "arch",
        "exherbo" => "exherbo",
        "alpine" => "alpine",
        "coreos" => "coreos",
        "solus" => "solus",
        _ => "",
    };
    Platform {
        platform,
        family: family.to_string(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_uses_debian_version() {
        let f = ReleaseFiles {
            debian_version: Some("12.11\n".into()),
            os_release: Some("ID=debian\nVERSION_ID=\"12\"\n".into()),
            ..Default::default()
        };
        let p = detect_platform(&f);
        assert_eq!(
            (p.platform.as_str(), p.family.as_str(), p.version.as_str()),
            ("debian", "debian", "12.11")
        );
    }

    #[test]
    fn ubuntu_is_recognised_through_lsb_release() {
        let f = ReleaseFiles {
            debian_version: Some("bookworm/sid\n".into()),
            lsb_release: Some("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=24.04\n".into()),
            ..Default::default()
        };
        let p = detect_platform(&f);
        assert_eq!(
            (p.platform.as_str(), p.version.as_str()),
            ("ubuntu", "24.04")
        );
        assert_eq!(p.family, "debian");
    }

    #[test]
    fn centos_and_rhel_parse_the_release_line() {
        let f = ReleaseFiles {
            redhat_release: Some("CentOS Linux release 7.9.2009 (Core)\n".into()),
            ..Default::default()
        };
        let p = detect_platform(&f);
        assert_eq!(
            (p.platform.as_str(), p.family.as_str(), p.version.as_str()),
            ("centos", "rhel", "7.9.2009")
        );
        let f = ReleaseFiles {
            redhat_release: Some("Red Hat Enterprise Linux release 9.3 (Plow)\n".into()),
            ..Default::default()
        };
        assert_eq!(detect_platform(&f).platform, "redhat");
    }

    #[test]
    fn os_release_is_the_last_resort() {
        let f = ReleaseFiles {
            os_release: Some("NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.4\"\n".into()),
            ..Default::default()
        };
        let p = detect_platform(&f);
        assert_eq!(
            (p.platform.as_str(), p.family.as_str(), p.version.as_str()),
            ("rocky", "rhel", "9.4")
        );
        assert_eq!(
            detect_platform(&ReleaseFiles::default()),
            Platform::default()
        );
    }
}
