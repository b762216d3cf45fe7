"""A caller's own text repeated in an error is cut short: a 100 KB tool name, argument name, prompt name or
resource URI comes back as its first characters and an ellipsis, through a real MCP session."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from meshes_mcp.config import Settings
from meshes_mcp.server.app import build_server
from tests.support import refused

HUGE = 100_000
SHORT_ENOUGH = 2_000  # an error's whole text, however long the input
KEYS = {
    "api_url": "http://127.0.0.1:9",  # nothing listens: every case here is refused before a request
    "access_key": "mk_abcdefghijklmnopqrstuv",
    "secret_key": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
    "org_id": "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b",
}


def server():  # type: ignore[no-untyped-def]
    return build_server(Settings(**KEYS, toolsets="all"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "uri",
    ["meshes://" + "u" * HUGE, "meshes://events/" + "e" * HUGE, "meshes://integrations/" + "t" * HUGE],
)
async def test_a_huge_resource_uri_is_echoed_in_part(uri: str) -> None:
    async with Client(server()) as client:
        with pytest.raises(MCPError) as refusal:
            await client.read_resource(uri)
    error = refusal.value.error
    assert len(error.message) < SHORT_ENOUGH and len(str(error.data)) < SHORT_ENOUGH
    assert uri[:100] in error.message and "…" in error.message


@pytest.mark.anyio
async def test_huge_tool_and_argument_names_are_echoed_in_part() -> None:
    arguments = {"a" * HUGE: 1, **{f"extra_{n}": n for n in range(50)}}
    async with Client(server()) as client:
        unknown_tool = refused(await client.call_tool("t" * HUGE, {}))
        unknown_arguments = refused(await client.call_tool("list_workspaces", arguments))
        unknown_value = refused(await client.call_tool("list_integrations", {"type": "i" * HUGE}))
    assert len(unknown_tool) < SHORT_ENOUGH and unknown_tool.startswith("Unknown tool: ttt") and "…" in unknown_tool
    assert len(unknown_arguments) < SHORT_ENOUGH
    assert "and 41 more; nothing was sent" in unknown_arguments
    assert len(unknown_value) < SHORT_ENOUGH and 'unknown integration "iii' in unknown_value


@pytest.mark.anyio
async def test_a_huge_prompt_name_is_echoed_in_part() -> None:
    async with Client(server()) as client:
        with pytest.raises(MCPError) as refusal:
            await client.get_prompt("p" * HUGE, {})
    assert len(refusal.value.error.message) < SHORT_ENOUGH
    assert refusal.value.error.message.startswith("Unknown prompt: ppp")


@pytest.mark.anyio
async def test_a_prompt_missing_an_argument_is_the_callers_error_not_the_servers() -> None:
    async with Client(server()) as client:
        with pytest.raises(MCPError) as refusal:
            await client.get_prompt("wire_integration", {"event": "e" * HUGE})
    assert refusal.value.error.code == INVALID_PARAMS
    assert refusal.value.error.message == "Missing required arguments: {'integration'}"
