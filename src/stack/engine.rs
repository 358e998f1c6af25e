//! Connecting to the Docker Engine, and turning its errors into ones that say what to do.

use anyhow::{Result, anyhow};
use bollard::Docker;
use bollard::errors::Error as DockerError;

/// Connects (honouring `DOCKER_HOST`) and agrees on an API version with the Engine,
/// so older Engines work too.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

fn unreachable(error: DockerError) -> anyhow::Error {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let text = error.to_string();
    if text.contains("ermission denied") {
        anyhow!(
            "permission denied on the Docker socket ({host}): add your user to the docker group \
             (sudo usermod -aG docker $USER, then log in again) or run with sudo"
        )
    } else {
        anyhow!(
            "cannot reach the Docker Engine at {host}: is Docker running? start it (e.g. sudo systemctl start docker) \
             or point DOCKER_HOST at it ({text})"
        )
    }
}

/// True when the Engine answered 404 (no such container, image, volume...).
pub fn is_not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The Engine's own message, without bollard's wrapping.
pub fn message(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
