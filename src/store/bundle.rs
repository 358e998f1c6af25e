//! Cache bundles: a data directory as one portable tar (zstd-compressed when the name
//! ends in `.zst`), to seed another laptop or a CI image.
//!
//! The first entry, `manifest.json`, lists every other entry with its sha256. Import
//! stages every entry in `tmp/`, checking its path, its digest and (for files stored
//! by sha256) its name, and only when the whole bundle is sound moves the entries
//! into place, never over a file the cache already has. A damaged or truncated
//! bundle is refused, naming the entry, and leaves the cache as it was.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::blobs::file_sha256;
use super::pages::StoredPage;
use super::{BlobKey, Store};
use crate::index::ProjectName;

const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "devcache-bundle";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The most a manifest may hold: about 150 bytes an entry, so room for some 400,000
/// files, far beyond a real cache; a manifest that expands past it is refused unread.
const MANIFEST_CAP: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    /// Entry path to sha256.
    entries: BTreeMap<String, String>,
}

/// What an export or import did.
#[derive(Debug, Default)]
pub struct Counts {
    pub pages: usize,
    pub files: usize,
    pub bytes: u64,
    /// Import only: entries the cache already had.
    pub already_present: usize,
}

/// Writes the store's pages and files to `dest`.
pub fn export(store: &Store, dest: &Path) -> Result<Counts> {
    let mut counts = Counts::default();
    let mut entries = BTreeMap::new();
    let root = store.root();
    for name in store.page_names() {
        let path = format!("pages/{name}.json");
        entries.insert(path.clone(), file_digest(&root.join(&path))?);
        counts.pages += 1;
    }
    for shard in std::fs::read_dir(root.join("files"))?.flatten() {
        for file in std::fs::read_dir(shard.path())?.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let path = format!("files/{}/{name}", shard.file_name().to_string_lossy());
            // Files stored by sha256 were checked when they were cached: the name is the digest.
            let digest =
                match BlobKey::parse(&name).and_then(|k| k.expected_sha256().map(str::to_string)) {
                    Some(digest) => digest,
                    None => file_digest(&file.path())?,
                };
            counts.bytes += file.metadata()?.len();
            counts.files += 1;
            entries.insert(path, digest);
        }
    }
    let manifest = serde_json::to_vec_pretty(&Manifest {
        format: FORMAT.into(),
        version: 1,
        entries: entries.clone(),
    })?;
    // Written beside the destination and renamed: a failed export leaves no half bundle.
    let partial = dest.with_extension("partial");
    let write = || -> Result<()> {
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let sink: Box<dyn Write> = if is_zstd_name(dest) {
            Box::new(zstd::Encoder::new(file, 3)?.auto_finish())
        } else {
            Box::new(std::io::BufWriter::new(file))
        };
        let mut tar = tar::Builder::new(sink);
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, MANIFEST, manifest.as_slice())?;
        for path in entries.keys() {
            tar.append_path_with_name(root.join(path), path)
                .with_context(|| format!("cannot add {path}"))?;
        }
        tar.into_inner()?.flush()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, dest).with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(counts)
}

fn is_zstd_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

