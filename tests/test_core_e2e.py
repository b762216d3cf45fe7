"""The six mission tools and the resources end to end: MCP client → server → HTTP → sandbox → receiver."""

from __future__ import annotations

import json
import sys
import time

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ResourceTemplateReference

from meshes_mcp.api.auth import MachineKey
from meshes_mcp.api.client import MeshesClient
from meshes_mcp.api.models import UpdateConnectionRequest
from meshes_mcp.config import Settings
from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for

MISSION_TOOLS = {
    "emit_event",
    "list_integrations",
    "create_connection",
    "get_connection_actions",
    "create_rule",
    "retry_rule_event",
}
CANARY = "sk_live_CANARY_7f3a9c2e1b5d4f6a8e0c"


def api_for(info) -> MeshesClient:
    """An independent path to the sandbox, to check what the tools did."""
    return MeshesClient(info.api_url, machine_key=MachineKey(info.access_key, info.secret_key, info.organization_id))


async def connection_of_type(info, type_: str) -> str:
    async with api_for(info) as api:
        page = await api.list_workspace_connections(info.workspace_id)
    return next(c.id for c in page.records if c.type == type_)


async def wait_for_event(info, event_id: str, *, until=lambda ev: ev.status in ("completed", "failed"), timeout=20.0):
    deadline = time.monotonic() + timeout
    async with api_for(info) as api:
        while True:
            event = await api.get_event(event_id)
            if until(event) or time.monotonic() > deadline:
                return event
            await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_wire_hubspot_and_webhook_then_deliver(sandbox, webhook_receiver):
    hook_url = f"{webhook_receiver.url}/hooks/signups"

    hubspot = await connection_of_type(sandbox, "hubspot")
    async with Client(build_server(settings_for(sandbox))) as client:
        listed = ok(await client.call_tool("list_integrations", {}))
        assert {"type": "hubspot", "name": "HubSpot", "auth": "oauth"}.items() <= next(
            i for i in listed["integrations"] if i["type"] == "hubspot"
        ).items()
        detail = ok(await client.call_tool("list_integrations", {"type": "hubspot"}))["integrations"][0]
        assert detail["actions"]["update_property"]["fields"] == ["id", "value"]

        actions = ok(await client.call_tool("get_connection_actions", {"connection_id": hubspot}))
        lists = {item["id"]: item["name"] for item in actions["data"]["lists"]}
        assert lists["5"] == "Newsletter Subscribers"
        assert "add_to_list" in actions["actions"]

        wrong = refused(
            await client.call_tool(
                "create_rule",
                {"connection": hubspot, "event": "user.signup", "metadata": {"action": "add_to_list", "id": "9"}},
            )
        )
        assert "metadata.id" in wrong and '"9"' in wrong and "5 Newsletter Subscribers" in wrong

        no_action = refused(
            await client.call_tool(
                "create_rule", {"connection": hubspot, "event": "user.signup", "metadata": {"action": "subscribe"}}
            )
        )
        assert "add_to_list" in no_action and "update_property" in no_action

        rule = ok(
            await client.call_tool(
                "create_rule",
                {"connection": hubspot, "event": "user.signup", "metadata": {"action": "add_to_list", "id": "5"}},
            )
        )
        assert rule["workspace"] == sandbox.workspace_id and "emit_event" in rule["next"]

        webhook = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Signup hook", "metadata": {"url": hook_url}},
            )
        )
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": webhook["id"], "event": "user.signup", "metadata": {"action": "send_webhook"}},
            )
        )
        emitted = ok(
            await client.call_tool(
                "emit_event",
                {"event": "user.signup", "payload": {"email": "jane@example.com", "plan": "pro"}},
            )
        )
        assert "get_event" in emitted["next"]
    event = await wait_for_event(sandbox, emitted["id"])
    assert event.status == "completed" and event.total_rules == 2 and event.completed_count == 2

    (receipt,) = webhook_receiver.matching("/hooks/signups")
    body = receipt.json()
    assert body["payload"] == {"email": "jane@example.com", "plan": "pro"}
    assert body["event"] == "user.signup" and body["uuid"] == emitted["id"]


