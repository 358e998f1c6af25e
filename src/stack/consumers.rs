//! The containers that use the cache (lms, studio, ...): finding them, and writing
//! or taking back their pip.conf and uv.toml.
//!
//! A config file the user had is moved aside to `<file>.devcache-saved` (never
//! overwritten: an older saved copy is kept under a timestamped name) and given back
//! when the consumer is disabled; the file devcache writes in its place keeps the
//! user's settings (installer_config.rs). devcache's own files are known by their
//! first line.

use std::collections::HashMap;

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;

use super::engine::{is_not_found, message};
use super::exec::script;
use super::files;
use super::installer_config;
use super::locked::ForConsumer;
use super::names::{CACHE_HOST, Project, cache_index_url, spellings};

const MARKER: &str = "# Written by devcache";

/// A config file devcache writes into consumers.
struct ConfigFile {
    dir: &'static str,
    name: &'static str,
    /// The comment lines that open it.
    template: &'static str,
    /// The user's file (if any) pointed at the cache, after a header; `locked`: the
    /// consumer has locked installs (see locked.rs).
    merge: fn(header: &str, users: Option<&str>, locked: bool) -> String,
}

const PIP_CONF: ConfigFile = ConfigFile {
    dir: "/root/.pip",
    name: "pip.conf",
    template: include_str!("../../templates/pip.conf"),
    merge: |header, users, _| {
        installer_config::pip_conf(header, users, &cache_index_url(), CACHE_HOST)
    },
};

const UV_TOML: ConfigFile = ConfigFile {
    dir: "/root/.config/uv",
    name: "uv.toml",
    template: include_str!("../../templates/uv.toml"),
    merge: |header, users, locked| {
        installer_config::uv_toml(header, users, &cache_index_url(), locked)
    },
};

impl ConfigFile {
    fn path(&self) -> String {
        format!("{}/{}", self.dir, self.name)
    }

    fn saved_path(&self) -> String {
        format!("{}.devcache-saved", self.path())
    }

    fn render(&self, service: &str, users: Option<&[u8]>, locked: bool) -> String {
        let header = self.template.replace("{service}", service);
        let users = users.map(String::from_utf8_lossy);
        (self.merge)(&header, users.as_deref(), locked)
    }
}

/// A consumer's container, found by compose labels or by devstack's name.
pub struct Consumer {
    pub service: String,
    pub container: String,
    pub running: bool,
}

/// Finds a service's container: first by compose labels, then by `edx.<project>.<service>`,
/// under each name the service has had.
pub async fn find(docker: &Docker, project: &Project, service: &str) -> Result<Option<Consumer>> {
    for spelling in spellings(service) {
        if let Some(container) = find_labelled(docker, project, spelling).await? {
            return Ok(Some(Consumer {
                service: service.to_string(),
                ..container
            }));
        }
    }
    for spelling in spellings(service) {
        let name = project.container(spelling);
        match docker.inspect_container(&name, None).await {
            Ok(container) => {
                return Ok(Some(Consumer {
                    service: service.to_string(),
                    running: super::cache::is_running(&container),
                    container: name,
                }));
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => bail!("cannot inspect {name}: {}", message(&e)),
        }
    }
    Ok(None)
}

/// The container of a compose service of the project, found by the labels Compose
/// (v1 and v2) puts on it.
pub async fn find_labelled(
    docker: &Docker,
    project: &Project,
    service: &str,
) -> Result<Option<Consumer>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("com.docker.compose.project={}", project.name()),
            format!("com.docker.compose.service={service}"),
        ],
    )]);
    let labelled = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| anyhow::anyhow!("cannot list containers: {}", message(&e)))?;
    Ok(labelled.into_iter().next().map(|found| Consumer {
        service: service.to_string(),
        container: found
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .or(found.id)
            .unwrap_or_default(),
        running: matches!(
            found.state,
            Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        ),
    }))
}

/// Finds a consumer that must be running, or says how to start it.
pub async fn find_running(docker: &Docker, project: &Project, service: &str) -> Result<Consumer> {
    match find(docker, project, service).await? {
        Some(consumer) => running(consumer, service),
        None => bail!(
            "no container for {service} in project {}: start it (make dev.up.{service}) or set COMPOSE_PROJECT_NAME",
            project.name(),
        ),
    }
}

/// `consumer`, the container of `service` that `find` found, when it is running.
pub fn running(consumer: Consumer, service: &str) -> Result<Consumer> {
    if !consumer.running {
        bail!(
            "{service} ({}) is not running: start it (make dev.up.{service}) and run this again",
            consumer.container,
        );
    }
    Ok(consumer)
}

