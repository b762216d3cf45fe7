"""Malformed arguments thrown at every tool: each call answers, or refuses readably; none crashes.

A crash is what the SDK reports as "Error executing tool <name>" (an exception the tool did not
anticipate). Anything else must be a result or an isError message without a traceback or pydantic's
raw text.
"""

from __future__ import annotations

import string
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from meshes_mcp.server.app import build_server
from tests.support import settings_for

UUIDS = st.uuids().map(str)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(alphabet=string.printable, max_size=30)
    | UUIDS
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each known parameter present or not, holding any JSON value; sometimes an unknown key too."""
    keys = list(schema.get("properties", {}))
    known = st.fixed_dictionaries({}, optional={key: JSON for key in keys})
    extra = st.dictionaries(st.sampled_from(["bogus", "workspace_id", "limit", "metadata"]), JSON, max_size=1)
    return st.tuples(known, extra).map(lambda pair: {**pair[1], **pair[0]})


@pytest.fixture(scope="module")
def server(sandbox: Any) -> Any:
    return build_server(settings_for(sandbox))


@pytest.fixture(scope="module")
def schemas(server: Any) -> dict[str, dict[str, Any]]:
    async def go():
        async with Client(server) as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    return anyio.run(go)


def test_every_tool_is_fuzzed(schemas):
    assert set(schemas) == set(TOOLS)  # a new tool must join the list below


TOOLS = [
    "list_integrations",
    "emit_event",
    "emit_events",
    "replay_events",
    "list_connections",
    "get_connection",
    "create_connection",
    "update_connection",
    "delete_connection",
    "get_connection_actions",
    "get_connection_fields",
    "get_connection_mappings",
    "update_connection_mappings",
    "list_rules",
    "get_rule",
    "create_rule",
    "delete_rule",
    "list_events",
    "get_event",
    "list_rule_attempts",
    "get_rule_attempt",
    "retry_rule_event",
    "cancel_rule_event",
    "cancel_event",
    "diagnose_event",
    "triage_failures",
    "retry_failed",
    "list_workspaces",
    "get_workspace",
    "create_workspace",
    "update_workspace",
    "list_event_types",
    "list_resources",
    "create_session",
    "list_sessions",
    "refresh_session",
    "revoke_session",
]


@pytest.mark.parametrize("name", TOOLS)
def test_no_tool_crashes_on_malformed_arguments(server, schemas, name):
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(arguments=arguments_for(schemas[name]))
    def one_call(arguments: dict[str, Any]) -> None:
        async def go():
            async with Client(server) as client:
                return await client.call_tool(name, arguments)

        result = anyio.run(go)
        if result.is_error:
            text = result.content[0].text
            assert not text.startswith("Error executing tool"), (arguments, text)
            assert "Traceback" not in text and "errors.pydantic.dev" not in text, (arguments, text)

    one_call()
