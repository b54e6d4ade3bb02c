//! Config paths sent by a DCA console, resolved so that they stay under `conf.d`.
//!
//! Datakit only checks that a path contains `conf.d` and ends in `.conf`, which `../` escapes.
//! Here a path is relative to `conf.d` (or absolute under it), has no `..`/`.` component, ends
//! in `.conf`, and neither it nor any directory on the way resolves (through symlinks) outside
//! `conf.d`. These checks do blocking file I/O: call them off the async threads.

use std::path::{Component, Path, PathBuf};

/// Why a config path is refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "no path given: send the config file's path relative to conf.d, e.g. \"host/cpu.conf\""
    )]
    Empty,
    #[error("{0:?} is not a .conf file: only conf.d/**/*.conf can be managed")]
    NotConf(String),
    #[error("{0:?} is outside conf.d: send a path relative to conf.d without \"..\"")]
    Escapes(String),
    #[error("{0:?} leads outside conf.d through a symlink; edit the file where it lives")]
    Symlink(String),
    #[error("{0:?} is the main config: it cannot be deleted")]
    MainConfig(String),
    #[error("{0:?} is not a regular file")]
    NotAFile(String),
    #[error("{path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the path is resolved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Read,
    Write,
    Delete,
}

/// `conf.d` of the agent, as configured and canonical.
#[derive(Clone, Debug)]
pub struct Confd {
    /// As configured (`<workdir>/conf.d`).
    pub dir: PathBuf,
    /// Its canonical form (symlinks resolved).
    canonical: PathBuf,
}

impl Confd {
    /// # Errors
    /// When `conf.d` cannot be resolved (it does not exist).
    pub fn new(dir: &Path) -> Result<Confd, PathError> {
        let canonical = dir.canonicalize().map_err(|source| PathError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Confd {
            dir: dir.to_path_buf(),
            canonical,
        })
    }

