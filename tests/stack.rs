//! The devstack manager against the real Docker Engine: a devstack-shaped project
//! (network, `lms` and `studio` containers with compose labels, an upstream index in
//! a container), driven by the `devcache` binary as a user would.
//!
//! The consumer image is built by `.ci/test-image` from Debian's packages.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::dists::wheel;

const TEST_IMAGE: &str = "devcache-test/python:bookworm";

/// One test's devstack: its own project, network, containers and volume, all removed
/// when it is dropped, even when the test fails.
struct Devstack {
    project: String,
    home: tempfile::TempDir,
}

impl Devstack {
    fn new() -> Self {
        let image = docker(&["image", "inspect", TEST_IMAGE]);
        assert!(
            image.status.success(),
            "{TEST_IMAGE} is missing: run `bash .ci/test-image` (or `bash .ci/run`)"
        );
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let stack = Self {
            project: format!("dctest{}x{nonce}", std::process::id()),
            home: tempfile::tempdir().unwrap(),
        };
        assert_ok(
            &docker(&["network", "create", &stack.network()]),
            "docker network create",
        );
        stack
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    fn container(&self, service: &str) -> String {
        format!("edx.{}.{service}", self.project)
    }

    /// Starts a devstack service container, labelled as compose would.
    fn start_service(&self, service: &str) {
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &self.container(service),
            "--network",
            &self.network(),
            "--label",
            &format!("com.docker.compose.project={}", self.project),
            "--label",
            &format!("com.docker.compose.service={service}"),
            TEST_IMAGE,
        ]);
        assert_ok(&out, "start a service container");
    }

    /// Starts an index in a container on the network: static PEP 503 pages and files,
    /// served by Python's http.server. Returns its URL as the cache sees it.
    fn start_upstream(&self, dir: &Path) -> String {
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &self.container("upstream"),
            "--network",
            &self.network(),
            "-v",
            &format!("{}:/srv:ro", dir.display()),
            TEST_IMAGE,
            "python3",
            "-m",
            "http.server",
            "8000",
            "--directory",
            "/srv",
        ]);
        assert_ok(&out, "start the upstream container");
        format!("http://{}:8000/simple/", self.container("upstream"))
    }

    /// Runs devcache for this project, with a private HOME for its remembered choices.
    fn devcache(&self, args: &[&str]) -> Output {
        self.devcache_command(args).output().unwrap()
    }

    fn devcache_command(&self, args: &[&str]) -> Command {
        let mut command = support::devcache_command(self.home.path());
        command
            .args(args)
            .env("COMPOSE_PROJECT_NAME", &self.project);
        command
    }

    /// Runs a shell command in a service's container.
    fn exec(&self, service: &str, script: &str) -> Output {
        docker(&["exec", &self.container(service), "sh", "-c", script])
    }

    fn read(&self, service: &str, path: &str) -> String {
        stdout(&self.exec(service, &format!("cat {path} 2>/dev/null || true")))
    }

    /// The cache's `/+status`, through its published port.
    fn status(&self) -> serde_json::Value {
        let out = self.devcache(&["status", "--json"]);
        assert_ok(&out, "devcache status --json");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["cache"]["server"].clone()
    }
}

