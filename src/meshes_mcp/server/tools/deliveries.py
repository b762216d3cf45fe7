"""deliveries toolset: event history, per-rule deliveries and attempts, retry and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict

from meshes_mcp.server import params as p
from meshes_mcp.server.failures import Failure, attempt

NOT_FOUND = "list_events shows recent events; get_event lists an event's rule ids."


class RuleEventOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    rule: str
    status: str
    next: str | None = None


def register(box: Any) -> None:
    rt = box.runtime

    @box.tool("deliveries", read_only=False, idempotent=False, title="Retry rule delivery")
    async def retry_rule_event(event_id: p.EventId, rule_id: p.RuleId) -> Annotated[CallToolResult, RuleEventOut]:
        """Deliver one event to one rule again now, after fixing the cause (connection credentials, rule
        metadata). Works on failed and retrying deliveries."""
        client = rt.client()
        failure = Failure(write=True, not_found=NOT_FOUND, verify=f"get_event event_id={event_id}")
        rule_event = await attempt(client.retry_rule_event(event_id, rule_id), failure)
        view = rule_event.model_dump(mode="json", exclude={"created_by", "type"})
        view["next"] = f"get_event event_id={event_id} shows the outcome in a few seconds"
        return rt.result(view)
