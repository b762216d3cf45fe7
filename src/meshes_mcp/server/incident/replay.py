"""replay_events: emit again, once each, the window's events that matched no rule at all.

Only events routed to no rule are replayed (`total_rules: 0`): an event that reached any rule is never
re-emitted, so no destination gets a second copy through a replay. A copy keeps the original's payload,
resource and resource id (and its name, unless `as_event` corrects it), and its payload carries one more
key, `_meshes_replay_of: <original id>`.

**Once each, with no server-side deduplication.** The Meshes API has no idempotency key, so the marker is
the record: before sending, a replay reads the payload of every event created since the oldest original
(copies are always newer than their original) that has the original's resource and resource id, and
an original that already has a copy is not sent again; a copy is never replayed itself. So a second run
over the same window sends nothing, and a run whose answer was lost (the copies' fate unknown) can be
run again safely once the API has stored them. What this does not cover, and the result says so:

- two replays of the same window running at the same moment both read before either sends, and can both
  send (nothing on the API side serialises them); after a confirmation the copies are looked for again,
  so the gap is the moments between that second look and the send, not the user's time to answer;
- when more than COPY_READS events (with an original's resource and resource id) were created since the
  oldest original, their payloads are not all read, so the replay sends nothing and says to narrow the
  window;
- the marker is an ordinary payload key: the destination receives it, and an event emitted elsewhere with
  that key counts as a copy;
- a copy that itself matched no rule (replayed before the fix) still marks its original as replayed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.server.incident.census import WindowScan, matched_no_rule, window_events
from meshes_mcp.server.incident.outcomes import read_until_settled
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.scan import PAGE_SIZE, READS_IN_FLIGHT
from meshes_mcp.server.incident.window import Window, created

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient


MARKER = "_meshes_replay_of"
# Events since the oldest original whose payloads are read to find copies, at most: copies are newer than
# their originals, so this spans all traffic since then, not only the window.
COPY_READS = 10_000


@dataclass
class CopyCheck:
    """The copies found of some unrouted events, read from the payloads of what came after them."""

    copies: dict[str, list[m.Event]] = field(default_factory=dict)  # by original id
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # every payload read, by event id
    read: int = 0  # events listed since the oldest original
    capped: bool = False  # more than the bound since the oldest original: not every copy could be looked for

    def copied(self, event_id: str) -> bool:
        return event_id in self.copies


async def find_copies(
    client: MeshesClient, workspace: str, originals: list[m.Event], progress: Throttle, limit: int = COPY_READS
) -> CopyCheck:
    """Where a copy can be: an event created since the oldest original, with one original's resource and
    resource id. Their payloads are read (the list endpoints carry none); more than `limit` of them and
    the check is capped."""
    check = CopyCheck()
    if not originals:
        return check
    moments = [moment for ev in originals if (moment := created(ev)) is not None]
    oldest = min(moments) if moments else None
    places = {(ev.resource, ev.resource_id) for ev in originals}
    since_oldest: list[m.Event] = []
    cursor: str | None = None
    while not check.capped:
        page = await client.list_workspace_events(workspace, m.WorkspaceEventQuery(limit=PAGE_SIZE, cursor=cursor))
        for ev in page.records:
            moment = created(ev)
            if oldest is not None and moment is not None and moment < oldest:
                cursor = None
                break
            check.read += 1
            if (ev.resource, ev.resource_id) in places:
                since_oldest.append(ev)
                if len(since_oldest) > limit:
                    check.capped = True
                    break
        else:
            cursor = page.next_cursor if page.next_cursor != cursor else None
        if cursor is None:
            break
    if check.capped:
        return check
    check.payloads = await read_payloads(client, [ev.id for ev in since_oldest], progress)
    for ev in since_oldest:
        original = check.payloads.get(ev.id, {}).get(MARKER)
        if isinstance(original, str):
            check.copies.setdefault(original, []).append(ev)
    return check


@dataclass
class ReplayPlan:
    window: Window
    scan: WindowScan = field(default_factory=WindowScan)
    unrouted: int = 0  # events of the window (and filters) that matched no rule
    originals: list[m.Event] = field(default_factory=list)  # to send, each with its payload
    already_replayed: int = 0  # originals that have a copy
    copies_unrouted: int = 0  # of those copies, how many matched no rule either
    are_copies: int = 0  # unrouted events that are copies themselves: never replayed
    unreadable: int = 0  # originals whose payload could not be read: not sent
    copies: CopyCheck = field(default_factory=CopyCheck)

    def names(self) -> Counter[str]:
        return Counter(event.event for event in self.originals)


async def plan_replay(
    client: MeshesClient,
    workspace: str,
    window: Window,
    event: str | None,
    limit: int,
    progress: Throttle,
) -> ReplayPlan:
    """The unrouted events of the window not yet replayed, with their payloads, found before anything is sent."""
    plan = ReplayPlan(window)
    events = await window_events(client, workspace, window, limit, plan.scan, progress)
    candidates = [ev for ev in events if (event is None or ev.event == event) and matched_no_rule(ev)]
    plan.unrouted = len(candidates)
    plan.copies = await find_copies(client, workspace, candidates, progress)
    if plan.copies.capped:
        return plan
    for ev in candidates:
        payload = plan.copies.payloads.get(ev.id)
        if payload is None:
            plan.unreadable += 1
        elif MARKER in payload:
            plan.are_copies += 1
        elif plan.copies.copied(ev.id):
            plan.already_replayed += 1
            plan.copies_unrouted += sum(1 for copy in plan.copies.copies[ev.id] if matched_no_rule(copy))
        else:
            plan.originals.append(ev.model_copy(update={"payload": payload}))
    plan.originals.reverse()  # oldest first: copies arrive in the order the originals did
    return plan


async def read_payloads(client: MeshesClient, ids: list[str], progress: Throttle) -> dict[str, dict[str, Any]]:
    """Each event's payload (the list endpoints carry none); an event that cannot be read is left out."""
    payloads: dict[str, dict[str, Any]] = {}
    limiter = anyio.CapacityLimiter(READS_IN_FLIGHT)

    async def read(event_id: str) -> None:
        async with limiter:
            try:
                found = await client.get_event(event_id, include_payload=True)
            except (e.MeshesError, InvalidRequest):
                return
        payloads[event_id] = found.payload or {}
        await progress(len(payloads), len(ids), f"{len(payloads)}/{len(ids)} payloads read")

    async with anyio.create_task_group() as group:
        for event_id in ids:
            group.start_soon(read, event_id)
    return payloads


