"""The toolsets and `--toolsets` / `MESHES_TOOLSETS` parsing: standard library only, so the stdio front
(`server/front.py`) can tell which packaged answers fit this configuration before the SDK has loaded."""

from __future__ import annotations

from enum import StrEnum


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


def configuration_key(toolsets: tuple[Toolset, ...], read_only: bool) -> str:
    """What the server's listings depend on, as one string: the toolsets in order, then the mode."""
    return ",".join(toolsets) + (" read-only" if read_only else "")
