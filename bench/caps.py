"""The disk budget's cost: a pip workload replayed through devcache under caps of 100%,
50% and 25% of its working set, with the hit rate and the bytes fetched from the
upstream for each. `bench/run --caps [--quick]` prepares the tools and calls this.

The workload is the benchmark's requirement set (bench/workload.py), downloaded with
pip `ROUNDS` times in a row through one devcache, as a developer rebuilding a container
would. The working set is what an uncapped devcache holds after one round. Figures come
from devcache's own `/+status` and `/metrics`; no figure fails the run, but a failed
download or wrong bytes do.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROUNDS = 3
CAPS = (1.0, 0.5, 0.25)


class CappedDevcache(bench.Devcache):
    def __init__(self, port: int, data_dir: str, upstream: str, max_size: int | None):
        super().__init__(port, data_dir, upstream)
        self.max_size = max_size

    def command(self):
        extra = [] if self.max_size is None else ["--max-size", str(self.max_size)]
        return super().command() + extra


def status(server) -> dict:
    _, body, _ = bench.get(server.port, "/+status")
    return json.loads(body)


def metric(server, name: str, labels: str = "") -> float:
    """A sample of devcache's /metrics, e.g. metric(s, "devcache_upstream_bytes_total")."""
    _, body, _ = bench.get(server.port, "/metrics")
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def replay(args, wl, clients, upstream: str, label: str, max_size: int | None) -> dict:
    data = os.path.join(args.work, "data", label)
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    server = CappedDevcache(bench.free_port(), data, upstream, max_size)
    server.start(os.path.join(args.work, "logs", f"{label}.log"))
    try:
        failures = []
        for round_ in range(1 if max_size is None else ROUNDS):
            _, wrong = bench.pip_round(clients, server, wl, f"{label}-{round_}")
            if wrong:
                failures.append(f"round {round_ + 1}: {wrong}")
        # Pages are written once a burst of requests is over (at most a second late):
        # read once the cache stops growing.
        got = bench.settled(lambda: status(server), 0.3, 16,
                            key=lambda s: (s["bytes"], s["files"]))
        files = {o: metric(server, "devcache_requests_total", f'route="file",outcome="{o}"')
                 for o in ("hit", "miss")}
        return {
            "status": got,
            "file_hits": files["hit"],
            "file_requests": files["hit"] + files["miss"],
            "upstream_bytes": metric(server, "devcache_upstream_bytes_total"),
            "failures": failures,
        }
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the CI-sized workload")
    parser.add_argument("--work", default=os.path.join(bench.HERE, "work-caps"))
    parser.add_argument("--results", default=os.path.join(bench.HERE, "results"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(os.path.join(args.work, "logs"))
    up_port = bench.free_port()
    tree = os.path.join(args.work, "upstream")
    print("generating the upstream...", flush=True)
    wl = bench.generate_workload(tree, up_port, args.quick)
    nginx = bench.Nginx(args.work, tree, up_port)
    nginx.start()
    clients = bench.Clients(args.work)
    upstream = f"http://127.0.0.1:{up_port}/simple/"
    rows = []
    failures = []
    try:
        first = replay(args, wl, clients, upstream, "uncapped", None)
        failures += [f"uncapped: {f}" for f in first["failures"]]
        working_set = first["status"]["bytes"]
        print(f"working set: {bench.fmt_bytes(working_set)} in {first['status']['files']} files", flush=True)
        for cap in CAPS:
            label = f"cap-{int(cap * 100)}"
            got = replay(args, wl, clients, upstream, label, int(working_set * cap))
            failures += [f"{label}: {f}" for f in got["failures"]]
            s = got["status"]
            served = s["hits"] + s["misses"] + s["stale"]
            rows.append(
                f"| {int(cap * 100)}% ({bench.fmt_bytes(int(working_set * cap))}) "
                f"| {100 * got['file_hits'] / max(got['file_requests'], 1):.0f}% "
                f"| {100 * (s['hits'] + s['stale']) / max(served, 1):.0f}% "
                f"| {bench.fmt_bytes(int(got['upstream_bytes']))} "
                f"({got['upstream_bytes'] / max(working_set, 1):.2f}x the working set) "
                f"| {s['evictions']} ({bench.fmt_bytes(s['evicted_bytes'])}) |")
            print(rows[-1], flush=True)
    finally:
        nginx.stop()

    now = datetime.datetime.now(datetime.timezone.utc)
    mode = "quick" if args.quick else "full"
    report = "\n".join([
        f"# devcache under a disk budget ({mode}), {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores. Workload: `pip download --no-deps -r` of {len(wl.pinned)} pinned projects,"
        f" {ROUNDS} times in a row through one devcache started empty with `--max-size` set to a share of the"
        f" working set ({bench.fmt_bytes(working_set)}: what one round leaves in an uncapped cache)."
        " Hit rates count the file requests (wheels and their metadata), then every request (pages too);"
        " upstream bytes are devcache's `devcache_upstream_bytes_total`.",
        "",
        "| cap | file hit rate | request hit rate | bytes from the upstream | evictions |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "pip asks for the files in the same order each round, so under a cap smaller than the set the"
        " least recently used file is always the next one asked for: plain LRU then refetches every"
        " file. Pinning the set (`devcache warm`) is what keeps it when the budget is too small.",
        "",
    ] + ([f"Wrong answers seen: {'; '.join(failures)}.", ""] if failures else []))
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"latest-caps-{mode}.md")
    with open(path, "w") as fh:
        fh.write(report)
    print()
    print(report)
    print(f"written to {path}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