def copy_request(original: m.Event, workspace: str, as_event: str | None) -> dict[str, Any]:
    """The body of an original's copy: its payload marked, its resource and resource id, its name or as_event."""
    body: dict[str, Any] = {
        "event": as_event or original.event,
        "payload": {**(original.payload or {}), MARKER: original.id},
        "workspace": workspace,
    }
    if original.resource is not None:
        body["resource"] = original.resource
    if original.resource_id is not None:
        body["resource_id"] = original.resource_id
    return body


# --- waiting for the copies ---------------------------------------------------------------------


async def wait_for_copies(client: MeshesClient, ids: list[str], seconds: float, progress: Throttle) -> dict[str, Any]:
    """Read the copies back until each has settled (routed and every delivery ended) or the time is up."""
    settled: dict[str, m.Event] = {}
    pending = set(ids)

    def take(event_id: str, ev: m.Event) -> None:
        if ev.status in m.TERMINAL_STATUSES and all(r.status in m.TERMINAL_STATUSES for r in ev.rule_events or []):
            settled[event_id] = ev
            pending.discard(event_id)

    async def report() -> None:
        await progress(len(settled), len(ids), f"{len(settled)}/{len(ids)} replayed events settled")

    waited = await read_until_settled(client, lambda: list(pending), take, seconds, report)
    rule_events = [r for ev in settled.values() for r in ev.rule_events or []]
    return {
        "delivered": sum(1 for r in rule_events if r.status == "completed"),
        "failed": sum(1 for r in rule_events if r.status == "failed"),
        "matched_no_rule": sum(1 for ev in settled.values() if matched_no_rule(ev)),
        "in_progress": len(pending),
        "settled": not pending,
        "waited_s": round(waited, 1),
    }
