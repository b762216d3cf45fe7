"""Two sandbox processes on one data directory (the "two editor windows" case) route every event with the
rules as they are in the database when it is ingested, whichever process changed them."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from meshes_mcp.sandbox.enginelock import EngineLock
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi
from tests.test_sandbox_restart import start

EVENT = "two.windows"


def bulk(api: SandboxApi, ws: str, start_at: int, count: int) -> list[str]:
    """Emit `count` events in bulk requests of 100; the ids of those acknowledged."""
    ids: list[str] = []
    for offset in range(start_at, start_at + count, 100):
        items = [
            {"workspace": ws, "event": EVENT, "payload": {"n": n}}
            for n in range(offset, min(offset + 100, start_at + count))
        ]
        response = api.post("/events/bulk", json=items)
        assert response.status_code == 201, response.text
        ids += [record["id"] for record in response.json()["records"]]
    return ids


@contextlib.contextmanager
def two_sandboxes(tmp_path: Path, retry_base: float = 2.0, *extra: str) -> Iterator[tuple[SandboxApi, SandboxApi]]:
    """A (started first: holds the engine lock and delivers) and B (serves the API only), one data dir;
    both log to `tmp_path / "sandbox.log"`. `extra`: more command-line options for both."""
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    first, info = start(data_dir, log, retry_base, *extra)
    second, other = start(data_dir, log, retry_base, *extra)
    try:
        with SandboxApi(info) as a, SandboxApi(other) as b:
            yield a, b
    finally:
        for proc in (second, first):
            proc.terminate()
        for proc in (second, first):
            proc.wait(10)


def test_a_rule_created_through_one_process_routes_events_ingested_through_the_other(tmp_path):
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path) as (a, b):
        ws = a.info.workspace_id
        # B routes this workspace once before the rule exists (a per-process cache would keep "no rules").
        warm = bulk(b, ws, 0, 1)[0]
        assert b.get(f"/events/{warm}").json()["total_rules"] == 0
        a.webhook_rule(f"{receiver.url}/hooks/windows", EVENT, "windows")

        routed = bulk(b, ws, 1, 300)
        assert [b.get(f"/events/{e}").json()["total_rules"] for e in (routed[0], routed[-1])] == [1, 1]
        receipts = receiver.wait_for(300, "/hooks/windows", timeout=30)
        assert {r.event_id for r in receipts} == set(routed), f"{len(receipts)} of 300 delivered"
        time.sleep(0.3)  # a duplicate, if any, would arrive now
        per_delivery = Counter(r.delivery_id for r in receiver.matching("/hooks/windows"))
        assert len(per_delivery) == 300 and max(per_delivery.values()) == 1


def test_a_rule_deleted_through_one_process_no_longer_routes_events_ingested_through_the_other(tmp_path):
    with WebhookReceiver() as receiver, two_sandboxes(tmp_path) as (a, b):
        ws = a.info.workspace_id
        _, rule_id = a.webhook_rule(f"{receiver.url}/hooks/windows", EVENT, "windows")
        routed = bulk(b, ws, 0, 100)  # B routes through the rule (and would remember it)
        receiver.wait_for(100, "/hooks/windows", timeout=30)

        assert a.delete(f"/rules/{rule_id}").status_code in (200, 204)
        unrouted = bulk(b, ws, 100, 300)
        for event_id in (unrouted[0], unrouted[-1]):
            event = b.get(f"/events/{event_id}").json()
            assert (event["total_rules"], event["status"]) == (0, "completed"), event
        time.sleep(0.5)  # anything routed through the deleted rule would be delivered by now
        delivered = {r.event_id for r in receiver.matching("/hooks/windows")}
        assert delivered == set(routed)


def test_the_engine_lock_publishes_its_wake_up_port_to_the_other_processes(tmp_path):
    holder, other = EngineLock(tmp_path / "delivery.lock"), EngineLock(tmp_path / "delivery.lock")
    assert holder.try_acquire() and not other.try_acquire()
    assert other.wake_port() is None  # nothing published yet
    holder.publish_wake_port(40123)
    assert other.wake_port() == 40123
    other.publish_wake_port(1)  # only the holder may publish
    assert other.wake_port() == 40123
    for garbage in (b"", b"70000\n", b"-5\n", b"\xff\xfe", b"12 34"):
        (tmp_path / "delivery.lock").write_bytes(garbage)
        assert other.wake_port() is None, garbage
    holder.publish_wake_port(40123)
    holder.release()  # nobody listens any more
    assert other.wake_port() is None and other.try_acquire()
    other.release()
