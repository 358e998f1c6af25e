//! The cache container, as devstack's devpi service was: `edx.<project>.devpi` on the
//! project's network with the aliases consumers know, port 3141 published, its data in
//! a named volume, restarted unless stopped, with a health check on `/+status`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HealthConfig, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use sha2::{Digest, Sha256};

use super::engine::{is_not_found, message};
use super::image;
use super::names::{CACHE_HOST, CACHE_PORT, CACHE_SERVICE, Project};
use crate::api::{STATUS_PATH, Status};

const SPEC_LABEL: &str = "devcache.spec";
const PROJECT_LABEL: &str = "devcache.project";
/// Host variables the cache needs to reach an upstream behind a proxy.
const PASSED_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
];

/// How the cache container should be.
pub struct Wanted {
    pub upstream: String,
    /// Host port; 0 lets the Engine pick one.
    pub port: u16,
    /// The disk budget (`serve --max-size`), in bytes.
    pub max_size: Option<u64>,
}

/// What `ensure` did to the container.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Started,
    Created,
    Recreated,
}

/// Makes the cache container match `wanted`, creating the network and volume if needed.
pub async fn ensure(docker: &Docker, project: &Project, wanted: &Wanted) -> Result<Change> {
    ensure_network(docker, project).await?;
    ensure_volume(docker, project).await?;
    // The binary's digest, not the image id: re-importing the same binary makes a new
    // id (import stamps the time), and that must not count as a change.
    let binary = docker
        .inspect_image(&image::tag())
        .await
        .map_err(|e| {
            anyhow!(
                "image {} is missing: run `devcache image` ({})",
                image::tag(),
                message(&e)
            )
        })?
        .config
        .and_then(|c| c.labels)
        .and_then(|labels| labels.get(image::DIGEST_LABEL).cloned())
        .unwrap_or_default();
    let body = container_body(project, wanted);
    let spec = spec_digest(&body, &binary);
    let name = project.cache_container();
    let mut change = Change::Created;
    match docker.inspect_container(&name, None).await {
        Ok(existing) => {
            let labels = existing
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            if labels.get(SPEC_LABEL) == Some(&spec) {
                if is_running(&existing) {
                    return Ok(Change::Unchanged);
                }
                start(docker, &name, wanted.port).await?;
                return Ok(Change::Started);
            }
            remove(docker, project).await?;
            change = Change::Recreated;
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => bail!("cannot inspect {name}: {}", message(&e)),
    }
    let mut body = body;
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(SPEC_LABEL.into(), spec);
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| anyhow!("cannot create {name}: {}", message(&e)))?;
    if let Err(e) = start(docker, &name, wanted.port).await {
        // Leave nothing half-made: a container that cannot start is removed (the volume stays).
        let _ = remove(docker, project).await;
        return Err(e);
    }
    Ok(change)
}

async fn start(docker: &Docker, name: &str, port: u16) -> Result<()> {
    docker.start_container(name, None).await.map_err(|e| {
        let text = message(&e);
        if text.contains("already allocated") || text.contains("address already in use") {
            anyhow!("port {port} is taken on this host: stop what uses it (an old devpi container?) or pick another with --port")
        } else {
            anyhow!("cannot start {name}: {text}")
        }
    })
}

/// Stops and removes the cache container, if there is one. The volume stays.
pub async fn remove(docker: &Docker, project: &Project) -> Result<bool> {
    let name = project.cache_container();
    match docker
        .stop_container(
            &name,
            Some(StopContainerOptions {
                t: Some(10),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(false),
        // 304: it was already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => bail!("cannot stop {name}: {}", message(&e)),
    }
    match docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => bail!("cannot remove {name}: {}", message(&e)),
    }
}

/// The running cache container and its host port, or how to start it.
pub async fn running(
    docker: &Docker,
    project: &Project,
) -> Result<(bollard::models::ContainerInspectResponse, u16)> {
    let name = project.cache_container();
    let container = match docker.inspect_container(&name, None).await {
        Ok(container) => container,
        Err(e) if is_not_found(&e) => bail!("the cache is not up: run `devcache up`"),
        Err(e) => bail!("cannot inspect {name}: {}", message(&e)),
    };
    if !is_running(&container) {
        bail!("the cache container {name} is not running: run `devcache up`");
    }
    let port = host_port(&container)
        .with_context(|| format!("{name} publishes no port; run `devcache up`"))?;
    Ok((container, port))
}

/// Runs `devcache <args> --data-dir /data` in the cache container (the image holds this
/// very binary): what it printed, or its error as it said it.
pub async fn run_devcache(docker: &Docker, container: &str, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["/usr/local/bin/devcache"];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["--data-dir", "/data"]);
    let ran = super::exec::run(docker, container, &cmd).await?;
    if ran.code != 0 {
        bail!("{}", ran.stderr.trim().trim_start_matches("devcache: "));
    }
    Ok(ran.stdout)
}

pub fn is_running(container: &ContainerInspectResponse) -> bool {
    container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// The host port the cache's 3141 is published on.
pub fn host_port(container: &ContainerInspectResponse) -> Option<u16> {
    container
        .network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{CACHE_PORT}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|binding| binding.host_port.as_ref()?.parse().ok())
}

