"""The team server under hostile load, with a valid caller measured alongside.

    python bench/bench_team_flood.py [--seconds 15] [--keys 2000] [--flood 32] [--slow 600] [--waits 40]
                                     [--phases memory,quiet,flood,slow,waits]

Everything on 127.0.0.1: the sandbox (in this process) and one `meshes-mcp --transport http --stateless
--credentials request` replica, exposed directly (no proxy). Phases, each --seconds long, while one valid
caller makes read calls (list_workspaces) one after another:

- memory: the replica's resident memory before and after 256 distinct idle keys (one call each): what an
  idle caller costs.
- quiet:  the valid caller alone.
- flood:  --flood workers sending --keys distinct well-formed bogus key sets (each a new caller, each
  call a 401 from the API), round and round.
- slow:   --slow connections that send nothing and --slow that send headers and then a body byte by byte
  (against the replica's descriptor limit, --replica-descriptors, the common 1,024 by default); the
  valid caller opens a new connection for every call, as a caller arriving meanwhile would.
- waits:  --waits concurrent get_event wait_seconds=10 calls with the valid key, on an event whose
  delivery hangs (beyond the per-key limit of waits they are answered 429).

The flood runs in a process of its own. Per phase: the valid caller's calls, p50/p99 latency and errors
(any answer but a complete successful result); the flood's answers by kind; the slow connections the
server closed; the replica's RSS, and whether its stderr holds a traceback. The load generators, the
sandbox and the replica share the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_team import memory_kib, percentile
from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi
from tests.test_http_transport import MCP_HEADERS
from tests.test_team_limits import bogus_headers
from tests.test_team_server import Replica, caller_headers, start_replica, stop_replica

IDLE_KEYS = 256


async def call(http: httpx2.AsyncClient, url: str, headers: dict[str, str], tool: str, **arguments: Any) -> str:
    """One tools/call: "ok", "tool error", "http <status>" or the transport failure's class name."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    try:
        answer = await http.post(url, headers={**MCP_HEADERS, **headers}, json=body)
    except httpx2.HTTPError as exc:
        return type(exc).__name__
    if answer.status_code != 200:
        return f"http {answer.status_code}"
    for line in answer.text.splitlines():
        if line.startswith("data: "):
            message = json.loads(line[6:])
            if "result" in message:
                return "tool error" if message["result"]["isError"] else "ok"
    return "no result"


async def valid_caller(url: str, info: SandboxInfo, until: float, fresh: bool) -> tuple[list[float], Counter[str]]:
    """`fresh`: a new connection for every call (what a caller arriving during the phase meets)."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    headers = {**caller_headers(info), **({"Connection": "close"} if fresh else {})}
    async with httpx2.AsyncClient(timeout=60) as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            outcomes[await call(http, url, headers, "list_workspaces")] += 1
            latencies.append(time.perf_counter() - started)
    return latencies, outcomes


async def flood(url: str, info: SandboxInfo, until: float, keys: int, workers: int) -> Counter[str]:
    pool = [bogus_headers(info) for _ in range(keys)]
    outcomes: Counter[str] = Counter()
    limits = httpx2.Limits(max_connections=workers)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as http:

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < until:
                outcomes[await call(http, url, pool[i % keys], "list_workspaces")] += 1
                i += workers

        async with anyio.create_task_group() as group:
            for n in range(workers):
                group.start_soon(worker, n)
    return outcomes


def slow_connections(url: str, info: SandboxInfo, count: int, until: float) -> Counter[str]:
    """`count` silent connections and `count` that trickle a body (with well-formed keys, so that the
    server reads it); how each ended by `until` (+ 35 s)."""
    address = httpx2.URL(url)
    socks: list[tuple[str, socket.socket]] = []
    keys = "".join(f"{name}: {value}\r\n" for name, value in bogus_headers(info).items())
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {address.host}:{address.port}\r\nContent-Type: application/json\r\n"
        f"{keys}Content-Length: 100000\r\n\r\n"
    ).encode()
    outcomes: Counter[str] = Counter()
    for kind in ("silent", "trickle"):
        for _ in range(count):
            try:
                sock = socket.create_connection((address.host, address.port), timeout=5)
            except OSError:
                outcomes[f"{kind}: refused at connect"] += 1
                continue
            sock.setblocking(False)
            if kind == "trickle":
                sock.send(head)
            socks.append((kind, sock))
    open_socks = dict.fromkeys(range(len(socks)), True)
    while time.monotonic() < until + 35 and any(open_socks.values()):
        for i, (kind, sock) in enumerate(socks):
            if not open_socks[i]:
                continue
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                if kind == "trickle" and time.monotonic() < until:
                    with contextlib.suppress(OSError):
                        sock.send(b" ")
                continue
            except OSError:
                data = b""
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1") else "closed"
            outcomes[f"{kind}: {status}"] += 1
            open_socks[i] = False
        time.sleep(0.5)
    outcomes["still open 35 s after the phase"] = sum(open_socks.values())
    for _, sock in socks:
        sock.close()
    return outcomes


async def waits(url: str, info: SandboxInfo, event_id: str, count: int, until: float) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=count)) as http:

        async def one() -> None:
            while time.monotonic() < until:
                result = await call(http, url, caller_headers(info), "get_event", event_id=event_id, wait_seconds=10)
                outcomes[result] += 1
                if result == "http 429":
                    await anyio.sleep(1)

        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
    return outcomes


def _run(func: Any, *args: Any) -> Any:
    return anyio.run(func, *args)


async def elsewhere(func: Any, *args: Any) -> Any:
    """`func(*args)` run to its end in another process: a load generator in this one would compete for
    the interpreter with the sandbox (and the valid caller) and measure itself rather than the replica."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pending = pool.apply_async(_run, (func, *args))
        return await anyio.to_thread.run_sync(pending.get)


