"""events toolset: emit_event, emit_events, replay_events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.models import BULK_LIMIT, BulkResult, EmitEventRequest
from meshes_mcp.api.problems import InvalidRequest, Problem, check
from meshes_mcp.server import params as p
from meshes_mcp.server.bounds import RulesOf
from meshes_mcp.server.confirm import NOT_ASKED, Confirmation, Confirmed, ask, can_elicit, require_yes
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.incident import replay
from meshes_mcp.server.incident.census import matched_no_rule
from meshes_mcp.server.incident.groups import check_filters
from meshes_mcp.server.incident.norule import WorkspaceRules, listened_for, no_rule_note
from meshes_mcp.server.incident.outcomes import wait_for_event
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.incident.window import Window, call_text
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.runtime import Runtime, ToolContext, runtime_of

if TYPE_CHECKING:
    from meshes_mcp.api.client import MeshesClient

# Four bulk requests in flight keep ingestion fast without one agent hogging the API's rate limit.
PARALLEL_CHUNKS = 4
# Event ids are worth listing for a handful of events; for thousands the count says it all.
IDS_SHOWN_UP_TO = 50
REJECTIONS_SHOWN = 100
NAMES_NOTED = 20  # distinct event names of one emit_events checked for a rule at most

Status = Literal["accepted", "rejected", "unknown", "not_sent"]


class EmittedEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    event: str
    workspace: str | None = None
    matched_no_rule: bool | None = None  # no active rule takes it: nothing is delivered
    warning: str | None = None
    closest_rule_events: list[str] | None = None
    next: str


class BulkEmitted(BaseModel):
    model_config = ConfigDict(extra="allow")
    total: int
    accepted: int
    rejected: list[dict[str, Any]] = Field(default_factory=list)
    unknown: list[dict[str, Any]] = Field(default_factory=list)
    not_sent: list[dict[str, Any]] = Field(default_factory=list)
    next: str | None = None


@dataclass
class Outcome:
    status: Status
    id: str | None = None
    reason: str | None = None


@dataclass
class BulkRun:
    """The state of one emit_events call, shared by its concurrent chunk senders."""

    total: int
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    done: int = 0
    # Set after a failure every later chunk would repeat (bad credentials): the rest are not sent.
    stop_reason: str | None = None

    def settle(self, indexes: list[int], outcome: Outcome) -> None:
        for index in indexes:
            self.outcomes[index] = outcome


def index_ranges(indexes: list[int]) -> str:
    """[0,1,2,5,7,8] → "0-2,5,7-8": a chunk's indexes in few bytes."""
    parts: list[str] = []
    start = prev = None
    for index in sorted(indexes):
        if prev is not None and index == prev + 1:
            prev = index
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = index
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(parts)


def prepare(index: int, item: Any, workspace: str | None) -> EmitEventRequest:
    """One item as a request, its workspace defaulted; problems are named events[i].<field>."""
    if not isinstance(item, dict):
        return check(EmitEventRequest, item, prefix=f"events[{index}]")
    if workspace is not None and item.get("workspace") is None:
        item = {**item, "workspace": workspace}
    return check(EmitEventRequest, item, prefix=f"events[{index}]")


def record_outcome(record: Any) -> Outcome:
    """One record of a bulk answer: an event (accepted) or an error body (rejected)."""
    if isinstance(record, dict) and isinstance(record.get("event"), dict):
        record = record["event"]  # tolerate the single-create wrapping
    if isinstance(record, dict) and record.get("id"):
        return Outcome("accepted", id=str(record["id"]))
    return Outcome("rejected", reason=str(e.error_for_status(400, record)).replace("\n", "; "))


def per_item_answer(exc: e.MeshesError) -> BulkResult | None:
    """A refused bulk request that still says, item by item, why each was refused (all items rejected)."""
    body = exc.body if isinstance(exc, e.APIStatusError) and exc.status in (400, 422) else None
    if isinstance(body, dict) and isinstance(body.get("records"), list) and body["records"]:
        return BulkResult.model_validate({"count": 0, **body})
    return None


