"""The team server on one replica: `--transport http --stateless --credentials request` in a subprocess,
driven over real HTTP by the official client and by raw requests (the nginx end-to-end run is in
test_team_nginx.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult, InputRequiredResult

from meshes_mcp.sandbox import SandboxInfo
from tests.support import ok, refused
from tests.test_http_transport import MCP_HEADERS, free_port, run_cli, wait_until_serving
from tests.test_sandbox_orgs import add_org, info_of

STATE_KEY = "state-key-for-tests-0123456789abcdef"


def caller_headers(info: SandboxInfo, workspace: bool = True) -> dict[str, str]:
    headers = {
        "X-Meshes-Access-Key": info.access_key,
        "X-Meshes-Secret-Key": info.secret_key,
        "X-Meshes-Org-Id": info.organization_id,
    }
    if workspace:
        headers["X-Meshes-Workspace-Id"] = info.workspace_id
    return headers


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The structured access lines of this replica's stderr."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def lines_for(self, request_id: str) -> list[dict[str, Any]]:
        return lines_for(self.log_lines, request_id, "access line")


def lines_for(read: Callable[[], list[dict[str, Any]]], request_id: str, what: str) -> list[dict[str, Any]]:
    """A request's log lines: a log line is written once the response has gone, so possibly a moment after
    the client has it."""
    deadline = time.monotonic() + 10
    while not (found := [line for line in read() if line["request_id"] == request_id]):
        assert time.monotonic() < deadline, f"no {what} for {request_id}"
        time.sleep(0.02)
    return found


def start_replica(api_url: str, log: Path, *extra: str, env: dict[str, str] | None = None) -> Replica:
    port = free_port()
    command = [sys.executable, "-m", "meshes_mcp", "--transport", "http", "--port", str(port), "--api-url", api_url]
    proc = subprocess.Popen(
        [*command, "--stateless", "--credentials", "request", *extra],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={"PATH": "/usr/bin:/bin", "MESHES_MCP_STATE_KEY": STATE_KEY, **(env or {})},
    )
    replica = Replica(proc, f"http://127.0.0.1:{port}/mcp", log)
    wait_until_serving(proc, f"http://127.0.0.1:{port}/healthz")
    return replica


def stop_replica(replica: Replica) -> int:
    replica.proc.send_signal(signal.SIGTERM)
    try:
        return replica.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        replica.proc.kill()
        return replica.proc.wait()


@pytest.fixture(scope="module")
def replica(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    replica = start_replica(sandbox.api_url, tmp_path_factory.mktemp("replica") / "stderr.log")
    yield replica
    stop_replica(replica)


@asynccontextmanager
async def session(
    url: str, headers: dict[str, str], *, hooks: dict[str, list[Any]] | None = None, **options: Any
) -> AsyncIterator[Client]:
    """An MCP client session whose every request carries `headers` (what an editor's remote config sends);
    `hooks`: httpx event hooks, to see each exchange."""
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60, event_hooks=hooks or {}) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
    ):
        yield client


def accept(answer: bool) -> Any:
    async def elicitation(_ctx: Any, _params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": answer})

    return elicitation


# --- refusals before the SDK sees anything ---------------------------------------------------------------


def test_a_request_without_keys_gets_401_naming_the_headers(replica: Replica) -> None:
    answer = httpx2.post(replica.url, headers=MCP_HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    for header in ("X-Meshes-Access-Key", "X-Meshes-Secret-Key", "X-Meshes-Org-Id", "X-Meshes-Workspace-Id"):
        assert header in answer.text


def test_missing_one_key_names_just_that_header(replica: Replica, sandbox: SandboxInfo) -> None:
    headers = {**MCP_HEADERS, **caller_headers(sandbox)}
    del headers["X-Meshes-Secret-Key"]
    answer = httpx2.post(replica.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    assert answer.text.startswith("Unauthorized: missing X-Meshes-Secret-Key:")


@pytest.mark.parametrize(
    ("header", "value", "rule"),
    [
        ("X-Meshes-Access-Key", "not-a-key-but-a-secret-looking-value-000", "mk_ followed by"),
        ("X-Meshes-Secret-Key", "short-secret-value", "at least 43"),
        ("X-Meshes-Secret-Key", "s" * 42 + "\t", "at least 43"),
        ("X-Meshes-Org-Id", "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4bXX", "a UUID"),
        ("X-Meshes-Workspace-Id", "../../workspaces", "a UUID"),
        ("X-Meshes-Secret-Key", "é" * 50, "at least 43"),
        ("X-Meshes-Access-Key", "mk_" + "a" * 100_000, "mk_ followed by"),
    ],
)
def test_malformed_keys_get_400_naming_the_header_and_rule_never_the_value(
    replica: Replica, sandbox: SandboxInfo, header: str, value: str, rule: str
) -> None:
    headers = {**MCP_HEADERS, **caller_headers(sandbox), header: value}
    status, text = raw_post(replica.url, headers, b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    if len(value) > 50_000:
        # uvicorn refuses an oversized header itself; either way nothing reaches a tool.
        assert status in (400, 431), status
        return
    assert status == 400, text
    assert f"{header} must be" in text and rule in text
    assert value.strip() not in text
    assert value.strip() not in replica.log.read_text(errors="replace")


def raw_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """A POST written byte for byte (no client library would send a tab or UTF-8 in a header value)."""
    address = httpx2.URL(url)
    lines = [f"POST {address.path} HTTP/1.1", f"Host: {address.host}:{address.port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()] + [f"Content-Length: {len(body)}", "", ""]
    with socket.create_connection((address.host, address.port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("utf-8") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest.decode(errors="replace")


def test_a_header_sent_twice_is_refused(replica: Replica, sandbox: SandboxInfo) -> None:
    headers = [*MCP_HEADERS.items(), *caller_headers(sandbox).items(), ("X-Meshes-Org-Id", sandbox.organization_id)]
    answer = httpx2.post(replica.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 400
    assert "X-Meshes-Org-Id was sent 2 times" in answer.text


@pytest.mark.anyio
async def test_well_formed_but_wrong_keys_reach_the_api_and_come_back_as_a_tool_error(
    replica: Replica, sandbox: SandboxInfo
) -> None:
    wrong = {**caller_headers(sandbox), "X-Meshes-Secret-Key": "w" * 43}
    async with session(replica.url, wrong) as client:
        text = refused(await client.call_tool("list_workspaces", {}))
    assert "401" in text or "nauthorized" in text
    assert "w" * 43 not in text
    # Variables are refused in this mode: the advice names the headers the caller sends.
    assert "X-Meshes-Secret-Key" in text and "MESHES_ACCESS_KEY" not in text


# --- the caller's keys drive the tools -----------------------------------------------------------------


@pytest.mark.anyio
async def test_tools_act_with_the_callers_keys_and_default_workspace(replica: Replica, sandbox: SandboxInfo) -> None:
    async with session(replica.url, caller_headers(sandbox)) as client:
        workspaces = ok(await client.call_tool("list_workspaces", {}))
        triage = ok(await client.call_tool("triage_failures", {}))  # no workspace: the header's
        instructions = client.instructions or ""
    async with session(replica.url, caller_headers(sandbox, workspace=False)) as client:
        text = refused(await client.call_tool("triage_failures", {}))
    assert sandbox.workspace_id in {w["id"] for w in workspaces["workspaces"]}
    assert triage["events_scanned"] == 0 and triage["window"]["complete"]
    assert "X-Meshes-Workspace-Id" in text and "MESHES_WORKSPACE_ID" not in text
    assert "X-Meshes-Workspace-Id header" in instructions and "MESHES_WORKSPACE_ID" not in instructions


@pytest.mark.anyio
async def test_emit_events_streams_progress_and_a_confirmation_completes(
    replica: Replica, sandbox: SandboxInfo, sandbox_api: Any
) -> None:
    _, rule_id = sandbox_api.webhook_rule("https://hooks.example.com/team", "team.confirm", name="team confirm")
    _, kept_rule = sandbox_api.webhook_rule("https://hooks.example.com/team2", "team.keep", name="team keep")
    progress: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        progress.append(done)

    events = [{"event": "team.progress", "payload": {"n": i}} for i in range(1_500)]
    async with session(replica.url, caller_headers(sandbox), elicitation_callback=accept(True)) as client:
        emitted = ok(await client.call_tool("emit_events", {"events": events}, progress_callback=on_progress))
        deleted = await client.call_tool("delete_rule", {"rule_id": rule_id})
    async with session(replica.url, caller_headers(sandbox), elicitation_callback=accept(False)) as client:
        declined = refused(await client.call_tool("delete_rule", {"rule_id": kept_rule}))
    assert emitted["accepted"] == 1_500
    assert len(progress) >= 5 and progress == sorted(progress)
    assert not deleted.is_error, deleted.content
    assert sandbox_api.get(f"/rules/{rule_id}").status_code == 404
    assert "declined" in declined
    assert sandbox_api.get(f"/rules/{kept_rule}").status_code == 200


@pytest.mark.anyio
async def test_keys_never_reach_the_log_and_every_request_has_one_line(replica: Replica, sandbox: SandboxInfo) -> None:
    async with session(replica.url, {**caller_headers(sandbox), "X-Request-Id": "req-42.a_b"}) as client:
        ok(await client.call_tool("list_workspaces", {}))
    text = replica.log.read_text(errors="replace")
    for secret in (sandbox.secret_key, sandbox.access_key):
        assert secret not in text
    lines = replica.log_lines()
    mine = replica.lines_for("req-42.a_b")
    assert {(line["method"], line["tool"]) for line in mine} >= {("tools/call", "list_workspaces")}
    for line in lines:
        assert set(line) == {"ts", "request_id", "http", "method", "tool", "status", "ms"}


def test_the_access_log_names_registered_tools_only(replica: Replica, sandbox: SandboxInfo) -> None:
    """A body whose arguments carry a `name` before the tool's own must not put that value in the log."""
    body = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"name":"jane-secret"},"name":"x"}}'
    headers = {**MCP_HEADERS, **caller_headers(sandbox), "X-Request-Id": "probe-name"}
    httpx2.post(replica.url, headers=headers, content=body)
    (line,) = replica.lines_for("probe-name")
    assert line["tool"] is None
    assert "jane-secret" not in replica.log.read_text()


