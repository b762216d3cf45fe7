"""workspaces toolset: workspaces and the event types and resources they have seen."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem, check
from meshes_mcp.server import params as p
from meshes_mcp.server.bounds import RulesOf
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.runtime import ToolContext, runtime_of

NOT_FOUND = "list_workspaces shows the workspaces and their ids."
# The request models check these; the schemas show their rules.
WorkspaceName = Annotated[str, RulesOf(m.WorkspaceName)]


class WorkspaceOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str | None = None
    next: str | None = None


class WorkspaceList(p.ListOut):
    workspaces: list[dict[str, Any]] = Field(default_factory=list)


class CatalogOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    workspace: str
    entries: list[dict[str, Any]] = Field(default_factory=list)
    count: int = 0


def workspace_view(workspace: m.Workspace) -> dict[str, Any]:
    view = workspace.model_dump(mode="json", exclude={"publishable_key"})
    if workspace.publishable_key is not None:
        # Publishable keys are public identifiers meant for front-end code: shown, not masked.
        view["publishable_key"] = workspace.publishable_key.public_key
    return view


def catalog_entry(entry: m.CatalogEntry) -> dict[str, Any]:
    row = entry.model_dump(mode="json", include={"key", "label", "description"})
    if row.get("label") == entry.key:
        row.pop("label")
    if entry.active is False:
        row["active"] = False
    return row


@tool(Toolset.WORKSPACES, read_only=True, idempotent=True, title="List workspaces")
async def list_workspaces(
    ctx: ToolContext, limit: p.PageLimit = None, cursor: p.PageCursor = None
) -> Annotated[CallToolResult, WorkspaceList]:
    """Workspaces (one per customer or environment) with their ids."""
    rt = runtime_of(ctx)
    p.check_paging(limit, cursor)
    page = await attempt(rt.client().list_workspaces(limit=limit, cursor=cursor), Failure(write=False))
    return rt.result(
        {
            "workspaces": [w.model_dump(mode="json", include={"id", "name", "description"}) for w in page.records],
            "count": len(page.records),
            "next_cursor": page.next_cursor,
            "next": p.next_page("list_workspaces", page.next_cursor, limit=limit),
        }
    )


@tool(Toolset.WORKSPACES, read_only=True, idempotent=True, title="Get workspace")
async def get_workspace(
    ctx: ToolContext, workspace_id: p.WorkspaceOpt = None
) -> Annotated[CallToolResult, WorkspaceOut]:
    """One workspace, with its publishable key (for client-side events)."""
    rt = runtime_of(ctx)
    ws = p.workspace_arg(rt, workspace_id, param="workspace_id")
    found = await attempt(rt.client().get_workspace(ws), Failure(write=False, not_found=NOT_FOUND))
    return rt.result(workspace_view(found))


@tool(Toolset.WORKSPACES, read_only=False, idempotent=False, title="Create workspace")
async def create_workspace(
    ctx: ToolContext,
    name: WorkspaceName,
    description: Annotated[str, RulesOf(m.CreateWorkspaceRequest, "description")] | None = None,
) -> Annotated[CallToolResult, WorkspaceOut]:
    """Create a workspace: a tenant with its own connections, rules and events."""
    rt = runtime_of(ctx)
    client = rt.client()
    request = check(m.CreateWorkspaceRequest, {"name": name, "description": description})
    failure = Failure(write=True, verify="list_workspaces shows whether it exists")
    created = await attempt(client.create_workspace(request), failure)
    view = workspace_view(created)
    view["next"] = f"create_connection workspace={created.id}"
    return rt.result(view)


@tool(Toolset.WORKSPACES, read_only=False, idempotent=True, destructive=True, title="Update workspace")
async def update_workspace(
    ctx: ToolContext,
    workspace_id: p.WorkspaceOpt = None,
    name: WorkspaceName | None = None,
    description: Annotated[str, RulesOf(m.UpdateWorkspaceRequest, "description")] | None = None,
) -> Annotated[CallToolResult, WorkspaceOut]:
    """Rename a workspace or change its description (what is omitted stays; "" clears it)."""
    rt = runtime_of(ctx)
    if name is None and description is None:
        raise InvalidRequest([Problem("name", 'give name or description, e.g. "Production"')])
    client = rt.client()
    ws = p.workspace_arg(rt, workspace_id, param="workspace_id")
    # The API's PUT replaces both fields: keep whichever one was not given.
    current = await attempt(client.get_workspace(ws), Failure(write=False, not_found=NOT_FOUND))
    new_description = current.description if description is None else (description or None)
    request = check(m.UpdateWorkspaceRequest, {"name": name or current.name, "description": new_description})
    failure = Failure(write=True, not_found=NOT_FOUND, verify=f"get_workspace workspace_id={ws}")
    updated = await attempt(client.update_workspace(ws, request), failure)
    return rt.result(workspace_view(updated))


@tool(Toolset.WORKSPACES, read_only=True, idempotent=True, title="List event types")
async def list_event_types(
    ctx: ToolContext, workspace_id: p.WorkspaceOpt = None
) -> Annotated[CallToolResult, CatalogOut]:
    """Event names seen in a workspace, for rules and emit_event."""
    return await catalog_result(ctx, workspace_id, "event_types")


@tool(Toolset.WORKSPACES, read_only=True, idempotent=True, title="List resources")
async def list_resources(
    ctx: ToolContext, workspace_id: p.WorkspaceOpt = None
) -> Annotated[CallToolResult, CatalogOut]:
    """Resource types seen in a workspace (user, order...), for resource filters."""
    return await catalog_result(ctx, workspace_id, "resources")


async def catalog_result(
    ctx: ToolContext, workspace_id: str | None, kind: Literal["event_types", "resources"]
) -> CallToolResult:
    """A workspace's event-type or resource catalogue: the two differ only in the endpoint."""
    rt = runtime_of(ctx)
    ws = p.workspace_arg(rt, workspace_id, param="workspace_id")
    client = rt.client()
    read = client.list_event_types if kind == "event_types" else client.list_resources
    entries = await attempt(read(ws), Failure(write=False, not_found=NOT_FOUND))
    return rt.result({"workspace": ws, "entries": [catalog_entry(e) for e in entries], "count": len(entries)})


TOOLS = (list_workspaces, get_workspace, create_workspace, update_workspace, list_event_types, list_resources)
