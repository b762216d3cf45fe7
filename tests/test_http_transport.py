"""Streamable HTTP for real: `meshes-mcp --sandbox --transport http` in a subprocess, driven by the
official client and by raw requests an attacker (or a web page) could send."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

TOKEN = "t0ken-for-tests_0123456789abcdef"
# 127.0.0.2 is loopback (nothing leaves the machine) but not one of the names for which the SDK turns
# its DNS-rebinding checks on by itself: the guards must hold for a bind address the SDK does not know.
BIND = "127.0.0.2"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_server(*args: str, stderr: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp", "--transport", "http", *args],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb") if stderr else subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def wait_until_serving(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start in 30 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def list_tool_names(url: str, headers: dict[str, str] | None = None) -> set[str]:
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_streamable_http_session_on_the_sandbox(tmp_path):
    port = free_port()
    proc = start_server("--sandbox", "--data-dir", str(tmp_path), "--port", str(port), "--read-only")
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_until_serving(proc, url)
        async with Client(url) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            listed = await client.call_tool("list_connections", {})
        assert all(t.annotations.read_only_hint for t in tools.values())  # --read-only holds over HTTP too
        assert "emit_event" not in tools
        assert not listed.is_error and listed.structured_content["count"] >= 8  # the seeded OAuth connections
        # Without a token on loopback, the DNS-rebinding check still holds.
        evil = httpx2.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example"})
        assert evil.status_code == 421
    finally:
        stop(proc)


@dataclass
class Guarded:
    port: int
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://{BIND}:{self.port}/mcp"

    def post(self, headers: dict[str, str], path: str = "/mcp") -> httpx2.Response:
        return httpx2.post(f"http://{BIND}:{self.port}{path}", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[Guarded]:
    """One server with a token and extra allowed names, logging at debug level to a file."""
    tmp = tmp_path_factory.mktemp("guarded")
    port = free_port(BIND)
    server = Guarded(port, tmp / "stderr.log")
    proc = start_server(
        "--sandbox",
        "--data-dir",
        str(tmp / "data"),
        "--host",
        BIND,
        "--port",
        str(port),
        "--allowed-hosts",
        "mcp.example.test:*",
        "--verbose",
        stderr=server.stderr,
        env={"MESHES_MCP_HTTP_TOKEN": TOKEN, "MESHES_MCP_ALLOWED_ORIGINS": "https://app.example.test"},
    )
    try:
        wait_until_serving(proc, server.url)
        yield server
    finally:
        stop(proc)


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.anyio
async def test_the_right_token_opens_a_session(guarded):
    assert "create_workspace" in await list_tool_names(guarded.url, BEARER)


def test_requests_without_the_right_token_get_401_on_every_route(guarded):
    base = f"http://{BIND}:{guarded.port}"
    wrong = [
        {},
        {"Authorization": "Bearer wrong-token-of-some-length"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix is not the token
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}\u00e9".encode()},  # non-ASCII bytes after the token
    ]
    for headers in wrong:
        for method, path in [("POST", "/mcp"), ("GET", "/mcp"), ("DELETE", "/mcp"), ("GET", "/"), ("GET", "/x")]:
            answer = httpx2.request(method, base + path, headers={**MCP_HEADERS, **headers}, json=INITIALIZE)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in answer.text
    # Two Authorization headers, the right one among them: ambiguous, refused.
    doubled = httpx2.post(
        guarded.url,
        json=INITIALIZE,
        headers=[*MCP_HEADERS.items(), ("Authorization", "Bearer nope"), ("Authorization", f"Bearer {TOKEN}")],
    )
    assert doubled.status_code == 401
    upgrade = httpx2.get(guarded.url, headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert upgrade.status_code == 401
    # Without the token, nothing else is revealed: not even whether the Host would have been allowed.
    assert guarded.post({"Host": "evil.example"}).status_code == 401
    # The scheme is case-insensitive, as RFC 7235 says.
    assert guarded.post({"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_host_and_origin_are_checked_whatever_the_bind_address(guarded):
    assert guarded.post({**BEARER, "Host": "evil.example"}).status_code == 421
    assert guarded.post({**BEARER, "Host": f"evil.example:{guarded.port}"}).status_code == 421
    assert guarded.post({**BEARER, "Origin": "http://evil.example"}).status_code == 403
    assert guarded.post({**BEARER, "Origin": "https://app.example.test.evil.example"}).status_code == 403
    # Also off the MCP endpoint, where the SDK checks nothing.
    assert guarded.post({**BEARER, "Host": "evil.example"}, path="/other").status_code == 421
    # What the configuration allows works: the bind address, the added host (any port), the added origin.
    assert guarded.post(BEARER).status_code == 200
    assert guarded.post({**BEARER, "Host": "mcp.example.test:443"}).status_code == 200
    assert guarded.post({**BEARER, "Host": "localhost:1234", "Origin": "http://localhost:5173"}).status_code == 200
    assert guarded.post({**BEARER, "Origin": "https://app.example.test"}).status_code == 200
    # A web page's origin with the token still fails: the token alone does not open the door to pages.
    assert guarded.post({**BEARER, "Origin": "https://app.example.test:8443"}).status_code == 403


@pytest.mark.anyio
async def test_the_token_never_reaches_the_logs(guarded):
    await list_tool_names(guarded.url, BEARER)
    guarded.post({"Authorization": "Bearer some-other-secret-value"})
    log = guarded.stderr.read_text()
    assert "DEBUG" in log  # the server really logged at debug level
    assert TOKEN not in log and "some-other-secret-value" not in log
    assert "refused an HTTP request without the right bearer token" in log


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshes_mcp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_an_exposed_bind_without_a_token_refuses_to_start(tmp_path):
    # --sandbox too: the refusal comes before anything starts (no sandbox data is created).
    done = run_cli("--transport", "http", "--host", "0.0.0.0", "--sandbox", "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "MESHES_MCP_HTTP_TOKEN" in lines[0] and "0.0.0.0" in lines[0], done.stderr
    assert not (tmp_path / "d").exists()


def test_doctor_shows_the_http_settings_with_the_token_masked():
    done = run_cli(
        "doctor", "--transport", "http", "--allowed-hosts", "mcp.example.test", env={"MESHES_MCP_HTTP_TOKEN": TOKEN}
    )
    assert TOKEN not in done.stderr + done.stdout and TOKEN[:5] not in done.stderr
    assert f"set ({len(TOKEN)} characters)" in done.stderr
    assert "mcp.example.test" in done.stderr
    invalid = run_cli("doctor", "--transport", "http", env={"MESHES_MCP_HTTP_TOKEN": "   "})
    assert invalid.returncode == 1 and "MESHES_MCP_HTTP_TOKEN is set but empty" in invalid.stderr
