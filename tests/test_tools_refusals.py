"""Each tool refuses what it cannot do with a message naming the field, the rule and an example or the
next call; nothing is changed. (Happy paths are in the other test_tools_* modules.)"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from meshes_mcp.api.client import MeshesClient
from meshes_mcp.server.app import build_server
from tests.conftest import SandboxApi
from tests.support import settings_for

MISSING = "3f0c9a52-8d1e-4a7b-9c55-0e4b1f2a6d10"


@pytest.fixture(scope="module")
def ids(sandbox_api: SandboxApi, webhook_receiver: Any) -> dict[str, str]:
    """A webhook connection with a rule, and an event whose delivery to it failed for good."""
    hook, rule = sandbox_api.webhook_rule(f"{webhook_receiver.url}/status/400", "refuse.test", name="Refusing")
    emitted = sandbox_api.post(
        "/events", json={"workspace": sandbox_api.info.workspace_id, "event": "refuse.test", "payload": {"n": 1}}
    )
    assert emitted.status_code == 201, emitted.text
    event = emitted.json()["event"]["id"]
    sandbox_api.wait_event(event, until=lambda ev: ev["status"] == "failed")
    return {"hook": hook, "rule": rule, "event": event}


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("list_connections", {"workspace": "acme"}, ["workspace: must be a UUID, e.g.", "list_workspaces"]),
    ("list_connections", {"limit": 500}, ["limit: must be an integer from 1 to 200, e.g. 50"]),
    ("get_connection_actions", {"connection_id": "hook"}, ["connection_id: must be a UUID, e.g."]),
    ("get_connection_fields", {"connection_id": "{hook}"}, ["(422)", "no field mapping"]),
    ("get_connection_mappings", {"connection_id": "{hook}"}, ["(422)", "no field mapping"]),
    ("update_connection_mappings", {"connection_id": "{hook}", "schema": {"fields": []}},
     ["schema.schema_version: is required, e.g. 1", "nothing was sent"]),
    ("update_connection_mappings",
     {"connection_id": "{hook}", "schema": {"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "col"}}]}},
     ["schema.fields[0].source.type", "'literal'", "'path'"]),
    ("list_rules", {"limit": 0}, ["limit: must be an integer from 1 to 200, e.g. 50"]),
    ("get_rule", {"rule_id": MISSING}, ["Not found (404)", "list_rules"]),
    ("delete_rule", {"rule_id": MISSING}, ["Not found (404)", "list_rules"]),
    ("get_event", {"event_id": MISSING}, ["Not found (404)", "list_events"]),
    ("list_rule_attempts", {"event_id": "evt_1", "rule_id": "{rule}"}, ["event_id: must be a UUID, e.g."]),
    ("get_rule_attempt", {"event_id": "{event}", "rule_id": "{rule}", "attempt_id": MISSING},
     ["Not found (404)", "list_rule_attempts"]),
    ("cancel_rule_event", {"event_id": "{event}", "rule_id": "{rule}"}, ["Conflict (409)", "Nothing was changed"]),
    ("cancel_event", {"event_id": MISSING}, ["Not found (404)", "list_events"]),
    ("diagnose_event", {"event_id": MISSING}, ["Not found (404)", "list_events"]),
    ("retry_rule_event", {"event_id": "{event}", "rule_id": "rule-1"}, ["rule_id: must be a UUID, e.g."]),
    ("list_workspaces", {"limit": 0}, ["limit: must be an integer from 1 to 200, e.g. 50"]),
    ("list_event_types", {"workspace_id": "default"}, ["workspace_id: must be a UUID, e.g."]),
    ("list_resources", {"workspace_id": MISSING}, ["Not found (404)", "list_workspaces"]),
    ("update_workspace", {"name": "x"}, ["name: must be at least 3 characters", "e.g."]),
    ("list_sessions", {"cursor": "not a cursor!"}, ["cursor", "e.g."]),
    ("list_sessions", {"status": "expired"}, ["status", "active", "revoked"]),
    ("create_session", {"role": "root"}, ["role", "member", "admin", "owner"]),
    ("create_session", {"allowed_origins": ["app.example.com"]}, ["allowed_origins[0]", "e.g."]),
    ("refresh_session", {"session_id": "sess_does_not_exist"}, ["Not found (404)", "list_sessions"]),
    ("revoke_session", {"session_id": "a/b"}, ["session_id: must be a session id, e.g."]),
]  # fmt: skip


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.anyio
async def test_refusals_name_the_field_and_the_fix(sandbox, ids):
    async with Client(build_server(settings_for(sandbox))) as client:
        results = [(tool, await client.call_tool(tool, fill(args, ids))) for tool, args, _ in CASES]

    failures = []
    for (tool, args, expected), (_, result) in zip(CASES, results, strict=True):
        text = result.content[0].text
        if not result.is_error or not all(part in text for part in expected):
            failures.append(f"{tool} {args}: {text}")
        assert result.structured_content is None  # no structured content on errors
        assert "pydantic" not in text and "Traceback" not in text
    assert not failures, "\n".join(failures)


@pytest.mark.anyio
async def test_refused_cancel_changed_nothing(sandbox, ids):
    async with Client(build_server(settings_for(sandbox))) as client:
        refused = await client.call_tool("cancel_event", {"event_id": ids["event"]})
    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        event = await api.get_event(ids["event"])

    assert refused.is_error and "409" in refused.content[0].text
    assert event.status == "failed" and [r.status for r in event.rule_events or []] == ["failed"]