fn file_digest(path: &Path) -> Result<String> {
    let (digest, _) =
        file_sha256(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(digest)
}

/// An entry staged in `tmp/`, waiting for the whole bundle to be checked.
struct Staged {
    temp: PathBuf,
    path: String,
    size: u64,
}

/// Reads a bundle into the store; all or nothing. Its files are recorded in the pin
/// set `pin`, when one is given, so that eviction keeps them.
pub fn import(store: &Store, bundle: &Path, pin: Option<&str>) -> Result<Counts> {
    let mut staged: Vec<Staged> = Vec::new();
    let result = stage(store, bundle, &mut staged).and_then(|()| {
        if let Some(set) = pin {
            let keys: Vec<BlobKey> = staged
                .iter()
                .filter_map(|entry| entry.path.strip_prefix("files/"))
                .filter_map(|path| BlobKey::parse(path.rsplit('/').next()?))
                .collect();
            store.pin(set, &keys)?;
        }
        publish(store, &staged)
    });
    for entry in &staged {
        let _ = std::fs::remove_file(&entry.temp);
    }
    result
}

fn stage(store: &Store, bundle: &Path, staged: &mut Vec<Staged>) -> Result<()> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{} is refused: {why}; nothing was imported",
            bundle.display()
        )
    };
    // Every entry must fit in what the disk has free, as the headers declare, before
    // a byte of any is written.
    let tmp = store.root().join("tmp");
    let disk = free_space(&tmp)?;
    let file = BundleFile::open(bundle)?;
    if let Some((needed, path)) = first_past(&file, &disk)? {
        return Err(refuse(format!(
            "its entries up to {path} need {} MiB, and {} has {} MiB free",
            needed.div_ceil(1 << 20),
            store.root().display(),
            disk.free >> 20
        )));
    }
    let source = file.contents()?;
    let not_a_bundle = || refuse("it is not a devcache bundle (not a tar archive)".into());
    let mut archive = tar::Archive::new(source);
    let mut entries = archive.entries().map_err(|_| not_a_bundle())?;

    let mut first = entries
        .next()
        .ok_or_else(|| refuse("it is empty".into()))?
        .map_err(|_| not_a_bundle())?;
    if first.path().ok().as_deref() != Some(Path::new(MANIFEST)) {
        return Err(refuse(format!(
            "its first entry is not {MANIFEST}: not a devcache bundle"
        )));
    }
    let mut text = Vec::new();
    (&mut first)
        .take(MANIFEST_CAP + 1)
        .read_to_end(&mut text)
        .map_err(|e| refuse(format!("unreadable manifest ({})", first_line(&e))))?;
    if text.len() as u64 > MANIFEST_CAP {
        return Err(refuse(format!(
            "its manifest is larger than {} MiB",
            MANIFEST_CAP >> 20
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| refuse(format!("damaged manifest ({e})")))?;
    if manifest.format != FORMAT || manifest.version != 1 {
        return Err(refuse(format!(
            "format {} version {} is not one this devcache reads",
            manifest.format, manifest.version
        )));
    }

    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            refuse(format!(
                "truncated or damaged after {} entries ({})",
                seen.len(),
                first_line(&e)
            ))
        })?;
        let path = entry
            .path()
            .map_err(|e| {
                refuse(format!(
                    "an entry has an unreadable path ({})",
                    first_line(&e)
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(format!(
                "entry {path} is {}; only regular files are accepted",
                kind_name(kind)
            )));
        }
        let Some(expected) = manifest.entries.get(&path) else {
            return Err(refuse(format!("entry {path} is not in its manifest")));
        };
        check_path(&path).map_err(|why| refuse(format!("entry {path}: {why}")))?;
        if !seen.insert(path.clone()) {
            return Err(refuse(format!("entry {path} appears twice")));
        }
        // The disk can still fill while entries are written (another writer, or more
        // files than it has inodes for): the import stops there, with its tmp/ files
        // removed by the caller.
        let full = |e: std::io::Error| {
            refuse(format!(
                "cannot write entry {path} to {} ({e}); free some space and import again",
                tmp.display()
            ))
        };
        let temp = store.temp_path();
        let mut out = std::fs::File::create(&temp).map_err(full)?;
        staged.push(Staged {
            temp: temp.clone(),
            path: path.clone(),
            size: 0,
        });
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buffer)
                .map_err(|e| refuse(format!("entry {path} is truncated ({e})")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(full)?;
            size += n as u64;
        }
        if entry.header().size().is_ok_and(|declared| declared != size) {
            return Err(refuse(format!(
                "it is truncated: entry {path} ends after {size} bytes"
            )));
        }
        let actual = hex::encode(hasher.finalize());
        if &actual != expected {
            return Err(refuse(format!(
                "entry {path} is damaged (sha256 {actual}, manifest says {expected})"
            )));
        }
        // A file stored by sha256 is served as those bytes: its name is the check,
        // whatever the manifest says.
        if let Some(name) = path
            .strip_prefix("files/")
            .and_then(|p| p.split('/').nth(1))
            && let Some(key) = BlobKey::parse(name)
            && key.expected_sha256().is_some_and(|digest| digest != actual)
        {
            return Err(refuse(format!(
                "entry {path} does not hash to its name (its sha256 is {actual})"
            )));
        }
        if path.starts_with("pages/") {
            let bytes = std::fs::read(&temp)?;
            serde_json::from_slice::<StoredPage>(&bytes)
                .map_err(|e| refuse(format!("entry {path} is not a page ({e})")))?;
        }
        out.sync_all().map_err(full)?;
        if let Some(last) = staged.last_mut() {
            last.size = size;
        }
    }
    // Every entry seen is in the manifest, once: the rest are missing.
    let missing = manifest.entries.len() - seen.len();
    if missing > 0 {
        return Err(refuse(format!(
            "it is truncated: {missing} of {} entries are missing",
            manifest.entries.len()
        )));
    }
    Ok(())
}

/// The first line of an error: the tar reader's errors can quote raw header bytes over
/// several lines.
fn first_line(error: &dyn std::fmt::Display) -> String {
    error.to_string().lines().next().unwrap_or("").to_string()
}

/// What a refused tar entry is, for the message.
fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "a symbolic link",
        tar::EntryType::Link => "a hard link",
        tar::EntryType::Fifo => "a FIFO",
        tar::EntryType::Char | tar::EntryType::Block => "a device",
        _ => "not a regular file",
    }
}

/// Room on the disk that holds `tmp/`.
struct Disk {
    /// Bytes free for devcache.
    free: u64,
    /// A file takes whole blocks of this size.
    block: u64,
}

impl Disk {
    /// What a file of `size` bytes takes on this disk.
    fn takes(&self, size: u64) -> u64 {
        size.div_ceil(self.block).saturating_mul(self.block)
    }
}

