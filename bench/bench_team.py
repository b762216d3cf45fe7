"""Load through nginx: the team server with one and with two replicas, read tool calls from concurrent clients.

    python bench/bench_team.py [--replicas 1,2] [--clients 8,32] [--calls 40] [--seconds S]

Everything on 127.0.0.1: the sandbox (in this process), N `meshes-mcp --transport http --stateless
--credentials request` replicas, nginx in front with the config `meshes-mcp nginx-config` prints, and
the load: C clients, each its own MCP session (the official client, per-request Meshes keys in headers)
doing a mix of reads — list_workspaces, list_events, get_event — one call after another, for --calls
calls each or for --seconds seconds. Per run: calls/s, p50/p99 latency of one call, calls that failed,
and each replica's resident memory after the run (VmRSS; VmHWM is the peak).

The load generator, the sandbox, nginx and the replicas share this machine's CPUs: on a small machine a
second replica competes with them rather than adding a core of its own. Needs nginx (Debian: `nginx`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from tests.test_team_nginx import NGINX, NO_NGINX, Team, start_team
from tests.test_team_server import caller_headers

SEEDED_EVENTS = 100  # one bulk request (the API takes at most 100)


def mix(event_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The reads a client cycles through: a listing of workspaces, a page of events, one event."""
    calls: list[tuple[str, dict[str, Any]]] = [("list_workspaces", {}), ("list_events", {"limit": 20})]
    return calls + [("get_event", {"event_id": event_id}) for event_id in event_ids[:1]]


async def one_client(
    url: str, headers: dict[str, str], event_ids: list[str], n: int, calls: int, until: float | None
) -> tuple[list[float], int]:
    """One session: its call latencies (seconds) and how many calls failed."""
    latencies: list[float] = []
    errors = 0
    reads = mix(event_ids[n % len(event_ids) :])
    http = httpx2.AsyncClient(headers=headers, timeout=120)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        await client.list_tools()
        done = 0
        while (done < calls) if until is None else (time.monotonic() < until):
            name, arguments = reads[done % len(reads)]
            started = time.perf_counter()
            try:
                result = await client.call_tool(name, arguments)
                errors += bool(result.is_error)
            except Exception:  # a failed call is a figure here, not a reason to stop the run
                errors += 1
            latencies.append(time.perf_counter() - started)
            done += 1
    return latencies, errors


async def load(team: Team, info: SandboxInfo, event_ids: list[str], clients: int, calls: int, seconds: float | None):
    latencies: list[float] = []
    errors = 0

    async def run(n: int) -> None:
        nonlocal errors
        mine, failed = await one_client(team.front.url, caller_headers(info), event_ids, n, calls, until)
        latencies.extend(mine)
        errors += failed

    started = time.monotonic()
    until = started + seconds if seconds else None
    async with anyio.create_task_group() as group:
        for n in range(clients):
            group.start_soon(run, n)
    elapsed = time.monotonic() - started
    return latencies, errors, elapsed


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB, from /proc (no psutil needed)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def seed_events(info: SandboxInfo) -> list[str]:
    """Events for get_event to read, emitted straight to the sandbox with its publishable key."""
    events = [{"event": "bench.team", "payload": {"n": n}} for n in range(SEEDED_EVENTS)]
    answer = httpx2.post(
        f"{info.api_url}/events/bulk",
        json=[{**e, "workspace": info.workspace_id} for e in events],
        headers={"X-Meshes-Publishable-Key": info.publishable_key},
        timeout=30,
    )
    if answer.status_code >= 300:
        raise SystemExit(f"could not seed events: {answer.status_code} {answer.text[:200]}")
    return [record["id"] for record in answer.json()["records"]]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2", help="replica counts to run, comma-separated (default 1,2)")
    parser.add_argument("--clients", default="8,32", help="concurrent clients per run, comma-separated (default 8,32)")
    parser.add_argument("--calls", type=int, default=40, help="calls per client per run (default 40)")
    parser.add_argument("--seconds", type=float, default=None, help="run each load this long instead of --calls")
    args = parser.parse_args()
    if NGINX is None:
        raise SystemExit(NO_NGINX)
    replica_counts = [int(v) for v in args.replicas.split(",")]
    client_counts = [int(v) for v in args.clients.split(",")]
    per_client = f"{args.seconds} s" if args.seconds else f"{args.calls} calls"
    print(f"machine: {os.cpu_count()} CPUs; each client: {per_client}")
    head = f"{'replicas':>8} {'clients':>7} {'calls':>6} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
    print(f"{head}  RSS MiB per replica")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSandbox(Path(tmp) / "sandbox") as info:
        event_ids = seed_events(info)
        for count in replica_counts:
            team = start_team(info.api_url, Path(tmp) / f"team{count}", count)
            try:
                for clients in client_counts:
                    run = (team, info, event_ids, clients, args.calls, args.seconds)
                    latencies, errors, elapsed = anyio.run(load, *run)
                    rss = [memory_kib(r.proc.pid) for r in team.replicas.values()]
                    shown = ", ".join(f"{now // 1024} (peak {peak // 1024})" for now, peak in rss)
                    print(
                        f"{count:>8} {clients:>7} {len(latencies):>6} {len(latencies) / elapsed:>8.1f} "
                        f"{percentile(latencies, 50) * 1000:>7.0f} {percentile(latencies, 99) * 1000:>7.0f} "
                        f"{errors:>6}  {shown}"
                    )
            finally:
                team.stop()


if __name__ == "__main__":
    main()
