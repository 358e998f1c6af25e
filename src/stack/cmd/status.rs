//! `devcache status`: what runs where. The cache container as the Engine sees it
//! (the manager's own, or the one Tutor runs from devcache's plugin),
//! the counters its `/+status` document carries, and each consumer with how its pip
//! is configured and what the cache served it.

use std::time::Duration;

use anyhow::Result;
use bollard::Docker;

use super::report::{CacheReport, ConsumerReport, StatusReport};
use crate::api::{ClientStats, Status};
use crate::stack::cache::{self, Owner};
use crate::stack::consumers::{self, Consumer};
use crate::stack::engine;
use crate::stack::names::{self, Project};
use crate::stack::state::Choices;

/// How long `status` waits for the cache's counters before reporting without them.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// `devcache status [--json]`
pub async fn status(project: &str, json: bool) -> Result<()> {
    let project = Project::new(project)?;
    let docker = engine::connect().await?;
    let mut report = CacheReport {
        container: project.cache_container(),
        run_by: None,
        state: "absent".into(),
        health: None,
        url: None,
        image: None,
        volume: project.volume(),
        server: None,
    };
    if let Some(found) = cache::find(&docker, &project).await? {
        let container = &found.container;
        let state = container.state.as_ref();
        report.state = state
            .and_then(|s| s.status)
            .map_or("unknown".to_string(), |s| s.to_string());
        report.health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|s| s.to_string());
        report.image = container.config.as_ref().and_then(|c| c.image.clone());
        if let Some(data) = cache::data_mount(container) {
            report.volume = data;
        }
        if let Some(port) = cache::host_port(container).filter(|_| cache::is_running(container)) {
            report.url = Some(format!("http://localhost:{port}/"));
            report.server = cache::status(port, STATUS_TIMEOUT).await.ok();
        }
        report.run_by = Some(match found.owner {
            Owner::Manager => "devcache up",
            Owner::TutorPlugin => "Tutor, from devcache's plugin",
        });
        report.container = found.name;
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
            locked_installs: choices
                .locked
                .get(&service)
                .map(|hosts| hosts.iter().cloned().collect())
                .unwrap_or_default(),
            enabled: choices.is_enabled(&service),
            disabled: choices.disabled.contains(&service),
            running: found.as_ref().is_some_and(|c| c.running),
            container: found.map(|c| c.container),
            service: service.to_string(),
            pip,
        });
    }
    let report = StatusReport {
        project: project.name().to_string(),
        cache: report,
        consumers: consumer_reports,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.describe());
    }
    Ok(())
}

/// The server's counters for a container, found by its address on the project network.
async fn served_to(
    docker: &Docker,
    project: &Project,
    container: &str,
    server: &Status,
) -> Option<ClientStats> {
    let inspected = docker.inspect_container(container, None).await.ok()?;
    let address = inspected
        .network_settings?
        .networks?
        .get(&project.network())?
        .ip_address
        .clone()
        .filter(|a| !a.is_empty())?;
    let mut mine: Vec<&ClientStats> = server
        .clients
        .iter()
        .filter(|client| client.address == address)
        .collect();
    mine.sort_by_key(|c| std::cmp::Reverse(c.hits + c.misses + c.stale));
    if mine.is_empty() {
        return None;
    }
    Some(ClientStats {
        address,
        user_agent: mine
            .iter()
            .map(|c| c.user_agent.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        hits: mine.iter().map(|c| c.hits).sum(),
        misses: mine.iter().map(|c| c.misses).sum(),
        stale: mine.iter().map(|c| c.stale).sum(),
        bytes_from_cache: mine.iter().map(|c| c.bytes_from_cache).sum(),
        bytes_fetched: mine.iter().map(|c| c.bytes_fetched).sum(),
    })
}
