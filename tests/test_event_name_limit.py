"""Event names are at most 256 characters (our choice: upstream documents no limit), through every path:
the sandbox answers 400 (machine key and publishable key), the tools refuse before sending."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client

from meshes_mcp.api.models import EVENT_NAME_MAX
from meshes_mcp.server.app import build_server
from tests.conftest import SandboxApi
from tests.support import ok, refused, settings_for

LONGEST = "e" * EVENT_NAME_MAX
TOO_LONG = "e" * (EVENT_NAME_MAX + 1)
RULE = f"must be at most {EVENT_NAME_MAX} characters"


def refusal(response: httpx2.Response, param: str) -> str:
    assert response.status_code == 400, response.text
    problems = {d["param"]: d["msg"] for d in response.json()["error"]["data"]}
    assert RULE in problems[param], problems
    return problems[param]


def test_the_sandbox_refuses_a_longer_event_name_with_any_key(sandbox, sandbox_api: SandboxApi):
    ws = sandbox.workspace_id
    assert sandbox_api.post("/events", json={"workspace": ws, "event": LONGEST, "payload": {}}).status_code == 201
    refusal(sandbox_api.post("/events", json={"workspace": ws, "event": TOO_LONG, "payload": {}}), "event")
    bulk = [{"workspace": ws, "event": "ok", "payload": {}}, {"workspace": ws, "event": TOO_LONG, "payload": {}}]
    partial = sandbox_api.post("/events/bulk", json=bulk)
    assert partial.status_code == 207 and partial.json()["records"][1]["error"]["data"][0]["param"] == "event"
    refusal(sandbox_api.get(f"/workspaces/{ws}/events", params={"event": TOO_LONG}), "event")

    with httpx2.Client(base_url=sandbox.api_url, timeout=10) as http:
        key = {"X-Meshes-Publishable-Key": sandbox.publishable_key}
        tenk = http.post("/events", headers=key, json={"event": "e" * 10_000, "payload": {}})
        assert "10000" not in refusal(tenk, "event")  # the rule, not an echo of the input
        assert "e" * 300 not in tenk.text
        bulk_key = http.post("/events/bulk", headers=key, json=[{"event": TOO_LONG, "payload": {}}])
        refusal(bulk_key, "[0].event")


@pytest.mark.anyio
async def test_the_tools_refuse_a_longer_event_name_before_sending(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        ok(await client.call_tool("emit_event", {"event": LONGEST, "payload": {}}))
        for tool, args, param in [
            ("emit_event", {"event": TOO_LONG, "payload": {}}, "event"),
            ("list_events", {"workspace": sandbox.workspace_id, "event": TOO_LONG}, "event"),
            ("list_rules", {"event": TOO_LONG}, "event"),
            ("triage_failures", {"event": TOO_LONG}, "event"),
        ]:  # fmt: skip
            text = refused(await client.call_tool(tool, args))
            assert f"{param}: {RULE}" in text and "user.signup" in text, (tool, text)
        bulk = await client.call_tool("emit_events", {"events": [{"event": "ok", "payload": {}}, {"event": TOO_LONG}]})
        text = bulk.content[0].text
        assert f"events[1].event: {RULE}" in text, text
