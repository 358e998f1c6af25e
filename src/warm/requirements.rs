//! Reading pip requirement files: `name==version` pins with their hashes, markers and
//! extras, `-r`/`-c` includes, comments and continuation lines. Lines that cannot be
//! used are reported with their file and line number, and the rest goes on.

use std::collections::{BTreeMap, HashSet};

use futures::future::BoxFuture;
use pep508_rs::pep440_rs::{Operator, Version};
use pep508_rs::{MarkerEnvironment, Requirement, VerbatimUrl, VersionOrUrl};

use crate::index::ProjectName;

/// Reads a requirement file by path, wherever files live (this host, a container).
pub trait FileReader: Sync {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, anyhow::Result<String>>;
}

/// A pinned requirement: what `warm` fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub name: ProjectName,
    pub version: Version,
    /// sha256 digests from `--hash` options; empty when the line gave none.
    pub sha256: Vec<String>,
    /// Where it was pinned, for messages.
    pub origin: String,
}

/// What the files asked for.
#[derive(Debug, Default)]
pub struct Requirements {
    pub pins: Vec<Pin>,
    /// Lines naming a project without pinning one version: reported, not guessed.
    pub unpinned: Vec<String>,
    /// Lines whose marker excludes the target environment.
    pub excluded: Vec<String>,
    /// Lines that are not from an index (URLs, paths, editables): reported.
    pub not_from_index: Vec<String>,
    /// Lines that do not parse: `file:line: why`.
    pub errors: Vec<String>,
}

impl Requirements {
    /// Adds what another source (a lock, another file) asked for.
    pub fn absorb(&mut self, other: Requirements) {
        self.pins.extend(other.pins);
        self.unpinned.extend(other.unpinned);
        self.excluded.extend(other.excluded);
        self.not_from_index.extend(other.not_from_index);
        self.errors.extend(other.errors);
    }
}

/// One logical line of a requirement file, with where it started.
struct Line {
    number: usize,
    text: String,
}

/// Joins continuation lines and strips comments.
fn logical_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start = index + 1;
        }
        let without_comment = match raw.find('#') {
            Some(0) => "",
            Some(at) if raw[..at].ends_with(char::is_whitespace) => &raw[..at],
            _ => raw,
        };
        match without_comment.trim_end().strip_suffix('\\') {
            Some(continued) => {
                current.push_str(continued);
                current.push(' ');
            }
            None => {
                current.push_str(without_comment);
                if !current.trim().is_empty() {
                    lines.push(Line {
                        number: start,
                        text: current.trim().to_string(),
                    });
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(Line {
            number: start,
            text: current.trim().to_string(),
        });
    }
    lines
}

/// The value of an option written `-r x`, `-r=x`, `--requirement x` or `--requirement=x`.
fn option_value<'a>(line: &'a str, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix('=').unwrap_or(rest);
        (rest.starts_with([' ', '\t', '=']) || (name.len() == 2 && !rest.is_empty()))
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

/// A path relative to the including file's folder.
fn relative_to(including: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    match including.rfind('/') {
        Some(at) => format!("{}/{path}", &including[..at]),
        None => path.to_string(),
    }
}

/// Reads `roots` and everything they include, evaluating markers for `environment`.
pub async fn read(
    reader: &dyn FileReader,
    roots: &[String],
    environment: &MarkerEnvironment,
) -> Requirements {
    let mut reading = Reading {
        reader,
        environment,
        seen: HashSet::new(),
        found: Requirements::default(),
        constraints: BTreeMap::new(),
        loose: Vec::new(),
    };
    for root in roots {
        reading.file(root, false).await;
    }
    reading.finish()
}

/// A tree of requirement files being read: where files come from, the environment
/// markers are evaluated for, and what has been gathered so far.
struct Reading<'a> {
    reader: &'a dyn FileReader,
    environment: &'a MarkerEnvironment,
    /// Files already read: includes may loop.
    seen: HashSet<String>,
    found: Requirements,
    /// Pins from constraint files (`-c`), by project, with where each was pinned.
    constraints: BTreeMap<ProjectName, (Version, String)>,
    /// Requirements that pin no version, with their origin: a constraint may pin them.
    loose: Vec<(ProjectName, String)>,
}

