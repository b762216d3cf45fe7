"""MCP Apps (`io.modelcontextprotocol/ui`): the incident view a host shows beside triage_failures.

`triage_failures` names `ui://meshes/incident` in its `_meta.ui` (and the older `ui/resourceUri` key), so a
host with Apps renders that HTML document in a sandboxed iframe and hands it the call's arguments and
result. The document is built from `app/incident/` by `app/build.mjs` and committed here (`incident.html`):
one file, inline script and style, no network access of its own. Its chart's per-bucket counts come from
`triage_timeline`, a tool for the view only (`visibility: ["app"]`).

A host without Apps sees today's server: tools/list shows the app-only tool, and resources/list the
document, only to a client that negotiated the extension (`HiddenFromOtherClients`); every text result is
the same with or without a view. This module is imported at start-up: it imports no tool module, and the
timeline's scan is imported on its first call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, client_supports_apps
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from meshes_mcp.server.runtime import ToolContext

if TYPE_CHECKING:
    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

    from meshes_mcp.server.registry import EnabledTools

INCIDENT_URI = "ui://meshes/incident"
INCIDENT_HTML = Path(__file__).with_name("incident.html")
TIMELINE_TOOL = "triage_timeline"
# What triage_failures carries: the link a host follows, in the current form and the older flat key that
# hosts built on the first drafts still read (the official TypeScript server helper writes both).
INCIDENT_META: dict[str, Any] = {"ui": {"resourceUri": INCIDENT_URI}, "ui/resourceUri": INCIDENT_URI}


def extension(enabled: EnabledTools) -> Apps | None:
    """The Apps extension when this server offers triage_failures (the view has nothing to show without it)."""
    if "triage_failures" not in enabled.names:
        return None
    apps = Apps()
    apps.add_html_resource(
        INCIDENT_URI,
        INCIDENT_HTML.read_text(encoding="utf-8"),
        name="incident",
        title="Incident view",
        description="Failing deliveries by cause over time, with each group's fix, retry and sample events",
        csp=ResourceCsp(),  # no domains: the view reaches nothing but the host
        prefers_border=False,
    )
    apps.tool(
        resource_uri=INCIDENT_URI,
        visibility=["app"],
        meta={"ui/resourceUri": INCIDENT_URI},
        name=TIMELINE_TOOL,
        title="Incident timeline",
        annotations=ToolAnnotations(
            title="Incident timeline",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=True,  # it reads the Meshes API, like every tool
        ),
    )(triage_timeline)
    return apps


async def triage_timeline(
    ctx: ToolContext,
    workspace: str | None = None,
    event: str | None = None,
    connection: str | None = None,
    rule: str | None = None,
    since: str | None = None,
    until: str | None = None,
    max_events: int | None = None,
    buckets: Annotated[int | None, Field(description="Most buckets, 6 to 96; default 48")] = None,
) -> CallToolResult:
    """For the incident view: failing deliveries per time bucket and triage_failures group, over the same
    window and filters."""
    from meshes_mcp.server.incident.timeline import timeline_result

    scope = {"workspace": workspace, "event": event, "connection": connection, "rule": rule}
    return await timeline_result(ctx, buckets, **scope, since=since, until=until, max_events=max_events)


class HiddenFromOtherClients:
    """What is there for a view is listed only to a client that negotiated MCP Apps: tools marked
    `visibility: ["app"]` in tools/list, and `ui://` documents in resources/list.

    A host with Apps keeps an app-only tool from the model; a client without Apps would offer it to the
    model like any other tool (and a view's document in its resource picker). The SDK lists everything
    registered, so the listings are filtered here. A call or read by name still works: the host makes it
    for the view."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        listing = LISTINGS.get(ctx.method)
        if listing is None or client_supports_apps(ctx):
            return result
        field_name, for_apps_only = listing
        # The handler's answer reaches middleware serialized (a dict) or as its result model.
        wire = result.model_dump(by_alias=True, exclude_none=True) if isinstance(result, BaseModel) else result
        if not isinstance(wire, dict) or not isinstance(wire.get(field_name), list):
            return result
        return {**wire, field_name: [item for item in wire[field_name] if not for_apps_only(item)]}


def app_only_tool(tool: dict[str, Any]) -> bool:
    return app_only(tool.get("_meta"))


def app_document(resource: dict[str, Any]) -> bool:
    return resource.get("mimeType") == APP_MIME_TYPE


# Per list method: the result's field, and which of its entries are for Apps hosts only.
LISTINGS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "tools/list": ("tools", app_only_tool),
    "resources/list": ("resources", app_document),
}


def app_only(meta: dict[str, Any] | None) -> bool:
    visibility = ((meta or {}).get("ui") or {}).get("visibility")
    return isinstance(visibility, list) and "model" not in visibility
