//! Files into and out of containers, the one place that speaks the Engine's tar
//! archives: reading a small file, writing one (atomically when readers may be
//! looking), and copying a large one in or out without holding it in memory.
//! Consumers' pip.conf, `warm`'s requirement files and `export`/`import`'s bundles all
//! pass through here. Archives are made by the `tar` crate's Builder, which writes the
//! headers, the padding and the end of the archive.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::engine::{is_not_found, message};
use super::exec::script;

/// The size of the pieces a large file is copied in.
const CHUNK: usize = 256 * 1024;

/// The most `read` takes of a file, archive included: the files read whole are
/// configuration, requirement and lock files, kilobytes to a few MiB (edx-platform's
/// uv.lock is under 2 MiB); a container's huge file costs at most this in memory.
const READ_CAP: u64 = 64 << 20;

/// A file's bytes, or `None` when it does not exist.
pub async fn read(docker: &Docker, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let mut archive = Vec::new();
    if !download(docker, container, path, &mut archive, READ_CAP).await? {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    first_entry(archive.as_slice(), &mut bytes)
        .with_context(|| format!("cannot read {path} in {container}"))?;
    Ok(Some(bytes))
}

/// Whether `path` exists in the container, asked without copying it out.
pub async fn exists(docker: &Docker, container: &str, path: &str) -> Result<bool> {
    let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
    match docker
        .get_container_archive_info(container, Some(options))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => bail!("cannot look for {path} in {container}: {}", message(&e)),
    }
}

/// Copies a file out of the container to `dest`, through temp files beside it: a
/// failed copy leaves no half file at `dest`.
pub async fn copy_out(docker: &Docker, container: &str, path: &str, dest: &Path) -> Result<()> {
    let archive = dest.with_extension("download");
    let mut out = tokio::fs::File::create(&archive)
        .await
        .with_context(|| format!("cannot write {}", archive.display()))?;
    // Written to disk as it comes (a bundle), so not capped in memory.
    let downloaded = download(docker, container, path, &mut out, u64::MAX).await;
    drop(out);
    let unpacked = match downloaded {
        Ok(true) => {
            let (archive, dest) = (archive.clone(), dest.to_path_buf());
            tokio::task::spawn_blocking(move || unpack_to(&archive, &dest)).await?
        }
        Ok(false) => Err(anyhow!("there is no {path} in {container}")),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&archive).await;
    unpacked
}

/// Writes `bytes` as `dir/name`, creating `dir` when needed.
pub async fn write(
    docker: &Docker,
    container: &str,
    dir: &str,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, name, mode, bytes.len() as u64, bytes)?;
    let archive = Bytes::from(archive.into_inner()?);
    let body = futures::stream::once(async move { Ok(archive) });
    upload(docker, container, dir, name, body).await
}

/// Writes a file so that readers see the old one or the whole new one: the bytes go
/// to a temp name beside it, then a rename puts them in place.
pub async fn write_atomically(
    docker: &Docker,
    container: &str,
    dir: &str,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    script(docker, container, "mkdir -p \"$1\"", &[dir]).await?;
    let temp = format!(".{name}.devcache-tmp");
    write(docker, container, dir, &temp, bytes, 0o644).await?;
    script(
        docker,
        container,
        "mv -f \"$1/$2\" \"$1/$3\"",
        &[dir, &temp, name],
    )
    .await?;
    Ok(())
}

/// Streams a file of this host into the container as `dir/name`. The archive is
/// written on a blocking thread and sent in pieces as the Engine reads them.
pub async fn copy_in(
    docker: &Docker,
    container: &str,
    source: &Path,
    dir: &str,
    name: &str,
) -> Result<()> {
    let file =
        std::fs::File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
    let size = file.metadata()?.len();
    let (sender, mut receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let entry = name.to_string();
    let writer = tokio::task::spawn_blocking(move || {
        let pieces = Pieces(sender.clone());
        let written = (|| -> std::io::Result<()> {
            let mut archive = tar::Builder::new(std::io::BufWriter::with_capacity(CHUNK, pieces));
            append(&mut archive, &entry, 0o600, size, file)?;
            archive.into_inner()?.flush()
        })();
        // A failure reaches the Engine as the body's error, and so the upload's.
        if let Err(e) = written {
            let _ = sender.blocking_send(Err(e));
        }
    });
    let body = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let uploaded = upload(docker, container, dir, name, body).await;
    writer.await?;
    uploaded
}

/// Adds one file entry to an archive: its size and mode, written now.
pub fn append<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    archive.append_data(&mut header, path.trim_start_matches('/'), data)
}

/// Pieces of an archive on their way to the Engine.
struct Pieces(mpsc::Sender<std::io::Result<Bytes>>);

impl Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the Engine stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn upload(
    docker: &Docker,
    container: &str,
    dir: &str,
    name: &str,
    archive: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Result<()> {
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dir.to_string(),
                ..Default::default()
            }),
            bollard::body_try_stream(archive),
        )
        .await
        .map_err(|e| anyhow!("cannot write {dir}/{name} in {container}: {}", message(&e)))
}

/// Writes the Engine's archive of `path` to `sink`, refusing it past `limit` bytes;
/// `false` when there is no such path.
async fn download(
    docker: &Docker,
    container: &str,
    path: &str,
    sink: &mut (impl AsyncWrite + Unpin),
    limit: u64,
) -> Result<bool> {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_string(),
        }),
    );
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                written += bytes.len() as u64;
                if written > limit {
                    bail!(
                        "{path} in {container} is larger than {} MiB, more than devcache reads of a configuration, requirement or lock file",
                        limit >> 20
                    );
                }
                sink.write_all(&bytes).await?;
            }
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => bail!("cannot copy {path} out of {container}: {}", message(&e)),
        }
    }
    sink.flush().await?;
    Ok(true)
}

/// The first file of an archive, written to `out`.
fn first_entry(archive: impl Read, out: &mut impl Write) -> Result<()> {
    let mut archive = tar::Archive::new(archive);
    let mut entry = archive
        .entries()?
        .next()
        .context("the container sent an empty archive")??;
    std::io::copy(&mut entry, out)?;
    Ok(())
}

/// Unpacks the archive's file to `dest` through `dest.partial`, synced and renamed.
fn unpack_to(archive: &Path, dest: &Path) -> Result<()> {
    let partial = dest.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    first_entry(std::fs::File::open(archive)?, &mut file)?;
    file.sync_all()?;
    std::fs::rename(&partial, dest).with_context(|| format!("cannot write {}", dest.display()))
}
