//! Tutor, for real: the pinned Tutor `.ci/tutor` installs renders devcache's plugin into
//! its Dockerfile and compose files; a project shaped as Compose v2 makes `tutor dev`
//! (containers `<project>-lms-1`) is wired by the manager; and a BuildKit build with the
//! plugin's own Dockerfile lines installs through the cache, and without it.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::dists::{static_index, wheel};
use support::{TEST_IMAGE, assert_ok, devcache_command, published_port, wait_for};

/// The devcache image these tests make and run (`DEVCACHE_IMAGE`), so that the user's
/// `devcache:<version>` is never replaced by a test build.
const DEVCACHE_IMAGE: &str = "devcache-test/devcache:latest";

/// A unique name for this test's Docker objects.
fn unique(prefix: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}x{nonce}", std::process::id())
}

/// A Tutor of its own: `TUTOR_ROOT` and `TUTOR_PLUGINS_ROOT` in a temp dir, and the
/// pinned Tutor first on PATH.
struct Tutor {
    dir: tempfile::TempDir,
}

impl Tutor {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn with_env(&self, mut command: Command) -> Command {
        let venv = std::env::var_os("DEVCACHE_TEST_TUTOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tutor-venv"));
        assert!(
            venv.join("bin/tutor").exists(),
            "no tutor in {}: run `bash .ci/tutor` (or `bash .ci/run`), or set DEVCACHE_TEST_TUTOR",
            venv.display()
        );
        let path = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .env("PATH", path)
            .env("TUTOR_ROOT", self.dir.path().join("root"))
            .env("TUTOR_PLUGINS_ROOT", self.dir.path().join("plugins"))
            .env("DEVCACHE_IMAGE", DEVCACHE_IMAGE);
        command
    }

    fn devcache(&self, args: &[&str]) -> Output {
        self.with_env(devcache_command(self.dir.path()))
            .args(args)
            .output()
            .unwrap()
    }

    fn tutor(&self, args: &[&str]) -> Output {
        let mut command = self.with_env(Command::new("tutor"));
        command.env("HOME", self.dir.path());
        command.args(args).output().unwrap()
    }

    /// A file of Tutor's rendered environment (`$TUTOR_ROOT/env/...`).
    fn rendered(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("root/env").join(path)).unwrap()
    }

    fn compose(&self, path: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&self.rendered(path)).unwrap()
    }

    /// The blocks of lines devcache's plugin puts into the openedx Dockerfile, in order
    /// (the first stage's, then the production stage's), as Tutor rendered them.
    fn dockerfile_patches(&self) -> Vec<String> {
        let dockerfile = self.rendered("build/openedx/Dockerfile");
        let patches: Vec<String> = dockerfile
            .match_indices("# devcache:")
            .map(|(start, _)| {
                let block = &dockerfile[start..];
                block[..block.find("\n\n").unwrap() + 1].to_string()
            })
            .collect();
        assert_eq!(patches.len(), 2, "{dockerfile}");
        patches
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Removes the containers whose names start with a prefix, and the named networks and
/// volumes, when dropped.
struct Cleanup {
    prefixes: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for prefix in &self.prefixes {
            let listed = docker(&["ps", "-aq", "--filter", &format!("name={prefix}")]);
            for id in text(&listed.stdout).split_whitespace() {
                docker(&["rm", "-f", id]);
            }
        }
        for network in &self.networks {
            docker(&["network", "rm", network]);
        }
        for volume in &self.volumes {
            docker(&["volume", "rm", volume]);
        }
        for image in &self.images {
            docker(&["rmi", "-f", image]);
        }
    }
}

/// The cache's `/+status` document on a host port, once it answers.
fn cache_status(port: &str) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}/+status");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        support::http()
            .get(&url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    })
}

/// Starts an index of `demo` 1.0 in a container (on `network`, or the default bridge).
/// Returns the container's name.
fn start_upstream(name: &str, network: Option<&str>, dir: &std::path::Path) -> String {
    static_index(dir, &[("demo", wheel("demo", "1.0", &[]))]);
    support::start_index_container(name, network, dir);
    name.to_string()
}

