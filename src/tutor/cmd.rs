//! `devcache tutor enable|disable|status`: the plugin file written into (or removed
//! from) Tutor's plugins root, and Tutor told to enable (or disable) it, which
//! renders its environment again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::plugin::{self, MARKER, NAME, Settings};
use crate::config::{ServeConfig, ServeSettings, process_env};
use crate::local_file;
use crate::stack::cmd::up::reachable_upstream;
use crate::stack::engine::{self, message};
use crate::stack::image::{self, Made};

/// What `tutor enable` is asked to do.
pub struct TutorOptions {
    /// The upstream and configuration file, as `serve` reads them.
    pub serve: ServeSettings,
    /// The published port of the cache.
    pub port: u16,
    /// The host builds reach the cache on; found from the Engine when not given.
    pub host: Option<String>,
}

/// `devcache tutor enable`: the image, the plugin file, and `tutor plugins enable`.
pub async fn enable(options: TutorOptions) -> Result<()> {
    let upstream = reachable_upstream(ServeConfig::load(&options.serve, &process_env)?)?;
    let docker = engine::connect().await?;
    if let Made::Built(why) = image::ensure(&docker, false).await? {
        println!("image {}: built from this devcache: {why}", image::tag());
    }
    let host = match options.host {
        Some(host) => host,
        None => docker_host(&docker).await?,
    };
    let settings = Settings {
        host,
        port: options.port,
        upstream,
        image: image::tag(),
    };
    let path = plugin_path()?;
    let text = settings.render()?;
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        println!("plugin {}: already up to date", path.display());
    } else {
        refuse_foreign(&path)?;
        write_plugin(&path, &text)?;
        println!(
            "plugin {}: written (index http://{}:{}/, upstream {})",
            path.display(),
            settings.host,
            settings.port,
            settings.upstream
        );
    }
    tutor(&["plugins", "enable", NAME])?;
    println!(
        "tutor: plugin {NAME} enabled; rebuild the image (tutor images build openedx) and start \
         (tutor dev start, or tutor local start) to install through the cache"
    );
    Ok(())
}

/// `devcache tutor disable`: `tutor plugins disable`, then the plugin file removed.
pub fn disable() -> Result<()> {
    let path = plugin_path()?;
    if !path.exists() {
        println!("plugin {}: not there, nothing to do", path.display());
        return Ok(());
    }
    refuse_foreign(&path)?;
    tutor(&["plugins", "disable", NAME])?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!(
        "plugin {}: disabled and removed; rebuild the image (tutor images build openedx) to \
         take the cache's settings out of it",
        path.display()
    );
    Ok(())
}

/// `devcache tutor status`: whether the plugin file is there, and what it says.
pub fn status() -> Result<()> {
    let path = plugin_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not YAML: remove it", path.display()))?;
            let defaults = &parsed["config"]["defaults"];
            let shown = |key: &str| match &defaults[key] {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                _ => "?".into(),
            };
            println!("plugin: {}", path.display());
            println!(
                "index: http://{}:{}/ (upstream {}, image {})",
                shown("HOST"),
                shown("PORT"),
                shown("UPSTREAM"),
                shown("IMAGE")
            );
            println!("`tutor plugins list` says whether Tutor has it enabled");
        }
        Err(_) => println!(
            "plugin: not written ({}); `devcache tutor enable` writes it",
            path.display()
        ),
    }
    Ok(())
}

fn plugin_path() -> Result<PathBuf> {
    Ok(plugin::plugins_root(&process_env)?.join(format!("{NAME}.yml")))
}

/// A `devcache.yml` devcache did not write is the user's: never replaced or removed.
fn refuse_foreign(path: &Path) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.starts_with(MARKER) => bail!(
            "{} is not devcache's plugin: move it away and run this again",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// The plugin file written whole or not at all, its mode as `std::fs::write` gives.
fn write_plugin(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("the plugins root has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    local_file::write_atomically(path, text.as_bytes(), 0o666)
}

/// Runs `tutor ARGS` (its output shown as it comes), or says how to install it.
fn tutor(args: &[&str]) -> Result<()> {
    let status = Command::new("tutor").args(args).status().map_err(|e| {
        anyhow::anyhow!(
            "cannot run tutor ({e}): install it (pip install tutor) or put it on PATH, then run \
             `tutor {}` yourself",
            args.join(" ")
        )
    })?;
    if !status.success() {
        bail!("`tutor {}` failed (see above)", args.join(" "));
    }
    Ok(())
}

/// The host image builds and containers reach a published port on: Docker Desktop
/// defines `host.docker.internal`; on Linux it is the default bridge's gateway.
async fn docker_host(docker: &Docker) -> Result<String> {
    let info = docker
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("cannot ask the Docker Engine: {}", message(&e)))?;
    if info
        .operating_system
        .as_deref()
        .is_some_and(|os| os.contains("Docker Desktop"))
    {
        return Ok("host.docker.internal".into());
    }
    let bridge = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot inspect the bridge network: {}", message(&e)))?;
    bridge
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|config| config.gateway.or_else(|| first_address(config.subnet?)))
        .context("the bridge network has no gateway: pass --build-host ADDRESS")
}

/// The first address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`), Docker's
/// gateway when the Engine does not list one.
fn first_address(subnet: String) -> Option<String> {
    let network: std::net::Ipv4Addr = subnet.split('/').next()?.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(network) + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_subnets_first_address() {
        assert_eq!(
            first_address("172.17.0.0/16".into()).as_deref(),
            Some("172.17.0.1")
        );
        assert_eq!(first_address("fd00::/64".into()), None);
    }
}
