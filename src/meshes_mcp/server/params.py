"""Parameters shared by many tools, described once so every schema reuses the same few words and rules.

Ids are plain strings, checked by the API layer (`api.models`: the request models and `require_uuid`),
whose messages name the field, the rule and the tool that lists valid ids. They are the one rule the
schemas leave out: some 34 id parameters would pay `"format":"uuid"` (15 bytes/tool on average) to say
what every id a result hands over already is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.api.models import EventListQuery, require_uuid
from meshes_mcp.api.problems import check
from meshes_mcp.server.bounds import IntRange, RulesOf

if TYPE_CHECKING:
    from meshes_mcp.server.runtime import Runtime

ModelT = TypeVar("ModelT", bound=BaseModel)

# A parameter's rules are in its schema (see `server.bounds`), taken from the check that enforces them. A
# description is there only when the name and type do not say it: every word is paid for on every turn.

Uuid = str
ConnectionId = Uuid
RuleId = Annotated[str, Field(description="rule_events[].rule")]
EventId = Uuid
EventName = Annotated[str, Field(description="Event name, e.g. user.signup")]
Payload = Annotated[dict[str, Any], Field(description="Event data; include email for person events")]
Resource = Annotated[str | None, Field(description="Resource type, e.g. user")]
ResourceKey = Annotated[str, RulesOf(m.ResourceId)] | None

# Left out, the configured default workspace: the server instructions say so once for every tool (and
# the default is per deployment: MESHES_WORKSPACE_ID, or a team server's X-Meshes-Workspace-Id).
WorkspaceOpt = Uuid | None
# Lists that also work organisation-wide: without a workspace and with no default, they span the org.
WorkspaceOrOrg = Annotated[str | None, Field(description="Omit: the default, else all")]
# Checked by the list query models (`check_paging`); out of range, the answer says "1 to 200, e.g. 50".
PageLimit = Annotated[int, RulesOf(m.Limit)] | None
# Every list result names the exact call for its next page, cursor included.
PageCursor = str | None
# A filter's name says what it filters; the tool description says what the list holds.
Filter = str | None
EventStatus = m.EventStatusFilter | None
AttemptId = Uuid
SessionId = str

# Time windows, parsed by `incident.window.parse_moment`.
Since = Annotated[str | None, Field(description="ISO 8601 or a duration back: 90m, 24h, 7d")]
Until = Annotated[str | None, Field(description="Like since")]

# How long a call may wait for delivery outcomes, in seconds.
WAIT = IntRange(0, 60, example=10)
Wait = Annotated[int, WAIT] | None
# A bulk run's outcomes (a whole group's retries, a replay) are awaited longer than one delivery.
BULK_WAIT = IntRange(0, 120, example=30)
BulkWait = Annotated[int, BULK_WAIT] | None
# Events read by one incident scan (triage_failures, replay_events): bounded so a call stays quick.
MAX_EVENTS = IntRange(1, 20_000, example=5000, default=5_000)
MaxEvents = Annotated[int, MAX_EVENTS] | None


@overload
def workspace_arg(
    runtime: Runtime, given: str | None, *, org_wide: Literal[False] = False, param: str = "workspace"
) -> str: ...
@overload
def workspace_arg(runtime: Runtime, given: str | None, *, org_wide: bool, param: str = "workspace") -> str | None: ...
def workspace_arg(
    runtime: Runtime, given: str | None, *, org_wide: bool = False, param: str = "workspace"
) -> str | None:
    """The workspace argument, else the configured default, checked under the name the tool uses
    (`workspace` for a body field, `workspace_id` for a path or query parameter, as the API names them).

    With `org_wide`, no workspace at all is fine (None: the list spans the organisation).
    """
    value = (given or runtime.default_workspace()) if org_wide else runtime.workspace(given, param)
    return None if value is None else require_uuid(param, value, where="list_workspaces")


def check_given(model: type[ModelT], values: dict[str, Any]) -> ModelT:
    """Validate a request from tool parameters: one left out arrives as None and is left out of the request
    too (omitted is not null to the API)."""
    return check(model, {key: value for key, value in values.items() if value is not None})


class ListOut(BaseModel):
    """Output schema shared by list tools: their records (a field of each subclass) and the way to page."""

    model_config = ConfigDict(extra="allow")
    count: int = 0
    next_cursor: str | None = None
    next: str | None = None


def check_paging(limit: int | None, cursor: str | None) -> None:
    """limit 1-200 and a non-empty cursor, refused with the usual field, rule and example."""
    check_given(EventListQuery, {"limit": limit, "cursor": cursor})


def next_page(tool: str, cursor: str | None, **args: Any) -> str | None:
    """The exact call for the next page, repeating the filters in effect; None on the last page."""
    if not cursor:
        return None
    given = " ".join(f"{key}={value}" for key, value in args.items() if value is not None)
    return f"{tool} {given} cursor={cursor}".replace("  ", " ")