#[test]
fn enable_renders_the_cache_into_tutors_dockerfile_and_compose_files_and_disable_takes_it_out() {
    let tutor = Tutor::new();
    let out = tutor.devcache(&[
        "tutor",
        "enable",
        "--upstream",
        "http://10.1.2.3:8000/simple/",
        "--build-host",
        "172.17.0.1",
        "--port",
        "3142",
    ]);
    assert_ok(&out, "devcache tutor enable");
    assert!(
        text(&out.stdout).contains("written"),
        "{}",
        text(&out.stdout)
    );
    assert_ok(&tutor.tutor(&["config", "save"]), "tutor config save");

    // The first stage, which every stage of the openedx image (and so every container
    // made from it, jobs included) inherits.
    let dockerfile = tutor.rendered("build/openedx/Dockerfile");
    let minimal = dockerfile.split("FROM minimal AS python").next().unwrap();
    for wanted in [
        "PIP_INDEX_URL=http://172.17.0.1:3142/root/pypi/+simple/",
        "PIP_TRUSTED_HOST=172.17.0.1",
        "UV_DEFAULT_INDEX=http://172.17.0.1:3142/root/pypi/+simple/",
        "DEVCACHE_UPSTREAM=http://10.1.2.3:8000/simple/",
        "> /usr/local/bin/devcache-failover",
        // After Tutor's `ARG PIP_COMMAND`: every build step's pip or `uv pip` fails over.
        "ENV PIP_COMMAND=\"/usr/local/bin/devcache-failover ${PIP_COMMAND}\"",
    ] {
        assert!(minimal.contains(wanted), "{wanted} not in:\n{minimal}");
    }
    let declared = minimal
        .find("ARG PIP_COMMAND=")
        .expect("Tutor declares PIP_COMMAND");
    assert!(
        minimal.find("ENV PIP_COMMAND=").unwrap() > declared,
        "{minimal}"
    );
    // The images lms, cms and job containers are made from: pip and uv typed there.
    let production = dockerfile
        .split("FROM minimal AS production")
        .nth(1)
        .and_then(|rest| rest.split("FROM production AS development").next())
        .unwrap();
    assert!(
        production.contains("ENV PATH=/opt/devcache/bin:${PATH}"),
        "{production}"
    );
    // local/docker-compose.yml is the base of both `tutor local` and `tutor dev`.
    let compose = tutor.compose("local/docker-compose.yml");
    let cache = &compose["services"]["devcache"];
    assert_eq!(cache["image"], DEVCACHE_IMAGE);
    assert_eq!(cache["ports"][0], "3142:3141");
    assert_eq!(
        cache["environment"]["DEVCACHE_UPSTREAM"],
        "http://10.1.2.3:8000/simple/"
    );
    assert_eq!(cache["volumes"][0], "../../data/devcache:/data:z");
    for service in ["lms", "cms"] {
        let depends = compose["services"][service]["depends_on"]
            .as_sequence()
            .unwrap();
        assert!(depends.iter().any(|d| d == "devcache"), "{service}");
    }

    let out = tutor.devcache(&["tutor", "status"]);
    assert!(
        text(&out.stdout).contains("index: http://172.17.0.1:3142/"),
        "{}",
        text(&out.stdout)
    );

    let out = tutor.devcache(&["tutor", "disable"]);
    assert_ok(&out, "devcache tutor disable");
    assert!(!tutor.dir.path().join("plugins/devcache.yml").exists());
    assert_ok(&tutor.tutor(&["config", "save"]), "tutor config save");
    assert!(
        !tutor
            .rendered("build/openedx/Dockerfile")
            .contains("devcache")
    );
    let compose = tutor.compose("local/docker-compose.yml");
    assert!(compose["services"]["devcache"].is_null());
    assert!(
        !tutor
            .rendered("local/docker-compose.yml")
            .contains("devcache")
    );
}

/// A project shaped as `tutor dev` makes it (`<name>_dev` on `<name>_dev_default`),
/// with an index of `demo` 1.0 on its network; its containers, network and volume
/// are removed when it is dropped.
struct DevProject {
    _cleanup: Cleanup,
    name: String,
    network: String,
    /// The index container's name, which the project's containers resolve.
    upstream: String,
    _index: tempfile::TempDir,
    /// devcache's HOME (its remembered choices).
    home: tempfile::TempDir,
}

