"""Slow and half-open connections against the HTTP transport, exposed directly (no proxy in front): none holds
a connection forever, the connection cap keeps descriptors from running out, and a valid call still answers."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.test_http_transport import MCP_HEADERS, free_port, stop, wait_until_serving

LIST_TOOLS = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def serve(log: Path, descriptors: int | None = None, **limits: str) -> tuple[subprocess.Popen[bytes], int]:
    """`meshes-mcp --transport http` on loopback (no keys: tools/list needs none), optionally with a low
    descriptor limit, as a replica with the common 1,024 has, scaled down. `limits`: MESHES_MCP_* variables."""

    def limit() -> None:
        if descriptors is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, descriptors))

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshes_mcp", "--transport", "http", "--stateless", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={"PATH": "/usr/bin:/bin", **{f"MESHES_MCP_{name.upper()}": value for name, value in limits.items()}},
        preexec_fn=limit,
    )
    wait_until_serving(proc, f"http://127.0.0.1:{port}/healthz")
    return proc, port


def closed_by_server(sock: socket.socket, within: float = 20.0) -> bytes:
    """What the server sent before closing the connection; fails if it is still open after `within` s."""
    sock.settimeout(within)
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except TimeoutError:
        raise AssertionError(f"the server held the connection for {within} s") from None
    except ConnectionResetError:
        pass
    return answer


def valid_call(port: int) -> httpx2.Response:
    return httpx2.post(f"http://127.0.0.1:{port}/mcp", headers=MCP_HEADERS, content=LIST_TOOLS, timeout=20)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_connections_that_never_finish_their_headers_are_closed(tmp_path: Path) -> None:
    proc, port = serve(tmp_path / "stderr.log", header_timeout="1")
    try:
        silent, partial = connect(port), connect(port)
        partial.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        assert valid_call(port).status_code == 200  # served meanwhile
        assert closed_by_server(silent) == b""
        assert closed_by_server(partial).startswith(b"HTTP/1.1 408")
        keep_alive = connect(port)  # one request, then a byte now and then: idle, and closed as such
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        keep_alive.settimeout(10)
        assert keep_alive.recv(4096).startswith(b"HTTP/1.1 200")
        keep_alive.sendall(b"G")
        assert b"HTTP/1.1 408 Request Timeout" in closed_by_server(keep_alive)
    finally:
        stop(proc)


def test_a_body_that_never_arrives_gets_408_and_the_connection_ends(tmp_path: Path) -> None:
    proc, port = serve(tmp_path / "stderr.log", body_timeout="1")
    try:
        slow = connect(port)
        head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n"
        slow.sendall(head.encode() + b'{"jsonrpc"')
        answer = closed_by_server(slow)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the body did not arrive within 1 s" in answer
        assert valid_call(port).status_code == 200
        assert "Traceback" not in (tmp_path / "stderr.log").read_text(errors="replace")
    finally:
        stop(proc)


def test_half_open_connections_beyond_the_descriptor_limit_leave_the_server_serving(tmp_path: Path) -> None:
    """A replica allowed 128 descriptors, 300 connections that send nothing: the ones beyond the cap are
    answered 503 at once, nothing floods the log, and a valid caller connecting while the rest are still
    held is served (it replaces the oldest silent connection) instead of waiting for their deadline."""
    log = tmp_path / "stderr.log"
    proc, port = serve(log, descriptors=128, header_timeout="5")
    held: list[socket.socket] = []
    try:
        for _ in range(300):
            held.append(connect(port))
        held_since = time.monotonic()
        time.sleep(1.5)  # the silent ones are now "silent a while": each new connection may replace one
        # On a loaded machine the server may still be accepting the last of the 300 (silent for less than a
        # second: none to replace yet, so a 503 with Retry-After); it must serve well before their deadline.
        status = valid_call(port).status_code
        while status != 200 and time.monotonic() - held_since < 4.0:
            time.sleep(0.3)
            status = valid_call(port).status_code
        assert status == 200
        answers = [closed_by_server(sock) for sock in held]
        assert all(a == b"" or a.startswith(b"HTTP/1.1 503") for a in answers)
        text = log.read_text(errors="replace")
        # A burst faster than the server may briefly use the last descriptors: one line says so, no traceback.
        assert text.count("out of system resource") <= 1
        assert "Traceback" not in text
    finally:
        for sock in held:
            sock.close()
        stop(proc)


def test_when_every_connection_is_serving_a_request_the_next_gets_503_with_retry_after(tmp_path: Path) -> None:
    """Requests whose bodies trickle hold their connections (up to the body deadline); beyond the cap a new
    connection is answered 503 at once rather than queued, and served again once the deadline frees them."""
    proc, port = serve(tmp_path / "stderr.log", descriptors=128, body_timeout="3")
    held: list[socket.socket] = []
    head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    try:
        for _ in range(120):
            sock = connect(port)
            sock.sendall(head)
            held.append(sock)
        answers = [closed_by_server(sock) for sock in held]
        busy = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert busy and all(b"Retry-After: 1" in a for a in busy)
        assert all(a.startswith((b"HTTP/1.1 503", b"HTTP/1.1 408")) for a in answers)
        assert valid_call(port).status_code == 200
    finally:
        for sock in held:
            sock.close()
        stop(proc)


def test_accept_failures_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    """asyncio reports each failed accept() (with a traceback) through its exception handler; a descriptor
    shortage repeats it for every retry. The server's filter turns a burst into one line."""
    import asyncio
    import errno
    import logging

    from meshes_mcp.server.connections import quiet_accept_errors

    quiet_accept_errors()
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            for _ in range(500):
                failure = OSError(errno.EMFILE, "Too many open files")
                loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": failure})
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert lines == ["accept() failed: out of system resources (Too many open files)"]
    assert all(r.exc_info is None for r in caplog.records)
