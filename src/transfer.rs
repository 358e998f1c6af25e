//! `devcache export` and `devcache import`: a cache bundle to or from a data
//! directory, or the running cache container, where the same commands run inside
//! it against its volume (the image holds this very binary).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::api::human_bytes;
use crate::stack::engine::{self, message};
use crate::stack::names::Project;
use crate::stack::{cache, exec};
use crate::store::{Store, bundle};

/// Where bundles pass through inside the cache container.
const IN_CONTAINER: &str = "/tmp/devcache-bundle";

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
            let (store, bundle_file) = (Store::open(dir)?, file.to_path_buf());
            let counts =
                tokio::task::spawn_blocking(move || bundle::export(&store, &bundle_file)).await??;
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
            let inside = in_container_name(file);
            let said = run_devcache(
                &docker,
                &container,
                &["export", &inside, "--data-dir", "/data"],
            )
            .await?;
            let copied = download(&docker, &container, &inside, file).await;
            remove_inside(&docker, &container, &inside).await;
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
            let (store, bundle_file) = (Store::open(dir)?, file.to_path_buf());
            let counts =
                tokio::task::spawn_blocking(move || bundle::import(&store, &bundle_file)).await??;
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
            let inside = in_container_name(file);
            upload(&docker, &container, file, &inside).await?;
            let said = run_devcache(
                &docker,
                &container,
                &["import", &inside, "--data-dir", "/data"],
            )
            .await;
            remove_inside(&docker, &container, &inside).await;
            print!("{}", said?.replace(&inside, &file.display().to_string()));
            Ok(())
        }
    }
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
fn in_container_name(file: &Path) -> String {
    if file.extension().is_some_and(|e| e == "zst") {
        format!("{IN_CONTAINER}.tar.zst")
    } else {
        format!("{IN_CONTAINER}.tar")
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
async fn remove_inside(docker: &Docker, container: &str, path: &str) {
    let _ = docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: "/tmp".into(),
                ..Default::default()
            }),
            bollard::body_full(empty_tar_replacing(path).into()),
        )
        .await;
}

/// A tar that replaces `path` with an empty file.
fn empty_tar_replacing(path: &str) -> Vec<u8> {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mode(0o600);
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    let _ = tar.append_data(&mut header, name, std::io::empty());
    tar.into_inner().unwrap_or_default()
}

/// Copies a file out of the container to `dest`, through a temp file beside it.
async fn download(docker: &Docker, container: &str, path: &str, dest: &Path) -> Result<()> {
    let archive = dest.with_extension("download");
    let mut out = tokio::fs::File::create(&archive)
        .await
        .with_context(|| format!("cannot write {}", archive.display()))?;
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| anyhow!("cannot copy the bundle out of {container}: {}", message(&e)))?;
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    drop(out);
    let (archive_path, dest_path): (PathBuf, PathBuf) = (archive.clone(), dest.to_path_buf());
    let result = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut tar = tar::Archive::new(std::fs::File::open(&archive_path)?);
        let mut entry = tar
            .entries()?
            .next()
            .context("the container sent an empty archive")??;
        let partial = dest_path.with_extension("partial");
        let mut file = std::fs::File::create(&partial)?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(&mut file, &buffer[..n])?;
        }
        file.sync_all()?;
        std::fs::rename(&partial, &dest_path)?;
        Ok(())
    })
    .await?;
    let _ = tokio::fs::remove_file(&archive).await;
    result
}

/// Streams a host file into the container as `path`, without holding it in memory.
async fn upload(docker: &Docker, container: &str, source: &Path, path: &str) -> Result<()> {
    let size = tokio::fs::metadata(source).await?.len();
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut header = tar::Header::new_gnu();
    header.set_path(&name)?;
    header.set_size(size);
    header.set_mode(0o600);
    header.set_cksum();
    let file = tokio::fs::File::open(source).await?;
    let padding = (512 - (size % 512) as usize) % 512;
    let body =
        futures::stream::once(async move { Ok(bytes::Bytes::copy_from_slice(header.as_bytes())) })
            .chain(tokio_util::io::ReaderStream::with_capacity(
                file,
                256 * 1024,
            ))
            .chain(futures::stream::once(async move {
                Ok(bytes::Bytes::from(vec![0u8; padding + 1024]))
            }));
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: "/tmp".into(),
                ..Default::default()
            }),
            bollard::body_try_stream(body),
        )
        .await
        .map_err(|e| anyhow!("cannot copy the bundle into {container}: {}", message(&e)))
}
