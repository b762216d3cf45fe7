"""events toolset end to end: emit_event and emit_events against the sandbox over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for


async def fresh_workspace(api: MeshesClient, name: str) -> str:
    return (await api.create_workspace(m.CreateWorkspaceRequest(name=name))).id


async def count_events(api: MeshesClient, workspace: str) -> int:
    total, cursor = 0, None
    while True:
        page = await api.list_workspace_events(workspace, m.WorkspaceEventQuery(limit=200, cursor=cursor))
        total += len(page.records)
        if not page.next_cursor:
            return total
        cursor = page.next_cursor


@pytest.mark.anyio
async def test_emit_event_then_refusal_names_field_rule_and_example(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        sent = ok(
            await client.call_tool(
                "emit_event",
                {"event": "user.signup", "payload": {"email": "a@example.com"}, "resource": "user",
                 "resource_id": "usr_1"},
            )
        )  # fmt: skip
        assert sent["event"] == "user.signup" and sent["resource_id"] == "usr_1"
        # No rule in the workspace takes it yet: said plainly, with the step that would route it.
        assert sent["matched_no_rule"] is True and "no active rule listens for `user.signup`" in sent["warning"]
        assert sent["next"].startswith("create_rule event=user.signup") and "replay_events" in sent["next"]
        bad = refused(await client.call_tool("emit_event", {"event": "user.signup", "payload": {"email": "x"}}))
        assert "payload.email" in bad and "email address" in bad and "jane@example.com" in bad


@pytest.mark.anyio
async def test_emit_events_250_with_3_invalid_reports_each_in_order_with_progress(sandbox):
    events: list[Any] = [
        {"event": "bulk.signup", "payload": {"email": f"u{i}@example.com", "n": i}} for i in range(250)
    ]
    events[3] = {"event": "bulk.signup", "payload": {"email": "not-an-address"}}
    events[120] = {"payload": {"n": 120}}  # no event name
    events[248] = {"event": "bulk.signup", "payload": {"n": 248}, "resource_id": "has spaces"}
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        workspace = await fresh_workspace(api, "Bulk target")
        async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
            result = ok(await client.call_tool("emit_events", {"events": events}, progress_callback=on_progress))
        stored = await count_events(api, workspace)

    assert result["total"] == 250 and result["accepted"] == 247
    rejected = result["rejected"]
    assert [r["index"] for r in rejected] == [3, 120, 248]
    assert rejected[0]["reason"].startswith("events[3].payload.email: must be an email address")
    assert rejected[1]["reason"].startswith("events[120].event: is required")
    assert "events[248].resource_id" in rejected[2]["reason"] and "e.g." in rejected[2]["reason"]
    assert "ids" not in result  # 250 items: the count says it, not 247 ids
    assert "unknown" not in result and "not_sent" not in result
    assert stored == 247
    # chunks of 100 over the 247 valid items, reported as each one lands
    assert progress and progress[-1] == (247, 247)
    assert len(progress) == 3 and all(total == 247 for _, total in progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


@pytest.mark.anyio
async def test_emit_events_lists_ids_for_a_few_events(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        few = [{"event": "few.test", "payload": {"n": i}} for i in range(3)]
        listed = ok(await client.call_tool("emit_events", {"events": [*few, {"event": "few.test"}]}))
        not_objects = refused(await client.call_tool("emit_events", {"events": [*few, "not an object"]}))

    assert listed["accepted"] == 3 and [i["index"] for i in listed["ids"]] == [0, 1, 2]
    assert listed["rejected"] == [{"index": 3, "reason": listed["rejected"][0]["reason"]}]
    assert "events[3].payload: is required" in listed["rejected"][0]["reason"]
    # An item that is not even an object breaks the schema: the whole call is refused, nothing sent.
    assert "nothing was sent" in not_objects and "events[3]" in not_objects


class FailingSecondChunk:
    """A real client whose second bulk request dies with a 502 after it may have reached Meshes."""

    def __init__(self, real: MeshesClient) -> None:
        self.real = real
        self.bulk_calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def emit_events(self, requests: list[m.EmitEventRequest]) -> m.BulkResult:
        self.bulk_calls.append(len(requests))
        if len(self.bulk_calls) == 2:
            raise e.InternalServerError(502, "Bad Gateway")
        return await self.real.emit_events(requests)


@pytest.mark.anyio
async def test_a_chunk_of_unknown_fate_is_reported_and_never_resent(sandbox):
    settings = settings_for(sandbox)

    async with MeshesClient.from_settings(settings) as api:
        workspace = await fresh_workspace(api, "Unknown fate")
        client = FailingSecondChunk(MeshesClient.from_settings(settings))  # the server closes it
        events = [{"event": "fate.test", "payload": {"n": i}, "workspace": workspace} for i in range(250)]
        async with Client(build_server(settings, client=client)) as mcp:
            result = ok(await mcp.call_tool("emit_events", {"events": events}))
        calls, stored = client.bulk_calls, await count_events(api, workspace)

    assert sorted(calls) == [50, 100, 100]  # three requests, none repeated
    assert result["accepted"] == 150 and stored == 150
    (unknown,) = result["unknown"]
    assert "not retried" in unknown["reason"] and "502" in unknown["reason"]
    assert unknown["indexes"] in ("100-199", "0-99", "200-249")
    assert "list_events" in result["next"]


@pytest.mark.parametrize("events", [[], "nope"])
@pytest.mark.anyio
async def test_emit_events_refuses_a_non_list(sandbox, events):
    async with Client(build_server(settings_for(sandbox))) as client:
        result = await client.call_tool("emit_events", {"events": events})

    if events == []:
        assert ok(result) == {"total": 0, "accepted": 0, "next": ok(result)["next"]}
    else:
        assert "events" in refused(result)


@pytest.mark.anyio
async def test_a_batch_refused_for_one_reason_costs_one_sentence(sandbox):
    """All items refused alike (a workspace that does not exist): one grouped entry, not one per item."""
    missing = "4f1e2d3c-5b6a-4798-8a9b-0c1d2e3f4a5b"
    events = [{"event": "user.signup", "payload": {"n": i}} for i in range(100)]

    async with Client(build_server(settings_for(sandbox))) as client:
        result = await client.call_tool("emit_events", {"events": events, "workspace": missing})

    summary = ok(result)
    assert summary["accepted"] == 0
    assert summary["rejected"] == [{"indexes": "0-99", "reason": summary["rejected"][0]["reason"]}]
    assert len(result.content[0].text) < 1000
