//! One configuration for the server, merged from flag > `DEVCACHE_*` env >
//! devcache.yml > defaults, remembering where each value came from so that
//! `devcache config` can say it.

mod pip;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use url::Url;

use crate::upstream::{Caps, shown};

/// The settings a command gives (from its flags); `None` leaves a setting to the
/// `DEVCACHE_*` environment, devcache.yml and the defaults, in that order.
#[derive(Debug, Clone, Default)]
pub struct ServeSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub offline: bool,
    pub index_ttl: Option<u64>,
    pub upstream_timeout: Option<u64>,
    /// The disk budget for cached files, in bytes.
    pub max_size: Option<u64>,
    pub max_page_mib: Option<u64>,
    pub max_file_mib: Option<u64>,
    pub client_timeout: Option<u64>,
    /// The port to answer locked installs' file hosts on, over TLS.
    pub tls_port: Option<u16>,
    /// Seconds a stopping server gives answers under way to finish.
    pub stop_grace: Option<u64>,
    /// Threads that answer connections.
    pub threads: Option<NonZeroUsize>,
    /// devcache.yml's path, instead of looking for it.
    pub config: Option<PathBuf>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Pip(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("command line"),
            Source::Env(name) => write!(f, "environment {name}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Pip(origin) => write!(f, "{origin}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// What `devcache serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: Setting<String>,
    pub port: Setting<u16>,
    pub data_dir: Setting<PathBuf>,
    /// `None` only when offline: then no upstream is needed.
    pub upstream: Setting<Option<Url>>,
    pub offline: Setting<bool>,
    pub index_ttl: Setting<u64>,
    pub upstream_timeout: Setting<u64>,
    /// Cached files beyond this many bytes are evicted, least recently used first;
    /// `None`: no budget.
    pub max_size: Setting<Option<u64>>,
    /// The most of a page body (MiB) read from the upstream.
    pub max_page_mib: Setting<u64>,
    /// The most of a file (MiB) downloaded when its page gives no size.
    pub max_file_mib: Setting<u64>,
    /// Seconds a client has to send a request's headers; idle connections close after as long.
    pub client_timeout: Setting<u64>,
    /// The port locked installs' file hosts are answered on, over TLS; `None`: not at all.
    pub tls_port: Setting<Option<u16>>,
    /// Seconds a stopping server gives answers and downloads under way to finish.
    pub stop_grace: Setting<u64>,
    /// Threads that answer connections: one unless the cache serves more clients at
    /// once than one core keeps up with.
    pub threads: Setting<NonZeroUsize>,
}

/// Default stop grace: docker stop allows 10 s before it kills.
pub const DEFAULT_STOP_GRACE: u64 = 8;

/// Default page cap: the largest real project pages (nightly builds with tens of
/// thousands of files) are a few tens of MiB as JSON.
pub const DEFAULT_MAX_PAGE_MIB: u64 = 128;
/// Default cap for a file of unknown size: the largest real wheels (CUDA builds of
/// torch, jaxlib, nvidia-* libraries) are under 2 GiB.
pub const DEFAULT_MAX_FILE_MIB: u64 = 4096;

/// The keys devcache.yml may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// devstack services `up` wires besides lms and studio.
    #[serde(default)]
    pub services: Vec<String>,
    /// Requirement files (paths inside the service's container) `warm SERVICE` reads.
    #[serde(default)]
    pub warm: std::collections::BTreeMap<String, Vec<String>>,
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    upstream: Option<String>,
    offline: Option<bool>,
    index_ttl: Option<u64>,
    upstream_timeout: Option<u64>,
    max_size: Option<String>,
    max_page_mib: Option<u64>,
    max_file_mib: Option<u64>,
    client_timeout: Option<u64>,
    tls_port: Option<u16>,
    stop_grace: Option<u64>,
    threads: Option<NonZeroUsize>,
}

/// The process environment, as a function so tests can give their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

