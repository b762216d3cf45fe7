"""The sandbox's store refusing writes: another process holding the write lock, a full disk. No delivery is
left `processing`, none is sent twice, the API keeps answering, and each refusal says what happened.

(A data directory that cannot be written at all is refused at start: tests/test_sandbox_datadir.py.)
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from meshes_mcp.sandbox import EmbeddedSandbox, SandboxInfo
from meshes_mcp.sandbox.receiver import WebhookReceiver
from meshes_mcp.server.app import build_server
from tests.conftest import SandboxApi
from tests.support import refused, settings_for
from tests.test_sandbox_datadir import mount_namespaces
from tests.test_sandbox_restart import wait

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_write_lock(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process (a real sqlite3 connection) holding the database's write lock for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def events(api: SandboxApi, event: str, count: int, size: int = 10) -> httpx2.Response:
    items = [{"workspace": api.info.workspace_id, "event": event, "payload": {"pad": "x" * size}}] * count
    return api.post("/events/bulk", json=items)


def event_ids(response: httpx2.Response) -> list[str]:
    assert response.status_code == 201, response.text
    return [r["id"] for r in response.json()["records"]]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[EmbeddedSandbox, SandboxApi, WebhookReceiver]]:
    sandbox = EmbeddedSandbox(tmp_path, retry_base=60)
    with WebhookReceiver() as receiver, SandboxApi(sandbox.start()) as api:
        try:
            yield sandbox, api, receiver
        finally:
            sandbox.stop()


def test_a_write_lock_held_by_another_process_neither_wedges_a_delivery_nor_freezes_the_api(running, caplog):
    sandbox, api, receiver = running
    _, rule_id = api.webhook_rule(f"{receiver.url}/slow/1", "held")
    (event_id,) = event_ids(events(api, "held", 1))
    wait(lambda: len(receiver.matching("/slow")) == 1)  # in flight: its outcome comes while the lock is held

    holder = hold_write_lock(sandbox.data_dir / "sandbox.db", 7)  # past every busy timeout
    finished: list[str] = []
    answers: dict[str, httpx2.Response] = {}

    def send(name: str, call: Any) -> None:
        answers[name] = call()
        finished.append(name)

    write = threading.Thread(target=send, args=("write", lambda: events(api, "held", 1)))
    write.start()
    time.sleep(0.5)  # the write is now waiting for the lock
    send("read", lambda: api.get(f"/events/{event_id}"))
    write.join(30)
    holder.wait(30)

    assert finished == ["read", "write"]  # the loop served the read while the write waited
    assert answers["read"].status_code == 200
    refused = answers["write"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
    message = refused.json()["error"]["message"]
    assert "locked by another process" in message and "nothing was written" in message

    # The outcome that could not be recorded while the lock was held is recorded once it is free.
    event = api.wait_event(event_id, timeout=20)
    assert (event["status"], event["rule_events"][0]["attempt_count"]) == ("completed", 1), event
    assert api.post(f"/events/{event_id}/rules/{rule_id}/retry").status_code == 409  # not "425 forever"
    assert len(receiver.matching("/slow")) == 1  # and not sent again
    assert api.get("/events", params={"limit": 10}).json()["count"] == 1  # the refused write wrote nothing
    no_errors_logged(caplog)


def fill_the_disk(sandbox: EmbeddedSandbox, pages: int | None) -> None:
    """Cap the database at its current size (`pages=None`) on each of the sandbox's connections, or lift the
    cap: SQLite then refuses growth exactly as on a full disk (SQLITE_FULL, "database or disk is full")."""
    assert sandbox._server is not None
    state = sandbox._server.config.app.state.sandbox
    for store in (state.store, state.engine.store):
        current = store.one("PRAGMA page_count")["page_count"]
        store.db.execute(f"PRAGMA max_page_count={current if pages is None else pages}")


def full_disk(
    api: SandboxApi, receiver: WebhookReceiver, fill: Callable[[], None], free: Callable[[], None]
) -> list[str]:
    """20 deliveries in flight when the disk fills: a write is refused with 507, and once space is freed each
    outcome is recorded and nothing was sent twice. The ids of those 20 events."""
    api.webhook_rule(f"{receiver.url}/slow/1", "full")
    in_flight = event_ids(events(api, "full", 20))
    wait(lambda: len(receiver.matching("/slow")) == 20)
    fill()  # their 20 outcomes, with captured responses, need room the disk lacks

    refused = events(api, "full", 100, size=2000)
    assert refused.status_code == 507, refused.text
    message = refused.json()["error"]["message"]
    assert "disk is full" in message and "nothing was written" in message
    time.sleep(1.5)  # the attempts finish against the full disk
    assert api.get("/events", params={"limit": 1}).status_code == 200  # reads still answer

    free()
    for event_id in in_flight:
        event = api.wait_event(event_id, timeout=20)
        assert (event["status"], event["rule_events"][0]["attempt_count"]) == ("completed", 1), event
    assert sorted(Counter(r.delivery_id for r in receiver.matching("/slow")).values()) == [1] * 20
    assert events(api, "full", 100, size=2000).status_code == 201
    return in_flight


def test_a_full_disk_answers_507_and_outcomes_are_recorded_once_space_is_free(running, caplog):
    sandbox, api, receiver = running
    in_flight = full_disk(api, receiver, lambda: fill_the_disk(sandbox, None), lambda: fill_the_disk(sandbox, 1 << 30))

    sandbox.stop()  # and after a restart, nothing delivered is delivered again
    with EmbeddedSandbox(sandbox.data_dir, retry_base=60) as info, SandboxApi(info) as again:
        time.sleep(0.5)  # a resumed delivery would be sent now
        assert all(again.get(f"/events/{e}").json()["status"] == "completed" for e in in_flight)
    assert sum(r.event_id in in_flight for r in receiver.matching("/slow")) == 20
    no_errors_logged(caplog)


def test_a_real_full_disk_a_small_tmpfs(tmp_path: Path):
    """The same on a real 4 MiB tmpfs filled to the last byte (where this machine allows private mounts)."""
    if not mount_namespaces():
        pytest.skip("no unprivileged mount namespaces here: the capped-database test above stands in")
    data_dir, log = tmp_path / "data", tmp_path / "sandbox.log"
    data_dir.mkdir()
    script = 'mount -t tmpfs -o size=4m tmpfs "$0" && exec "$@"'
    sandbox = [sys.executable, "-m", "meshes_mcp.sandbox", "--data-dir", str(data_dir), "--port", "0"]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script, str(data_dir), *sandbox], stderr=stderr)
    inside = Path(f"/proc/{proc.pid}/root") / data_dir.relative_to("/")  # the tmpfs, seen from outside
    try:
        try:
            wait(lambda: (inside / "sandbox.json").exists())
            info = SandboxInfo.model_validate_json((inside / "sandbox.json").read_text())
        except PermissionError:
            pytest.skip("the private mount cannot be reached from this process")
        filler = inside / "filler"

        def fill() -> None:
            with filler.open("wb") as out, contextlib.suppress(OSError):  # until ENOSPC
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()

        with WebhookReceiver() as receiver, SandboxApi(info) as api:
            full_disk(api, receiver, fill, filler.unlink)
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in log.read_text()


@pytest.mark.anyio
async def test_a_tool_writing_to_a_full_sandbox_says_the_disk_is_full_and_nothing_was_written(running):
    sandbox, api, _ = running
    fill_the_disk(sandbox, None)
    try:
        async with Client(build_server(settings_for(api.info))) as client:
            payload = {"pad": "x" * 200_000}  # more than the pages the disk has left
            text = refused(await client.call_tool("emit_event", {"event": "full", "payload": payload}))
    finally:
        fill_the_disk(sandbox, 1 << 30)
    assert text.startswith("Out of storage (507): the sandbox's disk is full"), text
    assert "nothing was written" in text and "may or may not" not in text
