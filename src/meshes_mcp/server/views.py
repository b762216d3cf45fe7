"""What an agent sees of a rule, a connection, an event and a rule event: one pydantic view per shape.

Each view is built from the API model (`of`), renders the dict a tool returns (`render`) and is the
output schema of the tools that return it, so the schema describes the rows for real. Rendering keeps
None values: `Runtime.result` redacts the whole result and then prunes nulls and empty containers, as
for every result (a view never bypasses the Redactor). Detail views allow the fields the API adds
beyond its documented ones, as the results always have; list rows hold exactly their declared fields.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from meshes_mcp.api import models as m
from meshes_mcp.server.render import bound_text
from meshes_mcp.server.schema import compact_schema


def _lean_schema(schema: dict[str, Any]) -> None:
    """Output schemas travel in every tools/list: the class docstrings (notes for readers of this module) and
    the titles pydantic derives from field names stay out of them. A result never holds a null (it is pruned:
    an optional field is simply absent), so `X | None` is described as the X it is when present."""
    schema.pop("description", None)
    properties = schema.get("properties", {})
    for name, prop in properties.items():
        properties[name] = compact_schema(prop)


class View(BaseModel):
    """A shape shown to agents. Field order is the order of the result's keys."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_lean_schema)

    def render(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class DetailView(View):
    """One record in full: fields the API sends beyond the documented ones are passed on."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_lean_schema)


# --- rules ---------------------------------------------------------------------------------------


class RuleRow(View):
    """A list row: what routes where, with which action (and in which workspace, org-wide)."""

    id: str
    connection: str
    workspace: str | None = None
    type: str | None = None
    event: str
    resource: str | None = None
    resource_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    active: bool | None = None  # shown only when False: a paused rule

    @classmethod
    def of(cls, rule: m.Rule, *, org_wide: bool) -> Self:
        fields = {"id", "connection", "type", "event", "resource", "resource_id", "metadata"}
        row = rule.model_dump(mode="json", include=fields | ({"workspace"} if org_wide else set()))
        return cls(**row, active=False if rule.active is False else None)


class RuleView(DetailView):
    """One rule; create_rule adds a warning (inactive connection) and the next call."""

    id: str
    connection: str
    workspace: str
    type: str | None = None
    event: str
    resource: str | None = None
    resource_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    active: bool | None = None
    hidden: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None
    warning: str | None = None
    next: str | None = None

    @classmethod
    def of(cls, rule: m.Rule) -> Self:
        return cls.model_validate(rule.model_dump(mode="json", exclude={"created_by"}))


# --- connections ---------------------------------------------------------------------------------


class ConnectionRow(View):
    """A list row: enough to pick a connection; get_connection has the metadata."""

    id: str
    name: str
    type: str
    workspace: str | None = None  # org-wide lists only
    active: bool | None = None  # shown only when False, with the reason
    inactive_reason: str | None = None
    hidden: bool | None = None  # shown only when True

    @classmethod
    def of(cls, connection: m.Connection, *, org_wide: bool) -> Self:
        inactive = connection.active is False
        return cls(
            id=connection.id,
            name=connection.name,
            type=connection.type,
            workspace=connection.workspace if org_wide else None,
            active=False if inactive else None,
            inactive_reason=connection.inactive_reason if inactive else None,
            hidden=True if connection.hidden else None,
        )


class ConnectionView(DetailView):
    """One connection: its metadata (secrets masked when the result is rendered) and its state."""

    id: str
    workspace: str
    type: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    active: bool | None = None
    inactive_reason: str | None = None
    hidden: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None
    warning: str | None = None
    next: str | None = None

    @classmethod
    def of(cls, connection: m.Connection, *, warning: str | None = None) -> Self:
        view = connection.model_dump(mode="json", exclude={"action_data", "created_by"})
        return cls.model_validate({**view, "warning": warning})


# --- events and their deliveries -----------------------------------------------------------------


class RuleEventView(View):
    """One event's delivery to one rule."""

    id: str
    connection: str | None = None
    rule: str
    integration_type: str | None = None
    status: str
    attempt_count: int | None = None
    completed_at: str | None = None
    # The last error may quote the destination (its reason phrase, its body): data, bounded, never our words.
    untrusted_last_error: str | None = None
    next_attempt_at: str | None = None  # while Meshes retries by itself (not a documented field)

    @classmethod
    def of(cls, rule_event: m.RuleEvent) -> Self:
        fields = {"id", "connection", "rule", "integration_type", "status", "attempt_count", "completed_at"}
        view = rule_event.model_dump(mode="json", include=fields)
        next_attempt_at = (rule_event.model_extra or {}).get("next_attempt_at")
        return cls(
            **view,
            untrusted_last_error=bound_text(rule_event.last_error),
            next_attempt_at=next_attempt_at if isinstance(next_attempt_at, str) else None,
        )


class EventRow(View):
    """A list row: the event and its delivery counts; get_event has the per-rule detail."""

    id: str
    workspace: str | None = None  # org-wide lists only
    event: str
    resource: str | None = None
    resource_id: str | None = None
    status: str | None = None
    total_rules: int | None = None
    completed_count: int | None = None
    failed_count: int | None = None
    created_at: str | None = None

    @classmethod
    def of(cls, event: m.Event, *, org_wide: bool) -> Self:
        fields = set(cls.model_fields) - ({"workspace"} if not org_wide else set())
        return cls(**event.model_dump(mode="json", include=fields))


class EventView(DetailView):
    """One event with each rule's delivery; get_event may add its payload and how the wait ended."""

    id: str
    workspace: str
    event: str
    resource: str | None = None
    resource_id: str | None = None
    status: str | None = None
    total_rules: int | None = None
    completed_count: int | None = None
    failed_count: int | None = None
    completed_at: str | None = None
    created_at: str | None = None
    rule_events: list[RuleEventView] = Field(default_factory=list)
    next: str | None = None

    @classmethod
    def of(cls, event: m.Event, *, next_call: str | None = None) -> Self:
        fields = set(cls.model_fields) - {"rule_events", "next"}
        view = event.model_dump(mode="json", include=fields)
        rule_events = [RuleEventView.of(r) for r in event.rule_events or []]
        return cls(**view, rule_events=rule_events, next=next_call)
