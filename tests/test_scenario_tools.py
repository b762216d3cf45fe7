"""The incident scenario worked through the MCP tools, as an agent would: triage → fix → retry_failed with
wait_seconds → triage again shows nothing left. On the tenth-size copy the demo uses (the same causes),
in a real MCP client session against an embedded sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client

from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.sandbox.scenarios.incident import INBOX_PATH
from meshes_mcp.sandbox.scenarios.practice import reconnect_from_cli
from meshes_mcp.server.app import build_server
from tests.support import settings_for

INCIDENT_TOOLS = {"triage_failures", "retry_failed"}


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSandbox]:
    sandbox = EmbeddedSandbox(tmp_path_factory.mktemp("practice"), retry_base=0.05, scenario="incident-demo")
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.mark.anyio
async def test_the_incident_loop_ends_with_nothing_left_and_nothing_delivered_twice(practice):
    if not await incident_loop(practice):
        pytest.skip("triage_failures / retry_failed are not in this build")


async def incident_loop(sandbox: EmbeddedSandbox) -> bool:
    assert sandbox.info is not None and sandbox.scenario is not None
    settings = settings_for(sandbox.info, workspace_id=sandbox.scenario["workspace_id"])
    async with Client(build_server(settings)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        if not names >= INCIDENT_TOOLS:
            return False
        triage = await call(client, "triage_failures", {})
        causes = {(g["connection"]["type"], g["outcome_code"]) for g in triage["groups"]}
        assert causes == {("mailchimp", "auth_failed"), ("webhook", "network_error"), ("hubspot", "auth_failed")}
        summary = sandbox.scenario["summary"]
        assert triage["failing"] == sum(d["failed"] for d in summary["destinations"].values())

        connections = sandbox.scenario["connections"]
        inbox_url = sandbox.info.api_url.removesuffix("/api/v1") + INBOX_PATH
        await call(
            client,
            "update_connection",
            {
                "connection_id": connections["mailchimp"],
                "metadata": {"data_center": "us21", "api_key": "0a1b2c3d4e-us21"},
            },
        )
        await call(client, "update_connection", {"connection_id": connections["webhook"],
                                                 "metadata": {"url": inbox_url}})  # fmt: skip
        assert reconnect_from_cli(sandbox.data_dir, connections["hubspot"])["reconnected"] is True

        retried = await call(client, "retry_failed", {"wait_seconds": 60, "max_retries": triage["failing"]})
        assert retried["retried"] == triage["failing"]
        assert retried["outcome"]["settled"] is True and retried["outcome"]["delivered"] == triage["failing"]
        after = await call(client, "triage_failures", {})
        assert after.get("groups", []) == []

    counts = httpx2.get(inbox_url.replace(INBOX_PATH, "/sandbox/inbox/signups"), trust_env=False).json()
    assert counts["deliveries"] == summary["destinations"]["webhook"]["failed"] and counts["duplicates"] == 0
    return True


async def call(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content[0].text
    return result.structured_content or {}