/// The cache's `/+status` document, asked on its published port.
pub async fn status(port: u16, timeout: Duration) -> Result<Status> {
    let url = status_url(port);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()?;
    let response = client.get(&url).send().await?;
    if !response.status().is_success() {
        bail!("it answered {}", response.status());
    }
    response
        .json()
        .await
        .with_context(|| format!("{url} is not devcache's status document"))
}

fn status_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{STATUS_PATH}")
}

/// Waits until the cache answers `/+status` on its published port.
pub async fn wait_ready(port: u16) -> Result<Status> {
    let mut last_error = String::new();
    for _ in 0..60 {
        match status(port, Duration::from_secs(2)).await {
            Ok(status) => return Ok(status),
            Err(e) => last_error = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "the cache did not answer {} within 15 s ({last_error}); see `devcache logs`",
        status_url(port)
    )
}

fn container_body(project: &Project, wanted: &Wanted) -> ContainerCreateBody {
    let port_key = format!("{CACHE_PORT}/tcp");
    let host_port = if wanted.port == 0 {
        String::new()
    } else {
        wanted.port.to_string()
    };
    let env: Vec<String> = PASSED_ENV
        .iter()
        .filter_map(|key| {
            std::env::var(key)
                .ok()
                .map(|value| format!("{key}={value}"))
        })
        .collect();
    ContainerCreateBody {
        image: Some(image::tag()),
        hostname: Some("devpi.devstack.edx".into()),
        cmd: Some(
            [
                "serve",
                "--host",
                "0.0.0.0",
                "--port",
                &CACHE_PORT.to_string(),
                "--data-dir",
                "/data",
                "--upstream",
                &wanted.upstream,
            ]
            .map(String::from)
            .into_iter()
            .chain(
                wanted
                    .max_size
                    .iter()
                    .flat_map(|size| ["--max-size".into(), size.to_string()]),
            )
            .collect(),
        ),
        env: Some(env),
        exposed_ports: Some(vec![port_key.clone()]),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_string(), project.name().to_string()),
            ("devcache.service".to_string(), CACHE_SERVICE.to_string()),
        ])),
        healthcheck: Some(HealthConfig {
            test: Some(vec![
                "CMD".into(),
                "/usr/local/bin/devcache".into(),
                "health".into(),
            ]),
            interval: Some(Duration::from_secs(10).as_nanos() as i64),
            timeout: Some(Duration::from_secs(5).as_nanos() as i64),
            retries: Some(3),
            start_period: Some(Duration::from_secs(5).as_nanos() as i64),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/data", project.volume())]),
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(host_port),
                }]),
            )])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                project.network(),
                EndpointSettings {
                    aliases: Some(vec![CACHE_HOST.into(), CACHE_SERVICE.into()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// A digest of everything that decides the container (the binary included), so a
/// second `up` can tell whether anything would change. Going through a JSON value
/// sorts the maps' keys, which a HashMap leaves in a different order each run.
fn spec_digest(body: &ContainerCreateBody, binary: &str) -> String {
    let canonical = serde_json::json!({ "body": body, "binary": binary }).to_string();
    hex::encode(&Sha256::digest(canonical.as_bytes())[..12])
}

async fn ensure_network(docker: &Docker, project: &Project) -> Result<()> {
    let name = project.network();
    match docker.inspect_network(&name, None).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => bail!("cannot inspect network {name}: {}", message(&e)),
    }
    docker
        .create_network(NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (
                    "com.docker.compose.project".to_string(),
                    project.name().to_string(),
                ),
                (
                    "com.docker.compose.network".to_string(),
                    "default".to_string(),
                ),
            ])),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("cannot create network {name}: {}", message(&e)))?;
    Ok(())
}

async fn ensure_volume(docker: &Docker, project: &Project) -> Result<()> {
    let name = project.volume();
    match docker.inspect_volume(&name).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => bail!("cannot inspect volume {name}: {}", message(&e)),
    }
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                (
                    "com.docker.compose.project".to_string(),
                    project.name().to_string(),
                ),
                (
                    "com.docker.compose.volume".to_string(),
                    "devpi_data".to_string(),
                ),
            ])),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("cannot create volume {name}: {}", message(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_reaches_the_cache_container_and_changing_it_recreates_it() {
        let project = Project::new("budget").unwrap();
        let mut wanted = Wanted {
            upstream: "https://my-index.example/simple/".into(),
            port: 3141,
            max_size: None,
        };
        let unbounded = container_body(&project, &wanted);
        assert!(!unbounded.cmd.unwrap().contains(&"--max-size".to_string()));
        wanted.max_size = Some(20 << 30);
        let bounded = container_body(&project, &wanted);
        let cmd = bounded.cmd.clone().unwrap();
        assert_eq!(cmd[cmd.len() - 2..], ["--max-size", "21474836480"]);
        assert_ne!(
            spec_digest(&bounded, "binary"),
            spec_digest(
                &container_body(
                    &project,
                    &Wanted {
                        max_size: None,
                        ..wanted
                    }
                ),
                "binary"
            )
        );
    }
}
