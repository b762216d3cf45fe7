"""What emit_event, emit_events and get_event say about an event that reaches no rule.

An event no rule takes is accepted (201) and `completed` at once with nothing delivered: without a word,
an agent reads that as success. The note names the closest rule event names of the workspace (read once
per call) and the next step: a rule for this name, or a replay under the rule's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshes_mcp.api import errors as e
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.server.incident.findings import RULE_PAGES
from meshes_mcp.server.incident.names import closest_first, is_near_miss
from meshes_mcp.server.incident.window import call_text

if TYPE_CHECKING:
    from meshes_mcp.api import models as m
    from meshes_mcp.api.client import MeshesClient

CLOSEST_SHOWN = 3


@dataclass
class WorkspaceRules:
    """The workspace's rules, listed at most once per tool call; None when they cannot be read."""

    client: MeshesClient
    workspace: str
    _rules: list[m.Rule] | None = None
    _read: bool = field(default=False)

    async def get(self) -> list[m.Rule] | None:
        if not self._read:
            self._read = True
            from meshes_mcp.api.client import iterate_pages

            try:
                pages = iterate_pages(self.client.list_workspace_rules, self.workspace, max_pages=RULE_PAGES)
                self._rules = [rule async for rule in pages]
            except (e.MeshesError, InvalidRequest):
                self._rules = None
        return self._rules


def listened_for(rules: list[m.Rule], name: str) -> bool:
    """Some active rule listens for this name (whatever its resource filters)."""
    return any(rule.event == name and rule.active is not False for rule in rules)


def no_rule_note(
    name: str, rules: list[m.Rule], *, workspace: str | None, since: str | None, count: int = 1
) -> dict[str, Any]:
    """Said of `count` events named `name` that reached no rule: the closest rule names and the next step."""
    active = [rule for rule in rules if rule.active is not False]
    closest = [n for n in closest_first(name, {r.event for r in active} - {name})][:CLOSEST_SHOWN]
    near = [n for n in closest if is_near_miss(name, n)]
    what = "this event" if count == 1 else f"these {count} events"
    same = [rule for rule in active if rule.event == name]
    if same:
        # An active rule for the name that did not take it: its resource filter is what it did not meet.
        wants = ", ".join(f"resource={r.resource or '*'} resource_id={r.resource_id or '*'}" for r in same[:2])
        warning = f"matched no rule: {what} went nowhere; the active rules for `{name}` take only {wants}"
    else:
        warning = f"matched no rule: {what} went nowhere (no active rule listens for `{name}`)"
    if near:
        warning += f"; a rule listens for `{near[0]}`, a near miss"
    as_event = near[0] if near else None
    replay = call_text("replay_events", workspace=workspace, event=name, since=since, as_event=as_event)
    step = f"create_rule event={name} connection=<id> metadata=<action> routes it from now on"
    if near:
        step = f"emit `{near[0]}` instead, or {step}"
    return {
        "matched_no_rule": True,
        "warning": warning,
        "closest_rule_events": closest or None,
        "next": f"{step}; then {replay} sends what was missed",
    }
