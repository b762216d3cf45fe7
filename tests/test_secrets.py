"""Credentials stay hidden without being destroyed: masks survive a read-modify-write, echoes are scrubbed."""

from __future__ import annotations

import json
import logging
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


@pytest.mark.anyio
async def test_masked_credentials_sent_back_keep_their_stored_value(sandbox, webhook_receiver):
    async with Client(build_server(settings_for(sandbox))) as client:
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

    (receipt,) = webhook_receiver.wait_for(1, "/round-trip-2")
    assert receipt.headers["authorization"] == f"Bearer {TOKEN}"
    assert receipt.headers["x-api-key"] == HEADER_SECRET


@pytest.mark.anyio
async def test_a_mask_inside_a_longer_value_is_refused(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
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
        text = refused(
            await client.call_tool("update_connection", {"connection_id": created["id"], "metadata": shown["metadata"]})
        )

    assert "metadata.url" in text and "pass the full value" in text


@pytest.mark.anyio
async def test_userinfo_in_urls_is_hidden(sandbox):
    async with Client(build_server(settings_for(sandbox))) as client:
        created = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Userinfo", "metadata": {"url": "https://svc:hunter2pass@example.com/h"}},
            )
        )

    assert "hunter2pass" not in json.dumps(created)
    assert created["metadata"]["url"] == "https://[redacted]@example.com/h"


@pytest.mark.anyio
async def test_a_receiver_echoing_credentials_does_not_leak_them(sandbox, echo):
    async with Client(build_server(settings_for(sandbox))) as client:
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
        texts = [detail.content[0].text, diagnosis.content[0].text]

    assert echo.authorizations and echo.authorizations[0].startswith("Basic ")  # the receiver did get them
    blob = "\n".join(texts)
    assert "you_sent" in blob  # the captured body is there, scrubbed
    for secret in (PASSWORD, HEADER_SECRET, echo.authorizations[0].removeprefix("Basic ")):
        assert secret not in blob


# --- control characters in header-bound fields, refused before anything is sent ------------------

PASTED = "key_CANARY_pasted_7c2e9b4f1a"


@pytest.mark.anyio
async def test_header_values_with_control_characters_are_refused_before_sending(sandbox, sandbox_api, webhook_receiver):
    async with Client(build_server(settings_for(sandbox))) as client:
        created = ok(
            await client.call_tool(
                "create_connection",
                {"type": "webhook", "name": "Pasted ok", "metadata": {"url": f"{webhook_receiver.url}/pasted"}},
            )
        )
        texts = []
        for metadata in (
            {"custom_headers": {"X-Api-Key": PASTED + "\r\n"}},
            {"auth_scheme": "bearer", "auth_token": PASTED + "\n"},
            {"auth_scheme": "custom_header", "auth_header_name": "X-Key", "auth_header_value": PASTED + "\r\n"},
        ):
            full = {"url": f"{webhook_receiver.url}/pasted", **metadata}
            body = {"type": "webhook", "name": "Pasted", "metadata": full}
            texts.append(refused(await client.call_tool("create_connection", body)))
            texts.append(
                refused(await client.call_tool("update_connection", {"connection_id": created["id"], "metadata": full}))
            )

    for text in texts:
        assert "nothing was sent" in text and "control character" in text and "e.g." in text
        assert PASTED not in text and "CANARY" not in text
    assert "metadata.custom_headers" in texts[0] and "metadata.auth_token" in texts[2]
    assert "metadata.auth_header_value" in texts[4]
    names = [c["name"] for c in sandbox_api.get("/connections", params={"limit": 200}).json()["records"]]
    assert "Pasted" not in names  # no create went out
    stored = sandbox_api.get(f"/connections/{created['id']}").json()["metadata"]
    assert stored == {"url": f"{webhook_receiver.url}/pasted"}  # no update went out


# --- a secret this process never saw: planted with CR/LF straight into the sandbox database ----------


def plant_metadata(sandbox_dir, connection_id: str, metadata: dict[str, Any]) -> None:
    """Bypass every validation (ours and the API's), as a lenient real API or an old row would."""
    import sqlite3

    db = sqlite3.connect(str(sandbox_dir / "sandbox.db"))
    try:
        db.execute("UPDATE connections SET metadata=? WHERE id=?", (json.dumps(metadata), connection_id))
        db.commit()
    finally:
        db.close()


