//! Pins: files that eviction never removes, in named sets that `warm` and `import`
//! record and `devcache unpin` drops.
//!
//! ```text
//! pins/<set>    one file key a line; a set is e.g. `warm-lms` or `import-cache.tar.zst`
//! ```
//!
//! A set only grows while it is written (lines are appended, so a server pinning what
//! `warm` fetches and an `import` in another process never lose each other's lines);
//! unpinning removes the whole set. Eviction reads the sets afresh on each pass, so
//! an unpin takes effect without telling the server.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{BlobKey, Store};

/// What a pin set holds.
#[derive(Debug, Default)]
pub struct PinSet {
    pub keys: HashSet<BlobKey>,
}

/// A name a pin set can have: letters, digits, `.`, `_` and `-`, so that it is a
/// plain file name under `pins/`.
pub fn valid_set_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(in_set_name)
}

/// Whether `c` may stand in a set name (a plain file name, no separators).
fn in_set_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// `words` joined into a set name, anything else replaced by `-`.
pub fn set_name(words: &[&str]) -> String {
    words
        .join("-")
        .chars()
        .map(|c| if in_set_name(c) { c } else { '-' })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

impl Store {
    fn pins_dir(&self) -> PathBuf {
        self.root().join("pins")
    }

    /// Adds `keys` to the pin set `set`.
    pub fn pin<'a>(&self, set: &str, keys: impl IntoIterator<Item = &'a BlobKey>) -> Result<()> {
        if !valid_set_name(set) {
            bail!("{set:?} is not a pin set name; use letters, digits, '.', '_' and '-'");
        }
        let lines: String = keys
            .into_iter()
            .map(|key| format!("{}\n", key.as_str()))
            .collect();
        let dir = self.pins_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(set);
        // One write of whole lines in append mode: concurrent writers interleave lines,
        // never bytes of one.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(lines.as_bytes()))
            .with_context(|| format!("cannot record pins in {}", path.display()))
    }

    /// Every pin set, by name.
    pub fn pin_sets(&self) -> BTreeMap<String, PinSet> {
        let mut sets = BTreeMap::new();
        for entry in std::fs::read_dir(self.pins_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_set_name(&name) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let keys = text.lines().filter_map(BlobKey::parse).collect();
            sets.insert(name, PinSet { keys });
        }
        sets
    }

    /// Every pinned key, whichever set pins it.
    pub fn pinned(&self) -> HashSet<BlobKey> {
        self.pin_sets()
            .into_values()
            .flat_map(|set| set.keys)
            .collect()
    }

    /// The pinned files the cache holds, and their bytes.
    pub fn pinned_totals(&self) -> (u64, u64) {
        self.pinned()
            .iter()
            .filter_map(|key| self.blob_size(key))
            .fold((0, 0), |(files, bytes), size| (files + 1, bytes + size))
    }

    /// Drops the pin set `set`; `false` when there is none of that name.
    pub fn unpin(&self, set: &str) -> Result<bool> {
        if !valid_set_name(set) {
            return Ok(false);
        }
        let path = self.pins_dir().join(set);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_are_plain_file_names() {
        assert!(valid_set_name("warm-lms"));
        assert!(valid_set_name("import-cache.tar.zst"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_set_name(bad), "{bad:?}");
        }
        assert_eq!(set_name(&["warm", "base.txt"]), "warm-base.txt");
        assert_eq!(set_name(&["import", "my cache.tar"]), "import-my-cache.tar");
        assert!(valid_set_name(&set_name(&["..", "x/y"])));
    }

    #[test]
    fn sets_grow_by_appending_and_are_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (
            BlobKey::parse(&"a".repeat(64)).unwrap(),
            BlobKey::parse(&"b".repeat(64)).unwrap(),
        );
        store.pin("warm-lms", [&a]).unwrap();
        store.pin("warm-lms", [&b]).unwrap();
        store.pin("import-x.tar", [&a]).unwrap();
        assert_eq!(store.pin_sets()["warm-lms"].keys.len(), 2);
        assert_eq!(store.pinned().len(), 2);
        assert!(store.unpin("warm-lms").unwrap());
        assert!(!store.unpin("warm-lms").unwrap());
        assert_eq!(store.pinned(), HashSet::from([a]));
        assert!(store.pin("../x", [&b]).is_err());
    }
}
