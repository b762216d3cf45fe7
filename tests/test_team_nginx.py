"""The team server end to end: the sandbox, two `--stateless --credentials request` replicas sharing one
MESHES_MCP_STATE_KEY, and a real nginx in front (its config from `meshes-mcp nginx-config`), all on
127.0.0.1, driven by the official MCP client through nginx.

Which replica served a request is read three ways that must agree: nginx's access log (`$upstream_addr`
per `$request_id`), the replicas' own access lines (nginx passes `$request_id` on as `X-Request-Id`), and
an `X-Upstream` header the test's main nginx config adds to every answer, so the client knows where a
streamed call is running while it is still running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult, InputRequiredResult

from meshes_mcp.deploy import nginx_config
from meshes_mcp.sandbox import SandboxInfo
from tests.conftest import SandboxApi
from tests.support import ok, refused
from tests.test_http_transport import free_port
from tests.test_sandbox_orgs import add_org, info_of
from tests.test_team_server import Replica, caller_headers, lines_for, session, start_replica, stop_replica

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
NO_NGINX = "no nginx binary on PATH or at /usr/sbin/nginx: install the Debian package `nginx` (.ci/run does)"

# One JSON object per request: which upstream(s) nginx tried, and what each answered.
LOG_FORMAT = (
    "escape=json '{"
    '"request_id":"$request_id","status":"$status","upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","mcp_method":"$http_mcp_method","mcp_name":"$http_mcp_name"'
    "}'"
)


@dataclass
class Front:
    """A running nginx in front of some replicas."""

    proc: subprocess.Popen[bytes]
    url: str
    prefix: Path

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text(errors="replace").splitlines() if line]

    def lines_for(self, request_id: str) -> list[dict[str, Any]]:
        return lines_for(self.log_lines, request_id, "nginx line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main_config(prefix: Path, generated: Path) -> str:
    """The main config around the generated http-level one: everything under `prefix`, one worker."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in kinds)
    # As root, nginx would run its worker as `nobody`, which cannot write the temp dirs under a private tmp.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user}
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    log_format team {LOG_FORMAT};
    access_log {prefix / "access.log"} team;
    {temp}
    # For the tests only: which replica is answering, known to the client from the first byte.
    add_header X-Upstream $upstream_addr always;
    include {generated};
}}
"""


def start_nginx(replica_urls: list[str], prefix: Path) -> Front:
    """nginx (config from `nginx_config`, as `meshes-mcp nginx-config` prints it) on a free loopback port."""
    assert NGINX is not None, NO_NGINX
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    replicas = [httpx2.URL(url).netloc.decode() for url in replica_urls]
    generated = prefix / "meshes-mcp.conf"
    generated.write_text(nginx_config(replicas, listen=f"127.0.0.1:{port}"))
    main = prefix / "nginx.conf"
    main.write_text(main_config(prefix, generated))
    command = [NGINX, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(prefix / "stderr.log").open("wb"))
    front = Front(proc, f"http://127.0.0.1:{port}/mcp", prefix)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {(prefix / 'stderr.log').read_text()}{_error_log(prefix)}")
        try:
            if httpx2.get(front.url.replace("/mcp", "/healthz"), timeout=1).status_code == 200:
                return front
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, f"nginx did not answer in 20 s{_error_log(prefix)}"
        time.sleep(0.05)


def _error_log(prefix: Path) -> str:
    path = prefix / "error.log"
    return f"\n{path.read_text(errors='replace')}" if path.exists() else ""


@dataclass
class Served:
    """One HTTP exchange as the client saw it through nginx."""

    method: str | None
    name: str | None
    status: int
    request_id: str | None
    upstream: str | None


@dataclass
class Traced:
    """What an MCP session through nginx sent and who answered: filled by an httpx response hook, which
    runs when the headers arrive, before a streamed body is read."""

    served: list[Served] = field(default_factory=list)

    async def record(self, response: httpx2.Response) -> None:
        request = response.request
        self.served.append(
            Served(
                request.headers.get("mcp-method"),
                request.headers.get("mcp-name"),
                response.status_code,
                response.headers.get("x-request-id"),
                response.headers.get("x-upstream"),
            )
        )

    def calls(self, tool: str) -> list[Served]:
        return [s for s in self.served if s.method == "tools/call" and s.name == tool]


def traced_session(url: str, headers: dict[str, str], trace: Traced, **options: Any) -> Any:
    """An MCP client session through nginx whose every request carries `headers`, traced into `trace`."""
    return session(url, headers, hooks={"response": [trace.record]}, **options)


pytestmark = pytest.mark.skipif(NGINX is None, reason=NO_NGINX)


@dataclass
class Team:
    """Replicas behind one nginx."""

    front: Front
    replicas: dict[str, Replica]  # by host:port, as nginx's $upstream_addr names them

    def replica_at(self, upstream: str | None) -> Replica:
        assert upstream in self.replicas, f"{upstream!r} is not one of {sorted(self.replicas)}"
        return self.replicas[upstream]

    def stop(self) -> None:
        for replica in self.replicas.values():
            if replica.proc.poll() is None:
                stop_replica(replica)
        self.front.stop()


def start_team(api_url: str, directory: Path, count: int = 2) -> Team:
    """`count` replicas (started side by side: each takes seconds to import) and nginx in front."""
    directory.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(count) as pool:
        started = list(pool.map(lambda n: start_replica(api_url, directory / f"replica{n}.log"), range(count)))
    replicas = {httpx2.URL(r.url).netloc.decode(): r for r in started}
    try:
        return Team(start_nginx([r.url for r in started], directory / "nginx"), replicas)
    except BaseException:
        for replica in started:
            stop_replica(replica)
        raise


@pytest.fixture(scope="module")
def team(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    team = start_team(sandbox.api_url, tmp_path_factory.mktemp("team"))
    yield team
    team.stop()


@pytest.fixture(scope="module")
def tenant_b(sandbox: SandboxInfo) -> SandboxInfo:
    """A second organisation of the same sandbox, with a machine key of its own."""
    answer = add_org(sandbox, json={"name": "Tenant B"})
    assert answer.status_code == 201, answer.text
    return info_of(sandbox.api_url, answer.json())


def stored_events(sandbox_dir: Path, event: str) -> list[str]:
    """The payload uid of every stored event named `event`, straight from the sandbox's database."""
    with sqlite3.connect(sandbox_dir / "sandbox.db") as db:
        rows = db.execute("SELECT json_extract(payload, '$.uid') FROM events WHERE event = ?", (event,))
        return [uid for (uid,) in rows]


