"""Every tool the server can offer, as data: its toolset, its annotations, its description and its handler.

A tool is a module-level handler under `@tool(...)`, which turns it into a `ServerTool`; each toolset
module lists its tools in `TOOLS`, and `all_tools()` is the one inventory of them all, in the order
tools/list shows them. `enabled_tools()` is the one place that decides what a server registers:
the toolsets asked for and, in read-only mode, no write. The README's tool table, the tools/list
snapshot and the packaged manifest are generated from the same inventory (`python -m meshes_mcp.server.docs`).

Why a manifest: building a tool's input and output schemas means importing its handler module (and the
request models, triage, views it needs) and letting pydantic build a model per tool: most of a cold
start. A stdio client asks for `initialize` and `tools/list` first, and both are answered from the
manifest (`tools/manifest.json`, what tools/list shows plus each tool's toolset); a handler's module is
imported, and its SDK tool built, on its first call. The test suite fails when the manifest differs
from what the handlers declare.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import ConfigDict

# Re-exported: tool modules declare their toolset with these, the server parses `--toolsets` with them.
from meshes_mcp.server.toolsets import DEFAULT_TOOLSETS as DEFAULT_TOOLSETS
from meshes_mcp.server.toolsets import TOOLSETS as TOOLSETS
from meshes_mcp.server.toolsets import Toolset as Toolset
from meshes_mcp.server.toolsets import parse_toolsets as parse_toolsets

if TYPE_CHECKING:
    from mcp.server.mcpserver.context import Context

MANIFEST = Path(__file__).with_name("tools") / "manifest.json"


# Handlers take the request's typed context and the tool's arguments and answer with a rendered result.
Handler = Callable[..., Awaitable[CallToolResult]]


@dataclass(frozen=True)
class ServerTool:
    """One tool as the server offers it. The description is the handler's docstring on one line."""

    handler: Handler
    toolset: Toolset
    title: str
    read_only: bool
    idempotent: bool
    destructive: bool = False
    open_world: bool = True
    meta: dict[str, Any] | None = None  # `_meta` as listed: an MCP Apps view's link (`server.apps`)

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def description(self) -> str:
        # Indentation costs tokens too.
        return " ".join((self.handler.__doc__ or "").split())

    @property
    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            open_world_hint=self.open_world,
        )

    def to_sdk_tool(self) -> Tool:
        from meshes_mcp.server.schema import compact_schema

        sdk_tool = Tool.from_function(
            self.handler,
            title=self.title,
            description=self.description,
            annotations=self.annotations,
            meta=self.meta,
        )
        sdk_tool.parameters = compact_schema(sdk_tool.parameters)
        return sdk_tool


def tool(
    toolset: Toolset,
    *,
    title: str,
    read_only: bool,
    idempotent: bool,
    destructive: bool = False,
    open_world: bool = True,
    meta: dict[str, Any] | None = None,
) -> Callable[[Handler], ServerTool]:
    """Declare a module-level handler as a tool. Annotations are required arguments: each is a claim
    a client acts on (auto-approving reads, confirming destructive calls), so none is left to a default
    that might be wrong, except open_world (every tool talks to the Meshes API). `meta` is listed as the
    tool's `_meta`."""

    def declare(handler: Handler) -> ServerTool:
        return ServerTool(handler, toolset, title, read_only, idempotent, destructive, open_world, meta)

    return declare


def all_tools() -> tuple[ServerTool, ...]:
    """Every tool of every toolset, in tools/list order."""
    from meshes_mcp.server.tools import connections, deliveries, events, integrations, rules, sessions, workspaces

    modules = (integrations, events, connections, rules, deliveries, workspaces, sessions)
    return tuple(server_tool for module in modules for server_tool in module.TOOLS)


@dataclass(frozen=True)
class ListedTool:
    """One tool of the manifest: what tools/list shows of it (`wire`) and its toolset."""

    toolset: Toolset
    wire: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.wire["name"])

    @property
    def read_only(self) -> bool:
        return bool(self.wire["annotations"]["readOnlyHint"])

    def to_sdk_tool(self) -> Tool:
        """The SDK tool as listed, its handler imported on its first call (see the module docstring)."""
        # Constructed, not validated: no `fn_metadata` (the declared tool has it, built on the first call).
        return DeferredTool.model_construct(  # type: ignore[call-arg]
            fn=_not_loaded,
            name=self.name,
            title=self.wire.get("title"),
            description=self.wire["description"],
            parameters=self.wire["inputSchema"],
            is_async=True,
            context_kwarg=None,
            resolved_params={},
            resolver_plans={},
            annotations=ToolAnnotations.model_validate(self.wire["annotations"]),
            icons=None,
            meta=self.wire.get("_meta"),
            toolset=self.toolset,
            listed_output_schema=self.wire.get("outputSchema"),
        )


