"""Every documented endpoint is reached by its tool: a tour of all tools with the HTTP traffic recorded."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.config import Settings
from meshes_mcp.server.app import build_server
from tests.support import settings_for
from tests.test_tools_surface import ALL_TOOLS, ENDPOINTS

ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|sess_[A-Za-z0-9_-]+)$")
PLACEHOLDERS = ("{id}", "{rule_id}", "{attempt_id}")


def template(path: str) -> str:
    """/api/v1/events/<uuid>/rules/<uuid> → /events/{id}/rules/{rule_id}."""
    segments, ids = [], 0
    for segment in path.removeprefix("/api/v1").split("/"):
        if ID.match(segment):
            segment, ids = PLACEHOLDERS[ids], ids + 1
        segments.append(segment)
    return "/".join(segments)


class Recorder(httpx2.AsyncBaseTransport):
    """Real HTTP, with each answered endpoint noted (an unknown route answers 404/405 and is not)."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.reached: dict[str, int] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code not in (404, 405):
            self.reached[f"{request.method} {template(request.url.path)}"] = response.status_code
        return response

    async def aclose(self) -> None:
        pass  # shared by several sessions; closed once at the end


def client_for(settings: Settings, recorder: Recorder) -> MeshesClient:
    key = MachineKey(settings.access_key.get_secret_value(), settings.secret_key.get_secret_value(), settings.org_id)
    return MeshesClient(settings.base_url, machine_key=key, transport=recorder)


class Tour:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.called: set[str] = set()

    async def __call__(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        self.called.add(tool)
        assert not result.is_error, (tool, result.content[0].text)
        assert json.loads(result.content[0].text) == result.structured_content
        return result.structured_content

    async def until(self, event_id: str, done: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self("get_event", event_id=event_id)
            if done(event) or time.monotonic() > deadline:
                return event
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_every_documented_endpoint_is_reached_by_its_tool(sandbox, webhook_receiver):
    recorder = Recorder()
    settings = settings_for(sandbox)

    async def tour_workspace(call: Tour) -> None:
        await call("list_integrations")
        await call("list_workspaces")
        other = await call("create_workspace", name="Tour stop")
        await call("get_workspace")
        await call("update_workspace", workspace_id=other["id"], description="Visited")
        await call("list_event_types")
        await call("list_resources")

    async def tour_connections(call: Tour) -> tuple[str, str]:
        hubspot = next(c for c in (await call("list_connections"))["connections"] if c["type"] == "hubspot")["id"]
        await call("get_connection_fields", connection_id=hubspot, refresh=True)
        mapping = await call("get_connection_mappings", connection_id=hubspot)
        await call("update_connection_mappings", connection_id=hubspot, schema=mapping["mapping"]["schema"])
        await call("get_connection_actions", connection_id=hubspot)
        url = f"{webhook_receiver.url}/status/400"
        hook = await call("create_connection", type="webhook", name="Tour hook", metadata={"url": url})
        await call("get_connection", connection_id=hook["id"])
        await call("update_connection", connection_id=hook["id"], metadata={"url": url})
        rule = await call("create_rule", connection=hook["id"], event="tour.stop", metadata={"action": "send_webhook"})
        await call("get_rule", rule_id=rule["id"])
        await call("list_rules", event="tour.stop")
        return hook["id"], rule["id"]

    async def tour_deliveries(call: Tour, rule: str) -> None:
        sent = await call("emit_event", event="tour.stop", payload={"email": "t@example.com"})
        await call("emit_events", events=[{"event": "tour.other", "payload": {"n": 1}}])
        failed = await call.until(sent["id"], lambda ev: ev.get("status") == "failed")
        await call("get_event", event_id=sent["id"], include_payload=True)
        await call("list_events", status="failed")
        attempts = await call("list_rule_attempts", event_id=sent["id"], rule_id=rule)
        first = attempts["attempts"][0]["id"]
        await call("get_rule_attempt", event_id=sent["id"], rule_id=rule, attempt_id=first, include_response=True)
        await call("diagnose_event", event_id=failed["id"])
        await call("triage_failures", event="tour.stop")
        await call("retry_failed", event="tour.stop", dry_run=True)
        await call("replay_events", event="tour.other", dry_run=True)
        await call("retry_rule_event", event_id=sent["id"], rule_id=rule)
        # Whether these land before or after the retried attempt, the endpoint answers (200 or 409).
        await call.client.call_tool("cancel_rule_event", {"event_id": sent["id"], "rule_id": rule})
        await call.client.call_tool("cancel_event", {"event_id": sent["id"]})
        call.called |= {"cancel_rule_event", "cancel_event"}

    async def tour_sessions(call: Tour) -> None:
        session = await call("create_session")
        await call("list_sessions")
        await call("refresh_session", session_id=session["session_id"])
        await call("revoke_session", session_id=session["session_id"])

    async with Client(build_server(settings, client=client_for(settings, recorder))) as client:
        call = Tour(client)
        await tour_workspace(call)
        hook, rule = await tour_connections(call)
        await tour_deliveries(call, rule)
        await tour_sessions(call)
        await call("delete_rule", rule_id=rule)
        await call("delete_connection", connection_id=hook)
    org_wide = settings_for(sandbox, workspace_id=None)
    async with Client(build_server(org_wide, client=client_for(org_wide, recorder))) as client:
        call_org = Tour(client)
        await call_org("list_connections")
        await call_org("list_rules")
        await call_org("list_events")
    await recorder.inner.aclose()
    called = call.called | call_org.called

    # diagnose and the incident tools read (and retry or emit through) others' endpoints
    incidents = {"diagnose_event", "triage_failures", "retry_failed", "replay_events"}
    assert called == ALL_TOOLS == set(ENDPOINTS.values()) | incidents
    assert set(recorder.reached) == set(ENDPOINTS), sorted(set(ENDPOINTS) ^ set(recorder.reached))