impl Drop for Devstack {
    fn drop(&mut self) {
        let listed = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name=edx.{}.", self.project),
        ]);
        for id in stdout(&listed).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", &self.network()]);
        docker(&["volume", "rm", &format!("{}_devpi_data", self.project)]);
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A static index (PEP 503 pages with sha256 fragments) of the given wheels.
fn static_index(dir: &Path, dists: &[(&str, support::dists::Dist)]) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let mut pages: std::collections::BTreeMap<&str, String> = Default::default();
    for (project, dist) in dists {
        std::fs::write(dir.join("files").join(&dist.filename), &dist.bytes).unwrap();
        pages.entry(project).or_default().push_str(&format!(
            "<a href=\"../../files/{0}#sha256={1}\">{0}</a><br/>\n",
            dist.filename,
            dist.sha256()
        ));
    }
    for (project, links) in pages {
        let page_dir = dir.join("simple").join(project);
        std::fs::create_dir_all(&page_dir).unwrap();
        std::fs::write(
            page_dir.join("index.html"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n"),
        )
        .unwrap();
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

const USERS_PIP_CONF: &str = "[global]\ntimeout = 42\n";

#[test]
fn up_wires_lms_and_studio_and_pip_installs_through_the_cache_online_then_offline() {
    let stack = Devstack::new();
    let index = tempfile::tempdir().unwrap();
    static_index(
        index.path(),
        &[
            ("demo", wheel("demo", "1.0", &["helper"])),
            ("helper", wheel("helper", "1.0", &[])),
        ],
    );
    let upstream = stack.start_upstream(index.path());
    stack.start_service("lms");
    // devstack's older name for cms: devcache must find it under either.
    stack.start_service("studio");
    let write_users_conf = format!(
        "mkdir -p /root/.pip && printf '{}' > /root/.pip/pip.conf",
        USERS_PIP_CONF.replace('\n', "\\n")
    );
    assert_ok(
        &stack.exec("lms", &write_users_conf),
        "write the user's pip.conf",
    );

    // up: the cache container, then pip.conf and uv.toml in both consumers.
    let out = stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]);
    assert_ok(&out, "devcache up");
    let said = stdout(&out);
    assert!(said.contains("created and started"), "{said}");
    assert!(
        said.contains("lms: wired (your own config is kept aside"),
        "{said}"
    );
    assert!(said.contains("studio: wired"), "{said}");
    let pip_conf = stack.read("lms", "/root/.pip/pip.conf");
    assert!(pip_conf.starts_with("# Written by devcache"), "{pip_conf}");
    assert!(
        pip_conf.contains("index-url = http://edx.devstack.devpi:3141/root/pypi/+simple/"),
        "{pip_conf}"
    );
    assert!(
        pip_conf.contains("trusted-host = edx.devstack.devpi"),
        "{pip_conf}"
    );
    assert_eq!(
        stack.read("lms", "/root/.pip/pip.conf.devcache-saved"),
        USERS_PIP_CONF
    );
    assert!(
        stack
            .read("studio", "/root/.config/uv/uv.toml")
            .contains("edx.devstack.devpi:3141")
    );

    // pip inside lms installs through the cache.
    let install = stack.exec(
        "lms",
        "pip install --no-cache-dir --target /tmp/site1 demo && cat /tmp/site1/demo/__init__.py",
    );
    assert_ok(&install, "pip install in lms");
    assert!(stdout(&install).contains("VERSION = \"1.0\""));
    let status = stack.status();
    assert_eq!(status["projects"], 2, "{status}");
    assert!(status["misses"].as_u64().unwrap() >= 4, "{status}");
    // The cache's counters per consumer: lms asked, studio did not.
    let report: serde_json::Value =
        serde_json::from_slice(&stack.devcache(&["status", "--json"]).stdout).unwrap();
    let lms = report["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "lms")
        .unwrap()
        .clone();
    assert!(lms["served"]["misses"].as_u64().unwrap() >= 4, "{report}");
    assert!(
        lms["served"]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("pip/"),
        "{report}"
    );
    let studio = report["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "studio")
        .unwrap()
        .clone();
    assert!(studio["served"].is_null(), "{report}");

    // disable gives the user's pip.conf back; enable wires it again.
    let out = stack.devcache(&["disable", "lms"]);
    assert_ok(&out, "devcache disable lms");
    assert!(
        stdout(&out).contains("your own are back"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stack.read("lms", "/root/.pip/pip.conf"), USERS_PIP_CONF);
    assert_eq!(stack.read("lms", "/root/.pip/pip.conf.devcache-saved"), "");
    let report = stdout(&stack.devcache(&["status"]));
    assert!(report.contains("disabled): user pip.conf"), "{report}");
    // A disabled consumer stays unwired by `up`.
    let out = stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]);
    assert_ok(&out, "devcache up with lms disabled");
    assert_eq!(stack.read("lms", "/root/.pip/pip.conf"), USERS_PIP_CONF);
    assert_ok(&stack.devcache(&["enable", "lms"]), "devcache enable lms");
    assert!(
        stack
            .read("lms", "/root/.pip/pip.conf")
            .starts_with("# Written by devcache")
    );

    // A second up changes nothing, and says so.
    let out = stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]);
    assert_ok(&out, "second devcache up");
    assert!(
        stdout(&out).contains("already up to date"),
        "{}",
        stdout(&out)
    );

    // logs: the requests, and -f streams new ones.
    let logs = stack.devcache(&["logs", "--tail", "50"]);
    assert_ok(&logs, "devcache logs");
    assert!(
        stderr(&logs).contains("/root/pypi/+simple/demo/"),
        "request lines are on stderr: {}",
        stderr(&logs)
    );
    let mut follow = stack
        .devcache_command(&["logs", "-f", "--tail", "0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let follow_err = follow.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(follow_err)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("/root/pypi/+simple/helper/"))
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_ok(
        &stack.exec(
            "lms",
            "pip download --no-cache-dir --no-deps -d /tmp/dl helper",
        ),
        "pip download",
    );
    let start = Instant::now();
    while !lines.is_finished() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert!(
        lines.join().unwrap().is_some(),
        "logs -f did not stream the new request"
    );

    // down keeps the data and takes the config out of the consumers.
    let out = stack.devcache(&["down"]);
    assert_ok(&out, "devcache down");
    assert!(stdout(&out).contains("kept"), "{}", stdout(&out));
    assert_eq!(stack.read("lms", "/root/.pip/pip.conf"), USERS_PIP_CONF);
    assert!(
        !docker(&["inspect", &stack.container("devpi")])
            .status
            .success()
    );

    // The upstream goes away; up again, and pip in lms installs from the warm cache.
    assert_ok(
        &docker(&["rm", "-f", &stack.container("upstream")]),
        "remove the upstream",
    );
    assert_ok(
        &stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]),
        "devcache up, offline",
    );
    let install = stack.exec(
        "lms",
        "pip install --no-cache-dir --target /tmp/site2 demo && cat /tmp/site2/helper/__init__.py",
    );
    assert_ok(&install, "pip install in lms with the upstream gone");
    let status = stack.status();
    assert_eq!(
        status["misses"], 0,
        "everything came from the cache: {status}"
    );
    assert!(status["hits"].as_u64().unwrap() >= 4, "{status}");
}