impl DevProject {
    fn new(prefix: &str) -> Self {
        let name = format!("{}_dev", unique(prefix));
        let network = format!("{name}_default");
        let cleanup = Cleanup {
            prefixes: vec![format!("{name}-"), format!("edx.{name}.")],
            networks: vec![network.clone()],
            volumes: vec![format!("{name}_devpi_data")],
            images: vec![],
        };
        assert_ok(&docker(&["network", "create", &network]), "network create");
        let index = tempfile::tempdir().unwrap();
        let upstream = start_upstream(&format!("{name}-upstream-1"), Some(&network), index.path());
        Self {
            _cleanup: cleanup,
            name,
            network,
            upstream,
            _index: index,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs devcache on this project.
    fn devcache(&self, args: &[&str]) -> Output {
        devcache_command(self.home.path())
            .env("DEVCACHE_IMAGE", DEVCACHE_IMAGE)
            .args(args)
            .args(["--project", &self.name])
            .output()
            .unwrap()
    }
}

#[test]
fn a_tutor_dev_project_is_wired_and_unwired_and_pip_and_uv_in_lms_install_through_the_cache() {
    let dev = DevProject::new("dctutor");
    let (project, network, upstream) = (&dev.name, &dev.network, &dev.upstream);
    // As Compose v2 names and labels `tutor dev`'s containers.
    // lms-worker as the image devcache's Tutor plugin builds would make it.
    let image_env = "PIP_INDEX_URL=http://172.17.0.1:3141/root/pypi/+simple/";
    for (service, env) in [
        ("lms", "LANG=C.UTF-8"),
        ("cms", "LANG=C.UTF-8"),
        ("lms-worker", image_env),
    ] {
        let out = docker(&[
            "run",
            "-d",
            "-e",
            env,
            "--name",
            &format!("{project}-{service}-1"),
            "--network",
            network,
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            &format!("com.docker.compose.service={service}"),
            TEST_IMAGE,
        ]);
        assert_ok(&out, "start a Tutor service container");
    }
    let lms = format!("{project}-lms-1");
    let uv = support::venv_tool("uv");
    assert_ok(
        &docker(&[
            "cp",
            &uv.display().to_string(),
            &format!("{lms}:/usr/local/bin/uv"),
        ]),
        "copy uv into lms",
    );

    let devcache = |args: &[&str]| dev.devcache(args);
    let upstream_url = format!("http://{upstream}:8000/simple/");
    let out = devcache(&["up", "--upstream", &upstream_url, "--port", "0"]);
    assert_ok(&out, "devcache up --project");
    let said = text(&out.stdout);
    assert!(
        said.contains("lms: wired") && said.contains("studio: wired"),
        "{said}"
    );

    let exec = |script: &str| docker(&["exec", &lms, "sh", "-c", script]);
    let out = exec(
        "pip install --no-cache-dir --target /tmp/pip-site demo && cat /tmp/pip-site/demo/__init__.py",
    );
    assert_ok(&out, "pip install in lms");
    let out = exec(
        "uv pip install --no-cache --python python3 --target /tmp/uv-site demo && cat /tmp/uv-site/demo/__init__.py",
    );
    assert_ok(&out, "uv pip install in lms");
    assert!(text(&out.stdout).contains("VERSION = \"1.0\""));

    let out = devcache(&["status", "--json"]);
    assert_ok(&out, "devcache status --json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let consumer = |service: &str| {
        report["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["service"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("{service} not in {report}"))
    };
    assert_eq!(consumer("lms")["container"], lms.as_str());
    assert_eq!(consumer("lms")["pip"], "wired");
    assert_eq!(
        consumer("lms-worker")["pip"],
        "wired by its image (Tutor plugin)"
    );
    // pip missed, then uv was answered from the cache.
    let served = &consumer("lms")["served"];
    assert!(served["misses"].as_u64().unwrap() >= 2, "{report}");
    assert!(served["hits"].as_u64().unwrap() >= 1, "{report}");

    // warm lms reads the requirement file Tutor's dev image installs.
    let out = exec(
        "mkdir -p /openedx/edx-platform/requirements/edx && cd /openedx/edx-platform/requirements/edx \
         && echo 'demo==1.0' > development.txt && echo 'demo==1.0' > base.txt",
    );
    assert_ok(&out, "write edx-platform's requirement files into lms");
    let out = devcache(&["warm", "lms"]);
    assert_ok(&out, "devcache warm lms");
    assert!(
        text(&out.stdout)
            .contains("lms: reading /openedx/edx-platform/requirements/edx/development.txt"),
        "{}",
        text(&out.stdout)
    );

    let out = devcache(&["disable", "lms"]);
    assert_ok(&out, "devcache disable lms");
    let out = exec("cat /root/.pip/pip.conf /root/.config/uv/uv.toml 2>/dev/null || true");
    assert!(
        !text(&out.stdout).contains("devcache"),
        "{}",
        text(&out.stdout)
    );
    let out = devcache(&["down"]);
    assert_ok(&out, "devcache down");
}

/// Builds a context (a tar of `Dockerfile` and `uv`) with BuildKit through the
/// Engine API (`version=2`): this machine's docker CLI has no buildx, and the Engine's
/// own BuildKit needs no session for a context sent as the body. Returns whether it
/// succeeded, and everything it said (BuildKit's progress records decoded, so the
/// `RUN` steps' output is in there).
fn buildkit_build(tag: &str, dockerfile: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&context).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    tar.append_path_with_name(support::venv_tool("uv"), "uv")
        .unwrap();
    tar.finish().unwrap();
    drop(tar);
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket", "/var/run/docker.sock", "-X", "POST"])
        .args(["-H", "Content-Type: application/x-tar", "--data-binary"])
        .arg(format!("@{}", context.display()))
        .arg(format!(
            "http://localhost/build?version=2&nocache=1&rm=1&t={tag}"
        ))
        .output()
        .unwrap();
    assert_ok(&out, "POST /build");
    let mut said = String::new();
    let mut failed = false;
    for line in text(&out.stdout).lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(error) = record["error"].as_str() {
            failed = true;
            said.push_str(error);
            said.push('\n');
        }
        if let Some(aux) = record["aux"].as_str() {
            use base64::Engine;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(aux) {
                said.push_str(&text(&bytes));
            }
        }
    }
    (!failed, said)
}

#[test]
fn buildkit_run_steps_and_containers_install_through_the_cache_and_fall_back_when_it_is_down() {
    let name = unique("dctutorbk");
    // One tag per build, so that neither leaves an untagged image behind.
    let tag = format!("devcache-test/{name}:build");
    let tag_down = format!("devcache-test/{name}:cache-down");
    let _cleanup = Cleanup {
        prefixes: vec![format!("{name}-")],
        networks: vec![],
        volumes: vec![],
        images: vec![tag.clone(), tag_down.clone()],
    };
    // The upstream on the default bridge, where build steps can reach it too.
    let index = tempfile::tempdir().unwrap();
    let upstream = start_upstream(&format!("{name}-upstream"), None, index.path());
    let address =
        text(&docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &upstream]).stdout)
            .trim()
            .to_string();
    let upstream_url = format!("http://{address}:8000/simple/");

    // The cache as the plugin's compose service runs it: devcache's image, port published.
    let tutor = Tutor::new();
    assert_ok(&tutor.devcache(&["image"]), "devcache image");
    let cache = format!("{name}-devcache");
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &cache,
        "-p",
        "3141",
        "-e",
        &format!("DEVCACHE_UPSTREAM={upstream_url}"),
        DEVCACHE_IMAGE,
    ]);
    assert_ok(&out, "start the cache container");
    let port = published_port(&cache);
    let status = || cache_status(&port);
    wait_for("the cache to answer", || status().is_some());

    // The plugin's lines, as Tutor renders them; the host is found from the Engine.
    let out = tutor.devcache(&[
        "tutor",
        "enable",
        "--upstream",
        &upstream_url,
        "--port",
        &port,
    ]);
    assert_ok(&out, "devcache tutor enable");
    let [minimal, production] = <[String; 2]>::try_from(tutor.dockerfile_patches()).unwrap();

    // As in Tutor's Dockerfile: uv at /usr/local/bin/uv and `ARG PIP_COMMAND` (here pip,
    // as `--build-arg PIP_COMMAND=pip` makes it), the first stage's lines, Tutor's own
    // build steps with `$PIP_COMMAND`; then the production stage's lines, after which a
    // plain `pip` or `uv` is what lms, cms and job containers run.
    let dockerfile = format!(
        "FROM {TEST_IMAGE}\nCOPY uv /usr/local/bin/uv\nARG PIP_COMMAND=pip\n{minimal}\
         RUN $PIP_COMMAND install --no-cache-dir --target /opt/build-site demo\n\
         {production}\
         RUN pip install --no-cache-dir --target /opt/pip-site demo\n\
         RUN uv pip install --no-cache --python python3 --target /opt/uv-site demo\n"
    );
    let installed = |tag: &str| {
        let out = docker(&[
            "run",
            "--rm",
            tag,
            "cat",
            "/opt/build-site/demo/__init__.py",
            "/opt/pip-site/demo/__init__.py",
            "/opt/uv-site/demo/__init__.py",
        ]);
        assert_ok(&out, "the installed packages are in the image");
        assert_eq!(text(&out.stdout).matches("VERSION = \"1.0\"").count(), 3);
    };
    let notice = |tool: &str| {
        format!(
            "devcache: the cache at {}:{port} does not answer; {tool} installs from {upstream_url} \
             (start it: tutor dev start devcache)",
            tutor_host(&minimal)
        )
    };
    let (built, said) = buildkit_build(&tag, &dockerfile);
    assert!(built, "the build failed:\n{said}");
    assert!(
        !said.contains(&notice("pip")) && !said.contains(&notice("uv")),
        "{said}"
    );
    installed(&tag);
    // The first pip fetched the page and the file; the second pip and uv were served
    // from the cache.
    let after = status().unwrap();
    assert!(after["misses"].as_u64().unwrap() >= 2, "{after}");
    assert!(after["hits"].as_u64().unwrap() >= 4, "{after}");
    let agents: Vec<&str> = after["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["user_agent"].as_str())
        .collect();
    assert!(
        agents.iter().any(|a| a.starts_with("pip/")) && agents.iter().any(|a| a.starts_with("uv/")),
        "{after}"
    );

    // The cache stopped: each install says so in one line and installs from the upstream.
    assert_ok(&docker(&["stop", &cache]), "stop the cache");
    let (built, said) = buildkit_build(&tag_down, &dockerfile);
    assert!(built, "the build without the cache failed:\n{said}");
    assert_eq!(said.matches(&notice("pip")).count(), 2, "{said}");
    assert_eq!(said.matches(&notice("uv")).count(), 1, "{said}");
    installed(&tag_down);
    // A container made from the image, as a job container runs `pip install`.
    let out = docker(&[
        "run",
        "--rm",
        &tag_down,
        "pip",
        "install",
        "--no-cache-dir",
        "--target",
        "/tmp/job-site",
        "demo",
    ]);
    assert_ok(&out, "pip install in a container with the cache down");
    assert!(
        text(&out.stderr).contains(&notice("pip")),
        "{}",
        text(&out.stderr)
    );
}

