"""A real streamable-HTTP session: `meshes-mcp --sandbox --transport http` with the official client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import anyio
import httpx2
from mcp import Client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streamable_http_session_on_the_sandbox(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshes_mcp",
            "--sandbox",
            "--data-dir",
            str(tmp_path),
            "--transport",
            "http",
            "--port",
            str(port),
            "--read-only",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx2.get(url, timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.1)

        async def go():
            async with Client(url) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                listed = await client.call_tool("list_connections", {})
                return tools, listed

        tools, listed = anyio.run(go)
        assert all(t.annotations.read_only_hint for t in tools.values())  # --read-only holds over HTTP too
        assert "emit_event" not in tools
        assert not listed.is_error and listed.structured_content["count"] >= 8  # the seeded OAuth connections
    finally:
        proc.terminate()
        proc.wait(timeout=10)
