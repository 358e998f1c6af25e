//! The cache container, as devstack's devpi service was: `edx.<project>.devpi` on the
//! project's network with the aliases consumers know, port 3141 published, its data in
//! a named volume, restarted unless stopped, with a health check on `/+status`.
//!
//! A Tutor project may have its cache from devcache's Tutor plugin instead: the compose
//! service `devcache`, which Tutor starts and stops. [`find`] and [`serving`] see either,
//! so the commands that read or fill a cache (status, warm, export, import, gc, verify)
//! work on the one the project has; only `up` and `down` make and remove the manager's own.

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

use super::engine::{is_not_found, message};
use super::image;
use super::names::{CACHE_HOST, CACHE_PORT, CACHE_SERVICE, Project};
use crate::api::{STATUS_PATH, Status, human_bytes};
use crate::upstream::shown;

const PROJECT_LABEL: &str = "devcache.project";
/// The compose service devcache's Tutor plugin runs the cache as.
pub const TUTOR_SERVICE: &str = "devcache";
/// The port the cache answers locked installs' file hosts on, as https URLs name them.
const TLS_PORT: u16 = 443;
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
    /// Host port; 0 lets the Engine pick one (and accepts whichever one is published).
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
    /// Recreated, for these differences (each named for people).
    Recreated(Vec<String>),
}

/// Makes the cache container match `wanted`, creating the network and volume if needed.
/// A container that already serves the same binary, upstream, port and volume is
/// kept, whoever made it (`devcache up`, or compose with the shipped fragment).
pub async fn ensure(docker: &Docker, project: &Project, wanted: &Wanted) -> Result<Change> {
    ensure_network(docker, project).await?;
    ensure_volume(docker, project).await?;
    let binary = binary_digest(docker, &image::tag())
        .await?
        .ok_or_else(|| anyhow!("image {} is missing: run `devcache image`", image::tag()))?;
    let name = project.cache_container();
    let mut change = Change::Created;
    if let Some(existing) = inspect(docker, &name).await? {
        let differences = differences(docker, project, &existing, wanted, &binary).await?;
        if differences.is_empty() {
            if is_running(&existing) {
                return Ok(Change::Unchanged);
            }
            start(docker, &name, wanted.port).await?;
            return Ok(Change::Started);
        }
        remove(docker, project).await?;
        change = Change::Recreated(differences);
    }
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            container_body(project, wanted),
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

/// The sha256 of the devcache binary an image holds (its label), `None` when the
/// image is missing. The binary, not the image id: re-importing the same binary makes
/// a new id (import stamps the time), and that must not count as a change.
async fn binary_digest(docker: &Docker, image: &str) -> Result<Option<String>> {
    match docker.inspect_image(image).await {
        Ok(found) => Ok(Some(
            found
                .config
                .and_then(|c| c.labels)
                .and_then(|labels| labels.get(image::DIGEST_LABEL).cloned())
                .unwrap_or_default(),
        )),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => bail!("cannot inspect image {image}: {}", message(&e)),
    }
}

/// The upstream a cache container was started with (`--upstream URL`,
/// `--upstream=URL` or `DEVCACHE_UPSTREAM`), running or not.
pub async fn configured_upstream(docker: &Docker, project: &Project) -> Result<Option<String>> {
    let container = inspect(docker, &project.cache_container()).await?;
    Ok(container.as_ref().and_then(upstream_of))
}

fn upstream_of(container: &ContainerInspectResponse) -> Option<String> {
    setting_of(container, "--upstream", "DEVCACHE_UPSTREAM")
}

/// A setting the container's devcache serves with: its `flag` in the command, else its
/// variable `var`.
fn setting_of(container: &ContainerInspectResponse, flag: &str, var: &str) -> Option<String> {
    let config = container.config.as_ref()?;
    let args = config.cmd.clone().unwrap_or_default();
    let from_args = args.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix(&format!("{flag}="))
            .map(str::to_string)
            .or_else(|| (arg == flag).then(|| args.get(i + 1).cloned()).flatten())
    });
    from_args.or_else(|| {
        config
            .env
            .as_ref()?
            .iter()
            .find_map(|e| e.strip_prefix(&format!("{var}=")).map(str::to_string))
    })
}

/// Whether the container's devcache answers locked installs (TLS on 443).
pub fn answers_tls(container: &ContainerInspectResponse) -> bool {
    setting_of(container, "--tls-port", "DEVCACHE_TLS_PORT") == Some(TLS_PORT.to_string())
}

