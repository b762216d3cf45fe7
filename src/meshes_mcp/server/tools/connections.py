"""connections toolset: connections to destinations, their live action data, fields and mappings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import errors as e
from meshes_mcp.api import models as m
from meshes_mcp.api.problems import InvalidRequest, Problem, check
from meshes_mcp.server import params as p
from meshes_mcp.server.bounds import RulesOf
from meshes_mcp.server.confirm import NOT_ASKED, Confirmation, Confirmed, ask, can_elicit, require_yes
from meshes_mcp.server.failures import Failure, attempt
from meshes_mcp.server.fixes import inactive_warning
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.render import REDACTED, contains_mask
from meshes_mcp.server.resources import MAPPING_SCHEMA_URI
from meshes_mcp.server.runtime import Runtime, ToolContext, runtime_of
from meshes_mcp.server.tools.integrations import find_record, secret_fields
from meshes_mcp.server.views import ConnectionRow, ConnectionView

if TYPE_CHECKING:
    from meshes_mcp.api.catalog import IntegrationSpec

NOT_FOUND = "list_connections shows the connections and their ids."
# Checked by the connection request models; the schemas show their rules.
ConnectionName = Annotated[str, RulesOf(m.ConnectionName)]
# What the API documents of it: it hides the connection from the Meshes UI.
Hidden = Annotated[bool | None, Field(description="Hide it from the Meshes UI")]
ExpectedVersion = RulesOf(m.UpdateMappingsRequest, "expected_version")
# Collections can be long (hundreds of lists); agents need ids and names, not provider timestamps.
ACTION_ITEMS_SHOWN = 50
# A CRM's field catalogue can run to hundreds of fields; the first ones and a count are enough to map.
FIELDS_SHOWN = 150

# Served as the resource meshes://docs/mapping-schema; update_connection_mappings points to it so the
# long format stays out of the tool list. Constraints from the API reference §5.8.
MAPPING_SCHEMA_DOC = """\
# Meshes default mapping schema

A connection's default mapping says how event payload values become destination fields.
Read the current one with `get_connection_mappings`, the destination's field keys with
`get_connection_fields`, and save with `update_connection_mappings` (the whole schema each time).

```json
{
  "schema_version": 1,
  "fields": [
    {"dest": "email", "source": {"type": "path", "value": "email"},
     "transforms": [{"type": "trim"}, {"type": "lower"}]},
    {"dest": "plan", "source": {"type": "literal", "value": "pro"}, "on_error": "skip_field"},
    {"dest": "signup_date", "source": {"type": "path", "value": "user.created_at"},
     "transforms": [{"type": "to_date", "params": {"timezone": "Europe/Paris"}}]}
  ],
  "meta": {"name": "Signup fields", "notes": "optional"}
}
```

## Schema
- `schema_version`: always `1` (required).
- `fields`: up to 250 mapping fields (required).
- `meta` (optional): `name` 1-64 characters, `notes` 1-1024 characters.

## A mapping field
- `dest` (required): the destination field key, 1-128 characters (a `key` from `get_connection_fields`).
- `source` (required), one of:
  - `{"type": "path", "value": "user.email"}`: a payload path, 1-128 characters matching
    `^[a-zA-Z_][a-zA-Z0-9_]*(\\.[a-zA-Z0-9_]+)*$` (`email`, `user.email`).
  - `{"type": "literal", "value": ...}`: a constant: a string of 1-256 characters, a number, true/false or null.
- `transforms` (optional): up to 10, applied in order:
  - no params: `to_string`, `to_number`, `to_boolean`, `trim`, `lower`, `upper`;
  - `to_date` / `to_datetime` with optional `params.timezone` (1-64 characters);
  - `default` with `params.value` (string 1-128 characters, number, boolean or null);
  - `substring` with `params.start` (integer >= 0) and optional `params.length` (integer > 0).
- `on_error` (optional): `skip_field`, `warn_action` or `fail_action`.
- `notes` (optional): 1-1024 characters.

