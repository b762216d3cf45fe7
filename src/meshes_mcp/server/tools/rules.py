"""rules toolset: rules route an event name to a connection with action metadata."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem, check
from meshes_mcp.server import params as p
from meshes_mcp.server.confirm import NOT_ASKED, Confirmation, Confirmed, ask, can_elicit, require_yes
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.fixes import inactive_warning
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.runtime import ToolContext, runtime_of
from meshes_mcp.server.views import RuleRow, RuleView

NOT_FOUND = "list_rules shows the rules and their ids."


class RuleList(p.ListOut):
    rules: list[RuleRow] = Field(default_factory=list)


class DeletedRuleOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    deleted: str
    next: str | None = None


def rule_view(rule: m.Rule) -> dict[str, Any]:
    return RuleView.of(rule).render()


def rule_summary(rule: m.Rule, *, org_wide: bool) -> dict[str, Any]:
    return RuleRow.of(rule, org_wide=org_wide).render()


def needs_action_data(spec: Any, action: str) -> bool:
    action_spec = (spec.actions or {}).get(action) if spec is not None else None
    return action_spec is not None and any(d.kind in ("simple", "advanced") for d in action_spec.data or [])


async def confirm_delete_rule(rule_id: str, ctx: ToolContext) -> Confirmation | Elicit[Confirmation]:
    if not can_elicit(ctx):
        return NOT_ASKED
    rule = await attempt(runtime_of(ctx).client().get_rule(rule_id), Failure(write=False, not_found=NOT_FOUND))
    action = rule.metadata.get("action")
    target = f"{rule.type or 'connection'} {rule.connection}" + (f" ({action})" if action else "")
    return ask(ctx, f'Delete rule {rule.id}, which sends "{rule.event}" to {target}?')


@tool(Toolset.RULES, read_only=True, idempotent=True, title="List rules")
async def list_rules(
    ctx: ToolContext,
    workspace: p.WorkspaceOrOrg = None,
    event: p.Filter = None,
    resource: p.Filter = None,
    resource_id: p.Filter = None,
    limit: p.PageLimit = None,
    cursor: p.PageCursor = None,
) -> Annotated[CallToolResult, RuleList]:
    """Rules: which event goes to which connection, with what action metadata."""
    rt = runtime_of(ctx)
    client = rt.client()
    filters = check(m.RuleFilters, {"event": event, "resource": resource, "resource_id": resource_id})
    ws = p.workspace_arg(rt, workspace, org_wide=True)
    p.check_paging(limit, cursor)
    failure = Failure(write=False, not_found="list_workspaces shows the workspaces.")
    if ws:
        call = client.list_workspace_rules(ws, filters, limit=limit, cursor=cursor)
    else:
        call = client.list_rules(filters, limit=limit, cursor=cursor)
    page = await attempt(call, failure)
    args = {"workspace": workspace, "event": event, "resource": resource, "resource_id": resource_id}
    return rt.result(
        {
            "rules": [rule_summary(r, org_wide=not ws) for r in page.records],
            "count": len(page.records),
            "next_cursor": page.next_cursor,
            "next": p.next_page("list_rules", page.next_cursor, **args, limit=limit),
        }
    )


@tool(Toolset.RULES, read_only=True, idempotent=True, title="Get rule")
async def get_rule(ctx: ToolContext, rule_id: p.Uuid) -> Annotated[CallToolResult, RuleView]:
    """One rule with its event filter, connection and action metadata."""
    rt = runtime_of(ctx)
    rule = await attempt(rt.client().get_rule(rule_id), Failure(write=False, not_found=NOT_FOUND))
    return rt.result(rule_view(rule))


@tool(Toolset.RULES, read_only=False, idempotent=False, title="Create rule")
async def create_rule(
    ctx: ToolContext,
    connection: p.Uuid,
    event: p.EventName,
    metadata: Annotated[
        dict[str, Any],
        Field(description='{"action":"add_to_list","id":"5"} via get_connection_actions'),
    ],
    workspace: p.Uuid | None = None,
    resource: p.Resource = None,
    resource_id: p.ResourceKey = None,
    active: bool | None = None,
    hidden: bool | None = None,
) -> Annotated[CallToolResult, RuleView]:
    """Route events named `event` to a connection's action; metadata is checked against its live data
    first."""
    from meshes_mcp.api.catalog import validate_rule_metadata
    from meshes_mcp.api.models import require_uuid

    rt = runtime_of(ctx)
    client = rt.client()
    require_uuid("connection", connection)
    failure = Failure(write=False, not_found="list_connections shows the connections and their ids.")
    conn = await attempt(client.get_connection(connection), failure)
    if workspace is not None and conn.workspace and workspace.lower() != conn.workspace.lower():
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
    spec = (await rt.catalog()).get(conn.type)
    # The integration's own rules first: a missing or unknown action is answered with its actions.
    problems = validate_rule_metadata(spec, metadata) if spec is not None else []
    if problems:
        raise InvalidRequest(problems)
    request = p.check_given(m.CreateRuleRequest, body)
    if spec is not None and needs_action_data(spec, str(metadata.get("action"))):
        action_data = await attempt(client.get_connection_actions(connection), failure)
        problems = validate_rule_metadata(spec, metadata, action_data)
        if problems:
            raise InvalidRequest(problems)
    created = await attempt(
        client.create_rule(request),
        Failure(write=True, verify=f"list_rules event={event} shows whether it exists"),
    )
    view = rule_view(created)
    view["warning"] = inactive_warning(conn, spec)
    view["next"] = f'emit_event event="{event}" with a test payload, then get_event'
    return rt.result(view)


@tool(Toolset.RULES, read_only=False, idempotent=True, destructive=True, title="Delete rule")
async def delete_rule(
    ctx: ToolContext, rule_id: p.Uuid, confirmation: Annotated[Confirmed, Resolve(confirm_delete_rule)]
) -> Annotated[CallToolResult, DeletedRuleOut]:
    """Delete a rule. Rules cannot be edited: delete, then create_rule again."""
    rt = runtime_of(ctx)
    require_yes(confirmation, "Not deleted")
    failure = Failure(write=True, not_found=NOT_FOUND, verify=f"get_rule rule_id={rule_id}")
    deleted = await attempt(rt.client().delete_rule(rule_id), failure)
    return rt.result({"deleted": deleted.id, "event": deleted.event, "connection": deleted.connection})


TOOLS = (list_rules, get_rule, create_rule, delete_rule)