/// The disk budget the container's devcache serves with.
fn max_size_of(container: &ContainerInspectResponse) -> Option<u64> {
    setting_of(container, "--max-size", "DEVCACHE_MAX_SIZE")
        .and_then(|raw| crate::config::parse_size(&raw).ok())
}

/// Each way an existing cache container differs from the wanted one, in words.
async fn differences(
    docker: &Docker,
    project: &Project,
    existing: &ContainerInspectResponse,
    wanted: &Wanted,
    binary: &str,
) -> Result<Vec<String>> {
    let mut differences = Vec::new();
    let held = match &existing.image {
        Some(id) => binary_digest(docker, id).await?.unwrap_or_default(),
        None => String::new(),
    };
    if held != binary {
        differences.push(format!(
            "it runs another devcache binary ({}), image {} holds {}",
            short(&held),
            image::tag(),
            short(binary)
        ));
    }
    let upstream = upstream_of(existing);
    let same_upstream = upstream
        .as_deref()
        .is_some_and(|u| u.trim_end_matches('/') == wanted.upstream.trim_end_matches('/'));
    if !same_upstream {
        differences.push(format!(
            "its upstream is {}, not {}",
            upstream.as_deref().map_or("unset".to_string(), shown),
            shown(&wanted.upstream)
        ));
    }
    if !answers_tls(existing) {
        differences.push(format!(
            "it does not answer locked installs (TLS on {TLS_PORT})"
        ));
    }
    let max_size = max_size_of(existing);
    if max_size != wanted.max_size {
        let shown = |size: Option<u64>| size.map_or("none".to_string(), human_bytes);
        differences.push(format!(
            "its disk budget is {}, not {}",
            shown(max_size),
            shown(wanted.max_size)
        ));
    }
    let bindings = existing
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .and_then(|b| b.get(&format!("{CACHE_PORT}/tcp"))?.clone())
        .unwrap_or_default();
    let published = bindings
        .iter()
        .find_map(|binding| binding.host_port.as_ref()?.parse::<u16>().ok())
        .filter(|port| *port != 0);
    if bindings.is_empty() {
        differences.push(format!("it does not publish port {CACHE_PORT}"));
    } else if wanted.port != 0 && published != Some(wanted.port) {
        differences.push(format!(
            "it publishes port {CACHE_PORT} on {}, not {}",
            published.map_or("a port the Engine picked".to_string(), |p| p.to_string()),
            wanted.port
        ));
    }
    let has_volume = existing.mounts.iter().flatten().any(|m| {
        m.name.as_deref() == Some(&project.volume()) && m.destination.as_deref() == Some("/data")
    });
    if !has_volume {
        differences.push(format!("its /data is not the volume {}", project.volume()));
    }
    let aliases = existing
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref()?.get(&project.network()))
        .and_then(|e| e.aliases.clone());
    if !aliases.is_some_and(|a| a.iter().any(|a| a == CACHE_HOST)) {
        differences.push(format!(
            "it is not {CACHE_HOST} on the network {}",
            project.network()
        ));
    }
    let env = existing
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    for wanted_env in passed_env() {
        if !env.contains(&wanted_env) {
            let key = wanted_env.split('=').next().unwrap_or_default();
            differences.push(format!("its {key} is not this shell's"));
        }
    }
    Ok(differences)
}

/// A digest short enough to read.
fn short(digest: &str) -> String {
    if digest.is_empty() {
        "no binary label".to_string()
    } else {
        format!("sha256 {}", &digest[..12.min(digest.len())])
    }
}

/// This shell's proxy settings, passed into the container.
fn passed_env() -> Vec<String> {
    PASSED_ENV
        .iter()
        .filter_map(|key| {
            std::env::var(key)
                .ok()
                .map(|value| format!("{key}={value}"))
        })
        .collect()
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

/// Who runs a project's cache container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `devcache up` (or the compose fragment): `edx.<project>.devpi`.
    Manager,
    /// Tutor, from devcache's plugin: the compose service `devcache`.
    TutorPlugin,
}

