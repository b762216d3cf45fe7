"""The team server under hostile load, through a real replica on 127.0.0.1: a flood of distinct (bogus) keys
beside a valid caller, and the per-caller limits answered as 429 with Retry-After."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.test_http_transport import MCP_HEADERS
from tests.test_team_server import Replica, caller_headers, start_replica, stop_replica

# 12 workers: 360 distinct keys, beyond the default bound of idle tenants as well as the 4 kept here.
FLOOD_PER_WORKER = 30


def bogus_headers(info: SandboxInfo) -> dict[str, str]:
    """A well-formed machine key nobody issued: a new tenant on the replica, a 401 from the API."""
    return {
        "X-Meshes-Access-Key": "mk_" + secrets.token_hex(12),
        "X-Meshes-Secret-Key": secrets.token_urlsafe(33),
        "X-Meshes-Org-Id": info.organization_id,
    }


async def rpc(http: httpx2.AsyncClient, url: str, headers: dict[str, str], tool: str, **arguments: Any) -> Any:
    """One tools/call over stateless streamable HTTP, read to its end: the HTTP answer, and the JSON-RPC
    result when it came (a cut stream raises here)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    answer = await http.post(url, headers={**MCP_HEADERS, **headers}, json=body)
    messages = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
    result = next((m["result"] for m in messages if m.get("id") == 1 and "result" in m), None)
    return answer, result


@contextmanager
def replica_with(sandbox: SandboxInfo, tmp_path: Path, **variables: str) -> Iterator[Replica]:
    """A team replica with MESHES_MCP_* `variables` (`idle_tenants="4"`), stopped afterwards."""
    env = {f"MESHES_MCP_{name.upper()}": value for name, value in variables.items()}
    replica = start_replica(sandbox.api_url, tmp_path / "stderr.log", env=env)
    try:
        yield replica
    finally:
        stop_replica(replica)


@pytest.fixture
def small_pool_replica(sandbox: SandboxInfo, tmp_path: Path) -> Iterator[Replica]:
    """A replica that keeps 4 idle tenants: every few requests of a flood evict some."""
    with replica_with(sandbox, tmp_path, idle_tenants="4") as replica:
        yield replica


@pytest.mark.anyio
async def test_a_flood_of_distinct_keys_costs_the_valid_caller_nothing(
    small_pool_replica: Replica, sandbox: SandboxInfo
) -> None:
    replica = small_pool_replica
    flood_results: list[tuple[int, bool]] = []
    valid_results: list[tuple[int, bool]] = []
    flooding = True

    async with httpx2.AsyncClient(timeout=60) as http:

        async def flood(worker: int) -> None:
            for _ in range(FLOOD_PER_WORKER):
                answer, result = await rpc(http, replica.url, bogus_headers(sandbox), "list_workspaces")
                flood_results.append((answer.status_code, result is not None and result["isError"]))

        async def valid() -> None:
            while flooding or not valid_results:
                answer, result = await rpc(http, replica.url, caller_headers(sandbox), "list_workspaces")
                valid_results.append((answer.status_code, result is not None and not result["isError"]))

        async with anyio.create_task_group() as group:
            group.start_soon(valid)
            async with anyio.create_task_group() as floods:
                for worker in range(12):
                    floods.start_soon(flood, worker)
            flooding = False

    assert len(flood_results) == 12 * FLOOD_PER_WORKER
    assert set(flood_results) == {(200, True)}, "every bogus call ends in a complete tool error (the API's 401)"
    assert valid_results and set(valid_results) == {(200, True)}, "the valid caller lost no call"
    log = replica.log.read_text(errors="replace")
    assert "Traceback" not in log and "KeyError" not in log


