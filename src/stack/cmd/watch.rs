//! `devcache watch`: follows the Engine's container start events and wires each
//! enabled consumer again when it starts, since a recreated container loses the
//! pip.conf and uv.toml written into it.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;

use super::wire_one;
use crate::stack::engine::{self, message};
use crate::stack::names::{self, Project};
use crate::stack::state::Choices;
use crate::stack::{cache, locked};

/// `devcache watch`: wires enabled consumers whenever they start.
pub async fn watch(project: &str) -> Result<()> {
    let project = Project::new(project)?;
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
    let locked = match Choices::load(project, None) {
        Ok(choices) => locked::prepare(docker, project, &choices.locked).await,
        Err(e) => Err(e),
    };
    // The service is wired even when locked installs cannot be set up; that is reported.
    let locked = locked.unwrap_or_else(|e| {
        eprintln!("devcache: locked installs: {e:#}");
        None
    });
    match wire_one(docker, project, service, locked.as_ref()).await {
        Ok(wired) => println!("{service}: {}", wired.said(project, service)),
        Err(e) => eprintln!("devcache: {service}: {e:#}"),
    }
}

/// The devstack service a started container is, from its compose labels or its name,
/// in its canonical name (a container labelled `cms` is `studio`).
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
    names::service(&labelled.or_else(named)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_labelled_cms_or_studio_is_studio() {
        let project = Project::new("devstack").unwrap();
        for label in ["cms", "studio"] {
            let attributes = HashMap::from([
                (
                    "com.docker.compose.project".to_string(),
                    "devstack".to_string(),
                ),
                ("com.docker.compose.service".to_string(), label.to_string()),
            ]);
            assert_eq!(service_of(&project, &attributes).as_deref(), Some("studio"));
        }
        let named = HashMap::from([("name".to_string(), "edx.devstack.cms".to_string())]);
        assert_eq!(service_of(&project, &named).as_deref(), Some("studio"));
        let other = HashMap::from([("name".to_string(), "edx.devstack.mysql80".to_string())]);
        assert_eq!(service_of(&project, &other), None);
    }
}
