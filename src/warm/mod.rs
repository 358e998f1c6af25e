//! `devcache warm`: filling a cache ahead of time with what requirement files and lock
//! files pin, for the interpreter and platform that will install it, so that installs
//! work offline afterwards.
//!
//! ```text
//! requirements.rs  pip requirement files: pins, hashes, markers, extras, -r/-c includes
//! lock.rs          uv.lock and pylock.toml: the packages the target installs, with hashes
//! target.rs        the interpreter and platforms: accepted wheel tags, environment markers
//! fill.rs          fetching pages and files through the cache, many at once
//! ```

pub mod fill;
pub mod lock;
pub mod requirements;
pub mod target;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use futures::future::BoxFuture;
use url::Url;

use crate::config::{ServeConfig, ServeSettings, file_config, process_env};
use crate::stack::names::{self, Project};
use crate::stack::{cache, consumers, engine, exec, files};
use crate::store::pins;
use crate::upstream::Caps;
use requirements::{FileReader, Requirements};
use target::Target;

/// Requirement files on this host.
struct LocalFiles;

impl FileReader for LocalFiles {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
        })
    }
}

/// Requirement files inside a container.
struct ContainerFiles<'a> {
    docker: &'a Docker,
    container: String,
}

impl FileReader for ContainerFiles<'_> {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let bytes = files::read(self.docker, &self.container, path)
                .await?
                .with_context(|| format!("no such file in {}", self.container))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

/// The lock `warm SERVICE` prefers, when the service has it and devcache.yml names no
/// files: the repository root's `uv.lock` (in a Tutor container, edx-platform's).
fn default_lock(service: &str, tutor: Option<TutorMode>) -> String {
    match (service, tutor) {
        (_, Some(_)) => format!("{TUTOR_EDX_PLATFORM}/uv.lock"),
        ("lms" | "studio", None) => "/edx/app/edxapp/edx-platform/uv.lock".into(),
        (other, None) => format!("/edx/app/{other}/uv.lock"),
    }
}

/// Requirement files `warm SERVICE` reads when devcache.yml names none and the service
/// has no lock: devstack's, or in a Tutor container (whose openedx image keeps
/// edx-platform in `/openedx`) the file its Dockerfile installs: development.txt for
/// `tutor dev`, base.txt for `tutor local`.
fn default_requirement_files(service: &str, tutor: Option<TutorMode>) -> Vec<String> {
    match (service, tutor) {
        (_, Some(TutorMode::Dev)) => {
            vec![format!(
                "{TUTOR_EDX_PLATFORM}/requirements/edx/development.txt"
            )]
        }
        (_, Some(TutorMode::Local)) => {
            vec![format!("{TUTOR_EDX_PLATFORM}/requirements/edx/base.txt")]
        }
        ("lms" | "studio", None) => {
            vec!["/edx/app/edxapp/edx-platform/requirements/edx/development.txt".into()]
        }
        (other, None) => vec![format!("/edx/app/{other}/requirements/production.txt")],
    }
}

/// Where Tutor's openedx image keeps edx-platform.
const TUTOR_EDX_PLATFORM: &str = "/openedx/edx-platform";

/// Which Tutor image a container runs, told by its edx-platform and its project's name.
#[derive(Clone, Copy)]
enum TutorMode {
    Dev,
    Local,
}

async fn tutor_mode(files: &ContainerFiles<'_>, project: &Project) -> Option<TutorMode> {
    let base = format!("{TUTOR_EDX_PLATFORM}/requirements/edx/base.txt");
    if !files::exists(files.docker, &files.container, &base)
        .await
        .ok()?
    {
        return None;
    }
    Some(if project.is_tutor_local() {
        TutorMode::Local
    } else {
        TutorMode::Dev
    })
}

