"""The incident loop as an IDE runs it: `meshes-mcp --sandbox` in a subprocess speaking MCP over stdio,
a real webhook receiver, progress notifications on the wire: triage → fix → retry_failed with
wait_seconds → triage shows nothing left."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support import ok

EVENTS = 40


@pytest.mark.anyio
async def test_incident_loop_over_stdio(tmp_path, webhook_receiver):
    rx = webhook_receiver
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshes_mcp", "--sandbox", "--data-dir", str(tmp_path / "sandbox"), "--max-attempts", "1"],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(params) as client:
        failing = {"type": "webhook", "name": "Stdio hook", "metadata": {"url": f"{rx.url}/status/500"}}
        hook = ok(await client.call_tool("create_connection", failing))
        ok(await client.call_tool("create_rule", {"connection": hook["id"], "event": "stdio.incident",
                                                  "metadata": {"action": "send_webhook"}}))  # fmt: skip
        batch = [{"event": "stdio.incident", "payload": {"n": n}} for n in range(EVENTS)]
        emitted = ok(await client.call_tool("emit_events", {"events": batch}))
        last = ok(await client.call_tool("get_event", {"event_id": emitted["ids"][-1]["id"], "wait_seconds": 30}))
        triage: dict[str, Any] = {}
        for _ in range(100):  # bounded: the other deliveries settle within moments of the last one
            triage = ok(await client.call_tool("triage_failures", {"event": "stdio.incident"}))
            if triage.get("failing") == EVENTS:
                break
            await anyio.sleep(0.1)
        ok(await client.call_tool("update_connection", {"connection_id": hook["id"], "name": "Stdio hook",
                                                        "metadata": {"url": f"{rx.url}/fixed"}}))  # fmt: skip
        call = triage["groups"][0]["then"].split()
        arguments: dict[str, Any] = dict(part.split("=", 1) for part in call[1:])
        arguments["wait_seconds"] = int(arguments["wait_seconds"])
        retry = ok(await client.call_tool(call[0], arguments, progress_callback=on_progress))
        after = ok(await client.call_tool("triage_failures", {"event": "stdio.incident"}))

    assert last["status"] == "failed" and last["waited"].startswith("settled after")
    (group,) = triage["groups"]
    assert group["failed"] == EVENTS and group["outcome_code"] == "rejected_server_error"
    assert retry["retried"] == EVENTS and retry["outcome"]["delivered"] == EVENTS and retry["outcome"]["settled"]
    assert after["count"] == 0
    assert any("retries sent" in (message or "") for _, _, message in progress)
    fixed = Counter(r.delivery_id for r in rx.receipts if r.path == "/fixed")
    assert len(fixed) == EVENTS and set(fixed.values()) == {1}
