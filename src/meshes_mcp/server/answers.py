"""The stdio front's packaged answers (`tools/answers.json`), generated from the SDK itself.

For each packaged configuration (toolsets and read-only mode) and each protocol version the SDK speaks,
a real server session is run the way the stdio transport runs it (the server's low-level `run` over a
stream pair, each message written as the SDK's stdio writer writes it) and its answers to the
`initialize` handshake and to `front.FRONT_METHODS` are recorded: results and errors alike, so whatever
the SDK would say is what the front says. Written by `python -m meshes_mcp.server.docs`; the suite runs
the real server again for every entry and compares (tests/test_front.py).

Storage: list entries (tools, prompts, resources, templates) are kept once in `items` and answers refer
to them by index; identical answers are kept once. The front reads one small file at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from meshes_mcp.server.front import (
    APPS_EXTENSION,
    APPS_MIME_TYPE,
    APPS_VIEW,
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    FRONT_METHODS,
    PROTOCOL_VERSION_KEY,
)
from meshes_mcp.server.toolsets import DEFAULT_TOOLSETS, TOOLSETS, Toolset, configuration_key

# The configurations answered early: the default toolsets and all of them, each also read-only. Any
# other is served by the SDK from the first line.
CONFIGURATIONS: tuple[tuple[tuple[Toolset, ...], bool], ...] = (
    (DEFAULT_TOOLSETS, False),
    (DEFAULT_TOOLSETS, True),
    (TOOLSETS, False),
    (TOOLSETS, True),
)
CLIENT_INFO = {"name": "meshes-mcp-answers", "version": "0"}
# The client views answered apart (`front.client_view`): a client with no extensions, and an MCP Apps host.
CLIENT_VIEWS: dict[str, dict[str, Any]] = {
    "": {},
    APPS_VIEW: {"extensions": {APPS_EXTENSION: {"mimeTypes": [APPS_MIME_TYPE]}}},
}


def session_lines(version: str, capabilities: dict[str, Any], client_info: dict[str, Any]) -> list[dict[str, Any]]:
    """What a client sends first at `version`: the handshake then each front method, or (2026-07-28)
    each method with its envelope. Ids are the method's position (0 for initialize)."""
    if version in MODERN_PROTOCOL_VERSIONS:
        meta = {PROTOCOL_VERSION_KEY: version, CLIENT_CAPABILITIES_KEY: capabilities, CLIENT_INFO_KEY: client_info}
        return [
            {"jsonrpc": "2.0", "id": i + 1, "method": method, "params": {"_meta": meta}}
            for i, method in enumerate(FRONT_METHODS)
        ]
    handshake = {"protocolVersion": version, "capabilities": capabilities, "clientInfo": client_info}
    return [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": handshake},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *({"jsonrpc": "2.0", "id": i + 1, "method": method} for i, method in enumerate(FRONT_METHODS)),
    ]


async def sdk_answers(server: Any, version: str, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """The server's answers at `version`, by method: each `{"result": …}` or `{"error": …}` as the SDK's
    stdio transport writes it."""
    lowlevel = server._lowlevel_server
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    lines = session_lines(version, capabilities or {}, CLIENT_INFO)
    methods = {line["id"]: line["method"] for line in lines if "id" in line}
    answers: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(lowlevel.run, server_reads, server_writes, lowlevel.create_initialization_options())
        for line in lines:
            message = types.jsonrpc_message_adapter.validate_json(json.dumps(line), by_name=False)
            await to_server.send(SessionMessage(message))
            if "id" in line:
                sent = await from_server.receive()
                # What the SDK's stdio writer puts on the wire.
                wire = json.loads(sent.message.model_dump_json(by_alias=True, exclude_unset=True))
                answers[methods[wire["id"]]] = {k: v for k, v in wire.items() if k in ("result", "error")}
        await to_server.aclose()
    return answers


def build(toolsets: tuple[Toolset, ...], read_only: bool, *, declared: bool) -> Any:
    from meshes_mcp.config import Settings
    from meshes_mcp.server.app import build_server

    settings = Settings(toolsets=",".join(toolsets), read_only=read_only, _env_file=None)
    return build_server(settings, declared=declared)


async def all_answers(*, declared: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """configuration key (and client view) → protocol version → method → answer, for every packaged
    configuration and client view."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    versions = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
    for toolsets, read_only in CONFIGURATIONS:
        server = build(toolsets, read_only, declared=declared)
        key = configuration_key(toolsets, read_only)
        for view, capabilities in CLIENT_VIEWS.items():
            table[key + view] = {v: await sdk_answers(server, v, capabilities) for v in versions}
    return table


def packed(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The table as stored: list entries and whole answers each kept once, referred to by index."""
    items: list[Any] = []
    answers: list[Any] = []
    item_index: dict[str, int] = {}
    answer_index: dict[str, int] = {}

    def keep(pool: list[Any], index: dict[str, int], value: Any) -> int:
        key = json.dumps(value, sort_keys=True)
        if key not in index:
            index[key] = len(pool)
            pool.append(value)
        return index[key]

    configurations: dict[str, Any] = {}
    for key, versions in table.items():
        configurations[key] = {}
        for version, methods in versions.items():
            refs = {}
            for method, answer in methods.items():
                if "result" in answer:
                    result = answer["result"]
                    lists = {
                        name: [keep(items, item_index, item) for item in value]
                        for name, value in result.items()
                        if isinstance(value, list) and all(isinstance(item, dict) for item in value) and value
                    }
                    rest = {name: value for name, value in result.items() if name not in lists}
                    answer = {"result": rest, "lists": lists} if lists else {"result": rest}
                refs[method] = keep(answers, answer_index, answer)
            configurations[key][version] = refs
    return {"configurations": configurations, "answers": answers, "items": items}


def answers_text(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line per stored value, so a diff shows what moved."""
    stored = packed(table)

    def lines(values: Iterable[Any]) -> str:
        return ",\n".join("    " + json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in values)

    configurations = json.dumps(stored["configurations"], separators=(",", ":"))
    return (
        "{\n"
        f'  "configurations": {configurations},\n'
        f'  "answers": [\n{lines(stored["answers"])}\n  ],\n'
        f'  "items": [\n{lines(stored["items"])}\n  ]\n'
        "}\n"
    )
