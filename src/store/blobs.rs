//! Cached files, addressed by their sha256: written once, never changed.

use std::path::{Path, PathBuf};

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::Store;
use super::mapped::FileBytes;
use crate::index::DistFile;

/// The name of a cached file: its sha256 as the upstream page gave it, or for the rare
/// file listed without one, `url-` and the sha256 of its upstream URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// The key of a distribution file (or of its `.metadata` when `metadata` is set).
    /// Metadata the upstream gives no hash for (devcache derives it) is keyed by the
    /// file's URL and sha256, so a wheel replaced at the same URL gets its own.
    pub fn for_file(file: &DistFile, metadata: bool) -> Self {
        let sha256 = if metadata {
            file.core_metadata.as_ref().and_then(|m| m.sha256())
        } else {
            file.sha256()
        };
        match sha256.filter(|d| is_sha256(d)) {
            Some(digest) => Self(digest.to_string()),
            None if metadata => Self::of_url(&format!(
                "{}.metadata#{}",
                file.url,
                file.sha256().unwrap_or_default()
            )),
            None => Self::of_url(&file.url),
        }
    }

    /// The key of the metadata read from the whole wheel once it was checked against
    /// its sha256, which supersedes what ranged reads of the upstream's file gave
    /// (those cannot be checked so). `None` when the upstream hashes the metadata
    /// itself, or gives the wheel no sha256.
    pub fn for_verified_metadata(file: &DistFile) -> Option<Self> {
        if file.core_metadata.is_some() {
            return None;
        }
        let sha256 = file.sha256().filter(|d| is_sha256(d))?;
        Some(Self::of_url(&format!(
            "{}.metadata#verified#{sha256}",
            file.url
        )))
    }

    /// A key for what only a URL names.
    fn of_url(url: &str) -> Self {
        Self(format!(
            "url-{}",
            hex::encode(Sha256::digest(url.as_bytes()))
        ))
    }

    /// Parses a key from a request path; anything else is refused, which is what keeps
    /// request paths out of the filesystem.
    pub fn parse(raw: &str) -> Option<Self> {
        let digest = raw.strip_prefix("url-").unwrap_or(raw);
        is_sha256(digest).then(|| Self(raw.to_string()))
    }

    /// The sha256 the file's bytes must have, when the upstream said.
    pub fn expected_sha256(&self) -> Option<&str> {
        (!self.0.starts_with("url-")).then_some(self.0.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_sha256(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// The cached file of `key`, open for reading, or `None` when it is not cached.
    pub fn open_blob(&self, key: &BlobKey) -> Option<std::fs::File> {
        std::fs::File::open(self.blob_path(key)).ok()
    }

    /// The size of the cached file of `key`, when it is cached.
    pub fn blob_size(&self, key: &BlobKey) -> Option<u64> {
        std::fs::metadata(self.blob_path(key)).ok().map(|m| m.len())
    }

    /// The cached file of `key` as bytes to send (see `mapped`) and when it was cached,
    /// or `None` when it is not cached. Recorded as a use of the file.
    pub fn blob_bytes(&self, key: &BlobKey) -> Option<(FileBytes, Option<SystemTime>)> {
        let path = self.blob_path(key);
        let file = std::fs::File::open(&path).ok()?;
        self.touch(&file);
        let metadata = file.metadata().ok()?;
        let modified = metadata.modified().ok();
        match self.inner.maps.bytes(&path, file, metadata.len()) {
            Ok(bytes) => Some((bytes, modified)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot map a cached file");
                None
            }
        }
    }

    /// Whether the file of `key` is cached.
    pub fn has_blob(&self, key: &BlobKey) -> bool {
        self.blob_path(key).exists()
    }

    pub(super) fn blob_path(&self, key: &BlobKey) -> PathBuf {
        let digest = key.0.strip_prefix("url-").unwrap_or(&key.0);
        self.root().join("files").join(&digest[..2]).join(&key.0)
    }

    /// Writes a small file whole (through `tmp/` and a rename), as `key`.
    pub fn save_blob(&self, key: &BlobKey, bytes: &[u8]) -> std::io::Result<()> {
        let dest = self.blob_path(key);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.write_atomically(&dest, bytes)?;
        self.record_new_file(bytes.len() as u64);
        Ok(())
    }

    /// Moves a finished, verified temp file into place.
    pub fn publish_blob(&self, temp: &Path, key: &BlobKey, size: u64) -> std::io::Result<()> {
        let dest = self.blob_path(key);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(temp, &dest)?;
        self.record_new_file(size);
        Ok(())
    }
}

/// A file's sha256 (lowercase hex) and size, read in full.
pub(super) fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0;
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), size));
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_requests_are_only_hex_digests() {
        let digest = "a".repeat(64);
        assert!(BlobKey::parse(&digest).is_some());
        assert!(BlobKey::parse(&format!("url-{digest}")).is_some());
        for bad in [
            "..",
            "../../etc/passwd",
            &"A".repeat(64),
            &"a".repeat(63),
            "url-",
            "",
        ] {
            assert!(BlobKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    /// A file at `https://files.test/<filename>` with one hash.
    fn dist_file(filename: &str, algorithm: &str, digest: &str) -> DistFile {
        let mut hashes = crate::index::hashes::Hashes::default();
        hashes.insert(algorithm, digest);
        DistFile {
            filename: filename.into(),
            url: format!("https://files.test/{filename}"),
            hashes,
            requires_python: None,
            yanked: None,
            core_metadata: None,
            size: None,
            upload_time: None,
            gpg_sig: None,
        }
    }

    #[test]
    fn a_file_without_sha256_is_keyed_by_url_and_not_verified() {
        let file = dist_file("x-1.0.tar.gz", "md5", "00");
        let key = BlobKey::for_file(&file, false);
        assert!(key.as_str().starts_with("url-"));
        assert_eq!(key.expected_sha256(), None);
        assert_eq!(BlobKey::parse(key.as_str()), Some(key));
        assert_eq!(BlobKey::for_verified_metadata(&file), None);
    }

    #[test]
    fn derived_metadata_belongs_to_one_wheel() {
        let wheel = |sha256: &str| dist_file("x-1.0-py3-none-any.whl", "sha256", sha256);
        let (before, after) = (wheel(&"a".repeat(64)), wheel(&"b".repeat(64)));
        // Replaced at the same URL: neither the ranges' nor the verified wheel's
        // metadata of the old one answers for the new one.
        assert_ne!(
            BlobKey::for_file(&before, true),
            BlobKey::for_file(&after, true)
        );
        let verified = BlobKey::for_verified_metadata(&before).unwrap();
        assert_ne!(
            Some(&verified),
            BlobKey::for_verified_metadata(&after).as_ref()
        );
        assert_ne!(verified, BlobKey::for_file(&before, true));
        for key in [verified, BlobKey::for_file(&before, true)] {
            assert_eq!(BlobKey::parse(key.as_str()), Some(key));
        }
    }
}
