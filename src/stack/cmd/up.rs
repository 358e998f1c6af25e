//! `devcache up`: the image and the cache container made or started as needed, then
//! pip.conf and uv.toml written into every consumer. The upstream is the one given
//! now, else the running cache's, else the one remembered from the last `up`, else
//! found as `devcache serve` finds it; it must be one the container can reach.

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::{fail_with, services, wire_one};
use crate::config::{ServeConfig, ServeSettings, Source, is_loopback, process_env};
use crate::stack::cache::{self, Change, Found, Owner, Wanted};
use crate::stack::image::{self, Made};
use crate::stack::names::{Project, cache_index_url};
use crate::stack::state::Choices;
use crate::stack::{engine, locked};
use crate::upstream::shown;

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
    let services = services(&options.services)?;
    let docker = engine::connect().await?;
    if let Some(found) = cache::find(&docker, &project).await?
        && found.owner == Owner::TutorPlugin
    {
        return tutors_cache(&project, &found).await;
    }
    let mut choices = Choices::load(&project, options.serve.config.as_deref())?;
    let upstream = upstream_for_container(&options.serve, &docker, &project, &choices).await?;
    let mut changed = false;

    if let Made::Built(why) = image::ensure(&docker, false).await? {
        println!("image {}: built from this devcache: {why}", image::tag());
        changed = true;
    }
    let wanted = Wanted {
        upstream: upstream.clone(),
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
        Change::Recreated(differences) => println!(
            "cache {name}: recreated, since {} (volume {} kept)",
            differences.join("; "),
            project.volume()
        ),
    }
    let (_, port) = cache::running(&docker, &project).await?;
    cache::wait_ready(port).await?;

    choices.upstream = Some(upstream);
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
    // Services are wired even when locked installs cannot be set up; that is reported.
    let locked = locked::prepare(&docker, &project, &choices.locked)
        .await
        .unwrap_or_else(|e| {
            failures.push(format!("locked installs: {e:#}"));
            None
        });
    for service in &consumers {
        match wire_one(&docker, &project, service, locked.as_ref()).await {
            Ok(wired) => {
                changed |= wired.changed();
                println!("{service}: {}", wired.said(&project, service));
            }
            Err(e) => failures.push(format!("{service}: {e:#}")),
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

/// A project whose cache Tutor runs from devcache's plugin gets no second one: `up`
/// says which it is and whether it answers. Its containers have the index from the
/// image the plugin builds, so there is nothing to write into them.
async fn tutors_cache(project: &Project, found: &Found) -> Result<()> {
    let name = &found.name;
    let port = cache::host_port(&found.container).filter(|_| cache::is_running(&found.container));
    let Some(port) = port else {
        bail!(
            "cache {name}: Tutor runs project {}'s cache from devcache's plugin, and it is stopped: {}",
            project.name(),
            found.owner.start_hint(project)
        );
    };
    cache::wait_ready(port).await?;
    println!(
        "cache {name}: Tutor runs project {}'s cache from devcache's plugin; no second one started",
        project.name()
    );
    println!(
        "cache: http://localhost:{port}/ (the openedx image the plugin builds points pip and uv at it; \
         `devcache tutor status` shows its settings)"
    );
    Ok(())
}

/// The upstream the container caches: one the user gives now (flag, `DEVCACHE_UPSTREAM`,
/// devcache.yml), else the cache container's own, else the one the last `up` used,
/// else pip's configuration, as for `devcache serve`. It must be one the container
/// can reach.
async fn upstream_for_container(
    serve: &ServeSettings,
    docker: &Docker,
    project: &Project,
    choices: &Choices,
) -> Result<String> {
    let config = ServeConfig::load(serve, &process_env);
    let given = config.as_ref().ok().filter(|c| {
        matches!(
            c.upstream.source,
            Source::Flag | Source::Env(_) | Source::File(_)
        )
    });
    if given.is_none() {
        if let Some(url) = cache::configured_upstream(docker, project).await? {
            println!(
                "upstream {}: the one the cache container {} already uses",
                shown(&url),
                project.cache_container()
            );
            return Ok(url);
        }
        if let Some(url) = &choices.upstream {
            println!(
                "upstream {}: remembered from the last `devcache up`",
                shown(url)
            );
            return Ok(url.clone());
        }
    }
    reachable_upstream(config?)
}

/// The upstream `config` names, checked to be one a container can reach: the same
/// precedence as `devcache serve`.
pub fn reachable_upstream(config: ServeConfig) -> Result<String> {
    let url = config.upstream.value.context(
        "the cache container needs an upstream: pass --upstream URL once (devcache remembers it) or set DEVCACHE_UPSTREAM",
    )?;
    if is_loopback(&url) {
        bail!(
            "upstream {} is on this host's loopback, which the cache container cannot reach: \
             give an address the container can reach",
            shown(url.as_str())
        );
    }
    Ok(url.to_string())
}
