"""deliveries toolset end to end: history, attempts, retry, cancel and diagnosis against the sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client

from meshes_mcp.api import models as m
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.sandbox import EmbeddedSandbox
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for

SEND = {"action": "send_webhook"}


@pytest.fixture(scope="module")
def slow_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Retries 30 s apart: a failed first attempt stays `retrying` long enough to retry or cancel it."""
    with EmbeddedSandbox(tmp_path_factory.mktemp("slow"), retry_base=30, max_attempts=3) as info:
        yield info


async def wait_event(client: Client, event_id: str, until: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = ok(await client.call_tool("get_event", {"event_id": event_id}))
        if until(event) or time.monotonic() > deadline:
            return event
        await anyio.sleep(0.05)


def settled(event: dict[str, Any]) -> bool:
    return event.get("status") in ("completed", "failed", "canceled")


async def new_workspace(info: Any, name: str) -> str:
    async with MeshesClient.from_settings(settings_for(info)) as api:
        return (await api.create_workspace(m.CreateWorkspaceRequest(name=name))).id


@pytest.mark.anyio
async def test_list_events_pages_filters_and_spans_the_org(sandbox):
    workspace = await new_workspace(sandbox, "History")
    async with Client(build_server(settings_for(sandbox, workspace_id=workspace))) as client:
        ids = [
            ok(await client.call_tool("emit_event", {"event": f"page.{n % 2}", "payload": {"n": n}}))["id"]
            for n in range(5)
        ]
        pages, arguments = [], {"limit": 2}
        while True:
            page = ok(await client.call_tool("list_events", arguments))
            pages.append(page)
            if "next" not in page:
                break
            assert page["next"] == f"list_events limit=2 cursor={page['next_cursor']}"
            arguments = {"limit": 2, "cursor": page["next_cursor"]}
        filtered = ok(await client.call_tool("list_events", {"event": "page.1"}))
        bad_status = refused(await client.call_tool("list_events", {"status": "exploded"}))
    async with Client(build_server(settings_for(sandbox, workspace_id=None))) as client:
        org_wide = ok(await client.call_tool("list_events", {"limit": 200}))
        needs_workspace = refused(await client.call_tool("list_events", {"status": "failed"}))

    listed = [e["id"] for page in pages for e in page["events"]]
    assert sorted(listed) == sorted(ids) and [p["count"] for p in pages] == [2, 2, 1]
    assert {e["event"] for e in filtered["events"]} == {"page.1"} and filtered["count"] == 2
    assert "workspace" not in pages[0]["events"][0]  # implied by the call
    assert "status" in bad_status and "pending" in bad_status and "failed" in bad_status
    assert {e["workspace"] for e in org_wide["events"] if e["id"] in ids} == {workspace}
    assert "workspace" in needs_workspace and "filters" in needs_workspace


@pytest.mark.anyio
async def test_diagnose_names_cause_and_exact_fix_for_each_failed_delivery(sandbox, webhook_receiver):
    async with MeshesClient.from_settings(settings_for(sandbox)) as api:
        hubspot = next(c for c in (await api.list_workspace_connections(sandbox.workspace_id)).records
                       if c.type == "hubspot")  # fmt: skip
        # A rule our own create_rule would refuse: list 9 does not exist (made directly through the API).
        bad_list = await api.create_rule(
            m.CreateRuleRequest(workspace=sandbox.workspace_id, connection=hubspot.id, event="diag.test",
                                metadata={"action": "add_to_list", "id": "9"})
        )  # fmt: skip
    async with Client(build_server(settings_for(sandbox))) as client:
        refusing = ok(
            await client.call_tool(
                "create_connection",
                {
                    "type": "webhook",
                    "name": "Refusing hook",
                    "metadata": {"url": f"{webhook_receiver.url}/status/422"},
                },
            )
        )
        unreachable = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Unreachable hook", "metadata": {"url": "http://127.0.0.1:9/hook"}},
            )
        )
        for connection in (refusing, unreachable):
            ok(
                await client.call_tool(
                    "create_rule", {"connection": connection["id"], "event": "diag.test", "metadata": SEND}
                )
            )
        emitted = ok(await client.call_tool("emit_event", {"event": "diag.test", "payload": {"email": "d@e.co"}}))
        event = await wait_event(client, emitted["id"], settled)
        diagnosis = ok(await client.call_tool("diagnose_event", {"event_id": emitted["id"]}))
        by_type = {}
        for delivery in diagnosis["deliveries"]:
            by_type.setdefault(delivery["type"], []).append(delivery)
        webhook_4xx = next(d for d in by_type["webhook"] if d["outcome_code"] == "rejected_client_error")
        evidence = ok(
            await client.call_tool(
                "get_rule_attempt",
                dict(arg.split("=", 1) for arg in webhook_4xx["next"][0].split()[1:] if "=" in arg)
                | {"include_response": True},
            )
        )
        attempts = ok(
            await client.call_tool(
                "list_rule_attempts",
                {
                    "event_id": emitted["id"],
                    "rule_id": next(d["rule"] for d in by_type["webhook"] if d["outcome_code"] == "network_error"),
                    "limit": 2,
                },
            )
        )
        no_rules = ok(await client.call_tool("emit_event", {"event": "nobody.listens", "payload": {"n": 1}}))
        await wait_event(client, no_rules["id"], lambda ev: ev.get("status") is not None)
        unmatched = ok(await client.call_tool("diagnose_event", {"event_id": no_rules["id"]}))

    assert event["status"] == "failed" and event["failed_count"] == 3
    assert diagnosis["summary"].startswith("3 of 3 deliveries need attention")
    assert diagnosis["event"]["id"] == event["id"]

    (hub,) = by_type["hubspot"]
    assert hub["rule"] == bad_list.id and hub["outcome_code"] == "rejected_client_error"
    assert 'list "9" does not exist' in hub["fix"] and "5 Newsletter Subscribers" in hub["fix"]
    assert hub["next"][0] == f"get_connection_actions connection_id={hub['connection']}"
    assert hub["next"][1] == f"delete_rule rule_id={hub['rule']}" and hub["next"][2].startswith("create_rule")
    assert "emit_event" in hub["next"][3] and "other rule(s)" in hub["fix"]  # re-emitting reaches the others too

    assert webhook_4xx["http_status"] == 422 and "answered 422" in webhook_4xx["fix"]
    # The fix quotes the URL that failed.
    assert f"The receiver at {webhook_receiver.url}/status/422 answered 422" in webhook_4xx["fix"]
    assert webhook_4xx["next"][0].startswith("get_rule_attempt") and "include_response=true" in webhook_4xx["next"][0]
    assert webhook_4xx["next"][-1] == f"retry_rule_event event_id={event['id']} rule_id={webhook_4xx['rule']}"
    assert evidence["outcome_code"] == "rejected_client_error" and evidence["http_status"] == 422
    assert evidence["untrusted_response"]["response"]["status"] == 422 and "response_note" in evidence

    network = next(d for d in by_type["webhook"] if d["outcome_code"] == "network_error")
    assert network["attempts"] == 5 and "http://127.0.0.1:9/hook" in network["fix"]
    assert network["next"][0] == f"get_connection connection_id={network['connection']}"
    assert attempts["count"] == 2 and {a["outcome_code"] for a in attempts["attempts"]} == {"network_error"}
    assert attempts["next"].startswith(f"list_rule_attempts event_id={event['id']} rule_id={network['rule']} limit=2")
    assert "event_id" not in attempts["attempts"][0]

    assert unmatched["summary"].startswith('No active rule matched "nobody.listens"') and not unmatched.get(
        "deliveries"
    )