impl ServeConfig {
    pub fn load(args: &ServeSettings, env: Env) -> Result<Self> {
        let (file, file_path) = read_file_config(args.config.as_deref(), env)?;
        let from_file = || Source::File(file_path.clone().unwrap_or_default());

        let host = pick(
            args.host.clone(),
            env_value(env, "DEVCACHE_HOST")?,
            file.host.clone().map(|v| (v, from_file())),
            || "127.0.0.1".to_string(),
        );
        let port = pick(
            args.port,
            env_value(env, "DEVCACHE_PORT")?,
            file.port.map(|v| (v, from_file())),
            || 3141,
        );
        let data_dir = pick(
            args.data_dir.clone(),
            env_value(env, "DEVCACHE_DATA_DIR")?,
            file.data_dir.clone().map(|v| (v, from_file())),
            default_data_dir,
        );
        let offline = pick(
            args.offline.then_some(true),
            env_value(env, "DEVCACHE_OFFLINE")?,
            file.offline.map(|v| (v, from_file())),
            || false,
        );
        let index_ttl = pick(
            args.index_ttl,
            env_value(env, "DEVCACHE_INDEX_TTL")?,
            file.index_ttl.map(|v| (v, from_file())),
            || 300,
        );
        let upstream_timeout = pick(
            args.upstream_timeout,
            env_value(env, "DEVCACHE_UPSTREAM_TIMEOUT")?,
            file.upstream_timeout.map(|v| (v, from_file())),
            || 10,
        );
        let max_size = pick(
            args.max_size.map(Some),
            env_value::<bytesize::ByteSize>(env, "DEVCACHE_MAX_SIZE")?
                .map(|(size, source)| (Some(size.as_u64()), source)),
            file.max_size
                .as_deref()
                .map(|raw| parse_size(raw).map(|size| (Some(size), from_file())))
                .transpose()?,
            || None,
        );
        let (max_page_mib, max_file_mib) = cap_settings(args, env, &file, &from_file)?;
        let client_timeout = pick(
            args.client_timeout,
            env_value(env, "DEVCACHE_CLIENT_TIMEOUT")?,
            file.client_timeout.map(|v| (v, from_file())),
            || 30,
        );
        let tls_port = pick(
            args.tls_port.map(Some),
            env_value::<u16>(env, "DEVCACHE_TLS_PORT")?.map(|(port, source)| (Some(port), source)),
            file.tls_port.map(|v| (Some(v), from_file())),
            || None,
        );
        let stop_grace = pick(
            args.stop_grace,
            env_value(env, "DEVCACHE_STOP_GRACE")?,
            file.stop_grace.map(|v| (v, from_file())),
            || DEFAULT_STOP_GRACE,
        );
        let threads = pick(
            args.threads,
            env_value(env, "DEVCACHE_THREADS")?,
            file.threads.map(|v| (v, from_file())),
            || NonZeroUsize::MIN,
        );
        let ports: Vec<u16> = [Some(port.value), tls_port.value]
            .into_iter()
            .flatten()
            .collect();
        let listens_at = |url: &Url| is_served_at(url, &host.value, &ports);
        // Offline with none given, no upstream is needed: the local pip is not asked.
        let upstream = if offline.value && no_upstream_given(args, env, &file) {
            Setting {
                value: None,
                source: Source::Default,
            }
        } else {
            let Setting { value, source } =
                resolve_upstream(args, env, file.upstream.clone(), from_file(), &listens_at)?;
            Setting {
                value: Some(value),
                source,
            }
        };
        Ok(Self {
            host,
            port,
            data_dir,
            upstream,
            offline,
            index_ttl,
            upstream_timeout,
            max_size,
            max_page_mib,
            max_file_mib,
            client_timeout,
            tls_port,
            stop_grace,
            threads,
        })
    }