def planted_failure(sandbox_api, sandbox_dir, url: str, metadata: dict[str, Any], event: str) -> dict[str, Any]:
    """A webhook connection whose stored metadata is `metadata`, and a failed event through it (all over
    the API: the MCP server under test has never read this connection)."""
    connection, _ = sandbox_api.webhook_rule(url, event, name=event.replace(".", " "))
    plant_metadata(sandbox_dir, connection, {"url": url, **metadata})
    emitted = sandbox_api.post(
        "/events", json={"workspace": sandbox_api.info.workspace_id, "event": event, "payload": {"id": 1}}
    )
    answer = emitted.json()
    return sandbox_api.wait_event(answer.get("event", answer)["id"])


@pytest.mark.anyio
async def test_a_planted_header_secret_is_masked_everywhere_and_the_cause_still_explained(
    sandbox, sandbox_api, sandbox_dir, webhook_receiver
):
    event = planted_failure(
        sandbox_api,
        sandbox_dir,
        f"{webhook_receiver.url}/planted",
        {"custom_headers": {"X-Api-Key": PASTED + "\r\n"}},
        "secret.planted",
    )
    assert event["status"] == "failed"
    # The sandbox scrubs its own delivery text; the MCP side below must hold even without that (see the next test).
    assert PASTED not in json.dumps(sandbox_api.get(f"/events/{event['id']}").json())
    rule = event["rule_events"][0]["rule"]

    async with Client(build_server(settings_for(sandbox))) as client:
        ids = {"event_id": event["id"], "rule_id": rule}
        got = await client.call_tool("get_event", {"event_id": event["id"]})
        diagnosis = await client.call_tool("diagnose_event", {"event_id": event["id"]})
        attempts = await client.call_tool("list_rule_attempts", ids)
        first = attempts.structured_content["attempts"][0]["id"]
        one = await client.call_tool("get_rule_attempt", {**ids, "attempt_id": first, "include_response": True})
        resource = await client.read_resource(f"meshes://events/{event['id']}")
        texts = [r.content[0].text for r in (got, diagnosis, attempts, one)]
        texts += [json.dumps(r.structured_content) for r in (got, diagnosis, attempts, one)]
        texts.append(resource.contents[0].text)

    blob = "\n".join(texts)
    assert PASTED not in blob and "CANARY" not in blob
    assert "Illegal header value [redacted]" in blob and "CR/LF" in blob  # what is wrong, without the value
    fix = diagnosis.structured_content["deliveries"][0]["fix"]
    assert "header" in fix and "update the connection" in fix


@pytest.mark.anyio
async def test_an_api_that_quotes_a_connection_secret_in_delivery_errors_is_masked_by_value():
    """A real API may echo a credential in a delivery error. The server has never seen that connection: it
    reads the connection before showing the event, learns its secrets and masks them by value."""
    from meshes_mcp.config import Settings
    from tests.http_double import ACCESS_KEY, ORG, SECRET_KEY, ApiDouble, Scripted

    event_id, rule, connection = (
        "0b6f6a7e-2c1d-4e5f-8a9b-0c1d2e3f4a5b",
        "1c7a7b8f-3d2e-4f60-9bac-1d2e3f4a5b6c",
        "2d8b5e3a-4f6c-4d7e-af80-91a2b3c4d5e6",
    )
    leaked = f"receiver refused X-Api-Key {PASTED} (expected another key)"
    rule_event = {
        "id": "3e9c8d90-5e4f-4a71-8cbd-2e3f4a5b6c7d",
        "type": "rule",
        "workspace": ORG,
        "event": "secret.echoed",
        "event_id": event_id,
        "connection": connection,
        "rule": rule,
        "integration_type": "webhook",
        "status": "failed",
        "attempt_count": 1,
        "last_error": leaked,
    }
    event = {
        "id": event_id,
        "type": "event",
        "workspace": ORG,
        "event": "secret.echoed",
        "status": "failed",
        "total_rules": 1,
        "completed_count": 0,
        "failed_count": 1,
        "rule_events": [rule_event],
    }
    held = {
        "id": connection,
        "type": "webhook",
        "name": "Echoing",
        "workspace": ORG,
        "metadata": {"url": "https://example.com/h", "custom_headers": {"X-Api-Key": PASTED}},
    }
    double = ApiDouble().start()
    try:
        double.script("GET", f"/events/{event_id}", Scripted(200, event))
        double.script("GET", f"/connections/{connection}", Scripted(200, held))
        settings = Settings(api_url=double.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, org_id=ORG)

        async with Client(build_server(settings)) as client:
            got = await client.call_tool("get_event", {"event_id": event_id})
    finally:
        double.stop()
    shown = got.content[0].text + json.dumps(got.structured_content)
    assert "receiver refused X-Api-Key" in shown and PASTED[:10] not in shown and PASTED[-10:] not in shown, shown
    assert any(r["method"] == "GET" and connection in r["path"] for r in double.requests)  # it did look


