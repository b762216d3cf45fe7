"""Reading a workspace's failing events newest first, and the triage scan that groups their deliveries.

Failing events are read through the documented `status` filter, `failed` and `processing` (an event
whose deliveries are being retried is `processing`); the two lists are merged newest first and the
scan stops once it is past `since`.

A scan cut short by its limit stops at a timestamp boundary (events that share the oldest timestamp are
left for the next call), so `until=<that timestamp>` continues exactly where it stopped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.api import models as m
from meshes_mcp.server.diagnosis import gather_all
from meshes_mcp.server.fixes import failure_time
from meshes_mcp.server.incident.groups import Classifier, Filters, Group
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.window import Window, created, iso

if TYPE_CHECKING:
    from meshes_mcp.api.catalog import Catalog
    from meshes_mcp.api.client import MeshesClient


SCAN_STATUSES = ("failed", "processing")  # the documented filter values that hold failing deliveries
PAGE_SIZE = 200  # the API's largest page
READS_IN_FLIGHT = 8  # concurrent reads while scanning: quick, without hogging the API's rate limit
SKIP_LIMIT = 20_000  # events newer than `until` passed over at most, so a far-back window stays bounded


GROUPS_SHOWN = 20


# --- reading failing events newest first --------------------------------------------------------


class _StatusList:
    """One status-filtered event list, read a page at a time, newest first."""

    def __init__(self, client: MeshesClient, workspace: str, status: str, event_name: str | None) -> None:
        self.client = client
        self.workspace = workspace
        self.status = status
        self.event_name = event_name
        self.cursor: str | None = None
        self.buffer: deque[m.Event] = deque()
        self.exhausted = False

    async def fill(self, window: Window) -> None:
        if self.buffer or self.exhausted:
            return
        query = m.WorkspaceEventQuery(status=self.status, event=self.event_name, limit=PAGE_SIZE, cursor=self.cursor)
        page = await self.client.list_workspace_events(self.workspace, query)
        await load_rule_events(self.client, page.records)
        self.buffer.extend(page.records)
        oldest = created(page.records[-1]) if page.records else None
        past_since = window.since is not None and oldest is not None and oldest < window.since
        self.exhausted = past_since or not page.next_cursor or page.next_cursor == self.cursor
        self.cursor = page.next_cursor


async def load_rule_events(client: MeshesClient, events: list[m.Event]) -> None:
    """Lists may carry each event's rule events (the sandbox's do); where one does not, read the event."""
    missing = [index for index, event in enumerate(events) if event.rule_events is None]
    if not missing:
        return
    limiter = anyio.CapacityLimiter(READS_IN_FLIGHT)

    async def read(index: int) -> None:
        async with limiter:
            events[index] = await client.get_event(events[index].id)

    async with anyio.create_task_group() as group:
        for index in missing:
            group.start_soon(read, index)


def _newest_first(event: m.Event) -> tuple[int, datetime]:
    moment = created(event)
    return (1, moment) if moment is not None else (2, datetime.min.replace(tzinfo=UTC))


@dataclass
class ScanState:
    skipped_newer: int = 0
    skip_limit_hit: bool = False


async def failing_batches(
    client: MeshesClient, workspace: str, event_name: str | None, window: Window, state: ScanState
) -> AsyncIterator[list[m.Event]]:
    """Failing events inside the window, newest first, in batches that share one creation time
    (so a caller that must stop can stop between two timestamps)."""
    lists = [_StatusList(client, workspace, status, event_name) for status in SCAN_STATUSES]
    seen: set[str] = set()
    batch: list[m.Event] = []
    while True:
        for listing in lists:
            await listing.fill(window)
        heads = [listing for listing in lists if listing.buffer]
        if not heads:
            break
        event = max(heads, key=lambda listing: _newest_first(listing.buffer[0])).buffer.popleft()
        if event.id in seen:
            continue  # it changed status between two pages and shows up in both lists
        seen.add(event.id)
        moment = created(event)
        if window.until is not None and moment is not None and moment > window.until:
            state.skipped_newer += 1
            if state.skipped_newer >= SKIP_LIMIT:
                state.skip_limit_hit = True
                break
            continue
        if window.since is not None and moment is not None and moment < window.since:
            continue
        if batch and batch[-1].created_at != event.created_at:
            yield batch
            batch = []
        batch.append(event)
    if batch:
        yield batch


# --- triage -------------------------------------------------------------------------------------


@dataclass
class ScanSummary:
    scanned: int = 0
    newest: str | None = None
    oldest: str | None = None
    cut_at: str | None = None  # the scan stopped at this timestamp: continue with until=<it>
    skip_limit_hit: bool = False

    def window(self, window: Window) -> dict[str, Any]:
        complete = self.cut_at is None and not self.skip_limit_hit
        start = (iso(window.since) if window.since else "start of history") if complete else self.oldest
        return {"from": start, "to": (iso(window.until) if window.until else "now"), "complete": complete}


async def triage(
    client: MeshesClient,
    catalog: Catalog,
    filters: Filters,
    window: Window,
    max_events: int,
    progress: Throttle,
    on_delivery: Callable[[Group, m.Event], None] | None = None,
) -> tuple[list[Group], ScanSummary]:
    """The window's failing deliveries grouped by cause. `on_delivery` sees each one as it joins its group
    (the incident view's timeline counts them per time bucket)."""
    classifier = Classifier(client, filters)
    summary = ScanSummary()
    state = ScanState()
    async for batch in failing_batches(client, filters.workspace, filters.event, window, state):
        if summary.scanned + len(batch) > max_events:
            if summary.scanned:
                summary.cut_at = batch[0].created_at
                break
            batch = batch[:max_events]  # one timestamp holds more than the limit: the next call overlaps it
            summary.cut_at = batch[0].created_at
        for event in batch:
            for rule_event in event.rule_events or []:
                group = await classifier.group_of(event, rule_event)
                if group is not None:
                    group.add(event, rule_event)
                    if on_delivery is not None:
                        on_delivery(group, event)
        summary.scanned += len(batch)
        summary.newest = summary.newest or batch[0].created_at
        summary.oldest = batch[-1].created_at
        await progress(
            summary.scanned, max_events, f"{summary.scanned} failing events scanned, back to {summary.oldest}"
        )
        if summary.cut_at:
            break
    summary.skip_limit_hit = state.skip_limit_hit
    groups = classifier.matched()
    shown = groups[:GROUPS_SHOWN]
    for group in shown:
        group.evidence.group_size = group.count
        group.evidence.retrying_only = group.failed == 0
    await gather_all(client, catalog, [g.evidence for g in shown])
    for group in shown:
        # A fix is judged against the group's last failure, which may be an older delivery's later attempt.
        ev = group.evidence
        times = [t for t in (group.last_failure, failure_time(ev.latest, ev.rule_event, ev.event)) if t]
        ev.last_failure = max(times) if times else None
    return groups, summary
