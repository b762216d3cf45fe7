"""events toolset: emit_event, emit_events."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict

from meshes_mcp.api.models import EmitEventRequest
from meshes_mcp.api.problems import check
from meshes_mcp.server import params as p
from meshes_mcp.server.failures import Failure, attempt


class EmittedEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    event: str
    workspace: str | None = None
    next: str


def register(box: Any) -> None:
    rt = box.runtime

    @box.tool("events", read_only=False, idempotent=False, title="Emit event")
    async def emit_event(
        event: p.EventName,
        payload: p.Payload,
        workspace: p.Workspace = None,
        resource: p.Resource = None,
        resource_id: p.ResourceId = None,
    ) -> Annotated[CallToolResult, EmittedEvent]:
        """Emit one event; Meshes fans it out to every active rule matching its name. Accepted means queued,
        not delivered: check delivery with get_event."""
        publishable_only = rt.settings.machine_key() is None and rt.settings.publishable_key is not None
        client = rt.client(publishable_ok=True)
        # A publishable key implies its workspace; a machine key needs one named.
        ws = workspace if publishable_only else rt.workspace(workspace)
        body = {"event": event, "payload": payload, "workspace": ws, "resource": resource, "resource_id": resource_id}
        request = check(EmitEventRequest, {k: v for k, v in body.items() if v is not None})
        failure = Failure(write=True, verify="list_events shows whether it arrived")
        created = await attempt(client.emit_event(request), failure)
        return rt.result(
            {
                "id": created.id,
                "event": created.event,
                "workspace": created.workspace,
                "resource": created.resource,
                "resource_id": created.resource_id,
                "next": f"get_event event_id={created.id} shows its delivery to each rule",
            }
        )