def tool_calls(replica: Replica, tool: str | None = None) -> list[dict[str, Any]]:
    return [line for line in replica.log_lines() if line["method"] == "tools/call" and tool in (None, line["tool"])]


def answer_yes_from_the_other_replica(front: Front, trace: Traced) -> Any:
    """An elicitation callback that says yes, after steering nginx's round robin so that the answer goes to
    the replica that did not ask: with two replicas and one request at a time nginx alternates, so once a
    request has landed where the ask did, the next one (the answer) lands on the other."""

    async def elicitation(_ctx: Any, _params: Any) -> ElicitResult:
        asked_on = trace.calls("delete_rule")[-1].upstream
        async with httpx2.AsyncClient() as http:
            for _ in range(4):
                probe = await http.get(front.url.replace("/mcp", "/healthz"))
                if probe.headers.get("x-upstream") == asked_on:
                    break
        return ElicitResult(action="accept", content={"confirm": True})

    return elicitation


# --- one session, two replicas -----------------------------------------------------------------------------

READS: list[tuple[str, dict[str, Any]]] = [
    ("list_workspaces", {}),
    ("list_events", {"limit": 5}),
    ("list_rules", {}),
    ("get_workspace", {}),
    ("list_connections", {"limit": 5}),
]


@pytest.mark.anyio
async def test_200_calls_alternate_with_progress_and_a_confirmation_across_replicas(
    team: Team, sandbox: SandboxInfo, sandbox_api: SandboxApi, sandbox_dir: Path
) -> None:
    _, rule_id = sandbox_api.webhook_rule("https://hooks.example.com/nginx", "nginx.confirm", name="nginx confirm")
    events = [{"event": "nginx.bulk", "payload": {"uid": f"bulk-{i}"}} for i in range(5_000)]
    progress: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        progress.append(done)

    trace = Traced()
    confirm = answer_yes_from_the_other_replica(team.front, trace)
    async with traced_session(team.front.url, caller_headers(sandbox), trace, elicitation_callback=confirm) as client:
        for n in range(198):
            name, arguments = READS[n % len(READS)]
            ok(await client.call_tool(name, arguments))
        emitted = ok(await client.call_tool("emit_events", {"events": events}, progress_callback=on_progress))
        deleted = ok(await client.call_tool("delete_rule", {"rule_id": rule_id}))

    # Every call answered; the bulk call streamed its progress and stored each event once.
    assert emitted["accepted"] == emitted["total"] == 5_000
    assert len(progress) >= 10 and progress == sorted(progress) and progress[-1] == 5_000
    assert sorted(stored_events(sandbox_dir, "nginx.bulk")) == sorted(e["payload"]["uid"] for e in events)
    assert deleted["deleted"] and sandbox_api.get(f"/rules/{rule_id}").status_code == 404
    # Round robin: both replicas served about half of the calls, by their own logs and by nginx's.
    first, second = team.replicas.values()
    assert len(tool_calls(first)) >= 80 and len(tool_calls(second)) >= 80
    served_calls = [s for s in trace.served if s.method == "tools/call"]
    assert len(served_calls) >= 201  # 198 reads, emit_events, the ask and the answer
    assert {s.upstream for s in served_calls} == set(team.replicas)
    # The confirmation was asked by one replica and answered on the other: the state key is shared.
    ask, answer = trace.calls("delete_rule")
    assert ask.upstream != answer.upstream
    assert team.replica_at(ask.upstream).lines_for(ask.request_id or "")[0]["tool"] == "delete_rule"
    assert team.replica_at(answer.upstream).lines_for(answer.request_id or "")[0]["tool"] == "delete_rule"
    (nginx_line,) = team.front.lines_for(answer.request_id or "")
    assert nginx_line["upstream"] == answer.upstream and nginx_line["mcp_name"] == "delete_rule"


