//! The parsed form of one project's simple-API page, whichever format it came in.
//!
//! Upstream pages (HTML or JSON) are parsed into a `ProjectPage`, stored as such,
//! and rendered again in the format a client asks for. Keeping one model is what
//! lets an HTML-only upstream answer JSON clients and the reverse.

use serde::{Deserialize, Serialize};

use super::hashes::Hashes;
use super::name::ProjectName;

/// One project's files, as the upstream listed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectPage {
    pub name: ProjectName,
    pub files: Vec<DistFile>,
    /// The project's versions, when the upstream listed them (PEP 700); derived from
    /// file names otherwise.
    #[serde(default)]
    pub versions: Vec<String>,
}

/// One distribution file (wheel or sdist) and every attribute clients use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistFile {
    pub filename: String,
    /// Absolute upstream URL, without fragment. Only this server reads it: clients get
    /// links into devcache instead.
    pub url: String,
    #[serde(default)]
    pub hashes: Hashes,
    #[serde(default)]
    pub requires_python: Option<String>,
    /// `None`: not yanked; `Some("")`: yanked without a reason (PEP 592).
    #[serde(default)]
    pub yanked: Option<String>,
    /// PEP 658/714: the upstream serves `<url>.metadata`.
    #[serde(default)]
    pub core_metadata: Option<CoreMetadata>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub upload_time: Option<String>,
    #[serde(default)]
    pub gpg_sig: Option<bool>,
}

/// The `.metadata` file beside a distribution, with its hashes when the upstream gave them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CoreMetadata {
    #[serde(default)]
    pub hashes: Hashes,
}

impl DistFile {
    pub fn sha256(&self) -> Option<String> {
        self.hashes.sha256()
    }
}

impl CoreMetadata {
    pub fn sha256(&self) -> Option<String> {
        self.hashes.sha256()
    }
}

impl ProjectPage {
    /// Builds a page, deriving versions from file names when the upstream gave none.
    pub fn new(name: ProjectName, mut files: Vec<DistFile>, versions: Vec<String>) -> Self {
        // Kept as long as the page is: no spare capacity.
        files.shrink_to_fit();
        let versions = if versions.is_empty() {
            derive_versions(&name, &files)
        } else {
            versions
        };
        Self {
            name,
            files,
            versions,
        }
    }
}

/// The versions of `files` in the order they first appear; linear in the number of
/// files (pages of many thousands of links exist).
fn derive_versions(name: &ProjectName, files: &[DistFile]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .filter_map(|file| version_in_filename(name, &file.filename))
        .filter(|version| seen.insert(version.clone()))
        .collect()
}

/// The suffixes of source distributions, longest first where one ends another.
const SDIST_SUFFIXES: &[&str] = &[".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];

/// The version a distribution's file name carries: the second field of a wheel
/// name, or what follows the project's name in an sdist name.
pub fn version_in_filename(name: &ProjectName, filename: &str) -> Option<String> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return stem.split('-').nth(1).map(str::to_string);
    }
    let stem = SDIST_SUFFIXES
        .iter()
        .find_map(|ext| filename.strip_suffix(ext))?;
    stem.match_indices('-').find_map(|(at, _)| {
        let prefix = ProjectName::parse(&stem[..at]).ok()?;
        (prefix == *name).then(|| stem[at + 1..].to_string())
    })
}

/// The projects a distribution's file name may belong to, most likely first: a wheel's
/// first field; for an sdist, the name before its version (at the last `-`, as current
/// sdists are named), then each shorter prefix (older sdists kept `-` in the name).
/// Nothing for a name that is neither.
pub fn projects_in_filename(filename: &str) -> Vec<ProjectName> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        return stem
            .split('-')
            .next()
            .and_then(|name| ProjectName::parse(name).ok())
            .into_iter()
            .collect();
    }
    let Some(stem) = SDIST_SUFFIXES
        .iter()
        .find_map(|ext| filename.strip_suffix(ext))
    else {
        return Vec::new();
    };
    let mut names: Vec<ProjectName> = Vec::new();
    for (at, _) in stem.rmatch_indices('-') {
        if let Ok(name) = ProjectName::parse(&stem[..at])
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> ProjectName {
        ProjectName::parse(raw).unwrap()
    }

    #[test]
    fn reads_versions_from_wheel_and_sdist_names() {
        let django = name("Django");
        assert_eq!(
            version_in_filename(&django, "Django-4.2.1-py3-none-any.whl").as_deref(),
            Some("4.2.1")
        );
        assert_eq!(
            version_in_filename(&django, "Django-4.2.1.tar.gz").as_deref(),
            Some("4.2.1")
        );
        let zope = name("zope.interface");
        assert_eq!(
            version_in_filename(&zope, "zope-interface-6.0.zip").as_deref(),
            Some("6.0")
        );
        assert_eq!(version_in_filename(&zope, "README.txt"), None);
    }

    #[test]
    fn projects_are_read_from_file_names_most_likely_first() {
        assert_eq!(
            projects_in_filename("Django-4.2.1-py3-none-any.whl"),
            vec![name("django")]
        );
        assert_eq!(
            projects_in_filename("zope-interface-6.0.tar.gz"),
            vec![name("zope-interface"), name("zope")]
        );
        assert!(projects_in_filename("README.txt").is_empty());
        assert!(projects_in_filename("../x.whl").is_empty());
    }
}