/// The lock or requirement files `warm SERVICE` reads in the service's container:
/// devcache.yml's, else its lock when it has one, else its requirement files.
async fn service_roots(
    files: &ContainerFiles<'_>,
    project: &Project,
    service: &str,
    configured: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>> {
    // devcache.yml may key a service by any of its names (`cms:` is `studio:`).
    let configured_roots = configured
        .iter()
        .find(|(key, _)| names::service(key).ok().as_deref() == Some(service))
        .map(|(_, files)| files.clone());
    if let Some(roots) = configured_roots {
        return Ok(roots);
    }
    let tutor = tutor_mode(files, project).await;
    let lock = default_lock(service, tutor);
    Ok(
        if files::exists(files.docker, &files.container, &lock).await? {
            vec![lock]
        } else {
            default_requirement_files(service, tutor)
        },
    )
}

/// The hosts of the file URLs in a running service's lock (found as `warm SERVICE`
/// finds it), for locked installs.
pub async fn lock_file_hosts(
    docker: &Docker,
    project: &Project,
    service: &str,
    container: &str,
) -> Result<Vec<String>> {
    let files = ContainerFiles {
        docker,
        container: container.to_string(),
    };
    let configured = file_config(None, &process_env)?.warm;
    let locks: Vec<String> = service_roots(&files, project, service, &configured)
        .await?
        .into_iter()
        .filter(|path| lock::is_lock(path))
        .collect();
    if locks.is_empty() {
        bail!(
            "{service} has no uv.lock where devcache looks ({}): name the file hosts with --file-host HOST",
            default_lock(service, tutor_mode(&files, project).await)
        );
    }
    let mut hosts = Vec::new();
    for path in &locks {
        let text = files.read(path).await?;
        hosts.extend(lock::file_hosts(&text).with_context(|| format!("in {path}"))?);
    }
    if hosts.is_empty() {
        bail!(
            "{} names no https file URL of an index: there is nothing to serve for it",
            locks.join(", ")
        );
    }
    Ok(hosts)
}

/// What `warm` is asked to fill, and for which interpreter.
pub struct WarmOptions {
    /// Requirement files on this host (or else `services`).
    pub requirements: Vec<PathBuf>,
    /// Lock files on this host, `uv.lock` or `pylock.toml` (or else `services`).
    pub locks: Vec<PathBuf>,
    /// devstack services whose own requirement files to read (or else `requirements`).
    pub services: Vec<String>,
    /// The compose project the services and the cache container belong to.
    pub project: String,
    /// The Python that will install; default 3.11, or the service's own.
    pub python: Option<String>,
    /// Wheel platform tags; default as [`Target::new`] says, or the service's own.
    pub platforms: Vec<String>,
    /// The cache at this URL instead of the cache container.
    pub url: Option<String>,
    /// With `serve.data_dir`: a cache devcache runs for the purpose, configured as
    /// `serve` would be. Its `config` also says where devcache.yml is.
    pub serve: ServeSettings,
    /// Downloads at once.
    pub jobs: usize,
    /// The pin set to record the warmed files in, instead of the one named after what is warmed.
    pub pin: Option<String>,
    /// Do not pin the warmed files.
    pub no_pin: bool,
}

impl WarmOptions {
    /// The pin set for warming `what` (a service or a requirement file), if any.
    fn pin_set(&self, what: &str) -> Option<String> {
        if self.no_pin {
            return None;
        }
        let name = std::path::Path::new(what)
            .file_name()
            .map_or(what.into(), |n| n.to_string_lossy());
        Some(
            self.pin
                .clone()
                .unwrap_or_else(|| pins::set_name(&["warm", &name])),
        )
    }
}

pub async fn command(options: WarmOptions) -> Result<()> {
    if let Some(set) = &options.pin
        && !pins::valid_set_name(set)
    {
        bail!("--pin {set:?}: a pin set is named with letters, digits, '.', '_' and '-'");
    }
    let local_files = options.requirements.len() + options.locks.len();
    if options.services.is_empty() == (local_files == 0) {
        bail!(
            "give requirement or lock files (devcache warm -r requirements.txt, --lock uv.lock) or devstack services (devcache warm lms studio), not both"
        );
    }
    let mut docker = None;
    let mut local = None;
    let cache_url = if let Some(url) = &options.url {
        Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?
    } else if options.serve.data_dir.is_some() {
        let config = ServeConfig::load(&options.serve, &process_env)?;
        let server = local.insert(crate::server::spawn_local(&config).await?);
        Url::parse(&format!("http://{}/", server.addr))?
    } else {
        let project = Project::new(&options.project)?;
        let connected = docker.insert(engine::connect().await?);
        let cache = cache::serving(connected, &project).await.context(
            "warm fills the running cache container, or a --data-dir, or the cache at --url",
        )?;
        Url::parse(&format!("http://127.0.0.1:{}/", cache.port))?
    };

    let caps = crate::config::caps(&options.serve, &process_env)?;
    let mut incomplete = false;
    if options.services.is_empty() {
        let target = Target::new(
            options.python.as_deref().unwrap_or("3.11"),
            &options.platforms,
        )?;
        let shown = |paths: &[PathBuf]| -> Vec<String> {
            paths.iter().map(|p| p.display().to_string()).collect()
        };
        let found = read_all(
            &LocalFiles,
            &shown(&options.requirements),
            &shown(&options.locks),
            &target,
        )
        .await;
        let first = options.requirements.iter().chain(&options.locks).next();
        let pin = first.and_then(|path| options.pin_set(&path.display().to_string()));
        incomplete |= warm_and_report(&cache_url, &found, &target, &options, pin, caps).await?;
    } else {
        let project = Project::new(&options.project)?;
        let docker = match docker {
            Some(docker) => docker,
            None => engine::connect().await?,
        };
        let configured = file_config(options.serve.config.as_deref(), &process_env)?.warm;
        for word in &options.services {
            let service = names::service(word)?;
            let consumer = consumers::find_running(&docker, &project, &service).await?;
            let target = probe_target(&docker, &consumer.container, &options).await?;
            let files = ContainerFiles {
                docker: &docker,
                container: consumer.container.clone(),
            };
            let roots = service_roots(&files, &project, &service, &configured).await?;
            println!("{service}: reading {}", roots.join(", "));
            let (locks, requirement_files): (Vec<String>, Vec<String>) =
                roots.into_iter().partition(|path| lock::is_lock(path));
            let found = read_all(&files, &requirement_files, &locks, &target).await;
            let pin = options.pin_set(&service);
            incomplete |= warm_and_report(&cache_url, &found, &target, &options, pin, caps).await?;
        }
    }
    if let Some(server) = &local {
        server.settled().await;
    }
    if incomplete {
        bail!("the cache is warm, but not with everything asked for; see above");
    }
    Ok(())
}

/// What requirement files and locks ask for, for the target.
async fn read_all(
    reader: &dyn FileReader,
    requirement_files: &[String],
    locks: &[String],
    target: &Target,
) -> Requirements {
    let mut found = requirements::read(reader, requirement_files, &target.markers).await;
    for path in locks {
        found.absorb(lock::read(reader, path, &target.markers).await);
    }
    found
}

/// The Python version and platform of a service's interpreter (flags override them).
async fn probe_target(docker: &Docker, container: &str, options: &WarmOptions) -> Result<Target> {
    const PROBE: &str = "import platform, sys, sysconfig; \
        print('%d.%d.%d' % sys.version_info[:3]); print(sysconfig.get_platform()); print(platform.libc_ver()[1])";
    let mut said = None;
    for python in ["python3", "python"] {
        let ran = exec::run(docker, container, &[python, "-c", PROBE]).await?;
        if ran.code == 0 {
            said = Some(ran.stdout);
            break;
        }
    }
    let said = said
        .with_context(|| format!("no python3 or python in {container} to read its version from"))?;
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    let (version, platform, glibc) = match lines[..] {
        [version, platform, glibc, ..] => (version, platform, glibc),
        [version, platform] => (version, platform, ""),
        _ => bail!("cannot read the interpreter of {container}: {said:?}"),
    };
    let arch = platform
        .rsplit('-')
        .next()
        .unwrap_or(std::env::consts::ARCH);
    let platforms = if !options.platforms.is_empty() {
        options.platforms.clone()
    } else if let Some((major, minor)) = glibc.split_once('.') {
        vec![format!("manylinux_{major}_{minor}_{arch}")]
    } else {
        vec![format!("linux_{arch}")]
    };
    Target::new(options.python.as_deref().unwrap_or(version), &platforms)
}

/// Warms, prints what happened; `true` when something asked for is not in the cache.
async fn warm_and_report(
    cache: &Url,
    found: &Requirements,
    target: &Target,
    options: &WarmOptions,
    pin: Option<String>,
    caps: Caps,
) -> Result<bool> {
    for (title, lines) in [
        ("cannot use", &found.errors),
        ("not pinned to one version, so not warmed", &found.unpinned),
        ("not from an index, so not warmed", &found.not_from_index),
        ("excluded by their markers", &found.excluded),
    ] {
        if !lines.is_empty() {
            println!("{title}:");
            for line in lines {
                println!("  {line}");
            }
        }
    }
    let summary = fill::warm(
        cache,
        &found.pins,
        target,
        options.jobs,
        pin.as_deref(),
        caps,
    )
    .await?;
    println!(
        "warmed for Python {}.{} on {}: {} projects, {} files ({} already cached), {} fetched",
        target.python.0,
        target.python.1,
        target.platforms.join(", "),
        summary.projects,
        summary.files,
        summary.already_cached,
        crate::api::human_bytes(summary.fetched_bytes)
    );
    if let Some(set) = &pin {
        println!(
            "pinned in {set}: eviction keeps these files (`devcache unpin {set}` releases them)"
        );
    }
    for (title, lines) in [
        ("not found", &summary.not_found),
        ("failed", &summary.failed),
    ] {
        if !lines.is_empty() {
            println!("{title}:");
            for line in lines {
                println!("  {line}");
            }
        }
    }
    Ok(!found.errors.is_empty() || !summary.not_found.is_empty() || !summary.failed.is_empty())
}