# --- two tenants, call for call --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_tenants_interleaved_never_see_each_other(
    team: Team, sandbox: SandboxInfo, tenant_b: SandboxInfo
) -> None:
    traces = {"a": Traced(), "b": Traced()}
    headers = {"a": caller_headers(sandbox), "b": caller_headers(tenant_b)}
    made: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    seen: dict[str, dict[str, set[str]]] = {"a": {}, "b": {}}
    async with (
        traced_session(team.front.url, headers["a"], traces["a"]) as a,
        traced_session(team.front.url, headers["b"], traces["b"]) as b,
    ):
        clients = {"a": a, "b": b}

        async def each(step: Any) -> None:
            """One step for A, then the same for B: the tenants' requests interleave call for call."""
            for tenant in ("a", "b"):
                await step(tenant, clients[tenant])

        async def create(tenant: str, client: Client) -> None:
            workspace = ok(await client.call_tool("create_workspace", {"name": f"Tenant {tenant} space"}))
            hook = {
                "type": "webhook",
                "name": f"tenant-{tenant}-hook",
                "metadata": {"url": "https://hooks.example.com"},
            }
            connection = ok(await client.call_tool("create_connection", hook))
            event = ok(await client.call_tool("emit_event", {"event": "tenant.ping", "payload": {"uid": tenant}}))
            made[tenant] = {"workspace": workspace["id"], "connection": connection["id"], "event": event["id"]}

        async def look(tenant: str, client: Client) -> None:
            workspaces = ok(await client.call_tool("list_workspaces", {}))["workspaces"]
            events = ok(await client.call_tool("list_events", {}))["events"]
            connections = ok(await client.call_tool("list_connections", {}))["connections"]
            seen[tenant] = {
                "workspace": {w["id"] for w in workspaces},
                "event": {e["id"] for e in events},
                "connection": {c["id"] for c in connections},
            }

        async def reach_across(tenant: str, client: Client) -> None:
            other = made["b" if tenant == "a" else "a"]
            for tool, argument in (("get_event", "event"), ("get_connection", "connection")):
                text = refused(await client.call_tool(tool, {f"{argument}_id": other[argument]}))
                assert "404" in text or "not found" in text.lower(), text
            text = refused(await client.call_tool("get_workspace", {"workspace_id": other["workspace"]}))
            assert "404" in text or "not found" in text.lower(), text

        await each(create)
        await each(look)
        await each(reach_across)

    for tenant, other in (("a", "b"), ("b", "a")):
        for kind in ("workspace", "event", "connection"):
            assert made[tenant][kind] in seen[tenant][kind], (tenant, kind)
            assert made[other][kind] not in seen[tenant][kind], (tenant, kind)
        # Nothing of one organisation's appears in the other's lists at all.
        assert not seen[tenant]["workspace"] & seen[other]["workspace"]
        assert not seen[tenant]["connection"] & seen[other]["connection"]
        # And each tenant was served by both replicas.
        assert {s.upstream for s in traces[tenant].served if s.method == "tools/call"} == set(team.replicas)


