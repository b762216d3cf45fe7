"""Incidents: scan a workspace's failing deliveries, group them by cause, and retry a group once each.

The Meshes API has no time filter on events, so a window (`since`/`until`) is applied here: event
lists are read newest first and the scan stops once it is past `since`. Failing events are read
through the documented `status` filter, `failed` and `processing` (an event whose deliveries are
being retried is `processing`); the two lists are merged newest first.

A group is what went wrong, not where: rule, connection, outcome code and the cause with ids,
numbers, timestamps and addresses normalised away. Its `key` is a short hash of exactly that
tuple, so `retry_failed group=<key>` re-derives the group by scanning again: no state is kept
between calls, and any replica of the server can answer.

A scan cut short by its limit stops at a timestamp boundary (events that share the oldest
timestamp are left for the next call), so `until=<that timestamp>` continues exactly where it
stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem
from meshes_mcp.server.diagnosis import NEEDS_ATTENTION, Evidence, advice, connection_state, gather_all, retry_helps

if TYPE_CHECKING:
    from meshes_mcp.api.catalog import Catalog
    from meshes_mcp.api.client import MeshesClient
    from meshes_mcp.server.registry import EnabledTools

SCAN_STATUSES = ("failed", "processing")  # the documented filter values that hold failing deliveries
PAGE_SIZE = 200  # the API's largest page
READS_IN_FLIGHT = 8  # concurrent reads while scanning: quick, without hogging the API's rate limit
SKIP_LIMIT = 20_000  # events newer than `until` passed over at most, so a far-back window stays bounded
CAUSE_CHARS = 200
SAMPLES = 3
GROUPS_SHOWN = 20

# Bounds and formats (since/until: ISO 8601 or 90m/24h/7d) are in the server instructions and in the
# error a bad value gets; the schemas stay small.
Wait = int | None

MOMENT_EXAMPLE = 'an ISO 8601 time or a duration back from now, e.g. "2026-11-24T09:00:00Z" or "24h"'
DURATION = re.compile(r"^\s*(\d{1,7})\s*([smhdw])\s*$", re.I)
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_LOOKBACK = timedelta(days=3660)
ATTEMPT_READS = 200  # per scan: beyond this many distinct causes, groups go without an outcome code
SAME_CAUSE_CODES = frozenset({"auth_failed"})
KEY_RE = re.compile(r"^[0-9a-f]{8}$")

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
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest([Problem(param, f"must be {MOMENT_EXAMPLE}")]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


def created(event: m.Event) -> datetime | None:
    if not event.created_at:
        return None
    try:
        moment = datetime.fromisoformat(event.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def call_text(tool: str, **args: Any) -> str:
    """`retry_failed group=3f9a2c1d since=...`: the exact call, arguments left out when unset."""
    given = " ".join(f"{key}={value}" for key, value in args.items() if value is not None)
    return f"{tool} {given}".strip()


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


# --- cause signatures and groups ----------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\b[A-Za-z0-9_-]{24,}\b"), "<token>"),
    # An HTTP status is part of the cause (500 is not 503); any other number is an id or a count.
    (re.compile(r"(?<!HTTP )(?<!status )(?<!\d)\d+(\.\d+)?", re.I), "#"),
]


def cause_signature(text: str | None) -> str:
    """The cause with what varies per event normalised away: ids, numbers, times, emails, hex, tokens."""
    signature = " ".join((text or "").split())[:2000]
    for pattern, replacement in _NORMALISE:
        signature = pattern.sub(replacement, signature)
    return signature[: CAUSE_CHARS * 2]


def group_key(rule: str, connection: str | None, outcome_code: str | None, signature: str) -> str:
    material = "\x1f".join((rule, connection or "", outcome_code or "", signature))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def one_line(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= CAUSE_CHARS else line[: CAUSE_CHARS - 1] + "…"


@dataclass
class Member:
    event_id: str
    rule: str
    status: str
    attempt_count: int | None
    created_at: str | None


@dataclass
class Group:
    rule: str
    connection: str | None
    integration_type: str | None
    event_name: str
    signature: str
    evidence: Evidence  # the newest delivery: its latest attempt gives the group's outcome code
    key: str = ""
    failed: int = 0
    retrying: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    samples: list[str] = field(default_factory=list)

    @property
    def outcome_code(self) -> str | None:
        return self.evidence.code

    def add(self, event: m.Event, rule_event: m.RuleEvent) -> None:
        if rule_event.status == "failed":
            self.failed += 1
        else:
            self.retrying += 1
        if len(self.samples) < SAMPLES and event.id not in self.samples:
            self.samples.append(event.id)
        # Newest first: the first seen is the last in time.
        self.last_seen = self.last_seen or event.created_at
        self.first_seen = event.created_at or self.first_seen

    @property
    def count(self) -> int:
        return self.failed + self.retrying


@dataclass
class Filters:
    workspace: str
    event: str | None = None
    connection: str | None = None
    rule: str | None = None
    outcome_code: str | None = None
    group: str | None = None

    def wants_delivery(self, rule_event: m.RuleEvent) -> bool:
        return (self.connection is None or rule_event.connection == self.connection) and (
            self.rule is None or rule_event.rule == self.rule
        )

    def wants_group(self, group: Group) -> bool:
        return (self.group is None or group.key == self.group) and (
            self.outcome_code is None or group.outcome_code == self.outcome_code
        )


def check_filters(
    workspace: str,
    *,
    event: str | None = None,
    connection: str | None = None,
    rule: str | None = None,
    outcome_code: str | None = None,
    group: str | None = None,
) -> Filters:
    problems = [
        problem
        for param, value in (("connection", connection), ("rule", rule))
        if value is not None and (problem := m.uuid_problem(param, value)) is not None
    ]
    if outcome_code is not None and outcome_code not in m.OUTCOME_CODES:
        problems.append(Problem("outcome_code", f"must be one of {', '.join(m.OUTCOME_CODES[1:])}, e.g. auth_failed"))
    if group is not None and not KEY_RE.match(group):
        problems.append(Problem("group", 'must be a triage_failures key: 8 hex digits, e.g. "3f9a2c1d"'))
    if event is not None and not event.strip():
        problems.append(Problem("event", 'must not be blank, e.g. "user.signup"'))
    if problems:
        raise InvalidRequest(problems)
    return Filters(workspace, event, connection, rule, outcome_code, group)


class Classifier:
    """Puts each failing delivery in its group; a group's outcome code is read once, from its newest delivery."""

    def __init__(self, client: MeshesClient, filters: Filters) -> None:
        self.client = client
        self.filters = filters
        self.groups: dict[tuple[str, str | None, str], Group] = {}  # by rule, connection and cause signature
        self.by_key: dict[str, Group] = {}
        self.reads = 0

    async def group_of(self, event: m.Event, rule_event: m.RuleEvent) -> Group | None:
        """The delivery's group when it is failing and matches the filters, else None."""
        if rule_event.status not in NEEDS_ATTENTION or not self.filters.wants_delivery(rule_event):
            return None
        from meshes_mcp.server.diagnosis import read_latest_attempt

        signature = cause_signature(rule_event.last_error)
        slot = (rule_event.rule, rule_event.connection, signature)
        group = self.groups.get(slot)
        if group is None:
            evidence = Evidence(event, rule_event)
            if self.reads < ATTEMPT_READS:  # causes that defy normalisation must not cost a read each
                self.reads += 1
                await read_latest_attempt(self.client, evidence)
            code = evidence.code
            # Rejected credentials are one cause however the destination words it (the first refusal, then
            # "connection inactive" for every delivery after it): one fix, one group.
            cause = "" if code in SAME_CAUSE_CODES else signature
            key = group_key(rule_event.rule, rule_event.connection, code, cause)
            group = self.by_key.get(key)
            if group is None:
                group = Group(rule_event.rule, rule_event.connection, rule_event.integration_type, event.event,
                              cause, evidence, key)  # fmt: skip
                self.by_key[key] = group
            self.groups[slot] = group
        return group if self.filters.wants_group(group) else None

    def matched(self) -> list[Group]:
        return sorted((g for g in self.by_key.values() if g.count), key=lambda g: -g.count)


