//! Every real client devstack's users have, through devcache: pip from 20.3 to the
//! current one (Debian 12's 23.0.1 among them) and an old and the current uv, each
//! through both URL forms (`/root/pypi/+simple/` and `/simple/`), downloading and
//! installing a project with a dependency. The venvs come from `.ci/clients`.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::dists::wheel;
use support::upstream::{Links, PageFormat, TestUpstream};
use support::{Devcache, JSON, client_tool, installed_version, pip_command, uv_command};

/// The pips of the matrix (the `clients` of `.ci/clients`), and whether each asks for
/// JSON pages: pip does from 22.2 on.
const PIPS: &[(&str, bool)] = &[
    ("pip-20.3.4", false),
    ("pip-21.3.1", false),
    ("pip-22.3.1", true),
    ("pip-23.0.1", true),
    ("pip-23.1.2", true),
    ("pip-24.0", true),
    ("pip-25.3", true),
    ("pip-26.3", true),
];

/// The uvs of the matrix; uv always asks for JSON first.
const UVS: &[&str] = &["uv-0.4.30", "uv-0.13.9"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_downloads_and_installs_from_a_json_upstream_through_both_url_forms() {
    every_client_downloads_and_installs(PageFormat::Json, Metadata::Served).await;
}

/// devcache offers core metadata for every wheel and derives it from the upstream's
/// wheels: every client must resolve and install with what it derives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_downloads_and_installs_from_an_upstream_without_core_metadata() {
    every_client_downloads_and_installs(PageFormat::Json, Metadata::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_downloads_and_installs_from_an_html_upstream_through_both_url_forms() {
    every_client_downloads_and_installs(PageFormat::Html, Metadata::Served).await;
}

/// One upstream in `format` with `demo` 1.0 and 2.0 (2.0 needs `helper`), one devcache
/// caching it, and every client at once through both URL forms. Fails with every
/// client and URL form that failed, and what the client said.
/// Whether the upstream serves core metadata (PEP 658) beside its wheels.
#[derive(Debug, Clone, Copy)]
enum Metadata {
    Served,
    None,
}

async fn every_client_downloads_and_installs(format: PageFormat, metadata: Metadata) {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start(format, Links::Relative).await;
    if let Metadata::None = metadata {
        upstream.without_metadata();
    }
    upstream.add("demo", wheel("demo", "1.0", &[]));
    upstream.add("demo", wheel("demo", "2.0", &["helper>=1.0"]));
    upstream.add("helper", wheel("helper", "1.0", &[]));
    let cache = Devcache::caching(tmp.path(), &upstream);
    let indexes = [cache.index(), format!("{}/simple/", cache.url)];

    let mut runs = Vec::new();
    for (client, asks_for_json) in PIPS.iter().copied() {
        let pip = client_tool(client, "pip");
        let (home, indexes) = (tmp.path().join(client), indexes.clone());
        runs.push(tokio::task::spawn_blocking(move || {
            pip_story(client, &pip, asks_for_json, &home, &indexes)
        }));
    }
    for client in UVS.iter().copied() {
        let (uv, python) = (client_tool(client, "uv"), client_tool(client, "python"));
        let (home, indexes) = (tmp.path().join(client), indexes.clone());
        runs.push(tokio::task::spawn_blocking(move || {
            uv_story(client, &uv, &python, &home, &indexes)
        }));
    }
    let mut failures = Vec::new();
    for run in runs {
        failures.extend(run.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} client runs failed ({format:?} upstream, metadata {metadata:?}):\n\n{}",
        failures.len(),
        (PIPS.len() + UVS.len()) * indexes.len(),
        failures.join("\n\n")
    );
}

/// `pip download demo` then `pip install --target DIR demo` through each index URL: the
/// downloads are the two wheels, the installed versions 2.0 and its helper. A pip that
/// asks for JSON is shown that it got JSON.
fn pip_story(
    client: &str,
    pip: &Path,
    asks_for_json: bool,
    home: &Path,
    indexes: &[String],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (form, index) in indexes.iter().enumerate() {
        let home = home.join(format!("form{form}"));
        let downloads = home.join("downloads");
        let target = home.join("site");
        std::fs::create_dir_all(&home).unwrap();
        let mut download = pip_command(pip, &home);
        download.args(["download", "--index-url", index, "-d"]);
        download.arg(&downloads).arg("demo");
        if asks_for_json {
            // Its debug log names the type of every page it read.
            download.arg("-vv");
        }
        let mut install = pip_command(pip, &home);
        install.args(["install", "--index-url", index, "--target"]);
        install.arg(&target).arg("demo");
        let outcome = run(download, |out| {
            let files = file_names(&downloads);
            let wanted = ["demo-2.0-py3-none-any.whl", "helper-1.0-py3-none-any.whl"];
            if files != wanted {
                return Err(format!("downloaded {files:?}, not {wanted:?}"));
            }
            let page = format!("Fetched page {index}demo/ as {JSON}");
            if asks_for_json && !String::from_utf8_lossy(&out.stdout).contains(&page) {
                return Err(format!("no {page:?}: not served JSON"));
            }
            Ok(())
        })
        .and_then(|()| run(install, |_| installed_demo_2(&target)));
        if let Err(why) = outcome {
            failures.push(format!("{client} via {index}: {why}"));
        }
    }
    failures
}

/// `uv pip compile` of `demo` then `uv pip install --target DIR demo` through each index
/// URL: the lock pins 2.0 and its helper, and they are what is installed.
fn uv_story(
    client: &str,
    uv: &Path,
    python: &Path,
    home: &Path,
    indexes: &[String],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (form, index) in indexes.iter().enumerate() {
        let home = home.join(format!("form{form}"));
        let requirements = home.join("requirements.in");
        let target = home.join("site");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(&requirements, "demo\n").unwrap();
        let mut compile = uv_command(uv, python, &home);
        compile.args(["pip", "compile", "--index-url", index]);
        compile.arg(&requirements);
        let mut install = uv_command(uv, python, &home);
        install.args(["pip", "install", "--index-url", index, "--target"]);
        install.arg(&target).arg("demo");
        let outcome = run(compile, |out| {
            let locked = String::from_utf8_lossy(&out.stdout);
            if locked.contains("demo==2.0") && locked.contains("helper==1.0") {
                Ok(())
            } else {
                Err(format!(
                    "the lock is not demo 2.0 and helper 1.0:\n{locked}"
                ))
            }
        })
        .and_then(|()| run(install, |_| installed_demo_2(&target)));
        if let Err(why) = outcome {
            failures.push(format!("{client} via {index}: {why}"));
        }
    }
    failures
}

/// Runs a client; on success checks its outcome with `check`. The error names the
/// command and carries the end of what the client said.
fn run(mut command: Command, check: impl Fn(&Output) -> Result<(), String>) -> Result<(), String> {
    let out = command.output().unwrap();
    let checked = if out.status.success() {
        check(&out)
    } else {
        Err(format!("exited with {}", out.status))
    };
    checked.map_err(|why| {
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        format!(
            "`{}` {why}\n--- stdout (end):\n{}\n--- stderr (end):\n{}",
            args.join(" "),
            tail(&out.stdout),
            tail(&out.stderr)
        )
    })
}

fn installed_demo_2(target: &Path) -> Result<(), String> {
    let installed = (
        installed_version(target, "demo"),
        installed_version(target, "helper"),
    );
    if installed == ("2.0".into(), "1.0".into()) {
        Ok(())
    } else {
        Err(format!(
            "installed (demo, helper) {installed:?}, not 2.0 and 1.0"
        ))
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The last 40 lines of a client's output: where its error is.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
