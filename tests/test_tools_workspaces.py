"""workspaces and sessions toolsets end to end, against the sandbox over real HTTP."""

from __future__ import annotations

import pytest
from mcp import Client

from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for


@pytest.mark.anyio
async def test_workspace_lifecycle_and_refusals(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        created = ok(await client.call_tool("create_workspace", {"name": "Acme prod", "description": "Acme"}))
        listed = ok(await client.call_tool("list_workspaces", {}))
        default = ok(await client.call_tool("get_workspace", {}))
        renamed = ok(await client.call_tool("update_workspace", {"workspace_id": created["id"], "name": "Acme live"}))
        cleared = ok(await client.call_tool("update_workspace", {"workspace_id": created["id"], "description": ""}))
        bad_name = refused(await client.call_tool("create_workspace", {"name": "a/b"}))
        too_short = refused(await client.call_tool("create_workspace", {"name": "ab"}))
        nothing = refused(await client.call_tool("update_workspace", {"workspace_id": created["id"]}))
        missing = refused(
            await client.call_tool("get_workspace", {"workspace_id": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10"})
        )
    async with Client(build_server(settings_for(sandbox, workspace_id=None))) as client:
        no_default = refused(await client.call_tool("get_workspace", {}))

    assert created["name"] == "Acme prod" and created["next"] == f"create_connection workspace={created['id']}"
    assert created["id"] in {w["id"] for w in listed["workspaces"]} and listed["count"] >= 2
    assert default["id"] == sandbox.workspace_id and default["publishable_key"] == sandbox.publishable_key
    assert renamed["name"] == "Acme live" and renamed["description"] == "Acme"  # the omitted field stays
    assert cleared["name"] == "Acme live" and "description" not in cleared
    assert "name" in bad_name and "letters, digits" in bad_name and "e.g." in bad_name
    assert "name" in too_short and "at least 3" in too_short
    assert "name" in nothing and "description" in nothing
    assert "404" in missing and "list_workspaces" in missing
    assert "MESHES_WORKSPACE_ID" in no_default and "list_workspaces" in no_default


@pytest.mark.anyio
async def test_event_types_and_resources_seen_in_a_workspace(sandbox):
    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        workspace = (await api.create_workspace(m.CreateWorkspaceRequest(name="Catalogue"))).id
    async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
        empty = ok(await client.call_tool("list_event_types", {}))
        ok(await client.call_tool("emit_event", {"event": "invoice.paid", "payload": {"id": "in_1"},
                                                 "resource": "invoice", "resource_id": "in_1"}))  # fmt: skip
        types = ok(await client.call_tool("list_event_types", {}))
        resources = ok(await client.call_tool("list_resources", {"workspace_id": workspace}))

    assert empty == {"workspace": workspace, "count": 0}
    assert [e["key"] for e in types["entries"]] == ["invoice.paid"] and types["count"] == 1
    assert [e["key"] for e in resources["entries"]] == ["invoice"]


@pytest.mark.anyio
async def test_sessions_never_show_tokens(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        created = await client.call_tool("create_session", {"role": "admin", "external_user_id": "user_42"})
        resource = ok(
            await client.call_tool(
                "create_session",
                {"session_type": "resource", "resource": "user", "resource_id": "usr_42", "launch_page": "events"},
            )
        )
        bad_ttl = refused(await client.call_tool("create_session", {"ttl_seconds": 10}))
        half_resource = refused(await client.call_tool("create_session", {"session_type": "resource"}))
        listed = ok(await client.call_tool("list_sessions", {"limit": 1}))
        page_two = ok(await client.call_tool("list_sessions", {"limit": 1, "cursor": listed["next_cursor"]}))
        refreshed = await client.call_tool("refresh_session", {"session_id": ok(created)["session_id"]})
        revoked = ok(await client.call_tool("revoke_session", {"session_id": resource["session_id"]}))
        active = ok(await client.call_tool("list_sessions", {"status": "active"}))
        bad_id = refused(await client.call_tool("revoke_session", {"session_id": "../etc"}))

    session = ok(created)
    for result in (created, refreshed):
        text = result.content[0].text
        assert "eyJ" not in text and "access_token" not in text and "launch_token" not in text
    assert "launch=" not in session["launch_url"] or "launch=[redacted]" in session["launch_url"]
    assert session["role"] == "admin" and session["note"].startswith("tokens are masked")
    assert resource["session_type"] == "resource" and resource["resource_id"] == "usr_42"
    assert "ttl_seconds" in bad_ttl and "300" in bad_ttl and "3600" in bad_ttl and "e.g." in bad_ttl
    assert "resource" in half_resource and "resource_id" in half_resource
    assert listed["count"] == 1 and listed["next"] == f"list_sessions limit=1 cursor={listed['next_cursor']}"
    assert page_two["sessions"][0]["session_id"] != listed["sessions"][0]["session_id"]
    assert ok(refreshed)["session_id"] == session["session_id"]
    assert revoked == {"session_id": resource["session_id"], "revoked": True}
    assert resource["session_id"] not in {s["session_id"] for s in active["sessions"]}
    assert "session_id" in bad_id
