//! Re-hashing the cache: every file stored by sha256 is read again and compared with
//! its name. Files are never fetched again once cached, so a file damaged on disk (bit
//! rot, a bad disk, an editor) would be served wrong forever; one that no longer
//! matches is moved to `quarantine/`, and the next request for it fills it again.

use std::path::{Path, PathBuf};

use super::blobs::file_sha256;
use super::{BlobKey, Store};
use anyhow::{Context, Result};

/// Where damaged files are moved, under the data directory.
const QUARANTINE: &str = "quarantine";

/// What a verification found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Files re-hashed, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Files keyed by their URL (the upstream gave no sha256): nothing to check them by.
    pub unchecked: u64,
    pub damaged: Vec<Damaged>,
}

/// A file that did not match its name, and where it was moved.
#[derive(Debug)]
pub struct Damaged {
    pub path: PathBuf,
    pub why: String,
    pub moved_to: PathBuf,
}

impl Store {
    /// Re-hashes every file under `files/`, moving those that do not match their name
    /// to `quarantine/`.
    pub fn verify(&self) -> Result<Checked> {
        let mut checked = Checked::default();
        let files = self.root().join("files");
        let shards = std::fs::read_dir(&files)
            .with_context(|| format!("cannot read {}", files.display()))?;
        for shard in shards.flatten() {
            for entry in std::fs::read_dir(shard.path())?.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(expected) =
                    BlobKey::parse(&name).and_then(|key| key.expected_sha256().map(str::to_string))
                else {
                    checked.unchecked += 1;
                    continue;
                };
                let why = match file_sha256(&path) {
                    Ok((actual, size)) => {
                        checked.files += 1;
                        checked.bytes += size;
                        if actual == expected {
                            continue;
                        }
                        format!("its sha256 is {actual}")
                    }
                    Err(e) => {
                        checked.files += 1;
                        format!("unreadable ({e})")
                    }
                };
                let moved_to = self.quarantine(&path, &name)?;
                checked.damaged.push(Damaged {
                    path,
                    why,
                    moved_to,
                });
            }
        }
        Ok(checked)
    }

    /// Moves a damaged file aside, under a name no other quarantined file has.
    fn quarantine(&self, path: &Path, name: &str) -> Result<PathBuf> {
        let dir = self.root().join(QUARANTINE);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut dest = dir.join(name);
        let mut n = 1;
        while dest.exists() {
            dest = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        std::fs::rename(path, &dest)
            .with_context(|| format!("cannot move {} aside", path.display()))?;
        Ok(dest)
    }
}
