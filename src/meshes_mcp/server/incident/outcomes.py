"""Waiting for deliveries to settle after an emit or a retry, and how the outcome reads."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.server.diagnosis import NEEDS_ATTENTION
from meshes_mcp.server.incident.groups import cause_signature
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.scan import READS_IN_FLIGHT
from meshes_mcp.server.render import bound_text

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.server.incident.retry import Target


# --- waiting for outcomes -----------------------------------------------------------------------


def rule_event_settled(rule_event: m.RuleEvent, attempts_before: int) -> bool:
    """A retried delivery has settled once it ended, or once the forced attempt ran (and it is not in flight)."""
    if rule_event.status in m.TERMINAL_STATUSES:
        return True
    return rule_event.status != "processing" and (rule_event.attempt_count or 0) > attempts_before


async def read_until_settled(
    client: MeshesClient,
    pending: Callable[[], list[str]],
    take: Callable[[str, m.Event], None],
    seconds: float,
    report: Callable[[], Awaitable[None]],
) -> float:
    """Read each pending event back (READS_IN_FLIGHT at a time) and hand it to `take`, which settles what it
    can, round after round until nothing is pending or `seconds` are up, pausing 0.1 s to 1 s between rounds.
    A read that fails is tried again next round. Returns the seconds waited."""
    started = time.monotonic()
    deadline = started + seconds
    pause = 0.1
    limiter = anyio.CapacityLimiter(READS_IN_FLIGHT)

    async def read(event_id: str) -> None:
        async with limiter:
            try:
                event = await client.get_event(event_id)
            except (e.MeshesError, InvalidRequest):
                return
        take(event_id, event)

    while pending() and time.monotonic() < deadline:
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            async with anyio.create_task_group() as group:
                for event_id in pending():
                    group.start_soon(read, event_id)
        await report()
        if pending():
            await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 1.0)
    return time.monotonic() - started


async def wait_for_outcomes(
    client: MeshesClient, targets: list[Target], seconds: float, progress: Throttle
) -> dict[str, Any]:
    """Read the retried deliveries back until every one has settled or the time is up."""
    pending: dict[str, dict[str, Target]] = {}
    for target in targets:
        pending.setdefault(target.event_id, {})[target.rule] = target
    outcome: dict[str, m.RuleEvent] = {}
    total = len(targets)

    def take(event_id: str, event: m.Event) -> None:
        for rule_event in event.rule_events or []:
            target = pending.get(event_id, {}).get(rule_event.rule)
            if target is not None and rule_event_settled(rule_event, target.attempt_count):
                outcome[f"{event_id}/{rule_event.rule}"] = rule_event
                del pending[event_id][rule_event.rule]
        if not pending.get(event_id):
            pending.pop(event_id, None)

    async def report() -> None:
        await progress(len(outcome), total, f"{len(outcome)}/{total} retried deliveries settled")

    waited = await read_until_settled(client, lambda: list(pending), take, seconds, report)
    return settled_view(outcome, sum(len(rules) for rules in pending.values()), waited)


def settled_view(outcome: dict[str, m.RuleEvent], unsettled: int, waited: float) -> dict[str, Any]:
    delivered = sum(1 for r in outcome.values() if r.status == "completed")
    failing = [r for r in outcome.values() if r.status in NEEDS_ATTENTION]
    causes = Counter(cause_signature(r.last_error) for r in failing)
    top: str | None = None
    top_count: int | None = None
    if causes:
        # The destination's words, under an untrusted_ name and bounded: a rule event records no outcome code
        # from which to word the cause ourselves (diagnose_event on a sample does).
        signature, top_count = causes.most_common(1)[0]
        example = next(r.last_error for r in failing if cause_signature(r.last_error) == signature)
        top = bound_text(" ".join((example or "").split()))
    view = {
        "delivered": delivered,
        "still_failing": len(failing),
        "canceled": sum(1 for r in outcome.values() if r.status == "canceled") or None,
        "untrusted_top_cause": top,
        "top_cause_count": top_count,
        "in_progress": unsettled,
        "waited_s": round(waited, 1),
    }
    view["settled"] = unsettled == 0
    return view


async def wait_for_event(
    client: MeshesClient, event_id: str, seconds: float, progress: Throttle
) -> tuple[m.Event | None, str]:
    """Read an event back until every delivery has settled (completed, failed or canceled) or the time is up;
    the second value says which, for the agent."""
    started = time.monotonic()
    deadline = started + seconds
    pause = 0.1
    event: m.Event | None = None
    while True:
        with contextlib.suppress(e.MeshesError, InvalidRequest):  # a failed read keeps the last good one
            event = await client.get_event(event_id)
        rule_events = (event.rule_events or []) if event is not None else []
        done = sum(1 for r in rule_events if r.status in m.TERMINAL_STATUSES)
        settled = event is not None and done == len(rule_events) and event.status in m.TERMINAL_STATUSES
        waited = time.monotonic() - started
        if settled:
            return event, f"settled after {waited:.1f} s"
        if time.monotonic() >= deadline:
            return event, f"time up after {waited:.1f} s: {len(rule_events) - done} deliveries still in progress"
        await progress(done, len(rule_events) or None, f"{done}/{len(rule_events)} deliveries settled")
        await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 1.0)