class Throttle:
    """Progress notifications at most every `every` seconds: thousands of items, a few dozen messages."""

    def __init__(self, report: Callable[[float, float | None, str], Awaitable[None]], every: float = 0.25) -> None:
        self.report = report
        self.every = every
        self.last = 0.0

    async def __call__(self, done: float, total: float | None, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            # A client that cannot take notifications still gets its result.
            with contextlib.suppress(Exception):
                await self.report(done, total, message)


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
    """The failing deliveries of the window, grouped by cause. `on_delivery` sees each one as it is grouped
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
    return groups, summary


def group_view(group: Group, retry_call: str, enabled: EnabledTools) -> dict[str, Any]:
    """A group as triage_failures shows it; its calls (and the `then` retry) are those this server can make."""
    ev = group.evidence
    ev.group_retry = retry_call
    fix, calls = advice(ev)
    conn = ev.connection
    connection: dict[str, Any] = {"id": group.connection, "type": group.integration_type}
    if conn is not None:
        connection.update({"name": conn.name, "active": conn.active, "state": connection_state(conn)})
    view: dict[str, Any] = {
        "key": group.key,
        "rule": group.rule,
        "connection": connection,
        "event": group.event_name,
        "outcome_code": group.outcome_code,
        "http_status": ev.http_status,
        "cause": one_line(ev.cause),
        "failed": group.failed,
        "retrying": group.retrying,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "samples": group.samples,
        "fix": fix,
        "calls": enabled.calls([c for c in calls if c != retry_call]),
    }
    if retry_helps(ev) and retry_call in calls and enabled.allows(retry_call):
        view["then"] = retry_call
    return view


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
    plan = RetryPlan(filters, window)
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


# --- waiting for outcomes -----------------------------------------------------------------------


def rule_event_settled(rule_event: m.RuleEvent, attempts_before: int) -> bool:
    """A retried delivery has settled once it ended, or once the forced attempt ran (and it is not in flight)."""
    if rule_event.status in m.TERMINAL_STATUSES:
        return True
    return rule_event.status != "processing" and (rule_event.attempt_count or 0) > attempts_before


async def wait_for_outcomes(
    client: MeshesClient, targets: list[Target], seconds: float, progress: Throttle
) -> dict[str, Any]:
    """Read the retried deliveries back until every one has settled or the time is up."""
    started = time.monotonic()
    deadline = started + seconds
    pending: dict[str, dict[str, Target]] = {}
    for target in targets:
        pending.setdefault(target.event_id, {})[target.rule] = target
    outcome: dict[str, m.RuleEvent] = {}
    pause = 0.1
    total = len(targets)
    limiter = anyio.CapacityLimiter(READS_IN_FLIGHT)

    async def read(event_id: str) -> None:
        async with limiter:
            try:
                event = await client.get_event(event_id)
            except (e.MeshesError, InvalidRequest):
                return
        for rule_event in event.rule_events or []:
            target = pending.get(event_id, {}).get(rule_event.rule)
            if target is not None and rule_event_settled(rule_event, target.attempt_count):
                outcome[f"{event_id}/{rule_event.rule}"] = rule_event
                del pending[event_id][rule_event.rule]
        if not pending.get(event_id):
            pending.pop(event_id, None)

    while pending and time.monotonic() < deadline:
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            async with anyio.create_task_group() as group:
                for event_id in list(pending):
                    group.start_soon(read, event_id)
        await progress(len(outcome), total, f"{len(outcome)}/{total} retried deliveries settled")
        if pending:
            await anyio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 1.0)
    return settled_view(outcome, sum(len(rules) for rules in pending.values()), time.monotonic() - started)


def settled_view(outcome: dict[str, m.RuleEvent], unsettled: int, waited: float) -> dict[str, Any]:
    delivered = sum(1 for r in outcome.values() if r.status == "completed")
    failing = [r for r in outcome.values() if r.status in NEEDS_ATTENTION]
    causes = Counter(cause_signature(r.last_error) for r in failing)
    top = None
    if causes:
        signature, count = causes.most_common(1)[0]
        example = next(r.last_error for r in failing if cause_signature(r.last_error) == signature)
        top = f"{one_line(example)} ({count})"
    view = {
        "delivered": delivered,
        "still_failing": len(failing),
        "canceled": sum(1 for r in outcome.values() if r.status == "canceled") or None,
        "top_cause": top,
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


def check_range(param: str, value: int | None, low: int, high: int, example: int, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest([Problem(param, f"must be {low} to {high:,}, e.g. {example}")])
    return value