def manifest_entry(server_tool: ServerTool, wire: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry: the tool's toolset, then its tools/list JSON."""
    return {"toolset": server_tool.toolset.value, **wire}


@cache
def listed_tools() -> tuple[ListedTool, ...]:
    """Every tool of the manifest, in tools/list order."""
    entries = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return tuple(ListedTool(Toolset(entry.pop("toolset")), entry) for entry in entries)


async def _not_loaded(**_: Any) -> Any:
    raise RuntimeError("a deferred tool runs through its declared tool")


class DeferredTool(Tool):
    """An SDK tool built from the manifest. Listing it needs nothing more; its first call imports the
    handler's module and builds the SDK's own tool from the handler, which validates and runs every call."""

    # Never validated (see `ListedTool.to_sdk_tool`): building its validator would only cost start-up time.
    model_config = ConfigDict(defer_build=True)

    toolset: Toolset
    listed_output_schema: dict[str, Any] | None = None

    @cached_property
    def output_schema(self) -> dict[str, Any] | None:
        return self.listed_output_schema

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        declared = declared_sdk_tool(self.toolset, self.name)
        return await declared.run(arguments, context, convert_result=convert_result)


@cache
def declared_sdk_tool(toolset: Toolset, name: str) -> Tool:
    """The SDK tool built from the handler itself (its module is imported here, once)."""
    module = importlib.import_module(f"meshes_mcp.server.tools.{toolset.value}")
    server_tool = next(t for t in module.TOOLS if t.name == name)
    return server_tool.to_sdk_tool()


def enabled_tools(
    toolsets: Iterable[Toolset], read_only: bool, *, declared: bool = False
) -> tuple[ListedTool | ServerTool, ...]:
    """The tools a server with these toolsets registers; read-only mode leaves every write out.
    From the manifest, or with `declared` from the handlers themselves (how the manifest is made)."""
    wanted = set(toolsets)
    inventory: tuple[ListedTool | ServerTool, ...] = all_tools() if declared else listed_tools()
    return tuple(t for t in inventory if t.toolset in wanted and (t.read_only or not read_only))


# A tool name is a whole word of the text: one of these runs that is the name of a tool.
_WORD = re.compile(r"\w+")


@cache
def _tool_names() -> frozenset[str]:
    return frozenset(t.name for t in listed_tools())


class EnabledTools:
    """The names of the tools this server registered: hints an agent reads (`next`, a fix's calls) that
    name any other tool are left out, since the agent could not make that call here."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def allows(self, text: str) -> bool:
        """Whether `text` names only registered tools (or none)."""
        known = _tool_names()
        return all(word in self.names for word in _WORD.findall(text) if word in known)

    def hint(self, text: str | None) -> str | None:
        return text if text is not None and self.allows(text) else None

    def calls(self, calls: list[str]) -> list[str]:
        return [call for call in calls if self.allows(call)]


def every_tool_enabled() -> EnabledTools:
    return EnabledTools(t.name for t in listed_tools())


def unknown_tool_message(name: str, registered: Iterable[str]) -> str:
    """What a call to a tool this server does not have answers: the closest registered names, or why a tool
    of that name is not here (its toolset is off, or it writes and the server is read-only)."""
    registered = sorted(registered)
    listed = {t.name: t for t in listed_tools()}
    if name in listed:
        off = listed[name]
        why = (
            "it changes things and this server is read-only (--read-only / MESHES_READ_ONLY)"
            if off.toolset.value in _enabled_toolsets(registered) and not off.read_only
            else f"its toolset {off.toolset.value} is off (--toolsets / MESHES_TOOLSETS)"
        )
        return f"Tool {name} is not enabled on this server: {why}."
    from meshes_mcp.api.problems import shown_text

    shown = shown_text(name)
    # A name longer than any tool's is no typo of one: it is echoed bounded and not compared.
    close = closest_names(name, registered) if shown == name else []
    hint = f"did you mean {' or '.join(close)}?" if close else f"tools/list shows the {len(registered)} tools."
    return f"Unknown tool: {shown}; {hint}"


def closest_names(word: str, names: Iterable[str], limit: int = 3) -> list[str]:
    """Up to `limit` names a mistyped `word` most likely meant: names that contain it (or that it contains:
    `triage` → `triage_failures`), then the closest spellings."""
    names = list(names)
    needle = word.strip().lower()
    if not needle:
        return []
    containing = sorted((n for n in names if needle in n or (len(n) > 3 and n in needle)), key=len)
    spelled = difflib.get_close_matches(needle, names, n=limit, cutoff=0.6)
    return list(dict.fromkeys(containing + spelled))[:limit]


def _enabled_toolsets(registered: Iterable[str]) -> set[str]:
    by_name = {t.name: t.toolset.value for t in listed_tools()}
    return {by_name[n] for n in registered if n in by_name}


def tool_table(tools: Iterable[ServerTool] | None = None) -> str:
    """The README's tool table: one row per tool, grouped by toolset."""
    rows = ["| Toolset | Tool | Kind | What it does |", "|---|---|---|---|"]
    for server_tool in tools if tools is not None else all_tools():
        rows.append(
            f"| {server_tool.toolset.value} | `{server_tool.name}` | {_kind(server_tool)} | {server_tool.description} |"
        )
    return "\n".join(rows) + "\n"


def _kind(server_tool: ServerTool) -> str:
    if server_tool.read_only:
        return "read"
    return "write, destructive" if server_tool.destructive else "write"
