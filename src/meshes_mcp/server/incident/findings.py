"""What never became a delivery: the silent causes triage_failures reports besides failing groups.

A failed delivery leaves a record; an event that matched no rule leaves only `total_rules: 0`. Every
finding here is read from the window's events and the workspace's rules as they are now:

- `unrouted`: events of one name (and resource) that matched no rule, with the rules that explain it:
  a rule for a near-miss name, an inactive rule, a rule whose `resource`/`resource_id` filter the
  events did not carry, a rule created after the events;
- `passed_over` (when filtered by `event`, `connection` or `rule`): events of an expected rule's name that
  other rules took but that rule did not, and why (never replayed: the other rules would get them twice);
- `no_events` (likewise filtered): a rule's event with no event in the window, with the names that did
  arrive, closest first, and when that name was last seen at all;
- `other_workspace`: events of such a name that went to another workspace of the organisation.

Reading unrouted events means reading every event of the window, not only failing ones: the scan takes
the same bound as the failing scan (`max_events`) and, when cut short, says so: its counts are then
lower bounds and `next` continues it. The result grows with the number of causes, never of events.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshes_mcp.api import models as m
from meshes_mcp.api.client import iterate_pages
from meshes_mcp.server.incident import replay
from meshes_mcp.server.incident.census import WindowScan, matched_no_rule, window_events
from meshes_mcp.server.incident.names import closest_first, is_near_miss, near_misses
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.scan import PAGE_SIZE
from meshes_mcp.server.incident.window import Window, call_text, created, timestamp

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.server.incident.groups import Filters
    from meshes_mcp.server.registry import EnabledTools


FINDINGS_SHOWN = 10
RULES_SHOWN = 5  # per finding
NAMES_SHOWN = 5  # arrived names, closest first
SAMPLES = 3
RESOURCE_IDS_KEPT = 50  # distinct resource ids remembered per unrouted group (to test resource_id filters)
RULE_PAGES = 20  # pages of rules read at most (the API's default page is 50)
OTHER_WORKSPACES = 20  # other workspaces looked into at most
OTHER_PAGES = 5  # pages of one name read per other workspace at most: beyond, the count is a lower bound
REPLAY_WAIT = 60
# Payloads read at most per triage to tell replayed events from the others (replay_events reads up to
# replay.COPY_READS before it sends: beyond this, the finding says it did not look).
COPY_READS = 1_000


# --- missed events, by name and resource --------------------------------------------------------


@dataclass
class Missed:
    """Events of one name and resource that a rule did not take (none at all, or not the expected one)."""

    event: str
    resource: str | None
    count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    samples: list[str] = field(default_factory=list)
    resource_ids: Counter[str | None] = field(default_factory=Counter)
    events: list[m.Event] = field(default_factory=list)
    replayed: int | None = None  # originals with a copy (None: not known, the check was capped)
    are_replays: int = 0  # copies themselves

    def add(self, event: m.Event) -> None:
        self.count += 1
        self.events.append(event)
        if len(self.samples) < SAMPLES:
            self.samples.append(event.id)
        self.last_seen = self.last_seen or event.created_at  # newest first
        self.first_seen = event.created_at or self.first_seen
        if event.resource_id in self.resource_ids or len(self.resource_ids) < RESOURCE_IDS_KEPT:
            self.resource_ids[event.resource_id] += 1

    def head(self, kind: str) -> dict[str, Any]:
        """What a finding about these events starts with: its kind, the name, counts and times, samples."""
        return {"kind": kind, "event": self.event, "resource": self.resource, "count": self.count,
                "first_seen": self.first_seen, "last_seen": self.last_seen, "samples": self.samples}  # fmt: skip

    def older_than(self, moment: datetime) -> int:
        return sum(1 for event in self.events if (at := created(event)) is not None and at < moment)


def census(events: list[m.Event]) -> tuple[dict[tuple[str, str | None], Missed], Counter[str]]:
    """The events that matched no rule, by name and resource, and the count of each name that arrived."""
    groups: dict[tuple[str, str | None], Missed] = {}
    names: Counter[str] = Counter()
    for event in events:
        names[event.event] += 1
        if matched_no_rule(event):
            key = (event.event, event.resource)
            groups.setdefault(key, Missed(event.event, event.resource)).add(event)
    return groups, names


# --- why a rule did not take them ---------------------------------------------------------------


@dataclass
class Relation:
    """A rule that would have taken the group's events but for one thing, read from the rule as it is."""

    rule: m.Rule
    why: str  # near_miss, inactive, resource, resource_id, created_after, matches_now
    details: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        r = self.rule
        return {"id": r.id, "event": r.event, "connection": r.connection, "type": r.type, "why": self.why,
                **self.details}  # fmt: skip


