"""Tool-call overhead over the bare HTTP request, and emit_events throughput, against the sandbox.

    python bench/bench_tools.py [--calls 300] [--events 10000]

Overhead: the same read (`GET /connections/{id}`) made N times through MeshesClient directly and N
times through an in-memory MCP session's `get_connection` tool; the difference of the medians is
what the MCP layer (validation, rendering, redaction, protocol) adds. Throughput: one
`emit_events` call carrying --events events, timed end to end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.config import Settings
from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.server.app import build_server


async def measure(info, calls: int, events: int) -> None:
    key = MachineKey(info.access_key, info.secret_key, info.organization_id)
    settings = Settings(
        api_url=info.api_url,
        access_key=info.access_key,
        secret_key=info.secret_key,
        org_id=info.organization_id,
        workspace_id=info.workspace_id,
    )
    async with MeshesClient(info.api_url, machine_key=key) as api:
        connection = (await api.list_workspace_connections(info.workspace_id)).records[0].id
        bare = []
        for _ in range(calls):
            started = time.perf_counter()
            await api.get_connection(connection)
            bare.append(time.perf_counter() - started)

    async with Client(build_server(settings)) as client:
        via_tool = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("get_connection", {"connection_id": connection})
            via_tool.append(time.perf_counter() - started)
            assert not result.is_error, result.content[0].text
        batch = [{"event": "bench.event", "payload": {"email": f"user{i}@example.com", "n": i}} for i in range(events)]
        started = time.perf_counter()
        result = await client.call_tool("emit_events", {"events": batch})
        elapsed = time.perf_counter() - started
        assert not result.is_error, result.content[0].text

    b, t = statistics.median(bare) * 1000, statistics.median(via_tool) * 1000
    print(f"bare HTTP GET /connections/{{id}}: median {b:.2f} ms over {calls}")
    print(f"get_connection tool call:         median {t:.2f} ms over {calls}")
    print(f"MCP layer overhead:               {t - b:.2f} ms per call")
    print(f"emit_events of {events} events: {elapsed:.2f} s = {events / elapsed:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = EmbeddedSandbox(Path(tmp))
        info = sandbox.start()
        try:
            anyio.run(measure, info, args.calls, args.events)
        finally:
            sandbox.stop()


if __name__ == "__main__":
    main()
