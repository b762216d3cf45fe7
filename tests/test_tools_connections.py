"""connections toolset end to end, against the sandbox over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.server.app import build_server
from meshes_mcp.server.tools.connections import MAPPING_SCHEMA_DOC
from tests.support import ok, refused, settings_for

SECRET = "tok_live_5c1d8e2f9a7b4c6d0e3f"


async def seeded(info: Any, type_: str) -> str:
    async with MeshesClient.from_settings(settings_for(info)) as api:
        page = await api.list_workspace_connections(info.workspace_id)
    return next(c.id for c in page.records if c.type == type_)


@pytest.mark.anyio
async def test_list_connections_in_a_workspace_and_across_the_org(sandbox):
    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        other = (await api.create_workspace(m.CreateWorkspaceRequest(name="Other tenant"))).id
    async with Client(build_server(settings_for(sandbox))) as client:
        ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Elsewhere", "metadata": {"url": "https://example.com/h"},
                 "workspace": other},
            )
        )  # fmt: skip
        mine = ok(await client.call_tool("list_connections", {}))
        theirs = ok(await client.call_tool("list_connections", {"workspace": other}))
    async with Client(build_server(settings_for(sandbox, workspace_id=None))) as client:
        everything = ok(await client.call_tool("list_connections", {}))

    assert {c["type"] for c in mine["connections"]} >= {"hubspot", "slack"}
    assert all(set(c) <= {"id", "name", "type", "workspace", "active", "inactive_reason", "hidden"}
               for c in mine["connections"])  # fmt: skip
    assert [c["name"] for c in theirs["connections"]] == ["Elsewhere"]
    assert {c["id"] for c in everything["connections"]} >= {
        c["id"] for c in mine["connections"] + theirs["connections"]
    }


@pytest.mark.anyio
async def test_webhook_connection_get_update_and_refusals(sandbox, webhook_receiver):
    async with Client(build_server(settings_for(sandbox))) as client:
        created = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Orders hook", "metadata": {
                    "url": f"{webhook_receiver.url}/orders", "auth_scheme": "bearer", "auth_token": SECRET}},
            )
        )  # fmt: skip
        fetched = ok(await client.call_tool("get_connection", {"connection_id": created["id"]}))
        updated = ok(
            await client.call_tool(
                "update_connection",
                {"connection_id": created["id"], "name": "Orders hook v2",
                 "metadata": {"url": f"{webhook_receiver.url}/v2"}},
            )
        )  # fmt: skip
        kept_name = ok(
            await client.call_tool(
                "update_connection",
                {"connection_id": created["id"], "metadata": {"url": f"{webhook_receiver.url}/v3"}},
            )
        )
        public_http = refused(
            await client.call_tool(
                "update_connection",
                {"connection_id": created["id"], "metadata": {"url": "http://example.com/hook"}},
            )
        )
        unknown_key = refused(
            await client.call_tool(
                "update_connection",
                {"connection_id": created["id"], "metadata": {"url": "https://example.com/h", "urll": "x"}},
            )
        )
        missing = refused(
            await client.call_tool("get_connection", {"connection_id": "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10"})
        )
        not_uuid = refused(await client.call_tool("get_connection", {"connection_id": "hook-1"}))
        after = ok(await client.call_tool("get_connection", {"connection_id": created["id"]}))

    assert SECRET not in json.dumps([created, fetched, updated])
    assert fetched["metadata"]["url"].endswith("/orders") and fetched["metadata"]["auth_token"] != SECRET
    assert "created_by" not in fetched
    assert updated["name"] == "Orders hook v2" and updated["metadata"]["url"].endswith("/v2")
    assert updated["next"].startswith(f"triage_failures connection={created['id']}")
    assert "retry_failed" in updated["next"]
    assert kept_name["name"] == "Orders hook v2"  # name defaults to the current one
    assert "metadata.url" in public_http and "https://" in public_http
    assert "metadata.urll" in unknown_key and "url" in unknown_key
    assert "404" in missing and "list_connections" in missing
    assert "connection_id" in not_uuid and "UUID" in not_uuid and "e.g." in not_uuid
    assert after["metadata"]["url"].endswith("/v3")  # refused updates changed nothing


@pytest.mark.anyio
async def test_fields_and_mappings_with_a_schema_refusal_that_names_the_path(sandbox):
    schema = {
        "schema_version": 1,
        "fields": [
            {"dest": "email", "source": {"type": "path", "value": "email"}, "transforms": [{"type": "lower"}]},
            {"dest": "plan", "source": {"type": "literal", "value": "pro"}, "on_error": "skip_field"},
        ],
    }

    hubspot = await seeded(sandbox, "hubspot")
    async with Client(build_server(settings_for(sandbox))) as client:
        fields = ok(await client.call_tool("get_connection_fields", {"connection_id": hubspot}))
        refreshed = ok(await client.call_tool("get_connection_fields", {"connection_id": hubspot, "refresh": True}))
        generated = ok(await client.call_tool("get_connection_mappings", {"connection_id": hubspot}))
        bad = json.loads(json.dumps(schema))
        bad["fields"].append({"dest": "company", "source": {"type": "path", "value": "user..company"}})
        bad_path = refused(
            await client.call_tool("update_connection_mappings", {"connection_id": hubspot, "schema": bad})
        )
        bad_transform = refused(
            await client.call_tool(
                "update_connection_mappings",
                {"connection_id": hubspot, "schema": {**schema, "fields": [
                    {"dest": "email", "source": {"type": "path", "value": "email"},
                     "transforms": [{"type": "substring", "params": {"start": -1}}]}]}},
            )
        )  # fmt: skip
        stored = ok(
            await client.call_tool(
                "update_connection_mappings", {"connection_id": hubspot, "schema": schema, "name": "Signup"}
            )
        )
        stale = refused(
            await client.call_tool(
                "update_connection_mappings",
                {"connection_id": hubspot, "schema": schema, "expected_version": 7},
            )
        )
        again = ok(await client.call_tool("get_connection_mappings", {"connection_id": hubspot}))

    email = next(f for f in fields["fields"] if f["key"] == "email")
    assert email["type"] == "string" and email.get("required") is True
    assert refreshed["refreshed_at"] >= fields["refreshed_at"]
    assert generated["status"] == "generated" and generated["mapping"]["schema"]["schema_version"] == 1
    assert "meshes://docs/mapping-schema" in generated["next"]
    assert "schema.fields[2].source.value" in bad_path and "e.g." in bad_path and "nothing was sent" in bad_path
    assert "schema.fields[0].transforms[0].params.start" in bad_transform
    assert stored["status"] == "stored" and stored["mapping"]["version"] == 1
    assert stored["mapping"]["schema"]["fields"][1]["source"] == {"type": "literal", "value": "pro"}
    assert "409" in stale and "Nothing was changed" in stale
    assert again["status"] == "stored" and "expected_version=1" in again["next"]


def test_mapping_schema_doc_covers_the_format():
    for term in ("schema_version", "dest", "path", "literal", "transforms", "substring", "on_error", "250"):
        assert term in MAPPING_SCHEMA_DOC


@pytest.mark.anyio
async def test_delete_connection_refused_while_rules_are_active_then_forced(sandbox, webhook_receiver):
    async with Client(build_server(settings_for(sandbox))) as client:
        hook = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Doomed", "metadata": {"url": webhook_receiver.url}},
            )
        )
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": hook["id"], "event": "doomed.test", "metadata": {"action": "send_webhook"}},
            )
        )
        blocked = refused(await client.call_tool("delete_connection", {"connection_id": hook["id"]}))
        still_there = ok(await client.call_tool("get_connection", {"connection_id": hook["id"]}))
        forced = ok(await client.call_tool("delete_connection", {"connection_id": hook["id"], "force_delete": True}))
        gone = refused(await client.call_tool("get_connection", {"connection_id": hook["id"]}))

    assert "409" in blocked and "force_delete" in blocked and "list_rules" in blocked
    assert still_there["id"] == hook["id"]
    assert forced == {"deleted": hook["id"], "type": "webhook"}
    assert "404" in gone


@pytest.mark.anyio
async def test_connection_actions_show_live_ids(sandbox):
    hubspot = await seeded(sandbox, "hubspot")
    async with Client(build_server(settings_for(sandbox))) as client:
        actions = ok(await client.call_tool("get_connection_actions", {"connection_id": hubspot}))

    assert {"id": "5", "name": "Newsletter Subscribers"} in actions["data"]["lists"]
    assert "add_to_list" in actions["actions"]
