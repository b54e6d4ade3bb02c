//! udev database entries (`/run/udev/data/b<major>:<minor>`): device properties and links.

/// What udev knows about a block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdevInfo {
    /// `E:KEY=VALUE` properties, in file order.
    pub props: Vec<(String, String)>,
    /// `S:` symlinks, as `/dev/<link>` paths.
    pub devlinks: Vec<String>,
}

impl UdevInfo {
    /// A property value (`ID_SERIAL`, `DM_VG_NAME`...).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a udev data file. Lines shorter than four bytes and other record types
/// (`I:`, `L:`, `G:`...) are ignored.
pub fn parse_udev_data(text: &str) -> UdevInfo {
    let mut info = UdevInfo::default();
    for line in text.lines() {
        if line.len() < 4 {
            continue;
        }
        if let Some(link) = line.strip_prefix("S:") {
            info.devlinks.push(format!("/dev/{link}"));
        } else if let Some(kv) = line.strip_prefix("E:")
            && let Some((k, v)) = kv.split_once('=')
        {
            info.props.push((k.to_string(), v.to_string()));
        }
    }
    info
}

/// Renders a diskio `name_templates` entry (`$DM_VG_NAME/$DM_LV_NAME`, `${ID_FS_LABEL}`)
/// with udev properties; `$device` is the `/dev/<name>` path. Returns `None` when a
/// variable has no value (the next template is then tried, as in Datakit).
pub fn render_name_template(template: &str, info: &UdevInfo, device: &str) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => {
                    out.push('$');
                    rest = after;
                    continue;
                }
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match info.get(name) {
            Some(v) => out.push_str(v),
            None if name == "device" => out.push_str(device),
            None => return None,
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = "S:disk/by-id/ata-Samsung_SSD_S1\nS:disk/by-uuid/1234\nW:1\nI:123\nE:ID_SERIAL=Samsung_SSD_S1\nE:ID_FS_TYPE=ext4\nE:DM_VG_NAME=vg0\nE:DM_LV_NAME=root\nG:systemd\n";

    #[test]
    fn parses_properties_and_links() {
        let i = parse_udev_data(DATA);
        assert_eq!(i.get("ID_SERIAL"), Some("Samsung_SSD_S1"));
        assert_eq!(i.get("ID_FS_TYPE"), Some("ext4"));
        assert_eq!(
            i.devlinks,
            [
                "/dev/disk/by-id/ata-Samsung_SSD_S1",
                "/dev/disk/by-uuid/1234"
            ]
        );
        assert_eq!(i.get("W"), None);
    }

    #[test]
    fn templates_render_only_when_every_variable_exists() {
        let i = parse_udev_data(DATA);
        assert_eq!(
            render_name_template("$DM_VG_NAME/${DM_LV_NAME}", &i, "/dev/dm-0").as_deref(),
            Some("vg0/root")
        );
        assert_eq!(
            render_name_template("$device:$ID_FS_TYPE", &i, "/dev/dm-0").as_deref(),
            Some("/dev/dm-0:ext4")
        );
        assert_eq!(render_name_template("$ID_FS_LABEL", &i, "/dev/dm-0"), None);
        assert_eq!(
            render_name_template("a$ ${", &i, "x").as_deref(),
            Some("a$ ${")
        );
    }
}
