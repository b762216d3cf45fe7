"""The incident view's chart: each triage group's failing deliveries counted per time bucket.

`triage_timeline` (a tool for the view only, `visibility: ["app"]`) answers it over the same window and
filters as the triage_failures call the view shows, through the same scan and grouping, so its group keys
and totals are triage_failures' own. The model never needs per-bucket counts; the person's chart does.

Buckets fit the window: a whole number of minutes, hours or days each, at most `buckets` of them (48 by
default), aligned to that size in UTC so two refreshes of one window draw the same bars.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from meshes_mcp.server.bounds import IntRange
from meshes_mcp.server.incident.scan import GROUPS_SHOWN
from meshes_mcp.server.incident.window import created, iso
from meshes_mcp.server.runtime import runtime_of

if TYPE_CHECKING:
    from mcp_types import CallToolResult

    from meshes_mcp.api import models as m
    from meshes_mcp.server.incident.groups import Group
    from meshes_mcp.server.runtime import ToolContext

MINUTE, HOUR, DAY = 60, 3600, 86400
# Bucket sizes a person reads at a glance, smallest first.
SIZES = (MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
         6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY)  # fmt: skip
BUCKETS = IntRange(6, 96, example=48, default=48)


@dataclass(frozen=True)
class Buckets:
    origin: datetime
    size: int  # seconds
    count: int

    @classmethod
    def fit(cls, start: datetime, end: datetime, most: int) -> Buckets:
        """The smallest size that covers start..end in at most `most` buckets, aligned to that size."""
        end = max(end, start + timedelta(seconds=1))
        for size in SIZES:
            origin = datetime.fromtimestamp(math.floor(start.timestamp() / size) * size, UTC)
            count = math.ceil((end - origin).total_seconds() / size)
            if count <= most:
                return cls(origin, size, max(count, 1))
        size = SIZES[-1] * math.ceil((end - start).total_seconds() / (SIZES[-1] * most))
        origin = datetime.fromtimestamp(math.floor(start.timestamp() / size) * size, UTC)
        return cls(origin, size, max(1, math.ceil((end - origin).total_seconds() / size)))

    @property
    def end(self) -> datetime:
        return self.origin + timedelta(seconds=self.size * self.count)

    def index(self, moment: datetime) -> int:
        at = int((moment - self.origin).total_seconds() // self.size)
        return min(max(at, 0), self.count - 1)  # the window's edges hold what the scan found on them

    def starts(self) -> list[str]:
        return [iso(self.origin + timedelta(seconds=self.size * i)) for i in range(self.count)]


def per_bucket(moments: list[datetime], buckets: Buckets) -> list[int]:
    counts = [0] * buckets.count
    for moment in moments:
        counts[buckets.index(moment)] += 1
    return counts


async def timeline_result(ctx: ToolContext, buckets: int | None, **scope: Any) -> CallToolResult:
    """triage_timeline's answer, from triage_failures' own scan over the same arguments (`scope`)."""
    from meshes_mcp.server.tools.deliveries import scan_failures

    most = BUCKETS.check("buckets", buckets)
    moments: dict[str, list[datetime]] = defaultdict(list)

    def seen(group: Group, failing: m.Event) -> None:
        moment = created(failing)
        if moment is not None:
            moments[group.key].append(moment)

    found = await scan_failures(ctx, on_delivery=seen, **scope)
    shown = [g for g in found.groups[:GROUPS_SHOWN] if moments[g.key]]
    result: dict[str, Any] = {"groups": [], "window": found.summary.window(found.window)}
    if shown:
        start = found.window.since or min(min(moments[g.key]) for g in shown)
        end = max([found.window.until or datetime.now(UTC), *(max(moments[g.key]) for g in shown)])
        fitted = Buckets.fit(start, end, most)
        result.update(
            {
                "from": iso(fitted.origin),
                "to": iso(fitted.end),
                "bucket_seconds": fitted.size,
                "buckets": fitted.starts(),
                "groups": [{"key": g.key, "counts": per_bucket(moments[g.key], fitted)} for g in shown],
            }
        )
    return runtime_of(ctx).result(result)