## Saving
`update_connection_mappings` replaces the default mapping. Pass `expected_version` (the `version`
from `get_connection_mappings`) to refuse the save if someone changed it meanwhile, and `mapping_id`
to replace a specific stored mapping.
"""


class ConnectionList(p.ListOut):
    connections: list[ConnectionRow] = Field(default_factory=list)


class DeletedOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    deleted: str
    next: str | None = None


class ActionDataOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    connection: str
    type: str | None = None
    actions: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


class FieldCatalogOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    connection: str
    fields: list[dict[str, Any]] = Field(default_factory=list)


class MappingOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str | None = None
    mapping: dict[str, Any] = Field(default_factory=dict)
    next: str | None = None


def restore_masked(metadata: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Secrets we showed as "[redacted]" and the agent sent back unchanged keep their stored value.

    The value put back is what the API returned for that key (its own mask, which it treats as
    "unchanged"), so a read-modify-write of a connection never replaces a credential with our mask.
    A mask inside a longer value (a URL whose token we hid) cannot be restored and is refused.
    """
    restored: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in metadata.items():
        if value == REDACTED and key in current:
            restored[key] = current[key]
        elif key == "custom_headers" and contains_mask(value) and key in current:
            restored[key] = restore_header_values(value, current[key])
        elif contains_mask(value):
            hint = f"holds {REDACTED}, shown instead of a secret: pass the full value"
            problems.append(Problem(f"metadata.{key}", hint))
        else:
            restored[key] = value
    if problems:
        raise InvalidRequest(problems)
    return restored


def restore_header_values(given: Any, stored: Any) -> Any:
    """custom_headers sent back with masked values: each masked header keeps its stored value."""
    given = json.loads(given) if isinstance(given, str) else given
    stored = json.loads(stored) if isinstance(stored, str) else stored
    if not isinstance(given, dict) or not isinstance(stored, dict):
        raise InvalidRequest([Problem("metadata.custom_headers", "pass the full header values")])
    missing = [name for name, value in given.items() if value == REDACTED and name not in stored]
    if missing:
        raise InvalidRequest([Problem("metadata.custom_headers", f"pass the full value of {', '.join(missing)}")])
    return {name: (stored[name] if value == REDACTED else value) for name, value in given.items()}


def connection_view(connection: m.Connection, spec: IntegrationSpec | None) -> dict[str, Any]:
    return ConnectionView.of(connection, warning=inactive_warning(connection, spec)).render()


def connection_summary(connection: m.Connection, *, org_wide: bool) -> dict[str, Any]:
    return ConnectionRow.of(connection, org_wide=org_wide).render()


def compact_action_data(data: dict[str, Any]) -> dict[str, Any]:
    """Each collection as id + name (+ option values for properties), capped with a count of the rest."""
    out: dict[str, Any] = {}
    for collection, items in data.items():
        if not isinstance(items, list):
            continue
        shown = []
        for item in items[:ACTION_ITEMS_SHOWN]:
            if not isinstance(item, dict):
                continue
            entry = {"id": item.get("id"), "name": item.get("name") or item.get("label")}
            options = item.get("options")
            if isinstance(options, list):
                entry["options"] = [
                    {"value": o.get("value"), "label": o.get("label")} for o in options if isinstance(o, dict)
                ]
            shown.append(entry)
        out[collection] = shown
        if len(items) > ACTION_ITEMS_SHOWN:
            out[f"{collection}_omitted"] = len(items) - ACTION_ITEMS_SHOWN
    return out


def field_view(field: m.FieldDef) -> dict[str, Any]:
    """A destination field as a mapping author needs it: key, type, and the constraints that bite."""
    view: dict[str, Any] = {"key": field.key, "type": field.type}
    if field.label and field.label != field.key:
        view["label"] = field.label
    constraints = field.constraints
    if constraints is not None:
        for name in ("required", "read_only", "format", "max_length", "allowed_values"):
            value = getattr(constraints, name)
            if value not in (None, False, "unknown"):
                view[name] = value
    return view


def mapping_view(result: m.DefaultMappingResult) -> dict[str, Any]:
    mapping = result.mapping
    return {
        "status": result.status,
        "mapping": {
            "mapping_id": mapping.mapping_id,
            "version": mapping.version,
            "name": mapping.name,
            "catalog_version": mapping.catalog_version,
            "schema": mapping.mapping_schema,
        },
    }


