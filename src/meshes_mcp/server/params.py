"""Parameters shared by many tools, described once so every schema reuses the same few words.

Ids are plain strings here and checked by the API layer (`api.models`: the request models and
`require_uuid`), whose messages name the field and give an example; a JSON-schema `pattern` would only
produce a regex dump on failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api.models import EventListQuery, require_uuid
from meshes_mcp.api.problems import InvalidRequest, Problem, check

if TYPE_CHECKING:
    from meshes_mcp.server.runtime import Runtime

ModelT = TypeVar("ModelT", bound=BaseModel)

# An id parameter's name says what it is; a description would repeat it on every tool.
ConnectionId = str
RuleId = Annotated[str, Field(description="rule_events[].rule")]
EventId = str
EventName = Annotated[str, Field(description="Event name, e.g. user.signup")]
Payload = Annotated[dict[str, Any], Field(description="Event data; include email for person events")]
Resource = Annotated[str | None, Field(description="Resource type, e.g. user")]

# With every toolset on, each of these is repeated in many schemas, and a parameter named `workspace`
# or `cursor` needs no more words than its default. A bad value is answered with the field, the rule
# and an example, so ranges need not be spelled out up front.

WorkspaceOpt = Annotated[str | None, Field(description="Default MESHES_WORKSPACE_ID")]
# Lists that also work organisation-wide: without a workspace and with no default, they span the org.
WorkspaceOrOrg = Annotated[str | None, Field(description="Default MESHES_WORKSPACE_ID, else all")]
# The pattern is enforced with a message that shows it; the schema need not carry it.
ResourceKey = str | None
# `limit` needs no words in a list tool; out of range, the answer says "1 to 200, e.g. 50".
PageLimit = int | None
# Every list result names the exact call for its next page, cursor included.
PageCursor = str | None
# A filter's name says what it filters; the tool description says what the list holds.
Filter = str | None
EventStatus = Literal["pending", "processing", "completed", "failed"] | None
AttemptId = str
SessionId = str
# Seconds to wait for deliveries to settle; the range is checked by `check_range` with an example.
Wait = int | None


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


def check_range(param: str, value: int | None, low: int, high: int, example: int, default: int = 0) -> int:
    """An integer parameter within its range, else the range and an example; left out, the default."""
    if value is None:
        return default
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest([Problem(param, f"must be {low} to {high:,}, e.g. {example}")])
    return value
