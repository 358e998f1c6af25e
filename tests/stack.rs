//! The devstack manager against the real Docker Engine: a devstack-shaped project
//! (network, `lms` and `studio` containers with compose labels, an upstream index in
//! a container), driven by the `devcache` binary as a user would.
//!
//! The consumer image is built by `.ci/test-image` from Debian's packages.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::dists::{static_index, wheel};
use support::wait_for;

const TEST_IMAGE: &str = "devcache-test/python:bookworm";

/// One test's devstack: its own project, network, containers, volume and devcache
/// image tag, all removed when it is dropped, even when the test fails.
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

    /// The devcache image this test builds, never the user's `devcache:<version>`.
    fn image(&self) -> String {
        format!("devcache-test/{}:latest", self.project)
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

    /// What `docker-compose up -d --force-recreate SERVICE` does: a new container
    /// under the same name and labels, without devcache's files.
    fn recreate_service(&self, service: &str) {
        assert_ok(
            &docker(&["rm", "-f", &self.container(service)]),
            "remove a consumer",
        );
        self.start_service(service);
    }

    /// Starts an index in a container on the network: static PEP 503 pages and files,
    /// served by Python's http.server. Returns its URL as the cache sees it.
    fn start_upstream(&self, dir: &Path) -> String {
        support::start_index_container(&self.container("upstream"), Some(&self.network()), dir);
        format!("http://{}:8000/simple/", self.container("upstream"))
    }

    /// Runs devcache for this project, with a private HOME for its remembered choices.
    fn devcache(&self, args: &[&str]) -> Output {
        self.devcache_command(args).output().unwrap()
    }

    /// Starts `devcache watch`, its stdout as asked, its stderr dropped.
    fn watch(&self, stdout: Stdio) -> std::process::Child {
        self.devcache_command(&["watch"])
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Runs `devcache watch` while `meanwhile` happens, until watch says a line that
    /// starts with `expected`; what it said.
    fn watch_while(&self, meanwhile: impl FnOnce(), expected: &str) -> Vec<String> {
        let mut watch = self.watch(Stdio::piped());
        let watch_out = watch.stdout.take().unwrap();
        let (said_tx, said_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(watch_out)
                .lines()
                .map_while(Result::ok)
            {
                let _ = said_tx.send(line);
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        meanwhile();
        let mut said = Vec::new();
        wait_for(&format!("watch to say {expected:?}"), || {
            said.extend(said_rx.try_iter());
            said.iter().any(|l| l.starts_with(expected))
        });
        watch.kill().unwrap();
        watch.wait().unwrap();
        said
    }

    /// Runs devcache, which must succeed, and returns what it said on stdout.
    fn said(&self, args: &[&str]) -> String {
        let out = self.devcache(args);
        assert_ok(&out, &format!("devcache {}", args.join(" ")));
        stdout(&out)
    }

    fn devcache_command(&self, args: &[&str]) -> Command {
        let mut command = support::devcache_command(self.home.path());
        command
            .args(args)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("DEVCACHE_IMAGE", self.image());
        command
    }

    /// Runs a shell command in a service's container.
    fn exec(&self, service: &str, script: &str) -> Output {
        docker(&["exec", &self.container(service), "sh", "-c", script])
    }

    /// Copies the test venv's uv into a service's container (the test image has none).
    fn copy_uv(&self, service: &str) {
        let uv = support::venv_tool("uv");
        let into = format!("{}:/usr/local/bin/uv", self.container(service));
        assert_ok(
            &docker(&["cp", uv.to_str().unwrap(), &into]),
            &format!("copy uv into {service}"),
        );
    }

    fn read(&self, service: &str, path: &str) -> String {
        stdout(&self.exec(service, &format!("cat {path} 2>/dev/null || true")))
    }

    /// `devcache up` with this upstream, then `devcache warm lms`; what warm said.
    fn up_and_warm_lms(&self, upstream: &str) -> String {
        assert_ok(
            &self.devcache(&["up", "--upstream", upstream, "--port", "0"]),
            "devcache up",
        );
        let out = self.devcache(&["warm", "lms"]);
        assert_ok(&out, "devcache warm lms");
        stdout(&out)
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
        docker(&["image", "rm", "-f", &self.image()]);
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

/// A user's own uv.toml in studio, kept while studio is wired and given back after.
const USERS_UV_TOML: &str = "concurrent-downloads = 3\n";

const USERS_PIP_CONF: &str = "[global]\ntimeout = 42\n\n[install]\nno-compile = true\n";

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
    assert_ok(
        &stack.exec(
            "studio",
            &format!(
                "mkdir -p /root/.config/uv && printf '{USERS_UV_TOML}' > /root/.config/uv/uv.toml"
            ),
        ),
        "write the user's uv.toml",
    );

    // up: the cache container, then pip.conf and uv.toml in both consumers.
    let out = stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]);
    assert_ok(&out, "devcache up");
    let said = stdout(&out);
    assert!(said.contains("created and started"), "{said}");
    assert!(
        said.contains("image devcache-test/") && said.contains(": it was missing"),
        "{said}"
    );
    // The image sets a container's defaults; nothing is guessed from the host's files.
    let env = stdout(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.Env}}",
        &stack.image(),
    ]));
    assert!(
        env.contains("DEVCACHE_HOST=0.0.0.0") && env.contains("DEVCACHE_DATA_DIR=/data"),
        "{env}"
    );
    assert!(
        said.contains("lms: wired (your own settings are kept"),
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
    // The user's own settings still apply while lms is wired.
    assert!(
        pip_conf.contains("timeout = 42") && pip_conf.contains("[install]\nno-compile = true"),
        "{pip_conf}"
    );
    let config = stdout(&stack.exec("lms", "pip config list"));
    assert!(
        config.contains("global.timeout='42'") && config.contains("install.no-compile='true'"),
        "{config}"
    );
    assert_eq!(
        stack.read("lms", "/root/.pip/pip.conf.devcache-saved"),
        USERS_PIP_CONF
    );
    let uv_toml = stack.read("studio", "/root/.config/uv/uv.toml");
    assert!(uv_toml.contains("edx.devstack.devpi:3141"), "{uv_toml}");
    // The user's own uv settings still apply while studio is wired.
    assert!(uv_toml.contains("concurrent-downloads = 3"), "{uv_toml}");
    assert_eq!(
        stack.read("studio", "/root/.config/uv/uv.toml.devcache-saved"),
        USERS_UV_TOML
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

    // uv inside studio (the test venv's own binary) installs through the cache.
    stack.copy_uv("studio");
    let uv_install = stack.exec(
        "studio",
        "uv pip install --no-cache --python python3 --target /tmp/uvsite demo \
         && cat /tmp/uvsite/demo/__init__.py",
    );
    assert_ok(&uv_install, "uv pip install in studio");
    assert!(stdout(&uv_install).contains("VERSION = \"1.0\""));

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
    assert!(
        report.contains(" KiB cached;") && !report.contains("bytes"),
        "sizes in one format: {report}"
    );
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
    let lms_address = stdout(&docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &stack.container("lms"),
    ]));
    assert!(
        stdout(&logs)
            .lines()
            .any(|l| l.contains("/root/pypi/+simple/demo/")
                && l.contains(&format!("{} pip/", lms_address.trim()))
                && l.contains("miss")),
        "request lines are on stdout, with lms's address and pip: {}",
        stdout(&logs)
    );
    assert!(
        !stdout(&logs).contains("/+status"),
        "health checks are logged at debug: {}",
        stdout(&logs)
    );
    let mut follow = stack
        .devcache_command(&["logs", "-f", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let follow_err = follow.stdout.take().unwrap();
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

/// The everyday loop, with studio's compose label as `label`: up once, recreate
/// studio while `watch` runs, up again with nothing repeated, a remembered service
/// that has no container, down and up.
fn the_devstack_loop(label: &str) {
    let stack = Devstack::new();
    stack.start_service("lms");
    stack.start_service(label);
    let upstream = "http://index.invalid/simple/";
    let said = stack.said(&["up", "--upstream", upstream, "--port", "0"]);
    assert!(said.contains("studio: wired"), "{said}");

    // A service enabled before its container exists: remembered, and skipped.
    let said = stack.said(&["enable", "ecommerce"]);
    assert!(
        said.contains("ecommerce: enabled, no container in project"),
        "{said}"
    );
    // up with nothing repeated: the running cache's upstream, the same cache.
    let said = stack.said(&["up", "--port", "0"]);
    assert!(
        said.contains(&format!("upstream {upstream}: the one the cache container")),
        "{said}"
    );
    assert!(
        said.contains("ecommerce: no container in project") && said.contains("skipped"),
        "{said}"
    );
    assert!(said.contains("already up to date"), "{said}");

    let watch_said = stack.watch_while(|| stack.recreate_service(label), "studio: wired");
    assert!(
        stack
            .read(label, "/root/.pip/pip.conf")
            .starts_with("# Written by devcache"),
        "{watch_said:?}"
    );
    let report = stdout(&stack.devcache(&["status"]));
    assert!(
        report.contains(&format!(
            "studio    {} (running, enabled): wired",
            stack.container(label)
        )),
        "{report}"
    );
    assert!(
        report.contains("ecommerce") && report.contains("(not running, enabled): no container"),
        "{report}"
    );

    // The remembered service's container never came: disable clears it.
    let said = stack.said(&["disable", "ecommerce"]);
    assert!(said.contains("ecommerce: disabled"), "{said}");
    // down, then up with nothing repeated: the upstream remembered from the last up.
    stack.said(&["down"]);
    let said = stack.said(&["up", "--port", "0"]);
    assert!(
        said.contains(&format!("upstream {upstream}: remembered from the last")),
        "{said}"
    );
    assert!(said.contains("studio: wired"), "{said}");
}

#[test]
fn the_devstack_loop_with_studio_labelled_studio() {
    the_devstack_loop("studio");
}

#[test]
fn the_devstack_loop_with_studio_labelled_cms() {
    the_devstack_loop("cms");
}

#[test]
fn watch_leaves_a_disabled_service_alone() {
    let stack = Devstack::new();
    stack.start_service("lms");
    stack.start_service("studio");
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
    assert_ok(&stack.devcache(&["disable", "cms"]), "devcache disable cms");
    let mut watch = stack.watch(Stdio::null());
    std::thread::sleep(Duration::from_secs(1));
    for service in ["lms", "studio"] {
        stack.recreate_service(service);
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

    // No lms at all, and a stopped studio: the cache comes up, lms is skipped on one
    // line, and the stopped studio is an error that names its fix.
    stack.start_service("cms");
    assert_ok(
        &docker(&["stop", "-t", "0", &stack.container("cms")]),
        "stop studio",
    );
    let out = stack.devcache(&["up", "--upstream", upstream, "--port", "0"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("lms: no container in project")
            && stdout(&out).contains("make dev.up.lms"),
        "{}",
        stdout(&out)
    );
    let said = stderr(&out);
    assert!(
        said.contains("studio")
            && said.contains("is not running")
            && said.contains("make dev.up.studio"),
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
    let said = stack.up_and_warm_lms(&upstream);
    assert!(
        said.contains("warmed for Python 3.11 on manylinux_2_"),
        "the container's own Python: {said}"
    );
    assert!(said.contains("3 projects, 3 files"), "{said}");
    assert!(said.contains("pinned in warm-lms"), "{said}");
    let pins = stack.devcache(&["pins"]);
    assert_ok(&pins, "devcache pins");
    assert!(stdout(&pins).contains("warm-lms: "), "{}", stdout(&pins));
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
        &stack.devcache(&[
            "up",
            "--upstream",
            &upstream,
            "--port",
            "0",
            "--max-size",
            "1GiB",
        ]),
        "devcache up, empty, with a budget",
    );
    let out = stack.devcache(&["import", bundle.to_str().unwrap()]);
    assert_ok(&out, "devcache import");
    assert!(
        stdout(&out).contains("imported 3 pages and 3 files"),
        "{}",
        stdout(&out)
    );
    // What was imported is pinned under the bundle's name, in the container's volume.
    let pins = stack.devcache(&["pins"]);
    assert!(
        stdout(&pins).contains("import-devstack-cache.tar.zst: 3 files cached"),
        "{}",
        stdout(&pins)
    );
    let gc = stack.devcache(&["gc", "--max-size", "0", "--dry-run"]);
    assert_ok(&gc, "devcache gc --dry-run in the container");
    assert!(
        stdout(&gc)
            .contains("would remove 0 files (0 B), least recently used first; kept 3 pinned files"),
        "{}",
        stdout(&gc)
    );
    let status = stack.devcache(&["status"]);
    assert!(
        stdout(&status).contains("of 1.0 GiB used"),
        "{}",
        stdout(&status)
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

/// edx-platform's `uv.lock` as it is since its move to uv: the project (virtual) needs
/// `demo`, which needs `helper`, their wheels at `https://<file_host>/packages/...`.
fn platform_lock(
    file_host: &str,
    demo: &support::dists::Dist,
    helper: &support::dists::Dist,
) -> String {
    let file = |dist: &support::dists::Dist| {
        format!(
            "{{ url = \"https://{file_host}/packages/a1/b2/{}\", hash = \"sha256:{}\" }}",
            dist.filename,
            dist.sha256()
        )
    };
    format!(
        "version = 1\nrevision = 3\nrequires-python = \">=3.11\"\n\n\
         [[package]]\nname = \"demo\"\nversion = \"1.0\"\nsource = {{ registry = \"https://index.example.invalid/simple\" }}\n\
         dependencies = [{{ name = \"helper\" }}]\nwheels = [{}]\n\n\
         [[package]]\nname = \"edx-platform\"\nversion = \"0.1.0\"\nsource = {{ virtual = \".\" }}\n\
         dependencies = [{{ name = \"demo\" }}]\n\n[package.metadata]\nrequires-dist = [{{ name = \"demo\" }}]\n\n\
         [[package]]\nname = \"helper\"\nversion = \"1.0\"\nsource = {{ registry = \"https://index.example.invalid/simple\" }}\n\
         wheels = [{}]\n",
        file(demo),
        file(helper)
    )
}

#[test]
fn warm_lms_prefers_the_platform_lock_to_its_requirement_exports() {
    let stack = Devstack::new();
    let index = tempfile::tempdir().unwrap();
    let demo = wheel("demo", "1.0", &["helper"]);
    let helper = wheel("helper", "1.0", &[]);
    let only_in_export = wheel("exported", "1.0", &[]);
    static_index(
        index.path(),
        &[
            ("demo", demo.clone()),
            ("helper", helper.clone()),
            ("exported", only_in_export),
        ],
    );
    let upstream = stack.start_upstream(index.path());
    stack.start_service("lms");
    stack.start_service("cms");
    // edx-platform as it is since its move to uv: the lock at the repository root, and
    // an export beside it. The lock names files on a host the cache never sees.
    let lock = platform_lock("files.example.invalid", &demo, &helper);
    let repo = "/edx/app/edxapp/edx-platform";
    assert_ok(
        &stack.exec(
            "lms",
            &format!(
                "mkdir -p {repo}/requirements/edx && cat > {repo}/uv.lock <<'LOCK'\n{lock}LOCK\n\
                 echo exported==1.0 > {repo}/requirements/edx/development.txt"
            ),
        ),
        "write edx-platform's lock and export",
    );
    let said = stack.up_and_warm_lms(&upstream);
    assert!(
        said.contains(&format!("lms: reading {repo}/uv.lock\n")),
        "{said}"
    );
    assert!(said.contains("2 projects, 2 files"), "{said}");
    let upstream_log = stderr(&docker(&["logs", &stack.container("upstream")]));
    assert!(
        upstream_log.contains(&demo.filename) && !upstream_log.contains("exported-1.0"),
        "{upstream_log}"
    );
}

/// What devcache may change in a consumer, to compare before and after: the hosts file,
/// the trust store, devcache's directory, and pip's and uv's config files.
const CONSUMER_STATE: &str = "sha256sum /etc/hosts /etc/ssl/certs/ca-certificates.crt; \
    ls -A /etc/ssl/certs /usr/local/share/ca-certificates /var/lib; \
    cat /root/.pip/pip.conf /root/.config/uv/uv.toml 2>/dev/null | sha256sum";

#[test]
fn uv_sync_frozen_installs_through_the_cache_with_locked_installs_and_disable_undoes_it() {
    let stack = Devstack::new();
    let index = tempfile::tempdir().unwrap();
    let demo = wheel("demo", "1.0", &["helper"]);
    let helper = wheel("helper", "1.0", &[]);
    static_index(
        index.path(),
        &[("demo", demo.clone()), ("helper", helper.clone())],
    );
    let upstream = stack.start_upstream(index.path());
    stack.start_service("lms");
    // studio has no update-ca-certificates: the CA goes into the bundle itself.
    stack.start_service("studio");
    assert_ok(
        &stack.exec(
            "studio",
            "mv /usr/sbin/update-ca-certificates /usr/sbin/hidden-update-ca-certificates",
        ),
        "hide update-ca-certificates in studio",
    );
    let studio_before = stdout(&stack.exec("studio", CONSUMER_STATE));
    // edx-platform's project and lock, its files on an https host that resolves nowhere,
    // and uv (the test image has none).
    let lock = platform_lock("files.upstream.test", &demo, &helper);
    let pyproject = "[project]\nname = \"edx-platform\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
                     dependencies = [\"demo\"]\n\n[tool.uv]\npackage = false\n";
    let repo = "/edx/app/edxapp/edx-platform";
    let prepare_lms = || {
        stack.copy_uv("lms");
        assert_ok(
            &stack.exec(
                "lms",
                &format!(
                    "mkdir -p {repo} && cat > {repo}/uv.lock <<'LOCK'\n{lock}LOCK\n\
                     cat > {repo}/pyproject.toml <<'PROJECT'\n{pyproject}PROJECT\n"
                ),
            ),
            "write edx-platform's project and lock",
        );
    };
    prepare_lms();
    let uv_sync = format!(
        "cd {repo} && UV_PYTHON_DOWNLOADS=never uv sync --frozen --no-cache --python /usr/bin/python3 2>&1"
    );
    // Without locked installs, the lock's host is not reached: uv fails.
    let said = stack.up_and_warm_lms(&upstream);
    assert!(said.contains("2 projects, 2 files"), "{said}");
    let direct = stack.exec("lms", &uv_sync);
    assert!(!direct.status.success(), "{}", stdout(&direct));

    let enabled = stack.said(&["enable", "--locked-installs", "lms"]);
    assert!(
        enabled.contains("locked installs from files.upstream.test are served by the cache"),
        "{enabled}"
    );
    let status = stack.said(&["status"]);
    assert!(
        status.contains("locked installs from files.upstream.test"),
        "{status}"
    );
    let synced = stack.exec("lms", &uv_sync);
    assert_ok(&synced, "uv sync --frozen");
    let imported = stack.exec(
        "lms",
        &format!("{repo}/.venv/bin/python -c 'import demo, helper; print(demo.VERSION)'"),
    );
    assert_ok(&imported, "import demo");
    assert_eq!(stdout(&imported).trim(), "1.0");
    // OpenSSL clients in the container trust it too (the CA is in the system store),
    // and so in studio, whose file host is named and whose bundle holds the CA.
    let fetch = format!(
        "python3 -c \"import hashlib, urllib.request; \
         print(hashlib.sha256(urllib.request.urlopen('https://files.upstream.test/x/{}').read()).hexdigest())\"",
        demo.filename
    );
    let fetched = stack.exec("lms", &fetch);
    assert_ok(&fetched, "python3 fetches the lock's URL");
    assert_eq!(stdout(&fetched).trim(), demo.sha256());
    stack.said(&[
        "enable",
        "--locked-installs",
        "--file-host",
        "files.upstream.test",
        "studio",
    ]);
    let fetched = stack.exec("studio", &fetch);
    assert_ok(&fetched, "python3 in studio fetches the lock's URL");
    assert_eq!(stdout(&fetched).trim(), demo.sha256());
    stack.said(&["disable", "studio"]);
    assert_eq!(studio_before, stdout(&stack.exec("studio", CONSUMER_STATE)));
    // The cache answered both files from what warm cached.
    let cache_log = stdout(&docker(&["logs", &stack.container("devpi")]));
    for dist in [&demo, &helper] {
        assert!(
            cache_log
                .lines()
                .any(|l| l.contains(&dist.filename) && l.contains(" hit")),
            "{cache_log}"
        );
    }
    // A recreated container gets it all again from `watch`, and from `up`.
    let said = stack.watch_while(|| stack.recreate_service("lms"), "lms: wired");
    assert!(
        stack
            .read("lms", "/etc/hosts")
            .contains("files.upstream.test"),
        "{said:?}"
    );
    prepare_lms();
    assert_ok(&stack.exec("lms", &uv_sync), "uv sync --frozen after watch");
    stack.recreate_service("lms");
    prepare_lms();
    let before = stdout(&stack.exec("lms", CONSUMER_STATE));
    stack.said(&["up"]);
    assert_ok(&stack.exec("lms", &uv_sync), "uv sync --frozen after up");

    // disable leaves the container as it was before devcache touched it.
    let disabled = stack.said(&["disable", "lms"]);
    assert!(disabled.contains("lms: disabled"), "{disabled}");
    let after = stdout(&stack.exec("lms", CONSUMER_STATE));
    assert_eq!(before, after);
}

/// A service's container is not devcache's to trust: what warm reads of it, a
/// command's output or a requirement file, stops at a cap, with one line saying so.
#[test]
fn warm_reads_no_more_of_a_container_than_its_caps() {
    let stack = Devstack::new();
    let index = tempfile::tempdir().unwrap();
    static_index(index.path(), &[("demo", wheel("demo", "1.0", &[]))]);
    let upstream = stack.start_upstream(index.path());
    stack.start_service("lms");
    assert_ok(
        &stack.devcache(&["up", "--upstream", &upstream, "--port", "0"]),
        "devcache up",
    );

    // An interpreter that never stops printing.
    assert_ok(
        &stack.exec(
            "lms",
            "printf '#!/bin/sh\\nexec yes\\n' > /usr/local/bin/python3 && chmod +x /usr/local/bin/python3",
        ),
        "a chatty python3",
    );
    let out = stack.devcache(&["warm", "lms"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(said.contains("printed more than 64 MiB"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    // A requirement file far larger than any.
    assert_ok(
        &stack.exec(
            "lms",
            "rm /usr/local/bin/python3 && truncate -s 100M /srv-big.txt",
        ),
        "a huge requirement file",
    );
    std::fs::write(
        stack.home.path().join("devcache.yml"),
        "warm:\n  lms: [/srv-big.txt]\n",
    )
    .unwrap();
    let out = stack.devcache(&["warm", "lms"]);
    let said = stdout(&out) + &stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("is larger than 64 MiB"), "{said}");
}