impl Owner {
    /// How to start a stopped cache of this owner.
    pub fn start_hint(self, project: &Project) -> String {
        match self {
            Owner::Manager => "run `devcache up`".to_string(),
            Owner::TutorPlugin => {
                let mode = if project.is_tutor_local() {
                    "local"
                } else {
                    "dev"
                };
                format!("start it with `tutor {mode} start {TUTOR_SERVICE}`")
            }
        }
    }
}

/// A project's cache container, whoever runs it.
pub struct Found {
    pub name: String,
    pub owner: Owner,
    pub container: ContainerInspectResponse,
}

/// The project's cache container: the Tutor plugin's service `devcache` (found by its
/// compose labels, as Compose v1 and v2 both set them) or the manager's
/// `edx.<project>.devpi`; a running one before a stopped one, the plugin's first.
pub async fn find(docker: &Docker, project: &Project) -> Result<Option<Found>> {
    let mut found = Vec::new();
    if let Some(service) = super::consumers::find_labelled(docker, project, TUTOR_SERVICE).await?
        && let Some(container) = inspect(docker, &service.container).await?
    {
        found.push(Found {
            name: service.container,
            owner: Owner::TutorPlugin,
            container,
        });
    }
    let name = project.cache_container();
    if let Some(container) = inspect(docker, &name).await? {
        found.push(Found {
            name,
            owner: Owner::Manager,
            container,
        });
    }
    found.sort_by_key(|f| !is_running(&f.container));
    Ok(found.into_iter().next())
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<ContainerInspectResponse>> {
    match docker.inspect_container(name, None).await {
        Ok(container) => Ok(Some(container)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => bail!("cannot inspect {name}: {}", message(&e)),
    }
}

/// A running cache of the project, whoever runs it.
pub struct Serving {
    pub name: String,
    /// The host port its 3141 is published on.
    pub port: u16,
}

/// The project's running cache (the Tutor plugin's or the manager's), or how to start it.
pub async fn serving(docker: &Docker, project: &Project) -> Result<Serving> {
    let Some(found) = find(docker, project).await? else {
        bail!("the cache is not up: run `devcache up`");
    };
    let name = found.name;
    if !is_running(&found.container) {
        bail!(
            "the cache container {name} is not running: {}",
            found.owner.start_hint(project)
        );
    }
    let port = host_port(&found.container).with_context(|| {
        format!(
            "{name} publishes no port 3141: {}",
            found.owner.start_hint(project)
        )
    })?;
    Ok(Serving { name, port })
}

/// The running cache container the manager made and its host port, or how to start it.
pub async fn running(
    docker: &Docker,
    project: &Project,
) -> Result<(bollard::models::ContainerInspectResponse, u16)> {
    let name = project.cache_container();
    let Some(container) = inspect(docker, &name).await? else {
        bail!("the cache is not up: run `devcache up`");
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

/// Where a cache container keeps its data: the volume's name, or the host folder
/// mounted at `/data` (Tutor's `data/devcache`).
pub fn data_mount(container: &ContainerInspectResponse) -> Option<String> {
    let mount = container
        .mounts
        .iter()
        .flatten()
        .find(|m| m.destination.as_deref() == Some("/data"))?;
    [&mount.name, &mount.source]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
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
    // Whatever listens on the port may not be devcache: its answer is capped.
    let body = crate::upstream::read_capped(response, STATUS_CAP, "the status document's cap")
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", e.to_string().replace("the upstream", "it")))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("{url} is not devcache's status document"))
}

/// The most of `/+status` read: a few KiB, a line per client address and installer.
const STATUS_CAP: u64 = 16 << 20;

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
    let env = passed_env();
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
                "--tls-port",
                &TLS_PORT.to_string(),
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
    use bollard::models::ContainerConfig;

    use super::*;

    #[test]
    fn the_budget_reaches_the_cache_container_and_is_read_back_from_it() {
        let project = Project::new("budget").unwrap();
        let as_running = |wanted: &Wanted| ContainerInspectResponse {
            config: Some(ContainerConfig {
                cmd: container_body(&project, wanted).cmd,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut wanted = Wanted {
            upstream: "https://my-index.example/simple/".into(),
            port: 3141,
            max_size: None,
        };
        assert_eq!(max_size_of(&as_running(&wanted)), None);
        wanted.max_size = Some(20 << 30);
        let running = as_running(&wanted);
        assert_eq!(max_size_of(&running), Some(20 << 30));
        assert_eq!(
            upstream_of(&running).as_deref(),
            Some("https://my-index.example/simple/")
        );
    }
}
