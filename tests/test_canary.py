"""Canary suite: a canary secret in every secret-bearing field of every integration, pushed through every
tool, resource and prompt, error paths included, must show up nowhere: not in a result (text or structured
content), not in an error, not in a resource or prompt, not in the server's or the sandbox's logs.

The error paths are the ones that quote secrets in practice: credentials refused (auth_failed), a receiver
echoing the request's headers back, a webhook pointed at a dead loopback port (network_error), and a header
value holding CR/LF planted straight into the sandbox database (an HTTP stack's header error).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client

from meshes_mcp.api.catalog import example_rule_metadata, load_catalog
from meshes_mcp.server.app import build_server
from tests.support import settings_for
from tests.test_secrets import EchoReceiver, planted_failure

MARK = "cnry"  # every canary holds it: one substring to look for, cut-off fragments included
# Valid values for the fields that are not secrets, so each connection is accepted.
PLAIN_VALUES = {"api_url": "https://acme.api-us1.com", "data_center": "us6", "region": "us"}
LOGGERS = ("", "meshes_mcp", "mcp", "httpx", "httpx2", "uvicorn", "uvicorn.error", "uvicorn.access", "starlette")


class Canaries:
    def __init__(self) -> None:
        self.values: list[str] = []

    def new(self, field: str, *, refused_by_provider: bool = False) -> str:
        # Simulated providers refuse a key starting with "invalid" (401 → auth_failed).
        value = f"{'invalid-' if refused_by_provider else ''}{MARK}{len(self.values):02d}_{field}_Q7w2E9r4T1"
        self.values.append(value)
        return value


def api_key_connections(canaries: Canaries) -> list[tuple[str, dict[str, Any]]]:
    """Every non-OAuth integration of the catalogue but webhook, with a canary in each password field."""
    found = []
    for spec in (load_catalog().get(t) for t in load_catalog().types()):
        if spec is None or spec.is_oauth or spec.type == "webhook":
            continue
        metadata = {}
        for field in spec.authentication.fields or []:
            if field.type == "password":
                metadata[field.key] = canaries.new(field.key, refused_by_provider=True)
            else:
                metadata[field.key] = PLAIN_VALUES.get(field.key) or (field.option_values or [""])[0]
        found.append((spec.type, metadata))
    assert len(found) >= 5
    return found


def webhook_connections(canaries: Canaries, echo_url: str, dead_url: str) -> list[dict[str, Any]]:
    """Every webhook auth field and a custom header holding a canary, against a receiver that echoes the
    request's headers in a 401, or a port nobody listens on."""
    headers = {"X-Api-Key": canaries.new("custom_header"), "X-Team": "growth"}
    return [
        {
            "url": echo_url,
            "auth_scheme": "basic",
            "auth_username": canaries.new("auth_username"),
            "auth_password": canaries.new("auth_password"),
            "custom_headers": headers,
        },
        {"url": echo_url, "auth_scheme": "bearer", "auth_token": canaries.new("auth_token")},
        {
            "url": echo_url,
            "auth_scheme": "custom_header",
            "auth_header_name": "X-Auth",
            "auth_header_value": canaries.new("auth_header_value"),
            "signing_algorithm": "sha256",
            "signing_secret": canaries.new("signing_secret"),
        },
        {
            "url": dead_url,
            "auth_scheme": "bearer",
            "auth_token": canaries.new("dead_port_token"),
            "custom_headers": headers,
        },
    ]


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on return: connections to it are refused


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot format still counts as seen
            self.lines.append(f"{record.msg!r} {record.args!r} {exc!r}")


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every record of the server's and the sandbox's loggers (same process), at the INFO level they run at."""
    handler = LogCapture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(min(lg.level or logging.INFO, logging.INFO))
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


class Seen:
    """Everything the client was shown."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def result(self, result: Any) -> Any:
        self.texts += [getattr(c, "text", "") for c in result.content]
        self.texts.append(json.dumps(result.structured_content, ensure_ascii=False))
        return result.structured_content or {}

    def blob(self) -> str:
        return "\n".join(self.texts)