def relations(group: Missed, rules: list[m.Rule]) -> list[Relation]:
    """Rules for the same name first (each with what kept it from matching), then near-miss names."""
    same: list[Relation] = []
    near: list[Relation] = []
    carried_ids = [rid for rid, _ in group.resource_ids.most_common(3)]
    for rule in rules:
        if rule.event == group.event:
            same.append(why_not(group, rule, carried_ids))
        elif is_near_miss(group.event, rule.event):
            near.append(Relation(rule, "near_miss"))
    order = near_misses(group.event, [r.rule.event for r in near])
    near.sort(key=lambda r: order.index(r.rule.event))
    return same + near


def why_not(group: Missed, rule: m.Rule, carried_ids: list[str | None]) -> Relation:
    if rule.active is False:
        return Relation(rule, "inactive")
    if rule.resource is not None and rule.resource != group.resource:
        return Relation(rule, "resource", {"rule_resource": rule.resource, "event_resource": group.resource or "none"})
    if rule.resource_id is not None and rule.resource_id not in group.resource_ids:
        shown = [rid or "none" for rid in carried_ids]
        return Relation(rule, "resource_id", {"rule_resource_id": rule.resource_id, "event_resource_ids": shown})
    rule_created = timestamp(rule.created_at)
    before = group.older_than(rule_created) if rule_created is not None else 0
    if before:
        return Relation(rule, "created_after", {"rule_created_at": rule.created_at, "events_before": before})
    return Relation(rule, "matches_now", {"rule_created_at": rule.created_at})


def note_replays(group: Missed, check: replay.CopyCheck) -> None:
    """How many of the group's events were replayed already, and how many are replays themselves."""
    if check.capped:
        return
    group.are_replays = sum(1 for ev in group.events if replay.MARKER in check.payloads.get(ev.id, {}))
    group.replayed = sum(1 for ev in group.events if check.copied(ev.id))


# --- what a finding says ------------------------------------------------------------------------


@dataclass
class Context:
    workspace_arg: str | None  # as the caller gave it (None: the default workspace)
    window: Window
    enabled: EnabledTools

    def replay(self, event: str, as_event: str | None = None) -> str:
        return call_text("replay_events", workspace=self.workspace_arg, event=event, **self.window.args(),
                         as_event=as_event, wait_seconds=REPLAY_WAIT)  # fmt: skip


def create_rule_call(rule: m.Rule, **changes: Any) -> str:
    """The rule again with some of its fields changed (a field set to None is left out)."""
    args: dict[str, Any] = {"connection": rule.connection, "event": rule.event, "resource": rule.resource,
                            "resource_id": rule.resource_id}  # fmt: skip
    args.update(changes)
    metadata = json.dumps(rule.metadata, separators=(",", ":"), ensure_ascii=False)
    return call_text("create_rule", **args, metadata=metadata)


def unrouted_view(group: Missed, found: list[Relation], ctx: Context) -> dict[str, Any]:
    name = f"`{group.event}`" + (f" (resource `{group.resource}`)" if group.resource else "")
    reason, fix, calls = explain(group, found, name, ctx)
    view: dict[str, Any] = {
        **group.head("unrouted"),
        "reason": reason,
        "rules": [r.view() for r in found[:RULES_SHOWN]] or None,
        "fix": fix,
        "calls": ctx.enabled.calls(calls),
    }
    view["replayed"] = group.replayed or None
    view["are_replays"] = group.are_replays or None
    left = group.count - (group.replayed or 0) - group.are_replays
    if group.replayed is None:
        view["replays_unknown"] = (
            f"not checked for earlier replays (over {COPY_READS:,} events since): replay_events checks before sending"
        )
    then = ctx.replay(group.event)
    if left and ctx.enabled.allows(then):
        view["then"] = then
        view["fix"] += f" Then `then` replays the {left} missed (each once)."
    elif not left:
        view["fix"] += " Those in the window were all replayed already."
    return view


