//! What ships beside the binary: the Makefile's devstack-style targets and the
//! compose fragment, run for real.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn unique_project(tag: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("dc{tag}{}x{nonce}", std::process::id())
}

#[test]
fn make_help_lists_the_devstack_style_targets() {
    let out = Command::new("make")
        .arg("help")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_ok(&out, "make help");
    let help = String::from_utf8_lossy(&out.stdout);
    for target in [
        "dev.cache.up",
        "dev.cache.down",
        "dev.cache.status",
        "dev.cache.enable.%",
        "dev.cache.disable.%",
        "dev.logs.devpi",
        "dev.cache.image",
        "dev.cache.warm",
        "dev.cache.export",
        "dev.cache.import",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(target)),
            "{target} missing from:\n{help}"
        );
    }
}

#[test]
fn make_targets_run_devcache() {
    let home = tempfile::tempdir().unwrap();
    let project = unique_project("make");
    let out = Command::new("make")
        .args(["--no-print-directory", "dev.cache.status"])
        .arg(format!("DEVCACHE={}", env!("CARGO_BIN_EXE_devcache")))
        .current_dir(repo())
        .env("HOME", home.path())
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .unwrap();
    assert_ok(&out, "make dev.cache.status");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("project {project}")), "{said}");
    assert!(said.contains("(absent)"), "{said}");
}

/// Removes the fragment's containers, network and volume however the test ends.
struct Compose {
    project: String,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(repo().join("compose-fragments/devpi.yml"))
            .args(args)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("DEVCACHE_UPSTREAM", "http://index.invalid/simple/")
            .env("DEVCACHE_PORT", "0")
            .output()
            .expect("docker-compose runs")
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        self.run(&["down", "--volumes"]);
    }
}

#[test]
fn the_compose_fragment_runs_the_cache_as_devstack_expects() {
    let home = tempfile::tempdir().unwrap();
    let image = support::devcache_command(home.path())
        .arg("image")
        .output()
        .unwrap();
    assert_ok(&image, "devcache image");
    let compose = Compose {
        project: unique_project("compose"),
    };
    assert_ok(&compose.run(&["up", "-d", "devpi"]), "docker-compose up");

    let container = format!("edx.{}.devpi", compose.project);
    let port = support::published_port(&container);
    let url = format!("http://127.0.0.1:{port}/+status");
    let status = get_json(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(status["upstream"], "http://index.invalid/simple/");

    let inspect = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.Config.Hostname}} {{range $k, $v := .NetworkSettings.Networks}}{{$v.Aliases}}{{end}}",
            &container,
        ])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.starts_with("devpi.devstack.edx "), "{inspect}");
    assert!(
        inspect.contains("edx.devstack.devpi") && inspect.contains("devpi"),
        "{inspect}"
    );

    // devcache's own status sees the compose-made cache as the project's cache.
    let status = support::devcache_command(home.path())
        .args(["status", "--project", &compose.project])
        .output()
        .unwrap();
    assert_ok(&status, "devcache status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("(running"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
}

/// GETs a JSON document, retrying while the server starts.
fn get_json(url: &str) -> Result<serde_json::Value, String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(20) {
        match runtime.block_on(async { client.get(url).send().await?.json().await }) {
            Ok(value) => return Ok(value),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last)
}