    /// The settings as `devcache config` prints them.
    pub fn describe(&self) -> String {
        let rows = [
            (
                "upstream",
                self.upstream
                    .value
                    .as_ref()
                    .map_or("(none: offline)".to_string(), |url| shown(url.as_str())),
                &self.upstream.source,
            ),
            ("host", self.host.value.clone(), &self.host.source),
            ("port", self.port.value.to_string(), &self.port.source),
            (
                "data_dir",
                self.data_dir.value.display().to_string(),
                &self.data_dir.source,
            ),
            (
                "offline",
                self.offline.value.to_string(),
                &self.offline.source,
            ),
            (
                "index_ttl",
                format!("{}s", self.index_ttl.value),
                &self.index_ttl.source,
            ),
            (
                "upstream_timeout",
                format!("{}s", self.upstream_timeout.value),
                &self.upstream_timeout.source,
            ),
            (
                "max_size",
                self.max_size
                    .value
                    .map_or("(none: no budget)".to_string(), crate::api::human_bytes),
                &self.max_size.source,
            ),
            (
                "max_page_mib",
                format!("{} MiB", self.max_page_mib.value),
                &self.max_page_mib.source,
            ),
            (
                "max_file_mib",
                format!("{} MiB", self.max_file_mib.value),
                &self.max_file_mib.source,
            ),
            (
                "client_timeout",
                format!("{}s", self.client_timeout.value),
                &self.client_timeout.source,
            ),
            (
                "tls_port",
                self.tls_port
                    .value
                    .map_or("(none: no locked installs)".to_string(), |p| p.to_string()),
                &self.tls_port.source,
            ),
            (
                "stop_grace",
                format!("{}s", self.stop_grace.value),
                &self.stop_grace.source,
            ),
            (
                "threads",
                self.threads.value.to_string(),
                &self.threads.source,
            ),
        ];
        rows.iter()
            .map(|(key, value, source)| format!("{key:<17} {value:<45} ({source})\n"))
            .collect()
    }
}

/// The page and file caps (MiB), from flag, `DEVCACHE_*`, devcache.yml or the defaults.
fn cap_settings(
    args: &ServeSettings,
    env: Env,
    file: &FileConfig,
    from_file: &dyn Fn() -> Source,
) -> Result<(Setting<u64>, Setting<u64>)> {
    let page = pick(
        args.max_page_mib,
        env_value(env, "DEVCACHE_MAX_PAGE_MIB")?,
        file.max_page_mib.map(|v| (v, from_file())),
        || DEFAULT_MAX_PAGE_MIB,
    );
    let file = pick(
        args.max_file_mib,
        env_value(env, "DEVCACHE_MAX_FILE_MIB")?,
        file.max_file_mib.map(|v| (v, from_file())),
        || DEFAULT_MAX_FILE_MIB,
    );
    Ok((page, file))
}

/// The caps on what devcache reads from a server, as `serve` takes them, for the
/// commands that read from a cache without serving one (`warm --url`, `status`): they
/// need no upstream configured.
pub fn caps(args: &ServeSettings, env: Env) -> Result<Caps> {
    let (file, file_path) = read_file_config(args.config.as_deref(), env)?;
    let from_file = || Source::File(file_path.clone().unwrap_or_default());
    let (page, file) = cap_settings(args, env, &file, &from_file)?;
    Ok(mib_caps(page.value, file.value))
}

fn mib_caps(page_mib: u64, file_mib: u64) -> Caps {
    const MIB: u64 = 1 << 20;
    Caps {
        page: page_mib.saturating_mul(MIB),
        file: file_mib.saturating_mul(MIB),
    }
}

impl ServeConfig {
    /// The caps in bytes.
    pub fn caps(&self) -> Caps {
        mib_caps(self.max_page_mib.value, self.max_file_mib.value)
    }
}

fn pick<T>(
    flag: Option<T>,
    env: Option<(T, Source)>,
    file: Option<(T, Source)>,
    default: impl FnOnce() -> T,
) -> Setting<T> {
    if let Some(value) = flag {
        return Setting {
            value,
            source: Source::Flag,
        };
    }
    match env.or(file) {
        Some((value, source)) => Setting { value, source },
        None => Setting {
            value: default(),
            source: Source::Default,
        },
    }
}