class DeleteConnectionFailure(Failure):
    """A 409 on delete means active rules: say how to get past it."""

    def _status(self, exc: e.APIStatusError) -> str:
        message = super()._status(exc)
        if exc.status == 409:
            where = " (list_rules)" if self.hint("list_rules") else ""
            message += f" The connection still has active rules: delete them{where} or pass force_delete=true."
        return message


async def confirm_delete_connection(
    connection_id: str, force_delete: bool | None, ctx: ToolContext
) -> Confirmation | Elicit[Confirmation]:
    if not can_elicit(ctx):
        return NOT_ASKED  # nobody to ask: no lookup either
    client = runtime_of(ctx).client()
    connection = await attempt(client.get_connection(connection_id), Failure(write=False, not_found=NOT_FOUND))
    forced = " Any active rules stop working (force_delete)." if force_delete else ""
    return ask(ctx, f'Delete {connection.type} connection "{connection.name}" ({connection.id})?{forced}')


async def integration_record(rt: Runtime, type_: str) -> dict[str, Any]:
    return find_record((await rt.catalog()).records(), type_)


async def secrets_of(rt: Runtime, type_: str) -> frozenset[str]:
    """Metadata keys to mask for this integration (none known for an unknown type)."""
    try:
        return secret_fields(await integration_record(rt, type_))
    except InvalidRequest:
        return frozenset()


async def integration_spec(rt: Runtime, type_: str) -> IntegrationSpec | None:
    """The integration (live catalogue, else the one shipped with this server); None for an unknown type."""
    from meshes_mcp.api.catalog import load_catalog

    return (await rt.catalog()).get(type_) or load_catalog().get(type_)


async def validate_metadata(rt: Runtime, type_: str, metadata: dict[str, Any], *, for_update: bool) -> None:
    from meshes_mcp.api.catalog import validate_connection_metadata

    spec = await integration_spec(rt, type_)
    if spec is None:
        return  # a type the catalogue does not know: the API judges alone
    problems = validate_connection_metadata(spec, metadata, for_update=for_update)
    if problems:
        raise InvalidRequest(problems)


@tool(Toolset.CONNECTIONS, read_only=True, idempotent=True, title="List connections")
async def list_connections(
    ctx: ToolContext, workspace: p.WorkspaceOrOrg = None, limit: p.PageLimit = None, cursor: p.PageCursor = None
) -> Annotated[CallToolResult, ConnectionList]:
    """Connections (destination accounts) with id, type, name and active state."""
    rt = runtime_of(ctx)
    client = rt.client()
    ws = p.workspace_arg(rt, workspace, org_wide=True)
    p.check_paging(limit, cursor)
    failure = Failure(write=False, not_found="list_workspaces shows the workspaces.")
    if ws:
        page = await attempt(client.list_workspace_connections(ws, limit=limit, cursor=cursor), failure)
    else:
        page = await attempt(client.list_connections(limit=limit, cursor=cursor), failure)
    return rt.result(
        {
            "connections": [connection_summary(c, org_wide=not ws) for c in page.records],
            "count": len(page.records),
            "next_cursor": page.next_cursor,
            "next": p.next_page("list_connections", page.next_cursor, workspace=workspace, limit=limit),
        }
    )


@tool(Toolset.CONNECTIONS, read_only=True, idempotent=True, title="Get connection")
async def get_connection(ctx: ToolContext, connection_id: p.ConnectionId) -> Annotated[CallToolResult, ConnectionView]:
    """One connection with its metadata (secrets masked) and active state."""
    rt = runtime_of(ctx)
    client = rt.client()
    connection = await attempt(client.get_connection(connection_id), Failure(write=False, not_found=NOT_FOUND))
    view = connection_view(connection, await integration_spec(rt, connection.type))
    return rt.result(view, secret_keys=await secrets_of(rt, connection.type))