@pytest.fixture(scope="module")
def hanging_event(sandbox: SandboxInfo, sandbox_api: Any, webhook_receiver: WebhookReceiver) -> str:
    """An event whose one delivery is in flight for a long while (the receiver answers after 60 s)."""
    sandbox_api.webhook_rule(f"{webhook_receiver.url}/slow/60", "team.hang", name="team hang")
    answer = sandbox_api.post("/events", json={"workspace": sandbox.workspace_id, "event": "team.hang", "payload": {}})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["event"]["id"])


async def refused_while_one_waits(replica: Replica, sandbox: SandboxInfo, event_id: str, **second: Any) -> Any:
    """Keeps one wait in flight (get_event wait_seconds=4 on an event still being delivered, sent again while
    it is the one refused) and sends the second call beside it until that is refused: the 429, or None if
    the first wait ended first."""
    refusal = None
    async with httpx2.AsyncClient(timeout=60) as http, anyio.create_task_group() as group:
        done = anyio.Event()

        async def first() -> None:
            arguments = {"event_id": event_id, "wait_seconds": 4}
            while (await rpc(http, replica.url, caller_headers(sandbox), "get_event", **arguments))[
                0
            ].status_code == 429:
                await anyio.sleep(0.05)
            done.set()

        group.start_soon(first)
        while not done.is_set():
            answer, _ = await rpc(http, replica.url, caller_headers(sandbox), second["tool"], **second["arguments"])
            if answer.status_code == 429:
                refusal = answer
                break
            await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    return refusal


@pytest.mark.anyio
async def test_a_caller_beyond_its_concurrent_calls_gets_429_with_retry_after(
    sandbox: SandboxInfo, tmp_path: Path, hanging_event: str
) -> None:
    with replica_with(sandbox, tmp_path, caller_calls="1") as replica:
        second = {"tool": "list_workspaces", "arguments": {}}
        refusal = await refused_while_one_waits(replica, sandbox, hanging_event, **second)
        assert refusal is not None, "a second request beside the first was served"
        assert refusal.headers["retry-after"] == "1"
        assert "this Meshes key already has 1 requests in progress" in refusal.text
        async with httpx2.AsyncClient(timeout=60) as http:
            other = await rpc(http, replica.url, bogus_headers(sandbox), "list_workspaces")
        assert other[0].status_code == 200, "another key is not limited by this one's calls"


@pytest.mark.anyio
async def test_a_caller_beyond_its_concurrent_waits_gets_429_but_may_still_call(
    sandbox: SandboxInfo, tmp_path: Path, hanging_event: str
) -> None:
    with replica_with(sandbox, tmp_path, caller_waits="1") as replica:
        second = {"tool": "get_event", "arguments": {"event_id": hanging_event, "wait_seconds": 1}}
        refusal = await refused_while_one_waits(replica, sandbox, hanging_event, **second)
        assert refusal is not None, "a second wait beside the first was served"
        assert refusal.headers["retry-after"] == "5"
        assert "1 tool calls waiting (wait_seconds)" in refusal.text and "without wait_seconds" in refusal.text
        async with httpx2.AsyncClient(timeout=60) as http:
            answer, result = await rpc(http, replica.url, caller_headers(sandbox), "get_event", event_id=hanging_event)
        assert answer.status_code == 200 and result is not None and not result["isError"]


def test_a_body_that_never_arrives_is_refused_after_the_keys_are_checked(sandbox: SandboxInfo, tmp_path: Path) -> None:
    """Without keys: 401 at once, the body never waited for. With keys: 408 once the body deadline passes."""
    with replica_with(sandbox, tmp_path, body_timeout="1") as replica:
        address = httpx2.URL(replica.url)
        for keys, status in (({}, b"401"), (bogus_headers(sandbox), b"408")):
            head = "".join(f"{name}: {value}\r\n" for name, value in {**MCP_HEADERS, **keys}.items())
            with socket.create_connection((address.host, address.port), timeout=20) as sock:
                sock.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: 500\r\n\r\n{{".encode())
                assert sock.recv(4096).split(b" ")[1] == status
        assert "Traceback" not in replica.log.read_text(errors="replace")
