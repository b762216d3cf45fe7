"""The tool surface as a client sees it: names, annotations, schemas, toolsets, read-only mode, size.

Everything here goes through a real in-memory MCP session (`tools/list`), never the registry.
`tests/snapshots/tools_list.json` holds the full listing so every change to the surface shows up in
review; regenerate it with `UPDATE_SNAPSHOTS=1 pytest tests/test_tools_surface.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from meshes_mcp.config import Settings
from meshes_mcp.server import docs, registry
from meshes_mcp.server.app import build_server

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"
# Model-visible bytes (name, title, description, input schema) per tool, all toolsets: 0.6x the official server.
BYTES_PER_TOOL_BUDGET = 420
PARAM_DESCRIPTION_MAX = 60
HINTS = ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint")

# DESIGN §3: the tools of each toolset.
TOOLSETS: dict[str, set[str]] = {
    "integrations": {"list_integrations"},
    "events": {"emit_event", "emit_events", "replay_events"},
    "connections": {
        "list_connections", "get_connection", "create_connection", "update_connection", "delete_connection",
        "get_connection_actions", "get_connection_fields", "get_connection_mappings", "update_connection_mappings",
    },
    "rules": {"list_rules", "get_rule", "create_rule", "delete_rule"},
    "deliveries": {
        "list_events", "get_event", "list_rule_attempts", "get_rule_attempt", "retry_rule_event",
        "cancel_rule_event", "cancel_event", "diagnose_event", "triage_failures", "retry_failed",
    },
    "workspaces": {
        "list_workspaces", "get_workspace", "create_workspace", "update_workspace", "list_event_types",
        "list_resources",
    },
    "sessions": {"create_session", "list_sessions", "refresh_session", "revoke_session"},
}  # fmt: skip
ALL_TOOLS = set().union(*TOOLSETS.values())
# Deletes, cancels and revokes ask for confirmation; updates overwrite state (credentials, a mapping),
# so they are destructive in MCP's sense too (not purely additive), though not worth a confirmation.
CONFIRMED = {"delete_connection", "delete_rule", "revoke_session", "cancel_rule_event", "cancel_event"}
DESTRUCTIVE = CONFIRMED | {"update_connection", "update_connection_mappings", "update_workspace"}
# Writes that are not idempotent: each call creates, sends or retries once more.
NOT_IDEMPOTENT = {
    "emit_event", "emit_events", "create_connection", "create_rule", "create_workspace", "create_session",
    "refresh_session", "retry_rule_event", "retry_failed", "replay_events",
}  # fmt: skip

# The 38 documented endpoints (API reference §4.7) and the tool that reaches each.
ENDPOINTS: dict[str, str] = {
    "GET /workspaces": "list_workspaces",
    "POST /workspaces": "create_workspace",
    "GET /workspaces/{id}": "get_workspace",
    "PUT /workspaces/{id}": "update_workspace",
    "GET /workspaces/{id}/connections": "list_connections",
    "GET /workspaces/{id}/event-types": "list_event_types",
    "GET /workspaces/{id}/resources": "list_resources",
    "GET /workspaces/{id}/events": "list_events",
    "GET /workspaces/{id}/rules": "list_rules",
    "GET /connections": "list_connections",
    "POST /connections": "create_connection",
    "GET /connections/{id}": "get_connection",
    "PUT /connections/{id}": "update_connection",
    "DELETE /connections/{id}": "delete_connection",
    "GET /connections/{id}/actions": "get_connection_actions",
    "GET /connections/{id}/fields": "get_connection_fields",
    "GET /connections/{id}/mappings/default": "get_connection_mappings",
    "PUT /connections/{id}/mappings/default": "update_connection_mappings",
    "GET /rules": "list_rules",
    "POST /rules": "create_rule",
    "GET /rules/{id}": "get_rule",
    "DELETE /rules/{id}": "delete_rule",
    "GET /events": "list_events",
    "POST /events": "emit_event",
    "POST /events/bulk": "emit_events",
    "GET /events/{id}": "get_event",
    "GET /events/{id}/payload": "get_event",
    "POST /events/{id}/rules/{rule_id}/retry": "retry_rule_event",
    "GET /events/{id}/rules/{rule_id}/attempts": "list_rule_attempts",
    "GET /events/{id}/rules/{rule_id}/attempts/{attempt_id}": "get_rule_attempt",
    "GET /events/{id}/rules/{rule_id}/attempts/{attempt_id}/response-details": "get_rule_attempt",
    "POST /events/{id}/rules/{rule_id}/cancel": "cancel_rule_event",
    "POST /events/{id}/cancel": "cancel_event",
    "GET /integrations": "list_integrations",
    "POST /sessions": "create_session",
    "GET /sessions": "list_sessions",
    "POST /sessions/{id}/refresh": "refresh_session",
    "DELETE /sessions/{id}": "revoke_session",
}


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_tool_list", ROOT / "bench" / "bench_tool_list.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


async def listing(**settings: Any) -> list[Any]:
    """tools/list of a server built with these settings, through a real client session."""
    async with Client(build_server(Settings(**settings))) as client:
        return (await client.list_tools()).tools


@pytest.fixture(scope="module")
async def all_tools(anyio_backend) -> dict[str, Any]:
    """Every tool as listed (it takes `anyio_backend` so that plain tests can use this async fixture)."""
    return {tool.name: tool for tool in await listing(toolsets="all")}


def test_every_tool_of_the_design_is_listed(all_tools):
    assert set(all_tools) == ALL_TOOLS


def test_names_are_portable(all_tools):
    for name in all_tools:
        assert re.fullmatch(r"[a-z0-9_]{1,64}", name), name


def test_every_tool_sets_all_four_annotations_and_a_title(all_tools):
    for name, tool in all_tools.items():
        for hint in HINTS:
            assert getattr(tool.annotations, hint) is not None, (name, hint)
        assert tool.annotations.open_world_hint is True, name  # every tool reaches Meshes
        # Clients show the top-level title; the annotation's is the older place for it.
        assert tool.title and tool.title == tool.annotations.title, name


def test_annotations_tell_the_truth(all_tools):
    for name, tool in all_tools.items():
        hints = tool.annotations
        writes = name in DESTRUCTIVE or name in NOT_IDEMPOTENT or name.startswith("update_")
        assert hints.read_only_hint is (not writes), name
        assert hints.destructive_hint is (name in DESTRUCTIVE), name
        assert hints.idempotent_hint is (name not in NOT_IDEMPOTENT), name


def test_every_tool_has_an_output_schema(all_tools):
    for name, tool in all_tools.items():
        assert tool.output_schema and tool.output_schema.get("type") == "object", name


@pytest.mark.anyio
async def test_read_only_mode_lists_only_read_only_tools_and_wins_over_toolsets(all_tools):
    read_only = {tool.name: tool for tool in await listing(toolsets="all", read_only=True)}
    assert set(read_only) == {n for n, t in all_tools.items() if t.annotations.read_only_hint}
    assert all(tool.annotations.read_only_hint for tool in read_only.values())
    assert "diagnose_event" in read_only and "delete_rule" not in read_only and "emit_event" not in read_only
    only_events = {tool.name for tool in await listing(toolsets="events", read_only=True)}
    assert only_events == set()  # both events tools write


@pytest.mark.anyio
async def test_default_toolsets_are_all_but_sessions():
    assert {tool.name for tool in await listing()} == ALL_TOOLS - TOOLSETS["sessions"]


@pytest.mark.anyio
async def test_toolsets_choose_what_is_listed():
    assert {tool.name for tool in await listing(toolsets="rules,events")} == TOOLSETS["rules"] | TOOLSETS["events"]
    assert {tool.name for tool in await listing(toolsets="sessions")} == TOOLSETS["sessions"]


def test_every_documented_endpoint_has_a_tool(all_tools):
    assert len(ENDPOINTS) == 38
    missing = {endpoint: tool for endpoint, tool in ENDPOINTS.items() if tool not in all_tools}
    assert not missing


def test_tool_list_fits_the_byte_budget(all_tools):
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in all_tools.values()]
    report = bench.measure(tools)
    assert report["bytes_per_tool"] <= BYTES_PER_TOOL_BUDGET, (
        f"{report['bytes_per_tool']:.1f} bytes/tool; largest: "
        + ", ".join(f"{n} {s}" for n, s in sorted(report["sizes"].items(), key=lambda kv: -kv[1])[:5])
    )


def test_parameter_descriptions_are_short(all_tools):
    for name, tool in all_tools.items():
        for param, schema in tool.input_schema["properties"].items():
            assert len(schema.get("description", "")) <= PARAM_DESCRIPTION_MAX, (name, param)


def test_time_windows_say_their_format(all_tools):
    for name, tool in all_tools.items():
        properties = tool.input_schema["properties"]
        if "since" in properties:
            assert "ISO 8601" in properties["since"]["description"] and "24h" in properties["since"]["description"]
            assert "since" in properties["until"]["description"], name


def test_descriptions_are_one_short_paragraph(all_tools):
    for name, tool in all_tools.items():
        assert tool.description and "\n" not in tool.description, name
        assert len(tool.description) <= 200, (name, len(tool.description))


def test_tools_list_snapshot(all_tools):
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in all_tools.values()]
    text = docs.snapshot_text(tools)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert SNAPSHOT.exists(), "no snapshot yet: run with UPDATE_SNAPSHOTS=1 to record one"
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    changed = [new["name"] for new, old in zip(tools, recorded, strict=False) if new != old] + sorted(
        {t["name"] for t in tools} ^ {t["name"] for t in recorded}
    )
    assert tools == recorded, (
        f"tools/list changed ({', '.join(changed) or 'order'}); review, then UPDATE_SNAPSHOTS=1 (or "
        "python -m meshes_mcp.server.docs) to accept"
    )
    assert SNAPSHOT.read_text(encoding="utf-8") == text, "snapshot not in its generated form: regenerate it"


def test_readme_tool_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.readme_with_table(readme) == readme, "README tool table is stale: python -m meshes_mcp.server.docs"


def test_readme_table_check_catches_a_hand_edit():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    edited = readme.replace("| rules | `list_rules` | read |", "| rules | `list_rules` | write |")
    assert edited != readme
    assert docs.readme_with_table(edited) == readme


def test_docs_check_reports_stale_files(tmp_path, capsys):
    (tmp_path / "README.md").write_text(f"# x\n{docs.TABLE_START}\nold\n{docs.TABLE_END}\n", encoding="utf-8")
    assert docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "README.md" in capsys.readouterr().out
    assert docs.main(["--root", str(tmp_path)]) == 0
    assert docs.main(["--check", "--root", str(tmp_path)]) == 0
    assert "`retry_failed`" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_the_declarative_list_is_what_tools_list_shows(all_tools):
    declared = registry.all_tools()
    assert [t.name for t in declared] == list(all_tools)
    for server_tool in declared:
        listed = all_tools[server_tool.name]
        assert listed.description == server_tool.description
        assert listed.annotations == server_tool.annotations
        assert set(TOOLSETS[server_tool.toolset.value]) >= {server_tool.name}


@pytest.mark.anyio
async def test_filtering_by_toolset_and_read_only_happens_in_one_place():
    for toolsets, read_only in ((("rules", "events"), False), (("deliveries",), True), (tuple(TOOLSETS), True)):
        wanted = registry.parse_toolsets(",".join(toolsets))
        expected = [t.name for t in registry.enabled_tools(wanted, read_only)]
        settings = {"toolsets": ",".join(toolsets), "read_only": read_only}
        assert [tool.name for tool in await listing(**settings)] == expected


def test_every_handler_takes_its_runtime_from_the_typed_lifespan_context():
    import typing

    from meshes_mcp.server.runtime import ToolContext

    for server_tool in registry.all_tools():
        hints = typing.get_type_hints(server_tool.handler, include_extras=True)
        assert hints.get("ctx") is ToolContext, server_tool.name
