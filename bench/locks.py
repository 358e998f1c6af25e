"""Lock files: how long `devcache warm --lock` takes over a ~300-package `uv.lock`, and
what a locked install costs direct from the upstream and from a warm cache.

The upstream is the benchmark's generated index served by nginx (bench.py's workload);
the lock is made by uv against it. On the host, "from the cache" is the route that needs
no setup: `uv export --frozen` then `uv pip sync` against the cache, which checks every
file against the lock's hashes.

The Docker phase times `uv sync --frozen` itself in a devstack-shaped container, with the
lock's file URLs on an https file host (`files.bench.test`, the lock's URLs rewritten to
it; uv does not check them against an index):
- direct: a container that resolves the file host to the bridge's gateway, where the
  upstream's nginx also serves the same tree over TLS, with a certificate from a bench CA
  (made with the openssl CLI, trusted in the container's system store, `UV_SYSTEM_CERTS`);
- through the cache: `devcache up` for a project of its own, a `lms` container,
  `devcache warm lms`, `devcache enable --locked-installs lms`, then nginx stopped.
The two alternate, run for run, so that both meet the same load on a shared machine;
nginx (the upstream and the file host) runs only during direct runs. In both, the
project and its lock are in a host directory mounted at edx-platform's root, as devstack
mounts the checkout, and uv's cache is in it too: the container's own filesystem would
time Docker's storage driver (fuse-overlayfs here) rather than the downloads. Each timed
`uv sync --frozen` starts from an empty uv cache and no `.venv`; the table gives the
median of `--repeat` runs (9) of each, and of the ratios of each cached run to the direct
run before it.

The phase runs by default when the Docker Engine answers, the test image
(devcache-test/python:bookworm, made by `.ci/test-image`) exists and this runs as root
(nginx binds port 443 on the gateway); `--docker` insists on it, `--no-docker` skips it.
Every container, volume, network and image it makes is removed at the end, also when a
step fails or the run is stopped.

    python3 bench/locks.py [--quick] [--uv PATH] [--python PATH] [--docker|--no-docker] [--repeat N]

Timings are printed, never asserted; a failed step exits non-zero.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import workload  # noqa: E402

DEVCACHE = os.path.join(bench.REPO, "target", "release", "devcache")
CONSUMER_IMAGE = "devcache-test/python:bookworm"
FILE_HOST = "files.bench.test"
PLATFORM = "/edx/app/edxapp/edx-platform"


def timed(what: str, cmd: list, env: dict, cwd: str) -> float:
    t0 = time.perf_counter()
    done = bench.run(cmd, env=env, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"locks: {what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def write_project(project: str, wl: workload.Workload):
    os.makedirs(project)
    with open(os.path.join(project, "pyproject.toml"), "w") as fh:
        deps = ",\n".join(f'    "{name}=={fn.split("-")[1]}"' for name, fn in wl.pinned.items())
        fh.write(f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                 f"dependencies = [\n{deps}\n]\n")


def host_rows(args, work: str, project: str, upstream: str, nginx: bench.Nginx, env: dict) -> list:
    """warm --lock twice, `uv sync --frozen` direct, then export + pip sync from the cache
    with the upstream stopped: all on the host."""
    rows = []
    data = os.path.join(work, "data")
    warm = [DEVCACHE, "warm", "--lock", "uv.lock", "--python", "3.11", "--data-dir", data,
            "--upstream", upstream]
    for label in ("cold", "again (all cached)"):
        before = nginx.requests()
        seconds = timed("warm", warm, env, project)
        asked = nginx.requests() - before
        rows.append((f"devcache warm --lock uv.lock, {label} ({asked} upstream requests)", seconds))

    venv = os.path.join(work, "venv-direct")
    run_env = dict(env, UV_PROJECT_ENVIRONMENT=venv, UV_CACHE_DIR=os.path.join(work, "uvc-direct"))
    rows.append(("uv sync --frozen, direct from the upstream (empty uv cache)",
                 timed("uv sync --frozen", [args.uv, "sync", "--frozen"], run_env, project)))

    cache = bench.Devcache(bench.free_port(), data, upstream)
    cache.start(os.path.join(work, "devcache.log"))
    nginx.stop()  # from here on the upstream is gone
    try:
        venv = os.path.join(work, "venv-cache")
        uvc = os.path.join(work, "uvc-cache")
        timed("uv venv", [args.uv, "venv", venv], env, project)
        t0 = time.perf_counter()
        timed("uv export", [args.uv, "export", "--frozen", "--no-emit-project", "-o", "requirements.txt"],
              env, project)
        sync = [args.uv, "pip", "sync", "--python", os.path.join(venv, "bin", "python"), "--cache-dir", uvc,
                "--index-url", cache.url(), "requirements.txt"]
        timed("uv pip sync", sync, env, project)
        rows.append(("uv export --frozen + uv pip sync from the warm cache, upstream stopped (empty uv cache)",
                     time.perf_counter() - t0))
    finally:
        cache.stop()
    return rows


# ---------------------------------------------------------------------------- Docker phase

def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = bench.run(["docker", *args])
    if check and done.returncode != 0:
        sys.exit(f"locks: docker {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done


def docker_missing() -> str | None:
    """Why the Docker phase cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    if docker("version", check=False).returncode != 0:
        return "the Docker Engine does not answer"
    if docker("image", "inspect", CONSUMER_IMAGE, check=False).returncode != 0:
        return f"{CONSUMER_IMAGE} is missing (bash .ci/test-image)"
    if os.geteuid() != 0:
        return "nginx must bind port 443 on the bridge's gateway: run as root"
    return None


