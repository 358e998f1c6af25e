//! Finding the index the host's pip uses, so `devcache serve` with no upstream
//! caches what pip would have used.
//!
//! pip reads `PIP_INDEX_URL`, then `PIP_CONFIG_FILE`, then the user's files, then the
//! global ones, the earlier winning; within a file `[install]` and `[download]` beat
//! `[global]` (and `PIP_CONFIG_FILE=/dev/null` turns the files off). This follows that
//! order for `index-url` only. When none names an index, pip uses its own default,
//! which devcache asks the local pip for (`pip install --help` states it), so that no
//! index's address is written in devcache itself.

use std::path::{Path, PathBuf};
use std::process::Command;

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
        if file == "/dev/null" {
            return None;
        }
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

/// The index the local pip uses when nothing configures one: the default its
/// `install --help` states, from the first `python3` (else `python`) on `PATH` that
/// has pip. `None` when there is no such Python.
pub fn default_index(env: &dyn Fn(&str) -> Option<String>) -> Option<PipIndex> {
    let path = env("PATH")?;
    let python = ["python3", "python"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })?;
    let output = Command::new(&python)
        .args(["-m", "pip", "install", "--help"])
        // One line per option: the default is not wrapped away.
        .env("COLUMNS", "10000")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_INDEX_URL")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let help = String::from_utf8_lossy(&output.stdout);
    Some(PipIndex {
        url: stated_default_index(&help)?,
        origin: format!("pip's default index ({} -m pip)", python.display()),
    })
}

/// The default that pip's help states for `--index-url`.
fn stated_default_index(help: &str) -> Option<String> {
    let option = help.lines().find(|line| line.contains("--index-url"))?;
    let after = &option[option.find("(default ")? + "(default ".len()..];
    let url = after.split([')', ' ']).next()?.trim();
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
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
    fn config_file_dev_null_turns_the_files_off() {
        let env = |key: &str| (key == "PIP_CONFIG_FILE").then(|| "/dev/null".to_string());
        assert_eq!(configured_index(&env, None), None);
    }

    #[test]
    fn the_default_is_read_from_pips_help() {
        let help = "Package Index Options:\n  -i, --index-url <url>       Base URL of the Python Package Index (default https://index.test/simple). This should point to a repository compliant with PEP 503 (the simple repository API) or a local directory laid out in the same format.\n  --extra-index-url <url>     Extra URLs of package indexes to use in addition to --index-url.\n";
        assert_eq!(
            stated_default_index(help).as_deref(),
            Some("https://index.test/simple")
        );
        assert_eq!(stated_default_index("no options here"), None);
    }

    #[test]
    fn a_file_without_index_url_gives_nothing() {
        assert_eq!(index_url_in("[global]\ntimeout = 60\n"), None);
    }
}