async def exercise(client: Any, seen: Seen, api_key: list[tuple[str, dict]], webhooks: list[dict]) -> list[str]:
    """Create, read, update, route, emit, diagnose: returns the ids of the events that went out."""
    call = client.call_tool
    connections = []
    for index, (type_, metadata) in enumerate([*api_key, *(("webhook", m) for m in webhooks)]):
        created = seen.result(
            await call("create_connection", {"type": type_, "name": f"Canary {index}", "metadata": metadata})
        )
        assert "id" in created, seen.texts[-2]
        connections.append((type_, created["id"]))
        shown = seen.result(await call("get_connection", {"connection_id": created["id"]}))
        # A read-modify-write sends the masks back: the stored secrets must survive (and stay hidden).
        seen.result(await call("update_connection", {"connection_id": created["id"], "metadata": shown["metadata"]}))
        # Refused updates quote nothing: an unknown key and a control character, each next to the canaries.
        bad = {**metadata, "not_a_field": metadata.get("auth_token", "x"), "url": "ftp://nope"}
        seen.result(await call("update_connection", {"connection_id": created["id"], "metadata": bad}))
    seen.result(
        await call(
            "create_connection",
            {
                "type": "webhook",
                "name": "Canary bad",
                "metadata": {**webhooks[1], "auth_token": webhooks[1]["auth_token"] + "\r\n"},
            },
        )
    )
    seen.result(await call("list_connections", {}))
    seen.result(await call("list_connections", {"workspace": None}))
    events = []
    for number, (type_, connection_id) in enumerate(connections):
        spec = load_catalog().get(type_)
        assert spec is not None
        for tool in ("get_connection_actions", "get_connection_fields", "get_connection_mappings"):
            seen.result(await call(tool, {"connection_id": connection_id}))
        action = next(iter(spec.actions))
        name = f"canary.c{number}"
        rule = {"connection": connection_id, "event": name, "metadata": example_rule_metadata(spec, action)}
        seen.result(await call("create_rule", rule))
        emitted = seen.result(await call("emit_event", {"event": name, "payload": {"email": "jane@example.com"}}))
        events.append(emitted["id"])
    return events


async def settle(client: Any, event_ids: list[str]) -> None:
    for _ in range(200):  # bounded: about 10 s at most
        statuses = []
        for event_id in event_ids:
            got = await client.call_tool("get_event", {"event_id": event_id})
            statuses.append((got.structured_content or {}).get("status"))
        if all(s in ("completed", "failed", "canceled") for s in statuses):
            return
        await anyio.sleep(0.05)


async def inspect(client: Any, seen: Seen, event_ids: list[str], workspace: str) -> None:
    """Every read, resource and prompt over the failed deliveries."""
    call = client.call_tool
    seen.result(await call("list_events", {}))
    seen.result(await call("list_events", {"status": "failed"}))
    for event_id in event_ids:
        event = seen.result(await call("get_event", {"event_id": event_id, "include_payload": True}))
        seen.result(await call("diagnose_event", {"event_id": event_id}))
        for rule_event in event.get("rule_events", []):
            ids = {"event_id": event_id, "rule_id": rule_event["rule"]}
            attempts = seen.result(await call("list_rule_attempts", ids))
            for item in attempts.get("attempts", [])[:2]:
                seen.result(await call("get_rule_attempt", {**ids, "attempt_id": item["id"], "include_response": True}))
            seen.result(await call("retry_rule_event", ids))
        resource = await client.read_resource(f"meshes://events/{event_id}")
        seen.texts += [c.text for c in resource.contents]
    for uri in (f"meshes://workspaces/{workspace}/events", "meshes://integrations", "meshes://integrations/webhook"):
        seen.texts += [c.text for c in (await client.read_resource(uri)).contents]
    for name, args in (
        ("wire_integration", {"event": "canary.c0", "integration": "webhook"}),
        ("debug_failed_deliveries", {}),
    ):
        prompt = await client.get_prompt(name, args)
        seen.texts += [m.content.text for m in prompt.messages]


@pytest.mark.anyio
async def test_no_canary_escapes_any_tool_resource_prompt_or_log(sandbox, sandbox_api, sandbox_dir, logs, capfd):
    canaries = Canaries()
    echo = EchoReceiver()
    try:
        api_key = api_key_connections(canaries)
        webhooks = webhook_connections(canaries, echo.url, f"http://127.0.0.1:{dead_port()}/hook")
        planted_secret = canaries.new("planted_crlf")
        planted = planted_failure(
            sandbox_api,
            sandbox_dir,
            echo.url,
            {"custom_headers": {"X-Api-Key": planted_secret + "\r\n"}},
            "canary.planted",
        )
        seen = Seen()
        async with Client(build_server(settings_for(sandbox))) as client:
            events = await exercise(client, seen, api_key, webhooks)
            await settle(client, events)
            await inspect(client, seen, [*events, planted["id"]], sandbox.workspace_id)
    finally:
        echo.stop()
    assert echo.authorizations  # the echo receiver did get (and echo) real credentials
    assert len(events) == len(api_key) + len(webhooks)
    captured = capfd.readouterr()
    outputs = {"results": seen.blob(), "logs": "\n".join(logs.lines), "stdout": captured.out, "stderr": captured.err}
    assert "auth_failed" in outputs["results"] and "network_error" in outputs["results"]
    assert "Illegal header value [redacted]" in outputs["results"]
    for where, text in outputs.items():
        leaked = [value for value in canaries.values if value in text or value[:12] in text or value[-12:] in text]
        assert not leaked and MARK not in text, (
            f"{where} leaks {leaked or MARK}: {text[max(0, text.find(MARK) - 300) :][:600]}"
        )
