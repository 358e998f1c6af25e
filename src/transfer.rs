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
            let inside = Inside::new(project, file).await?;
            let said = inside.run("export").await?;
            let copied =
                files::copy_out(&inside.docker, &inside.container, &inside.path, file).await;
            inside.empty().await;
            copied?;
            print!("{}", inside.as_said_of(&said, file));
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
            // Run again after an interrupted import, this says what the rerun completed.
            println!(
                "imported {} pages and {} files from {}: {} added ({}), {} already here",
                counts.pages,
                counts.files,
                file.display(),
                counts.pages + counts.files - counts.already_present,
                human_bytes(counts.bytes),
                counts.already_present,
            );
            Ok(())
        }
        Cache::Container { project } => {
            let inside = Inside::new(project, file).await?;
            files::copy_in(
                &inside.docker,
                &inside.container,
                file,
                IN_CONTAINER_DIR,
                inside.name,
            )
            .await?;
            let said = inside.run("import").await;
            inside.empty().await;
            print!("{}", inside.as_said_of(&said?, file));
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

/// The bundle's copy inside the running cache container, where the devcache in the
/// image exports or imports it against the container's volume.
struct Inside {
    docker: Docker,
    container: String,
    /// Its name in [`IN_CONTAINER_DIR`]: the extension says whether it is compressed.
    name: &'static str,
    path: String,
}

impl Inside {
    async fn new(project: &str, file: &Path) -> Result<Self> {
        let project = Project::new(project)?;
        let docker = engine::connect().await?;
        cache::running(&docker, &project)
            .await
            .context("give --data-dir DIR, or start the cache container with `devcache up`")?;
        let name = if file.extension().is_some_and(|e| e == "zst") {
            "devcache-bundle.tar.zst"
        } else {
            "devcache-bundle.tar"
        };
        Ok(Self {
            docker,
            container: project.cache_container(),
            name,
            path: format!("{IN_CONTAINER_DIR}/{name}"),
        })
    }

    /// Runs `devcache <verb> <the copy> --data-dir /data` in the container: what it
    /// printed, or its error.
    async fn run(&self, verb: &str) -> Result<String> {
        let cmd = [
            "/usr/local/bin/devcache",
            verb,
            &self.path,
            "--data-dir",
            "/data",
        ];
        let ran = exec::run(&self.docker, &self.container, &cmd).await?;
        if ran.code != 0 {
            bail!("{}", ran.stderr.trim().trim_start_matches("devcache: "));
        }
        Ok(ran.stdout)
    }

    /// What the container said, naming the user's file instead of the copy.
    fn as_said_of(&self, said: &str, file: &Path) -> String {
        said.replace(&self.path, &file.display().to_string())
    }

    /// Empties the copy (the image has no `rm`; an empty file in /tmp costs nothing).
    async fn empty(&self) {
        let _ = files::write(
            &self.docker,
            &self.container,
            IN_CONTAINER_DIR,
            self.name,
            b"",
            0o600,
        )
        .await;
    }
}
