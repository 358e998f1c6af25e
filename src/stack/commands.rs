//! The devstack subcommands. Each one composes the pieces of this folder and says
//! plainly what it did; problems a user can fix come back as one-line errors.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{EventsOptions, LogsOptions, RemoveVolumeOptions};
use futures::StreamExt;
use serde::Serialize;

use super::cache::{self, Change, Wanted};
use super::consumers::{self, Consumer};
use super::engine::{self, is_not_found, message};
use super::image::{self, Made};
use super::names::{self, Project, cache_index_url, shown};
use super::state::Choices;
use crate::cli::{DownArgs, LogsArgs, ServeArgs, StatusArgs, UpArgs};
use crate::config::{ServeConfig, process_env};

/// `devcache up`: the cache container, then pip.conf and uv.toml in every consumer.
pub async fn up(args: UpArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let upstream = upstream_for_container(&args)?;
    let services = args
        .services
        .iter()
        .map(|s| names::service(s))
        .collect::<Result<Vec<_>>>()?;
    let docker = engine::connect().await?;
    let mut changed = false;

    if let Made::Built = image::ensure(&docker, false).await? {
        println!("image {}: built from this devcache", image::tag());
        changed = true;
    }
    let wanted = Wanted {
        upstream,
        port: args.port,
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

    let mut choices = Choices::load(&project, args.config.clone())?;
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

/// Wires one consumer; `Some(what it did)` when something changed.
async fn wire_one(docker: &Docker, project: &Project, service: &str) -> Result<Option<String>> {
    let consumer = consumers::find_running(docker, project, service).await?;
    let wiring = consumers::wire(docker, &consumer).await?;
    Ok(wiring.changed.then(|| {
        if wiring.saved_users_file {
            "wired (your own config is kept aside and comes back with `devcache disable`)"
                .to_string()
        } else {
            "wired".to_string()
        }
    }))
}

fn fail_with(failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    for failure in &failures {
        eprintln!("devcache: {failure}");
    }
    bail!(
        "{} service(s) could not be set up; see above",
        failures.len()
    )
}

/// The upstream the container caches: the same precedence as `devcache serve`.
fn upstream_for_container(args: &UpArgs) -> Result<String> {
    let serve = ServeArgs {
        upstream: args.upstream.clone(),
        config: args.config.clone(),
        ..Default::default()
    };
    let config = ServeConfig::load(&serve, &process_env)?;
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

/// `devcache down`: consumers unwired (their own config back), the container removed.
pub async fn down(args: DownArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let docker = engine::connect().await?;
    let choices = Choices::load(&project, None)?;
    for service in choices.consumers() {
        let Some(consumer) = consumers::find(&docker, &project, &service).await? else {
            continue;
        };
        if !consumer.running {
            println!(
                "{}: not running; its pip.conf still names the cache: start it and run `devcache up` or `devcache disable {}`",
                shown(&service),
                shown(&service)
            );
            continue;
        }
        let unwiring = consumers::unwire(&docker, &consumer).await?;
        if unwiring.removed || unwiring.restored_users_file {
            println!(
                "{}: pip.conf and uv.toml taken out, since the cache is going away{} (`devcache up` puts them back)",
                shown(&service),
                if unwiring.restored_users_file {
                    "; your own are back"
                } else {
                    ""
                }
            );
        }
    }
    let name = project.cache_container();
    if cache::remove(&docker, &project).await? {
        println!("cache {name}: stopped and removed");
    } else {
        println!("cache {name}: was not there");
    }
    let volume = project.volume();
    if args.volumes {
        match docker
            .remove_volume(&volume, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => println!("volume {volume}: removed, with everything cached"),
            Err(e) if is_not_found(&e) => println!("volume {volume}: was not there"),
            Err(e) => bail!("cannot remove volume {volume}: {}", message(&e)),
        }
    } else {
        println!("volume {volume}: kept (`devcache down --volumes` removes it)");
    }
    Ok(())
}

/// `devcache enable SERVICE...`
pub async fn enable(args: crate::cli::ServicesArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let services = args
        .services
        .iter()
        .map(|s| names::service(s))
        .collect::<Result<Vec<_>>>()?;
    let mut choices = Choices::load(&project, None)?;
    for service in &services {
        choices.enable(service);
    }
    choices.save(&project)?;
    let docker = engine::connect().await?;
    if cache::running(&docker, &project).await.is_err() {
        for service in &services {
            println!("{}: enabled; `devcache up` wires it", shown(service));
        }
        return Ok(());
    }
    let mut failures = Vec::new();
    for service in &services {
        match wire_one(&docker, &project, service).await {
            Ok(said) => println!(
                "{}: enabled, {}",
                shown(service),
                said.as_deref().unwrap_or("already wired")
            ),
            Err(e) => failures.push(format!("{}: enabled, but {e:#}", shown(service))),
        }
    }
    fail_with(failures)
}

/// `devcache disable SERVICE...`
pub async fn disable(args: crate::cli::ServicesArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let services = args
        .services
        .iter()
        .map(|s| names::service(s))
        .collect::<Result<Vec<_>>>()?;
    let mut choices = Choices::load(&project, None)?;
    for service in &services {
        choices.disable(service);
    }
    choices.save(&project)?;
    let docker = engine::connect().await?;
    let mut failures = Vec::new();
    for service in &services {
        let consumer = match consumers::find_running(&docker, &project, service).await {
            Ok(consumer) => consumer,
            Err(e) => {
                failures.push(format!(
                    "{}: disabled, but its files are unchanged: {e:#}",
                    shown(service)
                ));
                continue;
            }
        };
        let unwiring = consumers::unwire(&docker, &consumer).await?;
        let what = match (unwiring.removed, unwiring.restored_users_file) {
            (_, true) => "devcache's pip.conf and uv.toml removed, your own are back",
            (true, false) => "devcache's pip.conf and uv.toml removed",
            (false, false) => "it was not wired",
        };
        println!("{}: disabled; {what}", shown(service));
    }
    fail_with(failures)
}

#[derive(Serialize)]
struct StatusReport {
    project: String,
    cache: CacheReport,
    consumers: Vec<ConsumerReport>,
}

#[derive(Serialize)]
struct CacheReport {
    container: String,
    state: String,
    health: Option<String>,
    url: Option<String>,
    image: Option<String>,
    volume: String,
    /// The server's own `/+status`, when it answers.
    server: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ConsumerReport {
    service: String,
    container: Option<String>,
    running: bool,
    enabled: bool,
    /// Disabled by the user (as opposed to never enabled).
    disabled: bool,
    pip: String,
    /// What the cache served this container (matched by its address on the network).
    served: Option<serde_json::Value>,
}

/// `devcache status [--json]`
pub async fn status(args: StatusArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let docker = engine::connect().await?;
    let name = project.cache_container();
    let mut report = CacheReport {
        container: name.clone(),
        state: "absent".into(),
        health: None,
        url: None,
        image: None,
        volume: project.volume(),
        server: None,
    };
    match docker.inspect_container(&name, None).await {
        Ok(container) => {
            let state = container.state.as_ref();
            report.state = state
                .and_then(|s| s.status)
                .map_or("unknown".to_string(), |s| s.to_string());
            report.health = state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status)
                .map(|s| s.to_string());
            report.image = container.config.as_ref().and_then(|c| c.image.clone());
            if let Some(port) =
                cache::host_port(&container).filter(|_| cache::is_running(&container))
            {
                report.url = Some(format!("http://localhost:{port}/"));
                report.server = fetch_status(port).await;
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => bail!("cannot inspect {name}: {}", message(&e)),
    }
    let choices = Choices::load(&project, None)?;
    // Every Python service that has a container, and every one enabled or disabled.
    let mut consumer_reports = Vec::new();
    for service in names::PYTHON_SERVICES {
        let service = service.to_string();
        let found: Option<Consumer> = consumers::find(&docker, &project, &service).await?;
        let chosen = choices.is_enabled(&service) || choices.disabled.contains(&service);
        if found.is_none() && !chosen {
            continue;
        }
        let pip = match &found {
            Some(consumer) => consumers::pip_state(&docker, consumer).await?.to_string(),
            None => "no container".to_string(),
        };
        let served = match (&found, &report.server) {
            (Some(consumer), Some(server)) => {
                served_to(&docker, &project, &consumer.container, server).await
            }
            _ => None,
        };
        consumer_reports.push(ConsumerReport {
            served,
            enabled: choices.is_enabled(&service),
            disabled: choices.disabled.contains(&service),
            running: found.as_ref().is_some_and(|c| c.running),
            container: found.map(|c| c.container),
            service: shown(&service).to_string(),
            pip,
        });
    }
    let report = StatusReport {
        project: project.name().to_string(),
        cache: report,
        consumers: consumer_reports,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    Ok(())
}

/// The server's counters for a container, found by its address on the project network.
async fn served_to(
    docker: &Docker,
    project: &Project,
    container: &str,
    server: &serde_json::Value,
) -> Option<serde_json::Value> {
    let inspected = docker.inspect_container(container, None).await.ok()?;
    let address = inspected
        .network_settings?
        .networks?
        .get(&project.network())?
        .ip_address
        .clone()
        .filter(|a| !a.is_empty())?;
    server["clients"]
        .as_array()?
        .iter()
        .find(|client| client["address"] == address.as_str())
        .cloned()
}

async fn fetch_status(port: u16) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()?;
    client
        .get(format!(
            "http://127.0.0.1:{port}{}",
            crate::api::STATUS_PATH
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn describe(report: &StatusReport) -> String {
    let cache = &report.cache;
    let mut out = format!("project {}\n", report.project);
    let health = cache
        .health
        .as_deref()
        .map(|h| format!(", {h}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "cache     {} ({}{health})\n",
        cache.container, cache.state
    ));
    if let Some(url) = &cache.url {
        out.push_str(&format!("          {url}  index {url}root/pypi/+simple/\n"));
    }
    if let Some(image) = &cache.image {
        out.push_str(&format!(
            "          image {image}, volume {}\n",
            cache.volume
        ));
    }
    if let Some(server) = &cache.server {
        let number = |key: &str| server[key].as_u64().unwrap_or(0);
        let served = number("hits") + number("misses") + number("stale");
        let rate = if served == 0 {
            "no requests yet".to_string()
        } else {
            format!(
                "hit rate {:.0}%",
                100.0 * (number("hits") + number("stale")) as f64 / served as f64
            )
        };
        out.push_str(&format!(
            "          {} projects, {} files, {} bytes cached; {rate}; upstream {}\n",
            number("projects"),
            number("files"),
            number("bytes"),
            server["upstream"].as_str().unwrap_or("none"),
        ));
    }
    for consumer in &report.consumers {
        let running = if consumer.running {
            "running"
        } else {
            "not running"
        };
        let enabled = match (consumer.enabled, consumer.disabled) {
            (true, _) => "enabled",
            (false, true) => "disabled",
            (false, false) => "not enabled",
        };
        let served = consumer.served.as_ref().map_or(String::new(), |s| {
            let number = |key: &str| s[key].as_u64().unwrap_or(0);
            format!(
                "; served {} hits, {} misses ({} from the cache, {} fetched)",
                number("hits") + number("stale"),
                number("misses"),
                crate::api::human_bytes(number("bytes_from_cache")),
                crate::api::human_bytes(number("bytes_fetched")),
            )
        });
        out.push_str(&format!(
            "{:<9} {} ({running}, {enabled}): {}{served}\n",
            consumer.service,
            consumer.container.as_deref().unwrap_or("-"),
            consumer.pip
        ));
    }
    out
}

/// `devcache logs [-f] [--tail N] [SERVICE]`: stdout to stdout, stderr to stderr.
pub async fn logs(args: LogsArgs) -> Result<()> {
    let project = Project::new(&args.stack.project)?;
    let docker = engine::connect().await?;
    let container = match &args.service {
        None => project.cache_container(),
        Some(word) if word == names::CACHE_SERVICE => project.cache_container(),
        Some(word) => {
            let service = names::service(word)?;
            consumers::find(&docker, &project, &service)
                .await?
                .map(|c| c.container)
                .ok_or_else(|| anyhow!("no container for {word} in project {}", project.name()))?
        }
    };
    let mut stream = docker.logs(
        &container,
        Some(LogsOptions {
            follow: args.follow,
            stdout: true,
            stderr: true,
            tail: args.tail.clone().unwrap_or_else(|| "all".into()),
            ..Default::default()
        }),
    );
    let copy = async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(LogOutput::StdErr { message }) => std::io::stderr().write_all(&message)?,
                Ok(other) => {
                    let mut stdout = std::io::stdout();
                    stdout.write_all(&other.into_bytes())?;
                    stdout.flush()?;
                }
                Err(e) if is_not_found(&e) => bail!("no container {container}: run `devcache up`"),
                Err(e) => bail!("logs of {container}: {}", message(&e)),
            }
        }
        Ok(())
    };
    tokio::select! {
        result = copy => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// `devcache watch`: wires enabled consumers whenever they start.
pub async fn watch(args: crate::cli::StackArgs) -> Result<()> {
    let project = Project::new(&args.project)?;
    let docker = engine::connect().await?;
    cache::running(&docker, &project).await?;
    for service in Choices::load(&project, None)?.consumers() {
        report_wiring(&docker, &project, &service).await;
    }
    println!(
        "watching project {} for consumers starting (Ctrl-C to stop)",
        project.name()
    );
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["start".to_string()]),
    ]);
    let mut events = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }));
    let follow = async {
        while let Some(event) = events.next().await {
            let event =
                event.map_err(|e| anyhow!("the Docker event stream failed: {}", message(&e)))?;
            let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
            let Some(service) = service_of(&project, &attributes) else {
                continue;
            };
            if Choices::load(&project, None)?.is_enabled(&service) {
                report_wiring(&docker, &project, &service).await;
            }
        }
        Ok(())
    };
    tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn report_wiring(docker: &Docker, project: &Project, service: &str) {
    match wire_one(docker, project, service).await {
        Ok(said) => println!(
            "{}: {}",
            shown(service),
            said.as_deref().unwrap_or("already wired")
        ),
        Err(e) => eprintln!("devcache: {}: {e:#}", shown(service)),
    }
}

/// The devstack service a started container is, from its compose labels or its name.
fn service_of(project: &Project, attributes: &HashMap<String, String>) -> Option<String> {
    let labelled = (attributes
        .get("com.docker.compose.project")
        .map(String::as_str)
        == Some(project.name()))
    .then(|| attributes.get("com.docker.compose.service").cloned())
    .flatten();
    let named = || {
        attributes
            .get("name")?
            .strip_prefix(&format!("edx.{}.", project.name()))
            .map(str::to_string)
    };
    labelled
        .or_else(named)
        .filter(|s| names::PYTHON_SERVICES.contains(&s.as_str()))
}

/// `devcache image [--force]`
pub async fn image(force: bool) -> Result<()> {
    let docker = engine::connect().await?;
    match image::ensure(&docker, force).await? {
        Made::Present => println!("image {}: already holds this devcache", image::tag()),
        Made::Built => println!("image {}: built from this devcache", image::tag()),
    }
    Ok(())
}

/// `devcache health`: the container's health check (the image has no curl).
pub async fn health(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(4))
        .build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    Ok(())
}
