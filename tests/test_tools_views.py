"""Typed views: what tools show of rules, connections, events and rule events is described field by field
in their output schemas, and every real result validates against the schema of its tool."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from mcp import Client

from meshes_mcp.server.app import build_server
from tests.support import ok, settings_for

# Each list tool and the key of its rows.
ROWS = {"list_rules": "rules", "list_connections": "connections", "list_events": "events"}


def row_schema(tool: Any, key: str) -> dict[str, Any]:
    schema = tool.output_schema
    items = schema["properties"][key]["items"]
    return schema["$defs"][items["$ref"].rsplit("/", 1)[-1]] if "$ref" in items else items


@pytest.fixture(scope="module")
async def seen(sandbox, anyio_backend) -> dict[str, Any]:
    """Every view once, read back through a real session, with the tools' output schemas (async: it asks for
    `anyio_backend`, so that the synchronous tests below can use it)."""
    async with Client(build_server(settings_for(sandbox))) as client:
        schemas = {tool.name: tool for tool in (await client.list_tools()).tools}
        hook = {"url": "http://127.0.0.1:9/hook", "custom_headers": {"X-Key": "k" * 20}}
        webhook = {"type": "webhook", "name": "Views", "metadata": hook}
        conn = ok(await client.call_tool("create_connection", webhook))
        rule = {"connection": conn["id"], "event": "view.test", "metadata": {"action": "send_webhook"}}
        created = ok(await client.call_tool("create_rule", rule))
        emitted = ok(await client.call_tool("emit_event", {"event": "view.test", "payload": {"n": 1}}))
        results = {
            "get_connection": ok(await client.call_tool("get_connection", {"connection_id": conn["id"]})),
            "create_connection": conn,
            "get_rule": ok(await client.call_tool("get_rule", {"rule_id": created["id"]})),
            "create_rule": created,
            "get_event": ok(await client.call_tool("get_event", {"event_id": emitted["id"], "include_payload": True})),
            "list_rules": ok(await client.call_tool("list_rules", {"event": "view.test"})),
            "list_connections": ok(await client.call_tool("list_connections", {})),
            "list_events": ok(await client.call_tool("list_events", {"event": "view.test"})),
        }
    return {"schemas": schemas, "results": results}


def test_list_rows_are_described_field_by_field(seen):
    for tool_name, key in ROWS.items():
        schema = row_schema(seen["schemas"][tool_name], key)
        assert schema.get("additionalProperties") is False, tool_name
        assert {"id"} <= set(schema["required"]) and len(schema["properties"]) >= 5, tool_name
    rule_row = row_schema(seen["schemas"]["list_rules"], "rules")
    assert rule_row["properties"]["metadata"] == {"type": "object"}
    assert rule_row["properties"]["active"] == {"type": "boolean"}  # never null: absent when not shown


def test_every_view_validates_against_its_tools_output_schema(seen):
    for tool_name, result in seen["results"].items():
        jsonschema.validate(result, seen["schemas"][tool_name].output_schema)
    for tool_name, key in ROWS.items():
        assert seen["results"][tool_name][key], tool_name  # the rows were there to check


def test_views_keep_results_compact_and_secrets_masked(seen):
    connection = seen["results"]["get_connection"]
    assert connection["metadata"]["custom_headers"] == {"X-Key": "[redacted]"}
    assert "k" * 20 not in str(seen["results"])
    (row,) = [c for c in seen["results"]["list_connections"]["connections"] if c["id"] == connection["id"]]
    assert set(row) == {"id", "name", "type"}  # active, hidden and the workspace only when they say something
    rule_row = seen["results"]["list_rules"]["rules"][0]
    assert set(rule_row) == {"id", "connection", "type", "event", "metadata"}
    event = seen["results"]["get_event"]
    assert set(event["rule_events"][0]) >= {"id", "rule", "connection", "status"}
    assert event["untrusted_payload"] == {"n": 1}


def test_a_row_that_breaks_its_schema_is_caught(seen):
    rules = seen["results"]["list_rules"]
    broken = {**rules, "rules": [{**rules["rules"][0], "surprise": 1}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, seen["schemas"]["list_rules"].output_schema)