# --- operations -------------------------------------------------------------------------------------------


def test_health_needs_no_keys_and_readiness_follows_the_api(sandbox: SandboxInfo, tmp_path: Path) -> None:
    down = start_replica(f"http://127.0.0.1:{free_port()}", tmp_path / "down.log")
    try:
        assert httpx2.get(down.url.replace("/mcp", "/healthz")).json() == {"status": "ok"}
        answer = httpx2.get(down.url.replace("/mcp", "/readyz"))
        assert answer.status_code == 503
        assert answer.json()["status"] == "not ready"
        refused_host = httpx2.get(down.url.replace("/mcp", "/healthz"), headers={"Host": "evil.example"})
        assert refused_host.status_code == 421
        assert httpx2.post(down.url.replace("/mcp", "/healthz")).status_code == 405
    finally:
        stop_replica(down)


@pytest.mark.anyio
async def test_sigterm_lets_an_in_flight_call_finish_then_exits(sandbox: SandboxInfo, tmp_path: Path) -> None:
    replica = start_replica(sandbox.api_url, tmp_path / "drain.log", "--drain-seconds", "60")
    events = [{"event": "team.drain", "payload": {"n": i}} for i in range(3_000)]
    started: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        if not started:
            started.append(done)
            replica.proc.send_signal(signal.SIGTERM)  # mid-call: the first chunk is in, the rest is not

    try:
        async with session(replica.url, caller_headers(sandbox)) as client:
            await client.list_tools()  # as an editor does first (after the signal, no new request is served)
            result = ok(await client.call_tool("emit_events", {"events": events}, progress_callback=on_progress))
        assert started, "the call finished before any progress"
        assert result["accepted"] == 3_000
        assert replica.proc.wait(timeout=30) == 0
        assert "draining in-flight requests" in replica.log.read_text()
    finally:
        if replica.proc.poll() is None:
            replica.proc.kill()


