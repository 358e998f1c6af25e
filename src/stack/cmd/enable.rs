//! `devcache enable` and `devcache disable`: the choice is remembered for the
//! project first, then carried out on the running containers, so a service that is
//! down now is wired (or left alone) when it comes back.

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::{fail_with, services, wire_one};
use crate::stack::engine;
use crate::stack::names::Project;
use crate::stack::state::Choices;
use crate::stack::{cache, consumers, locked};
use crate::{tls, warm};

/// `devcache enable SERVICE...`; with `locked` (`--locked-installs`), their locked installs
/// too, from the file hosts given, else those of each service's lock.
pub async fn enable(project: &str, words: &[String], locked: Option<&[String]>) -> Result<()> {
    let project = Project::new(project)?;
    let services = remember(&project, words, Choices::enable)?;
    let docker = engine::connect().await?;
    if cache::running(&docker, &project).await.is_err() {
        if locked.is_some() {
            bail!(
                "{} enabled, but locked installs need the cache's CA: run `devcache up`, then this again",
                services.join(", ")
            );
        }
        for service in &services {
            println!("{service}: enabled; `devcache up` wires it");
        }
        return Ok(());
    }
    if let Some(given) = locked {
        remember_file_hosts(&docker, &project, &services, given).await?;
    }
    let choices = Choices::load(&project, None)?;
    let prepared = locked::prepare(&docker, &project, &choices.locked).await?;
    let mut failures = Vec::new();
    for service in &services {
        match wire_one(&docker, &project, service, prepared.as_ref()).await {
            Ok(wired) => {
                let hosts = choices.locked.get(service).map_or(String::new(), |hosts| {
                    format!(
                        "; locked installs from {} are served by the cache",
                        hosts.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                });
                println!(
                    "{service}: enabled, {}{hosts}",
                    wired.said(&project, service)
                );
            }
            Err(e) => failures.push(format!("{service}: enabled, but {e:#}")),
        }
    }
    // A new set of file hosts makes a new CA: the other services with locked installs
    // are given it too.
    if locked.is_some() {
        for service in choices.locked.keys().filter(|s| !services.contains(s)) {
            match wire_one(&docker, &project, service, prepared.as_ref()).await {
                Ok(wired) if wired.changed() => {
                    println!(
                        "{service}: {} (the cache's CA for locked installs changed)",
                        wired.said(&project, service)
                    );
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{service}: {e:#}")),
            }
        }
    }
    fail_with(failures)
}

/// Remembers each service's file hosts: those `given`, else its lock's.
async fn remember_file_hosts(
    docker: &Docker,
    project: &Project,
    services: &[String],
    given: &[String],
) -> Result<()> {
    let mut choices = Choices::load(project, None)?;
    for service in services {
        let hosts = if given.is_empty() {
            let consumer = consumers::find_running(docker, project, service).await?;
            let found = warm::lock_file_hosts(docker, project, service, &consumer.container)
                .await
                .with_context(|| format!("{service}: enabled, but not its locked installs"))?;
            tls::host_names(&found)?
        } else {
            tls::host_names(given)?
        };
        choices
            .locked
            .insert(service.clone(), hosts.into_iter().collect());
    }
    choices.save(project)
}

/// `devcache disable SERVICE...`
pub async fn disable(project: &str, words: &[String]) -> Result<()> {
    let project = Project::new(project)?;
    let services = remember(&project, words, Choices::disable)?;
    let docker = engine::connect().await?;
    let mut failures = Vec::new();
    for service in &services {
        let consumer = match consumers::find(&docker, &project, service).await? {
            None => {
                println!(
                    "{service}: disabled; it has no container in project {}, so there was nothing to unwire",
                    project.name()
                );
                continue;
            }
            Some(found) => match consumers::running(found, service) {
                Ok(consumer) => consumer,
                Err(e) => {
                    failures.push(format!(
                        "{service}: disabled, but its files are unchanged: {e:#}"
                    ));
                    continue;
                }
            },
        };
        let unwiring = consumers::unwire(&docker, &consumer).await?;
        let what = match (unwiring.removed, unwiring.restored_users_file) {
            (_, true) => {
                "devcache's pip.conf and uv.toml (and locked installs, if any) removed, your own are back"
            }
            (true, false) => {
                "devcache's pip.conf and uv.toml (and locked installs, if any) removed"
            }
            (false, false) => "it was not wired",
        };
        println!("{service}: disabled; {what}");
    }
    fail_with(failures)
}

/// The services named, each given `choice` in the project's remembered choices
/// before any container is touched.
fn remember(
    project: &Project,
    words: &[String],
    choice: fn(&mut Choices, &str),
) -> Result<Vec<String>> {
    let services = services(words)?;
    let mut choices = Choices::load(project, None)?;
    for service in &services {
        choice(&mut choices, service);
    }
    choices.save(project)?;
    Ok(services)
}
