//! The devcache image, made from this very executable: no registry is needed, and
//! the cache in the container is the same build as the command that started it.
//!
//! The image holds the binary, the shared libraries it runs with (as the running
//! process maps them), its ELF interpreter, and the host's CA bundle, imported as
//! one layer. It is tagged `devcache:<version>` (or `DEVCACHE_IMAGE`) and labelled
//! with the binary's sha256, so a changed binary gets a new image, and `up` can say why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::engine::{is_not_found, message};

pub const REPOSITORY: &str = "devcache";
const BINARY_IN_IMAGE: &str = "/usr/local/bin/devcache";
const CA_BUNDLE_IN_IMAGE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const DIGEST_LABEL: &str = "devcache.binary-sha256";

/// The image's name: `DEVCACHE_IMAGE` (as the compose fragment reads it), else
/// `devcache:<version>`. Tests set their own, so they never replace the user's image.
pub fn tag() -> String {
    std::env::var("DEVCACHE_IMAGE")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("{REPOSITORY}:{}", env!("CARGO_PKG_VERSION")))
}

/// The image name split as the Engine's import wants it: repository and tag.
fn repository_and_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (name, "latest"),
    }
}

/// What `ensure` did.
pub enum Made {
    Present,
    /// Built, and why: missing, another binary, or asked to.
    Built(String),
}

/// Makes sure the image exists and holds this executable.
pub async fn ensure(docker: &Docker, force: bool) -> Result<Made> {
    let exe = std::env::current_exe().context("cannot find devcache's own executable")?;
    let binary = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let digest = hex::encode(Sha256::digest(&binary));
    let name = tag();
    let why = match docker.inspect_image(&name).await {
        Ok(image) => {
            let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
            match labels.get(DIGEST_LABEL) {
                Some(held) if *held == digest && !force => return Ok(Made::Present),
                _ if force => "asked to (--force)".to_string(),
                Some(held) => format!(
                    "it holds another devcache binary (sha256 {}), this one is {}",
                    &held[..12.min(held.len())],
                    &digest[..12]
                ),
                None => "it holds no devcache binary label".to_string(),
            }
        }
        Err(e) if is_not_found(&e) => "it was missing".to_string(),
        Err(e) => return Err(anyhow!("cannot inspect image {name}: {}", message(&e))),
    };
    let archive = tokio::task::spawn_blocking(move || root_filesystem(&binary)).await??;
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repository_and_tag(&name).0.into()),
        tag: Some(repository_and_tag(&name).1.into()),
        changes: vec![
            format!("ENTRYPOINT [\"{BINARY_IN_IMAGE}\"]"),
            "CMD [\"serve\"]".into(),
            format!("ENV SSL_CERT_FILE={CA_BUNDLE_IN_IMAGE}"),
            // A container's defaults, set here rather than guessed from the host's files.
            "ENV DEVCACHE_HOST=0.0.0.0".into(),
            "ENV DEVCACHE_DATA_DIR=/data".into(),
            "EXPOSE 3141/tcp".into(),
            format!("LABEL {DIGEST_LABEL}={digest}"),
            format!(
                "LABEL org.opencontainers.image.version={}",
                env!("CARGO_PKG_VERSION")
            ),
        ],
        ..Default::default()
    };
    let mut progress = docker.create_image(
        Some(options),
        Some(bollard::body_full(archive.into())),
        None,
    );
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| anyhow!("cannot make the devcache image: {}", message(&e)))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(anyhow!("cannot make the devcache image: {error}"));
        }
    }
    Ok(Made::Built(why))
}

/// A tar of the image's files.
fn root_filesystem(binary: &[u8]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    append_bytes(&mut tar, BINARY_IN_IMAGE, binary, 0o755)?;
    for library in mapped_libraries()? {
        tar.append_path_with_name(&library, library.strip_prefix("/").unwrap_or(&library))
            .with_context(|| format!("cannot add {}", library.display()))?;
    }
    if let Some(interpreter) = interpreter(binary) {
        let real = std::fs::canonicalize(&interpreter).with_context(|| {
            format!("cannot find the ELF interpreter {}", interpreter.display())
        })?;
        let bytes = std::fs::read(&real)?;
        append_bytes(&mut tar, &interpreter.to_string_lossy(), &bytes, 0o755)?;
    }
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CA_BUNDLE_IN_IMAGE));
    if let Ok(bytes) = std::fs::read(&bundle) {
        append_bytes(&mut tar, CA_BUNDLE_IN_IMAGE, &bytes, 0o644)?;
    }
    for dir in ["data", "tmp"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
    }
    Ok(tar.into_inner()?)
}

fn append_bytes(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, path.trim_start_matches('/'), bytes)?;
    Ok(())
}

/// The shared libraries this process runs with, as the kernel mapped them.
fn mapped_libraries() -> Result<BTreeSet<PathBuf>> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    Ok(maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .map(PathBuf::from)
        .filter(|path| Path::new(path).is_file())
        .collect())
}

/// The ELF interpreter (dynamic loader) a binary names, if it is dynamically linked.
fn interpreter(elf: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // 64-bit little-endian ELF only: what this binary is on the machines it builds for.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let table = u64_at(0x20)? as usize;
    let entry_size = u16_at(0x36)? as usize;
    let entries = u16_at(0x38)? as usize;
    (0..entries).find_map(|i| {
        let header = table + i * entry_size;
        if u32_at(header)? != PT_INTERP {
            return None;
        }
        let offset = u64_at(header + 8)? as usize;
        let size = u64_at(header + 32)? as usize;
        let raw = elf.get(offset..offset + size)?;
        let path = std::str::from_utf8(raw).ok()?.trim_end_matches('\0');
        Some(PathBuf::from(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_binarys_loader_and_libraries() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let loader = interpreter(&exe).expect("a dynamically linked test binary");
        assert!(
            loader.to_string_lossy().contains("ld-linux"),
            "{}",
            loader.display()
        );
        let libraries = mapped_libraries().unwrap();
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("libc.so")),
            "{libraries:?}"
        );
        assert_eq!(interpreter(b"not an elf file"), None);
    }

    #[test]
    fn image_names_split_into_repository_and_tag() {
        assert_eq!(repository_and_tag("devcache:0.1.0"), ("devcache", "0.1.0"));
        assert_eq!(
            repository_and_tag("localhost:5000/devcache"),
            ("localhost:5000/devcache", "latest")
        );
    }
}
