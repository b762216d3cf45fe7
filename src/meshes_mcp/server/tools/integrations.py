"""integrations toolset: list_integrations, plus the catalogue views other tools reuse."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api.problems import InvalidRequest, Problem
from meshes_mcp.server.registry import Toolset, tool
from meshes_mcp.server.runtime import ToolContext, runtime_of


class IntegrationList(BaseModel):
    model_config = ConfigDict(extra="allow")
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    next: str | None = None


def find_record(records: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    for record in records:
        if record.get("type") == type_:
            return record
    known = ", ".join(sorted(r.get("type", "") for r in records))
    raise InvalidRequest([Problem("type", f'unknown integration "{type_}"; one of: {known}')])


def secret_fields(record: dict[str, Any] | None) -> frozenset[str]:
    """Metadata keys the integration declares as passwords (and Basic usernames): always redacted in what we show."""
    from meshes_mcp.server.render import CREDENTIAL_KEYS

    fields = ((record or {}).get("authentication") or {}).get("fields") or []
    keys = [f.get("key") for f in fields if isinstance(f, dict) and "key" in f]
    passwords = {f["key"] for f in fields if isinstance(f, dict) and f.get("type") == "password" and "key" in f}
    return frozenset(passwords | (CREDENTIAL_KEYS & set(keys)))


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One line's worth per integration: enough to choose one."""
    return {
        "type": record.get("type"),
        "name": record.get("name"),
        "auth": (record.get("authentication") or {}).get("type"),
        "actions": sorted((record.get("actions") or {}).keys()),
    }


def detail(record: dict[str, Any]) -> dict[str, Any]:
    """What it takes to connect the integration and what each action needs in rule metadata."""
    auth = record.get("authentication") or {}
    fields = []
    for f in auth.get("fields") or []:
        item = {"key": f.get("key"), "type": f.get("type"), "required": f.get("required") or None}
        if f.get("options"):
            item["options"] = [o.get("value") for o in f["options"]]
        for key in ("defaultValue", "dependsOn", "helpText", "validate"):
            if f.get(key) is not None:
                item[key] = f[key]
        fields.append(item)
    actions = {}
    for key, action in (record.get("actions") or {}).items():
        data = []
        for d in action.get("data") or []:
            item = {"field": d.get("field"), "kind": d.get("kind"), "required": d.get("required") or None}
            if d.get("kind") in ("simple", "advanced"):
                item["from"] = d.get("key")
            if d.get("kind") == "advanced" and isinstance(d.get("options"), dict):
                item["option_field"] = d["options"].get("field")
            data.append(item)
        actions[key] = {"label": action.get("label"), "fields": action.get("fields") or [], "data": data}
    how = {
        "oauth": "OAuth: connect it in the Meshes dashboard; find it with list_connections",
        "api_key": "create_connection with these metadata fields",
        "none": "create_connection with these metadata fields",
    }.get(str(auth.get("type")), "create_connection")
    return {
        "type": record.get("type"),
        "name": record.get("name"),
        "auth": auth.get("type"),
        "connect": how,
        "metadata_fields": fields,
        "actions": actions,
    }


@tool(Toolset.INTEGRATIONS, read_only=True, idempotent=True, title="List integrations")
async def list_integrations(
    ctx: ToolContext,
    type: str | None = None,
) -> Annotated[CallToolResult, IntegrationList]:
    """Integrations Meshes delivers to: auth type and actions. With type: its connection metadata fields
    and each action's rule metadata."""
    rt = runtime_of(ctx)
    rt.client()  # without credentials, say how to configure them (the resource works offline)
    catalog = await rt.catalog()
    records = catalog.records()
    if type is not None:
        return rt.result({"integrations": [detail(find_record(records, type))]})
    return rt.result(
        {
            "integrations": [summary(r) for r in records],
            "next": "list_integrations type=<type> for fields and action metadata",
        }
    )


TOOLS = (list_integrations,)
