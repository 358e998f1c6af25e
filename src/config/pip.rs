//! Finding the index the host's pip is configured with, so `devcache serve` with no
//! upstream caches what pip would have used.
//!
//! pip reads `PIP_INDEX_URL`, then `PIP_CONFIG_FILE`, then the user's files, then the
//! global ones, the earlier winning; within a file `[install]` and `[download]` beat
//! `[global]`. This follows that order for `index-url` only.

use std::path::{Path, PathBuf};

/// An index URL and where pip's configuration says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipIndex {
    pub url: String,
    pub origin: String,
}

/// The index pip would use, if any is configured.
pub fn configured_index(
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PipIndex> {
    if let Some(url) = env("PIP_INDEX_URL").filter(|u| !u.trim().is_empty()) {
        return Some(PipIndex {
            url: url.trim().to_string(),
            origin: "PIP_INDEX_URL".to_string(),
        });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(file) = env("PIP_CONFIG_FILE") {
        files.push(PathBuf::from(file));
    }
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(config_home) = config_home {
        files.push(config_home.join("pip/pip.conf"));
    }
    if let Some(home) = home {
        files.push(home.join(".pip/pip.conf"));
    }
    files.push(PathBuf::from("/etc/xdg/pip/pip.conf"));
    files.push(PathBuf::from("/etc/pip.conf"));
    files.into_iter().find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        Some(PipIndex {
            url: index_url_in(&text)?,
            origin: format!("pip config {}", path.display()),
        })
    })
}

/// The `index-url` of one pip.conf (INI), preferring the `install` and `download`
/// sections over `global`.
fn index_url_in(ini: &str) -> Option<String> {
    let mut section = String::new();
    let mut found: Vec<(String, String)> = Vec::new();
    for line in ini.lines() {
        let line = line.trim();
        if line.starts_with(['#', ';']) || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        if let Some((key, value)) = line.split_once(['=', ':']) {
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            if key == "index-url" && !value.trim().is_empty() {
                found.push((section.clone(), value.trim().to_string()));
            }
        }
    }
    ["install", "download", "global"]
        .iter()
        .find_map(|wanted| found.iter().find(|(s, _)| s == wanted))
        .map(|(_, url)| url.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins() {
        let env = |key: &str| (key == "PIP_INDEX_URL").then(|| "http://a.test/simple/".to_string());
        let index = configured_index(&env, None).unwrap();
        assert_eq!(index.url, "http://a.test/simple/");
        assert_eq!(index.origin, "PIP_INDEX_URL");
    }

    #[test]
    fn reads_the_users_pip_conf() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".pip")).unwrap();
        std::fs::write(
            home.path().join(".pip/pip.conf"),
            "[global]\nindex-url = http://global.test/simple/\n[install]\nindex_url=http://install.test/simple/\n",
        )
        .unwrap();
        let index = configured_index(&|_| None, Some(home.path())).unwrap();
        assert_eq!(index.url, "http://install.test/simple/");
        assert!(index.origin.ends_with(".pip/pip.conf"), "{}", index.origin);
    }

    #[test]
    fn a_file_without_index_url_gives_nothing() {
        assert_eq!(index_url_in("[global]\ntimeout = 60\n"), None);
    }
}