@tool(Toolset.CONNECTIONS, read_only=False, idempotent=False, title="Create connection")
async def create_connection(
    ctx: ToolContext,
    type: Annotated[str, RulesOf(m.IntegrationType)],
    name: ConnectionName,
    metadata: Annotated[dict[str, Any], Field(description="The integration's connection fields")],
    workspace: p.WorkspaceOpt = None,
    hidden: Hidden = None,
) -> Annotated[CallToolResult, ConnectionView]:
    """Connect an API-key or no-auth integration; OAuth ones are connected in the Meshes dashboard.
    Metadata is checked first (list_integrations type=X)."""
    rt = runtime_of(ctx)
    client = rt.client()
    rt.redactor.learn_metadata(metadata, rt.secret_keys(type))  # an error echoing them is masked too
    body: dict[str, Any] = {
        "workspace": p.workspace_arg(rt, workspace),
        "type": type,
        "name": name,
        "metadata": metadata,
    }
    if hidden is not None:
        body["hidden"] = hidden
    request = check(m.CreateConnectionRequest, body)
    await validate_metadata(rt, type, metadata, for_update=False)
    failure = Failure(write=True, verify="list_connections shows whether it exists")
    created = await attempt(client.create_connection(request), failure)
    view = connection_view(created, await integration_spec(rt, created.type))
    view["next"] = f"get_connection_actions connection_id={created.id}, then create_rule"
    return rt.result(view, secret_keys=secret_fields(await integration_record(rt, type)))


@tool(Toolset.CONNECTIONS, read_only=False, idempotent=True, destructive=True, title="Update connection")
async def update_connection(
    ctx: ToolContext,
    connection_id: p.ConnectionId,
    metadata: Annotated[dict[str, Any], Field(description="All fields (replaces them); masked ones kept")],
    name: ConnectionName | None = None,
    hidden: Hidden = None,
) -> Annotated[CallToolResult, ConnectionView]:
    """Replace a connection's metadata (e.g. new credentials), checked first. Then triage_failures
    connection=<id>."""
    rt = runtime_of(ctx)
    client = rt.client()
    current = await attempt(client.get_connection(connection_id), Failure(write=False, not_found=NOT_FOUND))
    rt.redactor.learn_metadata(metadata, rt.secret_keys(current.type))  # an error echoing them is masked too
    metadata = restore_masked(metadata, current.metadata)
    # An omitted name keeps the current one, which the API accepted already: only a new name is checked
    # (an empty one too: it is refused, never taken for "omitted").
    body: dict[str, Any] = {"name": "Unchanged" if name is None else name, "metadata": metadata}
    if hidden is not None:
        body["hidden"] = hidden
    request = check(m.UpdateConnectionRequest, body)
    if name is None:
        request = request.model_copy(update={"name": current.name})
    await validate_metadata(rt, current.type, metadata, for_update=True)
    failure = Failure(write=True, not_found=NOT_FOUND, verify=f"get_connection connection_id={connection_id}")
    updated = await attempt(client.update_connection(connection_id, request), failure)
    view = connection_view(updated, await integration_spec(rt, updated.type))
    # What failed through it is now fix-aware: its groups say the fix is in and hand over the retry.
    view["next"] = (
        f"triage_failures connection={connection_id} shows what failed through it; then each group's `then` "
        "(retry_failed group=<key>) retries it"
    )
    return rt.result(view, secret_keys=await secrets_of(rt, updated.type))


@tool(Toolset.CONNECTIONS, read_only=False, idempotent=True, destructive=True, title="Delete connection")
async def delete_connection(
    ctx: ToolContext,
    connection_id: p.ConnectionId,
    confirmation: Annotated[Confirmed, Resolve(confirm_delete_connection)],
    force_delete: Annotated[bool | None, Field(description="Even while active rules use it")] = None,
) -> Annotated[CallToolResult, DeletedOut]:
    """Delete a connection; refused while active rules use it."""
    rt = runtime_of(ctx)
    require_yes(confirmation, "Not deleted")
    client = rt.client()
    failure = DeleteConnectionFailure(
        write=True, not_found=NOT_FOUND, verify=f"get_connection connection_id={connection_id}"
    )
    deleted = await attempt(client.delete_connection(connection_id, force_delete=bool(force_delete)), failure)
    return rt.result({"deleted": deleted.id, "type": deleted.type})