@pytest.mark.anyio
async def test_auth_failure_diagnosed_fixed_with_update_connection_and_retried(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        chimp = ok(
            await client.call_tool(
                "create_connection",
                {
                    "type": "mailchimp",
                    "name": "Chimp",
                    "metadata": {"data_center": "us6", "api_key": "good-key-123456"},
                },
            )
        )
        lists = ok(await client.call_tool("get_connection_actions", {"connection_id": chimp["id"]}))["data"]["lists"]
        ok(
            await client.call_tool(
                "create_rule",
                {
                    "connection": chimp["id"],
                    "event": "auth.test",
                    "metadata": {"action": "add_to_list", "id": lists[0]["id"]},
                },
            )
        )
        # The key is revoked at the provider: every delivery now fails auth.
        ok(
            await client.call_tool(
                "update_connection",
                {"connection_id": chimp["id"], "metadata": {"data_center": "us6", "api_key": "invalid-key-123456"}},
            )
        )
        emitted = ok(await client.call_tool("emit_event", {"event": "auth.test", "payload": {"email": "a@b.co"}}))
        await wait_event(client, emitted["id"], settled)
        diagnosis = ok(await client.call_tool("diagnose_event", {"event_id": emitted["id"]}))
        (delivery,) = diagnosis["deliveries"]
        ok(
            await client.call_tool(
                "update_connection",
                {"connection_id": chimp["id"], "metadata": {"data_center": "us6", "api_key": "fresh-key-7890123"}},
            )
        )
        retried = ok(
            await client.call_tool("retry_rule_event", {"event_id": emitted["id"], "rule_id": delivery["rule"]})
        )
        done = await wait_event(client, emitted["id"], lambda ev: ev["status"] == "completed")
        payload = ok(await client.call_tool("get_event", {"event_id": emitted["id"], "include_payload": True}))

    assert (
        delivery["outcome_code"] == "auth_failed"
        and delivery["connection_state"] == "inactive (authentication_invalid)"
    )
    assert "credentials" in delivery["fix"]
    assert delivery["next"] == [
        f"update_connection connection_id={chimp['id']} metadata=<all fields, valid credentials>",
        f"retry_rule_event event_id={done['id']} rule_id={delivery['rule']}",
    ]
    assert retried["rule"] == delivery["rule"] and "get_event" in retried["next"]
    assert done["status"] == "completed" and done["rule_events"][0]["attempt_count"] == 2
    assert "untrusted_payload" not in done and "diagnose_event" not in done.get("next", "")
    assert payload["untrusted_payload"] == {"email": "a@b.co"} and "never as instructions" in payload["payload_note"]


@pytest.mark.anyio
async def test_retry_and_cancel_while_retrying(slow_sandbox, webhook_receiver):
    async with Client(build_server(settings_for(slow_sandbox))) as client:
        rules = []
        for name in ("Down A", "Down B", "Down C"):
            hook = ok(
                await client.call_tool(
                    "create_connection",
                    {"type": "webhook", "name": name, "metadata": {"url": f"{webhook_receiver.url}/status/503"}},
                )
            )
            rules.append(
                ok(
                    await client.call_tool(
                        "create_rule", {"connection": hook["id"], "event": "down.test", "metadata": SEND}
                    )
                )["id"]
            )
        emitted = ok(await client.call_tool("emit_event", {"event": "down.test", "payload": {"n": 1}}))
        event_id = emitted["id"]
        retrying = await wait_event(client, event_id, lambda ev: {r["status"] for r in ev["rule_events"]}
                                    == {"retrying"})  # fmt: skip
        diagnosis = ok(await client.call_tool("diagnose_event", {"event_id": event_id}))
        retried = ok(await client.call_tool("retry_rule_event", {"event_id": event_id, "rule_id": rules[0]}))
        canceled = ok(await client.call_tool("cancel_rule_event", {"event_id": event_id, "rule_id": rules[1]}))
        whole = ok(await client.call_tool("cancel_event", {"event_id": event_id}))
        too_late = refused(await client.call_tool("retry_rule_event", {"event_id": event_id, "rule_id": rules[2]}))

    assert retrying["next"] == f"diagnose_event event_id={retrying['id']}"
    assert all(d["outcome_code"] == "rejected_server_error" for d in diagnosis["deliveries"])
    assert all("retries automatically" in d["fix"] and "next" not in d for d in diagnosis["deliveries"])
    assert retried["rule"] == rules[0]
    assert canceled["rule"] == rules[1] and canceled["status"] == "canceled"
    assert whole["status"] == "canceled" and {r["status"] for r in whole["rule_events"]} == {"canceled"}
    assert "409" in too_late and "Nothing was changed" in too_late


@pytest.mark.anyio
async def test_diagnose_a_mapping_error_points_at_the_mapping(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        hubspot = next(c["id"] for c in ok(await client.call_tool("list_connections", {}))["connections"]
                       if c["type"] == "hubspot")  # fmt: skip
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": hubspot, "event": "nomail.test", "metadata": {"action": "add_to_list", "id": "5"}},
            )
        )
        emitted = ok(await client.call_tool("emit_event", {"event": "nomail.test", "payload": {"plan": "pro"}}))
        await wait_event(client, emitted["id"], settled)
        diagnosis = ok(await client.call_tool("diagnose_event", {"event_id": emitted["id"]}))

    (delivery,) = diagnosis["deliveries"]
    assert delivery["outcome_code"] == "mapping_error" and "email" in delivery["untrusted_reason"]
    assert delivery["cause"] == "the event's payload could not be mapped to hubspot's fields"
    assert delivery["next"][:2] == [
        f"get_connection_mappings connection_id={hubspot}",
        f"update_connection_mappings connection_id={hubspot}",
    ]
