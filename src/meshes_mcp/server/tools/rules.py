"""rules toolset: rules route an event name to a connection with action metadata."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem, check
from meshes_mcp.server import params as p
from meshes_mcp.server.failures import Failure, attempt

NOT_FOUND = "list_rules shows the rules and their ids."


class RuleOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    event: str | None = None
    connection: str | None = None
    next: str | None = None


def rule_view(rule: m.Rule) -> dict[str, Any]:
    return rule.model_dump(mode="json", exclude={"created_by"})


def needs_action_data(spec: Any, action: str) -> bool:
    action_spec = (spec.actions or {}).get(action) if spec is not None else None
    return bool(action_spec) and any(d.kind in ("simple", "advanced") for d in action_spec.data or [])


def register(box: Any) -> None:
    rt = box.runtime

    @box.tool("rules", read_only=False, idempotent=False, title="Create rule")
    async def create_rule(
        connection: Annotated[str, Field(description="Connection UUID")],
        event: p.EventName,
        metadata: Annotated[
            dict[str, Any],
            Field(description='Action and its fields, e.g. {"action":"add_to_list","id":"5"} (get_connection_actions)'),
        ],
        workspace: Annotated[str | None, Field(description="Workspace UUID; default the connection's")] = None,
        resource: p.Resource = None,
        resource_id: p.ResourceId = None,
        active: Annotated[bool | None, Field(description="Default true")] = None,
        hidden: Annotated[bool | None, Field(description="Hide from the dashboard")] = None,
    ) -> Annotated[CallToolResult, RuleOut]:
        """Route events named `event` to a connection. Metadata is checked against the integration's action and
        the connection's live data (list ids etc.) before creating."""
        from meshes_mcp.api.catalog import validate_rule_metadata
        from meshes_mcp.api.client import require_uuid

        client = rt.client()
        require_uuid("connection", connection)
        failure = Failure(write=False, not_found="list_connections shows the connections and their ids.")
        conn = await attempt(client.get_connection(connection), failure)
        if workspace is not None and conn.workspace and workspace != conn.workspace:
            raise InvalidRequest(
                [Problem("workspace", f"connection {connection} belongs to workspace {conn.workspace}; omit workspace")]
            )
        body = {
            "workspace": workspace or conn.workspace,
            "connection": connection,
            "event": event,
            "metadata": metadata,
            "resource": resource,
            "resource_id": resource_id,
            "active": active,
            "hidden": hidden,
        }
        request = check(m.CreateRuleRequest, {k: v for k, v in body.items() if v is not None})
        spec = (await rt.catalog()).get(conn.type)
        action_data = None
        if needs_action_data(spec, str(metadata.get("action"))):
            action_data = await attempt(client.get_connection_actions(connection), failure)
        problems = validate_rule_metadata(spec, metadata, action_data) if spec is not None else []
        if problems:
            raise InvalidRequest(problems)
        created = await attempt(
            client.create_rule(request),
            Failure(write=True, verify=f"list_rules event={event} shows whether it exists"),
        )
        view = rule_view(created)
        if conn.active is False:
            view["warning"] = f"connection is inactive ({conn.inactive_reason}): deliveries fail until reconnected"
        view["next"] = f'emit_event event="{event}" with a test payload, then get_event'
        return rt.result(view)
