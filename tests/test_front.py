"""The stdio front: what it answers before the SDK has loaded is what the SDK itself answers, for every
protocol version and every packaged configuration; what it cannot answer waits for the SDK and is
answered by it; stdin closing ends the process. Real SDK sessions in-process for the comparison, a real
`python -m meshes_mcp` over stdio for the rest."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from meshes_mcp.cli import settings_from
from meshes_mcp.server import answers, front
from meshes_mcp.server.toolsets import configuration_key, parse_toolsets
from tests.test_stdio_transport import StdioServer

# A client declaring everything the table's answers do not depend on. Extensions are not among them: a
# client with MCP Apps is listed the incident view's tool and document too, so its answers are stored apart.
APPS = {"io.modelcontextprotocol/ui": {"mimeTypes": ["text/html;profile=mcp-app"]}}
RICH_CAPABILITIES = {"roots": {"listChanged": True}, "elicitation": {"form": {}}, "experimental": {"x": {}}}
APPS_HOST = {**RICH_CAPABILITIES, "extensions": {**APPS}}
ENVELOPE = {
    front.PROTOCOL_VERSION_KEY: MODERN_PROTOCOL_VERSIONS[-1],
    front.CLIENT_CAPABILITIES_KEY: {},
    front.CLIENT_INFO_KEY: {"name": "t", "version": "0"},
}


@pytest.mark.anyio
@pytest.mark.parametrize(("toolsets", "read_only"), answers.CONFIGURATIONS)
async def test_the_packaged_answers_are_the_sdks_own(toolsets, read_only):
    """The real server (its tools from the manifest, as served) against the table, every version, two clients."""
    key = configuration_key(toolsets, read_only)
    keys = {configuration_key(*c) + view for c in answers.CONFIGURATIONS for view in answers.CLIENT_VIEWS}
    assert set(front.packaged_answers()["configurations"]) == keys
    server = answers.build(toolsets, read_only, declared=False)
    for version in KNOWN_PROTOCOL_VERSIONS:
        for capabilities in ({}, RICH_CAPABILITIES, {"extensions": APPS}, APPS_HOST):
            view = front.client_view(capabilities)
            assert view is not None
            sdk = await answers.sdk_answers(server, version, capabilities)
            packaged = {method: front.answer_for(key + view, version, method) for method in sdk}
            assert packaged == sdk, f"stale answers for {key + view!r} at {version}: python -m meshes_mcp.server.docs"


def test_the_apps_view_is_what_the_sdk_calls_an_apps_client():
    from mcp.server import apps

    assert (front.APPS_EXTENSION, front.APPS_MIME_TYPE) == (apps.EXTENSION_ID, apps.APP_MIME_TYPE)
    assert front.client_view({"extensions": APPS}) == front.APPS_VIEW
    # Other extensions, or the Apps extension without its MIME type or with more settings: the SDK judges.
    assert front.client_view({"extensions": {**APPS, "x.example/other": {}}}) is None
    assert front.client_view({"extensions": {apps.EXTENSION_ID: {"mimeTypes": ["text/plain"]}}}) is None
    assert front.client_view({"extensions": {apps.EXTENSION_ID: {"mimeTypes": "text/html;profile=mcp-app"}}}) is None
    assert front.client_view({"extensions": {apps.EXTENSION_ID: {**APPS[apps.EXTENSION_ID], "x": 1}}}) is None


def test_the_configuration_is_read_as_settings_read_it(monkeypatch):
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, {}),
        ({"toolsets": "all"}, {"MESHES_TOOLSETS": "rules"}),
        ({}, {"meshes_toolsets": " All "}),
        ({}, {"MESHES_READ_ONLY": "yes"}),
        ({}, {"Meshes_Read_Only": "0", "MESHES_TOOLSETS": ""}),
        ({"read_only": True}, {"MESHES_READ_ONLY": "false"}),
        ({}, {"MESHES_TOOLSETS": "integrations,events,connections,rules,deliveries,workspaces"}),
    ]
    for options, environ in cases:
        with monkeypatch.context() as patched:
            for name in [name for name in os.environ if name.upper().startswith("MESHES_")]:
                patched.delenv(name)
            for name, value in environ.items():
                patched.setenv(name, value)
            settings = settings_from(options)  # how the server reads them
        expected = configuration_key(parse_toolsets(settings.toolsets), settings.read_only)
        assert front.configuration(options, environ) == expected, (options, environ)
    # What cannot be read for certain is left to the SDK, which reports a mistake as before.
    assert front.configuration({}, {"MESHES_READ_ONLY": "maybe"}) is None
    assert front.configuration({"toolsets": "rules,bogus"}, {}) is None
    assert front.configuration({}, {"MESHES_READ_ONLY": "1", "meshes_read_only": "0"}) is None


class FrontedServer(StdioServer):
    """`python -m meshes_mcp --verbose` over stdio, its log kept to tell who answered."""

    def __init__(self, *args: str) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (read when the process ends, closed with it)
        super().__init__("--verbose", *args, stderr=self.log)

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.answer(timeout=60)

    def close(self) -> None:
        super().close()
        self.log.close()

    def end(self) -> str:
        """Close stdin; the process must end on its own. Its log."""
        assert self.proc.stdin
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@pytest.fixture
def fronted():
    running = FrontedServer()
    yield running
    running.close()


def handshake(version: str) -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": answers.CLIENT_INFO}
    return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}


@pytest.mark.anyio
@pytest.mark.parametrize("version", KNOWN_PROTOCOL_VERSIONS)
async def test_the_front_answers_what_the_sdk_would_then_hands_over(version):
    server = answers.build(parse_toolsets(None), False, declared=False)
    expected = await answers.sdk_answers(server, version)
    running = FrontedServer()
    try:
        received = {}
        for line in answers.session_lines(version, {}, answers.CLIENT_INFO):
            running.send(line)
            if "id" in line:
                reply = running.answer(timeout=60)
                assert reply["id"] == line["id"]
                received[line["method"]] = {k: v for k, v in reply.items() if k in ("result", "error")}
        assert received == expected
        # A tool call needs the SDK: it waits for it, and is answered in the same session (the handshake
        # the front answered was replayed into the SDK's).
        params: dict[str, Any] = {"name": "list_integrations", "arguments": {}}
        if version in MODERN_PROTOCOL_VERSIONS:
            params["_meta"] = {**ENVELOPE, front.PROTOCOL_VERSION_KEY: version}
        called = running.call({"jsonrpc": "2.0", "id": "call", "method": "tools/call", "params": params})
        assert "credentials are not configured" in called["result"]["content"][0]["text"], called
        log = running.end()
    finally:
        running.close()
    assert log.count("before the SDK loaded") == len(expected), log[-3000:]
    assert "a request needs the SDK: waiting for it" in log
    assert "refused a request the front had answered" not in log


def test_requests_before_the_sdk_has_loaded_wait_for_it(fronted):
    # All written at once, before the SDK can have loaded: the handshake and the list from the front,
    # the rest (a call, an unusual list request, a ping after them) by the SDK, each once, in one session.
    version = HANDSHAKE_PROTOCOL_VERSIONS[-1]
    lines = [
        handshake(version),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_integrations"}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": "x"}},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
    ]
    assert fronted.proc.stdin
    fronted.proc.stdin.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    fronted.proc.stdin.flush()
    replies = {reply["id"]: reply for reply in (fronted.answer(timeout=60) for _ in range(5))}
    assert replies[0]["result"]["protocolVersion"] == version
    assert replies[1]["result"]["tools"] and replies[4] == {"jsonrpc": "2.0", "id": 4, "result": {}}
    assert "credentials are not configured" in replies[2]["result"]["content"][0]["text"], replies[2]
    assert "error" in replies[3] or "tools" in replies[3]["result"]  # the SDK's own answer to a bad cursor
    log = fronted.end()
    assert "answered initialize before the SDK loaded" in log and "answered tools/list before" in log
    assert "a request needs the SDK: waiting for it" in log
    assert fronted.lines.empty()  # the replayed handshake's answer was not passed on


def test_an_apps_host_is_answered_early_with_the_incident_view_listed(fronted):
    params = {"protocolVersion": HANDSHAKE_PROTOCOL_VERSIONS[-1], "capabilities": {"extensions": APPS},
              "clientInfo": answers.CLIENT_INFO}  # fmt: skip
    assert fronted.call({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})["result"]
    fronted.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    tools = fronted.call({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})["result"]["tools"]
    resources = fronted.call({"jsonrpc": "2.0", "id": 2, "method": "resources/list"})["result"]["resources"]
    assert "triage_timeline" in {t["name"] for t in tools}
    assert "ui://meshes/incident" in {r["uri"] for r in resources}
    log = fronted.end()
    assert "answered tools/list before the SDK loaded" in log and "answered resources/list before" in log


def test_stdin_closing_ends_the_process_before_and_after_the_sdk_took_over():
    early = FrontedServer()
    try:
        assert early.call(handshake(HANDSHAKE_PROTOCOL_VERSIONS[-1]))["result"]
        log = early.end()  # right away: the SDK is still loading
    finally:
        early.close()
    assert "stdin closed before the SDK took over" in log
    late = FrontedServer()
    try:
        late.call(handshake(HANDSHAKE_PROTOCOL_VERSIONS[-1]))
        assert late.call({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_rules"}})
        log = late.end()
    finally:
        late.close()
    assert "the SDK takes over" in log


def test_a_configuration_without_packaged_answers_is_served_by_the_sdk_from_the_first_line():
    running = FrontedServer("--toolsets", "rules")
    try:
        listed = running.call(handshake(HANDSHAKE_PROTOCOL_VERSIONS[-1]))
        assert listed["result"]["serverInfo"]["name"] == "meshes"
        tools = running.call({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})["result"]["tools"]
        assert {t["name"] for t in tools} >= {"list_rules", "create_rule"}
        log = running.end()
    finally:
        running.close()
    assert "before the SDK loaded" not in log


def test_lines_the_front_does_not_answer_are_left_to_the_sdk():
    table = front.packaged_answers()
    key = configuration_key(parse_toolsets(None), False)
    version = HANDSHAKE_PROTOCOL_VERSIONS[-1]
    unusual = [
        b"not json",
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"x\\ud800"}}',
        json.dumps({**handshake(version), "id": True}).encode(),  # a boolean is no id
        json.dumps({**handshake(version), "id": 1.5}).encode(),
        json.dumps({**handshake(version), "extra": 1}).encode(),
        json.dumps(handshake("2099-01-01")).encode(),  # the SDK negotiates an unknown version
        json.dumps(handshake(MODERN_PROTOCOL_VERSIONS[-1])).encode(),  # no handshake at 2026-07-28
        json.dumps({**handshake(version), "params": {**handshake(version)["params"], "_meta": {}}}).encode(),
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode(),  # before initialize
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {}}}).encode(),
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {**ENVELOPE, "x": 1}}}
        ).encode(),
    ]
    for line in unusual:
        assert not front.Front(key, table).take(line), line
    # Capabilities or client info the SDK might read differently are its to judge, too.
    odd = ({"roots": {"listChanged": "yes"}}, answers.CLIENT_INFO), ({}, {"name": "t"})
    other_extension = {"extensions": {**APPS, "x.example/other": {}}}
    for capabilities, info in (*odd, (other_extension, answers.CLIENT_INFO)):
        line = handshake(version)
        line["params"] = {**line["params"], "capabilities": capabilities, "clientInfo": info}
        assert not front.Front(key, table).take(json.dumps(line).encode())
    # A configuration without packaged answers answers nothing.
    assert not front.Front("rules", table).take(json.dumps(handshake(version)).encode())