@pytest.mark.anyio
async def test_create_connection_refusals_name_field_rule_and_example(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:

        async def create(type_: str, metadata: dict, name: str = "Test connection") -> str:
            return refused(
                await client.call_tool("create_connection", {"type": type_, "name": name, "metadata": metadata})
            )

        oauth = await create("hubspot", {})
        assert "dashboard" in oauth and "list_connections" in oauth
        public_http = await create("webhook", {"url": "http://example.com/hooks"})
        assert "metadata.url" in public_http and "https://" in public_http
        missing = await create("mailchimp", {"data_center": "us6"})
        assert "metadata.api_key" in missing and "required" in missing
        typo = await create("mailchimp", {"data_center": "us6", "api_key": CANARY, "apikey": "x"})
        assert "apikey" in typo and "api_key" in typo and CANARY not in typo
        bad_type = await create("hubspott", {})
        assert "type" in bad_type and "hubspot" in bad_type
        bad_name = await create("webhook", {"url": "https://example.com/h"}, name="no/slashes")
        assert "name" in bad_name
    async with api_for(sandbox) as api:
        page = await api.list_workspace_connections(sandbox.workspace_id)
    assert not [c for c in page.records if c.name == "Test connection"]  # nothing was created


@pytest.mark.anyio
async def test_debug_a_failed_webhook_delivery_and_retry_it(sandbox, webhook_receiver):
    broken, fixed = f"{webhook_receiver.url}/status/500", f"{webhook_receiver.url}/hooks/orders"

    async with Client(build_server(settings_for(sandbox))) as client:
        webhook = ok(
            await client.call_tool(
                "create_connection", {"type": "webhook", "name": "Flaky hook", "metadata": {"url": broken}}
            )
        )
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": webhook["id"], "event": "order.paid", "metadata": {"action": "send_webhook"}},
            )
        )
        emitted = ok(await client.call_tool("emit_event", {"event": "order.paid", "payload": {"id": "ord_1"}}))
        failed = await wait_for_event(sandbox, emitted["id"], until=lambda ev: ev.status == "failed")
        assert failed.status == "failed", failed
        rule_event = failed.rule_events[0]
        assert rule_event.attempt_count >= 1 and rule_event.last_error

        async with api_for(sandbox) as api:  # the fix, made outside the tools under test
            update = UpdateConnectionRequest(name="Flaky hook", metadata={"url": fixed})
            await api.update_connection(webhook["id"], update)
        retried = ok(
            await client.call_tool("retry_rule_event", {"event_id": emitted["id"], "rule_id": rule_event.rule})
        )
        assert retried["rule"] == rule_event.rule and "get_event" in retried["next"]
        done = await wait_for_event(sandbox, emitted["id"], until=lambda ev: ev.status == "completed")
        assert done.status == "completed"

        again = refused(
            await client.call_tool("retry_rule_event", {"event_id": emitted["id"], "rule_id": rule_event.rule})
        )
        assert "409" in again or "425" in again

    assert len(webhook_receiver.matching("/hooks/orders")) == 1  # delivered exactly once after the fix


