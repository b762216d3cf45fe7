"""Incidents end to end: triage_failures and retry_failed over real HTTP on the sandbox, counted at a real
webhook receiver; wait_seconds on emit_event, get_event and retry_rule_event; list_events since/until.

Failures are made fast with a sandbox that makes one attempt per delivery. What the sandbox never does on
purpose (429 from the API, a retry answered 425 on cue, a slow retry endpoint) comes from a forwarding
proxy in front of it, on 127.0.0.1 too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp_types import ElicitResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.server.app import build_server
from meshes_mcp.server.incident.groups import cause_signature, group_key
from tests.support import ok, refused, settings_for

SEND = {"action": "send_webhook"}


@pytest.fixture(scope="module")
def one_attempt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One attempt per delivery: a failing destination fails its deliveries at once."""
    with EmbeddedSandbox(tmp_path_factory.mktemp("incident"), retry_base=0.05, max_attempts=1) as info:
        yield info


class User:
    """An elicitation callback that records each question and answers as told."""

    def __init__(self, action: str = "accept") -> None:
        self.action = action
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.questions.append(params.message)
        return ElicitResult(action=self.action, content={"confirm": True} if self.action == "accept" else None)


async def new_workspace(info: Any, name: str) -> str:
    async with MeshesClient.from_settings(settings_for(info)) as api:
        return (await api.create_workspace(m.CreateWorkspaceRequest(name=name))).id


async def hook_rule(client: Client, name: str, url: str, event: str) -> tuple[str, str]:
    hook = ok(await client.call_tool("create_connection", {"type": "webhook", "name": name, "metadata": {"url": url}}))
    rule = ok(await client.call_tool("create_rule", {"connection": hook["id"], "event": event, "metadata": SEND}))
    return hook["id"], rule["id"]


async def emit(client: Client, event: str, count: int, start: int = 0) -> None:
    batch = [{"event": event, "payload": {"n": n, "email": f"u{n}@example.com"}} for n in range(start, start + count)]
    result = ok(await client.call_tool("emit_events", {"events": batch}))
    assert result["accepted"] == count, result


async def settle(info: Any, workspace: str, timeout: float = 30.0) -> None:
    """Until no event of the workspace is pending or processing."""
    async with MeshesClient.from_settings(settings_for(info)) as api:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = 0
            for status in ("pending", "processing"):
                page = await api.list_workspace_events(workspace, m.WorkspaceEventQuery(status=status, limit=1))
                busy += len(page.records)
            if not busy:
                return
            await anyio.sleep(0.05)
    raise AssertionError("deliveries did not settle")


def args_of(call: str) -> dict[str, Any]:
    """`retry_failed group=ab12cd34 since=... wait_seconds=60` → its arguments, typed as the tool takes them."""
    args: dict[str, Any] = {}
    for part in call.split()[1:]:
        key, _, value = part.partition("=")
        args[key] = int(value) if value.isdigit() and key in ("max_events", "max_retries", "wait_seconds") else value
    return args


# --- grouping ------------------------------------------------------------------------------------


def test_cause_signature_ignores_ids_numbers_times_and_addresses_but_keeps_the_http_status():
    first = (
        'list "9" of event 3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10 for jane@example.com failed at '
        "2026-11-24T09:00:00.123Z after 3 tries (req 9f86d081884c7d65); 127.0.0.1:40101 answered HTTP 500"
    )
    second = (
        'list "12" of event 0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9 for bob.smith@corp.io failed at '
        "2026-11-25T13:45:10Z after 17 tries (req 00aa11bb22cc33dd); 127.0.0.1:51515 answered HTTP 500"
    )
    assert cause_signature(first) == cause_signature(second)
    assert cause_signature(first) != cause_signature(first.replace("HTTP 500", "HTTP 503"))
    assert cause_signature(None) == cause_signature("") == ""
    weird = "\x00\ud800" + "x" * 100_000  # control characters, a lone surrogate, a huge message
    assert len(cause_signature(weird)) <= 400
    rule, conn = "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10", "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    key = group_key(rule, conn, "rejected_server_error", cause_signature(first))
    assert key == group_key(rule, conn, "rejected_server_error", cause_signature(second))
    assert len(key) == 8 and key != group_key(rule, conn, "timeout", cause_signature(first))
    assert group_key(rule, conn, "x", cause_signature(weird))  # hashes whatever the text holds


