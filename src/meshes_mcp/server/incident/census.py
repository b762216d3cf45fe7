"""Reading every event of a window (not only failing ones), and telling which matched no rule at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshes_mcp.api import models as m
from meshes_mcp.server.incident.scan import PAGE_SIZE, SKIP_LIMIT
from meshes_mcp.server.incident.window import Window, created

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.server.incident.progress import Throttle


def matched_no_rule(event: m.Event) -> bool:
    """The event was routed to no rule at all. Only what the API says counts: `total_rules: 0` (or no count
    but an empty list of rule events) once the event is no longer pending or processing, since before it
    is routed a count of 0 says nothing."""
    if event.status is not None and event.status not in m.TERMINAL_STATUSES:
        return False
    if event.total_rules is not None:
        return event.total_rules == 0
    return event.rule_events is not None and not event.rule_events and event.status is not None


# --- reading every event of the window ----------------------------------------------------------


@dataclass
class WindowScan:
    """Every event of the window, newest first, up to a bound."""

    scanned: int = 0
    cut_at: str | None = None  # stopped at this timestamp: until=<it> continues
    skip_limit_hit: bool = False

    @property
    def complete(self) -> bool:
        return self.cut_at is None and not self.skip_limit_hit


async def window_events(
    client: MeshesClient, workspace: str, window: Window, limit: int, scan: WindowScan, progress: Throttle | None = None
) -> list[m.Event]:
    """The window's events newest first, at most `limit`; a cut falls between two timestamps, so the
    continuation (`until=<cut_at>`) neither skips nor repeats an event."""
    events: list[m.Event] = []
    skipped = 0
    cursor: str | None = None
    while True:
        query = m.WorkspaceEventQuery(limit=PAGE_SIZE, cursor=cursor)
        page = await client.list_workspace_events(workspace, query)
        for event in page.records:
            moment = created(event)
            if window.until is not None and moment is not None and moment > window.until:
                skipped += 1
                if skipped >= SKIP_LIMIT:
                    scan.skip_limit_hit = True
                    return events
                continue
            if window.since is not None and moment is not None and moment < window.since:
                return events
            if len(events) >= limit:
                boundary = event.created_at
                kept = [e for e in events if e.created_at != boundary]
                events = kept or events
                scan.cut_at = boundary
                scan.scanned = len(events)
                return events
            events.append(event)
            scan.scanned = len(events)
        if progress is not None:
            await progress(len(events), limit, f"{len(events)} events of the window read")
        if not page.next_cursor or page.next_cursor == cursor:
            return events
        cursor = page.next_cursor
