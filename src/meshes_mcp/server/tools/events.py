"""events toolset: emit_event, emit_events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import errors as e
from meshes_mcp.api.models import BULK_LIMIT, BulkResult, EmitEventRequest
from meshes_mcp.api.problems import InvalidRequest, check
from meshes_mcp.server import params as p
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.incident.outcomes import wait_for_event
from meshes_mcp.server.incident.progress import Throttle
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.runtime import Runtime, ToolContext, runtime_of

# Four bulk requests in flight keep ingestion fast without one agent hogging the API's rate limit.
PARALLEL_CHUNKS = 4
# Event ids are worth listing for a handful of events; for thousands the count says it all.
IDS_SHOWN_UP_TO = 50
REJECTIONS_SHOWN = 100

Status = Literal["accepted", "rejected", "unknown", "not_sent"]


class EmittedEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    event: str
    workspace: str | None = None
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
        await ctx.report_progress(run.done, len(valid), f"{run.done}/{len(valid)} events sent")

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
    return rt.result(bulk_summary(run, ws))


TOOLS = (emit_event, emit_events)