@pytest.mark.anyio
async def test_resources_show_catalogue_and_event_history(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert {
            "meshes://integrations/{type}",
            "meshes://workspaces/{workspace_id}/events",
            "meshes://events/{event_id}",
        } <= templates
        catalogue = json.loads((await client.read_resource("meshes://integrations")).contents[0].text)
        assert len(catalogue["integrations"]) == 15
        webhook = json.loads((await client.read_resource("meshes://integrations/webhook")).contents[0].text)
        assert any(f["key"] == "url" for f in webhook["metadata_fields"])
        completion = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="meshes://integrations/{type}"),
            {"name": "type", "value": "hu"},
        )
        assert completion.completion.values == ["hubspot"]
        mapping_doc = (await client.read_resource("meshes://docs/mapping-schema")).contents[0].text
        assert "schema_version" in mapping_doc and "transforms" in mapping_doc

        emitted = ok(await client.call_tool("emit_event", {"event": "user.login", "payload": {"id": "u1"}}))
        await wait_for_event(sandbox, emitted["id"], until=lambda ev: ev.status is not None)
        history = json.loads(
            (await client.read_resource(f"meshes://workspaces/{sandbox.workspace_id}/events")).contents[0].text
        )
        assert emitted["id"] in {e["id"] for e in history["events"]}
        one = json.loads((await client.read_resource(f"meshes://events/{emitted['id']}")).contents[0].text)
        assert one["event"] == "user.login" and "status" in one


