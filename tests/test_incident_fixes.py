"""Fix-aware incident groups on the practice incident (tenth size): a revoked Mailchimp API key, a webhook
re-pointed at an address where nothing listens, a HubSpot OAuth grant needing a reconnect. Before each
fix, triage_failures, diagnose_event and get_connection ask for the step the integration's authentication
type takes; after it (update_connection, the sandbox's reconnect), each group says what changed and when,
has no call left but its `then` retry, and following `then` delivers. A real MCP client session against
an embedded sandbox over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client

from meshes_mcp.sandbox.scenarios.incident import GONE_URL, INBOX_PATH
from meshes_mcp.sandbox.scenarios.practice import reconnect_from_cli
from meshes_mcp.server.app import build_server
from tests.support import ok, settings_for
from tests.test_incident_tools import args_of
from tests.test_scenario_tools import practice

__all__ = ["practice"]  # the tenth-size practice incident, a fresh one for this module


def by_type(triage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["connection"]["type"]: group for group in triage["groups"]}


def delivery_to(diagnosis: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(d for d in diagnosis["deliveries"] if d["type"] == kind)


@pytest.mark.anyio
async def test_each_group_asks_for_its_own_fix_then_says_the_fix_is_in_and_its_retry_delivers(practice):
    assert practice.info is not None and practice.scenario is not None
    connections = practice.scenario["connections"]
    inbox_url = practice.info.api_url.removesuffix("/api/v1") + INBOX_PATH
    settings = settings_for(practice.info, workspace_id=practice.scenario["workspace_id"])
    async with Client(build_server(settings)) as client:
        before = by_type(ok(await client.call_tool("triage_failures", {})))
        diagnosed = {
            kind: ok(await client.call_tool("diagnose_event", {"event_id": before[kind]["samples"][0]}))
            for kind in ("hubspot", "mailchimp", "webhook")
        }
        warnings = {
            kind: ok(await client.call_tool("get_connection", {"connection_id": connections[kind]})).get("warning")
            for kind in ("hubspot", "mailchimp", "webhook")
        }

        new_key = {"data_center": "us21", "api_key": "0a1b2c3d4e-us21"}
        updated = ok(await client.call_tool("update_connection", {"connection_id": connections["mailchimp"],
                                                                  "metadata": new_key}))  # fmt: skip
        ok(await client.call_tool("update_connection", {"connection_id": connections["webhook"],
                                                        "metadata": {"url": inbox_url}}))  # fmt: skip
        assert reconnect_from_cli(practice.data_dir, connections["hubspot"])["reconnected"] is True
        now = {
            kind: ok(await client.call_tool("get_connection", {"connection_id": connections[kind]}))
            for kind in ("hubspot", "mailchimp", "webhook")
        }
        after = by_type(ok(await client.call_tool("triage_failures", {})))
        rediagnosed = ok(await client.call_tool("diagnose_event", {"event_id": after["hubspot"]["samples"][0]}))
        retried = {kind: ok(await client.call_tool("retry_failed", args_of(group["then"])))
                   for kind, group in after.items()}  # fmt: skip
        left = ok(await client.call_tool("triage_failures", {}))

    # Before: each group asks for what its authentication type takes, and for nothing else.
    assert set(before) == {"hubspot", "mailchimp", "webhook"} and all("fix_in" not in g for g in before.values())
    hubspot, mailchimp, webhook = before["hubspot"], before["mailchimp"], before["webhook"]
    assert "reconnects the HubSpot account" in hubspot["fix"] and "credentials" not in hubspot["fix"]
    assert "calls" not in hubspot and hubspot["then"].startswith(f"retry_failed group={hubspot['key']}")
    assert mailchimp["calls"] == [f"update_connection connection_id={connections['mailchimp']} "
                                  "metadata=<all fields, valid credentials>"]  # fmt: skip
    assert "reconnect" not in mailchimp["fix"].lower()
    # The webhook's fix quotes the URL that failed: the connection has not changed since, so it is the current one.
    assert f"The destination {GONE_URL} could not be reached:" in webhook["fix"]
    assert webhook["outcome_code"] == "network_error" and "in time" not in webhook["fix"]  # that is a timeout
    # diagnose_event says the same per delivery.
    hub_delivery = delivery_to(diagnosed["hubspot"], "hubspot")
    assert "reconnects the HubSpot account" in hub_delivery["fix"]
    assert not any(call.startswith("update_connection") for call in hub_delivery["next"])
    assert delivery_to(diagnosed["mailchimp"], "mailchimp")["next"][0].startswith("update_connection")
    assert GONE_URL in delivery_to(diagnosed["webhook"], "webhook")["fix"]
    # get_connection's warning names the step of the connection's type and reason.
    assert "oauth_reauthorization_required" in warnings["hubspot"] and "reconnects the HubSpot" in warnings["hubspot"]
    assert "update_connection" not in warnings["hubspot"]
    assert "authentication_invalid" in warnings["mailchimp"] and "update_connection" in warnings["mailchimp"]
    assert "reconnect" not in warnings["mailchimp"] and warnings["webhook"] is None
    # update_connection hands over to the fix-aware triage and the retry.
    assert updated["next"].startswith(f"triage_failures connection={connections['mailchimp']}")
    assert "retry_failed" in updated["next"]

    # After: same groups, same keys; each says what changed and when, and only the retry is left.
    assert {kind: g["key"] for kind, g in after.items()} == {kind: g["key"] for kind, g in before.items()}
    for kind, group in after.items():
        assert group["fix_in"]["at"] == now[kind]["updated_at"], kind
        assert "after the last failure at " in group["fix_in"]["what"], kind
        assert "calls" not in group and group["then"] == before[kind]["then"], kind
        assert group["fix"].startswith("The fix is in: "), kind
    assert "reconnected" in after["hubspot"]["fix_in"]["what"]
    assert "credentials had been rejected" in after["mailchimp"]["fix_in"]["what"]
    assert "could not be reached" not in after["webhook"]["fix"] and inbox_url not in str(after["webhook"])
    hub_delivery = delivery_to(rediagnosed, "hubspot")
    assert hub_delivery["fix_in"]["at"] == now["hubspot"]["updated_at"]
    assert [call.split()[0] for call in hub_delivery["next"]] == ["retry_rule_event"]

    # Following each `then` delivers the whole group, once.
    for kind, result in retried.items():
        failed = before[kind]["failed"]
        assert result["retried"] == failed and result["outcome"]["delivered"] == failed, kind
    assert left["count"] == 0
    inbox = httpx2.get(inbox_url, trust_env=False).json()
    assert inbox["deliveries"] == before["webhook"]["failed"] and inbox["duplicates"] == 0