def explain(
    group: Missed, found: list[Relation], name: str, ctx: Context, head: str | None = None
) -> tuple[str, str, list[str]]:
    """The likely reason, the fix in words and the fix as calls, from the first rule that explains it."""
    if head is None:
        head = f"{group.count} {name} events matched no rule"
        if group.replayed:
            head += f" ({group.replayed} replayed since)"
    if not found:
        return (
            f"{head}: no rule listens for `{group.event}`, nor for a name close to it",
            f"If they should reach a destination, create_rule with event={group.event} (list_connections shows "
            "the connections).",
            [],
        )
    first = found[0]
    rule = first.rule
    which = f"rule {rule.id} ({rule.type or 'connection'} {rule.connection})"
    if first.why == "near_miss":
        alt = ctx.replay(group.event, as_event=rule.event)
        return (
            f"{head}: {which} listens for `{rule.event}`, a near miss of `{group.event}` (case, separators, "
            "tense or a typo)",
            f"Route `{group.event}` too (the call); or correct the name where the app emits it and replay "
            f"under the rule's name ({alt}) instead of `then`.",
            [create_rule_call(rule, event=group.event)],
        )
    if first.why == "inactive":
        return (
            f"{head}: {which} listens for `{rule.event}` but is inactive",
            "Rules cannot be edited: create it again, active (the call).",
            [create_rule_call(rule)],
        )
    if first.why == "resource":
        carried = f"resource `{group.resource}`" if group.resource else "no resource"
        return (
            f"{head}: {which} takes only resource `{rule.resource}`; these carry {carried}",
            "If they should go there, route their resource too (the call).",
            [create_rule_call(rule, resource=group.resource)],
        )
    if first.why == "resource_id":
        shown = ", ".join(f"`{rid}`" for rid in first.details["event_resource_ids"])
        return (
            f"{head}: {which} takes only resource_id `{rule.resource_id}`; these carry {shown}",
            "If they should go there, route them without the resource_id filter (the call).",
            [create_rule_call(rule, resource_id=None)],
        )
    if first.why == "created_after":
        before = first.details["events_before"]
        return (
            f"{head}: {which} was created at {rule.created_at}, after {before} of them",
            "The rule takes them now.",
            [],
        )
    return (
        f"{head} when they arrived; {which} (created {rule.created_at}) matches them now",
        "The rule takes them now.",
        [],
    )


def wanted(group: Missed, found: list[Relation], filters: Filters) -> bool:
    """Whether a group concerns the call's filters: its name, or a rule of the filtered name, connection or id."""
    named = filters.event is None or group.event == filters.event
    if not named and not any(r.rule.event == filters.event for r in found):
        return False
    if filters.connection is not None and not any(r.rule.connection == filters.connection for r in found):
        return False
    return filters.rule is None or any(r.rule.id == filters.rule for r in found)


def filtered(filters: Filters) -> bool:
    return filters.event is not None or filters.connection is not None or filters.rule is not None


# --- the findings -------------------------------------------------------------------------------


@dataclass
class Findings:
    views: list[dict[str, Any]]
    total: int
    scan: WindowScan


async def find(
    client: MeshesClient, filters: Filters, window: Window, limit: int, ctx: Context, progress: Throttle
) -> Findings:
    scan = WindowScan()
    events = await window_events(client, filters.workspace, window, limit, scan, progress)
    groups, arrived = census(events)
    rules = await workspace_rules(client, filters.workspace)
    found: list[tuple[int, dict[str, Any]]] = []
    concerned = [(group, relations(group, rules)) for group in groups.values()]
    concerned = sorted(((g, r) for g, r in concerned if wanted(g, r, filters)), key=lambda item: -item[0].count)
    shown, unshown = concerned[:FINDINGS_SHOWN], len(concerned[FINDINGS_SHOWN:])
    originals = [event for group, _ in shown for event in group.events]
    check = await replay.find_copies(client, filters.workspace, originals, progress, COPY_READS)
    for group, related in shown:
        note_replays(group, check)
        found.append((group.count, unrouted_view(group, related, ctx)))
    expected = expected_names(filters, rules)
    by_id = {rule.id: rule for rule in rules}
    for rule_id in [rule_id for ids in expected.values() for rule_id in ids]:
        for group in passed_over(by_id[rule_id], events):
            found.append((group.count, passed_over_view(group, by_id[rule_id], ctx)))
    for name, rule_ids in expected.items():
        if arrived[name]:
            continue
        found.append((0, await no_events_view(client, filters.workspace, name, rule_ids, arrived)))
        found.extend((n, v) for n, v in await other_workspaces(client, filters.workspace, name, window))
    found.sort(key=lambda item: -item[0])
    return Findings([view for _, view in found[:FINDINGS_SHOWN]], len(found) + unshown, scan)


def passed_over(rule: m.Rule, events: list[m.Event]) -> list[Missed]:
    """Events of the rule's name that other rules took but this one did not, by resource. Only events whose
    deliveries the list shows count: without them, nothing is claimed."""
    groups: dict[str | None, Missed] = {}
    for event in events:
        if event.event != rule.event or event.rule_events is None or matched_no_rule(event):
            continue
        if all(rule_event.rule != rule.id for rule_event in event.rule_events):
            groups.setdefault(event.resource, Missed(event.event, event.resource)).add(event)
    return list(groups.values())


