"""Cold resolutions against an upstream that offers no core metadata, going direct and
through the caches, in alternating rounds, with the upstream at a round-trip time of
0 ms (nginx on loopback) and at further RTTs through a relay that delays every packet.
`bench/run --nometa [--rounds N] [--rtt 0,5,10] [--servers devcache,peryx]` prepares the
tools and calls this; see the README's performance section.

Each round runs every client going direct and through each cache (each from an empty
data directory), one after another, in the reverse order every other round, so that a
machine whose speed drifts weighs on all of them alike. Reported: the medians of time,
the median and the spread of each round's ratio to direct, the bytes the upstream sent,
and the cache's CPU time (its processes' utime+stime once they go idle after the
client, so that work done after the answers, such as saves, counts). A failed client
run or a wheel whose bytes differ fails the run; no time does.

Nothing is deleted between runs: each cache run gets a data directory of its own, all
removed at the end, and the clients' scratch (uv's `--no-cache` cache, pip's downloads
and build directories) is on /dev/shm (a tmpfs) when it can be written, else under the
work directory. On ext4 without a journal, creating a file skips every inode freed in
the last one to six minutes (`recently_deleted`), so after a run deletes a few thousand
files, every file the next one creates costs up to milliseconds of kernel time: uv
going direct took 1.7-2.0 s instead of 0.5 s, and which run paid depended on the order.

The loopback row is the proxy's worst case: the upstream answers in microseconds, so
every cost of a second hop shows. A real index is a network away; the relay (below)
models that distance: it delays data and new connections, but not by bandwidth, and
its own CPU counts against the same cores.
"""

import argparse
import asyncio
import datetime
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import workload  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- relay

async def relay(listen_port: int, target_port: int, rtt: float):
    """Forwards 127.0.0.1:`listen_port` to `target_port`, holding every chunk for half
    the RTT in its direction and each new connection for one RTT (the TCP handshake)."""
    loop = asyncio.get_running_loop()

    async def carry(reader, writer):
        queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + rtt / 2, data))
        except ConnectionError:
            pass
        queue.put_nowait((loop.time() + rtt / 2, None))
        try:
            await delivering
        except ConnectionError:
            pass

    async def connection(client_reader, client_writer):
        await asyncio.sleep(rtt)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(carry(client_reader, up_writer), carry(up_reader, client_writer))
        up_writer.close()
        client_writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", listen_port, backlog=4096)
    async with server:
        await server.serve_forever()