/// Reads and parses a `DEVCACHE_*` variable, naming it in the error.
fn env_value<T: std::str::FromStr>(env: Env, name: &'static str) -> Result<Option<(T, Source)>> {
    let Some(raw) = env(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let raw = match raw.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" if std::any::type_name::<T>() == "bool" => "true".to_string(),
        "0" | "no" | "off" if std::any::type_name::<T>() == "bool" => "false".to_string(),
        _ => raw,
    };
    match raw.parse() {
        Ok(value) => Ok(Some((value, Source::Env(name)))),
        Err(_) => bail!("{name}={raw:?} is not a valid value; unset it or fix it"),
    }
}

/// devcache.yml at `path`, or else as `serve` finds it (empty when there is none).
pub fn file_config(path: Option<&Path>, env: Env) -> Result<FileConfig> {
    Ok(read_file_config(path, env)?.0)
}

fn read_file_config(path: Option<&Path>, env: Env) -> Result<(FileConfig, Option<PathBuf>)> {
    let explicit = path.map(Path::to_path_buf).or_else(|| {
        env("DEVCACHE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let path = match explicit {
        Some(path) => {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            path
        }
        None => {
            let candidates = [
                Some(PathBuf::from("devcache.yml")),
                directories::ProjectDirs::from("", "", "devcache")
                    .map(|d| d.config_dir().join("devcache.yml")),
            ];
            match candidates.into_iter().flatten().find(|p| p.exists()) {
                Some(path) => path,
                None => return Ok((FileConfig::default(), None)),
            }
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid devcache.yml", path.display()))?
    };
    Ok((file, Some(path)))
}

fn no_upstream_given(args: &ServeSettings, env: Env, file: &FileConfig) -> bool {
    args.upstream.is_none()
        && env("DEVCACHE_UPSTREAM").is_none_or(|v| v.is_empty())
        && file.upstream.is_none()
}

/// The upstream from the flag, `DEVCACHE_UPSTREAM`, devcache.yml, else the index the
/// local pip uses. An index that is this devcache itself (`listens_at`: the README's
/// own pip.conf names it) would have every page wait on itself: given, it is refused;
/// found in pip's configuration, it is passed over for pip's default index.
fn resolve_upstream(
    args: &ServeSettings,
    env: Env,
    file: Option<String>,
    file_source: Source,
    listens_at: &dyn Fn(&Url) -> bool,
) -> Result<Setting<Url>> {
    let given = if let Some(url) = &args.upstream {
        Some((url.clone(), Source::Flag))
    } else if let Some(url) = env("DEVCACHE_UPSTREAM").filter(|v| !v.is_empty()) {
        Some((url, Source::Env("DEVCACHE_UPSTREAM")))
    } else {
        file.map(|url| (url, file_source))
    };
    if let Some((raw, source)) = given {
        let url = parse_upstream(&raw).with_context(|| format!("upstream from {source}"))?;
        if listens_at(&url) {
            bail!(
                "upstream {} (from {source}) is this devcache itself; give the index it should \
                 cache, like https://my-index.example/simple/",
                shown(url.as_str())
            );
        }
        return Ok(Setting { value: url, source });
    }
    let Some(pip) = pip::ask_local(env) else {
        bail!(
            "no upstream index is configured and there is no local pip to ask; set one with \
             --upstream URL, the DEVCACHE_UPSTREAM variable, or `upstream: URL` in devcache.yml"
        );
    };
    let index = pip.index;
    let url = parse_upstream(&index.url)
        .with_context(|| format!("upstream from {}", Source::Pip(index.origin.clone())))?;
    if !listens_at(&url) {
        return Ok(Setting {
            value: url,
            source: Source::Pip(index.origin),
        });
    }
    let source = Source::Pip(format!(
        "{}, since {} names this devcache",
        pip.default.origin, index.origin
    ));
    let url =
        parse_upstream(&pip.default.url).with_context(|| format!("upstream from {source}"))?;
    Ok(Setting { value: url, source })
}

/// Whether `url` names this machine by a loopback name or address (`localhost`,
/// `127.0.0.0/8`, `::1`, or the unspecified `0.0.0.0` and `::`, which reach it too).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => false,
    }
}

/// Whether `url` is served by a devcache listening on `host` at `ports`: its host is a
/// loopback name or address, or `host` itself, and its port one of `ports`.
fn is_served_at(url: &Url, host: &str, ports: &[u16]) -> bool {
    let named = url.host_str().is_some_and(|name| {
        name.trim_matches(['[', ']'])
            .eq_ignore_ascii_case(host.trim_matches(['[', ']']))
    });
    (is_loopback(url) || named)
        && url
            .port_or_known_default()
            .is_some_and(|port| ports.contains(&port))
}

/// Checks an index URL and gives it the trailing slash that joining project names needs.
pub fn parse_upstream(raw: &str) -> Result<Url> {
    let mut url = Url::parse(raw.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{:?} is not a valid upstream URL ({e}); give one like https://my-index.example/simple/",
            shown(raw)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!(
            "upstream {:?} must be an http:// or https:// URL with a host, like https://my-index.example/simple/",
            shown(raw)
        );
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_fragment(None);
    Ok(url)
}

/// A size as people write it (`20GiB`, `500 MB`, `1048576`), in bytes.
pub fn parse_size(raw: &str) -> Result<u64> {
    raw.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| {
            anyhow::anyhow!("{raw:?} is not a size; write one like 20GiB, 500MB or 1048576")
        })
}

/// The user's cache directory. A host gets this whatever files it has (`/.dockerenv`
/// included); the image sets `DEVCACHE_DATA_DIR=/data` and `DEVCACHE_HOST=0.0.0.0`.
fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "devcache")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".devcache"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key: &str| map.get(key).cloned()
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devcache.yml");
        std::fs::write(
            &file,
            "upstream: http://file.test/simple\nport: 4000\nindex_ttl: 7\n",
        )
        .unwrap();
        let args = ServeSettings {
            port: Some(5000),
            config: Some(file.clone()),
            ..Default::default()
        };
        let env = env_of(&[
            ("DEVCACHE_PORT", "6000"),
            ("DEVCACHE_INDEX_TTL", "9"),
            ("HOME", "/nonexistent"),
        ]);
        let config = ServeConfig::load(&args, &env).unwrap();
        assert_eq!(config.port.value, 5000);
        assert_eq!(config.port.source, Source::Flag);
        assert_eq!(config.index_ttl.value, 9);
        assert_eq!(config.index_ttl.source, Source::Env("DEVCACHE_INDEX_TTL"));
        assert_eq!(
            config.upstream.value.as_ref().unwrap().as_str(),
            "http://file.test/simple/"
        );
        assert_eq!(config.upstream.source, Source::File(file));
        assert_eq!(config.upstream_timeout.value, 10);
        assert_eq!(config.upstream_timeout.source, Source::Default);
        assert!(config.describe().contains("environment DEVCACHE_INDEX_TTL"));
    }

    #[test]
    fn one_thread_unless_set_and_never_none() {
        let env = env_of(&[("DEVCACHE_UPSTREAM", "http://x.test/")]);
        let config = ServeConfig::load(&ServeSettings::default(), &env).unwrap();
        assert_eq!(config.threads.value.get(), 1);
        let env = env_of(&[
            ("DEVCACHE_UPSTREAM", "http://x.test/"),
            ("DEVCACHE_THREADS", "4"),
        ]);
        let config = ServeConfig::load(&ServeSettings::default(), &env).unwrap();
        assert_eq!(config.threads.value.get(), 4);
        assert!(config.describe().contains("environment DEVCACHE_THREADS"));
        let env = env_of(&[
            ("DEVCACHE_UPSTREAM", "http://x.test/"),
            ("DEVCACHE_THREADS", "0"),
        ]);
        let err = ServeConfig::load(&ServeSettings::default(), &env).unwrap_err();
        assert!(format!("{err:#}").contains("DEVCACHE_THREADS"), "{err:#}");
    }

    #[test]
    fn a_host_gets_host_defaults_whatever_files_it_has() {
        let env = env_of(&[("DEVCACHE_UPSTREAM", "http://x.test/")]);
        let config = ServeConfig::load(&ServeSettings::default(), &env).unwrap();
        assert_eq!(config.host.value, "127.0.0.1");
        assert_ne!(config.data_dir.value, PathBuf::from("/data"));
    }

    #[test]
    fn bad_values_are_named() {
        let env = env_of(&[
            ("DEVCACHE_PORT", "http"),
            ("DEVCACHE_UPSTREAM", "http://x.test/"),
        ]);
        let err = ServeConfig::load(&ServeSettings::default(), &env).unwrap_err();
        assert!(format!("{err:#}").contains("DEVCACHE_PORT"), "{err:#}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devcache.yml");
        std::fs::write(&file, "upstrem: http://typo.test/\n").unwrap();
        let args = ServeSettings {
            config: Some(file),
            ..Default::default()
        };
        let err = ServeConfig::load(&args, &env_of(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("upstrem"), "{err:#}");
    }

    #[test]
    fn an_index_at_devcaches_own_address_is_devcache() {
        let at =
            |url: &str, host: &str| is_served_at(&Url::parse(url).unwrap(), host, &[3141, 3443]);
        for itself in [
            "http://localhost:3141/root/pypi/+simple/",
            "http://LOCALHOST:3141/simple/",
            "http://127.0.0.1:3141/simple/",
            "http://127.1.2.3:3141/simple/",
            "http://[::1]:3141/simple/",
            "http://0.0.0.0:3141/simple/",
            "https://localhost:3443/simple/",
        ] {
            assert!(at(itself, "127.0.0.1"), "{itself}");
        }
        assert!(at("http://cache.lan:3141/simple/", "cache.lan"));
        assert!(at("http://10.0.0.5:3141/simple/", "10.0.0.5"));
        for other in [
            "http://localhost:3142/simple/",
            "http://localhost/simple/",
            "https://index.example/simple/",
            "http://10.0.0.5:3141/simple/",
        ] {
            assert!(!at(other, "127.0.0.1"), "{other}");
        }
    }

    #[test]
    fn upstream_urls_are_checked() {
        assert!(parse_upstream("ftp://x.test/").is_err());
        assert!(parse_upstream("not a url").is_err());
        assert_eq!(
            parse_upstream("https://x.test/simple").unwrap().as_str(),
            "https://x.test/simple/"
        );
    }

    #[test]
    fn the_disk_budget_is_written_as_people_write_sizes() {
        let env = env_of(&[
            ("DEVCACHE_MAX_SIZE", "20GiB"),
            ("DEVCACHE_UPSTREAM", "http://x.test/"),
        ]);
        let config = ServeConfig::load(&ServeSettings::default(), &env).unwrap();
        assert_eq!(config.max_size.value, Some(20 << 30));
        assert_eq!(parse_size("500 MB").unwrap(), 500_000_000);
        assert!(parse_size("lots").is_err());
        let none = env_of(&[("DEVCACHE_UPSTREAM", "http://x.test/")]);
        let config = ServeConfig::load(&ServeSettings::default(), &none).unwrap();
        assert_eq!(config.max_size.value, None);
    }

    #[test]
    fn offline_accepts_the_usual_spellings() {
        let env = env_of(&[
            ("DEVCACHE_OFFLINE", "1"),
            ("DEVCACHE_UPSTREAM", "http://x.test/"),
        ]);
        let config = ServeConfig::load(&ServeSettings::default(), &env).unwrap();
        assert!(config.offline.value);
    }
}
