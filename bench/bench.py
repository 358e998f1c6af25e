"""Runs the same workload against devcache, its peers and plain nginx, one after another,
and writes a markdown table with ratios to devcache. `bench/run` prepares the tools and
calls this; see the README's performance section.

Timing figures are reported, never asserted. Correctness checks (a download whose bytes
differ, a failed install, broken connections or error answers under load) are listed
under the table; devcache failing one makes the exit status non-zero.
"""

import argparse
import datetime
import hashlib
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENVS = os.path.join(HERE, ".venvs")
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
LINE_RATE = 100 * 1024 * 1024  # bytes/s of the upstream's line-rate location


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def get(port: int, path: str, headers=None, timeout=30.0) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


# ---------------------------------------------------------------------------- upstream

class Nginx:
    """The upstream (and the static ceiling): nginx serving the generated tree, on
    127.0.0.1 and on each address of `also_listen` (e.g. a Docker bridge's gateway),
    with `extra_server` (a further server block, e.g. a TLS file host) beside it."""

    def __init__(self, work_dir: str, tree: str, port: int, also_listen: tuple = (), extra_server: str = ""):
        self.dir = os.path.join(work_dir, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = port
        self.log = os.path.join(self.dir, "logs", "access.log")
        self.conf = os.path.join(self.dir, "nginx.conf")
        user = "user root;" if os.geteuid() == 0 else ""
        listen = "".join(f"\n        listen {address}:{port} reuseport backlog=4096;" for address in also_listen)
        with open(self.conf, "w") as fh:
            fh.write(f"""
{user}
daemon off;
worker_processes 2;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; application/vnd.pypi.simple.v1+json json;
             application/octet-stream whl gz metadata; }}
    default_type application/octet-stream;
    access_log {self.log};
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_requests 1000000;
    etag on;
    map $http_accept $simple_format {{
        ~application/vnd\\.pypi\\.simple\\.v1\\+json json;
        default html;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;{listen}
        root {tree};
        location /simple/ {{
            try_files $uri/index.$simple_format ${{uri}}index.$simple_format =404;
        }}
        location /nometa/simple/ {{
            try_files $uri/index.$simple_format ${{uri}}index.$simple_format =404;
        }}
        location /files/ {{ }}
        # A download at a line rate (about 800 Mbit/s), as from a real index.
        location /line-rate/ {{ alias {tree}/files/; limit_rate {LINE_RATE}; }}
    }}{extra_server}
}}
""")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_ready(self.port, "/simple/", self.proc, 10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def requests(self) -> int:
        try:
            with open(self.log, "rb") as fh:
                return sum(1 for _ in fh)
        except FileNotFoundError:
            return 0

    def lines_since(self, count: int) -> list[str]:
        with open(self.log, "r", errors="replace") as fh:
            return fh.readlines()[count:]

    def bytes_since(self, count: int) -> int:
        """Body bytes nginx sent since its `count`th request (the combined log's field)."""
        total = 0
        for line in self.lines_since(count):
            fields = line.split('"')[2].split() if line.count('"') >= 2 else []
            if len(fields) >= 2 and fields[1].isdigit():
                total += int(fields[1])
        return total


def wait_ready(port: int, path: str, proc, timeout: float) -> float:
    """Seconds until `path` answers 200; raises if the process dies or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering")
        try:
            status, _, _ = get(port, path, timeout=2)
            if status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"no answer on {path} within {timeout}s")


# ---------------------------------------------------------------------------- servers

class Server:
    """A cache under test: how to start it and where its index is."""

    name = ""
    index = "/simple/"
    ready = "/"

    def __init__(self, port: int, data_dir: str, upstream: str):
        self.port, self.data_dir, self.upstream = port, data_dir, upstream
        self.proc = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return dict(os.environ)

    def prepare(self):
        """Work done before the clock starts (devpi's init)."""

    def start(self, log_path: str) -> float:
        self.prepare()
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=self.env(),
                                     start_new_session=True, cwd=self.data_dir)
        try:
            return wait_ready(self.port, self.ready, self.proc, 60)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {e}; see {log_path}") from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.index}"

    def memory(self) -> tuple[int, int]:
        """(RSS, peak RSS) in bytes, summed over the server's process tree."""
        return tree_memory(self.proc.pid) if self.proc else (0, 0)


class Devcache(Server):
    name = "devcache"
    index = "/root/pypi/+simple/"
    ready = "/+status"

    def command(self):
        return [os.path.join(REPO, "target", "release", "devcache"), "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", self.data_dir, "--upstream", self.upstream]


class Devpi(Server):
    name = "devpi-server"
    index = "/root/pypi/+simple/"
    ready = "/+api"

    def bin(self, tool: str) -> str:
        return os.path.join(VENVS, "devpi", "bin", tool)

    def prepare(self):
        """devpi-init, then point root/pypi at the bench's upstream: devpi-server has no
        flag for it, so a first, untimed start sets the index's mirror_url through devpi's
        own client."""
        if os.path.exists(os.path.join(self.data_dir, ".serverversion")):
            return
        os.makedirs(self.data_dir, exist_ok=True)
        init = run([self.bin("devpi-init"), "--serverdir", self.data_dir, "--root-passwd", "bench"])
        if init.returncode != 0:
            raise RuntimeError(f"devpi-init failed: {init.stderr.strip()}")
        log = open(os.path.join(self.data_dir, "setup.log"), "ab")
        proc = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        try:
            wait_ready(self.port, self.ready, proc, 60)
            client = ["--clientdir", os.path.join(self.data_dir, "client")]
            for args in (["use", f"http://127.0.0.1:{self.port}/"],
                         ["login", "root", "--password", "bench"],
                         ["index", "root/pypi", f"mirror_url={self.upstream}"]):
                done = run([self.bin("devpi"), *args, *client])
                if done.returncode != 0:
                    raise RuntimeError(f"devpi {args[0]} failed: {done.stdout}{done.stderr}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    def command(self):
        return [self.bin("devpi-server"), "--serverdir", self.data_dir,
                "--host", "127.0.0.1", "--port", str(self.port)]


class Proxpi(Server):
    """proxpi as its image runs it (gunicorn --preload), given 8 threads rather than the
    image's one sync worker so that it can answer more than one connection at a time."""

    name = "proxpi"
    index = "/index/"
    ready = "/health"

    def env(self):
        env = dict(os.environ)
        env.update(PROXPI_INDEX_URL=self.upstream, PROXPI_CACHE_DIR=self.data_dir)
        return env

    def command(self):
        return [os.path.join(VENVS, "proxpi", "bin", "gunicorn"), "--preload", "--threads", "8",
                "--bind", f"127.0.0.1:{self.port}", "proxpi.server:app"]


class Peryx(Server):
    """peryx with one cached index, "pypi", whose upstream is the bench's nginx."""

    name = "peryx"
    index = "/pypi/simple/"
    ready = "/pypi/simple/"

    def config_path(self) -> str:
        return os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + "-peryx.toml")

    def prepare(self):
        with open(self.config_path(), "w") as f:
            f.write(f'host = "127.0.0.1"\nport = {self.port}\ndata_dir = "{self.data_dir}"\n\n'
                    '[[index]]\nname = "pypi"\nroute = "pypi"\necosystem = "pypi"\n\n'
                    f'[[index.upstream]]\nname = "bench"\nurl = "{self.upstream}"\n')

    def command(self):
        return [os.path.join(VENVS, "peryx", "bin", "peryx"), "serve", "--config", self.config_path()]


def tree_memory(root_pid: int) -> tuple[int, int]:
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    rss = peak = 0
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("VmHWM:"):
                        peak += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, peak


def settled(read, interval: float, readings: int, key=lambda value: value):
    """`read()` once it stops changing: two readings `interval` apart whose `key` is the
    same, or the last of `readings` more."""
    last = read()
    for _ in range(readings):
        time.sleep(interval)
        now = read()
        if key(now) == key(last):
            return now
        last = now
    return last


def settled_disk_usage(path: str) -> int:
    """`disk_usage` once it stops growing (for at most 5 s): a cache may write what it
    answered after the answers (devcache does once a burst of requests is over)."""
    return settled(lambda: disk_usage(path), 0.3, 16)


def disk_usage(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------- clients

class Clients:
    """pip and uv from the bench's venv. `work_dir` holds their downloads; `tmpdir`, when
    given, is their TMPDIR (uv's `--no-cache` cache, pip's build directories)."""

    def __init__(self, work_dir: str, tmpdir: str | None = None):
        self.bin = os.path.join(VENVS, "clients", "bin")
        self.work = work_dir
        self.tmpdir = tmpdir

    @classmethod
    def on_tmpfs(cls, fallback_dir: str, prefix: str) -> "Clients":
        """Clients whose downloads and TMPDIR are in a new directory on /dev/shm (a tmpfs)
        when it can be written, else under `fallback_dir`; the caller removes `work`.
        Files on a tmpfs are created and deleted without the disk's costs (see nometa.py)."""
        tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        scratch = tempfile.mkdtemp(prefix=prefix, dir=tmpfs or fallback_dir)
        for sub in ("tmp", "downloads"):
            os.makedirs(os.path.join(scratch, sub))
        return cls(scratch, tmpdir=os.path.join(scratch, "tmp"))

    def env(self, **extra) -> dict:
        env = dict(os.environ, **extra)
        if self.tmpdir:
            env["TMPDIR"] = self.tmpdir
        return env

    def pip_download(self, index_url: str, requirements: str, label: str) -> tuple[float, bool, str]:
        dest = os.path.join(self.work, "downloads", label)
        shutil.rmtree(dest, ignore_errors=True)
        env = self.env(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        t0 = time.perf_counter()
        done = run([os.path.join(self.bin, "pip"), "download", "--no-cache-dir", "--quiet",
                    "--index-url", index_url, "--no-deps", "-r", requirements, "-d", dest], env=env)
        elapsed = time.perf_counter() - t0
        return elapsed, done.returncode == 0, done.stderr[-2000:]

    def uv_compile(self, index_url: str, requirements: str) -> tuple[float, bool, str]:
        env = self.env(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never")
        for key in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL"):
            env.pop(key, None)
        t0 = time.perf_counter()
        done = run([os.path.join(self.bin, "uv"), "pip", "compile", "--no-cache", "--quiet",
                    "--index-url", index_url, "--python-version", "3.11", requirements,
                    "-o", os.devnull], env=env)
        elapsed = time.perf_counter() - t0
        return elapsed, done.returncode == 0, done.stderr[-2000:]


def check_downloads(dest: str, wl: workload.Workload) -> str | None:
    """Every pinned wheel present with the upstream's bytes; else what is wrong."""
    for filename in wl.pinned.values():
        got = os.path.join(dest, filename)
        if not os.path.exists(got):
            return f"{filename} missing"
        if file_sha(got) != wl.sha256[filename]:
            return f"{filename} differs from the upstream's"
    return None


def pip_round(clients: Clients, server: Server, wl: workload.Workload, label: str) -> tuple[float, str | None]:
    """The time of one `pip download` of the set through `server`, and what went wrong."""
    elapsed, ok, err = clients.pip_download(server.url(), wl.requirements, label)
    if not ok:
        return elapsed, "pip download failed: " + (err.strip().splitlines() or ["no message"])[-1]
    return elapsed, check_downloads(os.path.join(clients.work, "downloads", label), wl)


def file_sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_link(port: int, index: str, project: str, filename: str) -> str:
    """The path a server gives for `filename` on its page for `project`."""
    status, body, _ = get(port, f"{index}{project}/", {"Accept": "text/html"})
    if status != 200:
        raise RuntimeError(f"page for {project}: HTTP {status}")
    page_url = f"http://127.0.0.1:{port}{index}{project}/"
    for href in re.findall(r'href="([^"]+)"', body.decode()):
        href = href.replace("&amp;", "&")
        if urllib.parse.unquote(href.split("#")[0]).rsplit("/", 1)[-1] == filename:
            full = urllib.parse.urljoin(page_url, href.split("#")[0])
            return urllib.parse.urlsplit(full).path
    raise RuntimeError(f"{filename} not on the page for {project}")


def curl_timed(port: int, path: str, out: str) -> tuple[float, float, int, int]:
    """(time to first byte, total time, bytes, status) of one GET through curl, following
    redirects as pip does (proxpi sends a client to the upstream when its fetch is slow)."""
    done = run(["curl", "-s", "-L", "-o", out, "-w", "%{time_starttransfer} %{time_total} %{size_download} %{http_code}",
                f"http://127.0.0.1:{port}{path}"])
    ttfb, total, size, code = done.stdout.split()
    return float(ttfb), float(total), int(size), int(code)


def wrk(port: int, path: str, seconds: int, accept: str | None = None, gzip: bool = False) -> dict:
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    if gzip:
        cmd += ["-H", "Accept-Encoding: gzip"]
    done = run(cmd + [f"http://127.0.0.1:{port}{path}"])
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeouts = map(int, errors.groups()) if errors else (0, 0, 0, 0)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "bad": int(bad.group(1)) if bad else 0,
        # Broken connections are wrong answers; a request slower than wrk's 2 s timeout is
        # only slow, and shows in the p99 and the count beside it.
        "errors": f"connect {connect}, read {read}, write {write}" if connect + read + write else "",
        "timeouts": timeouts,
    }


def p99_text(result: dict) -> str:
    text = f"{result['p99_ms']:.2f} ms"
    return text + f" ({result['timeouts']} over 2 s)" if result["timeouts"] else text


# ---------------------------------------------------------------------------- the run

class Results:
    def __init__(self):
        self.rows = {}  # metric -> {server: (value, text)}
        self.order = []
        self.failures = []  # "server: what went wrong"

    def put(self, metric: str, server: str, value, text: str, lower_is_better=True):
        if metric not in self.rows:
            self.rows[metric] = {"_lower": lower_is_better}
            self.order.append(metric)
        self.rows[metric][server] = (value, text)

    def fail(self, server: str, what: str):
        self.failures.append(f"{server}: {what}")
        print(f"  CHECK FAILED: {what}", flush=True)

    def table(self, servers: list[str]) -> str:
        lines = ["| | " + " | ".join(servers) + " |", "|---|" + "---|" * len(servers)]
        for metric in self.order:
            row = self.rows[metric]
            base = row.get("devcache", (None, ""))[0]
            cells = []
            for s in servers:
                value, text = row.get(s, (None, "—"))
                if s != "devcache" and isinstance(value, (int, float)) and isinstance(base, (int, float)) and base:
                    text += f" ({ratio(value / base)})"
                cells.append(text)
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"


def fmt_s(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def median(values: list) -> float:
    return sorted(values)[len(values) // 2]


def measure_direct(nginx: Nginx, wl: workload.Workload) -> dict:
    """The baselines: each cold-test file fetched straight from the upstream, once into
    the page cache (as for the servers) and once timed; (first byte, total) medians."""
    direct = {}
    for label, location, files in (("memory", "files", wl.cold_single),
                                   ("line", "line-rate", wl.cold_line_rate)):
        samples = []
        for project, filename in files:
            path = f"/{location}/{project}/{filename}"
            curl_timed(nginx.port, path, os.devnull)
            samples.append(curl_timed(nginx.port, path, os.devnull))
        direct[label] = (median([s[0] for s in samples]), median([s[1] for s in samples]))
    return direct


def measure_direct_without_metadata(nginx: Nginx, wl: workload.Workload, clients: Clients) -> dict:
    """The baselines against the no-metadata upstream: uv and pip going direct, their time
    and the bytes they fetched."""
    url = f"http://127.0.0.1:{nginx.port}/nometa/simple/"
    direct = {}
    before = nginx.requests()
    elapsed, ok, err = clients.uv_compile(url, wl.requirements)
    if not ok:
        raise RuntimeError(f"uv pip compile direct from the no-metadata upstream failed: {err[-300:]}")
    direct["uv"] = (elapsed, nginx.bytes_since(before))
    before = nginx.requests()
    elapsed, ok, err = clients.pip_download(url, wl.requirements, "direct-nometa")
    if not ok:
        raise RuntimeError(f"pip download direct from the no-metadata upstream failed: {err[-300:]}")
    direct["pip"] = (elapsed, nginx.bytes_since(before))
    return direct


def put_against_direct(res: Results, name: str, label: str, problem: str | None,
                       elapsed: float, fetched: int, direct: tuple[float, int]):
    """One client run's time and upstream bytes, beside the same run going direct."""
    d_elapsed, d_bytes = direct
    if problem:
        res.fail(name, f"{label}: {problem}")
        res.put(f"{label}: time", name, None, "FAILED")
    else:
        res.put(f"{label}: time", name, elapsed / d_elapsed,
                f"{fmt_s(elapsed)}, {elapsed / d_elapsed:.2f}x direct")
    res.put(f"{label}: upstream bytes", name, fetched,
            f"{fmt_bytes(fetched)} (direct {fmt_bytes(d_bytes)})")
    print(f"  {label}: {fmt_s(elapsed)} (direct {fmt_s(d_elapsed)}),"
          f" {fmt_bytes(fetched)} from the upstream", flush=True)


def bench_without_metadata(server: Server, nginx: Nginx, wl: workload.Workload, clients: Clients,
                           res: Results, direct: dict, log_path: str):
    """A cold `uv pip compile`, then a cold `pip download`, of the set through `server` caching
    an upstream whose pages offer no core metadata: time against going direct, bytes the
    upstream sent, and bytes the cache kept after the compile."""
    name = server.name
    os.makedirs(server.data_dir)
    server.start(log_path)
    try:
        before = nginx.requests()
        elapsed, ok, err = clients.uv_compile(server.url(), wl.requirements)
        fetched = nginx.bytes_since(before)
        stored = settled_disk_usage(server.data_dir)
        label = "no-metadata upstream, uv pip compile cold"
        put_against_direct(res, name, label, None if ok else f"failed: {err.strip()[-300:]}",
                           elapsed, fetched, direct["uv"])
        res.put(f"{label}: bytes stored", name, stored, fmt_bytes(stored))
        print(f"  {fmt_bytes(stored)} stored after the compile", flush=True)

        before = nginx.requests()
        elapsed, problem = pip_round(clients, server, wl, f"{name}-nometa")
        fetched = nginx.bytes_since(before)
        put_against_direct(res, name, "no-metadata upstream, pip download cold", problem,
                           elapsed, fetched, direct["pip"])
    finally:
        server.stop()


def bench_server(server: Server, nginx: Nginx, wl: workload.Workload, clients: Clients, args,
                 res: Results, direct: dict):
    name = server.name
    work = args.work
    log_path = os.path.join(work, "logs", f"{name}.log")
    print(f"== {name}", flush=True)

    # Phase 1: an empty cache; start, pip cold then warm.
    os.makedirs(server.data_dir)
    startup = server.start(log_path)
    res.put("start to first answer", name, startup, fmt_s(startup))
    idle_rss, _ = server.memory()
    res.put("RSS idle", name, idle_rss, fmt_bytes(idle_rss))
    print(f"  started in {fmt_s(startup)}, {fmt_bytes(idle_rss)}", flush=True)

    for phase in ("cold", "warm"):
        before = nginx.requests()
        elapsed, problem = pip_round(clients, server, wl, f"{name}-{phase}")
        upstream = nginx.requests() - before
        if problem:
            res.fail(name, f"{phase}: {problem}")
            res.put(f"pip download, {phase}", name, None, "FAILED")
        else:
            res.put(f"pip download, {phase}", name, elapsed, fmt_s(elapsed))
        res.put(f"upstream requests, pip {phase}", name, upstream, str(upstream))
        print(f"  pip {phase}: {fmt_s(elapsed)}, {upstream} upstream requests", flush=True)

    # Offline: the upstream stops; the warm set must still download.
    nginx.stop()
    try:
        elapsed, problem = pip_round(clients, server, wl, f"{name}-offline")
        if problem:
            res.put("pip download, upstream stopped", name, None, "fails")
            print(f"  offline: fails ({problem})", flush=True)
        else:
            res.put("pip download, upstream stopped", name, elapsed, fmt_s(elapsed))
            print(f"  offline: {fmt_s(elapsed)}", flush=True)
    finally:
        nginx.start()

    # Phase 2: an empty cache again (a data directory of its own); uv cold then warm,
    # then the warm throughput runs.
    server.stop()
    server.data_dir += "-uv"
    os.makedirs(server.data_dir)
    server.start(log_path)
    for phase in ("cold", "warm"):
        before = nginx.requests()
        elapsed, ok, err = clients.uv_compile(server.url(), wl.requirements)
        upstream = nginx.requests() - before
        if not ok:
            res.fail(name, f"uv pip compile {phase} failed: {err.strip()[-300:]}")
            res.put(f"uv pip compile, {phase}", name, None, "FAILED")
        else:
            res.put(f"uv pip compile, {phase}", name, elapsed, fmt_s(elapsed))
        res.put(f"upstream requests, uv {phase}", name, upstream, str(upstream))
        print(f"  uv {phase}: {fmt_s(elapsed)}, {upstream} upstream requests", flush=True)

    page = f"{server.index}{wl.page_project}/"
    for label, path, accept in (("HTML page", page, "text/html"), ("JSON page", page, JSON_ACCEPT)):
        status, body, headers = get(server.port, path, {"Accept": accept})
        ctype = headers.get("Content-Type", headers.get("content-type", ""))
        if status != 200:
            res.fail(name, f"{label}: HTTP {status}")
        elif accept == JSON_ACCEPT and "json" not in ctype:
            res.put(f"warm {label}: requests/s", name, None, "no JSON")
            res.put(f"warm {label}: p99", name, None, "no JSON")
            continue
        result = wrk(server.port, path, args.wrk_seconds, accept)
        if result["bad"] or result["errors"]:
            res.fail(name, f"{label} under load: {result['bad']} bad answers {result['errors']}")
        res.put(f"warm {label}: requests/s", name, result["rps"], f"{result['rps']:,.0f}", False)
        res.put(f"warm {label}: p99", name, result["p99_ms"], p99_text(result))
        print(f"  {label}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms", flush=True)
    # As pip and uv ask for pages: gzip accepted. The bytes on the wire, then the load.
    status, plain, _ = get(server.port, page, {"Accept": JSON_ACCEPT})
    status_gz, body_gz, headers_gz = get(server.port, page, {"Accept": JSON_ACCEPT, "Accept-Encoding": "gzip"})
    encoding = headers_gz.get("Content-Encoding", headers_gz.get("content-encoding", ""))
    res.put("JSON page bytes, gzip asked", name, len(body_gz),
            f"{fmt_bytes(len(body_gz))} of {fmt_bytes(len(plain))}" + ("" if encoding == "gzip" else " (not compressed)"))
    result = wrk(server.port, page, args.wrk_seconds, JSON_ACCEPT, gzip=True)
    if result["bad"] or result["errors"]:
        res.fail(name, f"gzipped JSON page under load: {result['bad']} bad answers {result['errors']}")
    res.put("warm JSON page, gzip asked: requests/s", name, result["rps"], f"{result['rps']:,.0f}", False)
    print(f"  JSON page, gzip: {fmt_bytes(len(body_gz))} of {fmt_bytes(len(plain))},"
          f" {result['rps']:,.0f} req/s", flush=True)

    one_mb_path = file_link(server.port, server.index, *wl.one_mb)
    status, body, _ = get(server.port, one_mb_path)
    want = wl.sha256[wl.one_mb[1]]
    if status != 200 or hashlib.sha256(body).hexdigest() != want:
        res.fail(name, f"1 MB file: HTTP {status} or wrong bytes")
    result = wrk(server.port, one_mb_path, args.wrk_seconds)
    if result["bad"] or result["errors"]:
        res.fail(name, f"1 MB file under load: {result['bad']} bad answers {result['errors']}")
    res.put("warm 1 MB file: requests/s", name, result["rps"], f"{result['rps']:,.0f}", False)
    res.put("warm 1 MB file: p99", name, result["p99_ms"], p99_text(result))
    print(f"  1 MB file: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms", flush=True)

    # Cold large file, one client: time to first byte and in all, against the direct fetch,
    # from the upstream at memory speed and at a line rate.
    for how, files in (("memory", wl.cold_single), ("line", wl.cold_line_rate)):
        samples = []
        for project_file in files:
            path = file_link(server.port, server.index, *project_file)
            out = os.path.join(clients.work, "downloads", f"{name}-cold-{how}")
            ttfb, total, size, code = curl_timed(server.port, path, out)
            if code != 200 or file_sha(out) != wl.sha256[project_file[1]]:
                res.fail(name, f"cold {fmt_bytes(wl.cold_size)} file: HTTP {code} or wrong bytes")
            os.remove(out)
            samples.append((ttfb, total))
        ttfb, total = median([s[0] for s in samples]), median([s[1] for s in samples])
        d_ttfb, d_total = direct[how]
        label = f"cold {fmt_bytes(wl.cold_size)} file, upstream at " + (
            "memory speed" if how == "memory" else f"{LINE_RATE // workload.MB} MiB/s")
        res.put(f"{label}: total", name, total / d_total, f"{fmt_s(total)}, {total / d_total:.2f}x direct")
        res.put(f"{label}: first byte", name, ttfb / d_ttfb, f"{fmt_s(ttfb)}, {ttfb / d_ttfb:.1f}x direct")
        print(f"  cold file ({how}): first byte {fmt_s(ttfb)}, total {fmt_s(total)}", flush=True)

    # Cold large file, 8 clients at once: how many times it came from the upstream.
    path = file_link(server.port, server.index, *wl.cold_shared)
    before = nginx.requests()
    outcomes = [None] * 8
    want = wl.sha256[wl.cold_shared[1]]

    def one(i):
        out_i = os.path.join(clients.work, "downloads", f"{name}-cold-shared-{i}")
        _, total_i, _, code_i = curl_timed(server.port, path, out_i)
        outcomes[i] = (code_i, file_sha(out_i) == want, total_i)
        os.remove(out_i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fetched = sum(1 for line in nginx.lines_since(before) if wl.cold_shared[1] in line
                  and not line.split('"')[1].endswith(".metadata HTTP/1.1"))
    slowest = max(o[2] for o in outcomes)
    if not all(o[0] == 200 and o[1] for o in outcomes):
        res.fail(name, f"8 cold clients: {sum(1 for o in outcomes if not (o[0] == 200 and o[1]))} got bad answers")
    res.put("8 clients, one cold file: upstream downloads", name, fetched, str(fetched))
    res.put("8 clients, one cold file: slowest client", name, slowest, fmt_s(slowest))
    print(f"  8 cold clients: {fetched} upstream downloads, slowest {fmt_s(slowest)}", flush=True)

    rss, peak = server.memory()
    res.put("RSS after the run", name, rss, fmt_bytes(rss))
    res.put("RSS peak", name, peak, fmt_bytes(peak))
    disk = disk_usage(server.data_dir)
    res.put("bytes on disk", name, disk, fmt_bytes(disk))

    server.stop()

    # Phase 3: the same server type, an empty cache, an upstream without core metadata.
    bare = type(server)(server.port, server.data_dir + "-nometa",
                        f"http://127.0.0.1:{nginx.port}/nometa/simple/")
    bench_without_metadata(bare, nginx, wl, clients, res, direct["nometa"], log_path)


def bench_nginx(nginx: Nginx, wl, clients, args, res):
    """nginx itself, as the ceiling for warm serving."""
    name = "nginx (static)"
    print(f"== {name}", flush=True)
    url = f"http://127.0.0.1:{nginx.port}/simple/"
    elapsed, ok, err = clients.pip_download(url, wl.requirements, "nginx")
    res.put("pip download, warm", name, elapsed if ok else None, fmt_s(elapsed) if ok else "FAILED")
    elapsed, ok, err = clients.uv_compile(url, wl.requirements)
    res.put("uv pip compile, warm", name, elapsed if ok else None, fmt_s(elapsed) if ok else "FAILED")
    page = f"/simple/{wl.page_project}/"
    for label, path, accept in (("HTML page", page, "text/html"), ("JSON page", page, JSON_ACCEPT),
                                ("1 MB file", "/files/{}/{}".format(*wl.one_mb), None)):
        result = wrk(nginx.port, path, args.wrk_seconds, accept)
        res.put(f"warm {label}: requests/s", name, result["rps"], f"{result['rps']:,.0f}", False)
        res.put(f"warm {label}: p99", name, result["p99_ms"], p99_text(result))
        print(f"  {label}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms", flush=True)


SERVERS = {"devcache": Devcache, "devpi-server": Devpi, "proxpi": Proxpi, "peryx": Peryx}


def versions() -> str:
    parts = []
    dc = run([os.path.join(REPO, "target", "release", "devcache"), "--version"]).stdout.strip()
    parts.append(dc or "devcache ?")
    for venv, dist in (("devpi", "devpi-server"), ("proxpi", "proxpi"), ("peryx", "peryx"),
                       ("clients", "pip"), ("clients", "uv")):
        pip = os.path.join(VENVS, venv, "bin", "pip")
        if not os.path.exists(pip):
            continue  # a peer this run did not install
        m = re.search(r"^Version: (.+)$", run([pip, "show", dist]).stdout, re.M)
        parts.append(f"{dist} {m.group(1) if m else '?'}")
    ng = run(["nginx", "-v"]).stderr.strip().replace("nginx version: ", "")
    parts.append(ng)
    parts.append(run(["wrk", "--version"]).stdout.split("\n")[0].split(" [")[0])
    return ", ".join(parts)


def generate_workload(tree: str, up_port: int, quick: bool) -> workload.Workload:
    """The upstream's tree for a quick or a full run."""
    if quick:
        return workload.generate(tree, f"http://127.0.0.1:{up_port}", 40, [5 * workload.MB], 20 * workload.MB)
    return workload.generate(tree, f"http://127.0.0.1:{up_port}", 300,
                             [5 * workload.MB, 20 * workload.MB, 50 * workload.MB], 50 * workload.MB)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a CI-sized run: fewer projects, smaller files, shorter load")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset to run")
    parser.add_argument("--no-nginx", action="store_true", help="skip the static nginx column")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data directories")
    parser.add_argument("--work", default=os.path.join(HERE, "work"))
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    args.wrk_seconds = 3 if args.quick else 10
    names = [s for s in args.servers.split(",") if s]
    unknown = [s for s in names if s not in SERVERS]
    if unknown:
        sys.exit(f"bench: unknown server {', '.join(unknown)}; choose from {', '.join(SERVERS)}")

    # The last run's work is moved aside and removed once this one is measured: on ext4
    # without a journal, every file created in the minutes after thousands are deleted
    # costs up to milliseconds (see nometa.py). For the same reason nothing is deleted
    # between phases: each has a data directory of its own, and the clients' downloads
    # and scratch are on /dev/shm when it can be written.
    trash = []
    if os.path.exists(args.work):
        trash.append(f"{args.work}.old-{os.getpid()}")
        os.rename(args.work, trash[-1])
    os.makedirs(os.path.join(args.work, "logs"))
    up_port = free_port()
    tree = os.path.join(args.work, "upstream")
    print("generating the upstream...", flush=True)
    wl = generate_workload(tree, up_port, args.quick)
    print(f"  {len(wl.pinned)} projects in the set; cold file {fmt_bytes(wl.cold_size)}", flush=True)
    nginx = Nginx(args.work, tree, up_port)
    nginx.start()
    res = Results()
    clients = Clients.on_tmpfs(args.work, "devcache-bench-")
    trash.append(clients.work)
    if not args.keep:
        trash.append(os.path.join(args.work, "data"))
    try:
        direct = measure_direct(nginx, wl)
        for how, (ttfb, total) in direct.items():
            print(f"direct from the upstream ({how}): first byte {fmt_s(ttfb)}, total {fmt_s(total)}", flush=True)
        direct["nometa"] = measure_direct_without_metadata(nginx, wl, clients)
        for tool, (elapsed, fetched) in direct["nometa"].items():
            print(f"direct from the no-metadata upstream ({tool}): {fmt_s(elapsed)}, {fmt_bytes(fetched)}", flush=True)
        for n in names:
            server = SERVERS[n](free_port(), os.path.join(args.work, "data", n), f"http://127.0.0.1:{up_port}/simple/")
            try:
                bench_server(server, nginx, wl, clients, args, res, direct)
            except Exception as e:  # one peer failing must not lose the others' figures
                res.fail(n, f"{type(e).__name__}: {e}")
                server.stop()
                if nginx.proc is None or nginx.proc.poll() is not None:
                    nginx.start()
        if not args.no_nginx:
            try:
                bench_nginx(nginx, wl, clients, args, res)
            except Exception as e:
                res.fail("nginx (static)", f"{type(e).__name__}: {e}")
    finally:
        nginx.stop()
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)

    columns = names + ([] if args.no_nginx else ["nginx (static)"])
    now = datetime.datetime.now(datetime.timezone.utc)
    mode = "quick" if args.quick else "full"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = re.search(r"model name\s*:\s*(.+)", fh.read()).group(1)
    except (OSError, AttributeError):
        pass
    report = "\n".join([
        f"# devcache benchmark ({mode}), {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}.",
        f"Versions: {versions()}.",
        f"Workload: {len(wl.pinned)} pinned projects (wheels of 4-60 KB with PEP 658 metadata"
        f"{', and wheels of ' + ', '.join(fmt_bytes(s) for s in ([5 * workload.MB] if args.quick else [5 * workload.MB, 20 * workload.MB, 50 * workload.MB])) })"
        f"; warm pages are `{wl.page_project}` ({wl.page_files} files); load is wrk, 2 threads, 64 connections, {args.wrk_seconds} s;"
        f" the direct fetch of the cold file took {fmt_s(direct['memory'][1])} (first byte {fmt_s(direct['memory'][0])}),"
        f" and {fmt_s(direct['line'][1])} (first byte {fmt_s(direct['line'][0])}) at {LINE_RATE // workload.MB} MiB/s.",
        "Figures in brackets are ratios to devcache's.",
        "",
        res.table(columns),
        "",
    ] + ([f"Wrong answers seen: {'; '.join(res.failures)}.", ""] if res.failures else []))
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"{now:%Y-%m-%d}-{mode}.md")
    with open(path, "w") as fh:
        fh.write(report)
    with open(os.path.join(args.results, f"latest-{mode}.md"), "w") as fh:
        fh.write(report)
    print()
    print(report)
    print(f"written to {path}")
    # A peer's wrong answers are a finding for the table; devcache's fail the run.
    sys.exit(1 if any(f.startswith("devcache:") for f in res.failures) else 0)


if __name__ == "__main__":
    main()