def failed_chunk_outcome(exc: e.MeshesError) -> tuple[Outcome, bool]:
    """What a failed bulk request means for its items, and whether later chunks would fail alike."""
    if isinstance(exc, e.APIStatusError):
        if exc.status >= 500:
            reason = f"Meshes answered {exc.status}; may have been accepted, not retried"
            return Outcome("unknown", reason=reason), False
        if exc.status == 429:
            return Outcome("not_sent", reason="rate limited (429): not accepted, safe to send again"), False
        systemic = exc.status in (401, 403)
        # Only the headline: per-item details repeated on every item would grow as the square of the chunk.
        return Outcome("rejected", reason=f"whole batch refused ({exc.status}): {exc.message}"), systemic
    if isinstance(exc, e.APIConnectionError) and exc.sent:
        return Outcome("unknown", reason=f"{exc}; may have been accepted, not retried"), False
    return Outcome("not_sent", reason=f"{exc}; nothing was sent"), isinstance(exc, e.ConfigurationError)


def grouped_rejections(rejections: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """One entry per rejected item, except that items refused for the same reason share one entry
    (`"indexes": "0-99"`): a wrong workspace must not cost a hundred copies of one sentence."""
    by_reason: dict[str, list[int]] = {}
    for index, reason in rejections:
        by_reason.setdefault(reason, []).append(index)
    groups = sorted((ix, why) for why, ix in by_reason.items())  # in input order of each group's first item
    return [
        {"index": ix[0], "reason": why} if len(ix) == 1 else {"indexes": index_ranges(ix), "reason": why}
        for ix, why in groups
    ]


def bulk_summary(run: BulkRun, workspace: str | None) -> dict[str, Any]:
    ordered = sorted(run.outcomes.items())
    rejected = grouped_rejections([(i, o.reason or "") for i, o in ordered if o.status == "rejected"])
    summary: dict[str, Any] = {
        "total": run.total,
        "accepted": sum(1 for _, o in ordered if o.status == "accepted"),
        "rejected": rejected[:REJECTIONS_SHOWN],
        "rejected_omitted": max(0, len(rejected) - REJECTIONS_SHOWN) or None,
    }
    for status in ("unknown", "not_sent"):
        by_reason: dict[str, list[int]] = {}
        for index, outcome in ordered:
            if outcome.status == status:
                by_reason.setdefault(outcome.reason or "", []).append(index)
        summary[status] = [{"indexes": index_ranges(ix), "reason": why} for why, ix in by_reason.items()]
    if run.total <= IDS_SHOWN_UP_TO:
        summary["ids"] = [{"index": i, "id": o.id} for i, o in ordered if o.id]
    where = f" workspace={workspace}" if workspace else ""
    summary["next"] = f"list_events{where} shows them; get_event event_id=<id> shows deliveries"
    if summary["unknown"]:
        summary["next"] += "; check list_events before re-sending unknown items"
    return summary


async def send_bulk(
    client: MeshesClient,
    valid: list[tuple[int, EmitEventRequest]],
    run: BulkRun,
    report: Callable[[float, float | None, str], Awaitable[None]],
) -> None:
    """Send checked events in bulk requests of up to 100, PARALLEL_CHUNKS at a time, recording each item's
    outcome in `run` by its index; a request whose fate is unknown is never sent again."""
    chunks = [valid[start : start + BULK_LIMIT] for start in range(0, len(valid), BULK_LIMIT)]
    limiter = anyio.CapacityLimiter(PARALLEL_CHUNKS)

    async def send(chunk: list[tuple[int, EmitEventRequest]]) -> None:
        indexes = [index for index, _ in chunk]
        async with limiter:
            if run.stop_reason is not None:
                run.settle(indexes, Outcome("not_sent", reason=f"not sent after: {run.stop_reason}"))
            else:
                await send_now(chunk, indexes)
        run.done += len(chunk)
        await report(run.done, len(valid), f"{run.done}/{len(valid)} events sent")

    async def send_now(chunk: list[tuple[int, EmitEventRequest]], indexes: list[int]) -> None:
        answer: BulkResult | None
        try:
            answer = await client.emit_events([request for _, request in chunk])
        except e.MeshesError as exc:
            answer = per_item_answer(exc)
            if answer is None:
                outcome, systemic = failed_chunk_outcome(exc)
                run.settle(indexes, outcome)
                if systemic:
                    run.stop_reason = outcome.reason
                return
        records = answer.records
        everything_accepted = not answer.error_count and answer.count == len(chunk)
        for position, index in enumerate(indexes):
            if position < len(records):
                run.outcomes[index] = record_outcome(records[position])
            elif everything_accepted:
                run.outcomes[index] = Outcome("accepted")
            else:
                run.outcomes[index] = Outcome("unknown", reason="no per-item record in the answer; not retried")

    async with anyio.create_task_group() as group:
        for chunk in chunks:
            group.start_soon(send, chunk)


def target_workspace(rt: Runtime, workspace: str | None) -> str | None:
    # A publishable key implies its workspace; a machine key needs one named.
    publishable_only = rt.settings.machine_key() is None and rt.settings.publishable_key is not None
    return workspace if publishable_only else p.workspace_arg(rt, workspace)


@tool(Toolset.EVENTS, read_only=False, idempotent=False, title="Emit event")
async def emit_event(
    event: p.EventName,
    payload: Annotated[dict[str, Any], Field(description="Event data; email for people")],
    ctx: ToolContext,
    workspace: p.WorkspaceOpt = None,
    resource: p.Resource = None,
    resource_id: p.ResourceKey = None,
    wait_seconds: p.Wait = None,
) -> Annotated[CallToolResult, EmittedEvent]:
    """Emit one event to every active rule matching its name; wait_seconds awaits delivery."""
    rt = runtime_of(ctx)
    wait = p.WAIT.check("wait_seconds", wait_seconds)
    client = rt.client(publishable_ok=True)
    ws = target_workspace(rt, workspace)
    body = {"event": event, "payload": payload, "workspace": ws, "resource": resource, "resource_id": resource_id}
    request = p.check_given(EmitEventRequest, body)
    failure = Failure(write=True, verify="list_events shows whether it arrived")
    created = await attempt(client.emit_event(request), failure)
    result: dict[str, Any] = {
        "id": created.id,
        "event": created.event,
        "workspace": created.workspace,
        "resource": created.resource,
        "resource_id": created.resource_id,
        "next": f"get_event event_id={created.id} shows its delivery to each rule",
    }
    if wait and rt.settings.machine_key() is None:
        result["waited"] = "not waited: reading deliveries needs a machine key (MESHES_ACCESS_KEY, MESHES_SECRET_KEY)"
    elif wait:
        from meshes_mcp.server.tools.deliveries import event_view

        settled, result["waited"] = await wait_for_event(client, created.id, wait, Throttle(ctx.report_progress))
        if settled is not None:
            view = event_view(settled)
            result.update({"status": view.get("status"), "rule_events": view["rule_events"]})
            result["next"] = view.get("next") or result["next"]
            if matched_no_rule(settled):
                result["waited"] = "nothing to wait for: it matched no rule"
    if rt.settings.machine_key() is not None and created.workspace:
        rules = await WorkspaceRules(client, created.workspace).get()
        settled_unrouted = result.get("waited") == "nothing to wait for: it matched no rule"
        if rules is not None and (settled_unrouted or not listened_for(rules, created.event)):
            note = no_rule_note(created.event, rules, workspace=workspace, since=created.created_at)
            result.update(note)
    return rt.result(result)


@tool(Toolset.EVENTS, read_only=False, idempotent=False, title="Emit events")
async def emit_events(
    events: Annotated[
        list[dict[str, Any]], Field(description="Each {event, payload, resource?, resource_id?, workspace?}")
    ],
    ctx: ToolContext,
    workspace: p.Filter = None,
) -> Annotated[CallToolResult, BulkEmitted]:
    """Emit any number of events in bulk, with progress; invalid items are reported by index, not sent."""
    rt = runtime_of(ctx)
    client = rt.client(publishable_ok=True)
    ws = target_workspace(rt, workspace)
    run = BulkRun(total=len(events))
    valid: list[tuple[int, EmitEventRequest]] = []
    for index, item in enumerate(events):
        try:
            valid.append((index, prepare(index, item, ws)))
        except InvalidRequest as exc:
            run.outcomes[index] = Outcome("rejected", reason=str(exc).replace("\n", "; "))
    await send_bulk(client, valid, run, ctx.report_progress)
    summary = bulk_summary(run, ws)
    if rt.settings.machine_key() is not None and ws is not None:
        unrouted = await unrouted_names(WorkspaceRules(client, ws), valid, run, workspace)
        summary["unrouted"] = unrouted or None  # each with its own next step
    return rt.result(summary)


async def unrouted_names(
    rules: WorkspaceRules, valid: list[tuple[int, EmitEventRequest]], run: BulkRun, workspace: str | None
) -> list[dict[str, Any]]:
    """The accepted events' names no active rule listens for, each with its count and closest rule names."""
    accepted = Counter(
        request.event for index, request in valid if run.outcomes.get(index, Outcome("unknown")).status == "accepted"
    )
    listed = await rules.get() if accepted else None
    if listed is None:
        return []
    notes = []
    for name, count in accepted.most_common(NAMES_NOTED):
        if not listened_for(listed, name):
            note = no_rule_note(name, listed, workspace=workspace, since=None, count=count)
            notes.append({"event": name, "count": count, **{k: v for k, v in note.items() if k != "matched_no_rule"}})
    return notes


# --- replay_events ----------------------------------------------------------------------------------

ASK_ABOVE = 10  # re-emitting more events than this asks the user first (when the client can be asked)


class ReplayOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    unrouted: int = 0
    replayed: int = 0
    next: str | None = None


async def plan_replay(
    ctx: ToolContext,
    workspace: str | None = None,
    event: str | None = None,
    since: str | None = None,
    until: str | None = None,
    as_event: str | None = None,
    max_events: int | None = None,
    wait_seconds: int | None = None,
) -> replay.ReplayPlan:
    """The unrouted events not yet replayed, found (payloads read) before anything is sent or asked."""
    rt = runtime_of(ctx)
    client = rt.client()
    ws = p.workspace_arg(rt, workspace)
    window = Window.of(since, until)
    limit = p.MAX_EVENTS.check("max_events", max_events)
    p.BULK_WAIT.check("wait_seconds", wait_seconds)
    check_filters(ws, event=event)  # the event filter's rules, as triage_failures checks them
    longest = m.EVENT_NAME_MAX
    if as_event is not None and (
        not as_event.strip() or len(as_event) > longest or any(ord(c) < 32 or ord(c) == 127 for c in as_event)
    ):
        rule = (
            f'must be an event name: not blank, at most {longest} characters, no control characters, e.g. "user.signup"'
        )
        raise InvalidRequest([Problem("as_event", rule)])
    failure = Failure(write=False, not_found="list_workspaces shows the workspaces.")
    progress = Throttle(ctx.report_progress)
    return await attempt(replay.plan_replay(client, ws, window, event, limit, progress), failure)


async def confirm_replay(
    plan: Annotated[replay.ReplayPlan, Resolve(plan_replay)],
    ctx: ToolContext,
    dry_run: bool | None = None,
    as_event: str | None = None,
) -> Confirmation | Elicit[Confirmation]:
    if dry_run or len(plan.originals) <= ASK_ABOVE or not can_elicit(ctx):
        return NOT_ASKED
    names = ", ".join(f"{n:,} `{name}`" for name, n in plan.names().most_common(3))
    renamed = f" as `{as_event}`" if as_event else ""
    question = f"Emit again {len(plan.originals):,} events that matched no rule ({names}){renamed}? Each is sent once."
    return ask(ctx, runtime_of(ctx).redact_message(question))


@tool(Toolset.EVENTS, read_only=False, idempotent=False, title="Replay unrouted events")
async def replay_events(
    ctx: ToolContext,
    plan: Annotated[replay.ReplayPlan, Resolve(plan_replay)],
    confirmation: Annotated[Confirmed, Resolve(confirm_replay)],
    workspace: p.WorkspaceOpt = None,
    event: p.EventFilter = None,
    since: p.Since = None,
    until: p.Until = None,
    as_event: Annotated[str, RulesOf(m.EventName), Field(description="Emit the copies under this name")] | None = None,
    max_events: p.MaxEvents = None,
    dry_run: Annotated[bool | None, Field(description="Count only, send nothing")] = None,
    wait_seconds: p.BulkWait = None,
) -> Annotated[CallToolResult, ReplayOut]:
    """Re-emit, once each, the window's events that matched no rule; as_event renames. dry_run counts."""
    rt = runtime_of(ctx)
    ws = p.workspace_arg(rt, workspace)
    window_args = plan.window.args()
    same = {"workspace": workspace, "event": event}
    result: dict[str, Any] = {
        "unrouted": plan.unrouted,
        "already_replayed": plan.already_replayed or None,
        "their_copies_matched_no_rule": plan.copies_unrouted or None,
        "are_replays": plan.are_copies or None,
        "unreadable": plan.unreadable or None,
        "events_read": plan.scan.scanned,
        "complete": plan.scan.complete,
    }
    more = None
    if not plan.scan.complete:
        result["note"] = "bounded by max_events: older unrouted events were not read"
        more = call_text("replay_events", **same, since=window_args["since"], until=plan.scan.cut_at,
                         as_event=as_event, max_events=max_events)  # fmt: skip
    if plan.copies.capped:
        result["not_sent"] = (
            f"more than {replay.COPY_READS:,} events since the oldest unrouted one: their payloads were not all "
            "read, so earlier replays cannot be ruled out; nothing was sent. Narrow the window (a later since=)."
        )
        return rt.result(result)
    if dry_run:
        result.update({"dry_run": True, "would_replay": len(plan.originals)})
        result["by_event"] = [{"event": n, "count": c} for n, c in plan.names().most_common(10)] or None
        send = call_text("replay_events", **same, **window_args, as_event=as_event, max_events=max_events)
        result["next"] = f"to send them: {send}" if plan.originals else None
        if more:
            result["next"] = f"{result['next'] or 'nothing to send here'}; then the older ones: {more}"
        return rt.result(result)
    require_yes(confirmation, "Not replayed")
    client = rt.client()
    if len(plan.originals) > ASK_ABOVE and can_elicit(ctx):
        # The user took a while to answer: look again for copies another replay made meanwhile.
        again = await attempt(
            replay.find_copies(client, ws, plan.originals, Throttle(ctx.report_progress)),
            Failure(write=False, not_found="list_workspaces shows the workspaces."),
        )
        meanwhile = [o for o in plan.originals if again.copied(o.id)]
        plan.originals = [o for o in plan.originals if not again.copied(o.id)]
        result["replayed_meanwhile"] = len(meanwhile) or None
    valid: list[tuple[int, EmitEventRequest]] = []
    run = BulkRun(total=len(plan.originals))
    for index, original in enumerate(plan.originals):
        try:
            valid.append((index, prepare(index, replay.copy_request(original, ws, as_event), None)))
        except InvalidRequest as exc:
            run.outcomes[index] = Outcome("rejected", reason=str(exc).replace("\n", "; "))
    await send_bulk(client, valid, run, ctx.report_progress)
    result["replayed"] = sum(1 for o in run.outcomes.values() if o.status == "accepted")
    result["as_event"] = as_event
    for status in ("rejected", "unknown", "not_sent"):
        result[status] = unsent_by_reason(run, plan.originals, status)
    wait = p.BULK_WAIT.check("wait_seconds", wait_seconds)
    copies = [o.id for _, o in sorted(run.outcomes.items()) if o.status == "accepted" and o.id]
    if wait and copies:
        result["outcome"] = await replay.wait_for_copies(client, copies, wait, Throttle(ctx.report_progress))
    check_call = call_text("triage_failures", workspace=workspace, event=as_event or event, since=window_args["since"])
    result["next"] = more or f"{check_call} shows what is left"
    if result["unknown"] or result["not_sent"]:
        result["next"] += "; running the same replay_events again sends only what did not arrive"
    return rt.result(result)


def unsent_by_reason(run: BulkRun, originals: list[m.Event], status: Status) -> list[dict[str, Any]]:
    """The copies of one outcome by reason, each with its count and a few of the originals' ids (an index
    into this call's own list would mean nothing to the caller)."""
    by_reason: dict[str, list[str]] = {}
    for index, outcome in sorted(run.outcomes.items()):
        if outcome.status == status:
            by_reason.setdefault(outcome.reason or "", []).append(originals[index].id)
    return [{"reason": why, "count": len(ids), "originals": ids[:3]} for why, ids in list(by_reason.items())[:10]]


TOOLS = (emit_event, emit_events, replay_events)
