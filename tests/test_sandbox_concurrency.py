"""The same state change of a rule event sent through two sandbox processes on one data directory at once.

Every move of a rule event (retry, cancel, an attempt's outcome, recovery after a crash) is a guarded
compare-and-set inside one write transaction, so whichever process a request reaches, a delivery is
never sent twice at once and each request gets one clear answer. Counted at a real receiver.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from meshes_mcp.sandbox.receiver import WebhookReceiver
from meshes_mcp.server.app import build_server
from tests.conftest import SandboxApi
from tests.support import ok, refused, settings_for
from tests.test_sandbox_restart import start, wait
from tests.test_sandbox_two_processes import two_sandboxes

EVENTS = 12


def emit(api: SandboxApi, event: str, count: int) -> list[str]:
    items = [{"workspace": api.info.workspace_id, "event": event, "payload": {"n": n}} for n in range(count)]
    response = api.post("/events/bulk", json=items)
    assert response.status_code == 201, response.text
    return [record["id"] for record in response.json()["records"]]


def at_once(first: Callable[[], httpx2.Response], second: Callable[[], httpx2.Response]) -> list[int]:
    """Send two requests released by one barrier; their statuses, sorted."""
    barrier = threading.Barrier(2)

    def go(send: Callable[[], httpx2.Response]) -> int:
        barrier.wait()
        return send().status_code

    with ThreadPoolExecutor(2) as pool:
        return sorted(pool.map(go, (first, second)))


def statuses(api: SandboxApi, event_ids: list[str]) -> list[str]:
    return [api.get(f"/events/{e}").json()["rule_events"][0]["status"] for e in event_ids]


def no_tracebacks(tmp_path: Path) -> None:
    log = (tmp_path / "sandbox.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_one_retry_sent_through_two_sandboxes_at_once_is_accepted_once_and_delivered_once(tmp_path):
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path, 2.0, "--max-attempts", "1") as (a, b):
        # Each attempt fails after 1 s: a retry accepted by one process is still in flight when the other's
        # arrives.
        _, rule_id = a.webhook_rule(f"{receiver.url}/slow/1/500", "hammer")
        events = emit(a, "hammer", EVENTS)
        wait(lambda: statuses(a, events) == ["failed"] * EVENTS)

        answers = [
            at_once(
                lambda e=event_id: a.post(f"/events/{e}/rules/{rule_id}/retry"),
                lambda e=event_id: b.post(f"/events/{e}/rules/{rule_id}/retry"),
            )
            for event_id in events
        ]
        assert answers == [[200, 425]] * EVENTS  # one accepted, the other told an attempt is under way
        wait(lambda: statuses(a, events) == ["failed"] * EVENTS)
        per_delivery = Counter(r.delivery_id for r in receiver.matching("/slow"))
        assert sorted(per_delivery.values()) == [2] * EVENTS  # the first attempt and one retry, never two
        for event_id in events:
            rule_event = a.get(f"/events/{event_id}").json()["rule_events"][0]
            assert rule_event["attempt_count"] == 2, rule_event
    no_tracebacks(tmp_path)


def test_one_cancel_sent_through_two_sandboxes_at_once_cancels_once(tmp_path):
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path, 60.0) as (a, b):
        _, rule_id = a.webhook_rule(f"{receiver.url}/status/500", "cancel-me")
        events = emit(a, "cancel-me", EVENTS)
        wait(lambda: statuses(a, events) == ["retrying"] * EVENTS)  # next attempt a minute away

        half = EVENTS // 2
        for event_id in events[:half]:  # a rule event canceled through both
            answers = at_once(
                lambda e=event_id: a.post(f"/events/{e}/rules/{rule_id}/cancel"),
                lambda e=event_id: b.post(f"/events/{e}/rules/{rule_id}/cancel"),
            )
            assert answers == [200, 200]  # canceling a canceled delivery is idempotent
        for event_id in events[half:]:  # a whole event canceled through both
            answers = at_once(
                lambda e=event_id: a.post(f"/events/{e}/cancel"), lambda e=event_id: b.post(f"/events/{e}/cancel")
            )
            assert answers == [200, 200]
        assert statuses(b, events) == ["canceled"] * EVENTS
        for event_id in events:
            event = a.get(f"/events/{event_id}").json()
            assert (event["status"], event["rule_events"][0]["attempt_count"]) == ("canceled", 1)
            # a retry of a canceled delivery stays refused, through either process
            assert b.post(f"/events/{event_id}/rules/{rule_id}/retry").status_code == 409
        assert len(receiver.matching("/status")) == EVENTS
    no_tracebacks(tmp_path)


def test_a_retry_racing_the_outcome_of_the_attempt_in_flight_never_sends_twice_at_once(tmp_path):
    """B's retry lands while A's attempt is in flight or just recording its outcome: 425 or a fresh attempt,
    never a second request for the same delivery while one is open."""
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path, 60.0, "--max-attempts", "1") as (a, b):
        _, rule_id = a.webhook_rule(f"{receiver.url}/slow/0.2/500", "race")
        events = emit(a, "race", EVENTS)
        wait(lambda: statuses(a, events) == ["failed"] * EVENTS)
        accepted: Counter[str] = Counter()
        for event_id in events:
            for api in (a, b, a, b):  # retry again and again through both as attempts finish
                answer = api.post(f"/events/{event_id}/rules/{rule_id}/retry")
                assert answer.status_code in (200, 425), answer.text
                accepted[event_id] += answer.status_code == 200
        wait(lambda: statuses(a, events) == ["failed"] * EVENTS)
        per_event = Counter(r.event_id for r in receiver.matching("/slow"))
        for event_id in events:
            rule_event = a.get(f"/events/{event_id}").json()["rule_events"][0]
            assert per_event[event_id] == rule_event["attempt_count"] == 1 + accepted[event_id]
            attempts = a.get(f"/events/{event_id}/rules/{rule_id}/attempts").json()["records"]
            spans = sorted((x["started_at"], x["completed_at"]) for x in attempts)
            # one attempt at a time: each starts after the one before it finished
            assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    no_tracebacks(tmp_path)


def test_two_sandboxes_starting_after_a_crash_recover_each_interrupted_delivery_once(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    with WebhookReceiver() as receiver:
        proc, info = start(data_dir, log)
        try:
            with SandboxApi(info) as api:
                api.webhook_rule(f"{receiver.url}/slow/1", "in-flight")
                events = emit(api, "in-flight", EVENTS)
                wait(lambda: len(receiver.matching("/slow")) == EVENTS)
        finally:
            proc.kill()
            proc.wait()
        with ThreadPoolExecutor(2) as pool:  # both race to recover the interrupted attempts
            started = list(pool.map(lambda _: start(data_dir, log), range(2)))
        try:
            with SandboxApi(started[0][1]) as api:
                wait(lambda: all(api.get(f"/events/{e}").json()["status"] == "completed" for e in events))
                per_delivery = Counter(r.delivery_id for r in receiver.matching("/slow"))
                assert sorted(per_delivery.values()) == [2] * EVENTS  # interrupted once, redelivered once
                for event_id in events:
                    rule_event = api.get(f"/events/{event_id}").json()["rule_events"][0]
                    assert rule_event["attempt_count"] == 2
        finally:
            for proc, _ in started:
                proc.terminate()
            for proc, _ in started:
                proc.wait(10)
    assert "Traceback" not in log.read_text()


@pytest.mark.anyio
async def test_one_retry_through_two_mcp_sessions_on_two_sandboxes_is_accepted_once(tmp_path):
    """The same through the tools: two MCP sessions, each on its own sandbox process, retry at once."""
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path, 2.0, "--max-attempts", "1") as (a, b):
        _, rule_id = a.webhook_rule(f"{receiver.url}/slow/1/500", "sessions")
        events = emit(a, "sessions", 4)
        wait(lambda: statuses(a, events) == ["failed"] * 4)
        async with (
            Client(build_server(settings_for(a.info))) as one,
            Client(build_server(settings_for(b.info))) as two,
        ):
            for event_id in events:
                args = {"event_id": event_id, "rule_id": rule_id}
                results = await asyncio.gather(
                    one.call_tool("retry_rule_event", args), two.call_tool("retry_rule_event", args)
                )
                accepted = [ok(r) for r in results if not r.is_error]
                assert len(accepted) == 1 and accepted[0]["status"] in ("retrying", "processing"), results
                (other,) = [refused(r) for r in results if r.is_error]
                assert ("425" in other and "in flight" in other) or "due at" in other, other
        wait(lambda: statuses(a, events) == ["failed"] * 4)
        per_delivery = Counter(r.delivery_id for r in receiver.matching("/slow"))
        assert sorted(per_delivery.values()) == [2] * 4
    no_tracebacks(tmp_path)
