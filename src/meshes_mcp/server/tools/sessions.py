"""sessions toolset: embed sessions for the Meshes workspace UI inside another app.

Session tokens grant access to a customer's workspace, so they never appear in results: the access
token, the launch token and the launch URL's token are masked. A backend that embeds Meshes mints its
own sessions; these tools are for inspecting and revoking them, and for trying the flow out.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.server import params as p
from meshes_mcp.server.bounds import RulesOf
from meshes_mcp.server.confirm import NOT_ASKED, Confirmation, Confirmed, ask, can_elicit, require_yes
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.render import Redactor
from meshes_mcp.server.runtime import ToolContext, runtime_of

NOT_FOUND = "list_sessions shows the sessions of a workspace."
TOKENS_NOTE = "tokens are masked; embed with sessions your backend mints"


class SessionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    session_id: str
    expires_at: str | None = None


class SessionList(p.ListOut):
    sessions: list[dict[str, Any]] = Field(default_factory=list)


class RevokedOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    session_id: str
    revoked: bool


def session_view(session: m.SessionToken) -> dict[str, Any]:
    """The session without usable tokens: masked by value, so the launch URL's copy goes too."""
    tokens = [session.access_token, getattr(session, "launch_token", None)]
    view = session.model_dump(mode="json", exclude={"access_token", "launch_token"})
    view = Redactor(t for t in tokens if t).data(view)
    view["note"] = TOKENS_NOTE
    return view


async def confirm_revoke_session(session_id: str, ctx: ToolContext) -> Confirmation | Elicit[Confirmation]:
    if not can_elicit(ctx):
        return NOT_ASKED
    # No endpoint reads one session, so the question names the id only.
    return ask(ctx, f"Revoke embed session {session_id}? Its user loses access at once.")


@tool(Toolset.SESSIONS, read_only=False, idempotent=False, title="Create embed session")
async def create_session(
    ctx: ToolContext,
    workspace_id: p.WorkspaceOpt = None,
    role: m.SessionRole | None = None,
    session_type: m.SessionType | None = None,
    launch_page: m.LaunchPage | None = None,
    resource: str | None = None,
    resource_id: str | None = None,
    external_user_id: Annotated[str, RulesOf(m.CreateSessionRequest, "external_user_id")] | None = None,
    ttl_seconds: Annotated[int, RulesOf(m.CreateSessionRequest, "ttl_seconds")] | None = None,
    launch_ttl_seconds: Annotated[int, RulesOf(m.CreateSessionRequest, "launch_ttl_seconds")] | None = None,
    allowed_origins: Annotated[list[str], RulesOf(m.CreateSessionRequest, "allowed_origins")] | None = None,
    scopes: Annotated[list[m.SessionScope], RulesOf(m.CreateSessionRequest, "scopes")] | None = None,
) -> Annotated[CallToolResult, SessionOut]:
    """Mint an embed session for the workspace UI (default member, type workspace; resource type needs
    resource and resource_id)."""
    rt = runtime_of(ctx)
    body = {
        "workspace_id": p.workspace_arg(rt, workspace_id, param="workspace_id"),
        "role": role,
        "session_type": session_type,
        "launch_page": launch_page,
        "resource": resource,
        "resource_id": resource_id,
        "external_user_id": external_user_id,
        "ttl_seconds": ttl_seconds,
        "launch_ttl_seconds": launch_ttl_seconds,
        "allowed_origins": allowed_origins,
        "scopes": scopes,
    }
    client = rt.client()
    request = p.check_given(m.CreateSessionRequest, body)
    failure = Failure(write=True, not_found="list_workspaces shows the workspaces.", verify=NOT_FOUND)
    created = await attempt(client.create_session(request), failure)
    return rt.result(session_view(created))


@tool(Toolset.SESSIONS, read_only=True, idempotent=True, title="List embed sessions")
async def list_sessions(
    ctx: ToolContext,
    workspace_id: p.WorkspaceOpt = None,
    status: m.SessionStatus | None = None,
    resource: p.Filter = None,
    resource_id: p.Filter = None,
    limit: p.PageLimit = None,
    cursor: p.PageCursor = None,
) -> Annotated[CallToolResult, SessionList]:
    """Embed sessions of a workspace with role, type, status and expiry."""
    rt = runtime_of(ctx)
    ws = p.workspace_arg(rt, workspace_id, param="workspace_id")
    query = {
        "workspace_id": ws,
        "status": status,
        "resource": resource,
        "resource_id": resource_id,
        "limit": limit,
        "cursor": cursor,
    }
    client = rt.client()
    request = p.check_given(m.SessionListQuery, query)
    page = await attempt(client.list_sessions(request), Failure(write=False, not_found=NOT_FOUND))
    args = {"workspace_id": workspace_id, "status": status, "resource": resource, "resource_id": resource_id}
    return rt.result(
        {
            "sessions": [s.model_dump(mode="json", exclude={"workspace_id"}) for s in page.records],
            "count": len(page.records),
            "next_cursor": page.next_cursor,
            "next": p.next_page("list_sessions", page.next_cursor, **args, limit=limit),
        }
    )


@tool(Toolset.SESSIONS, read_only=False, idempotent=False, title="Refresh embed session")
async def refresh_session(ctx: ToolContext, session_id: p.SessionId) -> Annotated[CallToolResult, SessionOut]:
    """Issue a new access token for a session (same id, new expiry)."""
    rt = runtime_of(ctx)
    failure = Failure(write=True, not_found=NOT_FOUND, verify=NOT_FOUND)
    refreshed = await attempt(rt.client().refresh_session(session_id), failure)
    return rt.result(session_view(refreshed))


@tool(Toolset.SESSIONS, read_only=False, idempotent=True, destructive=True, title="Revoke embed session")
async def revoke_session(
    ctx: ToolContext, session_id: p.SessionId, confirmation: Annotated[Confirmed, Resolve(confirm_revoke_session)]
) -> Annotated[CallToolResult, RevokedOut]:
    """Revoke an embed session: its token stops working at once."""
    rt = runtime_of(ctx)
    require_yes(confirmation, "Not revoked")
    failure = Failure(write=True, not_found=NOT_FOUND, verify=NOT_FOUND)
    revoked = await attempt(rt.client().revoke_session(session_id), failure)
    return rt.result({"session_id": session_id, "revoked": revoked.revoked})


TOOLS = (create_session, list_sessions, refresh_session, revoke_session)
