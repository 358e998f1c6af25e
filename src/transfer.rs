//! `devcache export` and `devcache import`: a cache bundle to or from a data
//! directory, or the running cache container, where the same commands run inside
//! it against its volume (the image holds this very binary).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::api::human_bytes;
use crate::stack::engine;
use crate::stack::names::Project;
use crate::stack::{cache, exec, files};
use crate::store::{Store, bundle};

/// Where bundles pass through inside the cache container.
const IN_CONTAINER_DIR: &str = "/tmp";

/// Where a bundle is exported from or imported into.
pub enum Cache {
    /// A data directory on this host.
    DataDir(PathBuf),
    /// The running cache container of a compose project.
    Container { project: String },
}

/// `devcache export FILE`: the cache written to one bundle at `file`.
pub async fn export(cache: &Cache, file: &Path) -> Result<()> {
    match cache {
        Cache::DataDir(dir) => {
            let counts = in_data_dir(dir, file, bundle::export).await?;
            println!(
                "exported {} pages and {} files ({}) to {}",
                counts.pages,
                counts.files,
                human_bytes(counts.bytes),
                file.display()
            );
            Ok(())
        }
        Cache::Container { project } => {
            let (docker, container) = cache_container(project).await?;
            let name = in_container_name(file);
            let inside = format!("{IN_CONTAINER_DIR}/{name}");
            let said = run_devcache(
                &docker,
                &container,
                &["export", &inside, "--data-dir", "/data"],
            )
            .await?;
            let copied = files::copy_out(&docker, &container, &inside, file).await;
            remove_inside(&docker, &container, name).await;
            copied?;
            print!("{}", said.replace(&inside, &file.display().to_string()));
            Ok(())
        }
    }
}

/// `devcache import FILE`: the cache filled from the bundle at `file`.
pub async fn import(cache: &Cache, file: &Path) -> Result<()> {
    if !file.is_file() {
        bail!("{} is not a file", file.display());
    }
    match cache {
        Cache::DataDir(dir) => {
            let counts = in_data_dir(dir, file, bundle::import).await?;
            println!(
                "imported {} pages and {} files ({} new, {} already here) from {}",
                counts.pages,
                counts.files,
                human_bytes(counts.bytes),
                counts.already_present,
                file.display()
            );
            Ok(())
        }
        Cache::Container { project } => {
            let (docker, container) = cache_container(project).await?;
            let name = in_container_name(file);
            let inside = format!("{IN_CONTAINER_DIR}/{name}");
            files::copy_in(&docker, &container, file, IN_CONTAINER_DIR, name).await?;
            let said = run_devcache(
                &docker,
                &container,
                &["import", &inside, "--data-dir", "/data"],
            )
            .await;
            remove_inside(&docker, &container, name).await;
            print!("{}", said?.replace(&inside, &file.display().to_string()));
            Ok(())
        }
    }
}

/// Runs a bundle's export or import against a data directory, on a blocking thread.
async fn in_data_dir<T: Send + 'static>(
    dir: &Path,
    file: &Path,
    work: fn(&Store, &Path) -> Result<T>,
) -> Result<T> {
    let (store, file) = (Store::open(dir)?, file.to_path_buf());
    tokio::task::spawn_blocking(move || work(&store, &file)).await?
}

async fn cache_container(project: &str) -> Result<(Docker, String)> {
    let project = Project::new(project)?;
    let docker = engine::connect().await?;
    cache::running(&docker, &project)
        .await
        .context("give --data-dir DIR, or start the cache container with `devcache up`")?;
    Ok((docker, project.cache_container()))
}

/// The bundle's name inside the container keeps its extension, which says whether it
/// is compressed.
fn in_container_name(file: &Path) -> &'static str {
    if file.extension().is_some_and(|e| e == "zst") {
        "devcache-bundle.tar.zst"
    } else {
        "devcache-bundle.tar"
    }
}

async fn run_devcache(docker: &Docker, container: &str, args: &[&str]) -> Result<String> {
    let mut cmd = vec!["/usr/local/bin/devcache"];
    cmd.extend_from_slice(args);
    let ran = exec::run(docker, container, &cmd).await?;
    if ran.code != 0 {
        bail!("{}", ran.stderr.trim().trim_start_matches("devcache: "));
    }
    Ok(ran.stdout)
}

/// Empties the bundle's copy inside the container (the image has no `rm`; an empty
/// file in /tmp costs nothing).
async fn remove_inside(docker: &Docker, container: &str, name: &str) {
    let _ = files::write(docker, container, IN_CONTAINER_DIR, name, b"", 0o600).await;
}