impl Reading<'_> {
    /// What the files asked for, once all are read: loose requirements that a
    /// constraint pins become pins, and each pin is listed once.
    fn finish(self) -> Requirements {
        let Reading {
            mut found,
            constraints,
            loose,
            ..
        } = self;
        // A constraint file's pin settles a requirement that did not pin itself.
        for (name, origin) in loose {
            match constraints.get(&name) {
                Some((version, constraint_origin)) => found.pins.push(Pin {
                    name,
                    version: version.clone(),
                    sha256: Vec::new(),
                    origin: format!("{origin}, pinned by {constraint_origin}"),
                }),
                None => found.unpinned.push(origin),
            }
        }
        let mut unique = HashSet::new();
        found
            .pins
            .retain(|pin| unique.insert((pin.name.clone(), pin.version.clone())));
        found
    }

    /// Reads one file and, depth first, the files it includes; a constraint file's
    /// lines only constrain.
    fn file<'b>(&'b mut self, path: &'b str, is_constraints: bool) -> BoxFuture<'b, ()> {
        Box::pin(async move {
            if !self.seen.insert(path.to_string()) {
                return;
            }
            let text = match self.reader.read(path).await {
                Ok(text) => text,
                Err(e) => {
                    self.found.errors.push(format!("{path}: {e:#}"));
                    return;
                }
            };
            for line in logical_lines(&text) {
                let at = format!("{path}:{}", line.number);
                if let Some(include) = option_value(&line.text, &["-r", "--requirement"]) {
                    let include = relative_to(path, include);
                    self.file(&include, is_constraints).await;
                    continue;
                }
                if let Some(include) = option_value(&line.text, &["-c", "--constraint"]) {
                    let include = relative_to(path, include);
                    self.file(&include, true).await;
                    continue;
                }
                if line.text.starts_with("-e") || line.text.starts_with("--editable") {
                    self.found
                        .not_from_index
                        .push(format!("{at}: {}", line.text));
                    continue;
                }
                if line.text.starts_with('-') {
                    // Index options, --pre, --no-binary ...: they do not name a project.
                    continue;
                }
                let (spec, sha256) = split_hashes(&line.text);
                let requirement = match spec.parse::<Requirement<VerbatimUrl>>() {
                    Ok(requirement) => requirement,
                    Err(e) => {
                        let why = e.to_string();
                        let first = why.lines().next().unwrap_or("cannot parse");
                        self.found
                            .errors
                            .push(format!("{at}: {first}: {}", line.text));
                        continue;
                    }
                };
                if !requirement.evaluate_markers(self.environment, &[]) {
                    self.found.excluded.push(format!("{at}: {}", line.text));
                    continue;
                }
                let Ok(name) = ProjectName::parse(requirement.name.as_ref()) else {
                    self.found
                        .errors
                        .push(format!("{at}: not a project name: {}", line.text));
                    continue;
                };
                match requirement.version_or_url {
                    Some(VersionOrUrl::Url(_)) => self
                        .found
                        .not_from_index
                        .push(format!("{at}: {}", line.text)),
                    Some(VersionOrUrl::VersionSpecifier(specifiers)) => {
                        let pinned = match &specifiers[..] {
                            [only]
                                if matches!(
                                    only.operator(),
                                    Operator::Equal | Operator::ExactEqual
                                ) =>
                            {
                                Some(only.version().clone())
                            }
                            _ => None,
                        };
                        match (pinned, is_constraints) {
                            (Some(version), true) => {
                                self.constraints.insert(name, (version, at));
                            }
                            (Some(version), false) => self.found.pins.push(Pin {
                                name,
                                version,
                                sha256,
                                origin: at,
                            }),
                            (None, true) => {}
                            (None, false) => {
                                self.loose.push((name, format!("{at}: {}", line.text)))
                            }
                        }
                    }
                    None if !is_constraints => {
                        self.loose.push((name, format!("{at}: {}", line.text)))
                    }
                    None => {}
                }
            }
        })
    }
}

/// Splits `--hash=sha256:...` options off a requirement line.
fn split_hashes(line: &str) -> (String, Vec<String>) {
    let mut spec = Vec::new();
    let mut hashes = Vec::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let value = match word {
            "--hash" => words.next(),
            w => w.strip_prefix("--hash="),
        };
        match value {
            Some(hash) => {
                if let Some(digest) = hash.strip_prefix("sha256:") {
                    hashes.push(digest.to_ascii_lowercase());
                }
            }
            None => spec.push(word),
        }
    }
    (spec.join(" "), hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Files(HashMap<&'static str, &'static str>);

    impl FileReader for Files {
        fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
            Box::pin(async move {
                self.0
                    .get(path)
                    .map(|s| s.to_string())
                    .ok_or_else(|| anyhow::anyhow!("no such file"))
            })
        }
    }

    fn linux_311() -> MarkerEnvironment {
        crate::warm::target::Target::new("3.11", &[])
            .unwrap()
            .markers
    }

    #[tokio::test]
    async fn reads_pins_includes_hashes_markers_and_reports_the_rest() {
        let files = Files(HashMap::from([
            (
                "req/base.txt",
                "# comment\n-r common.txt\n-c constraints.txt\nDjango==4.2.1 \\\n    --hash=sha256:ABC \\\n    --hash=sha256:def  # trailing\n\
                 requests[socks]==2.31.0 ; python_version >= \"3.8\"\nold==1.0; python_version < \"3\"\n\
                 loose>=1\nsettled\nthing @ https://example.invalid/thing.whl\n-e .\nbroken===\n--index-url https://x.invalid/\n",
            ),
            ("req/common.txt", "six==1.16.0\n-r base.txt\n"),
            ("req/constraints.txt", "settled==3.0\nnever-required==9\n"),
        ]));
        let found = read(
            &files,
            &["req/base.txt".to_string(), "req/missing.txt".to_string()],
            &linux_311(),
        )
        .await;
        let pins: Vec<String> = found
            .pins
            .iter()
            .map(|p| format!("{}=={}", p.name, p.version))
            .collect();
        assert_eq!(
            pins,
            vec![
                "six==1.16.0",
                "django==4.2.1",
                "requests==2.31.0",
                "settled==3.0"
            ]
        );
        assert_eq!(found.pins[1].sha256, vec!["abc", "def"]);
        assert_eq!(found.pins[1].origin, "req/base.txt:4");
        assert_eq!(found.excluded.len(), 1, "{:?}", found.excluded);
        assert_eq!(found.unpinned, vec!["req/base.txt:9: loose>=1"]);
        assert_eq!(found.not_from_index.len(), 2, "{:?}", found.not_from_index);
        assert_eq!(found.errors.len(), 2, "{:?}", found.errors);
        assert!(
            found.errors[0].starts_with("req/base.txt:13: "),
            "{:?}",
            found.errors
        );
        assert!(
            found.errors[1].starts_with("req/missing.txt: "),
            "{:?}",
            found.errors
        );
    }
}