@tool(Toolset.CONNECTIONS, read_only=True, idempotent=True, title="Get connection actions")
async def get_connection_actions(
    ctx: ToolContext, connection_id: p.ConnectionId
) -> Annotated[CallToolResult, ActionDataOut]:
    """A connection's live data (lists, tags, channels...) and what each action needs: ids for create_rule
    metadata."""
    from meshes_mcp.api.catalog import describe_action

    rt = runtime_of(ctx)
    client = rt.client()
    failure = Failure(write=False, not_found=NOT_FOUND)
    connection = await attempt(client.get_connection(connection_id), failure)
    data = await attempt(client.get_connection_actions(connection_id), failure)
    spec = (await rt.catalog()).get(connection.type)
    actions = {key: describe_action(spec, key) for key in spec.actions} if spec else {}
    result = {
        "connection": connection.id,
        "type": connection.type,
        "actions": actions,
        "data": compact_action_data(data),
        "warning": inactive_warning(connection, spec),
    }
    return rt.result(result)


@tool(Toolset.CONNECTIONS, read_only=True, idempotent=True, title="Get connection fields")
async def get_connection_fields(
    ctx: ToolContext,
    connection_id: p.ConnectionId,
    refresh: Annotated[bool | None, Field(description="Re-read them from the destination")] = None,
) -> Annotated[CallToolResult, FieldCatalogOut]:
    """The destination's fields (key, type, constraints): the dest keys for mappings."""
    rt = runtime_of(ctx)
    client = rt.client()
    failure = Failure(write=False, not_found=NOT_FOUND)
    catalog = await attempt(client.get_connection_fields(connection_id, refresh=bool(refresh)), failure)
    fields = catalog.fields
    return rt.result(
        {
            "connection": connection_id,
            "integration_type": catalog.integration_type,
            "catalog_version": catalog.catalog_version,
            "refreshed_at": catalog.refreshed_at,
            "fields": [field_view(f) for f in fields[:FIELDS_SHOWN]],
            "fields_omitted": max(0, len(fields) - FIELDS_SHOWN) or None,
        }
    )


@tool(Toolset.CONNECTIONS, read_only=True, idempotent=True, title="Get connection mappings")
async def get_connection_mappings(
    ctx: ToolContext, connection_id: p.ConnectionId
) -> Annotated[CallToolResult, MappingOut]:
    """The connection's default field mapping (stored, or generated if none was saved)."""
    rt = runtime_of(ctx)
    client = rt.client()
    result = await attempt(client.get_connection_mappings(connection_id), Failure(write=False, not_found=NOT_FOUND))
    view = mapping_view(result)
    version = result.mapping.version
    view["next"] = (
        f"update_connection_mappings connection_id={connection_id}"
        + (f" expected_version={version}" if version else "")
        + f"; format: {MAPPING_SCHEMA_URI}"
    )
    return rt.result(view)


@tool(Toolset.CONNECTIONS, read_only=False, idempotent=True, destructive=True, title="Update connection mappings")
async def update_connection_mappings(
    ctx: ToolContext,
    connection_id: p.ConnectionId,
    schema: Annotated[dict[str, Any], Field(description=f"Format: {MAPPING_SCHEMA_URI}")],
    expected_version: Annotated[
        int,
        RulesOf(m.UpdateMappingsRequest, "expected_version"),
        Field(description="version from get_connection_mappings"),
    ]
    | None = None,
    mapping_id: p.Uuid | None = None,
    name: Annotated[str, RulesOf(m.UpdateMappingsRequest, "name")] | None = None,
) -> Annotated[CallToolResult, MappingOut]:
    """Save the connection's default field mapping (payload paths or literals to fields), checked first."""
    rt = runtime_of(ctx)
    client = rt.client()
    mapping_schema = check(m.MappingSchema, schema, prefix="schema")
    body: dict[str, Any] = {"schema": mapping_schema.model_dump(mode="json", exclude_unset=True)}
    for key, value in (("expected_version", expected_version), ("mapping_id", mapping_id), ("name", name)):
        if value is not None:
            body[key] = value
    request = check(m.UpdateMappingsRequest, body)
    failure = Failure(write=True, not_found=NOT_FOUND, verify=f"get_connection_mappings connection_id={connection_id}")
    result = await attempt(client.update_connection_mappings(connection_id, request), failure)
    return rt.result(mapping_view(result))


TOOLS = (
    list_connections,
    get_connection,
    create_connection,
    update_connection,
    delete_connection,
    get_connection_actions,
    get_connection_fields,
    get_connection_mappings,
    update_connection_mappings,
)
