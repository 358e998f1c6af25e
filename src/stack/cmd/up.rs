//! `devcache up`: the image and the cache container made or started as needed, then
//! pip.conf and uv.toml written into every consumer. The upstream follows the same
//! precedence as `devcache serve`, and must be one the container can reach.

use anyhow::{Context, Result, bail};

use super::{fail_with, services, wire_one};
use crate::config::{ServeConfig, ServeSettings, process_env};
use crate::stack::cache::{self, Change, Wanted};
use crate::stack::engine;
use crate::stack::image::{self, Made};
use crate::stack::names::{Project, cache_index_url, shown};
use crate::stack::state::Choices;

/// What `up` is asked to do.
pub struct UpOptions {
    /// The compose project.
    pub project: String,
    /// The upstream and configuration file, as `serve` would read them.
    pub serve: ServeSettings,
    /// Host port to publish the cache on; 0 picks a free one.
    pub port: u16,
    /// Services to wire besides those remembered (and remembered from now on).
    pub services: Vec<String>,
}

/// `devcache up`: the cache container, then pip.conf and uv.toml in every consumer.
pub async fn up(options: UpOptions) -> Result<()> {
    let project = Project::new(&options.project)?;
    let upstream = upstream_for_container(&options.serve)?;
    let services = services(&options.services)?;
    let docker = engine::connect().await?;
    let mut changed = false;

    if let Made::Built = image::ensure(&docker, false).await? {
        println!("image {}: built from this devcache", image::tag());
        changed = true;
    }
    let wanted = Wanted {
        upstream,
        port: options.port,
        max_size: ServeConfig::load(&options.serve, &process_env)?
            .max_size
            .value,
    };
    let name = project.cache_container();
    let change = cache::ensure(&docker, &project, &wanted).await?;
    changed |= change != Change::Unchanged;
    match change {
        Change::Unchanged => {}
        Change::Started => println!("cache {name}: started"),
        Change::Created => println!(
            "cache {name}: created and started (volume {})",
            project.volume()
        ),
        Change::Recreated => println!(
            "cache {name}: recreated with the new settings (volume {} kept)",
            project.volume()
        ),
    }
    let (_, port) = cache::running(&docker, &project).await?;
    cache::wait_ready(port).await?;

    let mut choices = Choices::load(&project, options.serve.config.as_deref())?;
    for service in &services {
        choices.enable(service);
    }
    choices.save(&project)?;
    let consumers = if services.is_empty() {
        choices.consumers()
    } else {
        services
    };
    let mut failures = Vec::new();
    for service in &consumers {
        match wire_one(&docker, &project, service).await {
            Ok(said) => {
                changed |= said.is_some();
                println!(
                    "{}: {}",
                    shown(service),
                    said.as_deref().unwrap_or("already wired")
                );
            }
            Err(e) => failures.push(format!("{}: {e:#}", shown(service))),
        }
    }
    if !changed && failures.is_empty() {
        println!("already up to date");
    }
    println!(
        "cache: http://localhost:{port}/ (consumers use {})",
        cache_index_url()
    );
    fail_with(failures)
}

/// The upstream the container caches: the same precedence as `devcache serve`.
fn upstream_for_container(serve: &ServeSettings) -> Result<String> {
    let config = ServeConfig::load(serve, &process_env)?;
    let url = config.upstream.value.context(
        "the cache container needs an upstream: pass --upstream URL or set DEVCACHE_UPSTREAM",
    )?;
    if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "::1")) {
        bail!(
            "upstream {url} is on this host's loopback, which the cache container cannot reach: \
             give an address the container can reach"
        );
    }
    Ok(url.to_string())
}