    /// The relative path (under conf.d) of `raw`, checked lexically.
    fn relative(&self, raw: &str) -> Result<PathBuf, PathError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        let p = Path::new(raw);
        let rel = if p.is_absolute() {
            p.strip_prefix(&self.dir)
                .or_else(|_| p.strip_prefix(&self.canonical))
                .map_err(|_| PathError::Escapes(raw.to_string()))?
        } else {
            p
        };
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(PathError::Escapes(raw.to_string()));
        }
        if rel.extension().is_none_or(|e| e != "conf") {
            return Err(PathError::NotConf(raw.to_string()));
        }
        Ok(rel.to_path_buf())
    }

    /// Whether `p` (existing) resolves under conf.d.
    fn inside(&self, p: &Path, raw: &str) -> Result<PathBuf, PathError> {
        let c = p.canonicalize().map_err(|source| PathError::Io {
            path: raw.to_string(),
            source,
        })?;
        if c.starts_with(&self.canonical) {
            Ok(c)
        } else {
            Err(PathError::Symlink(raw.to_string()))
        }
    }

    /// Resolves `raw` for `purpose`: the absolute path to read, write or delete (a symlink
    /// inside conf.d pointing inside conf.d is allowed; it is replaced by a file on write).
    ///
    /// # Errors
    /// [`PathError`] naming why the path is refused.
    pub fn resolve(&self, raw: &str, purpose: Purpose) -> Result<PathBuf, PathError> {
        let rel = self.relative(raw)?;
        let raw = raw.trim();
        let target = self.dir.join(&rel);
        // Every existing directory on the way must stay inside.
        let mut ancestor = target.parent();
        while let Some(a) = ancestor {
            if a.exists() {
                self.inside(a, raw)?;
                break;
            }
            ancestor = a.parent();
        }
        match std::fs::symlink_metadata(&target) {
            Ok(_) => {
                let c = self.inside(&target, raw)?;
                if !c.is_file() {
                    return Err(PathError::NotAFile(raw.to_string()));
                }
                if purpose == Purpose::Delete
                    && (rel == Path::new(dk_config::MAIN_CONF_NAME)
                        || c == self.canonical.join(dk_config::MAIN_CONF_NAME))
                {
                    return Err(PathError::MainConfig(raw.to_string()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && purpose == Purpose::Write => {}
            Err(source) => {
                return Err(PathError::Io {
                    path: raw.to_string(),
                    source,
                });
            }
        }
        Ok(target)
    }

    /// `path` relative to conf.d, for display.
    pub fn display(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .or_else(|_| path.strip_prefix(&self.canonical))
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Every `*.conf` under conf.d (relative paths, sorted), skipping hidden directories.
    pub fn list(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>, depth: usize) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                if p.is_dir() && depth < 8 {
                    walk(&p, base, out, depth + 1);
                } else if p.extension().is_some_and(|x| x == "conf")
                    && let Ok(rel) = p.strip_prefix(base)
                {
                    out.push(rel.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &self.dir, &mut out, 0);
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Confd) {
        let t = tempfile::tempdir().unwrap();
        let confd = t.path().join("conf.d");
        std::fs::create_dir_all(confd.join("host")).unwrap();
        std::fs::write(confd.join("datakit.conf"), "").unwrap();
        std::fs::write(confd.join("host/cpu.conf"), "[[inputs.cpu]]\n").unwrap();
        std::fs::write(t.path().join("secret.conf"), "outside").unwrap();
        let c = Confd::new(&confd).unwrap();
        (t, c)
    }

    #[test]
    fn a_relative_or_absolute_path_inside_conf_d_resolves_to_the_file() {
        let (_t, c) = setup();
        let want = c.dir.join("host/cpu.conf");
        assert_eq!(c.resolve("host/cpu.conf", Purpose::Read).unwrap(), want);
        let abs = want.display().to_string();
        assert_eq!(c.resolve(&abs, Purpose::Read).unwrap(), want);
        assert_eq!(
            c.resolve("new/dir/x.conf", Purpose::Write).unwrap(),
            c.dir.join("new/dir/x.conf")
        );
    }

    #[test]
    fn dot_dot_is_refused_even_when_it_would_land_back_inside() {
        let (_t, c) = setup();
        for raw in [
            "../secret.conf",
            "host/../../secret.conf",
            "host/../host/cpu.conf",
            "./host/cpu.conf",
        ] {
            let e = c.resolve(raw, Purpose::Read).unwrap_err();
            assert!(matches!(e, PathError::Escapes(_)), "{raw}: {e}");
        }
        // Datakit's substring check passes this one: it contains conf.d and ends in .conf.
        let sneaky = format!("{}/../secret.conf", c.dir.display());
        assert!(matches!(
            c.resolve(&sneaky, Purpose::Write).unwrap_err(),
            PathError::Escapes(_)
        ));
    }

    #[test]
    fn an_absolute_path_outside_conf_d_is_refused() {
        let (t, c) = setup();
        let outside = t.path().join("secret.conf").display().to_string();
        for raw in [outside.as_str(), "/etc/passwd.conf", "/conf.d/x.conf"] {
            let e = c.resolve(raw, Purpose::Read).unwrap_err();
            assert!(matches!(e, PathError::Escapes(_)), "{raw}: {e}");
        }
    }

    #[test]
    fn a_symlink_leading_out_of_conf_d_is_refused_for_files_and_directories() {
        let (t, c) = setup();
        std::os::unix::fs::symlink(t.path().join("secret.conf"), c.dir.join("link.conf")).unwrap();
        std::os::unix::fs::symlink(t.path(), c.dir.join("out")).unwrap();
        for (raw, purpose) in [
            ("link.conf", Purpose::Read),
            ("link.conf", Purpose::Write),
            ("link.conf", Purpose::Delete),
            ("out/secret.conf", Purpose::Read),
            ("out/new.conf", Purpose::Write),
            ("out/deeper/new.conf", Purpose::Write),
        ] {
            let e = c.resolve(raw, purpose).unwrap_err();
            assert!(matches!(e, PathError::Symlink(_)), "{raw}: {e}");
        }
        // A link that stays inside is fine.
        std::os::unix::fs::symlink(c.dir.join("host/cpu.conf"), c.dir.join("in.conf")).unwrap();
        assert!(c.resolve("in.conf", Purpose::Read).is_ok());
    }

    #[test]
    fn the_main_config_cannot_be_deleted_by_name_or_through_a_link() {
        let (_t, c) = setup();
        let abs = c.dir.join("datakit.conf").display().to_string();
        for raw in ["datakit.conf", abs.as_str()] {
            let e = c.resolve(raw, Purpose::Delete).unwrap_err();
            assert!(matches!(e, PathError::MainConfig(_)), "{raw}: {e}");
        }
        std::os::unix::fs::symlink(c.dir.join("datakit.conf"), c.dir.join("alias.conf")).unwrap();
        assert!(matches!(
            c.resolve("alias.conf", Purpose::Delete).unwrap_err(),
            PathError::MainConfig(_)
        ));
        assert!(c.resolve("datakit.conf", Purpose::Read).is_ok());
        assert!(c.resolve("host/cpu.conf", Purpose::Delete).is_ok());
    }

    #[test]
    fn only_conf_files_are_managed() {
        let (_t, c) = setup();
        for raw in ["host/cpu.toml", "host", "x.conf.bak", ""] {
            assert!(c.resolve(raw, Purpose::Write).is_err(), "{raw}");
        }
    }

    #[test]
    fn the_listing_has_every_conf_file_relative_to_conf_d() {
        let (_t, c) = setup();
        assert_eq!(c.list(), ["datakit.conf", "host/cpu.conf"]);
    }
}
