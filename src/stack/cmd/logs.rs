//! `devcache logs`: the cache container's log (devcache's, or the one Tutor runs from
//! the plugin) or a consumer's, stdout to stdout
//! and stderr to stderr, so that piping and redirecting work as for any program.

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;

use crate::stack::engine::{self, is_not_found, message};
use crate::stack::names::{self, Project};
use crate::stack::{cache, consumers};

/// Which log, and how much of it.
pub struct LogsRequest {
    pub project: String,
    /// Keep streaming new lines until Ctrl-C.
    pub follow: bool,
    /// Only the last N lines (Docker's `tail`: a number or `all`).
    pub tail: Option<String>,
    /// A service's log instead of the cache's.
    pub service: Option<String>,
}

/// `devcache logs [-f] [--tail N] [SERVICE]`: stdout to stdout, stderr to stderr.
pub async fn logs(request: LogsRequest) -> Result<()> {
    let project = Project::new(&request.project)?;
    let docker = engine::connect().await?;
    let container = match &request.service {
        None => cache_container(&docker, &project).await?,
        Some(word) if word == names::CACHE_SERVICE || word == cache::TUTOR_SERVICE => {
            cache_container(&docker, &project).await?
        }
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
            follow: request.follow,
            stdout: true,
            stderr: true,
            tail: request.tail.clone().unwrap_or_else(|| "all".into()),
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

/// The project's cache container (the one Tutor runs from the plugin, or devcache's),
/// by name even when there is none, so the Engine's answer says so.
async fn cache_container(docker: &bollard::Docker, project: &Project) -> Result<String> {
    Ok(cache::find(docker, project)
        .await?
        .map_or_else(|| project.cache_container(), |found| found.name))
}
