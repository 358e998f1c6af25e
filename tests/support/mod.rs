//! What the integration tests stand on: a test upstream, generated distributions,
//! a `devcache serve` process, and the real pip and uv.

// Each test crate uses the part of this that it needs.
#![allow(dead_code)]

pub mod dists;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A running `devcache serve`, killed when dropped.
pub struct Devcache {
    child: Child,
    pub url: String,
    /// The first line the server printed: where it listens and what it caches.
    pub banner: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    /// Where the server's stdout goes after its first line: the request lines.
    requests: PathBuf,
}

impl Devcache {
    /// Starts `devcache serve` on a free port of 127.0.0.1 with `args` after the
    /// data directory. Its stderr goes to `<data_dir>.log`, its request lines (stdout)
    /// to `<data_dir>.requests`.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(data_dir, args, &[])
    }

    /// Like `start`, with extra environment variables for the server.
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = devcache_command(data_dir.parent().unwrap())
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("devcache starts");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "no URL in {first:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .trim_end_matches('/')
            .to_string();
        let requests = data_dir.with_extension("requests");
        let mut requests_file = std::fs::File::create(&requests).unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut requests_file));
        Self {
            child,
            url,
            banner: first,
            data_dir: data_dir.to_path_buf(),
            log,
            requests,
        }
    }

    /// A server in `<dir>/data` caching `upstream`.
    pub fn caching(dir: &Path, upstream: &upstream::TestUpstream) -> Self {
        Self::start(&dir.join("data"), &["--upstream", &upstream.index_url()])
    }

    /// Like [`Devcache::caching`], asking the upstream again for every page and giving
    /// it a second to answer.
    pub fn revalidating(dir: &Path, upstream: &upstream::TestUpstream) -> Self {
        Self::start(
            &dir.join("data"),
            &[
                "--upstream",
                &upstream.index_url(),
                "--index-ttl",
                "0",
                "--upstream-timeout",
                "1",
            ],
        )
    }

    pub fn index(&self) -> String {
        format!("{}/root/pypi/+simple/", self.url)
    }

    /// A file's URL in the cache, as pages link it.
    pub fn file_url(&self, project: &str, dist: &dists::Dist) -> String {
        format!(
            "{}/root/pypi/+f/{project}/{}/{}",
            self.url,
            dist.sha256(),
            dist.filename
        )
    }

    /// Kills the server the hard way, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM, as `docker stop` does, and waits up to `within` for the process
    /// to end; `None` if it is still running then (it is killed when dropped).
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }

    /// Everything the server logged: stderr, then the request lines.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default() + &self.requests()
    }

    /// The request lines, which the server writes to stdout.
    pub fn requests(&self) -> String {
        std::fs::read_to_string(&self.requests).unwrap_or_default()
    }

    /// Files under the data directory's `tmp/`.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data_dir.join("tmp"))
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Waits (boundedly) until a file with this sha256 is in the cache: a client may
    /// have its last byte before the file is synced and renamed into place.
    pub async fn published(&self, sha256: &str) -> bool {
        for _ in 0..100 {
            if self.has_blob(sha256) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// Whether the page of `project` is saved: it is answered first and saved after, so
    /// a test that kills the server and reads the page back waits for this.
    pub fn has_page(&self, project: &str) -> bool {
        self.data_dir
            .join("pages")
            .join(format!("{project}.json"))
            .exists()
    }

    /// Whether a file with this sha256 is in the cache.
    pub fn has_blob(&self, sha256: &str) -> bool {
        self.data_dir
            .join("files")
            .join(&sha256[..2])
            .join(sha256)
            .exists()
    }

    pub async fn status(&self) -> serde_json::Value {
        http()
            .get(format!("{}/+status", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Devcache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The devcache binary with an environment that cannot leak the host's settings:
/// a private HOME and no pip or devcache variables.
pub fn devcache_command(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_devcache"));
    command
        .current_dir(home)
        .env("HOME", home)
        .env("RUST_LOG", "info");
    for var in [
        "PIP_INDEX_URL",
        "PIP_CONFIG_FILE",
        "XDG_CONFIG_HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("DEVCACHE_") {
            command.env_remove(key);
        }
    }
    command
}

/// The media type of PEP 691's JSON pages.
pub const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// `GET url`.
pub async fn get(url: &str) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

/// `HEAD url`.
pub async fn head(url: &str) -> reqwest::Response {
    http().head(url).send().await.unwrap()
}

/// `GET url` with a `Range` header.
pub async fn get_range(url: &str, range: &str) -> reqwest::Response {
    http().get(url).header("Range", range).send().await.unwrap()
}

/// The body of `GET url`, as bytes.
pub async fn get_bytes(url: &str) -> bytes::Bytes {
    get(url).await.bytes().await.unwrap()
}

/// A page asked for in its JSON form (PEP 691).
pub async fn get_json(url: &str) -> serde_json::Value {
    let response = http().get(url).header("Accept", JSON).send().await.unwrap();
    response.json().await.unwrap()
}

/// The body of `GET url`, as text.
pub async fn get_text(url: &str) -> String {
    get(url).await.text().await.unwrap()
}

/// The body of `GET url` asked for as `accept` (a page's form), as text.
pub async fn get_text_as(url: &str, accept: &str) -> String {
    let response = http()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

/// An HTTP client that ignores proxy settings.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A tool of the test venv that `.ci/run` makes (pip, uv, python).
pub fn venv_tool(tool: &str) -> PathBuf {
    let venv = std::env::var_os("DEVCACHE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let path = venv.join("bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/run` once (it makes the venv with pip and uv), or set DEVCACHE_TEST_VENV",
        path.display()
    );
    path
}

/// A tool (pip, uv, python) of one venv of the client matrix that `.ci/run` makes, e.g.
/// `client_tool("pip-23.0.1", "pip")`.
pub fn client_tool(client: &str, tool: &str) -> PathBuf {
    let clients = std::env::var_os("DEVCACHE_TEST_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients"));
    let path = clients.join(client).join("bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/run` once (or `bash .ci/clients` for the client venvs alone), or set DEVCACHE_TEST_CLIENTS",
        path.display()
    );
    path
}

/// The Python of the venv with the `prometheus_client` parser that `.ci/run` makes.
pub fn prometheus_python() -> PathBuf {
    let venv = std::env::var_os("DEVCACHE_TEST_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/prometheus-venv"));
    let path = venv.join("bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/run` once (it makes the venv with prometheus_client), or set DEVCACHE_TEST_PROMETHEUS",
        path.display()
    );
    path
}

/// Runs pip from the test venv, isolated from the host's pip configuration and cache.
pub fn pip(home: &Path, args: &[&str]) -> Output {
    pip_command(&venv_tool("pip"), home)
        .args(args)
        .output()
        .unwrap()
}

/// A command running this `pip`, isolated from the host's pip configuration and cache.
pub fn pip_command(pip: &Path, home: &Path) -> Command {
    let mut command = without_vars(Command::new(pip), "PIP_");
    command
        .env("HOME", home)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("NO_PROXY", "*");
    command
}

/// `pip install --target TARGET SPEC` through `cache`.
pub fn pip_install(home: &Path, cache: &Devcache, target: &Path, spec: &str) -> Output {
    pip_install_args(home, cache, target, &[spec])
}

/// `pip install --target TARGET ARGS...` through `cache` (`-r FILE`, several specs).
pub fn pip_install_args(home: &Path, cache: &Devcache, target: &Path, args: &[&str]) -> Output {
    let index = cache.index();
    let mut all = vec![
        "install",
        "--index-url",
        &index,
        "--target",
        target.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    pip(home, &all)
}

/// `pip download SPEC` through `cache` into a fresh folder of `home`; it must succeed.
pub fn pip_download(home: &Path, cache: &Devcache, spec: &str) {
    let dest = tempfile::tempdir_in(home).unwrap();
    let out = pip(
        home,
        &[
            "download",
            "--index-url",
            &cache.index(),
            "-d",
            dest.path().to_str().unwrap(),
            spec,
        ],
    );
    assert_ok(&out, &format!("pip download {spec}"));
}

/// Runs uv from the test venv with its own empty cache and no user configuration.
pub fn uv(home: &Path, args: &[&str]) -> Output {
    uv_command(&venv_tool("uv"), &venv_tool("python"), home)
        .args(args)
        .output()
        .unwrap()
}

/// A command running this `uv` with `python`, its own empty cache and no user
/// configuration.
pub fn uv_command(uv: &Path, python: &Path, home: &Path) -> Command {
    let mut command = without_vars(Command::new(uv), "UV_");
    command
        .env("HOME", home)
        .env("UV_CACHE_DIR", home.join("uv-cache"))
        .env("UV_NO_CONFIG", "1")
        .env("UV_PYTHON", python)
        .env("NO_PROXY", "*");
    command
}

/// `uv pip install --target TARGET SPEC` through `cache`.
pub fn uv_install(home: &Path, cache: &Devcache, target: &Path, spec: &str) -> Output {
    uv(
        home,
        &[
            "pip",
            "install",
            "--index-url",
            &cache.index(),
            "--target",
            target.to_str().unwrap(),
            spec,
        ],
    )
}

/// The command without the host's variables of a prefix (`PIP_FIND_LINKS` and the like).
fn without_vars(mut command: Command, prefix: &str) -> Command {
    for (key, _) in std::env::vars() {
        if key.starts_with(prefix) {
            command.env_remove(key);
        }
    }
    command
}

/// The version of `module` installed into `target` (a wheel of `dists::wheel`), or ""
/// when it is not there.
pub fn installed_version(target: &Path, module: &str) -> String {
    let init = std::fs::read_to_string(target.join(module).join("__init__.py")).unwrap_or_default();
    init.trim()
        .strip_prefix("VERSION = \"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// Asserts a client succeeded, showing what it said when it did not.
pub fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits (up to 30 s) until `check` holds, or fails the test naming `what`.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(30) {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// The host port Docker published a container's port 3141 on.
pub fn published_port(container: &str) -> String {
    let out = Command::new("docker")
        .args(["port", container, "3141/tcp"])
        .output()
        .unwrap();
    assert_ok(&out, "docker port");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap()
        .trim()
        .to_string()
}

/// The image the Docker tests run services and indexes in (made by `.ci/test-image`).
pub const TEST_IMAGE: &str = "devcache-test/python:bookworm";

/// Starts a container named `name` serving `dir` (a `dists::static_index`) with Python's
/// http.server on port 8000, on `network` or else the default bridge.
pub fn start_index_container(name: &str, network: Option<&str>, dir: &Path) {
    let volume = format!("{}:/srv:ro", dir.display());
    let mut args = vec!["run", "-d", "--name", name, "-v", &volume];
    if let Some(network) = network {
        args.extend(["--network", network]);
    }
    args.extend([TEST_IMAGE, "python3", "-m", "http.server", "8000"]);
    args.extend(["--directory", "/srv"]);
    let out = Command::new("docker").args(&args).output().unwrap();
    assert_ok(&out, "start the upstream container");
}
