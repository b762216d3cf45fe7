"""Crash consistency: ingest and deliver while the sandbox process is killed with SIGKILL again and again.

Every acknowledged event (a 201) must be delivered, no delivery may reach the receiver more often than
the attempts recorded for it (and so never beyond the attempt budget), and the database must pass
`PRAGMA integrity_check`. `bench/bench_crash.py` runs the same scenario with more restarts.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi
from tests.test_sandbox_restart import start

MAX_ATTEMPTS = 5
EVENT = "crash.test"


@dataclass
class CrashRun:
    restarts: int = 0
    acknowledged: set[str] = field(default_factory=set)
    unanswered: int = 0  # requests cut off by a kill: their events may or may not have been stored


def emit_until_killed(api: SandboxApi, run: CrashRun, rng: random.Random) -> None:
    """Emit single and bulk events until the sandbox stops answering."""
    ws = api.info.workspace_id
    n = 0
    while True:
        n += 1
        try:
            if n % 3:
                response = api.post("/events", json={"workspace": ws, "event": EVENT, "payload": {"n": n}})
                ids = [response.json()["event"]["id"]] if response.status_code == 201 else []
            else:
                items = [{"workspace": ws, "event": EVENT, "payload": {"n": n, "i": i}} for i in range(10)]
                response = api.post("/events/bulk", json=items)
                ids = [r["id"] for r in response.json()["records"]] if response.status_code == 201 else []
        except httpx2.TransportError:
            run.unanswered += 1
            return
        assert response.status_code == 201, response.text
        run.acknowledged.update(ids)
        if rng.random() < 0.1:
            time.sleep(0.02)  # let the queue drain now and then, so kills also find idle moments


def crash_run(tmp_path: Path, receiver: WebhookReceiver, restarts: int, seed: int = 7) -> CrashRun:
    """Run the scenario; the sandbox is stopped cleanly at the end, its data dir left for inspection."""
    rng = random.Random(seed)
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    run = CrashRun()
    proc, info = start(data_dir, log, 0.2, "--max-attempts", str(MAX_ATTEMPTS))
    try:
        with SandboxApi(info) as api:
            # A short wait at the receiver keeps deliveries in flight when the kill comes.
            api.webhook_rule(f"{receiver.url}/slow/0.05", EVENT, "crash")
        for _ in range(restarts):
            killer = threading.Timer(rng.uniform(0.3, 0.9), proc.kill)
            killer.start()
            with SandboxApi(info) as api:
                emit_until_killed(api, run, rng)
            killer.join()
            proc.wait()
            run.restarts += 1
            proc, info = start(data_dir, log, 0.2, "--max-attempts", str(MAX_ATTEMPTS))
        receiver.wait_for(len(run.acknowledged), "/slow", timeout=60)
        deadline = time.monotonic() + 60
        while active_rule_events(data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    return run


def active_rule_events(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "sandbox.db") as db:
        return db.execute(
            "SELECT count(*) FROM rule_events WHERE status IN ('pending', 'processing', 'retrying')"
        ).fetchone()[0]


def check(data_dir: Path, receiver: WebhookReceiver, run: CrashRun) -> dict[str, int]:
    """Assert the invariants; return figures about the run."""
    db = sqlite3.connect(data_dir / "sandbox.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        statuses = dict(db.execute("SELECT status, count(*) FROM rule_events GROUP BY status").fetchall())
        attempts = dict(db.execute("SELECT id, attempt_count FROM rule_events").fetchall())
        stored = {row[0] for row in db.execute("SELECT id FROM events")}
        interrupted = db.execute("SELECT count(*) FROM attempts WHERE message LIKE 'interrupted%'").fetchone()[0]
        open_attempts = db.execute("SELECT count(*) FROM attempts WHERE completed_at IS NULL").fetchone()[0]
    finally:
        db.close()
    receipts = receiver.matching("/slow")
    delivered_events = {r.event_id for r in receipts}
    per_delivery = Counter(r.delivery_id for r in receipts)
    assert run.acknowledged <= stored, "an acknowledged event was lost"
    assert run.acknowledged <= delivered_events, (
        f"{len(run.acknowledged - delivered_events)} acknowledged not delivered"
    )
    assert delivered_events <= stored, "a delivery for an event the store does not hold"
    assert statuses == {"completed": len(attempts)}, statuses
    assert open_attempts == 0
    for delivery_id, sent in per_delivery.items():
        # Every send is preceded by a committed attempt: the receiver never sees more than were recorded.
        assert sent <= attempts[delivery_id] <= MAX_ATTEMPTS, (delivery_id, sent, attempts[delivery_id])
    return {
        "restarts": run.restarts,
        "acknowledged": len(run.acknowledged),
        "stored": len(stored),
        "deliveries": len(per_delivery),
        "receipts": len(receipts),
        "sent_twice_or_more": sum(1 for n in per_delivery.values() if n > 1),
        "max_sends": max(per_delivery.values(), default=0),
        "interrupted_attempts": interrupted,
        "unanswered_requests": run.unanswered,
    }


def test_acknowledged_events_survive_repeated_kills_delivered_within_the_budget(tmp_path):
    with WebhookReceiver() as receiver:
        run = crash_run(tmp_path, receiver, restarts=3)
        figures = check(tmp_path / "data", receiver, run)
    assert figures["restarts"] == 3 and figures["acknowledged"] > 0
