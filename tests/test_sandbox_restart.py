"""Crash recovery: kill the sandbox process with deliveries retrying and one in flight, start it again on
the same data dir, and check every delivery completes exactly once (counted at the receiver)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx2

from meshes_mcp.sandbox import SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from tests.conftest import SandboxApi


def start(data_dir: Path, log: Path, retry_base: float = 2.0, *extra: str) -> tuple[subprocess.Popen, SandboxInfo]:
    """`python -m meshes_mcp.sandbox` on `data_dir` (port 0), once it answers /healthz."""
    info_file = data_dir / "sandbox.json"
    info_file.unlink(missing_ok=True)
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshes_mcp.sandbox",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--retry-base",
                str(retry_base),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 20
    while not info_file.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.02)
    info = SandboxInfo.model_validate(json.loads(info_file.read_text()))
    assert httpx2.get(info.api_url.removesuffix("/api/v1") + "/healthz").status_code == 200
    return proc, info


def wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_deliveries_survive_a_crash_and_complete_exactly_once(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    with WebhookReceiver() as receiver:
        proc, info = start(data_dir, log)
        try:
            with SandboxApi(info) as api:
                ws = info.workspace_id

                api.webhook_rule(receiver.url + "/flaky/1/500", "retry-me")
                api.webhook_rule(receiver.url + "/slow/1", "in-flight")
                bulk = api.post(
                    "/events/bulk", json=[{"workspace": ws, "event": "retry-me", "payload": {"n": i}} for i in range(5)]
                )
                retrying = [r["id"] for r in bulk.json()["records"]]
                flying = api.post("/events", json={"workspace": ws, "event": "in-flight", "payload": {}}).json()
                flying_id = flying["event"]["id"]

                # Every retry-me delivery failed once and waits (~2 s) for its retry; in-flight is in flight.
                wait(lambda: len(receiver.matching("/flaky")) == 5 and len(receiver.matching("/slow")) == 1)
                wait(
                    lambda: all(
                        api.get(f"/events/{e}").json()["rule_events"][0]["status"] == "retrying" for e in retrying
                    )
                )
        finally:
            proc.kill()
            proc.wait()
        assert len(receiver.matching("/flaky")) == 5

        proc, info = start(data_dir, log)  # same data dir: same keys, same queue
        try:
            with SandboxApi(info) as api:

                def finished() -> bool:
                    return all(api.get(f"/events/{e}").json()["status"] == "completed" for e in [*retrying, flying_id])

                wait(finished)
                time.sleep(0.3)  # anything duplicated would show up now
                for event_id in retrying:
                    statuses = [r.status for r in receiver.matching("/flaky", event_id=event_id)]
                    assert statuses == [500, 200], (event_id, statuses)
                    event = api.get(f"/events/{event_id}").json()
                    assert (event["completed_count"], event["rule_events"][0]["attempt_count"]) == (1, 2)

                event = api.get(f"/events/{flying_id}").json()
                rule_event = event["rule_events"][0]
                assert rule_event["status"] == "completed" and event["completed_count"] == 1
                outcomes = [
                    a["outcome_code"]
                    for a in api.get(f"/events/{flying_id}/rules/{rule_event['rule']}/attempts").json()["records"]
                ]
                assert outcomes == ["network_error", "delivered"]  # the interrupted attempt is on record
                # The interrupted request may have reached the receiver; the redelivery carries the same
                # X-Meshes-Delivery-Id so a receiver can tell.
                assert Counter(r.delivery_id for r in receiver.matching("/slow")) == {rule_event["id"]: 2}
        finally:
            proc.terminate()
            proc.wait(10)


def test_attempts_interrupted_by_crashes_use_up_the_attempt_budget(tmp_path):
    """A delivery in flight at every crash is not sent again without limit: each interrupted attempt counts."""
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    with WebhookReceiver() as receiver:
        proc, info = start(data_dir, log, 2.0, "--max-attempts", "2")
        try:
            with SandboxApi(info) as api:
                ws = info.workspace_id
                api.webhook_rule(receiver.url + "/slow/60", "hang", "hangs")
                emitted = api.post("/events", json={"workspace": ws, "event": "hang", "payload": {}})
                event_id = emitted.json()["event"]["id"]
            for sent in (1, 2):  # in flight at each crash: the first attempt, then the one after the restart
                wait(lambda n=sent: len(receiver.matching("/slow")) == n)
                proc.kill()
                proc.wait()
                proc, info = start(data_dir, log, 2.0, "--max-attempts", "2")
            with SandboxApi(info) as api:
                event = api.wait_event(event_id, timeout=20)
                rule_event = event["rule_events"][0]
                assert (event["status"], rule_event["status"], rule_event["attempt_count"]) == ("failed", "failed", 2)
                records = api.get(f"/events/{event_id}/rules/{rule_event['rule']}/attempts").json()["records"]
                assert [a["outcome_code"] for a in records] == ["network_error", "network_error"]
                assert all("interrupted" in a["message"] for a in records)
                assert len(receiver.matching("/slow")) == 2  # not sent a third time
                # A person may still ask for one more attempt.
                retried = api.post(f"/events/{event_id}/rules/{rule_event['rule']}/retry")
                assert retried.status_code == 200, retried.text
                assert retried.json()["status"] in ("retrying", "processing")
                wait(lambda: len(receiver.matching("/slow")) == 3)
        finally:
            proc.kill()
            proc.wait()


def test_sigterm_while_delivering_stops_the_sandbox_and_the_rest_is_delivered_after_a_restart(tmp_path):
    """Stopping raced the worker's wake-ups (every finished attempt sets one) and could hang for ever;
    each stop here lands in the middle of a burst of deliveries."""
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    emitted: list[str] = []
    with WebhookReceiver() as receiver:
        for _ in range(2):
            proc, info = start(data_dir, log, 0.2)
            try:
                with SandboxApi(info) as api:
                    ws = info.workspace_id
                    if not emitted:
                        api.webhook_rule(receiver.url + "/busy", "busy")
                    before = len(receiver.matching("/busy"))
                    for _ in range(3):
                        items = [{"workspace": ws, "event": "busy", "payload": {}}] * 100
                        emitted += [r["id"] for r in api.post("/events/bulk", json=items).json()["records"]]
                wait(lambda n=before: len(receiver.matching("/busy")) > n)
                proc.terminate()  # in the middle of delivering
                assert proc.wait(30) in (0, -15), log.read_text()[-2000:]  # stops instead of hanging
            finally:
                proc.kill()
                proc.wait()
        proc, info = start(data_dir, log, 0.2)
        try:
            wait(lambda: {r.event_id for r in receiver.matching("/busy")} >= set(emitted))
        finally:
            proc.terminate()
            proc.wait(30)


def test_the_standalone_sandbox_does_not_log_webhook_urls(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    with WebhookReceiver() as receiver:
        proc, info = start(data_dir, log)
        try:
            with SandboxApi(info) as api:
                ws = info.workspace_id
                url = receiver.url + "/hook?token=query-secret-4711"
                api.webhook_rule(url, "log", "logged")
                api.post("/events", json={"workspace": ws, "event": "log", "payload": {}}).raise_for_status()
                wait(lambda: len(receiver.matching("/hook")) == 1)
        finally:
            proc.terminate()
            proc.wait(30)
    assert "query-secret-4711" not in log.read_text()
