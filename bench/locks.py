"""Lock files: how long `devcache warm --lock` takes over a ~300-package `uv.lock`, and
what a locked install costs direct from the upstream and from a warm cache.

The upstream is the benchmark's generated index served by nginx (bench.py's workload);
the lock is made by uv against it. `uv sync --frozen` fetches the URLs written in the
lock whatever index is configured, so "from the cache" is the supported route uv has:
`uv export --frozen` then `uv pip sync` against the cache, which checks every file
against the lock's hashes.

    python3 bench/locks.py [--quick] [--uv PATH] [--python PATH]

Timings are printed, never asserted; a failed step exits non-zero.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import workload  # noqa: E402

DEVCACHE = os.path.join(bench.REPO, "target", "release", "devcache")


def timed(what: str, cmd: list, env: dict, cwd: str) -> float:
    t0 = time.perf_counter()
    done = bench.run(cmd, env=env, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"locks: {what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 projects instead of 300")
    parser.add_argument("--uv", default=shutil.which("uv") or os.path.join(bench.VENVS, "clients", "bin", "uv"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter uv installs for (3.11+)")
    parser.add_argument("--work", default=os.path.join(bench.HERE, "work", "locks"))
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    up_port = bench.free_port()
    upstream = f"http://127.0.0.1:{up_port}/simple/"
    tree = os.path.join(args.work, "upstream")
    wl = workload.generate(tree, f"http://127.0.0.1:{up_port}", 40 if args.quick else 300,
                           [5 * workload.MB], 5 * workload.MB)
    nginx = bench.Nginx(args.work, tree, up_port)
    nginx.start()
    env = dict(os.environ, UV_NO_CONFIG="1", UV_PYTHON=args.python, UV_PYTHON_DOWNLOADS="never",
               NO_PROXY="*")
    for key in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        env.pop(key, None)
    project = os.path.join(args.work, "app")
    os.makedirs(project)
    with open(os.path.join(project, "pyproject.toml"), "w") as fh:
        deps = ",\n".join(f'    "{name}=={fn.split("-")[1]}"' for name, fn in wl.pinned.items())
        fh.write(f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                 f"dependencies = [\n{deps}\n]\n")
    rows = []
    cache = None
    try:
        timed("uv lock", [args.uv, "lock", "--default-index", upstream], env, project)
        data = os.path.join(args.work, "data")
        warm = [DEVCACHE, "warm", "--lock", "uv.lock", "--python", "3.11", "--data-dir", data,
                "--upstream", upstream]
        for label in ("cold", "again (all cached)"):
            before = nginx.requests()
            seconds = timed("warm", warm, env, project)
            asked = nginx.requests() - before
            rows.append((f"devcache warm --lock uv.lock, {label} ({asked} upstream requests)", seconds))

        def sync_direct(label: str):
            venv = os.path.join(args.work, "venv-direct")
            shutil.rmtree(venv, ignore_errors=True)
            run_env = dict(env, UV_PROJECT_ENVIRONMENT=venv, UV_CACHE_DIR=os.path.join(args.work, "uvc-direct"))
            shutil.rmtree(run_env["UV_CACHE_DIR"], ignore_errors=True)
            rows.append((label, timed("uv sync --frozen", [args.uv, "sync", "--frozen"], run_env, project)))

        sync_direct("uv sync --frozen, direct from the upstream (empty uv cache)")

        cache = bench.Devcache(bench.free_port(), data, upstream)
        cache.start(os.path.join(args.work, "devcache.log"))
        nginx.stop()  # from here on the upstream is gone
        venv = os.path.join(args.work, "venv-cache")
        uvc = os.path.join(args.work, "uvc-cache")
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
        if cache:
            cache.stop()
        nginx.stop()

    print(f"{len(wl.pinned)} locked packages")
    print("| step | time |\n|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {bench.fmt_s(seconds)} |")


if __name__ == "__main__":
    main()
