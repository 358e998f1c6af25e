"""The many-links benchmark: one project page of N links (HTML and JSON upstreams), and
how devcache's time and memory grow with N. Run by `bench/run --links` (or directly,
after `cargo build --release`):

    python3 bench/links.py [--sizes 10000,50000,100000] [--lookups 1000]

For each size it serves a generated page from 127.0.0.1, starts `devcache serve`
against it, and measures the cold page (fetched, parsed, versions derived, rendered,
stored), the warm page (from the memo), and `--lookups` HEAD requests of distinct files
of the page (each looks its file up by name; answered from the page's size for JSON,
from the upstream's HEAD for HTML, which gives no sizes), and the server's peak RSS. Linear growth shows as a constant time per link.
Timings are reported, never asserted; a failed request makes it exit 1.
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEVCACHE = os.path.join(os.path.dirname(HERE), "target", "release", "devcache")
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SHA = "0" * 64
PROJECT = "manylinks"


def filenames(n: int) -> list[str]:
    """n files, five a version: four wheels and an sdist."""
    tags = ["cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_17_x86_64",
            "cp311-cp311-macosx_11_0_arm64", "py3-none-any"]
    names = []
    for i in range(n):
        version = f"{i // 5}.0"
        kind = i % 5
        names.append(f"{PROJECT}-{version}.tar.gz" if kind == 4
                     else f"{PROJECT}-{version}-{tags[kind]}.whl")
    return names


def pages(n: int) -> tuple[bytes, bytes]:
    names = filenames(n)
    html = ["<!DOCTYPE html><html><body>"]
    for name in names:
        html.append(f'<a href="../../files/{name}#sha256={SHA}" data-requires-python="&gt;=3.8">{name}</a><br/>')
    html.append("</body></html>")
    files = [{"filename": name, "url": f"../../files/{name}", "hashes": {"sha256": SHA},
              "requires-python": ">=3.8", "size": 1000, "upload-time": "2024-05-01T12:00:00Z"}
             for name in names]
    page = {"meta": {"api-version": "1.1"}, "name": PROJECT, "files": files, "versions": []}
    return "\n".join(html).encode(), json.dumps(page).encode()


class Upstream(http.server.ThreadingHTTPServer):
    """Serves one page at /html/<project>/ and /json/<project>/, and files' lengths."""

    def __init__(self, html: bytes, json_page: bytes):
        self.bodies = {f"/html/{PROJECT}/": (html, "text/html"),
                       f"/json/{PROJECT}/": (json_page, JSON_TYPE)}
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        """A file's length (HTML pages give none, so devcache asks)."""
        if "/files/" not in self.path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()

    def do_GET(self):
        body, content_type = self.server.bodies.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(conn: http.client.HTTPConnection, method: str, path: str, accept: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    conn.request(method, path, headers={"Accept": accept})
    response = conn.getresponse()
    body = response.read()
    return time.perf_counter() - start, response.status, len(body)


def measure(n: int, form: str, lookups: int, upstream_port: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [DEVCACHE, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data,
             "--upstream", f"http://127.0.0.1:{upstream_port}/{form}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.02)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            accept = JSON_TYPE if form == "json" else "text/html"
            page = f"/root/pypi/+simple/{PROJECT}/"
            cold, status, size = timed(conn, "GET", page, accept)
            failures = [] if status == 200 else [f"cold page: {status}"]
            warm, status, _ = timed(conn, "GET", page, JSON_TYPE if form == "html" else "text/html")
            if status != 200:
                failures.append(f"warm page: {status}")
            names = filenames(n)
            step = max(1, n // lookups)
            start = time.perf_counter()
            for name in names[::step][:lookups]:
                conn.request("HEAD", f"/root/pypi/+f/{PROJECT}/{SHA}/{name}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"HEAD {name}: {response.status}")
            heads = time.perf_counter() - start
            return {"links": n, "form": form, "cold": cold, "warm": warm, "page_bytes": size,
                    "lookup": heads / lookups, "rss": peak_rss(server.pid), "failures": failures}
        finally:
            server.terminate()
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--lookups", type=int, default=1000)
    args = parser.parse_args()
    if not os.path.exists(DEVCACHE):
        print(f"{DEVCACHE} is missing: run `cargo build --release` first", file=sys.stderr)
        return 1
    rows, failed = [], False
    for n in [int(s) for s in args.sizes.split(",")]:
        upstream = Upstream(*pages(n))
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        for form in ("html", "json"):
            row = measure(n, form, args.lookups, upstream.server_address[1])
            rows.append(row)
            for failure in row["failures"]:
                print(f"FAILED: {n} links, {form}: {failure}", file=sys.stderr)
                failed = True
        upstream.shutdown()
    print("| links | upstream | cold page | per link | warm page (other form) | HEAD by name | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['links']:,} | {r['form']} | {r['cold'] * 1000:.0f} ms | {r['cold'] / r['links'] * 1e6:.1f} µs"
              f" | {r['warm'] * 1000:.1f} ms | {r['lookup'] * 1000:.2f} ms | {r['rss'] / 2**20:.0f} MiB |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