def report(name: str, replica: Replica, latencies: list[float], outcomes: Counter[str], load: Counter[str]) -> None:
    errors = sum(n for kind, n in outcomes.items() if kind != "ok")
    rss, peak = memory_kib(replica.proc.pid)
    tracebacks = replica.log.read_text(errors="replace").count("Traceback")
    p50 = percentile(latencies, 50) * 1000 if latencies else float("nan")
    p99 = percentile(latencies, 99) * 1000 if latencies else float("nan")
    print(
        f"{name:<6} valid calls {len(latencies):>5}  p50 {p50:>6.0f} ms  p99 {p99:>6.0f} ms  errors {errors:>3}  "
        f"RSS {rss // 1024} MiB (peak {peak // 1024})  tracebacks {tracebacks}"
    )
    if errors:
        print(f"       valid caller's errors: {dict(sorted((k, n) for k, n in outcomes.items() if k != 'ok'))}")
    if load:
        print(f"       load: {dict(sorted(load.items()))}")


def run_phase(replica: Replica, info: SandboxInfo, seconds: float, load: Any, fresh: bool = False) -> Any:
    async def main() -> tuple[list[float], Counter[str], Counter[str]]:
        until = time.monotonic() + seconds
        result: dict[str, Any] = {}
        async with anyio.create_task_group() as group:

            async def measure() -> None:
                result["valid"] = await valid_caller(replica.url, info, until, fresh)

            async def loaded() -> None:
                result["load"] = await load(until) if load else Counter()

            group.start_soon(measure)
            group.start_soon(loaded)
        return *result["valid"], result["load"]

    return anyio.run(main)


def start_with_descriptors(api_url: str, log: Path, descriptors: int) -> Replica:
    """A replica whose descriptor limit is `descriptors` (it inherits ours for the moment it starts); this
    process keeps its own, higher one for the connections it opens."""
    ours = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(descriptors, ours[1]), ours[1]))
    try:
        return start_replica(api_url, log)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--keys", type=int, default=2000, help="distinct bogus key sets in the flood")
    parser.add_argument("--flood", type=int, default=32, help="concurrent flood workers")
    parser.add_argument("--slow", type=int, default=600, help="silent connections, and as many trickling a body")
    parser.add_argument("--waits", type=int, default=40, help="concurrent long waits with the valid key")
    parser.add_argument("--phases", default="memory,quiet,flood,slow,waits")
    parser.add_argument(
        "--replica-descriptors", type=int, default=1024, help="the replica's descriptor limit (default 1024, common)"
    )
    args = parser.parse_args()
    phases = args.phases.split(",")
    load_average = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load_average:.1f} at start; phases of {args.seconds:g} s")
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedSandbox(Path(tmp) / "sandbox") as info,
        WebhookReceiver() as receiver,
        SandboxApi(info) as api,
    ):
        replica = start_with_descriptors(info.api_url, Path(tmp) / "replica.log", args.replica_descriptors)
        try:
            if "memory" in phases:
                before = memory_kib(replica.proc.pid)[0]

                async def idle_keys() -> None:
                    async with httpx2.AsyncClient(timeout=60) as http:
                        for _ in range(IDLE_KEYS):
                            await call(http, replica.url, bogus_headers(info), "list_workspaces")

                anyio.run(idle_keys)
                after = memory_kib(replica.proc.pid)[0]
                print(
                    f"memory RSS {before // 1024} MiB → {after // 1024} MiB after {IDLE_KEYS} idle keys: "
                    f"{(after - before) / IDLE_KEYS:.0f} KiB per idle caller"
                )
            if "quiet" in phases:
                report("quiet", replica, *run_phase(replica, info, args.seconds, None))
            if "flood" in phases:
                load = lambda until: elsewhere(flood, replica.url, info, until, args.keys, args.flood)  # noqa: E731
                report("flood", replica, *run_phase(replica, info, args.seconds, load))
            if "slow" in phases:

                async def slow(until: float) -> Counter[str]:
                    return await anyio.to_thread.run_sync(slow_connections, replica.url, info, args.slow, until)

                report("slow", replica, *run_phase(replica, info, args.seconds, slow, fresh=True))
            if "waits" in phases:
                api.webhook_rule(f"{receiver.url}/slow/600", "bench.hang", name="bench hang")
                hang = {"workspace": info.workspace_id, "event": "bench.hang", "payload": {}}
                event_id = api.post("/events", json=hang).json()["event"]["id"]
                load = lambda until: waits(replica.url, info, event_id, args.waits, until)  # noqa: E731
                report("waits", replica, *run_phase(replica, info, args.seconds, load))
        finally:
            stop_replica(replica)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
