//! A file's hashes as index pages give them, held compactly: pages of 100,000 links
//! exist, and a map of strings per file was most of what such a page took in memory.
//!
//! The sha256, which devcache verifies files by and names them by, is kept as its 32
//! bytes; any other (md5 on old HTML pages, sha512) as the page gave it. Names are
//! lowercase, digests lowercase hex; they read and write as a JSON map in name order.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hashes {
    sha256: Option<[u8; 32]>,
    /// Other hashes, sorted by name: none, on almost every page.
    others: Vec<(String, String)>,
}

impl Hashes {
    /// Adds a hash as a page writes it; a digest that is not hex is dropped.
    pub fn insert(&mut self, name: &str, digest: &str) {
        let Some(digest) = normal_digest(digest) else {
            return;
        };
        let name = name.to_ascii_lowercase();
        if name == "sha256" {
            let mut bytes = [0u8; 32];
            if hex::decode_to_slice(&digest, &mut bytes).is_ok() {
                self.sha256 = Some(bytes);
                return;
            }
        }
        match self.others.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(at) => self.others[at].1 = digest,
            Err(at) => self.others.insert(at, (name, digest)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_none() && self.others.is_empty()
    }

    /// The sha256 in lowercase hex, when the page gave a well-formed one.
    pub fn sha256(&self) -> Option<String> {
        self.sha256.map(hex::encode)
    }

    /// Each hash by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, String)> {
        let sha256 = self.sha256.map(|bytes| ("sha256", hex::encode(bytes)));
        let before = self
            .others
            .iter()
            .take_while(|(name, _)| name.as_str() < "sha256");
        let after = self
            .others
            .iter()
            .skip_while(|(name, _)| name.as_str() < "sha256");
        before
            .map(|(n, d)| (n.as_str(), d.clone()))
            .chain(sha256)
            .chain(after.map(|(n, d)| (n.as_str(), d.clone())))
    }

    /// The one hash an HTML link's fragment carries: the sha256 when known.
    pub fn preferred(&self) -> Option<(&str, String)> {
        match self.sha256 {
            Some(bytes) => Some(("sha256", hex::encode(bytes))),
            None => self.iter().next(),
        }
    }
}

/// A hex digest as pages write it: lowercase, only hex digits.
pub fn normal_digest(digest: &str) -> Option<String> {
    let lower = digest.trim().to_ascii_lowercase();
    (!lower.is_empty() && lower.bytes().all(|b| b.is_ascii_hexdigit())).then_some(lower)
}

impl Serialize for Hashes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, digest) in self.iter() {
            map.serialize_entry(name, &digest)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HashesVisitor;
        impl<'de> Visitor<'de> for HashesVisitor {
            type Value = Hashes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of hash names to hex digests")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hashes, A::Error> {
                let mut hashes = Hashes::default();
                while let Some((name, digest)) = map.next_entry::<String, String>()? {
                    hashes.insert(&name, &digest);
                }
                Ok(hashes)
            }
        }
        deserializer.deserialize_map(HashesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sha256_as_bytes_and_others_in_name_order() {
        let mut hashes = Hashes::default();
        hashes.insert("SHA256", &"AB".repeat(32));
        hashes.insert("md5", "0F");
        hashes.insert("sha512", "cd");
        hashes.insert("blake2b", "not hex");
        assert_eq!(hashes.sha256(), Some("ab".repeat(32)));
        let names: Vec<&str> = hashes.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["md5", "sha256", "sha512"]);
        let json = serde_json::to_string(&hashes).unwrap();
        let again: Hashes = serde_json::from_str(&json).unwrap();
        assert_eq!(again, hashes);
    }

    #[test]
    fn a_malformed_sha256_is_kept_as_given_but_not_trusted() {
        let mut hashes = Hashes::default();
        hashes.insert("sha256", "ab");
        assert_eq!(hashes.sha256(), None);
        assert_eq!(hashes.preferred(), Some(("sha256", "ab".to_string())));
    }

    #[test]
    fn digests_are_lowercased_and_checked() {
        assert_eq!(normal_digest("ABCdef01").as_deref(), Some("abcdef01"));
        assert_eq!(normal_digest("xyz"), None);
        assert_eq!(normal_digest(""), None);
    }
}
