"""A triage window (`since`/`until`) and the exact-call text the results hand back.

The Meshes API has no time filter on events, so a window is applied here: `since` and `until` take an
ISO 8601 time (no offset means UTC) or a duration back from now (`90m`, `24h`, `7d`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem

if TYPE_CHECKING:
    pass


MOMENT_EXAMPLE = 'an ISO 8601 time or a duration back from now, e.g. "2026-11-24T09:00:00Z" or "24h"'
DURATION = re.compile(r"^\s*(\d{1,7})\s*([smhdw])\s*$", re.I)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_LOOKBACK = timedelta(days=3660)


# --- time windows ------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_moment(value: str | None, param: str, now: datetime) -> datetime | None:
    """`2026-11-24T09:00:00Z` (no offset means UTC) or a duration back from now: `90m`, `24h`, `7d`."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    duration = DURATION.match(text)
    if duration:
        amount = timedelta(seconds=int(duration.group(1)) * UNIT_SECONDS[duration.group(2).lower()])
        if amount > MAX_LOOKBACK:
            raise InvalidRequest([Problem(param, 'reaches back at most 3660 days, e.g. "7d"')])
        return now - amount
    moment = timestamp(text)
    if moment is None:
        raise InvalidRequest([Problem(param, f"must be {MOMENT_EXAMPLE}")])
    return moment


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, since: str | None, until: str | None) -> Window:
        now = datetime.now(UTC)
        window = cls(parse_moment(since, "since", now), parse_moment(until, "until", now))
        if window.since and window.until and window.since > window.until:
            raise InvalidRequest([Problem("since", f'must be before until ({iso(window.until)}), e.g. "24h"')])
        return window

    def holds(self, event: m.Event) -> bool:
        moment = created(event)
        if moment is None:
            return True  # a time we cannot read is not evidence that the event is outside the window
        return (self.since is None or moment >= self.since) and (self.until is None or moment <= self.until)

    def args(self) -> dict[str, str | None]:
        """The window as exact call arguments: absolute times, so a later call covers the same span."""
        return {"since": iso(self.since) if self.since else None, "until": iso(self.until) if self.until else None}


def timestamp(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601, `Z` or an offset; none means UTC), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def created(event: m.Event) -> datetime | None:
    return timestamp(event.created_at)


def call_text(tool: str, **args: Any) -> str:
    """`retry_failed group=3f9a2c1d since=...`: the exact call, arguments left out when unset."""
    given = " ".join(f"{key}={value}" for key, value in args.items() if value is not None)
    return f"{tool} {given}".strip()
