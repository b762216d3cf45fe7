"""Every tool the server can offer, as data: its toolset, its annotations, its description and its handler.

A tool is a module-level handler under `@tool(...)`, which turns it into a `ServerTool`; each toolset
module lists its tools in `TOOLS`, and `all_tools()` is the one inventory of them all, in the order
tools/list shows them. `enabled_tools()` is the one place that decides what a server registers:
the toolsets asked for and, in read-only mode, no write. The README's tool table and the tools/list
snapshot are generated from the same inventory (`python -m meshes_mcp.server.docs`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING

from mcp_types import CallToolResult, ToolAnnotations

from meshes_mcp.server.schema import compact_schema

if TYPE_CHECKING:
    from mcp.server.mcpserver.tools import Tool


class Toolset(StrEnum):
    """The toolsets, in the order their tools are listed (`--toolsets` / `MESHES_TOOLSETS` names)."""

    INTEGRATIONS = "integrations"
    EVENTS = "events"
    CONNECTIONS = "connections"
    RULES = "rules"
    DELIVERIES = "deliveries"
    WORKSPACES = "workspaces"
    SESSIONS = "sessions"


TOOLSETS: tuple[Toolset, ...] = tuple(Toolset)
# Embed sessions mint end-user tokens: an operator turns them on on purpose.
DEFAULT_TOOLSETS: tuple[Toolset, ...] = tuple(t for t in Toolset if t is not Toolset.SESSIONS)

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
        from mcp.server.mcpserver.tools import Tool

        sdk_tool = Tool.from_function(self.handler, description=self.description, annotations=self.annotations)
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
) -> Callable[[Handler], ServerTool]:
    """Declare a module-level handler as a tool. Annotations are required arguments: each is a claim
    a client acts on (auto-approving reads, confirming destructive calls), so none is left to a default
    that might be wrong, except open_world (every tool talks to the Meshes API)."""

    def declare(handler: Handler) -> ServerTool:
        return ServerTool(handler, toolset, title, read_only, idempotent, destructive, open_world)

    return declare


def all_tools() -> tuple[ServerTool, ...]:
    """Every tool of every toolset, in tools/list order."""
    from meshes_mcp.server.tools import connections, deliveries, events, integrations, rules, sessions, workspaces

    modules = (integrations, events, connections, rules, deliveries, workspaces, sessions)
    return tuple(server_tool for module in modules for server_tool in module.TOOLS)


def enabled_tools(toolsets: Iterable[Toolset], read_only: bool) -> tuple[ServerTool, ...]:
    """The tools a server with these toolsets registers; read-only mode leaves every write out."""
    wanted = set(toolsets)
    return tuple(t for t in all_tools() if t.toolset in wanted and (t.read_only or not read_only))


def parse_toolsets(value: str | None) -> tuple[Toolset, ...]:
    """`MESHES_TOOLSETS` / `--toolsets`: a comma list of toolset names, or `all`."""
    if not value or not value.strip():
        return DEFAULT_TOOLSETS
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if "all" in names:
        return TOOLSETS
    known = [t.value for t in Toolset]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(known)} or all")
    return tuple(t for t in Toolset if t.value in names)


@cache
def _tool_name_pattern() -> re.Pattern[str]:
    names = sorted((t.name for t in all_tools()), key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")


class EnabledTools:
    """The names of the tools this server registered: hints an agent reads (`next`, a fix's calls) that
    name any other tool are left out, since the agent could not make that call here."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def allows(self, text: str) -> bool:
        """Whether `text` names only registered tools (or none)."""
        return all(found in self.names for found in _tool_name_pattern().findall(text))

    def hint(self, text: str | None) -> str | None:
        return text if text is not None and self.allows(text) else None

    def calls(self, calls: list[str]) -> list[str]:
        return [call for call in calls if self.allows(call)]


def every_tool_enabled() -> EnabledTools:
    return EnabledTools(t.name for t in all_tools())


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
