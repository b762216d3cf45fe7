"""Credentials stay hidden without being destroyed: masks survive a read-modify-write, echoes are scrubbed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from mcp import Client

from meshes_mcp.server.app import build_server
from tests.support import ok, refused, settings_for

TOKEN = "tok_CANARY_bearer_5e1f9a7c3d"
PASSWORD = "pw_CANARY_basic_8b2d6f0a4c"
HEADER_SECRET = "hdr_CANARY_custom_3a9e7c1b5d"


class EchoReceiver:
    """Answers 401 with the request's headers in the body, as debug endpoints and some 401 pages do."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.authorizations.append(self.headers.get("Authorization", ""))
                body = json.dumps({"you_sent": dict(self.headers)}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/echo"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def echo():
    receiver = EchoReceiver()
    yield receiver
    receiver.stop()


def call(sandbox: Any, steps):
    async def go():
        async with Client(build_server(settings_for(sandbox))) as client:
            return await steps(client)

    return anyio.run(go)


def test_masked_credentials_sent_back_keep_their_stored_value(sandbox, webhook_receiver):
    async def steps(client):
        created = ok(
            await client.call_tool(
                "create_connection",
                {
                    "type": "webhook",
                    "name": "Round trip",
                    "metadata": {
                        "url": f"{webhook_receiver.url}/round-trip",
                        "auth_scheme": "bearer",
                        "auth_token": TOKEN,
                        "custom_headers": {"X-Team": "growth", "X-Api-Key": HEADER_SECRET},
                    },
                },
            )
        )
        shown = ok(await client.call_tool("get_connection", {"connection_id": created["id"]}))
        assert shown["metadata"]["auth_token"] == "[redacted]"
        assert shown["metadata"]["custom_headers"] == {"X-Team": "[redacted]", "X-Api-Key": "[redacted]"}
        # The agent edits one field and sends everything else back exactly as it read it.
        edited = {**shown["metadata"], "url": f"{webhook_receiver.url}/round-trip-2"}
        ok(await client.call_tool("update_connection", {"connection_id": created["id"], "metadata": edited}))
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": created["id"], "event": "secret.roundtrip", "metadata": {"action": "send_webhook"}},
            )
        )
        ok(await client.call_tool("emit_event", {"event": "secret.roundtrip", "payload": {"id": "1"}}))

    call(sandbox, steps)
    (receipt,) = webhook_receiver.wait_for(1, "/round-trip-2")
    assert receipt.headers["authorization"] == f"Bearer {TOKEN}"
    assert receipt.headers["x-api-key"] == HEADER_SECRET


def test_a_mask_inside_a_longer_value_is_refused(sandbox):
    async def steps(client):
        created = ok(
            await client.call_tool(
                "create_connection",
                {
                    "type": "webhook",
                    "name": "Token in url",
                    "metadata": {"url": "https://example.com/h?token=abcdef12"},
                },
            )
        )
        shown = ok(await client.call_tool("get_connection", {"connection_id": created["id"]}))
        assert shown["metadata"]["url"] == "https://example.com/h?token=[redacted]"
        return refused(
            await client.call_tool("update_connection", {"connection_id": created["id"], "metadata": shown["metadata"]})
        )

    text = call(sandbox, steps)
    assert "metadata.url" in text and "pass the full value" in text


def test_userinfo_in_urls_is_hidden(sandbox):
    async def steps(client):
        return ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Userinfo", "metadata": {"url": "https://svc:hunter2pass@example.com/h"}},
            )
        )

    created = call(sandbox, steps)
    assert "hunter2pass" not in json.dumps(created)
    assert created["metadata"]["url"] == "https://[redacted]@example.com/h"


def test_a_receiver_echoing_credentials_does_not_leak_them(sandbox, echo):
    async def steps(client):
        created = ok(
            await client.call_tool(
                "create_connection",
                {
                    "type": "webhook",
                    "name": "Echo",
                    "metadata": {
                        "url": echo.url,
                        "auth_scheme": "basic",
                        "auth_username": "svc",
                        "auth_password": PASSWORD,
                        "custom_headers": {"X-Api-Key": HEADER_SECRET},
                    },
                },
            )
        )
        ok(
            await client.call_tool(
                "create_rule",
                {"connection": created["id"], "event": "secret.echo", "metadata": {"action": "send_webhook"}},
            )
        )
        emitted = ok(await client.call_tool("emit_event", {"event": "secret.echo", "payload": {"id": "1"}}))
        for _ in range(100):
            event = ok(await client.call_tool("get_event", {"event_id": emitted["id"]}))
            if event.get("status") == "failed":
                break
            await anyio.sleep(0.05)
        rule = event["rule_events"][0]["rule"]
        attempts = ok(await client.call_tool("list_rule_attempts", {"event_id": emitted["id"], "rule_id": rule}))
        attempt_id = attempts["attempts"][0]["id"]
        detail = await client.call_tool(
            "get_rule_attempt",
            {"event_id": emitted["id"], "rule_id": rule, "attempt_id": attempt_id, "include_response": True},
        )
        diagnosis = await client.call_tool("diagnose_event", {"event_id": emitted["id"]})
        return [detail.content[0].text, diagnosis.content[0].text]

    texts = call(sandbox, steps)
    assert echo.authorizations and echo.authorizations[0].startswith("Basic ")  # the receiver did get them
    blob = "\n".join(texts)
    assert "you_sent" in blob  # the captured body is there, scrubbed
    for secret in (PASSWORD, HEADER_SECRET, echo.authorizations[0].removeprefix("Basic ")):
        assert secret not in blob
