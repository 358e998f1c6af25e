//! Files and commands inside containers: reading a file, writing one atomically,
//! and running a short command, all through the Engine API.

use std::io::Read;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;

use super::engine::{is_not_found, message};

/// What a command printed, and how it ended.
pub struct Ran {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in a running container and waits for it.
pub async fn run(docker: &Docker, container: &str, cmd: &[&str]) -> Result<Ran> {
    let exec = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot run {} in {container}: {}", cmd[0], message(&e)))?;
    let mut ran = Ran {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
    };
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        while let Some(chunk) = output.next().await {
            match chunk? {
                LogOutput::StdErr { message } => {
                    ran.stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => ran
                    .stdout
                    .push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
    }
    ran.code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(-1);
    Ok(ran)
}

/// Runs a shell script (`sh -c`) with arguments; fails with its stderr when it fails.
pub async fn script(
    docker: &Docker,
    container: &str,
    script: &str,
    args: &[&str],
) -> Result<String> {
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend_from_slice(args);
    let ran = run(docker, container, &cmd).await?;
    if ran.code != 0 {
        bail!("in {container}: {}", ran.stderr.trim());
    }
    Ok(ran.stdout)
}

/// A file's bytes, or `None` when it does not exist.
pub async fn read_file(docker: &Docker, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_string(),
        }),
    );
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => archive.extend_from_slice(&bytes),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path} in {container}")),
        }
    }
    let mut tar = tar::Archive::new(archive.as_slice());
    let mut entry = tar
        .entries()?
        .next()
        .with_context(|| format!("{path} in {container}: empty archive"))??;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Writes a file so that readers see the old one or the whole new one: the bytes go
/// to a temp name beside it, then a rename puts them in place.
pub async fn write_file_atomically(
    docker: &Docker,
    container: &str,
    dir: &str,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    script(docker, container, "mkdir -p \"$1\"", &[dir]).await?;
    let temp = format!(".{name}.devcache-tmp");
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_data(&mut header, &temp, bytes)?;
    let archive = archive.into_inner()?;
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dir.to_string(),
                ..Default::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot write {dir}/{name} in {container}: {}", message(&e))
        })?;
    script(
        docker,
        container,
        "mv -f \"$1/$2\" \"$1/$3\"",
        &[dir, &temp, name],
    )
    .await?;
    Ok(())
}
