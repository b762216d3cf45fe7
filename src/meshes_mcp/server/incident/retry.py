"""retry_failed: plan every matching failing delivery once, send each retry once, honour 429 pauses."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from meshes_mcp.api import errors as e
from meshes_mcp.api.problems import InvalidRequest
from meshes_mcp.server.incident.groups import Classifier, Filters, Group, one_line
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.scan import ScanState, ScanSummary, failing_batches
from meshes_mcp.server.incident.window import Window

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient


# --- retry --------------------------------------------------------------------------------------


@dataclass
class Target:
    event_id: str
    rule: str
    group: Group
    attempt_count: int = 0  # when it was retried: a later attempt means the retry has run


@dataclass
class RetryPlan:
    filters: Filters
    window: Window
    targets: list[Target] = field(default_factory=list)
    limit: int = 0  # max_retries: the plan stops there (summary.cut_at says where)
    skipped: int = 0  # matching deliveries already completed or canceled
    summary: ScanSummary = field(default_factory=ScanSummary)

    def groups(self) -> list[Group]:
        seen: dict[str, Group] = {}
        for target in self.targets:
            seen.setdefault(target.group.key, target.group)
        return sorted(seen.values(), key=lambda g: -sum(1 for t in self.targets if t.group is g))


async def plan_retries(
    client: MeshesClient, filters: Filters, window: Window, max_retries: int, progress: Throttle
) -> RetryPlan:
    """Every matching failing delivery in the window, newest first, each once, up to max_retries."""
    classifier = Classifier(client, filters)
    plan = RetryPlan(filters, window, limit=max_retries)
    done_by_pair: Counter[tuple[str, str | None]] = Counter()
    planned: set[tuple[str, str]] = set()
    state = ScanState()
    async for batch in failing_batches(client, filters.workspace, filters.event, window, state):
        found: list[Target] = []
        for event in batch:
            for rule_event in event.rule_events or []:
                if rule_event.status in ("completed", "canceled"):
                    # Never retried; counted as skipped when the call's filters name it.
                    if filters.wants_delivery(rule_event):
                        done_by_pair[(rule_event.rule, rule_event.connection)] += 1
                    continue
                group = await classifier.group_of(event, rule_event)
                if group is not None and (event.id, rule_event.rule) not in planned:
                    planned.add((event.id, rule_event.rule))
                    found.append(Target(event.id, rule_event.rule, group, rule_event.attempt_count or 0))
        if len(plan.targets) + len(found) > max_retries:
            if plan.targets:
                plan.summary.cut_at = batch[0].created_at
                break
            found = found[:max_retries]
            plan.summary.cut_at = batch[0].created_at
        plan.targets.extend(found)
        plan.summary.scanned += len(batch)
        plan.summary.newest = plan.summary.newest or batch[0].created_at
        plan.summary.oldest = batch[-1].created_at
        await progress(
            plan.summary.scanned,
            None,
            f"{len(plan.targets)} deliveries to retry, {plan.summary.scanned} events scanned",
        )
        if plan.summary.cut_at:
            break
    plan.summary.skip_limit_hit = state.skip_limit_hit
    pairs = {(t.group.rule, t.group.connection) for t in plan.targets}
    by_group = filters.group is not None or filters.outcome_code is not None
    plan.skipped = sum(n for pair, n in done_by_pair.items() if not by_group or pair in pairs)
    return plan


RETRIES_IN_FLIGHT = 8
RATE_LIMIT_TRIES = 5
DEFAULT_PAUSE = 1.0


@dataclass
class RetryRun:
    """The state of one retry_failed call, shared by its workers."""

    plan: RetryPlan
    retried: list[Target] = field(default_factory=list)
    already_due: list[Target] = field(default_factory=list)
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    in_flight: set[int] = field(default_factory=set)
    next_index: int = 0
    paused_until: float = 0.0

    @property
    def handled(self) -> int:
        return (
            len(self.retried)
            + len(self.already_due)
            + self.skipped
            + sum(self.failed.values())
            + sum(self.unknown.values())
        )


async def run_retries(client: MeshesClient, run: RetryRun, progress: Throttle) -> None:
    """Send each planned retry once, RETRIES_IN_FLIGHT at a time; 429 pauses every worker for Retry-After."""
    targets = run.plan.targets
    total = len(targets)

    async def worker() -> None:
        while run.next_index < total:
            index = run.next_index
            run.next_index += 1
            run.in_flight.add(index)
            await retry_one(client, run, targets[index])
            run.in_flight.discard(index)  # not on cancellation: a request cut off mid-flight has an unknown fate
            await progress(run.handled, total, f"{run.handled}/{total} retries sent")

    async with anyio.create_task_group() as group:
        for _ in range(min(RETRIES_IN_FLIGHT, total)):
            group.start_soon(worker)
    await progress(run.handled, total, f"{run.handled}/{total} retries sent", force=True)


async def retry_one(client: MeshesClient, run: RetryRun, target: Target) -> None:
    for _ in range(RATE_LIMIT_TRIES):
        wait = run.paused_until - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)
        try:
            answer = await client.retry_rule_event(target.event_id, target.rule)
        except e.APIStatusError as exc:
            if exc.status == 429:
                # Nothing happened: every worker waits as long as Meshes asks, then this one tries again.
                run.paused_until = max(run.paused_until, time.monotonic() + (exc.retry_after or DEFAULT_PAUSE))
                continue
            record_refusal(run, target, exc)
            return
        except e.APIConnectionError as exc:
            if exc.sent:
                run.unknown["the request was sent but no answer came back: may have been retried"] += 1
            else:
                run.failed[f"not sent: {exc}"] += 1
            return
        except (e.MeshesError, InvalidRequest) as exc:
            run.failed[one_line(str(exc))] += 1
            return
        target.attempt_count = answer.attempt_count or target.attempt_count
        run.retried.append(target)
        return
    run.failed["rate limited (429) after 5 tries: not retried, safe to run again"] += 1


def record_refusal(run: RetryRun, target: Target, exc: e.APIStatusError) -> None:
    if exc.status == 425:
        run.already_due.append(target)  # an attempt is due now or in flight: it needs no push
    elif exc.status == 409:
        run.skipped += 1  # completed or canceled since the scan
    elif exc.status >= 500:
        run.unknown[f"Meshes answered {exc.status}: may have been retried"] += 1
    else:
        run.failed[f"{exc.status}: {one_line(exc.message)}"] += 1