def passed_over_view(group: Missed, rule: m.Rule, ctx: Context) -> dict[str, Any]:
    carried = [rid for rid, _ in group.resource_ids.most_common(3)]
    relation = why_not(group, rule, carried)
    head = f"{group.count} `{group.event}` events reached other rules only"
    reason, fix, calls = explain(group, [relation], f"`{group.event}`", ctx, head=head)
    return {
        **group.head("passed_over"),
        "reason": reason,
        "rules": [relation.view()],
        # A replay would reach the rules that took them a second time: replay_events leaves them alone.
        "fix": f"{fix} They reached other rules, so replay_events does not re-emit them (those would get them twice).",
        "calls": ctx.enabled.calls(calls),
    }


async def workspace_rules(client: MeshesClient, workspace: str) -> list[m.Rule]:
    return [r async for r in iterate_pages(client.list_workspace_rules, workspace, max_pages=RULE_PAGES)]


def expected_names(filters: Filters, rules: list[m.Rule]) -> dict[str, list[str]]:
    """With an `event`, `connection` or `rule` filter: the event names the caller expects, with their rules."""
    names: dict[str, list[str]] = {}
    if not filtered(filters):
        return names
    if filters.event is not None:
        names[filters.event] = []
    for rule in rules:
        if (
            (filters.connection is None or rule.connection == filters.connection)
            and (filters.event is None or rule.event == filters.event)
            and (filters.rule is None or rule.id == filters.rule)
        ):
            names.setdefault(rule.event, []).append(rule.id)
    return names


async def no_events_view(
    client: MeshesClient, workspace: str, name: str, rule_ids: list[str], arrived: Counter[str]
) -> dict[str, Any]:
    page = await client.list_workspace_events(workspace, m.WorkspaceEventQuery(event=name, limit=1))
    last = page.records[0].created_at if page.records else None
    closest = closest_first(name, arrived)[:NAMES_SHOWN]
    near = [n for n in closest if is_near_miss(name, n)]
    reason = f"no `{name}` event arrived in the window"
    reason += f" (last one at {last})" if last else " (none ever, in this workspace)"
    if rule_ids:
        reason += f"; {len(rule_ids)} rule(s) wait for it"
    if near:
        fix = (
            f"The app sends `{near[0]}` ({arrived[near[0]]} in the window), a near miss of `{name}`: route that "
            "name too or correct it where the app emits it."
        )
    else:
        fix = f"Check that the app emits `{name}` to this workspace; the names that did arrive are listed."
    return {
        "kind": "no_events",
        "event": name,
        "count": 0,
        "last_seen": last,
        "rules": rule_ids[:RULES_SHOWN] or None,
        "arrived": [{"event": n, "count": arrived[n]} for n in closest] or None,
        "reason": reason,
        "fix": fix,
        "calls": [],
    }


async def other_workspaces(
    client: MeshesClient, workspace: str, name: str, window: Window
) -> list[tuple[int, dict[str, Any]]]:
    """Events of `name` that went to another workspace of the organisation within the window."""
    out: list[tuple[int, dict[str, Any]]] = []
    page = await client.list_workspaces()
    for other in [w for w in page.records if w.id != workspace][:OTHER_WORKSPACES]:
        count, first, last, complete = 0, None, None, True
        cursor: str | None = None
        for index in range(OTHER_PAGES + 1):
            if index == OTHER_PAGES:
                complete = False
                break
            query = m.WorkspaceEventQuery(event=name, limit=PAGE_SIZE, cursor=cursor)
            events = await client.list_workspace_events(other.id, query)
            inside = [e for e in events.records if window.holds(e)]
            count += len(inside)
            if inside:
                last = last or inside[0].created_at
                first = inside[-1].created_at
            oldest = created(events.records[-1]) if events.records else None
            if (window.since is not None and oldest is not None and oldest < window.since) or not events.next_cursor:
                break
            cursor = events.next_cursor
        if count:
            out.append((count, other_view(name, other, count, first, last, complete)))
    return out


def other_view(
    name: str, other: m.Workspace, count: int, first: str | None, last: str | None, complete: bool
) -> dict[str, Any]:
    at_least = "" if complete else "at least "
    return {
        "kind": "other_workspace",
        "event": name,
        "workspace": {"id": other.id, "name": other.name},
        "count": count,
        "count_is_lower_bound": None if complete else True,
        "first_seen": first,
        "last_seen": last,
        "reason": f'{at_least}{count} `{name}` events went to workspace "{other.name}" ({other.id}) in the window',
        "fix": "The app emits them with that workspace's key: point it at this workspace's key (get_workspace "
        "shows it). Events cannot be moved between workspaces.",
        "calls": [],
    }


def scan_view(findings: Findings, continuation: str | None) -> dict[str, Any]:
    """How much of the window the findings read; when cut short, the counts are lower bounds."""
    view: dict[str, Any] = {"events_read": findings.scan.scanned, "complete": findings.scan.complete}
    if not findings.scan.complete:
        view["note"] = "bounded by max_events: finding counts are lower bounds"
        view["next"] = continuation
    return view
