"""Stdio as a careless or hostile client drives it: every malformed line gets a JSON-RPC error (with the
request's id when it can be read) and the server keeps serving. A real subprocess, raw bytes on stdin."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any, NamedTuple

import mcp_types as types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshes_mcp.server.stdio import INVALID_REQUEST, PARSE_ERROR, Refusal, judge_line

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


class RpcError(NamedTuple):
    """A JSON-RPC error answer: the request id it names (None when none could be read), code and message."""

    id: Any
    code: int
    message: str


class StdioServer:
    """`python -m meshes_mcp` with a reader thread, so every read has a deadline."""

    def __init__(self, *args: str, stderr: Any = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshes_mcp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={"PATH": "/usr/bin:/bin"},
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, line: Any) -> None:
        assert self.proc.stdin
        raw = line if isinstance(line, bytes) else json.dumps(line).encode()
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 20) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout} s") from None

    def error(self, line: Any) -> RpcError:
        self.send(line)
        answer = self.answer()
        assert set(answer) == {"jsonrpc", "id", "error"}, answer
        return RpcError(answer["id"], answer["error"]["code"], answer["error"]["message"])

    def ping(self, request_id: int) -> None:
        """A request whose answer proves nothing else was written before it."""
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        assert self.answer() == {"jsonrpc": "2.0", "id": request_id, "result": {}}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server():
    running = StdioServer()
    yield running
    running.close()


def request(request_id: Any, method: str = "tools/list", **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **extra}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_malformed_lines_get_json_rpc_errors_and_the_server_keeps_serving(server):
    # Before initialize, as a client's very first line.
    assert server.error(b"hello there") == (
        None,
        PARSE_ERROR,
        "Parse error: Invalid JSON: expected value at line 1 column 1",
    )
    server.send(INITIALIZE)
    assert server.answer()["result"]["serverInfo"]["name"] == "meshes"
    if sys.platform.startswith("linux"):
        # The wire is read from a private descriptor: handlers and children read the null device.
        assert os.readlink(f"/proc/{server.proc.pid}/fd/0") == "/dev/null"
    server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    deep = f'{{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{{"x":{nested(300)}}}}}'.encode()
    too_deep = server.error(deep)
    assert (too_deep.id, too_deep.code) == (7, PARSE_ERROR) and "nested too deeply" in too_deep.message
    # Deeper than the standard library can read either: no id to give, still an answer.
    assert server.error(f'{{"id":8,"x":{nested(100_000)}}}'.encode())[:2] == (None, PARSE_ERROR)

    surrogate = server.error(rb'{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"x":"\ud800"}}')
    assert (surrogate.id, surrogate.code) == (3, PARSE_ERROR) and "surrogate pair" in surrogate.message
    not_utf8 = server.error(b'{"jsonrpc":"2.0","id":4,"method":"ping","x":"\xed\xa0\x80"}')
    assert (not_utf8.id, not_utf8.code) == (4, PARSE_ERROR) and "not valid UTF-8" in not_utf8.message
    assert server.error(b"\x00\x01\x1b[2J")[:2] == (None, PARSE_ERROR)
    assert server.error(b"x" * 3_000_000)[:2] == (None, PARSE_ERROR)

    # A batch: each request in it is answered under its own id, so neither caller hangs.
    server.send([request(5), request("six", "ping"), {"jsonrpc": "2.0", "method": "notifications/initialized"}])
    batch = [server.answer(), server.answer()]
    assert [(a["id"], a["error"]["code"]) for a in batch] == [(5, INVALID_REQUEST), ("six", INVALID_REQUEST)]
    assert "batches are not supported" in batch[0]["error"]["message"]
    assert server.error([])[:2] == (None, INVALID_REQUEST)

    assert server.error(request(9, params="abc")) == (
        9,
        INVALID_REQUEST,
        'Invalid Request: "params" must be an object, e.g. {} (got string)',
    )
    assert server.error(request(10, params=[1, 2]))[:2] == (10, INVALID_REQUEST)
    assert server.error({"jsonrpc": "1.0", "id": 11, "method": "ping"})[:2] == (11, INVALID_REQUEST)
    assert server.error({"jsonrpc": "2.0", "id": 12, "method": 5})[:2] == (12, INVALID_REQUEST)
    assert server.error(42)[:2] == (None, INVALID_REQUEST)
    assert server.error(b'"tools/list"')[:2] == (None, INVALID_REQUEST)
    # An id the SDK would silently ignore (treating the request as a notification) is refused aloud.
    float_id = server.error(request(1.5))
    assert (float_id.id, float_id.code) == (None, INVALID_REQUEST)
    assert '"id" must be a string or an integer' in float_id.message
    assert server.error(request(None))[:2] == (None, INVALID_REQUEST)
    assert server.error(request(True))[:2] == (None, INVALID_REQUEST)

    # Not answered, by design: blank lines, and a malformed response (its id is one of the server's).
    server.send(b"")
    server.send(b"   \r")
    server.send({"jsonrpc": "2.0", "id": 13, "result": "not an object"})
    server.send({"jsonrpc": "2.0", "id": None, "method": "notifications/initialized"})  # sloppy, still taken
    server.ping(14)

    # What the SDK answers itself still reaches the client unchanged.
    assert server.error(request(15, "no/such/method"))[:2] == (15, -32601)
    server.send(request(16))
    tools = server.answer()["result"]["tools"]
    assert any(tool["name"] == "emit_event" for tool in tools)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(), st.booleans()),
        "method": st.one_of(st.sampled_from(["ping", "tools/list"]), st.integers()),
        "params": json_values,
        "result": json_values,
    },
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        envelopes.map(lambda v: json.dumps(v).encode()),
    )
)
def test_every_line_is_passed_on_valid_or_refused_with_a_proper_error(raw):
    verdict = judge_line(raw)
    if verdict is None:
        assert not raw.strip()
    elif not isinstance(verdict, Refusal):
        # Passed on as the SDK itself reads the line, and never a request taken for a notification.
        # Compared as JSON: a result may hold NaN (a client's response is passed on as is), and NaN != NaN.
        expected = types.jsonrpc_message_adapter.validate_json(raw, by_name=False)
        assert verdict.model_dump_json() == expected.model_dump_json()
        if isinstance(verdict, types.JSONRPCNotification) and not verdict.method.startswith("notifications/"):
            assert "id" not in json.loads(raw)
    else:
        assert isinstance(verdict, Refusal) and verdict.code in (PARSE_ERROR, INVALID_REQUEST)
        for request_id in verdict.ids:
            types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=verdict.code, message="m"))