# --- start-up refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--credentials", "request"), {}, "--transport http"),
        (("--transport", "http", "--credentials", "request"), {}, "needs --stateless"),
        (
            ("--transport", "http", "--stateless", "--credentials", "request"),
            {"MESHES_ACCESS_KEY": "mk_abcdefghijklmnopqrstuv"},
            "MESHES_ACCESS_KEY is set",
        ),
        (("--transport", "http"), {"MESHES_MCP_STATELESS": "maybe"}, "MESHES_MCP_STATELESS must be true or false"),
        (("--transport", "http"), {"MESHES_MCP_CREDENTIALS": "headers"}, "MESHES_MCP_CREDENTIALS must be env"),
        (("--transport", "http"), {"MESHES_MCP_STATE_KEY": "short"}, "at least 32"),
        (("--transport", "http", "--drain-seconds", "nan"), {}, "--drain-seconds must be a number"),
        (("--transport", "http"), {"MESHES_ORG_ID": "not-a-uuid"}, "MESHES_ORG_ID must be a UUID"),
        (("--transport", "http", "--caller-calls", "0"), {}, "--caller-calls must be a whole number from 1"),
        (("--transport", "http"), {"MESHES_MCP_HEADER_TIMEOUT": "nan"}, "MESHES_MCP_HEADER_TIMEOUT must be a number"),
    ],
)
def test_bad_team_configuration_stops_with_one_line(args: tuple[str, ...], env: dict[str, str], says: str) -> None:
    done = run_cli(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    for value in env.values():
        assert value not in done.stderr or value in ("maybe", "headers")


def test_per_request_credentials_need_no_token_beyond_loopback() -> None:
    from meshes_mcp.config import HttpSettings

    flags = {"host": "0.0.0.0", "stateless": True, "credentials": "request"}
    assert HttpSettings.from_sources(flags, {}).token is None
    with pytest.raises(ValueError, match="without a token"):
        HttpSettings.from_sources({"host": "0.0.0.0", "stateless": True}, {})


@pytest.mark.anyio
async def test_a_handshake_era_client_works_statelessly_but_cannot_be_asked(
    replica: Replica, sandbox: SandboxInfo, sandbox_api: Any
) -> None:
    """Protocol 2025-11-25 over a stateless server: calls and progress work; a confirmation cannot travel
    (no session to carry the server's question), so a destructive call relies on the client's own approval,
    as for a client without elicitation. The README says so."""
    _, rule_id = sandbox_api.webhook_rule("https://hooks.example.com/legacy", "team.legacy", name="team legacy")
    asked: list[str] = []

    async def elicitation(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    progress: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        progress.append(done)

    options = {"mode": "legacy", "elicitation_callback": elicitation}
    async with session(replica.url, caller_headers(sandbox), **options) as client:
        assert client.protocol_version < "2026"
        events = [{"event": "team.legacy", "payload": {"n": i}} for i in range(400)]
        emitted = ok(await client.call_tool("emit_events", {"events": events}, progress_callback=on_progress))
        deleted = ok(await client.call_tool("delete_rule", {"rule_id": rule_id}))
    assert emitted["accepted"] == 400 and progress
    assert deleted["deleted"] == rule_id and asked == []


def test_doctor_checks_the_api_without_keys_in_per_request_mode(sandbox: SandboxInfo) -> None:
    args = ("doctor", "--transport", "http", "--stateless", "--credentials", "request")
    done = run_cli(*args, "--api-url", sandbox.api_url)
    assert done.returncode == 0, done.stderr
    assert "credentials        per request" in done.stderr or "per request (X-Meshes-* headers)" in done.stderr
    assert "API reachable; each request brings its own Meshes keys" in done.stderr
    down = run_cli(*args, "--api-url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "API check failed: the Meshes API did not answer (ConnectError)" in down.stderr


# --- two tenants on one replica ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_tenant(sandbox: SandboxInfo) -> SandboxInfo:
    """A second organisation in the same sandbox, with its own machine key."""
    answer = add_org(sandbox, json={"name": "Second Team"})
    assert answer.status_code == 201, answer.text
    return info_of(sandbox.api_url, answer.json())


@pytest.mark.anyio
async def test_a_secret_learned_for_one_caller_is_never_matched_against_anothers_data(
    replica: Replica, sandbox: SandboxInfo, other_tenant: SandboxInfo
) -> None:
    """One shared redactor would be an oracle: B could send guesses and see which come back masked."""
    secret = "oracle-secret-AAAA-1234567"
    webhook = {"url": "https://hooks.example.com/oracle", "custom_headers": {"X-Api-Key": secret}}
    async with session(replica.url, caller_headers(sandbox)) as a:
        ok(await a.call_tool("create_connection", {"type": "webhook", "name": "oracle hook", "metadata": webhook}))
        mine = ok(await a.call_tool("emit_event", {"event": "team.oracle", "payload": {"note": secret}}))
        seen_by_a = ok(await a.call_tool("get_event", {"event_id": mine["id"], "include_payload": True}))
    async with session(replica.url, caller_headers(other_tenant)) as b:
        theirs = ok(await b.call_tool("emit_event", {"event": "team.oracle", "payload": {"note": secret}}))
        seen_by_b = ok(await b.call_tool("get_event", {"event_id": theirs["id"], "include_payload": True}))
    assert secret not in json.dumps(seen_by_a)  # A's own secret is masked in A's results
    assert secret in json.dumps(seen_by_b)  # B's data is B's: nothing of A's is matched against it


@pytest.mark.anyio
async def test_a_confirmation_asked_of_one_caller_cannot_be_answered_with_anothers_keys(
    replica: Replica, sandbox: SandboxInfo, other_tenant: SandboxInfo, sandbox_api: Any
) -> None:
    _, rule_id = sandbox_api.webhook_rule("https://hooks.example.com/replay", "team.replay", name="team replay")
    options = {"elicitation_callback": accept(True)}
    async with session(replica.url, caller_headers(sandbox), **options) as a:
        asked = await a.session.call_tool("delete_rule", {"rule_id": rule_id}, allow_input_required=True)
    assert isinstance(asked, InputRequiredResult), asked
    (key,) = asked.input_requests
    yes = {key: ElicitResult(action="accept", content={"confirm": True})}
    async with session(replica.url, caller_headers(other_tenant), **options) as b:
        with pytest.raises(MCPError):
            await b.session.call_tool(
                "delete_rule", {"rule_id": rule_id}, input_responses=yes, request_state=asked.request_state
            )
    assert sandbox_api.get(f"/rules/{rule_id}").status_code == 200
    async with session(replica.url, caller_headers(sandbox), **options) as a:
        done = await a.session.call_tool(
            "delete_rule", {"rule_id": rule_id}, input_responses=yes, request_state=asked.request_state
        )
    assert not done.is_error, done.content  # the caller who was asked can answer
    assert sandbox_api.get(f"/rules/{rule_id}").status_code == 404
