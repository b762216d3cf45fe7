"""Resources: the integration catalogue and event history, for agents and for people in the client UI.

Registered at start-up, so what they read with (the API layer, the tool modules' views) is imported in
each reader, on its first read: a cold start lists, and imports, no more than it must.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import Completion, ResourceTemplateReference

from meshes_mcp.server.render import dumps, prune

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from meshes_mcp.server.runtime import Runtime

JSON = "application/json"
RECENT_EVENTS = 50
MAPPING_SCHEMA_URI = "meshes://docs/mapping-schema"


def register(server: MCPServer[Runtime], runtime: Runtime) -> None:
    def render(data: Any) -> str:
        return dumps(prune(runtime.redactor.data(data)))

    async def api_call(call: Any, what: str) -> Any:
        from meshes_mcp.api import errors as e
        from meshes_mcp.api.problems import InvalidRequest

        try:
            return await call
        except InvalidRequest as exc:
            raise ResourceNotFoundError(runtime.redact_message(f"{what}: {exc}")) from None
        except e.NotFoundError:
            raise ResourceNotFoundError(f"{what} not found") from None
        except e.MeshesError as exc:
            raise ResourceError(runtime.redact_message(f"{what}: {exc}")) from None

    def client() -> Any:
        try:
            return runtime.client()
        except Exception as exc:  # ToolError: credentials missing
            raise ResourceError(str(exc)) from None

    @server.resource(
        "meshes://integrations",
        name="integrations",
        title="Meshes integrations",
        description="Every integration: auth type and actions",
        mime_type=JSON,
    )
    async def integrations() -> str:
        from meshes_mcp.server.tools.integrations import summary

        catalog = await runtime.catalog()
        return render({"integrations": [summary(r) for r in catalog.records()]})

    @server.resource(
        "meshes://integrations/{type}",
        name="integration",
        title="Meshes integration",
        description="One integration: connection metadata fields and what each action needs in rule metadata",
        mime_type=JSON,
    )
    async def integration(type: str) -> str:
        from meshes_mcp.api.problems import InvalidRequest
        from meshes_mcp.server.tools.integrations import detail, find_record

        catalog = await runtime.catalog()
        try:
            return render(detail(find_record(catalog.records(), type)))
        except InvalidRequest as exc:
            raise ResourceNotFoundError(str(exc)) from None

    @server.resource(
        "meshes://workspaces/{workspace_id}/events",
        name="workspace_events",
        title="Recent events",
        description="A workspace's recent events with delivery status",
        mime_type=JSON,
    )
    async def workspace_events(workspace_id: str) -> str:
        from meshes_mcp.api.models import WorkspaceEventQuery
        from meshes_mcp.server.tools.deliveries import event_view

        page = await api_call(
            client().list_workspace_events(workspace_id, WorkspaceEventQuery(limit=RECENT_EVENTS)), "workspace"
        )
        return render({"events": [event_view(ev) for ev in page.records], "next_cursor": page.next_cursor})

    @server.resource(
        "meshes://events/{event_id}",
        name="event",
        title="Event",
        description="One event with its rule events (per-rule delivery status)",
        mime_type=JSON,
    )
    async def event(event_id: str) -> str:
        from meshes_mcp.server.tools.deliveries import event_view

        found = await api_call(client().get_event(event_id), f"event {event_id}")
        return render(event_view(found))

    @server.resource(
        MAPPING_SCHEMA_URI,
        name="mapping_schema",
        title="Field-mapping format",
        description="The default field-mapping schema taken by update_connection_mappings",
        mime_type="text/markdown",
    )
    def mapping_schema() -> str:
        from meshes_mcp.server.tools.connections import MAPPING_SCHEMA_DOC

        return MAPPING_SCHEMA_DOC

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, ResourceTemplateReference) and argument.name == "type":
            catalog = await runtime.catalog()
            values = [t for t in catalog.types() if t.startswith(argument.value or "")]
            return Completion(values=values, total=len(values), has_more=False)
        return None