# --- the redactor on its own: every quoted form of a known secret --------------------------------


def test_known_secrets_are_masked_in_every_quoted_form():
    from urllib.parse import quote

    from meshes_mcp.server.render import REDACTED, Redactor

    redactor = Redactor()
    redactor.learn_metadata({"custom_headers": {"X-Api-Key": PASTED + "\r\n"}, "auth_token": "tok_" + PASTED})
    quoted = [
        PASTED,
        repr((PASTED + "\r\n").encode()),  # h11: Illegal header value b'…\r\n'
        json.dumps(PASTED + "\r\n"),
        json.dumps(json.dumps({"X-Api-Key": PASTED + "\r\n"})),  # JSON text inside JSON
        quote(PASTED + "\r\n", safe=""),
        PASTED[:12],  # an error message cut off mid-secret
        "{'X-Api-Key': 'key_C..." + PASTED[-14:] + "'}",  # a repr shortened in the middle
        "tok_" + PASTED,
    ]
    for text in quoted:
        masked = redactor.text(f"before {text} after")
        assert PASTED[:10] not in masked and PASTED[-10:] not in masked and REDACTED in masked, masked
        assert masked.startswith("before ") and masked.endswith(" after")


def test_masks_and_short_values_are_not_learned():
    from meshes_mcp.server.render import Redactor

    redactor = Redactor()
    redactor.learn_metadata({"api_key": "********", "auth_password": "[redacted]", "token": "short"})
    assert redactor.text("******** short [redacted]") == "******** short [redacted]"


def test_header_errors_lose_their_value_even_for_unknown_secrets():
    from meshes_mcp.server.render import HEADER_ERROR_HINT, Redactor

    redactor = Redactor()
    for message in (
        "LocalProtocolError Illegal header value b'unknown_secret_value\\r\\n'",
        'Illegal header name b"X-Key: unknown_secret_value"',
        "Invalid leading whitespace, reserved character(s), or return character(s) in header value: "
        "'unknown_secret_value\\n'",
        "Illegal header value b'unknown_secret_val",  # cut off
    ):
        masked = redactor.text(message)
        assert "unknown_secret" not in masked and HEADER_ERROR_HINT in masked
        assert redactor.text(masked) == masked  # idempotent: results are redacted more than once


@pytest.mark.anyio
async def test_api_answers_quoting_a_secret_are_masked_in_results_and_in_logged_tracebacks(caplog):
    """A real API may quote what it refused, or answer in a shape we cannot read: the error result is
    scrubbed, and so is the traceback the SDK logs for a crash (pydantic's text quotes its input)."""
    from meshes_mcp.config import Settings
    from tests.http_double import ACCESS_KEY, ORG, SECRET_KEY, ApiDouble, Scripted

    connection = "2d8b5e3a-4f6c-4d7e-af80-91a2b3c4d5e6"
    double = ApiDouble().start()
    try:
        echoed = f"header X-Api-Key value {json.dumps(PASTED)} is not allowed (raw: {PASTED[:14]}"
        double.script("POST", "/connections", Scripted(400, {"message": echoed}))
        unreadable = {"id": 5, "type": "webhook", "metadata": {"custom_headers": {"X-Api-Key": PASTED}}}
        double.script("GET", f"/connections/{connection}", Scripted(200, unreadable))
        settings = Settings(api_url=double.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, org_id=ORG)

        with caplog.at_level(logging.INFO):
            async with Client(build_server(settings)) as client:
                metadata = {"url": "https://example.com/h", "custom_headers": {"X-Api-Key": PASTED}}
                body = {"type": "webhook", "name": "Echoed", "metadata": metadata, "workspace": ORG}
                created = refused(await client.call_tool("create_connection", body))
                crashed = refused(await client.call_tool("get_connection", {"connection_id": connection}))
    finally:
        double.stop()
    assert "is not allowed" in created and "[redacted]" in created
    assert "get_connection" in crashed and PASTED[:10] not in crashed
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Traceback" in logged  # the SDK did log the crash
    for fragment in (PASTED[:10], PASTED[-10:]):  # pydantic shortens a long repr in the middle
        assert fragment not in created and fragment not in crashed and fragment not in logged
