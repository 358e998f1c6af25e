//! `devcache enable` and `devcache disable`: the choice is remembered for the
//! project first, then carried out on the running containers, so a service that is
//! down now is wired (or left alone) when it comes back.

use anyhow::Result;

use super::{fail_with, services, wire_one};
use crate::stack::engine;
use crate::stack::names::Project;
use crate::stack::state::Choices;
use crate::stack::{cache, consumers};

/// `devcache enable SERVICE...`
pub async fn enable(project: &str, words: &[String]) -> Result<()> {
    let project = Project::new(project)?;
    let services = remember(&project, words, Choices::enable)?;
    let docker = engine::connect().await?;
    if cache::running(&docker, &project).await.is_err() {
        for service in &services {
            println!("{service}: enabled; `devcache up` wires it");
        }
        return Ok(());
    }
    let mut failures = Vec::new();
    for service in &services {
        match wire_one(&docker, &project, service).await {
            Ok(wired) => println!("{service}: enabled, {}", wired.said(&project, service)),
            Err(e) => failures.push(format!("{service}: enabled, but {e:#}")),
        }
    }
    fail_with(failures)
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
            Some(_) => match consumers::find_running(&docker, &project, service).await {
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
            (_, true) => "devcache's pip.conf and uv.toml removed, your own are back",
            (true, false) => "devcache's pip.conf and uv.toml removed",
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
