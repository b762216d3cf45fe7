"""Parameters shared by many tools, described once so every schema reuses the same few words.

Ids are plain strings here and checked by the API layer, whose messages name the field and give an
example; a JSON-schema `pattern` would only produce a regex dump on failure.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

Workspace = Annotated[str | None, Field(description="Workspace UUID; default MESHES_WORKSPACE_ID")]
# An id parameter's name says what it is; a description would repeat it on every tool.
ConnectionId = str
RuleId = Annotated[str, Field(description="rule_events[].rule")]
EventId = str
EventName = Annotated[str, Field(description="Event name, e.g. user.signup")]
Payload = Annotated[dict[str, Any], Field(description="Event data; include email for person events")]
Resource = Annotated[str | None, Field(description="Resource type, e.g. user")]
ResourceId = Annotated[str | None, Field(description="Resource id, ^[A-Za-z0-9._:-]{1,64}$")]
Limit = Annotated[int | None, Field(description="Page size 1-200 (default 50)")]
Cursor = Annotated[str | None, Field(description="next_cursor from the previous page")]

# --- added for the list, delivery and session tools -------------------------------------------

# Lists that also work organisation-wide: without a workspace and with no default, they span the org.
WorkspaceOrOrg = Annotated[str | None, Field(description="Workspace UUID; default MESHES_WORKSPACE_ID, else all")]
# A filter's name says what it filters; the tool description says what the list holds.
Filter = str | None
EventStatus = Literal["pending", "processing", "completed", "failed"] | None
AttemptId = str
SessionId = str


def next_page(tool: str, cursor: str | None, **args: Any) -> str | None:
    """The exact call for the next page, repeating the filters in effect; None on the last page."""
    if not cursor:
        return None
    given = " ".join(f"{key}={value}" for key, value in args.items() if value is not None)
    return f"{tool} {given} cursor={cursor}".replace("  ", " ")