/// Moves a user's file aside (keeping any copy saved before), in one shell step.
const SAVE_USERS_FILE: &str = r#"f="$1"; saved="$1.devcache-saved"
if [ -e "$f" ] && ! head -n 1 "$f" | grep -q '^# Written by devcache'; then
  if [ -e "$saved" ]; then mv "$saved" "$saved.$(date +%s)"; fi
  mv "$f" "$saved" && echo saved
fi"#;

/// Removes devcache's file and gives back the user's, never overwriting one of theirs.
const RESTORE_USERS_FILE: &str = r#"f="$1"; saved="$1.devcache-saved"
if [ -e "$f" ] && head -n 1 "$f" | grep -q '^# Written by devcache'; then rm -f "$f" && echo removed; fi
if [ -e "$saved" ] && [ ! -e "$f" ]; then mv "$saved" "$f" && echo restored; fi"#;

/// What wiring a consumer did.
#[derive(Debug, Default)]
pub struct Wiring {
    pub changed: bool,
    pub saved_users_file: bool,
}

/// Writes pip.conf and uv.toml into a running consumer, and with `locked` sends its
/// lock's file hosts to the cache (locked.rs).
pub async fn wire(
    docker: &Docker,
    consumer: &Consumer,
    locked: Option<&ForConsumer>,
) -> Result<Wiring> {
    let mut wiring = Wiring::default();
    for file in [PIP_CONF, UV_TOML] {
        let current = files::read(docker, &consumer.container, &file.path()).await?;
        // The user's settings: the file in place, or the one kept aside when devcache's is.
        let users = match &current {
            Some(bytes) if bytes.starts_with(MARKER.as_bytes()) => {
                files::read(docker, &consumer.container, &file.saved_path()).await?
            }
            other => other.clone(),
        };
        let wanted = file.render(&consumer.service, users.as_deref(), locked.is_some());
        if current.as_deref() == Some(wanted.as_bytes()) {
            continue;
        }
        let said = script(
            docker,
            &consumer.container,
            SAVE_USERS_FILE,
            &[&file.path()],
        )
        .await?;
        wiring.saved_users_file |= said.contains("saved");
        files::write_atomically(
            docker,
            &consumer.container,
            file.dir,
            file.name,
            wanted.as_bytes(),
        )
        .await?;
        wiring.changed = true;
    }
    if let Some(locked) = locked {
        wiring.changed |= super::locked::install(docker, consumer, locked).await?;
    }
    Ok(wiring)
}

/// What unwiring a consumer did.
#[derive(Debug, Default)]
pub struct Unwiring {
    pub removed: bool,
    pub restored_users_file: bool,
}

/// Takes devcache's files (and locked installs') out of a running consumer and gives
/// back the user's.
pub async fn unwire(docker: &Docker, consumer: &Consumer) -> Result<Unwiring> {
    let mut unwiring = Unwiring {
        removed: super::locked::remove(docker, consumer).await?,
        ..Default::default()
    };
    for file in [PIP_CONF, UV_TOML] {
        let said = script(
            docker,
            &consumer.container,
            RESTORE_USERS_FILE,
            &[&file.path()],
        )
        .await?;
        unwiring.removed |= said.contains("removed");
        unwiring.restored_users_file |= said.contains("restored");
    }
    Ok(unwiring)
}

/// How a consumer's pip is configured, for `status`.
pub async fn pip_state(docker: &Docker, consumer: &Consumer) -> Result<&'static str> {
    if !consumer.running {
        return Ok("stopped");
    }
    Ok(
        match files::read(docker, &consumer.container, &PIP_CONF.path()).await? {
            Some(bytes) if bytes.starts_with(MARKER.as_bytes()) => "wired",
            Some(_) => "user pip.conf",
            None if wired_by_image(docker, consumer).await? => "wired by its image (Tutor plugin)",
            None => "not wired",
        },
    )
}

/// Whether the container's environment points pip at a devpi-layout index, as the
/// image devcache's Tutor plugin builds sets for every container made from it.
async fn wired_by_image(docker: &Docker, consumer: &Consumer) -> Result<bool> {
    let inspected = docker
        .inspect_container(&consumer.container, None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot inspect {}: {}", consumer.container, message(&e)))?;
    Ok(inspected
        .config
        .and_then(|c| c.env)
        .unwrap_or_default()
        .iter()
        .any(|v| v.starts_with("PIP_INDEX_URL=") && v.ends_with(crate::api::INDEX_PATH)))
}