@pytest.mark.anyio
async def test_a_confirmation_minted_for_one_tenant_is_refused_with_the_others_keys(
    team: Team, sandbox: SandboxInfo, sandbox_api: SandboxApi, tenant_b: SandboxInfo
) -> None:
    """The input-required flow by hand: A's delete asks; B sends A's sealed state back with a yes."""
    _, rule_id = sandbox_api.webhook_rule("https://hooks.example.com/a", "tenant.a.rule", name="tenant a rule")
    trace, replays = Traced(), Traced()
    yes = ElicitResult(action="accept", content={"confirm": True})
    with_elicitation = {"elicitation_callback": answer_yes_from_the_other_replica(team.front, trace)}
    async with (
        traced_session(team.front.url, caller_headers(sandbox), trace, **with_elicitation) as a,
        traced_session(team.front.url, caller_headers(tenant_b), replays, **with_elicitation) as b,
    ):
        asked = await a.session.call_tool("delete_rule", {"rule_id": rule_id}, allow_input_required=True)
        assert isinstance(asked, InputRequiredResult) and asked.request_state and asked.input_requests
        answers = {key: yes for key in asked.input_requests}
        for attempt in range(2):  # one replay per replica (round robin): neither may accept it
            with pytest.raises(MCPError, match="Invalid or expired requestState"):
                await b.session.call_tool(
                    "delete_rule",
                    {"rule_id": rule_id},
                    input_responses=answers,
                    request_state=asked.request_state,
                    allow_input_required=True,
                )
            assert sandbox_api.get(f"/rules/{rule_id}").status_code == 200, attempt
        # The same state, sent back by the tenant it was minted for, is accepted: it was a valid one.
        done = await a.session.call_tool(
            "delete_rule",
            {"rule_id": rule_id},
            input_responses=answers,
            request_state=asked.request_state,
            allow_input_required=True,
        )
    assert not isinstance(done, InputRequiredResult) and ok(done)["deleted"]
    assert sandbox_api.get(f"/rules/{rule_id}").status_code == 404
    assert {s.upstream for s in replays.calls("delete_rule")} == set(team.replicas)


# --- kill -9 one replica mid-run ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_replica_killed_mid_run_loses_no_read_and_repeats_no_write(
    sandbox: SandboxInfo, sandbox_dir: Path, tmp_path: Path
) -> None:
    """A big emit_events runs on one replica; at its first progress notification that replica is kill -9ed,
    while reads run beside it on the same session. Every read succeeds (nginx retries them on the other
    replica); the write fails at the client, and nothing of it was sent again anywhere."""
    team = start_team(sandbox.api_url, tmp_path)  # its own: this test leaves one replica dead
    try:
        await kill_mid_write(team, sandbox, sandbox_dir)
    finally:
        team.stop()


async def kill_mid_write(team: Team, sandbox: SandboxInfo, sandbox_dir: Path) -> None:
    events = [{"event": "nginx.kill", "payload": {"uid": f"kill-{i}"}} for i in range(20_000)]
    trace = Traced()
    killed: list[Served] = []
    reads_after_kill: list[bool] = []
    read_failures: list[str] = []
    write_outcome: list[str] = []

    async def kill_where_it_runs(_done: float, _total: float | None, _message: str | None) -> None:
        if not killed:  # the first chunk is stored, the rest is not sent yet
            (write,) = trace.calls("emit_events")  # its headers came back through nginx, naming the replica
            team.replica_at(write.upstream).proc.send_signal(signal.SIGKILL)
            killed.append(write)

    async def write(client: Client) -> None:
        try:
            with anyio.fail_after(60):
                result = await client.call_tool("emit_events", {"events": events}, progress_callback=kill_where_it_runs)
            write_outcome.append(refused(result))
        except MCPError as exc:
            write_outcome.append(str(exc))

    async def read(client: Client, reader: int) -> None:
        for n in range(400):  # bounded: stops once enough reads came after the kill
            name, arguments = READS[(n + reader) % len(READS)]
            after = bool(killed)
            try:
                result = await client.call_tool(name, arguments)
            except MCPError as exc:
                read_failures.append(f"{name}: {exc}")
                continue
            if result.is_error:
                read_failures.append(f"{name}: {result.content[0].text}")
            if after:
                reads_after_kill.append(True)
            if len(reads_after_kill) >= 40:
                return

    async with traced_session(team.front.url, caller_headers(sandbox), trace) as client:
        await client.list_tools()
        async with anyio.create_task_group() as group:
            group.start_soon(write, client)
            for reader in range(2):
                group.start_soon(read, client, reader)
        # The session carries on: a new write lands on the survivor (nginx skips the dead one).
        after = ok(await client.call_tool("emit_event", {"event": "nginx.after", "payload": {"uid": "after"}}))

    assert killed, "the bulk call finished before its first progress notification"
    (write_call,) = killed
    survivor = next(r for address, r in team.replicas.items() if address != write_call.upstream)
    assert not read_failures, read_failures
    assert len(reads_after_kill) >= 40
    # The write in flight is reported to the client as failed: it cannot know how much was stored.
    assert write_outcome and write_outcome[0], write_outcome
    # Nothing of it was stored twice, and it stopped where the replica died.
    uids = stored_events(sandbox_dir, "nginx.kill")
    assert len(uids) == len(set(uids)) and 0 < len(uids) < len(events)
    # nginx passed that POST to exactly one replica, and the survivor never saw it.
    (nginx_line,) = team.front.lines_for(write_call.request_id or "")
    assert nginx_line["upstream"] == write_call.upstream and "," not in nginx_line["upstream"]
    assert not tool_calls(survivor, "emit_events")
    assert write_call.request_id not in {line["request_id"] for line in survivor.log_lines()}
    assert after["id"] and stored_events(sandbox_dir, "nginx.after") == ["after"]