/// The host the plugin's lines point pip at (`ENV DEVCACHE_HOST=...`).
fn tutor_host(minimal: &str) -> &str {
    minimal
        .split_whitespace()
        .find_map(|word| word.strip_prefix("DEVCACHE_HOST="))
        .unwrap()
}

#[test]
fn the_manager_finds_the_cache_tutor_runs_from_the_plugin() {
    let dev = DevProject::new("dctutorsvc");
    let (project, network, upstream) = (&dev.name, &dev.network, &dev.upstream);
    let upstream_url = format!("http://{upstream}:8000/simple/");
    let home = &dev.home;
    let devcache = |args: &[&str]| dev.devcache(args);
    assert_ok(
        &devcache_command(home.path())
            .env("DEVCACHE_IMAGE", DEVCACHE_IMAGE)
            .arg("image")
            .output()
            .unwrap(),
        "devcache image",
    );

    // The plugin's service as Compose v2 runs it for `tutor dev start`: devcache's
    // image, labelled and named by Compose, its data in Tutor's data folder.
    let cache = format!("{project}-devcache-1");
    let data = home.path().join("tutor/data/devcache");
    std::fs::create_dir_all(&data).unwrap();
    let compose_labels = |service: &str| {
        [
            "--label".to_string(),
            format!("com.docker.compose.project={project}"),
            "--label".to_string(),
            format!("com.docker.compose.service={service}"),
        ]
    };
    let mut run = Command::new("docker");
    run.args([
        "run",
        "-d",
        "--name",
        &cache,
        "--network",
        network,
        "-p",
        "3141",
    ])
    .args(compose_labels("devcache"))
    .args(["-e", &format!("DEVCACHE_UPSTREAM={upstream_url}")])
    .args(["-v", &format!("{}:/data", data.display())])
    .arg(DEVCACHE_IMAGE);
    assert_ok(&run.output().unwrap(), "start the plugin's cache service");
    let port = published_port(&cache);
    wait_for("the cache to answer", || cache_status(&port).is_some());
    let lms = format!("{project}-lms-1");
    let mut run = Command::new("docker");
    run.args(["run", "-d", "--name", &lms, "--network", network])
        .args(compose_labels("lms"))
        .arg(TEST_IMAGE);
    assert_ok(&run.output().unwrap(), "start lms");
    let out = docker(&[
        "exec",
        &lms,
        "sh",
        "-c",
        "mkdir -p /openedx/edx-platform/requirements/edx && cd /openedx/edx-platform/requirements/edx \
         && echo 'demo==1.0' > development.txt && echo 'demo==1.0' > base.txt",
    ]);
    assert_ok(&out, "write lms's requirement file");

    // warm finds that cache without --url, and fills it.
    let out = devcache(&["warm", "lms"]);
    assert_ok(&out, "devcache warm lms");
    let after = cache_status(&port).unwrap();
    assert_eq!(after["files"], 1, "{after}");
    let blobs = std::fs::read_dir(data.join("files")).unwrap().count();
    assert!(blobs >= 1, "the warmed file is not in Tutor's data folder");

    // status shows it as the project's cache, with its counters.
    let out = devcache(&["status", "--json"]);
    assert_ok(&out, "devcache status --json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = &report["cache"];
    assert_eq!(shown["container"], cache.as_str(), "{report}");
    assert_eq!(shown["state"], "running", "{report}");
    assert_eq!(shown["run_by"], "Tutor, from devcache's plugin", "{report}");
    assert_eq!(
        shown["url"],
        format!("http://localhost:{port}/").as_str(),
        "{report}"
    );
    assert_eq!(shown["volume"], data.display().to_string().as_str());
    assert!(shown["server"]["misses"].as_u64().unwrap() >= 1, "{report}");
    let out = devcache(&["status"]);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("cache     {cache} (running; run by Tutor")),
        "{said}"
    );

    // The commands that work on a cache container work on it.
    let out = devcache(&["verify"]);
    assert_ok(&out, "devcache verify");
    assert!(
        text(&out.stdout).contains("checked 1 files"),
        "{}",
        text(&out.stdout)
    );
    let bundle = home.path().join("tutor-cache.tar");
    let out = devcache(&["export", &bundle.display().to_string()]);
    assert_ok(&out, "devcache export");
    assert!(bundle.metadata().unwrap().len() > 849);

    // up starts no second cache beside it.
    let out = devcache(&["up", "--upstream", &upstream_url, "--port", "0"]);
    assert_ok(&out, "devcache up");
    let said = text(&out.stdout);
    assert!(said.contains("no second one started"), "{said}");
    let manager_cache = docker(&["inspect", &format!("edx.{project}.devpi")]);
    assert!(!manager_cache.status.success(), "up started a second cache");
    // logs are its logs; down leaves it to Tutor.
    let out = devcache(&["logs"]);
    assert_ok(&out, "devcache logs");
    assert!(
        text(&out.stdout).contains("listening on http://0.0.0.0:3141/"),
        "{}",
        text(&out.stdout)
    );
    let out = devcache(&["down"]);
    assert_ok(&out, "devcache down");
    assert!(
        text(&out.stdout).contains(&format!("cache {cache}: Tutor runs it")),
        "{}",
        text(&out.stdout)
    );
    assert!(cache_status(&port).is_some(), "down stopped Tutor's cache");

    // Stopped, it is named with the way to start it.
    assert_ok(&docker(&["stop", &cache]), "stop the cache");
    for args in [&["up"][..], &["warm", "lms"][..]] {
        let out = devcache(args);
        assert!(!out.status.success(), "{args:?} succeeded without a cache");
        let said = text(&out.stderr);
        assert!(
            said.contains("tutor dev start devcache"),
            "{args:?}: {said}"
        );
    }
}