class Relay:
    """The relay in a process of its own, so its work is not the bench's."""

    def __init__(self, port: int, target_port: int, rtt_ms: int):
        self.port, self.target_port, self.rtt_ms = port, target_port, rtt_ms
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--relay", str(self.port),
                                      str(self.target_port), str(self.rtt_ms)],
                                     start_new_session=True)
        bench.wait_ready(self.port, "/simple/", self.proc, 10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# ----------------------------------------------------------------------------- rounds

def idle_cpu_seconds(root_pid: int) -> float:
    """`cpu_seconds` once the processes stop using CPU (two equal readings 100 ms apart,
    for at most 5 s)."""
    return bench.settled(lambda: cpu_seconds(root_pid), 0.1, 50)


def cpu_seconds(root_pid: int) -> float:
    """utime + stime so far of a process and its descendants (gunicorn's workers), the
    ones that have exited included."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stats[int(entry)] = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(p for p, fields in stats.items() if int(fields[1]) == pid)
        if pid in stats:
            total += sum(int(v) for v in stats[pid][11:15])
    return total / os.sysconf("SC_CLK_TCK")


class Row:
    """One client through one way of reaching the upstream, over the rounds."""

    def __init__(self):
        self.times, self.ratios, self.bytes, self.cpu = [], [], [], []
        self.failure = None


def run_client(clients: bench.Clients, tool: str, url: str, wl: workload.Workload, label: str):
    """(seconds, problem) of one cold run of `tool` against `url`."""
    if tool == "uv":
        elapsed, ok, err = clients.uv_compile(url, wl.requirements)
        return elapsed, None if ok else f"uv pip compile failed: {err.strip()[-300:]}"
    elapsed, ok, err = clients.pip_download(url, wl.requirements, label)
    if not ok:
        return elapsed, "pip download failed: " + (err.strip().splitlines() or ["no message"])[-1]
    problem = bench.check_downloads(os.path.join(clients.work, "downloads", label), wl)
    shutil.rmtree(os.path.join(clients.work, "downloads", label), ignore_errors=True)
    return elapsed, problem


def one_rtt(args, rtt_ms: int, names: list, clients: bench.Clients) -> dict:
    """Every round at one RTT: {(tool, way): Row}, `way` being "direct" or a server."""
    work = os.path.join(args.work, f"rtt-{rtt_ms}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "logs"))
    nginx_port = bench.free_port()
    # Pages link files at the address clients and caches reach the upstream by.
    front_port = bench.free_port() if rtt_ms else nginx_port
    wl = workload.generate(os.path.join(work, "upstream"), f"http://127.0.0.1:{front_port}",
                           args.projects, [], 0)
    nginx = bench.Nginx(work, os.path.join(work, "upstream"), nginx_port)
    nginx.start()
    relay = Relay(front_port, nginx_port, rtt_ms) if rtt_ms else None
    if relay:
        relay.start()
    url = f"http://127.0.0.1:{front_port}/nometa/simple/"
    rows = {}
    try:
        # One untimed run of each client, so that the first round does not pay for a
        # cold page cache.
        for tool in args.tools:
            run_client(clients, tool, url, wl, "warm-up")
        for i in range(args.rounds):
            for tool in args.tools:
                times = {}
                ways = ["direct"] + names
                for way in ways if i % 2 == 0 else reversed(ways):
                    row = rows.setdefault((tool, way), Row())
                    if row.failure:
                        continue
                    if way == "direct":
                        before = nginx.requests()
                        elapsed, problem = run_client(clients, tool, url, wl, "direct")
                        if problem:
                            raise RuntimeError(f"{tool} going direct: {problem}")
                        times[way] = elapsed
                        row.bytes.append(nginx.bytes_since(before))
                        continue
                    data = os.path.join(work, "data", f"{way}-{tool}-{i}")
                    os.makedirs(data)
                    server = bench.SERVERS[way](bench.free_port(), data, url)
                    server.start(os.path.join(work, "logs", f"{way}.log"))
                    try:
                        cpu = cpu_seconds(server.proc.pid)
                        before = nginx.requests()
                        elapsed, problem = run_client(clients, tool, server.url(), wl, way)
                        fetched = nginx.bytes_since(before)
                        cpu = idle_cpu_seconds(server.proc.pid) - cpu
                    finally:
                        server.stop()
                    if problem:
                        row.failure = problem
                        continue
                    times[way] = elapsed
                    row.bytes.append(fetched)
                    row.cpu.append(cpu)
                for way, elapsed in times.items():
                    rows[(tool, way)].times.append(elapsed)
                    if way != "direct":
                        rows[(tool, way)].ratios.append(elapsed / times["direct"])
                print(f"  rtt {rtt_ms} ms, round {i + 1}, {tool}: "
                      + ", ".join(f"{way} {bench.fmt_s(t)}" for way, t in times.items()), flush=True)
    finally:
        if relay:
            relay.stop()
        nginx.stop()
    return rows


def table(results: dict, names: list, tools: list) -> str:
    median = statistics.median
    lines = ["| upstream RTT | client | way | time (median) | ratio to direct: median of rounds (spread) "
             "| upstream bytes | cache CPU |", "|---|---|---|---|---|---|---|"]
    for rtt_ms, rows in results.items():
        for tool in tools:
            client = "uv pip compile" if tool == "uv" else "pip download"
            for way in ["direct"] + names:
                row = rows.get((tool, way))
                if row is None:
                    continue
                if row.failure:
                    lines.append(f"| {rtt_ms} ms | {client} | {way} | FAILED: {row.failure} | | | |")
                    continue
                ratio = (f"{median(row.ratios):.2f}x ({min(row.ratios):.2f}–{max(row.ratios):.2f})"
                         if row.ratios else "—")
                cpu = bench.fmt_s(median(row.cpu)) if row.cpu else "—"
                lines.append(f"| {rtt_ms} ms | {client} | {way} | {bench.fmt_s(median(row.times))} "
                             f"| {ratio} | {bench.fmt_bytes(int(median(row.bytes)))} | {cpu} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rtt", default="0,5,10", help="comma-separated round-trip times to the upstream, in ms")
    parser.add_argument("--servers", default="devcache", help="comma-separated caches to run")
    parser.add_argument("--tools", default="uv,pip", help="uv (pip compile), pip (download), or both")
    parser.add_argument("--projects", type=int, default=300, help="projects in the requirement set")
    parser.add_argument("--work", default=os.path.join(HERE, "work", "nometa"))
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--relay", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        port, target, rtt_ms = args.relay
        try:
            asyncio.run(relay(port, target, rtt_ms / 1000))
        except KeyboardInterrupt:
            pass
        return
    names = [s for s in args.servers.split(",") if s]
    unknown = [s for s in names if s not in bench.SERVERS]
    if unknown:
        sys.exit(f"nometa: unknown server {', '.join(unknown)}; choose from {', '.join(bench.SERVERS)}")
    args.tools = [t for t in args.tools.split(",") if t]
    if not args.tools or set(args.tools) - {"uv", "pip"}:
        sys.exit("nometa: --tools takes uv, pip or uv,pip")
    clients = bench.Clients.on_tmpfs(args.work, "devcache-nometa-")
    rtts = [int(r) for r in args.rtt.split(",") if r]
    results = {}
    try:
        for rtt_ms in rtts:
            print(f"upstream at {rtt_ms} ms:", flush=True)
            results[rtt_ms] = one_rtt(args, rtt_ms, names, clients)
    finally:
        shutil.rmtree(clients.work, ignore_errors=True)
        for rtt_ms in rtts:
            shutil.rmtree(os.path.join(args.work, f"rtt-{rtt_ms}", "data"), ignore_errors=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()
    report = "\n".join([
        f"# No-metadata upstream, cold, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores; load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}.",
        f"Versions: {bench.versions()}.",
        f"{args.projects} pinned projects, wheels of 4-60 KB; {args.rounds} alternating rounds;"
        " each cache from an empty data directory every round; cache CPU is the utime+stime of its processes.",
        "",
        table(results, names, args.tools),
        "",
    ])
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "latest-nometa.md")
    with open(path, "w") as fh:
        fh.write(report)
    print()
    print(report)
    print(f"written to {path}")
    failed = [row.failure for rows in results.values() for (tool, way), row in rows.items()
              if way == "devcache" and row.failure]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