class BenchStack:
    """A devstack-shaped project of the benchmark's own: its network, containers, the
    cache's volume and devcache image, all removed by `remove`."""

    def __init__(self, work: str):
        self.project = f"dclockbench{os.getpid()}"
        self.network = f"{self.project}_default"
        self.image = f"devcache-bench/{self.project}:latest"
        self.state = os.path.join(work, "state")
        docker("network", "create", self.network)
        self.gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                              self.network, check=False).stdout.strip()
        if not self.gateway:
            self.remove()
            sys.exit(f"locks: the network {self.network} has no gateway address")

    def container(self, service: str) -> str:
        return f"edx.{self.project}.{service}"

    def start_consumer(self, service: str, *extra: str) -> str:
        """A container of the test image on the project's network, labelled as compose would."""
        name = self.container(service)
        docker("run", "-d", "--name", name, "--network", self.network,
               "--label", f"com.docker.compose.project={self.project}",
               "--label", f"com.docker.compose.service={service}", *extra, CONSUMER_IMAGE)
        return name

    def devcache(self, *args: str) -> float:
        """Runs devcache for this project (its remembered choices under the work dir);
        the seconds it took."""
        leaks = ("PIP_INDEX_URL", "PIP_CONFIG_FILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCACHE_") and k not in leaks}
        env.update(COMPOSE_PROJECT_NAME=self.project, DEVCACHE_IMAGE=self.image, XDG_STATE_HOME=self.state)
        return timed(f"devcache {' '.join(args)}", [DEVCACHE, *args], env, os.path.dirname(self.state))

    def cache_log(self) -> list[str]:
        return docker("logs", self.container("devpi")).stdout.splitlines()

    def remove(self):
        listed = docker("ps", "-aq", "--filter", f"name=edx.{self.project}.", check=False).stdout.split()
        if listed:
            docker("rm", "-f", *listed, check=False)
        docker("network", "rm", self.network, check=False)
        docker("volume", "rm", f"{self.project}_devpi_data", check=False)
        docker("image", "rm", "-f", self.image, check=False)


def make_bench_ca(directory: str, host: str) -> tuple[str, str, str]:
    """A CA of the benchmark's own and a certificate for `host` signed by it, with the
    openssl CLI: (CA certificate, certificate, key) paths."""
    os.makedirs(directory)
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr, cert = (os.path.join(directory, n) for n in ("host.key", "host.csr", "host.pem"))
    ext = os.path.join(directory, "host.ext")
    with open(ext, "w") as fh:
        fh.write(f"subjectAltName = DNS:{host}\nbasicConstraints = critical, CA:FALSE\n"
                 "extendedKeyUsage = serverAuth\n")
    for what, cmd in (
        ("the CA", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=devcache bench CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        ("the host's request", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                "-keyout", key, "-out", csr, "-subj", f"/CN={host}"]),
        ("the host's certificate", ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext]),
    ):
        done = bench.run(["openssl", *cmd])
        if done.returncode != 0:
            sys.exit(f"locks: openssl could not make {what}: {done.stderr.strip()[-1000:]}")
    return ca, cert, key