#[test]
fn docker_compose_v1_starts_the_rendered_cache_service_alone_and_its_data_stays_in_tutors_folder() {
    let project = format!("{}_local", unique("dctutorcv"));
    let network = format!("{project}_default");
    let upstream = format!("{project}-upstream");
    let _cleanup = Cleanup {
        prefixes: vec![format!("{project}_"), upstream.clone()],
        networks: vec![network.clone()],
        volumes: vec![],
        images: vec![],
    };
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let tutor = Tutor::new();
    let upstream_url = format!("http://{upstream}:8000/simple/");
    let out = tutor.devcache(&[
        "tutor",
        "enable",
        "--upstream",
        &upstream_url,
        "--build-host",
        "172.17.0.1",
        "--port",
        &port,
    ]);
    assert_ok(&out, "devcache tutor enable");

    // Tutor's rendered compose file, brought up for its devcache service alone: the
    // other services' images are not here, and `up devcache` needs none of them.
    let compose_file = tutor.dir.path().join("root/env/local/docker-compose.yml");
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .arg("-f")
            .arg(&compose_file)
            .args(["-p", &project])
            .args(args)
            .output()
            .expect("docker-compose (v1) runs: install it, e.g. apt-get install docker-compose")
    };
    assert_ok(
        &compose(&["up", "-d", "devcache"]),
        "docker-compose up -d devcache",
    );
    let index = tempfile::tempdir().unwrap();
    start_upstream(&upstream, Some(&network), index.path());
    let page = format!("http://127.0.0.1:{port}/root/pypi/+simple/demo/");
    wait_for("the cache to list demo from its upstream", || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let answer = support::http().get(&page).send().await;
            answer.is_ok_and(|a| a.status().is_success())
        })
    });
    assert_eq!(
        cache_status(&port).unwrap()["upstream"],
        upstream_url.as_str()
    );

    // The manager finds it as Compose v1 names it, and warms it.
    let requirements = tutor.dir.path().join("requirements.txt");
    std::fs::write(&requirements, "demo==1.0\n").unwrap();
    let out = tutor.devcache(&[
        "warm",
        "-r",
        &requirements.display().to_string(),
        "--project",
        &project,
    ]);
    assert_ok(&out, "devcache warm -r");
    let out = tutor.devcache(&["status", "--json", "--project", &project]);
    assert_ok(&out, "devcache status --json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["cache"]["container"],
        format!("{project}_devcache_1").as_str(),
        "{report}"
    );
    let data = tutor.dir.path().join("root/data/devcache");
    assert_eq!(
        report["cache"]["volume"],
        data.display().to_string().as_str()
    );
    assert!(
        std::fs::read_dir(data.join("files")).unwrap().count() >= 1,
        "the warmed file is not in Tutor's data folder"
    );

    // A new container of the service has what the old one cached.
    assert_ok(&compose(&["rm", "-sf", "devcache"]), "docker-compose rm");
    assert_ok(
        &compose(&["up", "-d", "devcache"]),
        "docker-compose up again",
    );
    wait_for("the new cache to answer", || cache_status(&port).is_some());
    let status = cache_status(&port).unwrap();
    assert_eq!(status["files"], 1, "{status}");
    assert_eq!(status["misses"], 0, "{status}");
}
