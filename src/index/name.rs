//! Project names: validation and PEP 503 normalisation.
//!
//! A `ProjectName` is always normalised, so a value of this type can name a
//! directory in the store and a route in the server without further checks:
//! normal names hold only `a-z`, `0-9`, `.`-free runs and single `-`.

use std::fmt;

/// A project name in its PEP 503 normal form (lowercase, runs of `-_.` folded to `-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

/// Why a string is not a project name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid Python project name")]
pub struct InvalidName(pub String);

impl ProjectName {
    /// Parses a name as a client or a page wrote it, and normalises it.
    ///
    /// PEP 508 names start and end with a letter or digit and hold only
    /// letters, digits, `-`, `_` and `.` between; everything else is refused, which also
    /// keeps `..`, `/` and `%` out of any path built from a name.
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let bytes = raw.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 200
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(InvalidName(raw.to_string()));
        }
        let mut normal = String::with_capacity(raw.len());
        let mut in_separator_run = false;
        for c in raw.chars() {
            if matches!(c, '-' | '_' | '.') {
                if !in_separator_run {
                    normal.push('-');
                }
                in_separator_run = true;
            } else {
                normal.push(c.to_ascii_lowercase());
                in_separator_run = false;
            }
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `raw` is already written in normal form (no redirect needed).
    pub fn is_spelled(&self, raw: &str) -> bool {
        self.0 == raw
    }
}

impl serde::Serialize for ProjectName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ProjectName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_per_pep_503() {
        for (raw, normal) in [
            ("Django", "django"),
            ("zope.interface", "zope-interface"),
            ("Foo__Bar--baz..Qux", "foo-bar-baz-qux"),
            ("a", "a"),
            ("requests_oauthlib", "requests-oauthlib"),
            ("A-._b", "a-b"),
        ] {
            assert_eq!(ProjectName::parse(raw).unwrap().as_str(), normal, "{raw}");
        }
    }

    #[test]
    fn refuses_names_that_could_escape_a_path() {
        for raw in [
            "", "..", "../etc", "a/b", "a%2fb", "-a", "a-", ".hidden", "a b", "é",
        ] {
            assert!(ProjectName::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn knows_when_a_spelling_is_already_normal() {
        let name = ProjectName::parse("Django").unwrap();
        assert!(!name.is_spelled("Django"));
        assert!(name.is_spelled("django"));
    }
}