fn free_space(dir: &Path) -> Result<Disk> {
    let stat = rustix::fs::statvfs(dir)
        .with_context(|| format!("cannot tell how much room {} has", dir.display()))?;
    Ok(Disk {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        block: stat.f_frsize.max(1),
    })
}

/// A bundle opened once, and whether its magic bytes say it is zstd; it is read from
/// the start again for each pass over its entries.
struct BundleFile {
    file: std::fs::File,
    compressed: bool,
}

impl BundleFile {
    fn open(bundle: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(bundle)
            .with_context(|| format!("cannot read {}", bundle.display()))?;
        let mut magic = [0u8; 4];
        let compressed = file.read_exact(&mut magic).is_ok() && magic == ZSTD_MAGIC;
        Ok(Self { file, compressed })
    }

    /// The bundle from its start, uncompressed and buffered.
    fn contents(&self) -> Result<Box<dyn Read + '_>> {
        let file = self.rewound()?;
        Ok(if self.compressed {
            Box::new(zstd::Decoder::new(file)?)
        } else {
            Box::new(std::io::BufReader::new(file))
        })
    }

    /// The file itself, from its start.
    fn rewound(&self) -> std::io::Result<&std::fs::File> {
        let mut file = &self.file;
        file.rewind()?;
        Ok(file)
    }
}

/// Where the bundle's entries, as their headers declare them, stop fitting on `disk`:
/// the room needed up to that entry, and its path; `None` when they all fit. Only the
/// headers are read (an uncompressed bundle's data is skipped by seeking); an entry
/// that cannot be read ends the count, and the import proper names it.
fn first_past(bundle: &BundleFile, disk: &Disk) -> Result<Option<(u64, String)>> {
    if bundle.compressed {
        return Ok(past(
            tar::Archive::new(bundle.contents()?).entries().ok(),
            disk,
        ));
    }
    Ok(past(
        tar::Archive::new(std::io::BufReader::new(bundle.rewound()?))
            .entries_with_seek()
            .ok(),
        disk,
    ))
}

fn past<R: Read>(entries: Option<tar::Entries<'_, R>>, disk: &Disk) -> Option<(u64, String)> {
    let mut needed = 0u64;
    for entry in entries?.skip(1) {
        let entry = entry.ok()?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        needed = needed.saturating_add(disk.takes(entry.header().size().ok()?));
        if needed > disk.free {
            let path = entry.path().ok()?.to_string_lossy().into_owned();
            return Some((needed, path));
        }
    }
    None
}

/// Only `pages/<project>.json` and `files/<ab>/<key>`, with names devcache itself would
/// write: nothing in a bundle can land outside the data directory.
fn check_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["pages", name] => {
            let stem = name
                .strip_suffix(".json")
                .ok_or("a page must be a .json file")?;
            let project = ProjectName::parse(stem).map_err(|e| e.to_string())?;
            if project.as_str() != stem {
                return Err("a page name must be normalised".into());
            }
            Ok(())
        }
        ["files", shard, name] => {
            BlobKey::parse(name).ok_or("not a file name devcache writes")?;
            let digest = name.strip_prefix("url-").unwrap_or(name);
            if shard != &digest[..2] {
                return Err("stored under the wrong folder".into());
            }
            Ok(())
        }
        _ => Err("not a path devcache writes".into()),
    }
}

fn publish(store: &Store, staged: &[Staged]) -> Result<Counts> {
    let mut counts = Counts::default();
    for entry in staged {
        let dest = store.root().join(&entry.path);
        if entry.path.starts_with("pages/") {
            counts.pages += 1;
            // Keep the fresher page when the cache has one already.
            let newer_here = std::fs::read(&dest)
                .ok()
                .and_then(|b| serde_json::from_slice::<StoredPage>(&b).ok())
                .zip(
                    std::fs::read(&entry.temp)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<StoredPage>(&b).ok()),
                )
                .is_some_and(|(here, incoming)| here.fetched_at >= incoming.fetched_at);
            if newer_here {
                counts.already_present += 1;
                continue;
            }
            std::fs::rename(&entry.temp, &dest)?;
        } else {
            counts.files += 1;
            if dest.exists() {
                counts.already_present += 1;
                continue;
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&entry.temp, &dest)?;
            counts.bytes += entry.size;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_devcache_writes_are_accepted() {
        let sha = "ab".repeat(32);
        assert!(check_path("pages/django.json").is_ok());
        assert!(check_path(&format!("files/ab/{sha}")).is_ok());
        for bad in [
            "pages/Django.json".to_string(),
            "pages/../x.json".to_string(),
            format!("files/cd/{sha}"),
            format!("files/ab/../{sha}"),
            "tmp/x".to_string(),
            "/etc/passwd".to_string(),
            "manifest.json".to_string(),
        ] {
            assert!(check_path(&bad).is_err(), "{bad}");
        }
    }
}
