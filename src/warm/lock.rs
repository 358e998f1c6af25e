//! Lock files: uv's `uv.lock` and PEP 751's `pylock.toml`, read into the pins `warm`
//! fetches. A lock names every file with its sha256, so each pin carries the hashes of
//! its package's files: the cache's own page is then matched by filename and hash,
//! never by the lock's URLs, and a lock made against another index warms as well.
//! Which files of a pin the target installs is decided as for requirement files
//! (`fill::select`); which packages it installs is decided here, from the lock's markers.

use std::collections::{BTreeMap, BTreeSet};

use pep508_rs::pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerEnvironment, MarkerTree};
use serde::Deserialize;

use super::requirements::{FileReader, Pin, Requirements};
use crate::index::ProjectName;

/// Whether a path names a lock file rather than a requirement file: `uv.lock`,
/// `pylock.toml` or `pylock.<name>.toml`.
pub fn is_lock(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "uv.lock" || (name.starts_with("pylock.") && name.ends_with(".toml"))
}

/// The hosts of the https file URLs of a lock's packages from an index (uv.lock's
/// `sdist` and `wheels`, pylock.toml's `sdist` and `wheels`), sorted, each once.
pub fn file_hosts(text: &str) -> anyhow::Result<BTreeSet<String>> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("not TOML: {}", first_line(&e.to_string())))?;
    let packages = table
        .get("package")
        .or_else(|| table.get("packages"))
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut hosts = BTreeSet::new();
    for package in packages.iter().filter_map(toml::Value::as_table) {
        let from_index = package
            .get("source")
            .and_then(toml::Value::as_table)
            .is_some_and(|source| source.contains_key("registry"))
            || package.contains_key("index");
        if !from_index {
            continue;
        }
        let sdist = package.get("sdist").into_iter();
        let wheels = package
            .get("wheels")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten();
        for file in sdist.chain(wheels) {
            let url = file.get("url").and_then(toml::Value::as_str);
            if let Some(url) = url.and_then(|u| url::Url::parse(u).ok())
                && url.scheme() == "https"
                && let Some(host) = url.host_str()
            {
                hosts.insert(host.to_ascii_lowercase());
            }
        }
    }
    Ok(hosts)
}

