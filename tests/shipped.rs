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

/// `make -n` (print the commands, run nothing) from `dir`, with no devcache on PATH.
fn make_dry_run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new("make")
        .args(["-n", "--no-print-directory"])
        .args(args)
        .current_dir(dir)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .unwrap()
}

#[test]
fn make_targets_find_devcache_beside_the_makefile_from_another_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let makefile = repo().join("Makefile");
    let out = make_dry_run(
        elsewhere.path(),
        &["-f", makefile.to_str().unwrap(), "dev.cache.status"],
    );
    assert_ok(&out, "make -f <devcache>/Makefile dev.cache.status");
    let binary = repo().join("target/release/devcache");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} status", binary.display())
    );
}

#[test]
fn devstacks_local_mk_can_include_devcaches_targets() {
    // devstack's Makefile, as it is shaped: its own help, then `-include local.mk`.
    let devstack = tempfile::tempdir().unwrap();
    std::fs::write(
        devstack.path().join("Makefile"),
        ".DEFAULT_GOAL := help\n-include local.mk\n\nhelp: ## devstack's help\n\t@echo devstack help\n\n\
         dev.logs.%: ## devstack's logs\n\tdocker compose logs -f $*\n",
    )
    .unwrap();
    std::fs::write(
        devstack.path().join("local.mk"),
        format!("include {}\n", repo().join("devcache.mk").display()),
    )
    .unwrap();
    let out = make_dry_run(
        devstack.path(),
        &["dev.cache.status", "dev.logs.devpi", "dev.logs.lms"],
    );
    assert_ok(&out, "make dev.cache.status in devstack's directory");
    let said = String::from_utf8_lossy(&out.stdout);
    let binary = repo().join("target/release/devcache");
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            format!("{} status", binary.display()),
            format!("{} logs -f", binary.display()),
            "docker compose logs -f lms".to_string(),
        ],
        "devstack's own targets stay devstack's"
    );
    let help = make_dry_run(devstack.path(), &["help"]);
    assert_ok(&help, "make help in devstack's directory");
    assert!(
        String::from_utf8_lossy(&help.stderr).is_empty(),
        "no target of devstack's is overridden: {}",
        String::from_utf8_lossy(&help.stderr)
    );
}

/// Removes the fragment's containers, network, volume and image however the test ends.
struct Compose {
    project: String,
}

impl Compose {
    /// The image this test builds, never the user's `devcache:<version>`.
    fn image(&self) -> String {
        format!("devcache-test/{}:latest", self.project)
    }
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
            .env("DEVCACHE_IMAGE", self.image())
            .output()
            .expect("docker-compose runs")
    }

    /// devcache for this project and image, with a private HOME.
    fn devcache(&self, home: &std::path::Path, args: &[&str]) -> Output {
        support::devcache_command(home)
            .args(args)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("DEVCACHE_IMAGE", self.image())
            .output()
            .unwrap()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // A cache devcache recreated is no longer compose's to remove.
        let _ = Command::new("docker")
            .args(["rm", "-f", &format!("edx.{}.devpi", self.project)])
            .output();
        self.run(&["down", "--volumes"]);
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.image()])
            .output();
    }
}

#[test]
fn the_compose_fragment_runs_the_cache_as_devstack_expects() {
    let home = tempfile::tempdir().unwrap();
    let compose = Compose {
        project: unique_project("compose"),
    };
    assert_ok(&compose.devcache(home.path(), &["image"]), "devcache image");
    assert_ok(&compose.run(&["up", "-d", "devpi"]), "docker-compose up");

    let container = format!("edx.{}.devpi", compose.project);
    let port = Command::new("docker")
        .args(["port", &container, "3141/tcp"])
        .output()
        .unwrap();
    assert_ok(&port, "docker port");
    let port = String::from_utf8_lossy(&port.stdout);
    let port = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap()
        .trim()
        .to_string();
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
    let status = compose.devcache(home.path(), &["status"]);
    assert_ok(&status, "devcache status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("(running"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // up adopts it: the same image, upstream (its own), port and volume; no lms or
    // studio in this project is said and skipped, not an error.
    let id = |name: &str| {
        String::from_utf8_lossy(
            &Command::new("docker")
                .args(["inspect", "-f", "{{.Id}}", name])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string()
    };
    let before = id(&container);
    let up = compose.devcache(home.path(), &["up", "--port", "0"]);
    assert_ok(&up, "devcache up beside the compose-made cache");
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(!said.contains("recreated"), "{said}");
    assert!(said.contains("already up to date"), "{said}");
    assert!(said.contains("lms: no container in project"), "{said}");
    assert_eq!(id(&container), before, "the cache was replaced: {said}");

    // A real difference recreates it, and is named.
    let up = compose.devcache(
        home.path(),
        &[
            "up",
            "--port",
            "0",
            "--upstream",
            "http://other.invalid/simple/",
        ],
    );
    assert_ok(&up, "devcache up with another upstream");
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(
        said.contains("recreated, since its upstream is http://index.invalid/simple/, not http://other.invalid/simple/"),
        "{said}"
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