def file_host_server(address: str, host: str, cert: str, key: str, tree: str) -> str:
    """An nginx server block answering https://<host>/ on <address>:443 from the
    generated tree: the lock's file host, for the direct route."""
    return f"""
    server {{
        listen {address}:443 ssl;
        server_name {host};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {tree};
        location /files/ {{ }}
    }}"""


def lock_on_file_host(lock: str, files_base: str, host: str) -> str:
    """The lock with its file URLs (`url = "<files_base>/..."`) moved to https://<host>/,
    the same paths."""
    moved, count = re.subn(r'url = "' + re.escape(files_base) + "/", f'url = "https://{host}/', lock)
    if count == 0:
        sys.exit(f"locks: the lock names no file under {files_base}")
    return moved


def mount_platform(work: str, service: str, project_dir: str) -> str:
    """A host directory holding the project and its lock, for a container to mount at
    edx-platform's root (devstack mounts the checkout): `-v` arguments."""
    checkout = os.path.join(work, f"edx-platform-{service}")
    os.makedirs(checkout)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(os.path.join(project_dir, name), checkout)
    return f"{checkout}:{PLATFORM}"


def container_sync(container: str, *env: str) -> float:
    """Seconds of one `uv sync --frozen` in edx-platform's root, with no `.venv` and an
    empty uv cache, timed inside the container. The uv cache is in the mounted checkout
    too, so that both are on the host's filesystem and uv links files from one to the
    other: the container's own (overlay) filesystem would time the storage driver instead."""
    script = (f"cd {PLATFORM} && rm -rf .venv .uv-cache && s=$(date +%s%N) && "
              "uv sync --frozen --python /usr/bin/python3 >/tmp/uv-sync.log 2>&1; rc=$?; e=$(date +%s%N); "
              '[ $rc = 0 ] || { cat /tmp/uv-sync.log; exit $rc; }; echo $((e - s))')
    flags = [arg for pair in zip(["-e"] * len(env), env) for arg in pair]
    done = docker("exec", *flags, "-e", f"UV_CACHE_DIR={PLATFORM}/.uv-cache", "-e", "UV_PYTHON_DOWNLOADS=never",
                  container, "sh", "-c", script, check=False)
    if done.returncode != 0:
        sys.exit(f"locks: uv sync --frozen in {container} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) / 1e9


def file_requests(log: list[str]) -> tuple[int, int]:
    """(file requests, of which cache hits) in the cache's access log."""
    asked = [line for line in log if " GET /files/" in line]
    return len(asked), sum(1 for line in asked if line.endswith(" hit"))


def spread(runs: list) -> str:
    return f"median of {len(runs)}, runs {bench.fmt_s(min(runs))} to {bench.fmt_s(max(runs))}"


def docker_rows(args, work: str, project: str, files_base: str, upstream: str, ca: str,
                nginx: bench.Nginx, stack: BenchStack) -> list:
    """`uv sync --frozen` in a container, direct from the TLS file host and through the
    warm cache with nginx (the upstream and the file host) stopped. The two alternate,
    run for run, so that both meet the same load on a shared machine."""
    rows = []
    on_host = os.path.join(work, "app-on-file-host")
    os.makedirs(on_host)
    shutil.copy(os.path.join(project, "pyproject.toml"), on_host)
    with open(os.path.join(project, "uv.lock")) as fh:
        lock = lock_on_file_host(fh.read(), files_base, FILE_HOST)
    with open(os.path.join(on_host, "uv.lock"), "w") as fh:
        fh.write(lock)
    try:
        direct = stack.start_consumer("direct", "--add-host", f"{FILE_HOST}:{stack.gateway}",
                                      "-v", mount_platform(work, "direct", on_host))
        docker("cp", args.uv, f"{direct}:/usr/local/bin/uv")
        docker("cp", ca, f"{direct}:/usr/local/share/ca-certificates/devcache-bench.crt")
        docker("exec", direct, "update-ca-certificates")

        lms = stack.start_consumer("lms", "-v", mount_platform(work, "lms", on_host))
        docker("cp", args.uv, f"{lms}:/usr/local/bin/uv")
        nginx.start()  # stopped by the host-side phases
        stack.devcache("up", "--upstream", upstream, "--port", "0")
        rows.append(("devcache warm lms (the container's uv.lock, into the cache container), cold",
                     stack.devcache("warm", "lms")))
        stack.devcache("enable", "--locked-installs", "lms")
        nginx.stop()

        asked_before, hits_before = file_requests(stack.cache_log())
        direct_runs, cache_runs = [], []
        for _ in range(args.repeat):
            nginx.start()
            direct_runs.append(container_sync(direct, "UV_SYSTEM_CERTS=1"))
            nginx.stop()
            cache_runs.append(container_sync(lms))
        asked, hits = file_requests(stack.cache_log())
    finally:
        nginx.stop()
    rows.append((f"uv sync --frozen in a container, direct from the https file host ({spread(direct_runs)})",
                 statistics.median(direct_runs)))
    rows.append((f"uv sync --frozen in a container, through the warm cache with `enable --locked-installs`, "
                 f"upstream and file host stopped ({hits - hits_before} of {asked - asked_before} file requests "
                 f"cache hits; {spread(cache_runs)})", statistics.median(cache_runs)))
    ratios = [cached / straight for straight, cached in zip(direct_runs, cache_runs)]
    rows.append((f"through the cache / direct, run by run (median of {len(ratios)} pairs, "
                 f"{min(ratios):.2f}x to {max(ratios):.2f}x)", f"{statistics.median(ratios):.2f}x"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 projects instead of 300")
    parser.add_argument("--uv", default=shutil.which("uv") or os.path.join(bench.VENVS, "clients", "bin", "uv"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter uv installs for (3.11+)")
    parser.add_argument("--work", default=os.path.join(bench.HERE, "work", "locks"))
    parser.add_argument("--docker", action=argparse.BooleanOptionalAction, default=None,
                        help="time uv sync --frozen in containers too (default: when Docker can run it)")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each timed uv sync in a container")
    args = parser.parse_args()
    if args.repeat < 1:
        sys.exit("locks: --repeat needs a number of runs, 1 or more")
    if not shutil.which(args.uv):
        sys.exit(f"locks: no uv at {args.uv}: pass --uv PATH")
    if not os.access(DEVCACHE, os.X_OK):
        sys.exit(f"locks: no {DEVCACHE}: run `cargo build --release` first")
    # A stop (SIGTERM) unwinds like Ctrl-C, so that the containers are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    missing = docker_missing() if args.docker is not False else None
    if args.docker and missing:
        sys.exit(f"locks: --docker, but {missing}")
    with_docker = args.docker is not False and missing is None
    if args.docker is None and missing:
        print(f"locks: no Docker phase: {missing}", file=sys.stderr)

    load_before = os.getloadavg()[0]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    stack = BenchStack(args.work) if with_docker else None
    try:
        # With Docker, the upstream is also on the bridge's gateway, and its pages name
        # their files there, so that the cache container can fetch them.
        address = stack.gateway if stack else "127.0.0.1"
        up_port = bench.free_port()
        upstream = f"http://{address}:{up_port}/simple/"
        files_base = f"http://{address}:{up_port}"
        tree = os.path.join(args.work, "upstream")
        wl = workload.generate(tree, files_base, 40 if args.quick else 300, [5 * workload.MB], 5 * workload.MB)
        if stack:
            ca, cert, cert_key = make_bench_ca(os.path.join(args.work, "bench-ca"), FILE_HOST)
            nginx = bench.Nginx(args.work, tree, up_port, also_listen=(address,),
                                extra_server=file_host_server(address, FILE_HOST, cert, cert_key, tree))
        else:
            nginx = bench.Nginx(args.work, tree, up_port)
        nginx.start()
        env = dict(os.environ, UV_NO_CONFIG="1", UV_PYTHON=args.python, UV_PYTHON_DOWNLOADS="never",
                   NO_PROXY="*")
        for key in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
            env.pop(key, None)
        project = os.path.join(args.work, "app")
        write_project(project, wl)
        try:
            timed("uv lock", [args.uv, "lock", "--default-index", upstream], env, project)
            rows = host_rows(args, args.work, project, upstream, nginx, env)
            if stack:
                rows += docker_rows(args, args.work, project, files_base, upstream, ca, nginx, stack)
        finally:
            nginx.stop()
    finally:
        if stack:
            stack.remove()

    print(f"{len(wl.pinned)} locked packages; load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores")
    print("| step | time |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value if isinstance(value, str) else bench.fmt_s(value)} |")


if __name__ == "__main__":
    main()