@pytest.mark.anyio
async def test_mission_tools_declare_output_schemas_and_truthful_annotations(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

    assert set(tools) >= MISSION_TOOLS
    for name in MISSION_TOOLS:
        annotations = tools[name].annotations
        assert tools[name].output_schema, name
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            assert getattr(annotations, hint) is not None, (name, hint)
    assert tools["list_integrations"].annotations.read_only_hint is True
    assert tools["get_connection_actions"].annotations.read_only_hint is True
    for write in ("emit_event", "create_connection", "create_rule", "retry_rule_event"):
        assert tools[write].annotations.read_only_hint is False
        assert tools[write].annotations.idempotent_hint is False


@pytest.mark.anyio
async def test_planted_canary_secret_never_appears(sandbox, webhook_receiver):
    """A credential given to a connection, and the configured secret key, never come back anywhere."""
    refusing = f"{webhook_receiver.url}/status/401"

    seen: list[str] = []
    async with Client(build_server(settings_for(sandbox))) as client:

        async def call(name: str, args: dict):
            result = await client.call_tool(name, args)
            seen.append(result.content[0].text)
            seen.append(json.dumps(result.structured_content))
            return result

        mailchimp = await call(
            "create_connection",
            {"type": "mailchimp", "name": "Canary chimp", "metadata": {"data_center": "us6", "api_key": CANARY}},
        )
        assert not mailchimp.is_error, mailchimp.content[0].text
        signed = await call(
            "create_connection",
            {
                "type": "webhook",
                "name": "Canary hook",
                "metadata": {
                    "url": refusing,
                    "auth_scheme": "bearer",
                    "auth_token": CANARY,
                    "signing_algorithm": "sha256",
                    "signing_secret": CANARY,
                },
            },
        )
        assert not signed.is_error, signed.content[0].text
        await call("get_connection_actions", {"connection_id": mailchimp.structured_content["id"]})
        await call(
            "create_rule",
            {
                "connection": signed.structured_content["id"],
                "event": "canary.test",
                "metadata": {"action": "send_webhook"},
            },
        )
        emitted = await call("emit_event", {"event": "canary.test", "payload": {"email": "c@example.com"}})
        event = await wait_for_event(sandbox, emitted.structured_content["id"], until=lambda ev: ev.status == "failed")
        rule_id = event.rule_events[0].rule
        await call("retry_rule_event", {"event_id": event.id, "rule_id": rule_id})
        # Errors too: a refused update that echoes the credential back must not show it.
        await call(
            "create_connection",
            {"type": "mailchimp", "name": "bad/name", "metadata": {"data_center": "??", "api_key": CANARY}},
        )
        for uri in (
            "meshes://integrations/mailchimp",
            f"meshes://events/{event.id}",
            f"meshes://workspaces/{sandbox.workspace_id}/events",
        ):
            seen.append((await client.read_resource(uri)).contents[0].text)

    blob = "\n".join(seen)
    assert CANARY not in blob
    assert sandbox.secret_key not in blob and sandbox.access_key not in blob
    assert "[redacted]" in blob or "****" in blob


@pytest.mark.anyio
async def test_real_stdio_session_on_the_embedded_sandbox(tmp_path):
    """`meshes-mcp --sandbox` as an IDE starts it: a subprocess speaking MCP over stdio."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshes_mcp", "--sandbox", "--data-dir", str(tmp_path / "sandbox")],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )

    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= MISSION_TOOLS
        emitted = await client.call_tool("emit_event", {"event": "user.signup", "payload": {"email": "a@b.co"}})
        assert not emitted.is_error, emitted.content[0].text
        event = emitted.structured_content

    assert event["event"] == "user.signup" and event["workspace"]  # the demo workspace is the default


@pytest.mark.anyio
async def test_server_starts_without_credentials_over_stdio():
    params = StdioServerParameters(command=sys.executable, args=["-m", "meshes_mcp"], env={"PATH": "/usr/bin:/bin"})

    async with Client(params) as client:
        result = await client.call_tool("create_rule", {"connection": "x", "event": "e", "metadata": {}})

    assert result.is_error and "MESHES_ACCESS_KEY" in result.content[0].text and "--sandbox" in result.content[0].text


WRONG_TYPES = {
    "emit_event": {"event": ["user.signup"], "payload": "email=jane@example.com"},
    "list_integrations": {"type": 42},
    "create_connection": {"type": "webhook", "name": "x", "metadata": "url=https://example.com"},
    "get_connection_actions": {"connection_id": {"id": "x"}},
    "create_rule": {"connection": 7, "event": "user.signup", "metadata": ["add_to_list"]},
    "retry_rule_event": {"event_id": None, "rule_id": True},
}


@pytest.mark.parametrize("tool", sorted(MISSION_TOOLS))
@pytest.mark.anyio
async def test_schema_level_argument_errors_are_readable(sandbox, tool):
    async with Client(build_server(settings_for(sandbox))) as client:
        result = await client.call_tool(tool, WRONG_TYPES[tool])

    text = refused(result)
    assert text.startswith(f"Invalid arguments for {tool}, nothing was sent:")
    assert "e.g." in text  # each problem carries a valid example
    assert "pydantic" not in text and "input_value" not in text and "Error executing" not in text


@pytest.mark.parametrize("tool", sorted(MISSION_TOOLS))
@pytest.mark.anyio
async def test_unknown_arguments_are_refused_not_ignored(sandbox, tool):
    async with Client(build_server(settings_for(sandbox))) as client:
        result = await client.call_tool(tool, {"workspce": "typo", "limit": 5})

    text = refused(result)
    assert f"Unknown argument(s) for {tool}: limit, workspce; nothing was sent. Takes:" in text


@pytest.mark.anyio
async def test_iterate_pages_follows_cursors_to_the_end(sandbox):
    from meshes_mcp.api.client import iterate_pages

    async with api_for(sandbox) as api:
        one_page = await api.list_workspace_connections(sandbox.workspace_id, limit=200)
        paged = [c.id async for c in iterate_pages(api.list_workspace_connections, sandbox.workspace_id, limit=3)]
    everything = [c.id for c in one_page.records]
    assert len(everything) > 3  # more than one page
    assert paged == everything


@pytest.mark.anyio
async def test_publishable_key_alone_emits_into_its_workspace(sandbox, monkeypatch):
    for name in ("MESHES_ACCESS_KEY", "MESHES_SECRET_KEY", "MESHES_ORG_ID", "MESHES_WORKSPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(api_url=sandbox.api_url, publishable_key=sandbox.publishable_key)

    async with Client(build_server(settings)) as client:
        emitted = await client.call_tool("emit_event", {"event": "pk.test", "payload": {"email": "a@b.co"}})
        bulk = await client.call_tool("emit_events", {"events": [{"event": "pk.bulk", "payload": {"n": 1}}]})
        management = await client.call_tool("get_connection_actions", {"connection_id": sandbox.workspace_id})

    assert ok(emitted)["workspace"] == sandbox.workspace_id  # inferred from the key
    assert ok(bulk)["accepted"] == 1
    assert "MESHES_ACCESS_KEY" in refused(management)
