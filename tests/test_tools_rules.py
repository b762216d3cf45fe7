"""rules toolset end to end, against the sandbox over real HTTP."""

from __future__ import annotations

import pytest
from mcp import Client

from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for


@pytest.mark.anyio
async def test_rules_list_filter_get_and_delete(sandbox, webhook_receiver):
    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        other = (await api.create_workspace(m.CreateWorkspaceRequest(name="Rules elsewhere"))).id
    async with Client(build_server(settings_for(sandbox))) as client:
        hook = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Rule hook", "metadata": {"url": webhook_receiver.url}},
            )
        )
        elsewhere = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Other hook", "metadata": {"url": webhook_receiver.url},
                 "workspace": other},
            )
        )  # fmt: skip
        send = {"action": "send_webhook"}
        signup = ok(
            await client.call_tool(
                "create_rule", {"connection": hook["id"], "event": "user.signup", "metadata": send,
                                "resource": "user"}
            )
        )  # fmt: skip
        ok(await client.call_tool("create_rule", {"connection": hook["id"], "event": "order.paid", "metadata": send}))
        ok(await client.call_tool("create_rule", {"connection": elsewhere["id"], "event": "user.signup",
                                                  "metadata": send}))  # fmt: skip
        by_event = ok(await client.call_tool("list_rules", {"event": "user.signup"}))
        by_resource = ok(await client.call_tool("list_rules", {"resource": "user"}))
        fetched = ok(await client.call_tool("get_rule", {"rule_id": signup["id"]}))
        bad_id = refused(await client.call_tool("get_rule", {"rule_id": "rule-1"}))
        deleted = ok(await client.call_tool("delete_rule", {"rule_id": signup["id"]}))
        after = ok(await client.call_tool("list_rules", {"event": "user.signup"}))
    async with Client(build_server(settings_for(sandbox, workspace_id=None))) as client:
        org_wide = ok(await client.call_tool("list_rules", {"event": "user.signup"}))

    assert [r["id"] for r in by_event["rules"]] == [signup["id"]]
    row = by_event["rules"][0]
    assert row["metadata"] == {"action": "send_webhook"} and row["type"] == "webhook" and "created_by" not in row
    assert [r["id"] for r in by_resource["rules"]] == [signup["id"]]
    assert fetched["id"] == signup["id"] and fetched["event"] == "user.signup" and fetched["resource"] == "user"
    assert "rule_id" in bad_id and "UUID" in bad_id and "e.g." in bad_id
    assert deleted["deleted"] == signup["id"] and deleted["event"] == "user.signup"
    assert "rules" not in after and after["count"] == 0
    assert {r["workspace"] for r in org_wide["rules"]} == {other}  # the deleted one is gone everywhere


@pytest.mark.anyio
async def test_list_rules_pages_with_a_next_call(sandbox, webhook_receiver):
    async with Client(build_server(settings_for(sandbox))) as client:
        hook = ok(
            await client.call_tool(
                "create_connection", {"type": "webhook", "name": "Paged", "metadata": {"url": webhook_receiver.url}}
            )
        )
        for n in range(3):
            ok(await client.call_tool("create_rule", {"connection": hook["id"], "event": f"page.{n}",
                                                      "metadata": {"action": "send_webhook"}}))  # fmt: skip
        first = ok(await client.call_tool("list_rules", {"limit": 2}))
        second = ok(await client.call_tool("list_rules", {"limit": 2, "cursor": first["next_cursor"]}))

    assert len(first["rules"]) == 2 and first["next"] == f"list_rules limit=2 cursor={first['next_cursor']}"
    assert not {r["id"] for r in first["rules"]} & {r["id"] for r in second["rules"]}
