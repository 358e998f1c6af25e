//! Asking the host's pip which index it uses, so `devcache serve` with no upstream
//! caches what pip would have used.
//!
//! pip's own rules decide (`PIP_INDEX_URL`, `PIP_CONFIG_FILE`, the user's, the site's
//! and the global files, `[install]` over `[global]`, continued lines): devcache does
//! not read pip's files itself, it asks pip. `pip install --help` states the index an
//! install would use, and, with the configuration turned off (`PIP_CONFIG_FILE=/dev/null`
//! and no `PIP_INDEX_URL`), pip's built-in default, so that no index's address is
//! written in devcache itself. `pip config debug` says which file holds a configured
//! one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// An index URL and where pip's configuration says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipIndex {
    pub url: String,
    pub origin: String,
}

/// What the local pip says of its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPip {
    /// The index `pip install` uses, configured or not.
    pub index: PipIndex,
    /// The index pip uses when nothing configures one.
    pub default: PipIndex,
}

/// Variables that decide pip's configuration, passed to pip as `env` gives them.
const PIP_CONFIG_VARS: [&str; 5] = [
    "HOME",
    "XDG_CONFIG_HOME",
    "PIP_INDEX_URL",
    "PIP_CONFIG_FILE",
    "VIRTUAL_ENV",
];

/// Asks the first `python3` (else `python`) on `PATH` that has pip. `None` when there
/// is no such Python, or its pip states no index.
pub fn ask_local(env: &dyn Fn(&str) -> Option<String>) -> Option<LocalPip> {
    let path = env("PATH")?;
    let python = ["python3", "python"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })?;
    let pip = |args: &[&str], configured: bool| -> Option<Child> {
        let mut command = Command::new(&python);
        command
            .args(["-m", "pip"])
            .args(args)
            // One line per option: the default is not wrapped away.
            .env("COLUMNS", "10000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for var in PIP_CONFIG_VARS {
            match env(var) {
                Some(value) => command.env(var, value),
                None => command.env_remove(var),
            };
        }
        if !configured {
            command
                .env("PIP_CONFIG_FILE", "/dev/null")
                .env_remove("PIP_INDEX_URL");
        }
        command.spawn().ok()
    };
    // The three at once: each is a Python start-up.
    let configured = pip(&["install", "--help"], true);
    let default = pip(&["install", "--help"], false);
    let debug = pip(&["config", "debug"], true);
    let output = |child: Option<Child>| -> Option<String> {
        let output = child?.wait_with_output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (configured, default, debug) = (output(configured), output(default), output(debug));
    let asked = format!("{} -m pip", python.display());
    let default = PipIndex {
        url: stated_default_index(&default?)?,
        origin: format!("pip's default index ({asked})"),
    };
    let url = stated_default_index(&configured?)?;
    let origin = if url == default.url {
        default.origin.clone()
    } else if env("PIP_INDEX_URL").is_some_and(|v| v.trim() == url) {
        "PIP_INDEX_URL".to_string()
    } else {
        match debug.as_deref().and_then(|debug| file_naming(debug, &url)) {
            Some(file) => format!("pip config {}", file.display()),
            None => format!("pip's configuration ({asked})"),
        }
    };
    Some(LocalPip {
        index: PipIndex { url, origin },
        default,
    })
}

/// The default that pip's help states for `--index-url`.
fn stated_default_index(help: &str) -> Option<String> {
    let option = help.lines().find(|line| line.contains("--index-url"))?;
    let after = &option[option.find("(default ")? + "(default ".len()..];
    let url = after.split([')', ' ']).next()?.trim();
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
}

/// The last file in `pip config debug`'s listing with a value of `url` (pip reads
/// them in that order, the later winning). A file is listed as `  <path>, exists:
/// True`, its values under it, further indented, a continued value on its own line.
fn file_naming(debug: &str, url: &str) -> Option<PathBuf> {
    let mut file: Option<&Path> = None;
    let mut found = None;
    for line in debug.lines() {
        if let Some(path) = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' '))
            .and_then(|l| l.strip_suffix(", exists: True"))
        {
            file = Some(Path::new(path));
        } else if !line.starts_with(' ') {
            file = None;
        } else if let Some(file) = file {
            let value = line.trim();
            let value = value.rsplit_once(": ").map_or(value, |(_, v)| v.trim());
            if value == url {
                found = Some(file.to_path_buf());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_file_is_the_last_that_names_the_url() {
        let debug = "env_var:\n  PIP_CERT='/etc/ssl/certs/ca.crt'\nenv:\nglobal:\n  /etc/xdg/pip/pip.conf, exists: False\n  /etc/pip.conf, exists: True\n    global.index-url: http://a.test/simple/\nsite:\n  /venv/pip.conf, exists: False\nuser:\n  /home/u/.pip/pip.conf, exists: True\n    install.index-url: http://b.test/simple/\n  /home/u/.config/pip/pip.conf, exists: True\n    global.index-url: \n    http://a.test/simple/\n";
        assert_eq!(
            file_naming(debug, "http://a.test/simple/"),
            Some(PathBuf::from("/home/u/.config/pip/pip.conf"))
        );
        assert_eq!(
            file_naming(debug, "http://b.test/simple/"),
            Some(PathBuf::from("/home/u/.pip/pip.conf"))
        );
        assert_eq!(file_naming(debug, "http://c.test/simple/"), None);
    }
}