#[test]
fn watch_wires_a_recreated_consumer_but_not_a_disabled_one() {
    let stack = Devstack::new();
    stack.start_service("lms");
    stack.start_service("cms");
    assert_ok(
        &stack.devcache(&[
            "up",
            "--upstream",
            "http://index.invalid/simple/",
            "--port",
            "0",
        ]),
        "devcache up",
    );
    assert_ok(
        &stack.devcache(&["disable", "studio"]),
        "devcache disable studio",
    );
    let mut watch = stack
        .devcache_command(&["watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    for service in ["lms", "studio"] {
        assert_ok(
            &docker(&["rm", "-f", &stack.container(service)]),
            "remove a consumer",
        );
        stack.start_service(service);
    }
    wait_for("watch to wire the new lms", || {
        stack
            .read("lms", "/root/.pip/pip.conf")
            .starts_with("# Written by devcache")
    });
    std::thread::sleep(Duration::from_secs(1));
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(
        stack.read("studio", "/root/.pip/pip.conf"),
        "",
        "a disabled service was wired"
    );
}

#[test]
fn services_named_in_devcache_yml_are_wired_by_up_and_shown_by_status() {
    let stack = Devstack::new();
    for service in ["lms", "cms", "ecommerce", "discovery"] {
        stack.start_service(service);
    }
    std::fs::write(
        stack.home.path().join("devcache.yml"),
        "services: [ecommerce]\n",
    )
    .unwrap();
    let out = stack.devcache(&[
        "up",
        "--upstream",
        "http://index.invalid/simple/",
        "--port",
        "0",
    ]);
    assert_ok(&out, "devcache up");
    assert!(
        stdout(&out).contains("ecommerce: wired"),
        "{}",
        stdout(&out)
    );
    assert!(
        stack
            .read("ecommerce", "/root/.pip/pip.conf")
            .starts_with("# Written by devcache")
    );
    assert_eq!(
        stack.read("discovery", "/root/.pip/pip.conf"),
        "",
        "discovery was not asked for"
    );
    let report = stdout(&stack.devcache(&["status"]));
    assert!(
        report.contains("ecommerce") && report.contains("enabled): wired"),
        "{report}"
    );
    assert!(
        report.contains("discovery") && report.contains("not enabled): not wired"),
        "{report}"
    );
}

#[test]
fn errors_name_the_fix_and_exit_non_zero() {
    let stack = Devstack::new();
    let upstream = "http://index.invalid/simple/";

    let no_engine = stack
        .devcache_command(&["status"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(!no_engine.status.success());
    assert!(
        stderr(&no_engine).contains("is Docker running?"),
        "{}",
        stderr(&no_engine)
    );

    let unknown = stack.devcache(&["enable", "lmss"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown service \"lmss\""),
        "{}",
        stderr(&unknown)
    );

    let loopback = stack.devcache(&["up", "--upstream", "http://127.0.0.1:8080/simple/"]);
    assert!(!loopback.status.success());
    assert!(
        stderr(&loopback).contains("cannot reach"),
        "{}",
        stderr(&loopback)
    );

    let malformed = stack.devcache(&["up", "--upstream", "not a url"]);
    assert!(!malformed.status.success());
    assert!(
        stderr(&malformed).contains("is not a valid upstream URL"),
        "{}",
        stderr(&malformed)
    );

    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = stack.devcache(&["up", "--upstream", upstream, "--port", &port]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("port {port} is taken")),
        "{}",
        stderr(&out)
    );
    drop(taken);

    // No lms at all, and a stopped studio: the cache comes up, and each is named with its fix.
    stack.start_service("cms");
    assert_ok(
        &docker(&["stop", "-t", "0", &stack.container("cms")]),
        "stop studio",
    );
    let out = stack.devcache(&["up", "--upstream", upstream, "--port", "0"]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("no container for lms") && said.contains("make dev.up.lms"),
        "{said}"
    );
    assert!(
        said.contains("studio") && said.contains("is not running"),
        "{said}"
    );
    for out in [&no_engine, &unknown, &loopback, &malformed, &out] {
        assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    }
}

#[test]
fn warm_a_service_for_its_own_python_then_carry_the_cache_to_a_fresh_volume() {
    let stack = Devstack::new();
    let index = tempfile::tempdir().unwrap();
    let mut fast = wheel("fast", "1.0", &[]);
    fast.filename = "fast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl".into();
    let mut other_python = fast.clone();
    other_python.filename =
        "fast-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl".into();
    static_index(
        index.path(),
        &[
            ("demo", wheel("demo", "1.0", &["helper"])),
            ("helper", wheel("helper", "1.0", &[])),
            ("fast", fast),
            ("fast", other_python),
        ],
    );
    let upstream = stack.start_upstream(index.path());
    stack.start_service("lms");
    stack.start_service("cms");
    let write_requirements = "mkdir -p /srv/req && printf -- '-r extra.txt\\ndemo==1.0\\n' > /srv/req/base.txt \
                              && printf 'fast==1.0\\nhelper==1.0\\n' > /srv/req/extra.txt";
    assert_ok(
        &stack.exec("lms", write_requirements),
        "write lms's requirement files",
    );
    std::fs::write(
        stack.home.path().join("devcache.yml"),
        "warm:\n  lms: [/srv/req/base.txt]\n",
    )
    .unwrap();
    assert_ok(
        &stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]),
        "devcache up",
    );

    let out = stack.devcache(&["warm", "lms"]);
    assert_ok(&out, "devcache warm lms");
    let said = stdout(&out);
    assert!(
        said.contains("warmed for Python 3.11 on manylinux_2_"),
        "the container's own Python: {said}"
    );
    assert!(said.contains("3 projects, 3 files"), "{said}");
    let upstream_log = stderr(&docker(&["logs", &stack.container("upstream")]));
    assert!(upstream_log.contains("fast-1.0-cp311"), "{upstream_log}");
    assert!(
        !upstream_log.contains("fast-1.0-cp312"),
        "a wheel for another Python was fetched: {upstream_log}"
    );

    // The cache as a bundle, into a brand-new volume, with no upstream left.
    let bundle = stack.home.path().join("devstack-cache.tar.zst");
    let out = stack.devcache(&["export", bundle.to_str().unwrap()]);
    assert_ok(&out, "devcache export");
    assert!(
        stdout(&out).contains("exported 3 pages and 3 files"),
        "{}",
        stdout(&out)
    );
    assert_ok(
        &stack.devcache(&["down", "--volumes"]),
        "devcache down --volumes",
    );
    assert_ok(
        &docker(&["rm", "-f", &stack.container("upstream")]),
        "remove the upstream",
    );
    assert_ok(
        &stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]),
        "devcache up, empty",
    );
    let out = stack.devcache(&["import", bundle.to_str().unwrap()]);
    assert_ok(&out, "devcache import");
    assert!(
        stdout(&out).contains("imported 3 pages and 3 files"),
        "{}",
        stdout(&out)
    );
    let install = stack.exec(
        "lms",
        "pip install --no-cache-dir --target /tmp/site -r /srv/req/base.txt",
    );
    assert_ok(
        &install,
        "pip install -r in lms from the imported cache, offline",
    );
    // The cache container's files re-hashed against their names, in its volume.
    let out = stack.devcache(&["verify"]);
    assert_ok(&out, "devcache verify");
    assert!(stdout(&out).contains("checked 3 files"), "{}", stdout(&out));
}
