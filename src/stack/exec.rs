//! Commands inside containers: running a short one and reading what it printed, or a
//! shell script that fails with its stderr, all through the Engine API.

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures::StreamExt;

use super::engine::message;

/// What a command printed, and how it ended.
pub struct Ran {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The most of each of a command's outputs kept: the commands devcache runs print a
/// few lines (an interpreter's version) to a line per cached file (`gc`, `verify`), and
/// a container's programs are not devcache's to trust.
const OUTPUT_CAP: u64 = 64 << 20;

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
            let (stream, bytes) = match chunk? {
                LogOutput::StdErr { message } => (&mut ran.stderr, message),
                other => (&mut ran.stdout, other.into_bytes()),
            };
            if (stream.len() + bytes.len()) as u64 > OUTPUT_CAP {
                bail!(
                    "{} in {container} printed more than {} MiB, more than devcache reads of a command's output",
                    cmd[0],
                    OUTPUT_CAP >> 20
                );
            }
            stream.push_str(&String::from_utf8_lossy(&bytes));
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
