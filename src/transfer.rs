//! `devcache export` and `devcache import`: a cache bundle to or from a data
//! directory, or the running cache container, where the same commands run inside
//! it against its volume (the image holds this very binary).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use crate::api::human_bytes;
use crate::stack::engine;
use crate::stack::names::Project;
use crate::stack::{cache, files};
use crate::store::{Store, bundle, pins};

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
            let said = inside.run("export", &[]).await?;
            let copied =
                files::copy_out(&inside.docker, &inside.container, &inside.path, file).await;
            inside.empty().await;
            copied?;
            print!("{}", inside.as_said_of(&said, file));
            Ok(())
        }
    }
}

/// `devcache import FILE`: the cache filled from the bundle at `file`, its files
/// pinned in `pin` (by default `import-<file name>`) unless `no_pin`.
pub async fn import(cache: &Cache, file: &Path, pin: Option<String>, no_pin: bool) -> Result<()> {
    if !file.is_file() {
        bail!("{} is not a file", file.display());
    }
    let pin = (!no_pin).then(|| {
        pin.unwrap_or_else(|| {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            pins::set_name(&["import", &name])
        })
    });
    if let Some(set) = &pin
        && !pins::valid_set_name(set)
    {
        bail!("--pin {set:?}: a pin set is named with letters, digits, '.', '_' and '-'");
    }
    match cache {
        Cache::DataDir(dir) => {
            let set = pin.clone();
            let counts = in_data_dir(dir, file, move |store, file| {
                bundle::import(store, file, set.as_deref())
            })
            .await?;
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
            if let Some(set) = &pin {
                println!(
                    "pinned in {set}: eviction keeps these files (`devcache unpin {set}` releases them)"
                );
            }
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
            let pin_args = match &pin {
                Some(set) => vec!["--pin", set.as_str()],
                None => vec!["--no-pin"],
            };
            let said = inside.run("import", &pin_args).await;
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
    work: impl FnOnce(&Store, &Path) -> Result<T> + Send + 'static,
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
        let cache = cache::serving(&docker, &project)
            .await
            .context("give --data-dir DIR, or start the cache container")?;
        let name = if file.extension().is_some_and(|e| e == "zst") {
            "devcache-bundle.tar.zst"
        } else {
            "devcache-bundle.tar"
        };
        Ok(Self {
            docker,
            container: cache.name,
            name,
            path: format!("{IN_CONTAINER_DIR}/{name}"),
        })
    }

    /// Runs `devcache <verb> <the copy> <args>` on the container's data directory:
    /// what it printed, or its error.
    async fn run(&self, verb: &str, args: &[&str]) -> Result<String> {
        let mut cmd = vec![verb, self.path.as_str()];
        cmd.extend_from_slice(args);
        cache::run_devcache(&self.docker, &self.container, &cmd).await
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
