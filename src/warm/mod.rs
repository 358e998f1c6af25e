//! `devcache warm`: filling a cache ahead of time with what requirement files pin,
//! for the interpreter and platform that will install it, so that installs work
//! offline afterwards.
//!
//! ```text
//! requirements.rs  pip requirement files: pins, hashes, markers, extras, -r/-c includes
//! target.rs        the interpreter and platforms: accepted wheel tags, environment markers
//! fill.rs          fetching pages and files through the cache, many at once
//! ```

pub mod fill;
pub mod requirements;
pub mod target;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use futures::future::BoxFuture;
use url::Url;

use crate::cli::{ServeArgs, WarmArgs};
use crate::config::{ServeConfig, file_config, process_env};
use crate::stack::names::{self, Project, shown};
use crate::stack::{cache, consumers, engine, exec};
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
            let bytes = exec::read_file(self.docker, &self.container, path)
                .await?
                .with_context(|| format!("no such file in {}", self.container))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

/// Requirement files `warm SERVICE` reads when devcache.yml names none.
fn default_requirement_files(service: &str) -> Vec<String> {
    match service {
        "lms" | "cms" => {
            vec!["/edx/app/edxapp/edx-platform/requirements/edx/development.txt".into()]
        }
        other => vec![format!("/edx/app/{other}/requirements/production.txt")],
    }
}

pub async fn command(args: WarmArgs) -> Result<()> {
    if args.services.is_empty() == args.requirements.is_empty() {
        bail!(
            "give requirement files (devcache warm -r requirements.txt) or devstack services (devcache warm lms studio), not both"
        );
    }
    let serve_args = ServeArgs {
        data_dir: args.data_dir.clone(),
        upstream: args.upstream.clone(),
        config: args.config.clone(),
        ..Default::default()
    };
    let mut docker = None;
    let mut local = None;
    let cache_url = if let Some(url) = &args.url {
        Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?
    } else if args.data_dir.is_some() {
        let config = ServeConfig::load(&serve_args, &process_env)?;
        let server = local.insert(crate::server::spawn_local(&config).await?);
        Url::parse(&format!("http://{}/", server.addr))?
    } else {
        let project = Project::new(&args.stack.project)?;
        let connected = docker.insert(engine::connect().await?);
        let (_, port) = cache::running(connected, &project).await.context(
            "warm fills the running cache container, or a --data-dir, or the cache at --url",
        )?;
        Url::parse(&format!("http://127.0.0.1:{port}/"))?
    };

    let mut incomplete = false;
    if args.services.is_empty() {
        let target = Target::new(args.python.as_deref().unwrap_or("3.11"), &args.platform)?;
        let roots: Vec<String> = args
            .requirements
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let found = requirements::read(&LocalFiles, &roots, &target.markers).await;
        incomplete |= warm_and_report(&cache_url, &found, &target, args.jobs).await?;
    } else {
        let project = Project::new(&args.stack.project)?;
        let docker = match docker {
            Some(docker) => docker,
            None => engine::connect().await?,
        };
        let configured = file_config(&serve_args)?.warm;
        for word in &args.services {
            let service = names::service(word)?;
            let consumer = consumers::find_running(&docker, &project, &service).await?;
            let target = probe_target(&docker, &consumer.container, &args).await?;
            let roots = configured
                .get(shown(&service))
                .or_else(|| configured.get(&service))
                .cloned()
                .unwrap_or_else(|| default_requirement_files(&service));
            println!("{}: requirements {}", shown(&service), roots.join(", "));
            let files = ContainerFiles {
                docker: &docker,
                container: consumer.container.clone(),
            };
            let found = requirements::read(&files, &roots, &target.markers).await;
            incomplete |= warm_and_report(&cache_url, &found, &target, args.jobs).await?;
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

/// The Python version and platform of a service's interpreter (flags override them).
async fn probe_target(docker: &Docker, container: &str, args: &WarmArgs) -> Result<Target> {
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
    let platforms = if !args.platform.is_empty() {
        args.platform.clone()
    } else if let Some((major, minor)) = glibc.split_once('.') {
        vec![format!("manylinux_{major}_{minor}_{arch}")]
    } else {
        vec![format!("linux_{arch}")]
    };
    Target::new(args.python.as_deref().unwrap_or(version), &platforms)
}

/// Warms, prints what happened; `true` when something asked for is not in the cache.
async fn warm_and_report(
    cache: &Url,
    found: &Requirements,
    target: &Target,
    jobs: usize,
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
    let summary = fill::warm(cache, &found.pins, target, jobs).await?;
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