/// Reads the lock at `path` and lists what the target installs from it.
pub async fn read(
    reader: &dyn FileReader,
    path: &str,
    environment: &MarkerEnvironment,
) -> Requirements {
    let mut found = Requirements::default();
    let text = match reader.read(path).await {
        Ok(text) => text,
        Err(e) => {
            found.errors.push(format!("{path}: {e:#}"));
            return found;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(e) => {
            found
                .errors
                .push(format!("{path}: not TOML: {}", first_line(&e.to_string())));
            return found;
        }
    };
    let parsed = if table.contains_key("lock-version") {
        toml::Value::Table(table)
            .try_into::<PyLock>()
            .map(|lock| lock.packages(path, environment, &mut found))
    } else if table.contains_key("package") || table.contains_key("version") {
        toml::Value::Table(table)
            .try_into::<UvLock>()
            .map(|lock| lock.packages(path, environment, &mut found))
    } else {
        found.errors.push(format!(
            "{path}: neither a uv.lock nor a pylock.toml (PEP 751)"
        ));
        return found;
    };
    if let Err(e) = parsed {
        found.errors.push(format!(
            "{path}: cannot read the lock: {}",
            first_line(&e.to_string())
        ));
    }
    found
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// A package of a lock that comes from an index, with the sha256 of its files.
fn pin<'a>(
    name: &str,
    version: Option<&str>,
    hashes: impl Iterator<Item = &'a str>,
    path: &str,
    found: &mut Requirements,
) {
    let shown = format!("{name}=={}", version.unwrap_or("?"));
    let parsed = ProjectName::parse(name)
        .map_err(|_| "not a project name".to_string())
        .and_then(|name| {
            let version = version.ok_or("no version")?;
            let version = version
                .parse::<Version>()
                .map_err(|_| format!("not a version: {version}"))?;
            Ok((name, version))
        });
    match parsed {
        Ok((name, version)) => found.pins.push(Pin {
            name,
            version,
            sha256: hashes.map(str::to_ascii_lowercase).collect(),
            origin: path.to_string(),
        }),
        Err(why) => found.errors.push(format!("{path}: {shown}: {why}")),
    }
}

/// Whether a marker holds for the target; one that does not parse holds (the package
/// may be installed, and warming it costs only bytes).
fn holds(marker: Option<&str>, environment: &MarkerEnvironment, extras: &[ExtraName]) -> bool {
    marker
        .and_then(|m| m.parse::<MarkerTree>().ok())
        .is_none_or(|m| m.evaluate(environment, extras))
}

/// `uv.lock`: a universal lock, a graph of packages whose edges carry markers.
#[derive(Deserialize)]
struct UvLock {
    #[serde(default, rename = "package")]
    packages: Vec<UvPackage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UvPackage {
    name: String,
    version: Option<String>,
    #[serde(default)]
    source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    dependencies: Vec<UvDependency>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, Vec<UvDependency>>,
    #[serde(default)]
    dev_dependencies: BTreeMap<String, Vec<UvDependency>>,
    sdist: Option<UvFile>,
    #[serde(default)]
    wheels: Vec<UvFile>,
}

#[derive(Deserialize)]
struct UvDependency {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    extra: Vec<String>,
}

#[derive(Deserialize)]
struct UvFile {
    hash: Option<String>,
}

impl UvPackage {
    /// The project's own packages (the workspace): where installing starts.
    fn is_root(&self) -> bool {
        self.source.contains_key("editable") || self.source.contains_key("virtual")
    }

    fn is_registry(&self) -> bool {
        self.source.contains_key("registry")
    }

    fn shown_source(&self) -> String {
        self.source
            .iter()
            .map(|(kind, value)| match value {
                toml::Value::String(at) => format!("{kind} {at}"),
                other => format!("{kind} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl UvLock {
    /// Walks the graph from the workspace's packages (with every extra and dependency
    /// group they declare), following the edges whose markers hold for the target.
    fn packages(self, path: &str, environment: &MarkerEnvironment, found: &mut Requirements) {
        let packages = self.packages;
        let mut reached = BTreeSet::new();
        let mut queue: Vec<(usize, Vec<String>)> = packages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_root())
            .map(|(at, _)| (at, Vec::new()))
            .collect();
        if queue.is_empty() {
            // No workspace package (a lock of a script, say): all of it.
            queue = (0..packages.len()).map(|at| (at, Vec::new())).collect();
        }
        // Each package by its normalised name, to follow dependencies in one look-up.
        let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (at, package) in packages.iter().enumerate() {
            by_name.entry(name_key(&package.name)).or_default().push(at);
        }
        let mut expanded = BTreeSet::new();
        while let Some((at, extras)) = queue.pop() {
            reached.insert(at);
            if !expanded.insert((at, extras.clone())) {
                continue;
            }
            let package = &packages[at];
            let mut edges: Vec<(&UvDependency, Vec<ExtraName>)> = package
                .dependencies
                .iter()
                .map(|d| (d, Vec::new()))
                .collect();
            for (extra, deps) in &package.optional_dependencies {
                if package.is_root() || extras.contains(extra) {
                    let named: Vec<ExtraName> = extra.parse().into_iter().collect();
                    edges.extend(deps.iter().map(|d| (d, named.clone())));
                }
            }
            if package.is_root() {
                for deps in package.dev_dependencies.values() {
                    edges.extend(deps.iter().map(|d| (d, Vec::new())));
                }
            }
            for (dependency, active) in edges {
                if !holds(dependency.marker.as_deref(), environment, &active) {
                    continue;
                }
                let named = by_name.get(&name_key(&dependency.name));
                let to = named.into_iter().flatten().filter(|&&next| {
                    dependency.version.is_none() || packages[next].version == dependency.version
                });
                for &next in to {
                    queue.push((next, dependency.extra.clone()));
                }
            }
        }
        for (at, package) in packages.iter().enumerate() {
            let shown = format!(
                "{path}: {}=={}",
                package.name,
                package.version.as_deref().unwrap_or("?")
            );
            if !reached.contains(&at) {
                found.excluded.push(shown);
            } else if package.is_root() {
                // The project itself.
            } else if !package.is_registry() {
                found
                    .not_from_index
                    .push(format!("{shown} ({})", package.shown_source()));
            } else {
                let files = package.sdist.iter().chain(&package.wheels);
                let hashes = files.filter_map(|f| f.hash.as_deref()?.strip_prefix("sha256:"));
                let version = package.version.as_deref();
                pin(&package.name, version, hashes, path, found);
            }
        }
    }
}

/// A lock's package name as the key it is matched by: normalised (PEP 503), or as
/// written when it is no valid name.
fn name_key(name: &str) -> String {
    ProjectName::parse(name).map_or_else(|_| name.to_string(), |n| n.as_str().to_string())
}

/// `pylock.toml` (PEP 751): a flat list of packages, each with its own marker.
#[derive(Deserialize)]
struct PyLock {
    #[serde(default)]
    packages: Vec<PyLockPackage>,
}

#[derive(Deserialize)]
struct PyLockPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    sdist: Option<PyLockFile>,
    #[serde(default)]
    wheels: Vec<PyLockFile>,
    vcs: Option<toml::Table>,
    directory: Option<toml::Table>,
    archive: Option<toml::Table>,
}

#[derive(Deserialize)]
struct PyLockFile {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

impl PyLock {
    fn packages(self, path: &str, environment: &MarkerEnvironment, found: &mut Requirements) {
        for package in self.packages {
            let shown = format!(
                "{path}: {}=={}",
                package.name,
                package.version.as_deref().unwrap_or("?")
            );
            let elsewhere = [
                ("vcs", &package.vcs),
                ("directory", &package.directory),
                ("archive", &package.archive),
            ]
            .into_iter()
            .find_map(|(kind, table)| Some((kind, table.as_ref()?)));
            if !holds(package.marker.as_deref(), environment, &[]) {
                found.excluded.push(shown);
            } else if let Some((kind, table)) = elsewhere {
                let at = ["url", "path"]
                    .into_iter()
                    .find_map(|key| table.get(key)?.as_str())
                    .unwrap_or("");
                found.not_from_index.push(format!("{shown} ({kind} {at})"));
            } else {
                let files = package.sdist.iter().chain(&package.wheels);
                let hashes = files.filter_map(|f| f.hashes.get("sha256").map(String::as_str));
                let version = package.version.as_deref();
                pin(&package.name, version, hashes, path, found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;

    struct One(String);

    impl FileReader for One {
        fn read<'a>(&'a self, _: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    fn linux_311() -> MarkerEnvironment {
        crate::warm::target::Target::new("3.11", &[])
            .unwrap()
            .markers
    }

    fn pins(found: &Requirements) -> Vec<String> {
        let mut pins: Vec<String> = found
            .pins
            .iter()
            .map(|p| format!("{}=={} {}", p.name, p.version, p.sha256.join(",")))
            .collect();
        pins.sort();
        pins
    }

    /// A package of a uv.lock from an index, with one file per `(filename, hash)`
    /// (`.whl` a wheel, else the sdist) and any further lines.
    fn registry(name: &str, version: &str, files: &[(&str, &str)], more: &str) -> String {
        let url = |filename: &str, hash: &str| {
            format!(
                "{{ url = \"https://files.example.invalid/{filename}\", hash = \"sha256:{hash}\" }}"
            )
        };
        let wheels: Vec<String> = files
            .iter()
            .filter(|(f, _)| f.ends_with(".whl"))
            .map(|(f, h)| url(f, h))
            .collect();
        let sdist = files
            .iter()
            .find(|(f, _)| !f.ends_with(".whl"))
            .map(|(f, h)| format!("sdist = {}\n", url(f, h)))
            .unwrap_or_default();
        format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
             source = {{ registry = \"https://index.example.invalid/simple\" }}\n\
             {sdist}wheels = [{}]\n{more}",
            wheels.join(", ")
        )
    }

    #[test]
    fn file_hosts_are_those_of_index_packages_files() {
        let lock = "version = 1\n\n[[package]]\nname = \"app\"\nversion = \"0.1\"\nsource = { virtual = \".\" }\n\n\
            [[package]]\nname = \"demo\"\nversion = \"1.0\"\nsource = { registry = \"https://index.example.invalid/simple\" }\n\
            sdist = { url = \"https://files.example.invalid/p/demo-1.0.tar.gz\", hash = \"sha256:00\" }\n\
            wheels = [{ url = \"https://Wheels.example.invalid/p/demo-1.0-py3-none-any.whl\", hash = \"sha256:00\" }]\n\n\
            [[package]]\nname = \"direct\"\nversion = \"1.0\"\nsource = { url = \"https://direct.example.invalid/direct-1.0.tar.gz\" }\n\
            sdist = { url = \"https://direct.example.invalid/direct-1.0.tar.gz\", hash = \"sha256:00\" }\n";
        let hosts: Vec<String> = file_hosts(lock).unwrap().into_iter().collect();
        assert_eq!(
            hosts,
            vec!["files.example.invalid", "wheels.example.invalid"]
        );
        assert!(file_hosts("[[package]\n").is_err());
    }

    #[tokio::test]
    async fn a_uv_lock_is_walked_from_the_project_along_the_edges_that_hold() {
        let root = r#"
version = 1
revision = 3
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "Django" },
    { name = "pywin", marker = "sys_platform == 'win32'" },
    { name = "req", extra = ["socks"] },
    { name = "tool", source = { git = "https://example.invalid/tool.git" } },
]

[package.optional-dependencies]
speed = [{ name = "fast", marker = "python_version >= '3.10'" }]

[package.dev-dependencies]
dev = [{ name = "pytest" }]

[[package]]
name = "tool"
version = "0.3"
source = { git = "https://example.invalid/tool.git?rev=main#abc" }
"#;
        let lock = [
            root.to_string(),
            registry(
                "django",
                "4.2.1",
                &[
                    ("django-4.2.1.tar.gz", "AA"),
                    ("django-4.2.1-py3-none-any.whl", "bb"),
                ],
                "",
            ),
            registry(
                "pywin",
                "1.0",
                &[("pywin-1.0-py3-none-win_amd64.whl", "cc")],
                "",
            ),
            registry(
                "req",
                "2.0",
                &[("req-2.0-py3-none-any.whl", "dd")],
                "dependencies = [{ name = \"idna\" }]\n\
                 [package.optional-dependencies]\n\
                 socks = [{ name = \"pysocks\" }]\nother = [{ name = \"never\" }]\n",
            ),
            registry("idna", "3.0", &[("idna-3.0-py3-none-any.whl", "ee")], ""),
            registry("pysocks", "1.7", &[("PySocks-1.7.tar.gz", "ff")], ""),
            registry("never", "1.0", &[("never-1.0.tar.gz", "11")], ""),
            registry("fast", "1.0", &[("fast-1.0-py3-none-any.whl", "22")], ""),
            registry(
                "pytest",
                "8.0",
                &[("pytest-8.0-py3-none-any.whl", "33")],
                "",
            ),
        ]
        .concat();
        let found = read(&One(lock), "repo/uv.lock", &linux_311()).await;
        assert_eq!(
            pins(&found),
            vec![
                "django==4.2.1 aa,bb",
                "fast==1.0 22",
                "idna==3.0 ee",
                "pysocks==1.7 ff",
                "pytest==8.0 33",
                "req==2.0 dd",
            ]
        );
        assert_eq!(
            found.excluded,
            vec!["repo/uv.lock: pywin==1.0", "repo/uv.lock: never==1.0"]
        );
        assert_eq!(found.not_from_index.len(), 1, "{:?}", found.not_from_index);
        assert!(
            found.not_from_index[0].contains("tool==0.3 (git https://example.invalid/tool.git")
        );
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        assert_eq!(found.pins[0].origin, "repo/uv.lock");
    }

    #[tokio::test]
    async fn a_pylock_lists_its_packages_with_their_markers() {
        let lock = r#"
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "django"
version = "4.2.1"
index = "https://index.example.invalid/simple"
sdist = { url = "https://files.example.invalid/django-4.2.1.tar.gz", hashes = { sha256 = "AA" } }
wheels = [{ url = "https://files.example.invalid/django-4.2.1-py3-none-any.whl", hashes = { sha256 = "bb" } }]

[[packages]]
name = "pywin"
version = "1.0"
marker = "sys_platform == 'win32'"
wheels = [{ url = "https://files.example.invalid/pywin-1.0-py3-none-win_amd64.whl", hashes = { sha256 = "cc" } }]

[[packages]]
name = "tool"
vcs = { type = "git", url = "https://example.invalid/tool.git", commit-id = "abc" }

[[packages]]
name = "noversion"
wheels = [{ url = "https://files.example.invalid/noversion-1.0-py3-none-any.whl", hashes = { sha256 = "dd" } }]
"#;
        let found = read(&One(lock.into()), "pylock.toml", &linux_311()).await;
        assert_eq!(pins(&found), vec!["django==4.2.1 aa,bb"]);
        assert_eq!(found.excluded, vec!["pylock.toml: pywin==1.0"]);
        assert_eq!(
            found.not_from_index,
            vec!["pylock.toml: tool==? (vcs https://example.invalid/tool.git)"]
        );
        assert_eq!(found.errors, vec!["pylock.toml: noversion==?: no version"]);
    }

    #[tokio::test]
    async fn what_is_not_a_lock_is_named() {
        let found = read(&One("[tool]\nx = 1\n".into()), "uv.lock", &linux_311()).await;
        assert!(found.errors[0].contains("neither a uv.lock nor a pylock.toml"));
        let found = read(&One("[[package]\nname".into()), "uv.lock", &linux_311()).await;
        assert!(
            found.errors[0].starts_with("uv.lock: not TOML"),
            "{:?}",
            found.errors
        );
        assert!(is_lock("/edx/app/edxapp/edx-platform/uv.lock"));
        assert!(is_lock("pylock.toml") && is_lock("a/pylock.dev.toml"));
        assert!(!is_lock("requirements/base.txt") && !is_lock("pyproject.toml"));
    }
}