@pytest.mark.anyio
async def test_two_thousand_failures_are_one_group_and_the_scan_is_bounded(one_attempt, webhook_receiver):
    user = User("decline")

    workspace = await new_workspace(one_attempt, "Incident Test")
    settings = settings_for(one_attempt, workspace_id=workspace)
    async with Client(build_server(settings), elicitation_callback=user) as client:
        # Nothing listens on port 9: each delivery fails at once, with its own ids, times and payload.
        await hook_rule(client, "Orders hook", "http://127.0.0.1:9/orders", "order.placed")
        await hook_rule(client, "Signups hook", f"{webhook_receiver.url}/status/401", "user.signup")
        before = datetime.now(UTC) - timedelta(seconds=1)
        await emit(client, "order.placed", 2000)
        await emit(client, "user.signup", 30)
        await settle(one_attempt, workspace)
        out: dict[str, Any] = {"default": ok(await client.call_tool("triage_failures", {}))}
        out["triage"] = ok(await client.call_tool("triage_failures", {"max_events": 5000}))
        text = (await client.call_tool("triage_failures", {"max_events": 5000})).content[0].text
        out["bytes"] = len(text.encode())
        out["cut"] = ok(await client.call_tool("triage_failures", {"max_events": 500}))
        rest = args_of(out["cut"]["next"]) | {"max_events": 20000}
        out["rest"] = ok(await client.call_tool("triage_failures", rest))
        out["future"] = ok(await client.call_tool("triage_failures", {"since": "2999-01-01T00:00:00Z"}))
        out["past"] = ok(await client.call_tool("triage_failures", {"until": before.isoformat()}))
        out["last_hour"] = ok(await client.call_tool("triage_failures", {"since": "1h", "event": "user.signup"}))
        big = next(g for g in out["triage"]["groups"] if g["event"] == "order.placed")
        out["dry"] = ok(await client.call_tool("retry_failed", args_of(big["then"]) | {"dry_run": True}))
        out["declined"] = refused(await client.call_tool("retry_failed", args_of(big["then"])))
        out["unchanged"] = ok(await client.call_tool("triage_failures", {"event": "order.placed"}))

    triage = out["triage"]
    assert triage["count"] == 2 and triage["failing"] == 2030 and triage["events_scanned"] == 2030
    # 5,000 failing events are scanned by default: the 2,030 are counted whole, nothing is left to continue.
    assert out["default"]["events_scanned"] == 2030 and out["default"]["window"]["complete"] is True
    assert "capped" not in out["default"] and not out["default"]["next"].startswith("triage_failures")
    assert triage["window"] == {"from": "start of history", "to": "now", "complete": True}
    big, auth = triage["groups"]  # largest first
    assert big["failed"] == 2000 and big["retrying"] == 0 and big["outcome_code"] == "network_error"
    assert big["connection"]["name"] == "Orders hook" and big["connection"]["active"] is True
    assert big["cause"] == "the receiver could not be reached (network error)"  # our words, not the error text
    assert len(big["samples"]) == 3 and big["first_seen"] <= big["last_seen"]
    assert "could not be reached" in big["fix"] and big["calls"][0].startswith("get_connection connection_id=")
    assert big["then"].startswith(f"retry_failed group={big['key']} event=order.placed")
    assert "wait_seconds=60" in big["then"]
    assert auth["failed"] == 30 and auth["outcome_code"] == "auth_failed" and auth["http_status"] == 401
    assert out["bytes"] < 3000  # grows with groups, not with the 2,030 failures

    cut, rest = out["cut"], out["rest"]
    assert cut["events_scanned"] <= 500 and cut["window"]["complete"] is False and "until=" in cut["next"]
    assert "count here is a lower bound" in cut["capped"] and "max_events=500" in cut["capped"]
    assert cut["events_scanned"] + rest["events_scanned"] == 2030 and rest["window"]["complete"] is True
    assert out["future"]["count"] == 0 and out["future"]["summary"].startswith("No failing deliveries")
    assert out["past"]["count"] == 0 and out["past"]["events_scanned"] == 0
    assert out["last_hour"]["count"] == 1 and out["last_hour"]["failing"] == 30

    dry = out["dry"]
    # A group key with no max_retries takes the whole group (up to 10,000): nothing is cut.
    assert dry["dry_run"] is True and dry["would_retry"] == 2000 and dry["window"]["complete"] is True
    assert "capped" not in dry and "until=" not in dry["next"]
    assert "Not retried" in out["declined"] and len(user.questions) == 1
    assert f"{dry['would_retry']:,} failed deliveries" in user.questions[0] and '"Orders hook"' in user.questions[0]
    assert "(cause: the receiver could not be reached (network error))" in user.questions[0]  # our words
    assert out["unchanged"]["groups"][0]["failed"] == 2000  # neither the dry run nor the refusal sent anything


@pytest.mark.anyio
async def test_a_retry_run_retries_each_delivery_exactly_once_counted_at_the_receiver(one_attempt, webhook_receiver):
    rx = webhook_receiver
    user = User("accept")

    workspace = await new_workspace(one_attempt, "Retry Once")
    settings = settings_for(one_attempt, workspace_id=workspace)
    async with Client(build_server(settings), elicitation_callback=user) as client:
        hook, _ = await hook_rule(client, "Billing hook", f"{rx.url}/status/500", "invoice.paid")
        await emit(client, "invoice.paid", 150)
        await settle(one_attempt, workspace)
        (group,) = ok(await client.call_tool("triage_failures", {}))["groups"]
        ok(await client.call_tool("update_connection", {"connection_id": hook, "name": "Billing hook",
                                                        "metadata": {"url": f"{rx.url}/fixed"}}))  # fmt: skip
        retry = ok(await client.call_tool("retry_failed", args_of(group["then"])))
        again = ok(await client.call_tool("retry_failed", args_of(group["then"])))
        after = ok(await client.call_tool("triage_failures", {}))

    assert group["failed"] == 150 and group["http_status"] == 500 and "fix the receiver" in group["fix"]
    assert "150 failed deliveries" in user.questions[0] and '"Billing hook"' in user.questions[0]
    assert retry["matched"] == 150 and retry["retried"] == 150 and retry["already_due"] == 0
    assert retry["outcome"]["delivered"] == 150 and retry["outcome"]["settled"] is True
    assert retry["outcome"]["still_failing"] == 0 and "failed_to_retry" not in retry and "unknown" not in retry
    assert again["matched"] == 0 and again["retried"] == 0  # nothing failing is left to send
    assert after["count"] == 0
    # Counted at the receiver: each delivery failed once, was retried exactly once, and arrived.
    failed = Counter(r.delivery_id for r in rx.receipts if r.path == "/status/500")
    fixed = Counter(r.delivery_id for r in rx.receipts if r.path == "/fixed")
    assert len(fixed) == 150 and set(fixed.values()) == {1} and set(fixed) <= set(failed)


@pytest.mark.anyio
async def test_a_revoked_api_key_is_one_group_fixed_with_update_connection_then_retried(one_attempt):
    workspace = await new_workspace(one_attempt, "Revoked Key")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace))) as client:
        good = {"data_center": "us6", "api_key": "good-key-123456"}
        chimp = ok(await client.call_tool("create_connection", {"type": "mailchimp", "name": "Chimp",
                                                                "metadata": good}))  # fmt: skip
        lists = ok(await client.call_tool("get_connection_actions", {"connection_id": chimp["id"]}))["data"]
        metadata = {"action": "add_to_list", "id": lists["lists"][0]["id"]}
        ok(await client.call_tool("create_rule", {"connection": chimp["id"], "event": "key.test",
                                                  "metadata": metadata}))  # fmt: skip
        revoked = {"data_center": "us6", "api_key": "invalid-key-123456"}
        ok(await client.call_tool("update_connection", {"connection_id": chimp["id"], "name": "Chimp",
                                                        "metadata": revoked}))  # fmt: skip
        for n in range(6):  # one by one: the first is refused, the rest find the connection inactive
            await emit(client, "key.test", 1, start=n)
        await settle(one_attempt, workspace)
        triage = ok(await client.call_tool("triage_failures", {}))
        ok(await client.call_tool("update_connection", {"connection_id": chimp["id"], "name": "Chimp",
                                                        "metadata": good}))  # fmt: skip
        retry = ok(await client.call_tool("retry_failed", args_of(triage["groups"][0]["then"])))

    (group,) = triage["groups"]
    assert group["failed"] == 6 and group["outcome_code"] == "auth_failed"
    assert group["connection"]["state"] == "inactive (authentication_invalid)"
    assert group["calls"] == [f"update_connection connection_id={chimp['id']} metadata=<all fields, valid credentials>"]
    assert "invalid-key" not in str(triage)  # the credential never shows
    assert retry["retried"] == 6 and retry["outcome"]["delivered"] == 6


@pytest.mark.anyio
async def test_credentials_quoted_in_causes_never_show(one_attempt):
    password, key = "s3cretpassw0rd", "abcdef123456"

    workspace = await new_workspace(one_attempt, "Leaky Causes")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace))) as client:
        url = f"http://bob:{password}@127.0.0.1:9/x?api_key={key}"
        await hook_rule(client, "Leaky hook", url, "leak.test")
        await emit(client, "leak.test", 2)
        await settle(one_attempt, workspace)
        triage = await client.call_tool("triage_failures", {})
        sample = ok(triage)["groups"][0]["samples"][0]
        texts = [triage.content[0].text]
        for tool, arguments in (("diagnose_event", {"event_id": sample}), ("retry_failed", {"dry_run": True})):
            texts.append((await client.call_tool(tool, arguments)).content[0].text)

    assert all(password not in text and key not in text for text in texts), texts
    assert "could not be reached" in texts[0]  # the group's cause is ours; the diagnosis quotes the failure as data
    assert '"untrusted_reason":"could not reach 127.0.0.1:9' in texts[1]


# --- 425, 429, skipped, cancellation: a forwarding proxy in front of the sandbox ----------------


class RetryGate:
    """Forwards every request to the sandbox, except that retries can be delayed, answered 429 (with
    Retry-After) the first `rate_limited` times, or answered 425 for chosen events; with `hold_attempts`,
    reads of a delivery's attempts wait until `release` is set (`attempts_asked` says one came)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/api/v1")
        self.rate_limited = 0
        self.too_early: set[str] = set()
        self.delay = 0.0
        self.retries: list[str] = []  # event ids, in the order retries arrived
        self.hold_attempts = False
        self.attempts_asked = threading.Event()
        self.release = threading.Event()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> RetryGate:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "proxy did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        if self.hold_attempts and request.method == "GET" and path.endswith("/attempts"):
            self.attempts_asked.set()
            await asyncio.to_thread(self.release.wait, 30)
        if request.method == "POST" and path.endswith("/retry"):
            event_id = path.split("/")[4]
            self.retries.append(event_id)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.rate_limited > 0:
                self.rate_limited -= 1
                body = {"message": "Too many requests", "error": {"name": "RateLimited", "message": "slow down"}}
                return JSONResponse(body, status_code=429, headers={"Retry-After": "0.2"})
            if event_id in self.too_early:
                body = {"message": "Too early", "error": {"name": "TooEarly", "message": "an attempt is due now"}}
                return JSONResponse(body, status_code=425)
        async with httpx2.AsyncClient(base_url=self.upstream, timeout=30) as upstream:
            answer = await upstream.request(
                request.method, path, params=request.query_params, content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")},
            )  # fmt: skip
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.anyio
async def test_retry_counts_already_due_honours_429_skips_completed_and_waits_honestly(one_attempt, webhook_receiver):
    rx = webhook_receiver

    workspace = await new_workspace(one_attempt, "Mixed Outcomes")
    settings = settings_for(one_attempt, workspace_id=workspace)
    async with Client(build_server(settings)) as client:
        # Each delivery's first request fails, every later one succeeds; a second rule always delivers.
        _, rule = await hook_rule(client, "Flaky hook", f"{rx.url}/flaky/1/500", "mix.test")
        await hook_rule(client, "Fine hook", f"{rx.url}/fine", "mix.test")
        await emit(client, "mix.test", 12)
        await settle(one_attempt, workspace)
        events = ok(await client.call_tool("list_events", {"event": "mix.test", "limit": 20}))["events"]
        done = []
        for event in events[:2]:  # two are retried by hand first: they complete
            done.append(ok(await client.call_tool("retry_rule_event", {"event_id": event["id"], "rule_id": rule,
                                                                        "wait_seconds": 10})))  # fmt: skip
    with RetryGate(one_attempt.api_url) as gate:
        gate.rate_limited = 2
        gate.too_early = {events[2]["id"], events[3]["id"]}
        async with Client(build_server(settings_for(one_attempt, workspace_id=workspace, api_url=gate.url))) as c:
            result = ok(await c.call_tool("retry_failed", {"event": "mix.test", "wait_seconds": 3}))
        retries = list(gate.retries)

    assert all(d["status"] == "completed" and d["waited"].startswith("settled after") for d in done)
    assert "next" not in done[0] and done[0]["rule"] == rule
    assert result["matched"] == 10 and result["retried"] == 8 and result["already_due"] == 2
    assert result["skipped"] == 10  # the other rule's deliveries of the failing events completed: never retried
    assert len(retries) == 12 and Counter(retries).most_common(1)[0][1] <= 2  # two 429s, each tried again once
    assert {events[0]["id"], events[1]["id"]}.isdisjoint(retries)
    outcome = result["outcome"]
    # The 425s were staged by the proxy: no attempt ran for them, so they are reported as still failing.
    assert outcome["delivered"] == 8 and outcome["still_failing"] == 2 and outcome["settled"] is True
    assert "HTTP 500" in outcome["untrusted_top_cause"] and outcome["top_cause_count"] == 2


@pytest.mark.anyio
async def test_waiting_after_a_retry_says_so_when_time_is_up(one_attempt, webhook_receiver):
    workspace = await new_workspace(one_attempt, "Slow Recovery")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace))) as client:
        hook, _ = await hook_rule(client, "Slow hook", f"{webhook_receiver.url}/status/503", "slow.fix")
        await emit(client, "slow.fix", 3)
        await settle(one_attempt, workspace)
        ok(
            await client.call_tool(
                "update_connection",
                {"connection_id": hook, "name": "Slow hook", "metadata": {"url": f"{webhook_receiver.url}/slow/3"}},
            )
        )
        result = ok(await client.call_tool("retry_failed", {"event": "slow.fix", "wait_seconds": 1}))

    assert result["retried"] == 3
    outcome = result["outcome"]
    assert outcome["settled"] is False and outcome["in_progress"] == 3 and outcome["delivered"] == 0
    assert 1 <= outcome["waited_s"] < 3


@pytest.mark.anyio
async def test_cancelling_a_retry_run_stops_sending_and_reports_the_unsent(one_attempt, webhook_receiver):
    logs: list[str] = []

    async def on_log(params: Any) -> None:
        logs.append(str(params.data))

    workspace = await new_workspace(one_attempt, "Cancel Run")
    settings = settings_for(one_attempt, workspace_id=workspace)
    async with Client(build_server(settings)) as client:
        await hook_rule(client, "Down hook", f"{webhook_receiver.url}/status/503", "cancel.test")
        await emit(client, "cancel.test", 200)
        await settle(one_attempt, workspace)
    with RetryGate(one_attempt.api_url) as gate:
        gate.delay = 0.05
        proxied = settings_for(one_attempt, workspace_id=workspace, api_url=gate.url)
        async with Client(build_server(proxied), logging_callback=on_log, log_level="warning") as client:
            async with anyio.create_task_group() as group:

                async def progress(done: float, total: float | None, message: str | None) -> None:
                    if "retries sent" in (message or "") and done >= 16:
                        group.cancel_scope.cancel()

                async def call() -> None:
                    await client.call_tool("retry_failed", {"max_retries": 200}, progress_callback=progress)

                group.start_soon(call)
            at_cancel = len(gate.retries)
            await anyio.sleep(0.5)
            after = len(gate.retries)

    (report,) = [line for line in logs if "canceled" in line]
    answered = int(report.split(": ")[1].split(" of ")[0])
    in_flight = int(report.split("), ")[1].split(" in flight")[0])
    unsent = int(report.rsplit(", ", 1)[1].split(" not sent")[0])
    assert answered >= 16 and unsent > 0 and answered + in_flight + unsent == 200
    # Nothing was sent after the cancel; a request cut off in flight may or may not have arrived, and says so.
    assert after == at_cancel and answered <= at_cancel <= answered + in_flight and in_flight <= 8


@pytest.mark.anyio
async def test_a_declined_confirmation_sends_nothing(one_attempt, webhook_receiver):
    user = User("decline")

    workspace = await new_workspace(one_attempt, "Declined")
    async with Client(build_server(settings_for(one_attempt, workspace_id=workspace)),
                      elicitation_callback=user) as client:  # fmt: skip
        await hook_rule(client, "Declined hook", f"{webhook_receiver.url}/status/502", "declined.test")
        await emit(client, "declined.test", 11)
        await settle(one_attempt, workspace)
        sent_before = len(webhook_receiver.receipts)
        result = await client.call_tool("retry_failed", {"event": "declined.test"})
        small = ok(await client.call_tool("retry_failed", {"event": "declined.test", "max_retries": 10}))
        sent = len(webhook_receiver.receipts) - sent_before

    assert "Not retried" in refused(result) and len(user.questions) == 1 and "11 failed deliveries" in user.questions[0]
    # Ten or fewer: not asked. The scan stops between two timestamps, so it may take fewer and say how to go on.
    assert 0 < small["retried"] == small["matched"] <= 10
    assert small["matched"] == 10 or "until=" in small["next"]
    assert sent <= 10


# --- waiting for outcomes, list_events windows, bad input ----------------------------------------


@pytest.mark.anyio
async def test_wait_seconds_returns_when_settled_and_says_so_when_time_is_up(sandbox, webhook_receiver):
    workspace = await new_workspace(sandbox, "Waiting")
    async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
        await hook_rule(client, "Quick hook", f"{webhook_receiver.url}/ok", "quick.test")
        await hook_rule(client, "Slow hook", f"{webhook_receiver.url}/slow/2", "slow.test")
        started = time.monotonic()
        quick = ok(await client.call_tool("emit_event", {"event": "quick.test", "payload": {"n": 1},
                                                        "wait_seconds": 30}))  # fmt: skip
        quick_took = time.monotonic() - started
        slow = ok(await client.call_tool("emit_event", {"event": "slow.test", "payload": {"n": 2},
                                                       "wait_seconds": 1}))  # fmt: skip
        later = ok(await client.call_tool("get_event", {"event_id": slow["id"], "wait_seconds": 30}))

    assert quick["waited"].startswith("settled after") and quick["status"] == "completed"
    assert quick["rule_events"][0]["status"] == "completed" and quick_took < 30
    assert slow["waited"].startswith("time up after 1") and "1 deliveries still in progress" in slow["waited"]
    assert later["waited"].startswith("settled after") and later["status"] == "completed"


@pytest.mark.anyio
async def test_list_events_since_and_until(sandbox):
    workspace = await new_workspace(sandbox, "Windows")
    async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
        for n in range(3):
            ok(await client.call_tool("emit_event", {"event": "window.test", "payload": {"n": n}}))
        everything = ok(await client.call_tool("list_events", {"since": "1h", "limit": 2}))
        rest = ok(await client.call_tool("list_events", args_of(everything["next"])))
        future = ok(await client.call_tool("list_events", {"since": "2999-01-01T00:00:00Z"}))
        past = ok(await client.call_tool("list_events", {"until": "2001-01-01T00:00:00"}))

    assert everything["count"] == 2 and "since=" in everything["next"] and rest["count"] == 1
    assert future["count"] == 0 and "next" not in future  # past `since` on the first page: stopped there
    assert past["count"] == 0 and "next" not in past


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("triage_failures", {"since": "yesterday"}, "since"),
        ("triage_failures", {"since": "2026-13-45T00:00:00Z"}, "since"),
        ("triage_failures", {"since": "1h", "until": "2h"}, "since"),
        ("triage_failures", {"since": "99999999d"}, "since"),
        ("triage_failures", {"max_events": 0}, "max_events"),
        ("triage_failures", {"max_events": 20_001}, "max_events"),
        ("triage_failures", {"connection": "\ud800"}, "connection"),
        ("retry_failed", {"group": "../../x"}, "group"),
        ("retry_failed", {"outcome_code": "exploded"}, "outcome_code"),
        ("retry_failed", {"max_retries": 10_001}, "max_retries"),
        ("retry_failed", {"wait_seconds": 121}, "wait_seconds"),
        ("retry_failed", {"event": " \t"}, "event"),
        ("emit_event", {"event": "x", "payload": {}, "wait_seconds": 61}, "wait_seconds"),
        ("get_event", {"event_id": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10", "wait_seconds": -1}, "wait_seconds"),
        ("list_events", {"until": "\x00"}, "until"),
    ],
)
@pytest.mark.anyio
async def test_bad_input_is_refused_naming_the_field_with_an_example(sandbox, tool, arguments, field):
    async with Client(build_server(settings_for(sandbox))) as client:
        text = refused(await client.call_tool(tool, arguments))

    assert field in text and "e.g." in text and "nothing was sent" in text.lower()
